/**
 * Which installed profile ClusterRoles have drifted from the reviewed profiles in the store. Pure: the reconciler
 * reads both sides and hands them in. Only installed roles count: which profiles a cluster has is decided by
 * `kubevisa install` (kubevisa may not create ClusterRoles), so a profile missing there is not drift.
 */
import { profileClusterRole, type ClusterRole } from '../cluster/objects.ts';
import { KubevisaError } from '../domain/errors.ts';
import type { PolicyRule, Profile } from '../domain/model.ts';
import { canonicalRule, ruleSetDifference } from '../rbac/rules.ts';

export interface ProfileDrift {
  profile: string;
  /** The ClusterRole as the reviewed profile makes it. */
  desired: ClusterRole;
  /** As found in the cluster (with its resourceVersion). */
  actual: ClusterRole & { aggregationRule?: unknown };
  /** Rules (canonical text) the cluster's role grants beyond the reviewed ones: the dangerous direction. */
  added: string[];
  /** Reviewed rules the cluster's role lacks. */
  removed: string[];
}

/**
 * The installed profile ClusterRoles whose rules differ from their profile (as sets: order and spelling of a
 * rule do not matter), or that carry an aggregation rule (which lets other ClusterRoles add to them). A profile
 * the linter refuses is skipped: it was never installable, so kubevisa has nothing reviewed to restore.
 */
export function profileDrift(profiles: readonly Profile[], installed: readonly ClusterRole[]): ProfileDrift[] {
  const byName = new Map(installed.map((role) => [role.metadata.name, role]));
  const drifts: ProfileDrift[] = [];
  for (const profile of profiles) {
    let desired: ClusterRole;
    try {
      desired = profileClusterRole(profile);
    } catch (error) {
      // Refused by the linter (or a bad name): never installable, so there is no reviewed version to restore.
      if (error instanceof KubevisaError) continue;
      throw error;
    }
    const actual = byName.get(desired.metadata.name) as (ClusterRole & { aggregationRule?: unknown }) | undefined;
    if (actual === undefined) continue;
    const added = ruleSetDifference(actual.rules, desired.rules);
    if (actual.aggregationRule !== undefined) added.push('an aggregationRule (other ClusterRoles can add to it)');
    const removed = ruleSetDifference(desired.rules, actual.rules);
    if (added.length === 0 && removed.length === 0) continue;
    drifts.push({ profile: profile.name, desired, actual, added, removed });
  }
  return drifts;
}

/** A rule set as one line of canonical rules, for the audit trail's before and after. */
export function rulesSummary(rules: readonly PolicyRule[]): string {
  return rules.length === 0 ? '(no rules)' : rules.map(canonicalRule).join('; ');
}
