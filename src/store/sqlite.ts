/**
 * The embedded store: SQLite through Node's built-in `node:sqlite` (no native addon), WAL journal with
 * `synchronous=FULL` so a transaction is on disk before `transaction()` resolves.
 *
 * Writes go through one connection. node:sqlite is synchronous while the Store API is async: a transaction
 * callback may await between statements, so transactions are queued and run one at a time, in call order.
 * They are committed in groups (see `runGroup`): every transaction waiting when a group starts shares one
 * COMMIT, so one fsync acknowledges many of them. This disk does a few thousand fsyncs a second; group commit is
 * what lets concurrent writers (every API action and gateway request appends an audit event) go beyond that
 * without acknowledging anything before it is durable. Groups start with BEGIN IMMEDIATE, taking SQLite's write
 * lock up front, so another process writing the same file waits at the start (up to the busy timeout) instead
 * of failing at commit.
 *
 * Direct reads use a second connection, which in WAL mode sees only committed data and does not wait for the
 * writer.
 *
 * Open one store per database file per process: two stores on the same file in one process do not share the
 * queue, and one waiting for the other's write lock would block the event loop the other needs to finish. (The
 * gateway's audit thread, sqlite-audit-thread.ts, has its own event loop.) A server opens it through open.ts, which
 * also holds the data folder's lock (sqlite-lock.ts), so a second server cannot open the same file at all.
 */
import { exclusiveLeases } from './exclusive-leases.ts';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DatabaseSync, constants as sqliteConstants, type StatementSync } from 'node:sqlite';
import type { Engagement, Instant, Person, Profile, VisaState } from '../domain/model.ts';
import { InvalidInput } from '../domain/errors.ts';
import { StoreUnavailable } from './errors.ts';
import { integer, text } from './rows.ts';
import { AUDIT_GUARD_TRIGGERS, SQLITE_MIGRATIONS, type Migration } from './sqlite-schema.ts';
import { AuditHeadCache, SqliteTx, StatementCache, translateSqliteError } from './sqlite-tx.ts';
import { transactionAppender } from './appender.ts';
import { lockDataFolder, type FolderLock } from './sqlite-lock.ts';
import { SqliteAuditThread } from './sqlite-audit-thread.ts';
import type {
  AuditAppender,
  ChangeFeed,
  IntegrityFinding,
  AuditCheckpoint,
  AuditCheckpointFilter,
  AuditEvent,
  AuditFilter,
  AuditRecord,
  ClusterRecord,
  RegisteredClusterRecord,
  EngagementFilter,
  Intent,
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
} from './store.ts';

/** How long a write waits for another process's lock by default, in milliseconds. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** Most transactions committed together by default (bounds a group's latency and memory). */
export const DEFAULT_MAX_GROUP_SIZE = 1000;

export interface SqliteStoreOptions {
  /** Database file; created with its directory's permissions if missing. `:memory:` gives a throwaway database. */
  path: string;
  /** Clock for the store's own bookkeeping (when a migration was applied); default `Date.now`. */
  now?: () => Instant;
  /**
   * How long to wait for another process's write lock before failing with StoreUnavailable, in milliseconds;
   * default 5000. The wait blocks this process's event loop (node:sqlite is synchronous).
   */
  busyTimeoutMs?: number;
  /** The migrations to apply; default the released schema. Tests pass their own list. */
  migrations?: readonly Migration[];
  /**
   * Most transactions committed together in one group (one fsync); default 1000. 1 commits each transaction
   * on its own (benchmarks compare the two).
   */
  maxGroupSize?: number;
  /**
   * Folders to hold the exclusive lock of (sqlite-lock.ts) for as long as the store is open, taken before the
   * database is touched: what the server passes (its data folder), so a second server on it refuses at once.
   * Default none (tests, the audit thread's second connection in the same process).
   */
  lockFolders?: readonly string[];
  /** Told what the operator should know about the open (a stale lock taken over); default: nothing. */
  onNotice?: (message: string) => void;
}

export interface SqliteStore extends Store {
  readonly engine: 'sqlite';
  readonly path: string;
  /** Versions of the migrations this open applied, in order; empty when the schema was already current. */
  readonly appliedMigrations: readonly number[];
  /**
   * Append-only triggers of the audit trail that this open found missing and recreated: someone with the file
   * removed them, and the server records it. Empty normally.
   */
  readonly restoredGuards: readonly string[];
}

/** A transaction waiting for its turn. */
interface TransactionJob {
  kind: 'transaction';
  work: (tx: StoreTx) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}
