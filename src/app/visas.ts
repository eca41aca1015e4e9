/**
 * Visas: request, read, approve, deny, cancel, revoke, extend. Each operation a person calls asks "may this caller do
 * it" (the domain's permission rules, src/domain/permissions.ts, and the lifecycle's own approval rules) before "do it
 * as this actor"; kubevisa's own actors (monitoring revoking stale access) call the `…As` operation directly, since
 * no permission rule would ever let a role-less system actor through.
 *
 * Ending visas is the one path every actor goes through — a person revoking or cancelling, monitoring, an
 * engagement ending, offboarding. Ending a visa is one transaction: its state change, the end of every extension
 * chained to it (an extension starts at its parent's notAfter, so a parent cut short must take its extensions with
 * it), and an audit event for each. The reconciler and the gateway are told after the commit.
 */
import { Conflict, Forbidden, InvalidInput, KubevisaError, NotFound } from '../domain/errors.ts';
import type { Actor, Engagement, Instant, Person, Profile, Visa } from '../domain/model.ts';
import { canRevoke, canSeeEngagement, canSeeVisa, isHolder } from '../domain/permissions.ts';
import { formatDuration, formatInstant, parseDuration, parseInstant } from '../domain/time.ts';
import {
  approveVisa,
  cancelVisa,
  denyVisa,
  endVisa,
  extendVisa,
  extensionsOf,
  requestVisa,
  revokeVisa,
} from '../domain/visa.ts';
import { newId } from '../store/ids.ts';
import type { Store, StoredVisa, StoreTx, VisaUpdate } from '../store/store.ts';
import type { Caller } from './caller.ts';
import { announceChanged, announceEnded, auditAs, findEngagement, withEffectiveState, type AppPorts } from './ports.ts';

/** What approving a request as asked would do now (see `VisaService.reviewRequests`). */
export type ApprovalVerdict =
  | { kind: 'grants'; notBefore: Instant; notAfter: Instant; shortened?: string }
  | { kind: 'needs-more'; missing: number }
  | { kind: 'refused'; code: string; message: string };

export interface VisaRequestBody {
  engagement?: string;
  cluster: string;
  namespaces: string[];
  profile: string;
  duration: string;
  startsAt?: string;
  reason: string;
}

export type VisaServiceOptions = AppPorts;

export class VisaService {
  private readonly options: VisaServiceOptions;
  private readonly now: () => number;

