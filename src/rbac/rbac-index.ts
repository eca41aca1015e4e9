/**
 * Resolves a cluster's RBAC objects, as listed, into grants: subject × namespace × role (with the role's rules
 * and the risks they carry), and answers "what may this identity do in this namespace" the way kube-apiserver's
 * RBAC authorizer would. Pure: it takes plain objects and reads nothing; the cluster adapter lists them.
 *
 * What kube-apiserver does and this mirrors:
 * - a RoleBinding grants its role's rules in its own namespace only; a ClusterRoleBinding grants them everywhere
 *   (and is the only way to reach cluster-scoped resources and non-resource URLs);
 * - a binding to a role that does not exist grants nothing (yet: creating the role later activates it);
 * - an aggregated ClusterRole holds the rules of every ClusterRole its selectors match (the aggregation controller
 *   copies them in; until it has, the scan counts both what the object holds and what it will hold);
 * - a ServiceAccount authenticates as `system:serviceaccount:<ns>:<name>` with the groups `system:serviceaccounts`,
 *   `system:serviceaccounts:<ns>` and `system:authenticated`; every other authenticated user has
 *   `system:authenticated`.
 */
import type { PolicyRule } from '../domain/model.ts';
import { RISKS } from './lint.ts';

// ——— Input shapes (structural: kubevisa's cluster types fit them; tests build them as plain values) ———

export interface ObjectMetaLike {
  name: string;
  namespace?: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
}

export interface SubjectLike {
  kind: string;
  name: string;
  namespace?: string;
  apiGroup?: string;
}

export interface RoleRefLike {
  apiGroup: string;
  kind: string;
  name: string;
}

export interface RoleLike {
  metadata: ObjectMetaLike;
  rules: readonly PolicyRule[];
}

export interface LabelSelectorRequirement {
  key: string;
  /** In, NotIn, Exists or DoesNotExist. */
  operator: string;
  values?: readonly string[];
}

export interface LabelSelector {
  matchLabels?: Readonly<Record<string, string>>;
  matchExpressions?: readonly LabelSelectorRequirement[];
}

export interface ClusterRoleLike extends RoleLike {
  aggregationRule?: { clusterRoleSelectors: readonly LabelSelector[] };
}

export interface BindingLike {
  metadata: ObjectMetaLike;
  roleRef: RoleRefLike;
  subjects: readonly SubjectLike[];
}

/** Every RBAC object of one cluster. */
export interface RbacObjects {
  roles: readonly RoleLike[];
  clusterRoles: readonly ClusterRoleLike[];
  roleBindings: readonly BindingLike[];
  clusterRoleBindings: readonly BindingLike[];
}

// ——— Resolved shapes ———

export type SubjectKind = 'User' | 'Group' | 'ServiceAccount';

/** A binding subject, normalised. One object per distinct subject: compare by `key`. */
export interface SubjectInfo {
  /** `User:alice@x`, `Group:devs`, `ServiceAccount:ns/name`. */
  key: string;
  kind: SubjectKind;
  name: string;
  /** ServiceAccounts only. */
  namespace?: string;
  /** The username kube-apiserver gives it: the name for users, `system:serviceaccount:ns:name` for accounts. */
  username?: string;
  /** Built into Kubernetes (`system:` users and groups, ServiceAccounts in kube-system and the like). */
  system: boolean;
}

export interface BindingRef {
  kind: 'RoleBinding' | 'ClusterRoleBinding';
  /** RoleBindings only. */
  namespace?: string;
  name: string;
  /** Labelled `app.kubernetes.io/managed-by=kubevisa`. */
  managed: boolean;
  /** The visa a managed binding belongs to (`kubevisa.io/visa`). */
  visaId?: string;
  /** Kubernetes' own bootstrap policy (`kubernetes.io/bootstrapping=rbac-defaults`). */
  builtin: boolean;
}

export interface ResolvedRole {
  /** `Role:ns/name` or `ClusterRole:name`. */
  key: string;
  kind: 'Role' | 'ClusterRole';
  namespace?: string;
  name: string;
  /** False for a roleRef naming a role that does not exist: such a binding grants nothing. */
  exists: boolean;
  rules: readonly PolicyRule[];
  /** Ids of the linter's risks (rbac/lint.ts RISKS) its rules carry, in RISKS order. */
  risks: readonly string[];
}

