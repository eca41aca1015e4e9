/**
 * ClusterClient: the dozen calls kubevisa makes to a Kubernetes cluster, over @kubernetes/client-node, with
 * kubevisa's own least-privilege credential. Every request has a timeout; every failure is a typed error from
 * errors.ts. The reconciler, gateway and monitor depend on the interface, so tests can hand them a fake.
 */
import { Watch } from '@kubernetes/client-node';
import { InvalidInput, KubevisaError } from '../domain/errors.ts';
import type { Instant } from '../domain/model.ts';
import { isProtectedNamespace } from '../domain/protected-namespaces.ts';
import { formatInstant, MAX_DURATION_SECONDS } from '../domain/time.ts';
import {
  ClusterRequestFailed,
  FenceNotEnforced,
  Fenced,
  NamespaceMissing,
  ObjectMissing,
  UnexpectedTokenExpiry,
} from './errors.ts';
import { EPOCH_ANNOTATION, FENCE_CONFIG_MAP, FENCING_POLICY, epochOf, fenceConfigMap, stamped } from './fencing.ts';
import { connectionOf, loadKubeConfig, type ClusterConnection, type KubeconfigSource } from './kubeconfig.ts';
import {
  CONTROLLER_SERVICE_ACCOUNT,
  DIRECT_TOKENS_UNTIL_ANNOTATION,
  PERSON_SERVICE_ACCOUNT_SELECTOR,
  CONTROLLER_CLUSTER_ROLE,
  OWN_OBJECT_SELECTOR,
  PROFILE_CLUSTER_ROLE_SELECTOR,
  SELF_TOKEN_ROLE,
  SYSTEM_NAMESPACE,
  VISAS_ROLE,
  VISAS_NAMESPACE,
  VISA_ROLE_BINDING_SELECTOR,
  type ClusterRole,
  type ClusterRoleBinding,
  type Role,
  type RoleBinding,
  type ServiceAccount,
} from './objects.ts';
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  isRecord,
  kubernetesStatusOf,
  makeApis,
  makeRawGet,
  toClusterError,
  toClusterRole,
  toClusterRoleBinding,
  toRole,
  toRoleBinding,
  toServiceAccount,
  toServiceAccountTokenSecret,
  type Apis,
  type ListedClusterRole,
  type RawGet,
  type ServiceAccountTokenSecret,
} from './transport.ts';

export type { ListedClusterRole, ServiceAccountTokenSecret } from './transport.ts';

/** TokenRequest's floor: kube-apiserver refuses shorter tokens. */
export const MIN_TOKEN_SECONDS = 600;
/**
 * Never requested: kube-apiserver (with its default --service-account-extend-token-expiration) issues a token
 * valid for a year when asked for exactly 3607 s, the lifetime legacy kubelets use.
 */
export const EXTENDED_TOKEN_SECONDS = 3607;
/** How much later than asked a token may expire before it is withheld (clock skew with the API server), in ms. */
export const TOKEN_EXPIRY_TOLERANCE_MS = 5 * 60_000;
/**
 * The server closes each watch after this many seconds and kubevisa resumes it from the last resourceVersion.
 * It must stay below client-node's fixed 30 s inactivity limit, or a quiet watch would be aborted as timed out.
 */
export const WATCH_TIMEOUT_SECONDS = 20;
const CLIENT_NODE_WATCH_INACTIVITY_SECONDS = 30;
/** Longest wait between watch retries after failures, in ms (doubling from 500 ms). */
export const WATCH_MAX_BACKOFF_MS = 30_000;

const LIST_PAGE_SIZE = 500;
/** Page size of the whole-cluster RBAC lists: big pages, because a scan reads every object anyway. */
const BULK_LIST_PAGE_SIZE = 2000;
/**
 * Asks kube-apiserver for metadata only, so a Secret's data never leaves the API server. No fallback type: a server
 * that could not answer in this form (none since Kubernetes 1.15) must refuse rather than send the Secrets whole.
 */
const METADATA_ONLY = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

/** A TokenRequest token. */
export interface IssuedToken {
  /** The bearer token: a credential, never log it. */
  token: string;
  /** When kube-apiserver stops accepting it, epoch milliseconds (UTC). */
  expirationTimestamp: Instant;
}

/** A change to a visa RoleBinding, or a notice that changes may have been missed. */
export type RoleBindingEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; roleBinding: RoleBinding }
  /** The watch had to start over (its resourceVersion was compacted away): compare everything now. */
  | { type: 'RESYNC' };

/** kubevisa's own RBAC as found in a cluster; an absent field is an object that does not exist. */
export interface OwnRbac {
  clusterRole?: ClusterRole;
  clusterRoleBinding?: ClusterRoleBinding;
  visasRole?: Role;
  visasRoleBinding?: RoleBinding;
  selfTokenRole?: Role;
  selfTokenRoleBinding?: RoleBinding;
}

/** A change to a profile ClusterRole, or a notice that changes may have been missed (RESYNC). */
export type ProfileClusterRoleEvent =
  { type: 'ADDED' | 'MODIFIED' | 'DELETED'; clusterRole: ClusterRole } | { type: 'RESYNC' };

/** A SelfSubjectAccessReview question: may kubevisa's credential do this? */
export interface AccessQuestion {
  verb: string;
  /** Plural resource, e.g. `rolebindings`. */
  resource: string;
  /** API group; '' (default) is the core group. */
  group?: string;
  subresource?: string;
  /** Absent means cluster-wide (all namespaces). */
  namespace?: string;
  name?: string;
}

export interface ClusterClient {
  /** kubevisa's name for the cluster. */
  readonly name: string;
  /** Server and CA (no credential). */
  readonly connection: ClusterConnection;
  /** `connection.server`: `https://host:port`. */
  readonly server: string;
  /** `connection.certificateAuthorityData`: the CA bundle, PEM in base64; absent means the system's CAs. */
  readonly caData: string | undefined;

