/**
 * Test support for the audit capability: a real SQLite store in a temporary folder with a trail of varied events,
 * an AuditService over it, and an export of the trail as a file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.ts';
import type { NewAuditEvent } from '../store/store.ts';
import { loadOrCreateCheckpointKey } from './checkpoints.ts';
import { LATEST_CHECKPOINT_FILE } from './latest-file.ts';
import { AuditService } from './service.ts';

export const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);

export interface AuditFixture {
  dir: string;
  store: SqliteStore;
  service: AuditService;
  /** Exports the whole trail (or a window, with `scope` redaction as the service does) to a file; returns its path. */
  exportTo(name: string, lines?: AsyncGenerator<string>): Promise<string>;
  close(): Promise<void>;
}

/** The i-th event of a varied trail: every optional field appears in some, details nest, text is not all ASCII. */
export function sampleEvent(i: number): NewAuditEvent {
  return {
    at: T0 + i * 1000,
    actor: i % 3 === 0 ? 'system' : `person${i % 5}@vendor.example`,
    action: ['visa.requested', 'visa.approved', 'gateway.request', 'cluster.rolebinding.created'][i % 4] as string,
    outcome: i % 7 === 0 ? 'refused' : 'ok',
    ...(i % 2 === 0 ? { visaId: `v_${i % 11}`, cluster: 'prod', namespace: `ns-${i % 3}` } : {}),
    ...(i % 4 === 1 ? { engagementId: `e_${i % 2}`, personId: `p_${i % 5}` } : {}),
    ...(i % 5 === 0 ? { reason: `JIRA-${i} — naïve "quotes" \\ and ünïcödé` } : {}),
    ...(i % 6 === 0
      ? { sessionId: `s_${i}`, source: { address: '192.0.2.7:51544', userAgent: 'kubectl/v1.37.2' } }
      : {}),
    details: {
      i,
      verb: 'get',
      nested: { list: [i, 'x', null, true], empty: {} },
      ...(i % 2 === 0 ? { bytes: i * 10 } : {}),
    },
  };
}

/** A store with `events` sample events appended in groups of `perTransaction`. */
export async function auditFixture(options: { events?: number; perTransaction?: number } = {}): Promise<AuditFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-audit-'));
  const store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
  const key = await loadOrCreateCheckpointKey(join(dir, 'audit-checkpoint-key.pem'));
  const service = new AuditService({ store, key, latestCheckpointFile: join(dir, LATEST_CHECKPOINT_FILE) });
  const events = options.events ?? 0;
  const per = options.perTransaction ?? 50;
  for (let start = 0; start < events; start += per) {
    await store.transaction(async (tx) => {
      for (let i = start; i < Math.min(events, start + per); i++) await tx.appendAudit(sampleEvent(i));
    });
  }
  return {
    dir,
    store,
    service,
    async exportTo(name, lines = service.exportLines({})) {
      let text = '';
      for await (const chunk of lines) text += chunk;
      const path = join(dir, name);
      await writeFile(path, text);
      return path;
    },
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