/** One subject of one binding: what the binding gives that subject, and where. */
export interface Grant {
  subject: SubjectInfo;
  /** The namespace the rules apply in; '' for a ClusterRoleBinding (every namespace and cluster scope). */
  namespace: string;
  binding: BindingRef;
  role: ResolvedRole;
}

/** Who is asking: a username and the groups it authenticates with. */
export interface Identity {
  username: string;
  groups: readonly string[];
}

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'kubevisa';
export const VISA_LABEL = 'kubevisa.io/visa';
export const BOOTSTRAP_LABEL = 'kubernetes.io/bootstrapping';
export const AUTHENTICATED_GROUP = 'system:authenticated';
export const UNAUTHENTICATED_GROUP = 'system:unauthenticated';
export const SERVICE_ACCOUNTS_GROUP = 'system:serviceaccounts';
export const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';

/** Risks that need a cluster-scoped resource or a non-resource URL, which a RoleBinding can never reach. */
export const CLUSTER_SCOPE_RISKS: ReadonlySet<string> = new Set([
  'nodes-proxy',
  'csr-approval',
  'admission-webhooks',
  'namespace-write',
  'non-resource-url',
]);

export class RbacIndex {
  /** Every grant, in the order the bindings were given. */
  readonly grants: readonly Grant[];
  /** Every distinct subject, by key. */
  readonly subjects: ReadonlyMap<string, SubjectInfo>;
  /** Every role a binding refers to (existing or not), by key. */
  readonly roles: ReadonlyMap<string, ResolvedRole>;
  readonly #bySubject: Map<string, Grant[]>;

  constructor(grants: Grant[], subjects: Map<string, SubjectInfo>, roles: Map<string, ResolvedRole>) {
    this.grants = grants;
    this.subjects = subjects;
    this.roles = roles;
    this.#bySubject = new Map();
    for (const grant of grants) {
      const list = this.#bySubject.get(grant.subject.key);
      if (list === undefined) this.#bySubject.set(grant.subject.key, [grant]);
      else list.push(grant);
    }
  }

  /** The grants bound directly to a subject key (not through its groups). */
  grantsOf(subjectKey: string): readonly Grant[] {
    return this.#bySubject.get(subjectKey) ?? [];
  }

  /**
   * The grants that apply to an identity in a namespace ('' = cluster scope: ClusterRoleBindings only): those bound
   * to its user (or ServiceAccount) and to each of its groups, in that namespace or cluster-wide.
   */
  grantsFor(identity: Identity, namespace: string): Grant[] {
    const keys = [userSubjectKey(identity.username), ...identity.groups.map((group) => `Group:${group}`)];
    const result: Grant[] = [];
    for (const key of keys) {
      for (const grant of this.grantsOf(key)) {
        if (grant.namespace === '' || (namespace !== '' && grant.namespace === namespace)) result.push(grant);
      }
    }
    return result;
  }

  /** The rules that apply to an identity in a namespace, as kube-apiserver's RBAC authorizer would collect them. */
  rulesFor(identity: Identity, namespace: string): PolicyRule[] {
    return this.grantsFor(identity, namespace).flatMap((grant) => grant.role.rules);
  }
}

/** The groups kube-apiserver adds when this subject authenticates (or is impersonated without groups). */
export function identityOf(subject: SubjectInfo): Identity {
  switch (subject.kind) {
    case 'ServiceAccount':
      return {
        username: subject.username ?? '',
        groups: [SERVICE_ACCOUNTS_GROUP, `${SERVICE_ACCOUNTS_GROUP}:${subject.namespace ?? ''}`, AUTHENTICATED_GROUP],
      };
    case 'Group':
      // A member of the group: what every holder of the group can do, at the least.
      return {
        username: '',
        groups: subject.name === AUTHENTICATED_GROUP ? [subject.name] : [subject.name, AUTHENTICATED_GROUP],
      };
    case 'User':
      return { username: subject.name, groups: [AUTHENTICATED_GROUP] };
  }
}

