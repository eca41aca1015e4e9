/**
 * The PostgreSQL store: `pg` (node-postgres) with a pool of connections at READ COMMITTED. PostgreSQL makes a
 * transaction durable before COMMIT returns (synchronous_commit on, the server's default), so `transaction()`
 * resolves only once its work survives a crash; when the connection breaks at any point, the call rejects with
 * StoreUnavailable and the caller fails closed.
 *
 * A process's transactions are committed in groups (commit-groups.ts): run one after another in savepoints of one
 * database transaction, one COMMIT for all, several groups side by side. Between processes, concurrency is the database's: optimistic versions
 * and unique keys refuse the loser of a race, and appends to the audit chain take one advisory lock
 * (audit-append.ts), so several kubevisa processes on one database keep one chain. Gateway-scale audit volume goes
 * through the group-commit appender (appender.ts), which writes many events per statement. Direct reads run on
 * any pooled connection and see what is committed.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { Engagement, Instant, Person, Profile, VisaState } from '../../domain/model.ts';
import { InvalidInput } from '../../domain/errors.ts';
import { StoreUnavailable } from '../errors.ts';
import { text } from '../rows.ts';
import type {
  AuditCheckpoint,
  AuditCheckpointFilter,
  AuditEvent,
  AuditFilter,
  AuditRecord,
  ChangeFeed,
  ChangeFeedOptions,
  ClusterRecord,
  RegisteredClusterRecord,
  EngagementFilter,
  Intent,
  IntegrityFinding,
  IntentFilter,
  JsonValue,
  OffboardingFilter,
  OffboardingRecord,
  PendingLogin,
  ScimGroupRecord,
  ScimLinkRecord,
  ScimTokenRecord,
  ScimUserRecord,
  Session,
  Store,
  StoreReader,
  StoreTx,
  StoredVisa,
  VisaFilter,
} from '../store.ts';
import { KnownHead } from './audit-append.ts';
import { PostgresAuditAppender, type AuditAppenderOptions } from './appender.ts';
import { CommitGroups, DEFAULT_PARALLEL_GROUPS } from './commit-groups.ts';
import { applyMigrations } from './migrate.ts';
import {
  APPEND_ONLY_TABLES,
  AUDIT_GUARD_FUNCTIONS,
  AUDIT_GUARD_TRIGGERS,
  POSTGRES_MIGRATIONS,
  type PostgresMigration,
} from './migrations.ts';
import { postgresLeases } from './leases.ts';
import { STORE_TYPES, bind, translatePgError } from './sql.ts';
import { PgTx } from './tx.ts';
import { PostgresChangeFeed } from './change-feed.ts';

/** Connections kept by default: enough for the API, the reconciler and the audit appender at once. */
export const DEFAULT_POOL_SIZE = 10;
/** How long to wait for a connection before failing with StoreUnavailable by default, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

export interface PostgresStoreOptions {
  /**
   * `postgres://user@host:port/database` (a `postgresql://` URL, as libpq takes). A password in the URL works
   * but is discouraged: give it as `password` (read from a file or the environment by the caller) so it never
   * sits in a configuration file or a process listing.
   */
  url: string;
  password?: string;
  /** The schema kubevisa's tables live in; default the role's search_path (normally `public`). */
  schema?: string;
  /** Clock for the store's own bookkeeping (when a migration was applied); default `Date.now`. */
  now?: () => Instant;
  /** Most connections open at once; default 10. */
  poolSize?: number;
  /** How long to wait for a connection, in milliseconds; default 5000. */
  connectTimeoutMs?: number;
  /** The migrations to apply; default the released schema. Tests pass their own list. */
  migrations?: readonly PostgresMigration[];
  /** Shown in pg_stat_activity; default `kubevisa`. */
  applicationName?: string;
  /**
   * Most transactions committed together (commit-groups.ts); default 100. 1 commits each transaction on its own.
   */
  maxGroupSize?: number;
  /**
   * Most commit groups running at once, each on a connection of its own (commit-groups.ts); default 2. 1 runs
   * every transaction of this process one after another, in call order.
   */
  parallelGroups?: number;
}

/** One check of the audit trail's protections, passed or not (what `inspectAuditProtections` lists). */
export interface ProtectionCheck {
  /** Stable name of the check: `audit-trigger`, `audit-privilege`, `audit-owner`. */
  check: string;
  /** The trigger or table checked. */
  subject: string;
  ok: boolean;
  message: string;
}