  /** Every visa RoleBinding in every namespace (labels managed-by=kubevisa and kubevisa.io/visa). */
  listManagedRoleBindings(): Promise<RoleBinding[]>;
  /** The RoleBinding, or undefined when it does not exist. */
  getRoleBinding(namespace: string, name: string): Promise<RoleBinding | undefined>;
  /**
   * Creates a visa RoleBinding in its namespace.
   * @throws NamespaceMissing when the namespace does not exist or is being deleted; AlreadyExists;
   *   ClusterForbidden (e.g. a ClusterRole kubevisa may not bind); InvalidInput for a binding that is not a
   *   visa's binding to a profile ClusterRole.
   */
  createRoleBinding(binding: RoleBinding): Promise<RoleBinding>;
  /**
   * Replaces a RoleBinding in place (drift repair); `binding.metadata.resourceVersion` must be the one read.
   * roleRef cannot change this way (see `needsRecreate`).
   * @throws ResourceVersionConflict when it changed meanwhile; ObjectMissing when it is gone.
   */
  replaceRoleBinding(binding: RoleBinding): Promise<RoleBinding>;
  /**
   * Deletes a RoleBinding. With `fencingEpoch`, it is first stamped with the epoch and deleted only as stamped
   * (fencing.ts). `seen` is the binding as last read (a listing or a watch event): when it already carries the
   * current epoch, it is deleted at that uid and resourceVersion in one request, and read and stamped only if it
   * changed since. @returns false when it was already gone (not an error).
   * @throws Fenced when a newer leader raised the fence; ResourceVersionConflict when it changed meanwhile.
   */
  deleteRoleBinding(namespace: string, name: string, seen?: RoleBinding): Promise<boolean>;

  /** The profile ClusterRoles installed in the cluster (`kubevisa:profile:*`, labelled with their profile). */
  listProfileClusterRoles(): Promise<ClusterRole[]>;
  /**
   * Puts a profile ClusterRole's rules back (drift repair); `role.metadata.resourceVersion` must be the one read.
   * kubevisa may do this only for the profiles installed with it (update and escalate by resourceName).
   * @throws InvalidInput for any other ClusterRole; ResourceVersionConflict when it changed meanwhile;
   *   ClusterForbidden when kubevisa's credential lacks the right (installed by an older version).
   */
  replaceProfileClusterRole(role: ClusterRole): Promise<ClusterRole>;
  /** kubevisa's own RBAC objects (see `kubevisaControllerRbac`), read one by one. */
  readOwnRbac(): Promise<OwnRbac>;
  /**
   * Puts back one of kubevisa's own roles (`kubevisa:controller`, `kubevisa:visas`, `kubevisa:self-token`) at the
   * resourceVersion read. Kubernetes accepts only rules kubevisa holds, so this can narrow its rights, never widen.
   * @throws InvalidInput for any other role; ClusterForbidden when it would need a rule kubevisa lacks.
   */
  replaceOwnRole(role: ClusterRole | Role): Promise<unknown>;

  /** Every person ServiceAccount in `kubevisa-visas`. */
  listManagedServiceAccounts(): Promise<ServiceAccount[]>;
  /**
   * Creates a person ServiceAccount in `kubevisa-visas`.
   * @throws AlreadyExists; NamespaceMissing when kubevisa is not installed; InvalidInput for another namespace.
   */
  createServiceAccount(account: ServiceAccount): Promise<ServiceAccount>;
  /** Deletes a person ServiceAccount, which invalidates every token it was issued. @returns false if already gone. */
  deleteServiceAccount(name: string): Promise<boolean>;
  /** A person ServiceAccount in `kubevisa-visas`; undefined when there is none. */
  getServiceAccount(name: string): Promise<ServiceAccount | undefined>;
  /**
   * Records on a person ServiceAccount that direct-mode tokens issued for it may live until `until` (annotation
   * `kubevisa.io/direct-tokens-until`; a later instant already recorded is kept), on the ServiceAccount with this
   * uid only: one made again since was never given those tokens.
   * @throws ObjectMissing when it is gone or was made again (another uid); ResourceVersionConflict when it kept
   *   changing while being written.
   */
  recordDirectTokens(name: string, uid: string, until: Instant): Promise<void>;
  /**
   * A TokenRequest token for a person ServiceAccount in `kubevisa-visas`.
   * @param expirationSeconds lifetime in seconds: an integer ≥ 600, never exactly 3607.
   * @throws InvalidInput for a lifetime kube-apiserver would refuse or extend; ObjectMissing when the
   *   ServiceAccount does not exist; UnexpectedTokenExpiry when the token would outlive what was asked.
   */
  createServiceAccountToken(serviceAccountName: string, expirationSeconds: number): Promise<IssuedToken>;
  /** A new token for kubevisa's own ServiceAccount (`kubevisa` in `kubevisa-system`); same rules as above. */
  createOwnToken(expirationSeconds: number): Promise<IssuedToken>;

  /** True when the namespace exists (also while it is being deleted). */
  namespaceExists(namespace: string): Promise<boolean>;
  /** Asks the cluster whether kubevisa's credential may do something (SelfSubjectAccessReview). */
  canI(question: AccessQuestion): Promise<boolean>;
  /** Who the cluster says kubevisa's credential is (SelfSubjectReview): a cheap check that it still works. */
  whoAmI(): Promise<{ username: string; groups: string[] }>;
  /** Uses `token` as kubevisa's bearer token for every later request and watch (after a renewal). */
  useToken(token: string): void;
  /**
   * Raises the fence (ConfigMap `kubevisa-fence`, fencing.ts) to `epoch` and resolves once kube-apiserver refuses a
   * write below it. Call it when a lease term begins, before the term's first write.
   * @throws Fenced when the fence is already above `epoch` (a newer leader); FenceNotEnforced when kube-apiserver
   *   still accepts a write below it after `fenceWaitMs` (the fencing policy is not installed).
   */
  raiseFence(epoch: number): Promise<void>;

  // Reading the whole cluster's RBAC, for exposure scans (kubevisa's ClusterRole grants get/list/watch on it).
  /** Every Role in every namespace. */
  listRoles(): Promise<Role[]>;
  /** Every ClusterRole, with its aggregation rule when it has one. */
  listClusterRoles(): Promise<ListedClusterRole[]>;
  /** Every RoleBinding in every namespace, kubevisa's and everyone else's. */
  listRoleBindings(): Promise<RoleBinding[]>;
  /** Every ClusterRoleBinding. */
  listClusterRoleBindings(): Promise<ClusterRoleBinding[]>;
  /**
   * The metadata of every ServiceAccount token Secret (type `kubernetes.io/service-account-token`: tokens that
   * never expire) in every namespace, asked for as metadata only so no token is ever transferred.
   * kubevisa's own credential may not list Secrets (by design: a stolen kubevisa credential must not be worth every
   * Secret), so this throws ClusterForbidden unless an admin chose to grant `list` on `secrets`.
   */
  listServiceAccountTokenSecrets(): Promise<ServiceAccountTokenSecret[]>;

