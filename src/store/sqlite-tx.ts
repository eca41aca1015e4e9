/**
 * Every read and write of the SQLite engine, on one connection. The connection is synchronous; the methods are
 * async only to honour the engine-neutral StoreTx contract. Transaction boundaries, serialisation and liveness
 * belong to sqlite.ts: an instance of SqliteTx only ever runs while its owner holds the connection.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { Conflict, InvalidInput, NotFound } from '../domain/errors.ts';
import type {
  Engagement,
  Instant,
  Person,
  PersonRole,
  PersonStatus,
  Profile,
  Visa,
  VisaState,
} from '../domain/model.ts';
import {
  GENESIS_HASH,
  assertStorableAuditContent,
  auditContentHash,
  auditContentTextWith,
  canonicalJson,
  linkAuditHash,
  type UnhashedAuditEvent,
} from './audit-chain.ts';
import { StoreUnavailable } from './errors.ts';
import { newId } from './ids.ts';
import {
  AUDIT_COLUMNS,
  CLUSTER_COLUMNS,
  REGISTERED_CLUSTER_COLUMNS,
  mapRegisteredCluster,
  registeredClusterParams,
  ENGAGEMENT_COLUMNS,
  INTENT_COLUMNS,
  LOGIN_COLUMNS,
  PERSON_COLUMNS,
  PROFILE_COLUMNS,
  SESSION_COLUMNS,
  VISA_COLUMNS,
  mapAudit,
  mapCluster,
  mapEngagement,
  mapIntent,
  mapLogin,
  mapPerson,
  mapProfile,
  mapSession,
  mapVisa,
} from './mappers.ts';
import { decodeJsonObject, decodeJsonValue, definedOnly, integer, json, text, type Row } from './rows.ts';
import { AUDIT_CHECKPOINT_COLUMNS, mapAuditCheckpoint, mapAuditRecord } from './audit-rows.ts';
import {
  OFFBOARDING_COLUMNS,
  SCIM_GROUP_COLUMNS,
  SCIM_LINK_COLUMNS,
  SCIM_TOKEN_COLUMNS,
  SCIM_USER_COLUMNS,
  mapOffboarding,
  mapScimGroup,
  mapScimLink,
  mapScimToken,
  mapScimUser,
  type NewScimGroup,
  type NewScimUser,
  type OffboardingFilter,
  type OffboardingRecord,
  type OffboardingStatus,
  type ScimGroupRecord,
  type ScimLinkRecord,
  type ScimTokenPatch,
  type ScimTokenRecord,
  type ScimUserRecord,
} from './identity-records.ts';
import type {
  AuditCheckpoint,
  AuditCheckpointFilter,
  AuditEvent,
  AuditFilter,
  AuditRecord,
  ClusterInput,
  ClusterRecord,
  RegisteredClusterRecord,
  EngagementFilter,
  Intent,
  IntentFilter,
  JsonObject,
  JsonValue,
  NewAuditCheckpoint,
  NewAuditEvent,
  NewIntent,
  NewSession,
  PendingLogin,
  PendingLoginPatch,
  PersonLogin,
  Session,
  SessionGrant,
  SessionPatch,
  StoreTx,
  StoredVisa,
  VisaFilter,
  VisaUpdate,
} from './store.ts';

type Params = Record<string, SQLInputValue>;

/** Default and ceiling of `listAudit`'s page size. */
export const AUDIT_PAGE_DEFAULT = 1000;
export const AUDIT_PAGE_MAX = 10000;

/** States in which a visa can still grant access (its bindings exist or are about to). */
const LIVE_STATES: readonly VisaState[] = ['approved', 'active'];

/** SQLite extended result codes the store turns into domain errors. */
const SQLITE_BUSY = 5;
const SQLITE_CONSTRAINT_FOREIGNKEY = 787;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;
/** Primary result codes meaning the write cannot reach the disk: read-only file, I/O error, disk full, cannot open. */
const SQLITE_NOT_DURABLE = new Set([8, 10, 13, 14]);

function sqliteErrcode(error: unknown): number | undefined {
  if (error instanceof Error && 'errcode' in error && typeof error.errcode === 'number') return error.errcode;
  return undefined;
}

/**
 * Turns a constraint violation that slipped past the explicit checks into the domain's stable errors, and a
 * lock timeout into StoreUnavailable; anything else is returned unchanged.
 */
export function translateSqliteError(error: unknown): unknown {
  const code = sqliteErrcode(error);
  if (code === undefined || !(error instanceof Error)) return error;
  if (code === SQLITE_CONSTRAINT_PRIMARYKEY || code === SQLITE_CONSTRAINT_UNIQUE) {
    return new Conflict(`already exists (${error.message})`);
  }
  if (code === SQLITE_CONSTRAINT_FOREIGNKEY)
    return new NotFound(`a referenced record does not exist (${error.message})`);
  // The primary result code is the low byte of the extended one (SQLITE_BUSY_SNAPSHOT, …).
  if ((code & 0xff) === SQLITE_BUSY) {
    return new StoreUnavailable('the database is locked by another process; try again', { cause: error });
  }
  if (SQLITE_NOT_DURABLE.has(code & 0xff)) {
    return new StoreUnavailable(
      `the database cannot be written (${error.message}): nothing was changed; check the disk and the data folder`,
      { cause: error, details: { sqliteCode: code } },
    );
  }
  return error;
}

/** Prepared statements by SQL text, reused across transactions (preparing is the costly part of a query). */
export class StatementCache {
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.db = db;
  }

  get(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }
}

function orNull<T extends SQLInputValue>(value: T | undefined): T | null {
  return value === undefined ? null : value;
}

/** `:p0, :p1, …` for an IN list, with the matching parameters added to `params`. */
function inList(prefix: string, values: readonly string[], params: Params): string {
  return values
    .map((value, index) => {
      params[`${prefix}${index}`] = value;
      return `:${prefix}${index}`;
    })
    .join(', ');
}

/** A page size checked against the audit ceiling: default AUDIT_PAGE_DEFAULT, at most AUDIT_PAGE_MAX. */
function pageLimit(limit: number | undefined, what: string): number {
  const chosen = limit ?? AUDIT_PAGE_DEFAULT;
  if (!Number.isSafeInteger(chosen) || chosen < 1) {
    throw new InvalidInput(`${what} limit must be a whole number from 1 to ${AUDIT_PAGE_MAX}; got ${chosen}`, {
      details: { limit: chosen, max: AUDIT_PAGE_MAX },
    });
  }
  return Math.min(chosen, AUDIT_PAGE_MAX);
}

