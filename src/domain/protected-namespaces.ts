/**
 * Protected namespaces: namespaces no visa ever grants, whatever an engagement's ceiling says. A pod in a granted
 * namespace can run as any ServiceAccount of that namespace, so a visa for `kube-system` is a visa for the cluster's
 * controllers, and one for `kubevisa-system` is a visa for kubevisa's own credential. Protected are the cluster's
 * system namespaces, kubevisa's own, and whatever an admin adds (names, or prefixes ending in `*`). Every actor asks
 * this module: engagement creation, visa request, approval, extension, and the reconciler before it writes.
 */
import { InvalidInput, ProtectedNamespace } from './errors.ts';
import { isNamespacePattern, matchesAnyPattern } from './names.ts';
import { listForHumans, requireStringList } from './validate.ts';

/** Holds one ServiceAccount per person: their identity in each cluster. */
export const VISAS_NAMESPACE = 'kubevisa-visas';
/** kubevisa's own namespace: its ServiceAccount, whose token is kubevisa's credential. */
export const SYSTEM_NAMESPACE = 'kubevisa-system';
/** The namespaces Kubernetes itself runs in. */
export const KUBERNETES_SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease'];
/** kubevisa's own namespaces. */
export const KUBEVISA_NAMESPACES: readonly string[] = [VISAS_NAMESPACE, SYSTEM_NAMESPACE];
/** Protected whatever the configuration says. */
export const ALWAYS_PROTECTED_NAMESPACES: readonly string[] = [...KUBERNETES_SYSTEM_NAMESPACES, ...KUBEVISA_NAMESPACES];
/** The most namespaces or patterns an admin may add. */
export const MAX_PROTECTED_ENTRIES = 200;

/**
 * Every protected entry: the always-protected names, then `extra` (an admin's names and `prefix*` patterns, and
 * the namespace kubevisa runs in), without duplicates.
 */
export function protectedNamespaceEntries(extra: readonly string[] = []): string[] {
  return [...new Set([...ALWAYS_PROTECTED_NAMESPACES, ...extra])];
}

/** True when no visa may grant `namespace`. */
export function isProtectedNamespace(namespace: string, extra: readonly string[] = []): boolean {
  return matchesAnyPattern(namespace, protectedNamespaceEntries(extra));
}

/**
 * Refuses namespaces no visa may grant.
 * @param doing what was asked, for the message (`this visa request`, `approving visa v_1`).
 * @param whatToDo the way forward for whoever asked (default: for a requester).
 * @throws ProtectedNamespace naming each protected namespace and what is protected.
 */
export function requireUnprotectedNamespaces(
  namespaces: readonly string[],
  extra: readonly string[],
  doing: string,
  whatToDo = "ask for access to your workload's own namespaces",
): void {
  const refused = namespaces.filter((namespace) => isProtectedNamespace(namespace, extra));
  if (refused.length === 0) return;
  const quoted = refused.map((namespace) => `'${namespace}'`).join(', ');
  throw new ProtectedNamespace(
    `${doing} is refused: namespace ${quoted} ${refused.length === 1 ? 'is' : 'are'} protected. ${protectedRule(extra)}; ${whatToDo}`,
    { details: { field: 'namespaces', protected: refused, protectedNamespaces: protectedNamespaceEntries(extra) } },
  );
}

/**
 * The protected entries a ceiling pattern could reach: for an exact name, the entries that match it; for a
 * `prefix*` pattern, every protected name it matches and every protected pattern whose prefix overlaps its own.
 */
export function protectedReachedBy(pattern: string, extra: readonly string[] = []): string[] {
  const prefix = (entry: string) => entry.slice(0, -1);
  const overlaps = (entry: string): boolean => {
    const patternIsPrefix = pattern.endsWith('*');
    const entryIsPrefix = entry.endsWith('*');
    if (!patternIsPrefix && !entryIsPrefix) return pattern === entry;
    if (!patternIsPrefix) return pattern.startsWith(prefix(entry));
    if (!entryIsPrefix) return entry.startsWith(prefix(pattern));
    return prefix(entry).startsWith(prefix(pattern)) || prefix(pattern).startsWith(prefix(entry));
  };
  return protectedNamespaceEntries(extra).filter(overlaps);
}

/**
 * Refuses ceiling entries that name a protected namespace exactly (`kube-system`, or `payments-secrets` when an
 * admin protected `payments-secrets` or `payments-*`): such a ceiling could only ever mislead.
 * @throws ProtectedNamespace naming the entries.
 */
export function requireCeilingNamesNoProtected(patterns: readonly string[], extra: readonly string[]): void {
  const named = patterns.filter((pattern) => !pattern.endsWith('*') && protectedReachedBy(pattern, extra).length > 0);
  if (named.length === 0) return;
  throw new ProtectedNamespace(
    `ceiling.namespacePatterns: ${listForHumans(named.map((name) => `'${name}'`))} ${named.length === 1 ? 'is a protected namespace' : 'are protected namespaces'} and can never be granted. ${protectedRule(extra)}; remove ${named.length === 1 ? 'it' : 'them'} from the ceiling`,
    { details: { field: 'ceiling.namespacePatterns', protected: named } },
  );
}

/**
 * What a ceiling's wildcard patterns reach that will never be granted, one sentence per pattern (`kube*` reaches
 * kube-system, kube-public and kube-node-lease). The engagement is created; these say what it will not grant.
 */
export function protectedCeilingWarnings(patterns: readonly string[], extra: readonly string[] = []): string[] {
  return patterns.flatMap((pattern) => {
    if (!pattern.endsWith('*')) return [];
    const reached = protectedReachedBy(pattern, extra);
    if (reached.length === 0) return [];
    return [
      `namespace pattern '${pattern}' also matches protected ${listForHumans(reached)}: visas under this engagement will never grant ${reached.length === 1 ? 'it' : 'them'}`,
    ];
  });
}

/**
 * Validates an admin's additions (configuration): namespace names or `prefix*` patterns.
 * @throws InvalidInput naming the field and what is allowed.
 */
export function validateProtectedNamespaces(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  const entries = requireStringList(value, field, 0, MAX_PROTECTED_ENTRIES);
  const invalid = entries.filter((entry) => !isNamespacePattern(entry));
  if (invalid.length > 0) {
    throw new InvalidInput(
      `${field}: not valid: ${listForHumans(invalid.map((entry) => `'${entry}'`))}; use namespace names (payments-secrets) or a prefix with one trailing * (vault-*)`,
      { details: { field, invalid } },
    );
  }
  return [...new Set(entries)];
}

function protectedRule(extra: readonly string[]): string {
  const added = protectedNamespaceEntries(extra).filter((entry) => !ALWAYS_PROTECTED_NAMESPACES.includes(entry));
  return (
    `kubevisa never grants the cluster's system namespaces (${listForHumans(KUBERNETES_SYSTEM_NAMESPACES)}), its own ` +
    `(${listForHumans(KUBEVISA_NAMESPACES)})${added.length > 0 ? ` or those protected by the configuration (${listForHumans(added)})` : ''}, ` +
    `whatever an engagement's ceiling allows`
  );
}
