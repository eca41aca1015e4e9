/**
 * Ending visas: the one operation every actor goes through — a person revoking or cancelling, monitoring revoking
 * stale access, an engagement ending, offboarding. Ending a visa is one transaction: its state change, the end of
 * every extension chained to it (an extension starts at its parent's notAfter, so a parent cut short must take its
 * extensions with it), and an audit event for each. "May this caller do it" is the caller's `authorize` check, run
 * on the very row the transaction changes; "do it as this actor" is `as`. kubevisa's own actors (`systemActor`)
 * pass no check, because no permission rule would ever let them through.
 *
 * Telling the reconciler and the gateway is left to the caller, after the commit (each has its own channel).
 */
import { Conflict, NotFound } from '../domain/errors.ts';
import type { Actor, Engagement, Instant, Visa } from '../domain/model.ts';
import { endVisa, extensionsOf, revokeVisa } from '../domain/visa.ts';
import type { AuditSource, Store, StoredVisa, StoreTx } from '../store/store.ts';

/** Who the change is recorded as: the actor, and for a person the session and client it came from. */
export interface ActingAs {
  actor: Actor;
  sessionId?: string;
  source?: AuditSource;
}

export interface EndVisaRequest {
  visaId: string;
  as: ActingAs;
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
      // Only the store's stale-version conflict (it names the versions) is worth another decision on a fresh row.
      const staleVersion = error instanceof Conflict && error.details?.expectedVersion !== undefined;
      if (!staleVersion || attempt >= ATTEMPTS) throw error;
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
  as: ActingAs,
  reason: string,
  now: Instant,
): Promise<Visa[]> {
  const ended: Visa[] = [];
  for (const visa of visas) {
    const next = endVisa(visa, as.actor, reason, now);
    if (next === undefined) continue;
    const saved = await tx.updateVisa(next, visa.version);
    await auditEnded(tx, saved, as, reason, now);
    ended.push(saved);
  }
  const extensions = await endExtensions(tx, ended, as, now, () => reason);
  return [...ended, ...extensions];
}

async function endExtensions(
  tx: StoreTx,
  parents: readonly Visa[],
  as: ActingAs,
  now: Instant,
  reasonFor: (parent: Visa) => string,
): Promise<Visa[]> {
  if (parents.length === 0) return [];
  const done = new Set(parents.map((visa) => visa.id));
  const ended: Visa[] = [];
  // Extensions are the holder's own visas; only those still pending or granting need ending.
  for (const personId of new Set(parents.map((visa) => visa.personId))) {
    const open = await tx.listVisas({ personId, states: ['requested', 'approved', 'active'] });
    for (const parent of parents.filter((visa) => visa.personId === personId)) {
      for (const extension of extensionsOf(parent.id, open)) {
        if (done.has(extension.id)) continue;
        done.add(extension.id);
        const reason = reasonFor(parent);
        const next = endVisa(extension, as.actor, reason, now);
        if (next === undefined) continue;
        const saved = await tx.updateVisa(next, extension.version);
        await auditEnded(tx, saved, as, reason, now, parent.id);
        ended.push(saved);
      }
    }
  }
  return ended;
}

function auditEnded(tx: StoreTx, visa: Visa, as: ActingAs, reason: string, now: Instant, parentId?: string) {
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
