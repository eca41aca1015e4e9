/**
 * Who may do what with engagements and visas. Answers only; the lifecycle functions in visa.ts enforce the
 * approval rules themselves, and the API layer asks these before revoking, ending or showing.
 */
import { isContractorOf, isSponsorOf } from './engagement.ts';
import type { Actor, Engagement, Policy, Visa } from './model.ts';
import { inAnyGroup } from './roles.ts';

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
  return actor.roles.includes('admin') || isSponsorOf(actor.email, engagement);
}

/**
 * The actor kubevisa itself uses for steps nobody asked for (expiry, an engagement's end date passing,
 * deprovisioning from the IdP): `system:<name>` in the audit trail. It holds no roles, so no `can…` check
 * ever lets it through by accident.
 */
export function systemActor(name: string): Actor {
  return { personId: `system:${name}`, email: `system:${name}`, roles: [], groups: [] };
}
