/**
 * Engagements: create, read, end, and who they cover. Each operation a person calls asks the domain's permission
 * rules first ("may this caller do it"), then runs the `…As` operation ("do it as this actor"), which kubevisa's own
 * actors (identity group mappings) call directly. The state change and its audit events commit in one transaction;
 * the reconciler and the gateway are told after the commit.
 */
import {
  changeEngagementEnd,
  createEngagement,
  endEngagement,
  isContractorOf,
  isSponsorOf,
} from '../domain/engagement.ts';
import { couldPassForAnother, parseEmailAddress } from '../domain/email.ts';
import { Forbidden, InvalidInput, NotFound } from '../domain/errors.ts';
import type { Engagement, Visa } from '../domain/model.ts';
import { canChangeEngagementEnd, canEndEngagement, canSeeEngagement, requireAdmin } from '../domain/permissions.ts';
import { protectedCeilingWarnings } from '../domain/protected-namespaces.ts';
import { formatInstant, parseDuration, parseInstant } from '../domain/time.ts';
import { requireReason } from '../domain/validate.ts';
import { clipToEngagementEnd } from '../domain/visa.ts';
import { newId } from '../store/ids.ts';
import type { Caller } from './caller.ts';
import { announceEnded, auditAs, findEngagement, type AppPorts } from './ports.ts';
import { endVisasInTx } from './visas.ts';

export interface EngagementBody {
  name: string;
  vendor: string;
  contractors: string[];
  sponsor: string;
  startsAt?: string;
  endsAt: string;
  ceiling: { clusters: string[]; namespacePatterns: string[]; profiles: string[] };
  maxVisaDuration: string;
}

export type EngagementServiceOptions = AppPorts;

export class EngagementService {
  private readonly options: EngagementServiceOptions;
  private readonly now: () => number;

