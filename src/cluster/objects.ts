/**
 * What kubevisa puts in a cluster, as plain values: the person's ServiceAccount, a visa's RoleBindings, the
 * profile ClusterRoles, and kubevisa's own least-privilege RBAC. Pure builders and comparisons (no I/O), so the
 * exact names, labels and annotations are tested without a cluster and the reconciler compares desired with
 * actual using the same code that built desired.
 *
 * These types are kubevisa's own, narrower than @kubernetes/client-node's models: only client.ts converts.
 */
import { InvalidInput } from '../domain/errors.ts';
import type { PolicyRule, Profile, Visa } from '../domain/model.ts';
import { personHash, profileClusterRoleName, roleBindingName, serviceAccountName } from '../domain/names.ts';
import { SYSTEM_NAMESPACE, VISAS_NAMESPACE } from '../domain/protected-namespaces.ts';
import { formatInstant } from '../domain/time.ts';
import { assertProfileIsSafe } from '../rbac/lint.ts';
import { CORE_GROUP, RBAC_GROUP } from '../rbac/rules.ts';
import { FENCE_CONFIG_MAP } from './fencing.ts';

// ——— Names, labels and annotations (every one of them is visible to anyone with kubectl) ———

// `kubevisa-visas` (one ServiceAccount per person) and `kubevisa-system` (kubevisa's own ServiceAccount) are named
// with the protected namespaces, which they are: no visa ever grants either.
export { SYSTEM_NAMESPACE, VISAS_NAMESPACE };
/** kubevisa's own ServiceAccount in `kubevisa-system`. */
export const CONTROLLER_SERVICE_ACCOUNT = 'kubevisa';
/** The username kube-apiserver gives kubevisa's own credential. */
export const CONTROLLER_USERNAME = `system:serviceaccount:${SYSTEM_NAMESPACE}:${CONTROLLER_SERVICE_ACCOUNT}`;
/** ClusterRole and ClusterRoleBinding granting kubevisa what it needs cluster-wide. */
export const CONTROLLER_CLUSTER_ROLE = 'kubevisa:controller';
/** Role and RoleBinding in `kubevisa-visas`: the person ServiceAccounts, their tokens, impersonating them. */
export const VISAS_ROLE = 'kubevisa:visas';
/** Role and RoleBinding in `kubevisa-system`: kubevisa may renew its own token and nothing else there. */
export const SELF_TOKEN_ROLE = 'kubevisa:self-token';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'kubevisa';
/** Label: the visa a RoleBinding exists for. */
export const VISA_LABEL = 'kubevisa.io/visa';
/** Label: `personHash(email)`; label values cannot hold an email (`@`, > 63 characters). */
export const PERSON_LABEL = 'kubevisa.io/person';
/** Label on a profile ClusterRole: the profile's name. */
export const PROFILE_LABEL = 'kubevisa.io/profile';
/**
 * Label on kubevisa's own objects (namespaces, ServiceAccount, RBAC) and profile ClusterRoles. Selectors for those
 * use it rather than managed-by, because `helm install` and `helm upgrade` set managed-by to `Helm` on everything in
 * the chart (helm.sh/helm/v4 pkg/action/validate.go, setMetadataVisitor); visa RoleBindings and person
 * ServiceAccounts are only ever made by kubevisa itself and keep managed-by=kubevisa.
 */
export const PART_OF_LABEL = 'app.kubernetes.io/part-of';
export const PART_OF_VALUE = 'kubevisa';
/** Label on kubevisa's own objects (namespaces, ServiceAccount, RBAC), which no reconciler may remove. */
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const COMPONENT_VALUE = 'controller';
/** Annotation: when the binding ends, RFC 3339 in UTC (`2026-11-28T17:00:00Z`). */
export const NOT_AFTER_ANNOTATION = 'kubevisa.io/not-after';
/** Annotation: the person's email, exactly as the IdP gave it. */
export const PERSON_ANNOTATION = 'kubevisa.io/person';
/** Annotation on the person's ServiceAccount: kubevisa's person id. */
export const PERSON_ID_ANNOTATION = 'kubevisa.io/person-id';
/**
 * Annotation on the person's ServiceAccount: until when direct-mode tokens issued for it may live (RFC 3339, UTC; the
 * latest one). Written before a token is handed out; while it lies ahead, a binding that direct mode must not carry
 * is only ever added to a new ServiceAccount (see the reconciler), so the old tokens die with the old one.
 */