export interface PostgresStore extends Store {
  readonly engine: 'postgres';
  /** Versions of the migrations this open applied, in order; empty when the schema was already current. */
  readonly appliedMigrations: readonly number[];
  /** Append-only triggers this open found missing or disabled and put back (it runs as their owner). */
  readonly restoredGuards: readonly string[];
  /**
   * What guards the audit trail here, every check passed or not: each append-only trigger present and enabled,
   * and whether the role the store runs as could change audit rows (UPDATE, DELETE, TRUNCATE) or drop the
   * guards (owner). `checkIntegrity` reports the failed ones.
   */
  inspectAuditProtections(): Promise<ProtectionCheck[]>;
  openAuditAppender(options?: AuditAppenderOptions): PostgresAuditAppender;
  /** A pooled connection for the engine's own tools (import-sqlite.ts); the caller releases it. */
  connect(): Promise<pg.PoolClient>;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The connection settings for `options`, the password never in anything that gets logged or thrown. */
function poolConfig(options: PostgresStoreOptions): pg.PoolConfig {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new InvalidInput('store.url must be a URL like postgres://kubevisa@db.example:5432/kubevisa', {
      details: { field: 'store.url' },
    });
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new InvalidInput(`store.url must start with postgres:// (got ${url.protocol}//)`, {
      details: { field: 'store.url' },
    });
  }
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new InvalidInput(`store schema '${options.schema}' must be lower-case letters, digits and _`, {
      details: { field: 'store.schema' },
    });
  }
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
    throw new InvalidInput(`store pool size must be a whole number >= 1; got ${poolSize}`);
  }
  const password = options.password ?? (url.password === '' ? undefined : decodeURIComponent(url.password));
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port === '' ? 5432 : Number(url.port),
    user: decodeURIComponent(url.username) || 'kubevisa',
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || 'kubevisa',
    ...(password === undefined ? {} : { password }),
    ...tlsOf(url),
    max: poolSize,
    min: Math.min(2, poolSize),
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepAlive: true,
    application_name: options.applicationName ?? 'kubevisa',
    // A transaction left open by a stuck process would hold the audit chain's lock: the server ends it. READ
    // COMMITTED for the statements that run as transactions of their own (direct reads, lease claims, the
    // appender's self-committing insert), whatever default an operator set on the database or role: the engine's
    // reasoning assumes it (a statement sees what was committed before it started); those that open a
    // transaction also state it in their BEGIN.
    options:
      '-c idle_in_transaction_session_timeout=60000 -c default_transaction_isolation=read\\ committed' +
      (options.schema === undefined ? '' : ` -c search_path=${options.schema}`),
    types: STORE_TYPES,
  };
}

/**
 * TLS from the URL's libpq parameters. Unlike libpq, nothing falls back to plain text and `require` verifies the
 * server's certificate too (against `sslrootcert` or the system's CAs): a store that holds the audit trail must not
 * be reachable by someone in the middle. `verify-ca` skips only the host-name check, `verify-full` does both, and a
 * mode node-postgres cannot honour (`allow`, `prefer`) is refused instead of being silently ignored.
 */
function tlsOf(url: URL): { ssl?: ConnectionOptions } {
  const mode = url.searchParams.get('sslmode') ?? 'disable';
  const known = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'];
  const unknown = [...url.searchParams.keys()].filter((key) => key.startsWith('ssl') && !known.includes(key));
  if (unknown.length > 0) {
    throw new InvalidInput(`store.url: ${unknown.join(', ')} is not supported; use ${known.join(', ')}`, {
      details: { field: 'store.url' },
    });
  }
  if (mode === 'disable') {
    if (known.slice(1).some((key) => url.searchParams.has(key))) {
      throw new InvalidInput(
        'store.url names TLS files but no sslmode: add sslmode=verify-full (or verify-ca, require)',
        {
          details: { field: 'store.url' },
        },
      );
    }
    return {};
  }
  if (mode !== 'require' && mode !== 'verify-ca' && mode !== 'verify-full') {
    throw new InvalidInput(
      `store.url sslmode=${mode} is not supported: use verify-full (recommended), verify-ca, require or disable; kubevisa never falls back to plain text`,
      { details: { field: 'store.url' } },
    );
  }
  const file = (key: string): string | undefined => {
    const path = url.searchParams.get(key);
    if (path === null) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      throw new InvalidInput(`store.url ${key}=${path} cannot be read: ${(error as Error).message}`, {
        details: { field: 'store.url' },
      });
    }
  };
  const ca = file('sslrootcert');
  const cert = file('sslcert');
  const key = file('sslkey');
  return {
    ssl: {
      rejectUnauthorized: true,
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      ...(mode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
    },
  };
}