/** The SELECT of listAudit and listAuditRecords: every filter, the order and the page size. */
function auditQuery(filter: AuditFilter): { sql: string; params: Params } {
  const params: Params = { limit: pageLimit(filter.limit, 'audit page') };
  const clauses: string[] = [];
  const bounds: [string, string, number | undefined][] = [
    ['seq >', 'after_seq', filter.afterSeq],
    ['seq <', 'before_seq', filter.beforeSeq],
    ['seq <=', 'through_seq', filter.throughSeq],
    ['at >=', 'since', filter.since],
    ['at <', 'until', filter.until],
  ];
  for (const [comparison, name, value] of bounds) {
    if (value === undefined) continue;
    clauses.push(`${comparison} :${name}`);
    params[name] = value;
  }
  const optional: [string, string | undefined][] = [
    ['visa_id', filter.visaId],
    ['person_id', filter.personId],
    ['engagement_id', filter.engagementId],
    ['action', filter.action],
    ['actor', filter.actor],
    ['cluster', filter.cluster],
    ['namespace', filter.namespace],
  ];
  for (const [column, value] of optional) {
    if (value === undefined) continue;
    clauses.push(`${column} = :${column}`);
    params[column] = value;
  }
  if (filter.involving !== undefined) {
    const either: string[] = [];
    if (filter.involving.personId !== undefined) {
      either.push('person_id = :involving_person');
      params.involving_person = filter.involving.personId;
    }
    if (filter.involving.email !== undefined) {
      either.push('actor = :involving_email');
      params.involving_email = filter.involving.email;
    }
    // Involving nobody matches nothing (rather than everything).
    clauses.push(either.length === 0 ? '0' : `(${either.join(' OR ')})`);
  }
  const where = clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`;
  const order = filter.newestFirst === true ? 'DESC' : 'ASC';
  return {
    sql: `SELECT ${AUDIT_COLUMNS} FROM audit_events ${where} ORDER BY seq ${order} LIMIT :limit`,
    params,
  };
}

function engagementParams(e: Engagement): Params {
  return {
    id: e.id,
    name: e.name,
    vendor: e.vendor,
    contractors_json: JSON.stringify(e.contractors),
    sponsor: e.sponsor,
    starts_at: e.startsAt,
    ends_at: e.endsAt,
    ceiling_json: JSON.stringify({
      clusters: e.ceiling.clusters,
      namespacePatterns: e.ceiling.namespacePatterns,
      profiles: e.ceiling.profiles,
    }),
    max_visa_seconds: e.maxVisaSeconds,
    status: e.status,
    ended_at: orNull(e.endedAt),
    ended_by: orNull(e.endedBy),
    end_reason: orNull(e.endReason),
    created_at: e.createdAt,
    created_by: e.createdBy,
  };
}

function visaParams(v: Visa): Params {
  return {
    id: v.id,
    engagement_id: v.engagementId,
    person_id: v.personId,
    person_email: v.personEmail,
    cluster: v.cluster,
    namespaces_json: JSON.stringify(v.namespaces),
    profile: v.profile,
    reason: v.reason,
    requested_at: v.requestedAt,
    requested_seconds: v.requestedSeconds,
    not_before: v.notBefore,
    not_after: v.notAfter,
    state: v.state,
    approvals_json: JSON.stringify(v.approvals),
    required_approvals: v.requiredApprovals,
    extends: orNull(v.extends),
    decided_at: orNull(v.decidedAt),
    decided_by: orNull(v.decidedBy),
    ended_at: orNull(v.endedAt),
    ended_by: orNull(v.endedBy),
    end_reason: orNull(v.endReason),
  };
}

/** `a = :a, b = :b` for every key of `params` but the listed ones. */
function assignments(params: Params, except: readonly string[]): string {
  return Object.keys(params)
    .filter((key) => !except.includes(key))
    .map((key) => `${key} = :${key}`)
    .join(', ');
}

/**
 * The audit chain's head as the write connection last wrote it, so an append need not read it back. Valid only
 * inside the group of transactions that wrote it: the store forgets it when a group begins (another process may
 * have appended) and whenever it rolls anything back.
 */
export class AuditHeadCache {
  known = false;
  head: { seq: number; hash: string } | undefined;

  remember(head: { seq: number; hash: string }): void {
    this.known = true;
    this.head = head;
  }

  forget(): void {
    this.known = false;
    this.head = undefined;
  }
}

export class SqliteTx implements StoreTx {
  private readonly statements: StatementCache;
  private readonly auditHead: AuditHeadCache | undefined;
  private live = true;

  /** `auditHead` is given to transactions on the write connection only. */
  constructor(statements: StatementCache, auditHead?: AuditHeadCache) {
    this.statements = statements;
    this.auditHead = auditHead;
  }

  /** Whether the transaction (or read) this object belongs to is still running. */
  get isLive(): boolean {
    return this.live;
  }

  /** Called by the owner when the transaction ends; every later call is refused. */
  end(): void {
    this.live = false;
  }

  private assertLive(): void {
    if (!this.live) {
      throw new Error('store transaction has already ended: use `tx` only inside its transaction callback');
    }
  }

  private one(sql: string, params: Params = {}): Row | undefined {
    this.assertLive();
    return this.statements.get(sql).get(params);
  }

  private many(sql: string, params: Params = {}): Row[] {
    this.assertLive();
    return this.statements.get(sql).all(params);
  }

  /** Runs a write and returns how many rows it changed. */
  private write(sql: string, params: Params): number {
    this.assertLive();
    try {
      return Number(this.statements.get(sql).run(params).changes);
    } catch (error) {
      throw translateSqliteError(error);
    }
  }

  private exists(table: string, column: string, value: string): boolean {
    return this.one(`SELECT 1 AS found FROM ${table} WHERE ${column} = :value`, { value }) !== undefined;
  }

  // ---- persons ----

  async getPerson(id: string): Promise<Person | undefined> {
    const row = this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE id = :id`, { id });
    return row === undefined ? undefined : mapPerson(row);
  }

  async getPersonByEmail(email: string): Promise<Person | undefined> {
    const row = this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE email = :email`, { email: email.toLowerCase() });
    return row === undefined ? undefined : mapPerson(row);
  }

  async getPersonBySubject(issuer: string, subject: string): Promise<Person | undefined> {
    const row = this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE issuer = :issuer AND subject = :subject`, {
      issuer,
      subject,
    });
    return row === undefined ? undefined : mapPerson(row);
  }

  async listPersons(): Promise<Person[]> {
    return this.many(`SELECT ${PERSON_COLUMNS} FROM persons ORDER BY email, id`).map(mapPerson);
  }

  async upsertPersonFromLogin(login: PersonLogin): Promise<Person> {
    const email = login.email.toLowerCase();
    const existing = await this.getPersonBySubject(login.issuer, login.subject);
    const holder = await this.getPersonByEmail(email);
    if (holder !== undefined && holder.id !== existing?.id) {
      throw new Conflict(`email ${email} already belongs to another identity; an admin must resolve it`, {
        details: { email, issuer: login.issuer },
      });
    }
    const id = existing?.id ?? newId('p_');
    const params: Params = {
      id,
      email,
      display_name: login.displayName,
      groups_json: JSON.stringify(login.groups),
      now: login.now,
    };
    if (existing !== undefined) {
      this.write(
        'UPDATE persons SET email = :email, display_name = :display_name, groups_json = :groups_json, ' +
          'updated_at = :now WHERE id = :id',
        params,
      );
    } else {
      this.write(
        'INSERT INTO persons (id, issuer, subject, email, display_name, groups_json, roles_json, status, ' +
          "created_at, updated_at) VALUES (:id, :issuer, :subject, :email, :display_name, :groups_json, '[]', " +
          "'active', :now, :now)",
        { ...params, issuer: login.issuer, subject: login.subject },
      );
    }
    return this.mustGetPerson(id);
  }

  private async mustGetPerson(id: string): Promise<Person> {
    const person = await this.getPerson(id);
    if (person === undefined) throw new NotFound(`person ${id} does not exist`, { details: { personId: id } });
    return person;
  }

  async setPersonStatus(id: string, status: PersonStatus, now: Instant): Promise<Person> {
    this.write('UPDATE persons SET status = :status, updated_at = :now WHERE id = :id', { id, status, now });
    return this.mustGetPerson(id);
  }

  async setPersonRoles(id: string, roles: PersonRole[], now: Instant): Promise<Person> {
    this.write('UPDATE persons SET roles_json = :roles_json, updated_at = :now WHERE id = :id', {
      id,
      roles_json: JSON.stringify(roles),
      now,
    });
    return this.mustGetPerson(id);
  }

  // ---- engagements ----

  async getEngagement(id: string): Promise<Engagement | undefined> {
    const row = this.one(`SELECT ${ENGAGEMENT_COLUMNS} FROM engagements WHERE id = :id`, { id });
    return row === undefined ? undefined : mapEngagement(row);
  }

  async listEngagements(filter: EngagementFilter = {}): Promise<Engagement[]> {
    const clauses: string[] = [];
    const params: Params = {};
    if (filter.status !== undefined) {
      clauses.push('status = :status');
      params.status = filter.status;
    }
    if (filter.contractor !== undefined) {
      clauses.push('id IN (SELECT engagement_id FROM engagement_contractors WHERE email = :contractor)');
      params.contractor = filter.contractor.toLowerCase();
    }
    const where = clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`;
    return this.many(`SELECT ${ENGAGEMENT_COLUMNS} FROM engagements ${where} ORDER BY starts_at, rowid`, params).map(
      mapEngagement,
    );
  }

  private indexContractors(engagement: Engagement): void {
    this.write('DELETE FROM engagement_contractors WHERE engagement_id = :id', { id: engagement.id });
    // A contractor listed twice is indexed once (the list itself is kept as given in contractors_json).
    for (const email of new Set(engagement.contractors.map((contractor) => contractor.toLowerCase()))) {
      this.write('INSERT INTO engagement_contractors (engagement_id, email) VALUES (:id, :email)', {
        id: engagement.id,
        email,
      });
    }
  }

  async insertEngagement(engagement: Engagement): Promise<Engagement> {
    if (this.exists('engagements', 'id', engagement.id)) {
      throw new Conflict(`engagement ${engagement.id} already exists`, { details: { engagementId: engagement.id } });
    }
    const params = engagementParams(engagement);
    const columns = Object.keys(params);
    this.write(
      `INSERT INTO engagements (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    this.indexContractors(engagement);
    return this.mustGetEngagement(engagement.id);
  }

  async updateEngagement(engagement: Engagement): Promise<Engagement> {
    const params = engagementParams(engagement);
    const changed = this.write(`UPDATE engagements SET ${assignments(params, ['id'])} WHERE id = :id`, params);
    if (changed === 0) {
      throw new NotFound(`engagement ${engagement.id} does not exist`, { details: { engagementId: engagement.id } });
    }
    this.indexContractors(engagement);
    return this.mustGetEngagement(engagement.id);
  }

  private async mustGetEngagement(id: string): Promise<Engagement> {
    const engagement = await this.getEngagement(id);
    if (engagement === undefined) {
      throw new NotFound(`engagement ${id} does not exist`, { details: { engagementId: id } });
    }
    return engagement;
  }

  // ---- visas ----

  async getVisa(id: string): Promise<StoredVisa | undefined> {
    const row = this.one(`SELECT ${VISA_COLUMNS} FROM visas WHERE id = :id`, { id });
    return row === undefined ? undefined : mapVisa(row);
  }

  async listVisas(filter: VisaFilter = {}): Promise<StoredVisa[]> {
    const clauses: string[] = [];
    const params: Params = {};
    if (filter.state !== undefined) {
      clauses.push('state = :state');
      params.state = filter.state;
    }
    if (filter.states !== undefined) {
      if (filter.states.length === 0) return [];
      clauses.push(`state IN (${inList('s', filter.states, params)})`);
    }
    if (filter.personId !== undefined) {
      clauses.push('person_id = :person_id');
      params.person_id = filter.personId;
    }
    if (filter.engagementId !== undefined) {
      clauses.push('engagement_id = :engagement_id');
      params.engagement_id = filter.engagementId;
    }
    if (filter.cluster !== undefined) {
      clauses.push('cluster = :cluster');
      params.cluster = filter.cluster;
    }
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return [];
      clauses.push(`id IN (${inList('i', filter.ids, params)})`);
    }
    const where = clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`;
    return this.many(`SELECT ${VISA_COLUMNS} FROM visas ${where} ORDER BY requested_at, rowid`, params).map(mapVisa);
  }

  async listVisasGrantingAt(now: Instant): Promise<StoredVisa[]> {
    const params: Params = { now };
    const states = inList('s', LIVE_STATES, params);
    return this.many(
      `SELECT ${VISA_COLUMNS} FROM visas WHERE state IN (${states}) AND not_before <= :now AND not_after > :now ` +
        'ORDER BY not_after, id',
      params,
    ).map(mapVisa);
  }

  async listVisasInStates(states: readonly VisaState[]): Promise<StoredVisa[]> {
    if (states.length === 0) return [];
    const params: Params = {};
    return this.many(
      `SELECT ${VISA_COLUMNS} FROM visas WHERE state IN (${inList('s', states, params)}) ORDER BY not_after, id`,
      params,
    ).map(mapVisa);
  }

  async listVisasEndingBefore(
    t: Instant,
    filter: { states?: readonly VisaState[]; cluster?: string } = {},
  ): Promise<StoredVisa[]> {
    const states = filter.states ?? LIVE_STATES;
    if (states.length === 0) return [];
    const params: Params = { t };
    const cluster = filter.cluster === undefined ? '' : 'AND cluster = :cluster ';
    if (filter.cluster !== undefined) params.cluster = filter.cluster;
    // INDEXED BY: the (state, not_after) range holds only the due rows; the planner could prefer the cluster index,
    // which holds every live visa of the cluster.
    return this.many(
      `SELECT ${VISA_COLUMNS} FROM visas INDEXED BY visas_state_not_after ` +
        `WHERE state IN (${inList('s', states, params)}) AND not_after <= :t ${cluster}ORDER BY not_after, id`,
      params,
    ).map(mapVisa);
  }

  async nextVisaDeadlineAfter(t: Instant): Promise<Instant | undefined> {
    // One index seek per state and deadline (visas_state_not_before, visas_state_not_after), not a scan of every
    // live visa.
    const seeks = LIVE_STATES.flatMap((_, i) =>
      ['not_before', 'not_after'].map(
        (column) =>
          `SELECT * FROM (SELECT ${column} AS at FROM visas WHERE state = :s${i} AND ${column} > :t ` +
          `ORDER BY ${column} LIMIT 1)`,
      ),
    );
    const params: Params = { t };
    LIVE_STATES.forEach((state, i) => (params[`s${i}`] = state));
    const row = this.one(`SELECT MIN(at) AS at FROM (${seeks.join(' UNION ALL ')})`, params);
    return row === undefined || row.at === null ? undefined : integer(row, 'visas', 'at');
  }

  async insertVisa(visa: Visa): Promise<StoredVisa> {
    if (this.exists('visas', 'id', visa.id)) {
      throw new Conflict(`visa ${visa.id} already exists`, { details: { visaId: visa.id } });
    }
    this.assertVisaReferences(visa);
    const params = { ...visaParams(visa), version: 1 };
    const columns = Object.keys(params);
    this.write(`INSERT INTO visas (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`, params);
    return this.mustGetVisa(visa.id);
  }

  async updateVisa(visa: Visa, expectedVersion?: number): Promise<StoredVisa> {
    const current = this.one('SELECT version FROM visas WHERE id = :id', { id: visa.id });
    if (current === undefined) throw new NotFound(`visa ${visa.id} does not exist`, { details: { visaId: visa.id } });
    const currentVersion = integer(current, 'visas', 'version');
    if (expectedVersion !== undefined && expectedVersion !== currentVersion) {
      throw new Conflict(
        `visa ${visa.id} was changed by someone else (version ${currentVersion}, expected ${expectedVersion}); ` +
          'reload it and decide again',
        { details: { visaId: visa.id, expectedVersion, currentVersion } },
      );
    }
    this.assertVisaReferences(visa);
    const params = visaParams(visa);
    // The version guard in the WHERE clause is what keeps the update safe on engines where another connection
    // can commit between the read above and this write; on SQLite the write lock already excludes that.
    const changed = this.write(
      `UPDATE visas SET ${assignments(params, ['id'])}, version = version + 1 WHERE id = :id AND version = :version`,
      { ...params, version: currentVersion },
    );
    if (changed === 0) {
      throw new Conflict(`visa ${visa.id} was changed by someone else; reload it and decide again`, {
        details: { visaId: visa.id },
      });
    }
    return this.mustGetVisa(visa.id);
  }

  private assertVisaReferences(visa: Visa): void {
    if (!this.exists('engagements', 'id', visa.engagementId)) {
      throw new NotFound(`engagement ${visa.engagementId} does not exist`, {
        details: { engagementId: visa.engagementId },
      });
    }
    if (!this.exists('persons', 'id', visa.personId)) {
      throw new NotFound(`person ${visa.personId} does not exist`, { details: { personId: visa.personId } });
    }
  }

  private async mustGetVisa(id: string): Promise<StoredVisa> {
    const visa = await this.getVisa(id);
    if (visa === undefined) throw new NotFound(`visa ${id} does not exist`, { details: { visaId: id } });
    return visa;
  }

  // ---- intents ----

  async getIntent(id: string): Promise<Intent | undefined> {
    const row = this.one(`SELECT ${INTENT_COLUMNS} FROM intents WHERE id = :id`, { id });
    return row === undefined ? undefined : mapIntent(row);
  }

  async listPendingIntents(filter: IntentFilter = {}): Promise<Intent[]> {
    const params: Params = {};
    let where = 'completed_at IS NULL';
    if (filter.cluster !== undefined) {
      where += ' AND cluster = :cluster';
      params.cluster = filter.cluster;
    }
    return this.many(`SELECT ${INTENT_COLUMNS} FROM intents WHERE ${where} ORDER BY created_at, rowid`, params).map(
      mapIntent,
    );
  }

  async insertIntent(intent: NewIntent): Promise<Intent> {
    const id = intent.id ?? newId('i_');
    if (this.exists('intents', 'id', id))
      throw new Conflict(`intent ${id} already exists`, { details: { intentId: id } });
    this.write(
      `INSERT INTO intents (${INTENT_COLUMNS}) VALUES ` +
        '(:id, :kind, :cluster, :visa_id, :person_id, :payload_json, :created_at, NULL)',
      {
        id,
        kind: intent.kind,
        cluster: intent.cluster,
        visa_id: orNull(intent.visaId),
        person_id: orNull(intent.personId),
        payload_json: JSON.stringify(intent.payload),
        created_at: intent.createdAt,
      },
    );
    return this.mustGetIntent(id);
  }

  async completeIntent(id: string, now: Instant): Promise<Intent> {
    this.write('UPDATE intents SET completed_at = COALESCE(completed_at, :now) WHERE id = :id', { id, now });
    return this.mustGetIntent(id);
  }

  // In-process statements cost microseconds: one at a time is as fast as a batch here.
  async insertIntents(intents: readonly NewIntent[]): Promise<Intent[]> {
    const inserted: Intent[] = [];
    for (const intent of intents) inserted.push(await this.insertIntent(intent));
    return inserted;
  }

  async completeIntents(ids: readonly string[], now: Instant): Promise<void> {
    for (const id of ids) await this.completeIntent(id, now);
  }

  private async mustGetIntent(id: string): Promise<Intent> {
    const intent = await this.getIntent(id);
    if (intent === undefined) throw new NotFound(`intent ${id} does not exist`, { details: { intentId: id } });
    return intent;
  }

  // ---- sessions ----

  async getSession(id: string): Promise<Session | undefined> {
    const row = this.one(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE id = :id`, { id });
    return row === undefined ? undefined : mapSession(row);
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | undefined> {
    const row = this.one(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE secret_hash = :secret_hash`, {
      secret_hash: secretHash,
    });
    return row === undefined ? undefined : mapSession(row);
  }

  async listSessionsOfPerson(personId: string): Promise<Session[]> {
    return this.many(
      `SELECT ${SESSION_COLUMNS} FROM sessions WHERE person_id = :person_id ORDER BY created_at, rowid`,
      {
        person_id: personId,
      },
    ).map(mapSession);
  }

  async insertSession(session: NewSession): Promise<Session> {
    const id = session.id ?? newId('s_');
    if (!this.exists('persons', 'id', session.personId)) {
      throw new NotFound(`person ${session.personId} does not exist`, { details: { personId: session.personId } });
    }
    if (this.exists('sessions', 'id', id))
      throw new Conflict(`session ${id} already exists`, { details: { sessionId: id } });
    if (this.exists('sessions', 'secret_hash', session.secretHash)) {
      // Never echo the hash: it identifies a live session.
      throw new Conflict('a session with this secret already exists');
    }
    this.write(
      `INSERT INTO sessions (${SESSION_COLUMNS}) VALUES (:id, :person_id, :secret_hash, :created_at, :expires_at, ` +
        'NULL, :idp_refresh_token_ciphertext, :idp_token_expires_at, NULL, NULL)',
      {
        id,
        person_id: session.personId,
        secret_hash: session.secretHash,
        created_at: session.createdAt,
        expires_at: session.expiresAt,
        idp_refresh_token_ciphertext: orNull(session.idpRefreshTokenCiphertext),
        idp_token_expires_at: orNull(session.idpTokenExpiresAt),
      },
    );
    return this.mustGetSession(id);
  }

  async updateSession(id: string, patch: SessionPatch): Promise<Session> {
    const params: Params = { id };
    const columns: [string, SQLInputValue | undefined][] = [
      ['expires_at', patch.expiresAt],
      ['last_used_at', patch.lastUsedAt],
      ['idp_token_expires_at', patch.idpTokenExpiresAt],
    ];
    const sets: string[] = [];
    for (const [column, value] of columns) {
      if (value === undefined) continue;
      sets.push(`${column} = :${column}`);
      params[column] = value;
    }
    if (sets.length > 0) this.write(`UPDATE sessions SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetSession(id);
  }

  async swapSessionGrant(
    id: string,
    expected: SessionGrant,
    next: { idpRefreshTokenCiphertext: string; idpTokenExpiresAt: Instant | null },
  ): Promise<boolean> {
    // One statement: the engine checks and writes the row at once, so of two callers only one sees its expectation hold.
    const written = this.write(
      'UPDATE sessions SET idp_refresh_token_ciphertext = :next_ciphertext, idp_token_expires_at = :next_expires_at ' +
        'WHERE id = :id AND revoked_at IS NULL AND idp_refresh_token_ciphertext = :ciphertext ' +
        'AND idp_token_expires_at = :expires_at',
      {
        id,
        ciphertext: expected.idpRefreshTokenCiphertext,
        expires_at: expected.idpTokenExpiresAt,
        next_ciphertext: next.idpRefreshTokenCiphertext,
        next_expires_at: next.idpTokenExpiresAt,
      },
    );
    return written === 1;
  }

  async revokeSession(id: string, now: Instant, reason: string): Promise<Session> {
    // Every right-hand side sees the row as it was before the update, so a second revocation keeps the first
    // time and reason. The refresh token goes in any case: a revoked session must not be renewable.
    this.write(
      'UPDATE sessions SET revoked_at = COALESCE(revoked_at, :now), ' +
        'revoke_reason = CASE WHEN revoked_at IS NULL THEN :reason ELSE revoke_reason END, ' +
        'idp_refresh_token_ciphertext = NULL, idp_token_expires_at = NULL WHERE id = :id',
      { id, now, reason },
    );
    return this.mustGetSession(id);
  }

  async revokeSessionsOfPerson(personId: string, now: Instant, reason: string): Promise<number> {
    return this.write(
      'UPDATE sessions SET revoked_at = :now, revoke_reason = :reason, idp_refresh_token_ciphertext = NULL, ' +
        'idp_token_expires_at = NULL WHERE person_id = :person_id AND revoked_at IS NULL',
      { person_id: personId, now, reason },
    );
  }

  private async mustGetSession(id: string): Promise<Session> {
    const session = await this.getSession(id);
    if (session === undefined) throw new NotFound(`session ${id} does not exist`, { details: { sessionId: id } });
    return session;
  }

  // ---- pending logins ----

  async getLogin(id: string): Promise<PendingLogin | undefined> {
    const row = this.one(`SELECT ${LOGIN_COLUMNS} FROM pending_logins WHERE id = :id`, { id });
    return row === undefined ? undefined : mapLogin(row);
  }

  async getLoginByLookupKey(lookupKey: string): Promise<PendingLogin | undefined> {
    const row = this.one(`SELECT ${LOGIN_COLUMNS} FROM pending_logins WHERE lookup_key = :lookup_key`, {
      lookup_key: lookupKey,
    });
    return row === undefined ? undefined : mapLogin(row);
  }

  async insertLogin(login: PendingLogin): Promise<PendingLogin> {
    if (this.exists('pending_logins', 'id', login.id))
      throw new Conflict('a pending login with this id already exists');
    if (login.lookupKey !== undefined && this.exists('pending_logins', 'lookup_key', login.lookupKey)) {
      throw new Conflict('a pending login with this lookup key already exists');
    }
    this.write(
      `INSERT INTO pending_logins (${LOGIN_COLUMNS}) VALUES ` +
        '(:id, :kind, :lookup_key, :payload_json, :created_at, :expires_at)',
      {
        id: login.id,
        kind: login.kind,
        lookup_key: orNull(login.lookupKey),
        payload_json: JSON.stringify(login.payload),
        created_at: login.createdAt,
        expires_at: login.expiresAt,
      },
    );
    return this.mustGetLogin(login.id);
  }

  async updateLogin(id: string, patch: PendingLoginPatch): Promise<PendingLogin> {
    const params: Params = { id };
    const sets: string[] = [];
    if (patch.payload !== undefined) {
      sets.push('payload_json = :payload_json');
      params.payload_json = JSON.stringify(patch.payload);
    }
    if (patch.expiresAt !== undefined) {
      sets.push('expires_at = :expires_at');
      params.expires_at = patch.expiresAt;
    }
    if (sets.length > 0) this.write(`UPDATE pending_logins SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetLogin(id);
  }

  async deleteLogin(id: string): Promise<boolean> {
    return this.write('DELETE FROM pending_logins WHERE id = :id', { id }) > 0;
  }

  async deleteExpiredLogins(now: Instant): Promise<number> {
    return this.write('DELETE FROM pending_logins WHERE expires_at <= :now', { now });
  }

  private async mustGetLogin(id: string): Promise<PendingLogin> {
    const login = await this.getLogin(id);
    // The id may be a secret (a device code's hash): keep it out of the message.
    if (login === undefined) throw new NotFound('pending login does not exist');
    return login;
  }

  // ---- audit ----

  async getAuditHead(): Promise<{ seq: number; hash: string } | undefined> {
    const row = this.one('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
    if (row === undefined) return undefined;
    return { seq: integer(row, 'audit_events', 'seq'), hash: text(row, 'audit_events', 'hash') };
  }

  async getAuditEvent(seq: number): Promise<AuditEvent | undefined> {
    const row = this.one(`SELECT ${AUDIT_COLUMNS} FROM audit_events WHERE seq = :seq`, { seq });
    return row === undefined ? undefined : mapAudit(row);
  }

  async listAudit(filter: AuditFilter = {}): Promise<AuditEvent[]> {
    const { sql, params } = auditQuery(filter);
    return this.many(sql, params).map(mapAudit);
  }

  async listAuditRecords(filter: AuditFilter = {}): Promise<AuditRecord[]> {
    const { sql, params } = auditQuery(filter);
    return this.many(sql, params).map(mapAuditRecord);
  }

  async listAuditCheckpoints(filter: AuditCheckpointFilter = {}): Promise<AuditCheckpoint[]> {
    const params: Params = { limit: pageLimit(filter.limit, 'audit checkpoint page') };
    let where = '';
    if (filter.throughSeq !== undefined) {
      where = 'WHERE seq <= :through_seq';
      params.through_seq = filter.throughSeq;
    }
    const order = filter.newestFirst === true ? 'DESC' : 'ASC';
    return this.many(
      `SELECT ${AUDIT_CHECKPOINT_COLUMNS} FROM audit_checkpoints ${where} ORDER BY id ${order} LIMIT :limit`,
      params,
    ).map(mapAuditCheckpoint);
  }

  async appendAuditCheckpoint(checkpoint: NewAuditCheckpoint): Promise<AuditCheckpoint> {
    const [latest] = await this.listAuditCheckpoints({ newestFirst: true, limit: 1 });
    if (latest !== undefined && checkpoint.seq < latest.seq) {
      throw new Conflict(
        `a checkpoint at seq ${checkpoint.seq} would go back from checkpoint ${latest.id} at seq ${latest.seq}`,
        { details: { seq: checkpoint.seq, latestSeq: latest.seq } },
      );
    }
    const named = checkpoint.seq === 0 ? GENESIS_HASH : (await this.getAuditEvent(checkpoint.seq))?.hash;
    if (named !== checkpoint.hash) {
      throw new Conflict(
        named === undefined
          ? `a checkpoint at seq ${checkpoint.seq} names an event the trail does not have`
          : `a checkpoint at seq ${checkpoint.seq} names a hash that is not the trail's at that seq`,
        { details: { seq: checkpoint.seq } },
      );
    }
    const id = (latest?.id ?? 0) + 1;
    this.write(
      `INSERT INTO audit_checkpoints (${AUDIT_CHECKPOINT_COLUMNS}) VALUES ` +
        '(:id, :created_at, :seq, :hash, :key_id, :signature)',
      {
        id,
        created_at: checkpoint.at,
        seq: checkpoint.seq,
        hash: checkpoint.hash,
        key_id: checkpoint.keyId,
        signature: checkpoint.signature,
      },
    );
    return {
      id,
      at: checkpoint.at,
      seq: checkpoint.seq,
      hash: checkpoint.hash,
      keyId: checkpoint.keyId,
      signature: checkpoint.signature,
    };
  }

  async appendAudit(event: NewAuditEvent): Promise<void> {
    // The head is read and extended on the one connection that holds SQLite's write lock (BEGIN IMMEDIATE), so
    // no other transaction can append in between: the chain stays linear.
    const head = this.auditHead?.known === true ? this.auditHead.head : await this.getAuditHead();
    // Details are stored as their canonical JSON and re-parsed, so the stored event is exactly what a later
    // read gives back (no `undefined` members, normalised numbers) and hashes the same.
    const detailsJson = canonicalJson(event.details ?? {});
    const parsedDetails: unknown = JSON.parse(detailsJson);
    const unhashed: UnhashedAuditEvent = {
      seq: (head?.seq ?? 0) + 1,
      at: event.at,
      actor: event.actor,
      action: event.action,
      ...definedOnly({
        sessionId: event.sessionId,
        visaId: event.visaId,
        engagementId: event.engagementId,
        personId: event.personId,
        cluster: event.cluster,
        namespace: event.namespace,
        reason: event.reason,
        source:
          event.source === undefined
            ? undefined
            : { address: event.source.address, ...definedOnly({ userAgent: event.source.userAgent }) },
      }),
      outcome: event.outcome,
      details: decodeJsonObject(parsedDetails, 'audit_events.details_json'),
      prevHash: head?.hash ?? GENESIS_HASH,
    };
    assertStorableAuditContent(unhashed);
    const contentHash = auditContentHash(auditContentTextWith(unhashed, detailsJson));
    const stored: AuditEvent = { ...unhashed, hash: linkAuditHash(unhashed.seq, unhashed.prevHash, contentHash) };
    this.assertLive();
    try {
      // Positional parameters: binding seventeen named ones costs more than the rest of the insert's JavaScript,
      // and this is the statement every action and gateway request runs.
      this.statements
        .get(`INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(
          stored.seq,
          stored.at,
          stored.actor,
          orNull(stored.sessionId),
          stored.action,
          orNull(stored.visaId),
          orNull(stored.engagementId),
          orNull(stored.personId),
          orNull(stored.cluster),
          orNull(stored.namespace),
          stored.outcome,
          orNull(stored.reason),
          detailsJson,
          orNull(stored.source?.address),
          orNull(stored.source?.userAgent),
          stored.prevHash,
          stored.hash,
        );
    } catch (error) {
      throw translateSqliteError(error);
    }
    this.auditHead?.remember({ seq: stored.seq, hash: stored.hash });
  }

  // ---- clusters ----

  async getCluster(name: string): Promise<ClusterRecord | undefined> {
    const row = this.one(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE name = :name`, { name });
    return row === undefined ? undefined : mapCluster(row);
  }

  async listClusters(): Promise<ClusterRecord[]> {
    return this.many(`SELECT ${CLUSTER_COLUMNS} FROM clusters ORDER BY name`).map(mapCluster);
  }

  async upsertCluster(cluster: ClusterInput): Promise<ClusterRecord> {
    this.write(
      `INSERT INTO clusters (${CLUSTER_COLUMNS}) VALUES (:name, :server, :ca_data, :credential_ref, :now, :now) ` +
        'ON CONFLICT (name) DO UPDATE SET server = excluded.server, ca_data = excluded.ca_data, ' +
        'credential_ref = excluded.credential_ref, updated_at = excluded.updated_at',
      {
        name: cluster.name,
        server: cluster.server,
        ca_data: orNull(cluster.caData),
        credential_ref: orNull(cluster.credentialRef),
        now: cluster.now,
      },
    );
    const stored = await this.getCluster(cluster.name);
    if (stored === undefined) throw new NotFound(`cluster ${cluster.name} does not exist`);
    return stored;
  }

  async deleteCluster(name: string): Promise<boolean> {
    return this.write('DELETE FROM clusters WHERE name = :name', { name }) > 0;
  }

  async holdRegisteredCluster(name: string): Promise<boolean> {
    // One writer at a time: nothing deletes it before this transaction ends.
    return this.one('SELECT 1 AS held FROM registered_clusters WHERE name = :name', { name }) !== undefined;
  }

  async getRegisteredCluster(name: string): Promise<RegisteredClusterRecord | undefined> {
    const row = this.one(`SELECT ${REGISTERED_CLUSTER_COLUMNS} FROM registered_clusters WHERE name = :name`, { name });
    return row === undefined ? undefined : mapRegisteredCluster(row);
  }

  async listRegisteredClusters(): Promise<RegisteredClusterRecord[]> {
    return this.many(`SELECT ${REGISTERED_CLUSTER_COLUMNS} FROM registered_clusters ORDER BY name`).map(
      mapRegisteredCluster,
    );
  }

  async insertRegisteredCluster(cluster: RegisteredClusterRecord): Promise<RegisteredClusterRecord> {
    try {
      this.write(
        `INSERT INTO registered_clusters (${REGISTERED_CLUSTER_COLUMNS}) VALUES (:name, :sealed_kubeconfig, ` +
          ':direct_mode, :registered_by, :registered_at, :credential_expires_at, :updated_at)',
        registeredClusterParams(cluster),
      );
    } catch (error) {
      throw translateSqliteError(error);
    }
    return cluster;
  }

  async updateRegisteredClusterCredential(
    name: string,
    credential: { sealedKubeconfig: string; credentialExpiresAt?: Instant; now: Instant },
  ): Promise<RegisteredClusterRecord> {
    const changed = this.write(
      'UPDATE registered_clusters SET sealed_kubeconfig = :sealed, credential_expires_at = :expires, ' +
        'updated_at = :now WHERE name = :name',
      {
        name,
        sealed: credential.sealedKubeconfig,
        expires: orNull(credential.credentialExpiresAt),
        now: credential.now,
      },
    );
    const stored = changed > 0 ? await this.getRegisteredCluster(name) : undefined;
    if (stored === undefined) throw new NotFound(`no registered cluster '${name}'`);
    return stored;
  }

  async deleteRegisteredCluster(name: string): Promise<boolean> {
    return this.write('DELETE FROM registered_clusters WHERE name = :name', { name }) > 0;
  }

  // ---- profiles ----

  async getProfile(name: string): Promise<Profile | undefined> {
    const row = this.one(`SELECT ${PROFILE_COLUMNS} FROM profiles WHERE name = :name`, { name });
    return row === undefined ? undefined : mapProfile(row);
  }

  async listProfiles(): Promise<Profile[]> {
    return this.many(`SELECT ${PROFILE_COLUMNS} FROM profiles ORDER BY name`).map(mapProfile);
  }

  async upsertProfile(profile: Profile): Promise<Profile> {
    this.write(
      `INSERT INTO profiles (${PROFILE_COLUMNS}) VALUES (:name, :description, :rules_json, :declared_risks_json, ` +
        ':max_visa_seconds, :record_sessions, :direct_mode) ON CONFLICT (name) DO UPDATE SET description = excluded.description, ' +
        'rules_json = excluded.rules_json, declared_risks_json = excluded.declared_risks_json, ' +
        'max_visa_seconds = excluded.max_visa_seconds, record_sessions = excluded.record_sessions, ' +
        'direct_mode = excluded.direct_mode',
      {
        name: profile.name,
        description: profile.description,
        rules_json: JSON.stringify(profile.rules),
        declared_risks_json: JSON.stringify(profile.declaredRisks),
        max_visa_seconds: profile.maxVisaSeconds,
        record_sessions: profile.recordSessions ? 1 : 0,
        direct_mode: profile.directMode ?? null,
      },
    );
    const stored = await this.getProfile(profile.name);
    if (stored === undefined) throw new NotFound(`profile ${profile.name} does not exist`);
    return stored;
  }

  async deleteProfile(name: string): Promise<boolean> {
    return this.write('DELETE FROM profiles WHERE name = :name', { name }) > 0;
  }

  // ---- settings ----

  async getSetting(key: string): Promise<JsonValue | undefined> {
    const row = this.one('SELECT value_json FROM settings WHERE key = :key', { key });
    return row === undefined ? undefined : json(row, 'settings', 'value_json', decodeJsonValue);
  }

  async putSetting(key: string, value: JsonValue, now: Instant): Promise<void> {
    this.write(
      'INSERT INTO settings (key, value_json, updated_at) VALUES (:key, :value_json, :now) ' +
        'ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at',
      { key, value_json: JSON.stringify(value), now },
    );
  }

  // ---- identity lifecycle: SCIM users and groups, SCIM tokens, offboarding receipts ----

  async getScimUser(id: string): Promise<ScimUserRecord | undefined> {
    const row = this.one(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimUser(row);
  }

  async getScimUserByUserName(userName: string): Promise<ScimUserRecord | undefined> {
    const row = this.one(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE user_name_key = :key`, {
      key: userName.toLowerCase(),
    });
    return row === undefined ? undefined : mapScimUser(row);
  }

  async listScimUsersByEmail(email: string): Promise<ScimUserRecord[]> {
    return this.many(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE email = :email ORDER BY created_at, rowid`, {
      email: email.toLowerCase(),
    }).map(mapScimUser);
  }

  async listScimUsers(): Promise<ScimUserRecord[]> {
    return this.many(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users ORDER BY created_at, rowid`).map(mapScimUser);
  }

  private scimUserParams(user: NewScimUser): Params {
    return {
      id: user.id,
      user_name: user.userName,
      user_name_key: user.userName.toLowerCase(),
      external_id: orNull(user.externalId),
      email: orNull(user.email?.toLowerCase()),
      display_name: orNull(user.displayName),
      active: user.active ? 1 : 0,
      resource_json: JSON.stringify(user.resource),
      provisioned_by: user.provisionedBy,
      created_at: user.createdAt,
      updated_at: user.updatedAt,
    };
  }

  private assertUserNameFree(userName: string, exceptId: string): void {
    const holder = this.one('SELECT id FROM scim_users WHERE user_name_key = :key', { key: userName.toLowerCase() });
    if (holder !== undefined && text(holder, 'scim_users', 'id') !== exceptId) {
      throw new Conflict(`a SCIM user with userName '${userName}' already exists`, { details: { userName } });
    }
  }

  async insertScimUser(user: NewScimUser): Promise<ScimUserRecord> {
    if (this.exists('scim_users', 'id', user.id)) {
      throw new Conflict(`SCIM user ${user.id} already exists`, { details: { id: user.id } });
    }
    this.assertUserNameFree(user.userName, user.id);
    const params = { ...this.scimUserParams(user), version: 1 };
    const columns = Object.keys(params);
    this.write(
      `INSERT INTO scim_users (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    return this.mustGetScimUser(user.id);
  }

  async updateScimUser(user: NewScimUser, expectedVersion?: number): Promise<ScimUserRecord> {
    const current = this.one('SELECT version FROM scim_users WHERE id = :id', { id: user.id });
    if (current === undefined) throw new NotFound(`SCIM user ${user.id} does not exist`, { details: { id: user.id } });
    const currentVersion = integer(current, 'scim_users', 'version');
    if (expectedVersion !== undefined && expectedVersion !== currentVersion) {
      throw new Conflict(
        `SCIM user ${user.id} was changed by someone else (version ${currentVersion}, expected ${expectedVersion}); ` +
          'read it again and retry',
        { details: { id: user.id, expectedVersion, currentVersion } },
      );
    }
    this.assertUserNameFree(user.userName, user.id);
    const { created_at: _createdAt, ...params } = this.scimUserParams(user);
    this.write(
      `UPDATE scim_users SET ${assignments(params, ['id'])}, version = version + 1 WHERE id = :id AND version = :version`,
      { ...params, version: currentVersion },
    );
    return this.mustGetScimUser(user.id);
  }

  async deleteScimUser(id: string, now: Instant): Promise<boolean> {
    // Membership lives in two places (the ordered list and the index); both lose the user, and each group
    // changes version so an IdP holding its old ETag sees the change.
    for (const group of await this.listScimGroupsOfUser(id)) {
      this.write(
        'UPDATE scim_groups SET members_json = :members_json, version = version + 1, updated_at = :now WHERE id = :id',
        { id: group.id, members_json: JSON.stringify(group.members.filter((member) => member !== id)), now },
      );
    }
    return this.write('DELETE FROM scim_users WHERE id = :id', { id }) > 0;
  }

  private async mustGetScimUser(id: string): Promise<ScimUserRecord> {
    const user = await this.getScimUser(id);
    if (user === undefined) throw new NotFound(`SCIM user ${id} does not exist`, { details: { id } });
    return user;
  }

  async getScimGroup(id: string): Promise<ScimGroupRecord | undefined> {
    const row = this.one(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimGroup(row);
  }

  async getScimGroupByDisplayName(displayName: string): Promise<ScimGroupRecord | undefined> {
    const row = this.one(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE display_name_key = :key`, {
      key: displayName.toLowerCase(),
    });
    return row === undefined ? undefined : mapScimGroup(row);
  }

  async listScimGroups(): Promise<ScimGroupRecord[]> {
    return this.many(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups ORDER BY created_at, rowid`).map(mapScimGroup);
  }

  async listScimGroupsOfUser(userId: string): Promise<ScimGroupRecord[]> {
    return this.many(
      `SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE id IN ` +
        '(SELECT group_id FROM scim_group_members WHERE user_id = :user_id) ORDER BY created_at, rowid',
      { user_id: userId },
    ).map(mapScimGroup);
  }

  private scimGroupParams(group: NewScimGroup, members: string[]): Params {
    return {
      id: group.id,
      display_name: group.displayName,
      display_name_key: group.displayName.toLowerCase(),
      external_id: orNull(group.externalId),
      members_json: JSON.stringify(members),
      resource_json: JSON.stringify(group.resource),
      provisioned_by: group.provisionedBy,
      created_at: group.createdAt,
      updated_at: group.updatedAt,
    };
  }

  /** Checks the name and members, and returns the members without duplicates (first occurrence kept). */
  private checkScimGroup(group: NewScimGroup): string[] {
    const holder = this.one('SELECT id FROM scim_groups WHERE display_name_key = :key', {
      key: group.displayName.toLowerCase(),
    });
    if (holder !== undefined && text(holder, 'scim_groups', 'id') !== group.id) {
      throw new Conflict(`a SCIM group named '${group.displayName}' already exists`, {
        details: { displayName: group.displayName },
      });
    }
    const members = [...new Set(group.members)];
    for (const member of members) {
      if (!this.exists('scim_users', 'id', member)) {
        throw new NotFound(`SCIM user ${member} does not exist, so it cannot be a member of '${group.displayName}'`, {
          details: { member },
        });
      }
    }
    return members;
  }

  private indexScimGroupMembers(groupId: string, members: string[]): void {
    this.write('DELETE FROM scim_group_members WHERE group_id = :id', { id: groupId });
    for (const member of members) {
      this.write('INSERT INTO scim_group_members (group_id, user_id) VALUES (:group_id, :user_id)', {
        group_id: groupId,
        user_id: member,
      });
    }
  }

  async insertScimGroup(group: NewScimGroup): Promise<ScimGroupRecord> {
    if (this.exists('scim_groups', 'id', group.id)) {
      throw new Conflict(`SCIM group ${group.id} already exists`, { details: { id: group.id } });
    }
    const members = this.checkScimGroup(group);
    const params = { ...this.scimGroupParams(group, members), version: 1 };
    const columns = Object.keys(params);
    this.write(
      `INSERT INTO scim_groups (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    this.indexScimGroupMembers(group.id, members);
    return this.mustGetScimGroup(group.id);
  }

  async updateScimGroup(group: NewScimGroup, expectedVersion?: number): Promise<ScimGroupRecord> {
    const current = this.one('SELECT version FROM scim_groups WHERE id = :id', { id: group.id });
    if (current === undefined) {
      throw new NotFound(`SCIM group ${group.id} does not exist`, { details: { id: group.id } });
    }
    const currentVersion = integer(current, 'scim_groups', 'version');
    if (expectedVersion !== undefined && expectedVersion !== currentVersion) {
      throw new Conflict(
        `SCIM group ${group.id} was changed by someone else (version ${currentVersion}, expected ${expectedVersion}); ` +
          'read it again and retry',
        { details: { id: group.id, expectedVersion, currentVersion } },
      );
    }
    const members = this.checkScimGroup(group);
    const { created_at: _createdAt, ...params } = this.scimGroupParams(group, members);
    this.write(
      `UPDATE scim_groups SET ${assignments(params, ['id'])}, version = version + 1 WHERE id = :id AND version = :version`,
      { ...params, version: currentVersion },
    );
    this.indexScimGroupMembers(group.id, members);
    return this.mustGetScimGroup(group.id);
  }

  async deleteScimGroup(id: string): Promise<boolean> {
    return this.write('DELETE FROM scim_groups WHERE id = :id', { id }) > 0;
  }

  private async mustGetScimGroup(id: string): Promise<ScimGroupRecord> {
    const group = await this.getScimGroup(id);
    if (group === undefined) throw new NotFound(`SCIM group ${id} does not exist`, { details: { id } });
    return group;
  }

  async listScimLinks(filter: { email?: string; idp?: string } = {}): Promise<ScimLinkRecord[]> {
    const where: string[] = [];
    const params: Params = {};
    if (filter.email !== undefined) {
      where.push('email = :email');
      params.email = filter.email.toLowerCase();
    }
    if (filter.idp !== undefined) {
      where.push('idp = :idp');
      params.idp = filter.idp;
    }
    return this.many(
      `SELECT ${SCIM_LINK_COLUMNS} FROM scim_links ${where.length > 0 ? `WHERE ${where.join(' AND ')} ` : ''}` +
        'ORDER BY created_at, rowid',
      params,
    ).map(mapScimLink);
  }

  async insertScimLink(link: ScimLinkRecord): Promise<ScimLinkRecord> {
    const email = link.email.toLowerCase();
    if (this.one('SELECT 1 FROM scim_links WHERE email = :email AND idp = :idp', { email, idp: link.idp })) {
      throw new Conflict(`${email} is already linked to identity provider ${link.idp}`, {
        details: { email, idp: link.idp },
      });
    }
    this.write(
      `INSERT INTO scim_links (${SCIM_LINK_COLUMNS}) VALUES (:email, :idp, :how, :linked_by, :reason, :created_at)`,
      {
        email,
        idp: link.idp,
        how: link.how,
        linked_by: link.by,
        reason: orNull(link.reason),
        created_at: link.createdAt,
      },
    );
    return { ...link, email };
  }

  async deleteScimLink(email: string, idp: string): Promise<boolean> {
    return (
      this.write('DELETE FROM scim_links WHERE email = :email AND idp = :idp', { email: email.toLowerCase(), idp }) > 0
    );
  }

  async getScimToken(id: string): Promise<ScimTokenRecord | undefined> {
    const row = this.one(`SELECT ${SCIM_TOKEN_COLUMNS} FROM scim_tokens WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimToken(row);
  }

  async listScimTokens(): Promise<ScimTokenRecord[]> {
    return this.many(`SELECT ${SCIM_TOKEN_COLUMNS} FROM scim_tokens ORDER BY created_at, rowid`).map(mapScimToken);
  }

  async insertScimToken(token: ScimTokenRecord): Promise<ScimTokenRecord> {
    if (this.exists('scim_tokens', 'id', token.id)) {
      throw new Conflict(`SCIM token ${token.id} already exists`, { details: { id: token.id } });
    }
    // Never echo the hash: it identifies a live credential.
    if (this.exists('scim_tokens', 'secret_hash', token.secretHash)) throw new Conflict('this SCIM token exists');
    this.write(
      `INSERT INTO scim_tokens (${SCIM_TOKEN_COLUMNS}) VALUES (:id, :idp, :secret_hash, :created_at, :created_by, ` +
        ':expires_at, :last_used_at, :revoked_at, :revoked_by)',
      {
        id: token.id,
        idp: token.idp,
        secret_hash: token.secretHash,
        created_at: token.createdAt,
        created_by: token.createdBy,
        expires_at: orNull(token.expiresAt),
        last_used_at: orNull(token.lastUsedAt),
        revoked_at: orNull(token.revokedAt),
        revoked_by: orNull(token.revokedBy),
      },
    );
    return this.mustGetScimToken(token.id);
  }

  async updateScimToken(id: string, patch: ScimTokenPatch): Promise<ScimTokenRecord> {
    const params: Params = { id };
    const sets: string[] = [];
    if (patch.expiresAt !== undefined) {
      sets.push('expires_at = :expires_at');
      params.expires_at = patch.expiresAt;
    }
    if (patch.lastUsedAt !== undefined) {
      sets.push('last_used_at = :last_used_at');
      params.last_used_at = patch.lastUsedAt;
    }
    // A second revocation keeps the first time and admin (every right-hand side sees the row before the update).
    if (patch.revokedAt !== undefined) {
      sets.push('revoked_at = COALESCE(revoked_at, :revoked_at)');
      params.revoked_at = patch.revokedAt;
      if (patch.revokedBy !== undefined) {
        sets.push('revoked_by = CASE WHEN revoked_at IS NULL THEN :revoked_by ELSE revoked_by END');
        params.revoked_by = patch.revokedBy;
      }
    }
    if (sets.length > 0) this.write(`UPDATE scim_tokens SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetScimToken(id);
  }

  private async mustGetScimToken(id: string): Promise<ScimTokenRecord> {
    const token = await this.getScimToken(id);
    if (token === undefined) throw new NotFound(`SCIM token ${id} does not exist`, { details: { id } });
    return token;
  }

  async getOffboarding(id: string): Promise<OffboardingRecord | undefined> {
    const row = this.one(`SELECT ${OFFBOARDING_COLUMNS} FROM offboardings WHERE id = :id`, { id });
    return row === undefined ? undefined : mapOffboarding(row);
  }

  async listOffboardings(filter: OffboardingFilter = {}): Promise<OffboardingRecord[]> {
    const clauses: string[] = [];
    const params: Params = {};
    if (filter.personId !== undefined) {
      clauses.push('person_id = :person_id');
      params.person_id = filter.personId;
    }
    if (filter.statuses !== undefined) {
      if (filter.statuses.length === 0) return [];
      clauses.push(`status IN (${inList('s', filter.statuses, params)})`);
    }
    const where = clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`;
    return this.many(`SELECT ${OFFBOARDING_COLUMNS} FROM offboardings ${where} ORDER BY created_at, rowid`, params).map(
      mapOffboarding,
    );
  }

  async insertOffboarding(record: OffboardingRecord): Promise<OffboardingRecord> {
    if (this.exists('offboardings', 'id', record.id)) {
      throw new Conflict(`offboarding ${record.id} already exists`, { details: { id: record.id } });
    }
    this.write(
      `INSERT INTO offboardings (${OFFBOARDING_COLUMNS}) VALUES (:id, :person_id, :status, :trigger, :receipt_json, ` +
        ':created_at, :updated_at)',
      {
        id: record.id,
        person_id: record.personId,
        status: record.status,
        trigger: record.trigger,
        receipt_json: JSON.stringify(record.receipt),
        created_at: record.createdAt,
        updated_at: record.updatedAt,
      },
    );
    return this.mustGetOffboarding(record.id);
  }

  async updateOffboarding(
    id: string,
    change: { status: OffboardingStatus; receipt: JsonObject; updatedAt: Instant },
  ): Promise<OffboardingRecord> {
    const changed = this.write(
      'UPDATE offboardings SET status = :status, receipt_json = :receipt_json, updated_at = :updated_at WHERE id = :id',
      { id, status: change.status, receipt_json: JSON.stringify(change.receipt), updated_at: change.updatedAt },
    );
    if (changed === 0) throw new NotFound(`offboarding ${id} does not exist`, { details: { id } });
    return this.mustGetOffboarding(id);
  }

  private async mustGetOffboarding(id: string): Promise<OffboardingRecord> {
    const record = await this.getOffboarding(id);
    if (record === undefined) throw new NotFound(`offboarding ${id} does not exist`, { details: { id } });
    return record;
  }

  async updateVisas(updates: readonly VisaUpdate[]): Promise<StoredVisa[]> {
    if (new Set(updates.map(({ visa }) => visa.id)).size !== updates.length) {
      throw new Error('updateVisas: every visa may appear once');
    }
    // SQLite runs in this process: a statement costs no round trip, so one update after another is as fast.
    const stored: StoredVisa[] = [];
    for (const { visa, expectedVersion } of updates) stored.push(await this.updateVisa(visa, expectedVersion));
    return stored;
  }
}
