/**
 * Installing kubevisa into a cluster: run once with an admin's kubeconfig (and again to add profiles). It creates
 * or replaces kubevisa's namespaces, the profile ClusterRoles and kubevisa's own least-privilege RBAC, then issues
 * a token for kubevisa's ServiceAccount and returns a kubeconfig with it. From then on kubevisa never uses the
 * admin's credential; it renews its own token through the `kubevisa:self-token` Role (`renewOwnToken`).
 *
 * kubevisa's RBAC includes `update` and `escalate` on exactly the installed profile ClusterRoles, so the
 * reconciler can restore a profile widened by hand; why that and nothing less or more: `kubevisaControllerRbac`
 * in objects.ts and docs/security.md ("kubevisa's own cluster credential").
 */
import type { KubevisaError } from '../domain/errors.ts';
import type { Instant, Profile } from '../domain/model.ts';
import { createClusterClient, validateTokenSeconds, type ClusterClient } from './client.ts';
import { ClusterRequestFailed, InstalledByHelm } from './errors.ts';
import { connectionOf, loadKubeConfig, tokenKubeconfigYaml } from './kubeconfig.ts';
import {
  CONTROLLER_CLUSTER_ROLE,
  CONTROLLER_USERNAME,
  PROFILE_CLUSTER_ROLE_SELECTOR,
  PROFILE_LABEL,
  SYSTEM_NAMESPACE,
  VISA_ROLE_BINDING_SELECTOR,
  controllerServiceAccount,
  kubevisaControllerRbac,
  kubevisaNamespaces,
  profileClusterRole,
  type ClusterRole,
  type ClusterRoleBinding,
  type Namespace,
  type Role,
  type RoleBinding,
  type ServiceAccount,
} from './objects.ts';
import {
  FENCING_POLICY,
  fencingPolicy,
  fencingPolicyBinding,
  type ValidatingAdmissionPolicy,
  type ValidatingAdmissionPolicyBinding,
} from './fencing.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, kubernetesStatusOf, makeApis, toClusterError, type Apis } from './transport.ts';

/** Default lifetime of kubevisa's own token, in seconds (one day); kubevisa renews it well before. */
export const DEFAULT_OWN_TOKEN_SECONDS = 86_400;

export interface InstallOptions {
  /** A kubeconfig with cluster-admin rights; used for this call only. */
  adminKubeconfigPath: string;
  /** kubevisa's name for the cluster: names the context in the returned kubeconfig and appears in messages. */
  clusterName: string;
  /** Profiles to install as `kubevisa:profile:<name>`; kubevisa may bind exactly these. Each is linted first. */
  profiles: readonly Profile[];
  /** Lifetime of kubevisa's token, in seconds (default 86400): an integer ≥ 600, never 3607. */
  tokenSeconds?: number;
  /** Progress messages for people (default: none). Never carries a credential. */
  onProgress?: (message: string) => void;
  /** Each request is aborted after this many milliseconds (default 10000). */
  requestTimeoutMs?: number;
}

export interface InstallResult {
  /**
   * A kubeconfig for the same server and CA that authenticates as system:serviceaccount:kubevisa-system:kubevisa.
   * It holds a credential: store it with mode 0600 and never log it.
   */
  kubeconfigYaml: string;
  /** When the token in it expires, epoch milliseconds (UTC). */
  expirationTimestamp: Instant;
  /** Names of the profile ClusterRoles installed (and bindable by kubevisa). */
  profileClusterRoles: string[];
}

/**
 * Installs (or updates) kubevisa in a cluster. Idempotent: objects that exist are replaced with what this
 * version wants, so re-running with more profiles widens the `bind` list to exactly those profiles. Profile
 * ClusterRoles no longer listed are left in place (visas may still use them) and reported through onProgress.
 * @throws RiskyProfile or InvalidInput before anything is changed when a profile or the token lifetime is
 *   refused; cluster errors (errors.ts) when the admin's credential cannot do the work.
 */