/** `user@host:port/database` of a URL, without any password: what messages may show. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${decodeURIComponent(parsed.username) || 'kubevisa'}@${parsed.host}${parsed.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

/**
 * Which store transaction the current async context runs inside: a direct read from inside a callback would not
 * see its own uncommitted writes, and enough of them would wait for pool connections the callbacks hold.
 */
const activeTransaction = new AsyncLocalStorage<{ store: PostgresStoreImpl; tx: PgTx }>();

/** Connects, applies pending migrations under a lock, checks the audit guards and returns the store. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const config = poolConfig(options);
  const where = describeUrl(options.url);
  const pool = new pg.Pool(config);
  // An idle connection the server closed (a restart) is dropped by the pool; the next call opens a new one. The
  // handler is what stops node from treating it as an uncaught error.
  pool.on('error', () => undefined);
  try {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
      // As in connect() below: a connection ended by the server while checked out must not crash the process.
      client.on('error', () => undefined);
    } catch (error) {
      throw new StoreUnavailable(`cannot connect to PostgreSQL at ${where}: ${messageOf(error)}`, { cause: error });
    }
    try {
      const applied = await applyMigrations(
        client,
        options.migrations ?? POSTGRES_MIGRATIONS,
        (options.now ?? Date.now)(),
      );
      const restoredGuards = await restoreAuditGuards(client);
      const schema = await client.query('SELECT current_schema() AS name');
      // A second connection ready at once: the first read during the first transaction need not wait for one.
      (await pool.connect()).release();
      // The commit groups' connections, in pipeline mode (commit-groups.ts): one per group running at once.
      const parallelGroups = options.parallelGroups ?? DEFAULT_PARALLEL_GROUPS;
      if (!Number.isSafeInteger(parallelGroups) || parallelGroups < 1) {
        throw new InvalidInput(`store parallel groups must be a whole number >= 1; got ${parallelGroups}`);
      }
      const groupPool = new pg.Pool({ ...config, max: parallelGroups, min: 0, pipeline: true });
      groupPool.on('error', () => undefined);
      return new PostgresStoreImpl(
        pool,
        groupPool,
        applied,
        restoredGuards,
        { clientConfig: config, channel: changeChannel(String(schema.rows[0]?.name ?? 'public')) },
        { maxGroupSize: options.maxGroupSize, parallelGroups },
      );
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The NOTIFY channel of the installation in `schema`: channels are per database, so installations in two schemas of
 * one database must not hear each other.
 */
