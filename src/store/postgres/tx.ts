/**
 * Every read and write of the PostgreSQL engine, over one connection (a transaction's client) or the pool (direct
 * reads). The statements are those of the SQLite engine (sqlite-tx.ts) in PostgreSQL's dialect; the differences
 * are how the audit chain is locked (audit-append.ts), `ord` for insertion order, and that a concurrent writer
 * can commit between two statements of a transaction, which the version guards and unique keys cover.
 */
import { Conflict, InvalidInput, NotFound } from '../../domain/errors.ts';
import type {
  Engagement,
  Instant,
  Person,
  PersonRole,
  PersonStatus,
  Profile,
  Visa,
  VisaState,
} from '../../domain/model.ts';
import { GENESIS_HASH } from '../audit-chain.ts';
import { newId } from '../ids.ts';
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
} from '../mappers.ts';
import { decodeJsonValue, definedOnly, integer, json, text, type Row } from '../rows.ts';
import { AUDIT_CHECKPOINT_COLUMNS, mapAuditCheckpoint, mapAuditRecord } from '../audit-rows.ts';
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
} from '../identity-records.ts';
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
} from '../store.ts';

import {
  BOUND_WAITS_WHILE_HOLDING_CHAIN,
  chainInDatabase,
  prepareEvent,
  type GroupAudit,
  type PendingEvent,
} from './audit-append.ts';
import { bind, translatePgError, type Params, type PgRow, type Queryable, type SqlValue } from './sql.ts';

/** Default and ceiling of `listAudit`'s page size (as the SQLite engine). */
export const AUDIT_PAGE_DEFAULT = 1000;
export const AUDIT_PAGE_MAX = 10000;

/** States in which a visa can still grant access (its bindings exist or are about to). */
const LIVE_STATES: readonly VisaState[] = ['approved', 'active'];

