/**
 * Clusters registered at run time (`kubevisa cluster add`), beside those of the start-up configuration. An added
 * cluster is checked first — its kubeconfig loads and carries a bearer token, the cluster answers, kubevisa's own
 * RBAC is installed there — and only then stored, its kubeconfig sealed by the secret box (the store never holds it
 * in clear, no API returns it, nothing logs it). From then on the reconciler, the gateway, monitoring and direct mode
 * see it as they see a configured one, without a restart; removing it stops them, after its granting visas were
 * revoked through the application layer (so each revoke is audited like any other).
 *
 * The store is the truth: `sync()` opens every registered cluster this process does not serve yet and drops those
 * gone, so a server restarted, or another replica on the same database, converges on the same set of clusters.
 */
import { readFile } from 'node:fs/promises';
import { createClusterClient, type ClusterClient } from '../cluster/client.ts';
import { connectionOf, loadKubeConfig, tokenKubeconfigYaml, type KubeconfigSource } from '../cluster/kubeconfig.ts';
import type { Caller } from '../app/caller.ts';
import type { AppEvents } from '../app/events.ts';
import type { VisaService } from '../app/visas.ts';
import type { SecretBox } from '../auth/secret-box.ts';
import type { Visa } from '../domain/model.ts';
import { Conflict, InvalidInput, KubevisaError, NotFound } from '../domain/errors.ts';
import type { Reconciler } from '../reconciler/reconciler.ts';
import type { RegisteredClusterRecord, Store } from '../store/store.ts';
import { tokenLife } from './credential-renewal.ts';

/** A DNS label: the name is a path segment of the gateway (`/clusters/<name>`) and a Kubernetes label value. */
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** How long `list` waits for a cluster to answer before it calls it unreachable, in ms. */
const PROBE_TIMEOUT_MS = 3000;
/** How long an add waits for the new cluster to answer each check, in ms. */
const ADD_TIMEOUT_MS = 10_000;
/** How long a removal waits for the reconciler to delete the revoked visas' bindings, in ms. */
const REMOVE_SETTLE_MS = 10_000;
/** Rounds of ending what a removal finds for the cluster, before it gives up and says to run it again. */
const REMOVE_ROUNDS = 3;

/** What `GET /api/v1/clusters/status` shows of one cluster: never a credential. */
export interface ClusterStatus {
  name: string;
  source: 'config' | 'registered';
  server: string;
  directMode: boolean;
  /** Whether the cluster answered kubevisa's own credential just now (SelfSubjectReview). */
  reachable: boolean;
  /** Why it did not answer, when it did not. */
  unreachableReason?: string;
  /** The reconciler's last pass over it: when it ended, and its error if it failed. */
  lastPass?: { finishedAt: string; error?: string };
  /** When kubevisa's credential for it expires (RFC 3339); absent when the credential does not say. */
  credentialExpiresAt?: string;
  registeredBy?: string;
  registeredAt?: string;
}

export interface ClusterRegistryOptions {
  store: Store;
  secretBox: SecretBox;
  /** The server's live map of managed clusters, shared with every capability: the registry adds to it and removes. */
  clusters: Map<string, ClusterClient>;
  /** The clusters of the start-up configuration, with their kubeconfig files: never registered nor removed here. */
  configured: ReadonlyMap<string, string>;
  /** The live set of clusters that allow direct mode, shared with the reconciler and the credential service. */
  directMode: Set<string>;
  reconciler: Reconciler;
  events: AppEvents;
  visas: VisaService;
  /** Builds a client (tests may shorten its timeouts); default `createClusterClient`. */
  createClient?: (name: string, kubeconfigYaml: string) => ClusterClient;
  now?: () => number;
  onError?: (cluster: string, error: Error) => void;
}

export class ClusterRegistry {
  readonly #o: ClusterRegistryOptions;
  readonly #now: () => number;
  /** Registered clusters this process serves, with their current kubeconfig (in memory only, never logged). */
  readonly #served = new Map<string, { kubeconfigYaml: string; record: RegisteredClusterRecord }>();
  #syncing: Promise<void> | undefined;

