/**
 * Plugs the identity lifecycle into the server (issue 7): the SCIM service provider at /scim/v2, group mappings,
 * the directory sync, the login hooks (refuse deactivated people, apply mappings, suspend on a refused refresh)
 * and offboarding with receipts, with its API routes.
 *
 * It returns its handle: the composition root passes the offboarding orchestrator to the gateway (which adds its
 * proofs) and serves `POST /api/v1/persons/:id/offboard` through `offboardByAdmin`.
 */
import { NotFound } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { registerScimRoutes, SCIM_PREFIX } from '../scim/routes.ts';
import { ScimService } from '../scim/service.ts';
import type { Caller } from '../app/caller.ts';
import { personByIdOrEmail } from '../app/people.ts';
import { registerAdminRoutes } from './admin-routes.ts';
import { parseIdentityConfig, parseScimConfig } from './config.ts';
import { checkDirectoryAtStart, createDirectory } from './directories/index.ts';
import { DirectorySync } from './directory.ts';
import { IdentityLifecycle } from './lifecycle.ts';
import { validateMappings } from './mapping.ts';
import { OffboardingOrchestrator, type OffboardingAlert } from './offboarding.ts';
import { createScimOwnership } from './ownership.ts';
import type { Receipt } from './receipt.ts';

export interface IdentityHandle {
  offboarding: OffboardingOrchestrator;
  lifecycle: IdentityLifecycle;
  scim?: ScimService;
  sync?: DirectorySync;
  /**
   * `kubevisa offboard PERSON`: offboards (deprovisioned) and waits up to `identity.offboarding.wait` for the
   * receipt. What main.ts's `offboard` closure should return.
   */
  offboardByAdmin(caller: Caller, idOrEmail: string, reason: string): Promise<Receipt>;
}

/** Delay before the start-up repair runs, so it does not compete with the first reconcile, in ms. */
const STARTUP_REPAIR_DELAY_MS = 1000;
/** The level-triggered repair (SCIM state vs persons, mappings) also runs this often, in ms. */
const REPAIR_INTERVAL_MS = 5 * 60_000;