  constructor(options: VisaServiceOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** Requests a visa for the caller (the holder), under the named engagement or the one that covers the cluster. */
  async request(caller: Caller, body: VisaRequestBody): Promise<Visa> {
    const { store, policy } = this.options;
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
      { person, engagement, profile, policy, now },
    );
    const clusters = this.options.clusterNames();
    if (!clusters.includes(visa.cluster)) {
      throw new InvalidInput(
        `cluster '${visa.cluster}' is not managed by kubevisa: known clusters are ${clusters.join(', ') || '(none)'}`,
      );
    }
    const saved = await store.transaction(async (tx) => {
      await this.holdCluster(tx, visa);
      const inserted = await tx.insertVisa(visa);
      await auditAs(tx, caller, {
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
        await auditAs(tx, caller, {
          action: 'visa.approved',
          visa: inserted,
          at: now,
          details: { automatic: true, by: inserted.approvals[0]?.by ?? 'policy' },
        });
      }
      return inserted;
    });
    if (saved.state === 'approved') announceChanged(this.options.events, [saved.cluster], [saved]);
    return withEffectiveState(saved, now);
  }

  private async engagementForRequest(caller: Caller, body: VisaRequestBody): Promise<Engagement> {
    const { store } = this.options;
    if (body.engagement !== undefined) {
      const named = await findEngagement(store, body.engagement);
      // Someone who may not see it is told it does not exist.
      if (!canSeeEngagement(caller.actor, named)) throw new NotFound(`engagement '${body.engagement}' not found`);
      return named;
    }
    const mine = (await store.listEngagements({ status: 'active', contractor: caller.actor.email })).filter((e) =>
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

  /** The visas the caller may see, filtered. */
  async list(
    caller: Caller,
    filter: { state?: string; cluster?: string; engagement?: string; person?: string },
  ): Promise<Visa[]> {
    const { store, policy } = this.options;
    const now = this.now();
    const visas = await store.listVisas({
      ...(filter.cluster ? { cluster: filter.cluster } : {}),
      ...(filter.engagement ? { engagementId: filter.engagement } : {}),
      ...(filter.person ? { personId: filter.person } : {}),
    });
    const engagements = new Map((await store.listEngagements()).map((e) => [e.id, e]));
    return visas
      .map((v) => withEffectiveState(v, now))
      .filter((v) => {
        const engagement = engagements.get(v.engagementId);
        return engagement !== undefined && canSeeVisa(caller.actor, v, engagement, policy);
      })
      .filter((v) => filter.state === undefined || v.state === filter.state);
  }

  /** One visa; NotFound for one the caller may not see. */
  async get(caller: Caller, id: string): Promise<Visa> {
    const { store, policy } = this.options;
    const visa = await store.getVisa(id);
    const engagement = visa && (await store.getEngagement(visa.engagementId));
    if (!visa || !engagement || !canSeeVisa(caller.actor, visa, engagement, policy)) throw visaNotFound(id);
    return withEffectiveState(visa, this.now());
  }

  /**
   * The policy's verdict on each pending request the caller may see, should the caller approve it as asked, now:
   * the same rules `approve` runs, on the stored request, changing nothing. `grants` gives the window approval would
   * fix (shorter than asked when the engagement ends sooner or the policy was tightened), `needs-more` how many
   * approvals would still be missing, `refused` the error approving would meet (the same code and words).
   */
  async reviewRequests(caller: Caller): Promise<{ visa: Visa; verdict: ApprovalVerdict }[]> {
    const { store, policy } = this.options;
    const now = this.now();
    const requests = await this.list(caller, { state: 'requested' });
    const engagements = new Map((await store.listEngagements()).map((e) => [e.id, e]));
    return requests.map((visa) => {
      const engagement = engagements.get(visa.engagementId)!;
      try {
        const decided = approveVisa(visa, caller.actor, { engagement, policy, now });
        if (decided.state === 'requested') {
          return {
            visa,
            verdict: { kind: 'needs-more', missing: decided.requiredApprovals - decided.approvals.length },
          };
        }
        const askedMs = visa.requestedSeconds * 1000;
        return {
          visa,
          verdict: {
            kind: 'grants',
            notBefore: decided.notBefore,
            notAfter: decided.notAfter,
            ...(decided.notAfter - decided.notBefore < askedMs
              ? {
                  shortened:
                    decided.notAfter === engagement.endsAt
                      ? `the engagement ends at ${formatInstant(engagement.endsAt)}`
                      : `the policy allows at most ${formatDuration(policy.maxVisaSeconds)}`,
                }
              : {}),
          },
        };
      } catch (error) {
        if (!(error instanceof KubevisaError)) throw error;
        return { visa, verdict: { kind: 'refused', code: error.code, message: error.message } };
      }
    });
  }

  /** Approves (sponsor, admins, approvers; never the holder or a contractor of the engagement); may only narrow. */
  async approve(
    caller: Caller,
    id: string,
    body: { comment?: string; namespaces?: string[]; duration?: string },
  ): Promise<Visa> {
    const { policy } = this.options;
    const options = {
      ...(body.comment !== undefined ? { comment: body.comment } : {}),
      ...(body.namespaces !== undefined ? { namespaces: body.namespaces } : {}),
      ...(body.duration !== undefined ? { durationSeconds: parseDuration(body.duration, 'duration') } : {}),
    };
    // approveVisa asks canApprove itself: who may approve is part of the lifecycle's rules.
    const visa = await this.changeVisa(caller, id, 'approve', (visa, engagement, now) => {
      // A request filed before its cluster was removed must not grant access there: nobody would manage the binding
      // (and a cluster registered again under that name would get it).
      const clusters = this.options.clusterNames();
      if (!clusters.includes(visa.cluster)) {
        throw new Conflict(
          `cluster '${visa.cluster}' is no longer managed by kubevisa, so visa ${visa.id} cannot be approved: deny it (known clusters: ${clusters.join(', ') || 'none'})`,
          { details: { cluster: visa.cluster } },
        );
      }
      return approveVisa(visa, caller.actor, { engagement, policy, now }, options);
    });
    if (visa.state === 'approved' || visa.state === 'active')
      announceChanged(this.options.events, [visa.cluster], [visa]);
    return visa;
  }

  /** Denies a request (whoever may approve it). */
  async deny(caller: Caller, id: string, reason: string): Promise<Visa> {
    const { policy } = this.options;
    return this.changeVisa(caller, id, 'deny', (visa, engagement, now) =>
      denyVisa(visa, caller.actor, { engagement, policy, now }, reason),
    );
  }

  /** The holder cancels their request or visa (and its extensions). */
  async cancel(caller: Caller, id: string): Promise<Visa> {
    // Only the holder may cancel: cancelVisa itself says so to anyone else.
    return this.endOne(caller, id, 'cancelled by the holder', this.mayEnd(caller, false), (visa, actor, reason, now) =>
      cancelVisa(visa, actor, now, reason),
    );
  }

  /** Revokes a visa now (its holder, and whoever may approve under its engagement), with its extensions. */
  async revoke(caller: Caller, id: string, reason: string): Promise<Visa> {
    return this.endOne(caller, id, reason, this.mayEnd(caller, true), revokeVisa);
  }

  /**
   * Revokes a visa and its extensions as `as`, asking no permission (monitoring's `revokeStale`).
   * @returns undefined when the visa does not exist.
   * @throws InvalidTransition when it no longer grants (already ended); Conflict when it kept changing meanwhile.
   */
  async revokeAs(as: Caller, id: string, reason: string): Promise<Visa | undefined> {
    const now = this.now();
    const outcome = await endVisaAndExtensions(this.options.store, { visaId: id, as, reason, now });
    if (outcome === undefined) return undefined;
    announceEnded(this.options.events, [outcome.visa, ...outcome.extensions], reason);
    return withEffectiveState(outcome.visa, now);
  }

  /** "May this caller end this visa": see it, and for a revoke be its holder or someone who may approve. */
  private mayEnd(caller: Caller, revoking: boolean) {
    const { policy } = this.options;
    return (visa: StoredVisa, engagement: Engagement) => {
      if (!canSeeVisa(caller.actor, visa, engagement, policy)) throw visaNotFound(visa.id);
      if (revoking && !canRevoke(caller.actor, visa, engagement, policy)) {
        throw new Forbidden(
          `${caller.actor.email} may not revoke visa ${visa.id}: the holder, the sponsor, approvers and admins may`,
        );
      }
    };
  }

  private async endOne(
    caller: Caller,
    id: string,
    reason: string,
    authorize: (visa: StoredVisa, engagement: Engagement) => void,
    end: (visa: Visa, actor: Actor, reason: string, now: number) => Visa,
  ): Promise<Visa> {
    const now = this.now();
    const outcome = await endVisaAndExtensions(this.options.store, {
      visaId: id,
      as: caller,
      reason,
      now,
      authorize,
      end,
    });
    if (outcome === undefined) throw visaNotFound(id);
    announceEnded(this.options.events, [outcome.visa, ...outcome.extensions], reason);
    return withEffectiveState(outcome.visa, now);
  }

  /** The holder asks to extend a visa: a new request, starting at its end, that needs a new approval. */
  async extend(caller: Caller, id: string, body: { duration: string; reason: string }): Promise<Visa> {
    const { store, policy } = this.options;
    const now = this.now();
    const current = await this.get(caller, id);
    if (!isHolder(caller.actor, current))
      throw new Forbidden(`only the holder (${current.personEmail}) may extend visa ${id}`);
    const engagement = await store.getEngagement(current.engagementId);
    if (!engagement) throw new NotFound(`engagement '${current.engagementId}' not found`);
    const person = await this.requirePerson(caller);
    const profile = await this.requireProfile(current.profile);
    const extension = extendVisa(
      current,
      { id: newId('v_'), durationSeconds: parseDuration(body.duration, 'duration'), reason: body.reason },
      { person, engagement, profile, policy, now },
    );
    const saved = await store.transaction(async (tx) => {
      await this.holdCluster(tx, extension);
      const inserted = await tx.insertVisa(extension);
      await auditAs(tx, caller, {
        action: 'visa.extension-requested',
        visa: inserted,
        reason: body.reason,
        at: now,
        details: { extends: id },
      });
      return inserted;
    });
    if (saved.state === 'approved') announceChanged(this.options.events, [saved.cluster], [saved]);
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
        if (!isStaleVersion(error) || attempt >= ATTEMPTS) throw error;
      }
    }
  }

  private async changeVisaOnce(
    caller: Caller,
    id: string,
    verb: string,
    decide: (visa: Visa, engagement: Engagement, now: number) => Visa,
  ): Promise<Visa> {
    const { store, policy } = this.options;
    const now = this.now();
    // One read: the decision is made on exactly the row whose version the write then requires.
    const stored = await store.getVisa(id);
    const engagement = stored && (await store.getEngagement(stored.engagementId));
    if (!stored || !engagement || !canSeeVisa(caller.actor, stored, engagement, policy)) throw visaNotFound(id);
    const visa = withEffectiveState(stored, now);
    const next = decide(visa, engagement, now);
    return store.transaction(async (tx) => {
      if (verb === 'approve') await this.holdCluster(tx, next);
      const saved = await tx.updateVisa(next, stored.version);
      const action = saved.state === visa.state ? `visa.${verb}` : `visa.${saved.state}`;
      const approval = saved.approvals[saved.approvals.length - 1];
      await auditAs(tx, caller, {
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

  /**
   * Inside the transaction that files or approves `visa`: a cluster registered at run time must still be registered,
   * and stays so until the commit (a removal on any replica waits for it, then ends the visa; or this waits for the
   * removal and refuses). The cluster list checked before is this process's and may lag another replica's removal.
   */
  private async holdCluster(tx: StoreTx, visa: Pick<Visa, 'id' | 'cluster'>): Promise<void> {
    const configured = this.options.configuredClusters;
    if (configured === undefined || configured.has(visa.cluster)) return;
    if (await tx.holdRegisteredCluster(visa.cluster)) return;
    throw new Conflict(
      `cluster '${visa.cluster}' is no longer managed by kubevisa (it was removed), so visa ${visa.id} cannot be filed or approved there`,
      { details: { cluster: visa.cluster } },
    );
  }

  private async requirePerson(caller: Caller): Promise<Person> {
    const person = await this.options.store.getPerson(caller.actor.personId);
    if (!person) throw new NotFound(`person ${caller.actor.personId} not found`);
    return person;
  }

  private async requireProfile(name: string): Promise<Profile> {
    const { store } = this.options;
    const profile = await store.getProfile(name);
    if (!profile) {
      const known = (await store.listProfiles()).map((p) => p.name);
      throw new InvalidInput(`unknown profile '${name}': known profiles are ${known.join(', ')}`, {
        details: { field: 'profile', allowed: known },
      });
    }
    return profile;
  }
}

function visaNotFound(id: string): NotFound {
  return new NotFound(`visa '${id}' not found: 'kubevisa visas' lists the ones you can see`);
}

/** Only the store's stale-version conflict (it names the versions) is worth another decision on a fresh row. */
function isStaleVersion(error: unknown): boolean {
  return error instanceof Conflict && error.details?.expectedVersion !== undefined;
}

export interface EndVisaRequest {
  visaId: string;
  as: Caller;
  reason: string;
  now: Instant;
  /**
   * May this caller do it? Throws the refusal (NotFound for a visa the caller may not see, Forbidden…). Runs inside
   * the transaction, on the row that is then changed. Omit only for kubevisa's own system actors.
   */
  authorize?: (visa: StoredVisa, engagement: Engagement) => void;
  /**
   * The transition (default: revoke, which refuses a visa that is not approved or active). The holder's cancel
   * passes `cancelVisa` here.
   */
  end?: (visa: StoredVisa, actor: Actor, reason: string, now: Instant) => Visa;
}

export interface EndVisaOutcome {
  /** The visa asked for, as committed. */
  visa: StoredVisa;
  /** Its extensions that were still pending or granting, now cancelled or revoked. */
  extensions: Visa[];
}

/** Attempts when another writer (the reconciler recording an activation) changed the row meanwhile. */
const ATTEMPTS = 3;

/**
 * Ends one visa and its extensions in one transaction, each with its audit event.
 * @returns undefined when the visa does not exist.
 * @throws whatever `authorize` or `end` throws (nothing is changed then); InvalidTransition when the visa no
 *   longer grants; InvalidInput for a missing reason.
 */
export async function endVisaAndExtensions(store: Store, request: EndVisaRequest): Promise<EndVisaOutcome | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await store.transaction((tx) => endOnce(tx, request));
    } catch (error) {
      if (!isStaleVersion(error) || attempt >= ATTEMPTS) throw error;
    }
  }
}

async function endOnce(tx: StoreTx, request: EndVisaRequest): Promise<EndVisaOutcome | undefined> {
  const { as, reason, now } = request;
  const visa = await tx.getVisa(request.visaId);
  if (visa === undefined) return undefined;
  if (request.authorize !== undefined) {
    const engagement = await tx.getEngagement(visa.engagementId);
    if (engagement === undefined) throw new NotFound(`visa '${visa.id}' not found`);
    request.authorize(visa, engagement);
  }
  const next = (request.end ?? revokeVisa)(visa, as.actor, reason, now);
  const saved = await tx.updateVisa(next, visa.version);
  await auditEnded(tx, saved, as, saved.endReason ?? reason, now);
  const extensions = await endExtensions(
    tx,
    [saved],
    as,
    now,
    (parent) => `the visa it extends was ${parent.state}: ${reason}`,
  );
  return { visa: saved, extensions };
}

/**
 * Ends every given visa (revoked when approved or active, cancelled when requested; already ended ones are
 * skipped) and every extension chained to any of them, inside `tx`, each with its audit event. For callers that end
 * many at once in their own transaction: an engagement's end, offboarding, a contractor leaving an engagement.
 * @returns every visa it changed.
 */
export async function endVisasInTx(
  tx: StoreTx,
  visas: readonly StoredVisa[],
  as: Caller,
  reason: string,
  now: Instant,
): Promise<Visa[]> {
  // One statement for every visa (an engagement's end may end thousands), then each one's audit event.
  const updates: VisaUpdate[] = [];
  for (const visa of visas) {
    const next = endVisa(visa, as.actor, reason, now);
    if (next !== undefined) updates.push({ visa: next, expectedVersion: visa.version });
  }
  const ended = await tx.updateVisas(updates);
  for (const saved of ended) await auditEnded(tx, saved, as, reason, now);
  const extensions = await endExtensions(tx, ended, as, now, () => reason);
  return [...ended, ...extensions];
}

async function endExtensions(
  tx: StoreTx,
  parents: readonly Visa[],
  as: Caller,
  now: Instant,
  reasonFor: (parent: Visa) => string,
): Promise<Visa[]> {
  if (parents.length === 0) return [];
  const done = new Set(parents.map((visa) => visa.id));
  const updates: (VisaUpdate & { reason: string; parentId: string })[] = [];
  // Extensions are the holder's own visas; only those still pending or granting need ending.
  for (const personId of new Set(parents.map((visa) => visa.personId))) {
    const open = await tx.listVisas({ personId, states: ['requested', 'approved', 'active'] });
    for (const parent of parents.filter((visa) => visa.personId === personId)) {
      for (const extension of extensionsOf(parent.id, open)) {
        if (done.has(extension.id)) continue;
        done.add(extension.id);
        const reason = reasonFor(parent);
        const next = endVisa(extension, as.actor, reason, now);
        if (next !== undefined)
          updates.push({ visa: next, expectedVersion: extension.version, reason, parentId: parent.id });
      }
    }
  }
  const ended = await tx.updateVisas(updates);
  for (const [i, saved] of ended.entries())
    await auditEnded(tx, saved, as, updates[i]!.reason, now, updates[i]!.parentId);
  return ended;
}

function auditEnded(tx: StoreTx, visa: Visa, as: Caller, reason: string, now: Instant, parentId?: string) {
  return tx.appendAudit({
    at: now,
    actor: as.actor.email,
    ...(as.sessionId ? { sessionId: as.sessionId } : {}),
    action: `visa.${visa.state}`,
    visaId: visa.id,
    cluster: visa.cluster,
    personId: visa.personId,
    engagementId: visa.engagementId,
    outcome: 'ok',
    reason,
    details: {
      state: visa.state,
      namespaces: visa.namespaces,
      notBefore: visa.notBefore,
      notAfter: visa.notAfter,
      ...(parentId !== undefined ? { extends: parentId } : {}),
    },
    ...(as.source ? { source: as.source } : {}),
  });
}
