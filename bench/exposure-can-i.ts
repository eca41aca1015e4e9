/**
 * Reading `kubectl auth can-i --list` (a table; kubectl has no JSON output for it) and comparing it with the
 * exposure scan's permissions for the same identity and namespace. Used by the exposure benchmark (correctness of
 * the sampled subjects) and by the end-to-end monitoring test.
 *
 * kubectl v1.37 prints, e.g.:
 *   Resources                                       Non-Resource URLs   Resource Names   Verbs
 *   selfsubjectreviews.authentication.k8s.io        []                  []               [create]
 *                                                   [/api/*]            []               [get]
 */
import type { Permissions } from '../src/rbac/matrix.ts';
import { resourceLabel } from '../src/rbac/matrix.ts';

/**
 * Permission facts as `resource|name|verb` (one per resource name; '' for every object) and `url:<url>|verb`: the
 * unit both sides are compared in. kubectl prints one row per resource name where a rule lists several, the scan
 * keeps them together; both mean the same.
 */
export function canIFacts(table: string): Set<string> {
  const lines = table.split('\n').filter((line) => line.trim() !== '');
  const header = lines[0] ?? '';
  const urlsAt = header.indexOf('Non-Resource URLs');
  const namesAt = header.indexOf('Resource Names');
  const verbsAt = header.indexOf('Verbs');
  if (urlsAt < 0 || namesAt < 0 || verbsAt < 0) throw new Error(`not a 'kubectl auth can-i --list' table: ${header}`);
  const list = (text: string) =>
    text
      .trim()
      .replace(/^\[|\]$/g, '')
      .split(' ')
      .filter((item) => item !== '');
  const facts = new Set<string>();
  for (const line of lines.slice(1)) {
    const resource = line.slice(0, urlsAt).trim();
    const urls = list(line.slice(urlsAt, namesAt));
    const names = list(line.slice(namesAt, verbsAt));
    const verbs = list(line.slice(verbsAt));
    for (const verb of verbs) {
      if (resource !== '') for (const name of names.length > 0 ? names : ['']) facts.add(`${resource}|${name}|${verb}`);
      for (const url of urls) facts.add(`url:${url}|${verb}`);
    }
  }
  return facts;
}

/** The same facts from the scan's compacted permissions. */
export function permissionFacts(permissions: Permissions): Set<string> {
  const facts = new Set<string>();
  for (const permission of permissions.resources) {
    const names = permission.resourceNames.length > 0 ? permission.resourceNames : [''];
    for (const verb of permission.verbs) {
      for (const name of names) facts.add(`${resourceLabel(permission)}|${name}|${verb}`);
    }
  }
  for (const permission of permissions.nonResourceURLs) {
    for (const verb of permission.verbs) facts.add(`url:${permission.url}|${verb}`);
  }
  return facts;
}

/** What one side has and the other lacks; both empty when they agree. */
export function compareFacts(kubectl: Set<string>, scan: Set<string>): { onlyKubectl: string[]; onlyScan: string[] } {
  return {
    onlyKubectl: [...kubectl].filter((fact) => !scan.has(fact)).sort(),
    onlyScan: [...scan].filter((fact) => !kubectl.has(fact)).sort(),
  };
}