export async function wireIdentity(context: ServerContext): Promise<IdentityHandle> {
  const scimConfig = parseScimConfig(context.config.extensions.scim);
  // Relative paths (identity.sync.tokenFile) resolve against the server's working directory.
  const config = parseIdentityConfig(context.config.extensions.identity, process.cwd());
  validateMappings(config.groupMappings, {
    clusters: [...context.clusters.keys()],
    profiles: (await context.store.listProfiles()).map((p) => p.name),
    now: context.now(),
  });

  const report = (message: string, error: unknown) => {
    const why = error instanceof Error ? error.message : String(error);
    process.stderr.write(`kubevisa identity: ${message}: ${why}\n`);
  };
  // Before anything starts: a directory that cannot be read stops the server here, with what to fix.
  const directory = config.sync
    ? createDirectory(config.sync, {
        groups: config.groupMappings.map((m) => m.group),
        report: (note) => report('directory sync', new Error(note)),
      })
    : undefined;
  if (directory) await checkDirectoryAtStart(directory);
  const webhook = config.offboarding.alertWebhook;
  const postAlert = async (text: string) => {
    if (webhook === undefined) return;
    try {
      const response = await fetch(webhook, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text }),
        signal: AbortSignal.timeout(5000),
      });
      // The URL is a credential (Slack puts its secret in it): it is never in a message.
      if (!response.ok) report('the alert webhook refused an alert', new Error(`HTTP ${response.status}`));
    } catch (error) {
      report('the alert webhook could not be reached', error);
    }
  };
  const alert = async (event: OffboardingAlert) => {
    const text =
      event.kind === 'unproven'
        ? `kubevisa: offboarding of ${event.receipt.person.email} is NOT proven: ${event.steps.map((s) => `${s.step}: ${s.detail}`).join('; ')}. Retrying.`
        : `kubevisa: offboarding of ${event.receipt.person.email} is now proven (${event.steps.map((s) => s.step).join('; ')}).`;
    await context.store.transaction((tx) =>
      tx.appendAudit({
        at: context.now(),
        actor: 'system',
        action: 'offboarding.alert',
        personId: event.receipt.person.id,
        outcome: event.kind === 'unproven' ? 'error' : 'ok',
        reason: text,
        details: { offboardingId: event.receipt.id, kind: event.kind, steps: event.steps.map((s) => s.id) },
      }),
    );
    await postAlert(text);
  };

  const offboarding = new OffboardingOrchestrator({
    now: context.now,
    store: context.store,
    people: context.people,
    sessions: context.sessions,
    tokens: context.tokens,
    clusters: context.clusters,
    reconciler: context.reconciler,
    config: config.offboarding,
    alert,
    report,
  });
  const lifecycle = new IdentityLifecycle({
    now: context.now,
    store: context.store,
    people: context.people,
    engagements: context.engagements,
    offboarding,
    config,
    serverConfig: context.config,
    report,
    alert: async (message) => {
      await context.store.transaction((tx) =>
        tx.appendAudit({
          at: context.now(),
          actor: 'system',
          action: 'identity.alert',
          outcome: 'error',
          reason: message,
        }),
      );
      await postAlert(`kubevisa: ${message}`);
    },
  });
  context.sessions.addLifecycleHooks({
    beforeLogin: (identity) => lifecycle.beforeLogin(identity),
    rolesAtLogin: (identity, base) => lifecycle.rolesAtLogin(identity, base),
    afterLogin: (person) => lifecycle.afterLogin(person),
    idpRefreshRefused: (person, sessionId) => lifecycle.idpRefreshRefused(person, sessionId),
  });

  let scim: ScimService | undefined;
  let invalidateTokens = () => {};
  if (scimConfig.enabled) {
    const baseUrl = `${context.url}${SCIM_PREFIX}`;
    context.declarePrefix({
      prefix: SCIM_PREFIX,
      summary: "SCIM 2.0 (RFC 7644), with an identity provider's SCIM token",
      auth: 'token',
    });
    scim = new ScimService({
      now: context.now,
      store: context.store,
      baseUrl,
      maxResults: scimConfig.maxResults,
      onUserChanged: (change) => lifecycle.onUserChanged(change),
      onGroupChanged: (change) => lifecycle.onGroupChanged(change),
      ownership: createScimOwnership({
        now: context.now,
        store: context.store,
        policy: {
          claimExistingPeople: config.claimExistingPeople,
          configuredPeople: [...context.config.roles.admins, ...context.config.roles.auditors],
        },
        alert: (message) => lifecycle.raiseAlert(message),
      }),
    });
    const routes = registerScimRoutes(context.app, {
      now: context.now,
      service: scim,
      store: context.store,
      baseUrl,
      maxResults: scimConfig.maxResults,
      onInternalError: report,
    });
    invalidateTokens = () => routes.invalidateTokens();
  }

  let sync: DirectorySync | undefined;
  if (config.sync && directory) {
    sync = new DirectorySync({
      directory,
      intervalMs: config.sync.intervalMs,
      timeoutMs: config.sync.timeoutMs,
      apply: (users, directoryName) => lifecycle.applyDirectory(users, directoryName),
      report,
      // Two replicas offboarding from the same snapshot would race on every receipt: the leader reads it.
      runsHere: () => context.leadership.isLeader(),
    });
  }

  registerAdminRoutes(context, {
    now: context.now,
    offboarding,
    mappings: config.groupMappings,
    ...(sync ? { sync } : {}),
    waitMs: config.offboarding.waitMs,
    onTokensChanged: () => invalidateTokens(),
    onLinksChanged: (email, by) => lifecycle.applyMappings(email, by),
  });

  const handle: IdentityHandle = {
    offboarding,
    lifecycle,
    ...(scim ? { scim } : {}),
    ...(sync ? { sync } : {}),
    async offboardByAdmin(caller, idOrEmail, reason) {
      const person = await personByIdOrEmail(context.store, idOrEmail);
      if (!person) throw new NotFound(`no person '${idOrEmail}': they have never logged in to kubevisa`);
      const started = await offboarding.start({
        personId: person.id,
        status: 'deprovisioned',
        trigger: { kind: 'admin', by: caller.actor.email },
        reason,
        caller,
      });
      return offboarding.waitFor(started.id, config.offboarding.waitMs);
    },
  };

  // Level-triggered repair once the server is up, then periodically: open receipts resume, SCIM state and
  // persons are brought back in line (a crash between two commits), mappings re-applied.
  const repair = async () => {
    // One replica repairs (src/leader/): two would resume the same receipts at once.
    if (!context.leadership.isLeader()) return;
    try {
      await offboarding.resume();
      await lifecycle.reconcileAll();
    } catch (error) {
      report('the identity repair pass failed; it runs again later', error);
    }
  };
  const startup = setTimeout(() => {
    void repair();
    sync?.start();
  }, STARTUP_REPAIR_DELAY_MS);
  startup.unref();
  const periodic = setInterval(() => void repair(), REPAIR_INTERVAL_MS);
  periodic.unref();

  context.onStop(async () => {
    clearTimeout(startup);
    clearInterval(periodic);
    await sync?.stop();
    await offboarding.stop();
  });
  return handle;
}
