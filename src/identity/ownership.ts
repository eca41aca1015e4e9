/**
 * Which SCIM identity provider may act on whom. A SCIM client is a credential held by an identity provider (or by
 * whoever runs it: a vendor's own directory, a test tenant), and what it provisions is linked to kubevisa people
 * by email. Without a rule, any SCIM client could create a user with an admin's email and then delete or
 * deactivate it, offboarding the admin. The rule:
 *
 * - An identity provider acts (provisions, deactivates, deletes, asserts groups) only on the people linked to it,
 *   by email: the identity provider that provisioned an email first, one an admin linked (`POST
 *   /api/v1/identity/links`), and one the configuration lets claim people who already exist.
 * - A user whose email is linked to other identity providers, or belongs to a person who already exists (logged in
 *   through OIDC) and is linked to none, is refused: SCIM `409 uniqueness`, audited and alerted, never merged. The
 *   refusal names no other identity provider and none of its user ids.
 * - `identity.claimExistingPeople: [okta]` lets the named identity providers take charge of people who exist but
 *   are linked to no identity provider yet (the usual first import, when kubevisa ran with OIDC alone before SCIM
 *   was set up). Default: none, so an admin decides for each.
 *
 * Links are kept by email (src/store: scim_links) because an identity provider provisions people before their first
 * login, and SCIM links users to people by email.
 */
import { ScimEmailTaken } from '../scim/errors.ts';
import type { EmailClaim, ScimClient, ScimOwnership } from '../scim/service.ts';
import type { ScimLinkHow, ScimLinkRecord } from '../store/identity-records.ts';
import type { Store, StoreTx } from '../store/store.ts';

export interface OwnershipPolicy {
  /** Identity providers that may claim people who exist and are linked to no identity provider (default none). */
  claimExistingPeople: readonly string[];
  /**
   * Lower-cased emails the server configuration gives a role (`roles.admins`, `roles.auditors`): people who count as
   * existing before their first login, so the first identity provider to send their email does not take charge of
   * an admin it was never given.
   */
  configuredPeople?: readonly string[];
}

/** What an identity provider may do with an email it sends. */
export type ClaimDecision =
  /** Already linked: go on. */
  | { allowed: true; link?: undefined }
  /** Go on, and record the identity provider's link to the email. */
  | { allowed: true; link: Extract<ScimLinkHow, 'provisioned' | 'claimed'> }
  | {
      allowed: false;
      /** `linked-elsewhere`: other identity providers are linked; `existing-person`: a person exists, unlinked. */
      why: 'linked-elsewhere' | 'existing-person';
      /** The identity providers linked to the email (for the audit trail and the admins, never for the caller). */
      linkedTo: string[];
    };

/** The rule, on plain values. */
export function decideClaim(input: {
  idp: string;
  links: readonly Pick<ScimLinkRecord, 'idp'>[];
  personExists: boolean;
  policy: OwnershipPolicy;
}): ClaimDecision {
  const linkedTo = input.links.map((link) => link.idp);
  if (linkedTo.includes(input.idp)) return { allowed: true };
  if (linkedTo.length > 0) return { allowed: false, why: 'linked-elsewhere', linkedTo };
  if (!input.personExists) return { allowed: true, link: 'provisioned' };
  if (input.policy.claimExistingPeople.includes(input.idp)) return { allowed: true, link: 'claimed' };
  return { allowed: false, why: 'existing-person', linkedTo: [] };
}

/** The identity providers that may act on the person with `email`. */
export async function linkedIdps(reader: Pick<StoreTx, 'listScimLinks'>, email: string): Promise<Set<string>> {
  return new Set((await reader.listScimLinks({ email })).map((link) => link.idp));
}

const WHY: Record<'linked-elsewhere' | 'existing-person', string> = {
  'linked-elsewhere': 'is linked to another identity provider',
  'existing-person':
    'belongs to a person who exists in kubevisa (or whom its configuration gives a role) and is linked to no identity provider',
};

/**
 * The rule at the SCIM edge: a new link is written in the same transaction as the user it allows; a refusal is
 * audited (`scim.user.refused`) and alerted after the refused write rolled back.
 */
export function createScimOwnership(options: {
  store: Store;
  policy: OwnershipPolicy;
  /** Tells the admins (the identity alert webhook and the audit trail). */
  alert: (message: string) => Promise<void>;
  now?: () => number;
}): ScimOwnership {
  const now = options.now ?? Date.now;
  return {
    async claim(tx: StoreTx, claim: EmailClaim, at: number): Promise<void> {
      const links = await tx.listScimLinks({ email: claim.email });
      const person = await tx.getPersonByEmail(claim.email);
      const decision = decideClaim({
        idp: claim.idp,
        links,
        personExists: person !== undefined || (options.policy.configuredPeople ?? []).includes(claim.email),
        policy: options.policy,
      });
      if (!decision.allowed) {
        throw new ScimEmailTaken(claim.email, claim.idp, {
          why: decision.why,
          linkedTo: decision.linkedTo,
          ...(person !== undefined ? { personId: person.id } : {}),
        });
      }
      if (decision.link === undefined) return;
      await tx.insertScimLink({
        email: claim.email,
        idp: claim.idp,
        how: decision.link,
        by: `scim:${claim.idp}`,
        createdAt: at,
      });
      await tx.appendAudit({
        at,
        actor: `scim:${claim.idp}`,
        action: 'identity.link.created',
        ...(person !== undefined ? { personId: person.id } : {}),
        outcome: 'ok',
        reason:
          decision.link === 'claimed'
            ? `${claim.idp} took charge of ${claim.email}, who existed and was linked to no identity provider (identity.claimExistingPeople)`
            : `${claim.idp} provisioned ${claim.email} first`,
        details: { email: claim.email, idp: claim.idp, how: decision.link, userName: claim.userName },
      });
    },

    async refused(client: ScimClient, claim: EmailClaim, refusal: ScimEmailTaken): Promise<void> {
      const why = refusal.facts.why === 'existing-person' ? 'existing-person' : 'linked-elsewhere';
      const personId = typeof refusal.facts.personId === 'string' ? refusal.facts.personId : undefined;
      const reason = `identity provider '${client.idp}' sent user '${claim.userName}' with the email ${claim.email}, which ${WHY[why]}: refused (409), not merged`;
      await options.store.transaction((tx) =>
        tx.appendAudit({
          at: now(),
          actor: `scim:${client.idp}`,
          action: 'scim.user.refused',
          ...(personId !== undefined ? { personId } : {}),
          outcome: 'refused',
          reason,
          details: {
            email: claim.email,
            userName: claim.userName,
            idp: client.idp,
            why,
            linkedTo: [...(Array.isArray(refusal.facts.linkedTo) ? refusal.facts.linkedTo : [])],
            tokenId: client.tokenId,
          },
          source: { address: client.address },
        }),
      );
      await options.alert(
        `${reason}. If '${client.idp}' should manage this person, link them: kubevisa identity link ${claim.email} --idp ${client.idp}; otherwise check who holds that identity provider's SCIM token.`,
      );
    },
  };
}
