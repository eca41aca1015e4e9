/**
 * Gateway request and stream events go to the audit trail in batches (every 250 ms): one transaction (one fsync) per batch
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
    this.delayMs = options.delayMs ?? 250;
    this.onError = options.onError;
  }

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
      .catch((error: Error) => {
        this.queue = [...batch, ...this.queue];
        this.onError(error);
      });
    await this.flushing;
    this.flushing = undefined;
  }
}
