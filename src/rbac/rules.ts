// Kubernetes RBAC rule matching, as kube-apiserver evaluates it (pkg/apis/rbac/v1/evaluation_helpers.go), so that
// the linter and the permission reports judge a rule by what it really grants, not by how it is spelled:
// - the core API group is `""`; `*` in apiGroups, resources or verbs matches everything;
// - a resource `pods` does not include its subresources: `pods/exec` must be named, or matched by `*` or `*/exec`;
// - names are compared exactly (RBAC is case-sensitive: `Secrets` grants nothing).
// (Line comments here: the `*/` in those patterns would end a block comment.)
import type { PolicyRule } from '../domain/model.ts';

/** The core API group (pods, secrets, namespaces…) as RBAC writes it. */
export const CORE_GROUP = '';
export const RBAC_GROUP = 'rbac.authorization.k8s.io';

/** What a rule is asked about: an API group, a resource (optionally `resource/subresource`) and verbs. */
export interface RuleQuery {
  apiGroup: string;
  /** `pods`, or with a subresource `pods/exec`. */
  resource: string;
  /** Verbs any one of which counts; `'any'` counts every verb the rule grants. */
  verbs: readonly string[] | 'any';
}

/** True when the rule grants at least one of the query's verbs on the resource in the API group. */
export function ruleGrants(rule: PolicyRule, query: RuleQuery): boolean {
  return (
    apiGroupMatches(rule, query.apiGroup) && resourceMatches(rule, query.resource) && verbMatches(rule, query.verbs)
  );
}

/** True when the rule grants any of the verbs on any of the resources in the API group. */
export function ruleGrantsAny(
  rule: PolicyRule,
  apiGroup: string,
  resources: readonly string[],
  verbs: readonly string[] | 'any',
): boolean {
  return resources.some((resource) => ruleGrants(rule, { apiGroup, resource, verbs }));
}

/** True when the rule lists the verb by name (not through `*`). */
export function listsVerb(rule: PolicyRule, verb: string): boolean {
  return rule.verbs.includes(verb);
}

/**
 * A rule as canonical text (lists sorted, empty ones left out), for comparing rule sets whatever the order in
 * which kube-apiserver or a person wrote them: `apiGroups=[""] resources=[secrets] verbs=[get]`.
 */
export function canonicalRule(rule: PolicyRule): string {
  const list = (name: string, values: readonly string[] | undefined) =>
    values !== undefined && values.length > 0
      ? `${name}=[${[...values]
          .map((v) => (v === '' ? '""' : v))
          .sort()
          .join(',')}]`
      : '';
  return [
    list('apiGroups', rule.apiGroups),
    list('resources', rule.resources),
    list('resourceNames', rule.resourceNames),
    list('nonResourceURLs', rule.nonResourceURLs),
    list('verbs', rule.verbs),
  ]
    .filter((part) => part !== '')
    .join(' ');
}

/** Rules (as canonical text) in `a` and not in `b`: what `a` grants beyond `b`, rule by rule. */
export function ruleSetDifference(a: readonly PolicyRule[], b: readonly PolicyRule[]): string[] {
  const inB = new Set(b.map(canonicalRule));
  return [...new Set(a.map(canonicalRule))].filter((rule) => !inB.has(rule));
}

function apiGroupMatches(rule: PolicyRule, apiGroup: string): boolean {
  return (rule.apiGroups ?? []).some((group) => group === '*' || group === apiGroup);
}

function resourceMatches(rule: PolicyRule, resource: string): boolean {
  const slash = resource.indexOf('/');
  const subresource = slash === -1 ? '' : resource.slice(slash + 1);
  return (rule.resources ?? []).some(
    (ruleResource) =>
      ruleResource === '*' || ruleResource === resource || (subresource !== '' && ruleResource === `*/${subresource}`),
  );
}

function verbMatches(rule: PolicyRule, verbs: readonly string[] | 'any'): boolean {
  if (rule.verbs.length === 0) return false;
  if (verbs === 'any' || rule.verbs.includes('*')) return true;
  return verbs.some((verb) => rule.verbs.includes(verb));
}