  /**
   * Watches the visa RoleBindings in every namespace. It first reports every existing one as ADDED, then each
   * change, typically within a second. It resumes by itself when the server ends a watch and retries with backoff
   * (500 ms doubling to 30 s) after failures, reporting each failure to `onError`. Events are hints: a reconciler
   * must still resync periodically (level-triggered).
   * @returns stop(): ends the watch; no callback runs after it returns.
   */
  watchManagedRoleBindings(
    onEvent: (event: RoleBindingEvent) => void,
    onError: (error: KubevisaError) => void,
  ): () => void;
  /** Watches the profile ClusterRoles, like `watchManagedRoleBindings` (same resumption, retries and hints). */
  watchProfileClusterRoles(
    onEvent: (event: ProfileClusterRoleEvent) => void,
    onError: (error: KubevisaError) => void,
  ): () => void;
  /**
   * Watches kubevisa's own ClusterRole, ClusterRoleBinding, Roles and RoleBindings (four watches, one per kind),
   * calling `onChange` on any change: a hint to compare them with what they should be.
   */
  watchOwnRbac(onChange: () => void, onError: (error: KubevisaError) => void): () => void;
}

export type ClusterClientOptions = KubeconfigSource & {
  /** kubevisa's name for the cluster, used in every error message. */
  name: string;
  /** Each request is aborted after this many milliseconds (default 10000). */
  requestTimeoutMs?: number;
  /** Clock for checking token expiry, epoch milliseconds (default Date.now). */
  now?: () => Instant;
  /** Seconds after which the server ends each watch and kubevisa resumes it (default 20; 1–29). */
  watchTimeoutSeconds?: number;
  /**
   * The epoch of the lease term writes are made under (src/leader/): every object written carries it and deletes
   * are fenced (fencing.ts). Absent: nothing is stamped (an admin's client, `kubevisa install`).
   */
  fencingEpoch?: () => number;
  /** How long `raiseFence` waits for kube-apiserver to enforce a raised fence, in ms (default 10000). */
  fenceWaitMs?: number;
};

/**
 * A ClusterClient for the kubeconfig's current context. Nothing is contacted until the first call.
 * @throws InvalidInput when the kubeconfig cannot be loaded.
 */