export const DIRECT_TOKENS_UNTIL_ANNOTATION = 'kubevisa.io/direct-tokens-until';
/**
 * Annotation on a person's ServiceAccount made again to end its direct tokens (RFC 3339, UTC): kube-apiserver may
 * still accept the old tokens for its token cache's 10 s after that.
 */
export const ROTATED_AT_ANNOTATION = 'kubevisa.io/rotated-at';
/** Annotation: the reason (ticket) the visa was granted for. */
export const REASON_ANNOTATION = 'kubevisa.io/reason';
/** Annotation on a profile ClusterRole: the profile's description. */
export const DESCRIPTION_ANNOTATION = 'kubevisa.io/description';

/**
 * Selects the RoleBindings that visas own. The `kubevisa.io/visa` key is required as well as managed-by, because
 * kubevisa's own RoleBindings (`kubevisa:visas`, `kubevisa:self-token`) are managed-by kubevisa too, and a
 * reconciler that deleted "every managed binding not desired" must never find those.
 */
export const VISA_ROLE_BINDING_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${VISA_LABEL}`;
/** Selects kubevisa's own objects (its namespaces, ServiceAccount and RBAC), never a visa's or a person's. */
export const OWN_OBJECT_SELECTOR = `${PART_OF_LABEL}=${PART_OF_VALUE},${COMPONENT_LABEL}=${COMPONENT_VALUE}`;
/**
 * Selects the profile ClusterRoles (`kubevisa:profile:<name>`), installed by `kubevisa install` or by Helm: the
 * kubevisa-only key alone, so profiles installed before the part-of label existed are found too.
 */
export const PROFILE_CLUSTER_ROLE_SELECTOR = PROFILE_LABEL;
/** Selects the person ServiceAccounts (in `kubevisa-visas`). */
export const PERSON_SERVICE_ACCOUNT_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${PERSON_LABEL}`;

// ——— Shapes ———

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Opaque: compare for equality only. Absent on objects not read from a cluster. */
  resourceVersion?: string;
  uid?: string;
}
export type NamespacedMeta = ObjectMeta & { namespace: string };

export interface Subject {
  kind: string;
  name: string;
  namespace?: string;
  /** `''` (or absent) for ServiceAccounts, `rbac.authorization.k8s.io` for users and groups. */
  apiGroup?: string;
}
export interface RoleRef {
  apiGroup: string;
  kind: string;
  name: string;
}
export interface RoleBinding {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'RoleBinding';
  metadata: NamespacedMeta;
  roleRef: RoleRef;
  subjects: Subject[];
}
export interface ClusterRoleBinding {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'ClusterRoleBinding';
  metadata: ObjectMeta;
  roleRef: RoleRef;
  subjects: Subject[];
}
export interface ClusterRole {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'ClusterRole';
  metadata: ObjectMeta;
  rules: PolicyRule[];
}
export interface Role {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'Role';
  metadata: NamespacedMeta;
  rules: PolicyRule[];
}
export interface ServiceAccount {
  apiVersion: 'v1';
  kind: 'ServiceAccount';
  metadata: NamespacedMeta;
  /** false on everything kubevisa creates: no pod ever runs as a person or as a visa. */
  automountServiceAccountToken?: boolean;
}
export interface Namespace {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: ObjectMeta;
}

// ——— Builders ———

