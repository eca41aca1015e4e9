/**
 * Gateway request and stream events go to the audit trail in batches (once a second): one transaction (one fsync) per batch
 * keeps per-request cost to microseconds. A failure to write is reported, and the batch retried.
 */
import type { NewAuditEvent, Store } from '../store/store.ts';

export class AuditBatcher {
  private queue: NewAuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly store: Store;
  private readonly delayMs: number;
  private readonly onError: (error: Error) => void;

  constructor(options: { store: Store; delayMs?: number; onError: (error: Error) => void }) {
    this.store = options.store;
    this.delayMs = options.delayMs ?? 1000;
    this.onError = options.onError;
  }

  /**
   * False from a failed write until the next successful one: the gateway then refuses new requests (fail closed)
   * rather than relay access it cannot record.
   */
  healthy = true;

  add(event: NewAuditEvent): void {
    this.queue.push(event);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.delayMs);
      this.timer.unref();
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.store
      .transaction(async (tx) => {
        for (const event of batch) await tx.appendAudit(event);
      })
      .then(() => {
        this.healthy = true;
      })
      .catch((error: Error) => {
        this.healthy = false;
        this.queue = [...batch, ...this.queue];
        this.onError(error);
        // Keep trying: access resumes as soon as the trail can be written again.
        if (this.timer === undefined) {
          this.timer = setTimeout(() => void this.flush(), this.delayMs * 4);
          this.timer.unref();
        }
      });
    await this.flushing;
    this.flushing = undefined;
  }
}
