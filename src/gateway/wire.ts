/**
 * Plugs the gateway into the server: one upstream per managed cluster (kubevisa's own credential, a keep-alive
 * pool), the grant index kept current by events and a periodic rebuild, and stream cutting at every deadline,
 * revocation and offboarding.
 */
import { Agent } from 'node:https';
import { join } from 'node:path';
import { loadKubeConfig, connectionOf, type KubeconfigSource } from '../cluster/kubeconfig.ts';
import { InvalidInput } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { DEFAULT_MAX_QUEUED_EVENTS } from './audit-writer.ts';
import { DEFAULT_ADDRESS_LIMITS, DEFAULT_WORK_CEILING } from './rate-limit.ts';
import { Gateway, type EndedVisa, type UpstreamCluster } from './gateway.ts';
import { GrantIndex } from './grants.ts';
import type { OffboardingOrchestrator } from '../identity/offboarding.ts';

/**
 * How often the index is rebuilt from the store anyway: the bound on how long a revocation made by another server
 * process can go unseen when its notification was lost (replicas/fanout.ts delivers it at once otherwise).
 */
const REBUILD_INTERVAL_MS = 2000;
/**
 * An index not read from the store for this long (ms) is no longer trusted: a replica cut off from the database
 * cannot hear of revocations another made, so it cuts every stream and admits nothing until a read succeeds.
 */
const UNCONFIRMED_AFTER_MS = 10_000;
/**
 * How often the sessions of open streams are read again, in ms: a session ended where this replica did not hear of it
 * (a lost notification) still ends its streams within this, plus a rebuild.
 */
const SESSION_RECHECK_MS = 5000;
/** Visas read from the store per query (SQLite limits bound parameters). */
const READ_CHUNK = 500;
const TOKEN_REREAD_MS = 60_000;

export interface GatewayHandle {
  gateway: Gateway;
  index: GrantIndex;
}

/** What the gateway needs from other capabilities, handed over by the composition root. */
export interface GatewayNeeds {
  /** The identity capability's offboarding: the gateway adds its proofs (it refuses the person; streams closed). */
  offboarding: Pick<OffboardingOrchestrator, 'addProof' | 'attachStreams'>;
}

