/**
 * The "who can do what where" matrix: for every subject bound anywhere and every namespace it is bound in (and
 * cluster scope), its effective permissions — its own grants, its groups' grants (the implicit ones included) and
 * every ClusterRoleBinding — compacted per resource the way `kubectl auth can-i --list` prints them. Pure.
 *
 * Rule sets repeat a lot (many bindings to the same few roles), so permissions are compacted once per distinct
 * set of roles and shared.
 */
import type { PolicyRule } from '../domain/model.ts';
import { identityOf, type Grant, type RbacIndex, type SubjectInfo } from './rbac-index.ts';

/** What may be done to one resource (with its API group and, when the rule names them, specific objects). */
export interface ResourcePermission {
  /** '' for the core group, `*` for every group. */
  apiGroup: string;
  /** `pods`, `pods/exec`, `*`. */
  resource: string;
  /** Empty: every object. */
  resourceNames: readonly string[];
  /** Sorted; `*` means every verb. */
  verbs: readonly string[];
}

export interface NonResourcePermission {
  url: string;
  verbs: readonly string[];
}

export interface Permissions {
  resources: readonly ResourcePermission[];
  nonResourceURLs: readonly NonResourcePermission[];
}

export interface MatrixRow {
  subject: SubjectInfo;
  /** '' for cluster scope (what ClusterRoleBindings give: every namespace and cluster-scoped resources). */
  namespace: string;
  /** Every grant that contributes, the groups' included. */
  grants: readonly Grant[];
  permissions: Permissions;
}

/** One row per (subject, namespace it is bound in) and one cluster-scope row per subject, ordered by subject. */
export function permissionMatrix(index: RbacIndex): MatrixRow[] {
  const cache = new Map<string, Permissions>();
  const rows: MatrixRow[] = [];
  const subjects = [...index.subjects.values()].sort((a, b) => compare(a.key, b.key));
  for (const subject of subjects) {
    const identity = identityOf(subject);
    const namespaces = new Set<string>(['']);
    for (const grant of index.grantsOf(subject.key)) namespaces.add(grant.namespace);
    for (const namespace of [...namespaces].sort(compare)) {
      const grants = index.grantsFor(identity, namespace);
      rows.push({ subject, namespace, grants, permissions: permissionsOfGrants(grants, cache) });
    }
  }
  return rows;
}

/** Compacted permissions of some grants; `cache` (keyed by the set of roles) may be shared between calls. */
export function permissionsOfGrants(grants: readonly Grant[], cache?: Map<string, Permissions>): Permissions {
  const roleKeys = [...new Set(grants.map((grant) => grant.role.key))].sort(compare);
  const cacheKey = roleKeys.join('\n');
  const cached = cache?.get(cacheKey);
  if (cached !== undefined) return cached;
  const seen = new Set<string>();
  const rules: PolicyRule[] = [];
  for (const grant of grants) {
    if (seen.has(grant.role.key)) continue;
    seen.add(grant.role.key);
    rules.push(...grant.role.rules);
  }
  const permissions = compactRules(rules);
  cache?.set(cacheKey, permissions);
  return permissions;
}

/**
 * Merges rules into one entry per (API group, resource, resource names) with the union of their verbs, and one per
 * non-resource URL: the shape of `kubectl auth can-i --list`. Sorted for stable output.
 */
export function compactRules(rules: readonly PolicyRule[]): Permissions {
  const resources = new Map<
    string,
    { apiGroup: string; resource: string; resourceNames: string[]; verbs: Set<string> }
  >();
  const urls = new Map<string, Set<string>>();
  for (const rule of rules) {
    if (rule.verbs.length === 0) continue;
    const names = [...(rule.resourceNames ?? [])].sort(compare);
    const namesKey = names.join(',');
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        const key = `${group}\u0000${resource}\u0000${namesKey}`;
        let entry = resources.get(key);
        if (entry === undefined) {
          entry = { apiGroup: group, resource, resourceNames: names, verbs: new Set() };
          resources.set(key, entry);
        }
        for (const verb of rule.verbs) entry.verbs.add(verb);
      }
    }
    for (const url of rule.nonResourceURLs ?? []) {
      let verbs = urls.get(url);
      if (verbs === undefined) urls.set(url, (verbs = new Set()));
      for (const verb of rule.verbs) verbs.add(verb);
    }
  }
  return {
    resources: [...resources.values()]
      .map((entry) => ({
        apiGroup: entry.apiGroup,
        resource: entry.resource,
        resourceNames: entry.resourceNames,
        verbs: [...entry.verbs].sort(compare),
      }))
      .sort(
        (a, b) =>
          compare(a.resource, b.resource) ||
          compare(a.apiGroup, b.apiGroup) ||
          compare(a.resourceNames.join(','), b.resourceNames.join(',')),
      ),
    nonResourceURLs: [...urls.entries()]
      .map(([url, verbs]) => ({ url, verbs: [...verbs].sort(compare) }))
      .sort((a, b) => compare(a.url, b.url)),
  };
}

/**
 * `pods`, `deployments.apps`, `deployments.apps/scale`, `*.*`: how kubectl names a resource in `auth can-i --list`
 * (the group goes between the resource and its subresource).
 */
export function resourceLabel(permission: Pick<ResourcePermission, 'apiGroup' | 'resource'>): string {
  if (permission.apiGroup === '') return permission.resource;
  const slash = permission.resource.indexOf('/');
  if (slash === -1) return `${permission.resource}.${permission.apiGroup}`;
  return `${permission.resource.slice(0, slash)}.${permission.apiGroup}${permission.resource.slice(slash)}`;
}

export interface MatrixFilter {
  /** Subject key (`User:alice@x`), name, username or `ns/name` of a ServiceAccount; exact, case-sensitive. */
  subject?: string;
  /** Rows for this namespace, plus the cluster-scope rows (which apply in it too). */
  namespace?: string;
  /** Rows granting this verb (directly or through `*`) on something. */
  verb?: string;
  /** Rows granting something on this resource (`pods`, `pods/exec`), directly or through a wildcard. */
  resource?: string;
}

/** The rows that pass every given criterion. */
export function filterMatrix(rows: readonly MatrixRow[], filter: MatrixFilter): MatrixRow[] {
  return rows.filter((row) => {
    if (filter.subject !== undefined && !subjectMatches(row.subject, filter.subject)) return false;
    if (filter.namespace !== undefined && row.namespace !== '' && row.namespace !== filter.namespace) return false;
    if (filter.verb === undefined && filter.resource === undefined) return true;
    return row.permissions.resources.some(
      (permission) =>
        (filter.verb === undefined || permission.verbs.includes('*') || permission.verbs.includes(filter.verb)) &&
        (filter.resource === undefined || resourceMatches(permission.resource, filter.resource)),
    );
  });
}

export function subjectMatches(subject: SubjectInfo, wanted: string): boolean {
  return (
    subject.key === wanted ||
    subject.name === wanted ||
    subject.username === wanted ||
    (subject.kind === 'ServiceAccount' && `${subject.namespace}/${subject.name}` === wanted)
  );
}

function resourceMatches(granted: string, wanted: string): boolean {
  if (granted === '*' || granted === wanted) return true;
  const slash = wanted.indexOf('/');
  return slash !== -1 && granted === `*/${wanted.slice(slash + 1)}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
