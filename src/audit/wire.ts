/**
 * Plugs the audit trail into the server: the checkpoint key, the start-up check against a rolled-back
 * database, the audit endpoints, a checkpoint whenever the trail grew (periodically, and at stop), and an
 * optional periodic verification whose failures reach the monitoring capability as `audit-verification-failed`.
 */
import { join } from 'node:path';
import type { Extension, ServerContext } from '../server/context.ts';
import { loadOrCreateCheckpointKey } from './checkpoints.ts';
import { parseAuditConfig } from './config.ts';
import { LATEST_CHECKPOINT_FILE } from './latest-file.ts';
import { registerAuditRoutes } from './routes.ts';
import { AuditService } from './service.ts';

/** The audit service of a running server, for tests and benchmarks. */
export const auditServices = new WeakMap<ServerContext, AuditService>();

function report(what: string, error: unknown): void {
  process.stderr.write(`kubevisa audit: ${what}: ${error instanceof Error ? error.message : String(error)}\n`);
}

export const wireAudit: Extension = async (context) => {
  const config = parseAuditConfig(context.config.extensions.audit, context.config.dataDir);
  const key = await loadOrCreateCheckpointKey(config.keyFile);
  const { store, events } = context;
  const service = new AuditService({
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
  auditServices.set(context, service);

  // Before anything else writes: a database restored from an older copy must not be written on (it may also
  // bring back access revoked since).
  await service.assertNotRolledBack();

  const guards = 'restoredGuards' in store ? store.restoredGuards : undefined;
  const restored = Array.isArray(guards) ? guards.filter((name): name is string => typeof name === 'string') : [];
  if (restored.length > 0) {
    report('append-only triggers were missing and have been recreated', restored.join(', '));
    await store.transaction((tx) =>
      tx.appendAudit({
        at: Date.now(),
        actor: 'system',
        action: 'audit.guards-restored',
        outcome: 'error',
        reason: 'append-only triggers of the audit trail were removed outside kubevisa',
        details: { triggers: restored },
      }),
    );
  }
  await service.checkpointIfMoved();

  registerAuditRoutes(context, service);

  const checkpointTimer = setInterval(() => {
    service.checkpointIfMoved().catch((error: unknown) => report('periodic checkpoint failed', error));
  }, config.checkpointIntervalMs);
  checkpointTimer.unref();
  let verifyTimer: NodeJS.Timeout | undefined;
  if (config.verifyIntervalMs !== undefined) {
    verifyTimer = setInterval(() => {
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
};
