/**
 * Appending to the audit chain on PostgreSQL. Every appender, in every process, first takes one transaction-scoped
 * advisory lock per schema (`lockAuditChain`), then reads the head: so appends are serialised across processes and
 * connections, each extends the head it read, and the lock is released only when its transaction commits or rolls
 * back, which is what keeps the chain one line without gaps. The events themselves go in with one INSERT however
 * many there are (arrays unnested server-side), so a batch costs one round trip.
 *
 * The database enforces the line whatever a process believes: the primary key on seq and the trigger that refuses
 * an insert not extending the head (migrations.ts v2). That is what lets a process append from the head it last
 * saw (`KnownHead`) without reading it first (`insertChainedAtKnownHead`): if another process appended since,
 * the statement is refused and nothing was written, and the caller takes the lock and reads the head instead.
 */
import { InvalidInput } from '../../domain/errors.ts';
import { GENESIS_HASH, auditContentHash, auditContentTextWith, canonicalJson, linkAuditHash } from '../audit-chain.ts';
import type { UnhashedAuditEvent } from '../audit-chain.ts';
import { AUDIT_COLUMNS } from '../mappers.ts';
import { decodeJsonObject, definedOnly, integer, text } from '../rows.ts';
import type { AuditEvent, NewAuditEvent } from '../store.ts';
import pg from 'pg';
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

/**
 * The chain as one database transaction holds it: the lock taken and the head read at the first append, then
 * extended in memory by each later append of the same transaction. A commit group (commit-groups.ts) shares one
 * across its members: `mark()` before a member, `restore()` after rolling that member back to its savepoint (its
 * appends are gone, and so is the lock if it was taken inside: PostgreSQL releases an advisory lock taken in a
 * rolled-back savepoint).
 */
export class ChainHold {
  private readonly db: Queryable;
  private held: { head: AuditHead | undefined } | undefined;

  constructor(db: Queryable) {
    this.db = db;
  }

  /** The head to extend: locks the chain and reads it on first use in this transaction. */
  async head(): Promise<AuditHead | undefined> {
    this.held ??= { head: await lockAuditChain(this.db) };
    return this.held.head;
  }

  /** Records the head after an append (made while holding the lock). */
  advance(head: AuditHead | undefined): void {
    this.held = { head };
  }

  /** The head as of the last append, if this transaction appended; undefined otherwise. */
  get appended(): AuditHead | undefined {
    return this.held?.head;
  }

  forget(): void {
    this.held = undefined;
  }

  /** The state to go back to if what follows is rolled back to a savepoint taken now. */
  mark(): { head: AuditHead | undefined } | undefined {
    return this.held;
  }

  restore(mark: { head: AuditHead | undefined } | undefined): void {
    this.held = mark;
  }
}

/**
 * The newest head this process saw committed (by its own commits). A guess, never trusted: another process may
 * have appended since, which the database's guards catch. It only moves forward.
 */
export class KnownHead {
  private known: AuditHead | undefined;

  get(): AuditHead | undefined {
    return this.known;
  }

  /** After a COMMIT that returned: `head` is in the database. */
  committed(head: AuditHead | undefined): void {
    if (head !== undefined && (this.known === undefined || head.seq > this.known.seq)) this.known = head;
  }

