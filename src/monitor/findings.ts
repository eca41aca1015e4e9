/**
 * What an exposure scan reports, as stable, comparable findings: each has an id built from what it is about
 * (binding, subject, secret), so the same problem found by two scans has the same id and a change between scans is
 * a set difference. Pure.
 */

export type FindingKind =
  /** A binding kubevisa does not manage gives access to someone who looks like a contractor. */
  | 'shadow-access'
  /** A binding to a group every visa holder belongs to. */
  | 'broad-group'
  /** A ServiceAccount token Secret that never expires. */
  | 'legacy-token'
  /** A binding that carries a risk from the linter's list (secrets read, exec, escalate…). */
  | 'risky-permission'
  /** A binding to a role that does not exist: whoever creates the role grants it. */
  | 'dangling-binding'
  /** A managed object that differs from what kubevisa would have it be. */
  | 'drift';

export type Severity = 'critical' | 'high' | 'medium' | 'low' | 'info';
export const SEVERITIES: readonly Severity[] = ['critical', 'high', 'medium', 'low', 'info'];

export type FindingDetail = string | number | boolean | readonly string[];

export interface Finding {
  /** Stable across scans: `<kind>:<what it is about>`. */
  id: string;
  kind: FindingKind;
  severity: Severity;
  /** Why, within the kind: `contractor-email`, `visa-identity`, `changed`… */
  reason: string;
  /** One sentence for a person. */
  summary: string;
  /** Subject key (`User:alice@x`, `Group:…`, `ServiceAccount:ns/name`). */
  subject?: string;
  /** '' for cluster scope. */
  namespace?: string;
  /** `RoleBinding ns/name` or `ClusterRoleBinding name`. */
  binding?: string;
  /** `ClusterRole name` or `Role ns/name`. */
  role?: string;
  risks?: readonly string[];
  /** About an object kubevisa manages (a visa's binding, a profile): by design, or drift of it. */
  managed: boolean;
  /** Kubernetes' own bootstrap policy or a `system:` identity: reported, not alerted. */
  builtin: boolean;
  details: Readonly<Record<string, FindingDetail>>;
}

/** Findings worth telling someone about when they first appear: neither Kubernetes' defaults nor visas by design. */
export function isAlertable(finding: Finding): boolean {
  if (finding.builtin) return false;
  if (finding.kind === 'drift') return true;
  return !finding.managed;
}

export interface FindingChanges {
  /** In `current` and not in `previous`. */
  added: Finding[];
  /** In `previous` and not in `current`. */
  resolved: Finding[];
}

/** What changed between two scans of the same cluster, compared by finding id. */
export function diffFindings(previous: readonly Finding[], current: readonly Finding[]): FindingChanges {
  const before = new Map(previous.map((finding) => [finding.id, finding]));
  const now = new Set(current.map((finding) => finding.id));
  return {
    added: current.filter((finding) => !before.has(finding.id)),
    resolved: previous.filter((finding) => !now.has(finding.id)),
  };
}

export function severityRank(severity: Severity): number {
  return SEVERITIES.indexOf(severity);
}

/** Orders findings most severe first, then by id. */
export function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort(
    (a, b) => severityRank(a.severity) - severityRank(b.severity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
}