export async function installKubevisa(options: InstallOptions): Promise<InstallResult> {
  const { clusterName } = options;
  const progress = options.onProgress ?? (() => {});
  const tokenSeconds = options.tokenSeconds ?? DEFAULT_OWN_TOKEN_SECONDS;
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;

  // Everything that can be refused is checked before the cluster is touched.
  validateTokenSeconds(tokenSeconds);
  const wanted = installObjects(options.profiles);

  const source = { kubeconfigPath: options.adminKubeconfigPath };
  const kubeConfig = loadKubeConfig(source, clusterName);
  const connection = connectionOf(kubeConfig, clusterName);
  const apis = makeApis(kubeConfig, timeoutMs);
  const objects = new AdminObjects(apis, clusterName, connection.server, timeoutMs);

  const installedNames = new Set<string>();
  for (const object of wanted) {
    const where = object.metadata.namespace === undefined ? '' : `${object.metadata.namespace}/`;
    const label = `${object.kind} ${where}${object.metadata.name}`;
    switch (object.kind) {
      case 'Namespace':
        progress(
          `${label} ${(await objects.ensureNamespace(object.metadata.name, object.metadata.labels)) ? 'created' : 'already there'}`,
        );
        break;
      case 'ClusterRole':
        progress(`${label} ${await objects.applyClusterRole(object)}`);
        if (object.metadata.labels[PROFILE_LABEL] !== undefined) installedNames.add(object.metadata.name);
        break;
      case 'ClusterRoleBinding':
        progress(`${label} ${await objects.applyClusterRoleBinding(object)}`);
        break;
      case 'Role':
        progress(`${label} ${await objects.applyRole(object)}`);
        break;
      case 'RoleBinding':
        progress(`${label} ${await objects.applyRoleBinding(object)}`);
        break;
      case 'ServiceAccount':
        progress(`${label} ${(await objects.ensureServiceAccount(object)) ? 'created' : 'already there'}`);
        break;
      case 'ValidatingAdmissionPolicy':
      case 'ValidatingAdmissionPolicyBinding':
        progress(`${label} ${await objects.applyAdmissionPolicy(object)}`);
        break;
    }
  }
  for (const leftover of await objects.listProfileClusterRoles()) {
    if (!installedNames.has(leftover)) {
      progress(
        `ClusterRole ${leftover} is not in this install's profiles: left in place, kubevisa can no longer bind it`,
      );
    }
  }

  // The admin issues kubevisa's first token; every later one kubevisa gets for itself.
  const admin = createClusterClient({ name: clusterName, ...source, requestTimeoutMs: timeoutMs });
  const issued = await admin.createOwnToken(tokenSeconds);
  const kubeconfigYaml = tokenKubeconfigYaml({ clusterName, connection, token: issued.token });
  progress(
    `token for ${CONTROLLER_USERNAME} issued, valid until ${new Date(issued.expirationTimestamp).toISOString()}`,
  );

  // Proof that the credential handed back works and is who it should be, before anyone stores it.
  const own = createClusterClient({ name: clusterName, kubeconfigYaml, requestTimeoutMs: timeoutMs });
  const { username } = await own.whoAmI();
  if (username !== CONTROLLER_USERNAME) {
    throw new ClusterRequestFailed(
      `cluster '${clusterName}' authenticated kubevisa's new token as '${username}', not ${CONTROLLER_USERNAME}`,
      { details: { cluster: clusterName, username } },
    );
  }
  progress(`cluster '${clusterName}' accepts the token as ${username}`);
  return {
    kubeconfigYaml,
    expirationTimestamp: issued.expirationTimestamp,
    profileClusterRoles: [...installedNames].sort(),
  };
}

/** One object kubevisa's installation puts in a cluster. */
export type InstallObject =
  | Namespace
  | ClusterRole
  | ClusterRoleBinding
  | Role
  | RoleBinding
  | ServiceAccount
  | ValidatingAdmissionPolicy
  | ValidatingAdmissionPolicyBinding;