  /** After a failure whose outcome is unknown (a lost connection): read the head again next time. */
  forget(): void {
    this.known = undefined;
  }
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

const OUTCOMES: readonly string[] = ['ok', 'refused', 'error'];

/**
 * Refuses, before anything is written, an event the audit table would refuse: a commit group inserts a member's
 * events after the member has returned (commit-groups.ts), when a refusal could no longer be its alone. The table
 * takes text without NUL characters, an integer time and one of the known outcomes.
 */
export function assertInsertable(event: AuditEvent): void {
  const texts: [string, string | undefined][] = [
    ['actor', event.actor],
    ['sessionId', event.sessionId],
    ['action', event.action],
    ['visaId', event.visaId],
    ['engagementId', event.engagementId],
    ['personId', event.personId],
    ['cluster', event.cluster],
    ['namespace', event.namespace],
    ['reason', event.reason],
    ['source.address', event.source?.address],
    ['source.userAgent', event.source?.userAgent],
  ];
  for (const [field, value] of texts) {
    if (value?.includes('\u0000') === true) {
      throw new InvalidInput(`audit event ${field} contains a NUL character, which the store cannot hold`, {
        details: { field },
      });
    }
  }
  if (!Number.isSafeInteger(event.at)) {
    throw new InvalidInput(`audit event time must be a whole number of milliseconds; got ${event.at}`);
  }
  if (!OUTCOMES.includes(event.outcome)) {
    throw new InvalidInput(`audit event outcome must be one of ${OUTCOMES.join(', ')}; got ${String(event.outcome)}`);
  }
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

/** The statement's parameters for `chained`: one array per column. */
function columnsOf(chained: readonly ChainedEvent[]): (string | number | null)[][] {
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
  return columns;
}

/** Inserts chained events in one statement (one round trip), in seq order. */
export async function insertChained(db: Queryable, chained: readonly ChainedEvent[]): Promise<void> {
  if (chained.length === 0) return;
  await db.query({ name: 'kv_audit_insert_many', text: INSERT_MANY, values: columnsOf(chained) });
}

/** A value as an SQL literal: numbers checked to be integers, text quoted by node-postgres. */
function literal(value: string | number | null): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new Error(`audit event value ${value} is not an integer`);
    return String(value);
  }
  return pg.escapeLiteral(value);
}

/**
 * The INSERT of `chained` as SQL text with the values inlined, for the simple-query protocol, which (unlike a
 * statement with parameters) can carry several statements in one round trip: a commit group sends a member's
 * events together with the savepoint statements that end it (commit-groups.ts).
 */
export function insertChainedSql(chained: readonly ChainedEvent[]): string {
  if (chained.length === 0) return '';
  const columns = columnsOf(chained);
  const rows = chained.map((_, row) => `(${columns.map((column) => literal(column[row] ?? null)).join(', ')})`);
  return `INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES ${rows.join(', ')}`;
}

/**
 * One statement, run outside any explicit transaction, so it is a transaction of its own: it takes the chain's
 * lock (waiting for a transaction that holds it), inserts, and commits, in one round trip. The lock is what keeps
 * it from slipping in between another transaction's reading of the head and its insert.
 */
const INSERT_MANY_LOCKED =
  `WITH chain_lock AS (SELECT pg_advisory_xact_lock(${AUDIT_LOCK_CLASS}, hashtext('kubevisa.audit.' || current_schema())) AS locked) ` +
  `INSERT INTO audit_events (${AUDIT_COLUMNS}) SELECT events.* FROM chain_lock, unnest(` +
  ARRAY_TYPES.map((type, index) => `$${index + 1}::${type}[]`).join(', ') +
  ') AS events';

/** SQLSTATEs of an insert that does not extend the head: seq taken (23505), the guard trigger's refusal (23000). */
const NOT_THE_HEAD = new Set(['23505', '23000']);

/**
 * Inserts events chained from a head the caller believes current and commits them, in one round trip, on a
 * connection with no transaction open. Returns false, having written nothing, when the head has moved (another
 * process appended): the caller then appends the usual way. Other errors are thrown.
 */
export async function insertChainedAtKnownHead(db: Queryable, chained: readonly ChainedEvent[]): Promise<boolean> {
  if (chained.length === 0) return true;
  try {
    await db.query({ name: 'kv_audit_insert_many_locked', text: INSERT_MANY_LOCKED, values: columnsOf(chained) });
    return true;
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? error.code : undefined;
    if (typeof code === 'string' && NOT_THE_HEAD.has(code)) return false;
    throw error;
  }
}