/**
 * The person's identity in a cluster: ServiceAccount `serviceAccountName(email)` in `kubevisa-visas`.
 * @param email exactly as stored for the person (not normalised: look-alikes must stay apart).
 * @param personId kubevisa's id for the person, kept in an annotation for the audit trail.
 */
export function personServiceAccount(input: { email: string; personId: string }): ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: {
      name: serviceAccountName(input.email),
      namespace: VISAS_NAMESPACE,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [PERSON_LABEL]: personHash(input.email) },
      annotations: { [PERSON_ANNOTATION]: input.email, [PERSON_ID_ANNOTATION]: input.personId },
    },
    automountServiceAccountToken: false,
  };
}

/**
 * One visa's RoleBinding in one of its namespaces: `kubevisa-<visa id>`, binding the holder's ServiceAccount to
 * ClusterRole `kubevisa:profile:<profile>`. Its annotations say who holds it, why, and until when.
 * @throws InvalidInput when `namespace` is not one of the visa's namespaces, or the visa id or profile is not
 *   a valid name.
 */
export function visaRoleBinding(input: { visa: Visa; namespace: string }): RoleBinding {
  const { visa, namespace } = input;
  if (!visa.namespaces.includes(namespace)) {
    throw new InvalidInput(
      `visa ${visa.id} does not grant namespace '${namespace}'; it grants ${visa.namespaces.join(', ')}`,
      { details: { field: 'namespace', value: namespace, allowed: visa.namespaces } },
    );
  }
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: roleBindingName(visa.id),
      namespace,
      labels: {
        [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
        [VISA_LABEL]: visa.id,
        [PERSON_LABEL]: personHash(visa.personEmail),
      },
      annotations: {
        [NOT_AFTER_ANNOTATION]: formatInstant(visa.notAfter),
        [PERSON_ANNOTATION]: visa.personEmail,
        [REASON_ANNOTATION]: visa.reason,
      },
    },
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: profileClusterRoleName(visa.profile) },
    subjects: [{ kind: 'ServiceAccount', name: serviceAccountName(visa.personEmail), namespace: VISAS_NAMESPACE }],
  };
}

/**
 * A profile installed as ClusterRole `kubevisa:profile:<name>`. The profile is linted first: a ClusterRole is
 * the point of no return for a risky rule.
 * @throws RiskyProfile for undeclared risks or invalid rules; InvalidInput for a bad name.
 */
export function profileClusterRole(profile: Profile): ClusterRole {
  assertProfileIsSafe(profile);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: {
      name: profileClusterRoleName(profile.name),
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [PART_OF_LABEL]: PART_OF_VALUE, [PROFILE_LABEL]: profile.name },
      annotations: { [DESCRIPTION_ANNOTATION]: profile.description },
    },
    rules: profile.rules.map(copyRule),
  };
}

/** `kubevisa-visas` and `kubevisa-system`. */
export function kubevisaNamespaces(): Namespace[] {
  return [VISAS_NAMESPACE, SYSTEM_NAMESPACE].map((name) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: controllerLabels(), annotations: {} },
  }));
}

/** kubevisa's own ServiceAccount, `kubevisa` in `kubevisa-system`. */
export function controllerServiceAccount(): ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: {
      name: CONTROLLER_SERVICE_ACCOUNT,
      namespace: SYSTEM_NAMESPACE,
      labels: controllerLabels(),
      annotations: {},
    },
    automountServiceAccountToken: false,
  };
}

/** The RBAC an admin installs once so kubevisa can work with its own, least-privilege credential. */
export interface KubevisaControllerRbac {
  /** `kubevisa:controller`: manage RoleBindings, bind profile ClusterRoles, read RBAC and namespaces. */
  clusterRole: ClusterRole;
  /** Grants `clusterRole` to kubevisa; created by the admin (kubevisa can never create ClusterRoleBindings). */
  clusterRoleBinding: ClusterRoleBinding;
  /** `kubevisa:visas` in `kubevisa-visas`: person ServiceAccounts, their tokens, impersonating them. */
  visasRole: Role;
  visasRoleBinding: RoleBinding;
  /**
   * `kubevisa:self-token` in `kubevisa-system`: a token for ServiceAccount `kubevisa` only, and the fence ConfigMap
   * (fencing.ts).
   */
  selfTokenRole: Role;
  selfTokenRoleBinding: RoleBinding;
}

