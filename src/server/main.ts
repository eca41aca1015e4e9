/**
 * The composition root: builds the store, keys, identity provider client, cluster clients, reconciler and
 * API from the configuration and hands them to each other. `startServer` is what `kubevisa server`, the demo
 * and the end-to-end tests run.
 */
import { mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createTokenIssuer } from '../auth/access-tokens.ts';
import { createOidcRelyingParty } from '../auth/oidc-rp.ts';
import { loadOrCreateSigningKey } from '../auth/signing-key.ts';
import { createClusterClient, type ClusterClient } from '../cluster/client.ts';
import { Conflict, Forbidden, NotFound } from '../domain/errors.ts';
import { PERSON_ID_ANNOTATION } from '../cluster/objects.ts';
import { serviceAccountName } from '../domain/names.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { Reconciler } from '../reconciler/reconciler.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { AccessService, type Caller } from './access-service.ts';
import type { ServerConfig } from './config.ts';
import { bearerAuthenticator, buildApi } from './http.ts';
import { ServerEvents, type RawRoute, type ServerContext } from './context.ts';
import { extensions } from './extensions.ts';
import { identityOf } from '../identity/wire.ts';
import { loadOrCreateSecretBox } from './secret-box.ts';
import { SessionService } from './session-service.ts';
import { startCredentialRenewal } from './credential-renewal.ts';

export interface RunningServer {
  url: string;
  store: Store;
  reconciler: Reconciler;
  clusters: Map<string, ClusterClient>;
  /** Everything the capabilities were wired with (tests reach the services through it). */
  context: ServerContext;
  /** Renews kubevisa's own cluster credentials past half their life at `now` (a timer does it every 10 minutes). */
  renewClusterCredentials(now?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** Direct-mode tokens live at least 10 minutes (TokenRequest's floor) and at most an hour. */
const MIN_TOKEN_SECONDS = 600;
const MAX_TOKEN_SECONDS = 3600;

export async function startServer(
  config: ServerConfig,
  options: { onProgress?: (message: string) => void } = {},
): Promise<RunningServer> {
  const progress = options.onProgress ?? (() => {});
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const port = config.listen.port === 0 ? await freePort(config.listen.host) : config.listen.port;
  const scheme = config.tls ? 'https' : 'http';
  const url =
    config.publicUrl ??
    `${scheme}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;

  const store = await openSqliteStore({ path: config.store.path ?? join(config.dataDir, 'kubevisa.db') });
  try {
    const now = Date.now();
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
    });

    const clusters = new Map<string, ClusterClient>();
    for (const c of config.clusters) {
      const client = createClusterClient({ name: c.name, kubeconfigPath: c.kubeconfig });
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
    const renewal = startCredentialRenewal({
      clusters,
      kubeconfigFiles: new Map(config.clusters.map((c) => [c.name, c.kubeconfig])),
      store,
      onError: (cluster, error) =>
        process.stderr.write(
          `kubevisa: renewing kubevisa's credential for cluster '${cluster}' failed: ${error.message}\n`,
        ),
    });
    void renewal.renewDue();
    const reconciler = new Reconciler({
      store,
      clusters,
      resyncIntervalMs: config.resyncIntervalMs,
      crashAfterIntent: process.env.KUBEVISA_FAULT === 'crash-after-intent',
    });
    const events = new ServerEvents();
    events.on('clusters-changed', (names) => reconciler.kick(names));
    const access = new AccessService({
      store,
      policy: config.policy,
      clusterNames: () => [...clusters.keys()],
      onClustersChanged: (names) => {
        events.emit('clusters-changed', names);
        events.emit('visas-changed');
      },
      onVisasEnded: (visas, reason) => events.emit('visas-ended', visas, reason),
      onPersonDeprovisioned: (person, reason) => events.emit('person-deprovisioned', person, reason),
    });
    const sessions = new SessionService({
      store,
      rp,
      tokens,
      secretBox,
      config,
      onSessionEnded: (sessionId) => events.emit('session-ended', sessionId),
    });