/** A step that needs the write connection with no transaction open: closing, or a read of a `:memory:` store. */
interface ExclusiveJob {
  kind: 'exclusive';
  /** Settles its own caller's promise; never rejects. */
  run: () => Promise<void>;
}
type Job = TransactionJob | ExclusiveJob;

/** Transaction-control statements, prepared once: they run several times per group. */
interface ControlStatements {
  begin: StatementSync;
  commit: StatementSync;
  rollback: StatementSync;
  savepoint: StatementSync;
  release: StatementSync;
  rollbackToSavepoint: StatementSync;
}

/** Resolves on the event loop's check phase: after pending I/O callbacks and every queued microtask. */
function nextTurnOfEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Which store transaction the current async context runs inside. A new transaction on the same store from
 * inside a transaction callback would queue behind that callback: a deadlock. A direct read would not see the
 * callback's own uncommitted writes (or, on `:memory:`, deadlock too). This lets the store refuse both with a
 * clear message instead.
 */
const activeTransaction = new AsyncLocalStorage<{ store: SqliteStoreImpl; tx: SqliteTx }>();

/** Opens (creating if needed) the database at `options.path`, configures it and applies pending migrations. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const now = options.now ?? Date.now;
  const maxGroupSize = options.maxGroupSize ?? DEFAULT_MAX_GROUP_SIZE;
  if (!Number.isSafeInteger(maxGroupSize) || maxGroupSize < 1) {
    throw new InvalidInput(`maxGroupSize must be a whole number >= 1; got ${maxGroupSize}`);
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const locks: FolderLock[] = [];
  const releaseLocks = async () => {
    for (const lock of locks.splice(0).reverse()) await lock.release();
  };
  try {
    for (const folder of new Set(options.lockFolders ?? [])) {
      locks.push(await lockDataFolder(folder, options.onNotice ? { onNotice: options.onNotice } : {}));
    }
  } catch (error) {
    await releaseLocks();
    throw error;
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(options.path, { enableForeignKeyConstraints: true });
  } catch (error) {
    await releaseLocks();
    throw new StoreUnavailable(`cannot open the database ${options.path}: ${String(error)}`, { cause: error });
  }
  let reader: DatabaseSync | undefined;
  try {
    configureConnection(db, options.path, busyTimeoutMs);
    const migrations = options.migrations ?? SQLITE_MIGRATIONS;
    const applied = migrate(db, migrations, now());
    const restoredGuards = restoreAuditGuards(db, migrations.length);
    installRuntimeGuards(db);
    // A second connection serves reads: in WAL mode it sees only committed data, so a read never shows what a
    // group still being written might yet lose. A :memory: database is private to its connection, so it has none.
    if (options.path !== ':memory:') {
      reader = new DatabaseSync(options.path, { enableForeignKeyConstraints: true });
      reader.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
      reader.exec('PRAGMA query_only = ON');
    }
    return new SqliteStoreImpl({
      db,
      reader,
      path: options.path,
      appliedMigrations: applied,
      restoredGuards,
      schemaVersion: migrations.length,
      busyTimeoutMs,
      maxGroupSize,
      releaseLocks,
    });
  } catch (error) {
    reader?.close();
    db.close();
    await releaseLocks();
    throw error;
  }
}

/**
 * Sets the per-connection guarantees the store relies on. Exported for tests: synchronous and busy_timeout are
 * per connection, so they can only be observed on the connection that set them.
 */
export function configureConnection(db: DatabaseSync, path: string, busyTimeoutMs: number): void {
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    throw new InvalidInput(`busy timeout must be a whole number of milliseconds >= 0; got ${busyTimeoutMs}`);
  }
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  const journal = db.prepare('PRAGMA journal_mode = WAL').get();
  const mode = journal === undefined ? undefined : text(journal, 'pragma', 'journal_mode');
  // An in-memory database cannot use WAL (and has nothing to make durable); a file must, or writers would block
  // readers and the durability argument below would not hold.
  const expected = path === ':memory:' ? 'memory' : 'wal';
  if (mode !== expected) {
    throw new StoreUnavailable(`cannot switch ${path} to WAL journal mode (got ${String(mode)})`);
  }
  // FULL: WAL is fsynced at every commit, so nothing is acknowledged before it survives a power cut (NORMAL
  // could lose the last transactions, which would un-revoke a visa or drop an audit event).
  db.exec('PRAGMA synchronous = FULL');
  // Savepoints (one per transaction in a commit group) and triggers (the audit trail's guards) journal every page
  // a statement first changes; in a temporary file that doubles the cost of an insert, in memory it is a copy.
  db.exec('PRAGMA temp_store = MEMORY');
  db.exec('PRAGMA foreign_keys = ON');
}

