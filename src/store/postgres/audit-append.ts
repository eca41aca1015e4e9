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
 *
 * A transaction's events (`store.transaction`) are placed in the chain at commit by the database itself
 * (`chainInDatabase`): the statement that takes the lock, then one INSERT that links the events to the head it
 * finds, sent with the COMMIT, so the lock is held for no round trip of this process.
 */
import {
  GENESIS_HASH,
  assertStorableAuditContent,
  auditContentHash,
  auditContentTextWith,
  canonicalJson,
  linkAuditHash,
} from '../audit-chain.ts';
import type { AuditContent } from '../audit-chain.ts';
import { AUDIT_COLUMNS } from '../mappers.ts';
import { decodeJsonObject, definedOnly, integer, text } from '../rows.ts';
import type { AuditEvent, NewAuditEvent } from '../store.ts';
import type pg from 'pg';
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
 * An event appended inside a transaction and not yet in the chain: its content checked and hashed when it was
 * appended (so bad input is refused then, by the caller's own transaction), its place in the chain (seq, prevHash,
 * hash) given only when it is inserted (`chainInDatabase`).
 */
export interface PendingEvent {
  content: AuditContent;
  detailsJson: string;
  contentHash: string;
}

/** The statements of a commit group's audit events, and whether the group holds the chain's lock. */
interface GroupAuditMark {
  queued: PendingEvent[];
  locked: boolean;
}

/**
 * The audit events of one database transaction (a commit group, commit-groups.ts) not yet inserted: those of its
 * members that returned, in order. They are chained when the group commits, in the statement that takes the
 * chain's lock just before COMMIT, so the lock is held for that insert and the COMMIT only, not across the
 * members' round trips. A member that reads the trail inserts them first (`take`), taking the lock then: the
 * group holds it until it commits, and ends after that member. `mark()` before a member, `restore()` after rolling
 * it back to its savepoint: the inserts made inside it are gone, and the lock too if it was taken there
 * (PostgreSQL releases an advisory lock taken in a rolled-back savepoint).
 */
export class GroupAudit {
  private queued: PendingEvent[] = [];
  private locked = false;

  /** Whether a member took the chain's lock (it read the trail): the group then commits without further members. */
  get holdsLock(): boolean {
    return this.locked;
  }

  /** The events waiting for the group's commit. */
  get pending(): readonly PendingEvent[] {
    return this.queued;
  }

  /** A member that returned: its events join the group's, after those of the members before it. */
  add(events: readonly PendingEvent[]): void {
    this.queued.push(...events);
  }

  /**
   * The group's events followed by `own` (the running member's), for the caller to insert now under the chain's
   * lock, which the group then holds.
   */
  take(own: readonly PendingEvent[]): PendingEvent[] {
    const events = [...this.queued, ...own];
    this.queued = [];
    this.locked = true;
    return events;
  }

  mark(): GroupAuditMark {
    return { queued: [...this.queued], locked: this.locked };
  }

