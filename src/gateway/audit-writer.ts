/**
 * Gateway request and stream events go to the audit trail in batches every 250 ms, written in chunks of at most
 * 128 events per transaction with the event loop free between chunks: each append costs the main thread
 * ~15 µs of SQLite work, so one big transaction would stall every request behind it (the p99), while many
 * small ones keep each pause to a couple of milliseconds. A failure to write is reported, the events are
 * kept for the next try, and the batcher reports itself unhealthy so the gateway fails closed.
 */
import type { NewAuditEvent, Store } from '../store/store.ts';

/** Most events written in one transaction (one pause of the event loop). */
const CHUNK = 128;

export class AuditBatcher {
  private queue: NewAuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly store: Store;
  private readonly delayMs: number;
  private readonly onError: (error: Error) => void;

  constructor(options: { store: Store; delayMs?: number; onError: (error: Error) => void }) {
    this.store = options.store;
    this.delayMs = options.delayMs ?? 250;
    this.onError = options.onError;
  }

  /**
   * False from a failed write until the next successful one: the gateway then refuses new requests (fail closed)
   * rather than relay access it cannot record.
   */
  healthy = true;

  add(event: NewAuditEvent): void {
    this.queue.push(event);
    this.schedule(this.delayMs);
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => void this.flush(), delayMs);
    this.timer.unref();
  }

  /** Writes everything queued so far (tests and shutdown call it; the timer does otherwise). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing ??= this.drain().finally(() => (this.flushing = undefined));
    await this.flushing;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const chunk = this.queue.slice(0, CHUNK);
      try {
        await this.store.transaction(async (tx) => {
          for (const event of chunk) await tx.appendAudit(event);
        });
      } catch (error) {
        this.healthy = false;
        this.onError(error as Error);
        // Keep the events and keep trying: access resumes as soon as the trail can be written again.
        this.schedule(this.delayMs * 4);
        return;
      }
      this.queue.splice(0, chunk.length);
      this.healthy = true;
      // Let waiting requests run before the next chunk.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
