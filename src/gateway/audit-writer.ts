/**
 * Gateway request and stream events go to the audit trail in batches every 250 ms, written in chunks of at most
 * 128 events per transaction, through the store's audit appender: each engine brings its fastest durable way
 * (SQLite writes them from a worker thread, so the event loop that relays requests never runs SQLite or waits
 * for an fsync). A failure to write is reported, the events are kept for the next try, and the batcher reports
 * itself unhealthy so the gateway fails closed.
 */
import { storableAuditText } from '../store/audit-chain.ts';
import { transactionAppender } from '../store/appender.ts';
import type { AuditAppender, NewAuditEvent, Store } from '../store/store.ts';

/** Most events written in one transaction. */
const CHUNK = 128;

/** Appends events to the trail in one transaction; resolves once they are durable (the store's appender). */
export type AuditSink = AuditAppender;

/** Writes through the store's transactions in this thread: what a gateway given no appender uses. */
export function storeSink(store: Pick<Store, 'transaction'>): AuditSink {
  return transactionAppender(store);
}

/** Default bound of the queue of events waiting to be written. */
export const DEFAULT_MAX_QUEUED_EVENTS = 20_000;

export class AuditBatcher {
  private queue: NewAuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly sink: AuditSink;
  private readonly delayMs: number;
  private readonly maxQueued: number;
  private readonly onError: (error: Error) => void;

  /** `maxQueued`: events waiting at most (default 20 000) before `hasRoom` turns false and `offer` refuses. */
  constructor(options: { sink: AuditSink; delayMs?: number; maxQueued?: number; onError: (error: Error) => void }) {
    this.sink = options.sink;
    this.delayMs = options.delayMs ?? 250;
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED_EVENTS;
    this.onError = options.onError;
  }

  /**
   * False from a failed write until the next successful one: the gateway then refuses new requests (fail closed)
   * rather than relay access it cannot record.
   */
  healthy = true;

  /**
   * Room for more: when false, the gateway admits no new request (503), so the queue can only grow by the events of
   * requests already relayed, which are never dropped.
   */
  get hasRoom(): boolean {
    return this.queue.length < this.maxQueued;
  }

  /** Events waiting to be written. */
  get queued(): number {
    return this.queue.length;
  }

  /** Queues the event of something kubevisa did (a relayed request, a stream): always taken. */
  add(event: NewAuditEvent): void {
    this.queue.push(storableAuditText(event));
    this.schedule(this.delayMs);
  }

  /**
   * Writes the event now, with everything queued before it, and resolves once it is durable; rejects (and takes the
   * event back) if it could not be written. For what must be in the trail before it happens: a recorded session.
   */
  async durable(event: NewAuditEvent): Promise<void> {
    // The queued object is the one looked for below: storableAuditText may return a copy.
    const queued = storableAuditText(event);
    this.queue.push(queued);
    this.schedule(this.delayMs);
    // A drain that was just finishing when the event came may end without it: then the next one takes it.
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.flush();
      if (!this.queue.includes(queued)) return;
      if (!this.healthy) break;
    }
    const left = this.queue.indexOf(queued);
    if (left !== -1) this.queue.splice(left, 1);
    throw new Error('the audit trail could not be written');
  }

  /** Queues an event that may give way (refusal samples and summaries): taken only while there is room. */
  offer(event: NewAuditEvent): boolean {
    if (!this.hasRoom) return false;
    this.add(event);
    return true;
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

  /** Writes what is queued, then stops the sink (server shutdown). */
  async close(): Promise<void> {
    await this.flush();
    await this.sink.close();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const chunk = this.queue.slice(0, CHUNK);
      try {
        await this.sink.write(chunk);
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
