/**
 * The application layer: each operation loads what it needs, asks the pure domain to decide, and commits
 * the new state together with its audit event in one transaction — nothing is acknowledged before that
 * commit, and no decision is honoured without it. After the commit it tells the reconciler which clusters
 * changed, so RoleBindings follow within a second.
 */
import { endVisaAndExtensions, endVisasInTx, type ActingAs } from '../app/visas.ts';
import { canEndEngagement, canRevoke, canSeeVisa, isHolder } from '../domain/access.ts';
import { createEngagement, endEngagement, isContractorOf, isSponsorOf } from '../domain/engagement.ts';
import { Conflict, Forbidden, InvalidInput, NotFound } from '../domain/errors.ts';
import { protectedCeilingWarnings } from '../domain/protected-namespaces.ts';
import type { Actor, Engagement, Person, Policy, Profile, Visa } from '../domain/model.ts';
import { parseDuration, parseInstant } from '../domain/time.ts';
import {
  approveVisa,
  cancelVisa,
  denyVisa,
  effectiveState,
  extendVisa,
  requestVisa,
  revokeVisa,
} from '../domain/visa.ts';
import { newId } from '../store/ids.ts';
import type { AuditSource, JsonObject, Store, StoreTx } from '../store/store.ts';

export interface AccessServiceOptions {
  store: Store;
  policy: Policy;
  clusterNames: () => string[];
  /** Called after a commit that changes what should exist in these clusters. */
  onClustersChanged: (clusters: string[]) => void;
  /** Called after visas stopped granting (revoked, ended), for stream cutting. */
  onVisasEnded?: (visas: Visa[], reason: string) => void;
  /** Called after a person was deprovisioned. */
  onPersonDeprovisioned?: (person: Person, reason: string) => void;
  now?: () => number;
}

export interface Caller {
  actor: Actor;
  sessionId?: string;
  source?: AuditSource;
}

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

export interface VisaRequestBody {
  engagement?: string;
  cluster: string;
  namespaces: string[];
  profile: string;
  duration: string;
  startsAt?: string;
  reason: string;
}

export class AccessService {
  private readonly store: Store;
  private readonly policy: Policy;
  private readonly options: AccessServiceOptions;
  private readonly now: () => number;

  constructor(options: AccessServiceOptions) {
    this.options = options;
    this.store = options.store;
    this.policy = options.policy;
    this.now = options.now ?? Date.now;
  }

  private audit(
    tx: StoreTx,
    caller: Caller,
    event: {
      action: string;
      visa?: Visa;
      engagementId?: string;
      personId?: string;
      reason?: string;
      details?: JsonObject;
      at: number;
    },
  ) {
    return tx.appendAudit({
      at: event.at,
      actor: caller.actor.email,
      ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
      action: event.action,
      ...(event.visa ? { visaId: event.visa.id, cluster: event.visa.cluster, personId: event.visa.personId } : {}),
      ...((event.engagementId ?? event.visa?.engagementId)
        ? { engagementId: event.engagementId ?? event.visa?.engagementId }
        : {}),
      ...(event.personId ? { personId: event.personId } : {}),
      outcome: 'ok',
      ...(event.reason ? { reason: event.reason } : {}),
      ...(event.details ? { details: event.details } : {}),
      ...(caller.source ? { source: caller.source } : {}),
    });
  }

  // ---- engagements ----