const READ = ['get', 'list', 'watch'];

/**
 * kubevisa's least-privilege RBAC. What it deliberately lacks: `escalate` and `bind` on anything but the profile
 * ClusterRoles, creating or deleting ClusterRoles, ClusterRoleBinding writes, Secrets, impersonation of users,
 * groups or ServiceAccounts outside `kubevisa-visas`, and tokens for any ServiceAccount but the person ones and
 * its own.
 *
 * Kubernetes lets a RoleBinding to a ClusterRole be created (or updated) only by someone who holds every
 * permission in it or has `bind` on it; so the `bind` rule, limited by resourceNames, is what confines kubevisa to
 * the profiles. An empty resourceNames list would mean *every* ClusterRole, so with no profiles the rule is left
 * out entirely.
 *
 * The same rule carries `update` and `escalate` on exactly those profile ClusterRoles, so the reconciler can put
 * back a profile someone widened by hand (a widened profile widens every visa that uses it). Kubernetes checks
 * the rules of the object written, not the change: without `escalate`, restoring a role needs the writer to hold
 * every rule in it cluster-wide (for developer: creating pods in every namespace), which is far more than this;
 * `bind` does not count, and creating or re-creating a role cannot be limited by name. The cost, weighed in
 * install.ts: a stolen kubevisa credential could write any rules into the profile ClusterRoles (never any other
 * role), while kubevisa itself only ever writes the linted, reviewed rules from its store.
 * @param profileNames the installed profiles' names (not ClusterRole names); order and duplicates do not matter.
 */
