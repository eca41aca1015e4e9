/**
 * The gateway's audit writer thread. It opens its own connection to the same SQLite database and appends the
 * batches the gateway posts, each in one transaction (one fsync), so neither the ~15 µs of SQLite work per event
 * nor the commit's fsync runs on the event loop that relays requests. The chain stays one chain: every group
 * commit, here and in the main thread, re-reads the head under SQLite's write lock before linking to it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore } from '../store/sqlite.ts';
import type { NewAuditEvent } from '../store/store.ts';

export interface AuditWorkerData {
  path: string;
  busyTimeoutMs?: number;
}
export type AuditWorkerRequest = { id: number; events: NewAuditEvent[] } | { id: number; close: true };
export type AuditWorkerReply = { id: number; ok: true } | { id: number; ok: false; message: string; code?: string };

const port = parentPort!;
const data = workerData as AuditWorkerData;
let opening: ReturnType<typeof openSqliteStore> | undefined;
const reportedGuards = new Set<string>();

/** Opened on first use; a failed open is tried again by the next batch (the batcher keeps its events). */
function open(): ReturnType<typeof openSqliteStore> {
  opening ??= openSqliteStore({
    path: data.path,
    ...(data.busyTimeoutMs !== undefined ? { busyTimeoutMs: data.busyTimeoutMs } : {}),
  }).catch((error: unknown) => {
    opening = undefined;
    throw error;
  });
  return opening;
}

port.on('message', (request: AuditWorkerRequest) => {
  void handle(request).then((reply) => port.postMessage(reply));
});

async function handle(request: AuditWorkerRequest): Promise<AuditWorkerReply> {
  try {
    const store = await open();
    if ('close' in request) {
      await store.close();
      return { id: request.id, ok: true };
    }
    // Opening re-creates append-only triggers that were dropped while the server ran; that is evidence of
    // tampering and goes into the trail, as it does when the server starts.
    const restored = store.restoredGuards.filter((name) => !reportedGuards.has(name));
    await store.transaction(async (tx) => {
      if (restored.length > 0) {
        await tx.appendAudit({
          at: Date.now(),
          actor: 'system',
          action: 'audit.guards-restored',
          outcome: 'error',
          reason: 'append-only triggers of the audit trail were removed outside kubevisa',
          details: { triggers: restored },
        });
      }
      for (const event of request.events) await tx.appendAudit(event);
    });
    for (const name of restored) reportedGuards.add(name);
    return { id: request.id, ok: true };
  } catch (error) {
    const e = error as Error & { code?: string };
    return { id: request.id, ok: false, message: e.message, ...(e.code ? { code: e.code } : {}) };
  }
}