  constructor(options: ClusterRegistryOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Where the gateway reads a cluster's kubeconfig from (re-read after renewals): a file, or the unsealed text. */
  kubeconfigSource(name: string): KubeconfigSource | undefined {
    const file = this.#o.configured.get(name);
    if (file !== undefined) return { kubeconfigPath: file };
    const served = this.#served.get(name);
    return served && { kubeconfigYaml: served.kubeconfigYaml };
  }

  /** The current kubeconfig of a registered cluster, for credential renewal; undefined for any other. */
  registeredKubeconfig(name: string): string | undefined {
    return this.#served.get(name)?.kubeconfigYaml;
  }

  /** Stores a renewed credential (sealed) and serves it from now on. */
  async saveRenewedKubeconfig(name: string, kubeconfigYaml: string): Promise<void> {
    const served = this.#served.get(name);
    if (!served) return;
    const expiresAt = tokenLife(kubeconfigYaml)?.expiresAt;
    served.record = await this.#o.store.transaction((tx) =>
      tx.updateRegisteredClusterCredential(name, {
        sealedKubeconfig: this.#o.secretBox.seal(kubeconfigYaml),
        ...(expiresAt !== undefined ? { credentialExpiresAt: expiresAt } : {}),
        now: this.#now(),
      }),
    );
    served.kubeconfigYaml = kubeconfigYaml;
  }

  /** Serves every registered cluster not served yet, drops those no longer registered (coalesced). */
  sync(): Promise<void> {
    this.#syncing ??= this.#sync().finally(() => (this.#syncing = undefined));
    return this.#syncing;
  }

