/**
 * Appending to the audit chain on PostgreSQL. Every appender, in every process, first takes one transaction-scoped
 * advisory lock per schema (`lockAuditChain`), then reads the head: so appends are serialised across processes and
 * connections, each extends the head it read, and the lock is released only when its transaction commits or rolls
 * back, which is what keeps the chain one line without gaps. The events themselves go in with one INSERT however
 * many there are (arrays unnested server-side), so a batch costs one round trip.
 */
import { GENESIS_HASH, auditContentHash, auditContentTextWith, canonicalJson, linkAuditHash } from '../audit-chain.ts';
import type { UnhashedAuditEvent } from '../audit-chain.ts';
import { AUDIT_COLUMNS } from '../mappers.ts';
import { decodeJsonObject, definedOnly, integer, text } from '../rows.ts';
import type { AuditEvent, NewAuditEvent } from '../store.ts';
import type { Queryable } from './sql.ts';

export interface AuditHead {
  seq: number;
  hash: string;
}

/** First half of the advisory lock's key: 'kv'. The second half is a hash of the schema's name. */
export const AUDIT_LOCK_CLASS = 0x6b76;

/**
 * Takes the chain's lock for the rest of the current transaction and returns the head as committed when the lock
 * was granted. Two statements in one round trip: under READ COMMITTED each statement of a multi-statement query
 * sees what was committed when that statement started, so the head is read after the lock is held; read in the
 * statement that waited for the lock, it could miss the append it waited for.
 */
export async function lockAuditChain(db: Queryable): Promise<AuditHead | undefined> {
  const results = (await db.query({
    text:
      `SELECT pg_advisory_xact_lock(${AUDIT_LOCK_CLASS}, hashtext('kubevisa.audit.' || current_schema())) AS locked; ` +
      'SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1',
  })) as unknown as { rows: Record<string, unknown>[] }[];
  const row = results[1]?.rows[0];
  return row === undefined
    ? undefined
    : { seq: integer(row, 'audit_events', 'seq'), hash: text(row, 'audit_events', 'hash') };
}

/** An event ready to insert: as it will read back, and its details as the canonical JSON that was hashed. */
export interface ChainedEvent {
  event: AuditEvent;
  detailsJson: string;
}

/** Builds the event that extends `head`: its seq, prevHash and hash (the same computation as every engine). */
export function chainEvent(input: NewAuditEvent, head: AuditHead | undefined): ChainedEvent {
  // Details are stored as their canonical JSON and re-parsed, so the returned event is exactly what a later read
  // gives back (no `undefined` members, normalised numbers) and hashes the same.
  const detailsJson = canonicalJson(input.details ?? {});
  const unhashed: UnhashedAuditEvent = {
    seq: (head?.seq ?? 0) + 1,
    at: input.at,
    actor: input.actor,
    action: input.action,
    ...definedOnly({
      sessionId: input.sessionId,
      visaId: input.visaId,
      engagementId: input.engagementId,
      personId: input.personId,
      cluster: input.cluster,
      namespace: input.namespace,
      reason: input.reason,
      source:
        input.source === undefined
          ? undefined
          : { address: input.source.address, ...definedOnly({ userAgent: input.source.userAgent }) },
    }),
    outcome: input.outcome,
    details: decodeJsonObject(JSON.parse(detailsJson), 'audit_events.details_json'),
    prevHash: head?.hash ?? GENESIS_HASH,
  };
  const contentHash = auditContentHash(auditContentTextWith(unhashed, detailsJson));
  return { event: { ...unhashed, hash: linkAuditHash(unhashed.seq, unhashed.prevHash, contentHash) }, detailsJson };
}

/** Chains `inputs` one after the other from `head`; returns them and the new head. */
export function chainEvents(
  inputs: readonly NewAuditEvent[],
  head: AuditHead | undefined,
): { chained: ChainedEvent[]; head: AuditHead | undefined } {
  const chained: ChainedEvent[] = [];
  let current = head;
  for (const input of inputs) {
    const next = chainEvent(input, current);
    chained.push(next);
    current = { seq: next.event.seq, hash: next.event.hash };
  }
  return { chained, head: current };
}

const ARRAY_TYPES = [
  'bigint', // seq
  'bigint', // at
  'text', // actor
  'text', // session_id
  'text', // action
  'text', // visa_id
  'text', // engagement_id
  'text', // person_id
  'text', // cluster
  'text', // namespace
  'text', // outcome
  'text', // reason
  'text', // details_json
  'text', // source_address
  'text', // source_user_agent
  'text', // prev_hash
  'text', // hash
];
const INSERT_MANY =
  `INSERT INTO audit_events (${AUDIT_COLUMNS}) SELECT * FROM unnest(` +
  ARRAY_TYPES.map((type, index) => `$${index + 1}::${type}[]`).join(', ') +
  ')';

/** Inserts chained events in one statement (one round trip), in seq order. */
export async function insertChained(db: Queryable, chained: readonly ChainedEvent[]): Promise<void> {
  if (chained.length === 0) return;
  const columns: (string | number | null)[][] = ARRAY_TYPES.map(() => []);
  for (const { event, detailsJson } of chained) {
    const values = [
      event.seq,
      event.at,
      event.actor,
      event.sessionId ?? null,
      event.action,
      event.visaId ?? null,
      event.engagementId ?? null,
      event.personId ?? null,
      event.cluster ?? null,
      event.namespace ?? null,
      event.outcome,
      event.reason ?? null,
      detailsJson,
      event.source?.address ?? null,
      event.source?.userAgent ?? null,
      event.prevHash,
      event.hash,
    ];
    values.forEach((value, index) => columns[index]?.push(value));
  }
  await db.query({ name: 'kv_audit_insert_many', text: INSERT_MANY, values: columns });
}