  /**
   * Creates an engagement. `warnings` says what its ceiling's patterns match but will never grant (protected
   * namespaces such as kube-system under `kube*`); they are in the audit event too.
   */
  async createEngagement(caller: Caller, body: EngagementBody): Promise<Engagement & { warnings: string[] }> {
    const now = this.now();
    const profiles = (await this.store.listProfiles()).map((p) => p.name);
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
        actor: caller.actor,
        knownProfiles: profiles,
        knownClusters: this.options.clusterNames(),
        protectedNamespaces: this.policy.protectedNamespaces ?? [],
      },
    );
    const warnings = protectedCeilingWarnings(engagement.ceiling.namespacePatterns, this.policy.protectedNamespaces);
    const taken = await this.store.listEngagements({ status: 'active' });
    if (taken.some((e) => e.name === engagement.name)) {
      throw new InvalidInput(`an active engagement named '${engagement.name}' already exists: choose another name`);
    }
    return this.store.transaction(async (tx) => {
      const saved = await tx.insertEngagement({ ...engagement, createdBy: caller.actor.email });
      await this.audit(tx, caller, {
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

  async listEngagements(caller: Caller): Promise<Engagement[]> {
    const all = await this.store.listEngagements();
    if (isStaff(caller.actor)) return all;
    return all.filter((e) => isContractorOf(caller.actor.email, e) || isSponsorOf(caller.actor.email, e));
  }

  async getEngagement(caller: Caller, idOrName: string): Promise<Engagement> {
    const engagement = await this.findEngagement(idOrName);
    if (
      !isStaff(caller.actor) &&
      !isContractorOf(caller.actor.email, engagement) &&
      !isSponsorOf(caller.actor.email, engagement)
    ) {
      throw new NotFound(`engagement '${idOrName}' not found`);
    }
    return engagement;
  }

  private async findEngagement(idOrName: string): Promise<Engagement> {
    const byId = await this.store.getEngagement(idOrName);
    if (byId) return byId;
    const byName = (await this.store.listEngagements()).filter((e) => e.name === idOrName);
    const active = byName.find((e) => e.status === 'active') ?? byName[0];
    if (!active)
      throw new NotFound(`engagement '${idOrName}' not found: 'kubevisa engagement list' shows the ones you can see`);
    return active;
  }

  async endEngagement(caller: Caller, idOrName: string, reason: string): Promise<Engagement> {
    const found = await this.getEngagement(caller, idOrName);
    if (!canEndEngagement(caller.actor, found)) {
      throw new Forbidden(`only an admin or the sponsor (${found.sponsor}) may end engagement '${found.name}'`);
    }
    const now = this.now();
    let closed: Visa[] = [];
    const ended = await this.store.transaction(async (tx) => {
      const engagement = await tx.getEngagement(found.id);
      if (!engagement) throw new NotFound(`engagement '${idOrName}' not found`);
      const saved = await tx.updateEngagement(endEngagement(engagement, caller.actor, now, reason));
      await this.audit(tx, caller, { action: 'engagement.ended', engagementId: saved.id, reason, at: now });
      const visas = await tx.listVisas({ engagementId: saved.id });
      closed = await endVisasInTx(tx, visas, actingAs(caller), `engagement '${saved.name}' ended`, now);
      return saved;
    });
    this.afterChange(closed, `engagement '${ended.name}' ended`);
    return ended;
  }

  // ---- visas ----

  async requestVisa(caller: Caller, body: VisaRequestBody): Promise<Visa> {
    const now = this.now();
    const person = await this.requirePerson(caller);
    const engagement = await this.engagementForRequest(caller, body);
    const profile = await this.requireProfile(body.profile);
    const visa = requestVisa(
      {
        id: newId('v_'),
        cluster: body.cluster,
        namespaces: body.namespaces,
        profile: body.profile,
        durationSeconds: parseDuration(body.duration, 'duration'),
        ...(body.startsAt !== undefined ? { startsAt: parseInstant(body.startsAt, 'startsAt') } : {}),
        reason: body.reason,
      },
      { person, engagement, profile, policy: this.policy, now },
    );
    if (!this.options.clusterNames().includes(visa.cluster)) {
      throw new InvalidInput(
        `cluster '${visa.cluster}' is not managed by kubevisa: known clusters are ${this.options.clusterNames().join(', ') || '(none)'}`,
      );
    }
    const saved = await this.store.transaction(async (tx) => {
      const inserted = await tx.insertVisa(visa);
      await this.audit(tx, caller, {
        action: 'visa.requested',
        visa: inserted,
        reason: inserted.reason,
        at: now,
        details: {
          namespaces: inserted.namespaces,
          profile: inserted.profile,
          requestedSeconds: inserted.requestedSeconds,
        },
      });
      if (inserted.state === 'approved') {
        await this.audit(tx, caller, {
          action: 'visa.approved',
          visa: inserted,
          at: now,
          details: { automatic: true, by: inserted.approvals[0]?.by ?? 'policy' },
        });
      }
      return inserted;
    });
    if (saved.state === 'approved') this.options.onClustersChanged([saved.cluster]);
    return withEffectiveState(saved, now);
  }

  private async engagementForRequest(caller: Caller, body: VisaRequestBody): Promise<Engagement> {
    if (body.engagement !== undefined) return this.getEngagement(caller, body.engagement);
    const mine = (await this.store.listEngagements({ status: 'active', contractor: caller.actor.email })).filter((e) =>
      e.ceiling.clusters.includes(body.cluster),
    );
    if (mine.length === 1 && mine[0]) return mine[0];
    if (mine.length === 0) {
      throw new Forbidden(
        `${caller.actor.email} has no active engagement that covers cluster '${body.cluster}': ask your sponsor or an admin`,
      );
    }
    throw new InvalidInput(
      `several engagements cover cluster '${body.cluster}' (${mine.map((e) => e.name).join(', ')}): name one with 'engagement'`,
    );
  }

  async listVisas(
    caller: Caller,
    filter: { state?: string; cluster?: string; engagement?: string; person?: string },
  ): Promise<Visa[]> {
    const now = this.now();
    const visas = await this.store.listVisas({
      ...(filter.cluster ? { cluster: filter.cluster } : {}),
      ...(filter.engagement ? { engagementId: filter.engagement } : {}),
      ...(filter.person ? { personId: filter.person } : {}),
    });
    const engagements = new Map((await this.store.listEngagements()).map((e) => [e.id, e]));
    return visas
      .map((v) => withEffectiveState(v, now))
      .filter((v) => {
        const engagement = engagements.get(v.engagementId);
        return engagement !== undefined && canSeeVisa(caller.actor, v, engagement, this.policy);
      })
      .filter((v) => filter.state === undefined || v.state === filter.state);
  }

  async getVisa(caller: Caller, id: string): Promise<Visa> {
    const visa = await this.store.getVisa(id);
    const engagement = visa && (await this.store.getEngagement(visa.engagementId));
    if (!visa || !engagement || !canSeeVisa(caller.actor, visa, engagement, this.policy)) {
      throw new NotFound(`visa '${id}' not found: 'kubevisa visas' lists the ones you can see`);
    }
    return withEffectiveState(visa, this.now());
  }

  async approve(
    caller: Caller,
    id: string,
    body: { comment?: string; namespaces?: string[]; duration?: string },
  ): Promise<Visa> {
    const options = {
      ...(body.comment !== undefined ? { comment: body.comment } : {}),
      ...(body.namespaces !== undefined ? { namespaces: body.namespaces } : {}),
      ...(body.duration !== undefined ? { durationSeconds: parseDuration(body.duration, 'duration') } : {}),
    };
    const visa = await this.changeVisa(caller, id, 'approve', (visa, engagement, now) =>
      approveVisa(visa, caller.actor, { engagement, policy: this.policy, now }, options),
    );
    if (visa.state === 'approved' || visa.state === 'active') this.options.onClustersChanged([visa.cluster]);
    return visa;
  }

  async deny(caller: Caller, id: string, reason: string): Promise<Visa> {
    return this.changeVisa(caller, id, 'deny', (visa, engagement, now) =>
      denyVisa(visa, caller.actor, { engagement, policy: this.policy, now }, reason),
    );
  }

  async cancel(caller: Caller, id: string): Promise<Visa> {
    // Only the holder may cancel: cancelVisa itself says so to anyone else.
    return this.endVisa(caller, id, 'cancelled by the holder', false, (visa, actor, reason, now) =>
      cancelVisa(visa, actor, now, reason),
    );
  }

  async revoke(caller: Caller, id: string, reason: string): Promise<Visa> {
    return this.endVisa(caller, id, reason, true, revokeVisa);
  }

  /** Cancel or revoke, with the visa's extensions, through the one path every actor takes (app/visas.ts). */
  private async endVisa(
    caller: Caller,
    id: string,
    reason: string,
    checkMayRevoke: boolean,
    end: (visa: Visa, actor: Actor, reason: string, now: number) => Visa,
  ): Promise<Visa> {
    const now = this.now();
    const notFound = () => new NotFound(`visa '${id}' not found: 'kubevisa visas' lists the ones you can see`);
    const outcome = await endVisaAndExtensions(this.store, {
      visaId: id,
      as: actingAs(caller),
      reason,
      now,
      authorize: (visa, engagement) => {
        if (!canSeeVisa(caller.actor, visa, engagement, this.policy)) throw notFound();
        if (checkMayRevoke && !canRevoke(caller.actor, visa, engagement, this.policy)) {
          throw new Forbidden(
            `${caller.actor.email} may not revoke visa ${visa.id}: the holder, the sponsor, approvers and admins may`,
          );
        }
      },
      end,
    });
    if (outcome === undefined) throw notFound();
    this.afterChange([outcome.visa, ...outcome.extensions], reason);
    return withEffectiveState(outcome.visa, now);
  }

  async extend(caller: Caller, id: string, body: { duration: string; reason: string }): Promise<Visa> {
    const now = this.now();
    const current = await this.getVisa(caller, id);
    if (!isHolder(caller.actor, current))
      throw new Forbidden(`only the holder (${current.personEmail}) may extend visa ${id}`);
    const engagement = await this.requireEngagement(current.engagementId);
    const person = await this.requirePerson(caller);
    const profile = await this.requireProfile(current.profile);
    const extension = extendVisa(
      current,
      { id: newId('v_'), durationSeconds: parseDuration(body.duration, 'duration'), reason: body.reason },
      { person, engagement, profile, policy: this.policy, now },
    );
    const saved = await this.store.transaction(async (tx) => {
      const inserted = await tx.insertVisa(extension);
      await this.audit(tx, caller, {
        action: 'visa.extension-requested',
        visa: inserted,
        reason: body.reason,
        at: now,
        details: { extends: id },
      });
      return inserted;
    });
    if (saved.state === 'approved') this.options.onClustersChanged([saved.cluster]);
    return withEffectiveState(saved, now);
  }

  /** Load, decide, commit with optimistic concurrency and audit; the domain function throws refusals. */
  private async changeVisa(
    caller: Caller,
    id: string,
    verb: string,
    decide: (visa: Visa, engagement: Engagement, now: number) => Visa,
  ): Promise<Visa> {
    // The reconciler records activations and expiries on the same rows; when it wins the race, decide again on
    // the fresh row (the decision is pure) instead of answering the person with a conflict they did not cause.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.changeVisaOnce(caller, id, verb, decide);
      } catch (error) {
        // Only the store's stale-version conflict (it names the versions) is worth another decision.
        const staleVersion = error instanceof Conflict && error.details?.expectedVersion !== undefined;
        if (!staleVersion || attempt >= 3) throw error;
      }
    }
  }

  private async changeVisaOnce(
    caller: Caller,
    id: string,
    verb: string,
    decide: (visa: Visa, engagement: Engagement, now: number) => Visa,
  ): Promise<Visa> {
    const now = this.now();
    // One read: the decision is made on exactly the row whose version the write then requires.
    const stored = await this.store.getVisa(id);
    const engagement = stored && (await this.store.getEngagement(stored.engagementId));
    if (!stored || !engagement || !canSeeVisa(caller.actor, stored, engagement, this.policy)) {
      throw new NotFound(`visa '${id}' not found: 'kubevisa visas' lists the ones you can see`);
    }
    const visa = withEffectiveState(stored, now);
    const next = decide(visa, engagement, now);
    return this.store.transaction(async (tx) => {
      const saved = await tx.updateVisa(next, stored.version);
      const action = saved.state === visa.state ? `visa.${verb}` : `visa.${saved.state}`;
      const approval = saved.approvals[saved.approvals.length - 1];
      await this.audit(tx, caller, {
        action: action === 'visa.requested' ? 'visa.approval-recorded' : action,
        visa: saved,
        ...(saved.endReason ? { reason: saved.endReason } : {}),
        at: now,
        details: {
          state: saved.state,
          namespaces: saved.namespaces,
          notBefore: saved.notBefore,
          notAfter: saved.notAfter,
          ...(verb === 'approve' && approval
            ? { approvals: saved.approvals.length, requiredApprovals: saved.requiredApprovals }
            : {}),
        },
      });
      return withEffectiveState(saved, now);
    });
  }

  // ---- people ----

  /**
   * Ends everything a person has: status (deprovisioned by default; `suspended` when the identity provider only
   * deactivated them, so SCIM can reactivate), visas, sessions. The identity lifecycle calls it with a system
   * caller; proof of the cluster side is the identity lifecycle's receipt.
   */
  async offboardPerson(
    caller: Caller,
    idOrEmail: string,
    reason: string,
    options: { status?: 'suspended' | 'deprovisioned' } = {},
  ) {
    const status = options.status ?? 'deprovisioned';
    if (!caller.actor.roles.includes('admin')) throw new Forbidden('only admins may offboard a person');
    const person =
      (await this.store.getPerson(idOrEmail)) ?? (await this.store.getPersonByEmail(idOrEmail.toLowerCase()));
    if (!person) throw new NotFound(`no person '${idOrEmail}': they have never logged in to kubevisa`);
    const now = this.now();
    let ended: Visa[] = [];
    let sessions = 0;
    await this.store.transaction(async (tx) => {
      await tx.setPersonStatus(person.id, status, now);
      await this.audit(tx, caller, {
        action: 'person.offboarded',
        personId: person.id,
        reason,
        at: now,
        details: { email: person.email, status },
      });
      const visas = await tx.listVisas({ personId: person.id });
      ended = await endVisasInTx(tx, visas, actingAs(caller), `offboarded: ${reason}`, now);
      sessions = await tx.revokeSessionsOfPerson(person.id, now, `offboarded: ${reason}`);
      await this.audit(tx, caller, {
        action: 'session.revoked-all',
        personId: person.id,
        at: now,
        details: { sessions },
      });
    });
    this.afterChange(ended, `offboarded: ${reason}`, this.options.clusterNames());
    const deprovisioned = { ...person, status };
    this.options.onPersonDeprovisioned?.(deprovisioned, reason);
    return { person: deprovisioned, visasEnded: ended, sessionsEnded: sessions };
  }

  /**
   * Lets a suspended or deprovisioned person log in again (the identity provider reactivated them). Restores
   * nothing else: their visas stay ended, so access must be requested again.
   */
  async reactivatePerson(caller: Caller, personId: string, reason: string): Promise<Person> {
    if (!caller.actor.roles.includes('admin')) throw new Forbidden('only admins may reactivate a person');
    const now = this.now();
    return this.store.transaction(async (tx) => {
      const person = await tx.getPerson(personId);
      if (!person) throw new NotFound(`no person '${personId}'`);
      if (person.status === 'active') return person;
      const saved = await tx.setPersonStatus(person.id, 'active', now);
      await this.audit(tx, caller, {
        action: 'person.reactivated',
        personId: person.id,
        reason,
        at: now,
        details: { email: person.email, previousStatus: person.status },
      });
      return saved;
    });
  }

  /**
   * Adds or removes one contractor of an engagement (the identity lifecycle: membership of a mapped IdP group).
   * Removal ends that contractor's visas under this engagement only: live ones are revoked, pending requests
   * cancelled. Idempotent: no change, no audit event.
   */
  async setEngagementContractor(
    caller: Caller,
    engagementId: string,
    email: string,
    member: boolean,
    reason: string,
  ): Promise<{ changed: boolean; visasEnded: Visa[] }> {
    if (!caller.actor.roles.includes('admin')) throw new Forbidden('only admins may change who an engagement covers');
    const now = this.now();
    const contractor = email.toLowerCase();
    let ended: Visa[] = [];
    const changed = await this.store.transaction(async (tx) => {
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
      await this.audit(tx, caller, {
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
      ended = await endVisasInTx(tx, visas, actingAs(caller), why, now);
      return true;
    });
    this.afterChange(ended, `removed from an engagement: ${reason}`);
    return { changed, visasEnded: ended };
  }

  async me(caller: Caller): Promise<Person> {
    return this.requirePerson(caller);
  }

  async listPersons(caller: Caller): Promise<Person[]> {
    if (!isStaff(caller.actor)) throw new Forbidden('only admins, approvers and auditors may list persons');
    return this.store.listPersons();
  }

  // ---- helpers ----

  private afterChange(visas: Visa[], reason: string, extraClusters: string[] = []) {
    const clusters = new Set([...visas.map((v) => v.cluster), ...extraClusters]);
    if (clusters.size > 0) this.options.onClustersChanged([...clusters]);
    const ended = visas.filter((v) => v.state === 'revoked' || v.state === 'expired' || v.state === 'cancelled');
    if (ended.length > 0) this.options.onVisasEnded?.(ended, reason);
  }

  private async requirePerson(caller: Caller): Promise<Person> {
    const person = await this.store.getPerson(caller.actor.personId);
    if (!person) throw new NotFound(`person ${caller.actor.personId} not found`);
    return person;
  }

  private async requireEngagement(id: string): Promise<Engagement> {
    const engagement = await this.store.getEngagement(id);
    if (!engagement) throw new NotFound(`engagement '${id}' not found`);
    return engagement;
  }

  private async requireProfile(name: string): Promise<Profile> {
    const profile = await this.store.getProfile(name);
    if (!profile) {
      const known = (await this.store.listProfiles()).map((p) => p.name);
      throw new InvalidInput(`unknown profile '${name}': known profiles are ${known.join(', ')}`, {
        details: { field: 'profile', allowed: known },
      });
    }
    return profile;
  }
}

function actingAs(caller: Caller): ActingAs {
  return {
    actor: caller.actor,
    ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
    ...(caller.source ? { source: caller.source } : {}),
  };
}

function isStaff(actor: Actor): boolean {
  return actor.roles.includes('admin') || actor.roles.includes('approver') || actor.roles.includes('auditor');
}

function withEffectiveState<T extends Visa>(visa: T, now: number): T {
  return { ...visa, state: effectiveState(visa, now) };
}
