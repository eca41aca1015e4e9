/**
 * The SQLite engine's audit appender for a database file: a worker thread (sqlite-audit-worker.ts) with its own
 * connection appends each batch in one transaction (one fsync), so the event loop that relays gateway requests
 * never runs SQLite or waits for an fsync. The chain stays one chain: every group commit, in the thread and in
 * the main thread, re-reads the head under SQLite's write lock before linking to it.
 */
import { Worker } from 'node:worker_threads';
import { StoreUnavailable } from './errors.ts';
import type { AuditAppender, NewAuditEvent } from './store.ts';
import type { AuditWorkerData, AuditWorkerReply, AuditWorkerRequest } from './sqlite-audit-worker.ts';

export class SqliteAuditThread implements AuditAppender {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private closed = false;
  private readonly data: AuditWorkerData;

  constructor(data: AuditWorkerData) {
    this.data = data;
  }

  write(events: readonly NewAuditEvent[]): Promise<void> {
    return this.send({ id: this.nextId++, events: [...events] });
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
    if (this.closed && !('close' in request))
      return Promise.reject(new StoreUnavailable('the audit appender is closed'));
    const worker = this.worker ?? this.start();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      worker.postMessage(request);
    });
  }

  /** Started on first use, and again after a crash, so one lost thread does not stop the trail for good. */
  private start(): Worker {
    const worker = new Worker(new URL('./sqlite-audit-worker.ts', import.meta.url), { workerData: this.data });
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