export function changeChannel(schema: string): string {
  const plain = `kubevisa_changes_${schema}`;
  return /^[a-z0-9_]{1,63}$/.test(plain)
    ? plain
    : `kubevisa_changes_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

interface AuditGuardState {
  /** Guard triggers not there. */
  missing: string[];
  /** Guard triggers there but not firing in ordinary sessions (disabled, or enabled only for replication). */
  disabled: string[];
  /** Guard triggers on other events or running another function, and guard functions whose body or path changed. */
  altered: string[];
}

/**
 * The append-only guards as the database holds them in the current schema, compared with what the migrations
 * made: each trigger present, firing (`tgenabled` O or A: 'R' fires only under session_replication_role = replica,
 * 'D' never), on the same events for every row or statement with no column list or WHEN condition, running its
 * function; each function with its released body and its pinned search_path.
 */
async function auditGuardState(db: pg.ClientBase | pg.Pool): Promise<AuditGuardState> {
  const triggers = await db.query(
    'SELECT c.relname AS table_name, t.tgname AS name, t.tgenabled AS enabled, t.tgtype AS type, ' +
      'p.proname AS fn, p.pronamespace = current_schema()::regnamespace AS fn_here, ' +
      'cardinality(t.tgattr::int2[]) = 0 AS all_columns, t.tgqual IS NULL AS unconditional ' +
      'FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid ' +
      'WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal',
  );
  const present = new Map(
    triggers.rows.map((row: Record<string, unknown>) => [
      `${text(row, 'pg_trigger', 'table_name')}.${text(row, 'pg_trigger', 'name')}`,
      row,
    ]),
  );
  const state: AuditGuardState = { missing: [], disabled: [], altered: [] };
  for (const guard of AUDIT_GUARD_TRIGGERS) {
    const row = present.get(`${guard.table}.${guard.name}`);
    if (row === undefined) state.missing.push(guard.name);
    else if (
      Number(row.type) !== guard.type ||
      row.fn !== guard.fn ||
      row.fn_here !== true ||
      row.all_columns !== true ||
      row.unconditional !== true
    )
      state.altered.push(guard.name);
    else if (row.enabled !== 'O' && row.enabled !== 'A') state.disabled.push(guard.name);
  }
  const functions = await db.query(
    "SELECT p.proname AS name, p.prosrc AS body, array_to_string(p.proconfig, ';') AS config, " +
      'p.prosecdef AS definer, current_schema() AS schema FROM pg_proc p ' +
      'WHERE p.pronamespace = current_schema()::regnamespace AND p.proname = ANY($1::text[])',
    [AUDIT_GUARD_FUNCTIONS.map((fn) => fn.name)],
  );
  for (const fn of AUDIT_GUARD_FUNCTIONS) {
    const row = functions.rows.find((r: Record<string, unknown>) => r.name === fn.name);
    const pinnedPath = row === undefined ? '' : `search_path=${quoteSchemaForPath(String(row.schema))}, pg_temp`;
    if (row === undefined || row.body !== fn.body || row.config !== pinnedPath || row.definer !== false) {
      state.altered.push(fn.name);
    }
  }
  return state;
}

/** How PostgreSQL writes a schema name in a function's search_path setting (quoted when it must be). */
function quoteSchemaForPath(schema: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(schema) ? schema : `"${schema.replace(/"/g, '""')}"`;
}

/**
 * Puts back append-only guards someone dropped, disabled or altered, when this role owns the audit tables (a
 * runtime role without ownership cannot, and the integrity check reports it instead). Returns what it put back.
 */
