/**
 * Which kubevisa roles a person holds from the core configuration (`roles` and `policy.approverGroups`), and what
 * "is in group X" means. One rule, used by a login (session-service), by identity mapping (identity/mapping.ts)
 * and by the approval check (access.ts): a second copy drifts, and did — a login compared group names exactly
 * while mapping ignored case, so the same person got other roles depending on which ran last.
 */
import { foldsIntoAscii } from './case-folding.ts';
import type { PersonRole, Policy } from './model.ts';

/** The roles in the order they are listed everywhere (API, audit). */
export const PERSON_ROLES: readonly PersonRole[] = ['admin', 'approver', 'auditor'];

/** What the rule reads from the server configuration. Emails in `admins` and `auditors` are lower-cased. */
export interface RoleConfig {
  roles: {
    admins: readonly string[];
    adminGroups: readonly string[];
    auditors: readonly string[];
    auditorGroups: readonly string[];
  };
  policy: Pick<Policy, 'approverGroups'>;
}

/**
 * Group names compare case-insensitively: identity providers are inconsistent about case between SCIM, the
 * directory and the `groups` claim (Entra ID and Okta keep the case an admin typed, Dex and Keycloak pass it
 * through), and a group that differs only in case is the same group to the people who configured it.
 */
export function sameGroup(a: string, b: string): boolean {
  // A name holding a character that lower-cases into ASCII (the Kelvin sign) must match exactly.
  if (foldsIntoAscii(a) || foldsIntoAscii(b)) return a === b;
  return a.toLowerCase() === b.toLowerCase();
}

/** Is someone in `groups` a member of `group`? */
export function inGroup(groups: readonly string[], group: string): boolean {
  return groups.some((g) => sameGroup(g, group));
}

/** Is someone in `groups` a member of any of `wanted`? */
export function inAnyGroup(groups: readonly string[], wanted: readonly string[]): boolean {
  return wanted.some((group) => inGroup(groups, group));
}

/** The roles the core configuration gives `email` in `groups`, in {@link PERSON_ROLES} order. */
export function configuredRoles(email: string, groups: readonly string[], config: RoleConfig): PersonRole[] {
  const lower = email.toLowerCase();
  const roles: PersonRole[] = [];
  if (config.roles.admins.includes(lower) || inAnyGroup(groups, config.roles.adminGroups)) roles.push('admin');
  if (inAnyGroup(groups, config.policy.approverGroups)) roles.push('approver');
  if (config.roles.auditors.includes(lower) || inAnyGroup(groups, config.roles.auditorGroups)) roles.push('auditor');
  return roles;
}