/** Applies the migrations `db` lacks, all in one transaction; returns the versions applied. */
function migrate(db: DatabaseSync, migrations: readonly Migration[], now: Instant): number[] {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`migration list out of order: position ${index + 1} holds version ${migration.version}`);
    }
  });
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, ' +
        'applied_at INTEGER NOT NULL) STRICT',
    );
    const appliedRows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
    appliedRows.forEach((row, index) => {
      const version = integer(row, 'schema_migrations', 'version');
      const name = text(row, 'schema_migrations', 'name');
      const known = migrations[index];
      if (version !== index + 1 || known === undefined) {
        throw new StoreUnavailable(
          `database schema version ${version} is not one this kubevisa knows (it knows 1..${migrations.length}); ` +
            'was the database written by a newer kubevisa?',
          { details: { version, known: migrations.length } },
        );
      }
      if (known.name !== name) {
        throw new StoreUnavailable(
          `database migration ${version} is "${name}" but this kubevisa's is "${known.name}": different builds`,
          { details: { version } },
        );
      }
    });
    const applied: number[] = [];
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const migration of migrations.slice(appliedRows.length)) {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, now);
      applied.push(migration.version);
    }
    db.exec('COMMIT');
    return applied;
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw translateSqliteError(error);
  }
}

/**
 * Recreates any append-only trigger of the audit trail that is missing (someone with the file dropped it) and
 * returns the names of those it recreated, so the server can record that the guards had been removed.
 */
function restoreAuditGuards(db: DatabaseSync, schemaVersion: number): string[] {
  const present = new Set(
    db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
      .all()
      .map((row) => text(row, 'sqlite_master', 'name')),
  );
  // A guard from a migration this database has not had (a test's shorter migration list) is not missing.
  const missing = AUDIT_GUARD_TRIGGERS.filter((guard) => guard.migration <= schemaVersion && !present.has(guard.name));
  for (const guard of missing) db.exec(guard.sql);
  return missing.map((guard) => guard.name);
}

/** Tables whose rows the running server may only ever insert. */
const APPEND_ONLY_TABLES = new Set(['audit_events', 'audit_checkpoints']);

/**
 * Narrows what this connection may do, whatever SQL reaches it: no UPDATE or DELETE of audit rows, no dropping
 * or altering the audit tables or their triggers, no writable schema. SQLite has no database roles; its
 * authorizer, consulted whenever a statement is compiled, is the run-time equivalent of a role without those
 * grants, and holds even if a trigger was dropped behind the server's back. Exported for tests.
 */
export function installRuntimeGuards(db: DatabaseSync): void {
  const protectedTable = (name: string | null) => name !== null && APPEND_ONLY_TABLES.has(name);
  db.setAuthorizer((action, arg1, arg2) => {
    switch (action) {
      case sqliteConstants.SQLITE_UPDATE:
      case sqliteConstants.SQLITE_DELETE:
      case sqliteConstants.SQLITE_DROP_TABLE:
        return protectedTable(arg1) ? sqliteConstants.SQLITE_DENY : sqliteConstants.SQLITE_OK;
      case sqliteConstants.SQLITE_DROP_TRIGGER:
      case sqliteConstants.SQLITE_ALTER_TABLE:
        // DROP TRIGGER: arg1 is the trigger, arg2 its table. ALTER TABLE: arg1 is the schema, arg2 the table.
        return protectedTable(arg2) ? sqliteConstants.SQLITE_DENY : sqliteConstants.SQLITE_OK;
      case sqliteConstants.SQLITE_PRAGMA:
        return arg1?.toLowerCase() === 'writable_schema' ? sqliteConstants.SQLITE_DENY : sqliteConstants.SQLITE_OK;
      default:
        return sqliteConstants.SQLITE_OK;
    }
  });
}