async function restoreAuditGuards(client: pg.ClientBase): Promise<string[]> {
  const { missing, disabled, altered } = await auditGuardState(client);
  if (missing.length === 0 && disabled.length === 0 && altered.length === 0) return [];
  const owner = await client.query(
    "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) AS owns FROM pg_class c " +
      "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('audit_events', 'audit_checkpoints')",
  );
  if (owner.rows[0]?.owns !== true) return [];
  await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
  try {
    for (const fn of AUDIT_GUARD_FUNCTIONS) {
      if (!altered.includes(fn.name)) continue;
      await client.query(fn.createSql);
      await client.query(`ALTER FUNCTION ${fn.name}() SECURITY INVOKER`);
      await client.query(
        `DO $$ BEGIN EXECUTE format('ALTER FUNCTION ${fn.name}() SET search_path = %I, pg_temp', current_schema()); END $$`,
      );
    }
    for (const guard of AUDIT_GUARD_TRIGGERS) {
      if (altered.includes(guard.name)) await client.query(`DROP TRIGGER ${guard.name} ON ${guard.table}`);
      if (missing.includes(guard.name) || altered.includes(guard.name)) await client.query(guard.sql);
      if (disabled.includes(guard.name)) await client.query(`ALTER TABLE ${guard.table} ENABLE TRIGGER ${guard.name}`);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw translatePgError(error);
  }
  return [...missing, ...disabled, ...altered];
}

/**
 * The statements that give `role` what kubevisa needs at run time and nothing more on the audit trail: read and
 * write every table, but on audit_events and audit_checkpoints only SELECT and INSERT. Run them as the schema's
 * owner after migrations (docs/operations.md shows them; the tests run exactly these).
 */
export function runtimeRoleGrants(role: string, schema = 'public'): string[] {
  if (!SCHEMA_NAME.test(role) || !SCHEMA_NAME.test(schema)) {
    throw new InvalidInput('role and schema names must be lower-case letters, digits and _');
  }
  const audit = APPEND_ONLY_TABLES.map((table) => `${schema}.${table}`).join(', ');
  return [
    `GRANT USAGE ON SCHEMA ${schema} TO ${role}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role}`,
    `REVOKE UPDATE, DELETE, TRUNCATE ON ${audit} FROM ${role}`,
    // Migrations are the owner's: a runtime role that could write the version table could claim a newer schema
    // and make every later start refuse the database.
    `REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ${schema}.schema_migrations FROM ${role}`,
    `GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${schema} TO ${role}`,
  ];
}

class PostgresStoreImpl implements PostgresStore {
  readonly engine = 'postgres';
  readonly leases = postgresLeases(
    async (sql, values) => {
      this.assertOpen();
      try {
        return await this.track(this.pool.query(sql, values));
      } catch (error) {
        throw translatePgError(error);
      }
    },
    () => {
      this.assertOpen();
      return this.feedSettings.clientConfig;
    },
  );
  readonly appliedMigrations: readonly number[];
  readonly restoredGuards: readonly string[];
  private readonly pool: pg.Pool;
  private readonly groupPool: pg.Pool;
  private readonly running = new Set<Promise<unknown>>();
  private readonly appenders = new Set<PostgresAuditAppender>();
  private readonly feeds = new Set<PostgresChangeFeed>();
  private readonly feedSettings: { clientConfig: pg.ClientConfig; channel: string };
  private readonly guardedClients = new WeakSet<pg.PoolClient>();
  /** The chain's head as this process last committed it: where the audit appender starts. */
  private readonly knownHead = new KnownHead();
  private readonly groups: CommitGroups;
  /** Guards restored at open not yet returned by `checkIntegrity`. */
  private unreportedGuards: string[];
  /** Failed protections already returned by `checkIntegrity` (action:subject): each is reported once. */
  private readonly reported = new Set<string>();
  private closed = false;

  constructor(
    pool: pg.Pool,
    groupPool: pg.Pool,
    appliedMigrations: readonly number[],
    restoredGuards: readonly string[],
    feedSettings: { clientConfig: pg.ClientConfig; channel: string },
    groups: { maxGroupSize: number | undefined; parallelGroups: number },
  ) {
    this.pool = pool;
    this.groupPool = groupPool;
    this.feedSettings = feedSettings;
    this.appliedMigrations = appliedMigrations;
    this.restoredGuards = restoredGuards;
    this.unreportedGuards = [...restoredGuards];
    this.groups = new CommitGroups({
      // Transactions accepted before close() still run: close waits for them.
      connect: () => this.checkout(this.groupPool),
      knownHead: this.knownHead,
      ...(groups.maxGroupSize === undefined ? {} : { maxGroupSize: groups.maxGroupSize }),
      parallelGroups: groups.parallelGroups,
      runInside: (tx, body) => activeTransaction.run({ store: this, tx }, body),
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailable('the store is closed');
  }

  private assertNotInsideOwnTransaction(): void {
    const active = activeTransaction.getStore();
    if (active !== undefined && active.store === this && active.tx.isLive) {
      throw new Error(
        'store called from inside its own transaction callback: use the `tx` argument for reads and writes',
      );
    }
  }

  /** A pooled connection, or StoreUnavailable when none can be had (database down, pool exhausted too long). */
  async connect(): Promise<pg.PoolClient> {
    this.assertOpen();
    return this.checkout();
  }

  private async checkout(pool = this.pool): Promise<pg.PoolClient> {
    try {
      const client = await pool.connect();
      // A checked-out connection the server ends (a restart, an administrator) emits 'error' on the client, not
      // the pool; without a listener that would crash the process. The statement in flight, or the next one,
      // fails with the same error, which the transaction turns into StoreUnavailable and the client is destroyed.
      if (!this.guardedClients.has(client)) {
        client.on('error', () => undefined);
        this.guardedClients.add(client);
      }
      return client;
    } catch (error) {
      throw new StoreUnavailable(`cannot reach PostgreSQL: ${messageOf(error)}; nothing was changed, try again`, {
        cause: error,
      });
    }
  }

  /** Runs `body` counted as running, so close() waits for it. */
  private track<T>(body: Promise<T>): Promise<T> {
    this.running.add(body);
    const forget = () => this.running.delete(body);
    body.then(forget, forget);
    return body;
  }

  async transaction<T>(work: (tx: StoreTx) => Promise<T>): Promise<T> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    return this.track(this.groups.run(work));
  }

  /** Runs reads outside any transaction, on any pooled connection: each sees the latest committed state. */
  private async read<T>(reads: (reader: StoreReader) => Promise<T>): Promise<T> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    const reader = new PgTx(this.pool);
    try {
      return await this.track(reads(reader));
    } finally {
      reader.end();
    }
  }

  /** The group-commit appender (appender.ts): many concurrent batches per transaction. */
  openAuditAppender(options: AuditAppenderOptions = {}): PostgresAuditAppender {
    this.assertOpen();
    const appender = new PostgresAuditAppender({
      ...options,
      connect: () => this.checkout(),
      knownHead: this.knownHead,
    });
    this.appenders.add(appender);
    return appender;
  }

  /** LISTEN/NOTIFY between the processes on this database and schema (change-feed.ts). */
  openChangeFeed(options: ChangeFeedOptions = {}): ChangeFeed {
    this.assertOpen();
    const feed = new PostgresChangeFeed({
      ...this.feedSettings,
      ...(options.key === undefined ? {} : { key: options.key }),
      ...(options.now === undefined ? {} : { now: options.now }),
      query: async (text, values) => {
        const client = await this.connect();
        let broken: Error | undefined;
        try {
          await this.track(client.query(text, values));
        } catch (error) {
          broken = error instanceof Error ? error : new Error(String(error));
          throw translatePgError(error);
        } finally {
          client.release(broken);
        }
      },
    });
    this.feeds.add(feed);
    return feed;
  }

  /**
   * Puts back guards it can (as their owner), then reports each failed protection once per open: restored
   * triggers, triggers still missing or disabled (this role cannot restore them), and a role that could change
   * or unguard the trail (it may, e.g. a superuser in a test; the trail records that it ran so).
   */
  async checkIntegrity(): Promise<IntegrityFinding[]> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    const client = await this.connect();
    let restored: string[];
    try {
      restored = [...this.unreportedGuards, ...(await restoreAuditGuards(client))];
    } finally {
      client.release();
    }
    this.unreportedGuards = [];
    const findings: IntegrityFinding[] = [];
    if (restored.length > 0) {
      findings.push({
        action: 'audit.guards-restored',
        reason: 'append-only triggers of the audit trail were removed or disabled outside kubevisa',
        details: { triggers: restored },
      });
    }
    const failed = (await this.inspectAuditProtections()).filter((check) => !check.ok);
    const report = (action: string, reason: string, subjects: string[]) => {
      const fresh = subjects.filter((subject) => !this.reported.has(`${action}:${subject}`));
      if (fresh.length === 0) return;
      for (const subject of fresh) this.reported.add(`${action}:${subject}`);
      findings.push({ action, reason, details: { subjects: fresh } });
    };
    report(
      'audit.guards-missing',
      'append-only triggers of the audit trail are missing or disabled and this role cannot restore them',
      failed.filter((check) => check.check === 'audit-trigger').map((check) => check.subject),
    );
    report(
      'audit.role-can-change-trail',
      'kubevisa runs as a role that may UPDATE, DELETE or TRUNCATE the audit trail (docs/operations.md)',
      failed.filter((check) => check.check === 'audit-privilege').map((check) => check.subject),
    );
    report(
      'audit.role-owns-trail',
      'kubevisa runs as the owner of the audit tables, which could disable their triggers (docs/operations.md)',
      failed.filter((check) => check.check === 'audit-owner').map((check) => check.subject),
    );
    return findings;
  }

  async inspectAuditProtections(): Promise<ProtectionCheck[]> {
    this.assertOpen();
    const findings: ProtectionCheck[] = [];
    const { missing, disabled, altered } = await this.track(auditGuardState(this.pool));
    for (const guard of AUDIT_GUARD_TRIGGERS) {
      const state = missing.includes(guard.name)
        ? 'missing'
        : altered.includes(guard.name)
          ? 'altered (other events or another function than kubevisa made it with)'
          : disabled.includes(guard.name)
            ? 'disabled (it does not fire in ordinary sessions)'
            : 'present';
      findings.push({
        check: 'audit-trigger',
        subject: guard.name,
        ok: state === 'present',
        message: `append-only trigger ${guard.name} on ${guard.table} is ${state}`,
      });
    }
    for (const fn of AUDIT_GUARD_FUNCTIONS) {
      const ok = !altered.includes(fn.name);
      findings.push({
        check: 'audit-trigger',
        subject: fn.name,
        ok,
        message: ok
          ? `append-only guard function ${fn.name} is as kubevisa made it`
          : `append-only guard function ${fn.name} was replaced or its search_path changed`,
      });
    }
    const { rows } = await this.track(
      this.pool.query(
        bind(
          'SELECT c.relname AS table_name, ' +
            "has_table_privilege(c.oid, 'UPDATE') AS can_update, has_table_privilege(c.oid, 'DELETE') AS can_delete, " +
            "has_table_privilege(c.oid, 'TRUNCATE') AS can_truncate, pg_has_role(c.relowner, 'USAGE') AS owns " +
            'FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:tables::text[])',
          { tables: `{${APPEND_ONLY_TABLES.join(',')}}` },
        ),
      ),
    );
    for (const row of rows) {
      const table = text(row, 'pg_class', 'table_name');
      const changes = ['UPDATE', 'DELETE', 'TRUNCATE'].filter((verb) => row[`can_${verb.toLowerCase()}`] === true);
      findings.push({
        check: 'audit-privilege',
        subject: table,
        ok: changes.length === 0,
        message:
          changes.length === 0
            ? `this role may only read and insert into ${table}`
            : `this role holds ${changes.join(', ')} on ${table}; run kubevisa as a role without them (docs/operations.md)`,
      });
      findings.push({
        check: 'audit-owner',
        subject: table,
        ok: row.owns !== true,
        message:
          row.owns === true
            ? `this role owns ${table} and could drop or disable its triggers; run kubevisa as a role that does not`
            : `this role does not own ${table}`,
      });
    }
    return findings;
  }

  async close(): Promise<void> {
    this.assertNotInsideOwnTransaction();
    if (this.closed) return;
    this.closed = true;
    for (const feed of this.feeds) await feed.close();
    for (const appender of this.appenders) await appender.close();
    await this.leases.closePresences();
    await Promise.allSettled([...this.running]);
    await this.pool.end();
    await this.groupPool.end();
  }

  getPerson(id: string): Promise<Person | undefined> {
    return this.read((r) => r.getPerson(id));
  }
  getPersonByEmail(email: string): Promise<Person | undefined> {
    return this.read((r) => r.getPersonByEmail(email));
  }
  getPersonBySubject(issuer: string, subject: string): Promise<Person | undefined> {
    return this.read((r) => r.getPersonBySubject(issuer, subject));
  }
  listPersons(): Promise<Person[]> {
    return this.read((r) => r.listPersons());
  }
  getEngagement(id: string): Promise<Engagement | undefined> {
    return this.read((r) => r.getEngagement(id));
  }
  listEngagements(filter?: EngagementFilter): Promise<Engagement[]> {
    return this.read((r) => r.listEngagements(filter));
  }
  getVisa(id: string): Promise<StoredVisa | undefined> {
    return this.read((r) => r.getVisa(id));
  }
  listVisas(filter?: VisaFilter): Promise<StoredVisa[]> {
    return this.read((r) => r.listVisas(filter));
  }
  listVisasGrantingAt(now: Instant): Promise<StoredVisa[]> {
    return this.read((r) => r.listVisasGrantingAt(now));
  }
  listVisasInStates(states: readonly VisaState[]): Promise<StoredVisa[]> {
    return this.read((r) => r.listVisasInStates(states));
  }
  listVisasEndingBefore(
    t: Instant,
    filter?: { states?: readonly VisaState[]; cluster?: string },
  ): Promise<StoredVisa[]> {
    return this.read((r) => r.listVisasEndingBefore(t, filter));
  }
  nextVisaDeadlineAfter(t: Instant): Promise<Instant | undefined> {
    return this.read((r) => r.nextVisaDeadlineAfter(t));
  }
  getIntent(id: string): Promise<Intent | undefined> {
    return this.read((r) => r.getIntent(id));
  }
  listPendingIntents(filter?: IntentFilter): Promise<Intent[]> {
    return this.read((r) => r.listPendingIntents(filter));
  }
  getSession(id: string): Promise<Session | undefined> {
    return this.read((r) => r.getSession(id));
  }
  getSessionBySecretHash(secretHash: string): Promise<Session | undefined> {
    return this.read((r) => r.getSessionBySecretHash(secretHash));
  }
  listSessionsOfPerson(personId: string): Promise<Session[]> {
    return this.read((r) => r.listSessionsOfPerson(personId));
  }
  getLogin(id: string): Promise<PendingLogin | undefined> {
    return this.read((r) => r.getLogin(id));
  }
  getLoginByLookupKey(lookupKey: string): Promise<PendingLogin | undefined> {
    return this.read((r) => r.getLoginByLookupKey(lookupKey));
  }
  listAudit(filter?: AuditFilter): Promise<AuditEvent[]> {
    return this.read((r) => r.listAudit(filter));
  }
  getAuditHead(): Promise<{ seq: number; hash: string } | undefined> {
    return this.read((r) => r.getAuditHead());
  }
  getAuditEvent(seq: number): Promise<AuditEvent | undefined> {
    return this.read((r) => r.getAuditEvent(seq));
  }
  listAuditRecords(filter?: AuditFilter): Promise<AuditRecord[]> {
    return this.read((r) => r.listAuditRecords(filter));
  }
  listAuditCheckpoints(filter?: AuditCheckpointFilter): Promise<AuditCheckpoint[]> {
    return this.read((r) => r.listAuditCheckpoints(filter));
  }
  getCluster(name: string): Promise<ClusterRecord | undefined> {
    return this.read((r) => r.getCluster(name));
  }
  listClusters(): Promise<ClusterRecord[]> {
    return this.read((r) => r.listClusters());
  }
  getRegisteredCluster(name: string): Promise<RegisteredClusterRecord | undefined> {
    return this.read((r) => r.getRegisteredCluster(name));
  }
  listRegisteredClusters(): Promise<RegisteredClusterRecord[]> {
    return this.read((r) => r.listRegisteredClusters());
  }
  getProfile(name: string): Promise<Profile | undefined> {
    return this.read((r) => r.getProfile(name));
  }
  listProfiles(): Promise<Profile[]> {
    return this.read((r) => r.listProfiles());
  }
  getSetting(key: string): Promise<JsonValue | undefined> {
    return this.read((r) => r.getSetting(key));
  }
  getScimUser(id: string): Promise<ScimUserRecord | undefined> {
    return this.read((r) => r.getScimUser(id));
  }
  getScimUserByUserName(userName: string): Promise<ScimUserRecord | undefined> {
    return this.read((r) => r.getScimUserByUserName(userName));
  }
  listScimUsersByEmail(email: string): Promise<ScimUserRecord[]> {
    return this.read((r) => r.listScimUsersByEmail(email));
  }
  listScimUsers(): Promise<ScimUserRecord[]> {
    return this.read((r) => r.listScimUsers());
  }
  getScimGroup(id: string): Promise<ScimGroupRecord | undefined> {
    return this.read((r) => r.getScimGroup(id));
  }
  getScimGroupByDisplayName(displayName: string): Promise<ScimGroupRecord | undefined> {
    return this.read((r) => r.getScimGroupByDisplayName(displayName));
  }
  listScimGroups(): Promise<ScimGroupRecord[]> {
    return this.read((r) => r.listScimGroups());
  }
  listScimGroupsOfUser(userId: string): Promise<ScimGroupRecord[]> {
    return this.read((r) => r.listScimGroupsOfUser(userId));
  }
  getScimToken(id: string): Promise<ScimTokenRecord | undefined> {
    return this.read((r) => r.getScimToken(id));
  }
  listScimTokens(): Promise<ScimTokenRecord[]> {
    return this.read((r) => r.listScimTokens());
  }
  listScimLinks(filter?: { email?: string; idp?: string }): Promise<ScimLinkRecord[]> {
    return this.read((r) => r.listScimLinks(filter));
  }
  getOffboarding(id: string): Promise<OffboardingRecord | undefined> {
    return this.read((r) => r.getOffboarding(id));
  }
  listOffboardings(filter?: OffboardingFilter): Promise<OffboardingRecord[]> {
    return this.read((r) => r.listOffboardings(filter));
  }
}