function orNull<T extends SqlValue>(value: T | undefined): T | null {
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
    clauses.push(either.length === 0 ? 'FALSE' : `(${either.join(' OR ')})`);
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

/** Column types of `visas` other than text: INSERT … SELECT does not infer a parameter's type from its column. */
const VISA_COLUMN_TYPES: Record<string, string> = {
  requested_at: 'bigint',
  requested_seconds: 'bigint',
  not_before: 'bigint',
  not_after: 'bigint',
  required_approvals: 'integer',
  decided_at: 'bigint',
  ended_at: 'bigint',
  version: 'integer',
};

/**
 * The visa's engagement and person exist (as its foreign keys demand): checked in the writing statement, so a
 * missing one writes nothing without a failed statement (which would abort the transaction).
 */
const VISA_REFERENCES_EXIST =
  'EXISTS (SELECT 1 FROM engagements WHERE id = :engagement_id) AND EXISTS (SELECT 1 FROM persons WHERE id = :person_id)';

/** `a = :a, b = :b` for every key of `params` but the listed ones. */
function assignments(params: Params, except: readonly string[]): string {
  return Object.keys(params)
    .filter((key) => !except.includes(key))
    .map((key) => `${key} = :${key}`)
    .join(', ');
}

export class PgTx implements StoreTx {
  private readonly db: Queryable;
  private readonly audit: GroupAudit | undefined;
  private live = true;
  /** The first statement of this transaction that PostgreSQL refused (which aborts the transaction). */
  private refused: unknown;
  /** Audit events appended (checked and hashed, not yet chained) and not yet inserted: see appendAudit. */
  private pendingAudit: PendingEvent[] = [];

  /**
   * `db` runs the statements: one client inside a transaction, the pool for direct reads. `audit` (given to
   * transactions only) holds the audit events of the database transaction this one runs in.
   */
  constructor(db: Queryable, audit?: GroupAudit) {
    this.db = db;
    this.audit = audit;
  }

  /** Whether the transaction (or read) this object belongs to is still running. */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * The error of a statement PostgreSQL refused, if any: the database transaction is then aborted, even when the
   * callback caught the error and went on, so nothing of it may be committed.
   */
  get failedStatement(): unknown {
    return this.refused;
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

  /** Runs one statement; a refusal is remembered (see failedStatement) and thrown as the store's error. */
  private async query(config: Parameters<Queryable['query']>[0]): ReturnType<Queryable['query']> {
    try {
      return await this.db.query(config);
    } catch (error) {
      this.refused ??= error;
      throw translatePgError(error);
    }
  }

  private async run(sql: string, params: Params): Promise<{ rows: PgRow[]; rowCount: number }> {
    this.assertLive();
    const result = await this.query(bind(sql, params));
    return { rows: result.rows, rowCount: result.rowCount ?? 0 };
  }

  private async one(sql: string, params: Params = {}): Promise<Row | undefined> {
    return (await this.run(sql, params)).rows[0];
  }

  private async many(sql: string, params: Params = {}): Promise<Row[]> {
    return (await this.run(sql, params)).rows;
  }

  private async manyMap<T>(sql: string, params: Params | ((row: Row) => T), map?: (row: Row) => T): Promise<T[]> {
    if (typeof params === 'function') return (await this.many(sql)).map(params);
    if (map === undefined) throw new Error('manyMap needs a mapper');
    return (await this.many(sql, params)).map(map);
  }

  /** Runs a write and returns how many rows it changed. */
  private async write(sql: string, params: Params): Promise<number> {
    return (await this.run(sql, params)).rowCount;
  }

  private async exists(table: string, column: string, value: string): Promise<boolean> {
    return (await this.one(`SELECT 1 AS found FROM ${table} WHERE ${column} = :value`, { value })) !== undefined;
  }

  // ---- persons ----

  async getPerson(id: string): Promise<Person | undefined> {
    const row = await this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE id = :id`, { id });
    return row === undefined ? undefined : mapPerson(row);
  }

  async getPersonByEmail(email: string): Promise<Person | undefined> {
    const row = await this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE email = :email`, {
      email: email.toLowerCase(),
    });
    return row === undefined ? undefined : mapPerson(row);
  }

  async getPersonBySubject(issuer: string, subject: string): Promise<Person | undefined> {
    const row = await this.one(`SELECT ${PERSON_COLUMNS} FROM persons WHERE issuer = :issuer AND subject = :subject`, {
      issuer,
      subject,
    });
    return row === undefined ? undefined : mapPerson(row);
  }

  async listPersons(): Promise<Person[]> {
    return await this.manyMap(`SELECT ${PERSON_COLUMNS} FROM persons ORDER BY email, id`, mapPerson);
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
      await this.write(
        'UPDATE persons SET email = :email, display_name = :display_name, groups_json = :groups_json, ' +
          'updated_at = :now WHERE id = :id',
        params,
      );
    } else {
      await this.write(
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
    await this.write('UPDATE persons SET status = :status, updated_at = :now WHERE id = :id', { id, status, now });
    return this.mustGetPerson(id);
  }

  async setPersonRoles(id: string, roles: PersonRole[], now: Instant): Promise<Person> {
    await this.write('UPDATE persons SET roles_json = :roles_json, updated_at = :now WHERE id = :id', {
      id,
      roles_json: JSON.stringify(roles),
      now,
    });
    return this.mustGetPerson(id);
  }

  // ---- engagements ----

  async getEngagement(id: string): Promise<Engagement | undefined> {
    const row = await this.one(`SELECT ${ENGAGEMENT_COLUMNS} FROM engagements WHERE id = :id`, { id });
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
    return await this.manyMap(
      `SELECT ${ENGAGEMENT_COLUMNS} FROM engagements ${where} ORDER BY starts_at, ord`,
      params,
      mapEngagement,
    );
  }

  private async indexContractors(engagement: Engagement): Promise<void> {
    await this.write('DELETE FROM engagement_contractors WHERE engagement_id = :id', { id: engagement.id });
    // A contractor listed twice is indexed once (the list itself is kept as given in contractors_json).
    for (const email of new Set(engagement.contractors.map((contractor) => contractor.toLowerCase()))) {
      await this.write('INSERT INTO engagement_contractors (engagement_id, email) VALUES (:id, :email)', {
        id: engagement.id,
        email,
      });
    }
  }

  async insertEngagement(engagement: Engagement): Promise<Engagement> {
    if (await this.exists('engagements', 'id', engagement.id)) {
      throw new Conflict(`engagement ${engagement.id} already exists`, { details: { engagementId: engagement.id } });
    }
    const params = engagementParams(engagement);
    const columns = Object.keys(params);
    await this.write(
      `INSERT INTO engagements (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    await this.indexContractors(engagement);
    return this.mustGetEngagement(engagement.id);
  }

  async updateEngagement(engagement: Engagement): Promise<Engagement> {
    const params = engagementParams(engagement);
    const changed = await this.write(`UPDATE engagements SET ${assignments(params, ['id'])} WHERE id = :id`, params);
    if (changed === 0) {
      throw new NotFound(`engagement ${engagement.id} does not exist`, { details: { engagementId: engagement.id } });
    }
    await this.indexContractors(engagement);
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
    const row = await this.one(`SELECT ${VISA_COLUMNS} FROM visas WHERE id = :id`, { id });
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
    return await this.manyMap(`SELECT ${VISA_COLUMNS} FROM visas ${where} ORDER BY requested_at, ord`, params, mapVisa);
  }

  async listVisasGrantingAt(now: Instant): Promise<StoredVisa[]> {
    const params: Params = { now };
    const states = inList('s', LIVE_STATES, params);
    return await this.manyMap(
      `SELECT ${VISA_COLUMNS} FROM visas WHERE state IN (${states}) AND not_before <= :now AND not_after > :now ` +
        'ORDER BY not_after, id',
      params,
      mapVisa,
    );
  }

  async listVisasInStates(states: readonly VisaState[]): Promise<StoredVisa[]> {
    if (states.length === 0) return [];
    const params: Params = {};
    return await this.manyMap(
      `SELECT ${VISA_COLUMNS} FROM visas WHERE state IN (${inList('s', states, params)}) ORDER BY not_after, id`,
      params,
      mapVisa,
    );
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
    return await this.manyMap(
      `SELECT ${VISA_COLUMNS} FROM visas WHERE state IN (${inList('s', states, params)}) AND not_after <= :t ` +
        `${cluster}ORDER BY not_after, id`,
      params,
      mapVisa,
    );
  }

  async nextVisaDeadlineAfter(t: Instant): Promise<Instant | undefined> {
    // One index seek per state and deadline (visas_state_not_before, visas_state_not_after), not a scan of every
    // live visa.
    const seeks = LIVE_STATES.flatMap((_, i) =>
      ['not_before', 'not_after'].map(
        (column) =>
          `(SELECT ${column} AS at FROM visas WHERE state = :s${i} AND ${column} > :t ORDER BY ${column} LIMIT 1)`,
      ),
    );
    const params: Params = { t };
    LIVE_STATES.forEach((state, i) => (params[`s${i}`] = state));
    const row = await this.one(`SELECT MIN(at) AS at FROM (${seeks.join(' UNION ALL ')}) AS deadlines`, params);
    return row === undefined || row.at === null ? undefined : integer(row, 'visas', 'at');
  }

  /**
   * One statement when it succeeds (inside a commit group every round trip is spent holding the chain's lock): the
   * references are checked by the statement itself, and only a refusal runs the queries that say why.
   */
  async insertVisa(visa: Visa): Promise<StoredVisa> {
    const params = { ...visaParams(visa), version: 1 };
    const columns = Object.keys(params);
    const row = await this.one(
      `INSERT INTO visas (${columns.join(', ')}) ` +
        `SELECT ${columns.map((c) => `:${c}::${VISA_COLUMN_TYPES[c] ?? 'text'}`).join(', ')} ` +
        `WHERE ${VISA_REFERENCES_EXIST} ON CONFLICT (id) DO NOTHING RETURNING ${VISA_COLUMNS}`,
      params,
    );
    if (row !== undefined) return mapVisa(row);
    if (await this.exists('visas', 'id', visa.id)) {
      throw new Conflict(`visa ${visa.id} already exists`, { details: { visaId: visa.id } });
    }
    await this.assertVisaReferences(visa);
    throw new Conflict(`visa ${visa.id} could not be inserted; try again`, { details: { visaId: visa.id } });
  }

  async updateVisa(visa: Visa, expectedVersion?: number): Promise<StoredVisa> {
    const params: Params = visaParams(visa);
    const guard = expectedVersion === undefined ? '' : ' AND version = :expected_version';
    if (expectedVersion !== undefined) params.expected_version = expectedVersion;
    const row = await this.one(
      `UPDATE visas SET ${assignments(visaParams(visa), ['id'])}, version = version + 1 ` +
        `WHERE id = :id${guard} AND ${VISA_REFERENCES_EXIST} RETURNING ${VISA_COLUMNS}`,
      params,
    );
    if (row !== undefined) return mapVisa(row);
    const current = await this.one('SELECT version FROM visas WHERE id = :id', { id: visa.id });
    if (current === undefined) throw new NotFound(`visa ${visa.id} does not exist`, { details: { visaId: visa.id } });
    const currentVersion = integer(current, 'visas', 'version');
    if (expectedVersion !== undefined && expectedVersion !== currentVersion) {
      throw new Conflict(
        `visa ${visa.id} was changed by someone else (version ${currentVersion}, expected ${expectedVersion}); ` +
          'reload it and decide again',
        { details: { visaId: visa.id, expectedVersion, currentVersion } },
      );
    }
    await this.assertVisaReferences(visa);
    throw new Conflict(`visa ${visa.id} was changed by someone else; reload it and decide again`, {
      details: { visaId: visa.id },
    });
  }

  private async assertVisaReferences(visa: Visa): Promise<void> {
    if (!(await this.exists('engagements', 'id', visa.engagementId))) {
      throw new NotFound(`engagement ${visa.engagementId} does not exist`, {
        details: { engagementId: visa.engagementId },
      });
    }
    if (!(await this.exists('persons', 'id', visa.personId))) {
      throw new NotFound(`person ${visa.personId} does not exist`, { details: { personId: visa.personId } });
    }
  }

  // ---- intents ----

  async getIntent(id: string): Promise<Intent | undefined> {
    const row = await this.one(`SELECT ${INTENT_COLUMNS} FROM intents WHERE id = :id`, { id });
    return row === undefined ? undefined : mapIntent(row);
  }

  async listPendingIntents(filter: IntentFilter = {}): Promise<Intent[]> {
    const params: Params = {};
    let where = 'completed_at IS NULL';
    if (filter.cluster !== undefined) {
      where += ' AND cluster = :cluster';
      params.cluster = filter.cluster;
    }
    return await this.manyMap(
      `SELECT ${INTENT_COLUMNS} FROM intents WHERE ${where} ORDER BY created_at, ord`,
      params,
      mapIntent,
    );
  }

  async insertIntent(intent: NewIntent): Promise<Intent> {
    const id = intent.id ?? newId('i_');
    if (await this.exists('intents', 'id', id))
      throw new Conflict(`intent ${id} already exists`, { details: { intentId: id } });
    await this.write(
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
    await this.write('UPDATE intents SET completed_at = COALESCE(completed_at, :now) WHERE id = :id', { id, now });
    return this.mustGetIntent(id);
  }

  async insertIntents(intents: readonly NewIntent[]): Promise<Intent[]> {
    if (intents.length === 0) return [];
    const planned: Intent[] = intents.map((intent) => ({
      id: intent.id ?? newId('i_'),
      kind: intent.kind,
      cluster: intent.cluster,
      ...definedOnly({ visaId: intent.visaId, personId: intent.personId }),
      payload: intent.payload,
      createdAt: intent.createdAt,
    }));
    const rows = planned.map((intent) => ({
      id: intent.id,
      kind: intent.kind,
      cluster: intent.cluster,
      visa_id: intent.visaId ?? null,
      person_id: intent.personId ?? null,
      payload_json: JSON.stringify(intent.payload),
      created_at: intent.createdAt,
    }));
    try {
      // One statement, the rows as one JSON parameter, inserted in the order given (`ord` keeps it for the pending
      // list); the primary key refuses an id that exists or comes twice.
      const inserted = await this.many(INSERT_INTENTS_SQL, { rows: JSON.stringify(rows) });
      const byId = new Map(inserted.map((row) => [text(row, 'intents', 'id'), mapIntent(row)]));
      return planned.map((intent) => byId.get(intent.id)!);
    } catch (error) {
      if (!(error instanceof Conflict)) throw error;
      throw new Conflict(
        `one of ${intents.length} intents has an id that exists already or is given twice (${error.message})`,
      );
    }
  }

  async completeIntents(ids: readonly string[], now: Instant): Promise<void> {
    if (ids.length === 0) return;
    const unique = [...new Set(ids)];
    const completed = await this.many(
      'UPDATE intents SET completed_at = COALESCE(completed_at, :now) ' +
        'WHERE id IN (SELECT jsonb_array_elements_text(:ids::jsonb)) RETURNING id',
      { ids: JSON.stringify(unique), now },
    );
    if (completed.length !== unique.length) {
      const found = new Set(completed.map((row) => text(row, 'intents', 'id')));
      const missing = unique.find((id) => !found.has(id))!;
      throw new NotFound(`intent ${missing} does not exist`, { details: { intentId: missing } });
    }
  }

  private async mustGetIntent(id: string): Promise<Intent> {
    const intent = await this.getIntent(id);
    if (intent === undefined) throw new NotFound(`intent ${id} does not exist`, { details: { intentId: id } });
    return intent;
  }

  // ---- sessions ----

  async getSession(id: string): Promise<Session | undefined> {
    const row = await this.one(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE id = :id`, { id });
    return row === undefined ? undefined : mapSession(row);
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | undefined> {
    const row = await this.one(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE secret_hash = :secret_hash`, {
      secret_hash: secretHash,
    });
    return row === undefined ? undefined : mapSession(row);
  }

  async listSessionsOfPerson(personId: string): Promise<Session[]> {
    return await this.manyMap(
      `SELECT ${SESSION_COLUMNS} FROM sessions WHERE person_id = :person_id ORDER BY created_at, ord`,
      {
        person_id: personId,
      },
      mapSession,
    );
  }

  async insertSession(session: NewSession): Promise<Session> {
    const id = session.id ?? newId('s_');
    if (!(await this.exists('persons', 'id', session.personId))) {
      throw new NotFound(`person ${session.personId} does not exist`, { details: { personId: session.personId } });
    }
    if (await this.exists('sessions', 'id', id))
      throw new Conflict(`session ${id} already exists`, { details: { sessionId: id } });
    if (await this.exists('sessions', 'secret_hash', session.secretHash)) {
      // Never echo the hash: it identifies a live session.
      throw new Conflict('a session with this secret already exists');
    }
    await this.write(
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
    const columns: [string, SqlValue | undefined][] = [
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
    if (sets.length > 0) await this.write(`UPDATE sessions SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetSession(id);
  }

  async swapSessionGrant(
    id: string,
    expected: SessionGrant,
    next: { idpRefreshTokenCiphertext: string; idpTokenExpiresAt: Instant | null },
  ): Promise<boolean> {
    // One statement: the engine checks and writes the row at once, so of two callers only one sees its expectation hold.
    const written = await this.write(
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
    await this.write(
      'UPDATE sessions SET revoked_at = COALESCE(revoked_at, :now), ' +
        'revoke_reason = CASE WHEN revoked_at IS NULL THEN :reason ELSE revoke_reason END, ' +
        'idp_refresh_token_ciphertext = NULL, idp_token_expires_at = NULL WHERE id = :id',
      { id, now, reason },
    );
    return this.mustGetSession(id);
  }

  async revokeSessionsOfPerson(personId: string, now: Instant, reason: string): Promise<number> {
    return await this.write(
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
    const row = await this.one(`SELECT ${LOGIN_COLUMNS} FROM pending_logins WHERE id = :id`, { id });
    return row === undefined ? undefined : mapLogin(row);
  }

  async getLoginByLookupKey(lookupKey: string): Promise<PendingLogin | undefined> {
    const row = await this.one(`SELECT ${LOGIN_COLUMNS} FROM pending_logins WHERE lookup_key = :lookup_key`, {
      lookup_key: lookupKey,
    });
    return row === undefined ? undefined : mapLogin(row);
  }

  async insertLogin(login: PendingLogin): Promise<PendingLogin> {
    if (await this.exists('pending_logins', 'id', login.id))
      throw new Conflict('a pending login with this id already exists');
    if (login.lookupKey !== undefined && (await this.exists('pending_logins', 'lookup_key', login.lookupKey))) {
      throw new Conflict('a pending login with this lookup key already exists');
    }
    await this.write(
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
    if (sets.length > 0) await this.write(`UPDATE pending_logins SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetLogin(id);
  }

  async deleteLogin(id: string): Promise<boolean> {
    return (await this.write('DELETE FROM pending_logins WHERE id = :id', { id })) > 0;
  }

  async deleteExpiredLogins(now: Instant): Promise<number> {
    return await this.write('DELETE FROM pending_logins WHERE expires_at <= :now', { now });
  }

  private async mustGetLogin(id: string): Promise<PendingLogin> {
    const login = await this.getLogin(id);
    // The id may be a secret (a device code's hash): keep it out of the message.
    if (login === undefined) throw new NotFound('pending login does not exist');
    return login;
  }

  // ---- audit ----

  async getAuditHead(): Promise<{ seq: number; hash: string } | undefined> {
    await this.flushAudit();
    const row = await this.one('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
    if (row === undefined) return undefined;
    return { seq: integer(row, 'audit_events', 'seq'), hash: text(row, 'audit_events', 'hash') };
  }

  async getAuditEvent(seq: number): Promise<AuditEvent | undefined> {
    await this.flushAudit();
    const row = await this.one(`SELECT ${AUDIT_COLUMNS} FROM audit_events WHERE seq = :seq`, { seq });
    return row === undefined ? undefined : mapAudit(row);
  }

  async listAudit(filter: AuditFilter = {}): Promise<AuditEvent[]> {
    await this.flushAudit();
    const { sql, params } = auditQuery(filter);
    return await this.manyMap(sql, params, mapAudit);
  }

  async listAuditRecords(filter: AuditFilter = {}): Promise<AuditRecord[]> {
    await this.flushAudit();
    const { sql, params } = auditQuery(filter);
    return await this.manyMap(sql, params, mapAuditRecord);
  }

  async listAuditCheckpoints(filter: AuditCheckpointFilter = {}): Promise<AuditCheckpoint[]> {
    const params: Params = { limit: pageLimit(filter.limit, 'audit checkpoint page') };
    let where = '';
    if (filter.throughSeq !== undefined) {
      where = 'WHERE seq <= :through_seq';
      params.through_seq = filter.throughSeq;
    }
    const order = filter.newestFirst === true ? 'DESC' : 'ASC';
    return await this.manyMap(
      `SELECT ${AUDIT_CHECKPOINT_COLUMNS} FROM audit_checkpoints ${where} ORDER BY id ${order} LIMIT :limit`,
      params,
      mapAuditCheckpoint,
    );
  }

  async appendAuditCheckpoint(checkpoint: NewAuditCheckpoint): Promise<AuditCheckpoint> {
    // The checkpoint's own guard (a trigger) reads the trail too.
    await this.flushAudit();
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
    await this.write(
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

  /**
   * Checks and hashes the event and keeps it in memory: the owner of the transaction (commit-groups.ts) chains and
   * inserts it when the database transaction commits, taking the chain's lock only then, so an append costs no
   * round trip and the lock is not held while the rest of the transaction runs. A read of the trail inside the
   * transaction inserts the pending events first, under the lock (`flushAudit`).
   */
  async appendAudit(event: NewAuditEvent): Promise<void> {
    this.assertLive();
    if (this.audit === undefined) throw new Error('audit events can only be appended inside a transaction');
    this.pendingAudit.push(prepareEvent(event));
  }

  /** The appended events not yet inserted, handed to the owner, who inserts them (and is then responsible). */
  takePendingAudit(): PendingEvent[] {
    return this.pendingAudit.splice(0);
  }

  /**
   * Inserts the pending events of the group and of this transaction, chained under the chain's lock (which the
   * group then holds until it commits): before anything in this transaction reads the trail.
   */
  private async flushAudit(): Promise<void> {
    if (this.audit === undefined) return;
    if (this.audit.pending.length === 0 && this.pendingAudit.length === 0) return;
    this.assertLive();
    const events = this.audit.take(this.takePendingAudit());
    const db: Queryable = { query: (config) => this.query(config) };
    // The group now holds the chain's lock until it commits: the rest of this member waits for no lock longer than
    // the bound (audit-append.ts LOCK_CHAIN says why).
    await Promise.all([...chainInDatabase(db, events), db.query(BOUND_WAITS_WHILE_HOLDING_CHAIN)]);
  }

  // ---- clusters ----

  async getCluster(name: string): Promise<ClusterRecord | undefined> {
    const row = await this.one(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE name = :name`, { name });
    return row === undefined ? undefined : mapCluster(row);
  }

  async listClusters(): Promise<ClusterRecord[]> {
    return await this.manyMap(`SELECT ${CLUSTER_COLUMNS} FROM clusters ORDER BY name`, mapCluster);
  }

  async upsertCluster(cluster: ClusterInput): Promise<ClusterRecord> {
    await this.write(
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
    return (await this.write('DELETE FROM clusters WHERE name = :name', { name })) > 0;
  }

  async holdRegisteredCluster(name: string): Promise<boolean> {
    // FOR KEY SHARE: conflicts with the DELETE of a removal (which then waits), not with a credential's renewal; when
    // a removal holds the row, this waits for its COMMIT and then finds no row.
    return (
      (await this.one('SELECT 1 AS held FROM registered_clusters WHERE name = :name FOR KEY SHARE', { name })) !==
      undefined
    );
  }

  async getRegisteredCluster(name: string): Promise<RegisteredClusterRecord | undefined> {
    const row = await this.one(`SELECT ${REGISTERED_CLUSTER_COLUMNS} FROM registered_clusters WHERE name = :name`, {
      name,
    });
    return row === undefined ? undefined : mapRegisteredCluster(row);
  }

  async listRegisteredClusters(): Promise<RegisteredClusterRecord[]> {
    return await this.manyMap(
      `SELECT ${REGISTERED_CLUSTER_COLUMNS} FROM registered_clusters ORDER BY name`,
      mapRegisteredCluster,
    );
  }

  async insertRegisteredCluster(cluster: RegisteredClusterRecord): Promise<RegisteredClusterRecord> {
    try {
      await this.write(
        `INSERT INTO registered_clusters (${REGISTERED_CLUSTER_COLUMNS}) VALUES (:name, :sealed_kubeconfig, ` +
          ':direct_mode, :registered_by, :registered_at, :credential_expires_at, :updated_at)',
        registeredClusterParams(cluster),
      );
    } catch (error) {
      throw translatePgError(error);
    }
    return cluster;
  }

  async updateRegisteredClusterCredential(
    name: string,
    credential: { sealedKubeconfig: string; credentialExpiresAt?: Instant; now: Instant },
  ): Promise<RegisteredClusterRecord> {
    const changed = await this.write(
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
    return (await this.write('DELETE FROM registered_clusters WHERE name = :name', { name })) > 0;
  }

  // ---- profiles ----

  async getProfile(name: string): Promise<Profile | undefined> {
    const row = await this.one(`SELECT ${PROFILE_COLUMNS} FROM profiles WHERE name = :name`, { name });
    return row === undefined ? undefined : mapProfile(row);
  }

  async listProfiles(): Promise<Profile[]> {
    return await this.manyMap(`SELECT ${PROFILE_COLUMNS} FROM profiles ORDER BY name`, mapProfile);
  }

  async upsertProfile(profile: Profile): Promise<Profile> {
    await this.write(
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
    return (await this.write('DELETE FROM profiles WHERE name = :name', { name })) > 0;
  }

  // ---- settings ----

  async getSetting(key: string): Promise<JsonValue | undefined> {
    const row = await this.one('SELECT value_json FROM settings WHERE key = :key', { key });
    return row === undefined ? undefined : json(row, 'settings', 'value_json', decodeJsonValue);
  }

  async putSetting(key: string, value: JsonValue, now: Instant): Promise<void> {
    await this.write(
      'INSERT INTO settings (key, value_json, updated_at) VALUES (:key, :value_json, :now) ' +
        'ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at',
      { key, value_json: JSON.stringify(value), now },
    );
  }

  // ---- identity lifecycle: SCIM users and groups, SCIM tokens, offboarding receipts ----

  async getScimUser(id: string): Promise<ScimUserRecord | undefined> {
    const row = await this.one(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimUser(row);
  }

  async getScimUserByUserName(userName: string): Promise<ScimUserRecord | undefined> {
    const row = await this.one(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE user_name_key = :key`, {
      key: userName.toLowerCase(),
    });
    return row === undefined ? undefined : mapScimUser(row);
  }

  async listScimUsersByEmail(email: string): Promise<ScimUserRecord[]> {
    return await this.manyMap(
      `SELECT ${SCIM_USER_COLUMNS} FROM scim_users WHERE email = :email ORDER BY created_at, ord`,
      {
        email: email.toLowerCase(),
      },
      mapScimUser,
    );
  }

  async listScimUsers(): Promise<ScimUserRecord[]> {
    return await this.manyMap(`SELECT ${SCIM_USER_COLUMNS} FROM scim_users ORDER BY created_at, ord`, mapScimUser);
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

  private async assertUserNameFree(userName: string, exceptId: string): Promise<void> {
    const holder = await this.one('SELECT id FROM scim_users WHERE user_name_key = :key', {
      key: userName.toLowerCase(),
    });
    if (holder !== undefined && text(holder, 'scim_users', 'id') !== exceptId) {
      throw new Conflict(`a SCIM user with userName '${userName}' already exists`, { details: { userName } });
    }
  }

  async insertScimUser(user: NewScimUser): Promise<ScimUserRecord> {
    if (await this.exists('scim_users', 'id', user.id)) {
      throw new Conflict(`SCIM user ${user.id} already exists`, { details: { id: user.id } });
    }
    await this.assertUserNameFree(user.userName, user.id);
    const params = { ...this.scimUserParams(user), version: 1 };
    const columns = Object.keys(params);
    await this.write(
      `INSERT INTO scim_users (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    return this.mustGetScimUser(user.id);
  }

  async updateScimUser(user: NewScimUser, expectedVersion?: number): Promise<ScimUserRecord> {
    const current = await this.one('SELECT version FROM scim_users WHERE id = :id', { id: user.id });
    if (current === undefined) throw new NotFound(`SCIM user ${user.id} does not exist`, { details: { id: user.id } });
    const currentVersion = integer(current, 'scim_users', 'version');
    if (expectedVersion !== undefined && expectedVersion !== currentVersion) {
      throw new Conflict(
        `SCIM user ${user.id} was changed by someone else (version ${currentVersion}, expected ${expectedVersion}); ` +
          'read it again and retry',
        { details: { id: user.id, expectedVersion, currentVersion } },
      );
    }
    await this.assertUserNameFree(user.userName, user.id);
    const { created_at: _createdAt, ...params } = this.scimUserParams(user);
    await this.write(
      `UPDATE scim_users SET ${assignments(params, ['id'])}, version = version + 1 WHERE id = :id AND version = :version`,
      { ...params, version: currentVersion },
    );
    return this.mustGetScimUser(user.id);
  }

  async deleteScimUser(id: string, now: Instant): Promise<boolean> {
    // Membership lives in two places (the ordered list and the index); both lose the user, and each group
    // changes version so an IdP holding its old ETag sees the change.
    for (const group of await this.listScimGroupsOfUser(id)) {
      await this.write(
        'UPDATE scim_groups SET members_json = :members_json, version = version + 1, updated_at = :now WHERE id = :id',
        { id: group.id, members_json: JSON.stringify(group.members.filter((member) => member !== id)), now },
      );
    }
    return (await this.write('DELETE FROM scim_users WHERE id = :id', { id })) > 0;
  }

  private async mustGetScimUser(id: string): Promise<ScimUserRecord> {
    const user = await this.getScimUser(id);
    if (user === undefined) throw new NotFound(`SCIM user ${id} does not exist`, { details: { id } });
    return user;
  }

  async getScimGroup(id: string): Promise<ScimGroupRecord | undefined> {
    const row = await this.one(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimGroup(row);
  }

  async getScimGroupByDisplayName(displayName: string): Promise<ScimGroupRecord | undefined> {
    const row = await this.one(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE display_name_key = :key`, {
      key: displayName.toLowerCase(),
    });
    return row === undefined ? undefined : mapScimGroup(row);
  }

  async listScimGroups(): Promise<ScimGroupRecord[]> {
    return await this.manyMap(`SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups ORDER BY created_at, ord`, mapScimGroup);
  }

  async listScimGroupsOfUser(userId: string): Promise<ScimGroupRecord[]> {
    return await this.manyMap(
      `SELECT ${SCIM_GROUP_COLUMNS} FROM scim_groups WHERE id IN ` +
        '(SELECT group_id FROM scim_group_members WHERE user_id = :user_id) ORDER BY created_at, ord',
      { user_id: userId },
      mapScimGroup,
    );
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
  private async checkScimGroup(group: NewScimGroup): Promise<string[]> {
    const holder = await this.one('SELECT id FROM scim_groups WHERE display_name_key = :key', {
      key: group.displayName.toLowerCase(),
    });
    if (holder !== undefined && text(holder, 'scim_groups', 'id') !== group.id) {
      throw new Conflict(`a SCIM group named '${group.displayName}' already exists`, {
        details: { displayName: group.displayName },
      });
    }
    const members = [...new Set(group.members)];
    for (const member of members) {
      if (!(await this.exists('scim_users', 'id', member))) {
        throw new NotFound(`SCIM user ${member} does not exist, so it cannot be a member of '${group.displayName}'`, {
          details: { member },
        });
      }
    }
    return members;
  }

  private async indexScimGroupMembers(groupId: string, members: string[]): Promise<void> {
    await this.write('DELETE FROM scim_group_members WHERE group_id = :id', { id: groupId });
    for (const member of members) {
      await this.write('INSERT INTO scim_group_members (group_id, user_id) VALUES (:group_id, :user_id)', {
        group_id: groupId,
        user_id: member,
      });
    }
  }

  async insertScimGroup(group: NewScimGroup): Promise<ScimGroupRecord> {
    if (await this.exists('scim_groups', 'id', group.id)) {
      throw new Conflict(`SCIM group ${group.id} already exists`, { details: { id: group.id } });
    }
    const members = await this.checkScimGroup(group);
    const params = { ...this.scimGroupParams(group, members), version: 1 };
    const columns = Object.keys(params);
    await this.write(
      `INSERT INTO scim_groups (${columns.join(', ')}) VALUES (${columns.map((c) => `:${c}`).join(', ')})`,
      params,
    );
    await this.indexScimGroupMembers(group.id, members);
    return this.mustGetScimGroup(group.id);
  }

  async updateScimGroup(group: NewScimGroup, expectedVersion?: number): Promise<ScimGroupRecord> {
    const current = await this.one('SELECT version FROM scim_groups WHERE id = :id', { id: group.id });
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
    const members = await this.checkScimGroup(group);
    const { created_at: _createdAt, ...params } = this.scimGroupParams(group, members);
    await this.write(
      `UPDATE scim_groups SET ${assignments(params, ['id'])}, version = version + 1 WHERE id = :id AND version = :version`,
      { ...params, version: currentVersion },
    );
    await this.indexScimGroupMembers(group.id, members);
    return this.mustGetScimGroup(group.id);
  }

  async deleteScimGroup(id: string): Promise<boolean> {
    return (await this.write('DELETE FROM scim_groups WHERE id = :id', { id })) > 0;
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
    return await this.manyMap(
      `SELECT ${SCIM_LINK_COLUMNS} FROM scim_links ${where.length > 0 ? `WHERE ${where.join(' AND ')} ` : ''}` +
        'ORDER BY created_at, ord',
      params,
      mapScimLink,
    );
  }

  async insertScimLink(link: ScimLinkRecord): Promise<ScimLinkRecord> {
    const email = link.email.toLowerCase();
    if (await this.one('SELECT 1 FROM scim_links WHERE email = :email AND idp = :idp', { email, idp: link.idp })) {
      throw new Conflict(`${email} is already linked to identity provider ${link.idp}`, {
        details: { email, idp: link.idp },
      });
    }
    await this.write(
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
      (await this.write('DELETE FROM scim_links WHERE email = :email AND idp = :idp', {
        email: email.toLowerCase(),
        idp,
      })) > 0
    );
  }

  async getScimToken(id: string): Promise<ScimTokenRecord | undefined> {
    const row = await this.one(`SELECT ${SCIM_TOKEN_COLUMNS} FROM scim_tokens WHERE id = :id`, { id });
    return row === undefined ? undefined : mapScimToken(row);
  }

  async listScimTokens(): Promise<ScimTokenRecord[]> {
    return await this.manyMap(`SELECT ${SCIM_TOKEN_COLUMNS} FROM scim_tokens ORDER BY created_at, ord`, mapScimToken);
  }

  async insertScimToken(token: ScimTokenRecord): Promise<ScimTokenRecord> {
    if (await this.exists('scim_tokens', 'id', token.id)) {
      throw new Conflict(`SCIM token ${token.id} already exists`, { details: { id: token.id } });
    }
    // Never echo the hash: it identifies a live credential.
    if (await this.exists('scim_tokens', 'secret_hash', token.secretHash)) throw new Conflict('this SCIM token exists');
    await this.write(
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
    if (sets.length > 0) await this.write(`UPDATE scim_tokens SET ${sets.join(', ')} WHERE id = :id`, params);
    return this.mustGetScimToken(id);
  }

  private async mustGetScimToken(id: string): Promise<ScimTokenRecord> {
    const token = await this.getScimToken(id);
    if (token === undefined) throw new NotFound(`SCIM token ${id} does not exist`, { details: { id } });
    return token;
  }

  async getOffboarding(id: string): Promise<OffboardingRecord | undefined> {
    const row = await this.one(`SELECT ${OFFBOARDING_COLUMNS} FROM offboardings WHERE id = :id`, { id });
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
    return await this.manyMap(
      `SELECT ${OFFBOARDING_COLUMNS} FROM offboardings ${where} ORDER BY created_at, ord`,
      params,
      mapOffboarding,
    );
  }

  async insertOffboarding(record: OffboardingRecord): Promise<OffboardingRecord> {
    if (await this.exists('offboardings', 'id', record.id)) {
      throw new Conflict(`offboarding ${record.id} already exists`, { details: { id: record.id } });
    }
    await this.write(
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
    const changed = await this.write(
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

  // ---- visas, many at once ----

  async updateVisas(updates: readonly VisaUpdate[]): Promise<StoredVisa[]> {
    this.assertLive();
    if (updates.length === 0) return [];
    if (new Set(updates.map(({ visa }) => visa.id)).size !== updates.length) {
      throw new Error('updateVisas: every visa may appear once');
    }
    const rows = updates.map(({ visa, expectedVersion }) => ({
      ...visaParams(visa),
      expected_version: expectedVersion ?? null,
    }));
    // One statement whatever the count: the rows travel as one JSON parameter (a statement's parameters are limited).
    const updated = await this.many(UPDATE_VISAS_SQL, { rows: JSON.stringify(rows) });
    const byId = new Map(updated.map((row) => [text(row, 'visas', 'id'), mapVisa(row)]));
    const stored: StoredVisa[] = [];
    for (const { visa, expectedVersion } of updates) {
      // Not updated: the single update says why (stale version, unknown visa, engagement or person) in its words.
      stored.push(byId.get(visa.id) ?? (await this.updateVisa(visa, expectedVersion)));
    }
    return stored;
  }
}

/** insertIntents' statement: every row of `:rows` in the order given. */
const INSERT_INTENTS_SQL =
  `INSERT INTO intents (id, kind, cluster, visa_id, person_id, payload_json, created_at) ` +
  'SELECT id, kind, cluster, visa_id, person_id, payload_json, created_at ' +
  'FROM ROWS FROM (jsonb_to_recordset(:rows::jsonb) AS (id text, kind text, cluster text, visa_id text, ' +
  'person_id text, payload_json text, created_at bigint)) WITH ORDINALITY ' +
  'AS r(id, kind, cluster, visa_id, person_id, payload_json, created_at, ordinality) ' +
  `ORDER BY ordinality RETURNING ${INTENT_COLUMNS}`;

/** updateVisas' statement: every row of `:rows` (visaParams and expected_version) under updateVisa's checks. */
const UPDATE_VISAS_SQL = (() => {
  // visaParams' keys: every column but the version, which the statement increments.
  const columns = VISA_COLUMNS.split(', ').filter((c) => c !== 'version');
  const types = columns.map((c) => `${c} ${VISA_COLUMN_TYPES[c] ?? 'text'}`).join(', ');
  return (
    `UPDATE visas AS v SET ${columns
      .filter((c) => c !== 'id')
      .map((c) => `${c} = u.${c}`)
      .join(', ')}, version = v.version + 1 ` +
    `FROM jsonb_to_recordset(:rows::jsonb) AS u(${types}, expected_version integer) ` +
    'WHERE v.id = u.id AND (u.expected_version IS NULL OR v.version = u.expected_version) ' +
    'AND EXISTS (SELECT 1 FROM engagements WHERE id = u.engagement_id) ' +
    'AND EXISTS (SELECT 1 FROM persons WHERE id = u.person_id) ' +
    `RETURNING ${VISA_COLUMNS.split(', ')
      .map((c) => `v.${c}`)
      .join(', ')}`
  );
})();
