/**
 * The embedded store: SQLite through Node's built-in `node:sqlite` (no native addon), one connection per
 * process, WAL journal with `synchronous=FULL` so a transaction is on disk before `transaction()` resolves.
 *
 * node:sqlite is synchronous while the Store API is async: a transaction callback may await between statements,
 * and on a single connection a second transaction started meanwhile would run inside the first. So every
 * transaction and every direct read runs under an in-process async mutex, one at a time, in call order.
 * Transactions start with BEGIN IMMEDIATE, taking SQLite's write lock up front, so another process writing the
 * same file waits at the start (up to the busy timeout) instead of failing at commit.
 *
 * Open one store per database file per process: two stores on the same file in one process do not share the
 * mutex, and one waiting for the other's write lock would block the event loop the other needs to finish.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { DatabaseSync } from 'node:sqlite';
import type { Engagement, Instant, Person, Profile, VisaState } from '../domain/model.ts';
import { InvalidInput } from '../domain/errors.ts';
import { StoreUnavailable } from './errors.ts';
import { integer, text } from './rows.ts';
import { SQLITE_MIGRATIONS, type Migration } from './sqlite-schema.ts';
import { SqliteTx, StatementCache, translateSqliteError } from './sqlite-tx.ts';
import type {
  AuditEvent,
  AuditFilter,
  ClusterRecord,
  EngagementFilter,
  Intent,
  IntentFilter,
  JsonValue,
  PendingLogin,
  Session,
  Store,
  StoreReader,
  StoreTx,
  StoredVisa,
  VisaFilter,
} from './store.ts';

/** How long a write waits for another process's lock by default, in milliseconds. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

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
}

export interface SqliteStore extends Store {
  readonly engine: 'sqlite';
  readonly path: string;
  /** Versions of the migrations this open applied, in order; empty when the schema was already current. */
  readonly appliedMigrations: readonly number[];
}

/** Runs async critical sections one at a time, in the order they were asked for. */
class AsyncMutex {
  private tail: Promise<void> = Promise.resolve();

  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section);
    // The next section waits for this one to settle, whatever its outcome. The outcome itself (value or error)
    // reaches the caller through `result`; `tail` only orders, so both settle handlers ignore it on purpose.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/**
 * Which store transaction the current async context runs inside. A direct read or a new transaction on the
 * same store from inside a transaction callback would wait for the mutex that callback holds: a deadlock.
 * This lets the store refuse it with a clear message instead.
 */
const activeTransaction = new AsyncLocalStorage<{ store: SqliteStoreImpl; tx: SqliteTx }>();

/** Opens (creating if needed) the database at `options.path`, configures it and applies pending migrations. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const now = options.now ?? Date.now;
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(options.path, { enableForeignKeyConstraints: true });
  } catch (error) {
    throw new StoreUnavailable(`cannot open the database ${options.path}: ${String(error)}`, { cause: error });
  }
  try {
    configureConnection(db, options.path, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
    const applied = migrate(db, options.migrations ?? SQLITE_MIGRATIONS, now());
    return new SqliteStoreImpl(db, options.path, applied);
  } catch (error) {
    db.close();
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

class SqliteStoreImpl implements SqliteStore {
  readonly engine = 'sqlite';
  readonly path: string;
  readonly appliedMigrations: readonly number[];
  private readonly db: DatabaseSync;
  private readonly statements: StatementCache;
  private readonly mutex = new AsyncMutex();
  private closed = false;

  constructor(db: DatabaseSync, path: string, appliedMigrations: readonly number[]) {
    this.db = db;
    this.path = path;
    this.appliedMigrations = appliedMigrations;
    this.statements = new StatementCache(db);
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
    return this.mutex.run(async () => {
      this.assertOpen();
      try {
        this.db.exec('BEGIN IMMEDIATE');
      } catch (error) {
        throw translateSqliteError(error);
      }
      const tx = new SqliteTx(this.statements);
      let result: T;
      try {
        result = await activeTransaction.run({ store: this, tx }, () => work(tx));
      } catch (error) {
        tx.end();
        this.rollback(error);
        throw error;
      }
      tx.end();
      try {
        this.db.exec('COMMIT');
      } catch (error) {
        this.rollback(error);
        throw translateSqliteError(error);
      }
      return result;
    });
  }

  /** Rolls back the open transaction, if SQLite has not already done so for the error that ended it. */
  private rollback(reason: unknown): void {
    if (!this.db.isTransaction) return;
    try {
      this.db.exec('ROLLBACK');
    } catch (rollbackError) {
      // The connection is in an unknown state; keep both errors so the operator sees the original cause.
      throw new AggregateError([reason, rollbackError], 'transaction failed and could not be rolled back');
    }
  }

  /** Runs reads outside any transaction (each statement sees the latest committed state). */
  private async read<T>(reads: (reader: StoreReader) => Promise<T>): Promise<T> {
    this.assertNotInsideOwnTransaction();
    return this.mutex.run(async () => {
      this.assertOpen();
      const reader = new SqliteTx(this.statements);
      try {
        return await reads(reader);
      } finally {
        reader.end();
      }
    });
  }

  async close(): Promise<void> {
    this.assertNotInsideOwnTransaction();
    await this.mutex.run(async () => {
      if (this.closed) return;
      this.closed = true;
      this.db.close();
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
  listVisasEndingBefore(t: Instant, states?: readonly VisaState[]): Promise<StoredVisa[]> {
    return this.read((r) => r.listVisasEndingBefore(t, states));
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
  getCluster(name: string): Promise<ClusterRecord | undefined> {
    return this.read((r) => r.getCluster(name));
  }
  listClusters(): Promise<ClusterRecord[]> {
    return this.read((r) => r.listClusters());
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
}