  restore(mark: GroupAuditMark): void {
    this.queued = [...mark.queued];
    this.locked = mark.locked;
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

/** Checks and hashes an event's content: what it will hold in the chain wherever it is placed. */
export function prepareEvent(input: NewAuditEvent): PendingEvent {
  // Details are stored as their canonical JSON and re-parsed, so the event is exactly what a later read gives
  // back (no `undefined` members, normalised numbers) and hashes the same.
  const detailsJson = canonicalJson(input.details ?? {});
  const content: AuditContent = {
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
  };
  assertStorableAuditContent(content);
  return { content, detailsJson, contentHash: auditContentHash(auditContentTextWith(content, detailsJson)) };
}

/** Builds the event that extends `head`: its seq, prevHash and hash (the same computation as every engine). */
export function chainEvent(input: NewAuditEvent, head: AuditHead | undefined): ChainedEvent {
  const { content, detailsJson, contentHash } = prepareEvent(input);
  const seq = (head?.seq ?? 0) + 1;
  const prevHash = head?.hash ?? GENESIS_HASH;
  return { event: { ...content, seq, prevHash, hash: linkAuditHash(seq, prevHash, contentHash) }, detailsJson };
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

/** An event's content as the columns from `at` to `source_user_agent` hold it (AUDIT_COLUMNS' order). */
function contentValues(content: AuditContent, detailsJson: string): (string | number | null)[] {
  return [
    content.at,
    content.actor,
    content.sessionId ?? null,
    content.action,
    content.visaId ?? null,
    content.engagementId ?? null,
    content.personId ?? null,
    content.cluster ?? null,
    content.namespace ?? null,
    content.outcome,
    content.reason ?? null,
    detailsJson,
    content.source?.address ?? null,
    content.source?.userAgent ?? null,
  ];
}

/** One array per column of `rows`, for statements that unnest them. */
function columnsOf(width: number, rows: Iterable<(string | number | null)[]>): (string | number | null)[][] {
  const columns: (string | number | null)[][] = Array.from({ length: width }, () => []);
  for (const values of rows) values.forEach((value, index) => columns[index]?.push(value));
  return columns;
}

/** The statement's parameters for `chained`: one array per column. */
function chainedColumns(chained: readonly ChainedEvent[]): (string | number | null)[][] {
  return columnsOf(
    ARRAY_TYPES.length,
    chained.map(({ event, detailsJson }) => [
      event.seq,
      ...contentValues(event, detailsJson),
      event.prevHash,
      event.hash,
    ]),
  );
}

/** Inserts chained events in one statement (one round trip), in seq order. */
export async function insertChained(db: Queryable, chained: readonly ChainedEvent[]): Promise<void> {
  if (chained.length === 0) return;
  await db.query({ name: 'kv_audit_insert_many', text: INSERT_MANY, values: chainedColumns(chained) });
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
    await db.query({ name: 'kv_audit_insert_many_locked', text: INSERT_MANY_LOCKED, values: chainedColumns(chained) });
    return true;
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? error.code : undefined;
    if (typeof code === 'string' && NOT_THE_HEAD.has(code)) return false;
    throw error;
  }
}

/**
 * Longest a transaction waits for a row (or any other lock) once it holds the chain's lock in the middle of its work
 * (a commit-group member that read the trail: tx.ts `flushAudit`); then its statement is refused (55P03, a
 * Conflict) and only that member is rolled back, releasing the lock. Every append of every process waits while it
 * holds the lock, and this bound is also what ends a wait PostgreSQL cannot see as a deadlock (see LOCK_CHAIN).
 */
export const CHAIN_HOLDER_LOCK_TIMEOUT_MS = 2000;

/** Bounds the lock waits of the rest of the transaction (until it ends, or the savepoint it runs in is undone). */
export const BOUND_WAITS_WHILE_HOLDING_CHAIN: pg.QueryConfig = {
  name: 'kv_audit_holder_timeout',
  text: `SET LOCAL lock_timeout = ${CHAIN_HOLDER_LOCK_TIMEOUT_MS}`,
};

/** Longest a transaction waiting for the chain's lock goes on after PostgreSQL chose it to break deadlocks. */
const CHAIN_LOCK_DEADLOCK_RETRY_SECONDS = 30;

/**
 * Takes the chain's lock until the transaction ends (a statement of its own: see `chainInDatabase`), waiting again
 * when PostgreSQL aborts the wait to break a deadlock.
 *
 * Why: a transaction that holds the lock in the middle of its work (a member that read the trail) and then waits
 * for a row that another commit group wrote, while that group's COMMIT waits for the lock, is a deadlock. PostgreSQL
 * aborts the statement of whichever backend waited deadlock_timeout first, and that is often the group at its COMMIT:
 * the lock statement runs after every member returned, so its failure would refuse them all, though none of them
 * did anything but wait in line for the lock. Waiting again in the database (the EXCEPTION block is a subtransaction:
 * only the failed wait is undone, the group's work stays, and no round trip is added to the COMMIT's) leaves the
 * cycle in place for the other backend's own deadlock check, which then finds it and refuses the statement of the
 * member that holds the lock: that member alone is rolled back (to its savepoint, which releases the lock) and gets a
 * Conflict. PostgreSQL checks a wait for deadlock once; if the holder's check ran in the instant this statement was
 * not waiting, nothing would break the cycle: CHAIN_HOLDER_LOCK_TIMEOUT_MS ends the holder's wait then. Other ways
 * were rejected: re-running the members would run callbacks a second time (Store.transaction runs `work` once), and
 * taking the lock at the start of every group would serialise the groups.
 */
const LOCK_CHAIN: pg.QueryConfig = {
  name: 'kv_audit_lock',
  text:
    'DO $$ DECLARE started timestamptz := clock_timestamp(); BEGIN LOOP BEGIN ' +
    `PERFORM pg_advisory_xact_lock(${AUDIT_LOCK_CLASS}, hashtext('kubevisa.audit.' || current_schema())); RETURN; ` +
    'EXCEPTION WHEN deadlock_detected THEN ' +
    `IF clock_timestamp() - started > interval '${CHAIN_LOCK_DEADLOCK_RETRY_SECONDS} seconds' THEN RAISE; END IF; ` +
    'END; END LOOP; END $$',
};

/** The content columns of `audit_events` and their types, in the order of the INSERT's arrays. */
const CONTENT_COLUMNS: [string, string][] = [
  ['at', 'bigint'],
  ['actor', 'text'],
  ['session_id', 'text'],
  ['action', 'text'],
  ['visa_id', 'text'],
  ['engagement_id', 'text'],
  ['person_id', 'text'],
  ['cluster', 'text'],
  ['namespace', 'text'],
  ['outcome', 'text'],
  ['reason', 'text'],
  ['details_json', 'text'],
  ['source_address', 'text'],
  ['source_user_agent', 'text'],
  ['content_hash', 'text'],
];

const link = (seq: string, prev: string, content: string) =>
  `encode(sha256(convert_to(${seq}::text || chr(10) || ${prev} || chr(10) || ${content}, 'UTF8')), 'hex')`;

/**
 * Inserts the events (one array per column) after the head as the statement sees it, chaining them in the
 * database: the link hash is the one every engine computes (audit-chain.ts `linkAuditHash`: SHA-256 of seq,
 * prevHash and the content hash, computed in this process when the event was appended). A named statement, so
 * PostgreSQL plans it once per connection.
 */
/**
 * Most events one INSERT of `chainInDatabase` chains: each step of its recursion finds its content hash by index
 * in an array of text, which costs more the further in it is, so a long run of events goes in several INSERTs.
 */
const CHAINED_INSERT_MAX_EVENTS = 500;

const INSERT_CHAINED_IN_DATABASE =
  'WITH RECURSIVE ' +
  'head AS (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1), ' +
  `input AS (SELECT * FROM unnest(${CONTENT_COLUMNS.map(([, type], index) => `$${index + 1}::${type}[]`).join(', ')}) ` +
  `WITH ORDINALITY AS input (${CONTENT_COLUMNS.map(([column]) => column).join(', ')}, n)), ` +
  'chain (n, seq, prev_hash, hash) AS (' +
  `SELECT 0::bigint, COALESCE((SELECT seq FROM head), 0)::bigint, NULL::text, COALESCE((SELECT hash FROM head), '${GENESIS_HASH}')::text ` +
  // Each step reads the next content hash from the parameter by its index: a join with `input` here would scan
  // it once per event.
  `UNION ALL SELECT c.n + 1, c.seq + 1, c.hash, ${link('(c.seq + 1)', 'c.hash', `($${CONTENT_COLUMNS.length}::text[])[c.n + 1]`)} ` +
  `FROM chain c WHERE c.n < cardinality($${CONTENT_COLUMNS.length}::text[])) ` +
  `INSERT INTO audit_events (${AUDIT_COLUMNS}) ` +
  `SELECT c.seq, ${CONTENT_COLUMNS.slice(0, -1)
    .map(([column]) => `i.${column}`)
    .join(', ')}, c.prev_hash, c.hash ` +
  'FROM chain c JOIN input i ON i.n = c.n ORDER BY c.n RETURNING seq, hash';

/**
 * Takes the chain's lock, then inserts `events` after the head as it is once the lock is held: two statements,
 * sent together (on a connection in pipeline mode, one round trip), the second answering each event's seq and
 * hash. Under READ COMMITTED the INSERT, a statement of its own, sees every append committed before the lock was
 * granted, so it extends the true head (and the trigger checks it does). No head travels to this process and
 * back while the lock is held: the lock lasts as long as the database takes to insert and commit.
 */
export function chainInDatabase(db: Queryable, events: readonly PendingEvent[]): Promise<pg.QueryResult>[] {
  const statements = [db.query(LOCK_CHAIN)];
  // Each INSERT extends the head the one before left (a later statement of the same transaction sees its rows).
  for (let start = 0; start < events.length; start += CHAINED_INSERT_MAX_EVENTS) {
    const columns = columnsOf(
      CONTENT_COLUMNS.length,
      events
        .slice(start, start + CHAINED_INSERT_MAX_EVENTS)
        .map(({ content, detailsJson, contentHash }) => [...contentValues(content, detailsJson), contentHash]),
    );
    statements.push(db.query({ name: 'kv_audit_insert_chained', text: INSERT_CHAINED_IN_DATABASE, values: columns }));
  }
  return statements;
}

/** The head after the rows `chainInDatabase` returned (the result of its last INSERT). */
export function headOfInserted(rows: readonly Record<string, unknown>[]): AuditHead | undefined {
  let head: AuditHead | undefined;
  for (const row of rows) {
    const seq = integer(row, 'audit_events', 'seq');
    if (head === undefined || seq > head.seq) head = { seq, hash: text(row, 'audit_events', 'hash') };
  }
  return head;
}