/**
 * Everything an installation puts in a cluster, in the order it is applied: kubevisa's namespaces, the profile
 * ClusterRoles, kubevisa's own least-privilege RBAC and its ServiceAccount, and the fencing policy that lets
 * kube-apiserver refuse a deposed leader's writes (fencing.ts). The one source of truth for
 * `kubevisa install` and for the Helm chart's and plain manifests' RBAC (`scripts/generate-deploy.ts` writes them
 * from this list; test/helm.test.ts proves they match).
 * @throws RiskyProfile or InvalidInput when a profile is refused (nothing is built).
 */
export function installObjects(profiles: readonly Profile[]): InstallObject[] {
  const rbac = kubevisaControllerRbac(profiles.map((profile) => profile.name));
  return [
    ...kubevisaNamespaces(),
    ...profiles.map(profileClusterRole),
    rbac.clusterRole,
    rbac.clusterRoleBinding,
    rbac.visasRole,
    rbac.visasRoleBinding,
    rbac.selfTokenRole,
    rbac.selfTokenRoleBinding,
    controllerServiceAccount(),
    fencingPolicy(),
    fencingPolicyBinding(),
  ];
}

export interface UninstallOptions {
  /** A kubeconfig with cluster-admin rights; used for this call only. */
  adminKubeconfigPath: string;
  /** kubevisa's name for the cluster, in messages. */
  clusterName: string;
  /** Progress messages for people (default: none). */
  onProgress?: (message: string) => void;
  /** Each request is aborted after this many milliseconds (default 10000). */
  requestTimeoutMs?: number;
  /** How long to wait for kubevisa's namespaces to finish deleting, in milliseconds (default 60000). */
  namespaceDeletionTimeoutMs?: number;
}

/**
 * Removes everything kubevisa put in a cluster: every visa RoleBinding (in any namespace), the profile ClusterRoles,
 * kubevisa's own ClusterRole and ClusterRoleBinding, and its namespaces (which hold the person ServiceAccounts,
 * kubevisa's ServiceAccount and its Roles). Every token kubevisa or a person was given dies with its
 * ServiceAccount. Idempotent: what is already gone is skipped.
 * @returns what was deleted, one line per object (`RoleBinding payments/kubevisa-v1`).
 * @throws InstalledByHelm when a Helm release owns the installation (then `helm uninstall` removes it); cluster
 *   errors when the admin's credential cannot do the work.
 */