export function createClusterClient(options: ClusterClientOptions): ClusterClient {
  const { name } = options;
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new InvalidInput(`requestTimeoutMs must be a positive number of milliseconds, got ${timeoutMs}`, {
      details: { field: 'requestTimeoutMs', value: timeoutMs },
    });
  }
  const watchTimeoutSeconds = options.watchTimeoutSeconds ?? WATCH_TIMEOUT_SECONDS;
  if (
    !Number.isInteger(watchTimeoutSeconds) ||
    watchTimeoutSeconds < 1 ||
    watchTimeoutSeconds >= CLIENT_NODE_WATCH_INACTIVITY_SECONDS
  ) {
    throw new InvalidInput(
      `watchTimeoutSeconds must be a whole number from 1 to ${CLIENT_NODE_WATCH_INACTIVITY_SECONDS - 1}, got ${watchTimeoutSeconds}`,
      { details: { field: 'watchTimeoutSeconds', value: watchTimeoutSeconds } },
    );
  }
  const now = options.now ?? Date.now;
  const kubeConfig = loadKubeConfig(options, name);
  const connection = connectionOf(kubeConfig, name);
  const apis: Apis = makeApis(kubeConfig, timeoutMs);
  const rawGet: RawGet = makeRawGet(kubeConfig, timeoutMs);

  const fail = (action: string) => (error: unknown) => {
    throw toClusterError(error, { cluster: name, server: connection.server, action, timeoutMs });
  };
  const statusCode = (error: unknown) => kubernetesStatusOf(error)?.code;
  const fencingEpoch = options.fencingEpoch;
  /** `object` stamped with the current epoch when writes are fenced. */
  const stamp = <T extends { metadata: { annotations: Record<string, string> } }>(object: T): T =>
    fencingEpoch === undefined ? object : stamped(object, fencingEpoch());

  /**
   * A fenced delete (fencing.ts): read the object, stamp it with this term's epoch unless it carries it already (an
   * update the fencing policy judges), then delete exactly that version. A stamp kube-apiserver refuses, or a
   * delete of a version stamped before a newer leader raised the fence, fails with Fenced.
   */
  async function fencedDelete<
    T extends { metadata?: { uid?: string; resourceVersion?: string; annotations?: Record<string, string> } },
  >(
    what: string,
    calls: {
      read: () => Promise<T>;
      replace: (object: T) => Promise<T>;
      remove: (preconditions?: { uid?: string; resourceVersion?: string }) => Promise<unknown>;
      /** False for an object the policy lets kubevisa delete without a stamp (fencing.ts). */
      stampable?: (object: T) => boolean;
    },
    /** The object as last seen (a listing, a watch event): its version and what a stamp would find. */
    seen?: { uid: string; resourceVersion: string; epoch: number; stampable: boolean },
  ): Promise<boolean> {
    const gone = (error: unknown) => statusCode(error) === 404;
    try {
      if (fencingEpoch === undefined) {
        await calls.remove();
        return true;
      }
      const epoch = fencingEpoch();
      // Already as a stamp would leave it (this term wrote it, or stamped it): delete exactly that version. The
      // policy judges the object deleted, so this is as fenced as the three-request path; a version that moved on
      // since it was seen fails the precondition (409), and the object is then read and stamped as usual.
      if (seen !== undefined && (seen.epoch === epoch || !seen.stampable)) {
        try {
          await calls.remove({ uid: seen.uid, resourceVersion: seen.resourceVersion });
          return true;
        } catch (error) {
          if (statusCode(error) !== 409) throw error;
        }
      }
      let current = await calls.read();
      if (epochOf(current) !== epoch && (calls.stampable?.(current) ?? true)) {
        current.metadata = {
          ...current.metadata,
          annotations: { ...current.metadata?.annotations, [EPOCH_ANNOTATION]: String(epoch) },
        };
        current = await calls.replace(current);
      }
      await calls.remove({ uid: current.metadata?.uid, resourceVersion: current.metadata?.resourceVersion });
      return true;
    } catch (error) {
      if (gone(error)) return false;
      return fail(`delete ${what}`)(error);
    }
  }

  // Creating in a namespace that does not exist answers 404 (kind namespaces); in one being deleted, 403 with
  // cause NamespaceTerminating (messages quoted in transport.test.ts).
  const failCreate = (action: string, namespace: string) => (error: unknown) => {
    const status = kubernetesStatusOf(error);
    const missing = status?.code === 404 && status.details.kind === 'namespaces';
    const terminating =
      status?.code === 403 && status.details.causes.some((cause) => cause.reason === 'NamespaceTerminating');
    if (missing || terminating) {
      throw new NamespaceMissing(
        `cannot ${action}: namespace '${namespace}' ${missing ? 'does not exist' : 'is being deleted'} in cluster '${name}'`,
        { details: { cluster: name, namespace }, cause: error },
      );
    }
    return fail(action)(error);
  };

  // Pages through a list with the raw client: at scan sizes (tens of thousands of bindings) client-node's model
  // conversion costs more than the requests.
  async function listAll<T>(
    path: string,
    what: string,
    convert: (item: unknown) => T,
    options: { fieldSelector?: string; labelSelector?: string; accept?: string } = {},
  ): Promise<T[]> {
    const result: T[] = [];
    let next: string | undefined;
    do {
      const page = await rawGet(
        path,
        {
          limit: String(BULK_LIST_PAGE_SIZE),
          continue: next,
          fieldSelector: options.fieldSelector,
          labelSelector: options.labelSelector,
        },
        options.accept,
      ).catch(fail(`list ${what}`));
      if (!isRecord(page) || !Array.isArray(page['items'])) {
        throw new ClusterRequestFailed(`cannot list ${what}: cluster '${name}' answered without an items list`, {
          details: { cluster: name },
        });
      }
      for (const item of page['items']) result.push(convert(item));
      const meta = page['metadata'];
      const token = isRecord(meta) ? meta['continue'] : undefined;
      next = typeof token === 'string' && token !== '' ? token : undefined;
    } while (next !== undefined);
    return result;
  }

  async function requestToken(namespace: string, account: string, expirationSeconds: number): Promise<IssuedToken> {
    validateTokenSeconds(expirationSeconds);
    const action = `create a token for ServiceAccount ${namespace}/${account}`;
    const requestedAt = now();
    const answer = await apis.core
      .createNamespacedServiceAccountToken({ namespace, name: account, body: { spec: { expirationSeconds } } })
      .catch(fail(action));
    const token = answer.status?.token;
    const expires = answer.status?.expirationTimestamp;
    const expirationTimestamp = expires instanceof Date ? expires.getTime() : Number.NaN;
    if (typeof token !== 'string' || token === '' || Number.isNaN(expirationTimestamp)) {
      throw new ClusterRequestFailed(
        `cannot ${action}: cluster '${name}' answered the TokenRequest without a token or its expirationTimestamp`,
        { details: { cluster: name } },
      );
    }
    const latest = requestedAt + expirationSeconds * 1000 + TOKEN_EXPIRY_TOLERANCE_MS;
    if (expirationTimestamp > latest) {
      throw new UnexpectedTokenExpiry(
        `cannot ${action}: cluster '${name}' issued a token expiring at ${new Date(expirationTimestamp).toISOString()}, later than the ${expirationSeconds} s asked for; it was withheld`,
        { details: { cluster: name, expirationSeconds, expirationTimestamp } },
      );
    }
    return { token, expirationTimestamp };
  }

  const client: ClusterClient = {
    name,
    connection,
    server: connection.server,
    caData: connection.certificateAuthorityData,

    // Every full pass lists every visa binding (tens of thousands at scale): raw, as the scans do.
    listManagedRoleBindings() {
      return listAll(
        '/apis/rbac.authorization.k8s.io/v1/rolebindings',
        'visa RoleBindings',
        (item) => toRoleBinding(item, name),
        { labelSelector: VISA_ROLE_BINDING_SELECTOR },
      );
    },

    async getRoleBinding(namespace, bindingName) {
      try {
        return toRoleBinding(await apis.rbac.readNamespacedRoleBinding({ namespace, name: bindingName }), name);
      } catch (error) {
        if (statusCode(error) === 404) return undefined;
        return fail(`read RoleBinding ${namespace}/${bindingName}`)(error);
      }
    },

    async createRoleBinding(binding) {
      assertVisaBinding(binding);
      const { namespace, name: bindingName } = binding.metadata;
      const action = `create RoleBinding ${namespace}/${bindingName}`;
      const created = await apis.rbac
        .createNamespacedRoleBinding({ namespace, body: withoutServerFields(stamp(binding)) })
        .catch(failCreate(action, namespace));
      return toRoleBinding(created, name);
    },

    async replaceRoleBinding(binding) {
      assertVisaBinding(binding);
      const { namespace, name: bindingName, resourceVersion } = binding.metadata;
      if (resourceVersion === undefined || resourceVersion === '') {
        throw new InvalidInput(`replaceRoleBinding ${namespace}/${bindingName}: metadata.resourceVersion is required`, {
          details: { field: 'metadata.resourceVersion' },
        });
      }
      const replaced = await apis.rbac
        .replaceNamespacedRoleBinding({ namespace, name: bindingName, body: stamp(binding) })
        .catch(fail(`replace RoleBinding ${namespace}/${bindingName}`));
      return toRoleBinding(replaced, name);
    },

    deleteRoleBinding(namespace, bindingName, seen) {
      const stampable = (binding: { roleRef: { name: string } }) =>
        binding.roleRef.name.startsWith('kubevisa:profile:');
      const { uid, resourceVersion } = seen?.metadata ?? {};
      const known =
        seen?.metadata.namespace === namespace &&
        seen.metadata.name === bindingName &&
        uid !== undefined &&
        resourceVersion !== undefined
          ? { uid, resourceVersion, epoch: epochOf(seen), stampable: stampable(seen) }
          : undefined;
      return fencedDelete(
        `RoleBinding ${namespace}/${bindingName}`,
        {
          read: () => apis.rbac.readNamespacedRoleBinding({ namespace, name: bindingName }),
          replace: (body) => apis.rbac.replaceNamespacedRoleBinding({ namespace, name: bindingName, body }),
          remove: (preconditions) =>
            apis.rbac.deleteNamespacedRoleBinding({
              namespace,
              name: bindingName,
              ...(preconditions ? { body: { preconditions } } : {}),
            }),
          // kubevisa cannot update a binding to a role it may not bind: the policy lets it delete such a one as it is.
          stampable,
        },
        known,
      );
    },

    async listProfileClusterRoles() {
      const list = await apis.rbac
        .listClusterRole({ labelSelector: PROFILE_CLUSTER_ROLE_SELECTOR })
        .catch(fail('list profile ClusterRoles'));
      return list.items.map((item) => toClusterRole(item, name));
    },

    async replaceProfileClusterRole(role) {
      const { name: roleName, resourceVersion } = role.metadata;
      if (!roleName.startsWith('kubevisa:profile:')) {
        throw new InvalidInput(
          `kubevisa only ever rewrites profile ClusterRoles (kubevisa:profile:*), not ${roleName}`,
          {
            details: { field: 'metadata.name', value: roleName },
          },
        );
      }
      if (resourceVersion === undefined || resourceVersion === '') {
        throw new InvalidInput(`replaceProfileClusterRole ${roleName}: metadata.resourceVersion is required`, {
          details: { field: 'metadata.resourceVersion' },
        });
      }
      const replaced = await apis.rbac
        .replaceClusterRole({ name: roleName, body: stamp(role) })
        .catch(fail(`restore ClusterRole ${roleName}`));
      return toClusterRole(replaced, name);
    },

    async readOwnRbac() {
      const read = async <T>(what: string, call: () => Promise<unknown>, convert: (item: unknown) => T) => {
        try {
          return convert(await call());
        } catch (error) {
          if (statusCode(error) === 404) return undefined;
          return fail(`read ${what}`)(error);
        }
      };
      const [clusterRole, clusterRoleBinding, visasRole, visasRoleBinding, selfTokenRole, selfTokenRoleBinding] =
        await Promise.all([
          read(
            `ClusterRole ${CONTROLLER_CLUSTER_ROLE}`,
            () => apis.rbac.readClusterRole({ name: CONTROLLER_CLUSTER_ROLE }),
            (item) => toClusterRole(item, name),
          ),
          read(
            `ClusterRoleBinding ${CONTROLLER_CLUSTER_ROLE}`,
            () => apis.rbac.readClusterRoleBinding({ name: CONTROLLER_CLUSTER_ROLE }),
            (item) => toClusterRoleBinding(item, name),
          ),
          read(
            `Role ${VISAS_NAMESPACE}/${VISAS_ROLE}`,
            () => apis.rbac.readNamespacedRole({ namespace: VISAS_NAMESPACE, name: VISAS_ROLE }),
            (item) => toRole(item, name),
          ),
          read(
            `RoleBinding ${VISAS_NAMESPACE}/${VISAS_ROLE}`,
            () => apis.rbac.readNamespacedRoleBinding({ namespace: VISAS_NAMESPACE, name: VISAS_ROLE }),
            (item) => toRoleBinding(item, name),
          ),
          read(
            `Role ${SYSTEM_NAMESPACE}/${SELF_TOKEN_ROLE}`,
            () => apis.rbac.readNamespacedRole({ namespace: SYSTEM_NAMESPACE, name: SELF_TOKEN_ROLE }),
            (item) => toRole(item, name),
          ),
          read(
            `RoleBinding ${SYSTEM_NAMESPACE}/${SELF_TOKEN_ROLE}`,
            () => apis.rbac.readNamespacedRoleBinding({ namespace: SYSTEM_NAMESPACE, name: SELF_TOKEN_ROLE }),
            (item) => toRoleBinding(item, name),
          ),
        ]);
      return {
        ...(clusterRole ? { clusterRole } : {}),
        ...(clusterRoleBinding ? { clusterRoleBinding } : {}),
        ...(visasRole ? { visasRole } : {}),
        ...(visasRoleBinding ? { visasRoleBinding } : {}),
        ...(selfTokenRole ? { selfTokenRole } : {}),
        ...(selfTokenRoleBinding ? { selfTokenRoleBinding } : {}),
      };
    },

    async replaceOwnRole(role) {
      const { name: roleName, resourceVersion } = role.metadata;
      if (resourceVersion === undefined || resourceVersion === '') {
        throw new InvalidInput(`replaceOwnRole ${roleName}: metadata.resourceVersion is required`, {
          details: { field: 'metadata.resourceVersion' },
        });
      }
      if (role.kind === 'ClusterRole' && roleName === CONTROLLER_CLUSTER_ROLE) {
        return apis.rbac
          .replaceClusterRole({ name: roleName, body: stamp(role) })
          .catch(fail(`restore ClusterRole ${roleName}`));
      }
      const ownRoles: Record<string, string> = { [VISAS_ROLE]: VISAS_NAMESPACE, [SELF_TOKEN_ROLE]: SYSTEM_NAMESPACE };
      const namespace = role.kind === 'Role' ? role.metadata.namespace : undefined;
      if (namespace === undefined || ownRoles[roleName] !== namespace) {
        throw new InvalidInput(
          `kubevisa only ever rewrites its own roles, not ${role.kind} ${namespace ? `${namespace}/` : ''}${roleName}`,
          {
            details: { field: 'metadata.name', value: roleName },
          },
        );
      }
      return apis.rbac
        .replaceNamespacedRole({ namespace, name: roleName, body: stamp(role) })
        .catch(fail(`restore Role ${namespace}/${roleName}`));
    },

    async listManagedServiceAccounts() {
      const accounts: ServiceAccount[] = [];
      let next: string | undefined;
      do {
        const page = await apis.core
          .listNamespacedServiceAccount({
            namespace: VISAS_NAMESPACE,
            labelSelector: PERSON_SERVICE_ACCOUNT_SELECTOR,
            limit: LIST_PAGE_SIZE,
            ...(next === undefined ? {} : { _continue: next }),
          })
          .catch(fail(`list person ServiceAccounts in ${VISAS_NAMESPACE}`));
        for (const item of page.items) accounts.push(toServiceAccount(item, name));
        next = page.metadata?._continue || undefined;
      } while (next !== undefined);
      return accounts;
    },

    async createServiceAccount(account) {
      if (account.metadata.namespace !== VISAS_NAMESPACE) {
        throw new InvalidInput(
          `person ServiceAccounts live in ${VISAS_NAMESPACE}, not '${account.metadata.namespace}'`,
          { details: { field: 'metadata.namespace', value: account.metadata.namespace, allowed: [VISAS_NAMESPACE] } },
        );
      }
      const action = `create ServiceAccount ${VISAS_NAMESPACE}/${account.metadata.name}`;
      const created = await apis.core
        .createNamespacedServiceAccount({ namespace: VISAS_NAMESPACE, body: withoutServerFields(stamp(account)) })
        .catch(failCreate(action, VISAS_NAMESPACE));
      return toServiceAccount(created, name);
    },

    deleteServiceAccount(accountName) {
      return fencedDelete(`ServiceAccount ${VISAS_NAMESPACE}/${accountName}`, {
        read: () => apis.core.readNamespacedServiceAccount({ namespace: VISAS_NAMESPACE, name: accountName }),
        replace: (body) =>
          apis.core.replaceNamespacedServiceAccount({ namespace: VISAS_NAMESPACE, name: accountName, body }),
        remove: (preconditions) =>
          apis.core.deleteNamespacedServiceAccount({
            namespace: VISAS_NAMESPACE,
            name: accountName,
            ...(preconditions ? { body: { preconditions } } : {}),
          }),
      });
    },

    async getServiceAccount(accountName) {
      try {
        return toServiceAccount(
          await apis.core.readNamespacedServiceAccount({ namespace: VISAS_NAMESPACE, name: accountName }),
          name,
        );
      } catch (error) {
        if (statusCode(error) === 404) return undefined;
        return fail(`read ServiceAccount ${VISAS_NAMESPACE}/${accountName}`)(error);
      }
    },

    async recordDirectTokens(accountName, uid, until) {
      const action = `record direct tokens on ServiceAccount ${VISAS_NAMESPACE}/${accountName}`;
      // Read-modify-write at the resourceVersion read, so a concurrent record of a later instant is never lowered.
      for (let attempt = 1; ; attempt++) {
        const current = await apis.core
          .readNamespacedServiceAccount({ namespace: VISAS_NAMESPACE, name: accountName })
          .catch((error: unknown) => (statusCode(error) === 404 ? undefined : fail(action)(error)));
        if (current === undefined || current.metadata?.uid !== uid) {
          throw new ObjectMissing(`cannot ${action}: it was deleted or made again meanwhile`, {
            details: { cluster: name },
          });
        }
        const annotations = current.metadata.annotations ?? {};
        const recorded = Date.parse(annotations[DIRECT_TOKENS_UNTIL_ANNOTATION] ?? '');
        if (Number.isFinite(recorded) && recorded >= until) return;
        current.metadata.annotations = { ...annotations, [DIRECT_TOKENS_UNTIL_ANNOTATION]: formatInstant(until) };
        try {
          await apis.core.replaceNamespacedServiceAccount({
            namespace: VISAS_NAMESPACE,
            name: accountName,
            body: current,
          });
          return;
        } catch (error) {
          if (statusCode(error) !== 409 || attempt >= 3) return fail(action)(error);
        }
      }
    },

    createServiceAccountToken(accountName, expirationSeconds) {
      return requestToken(VISAS_NAMESPACE, accountName, expirationSeconds);
    },

    createOwnToken(expirationSeconds) {
      return requestToken(SYSTEM_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, expirationSeconds);
    },

    async namespaceExists(namespace) {
      try {
        await apis.core.readNamespace({ name: namespace });
        return true;
      } catch (error) {
        if (statusCode(error) === 404) return false;
        return fail(`read namespace ${namespace}`)(error);
      }
    },

    async canI(question) {
      const review = await apis.authorization
        .createSelfSubjectAccessReview({
          body: {
            spec: {
              resourceAttributes: {
                verb: question.verb,
                resource: question.resource,
                group: question.group ?? '',
                ...(question.subresource === undefined ? {} : { subresource: question.subresource }),
                ...(question.namespace === undefined ? {} : { namespace: question.namespace }),
                ...(question.name === undefined ? {} : { name: question.name }),
              },
            },
          },
        })
        .catch(fail(`ask whether kubevisa may ${question.verb} ${question.resource}`));
      return review.status?.allowed === true;
    },

    async whoAmI() {
      const review = await apis.authentication
        .createSelfSubjectReview({ body: {} })
        .catch(fail('ask the cluster who kubevisa is'));
      const user = review.status?.userInfo;
      return { username: user?.username ?? '', groups: user?.groups ?? [] };
    },

    useToken(token) {
      // client-node reads the current user's token on every request, so replacing it in place reaches every later
      // request and every watch it restarts.
      const user = kubeConfig.getCurrentUser();
      if (!user) throw new InvalidInput(`cluster '${name}': the kubeconfig has no current user to renew`);
      (user as { token?: string }).token = token;
    },

    async raiseFence(epoch) {
      const action = `raise the fence (ConfigMap ${SYSTEM_NAMESPACE}/${FENCE_CONFIG_MAP}) to epoch ${epoch}`;
      const read = () =>
        apis.core
          .readNamespacedConfigMap({ namespace: SYSTEM_NAMESPACE, name: FENCE_CONFIG_MAP })
          .catch((error: unknown) => (statusCode(error) === 404 ? undefined : fail(action)(error)));
      for (let attempt = 1; ; attempt++) {
        const current = await read();
        try {
          if (current === undefined) {
            await apis.core.createNamespacedConfigMap({ namespace: SYSTEM_NAMESPACE, body: fenceConfigMap(epoch) });
            break;
          }
          const fence = Number(current.data?.['epoch'] ?? '0');
          if (fence > epoch) {
            throw new Fenced(
              `cannot ${action}: cluster '${name}' has it at epoch ${fence} already; a newer kubevisa leader holds the lease`,
              { details: { cluster: name, fence, epoch } },
            );
          }
          if (fence === epoch) break;
          current.data = { ...current.data, epoch: String(epoch) };
          current.metadata = {
            ...current.metadata,
            annotations: { ...current.metadata?.annotations, [EPOCH_ANNOTATION]: String(epoch) },
          };
          await apis.core.replaceNamespacedConfigMap({
            namespace: SYSTEM_NAMESPACE,
            name: FENCE_CONFIG_MAP,
            body: current,
          });
          break;
        } catch (error) {
          // Someone raised or made it meanwhile: read it again.
          const code = statusCode(error);
          if ((code === 409 || code === 404) && attempt < 5) continue;
          return fail(action)(error);
        }
      }
      // kube-apiserver's admission plugin reads the fence from an informer cache: a write stamped just below the
      // new epoch, tried as a dry run, proves the cache holds it before this term writes anything.
      const deadline = Date.now() + (options.fenceWaitMs ?? 10_000);
      for (;;) {
        const current = await read();
        if (current === undefined)
          throw new Fenced(`cannot ${action}: the fence ConfigMap vanished`, { details: { cluster: name } });
        current.metadata = {
          ...current.metadata,
          annotations: { ...current.metadata?.annotations, [EPOCH_ANNOTATION]: String(epoch - 1) },
        };
        try {
          await apis.core.replaceNamespacedConfigMap({
            namespace: SYSTEM_NAMESPACE,
            name: FENCE_CONFIG_MAP,
            body: current,
            dryRun: 'All',
          });
        } catch (error) {
          const refused = toClusterError(error, { cluster: name, server: connection.server, action, timeoutMs });
          if (refused instanceof Fenced) return;
          if (statusCode(error) !== 409) throw refused;
        }
        if (Date.now() > deadline) {
          throw new FenceNotEnforced(
            `cannot ${action}: cluster '${name}' still accepts a write below the fence after ${options.fenceWaitMs ?? 10_000} ms; ValidatingAdmissionPolicy ${FENCING_POLICY} or its binding is missing. Run 'kubevisa install' (or upgrade the Helm release) for this cluster`,
            { details: { cluster: name, epoch } },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },

    listRoles() {
      return listAll('/apis/rbac.authorization.k8s.io/v1/roles', 'Roles', (item) => toRole(item, name));
    },

    listClusterRoles() {
      return listAll('/apis/rbac.authorization.k8s.io/v1/clusterroles', 'ClusterRoles', (item) =>
        toClusterRole(item, name),
      );
    },

    listRoleBindings() {
      return listAll('/apis/rbac.authorization.k8s.io/v1/rolebindings', 'RoleBindings', (item) =>
        toRoleBinding(item, name),
      );
    },

    listClusterRoleBindings() {
      return listAll('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', 'ClusterRoleBindings', (item) =>
        toClusterRoleBinding(item, name),
      );
    },

    listServiceAccountTokenSecrets() {
      return listAll(
        '/api/v1/secrets',
        'ServiceAccount token Secrets (metadata only)',
        (item) => toServiceAccountTokenSecret(item, name),
        { fieldSelector: 'type=kubernetes.io/service-account-token', accept: METADATA_ONLY },
      );
    },

    watchManagedRoleBindings(onEvent, onError) {
      return watchObjects({
        kubeConfig,
        name,
        server: connection.server,
        timeoutMs,
        watchTimeoutSeconds,
        path: '/apis/rbac.authorization.k8s.io/v1/rolebindings',
        labelSelector: VISA_ROLE_BINDING_SELECTOR,
        what: 'visa RoleBindings',
        convert: (object) => toRoleBinding(object, name),
        onObject: (type, roleBinding) => onEvent({ type, roleBinding }),
        onResync: () => onEvent({ type: 'RESYNC' }),
        onError,
      });
    },

    watchOwnRbac(onChange, onError) {
      const kinds = [
        ['clusterroles', toClusterRole],
        ['clusterrolebindings', toClusterRoleBinding],
        ['roles', toRole],
        ['rolebindings', toRoleBinding],
      ] as const;
      const stops = kinds.map(([resource, convert]) =>
        watchObjects<unknown>({
          kubeConfig,
          name,
          server: connection.server,
          timeoutMs,
          watchTimeoutSeconds,
          path: `/apis/rbac.authorization.k8s.io/v1/${resource}`,
          labelSelector: OWN_OBJECT_SELECTOR,
          what: `kubevisa's own ${resource}`,
          convert: (object) => convert(object, name),
          onObject: () => onChange(),
          onResync: onChange,
          onError,
        }),
      );
      return () => stops.forEach((stop) => stop());
    },

    watchProfileClusterRoles(onEvent, onError) {
      return watchObjects({
        kubeConfig,
        name,
        server: connection.server,
        timeoutMs,
        watchTimeoutSeconds,
        path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
        labelSelector: PROFILE_CLUSTER_ROLE_SELECTOR,
        what: 'profile ClusterRoles',
        convert: (object) => toClusterRole(object, name),
        onObject: (type, clusterRole) => onEvent({ type, clusterRole }),
        onResync: () => onEvent({ type: 'RESYNC' }),
        onError,
      });
    },
  };
  return client;
}

/**
 * The rules `createServiceAccountToken` enforces, for callers that want to check early.
 * @throws InvalidInput for a non-integer, < 600 s, exactly 3607 s, or more than 366 days.
 */
export function validateTokenSeconds(expirationSeconds: number): void {
  const refuse = (why: string) =>
    new InvalidInput(`token lifetime ${expirationSeconds} s ${why}`, {
      details: { field: 'expirationSeconds', value: expirationSeconds, minimum: MIN_TOKEN_SECONDS },
    });
  if (!Number.isInteger(expirationSeconds)) throw refuse('is not a whole number of seconds');
  if (expirationSeconds < MIN_TOKEN_SECONDS) {
    throw refuse(`is too short: kube-apiserver requires at least ${MIN_TOKEN_SECONDS} s`);
  }
  if (expirationSeconds === EXTENDED_TOKEN_SECONDS) {
    throw refuse('is refused: kube-apiserver may extend a 3607 s token to a year; ask for another length');
  }
  if (expirationSeconds > MAX_DURATION_SECONDS) throw refuse(`is too long: at most ${MAX_DURATION_SECONDS} s`);
}

// Defence in depth: the cluster's `bind` restriction is what really stops kubevisa binding anything else, but a
// bug that tried should fail here, loudly, before reaching the cluster.
function assertVisaBinding(binding: RoleBinding): void {
  const { roleRef, metadata } = binding;
  const where = `RoleBinding ${metadata.namespace}/${metadata.name}`;
  if (isProtectedNamespace(metadata.namespace)) {
    throw new InvalidInput(`${where} is refused: namespace '${metadata.namespace}' is protected, no visa grants it`, {
      details: { field: 'metadata.namespace', value: metadata.namespace },
    });
  }
  if (roleRef.kind !== 'ClusterRole' || !roleRef.name.startsWith('kubevisa:profile:')) {
    throw new InvalidInput(
      `${where} must bind a profile ClusterRole (kubevisa:profile:<name>), not ${roleRef.kind} ${roleRef.name}`,
      {
        details: { field: 'roleRef', value: roleRef },
      },
    );
  }
  const hasSelectorLabels = VISA_ROLE_BINDING_SELECTOR.split(',').every((term) => {
    const [key = '', value] = term.split('=');
    return value === undefined ? (metadata.labels[key] ?? '') !== '' : metadata.labels[key] === value;
  });
  if (!hasSelectorLabels) {
    throw new InvalidInput(
      `${where} lacks the labels ${VISA_ROLE_BINDING_SELECTOR}; kubevisa could never find it again`,
      {
        details: { field: 'metadata.labels' },
      },
    );
  }
}

// An object read back (with resourceVersion and uid) must not carry them into a create: the API refuses a
// resourceVersion on create.
function withoutServerFields<T extends { metadata: { resourceVersion?: string; uid?: string } }>(object: T): T {
  const { resourceVersion: _resourceVersion, uid: _uid, ...metadata } = object.metadata;
  return { ...object, metadata };
}

interface WatchOptions<T> {
  kubeConfig: ReturnType<typeof loadKubeConfig>;
  name: string;
  server: string;
  timeoutMs: number;
  watchTimeoutSeconds: number;
  /** The collection's path, cluster-wide, e.g. `/apis/rbac.authorization.k8s.io/v1/rolebindings`. */
  path: string;
  labelSelector: string;
  /** What is watched, for error messages (`visa RoleBindings`). */
  what: string;
  /** Reads one object the server sent; what it throws is reported to `onError` as the cluster's fault. */
  convert: (object: unknown) => T;
  onObject: (type: 'ADDED' | 'MODIFIED' | 'DELETED', value: T) => void;
  /** The watch had to start over: the consumer must compare everything. */
  onResync: () => void;
  onError: (error: KubevisaError) => void;
}

function watchObjects<T>(options: WatchOptions<T>): () => void {
  const { name, onError, path } = options;
  const watch = new Watch(options.kubeConfig);
  const context = {
    cluster: name,
    server: options.server,
    action: `watch ${options.what}`,
    timeoutMs: options.timeoutMs,
  };
  let stopped = false;
  let controller: AbortController | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let resourceVersion: string | undefined;
  let failures = 0;

  const report = (error: unknown) => {
    if (!stopped) onError(toClusterError(error, context));
  };
  const schedule = (delayMs: number) => {
    if (stopped) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void start();
    }, delayMs);
  };
  const backoff = () => Math.min(WATCH_MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures - 1, 16));

  // A failure in the consumer's handler is the consumer's bug, not the cluster's: reported as such.
  const deliver = (handler: () => void) => {
    try {
      handler();
    } catch (error) {
      onError(
        new KubevisaError(
          `cluster '${name}': the ${options.what} watch's event handler threw: ${error instanceof Error ? error.message : String(error)}`,
          { status: 500, details: { cluster: name }, cause: error },
        ),
      );
    }
  };

  // client-node calls this for every line and silently swallows anything it throws, so nothing may escape.
  const handle = (phase: string, object: unknown) => {
    if (stopped) return;
    if (phase === 'ERROR') {
      const status = isRecord(object) ? object : {};
      if (status['code'] === 410) {
        // The resourceVersion was compacted away: start over from the current state and say so.
        resourceVersion = undefined;
        deliver(options.onResync);
      } else {
        // Shaped like Watch's own non-200 error, so the Status inside is read like any other answer.
        report({ statusCode: typeof status['code'] === 'number' ? status['code'] : 500, body: status });
      }
      return;
    }
    const version =
      isRecord(object) && isRecord(object['metadata']) ? object['metadata']['resourceVersion'] : undefined;
    if (typeof version === 'string') resourceVersion = version;
    failures = 0;
    if (phase !== 'ADDED' && phase !== 'MODIFIED' && phase !== 'DELETED') return;
    let value: T;
    try {
      value = options.convert(object);
    } catch (error) {
      report(error);
      return;
    }
    deliver(() => options.onObject(phase, value));
  };

  async function start(): Promise<void> {
    if (stopped) return;
    const startedAt = Date.now();
    let finished = false;
    const done = (error: unknown) => {
      finished = true;
      controller = undefined;
      if (stopped) return;
      if (error !== null && error !== undefined) {
        failures++;
        report(error);
        schedule(backoff());
      } else if (Date.now() - startedAt < 1000) {
        // A watch the server ends at once (e.g. a proxy in between) must not become a busy loop.
        failures++;
        schedule(backoff());
      } else {
        schedule(0);
      }
    };
    try {
      const query = {
        labelSelector: options.labelSelector,
        allowWatchBookmarks: true,
        timeoutSeconds: options.watchTimeoutSeconds,
        resourceVersion,
      };
      const started = await watch.watch(path, query, handle, done);
      if (stopped) started.abort();
      // When done() already ran (the connection failed), this controller is spent and a retry may be scheduled.
      else if (!finished) controller = started;
    } catch (error) {
      // watch() throws only before it connects (no cluster, or the credential plugin failed).
      done(error);
    }
  }

  void start();
  return () => {
    stopped = true;
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    controller?.abort();
    controller = undefined;
  };
}