/** `User:<name>`, or `ServiceAccount:<ns>/<name>` for a ServiceAccount username. */
export function userSubjectKey(username: string): string {
  if (username.startsWith(SERVICE_ACCOUNT_PREFIX)) {
    const rest = username.slice(SERVICE_ACCOUNT_PREFIX.length);
    const colon = rest.indexOf(':');
    if (colon > 0) return `ServiceAccount:${rest.slice(0, colon)}/${rest.slice(colon + 1)}`;
  }
  return `User:${username}`;
}

/** Resolves every binding into grants. Linear in the number of objects; roles are resolved once each. */
export function buildRbacIndex(objects: RbacObjects): RbacIndex {
  const roleObjects = new Map<string, RoleLike>();
  for (const role of objects.roles)
    roleObjects.set(`Role:${role.metadata.namespace ?? ''}/${role.metadata.name}`, role);
  const clusterRoleObjects = new Map<string, ClusterRoleLike>();
  for (const role of objects.clusterRoles) clusterRoleObjects.set(role.metadata.name, role);
  const aggregated = aggregatedRules(objects.clusterRoles, clusterRoleObjects);

  const roles = new Map<string, ResolvedRole>();
  const subjects = new Map<string, SubjectInfo>();
  const grants: Grant[] = [];

  const resolveRole = (bindingNamespace: string | undefined, ref: RoleRefLike): ResolvedRole => {
    const isClusterRole = ref.kind === 'ClusterRole';
    const key = isClusterRole ? `ClusterRole:${ref.name}` : `Role:${bindingNamespace ?? ''}/${ref.name}`;
    const known = roles.get(key);
    if (known !== undefined) return known;
    let rules: readonly PolicyRule[] = [];
    let exists = false;
    if (isClusterRole) {
      const found = clusterRoleObjects.get(ref.name);
      if (found !== undefined) {
        exists = true;
        rules = aggregated.get(ref.name) ?? found.rules;
      }
    } else if (ref.kind === 'Role') {
      const found = roleObjects.get(key);
      if (found !== undefined) {
        exists = true;
        rules = found.rules;
      }
    }
    const resolved: ResolvedRole = {
      key,
      kind: isClusterRole ? 'ClusterRole' : 'Role',
      ...(isClusterRole ? {} : { namespace: bindingNamespace ?? '' }),
      name: ref.name,
      exists,
      rules,
      risks: risksOf(rules),
    };
    roles.set(key, resolved);
    return resolved;
  };

  const addBinding = (binding: BindingLike, kind: BindingRef['kind']) => {
    const { metadata } = binding;
    const namespace = kind === 'RoleBinding' ? (metadata.namespace ?? '') : '';
    const managed = metadata.labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
    const visaId = managed ? metadata.labels[VISA_LABEL] : undefined;
    const ref: BindingRef = {
      kind,
      ...(kind === 'RoleBinding' ? { namespace } : {}),
      name: metadata.name,
      managed,
      ...(visaId ? { visaId } : {}),
      builtin: metadata.labels[BOOTSTRAP_LABEL] === 'rbac-defaults',
    };
    const role = resolveRole(kind === 'RoleBinding' ? namespace : undefined, binding.roleRef);
    for (const raw of binding.subjects) {
      const subject = internSubject(subjects, raw, namespace);
      if (subject !== undefined) grants.push({ subject, namespace, binding: ref, role });
    }
  };
  for (const binding of objects.clusterRoleBindings) addBinding(binding, 'ClusterRoleBinding');
  for (const binding of objects.roleBindings) addBinding(binding, 'RoleBinding');
  return new RbacIndex(grants, subjects, roles);
}

/** True when the labels satisfy the selector (an empty selector matches everything, as in Kubernetes). */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const requirement of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, requirement.key);
    const value = labels[requirement.key];
    const values = requirement.values ?? [];
    switch (requirement.operator) {
      case 'In':
        if (!has || !values.includes(value ?? '')) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value ?? '')) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // Kubernetes refuses other operators when the selector is written; one read back here matches nothing.
        return false;
    }
  }
  return true;
}