  async #sync(): Promise<void> {
    const records = await this.#o.store.listRegisteredClusters();
    const names = new Set(records.map((r) => r.name));
    for (const name of this.#served.keys()) if (!names.has(name)) this.#detach(name);
    for (const record of records) {
      if (this.#served.has(record.name)) continue;
      try {
        this.#attach(record, this.#o.secretBox.open(record.sealedKubeconfig));
      } catch (error) {
        this.#o.onError?.(record.name, error as Error);
      }
    }
  }

  /**
   * Checks and registers a cluster. Nothing is stored unless every check passed.
   * @throws InvalidInput (bad name, kubeconfig, unreachable cluster, kubevisa not installed there); Conflict (name
   *   taken by a configured or registered cluster).
   */
  async add(caller: Caller, input: { name: string; kubeconfig: string; directMode?: boolean }): Promise<ClusterStatus> {
    const { name } = input;
    if (!CLUSTER_NAME.test(name)) {
      throw new InvalidInput(
        `cluster name '${name}' is not allowed: use a DNS label (1–63 lower-case letters, digits or '-', e.g. edge-7)`,
      );
    }
    if (this.#o.configured.has(name)) {
      throw new Conflict(`cluster '${name}' is in the server's start-up configuration: register it under another name`);
    }
    if (this.#o.clusters.has(name) || (await this.#o.store.getRegisteredCluster(name))) {
      throw new Conflict(`cluster '${name}' is registered already: 'kubevisa cluster list' shows the clusters`);
    }
    const kubeconfigYaml = cleanTokenKubeconfig(name, input.kubeconfig);
    const client = this.#client(name, kubeconfigYaml);
    await checkReachableAndInstalled(client);
    const now = this.#now();
    const expiresAt = tokenLife(kubeconfigYaml)?.expiresAt;
    const record: RegisteredClusterRecord = {
      name,
      sealedKubeconfig: this.#o.secretBox.seal(kubeconfigYaml),
      directMode: input.directMode === true,
      registeredBy: caller.actor.email,
      registeredAt: now,
      ...(expiresAt !== undefined ? { credentialExpiresAt: expiresAt } : {}),
      updatedAt: now,
    };
    await this.#o.store.transaction(async (tx) => {
      await tx.insertRegisteredCluster(record);
      await tx.upsertCluster({
        name,
        server: client.server,
        ...(client.caData ? { caData: client.caData } : {}),
        credentialRef: 'registered',
        now,
      });
      await tx.appendAudit({
        at: now,
        actor: caller.actor.email,
        ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
        action: 'cluster.registered',
        cluster: name,
        outcome: 'ok',
        details: { server: client.server, directMode: record.directMode },
        ...(caller.source ? { source: caller.source } : {}),
      });
    });
    this.#attach(record, kubeconfigYaml, client);
    // The other replicas serve it at once too (replicas/fanout.ts), not at their next periodic read of the store.
    this.#o.events.emit('cluster-registry-changed');
    return (await this.status([name]))[0]!;
  }

  /**
   * Removes a registered cluster. With granting visas (approved or active) it refuses unless `force`, which revokes
   * each of them first as `caller` (audited as any revoke) and gives the reconciler a moment to delete their bindings.
   * Requests still pending for it are denied as `caller`.
   * @returns the visas revoked, the requests denied, and whether what kubevisa made there is known to be gone: a full
   *   pass ran first and left no intent pending (false when the cluster is away, the pass failed or this replica does
   *   not lead).
   */
  async remove(
    caller: Caller,
    name: string,
    options: { force?: boolean } = {},
  ): Promise<{ name: string; revoked: string[]; denied: string[]; bindingsRemoved: boolean }> {
    if (this.#o.configured.has(name)) {
      throw new InvalidInput(
        `cluster '${name}' comes from the server's start-up configuration: remove it there and restart the server`,
      );
    }
    if (!(await this.#o.store.getRegisteredCluster(name))) {
      throw new NotFound(`no registered cluster '${name}': 'kubevisa cluster list' shows the clusters`);
    }
    const revoked: string[] = [];
    const denied: string[] = [];
    let bindingsRemoved = true;
    // A request approved, or filed, while the removal runs (here or on another replica) would leave a binding in a
    // cluster nobody manages: the transaction that deletes the cluster looks again, and a round ends what it finds.
    for (let round = 1; ; round++) {
      const granting = await this.#granting(name);
      if (granting.length > 0 && options.force !== true) {
        throw new Conflict(
          `cluster '${name}' still has ${granting.length} granting visa(s) (${granting.map((v) => v.id).join(', ')}): revoke them, or remove it with --force, which revokes them first`,
          { details: { visas: granting.map((v) => v.id) } },
        );
      }
      for (const visa of granting) {
        try {
          await this.#o.visas.revoke(caller, visa.id, `cluster '${name}' removed from kubevisa`);
          revoked.push(visa.id);
        } catch (error) {
          // An extension ends with the visa it extends: it may have been revoked by the loop already.
          if (!(error instanceof KubevisaError && error.code === 'ERR_INVALID_TRANSITION')) throw error;
        }
      }
      // A request left pending would otherwise be approvable for a cluster nobody manages any more.
      for (const visa of await this.#o.store.listVisas({ cluster: name, state: 'requested' })) {
        try {
          await this.#o.visas.deny(caller, visa.id, `cluster '${name}' removed from kubevisa`);
          denied.push(visa.id);
        } catch (error) {
          if (!(error instanceof KubevisaError && error.code === 'ERR_INVALID_TRANSITION')) throw error;
        }
      }
      // Whatever a visa of this cluster may have left there goes in a full pass before the cluster stops being
      // managed, since no pass would ever visit it afterwards: the bindings of what was revoked here, of what ended
      // before (its expiry not carried out yet: the leader busy or down, the cluster unreachable) and of what was
      // revoked earlier while a delete failed, and the people's ServiceAccounts. Whatever the visas' states say: a
      // full pass deletes every kubevisa-labelled object nothing wants.
      let passed = false;
      if (this.#o.clusters.has(name)) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const pass = await Promise.race([
          this.#o.reconciler.reconcileNow(name).catch(() => undefined),
          new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), REMOVE_SETTLE_MS);
          }),
        ]);
        clearTimeout(timer);
        passed = pass !== undefined && pass.error === undefined;
      }
      // Without a pass (the cluster away or not served here, this replica not leading, the pass failed or too slow),
      // what kubevisa made there is known gone only if no visa ever granted anything there. A change recorded as
      // intended and not carried out (a delete that failed, a pass cut short) is not known done either way.
      const known =
        (passed || !(await this.#everGranted(name))) &&
        (await this.#o.store.listPendingIntents({ cluster: name })).length === 0;
      bindingsRemoved &&= known;
      let left: Visa[] = [];
      await this.#o.store
        .transaction(async (tx) => {
          // Deleted before looking: on PostgreSQL (READ COMMITTED) a visa filed or approved on any replica holds the
          // registration until it commits (VisaService holdCluster), so the deletion waits for it and the look below
          // sees it; one that comes later waits for this transaction and is refused. Found, it is all rolled back.
          await tx.deleteRegisteredCluster(name);
          await tx.deleteCluster(name);
          left = (await tx.listVisas({ cluster: name, states: ['requested', 'approved', 'active'] })).filter(
            (v) => v.state === 'requested' || v.notAfter > this.#now(),
          );
          if (left.length > 0) throw new StillOpen();
          await tx.appendAudit({
            at: this.#now(),
            actor: caller.actor.email,
            ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
            action: 'cluster.removed',
            cluster: name,
            outcome: 'ok',
            details: { force: options.force === true, revokedVisas: revoked, deniedRequests: denied, bindingsRemoved },
            ...(caller.source ? { source: caller.source } : {}),
          });
        })
        .catch((error: unknown) => {
          if (!(error instanceof StillOpen)) throw error;
        });
      if (left.length === 0) break;
      if (round >= REMOVE_ROUNDS) {
        throw new Conflict(
          `visas on cluster '${name}' kept being requested or approved while it was being removed (${left.map((v) => v.id).join(', ')}); it is still registered: run the removal again`,
          { details: { visas: left.map((v) => v.id) } },
        );
      }
    }
    this.#detach(name);
    this.#o.events.emit('cluster-registry-changed');
    return { name, revoked, denied, bindingsRemoved };
  }

  /** The cluster's visas that grant access now or later (approved or active, before their end). */
  async #granting(name: string): Promise<Visa[]> {
    const open = await this.#o.store.listVisas({ cluster: name, states: ['approved', 'active'] });
    return open.filter((v) => v.notAfter > this.#now());
  }

  /** Whether any visa of the cluster got as far as approved (and so may have had a binding and a ServiceAccount). */
  async #everGranted(name: string): Promise<boolean> {
    const granted = await this.#o.store.listVisas({
      cluster: name,
      states: ['approved', 'active', 'expired', 'revoked'],
    });
    return granted.length > 0;
  }

  /** Every managed cluster (or those named), probed now, at most PROBE_TIMEOUT_MS each and all at once. */
  async status(names?: readonly string[]): Promise<ClusterStatus[]> {
    const wanted = (names ?? [...this.#o.clusters.keys()]).filter((n) => this.#o.clusters.has(n)).sort();
    const passes = new Map(this.#o.reconciler.status().map((report) => [report.cluster, report]));
    return Promise.all(
      wanted.map(async (name): Promise<ClusterStatus> => {
        const client = this.#o.clusters.get(name)!;
        const served = this.#served.get(name);
        const answer = await probe(client);
        const pass = passes.get(name);
        const expiresAt = served ? served.record.credentialExpiresAt : await configuredExpiry(this.#o.configured, name);
        return {
          name,
          source: served ? 'registered' : 'config',
          server: client.server,
          directMode: this.#o.directMode.has(name),
          reachable: answer.ok,
          ...(answer.ok ? {} : { unreachableReason: answer.reason }),
          ...(pass
            ? {
                lastPass: {
                  finishedAt: new Date(pass.finishedAt).toISOString(),
                  ...(pass.error ? { error: pass.error } : {}),
                },
              }
            : {}),
          ...(expiresAt !== undefined ? { credentialExpiresAt: new Date(expiresAt).toISOString() } : {}),
          ...(served
            ? {
                registeredBy: served.record.registeredBy,
                registeredAt: new Date(served.record.registeredAt).toISOString(),
              }
            : {}),
        };
      }),
    );
  }

  #client(name: string, kubeconfigYaml: string): ClusterClient {
    // Every kubeconfig a client is made from, stored or renewed, passes the same check as an added one: the
    // store is not trusted to hold only what an add let through.
    const clean = cleanTokenKubeconfig(name, kubeconfigYaml);
    return this.#o.createClient
      ? this.#o.createClient(name, clean)
      : createClusterClient({ name, kubeconfigYaml: clean, requestTimeoutMs: ADD_TIMEOUT_MS });
  }

  #attach(record: RegisteredClusterRecord, kubeconfigYaml: string, client?: ClusterClient): void {
    if (this.#o.configured.has(record.name)) {
      throw new Conflict(`registered cluster '${record.name}' has the name of a configured one: it is not served`);
    }
    const cluster = client ?? this.#client(record.name, kubeconfigYaml);
    this.#served.set(record.name, { kubeconfigYaml, record });
    this.#o.clusters.set(record.name, cluster);
    if (record.directMode) this.#o.directMode.add(record.name);
    else this.#o.directMode.delete(record.name);
    this.#o.reconciler.addCluster(record.name, cluster);
    this.#o.events.emit('cluster-added', record.name);
  }

  #detach(name: string): void {
    if (!this.#served.delete(name)) return;
    this.#o.reconciler.removeCluster(name);
    this.#o.clusters.delete(name);
    this.#o.directMode.delete(name);
    this.#o.events.emit('cluster-removed', name);
  }
}

/** The checks of an add, each with an error that says what is wrong and what to do. */
async function checkReachableAndInstalled(client: ClusterClient): Promise<void> {
  const where = `cluster '${client.name}' at ${client.server}`;
  try {
    await client.whoAmI();
  } catch (error) {
    throw new InvalidInput(
      `${where} does not answer with the kubeconfig given: ${(error as Error).message}. Check the server address, its CA and that the token is current`,
      { cause: error },
    );
  }
  let own;
  try {
    own = await client.readOwnRbac();
  } catch (error) {
    throw new InvalidInput(
      `${where} answered, but kubevisa's own RBAC could not be read with this credential: ${(error as Error).message}. Give the kubeconfig 'kubevisa install' wrote`,
      { cause: error },
    );
  }
  const missing = Object.entries({
    'ClusterRole kubevisa:controller': own.clusterRole,
    'ClusterRoleBinding kubevisa:controller': own.clusterRoleBinding,
    'Role kubevisa-visas/kubevisa:visas': own.visasRole,
    'RoleBinding kubevisa-visas/kubevisa:visas': own.visasRoleBinding,
    'Role kubevisa-system/kubevisa:self-token': own.selfTokenRole,
    'RoleBinding kubevisa-system/kubevisa:self-token': own.selfTokenRoleBinding,
  })
    .filter(([, object]) => object === undefined)
    .map(([object]) => object);
  if (missing.length > 0) {
    throw new InvalidInput(
      `kubevisa is not installed in ${where}: ${missing.join(', ')} missing. Run 'kubevisa install --kubeconfig <admin kubeconfig>' there and register the kubeconfig it writes`,
      { details: { missing } },
    );
  }
}

async function probe(client: ClusterClient): Promise<{ ok: true } | { ok: false; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.whoAmI(),
      new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
      }),
    ]);
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: error instanceof KubevisaError ? error.message : (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

async function configuredExpiry(configured: ReadonlyMap<string, string>, name: string): Promise<number | undefined> {
  const file = configured.get(name);
  if (file === undefined) return undefined;
  try {
    return tokenLife(await readFile(file, 'utf8'))?.expiresAt;
  } catch {
    // A file that cannot be read is reported by the renewal and by every pass; the listing just leaves it out.
    return undefined;
  }
}

/**
 * The kubeconfig kubevisa keeps for a registered cluster, rebuilt from the one given: its https server, its CA as
 * data, and its bearer token, nothing else. Whatever else a kubeconfig can hold makes the server act on the admin's
 * behalf: an `exec` or `auth-provider` runs a command on every kubevisa server before each request (client-node runs
 * it even beside a token), and file paths (CA, client certificate and key, token file) read the server's own files.
 * Such a kubeconfig is refused, saying what to remove, rather than partly used.
 */
function cleanTokenKubeconfig(name: string, given: string): string {
  const kubeConfig = loadKubeConfig({ kubeconfigYaml: given }, name);
  const user = kubeConfig.getCurrentUser();
  const cluster = kubeConfig.getCurrentCluster();
  const refuse = (what: string) =>
    new InvalidInput(
      `cluster '${name}': the kubeconfig's ${what}; a registered cluster takes only an https server, its CA as ` +
        "certificate-authority-data and a bearer token (the kubeconfig 'kubevisa install' wrote for the cluster)",
      { details: { cluster: name } },
    );
  if (user === null || cluster === null) throw refuse('current context names no cluster or user');
  const u = user as unknown as Record<string, unknown>;
  const userExtras = ['exec', 'authProvider', 'certFile', 'keyFile', 'certData', 'keyData', 'username', 'password']
    .concat(['impersonateUser', 'impersonateGroups', 'tokenFile'])
    .filter((field) => u[field] !== undefined && u[field] !== null && u[field] !== '');
  if (userExtras.length > 0) throw refuse(`user has ${userExtras.join(', ')} (not allowed)`);
  if (typeof user.token !== 'string' || user.token === '') throw refuse('current user has no bearer token');
  if (!cluster.server.startsWith('https://')) throw refuse(`server ${cluster.server} is not https`);
  if (cluster.skipTLSVerify) throw refuse('cluster skips TLS verification (insecure-skip-tls-verify)');
  const c = cluster as unknown as Record<string, unknown>;
  const clusterExtras = ['caFile', 'proxyUrl'].filter((field) => c[field] !== undefined && c[field] !== '');
  if (clusterExtras.length > 0) throw refuse(`cluster has ${clusterExtras.join(', ')} (not allowed)`);
  const connection = connectionOf(kubeConfig, name);
  return tokenKubeconfigYaml({ clusterName: name, connection, token: user.token });
}

/** Thrown to roll back a removal's deleting transaction that found visas still open for the cluster. */
class StillOpen extends Error {}
