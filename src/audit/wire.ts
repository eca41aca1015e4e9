/**
 * Plugs the audit trail into the server: the checkpoint key, the start-up check against a rolled-back
 * database, the audit endpoints, a checkpoint whenever the trail grew (periodically, and at stop), and an
 * optional periodic verification whose failures reach the monitoring capability as `audit-verification-failed`.
 */
import { join } from 'node:path';
import type { ServerContext } from '../server/context.ts';
import { loadOrCreateCheckpointKey } from './checkpoints.ts';
import { parseAuditConfig } from './config.ts';
import { LATEST_CHECKPOINT_FILE } from './latest-file.ts';
import { registerAuditRoutes } from './routes.ts';
import { AuditService } from './service.ts';

/** What the audit capability hands back to the composition root (tests and benchmarks reach the service through it). */
export interface AuditHandle {
  service: AuditService;
}

function report(what: string, error: unknown): void {
  process.stderr.write(`kubevisa audit: ${what}: ${error instanceof Error ? error.message : String(error)}\n`);
}

export async function wireAudit(context: ServerContext): Promise<AuditHandle> {
  const config = parseAuditConfig(context.config.extensions.audit, context.config.dataDir);
  const key = await loadOrCreateCheckpointKey(config.keyFile);
  const { store, events } = context;
  const service = new AuditService({
    now: context.now,
    store,
    key,
    latestCheckpointFile: join(context.config.dataDir, LATEST_CHECKPOINT_FILE),
    onVerificationFailed: (failure) => {
      events.emit('audit-verification-failed', failure);
      // The failure goes into the trail too; if even that cannot be written, the operator still sees it here.
      store
        .transaction((tx) =>
          tx.appendAudit({
            at: failure.at,
            actor: 'system',
            action: 'audit.verification-failed',
            outcome: 'error',
            details: { message: failure.message, ...(failure.seq === undefined ? {} : { seq: failure.seq }) },
          }),
        )
        .catch((error: unknown) => report('could not record a failed verification', error));
    },
  });

  // Before anything else writes: a database restored from an older copy must not be written on (it may also
  // bring back access revoked since).
  await service.assertNotRolledBack();

  // The engine's own checks of the trail's protections (SQLite: append-only triggers someone with the file
  // dropped, now recreated). What they found is evidence of tampering and goes into the trail.
  const findings = await store.checkIntegrity();
  if (findings.length > 0) {
    for (const finding of findings) report(finding.reason, JSON.stringify(finding.details));
    await store.transaction(async (tx) => {
      for (const finding of findings) {
        await tx.appendAudit({ at: context.now(), actor: 'system', outcome: 'error', ...finding });
      }
    });
  }
  await service.checkpointIfMoved();

  registerAuditRoutes(context, service);

  // One replica checkpoints and verifies (src/leader/): checkpoints are one sequence, and one verifier is enough.
  const checkpointTimer = setInterval(() => {
    if (!context.leadership.isLeader()) return;
    service.checkpointIfMoved().catch((error: unknown) => report('periodic checkpoint failed', error));
  }, config.checkpointIntervalMs);
  checkpointTimer.unref();
  let verifyTimer: NodeJS.Timeout | undefined;
  if (config.verifyIntervalMs !== undefined) {
    verifyTimer = setInterval(() => {
      if (!context.leadership.isLeader()) return;
      service.verifyTrail().catch((error: unknown) => report('periodic verification failed to run', error));
    }, config.verifyIntervalMs);
    verifyTimer.unref();
  }
  context.onStop(async () => {
    clearInterval(checkpointTimer);
    clearInterval(verifyTimer);
    // A final checkpoint, so a restart (or a restore) is checked against everything written until now.
    await service.checkpointIfMoved().catch((error: unknown) => report('final checkpoint failed', error));
  });
  return { service };
}
