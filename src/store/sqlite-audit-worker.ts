/**
 * The SQLite engine's audit writer thread (see sqlite-audit-thread.ts). It opens its own connection to the same
 * SQLite database and appends the batches the gateway posts, each in one transaction (one fsync), so neither the
 * ~15 µs of SQLite work per event nor the commit's fsync runs on the event loop that relays requests. The chain stays one chain: every group
 * commit, here and in the main thread, re-reads the head under SQLite's write lock before linking to it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore } from './sqlite.ts';
import type { IntegrityFinding, NewAuditEvent } from './store.ts';

export interface AuditWorkerData {
  path: string;
  busyTimeoutMs?: number;
}
export type AuditWorkerRequest = { id: number; events: NewAuditEvent[] } | { id: number; close: true };
export type AuditWorkerReply = { id: number; ok: true } | { id: number; ok: false; message: string; code?: string };

const port = parentPort!;
const data = workerData as AuditWorkerData;
let opening: ReturnType<typeof openSqliteStore> | undefined;
/** Integrity findings of this thread's open not yet in the trail (kept until a batch carrying them commits). */
let unrecorded: IntegrityFinding[] = [];
const checked = new WeakSet<object>();

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
    // tampering and goes into the trail, as it does when the server starts. Checked once per open: not per batch.
    if (!checked.has(store)) {
      checked.add(store);
      unrecorded = [...unrecorded, ...(await store.checkIntegrity())];
    }
    const findings = unrecorded;
    await store.transaction(async (tx) => {
      for (const finding of findings) {
        await tx.appendAudit({ at: Date.now(), actor: 'system', outcome: 'error', ...finding });
      }
      for (const event of request.events) await tx.appendAudit(event);
    });
    unrecorded = unrecorded.filter((finding) => !findings.includes(finding));
    return { id: request.id, ok: true };
  } catch (error) {
    const e = error as Error & { code?: string };
    return { id: request.id, ok: false, message: e.message, ...(e.code ? { code: e.code } : {}) };
  }
}