export async function wireGateway(context: ServerContext, needs: GatewayNeeds): Promise<GatewayHandle> {
  // Without it an offboarding receipt would lack the gateway's proofs and nobody would notice: refuse to start.
  if (needs?.offboarding === undefined) {
    throw new Error('the gateway is wired without the identity capability: offboarding receipts would lack its proofs');
  }
  const raw = context.config.extensions.gateway as Record<string, unknown> | undefined;
  const rateLimit = {
    ratePerSecond: numberOr(raw?.ratePerSecond, 50, 'gateway.ratePerSecond'),
    burst: numberOr(raw?.burst, 100, 'gateway.burst'),
  };
  const addressLimits = {
    ratePerSecond: numberOr(
      raw?.addressRatePerSecond,
      DEFAULT_ADDRESS_LIMITS.ratePerSecond,
      'gateway.addressRatePerSecond',
    ),
    burst: numberOr(raw?.addressBurst, DEFAULT_ADDRESS_LIMITS.burst, 'gateway.addressBurst'),
    refusalsPerSecond: numberOr(
      raw?.addressRefusalsPerSecond,
      DEFAULT_ADDRESS_LIMITS.refusalsPerSecond,
      'gateway.addressRefusalsPerSecond',
    ),
    refusalBurst: numberOr(
      raw?.addressRefusalBurst,
      DEFAULT_ADDRESS_LIMITS.refusalBurst,
      'gateway.addressRefusalBurst',
    ),
    maxAddresses: numberOr(raw?.addressTableSize, DEFAULT_ADDRESS_LIMITS.maxAddresses, 'gateway.addressTableSize'),
  };
  const unauthenticatedCeiling = {
    perSecond: numberOr(
      raw?.unauthenticatedPerSecond,
      DEFAULT_WORK_CEILING.perSecond,
      'gateway.unauthenticatedPerSecond',
    ),
    burst: numberOr(raw?.unauthenticatedBurst, DEFAULT_WORK_CEILING.burst, 'gateway.unauthenticatedBurst'),
  };
  const maxQueuedAuditEvents = numberOr(raw?.auditQueueLimit, DEFAULT_MAX_QUEUED_EVENTS, 'gateway.auditQueueLimit');
  const clusters = new Map<string, UpstreamCluster>();
  const serve = (name: string) => {
    const source = context.clusterRegistry.kubeconfigSource(name);
    if (source === undefined) return;
    drop(name);
    clusters.set(
      name,
      upstreamFor(name, () => context.clusterRegistry.kubeconfigSource(name) ?? source),
    );
  };
  const drop = (name: string) => {
    const upstream = clusters.get(name);
    if (!upstream) return;
    clusters.delete(name);
    upstream.agent.destroy();
    upstream.streamAgent.destroy();
  };
  for (const name of context.clusters.keys()) serve(name);
  // Clusters registered or removed at run time (server/cluster-registry.ts): served, or refused, from then on.
  context.events.on('cluster-added', serve);
  context.events.on('cluster-removed', drop);
  const index = new GrantIndex(context.store, context.protectedNamespaces);
  await index.rebuild();
  const gateway = new Gateway({
    now: context.now,
    store: context.store,
    tokens: context.tokens,
    index,
    clusters,
    rateLimit,
    addressLimits,
    unauthenticatedCeiling,
    maxQueuedAuditEvents,
    recordingsDir: join(context.config.dataDir, 'recordings'),
    onRequest: (request) => context.events.emit('gateway-request', request),
    onRefusal: (refusal) => context.events.emit('gateway-refusal', refusal),
    onStreamCut: (cut) => context.events.emit('stream-cut', cut),
    // The engine's own way of appending batches (SQLite: a thread of its own, off this event loop).
    auditSink: context.store.openAuditAppender(),
  });

  let deadlineTimer: NodeJS.Timeout | undefined;
  const armDeadline = () => {
    clearTimeout(deadlineTimer);
    const now = context.now();
    const next = index.nextDeadline(now);
    if (next === undefined) return;
    deadlineTimer = setTimeout(
      () => {
        gateway.recheckStreams('visa expired');
        armDeadline();
      },
      Math.min(2 ** 31 - 1, next - now),
    );
    deadlineTimer.unref();
  };
  /**
   * The visas of open streams that the rebuilt index no longer holds (ended, perhaps through another server process),
   * read from the store so that the streams they backed are told how each ended.
   */
  const endedVisasOfOpenStreams = async (): Promise<Map<string, EndedVisa>> => {
    const backing = new Set<string>();
    for (const stream of gateway.streams.all()) for (const visa of stream.visas) backing.add(visa.id);
    const ids = [...backing].filter((id) => !index.holds(id));
    const ended = new Map<string, EndedVisa>();
    // A few reads, not one per visa: after a mass revoke heard of no other way, that is a thousand visas.
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      for (const visa of await context.store.listVisas({ ids: ids.slice(i, i + READ_CHUNK) })) ended.set(visa.id, visa);
    }
    return ended;
  };
  let rebuilding: Promise<void> | undefined;
  /**
   * Why a rebuild was asked for while one was running: that one may have read the store before the change (a visa
   * just approved would be refused until the next periodic rebuild), so another follows it.
   */
  let rebuildAgain: string | undefined;
  /** performance.now() when the last successful rebuild started reading the store. */
  let confirmedAt = performance.now();
  let sessionsCheckedAt = -Infinity;
  const closeStreamsOfEndedSessions = async (): Promise<void> => {
    if (performance.now() - sessionsCheckedAt < SESSION_RECHECK_MS) return;
    sessionsCheckedAt = performance.now();
    const now = context.now();
    try {
      for (const id of gateway.sessionsOfOpenStreams()) {
        const session = await context.store.getSession(id);
        if (session === undefined || session.revokedAt !== undefined || session.expiresAt <= now) {
          gateway.forgetSession(id, 'session ended (found on re-check)');
        }
      }
    } catch (error) {
      // Tried again at the next rebuild; a store that stays silent cuts every stream (see `periodic`).
      process.stderr.write(
        `kubevisa gateway: reading the sessions of open streams failed: ${(error as Error).message}\n`,
      );
    }
  };
  const rebuild = (reason: string): Promise<void> => {
    if (rebuilding !== undefined) {
      rebuildAgain = reason;
      return rebuilding;
    }
    const startedAt = performance.now();
    rebuilding = index
      .rebuild()
      .then(async () => {
        confirmedAt = startedAt;
        gateway.recheckStreams(reason, await endedVisasOfOpenStreams());
        armDeadline();
        await closeStreamsOfEndedSessions();
      })
      .catch((error: Error) => {
        process.stderr.write(`kubevisa gateway: rebuilding the access index failed: ${error.message}\n`);
      })
      .finally(() => {
        rebuilding = undefined;
        const again = rebuildAgain;
        rebuildAgain = undefined;
        if (again !== undefined) void rebuild(again);
      });
    return rebuilding;
  };
  armDeadline();

  context.events.on('visas-ended', (visas, reason) => {
    // At once, from the event: the rebuild below only confirms it. Cutting thousands of streams takes this process
    // a second; the other replicas already know (replicas/fanout.ts listens before this, server/main.ts, and sends
    // ended visas as it hears them), so theirs are cut meanwhile.
    index.removeVisas(visas.map((v) => v.id));
    gateway.recheckStreams(reason, new Map(visas.map((v) => [v.id, v])));
    void rebuild(reason);
  });
  context.events.on('visas-changed', () => void rebuild('visa changed'));
  context.events.on('session-ended', (sessionId) => gateway.forgetSession(sessionId));
  context.events.on('changes-missed', () => {
    // Another server process may have ended sessions or visas unheard: every cached token is checked again.
    gateway.forgetAllTokens();
    void rebuild('access changed');
  });
  context.events.on('person-deprovisioned', (person, reason) => {
    index.markDeprovisioned(person.id);
    gateway.forgetPerson(person.id);
    gateway.closePerson(person.id, `offboarded: ${reason}`);
    void rebuild('person deprovisioned');
  });
  const periodic = setInterval(() => {
    void rebuild('access changed');
    const unconfirmedFor = performance.now() - confirmedAt;
    if (unconfirmedFor > UNCONFIRMED_AFTER_MS && !index.isUnconfirmed) {
      const message = `kubevisa cannot confirm access right now: its store has not answered for ${Math.round(unconfirmedFor / 1000)} s; try again shortly`;
      index.markUnconfirmed(message);
      const cut = gateway.closeAll('store unreachable', message);
      process.stderr.write(`kubevisa gateway: ${message} (every open stream cut: ${cut})\n`);
    }
  }, REBUILD_INTERVAL_MS);
  periodic.unref();

  // The offboarding receipt proves, through this gateway's own checks, that the person is refused.
  needs.offboarding.addProof({
    id: 'gateway-refuses',
    step: 'the gateway refuses the person',
    proof:
      "a kubevisa access token minted for the person's latest session is refused by the gateway's token and visa checks",
    async check(person) {
      const sessions = await context.store.listSessionsOfPerson(person.id);
      const latest = sessions.sort((a, b) => b.createdAt - a.createdAt)[0];
      if (!latest) return { proven: true, detail: 'the person never had a kubevisa session' };
      const { token } = await context.tokens.issue({
        personId: person.id,
        email: person.email,
        sessionId: latest.id,
        now: context.now(),
        expiresInSeconds: 60,
      });
      const answer = await gateway.admits(token);
      return {
        proven: !answer.admitted,
        detail: answer.admitted ? `still admitted: ${answer.reason}` : `refused: ${answer.reason}`,
      };
    },
  });

  // ...and, from this gateway's registry, that the person's open streams were closed.
  needs.offboarding.attachStreams({
    openOf: (personId) =>
      gateway.streams
        .all()
        .filter((s) => s.personId === personId)
        .map((s) => ({
          id: s.id,
          kind: s.kind === 'upgrade' ? (s.session ? 'exec/attach' : 'port-forward') : s.kind,
          cluster: s.cluster,
          namespace: s.namespace,
        })),
    closeOf: (personId, reason) => gateway.closePerson(personId, reason),
  });

  context.addRawRoute({
    prefix: '/clusters/',
    handle: (req, res) => gateway.handle(req, res),
    upgrade: (req, socket, head) => gateway.upgrade(req, socket, head),
  });
  context.onStop(async () => {
    clearInterval(periodic);
    clearTimeout(deadlineTimer);
    await gateway.stop();
    for (const upstream of clusters.values()) {
      upstream.agent.destroy();
      upstream.streamAgent.destroy();
    }
  });
  return { gateway, index };
}

