/**
 * Drift of the objects kubevisa manages, as findings: a visa's RoleBinding edited, deleted or copied by someone
 * else, and a profile ClusterRole whose rules no longer match the reviewed profile. The reconciler repairs both
 * within a second of the watch event (and the audit trail records each repair, `cluster.drift.repaired` for a
 * profile); a finding here means the repair has not happened (yet): a widened profile widens every visa using it.
 * Pure: desired objects are built by the caller with the same builders the reconciler uses.
 */
import { roleBindingDifferences, type ClusterRole, type RoleBinding } from '../cluster/objects.ts';
import type { Instant } from '../domain/model.ts';
import { ruleSetDifference } from '../rbac/rules.ts';
import type { Finding } from './findings.ts';

export interface DesiredBinding {
  binding: RoleBinding;
  /** When the visa started granting: a binding younger than the grace period may not be converged yet. */
  since: Instant;
}

export interface DriftInput {
  /** What the granting visas call for. */
  desired: readonly DesiredBinding[];
  /** Every RoleBinding labelled as a visa's (managed-by=kubevisa with kubevisa.io/visa). */
  actual: readonly RoleBinding[];
  /** Visa ids that stopped granting less than the grace period ago (their bindings may still be going). */
  recentlyEnded: ReadonlySet<string>;
  /** The profile ClusterRoles as installed, and as the profiles in the store say they should be. */
  profileRoles: { desired: readonly ClusterRole[]; actual: readonly Pick<ClusterRole, 'metadata' | 'rules'>[] };
  now: Instant;
  /** How long a just-granted visa may lack its bindings before that counts as drift, in ms (default 60000). */
  graceMs?: number;
}

export function driftFindings(input: DriftInput): Finding[] {
  const graceMs = input.graceMs ?? 60_000;
  const findings: Finding[] = [];
  const key = (rb: RoleBinding) => `${rb.metadata.namespace}/${rb.metadata.name}`;
  const actual = new Map(input.actual.map((rb) => [key(rb), rb]));
  const desiredKeys = new Set<string>();
  for (const { binding, since } of input.desired) {
    const id = key(binding);
    desiredKeys.add(id);
    const found = actual.get(id);
    const visaId = binding.metadata.labels['kubevisa.io/visa'] ?? '';
    if (found === undefined) {
      if (input.now - since < graceMs) continue;
      findings.push(
        driftFinding(id, 'missing', `visa ${visaId}'s RoleBinding ${id} is missing from the cluster`, { visaId }),
      );
      continue;
    }
    const differences = roleBindingDifferences(found, binding);
    if (differences.length > 0) {
      findings.push(
        driftFinding(id, 'changed', `visa ${visaId}'s RoleBinding ${id} was changed: ${differences.join('; ')}`, {
          visaId,
          differences,
        }),
      );
    }
  }
  for (const [id, rb] of actual) {
    if (desiredKeys.has(id)) continue;
    const visaId = rb.metadata.labels['kubevisa.io/visa'] ?? '';
    if (input.recentlyEnded.has(visaId)) continue;
    findings.push(
      driftFinding(
        id,
        'unexpected',
        `RoleBinding ${id} is labelled as visa ${visaId}'s, but no granting visa calls for it (made by hand, or left over)`,
        { visaId },
      ),
    );
  }
  const installed = new Map(input.profileRoles.actual.map((role) => [role.metadata.name, role]));
  for (const want of input.profileRoles.desired) {
    const name = want.metadata.name;
    const have = installed.get(name);
    if (have === undefined) continue; // not installed in this cluster: `kubevisa install` decides which are
    const added = ruleSetDifference(have.rules, want.rules);
    const removed = ruleSetDifference(want.rules, have.rules);
    if (added.length === 0 && removed.length === 0) continue;
    findings.push({
      id: `drift:ClusterRole ${name}`,
      kind: 'drift',
      severity: added.length > 0 ? 'critical' : 'medium',
      reason: 'profile-changed',
      summary: `profile ClusterRole ${name} differs from the reviewed profile${added.length > 0 ? `: it grants more (${added.join('; ')})` : ''}${removed.length > 0 ? `${added.length > 0 ? ' and' : ':'} lacks ${removed.join('; ')}` : ''}; every visa with this profile is affected until the reconciler restores it (see the audit trail for cluster.drift.repaired or cluster.drift.repair-failed)`,
      role: `ClusterRole ${name}`,
      managed: true,
      builtin: false,
      details: { added, removed },
    });
  }
  return findings;
}

function driftFinding(
  id: string,
  reason: string,
  summary: string,
  details: Record<string, string | readonly string[]>,
): Finding {
  const [namespace = ''] = id.split('/');
  return {
    id: `drift:RoleBinding ${id}`,
    kind: 'drift',
    severity: reason === 'missing' ? 'medium' : 'high',
    reason,
    summary: `${summary}; the reconciler restores it`,
    namespace,
    binding: `RoleBinding ${id}`,
    managed: true,
    builtin: false,
    details,
  };
}
