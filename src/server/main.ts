/**
 * The composition root: builds the store, keys, identity provider client, cluster clients, reconciler and
 * API from the configuration and hands them to each other. `startServer` is what `kubevisa server`, the demo
 * and the end-to-end tests run.
 */
import { mkdir } from 'node:fs/promises';
import { existsSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { LeaderElection } from '../leader/election.ts';
import { dirname } from 'node:path';
import { createTokenIssuer } from '../auth/access-tokens.ts';
import { createOidcRelyingParty } from '../auth/oidc-rp.ts';
import { loadOrCreateSigningKey } from '../auth/signing-key.ts';
import { createClusterClient, type ClusterClient } from '../cluster/client.ts';
import { startInClusterCredential, type InClusterCredential } from '../cluster/in-cluster.ts';
import { ensureKeyFolder } from '../pki/key-files.ts';
import { readTlsPair, reloadTlsOnChange, type SecureContextTarget } from '../pki/tls-reload.ts';
import { CredentialService, type DirectCluster } from '../app/credentials.ts';
import { PERSON_ID_ANNOTATION } from '../cluster/objects.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { Reconciler } from '../reconciler/reconciler.ts';
import { defaultSqlitePath, describeStore, openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { EngagementService } from '../app/engagements.ts';
import { AppEvents } from '../app/events.ts';
import { PeopleService } from '../app/people.ts';
import { SessionService } from '../app/sessions.ts';
import { VisaService } from '../app/visas.ts';
import { loadOrCreateSecretBox } from '../auth/secret-box.ts';
import { startFanout } from '../replicas/fanout.ts';
import { checkSharedKeys } from '../replicas/shared-keys.ts';
import type { ServerConfig } from './config.ts';
import { bearerAuthenticator, buildApi } from './http.ts';
import type { RawRoute, ServerContext } from './context.ts';
import { wireCapabilities, type Capabilities } from './extensions.ts';
import { assertPortFree } from './port.ts';
import { protectOwnNamespace } from './own-namespace.ts';
import { startCredentialRenewal } from './credential-renewal.ts';
import { ClusterRegistry } from './cluster-registry.ts';
import { declareClusterRoutes } from './cluster-routes.ts';

/** How often each server reads the registered clusters from the store (those another replica added or removed), ms. */
const REGISTRY_SYNC_INTERVAL_MS = 10_000;

export interface RunningServer {
  url: string;
  store: Store;
  reconciler: Reconciler;
  /** Whether this replica leads (runs the reconciler and the other leader-only loops), and the term. */
  leadership: LeaderElection;
  clusters: Map<string, ClusterClient>;
  /** Everything the capabilities were wired with (tests reach the services through it). */
  context: ServerContext;
  /** The wired capabilities' handles (tests and benchmarks reach the gateway, identity, audit, monitoring here). */
  capabilities: Capabilities;
  /** Renews kubevisa's own cluster credentials past half their life at `now` (a timer does it every 10 minutes). */
  renewClusterCredentials(now?: number): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startServer(
  config: ServerConfig,
  options: {
    onProgress?: (message: string) => void;
    /** Record this server's keys and public URL as the ones every server on the store must use (`--adopt-keys`). */
    adoptKeys?: boolean;
  } = {},
): Promise<RunningServer> {
  const progress = options.onProgress ?? (() => {});
  // Before anything else starts (the data folder, the store and its lock, the IdP, the reconciler): a taken port is
  // reported as such, naming who holds it.
  if (config.listen.port !== 0) await assertPortFree(config.listen.host, config.listen.port);
  // Read once, before anything starts: a key others could read is refused here, naming the file and what to run.
  const servingPair = config.tls ? await readTlsPair(config.tls) : undefined;
  // Refused before the store or any key is made in it: whoever could write it could swap a key.
  await ensureKeyFolder(config.dataDir, 'the data folder (dataDir)');
  const port = config.listen.port === 0 ? await freePort(config.listen.host) : config.listen.port;
  const scheme = config.tls ? 'https' : 'http';
  const url =
    config.publicUrl ??
    `${scheme}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;

  // Says where the state is, never a secret (the config holds only where the store's password comes from).
  progress(`opening the store: ${describeStore(config.store, defaultSqlitePath(config.dataDir))}`);
  const store = await openStore(config.store, { dataDir: config.dataDir, onNotice: progress });
  // Test builds only (fault tests): this process's wall clock runs this far ahead (or behind, negative), as a replica
  // whose clock is wrong would. Deadlines are judged by the database's clock (src/leader/), which this cannot move.
  const skew = process.env.KUBEVISA_FAULT === 'clock-skew' ? Number(process.env.KUBEVISA_FAULT_CLOCK_SKEW_MS) : 0;
  if (Number.isFinite(skew) && skew !== 0) {
    const realNow = Date.now;
    Date.now = () => realNow() + skew;
    progress(`fault injection: this process's clock is off by ${skew} ms`);
  }
  /** Set once built: the election's callbacks start and stop it. */
  let leaderWork: Reconciler | undefined;
  /** The first pass of the current term, for readiness (a leader is ready once it has enforced what fell due). */
  let termStart: Promise<void> | undefined;
  const election = new LeaderElection({
    leases: store.leases,
    holder: `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`,
    leaseMs: config.leader.leaseMs,
    renewEveryMs: config.leader.renewEveryMs,
    onElected: (epoch) => {
      if (!store.leases.exclusive) progress(`leading as epoch ${epoch}: reconciling every cluster now`);
      // A full pass at once: every deadline that fell while no one led is enforced now.
      termStart = leaderWork?.start().catch((error: unknown) => {
        process.stderr.write(
          `kubevisa: the first reconcile pass of epoch ${epoch} failed (it is retried): ${String(error)}\n`,
        );
      });
    },
    onDeposed: (epoch, why) => {
      leaderWork?.stop();
      process.stderr.write(`kubevisa: no longer leading (epoch ${epoch}): ${why}; following\n`);
    },
    onError: (error) => process.stderr.write(`kubevisa: leader election: ${error.message}\n`),
  });
  try {
    // Every instant this server decides by (visa windows, token times, sessions, audit) is the database's: replicas
    // whose clocks disagree still agree on when access ends. Read before anything is decided.
    await election.syncClock();
    const clock = () => election.databaseNow();
    const now = clock();
    await store.transaction(async (tx) => {
      for (const profile of SHIPPED_PROFILES) {
        if (!(await tx.getProfile(profile.name))) await tx.upsertProfile(profile);
      }
    });
    const signingKey = await loadOrCreateSigningKey(config.dataDir);
    const tokens = createTokenIssuer({
      issuer: url,
      audience: 'kubevisa',
      signingKey: signingKey.privateKey,
      keyId: signingKey.keyId,
    });
    const secretBox = await loadOrCreateSecretBox(config.dataDir);
    // Servers sharing the store must verify each other's tokens and open each other's sealed secrets.
    await checkSharedKeys(
      store,
      { signingKeyId: signingKey.keyId, secretBoxKeyId: secretBox.keyId, issuer: config.publicUrl ?? '' },
      { now, ...(options.adoptKeys === true ? { adopt: true } : {}) },
    );
    progress(`connecting to the identity provider ${config.oidc.issuer}`);
    const rp = await createOidcRelyingParty({
      issuerUrl: config.oidc.issuer,
      clientId: config.oidc.clientId,
      ...(config.oidc.clientSecret ? { clientSecret: config.oidc.clientSecret } : {}),
      redirectUri: `${url}/api/v1/login/callback`,
      ...(config.oidc.scopes ? { scopes: config.oidc.scopes } : {}),
      ...(config.oidc.emailClaim ? { emailClaim: config.oidc.emailClaim } : {}),
      ...(config.oidc.groupsClaim ? { groupsClaim: config.oidc.groupsClaim } : {}),
      allowInsecureHttpForLoopback: config.oidc.allowInsecureHttp === true,
      emailsVerifiedByIdp: config.oidc.emailsVerifiedByIdp === true,
      now: clock,
    });

    const clusters = new Map<string, ClusterClient>();
    const inCluster = await startInClusterCredentials(config, clusters);
    for (const c of config.clusters) {
      // Every write carries this replica's term (src/cluster/fencing.ts): one from a deposed leader is refused.
      const client = createClusterClient({
        name: c.name,
        kubeconfigPath: c.kubeconfig,
        fencingEpoch: () => election.currentEpoch(),
      });
      clusters.set(c.name, client);
      const { server, certificateAuthorityData } = client.connection;
      await store.transaction((tx) =>
        tx.upsertCluster({
          name: c.name,
          server,
          ...(certificateAuthorityData ? { caData: certificateAuthorityData } : {}),
          credentialRef: c.kubeconfig,
          now,
        }),
      );
    }
    const policy = protectOwnNamespace(config.policy);
    // Live: a cluster registered at run time with --direct-mode joins it (cluster-registry.ts).
    const directModeClusters = new Set(config.clusters.filter((c) => c.directMode === true).map((c) => c.name));
    const lastPassError = new Map<string, string | undefined>();
    const events = new AppEvents();
    const reconciler = new Reconciler({
      allowsDirectMode: (name) => directModeClusters.has(name),
      protectedNamespaces: policy.protectedNamespaces ?? [],
      store,
      clusters,
      resyncIntervalMs: config.resyncIntervalMs,
      crashAfterIntent: process.env.KUBEVISA_FAULT === 'crash-after-intent',
      ...(process.env.KUBEVISA_FAULT === 'stop-before-write' && process.env.KUBEVISA_FAULT_FILE
        ? { beforeWrites: stopBeforeWriteWhenArmed(process.env.KUBEVISA_FAULT_FILE) }
        : {}),
      // A failing pass is retried; the log says so once per distinct failure, not at every retry.
      // Full passes and deadline passes apart, so one kind's successes do not repeat the other kind's failure.
      onPass: (report) => {
        events.emit('reconcile-pass', {
          cluster: report.cluster,
          kind: report.kind ?? 'full',
          ...(report.error !== undefined ? { error: report.error } : {}),
        });
        const key = `${report.kind ?? 'full'} ${report.cluster}`;
        const previous = lastPassError.get(key);
        if (report.error !== undefined && report.error !== previous) {
          const what =
            report.kind === 'deadlines'
              ? 'expiring visas in'
              : report.kind === 'visas'
                ? 'converging changed visas in'
                : 'reconciling';
          process.stderr.write(`kubevisa: ${what} cluster '${report.cluster}' failed (retried): ${report.error}\n`);
        }
        lastPassError.set(key, report.error);
      },
      // Deadlines by the database's clock: a replica whose clock is off expires nothing late.
      now: clock,
      leadership: {
        isLeader: () => election.isLeader(),
        // One process by construction (SQLite) has no one to fence against.
        ...(store.leases.exclusive ? {} : { fenceEpoch: () => election.currentEpoch() }),
        onFenced: (error) => election.stepDownNow(`a cluster refused a write as fenced: ${error.message}`),
      },
    });
    leaderWork = reconciler;
    // A commit's visa ids are carried (replicas/fanout.ts) but each commit still asks for full passes: with visa passes,
    // a leader stopped before its writes and resumed after a takeover (test/replicas-leader.test.ts, SIGSTOP) was
    // seen, about one run in seven, never to report the fenced refusal of its late write, nor anything else after
    // SIGCONT; not understood yet. Activations at notBefore use visa passes.
    events.on('clusters-changed', (names) => reconciler.kick(names));
    // Changes other replicas announced may be lost (the feed broke, or overflowed): every cluster is compared in full.
    events.on('changes-missed', () => reconciler.kick([...clusters.keys()]));
    const ports = {
      store,
      policy,
      clusterNames: () => [...clusters.keys()],
      configuredClusters: new Set(config.clusters.map((c) => c.name)),
      events,
      now: clock,
    };
    const visas = new VisaService(ports);
    const engagements = new EngagementService(ports);
    const people = new PeopleService(ports);
    // What this process announces reaches the other server processes on the same store, and theirs reach it.
    // Started before the gateway (the capabilities below): its listener sends ended visas before the gateway's cuts
    // this process's streams, which can take a second, so the others cut theirs meanwhile.
    // Signed with a key only the replicas hold (derived from the shared session encryption key, whose id every
    // replica checks at start): a role that can NOTIFY on the database cannot make a replica act on anything.
    const changeFeed = store.openChangeFeed({ key: secretBox.deriveKey('change feed'), now: clock });
    const fanout = startFanout({
      events,
      feed: changeFeed,
      store,
      now: clock,
      deaf: process.env.KUBEVISA_FAULT === 'deaf-to-replicas',
    });
    const sessions = new SessionService({
      store,
      rp,
      tokens,
      secretBox,
      config,
      now: clock,
      onSessionEnded: (sessionId) => events.emit('session-ended', sessionId),
    });
    // A direct token never outlives the session it was issued under: the person's are ended with it by whichever
    // replica leads, whether the session ended here or on another replica (heard through the change feed; a
    // follower only keeps the request, which it carries out if it comes to lead).
    events.on('session-ended', (sessionId) => {
      void store
        .getSession(sessionId)
        .then((session) => session && reconciler.endDirectTokens(session.personId, `session ${sessionId} ended`))
        .catch((error: unknown) =>
          process.stderr.write(
            `kubevisa: ending the direct tokens of session ${sessionId} failed (the next reconcile pass retries): ${error instanceof Error ? error.message : String(error)}\n`,
          ),
        );
    });

    const credentials = new CredentialService({
      store: {
        listVisas: (filter) => store.listVisas(filter),
        getProfile: (profileName) => store.getProfile(profileName),
        getSession: (id) => store.getSession(id),
        appendAudit: async (event) => {
          await store.transaction((tx) => tx.appendAudit(event));
        },
      },
      cluster: (name) => {
        const cluster = clusters.get(name);
        return cluster && directClusterOf(cluster, directModeClusters.has(name));
      },
      reconciler,
      now: clock,
    });
    const clusterRegistry = new ClusterRegistry({
      store,
      secretBox,
      clusters,
      configured: new Map(config.clusters.map((c) => [c.name, c.kubeconfig])),
      directMode: directModeClusters,
      reconciler,
      events,
      visas,
      now: clock,
      // Registered clusters' writes are fenced like configured ones' (src/cluster/fencing.ts).
      createClient: (name, kubeconfigYaml) =>
        createClusterClient({
          name,
          kubeconfigYaml,
          requestTimeoutMs: 10_000,
          fencingEpoch: () => election.currentEpoch(),
        }),
      onError: (cluster, error) =>
        process.stderr.write(`kubevisa: serving registered cluster '${cluster}' failed: ${error.message}\n`),
    });
    await clusterRegistry.sync();
    const renewal = startCredentialRenewal({
      clusters,
      registered: {
        kubeconfigOf: (name) => clusterRegistry.registeredKubeconfig(name),
        save: async (name, kubeconfigYaml) => clusterRegistry.saveRenewedKubeconfig(name, kubeconfigYaml),
      },
      // In-cluster credentials are renewed by the kubelet, never by kubevisa.
      kubeconfigFiles: new Map(config.clusters.filter((c) => !c.inCluster).map((c) => [c.name, c.kubeconfig])),
      store,
      onError: (cluster, error) =>
        process.stderr.write(
          `kubevisa: renewing kubevisa's credential for cluster '${cluster}' failed: ${error.message}\n`,
        ),
    });
    void renewal.renewDue();
    const rawRoutes: RawRoute[] = [];
    const role = () => {
      const status = election.status();
      return { role: status.role, epoch: status.epoch };
    };
    const { app, router } = await buildApi({
      role,
      rawRoutes,
      visas,
      engagements,
      people,
      sessions,
      credentials,
      profiles: () => store.listProfiles(),
      clusters: () =>
        [...clusters.values()].map((c) => ({
          name: c.name,
          server: c.connection.server,
          ...(c.connection.certificateAuthorityData ? { caData: c.connection.certificateAuthorityData } : {}),
          directMode: directModeClusters.has(c.name),
        })),
      ...(servingPair ? { https: servingPair } : {}),
    });
    const stops: (() => Promise<void> | void)[] = [
      () => inCluster.forEach((credential) => credential.stop()),
      async () => {
        await fanout.stop();
        await changeFeed.close();
      },
    ];
    const context: ServerContext = {
      config,
      url,
      now: clock,
      store,
      clusters,
      protectedNamespaces: policy.protectedNamespaces ?? [],
      reconciler,
      clusterRegistry,
      leadership: election,
      visas,
      engagements,
      people,
      sessions,
      credentials,
      tokens,
      events,
      app,
      route: (spec) => router.route(spec),
      declarePrefix: (declaration) => router.declarePrefix(declaration),
      authenticate: bearerAuthenticator(sessions),
      addRawRoute: (route) => rawRoutes.push(route),
      onStop: (stop) => stops.push(stop),
    };
    const capabilities = await wireCapabilities(context);
    declareClusterRoutes(context, clusterRegistry);
    // Another replica on the same store may register or remove clusters: each converges on the store's list.
    // A store that does not answer (an outage, a partition) fails a read; it must not end the process.
    const syncRegistry = () =>
      void clusterRegistry
        .sync()
        .catch((error: unknown) =>
          process.stderr.write(
            `kubevisa: reading the registered clusters failed (retried in ${REGISTRY_SYNC_INTERVAL_MS / 1000} s): ${error instanceof Error ? error.message : String(error)}\n`,
          ),
        );
    const registrySync = setInterval(syncRegistry, REGISTRY_SYNC_INTERVAL_MS);
    registrySync.unref();
    // Another replica registered or removed one: read the list now (a lost notification waits for the interval).
    events.on('cluster-registry-changed', syncRegistry);
    stops.push(() => clearInterval(registrySync));
    // Offboarding is the identity capability's (it proves every step with a live call: the receipt).
    router.route({
      method: 'POST',
      url: '/api/v1/persons/:id/offboard',
      summary: 'Offboard a person: revoke everything, delete their identities, end their sessions (admins)',
      auth: 'admin',
      refusal: 'offboard a person',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['reason'],
        properties: { reason: { type: 'string', minLength: 1, maxLength: 500 } },
      },
      handler: async (request, _reply, caller) =>
        capabilities.identity.offboardByAdmin(
          caller,
          (request.params as { id: string }).id,
          (request.body as { reason: string }).reason,
        ),
    });
    // Kubernetes' readiness probe: ready once this replica knows its role (and, leading, has run its first pass) and
    // while the store answers. The role is in the answer, so a probe shows which replica leads.
    let started = false;
    app.get('/readyz', async (_request, reply) => {
      if (!started) return reply.code(503).send({ status: 'starting', ...role() });
      await store.listProfiles();
      return { status: 'ready', ...role() };
    });
    await app.listen({ host: config.listen.host, port });
    if (config.tls && servingPair) {
      stops.push(reloadServingCertificate(app.server as unknown as SecureContextTarget, config.tls, servingPair));
    }
    progress(`claiming the leader lease (${clusters.size} cluster(s) to reconcile)`);
    await election.start();
    await termStart;
    started = true;
    progress(
      election.isLeader()
        ? `leading (epoch ${election.currentEpoch()})`
        : `following (${election.status().holder} leads, epoch ${election.status().epoch})`,
    );
    progress(`kubevisa server listening on ${url}`);
    return {
      url,
      store,
      reconciler,
      leadership: election,
      clusters,
      context,
      capabilities,
      renewClusterCredentials: (now) => renewal.renewDue(now),
      async stop() {
        renewal.stop();
        reconciler.stop();
        // Ends the term in the store, so another replica takes over at its next claim instead of after the lease.
        await election.stop();
        for (const stop of stops.reverse()) await stop();
        await app.close();
        await store.close();
      },
    };
  } catch (error) {
    await election.stop();
    await store.close();
    throw error;
  }
}

/**
 * Fault injection (fencing tests): when `file` exists, it is removed and this process stops itself (SIGSTOP) right
 * before a phase's cluster writes, as a leader that pauses between its checks and its writes; SIGCONT resumes it.
 */
function stopBeforeWriteWhenArmed(file: string): () => void {
  return () => {
    if (!existsSync(file)) return;
    unlinkSync(file);
    // Written synchronously: a pipe's asynchronous write would still be queued when the process stops.
    writeSync(2, 'kubevisa: fault injection: stopped before writing\n');
    process.kill(process.pid, 'SIGSTOP');
  };
}

/** A managed cluster as direct-mode credentials see it (app/credentials.ts). */
function directClusterOf(cluster: ClusterClient, allowsDirectMode: boolean): DirectCluster {
  return {
    allowsDirectMode,
    serviceAccount: async (name) => {
      const account = await cluster.getServiceAccount(name);
      return account && { holder: account.metadata.annotations[PERSON_ID_ANNOTATION], uid: account.metadata.uid ?? '' };
    },
    recordDirectTokens: (name, uid, until) => cluster.recordDirectTokens(name, uid, until),
    mintToken: (name, seconds) => cluster.createServiceAccountToken(name, seconds),
  };
}

/** Writes each in-cluster cluster's kubeconfig from the pod's ServiceAccount and keeps it current (in-cluster.ts). */
async function startInClusterCredentials(config: ServerConfig, clusters: Map<string, ClusterClient>) {
  const started: InClusterCredential[] = [];
  for (const c of config.clusters) {
    if (!c.inCluster) continue;
    await mkdir(dirname(c.kubeconfig), { recursive: true, mode: 0o700 });
    started.push(
      await startInClusterCredential({
        clusterName: c.name,
        file: c.kubeconfig,
        source: c.inCluster,
        onRenewed: (token) => clusters.get(c.name)?.useToken(token),
        onError: (error) =>
          process.stderr.write(
            `kubevisa: reading the renewed ServiceAccount token for '${c.name}' failed: ${error.message}\n`,
          ),
      }),
    );
  }
  return started;
}

/** A certificate renewed in place (cert-manager, a Service CA) is served without a restart (pki/tls-reload.ts). */
function reloadServingCertificate(
  server: SecureContextTarget,
  tls: { certFile: string; keyFile: string },
  initial: { cert: Buffer; key: Buffer },
) {
  const reload = reloadTlsOnChange({
    server,
    certFile: tls.certFile,
    keyFile: tls.keyFile,
    initial,
    onError: (error) =>
      process.stderr.write(
        `kubevisa: warning: the TLS certificate and key on disk are not served; the server keeps the pair it has (checked again in 10 s): ${error.message}\n`,
      ),
  });
  return () => reload.stop();
}

async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