/** The linter's risk ids a rule set carries, in RISKS order. */
export function risksOf(rules: readonly PolicyRule[]): string[] {
  return RISKS.filter((risk) => rules.some((rule) => risk.carriedBy(rule))).map((risk) => risk.id);
}

/** The risks a grant really gives: through a RoleBinding, those needing cluster scope are out of reach. */
export function effectiveRisks(grant: Grant): readonly string[] {
  if (grant.namespace === '') return grant.role.risks;
  return grant.role.risks.filter((risk) => !CLUSTER_SCOPE_RISKS.has(risk));
}

function internSubject(
  subjects: Map<string, SubjectInfo>,
  raw: SubjectLike,
  bindingNamespace: string,
): SubjectInfo | undefined {
  let key: string;
  let info: SubjectInfo;
  if (raw.kind === 'ServiceAccount') {
    // kube-apiserver requires the namespace of a ServiceAccount subject; an old object without one meant the
    // binding's own namespace.
    const namespace = raw.namespace !== undefined && raw.namespace !== '' ? raw.namespace : bindingNamespace;
    key = `ServiceAccount:${namespace}/${raw.name}`;
    const known = subjects.get(key);
    if (known !== undefined) return known;
    info = {
      key,
      kind: 'ServiceAccount',
      name: raw.name,
      namespace,
      username: `${SERVICE_ACCOUNT_PREFIX}${namespace}:${raw.name}`,
      system: namespace.startsWith('kube-'),
    };
  } else if (raw.kind === 'User' || raw.kind === 'Group') {
    // A User named like a ServiceAccount is that ServiceAccount: RBAC compares usernames.
    key = raw.kind === 'User' ? userSubjectKey(raw.name) : `Group:${raw.name}`;
    const known = subjects.get(key);
    if (known !== undefined) return known;
    if (key.startsWith('ServiceAccount:')) {
      const [namespace = '', name = ''] = key.slice('ServiceAccount:'.length).split('/');
      info = {
        key,
        kind: 'ServiceAccount',
        name,
        namespace,
        username: raw.name,
        system: namespace.startsWith('kube-'),
      };
    } else {
      info = {
        key,
        kind: raw.kind,
        name: raw.name,
        ...(raw.kind === 'User' ? { username: raw.name } : {}),
        system: raw.name.startsWith('system:'),
      };
    }
  } else {
    // Kubernetes refuses other kinds; nothing can authenticate as one.
    return undefined;
  }
  subjects.set(key, info);
  return info;
}

/**
 * The rules every aggregated ClusterRole holds or will hold: its own (what the object says now) and those of every
 * ClusterRole its selectors match (what the aggregation controller copies in), without duplicates. Aggregated roles
 * matching other aggregated roles are followed; a cycle stops where it closes.
 */
function aggregatedRules(
  clusterRoles: readonly ClusterRoleLike[],
  byName: ReadonlyMap<string, ClusterRoleLike>,
): Map<string, PolicyRule[]> {
  const result = new Map<string, PolicyRule[]>();
  const visiting = new Set<string>();
  const resolve = (role: ClusterRoleLike): readonly PolicyRule[] => {
    const name = role.metadata.name;
    const done = result.get(name);
    if (done !== undefined) return done;
    const selectors = role.aggregationRule?.clusterRoleSelectors;
    if (selectors === undefined || selectors.length === 0 || visiting.has(name)) return role.rules;
    visiting.add(name);
    const rules = new Map<string, PolicyRule>();
    for (const rule of role.rules) rules.set(ruleKey(rule), rule);
    for (const other of byName.values()) {
      if (other.metadata.name === name) continue;
      if (!selectors.some((selector) => selectorMatches(selector, other.metadata.labels))) continue;
      for (const rule of resolve(other)) rules.set(ruleKey(rule), rule);
    }
    visiting.delete(name);
    const list = [...rules.values()];
    result.set(name, list);
    return list;
  };
  for (const role of clusterRoles) if (role.aggregationRule !== undefined) resolve(role);
  return result;
}

function ruleKey(rule: PolicyRule): string {
  return JSON.stringify([rule.apiGroups, rule.resources, rule.resourceNames, rule.verbs, rule.nonResourceURLs]);
}