export async function uninstallKubevisa(options: UninstallOptions): Promise<{ removed: string[] }> {
  const { clusterName } = options;
  const progress = options.onProgress ?? (() => {});
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const kubeConfig = loadKubeConfig({ kubeconfigPath: options.adminKubeconfigPath }, clusterName);
  const connection = connectionOf(kubeConfig, clusterName);
  const apis = makeApis(kubeConfig, timeoutMs);
  const fail = (action: string) => (error: unknown) => {
    throw toClusterError(error, { cluster: clusterName, server: connection.server, action, timeoutMs });
  };
  const removed: string[] = [];
  const remove = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
    } catch (error) {
      if (kubernetesStatusOf(error)?.code === 404) return;
      fail(`delete ${what}`)(error);
    }
    removed.push(what);
    progress(`${what} deleted`);
  };

  const ownRole = await apis.rbac.readClusterRole({ name: CONTROLLER_CLUSTER_ROLE }).catch((error: unknown) => {
    if (kubernetesStatusOf(error)?.code === 404) return undefined;
    return fail(`read ClusterRole ${CONTROLLER_CLUSTER_ROLE}`)(error);
  });
  const release = ownRole?.metadata?.annotations?.[HELM_RELEASE_ANNOTATION];
  if (release !== undefined) {
    const namespace = ownRole?.metadata?.annotations?.[HELM_RELEASE_NAMESPACE_ANNOTATION] ?? SYSTEM_NAMESPACE;
    throw new InstalledByHelm(
      `cluster '${clusterName}': kubevisa was installed by Helm release '${release}' in namespace '${namespace}'; remove it with: helm uninstall ${release} -n ${namespace} (nothing was deleted)`,
      { details: { cluster: clusterName, release, namespace } },
    );
  }

  const bindings = await apis.rbac
    .listRoleBindingForAllNamespaces({ labelSelector: VISA_ROLE_BINDING_SELECTOR })
    .catch(fail('list visa RoleBindings'));
  for (const binding of bindings.items) {
    const namespace = binding.metadata?.namespace ?? '';
    const name = binding.metadata?.name ?? '';
    await remove(`RoleBinding ${namespace}/${name}`, () => apis.rbac.deleteNamespacedRoleBinding({ namespace, name }));
  }
  await remove(`ClusterRoleBinding ${CONTROLLER_CLUSTER_ROLE}`, () =>
    apis.rbac.deleteClusterRoleBinding({ name: CONTROLLER_CLUSTER_ROLE }),
  );
  await remove(`ClusterRole ${CONTROLLER_CLUSTER_ROLE}`, () =>
    apis.rbac.deleteClusterRole({ name: CONTROLLER_CLUSTER_ROLE }),
  );
  const profiles = await apis.rbac
    .listClusterRole({ labelSelector: PROFILE_CLUSTER_ROLE_SELECTOR })
    .catch(fail('list profile ClusterRoles'));
  for (const role of profiles.items) {
    const name = role.metadata?.name ?? '';
    if (!name.startsWith('kubevisa:profile:')) continue;
    await remove(`ClusterRole ${name}`, () => apis.rbac.deleteClusterRole({ name }));
  }
  await remove(`ValidatingAdmissionPolicyBinding ${FENCING_POLICY}`, () =>
    apis.admission.deleteValidatingAdmissionPolicyBinding({ name: FENCING_POLICY }),
  );
  await remove(`ValidatingAdmissionPolicy ${FENCING_POLICY}`, () =>
    apis.admission.deleteValidatingAdmissionPolicy({ name: FENCING_POLICY }),
  );
  const namespaces = kubevisaNamespaces().map((namespace) => namespace.metadata.name);
  for (const name of namespaces) await remove(`Namespace ${name}`, () => apis.core.deleteNamespace({ name }));

  // A namespace is gone only once kube-controller-manager has emptied it; until then its ServiceAccounts (and
  // their tokens) may still exist, so the command waits and says so if it takes too long.
  const deadline = Date.now() + (options.namespaceDeletionTimeoutMs ?? 60_000);
  for (const name of namespaces) {
    for (;;) {
      const exists = await apis.core.readNamespace({ name }).then(
        () => true,
        (error: unknown) => (kubernetesStatusOf(error)?.code === 404 ? false : fail(`read namespace ${name}`)(error)),
      );
      if (!exists) break;
      if (Date.now() > deadline) {
        throw new ClusterRequestFailed(
          `cluster '${clusterName}': namespace ${name} is still being deleted; is kube-controller-manager running? Check with: kubectl get namespace ${name} -o yaml`,
          { details: { cluster: clusterName, namespace: name } },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  return { removed };
}

/** Set by Helm on every object of a release (helm.sh/helm/v4 pkg/action/validate.go). */
const HELM_RELEASE_ANNOTATION = 'meta.helm.sh/release-name';
const HELM_RELEASE_NAMESPACE_ANNOTATION = 'meta.helm.sh/release-namespace';

/**
 * kubevisa renews its own credential with the credential it has (Role `kubevisa:self-token`), before it expires.
 * @param expirationSeconds lifetime of the new token (default 86400): an integer ≥ 600, never 3607.
 * @returns a kubeconfig like the one install returned, with the new token; it holds a credential, never log it.
 */
export async function renewOwnToken(
  client: ClusterClient,
  expirationSeconds: number = DEFAULT_OWN_TOKEN_SECONDS,
): Promise<{ kubeconfigYaml: string; expirationTimestamp: Instant }> {
  const issued = await client.createOwnToken(expirationSeconds);
  return {
    kubeconfigYaml: tokenKubeconfigYaml({
      clusterName: client.name,
      connection: client.connection,
      token: issued.token,
    }),
    expirationTimestamp: issued.expirationTimestamp,
  };
}

type Outcome = 'created' | 'updated';

/** Create-or-replace for the handful of cluster-scoped and RBAC objects only the installer writes. */
class AdminObjects {
  private readonly apis: Apis;
  private readonly cluster: string;
  private readonly server: string;
  private readonly timeoutMs: number;

  constructor(apis: Apis, cluster: string, server: string, timeoutMs: number) {
    this.apis = apis;
    this.cluster = cluster;
    this.server = server;
    this.timeoutMs = timeoutMs;
  }

  private error(action: string, error: unknown): KubevisaError {
    return toClusterError(error, { cluster: this.cluster, server: this.server, action, timeoutMs: this.timeoutMs });
  }

  /** Creates the namespace when missing; an existing one is left as it is (others may have labelled it). */
  async ensureNamespace(name: string, labels: Record<string, string>): Promise<boolean> {
    try {
      await this.apis.core.createNamespace({ body: { metadata: { name, labels } } });
      return true;
    } catch (error) {
      if (kubernetesStatusOf(error)?.reason === 'AlreadyExists') return false;
      throw this.error(`create namespace ${name}`, error);
    }
  }

  async ensureServiceAccount(body: ServiceAccount): Promise<boolean> {
    const { namespace, name } = body.metadata;
    try {
      await this.apis.core.createNamespacedServiceAccount({ namespace, body });
      return true;
    } catch (error) {
      if (kubernetesStatusOf(error)?.reason === 'AlreadyExists') return false;
      throw this.error(`create ServiceAccount ${namespace}/${name}`, error);
    }
  }

  async listProfileClusterRoles(): Promise<string[]> {
    const list = await this.apis.rbac
      .listClusterRole({ labelSelector: PROFILE_CLUSTER_ROLE_SELECTOR })
      .catch((error: unknown) => {
        throw this.error('list profile ClusterRoles', error);
      });
    return list.items.map((role) => role.metadata?.name ?? '').filter((name) => name !== '');
  }

  applyClusterRole(role: ClusterRole): Promise<Outcome> {
    const name = role.metadata.name;
    return this.apply(`ClusterRole ${name}`, {
      create: () => this.apis.rbac.createClusterRole({ body: role }),
      read: () => this.apis.rbac.readClusterRole({ name }),
      replace: (resourceVersion) =>
        this.apis.rbac.replaceClusterRole({ name, body: withVersion(role, resourceVersion) }),
      remove: () => this.apis.rbac.deleteClusterRole({ name }),
    });
  }

  applyClusterRoleBinding(binding: ClusterRoleBinding): Promise<Outcome> {
    const name = binding.metadata.name;
    return this.apply(`ClusterRoleBinding ${name}`, {
      create: () => this.apis.rbac.createClusterRoleBinding({ body: binding }),
      read: () => this.apis.rbac.readClusterRoleBinding({ name }),
      replace: (resourceVersion) =>
        this.apis.rbac.replaceClusterRoleBinding({ name, body: withVersion(binding, resourceVersion) }),
      remove: () => this.apis.rbac.deleteClusterRoleBinding({ name }),
    });
  }

  applyRole(role: Role): Promise<Outcome> {
    const { name, namespace } = role.metadata;
    return this.apply(`Role ${namespace}/${name}`, {
      create: () => this.apis.rbac.createNamespacedRole({ namespace, body: role }),
      read: () => this.apis.rbac.readNamespacedRole({ namespace, name }),
      replace: (resourceVersion) =>
        this.apis.rbac.replaceNamespacedRole({ namespace, name, body: withVersion(role, resourceVersion) }),
      remove: () => this.apis.rbac.deleteNamespacedRole({ namespace, name }),
    });
  }

  applyAdmissionPolicy(object: ValidatingAdmissionPolicy | ValidatingAdmissionPolicyBinding): Promise<Outcome> {
    const name = object.metadata.name;
    const api = this.apis.admission;
    if (object.kind === 'ValidatingAdmissionPolicy') {
      return this.apply(`ValidatingAdmissionPolicy ${name}`, {
        create: () => api.createValidatingAdmissionPolicy({ body: object as never }),
        read: () => api.readValidatingAdmissionPolicy({ name }),
        replace: (resourceVersion) =>
          api.replaceValidatingAdmissionPolicy({ name, body: withVersion(object, resourceVersion) as never }),
        remove: () => api.deleteValidatingAdmissionPolicy({ name }),
      });
    }
    return this.apply(`ValidatingAdmissionPolicyBinding ${name}`, {
      create: () => api.createValidatingAdmissionPolicyBinding({ body: object as never }),
      read: () => api.readValidatingAdmissionPolicyBinding({ name }),
      replace: (resourceVersion) =>
        api.replaceValidatingAdmissionPolicyBinding({ name, body: withVersion(object, resourceVersion) as never }),
      remove: () => api.deleteValidatingAdmissionPolicyBinding({ name }),
    });
  }

  applyRoleBinding(binding: RoleBinding): Promise<Outcome> {
    const { name, namespace } = binding.metadata;
    return this.apply(`RoleBinding ${namespace}/${name}`, {
      create: () => this.apis.rbac.createNamespacedRoleBinding({ namespace, body: binding }),
      read: () => this.apis.rbac.readNamespacedRoleBinding({ namespace, name }),
      replace: (resourceVersion) =>
        this.apis.rbac.replaceNamespacedRoleBinding({ namespace, name, body: withVersion(binding, resourceVersion) }),
      remove: () => this.apis.rbac.deleteNamespacedRoleBinding({ namespace, name }),
    });
  }

  /**
   * Create; if it exists, replace it at the resourceVersion just read (retrying when someone else wrote in
   * between). A binding whose roleRef differs cannot be replaced (roleRef is immutable, answered 422): it is
   * deleted and created again.
   */
  private async apply(
    what: string,
    calls: {
      create: () => Promise<unknown>;
      read: () => Promise<{ metadata?: { resourceVersion?: string } }>;
      replace: (resourceVersion: string) => Promise<unknown>;
      remove: () => Promise<unknown>;
    },
  ): Promise<Outcome> {
    try {
      await calls.create();
      return 'created';
    } catch (error) {
      if (kubernetesStatusOf(error)?.reason !== 'AlreadyExists') throw this.error(`create ${what}`, error);
    }
    for (let attempt = 1; ; attempt++) {
      const current = await calls.read().catch((error: unknown) => {
        throw this.error(`read ${what}`, error);
      });
      try {
        await calls.replace(current.metadata?.resourceVersion ?? '');
        return 'updated';
      } catch (error) {
        const status = kubernetesStatusOf(error);
        if (status?.code === 409 && status.reason === 'Conflict' && attempt < 3) continue;
        if (status?.code === 422 && /roleRef/i.test(status.message)) {
          await calls.remove().catch((removeError: unknown) => {
            throw this.error(`delete ${what} to change its roleRef`, removeError);
          });
          await calls.create().catch((createError: unknown) => {
            throw this.error(`create ${what}`, createError);
          });
          return 'updated';
        }
        throw this.error(`replace ${what}`, error);
      }
    }
  }
}

function withVersion<T extends { metadata: object }>(object: T, resourceVersion: string): T {
  return { ...object, metadata: { ...object.metadata, resourceVersion } };
}
