/**
 * Gateway request and stream events go to the audit trail in batches every 250 ms, written in chunks of at most
 * 128 events per transaction. With a SQLite file the chunks are written by a worker thread (audit-worker.ts), so
 * the event loop that relays requests never runs SQLite or waits for an fsync; otherwise (another engine, an
 * in-memory database) by the store in this thread, with the event loop free between chunks. A failure to write
 * is reported, the events are kept for the next try, and the batcher reports itself unhealthy so the gateway
 * fails closed.
 */
import { Worker } from 'node:worker_threads';
import type { NewAuditEvent, Store } from '../store/store.ts';
import type { AuditWorkerData, AuditWorkerReply, AuditWorkerRequest } from './audit-worker.ts';

/** Most events written in one transaction. */
const CHUNK = 128;

/** Appends events to the trail in one transaction; resolves once they are durable. */
export interface AuditSink {
  write(events: NewAuditEvent[]): Promise<void>;
  close(): Promise<void>;
}

/** Writes through the store in this thread: for engines and databases a second connection cannot reach. */
export function storeSink(store: Store): AuditSink {
  return {
    write: (events) =>
      store.transaction(async (tx) => {
        for (const event of events) await tx.appendAudit(event);
      }),
    close: async () => {},
  };
}

/** Writes through a worker thread with its own connection to the SQLite file at `path`. */
export class AuditThread implements AuditSink {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private closed = false;
  private readonly data: AuditWorkerData;

  constructor(data: AuditWorkerData) {
    this.data = data;
  }

  write(events: NewAuditEvent[]): Promise<void> {
    return this.send({ id: this.nextId++, events });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.worker === undefined) return;
    await this.send({ id: this.nextId++, close: true }).catch(() => undefined);
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private send(request: AuditWorkerRequest): Promise<void> {
    // After close, nothing starts a new thread that nobody would stop.
    if (this.closed && !('close' in request)) return Promise.reject(new Error('the audit writer is closed'));
    const worker = this.worker ?? this.start();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      worker.postMessage(request);
    });
  }

  /** Started on first use, and again after a crash, so one lost thread does not stop the trail for good. */
  private start(): Worker {
    const worker = new Worker(new URL('./audit-worker.ts', import.meta.url), { workerData: this.data });
    worker.unref();
    worker.on('message', (reply: AuditWorkerReply) => {
      const waiting = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) waiting?.resolve();
      else waiting?.reject(Object.assign(new Error(reply.message), reply.code ? { code: reply.code } : {}));
    });
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const [, waiting] of this.pending) waiting.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the audit writer thread stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }
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
    this.queue.push(event);
    this.schedule(this.delayMs);
  }

  /**
   * Writes the event now, with everything queued before it, and resolves once it is durable; rejects (and takes the
   * event back) if it could not be written. For what must be in the trail before it happens: a recorded session.
   */
  async durable(event: NewAuditEvent): Promise<void> {
    this.add(event);
    // A drain that was just finishing when the event came may end without it: then the next one takes it.
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.flush();
      if (!this.queue.includes(event)) return;
      if (!this.healthy) break;
    }
    const left = this.queue.indexOf(event);
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