export function kubevisaControllerRbac(profileNames: readonly string[]): KubevisaControllerRbac {
  const profileRoleNames = [...new Set(profileNames.map(profileClusterRoleName))].sort();
  const subject: Subject = { kind: 'ServiceAccount', name: CONTROLLER_SERVICE_ACCOUNT, namespace: SYSTEM_NAMESPACE };
  const clusterRules: PolicyRule[] = [
    // Creating and removing visa RoleBindings in any namespace; update/patch to restore drifted ones in place.
    {
      apiGroups: [RBAC_GROUP],
      resources: ['rolebindings'],
      verbs: [...READ, 'create', 'update', 'patch', 'delete'],
    },
  ];
  if (profileRoleNames.length > 0) {
    clusterRules.push({
      apiGroups: [RBAC_GROUP],
      resources: ['clusterroles'],
      verbs: ['bind', 'escalate', 'update'],
      resourceNames: profileRoleNames,
    });
  }
  clusterRules.push(
    // Putting back its own ClusterRole when someone widened it. Kubernetes lets a role be written only with rules
    // the writer holds (no escalate here), so this can narrow kubevisa's rights to the reviewed ones, never widen.
    {
      apiGroups: [RBAC_GROUP],
      resources: ['clusterroles'],
      verbs: ['update'],
      resourceNames: [CONTROLLER_CLUSTER_ROLE],
    },
    // Exposure scans resolve every binding in the cluster to subjects and rules.
    {
      apiGroups: [RBAC_GROUP],
      resources: ['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings'],
      verbs: READ,
    },
    { apiGroups: [CORE_GROUP], resources: ['namespaces'], verbs: ['get', 'list'] },
  );
  return {
    clusterRole: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: CONTROLLER_CLUSTER_ROLE, labels: controllerLabels(), annotations: {} },
      rules: clusterRules,
    },
    clusterRoleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: CONTROLLER_CLUSTER_ROLE, labels: controllerLabels(), annotations: {} },
      roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: CONTROLLER_CLUSTER_ROLE },
      subjects: [{ ...subject }],
    },
    visasRole: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: VISAS_ROLE, namespace: VISAS_NAMESPACE, labels: controllerLabels(), annotations: {} },
      rules: [
        {
          apiGroups: [CORE_GROUP],
          resources: ['serviceaccounts'],
          verbs: [...READ, 'create', 'update', 'patch', 'delete'],
        },
        // Direct mode: short-lived tokens for the person ServiceAccounts.
        { apiGroups: [CORE_GROUP], resources: ['serviceaccounts/token'], verbs: ['create'] },
        // Gateway mode: a namespaced Role, so only ServiceAccounts of kubevisa-visas can be impersonated.
        { apiGroups: [CORE_GROUP], resources: ['serviceaccounts'], verbs: ['impersonate'] },
        // Putting this Role back when someone widened it (only ever to rules kubevisa holds, see above).
        { apiGroups: [RBAC_GROUP], resources: ['roles'], verbs: ['update'], resourceNames: [VISAS_ROLE] },
      ],
    },
    visasRoleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: VISAS_ROLE, namespace: VISAS_NAMESPACE, labels: controllerLabels(), annotations: {} },
      roleRef: { apiGroup: RBAC_GROUP, kind: 'Role', name: VISAS_ROLE },
      subjects: [{ ...subject }],
    },
    selfTokenRole: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: SELF_TOKEN_ROLE, namespace: SYSTEM_NAMESPACE, labels: controllerLabels(), annotations: {} },
      rules: [
        {
          apiGroups: [CORE_GROUP],
          resources: ['serviceaccounts/token'],
          verbs: ['create'],
          resourceNames: [CONTROLLER_SERVICE_ACCOUNT],
        },
        { apiGroups: [RBAC_GROUP], resources: ['roles'], verbs: ['update'], resourceNames: [SELF_TOKEN_ROLE] },
        // The fence a new leader raises before its first write (fencing.ts). Kubernetes cannot limit `create` by
        // name: kubevisa may create ConfigMaps in its own namespace, and read or change only the fence.
        {
          apiGroups: [CORE_GROUP],
          resources: ['configmaps'],
          verbs: ['get', 'update'],
          resourceNames: [FENCE_CONFIG_MAP],
        },
        { apiGroups: [CORE_GROUP], resources: ['configmaps'], verbs: ['create'] },
      ],
    },
    selfTokenRoleBinding: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: SELF_TOKEN_ROLE, namespace: SYSTEM_NAMESPACE, labels: controllerLabels(), annotations: {} },
      roleRef: { apiGroup: RBAC_GROUP, kind: 'Role', name: SELF_TOKEN_ROLE },
      subjects: [{ ...subject }],
    },
  };
}

// ——— Comparisons ———

