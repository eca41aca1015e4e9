/**
 * Who may do what: every permission rule of kubevisa, in one place. The `can…`/`is…` functions answer; the
 * `require…` functions refuse with the one error that means it (ERR_FORBIDDEN for admin-only work,
 * ERR_NOT_AN_AUDITOR for what admins and auditors may read). The application layer (src/app/) asks these before
 * it acts for a person; capabilities (audit, identity, monitoring) ask them on their routes; the lifecycle
 * functions in visa.ts ask canApprove themselves. kubevisa's own actors (`systemActor`) hold no role, so no check
 * here ever lets them through: system work calls the application layer's `…As` operations, which take no check.
 */
import { isContractorOf, isSponsorOf } from './engagement.ts';
import { Forbidden, NotAnAuditor } from './errors.ts';
import type { Actor, Engagement, Instant, Policy, Visa } from './model.ts';
import { inAnyGroup } from './roles.ts';

/** True for an admin. */
export function isAdmin(actor: Actor): boolean {
  return actor.roles.includes('admin');
}

/** True for someone who may read the audit trail, exposure scans, usage and receipts: an admin or an auditor. */
export function isAuditReader(actor: Actor): boolean {
  return actor.roles.includes('admin') || actor.roles.includes('auditor');
}

/** True for anyone who may see every engagement and person: admins, approvers and auditors. */
export function isStaff(actor: Actor): boolean {
  return actor.roles.includes('admin') || actor.roles.includes('approver') || actor.roles.includes('auditor');
}

/**
 * Refuses anyone but an admin. `what` completes "only admins may …" (e.g. `offboard a person`).
 * @throws Forbidden (ERR_FORBIDDEN).
 */
export function requireAdmin(actor: Actor, what: string): void {
  if (!isAdmin(actor)) throw new Forbidden(`only admins may ${what}; ${actor.email} is not an admin`);
}

/**
 * Refuses anyone but an admin or an auditor. `what` completes "… may not …" (e.g. `read the audit trail`).
 * @throws NotAnAuditor (ERR_NOT_AN_AUDITOR).
 */
export function requireAuditReader(actor: Actor, what: string): void {
  if (!isAuditReader(actor)) throw new NotAnAuditor(`${actor.email} may not ${what}: admins and auditors may`);
}

/**
 * Refuses anyone but an admin, an approver or an auditor. `what` completes "only … may …".
 * @throws Forbidden (ERR_FORBIDDEN).
 */
export function requireStaff(actor: Actor, what: string): void {
  if (!isStaff(actor)) throw new Forbidden(`only admins, approvers and auditors may ${what}`);
}

/** True when the actor may see the engagement: staff, its contractors and its sponsor. */
export function canSeeEngagement(actor: Actor, engagement: Engagement): boolean {
  return isStaff(actor) || isContractorOf(actor.email, engagement) || isSponsorOf(actor.email, engagement);
}

/**
 * True when the actor may approve or deny requests under the engagement: the sponsor, an admin, a person with the
 * `approver` role, or a member of one of the policy's approver groups. A contractor of the engagement never may,
 * whatever their roles or groups: contractors must not be able to grant each other access.
 */
export function canApprove(actor: Actor, engagement: Engagement, policy: Policy): boolean {
  if (isContractorOf(actor.email, engagement)) return false;
  return (
    isSponsorOf(actor.email, engagement) ||
    actor.roles.includes('admin') ||
    actor.roles.includes('approver') ||
    inAnyGroup(actor.groups, policy.approverGroups)
  );
}

/** True when the actor holds the visa (same person id, or the same email ignoring case). */
export function isHolder(actor: Actor, visa: Visa): boolean {
  return actor.personId === visa.personId || actor.email.toLowerCase() === visa.personEmail.toLowerCase();
}

/** True when the actor may revoke the visa: its holder, or anyone who may approve under its engagement. */
export function canRevoke(actor: Actor, visa: Visa, engagement: Engagement, policy: Policy): boolean {
  return isHolder(actor, visa) || canApprove(actor, engagement, policy);
}

/** True when the actor may see the visa: its holder, auditors, and anyone who may approve under its engagement. */
export function canSeeVisa(actor: Actor, visa: Visa, engagement: Engagement, policy: Policy): boolean {
  return isHolder(actor, visa) || actor.roles.includes('auditor') || canApprove(actor, engagement, policy);
}

/** True when the actor may end the engagement early: an admin or its sponsor. */
export function canEndEngagement(actor: Actor, engagement: Engagement): boolean {
  return isAdmin(actor) || isSponsorOf(actor.email, engagement);
}

/**
 * True when the actor may move the engagement's end date to `endsAt`: an admin either way; its sponsor only to an
 * earlier date (ending it sooner is theirs to decide, as ending it now is; a longer contract is an admin's).
 */
export function canChangeEngagementEnd(actor: Actor, engagement: Engagement, endsAt: Instant): boolean {
  return isAdmin(actor) || (isSponsorOf(actor.email, engagement) && endsAt < engagement.endsAt);
}

/**
 * The actor kubevisa itself uses for steps nobody asked for (expiry, an engagement's end date passing,
 * deprovisioning from the IdP): `system:<name>` in the audit trail. It holds no roles, so no `can…` check
 * ever lets it through by accident.
 */
export function systemActor(name: string): Actor {
  return { personId: `system:${name}`, email: `system:${name}`, roles: [], groups: [] };
}