function numberOr(value: unknown, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0)) throw new InvalidInput(`config: '${field}' must be a positive number`);
  return value;
}

/** An upstream whose kubeconfig `source()` gives (a file, or a registered cluster's text), re-read after renewals. */
function upstreamFor(name: string, source: () => KubeconfigSource): UpstreamCluster {
  const read = () => {
    const kubeConfig = loadKubeConfig(source(), name);
    const user = kubeConfig.getCurrentUser();
    if (!user?.token) throw new InvalidInput(`cluster '${name}': kubevisa's kubeconfig for it has no bearer token`);
    return { token: user.token, connection: connectionOf(kubeConfig, name) };
  };
  let current = read();
  let readAt = Date.now();
  const url = new URL(current.connection.server);
  const ca = current.connection.certificateAuthorityData
    ? Buffer.from(current.connection.certificateAuthorityData, 'base64')
    : undefined;
  const tls = {
    ...(ca ? { ca } : {}),
    ...(current.connection.tlsServerName ? { servername: current.connection.tlsServerName } : {}),
    rejectUnauthorized: !current.connection.insecureSkipTlsVerify,
  };
  return {
    name,
    hostname: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 443),
    host: url.host,
    ...tls,
    // Keep-alive pool: the TLS handshake is paid once per connection, not per request.
    agent: new Agent({ keepAlive: true, maxFreeSockets: 64, scheduling: 'lifo', ...tls }),
    streamAgent: new Agent({ keepAlive: false, ...tls }),
    token() {
      if (Date.now() - readAt > TOKEN_REREAD_MS) {
        try {
          current = read();
        } finally {
          readAt = Date.now();
        }
      }
      return current.token;
    },
  };
}