/** True for an object carrying `app.kubernetes.io/managed-by=kubevisa`. */
export function isManaged(object: { metadata?: { labels?: Readonly<Record<string, string>> } }): boolean {
  return object.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

/** True for a RoleBinding a visa owns (managed-by kubevisa and labelled with a visa id). */
export function isVisaRoleBinding(binding: Pick<RoleBinding, 'metadata'>): boolean {
  return isManaged(binding) && (binding.metadata.labels[VISA_LABEL] ?? '') !== '';
}

/**
 * How `actual` differs from `desired` in what matters for access and for the record: namespace and name, roleRef,
 * subjects (as a set), every label `desired` carries, and the `kubevisa.io/not-after` annotation. Labels or
 * annotations someone added beside kubevisa's are not drift. Empty when they match.
 * @returns one sentence per difference, for drift alerts.
 */
export function roleBindingDifferences(actual: RoleBinding, desired: RoleBinding): string[] {
  const differences: string[] = [];
  const where = (b: RoleBinding) => `${b.metadata.namespace}/${b.metadata.name}`;
  if (where(actual) !== where(desired)) differences.push(`is ${where(actual)}, expected ${where(desired)}`);
  const ref = (r: RoleRef) => `${r.kind} ${r.apiGroup}/${r.name}`;
  if (ref(actual.roleRef) !== ref(desired.roleRef)) {
    differences.push(`roleRef is ${ref(actual.roleRef)}, expected ${ref(desired.roleRef)}`);
  }
  const subjects = (b: RoleBinding) => [...new Set(b.subjects.map(subjectKey))].sort();
  const actualSubjects = subjects(actual);
  const desiredSubjects = subjects(desired);
  if (actualSubjects.join('\n') !== desiredSubjects.join('\n')) {
    differences.push(`subjects are [${actualSubjects.join(', ')}], expected [${desiredSubjects.join(', ')}]`);
  }
  for (const [key, value] of Object.entries(desired.metadata.labels)) {
    const found = actual.metadata.labels[key];
    if (found !== value) {
      differences.push(
        found === undefined ? `label ${key} is missing` : `label ${key} is '${found}', expected '${value}'`,
      );
    }
  }
  const actualNotAfter = actual.metadata.annotations[NOT_AFTER_ANNOTATION];
  const desiredNotAfter = desired.metadata.annotations[NOT_AFTER_ANNOTATION];
  if (actualNotAfter !== desiredNotAfter) {
    differences.push(
      `annotation ${NOT_AFTER_ANNOTATION} is ${actualNotAfter === undefined ? 'missing' : `'${actualNotAfter}'`}, expected '${desiredNotAfter}'`,
    );
  }
  return differences;
}

/** True when `actual` has drifted from `desired` in nothing `roleBindingDifferences` checks. */
export function roleBindingMatches(actual: RoleBinding, desired: RoleBinding): boolean {
  return roleBindingDifferences(actual, desired).length === 0;
}

/**
 * Only roleRef cannot change in place (Kubernetes refuses it): a RoleBinding whose roleRef differs must be deleted
 * and created again; any other drift can be restored with an update.
 */
export function needsRecreate(actual: RoleBinding, desired: RoleBinding): boolean {
  const a = actual.roleRef;
  const d = desired.roleRef;
  return a.apiGroup !== d.apiGroup || a.kind !== d.kind || a.name !== d.name;
}

// kube-apiserver defaults a subject's apiGroup ("" for ServiceAccounts, rbac.authorization.k8s.io for users and
// groups) and omits "" when reading back; the key treats an absent apiGroup as that default. Only ServiceAccount
// subjects have a namespace.
function subjectKey(subject: Subject): string {
  const isServiceAccount = subject.kind === 'ServiceAccount';
  const defaultGroup = isServiceAccount ? CORE_GROUP : RBAC_GROUP;
  const apiGroup = subject.apiGroup ?? defaultGroup;
  const group = apiGroup === defaultGroup ? '' : ` (apiGroup '${apiGroup}')`;
  const namespace = isServiceAccount ? `${subject.namespace ?? ''}/` : '';
  return `${subject.kind}${group} ${namespace}${subject.name}`;
}

function controllerLabels(): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [PART_OF_LABEL]: PART_OF_VALUE, [COMPONENT_LABEL]: COMPONENT_VALUE };
}

// Profiles are deeply frozen and share rule objects; the ClusterRole gets its own copies.
function copyRule(rule: PolicyRule): PolicyRule {
  const copy: PolicyRule = { verbs: [...rule.verbs] };
  if (rule.apiGroups !== undefined) copy.apiGroups = [...rule.apiGroups];
  if (rule.resources !== undefined) copy.resources = [...rule.resources];
  if (rule.resourceNames !== undefined) copy.resourceNames = [...rule.resourceNames];
  if (rule.nonResourceURLs !== undefined) copy.nonResourceURLs = [...rule.nonResourceURLs];
  return copy;
}