    // The identity lifecycle (src/identity) offboards and proves every step with a live call (the receipt).
    const offboard = (caller: Caller, idOrEmail: string, reason: string) =>
      identityOf(context).offboardByAdmin(caller, idOrEmail, reason);

    const issueClusterCredential = async (caller: Caller, name: string) => {
      const cluster = clusters.get(name);
      if (!cluster) throw new NotFound(`no cluster '${name}': 'kubevisa clusters' lists them`);
      const now = Date.now();
      const visas = (await store.listVisasGrantingAt(now)).filter(
        (v) => v.cluster === name && v.personId === caller.actor.personId,
      );
      if (visas.length === 0) {
        throw new Forbidden(
          `${caller.actor.email} has no active visa on cluster '${name}': request one with 'kubevisa request --cluster ${name} …'`,
        );
      }
      const remainingSeconds = Math.ceil((Math.max(...visas.map((v) => v.notAfter)) - now) / 1000);
      const seconds = Math.min(MAX_TOKEN_SECONDS, Math.max(MIN_TOKEN_SECONDS, remainingSeconds));
      const saName = serviceAccountName(caller.actor.email);
      await reconciler.whenSettled(name);
      // The token is only minted for a ServiceAccount made for this person. One approved a moment ago may not exist
      // yet, and after an email changed hands one of this name may still be the previous holder's until the
      // reconciler re-makes it: converge once, then refuse rather than hand out someone else's identity.
      const ownsServiceAccount = async () =>
        (await cluster.listManagedServiceAccounts()).find((sa) => sa.metadata.name === saName)?.metadata.annotations?.[
          PERSON_ID_ANNOTATION
        ] === caller.actor.personId;
      if (!(await ownsServiceAccount())) {
        await reconciler.reconcileNow(name);
        if (!(await ownsServiceAccount())) {
          throw new Conflict(
            `your ServiceAccount on cluster '${name}' is not ready yet; retry in a few seconds (kubectl does on its own)`,
          );
        }
      }
      const issued = await cluster.createServiceAccountToken(saName, seconds);
      await store.transaction((tx) =>
        tx.appendAudit({
          at: now,
          actor: caller.actor.email,
          ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
          action: 'credential.issued',
          cluster: name,
          personId: caller.actor.personId,
          outcome: 'ok',
          details: { mode: 'direct', expirationSeconds: seconds, expirationTimestamp: issued.expirationTimestamp },
          ...(caller.source ? { source: caller.source } : {}),
        }),
      );
      return { token: issued.token, expirationTimestamp: new Date(issued.expirationTimestamp).toISOString() };
    };

    const rawRoutes: RawRoute[] = [];
    const app = await buildApi({
      rawRoutes,
      access,
      sessions,
      profiles: () => store.listProfiles(),
      clusters: () =>
        [...clusters.values()].map((c) => ({
          name: c.name,
          server: c.connection.server,
          ...(c.connection.certificateAuthorityData ? { caData: c.connection.certificateAuthorityData } : {}),
        })),
      issueClusterCredential,
      offboard,
      ...(config.tls
        ? { https: { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) } }
        : {}),
    });
    const stops: (() => Promise<void> | void)[] = [];
    const context: ServerContext = {
      config,
      url,
      store,
      clusters,
      reconciler,
      access,
      sessions,
      tokens,
      events,
      app,
      authenticate: bearerAuthenticator(sessions),
      addRawRoute: (route) => rawRoutes.push(route),
      onStop: (stop) => stops.push(stop),
    };
    for (const wire of extensions) await wire(context);
    await app.listen({ host: config.listen.host, port });
    progress(`reconciling ${clusters.size} cluster(s)`);
    await reconciler.start();
    progress(`kubevisa server listening on ${url}`);
    return {
      url,
      store,
      reconciler,
      clusters,
      context,
      renewClusterCredentials: (now) => renewal.renewDue(now),
      async stop() {
        renewal.stop();
        reconciler.stop();
        for (const stop of stops.reverse()) await stop();
        await app.close();
        await store.close();
      },
    };
  } catch (error) {
    await store.close();
    throw error;
  }
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