class SqliteStoreImpl implements SqliteStore {
  readonly engine = 'sqlite';
  readonly leases = exclusiveLeases();
  readonly path: string;
  readonly appliedMigrations: readonly number[];
  readonly restoredGuards: readonly string[];
  private readonly db: DatabaseSync;
  private readonly statements: StatementCache;
  private readonly control: ControlStatements;
  /** The read connection and its statements; undefined for `:memory:`, whose reads use `db` between groups. */
  private readonly reader: { db: DatabaseSync; statements: StatementCache } | undefined;
  private readonly maxGroupSize: number;
  private readonly schemaVersion: number;
  private readonly busyTimeoutMs: number;
  private readonly releaseLocks: () => Promise<void>;
  /** Guards restored (at open or by a later check) not yet returned by `checkIntegrity`. */
  private unreportedGuards: string[];
  private readonly auditHead = new AuditHeadCache();
  private readonly queue: Job[] = [];
  private draining = false;
  private closed = false;

  constructor(options: {
    db: DatabaseSync;
    reader: DatabaseSync | undefined;
    path: string;
    appliedMigrations: readonly number[];
    restoredGuards: readonly string[];
    schemaVersion: number;
    busyTimeoutMs: number;
    maxGroupSize: number;
    releaseLocks: () => Promise<void>;
  }) {
    this.db = options.db;
    this.path = options.path;
    this.appliedMigrations = options.appliedMigrations;
    this.restoredGuards = options.restoredGuards;
    this.unreportedGuards = [...options.restoredGuards];
    this.schemaVersion = options.schemaVersion;
    this.busyTimeoutMs = options.busyTimeoutMs;
    this.releaseLocks = options.releaseLocks;
    this.maxGroupSize = options.maxGroupSize;
    this.statements = new StatementCache(options.db);
    this.reader =
      options.reader === undefined ? undefined : { db: options.reader, statements: new StatementCache(options.reader) };
    this.control = {
      begin: options.db.prepare('BEGIN IMMEDIATE'),
      commit: options.db.prepare('COMMIT'),
      rollback: options.db.prepare('ROLLBACK'),
      savepoint: options.db.prepare('SAVEPOINT kubevisa_tx'),
      release: options.db.prepare('RELEASE kubevisa_tx'),
      rollbackToSavepoint: options.db.prepare('ROLLBACK TO kubevisa_tx'),
    };
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

  async transaction<T>(work: (tx: StoreTx) => Promise<T>): Promise<T> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ kind: 'transaction', work, resolve: (value) => resolve(value as T), reject });
      this.schedule();
    });
  }

  /** Runs `step` alone on the write connection, after every transaction asked for before it has settled. */
  private exclusive<T>(step: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ kind: 'exclusive', run: () => step().then(resolve, reject) });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.draining) return;
    this.draining = true;
    // Start on a microtask, so every transaction asked for in the same synchronous burst joins the first group.
    queueMicrotask(() => void this.drain());
  }

  /** Works through the queue: runs of transactions as commit groups, exclusive steps alone, in call order. */
  private async drain(): Promise<void> {
    try {
      for (let next = this.queue[0]; next !== undefined; next = this.queue[0]) {
        if (next.kind === 'exclusive') {
          this.queue.shift();
          await next.run();
        } else if (this.closed) {
          this.queue.shift();
          next.reject(new StoreUnavailable('the store is closed'));
        } else {
          await this.runGroup();
          // The callers just acknowledged often start their next transaction at once (a burst of requests, a
          // benchmark's writers); letting them queue first makes the next group carry them all in one fsync.
          await nextTurnOfEventLoop();
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private takeTransaction(): TransactionJob | undefined {
    const next = this.queue[0];
    if (next === undefined || next.kind !== 'transaction') return undefined;
    this.queue.shift();
    return next;
  }

  /**
   * Group commit: the transactions waiting now (up to maxGroupSize) run one after another inside one SQLite
   * transaction, each in its own savepoint so a failing one rolls back alone, and a single COMMIT makes them all
   * durable with one fsync. Only then is any of them acknowledged; if the COMMIT fails, all of them fail and none
   * was kept. A transaction in the group sees the ones before it, which commit with it or fail with it.
   */
  private async runGroup(): Promise<void> {
    const done: { job: TransactionJob; value: unknown }[] = [];
    this.auditHead.forget();
    try {
      this.control.begin.run();
    } catch (error) {
      // Not even the write lock could be had (another process held it past the busy timeout): refuse the first
      // waiting transaction; the next group tries again.
      this.takeTransaction()?.reject(translateSqliteError(error));
      return;
    }
    for (let job = this.takeTransaction(); job !== undefined; job = this.takeTransaction()) {
      const lost = await this.runInSavepoint(job, done);
      if (lost) return;
      if (done.length >= this.maxGroupSize) break;
    }
    if (done.length === 0) {
      this.endAfterFailure(undefined);
      return;
    }
    try {
      this.control.commit.run();
    } catch (error) {
      const failure = this.endAfterFailure(error);
      for (const member of done) member.job.reject(failure);
      return;
    }
    for (const member of done) member.job.resolve(member.value);
  }

  /**
   * Runs one transaction of the group in a savepoint; on success adds it to `done`, on failure rolls back to the
   * savepoint and rejects it. Returns true when the whole group was lost (SQLite ended the transaction itself,
   * e.g. on an I/O error): then every member has been rejected.
   */
  private async runInSavepoint(job: TransactionJob, done: { job: TransactionJob; value: unknown }[]): Promise<boolean> {
    const tx = new SqliteTx(this.statements, this.auditHead);
    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      this.control.savepoint.run();
      outcome = { ok: true, value: await activeTransaction.run({ store: this, tx }, () => job.work(tx)) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    tx.end();
    try {
      if (!this.db.isTransaction) throw new Error('SQLite ended the transaction');
      if (!outcome.ok) {
        this.auditHead.forget();
        this.control.rollbackToSavepoint.run();
      }
      this.control.release.run();
    } catch (error) {
      const failure = this.endAfterFailure(outcome.ok ? error : outcome.error);
      job.reject(outcome.ok ? failure : translateSqliteError(outcome.error));
      for (const member of done) member.job.reject(failure);
      return true;
    }
    if (outcome.ok) done.push({ job, value: outcome.value });
    else job.reject(outcome.error);
    return false;
  }

  /**
   * Ends the group's transaction after a failure (if SQLite has not already done so) and returns the error to
   * reject its members with: StoreUnavailable, since nothing of the group was kept.
   */
  private endAfterFailure(cause: unknown): Error {
    this.auditHead.forget();
    let rollbackError: unknown;
    if (this.db.isTransaction) {
      try {
        this.control.rollback.run();
      } catch (error) {
        rollbackError = error;
      }
    }
    const translated = cause === undefined ? undefined : translateSqliteError(cause);
    const reason = translated instanceof Error ? translated.message : 'the transaction failed';
    return new StoreUnavailable(
      `the change could not be made durable, so it was not made (${reason})`,
      rollbackError === undefined
        ? { cause: translated }
        : // The connection is in an unknown state; keep both errors so the operator sees the original cause.
          { cause: new AggregateError([translated, rollbackError], 'transaction failed and could not be rolled back') },
    );
  }

  /** Runs reads outside any transaction: each statement sees the latest committed state. */
  private async read<T>(reads: (reader: StoreReader) => Promise<T>): Promise<T> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    const run = async (statements: StatementCache) => {
      this.assertOpen();
      const reader = new SqliteTx(statements);
      try {
        return await reads(reader);
      } finally {
        reader.end();
      }
    };
    if (this.reader !== undefined) return run(this.reader.statements);
    // One connection only: wait until no group is open, so the read cannot see uncommitted work.
    return this.exclusive(() => run(this.statements));
  }

  openAuditAppender(): AuditAppender {
    this.assertOpen();
    // A :memory: database is private to its connection: no thread can reach it.
    if (this.path === ':memory:') return transactionAppender(this);
    return new SqliteAuditThread({ path: this.path, busyTimeoutMs: this.busyTimeoutMs });
  }

  /** One process per data folder (the lock): there is nobody to tell, and nobody tells it anything. */
  openChangeFeed(): ChangeFeed {
    this.assertOpen();
    return { publish: async () => undefined, subscribe: () => undefined, close: async () => undefined };
  }

  async checkIntegrity(): Promise<IntegrityFinding[]> {
    this.assertNotInsideOwnTransaction();
    this.assertOpen();
    // DDL needs the write connection with no group open.
    const restored = await this.exclusive(async () => {
      this.assertOpen();
      try {
        return restoreAuditGuards(this.db, this.schemaVersion);
      } catch (error) {
        throw translateSqliteError(error);
      }
    });
    const names = [...new Set([...this.unreportedGuards, ...restored])];
    this.unreportedGuards = [];
    if (names.length === 0) return [];
    return [
      {
        action: 'audit.guards-restored',
        reason: 'append-only triggers of the audit trail were removed outside kubevisa',
        details: { triggers: names },
      },
    ];
  }

  async close(): Promise<void> {
    this.assertNotInsideOwnTransaction();
    await this.exclusive(async () => {
      if (this.closed) return;
      this.closed = true;
      this.reader?.db.close();
      this.db.close();
      await this.releaseLocks();
    });
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
