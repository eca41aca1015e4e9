/**
 * Engagements: create, read, end, and who they cover. Each operation a person calls asks the domain's permission
 * rules first ("may this caller do it"), then runs the `…As` operation ("do it as this actor"), which kubevisa's own
 * actors (identity group mappings) call directly. The state change and its audit events commit in one transaction;
 * the reconciler and the gateway are told after the commit.
 */
import { createEngagement, endEngagement, isContractorOf, isSponsorOf } from '../domain/engagement.ts';
import { Forbidden, InvalidInput, NotFound } from '../domain/errors.ts';
import type { Engagement, Visa } from '../domain/model.ts';
import { canEndEngagement, canSeeEngagement, requireAdmin } from '../domain/permissions.ts';
import { protectedCeilingWarnings } from '../domain/protected-namespaces.ts';
import { parseDuration, parseInstant } from '../domain/time.ts';
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
    const contractor = email.toLowerCase();
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