  constructor(options: EngagementServiceOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /**
   * Creates an engagement (admins). `warnings` says what its ceiling's patterns match but will never grant
   * (protected namespaces such as kube-system under `kube*`); they are in the audit event too.
   */
  async create(caller: Caller, body: EngagementBody): Promise<Engagement & { warnings: string[] }> {
    requireAdmin(caller.actor, 'create engagements');
    return this.createAs(caller, body);
  }

  /** Creates an engagement as `as`, asking no permission (identity group mappings). */
  async createAs(as: Caller, body: EngagementBody): Promise<Engagement & { warnings: string[] }> {
    const { store, policy } = this.options;
    const now = this.now();
    const profiles = (await store.listProfiles()).map((p) => p.name);
    const engagement = createEngagement(
      {
        id: newId('e_'),
        name: body.name,
        vendor: body.vendor,
        contractors: body.contractors,
        sponsor: body.sponsor,
        ...(body.startsAt !== undefined ? { startsAt: parseInstant(body.startsAt, 'startsAt') } : {}),
        endsAt: parseInstant(body.endsAt, 'endsAt'),
        ceiling: body.ceiling,
        maxVisaSeconds: parseDuration(body.maxVisaDuration, 'maxVisaDuration'),
      },
      {
        now,
        actor: as.actor,
        knownProfiles: profiles,
        knownClusters: this.options.clusterNames(),
        protectedNamespaces: policy.protectedNamespaces ?? [],
      },
    );
    const warnings = protectedCeilingWarnings(engagement.ceiling.namespacePatterns, policy.protectedNamespaces);
    const taken = await store.listEngagements({ status: 'active' });
    if (taken.some((e) => e.name === engagement.name)) {
      throw new InvalidInput(`an active engagement named '${engagement.name}' already exists: choose another name`);
    }
    return store.transaction(async (tx) => {
      const saved = await tx.insertEngagement({ ...engagement, createdBy: as.actor.email });
      await auditAs(tx, as, {
        action: 'engagement.created',
        engagementId: saved.id,
        at: now,
        details: {
          name: saved.name,
          vendor: saved.vendor,
          contractors: saved.contractors,
          sponsor: saved.sponsor,
          endsAt: saved.endsAt,
          ...(warnings.length > 0 ? { warnings } : {}),
        },
      });
      return { ...saved, warnings };
    });
  }

  /** The engagements the caller may see: all for staff, their own for contractors and sponsors. */
  async list(caller: Caller): Promise<Engagement[]> {
    return (await this.options.store.listEngagements()).filter((e) => canSeeEngagement(caller.actor, e));
  }

  /** One engagement by id or name (the active one of that name first). NotFound for one the caller may not see. */
  async get(caller: Caller, idOrName: string): Promise<Engagement> {
    const engagement = await this.find(idOrName);
    if (!canSeeEngagement(caller.actor, engagement)) throw new NotFound(`engagement '${idOrName}' not found`);
    return engagement;
  }

  /** The engagement by id or name, whoever asks (kubevisa's own actors, and operations that checked already). */
  find(idOrName: string): Promise<Engagement> {
    return findEngagement(this.options.store, idOrName);
  }

  /** Ends an engagement early (admins and its sponsor) and every visa under it. */
  async end(caller: Caller, idOrName: string, reason: string): Promise<Engagement> {
    const found = await this.get(caller, idOrName);
    if (!canEndEngagement(caller.actor, found)) {
      throw new Forbidden(`only an admin or the sponsor (${found.sponsor}) may end engagement '${found.name}'`);
    }
    return this.endAs(caller, found.id, reason);
  }

  /** Ends an engagement and every visa under it as `as`, asking no permission. */
  async endAs(as: Caller, idOrName: string, reason: string): Promise<Engagement> {
    const found = await this.find(idOrName);
    const now = this.now();
    let closed: Visa[] = [];
    const ended = await this.options.store.transaction(async (tx) => {
      const engagement = await tx.getEngagement(found.id);
      if (!engagement) throw new NotFound(`engagement '${idOrName}' not found`);
      const saved = await tx.updateEngagement(endEngagement(engagement, as.actor, now, reason));
      await auditAs(tx, as, { action: 'engagement.ended', engagementId: saved.id, reason, at: now });
      const visas = await tx.listVisas({ engagementId: saved.id });
      closed = await endVisasInTx(tx, visas, as, `engagement '${saved.name}' ended`, now);
      return saved;
    });
    announceEnded(this.options.events, closed, `engagement '${ended.name}' ended`);
    return ended;
  }

  /**
   * Moves an engagement's end date (admins; its sponsor only to an earlier date). An earlier end applies to the
   * visas under it at once: one that would start at or after the new end is ended, one that runs past it is
   * shortened to end there; a later end changes no visa (longer access is a new request and its approval). The
   * change and each visa it touches are audited in one transaction.
   */
  async changeEnd(
    caller: Caller,
    idOrName: string,
    endsAt: string,
    reason: string,
  ): Promise<{ engagement: Engagement; visasEnded: Visa[]; visasShortened: Visa[] }> {
    const found = await this.get(caller, idOrName);
    const instant = parseInstant(endsAt, 'endsAt');
    if (!canChangeEngagementEnd(caller.actor, found, instant)) {
      throw new Forbidden(
        isSponsorOf(caller.actor.email, found)
          ? `the sponsor may only bring engagement '${found.name}' to an earlier end than ${formatInstant(found.endsAt)}; an admin may extend it`
          : `only an admin or the sponsor (${found.sponsor}) may change the end date of engagement '${found.name}'`,
      );
    }
    return this.changeEndAs(caller, found.id, instant, reason, (current) => {
      // Judged again on the engagement as the transaction reads it: a sponsor's "earlier" checked against an end
      // another change has since moved must not become a lengthening.
      if (!canChangeEngagementEnd(caller.actor, current, instant)) {
        throw new Forbidden(
          `engagement '${current.name}' now ends ${formatInstant(current.endsAt)}: the sponsor may only bring it earlier; an admin may extend it`,
        );
      }
    });
  }

  /** Moves an engagement's end date as `as`, asking no permission. See {@link changeEnd}. */
  async changeEndAs(
    as: Caller,
    engagementId: string,
    endsAt: number,
    reason: string,
    /** Checks the engagement as read inside the transaction; throws to refuse (nothing is changed). */
    recheck?: (current: Engagement) => void,
  ): Promise<{ engagement: Engagement; visasEnded: Visa[]; visasShortened: Visa[] }> {
    const now = this.now();
    const why = requireReason(reason);
    let ended: Visa[] = [];
    const shortened: Visa[] = [];
    const engagement = await this.options.store.transaction(async (tx) => {
      const current = await tx.getEngagement(engagementId);
      if (!current) throw new NotFound(`engagement '${engagementId}' not found`);
      recheck?.(current);
      const saved = await tx.updateEngagement(changeEngagementEnd(current, endsAt, now));
      await auditAs(tx, as, {
        action: 'engagement.end-changed',
        engagementId: saved.id,
        reason: why,
        at: now,
        details: { from: formatInstant(current.endsAt), to: formatInstant(saved.endsAt) },
      });
      if (saved.endsAt > current.endsAt) return saved;
      const toEnd = [];
      for (const visa of await tx.listVisas({ engagementId: saved.id })) {
        const effect = clipToEngagementEnd(visa, saved.endsAt, now);
        if (effect?.kind === 'end') toEnd.push(visa);
        if (effect?.kind !== 'clip') continue;
        const clipped = await tx.updateVisa(effect.visa, visa.version);
        await auditAs(tx, as, {
          action: 'visa.shortened',
          visa: clipped,
          reason: `engagement '${saved.name}' now ends at ${formatInstant(saved.endsAt)}: ${why}`,
          at: now,
          details: { from: formatInstant(visa.notAfter), to: formatInstant(clipped.notAfter) },
        });
        shortened.push(clipped);
      }
      const endReason = `engagement '${saved.name}' now ends at ${formatInstant(saved.endsAt)}, before this visa would start`;
      ended = await endVisasInTx(tx, toEnd, as, endReason, now);
      return saved;
    });
    announceEnded(
      this.options.events,
      ended,
      `engagement '${engagement.name}' ends earlier`,
      shortened.map((v) => v.cluster),
    );
    return { engagement, visasEnded: ended, visasShortened: shortened };
  }

  /** Adds or removes one contractor (admins). See {@link setContractorAs}. */
  async setContractor(caller: Caller, engagementId: string, email: string, member: boolean, reason: string) {
    requireAdmin(caller.actor, 'change who an engagement covers');
    return this.setContractorAs(caller, engagementId, email, member, reason);
  }

  /**
   * Adds or removes one contractor of an engagement as `as` (the identity lifecycle: membership of a mapped IdP
   * group). Removal ends that contractor's visas under this engagement only: live ones are revoked, pending requests
   * cancelled. Idempotent: no change, no audit event.
   */
  async setContractorAs(
    as: Caller,
    engagementId: string,
    email: string,
    member: boolean,
    reason: string,
  ): Promise<{ changed: boolean; visasEnded: Visa[] }> {
    const now = this.now();
    // Added, the address must be one kubevisa accepts anywhere (email.ts); removed, one that could pass for another
    // person's (`\u212Aate@…`, lower-cased kate@…) is refused rather than taken for hers.
    if (!member && couldPassForAnother(email)) parseEmailAddress(email, 'contractor');
    const contractor = member ? parseEmailAddress(email, 'contractor') : email.toLowerCase();
    let ended: Visa[] = [];
    const changed = await this.options.store.transaction(async (tx) => {
      const engagement = await tx.getEngagement(engagementId);
      if (!engagement) throw new NotFound(`engagement '${engagementId}' not found`);
      const listed = isContractorOf(contractor, engagement);
      if (listed === member) return false;
      if (member && isSponsorOf(contractor, engagement)) {
        throw new InvalidInput(
          `${contractor} sponsors engagement '${engagement.name}' and cannot also be its contractor: take them out of the group or name another sponsor`,
        );
      }
      const contractors = member
        ? [...engagement.contractors, contractor]
        : engagement.contractors.filter((c) => c.toLowerCase() !== contractor);
      await tx.updateEngagement({ ...engagement, contractors });
      await auditAs(tx, as, {
        action: member ? 'engagement.contractor-added' : 'engagement.contractor-removed',
        engagementId: engagement.id,
        reason,
        at: now,
        details: { email: contractor },
      });
      if (member) return true;
      const person = await tx.getPersonByEmail(contractor);
      const visas = person ? await tx.listVisas({ personId: person.id, engagementId: engagement.id }) : [];
      const why = `removed from engagement '${engagement.name}': ${reason}`;
      ended = await endVisasInTx(tx, visas, as, why, now);
      return true;
    });
    announceEnded(this.options.events, ended, `removed from an engagement: ${reason}`);
    return { changed, visasEnded: ended };
  }
}
