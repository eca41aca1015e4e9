/**
 * Moving an installation from SQLite to PostgreSQL (`kubevisa store migrate`): every table copied row for row,
 * in the SQLite file's insertion order, inside ONE PostgreSQL transaction, so a failure leaves the target as empty
 * as it was. The audit trail is verified on the source before anything is written and again, read back from
 * PostgreSQL, after the copy; the copied events keep their bytes (details_json as stored), seqs and hashes, and
 * the target's own triggers check that each one extends the chain as it goes in.
 */
import { existsSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { InvalidInput } from '../../domain/errors.ts';
import { verifyChain, type ChainVerdict } from '../audit-chain.ts';
import { StoreUnavailable } from '../errors.ts';
import { openSqliteStore } from '../sqlite.ts';
import type { AuditEvent, AuditReads } from '../store.ts';
import { openPostgresStore, type PostgresStore, type PostgresStoreOptions } from './store.ts';
import { translatePgError } from './sql.ts';

/** Tables in an order that satisfies their foreign keys; the audit tables last (checkpoints name events). */
export const COPIED_TABLES: readonly string[] = [
  'persons',
  'engagements',
  'engagement_contractors',
  'visas',
  'intents',
  'sessions',
  'pending_logins',
  'clusters',
  'registered_clusters',
  'profiles',
  'settings',
  'scim_users',
  'scim_groups',
  'scim_group_members',
  'scim_tokens',
  'offboardings',
  'scim_links',
  'audit_events',
  'audit_checkpoints',
];

/** Rows per INSERT: well under PostgreSQL's 65535 parameters for the widest table. */
const ROWS_PER_INSERT = 500;

export interface MigrationProgress {
  /** `verify-source`, `copy`, `verify-target`, `done`. */
  step: string;
  table?: string;
  copied?: number;
  total?: number;
}

export interface SqliteToPostgresReport {
  /** Rows copied per table. */
  tables: Record<string, number>;
  audit: { events: number; head?: { seq: number; hash: string }; checkpoints: number };
}

/** Every audit event, in pages, verified as one chain from the genesis. */
async function verifyTrail(reads: AuditReads, where: string): Promise<{ count: number; head?: AuditEvent }> {
  let previous: { seq: number; hash: string } | undefined;
  let count = 0;
  let last: AuditEvent | undefined;
  for (;;) {
    const page = await reads.listAudit({ afterSeq: previous?.seq ?? 0, limit: 10000 });
    if (page.length === 0) break;
    const verdict: ChainVerdict = verifyChain(page, previous === undefined ? {} : { previous });
    if (!verdict.ok) {
      throw new StoreUnavailable(
        `the audit trail in ${where} does not verify: ${verdict.message}; nothing was copied`,
        {
          details: { seq: verdict.seq, fault: verdict.fault },
        },
      );
    }
    count += page.length;
    last = page.at(-1);
    previous = verdict.head;
  }
  return { count, ...(last === undefined ? {} : { head: last }) };
}

/**
 * Copies the SQLite database at `sqlitePath` into the empty PostgreSQL database `target` names. Refuses a target
 * that holds any kubevisa data, and a source whose trail does not verify. The source is opened as the server
 * opens it (current schema, its data folder locked, so no server may write it meanwhile) and not changed.
 */
export async function copySqliteToPostgres(
  sqlitePath: string,
  lockFolder: string,
  target: PostgresStoreOptions,
  progress: (update: MigrationProgress) => void = () => undefined,
): Promise<SqliteToPostgresReport> {
  // Opening a SQLite path creates the file: a mistyped --from would be "migrated" as an empty installation.
  if (!existsSync(sqlitePath)) {
    throw new InvalidInput(
      `there is no SQLite database at ${sqlitePath}: check --from (sqlite:PATH to the server's kubevisa.db); nothing was copied`,
    );
  }
  const source = await openSqliteStore({ path: sqlitePath, lockFolders: [lockFolder] });
  try {
    progress({ step: 'verify-source' });
    const sourceTrail = await verifyTrail(source, `the SQLite database ${sqlitePath}`);
    const pgStore = await openPostgresStore(target);
    try {
      const raw = new DatabaseSync(sqlitePath, { readOnly: true });
      try {
        const report = await copyTables(raw, pgStore, progress);
        progress({ step: 'verify-target' });
        const targetTrail = await verifyTrail(pgStore, 'PostgreSQL after the copy');
        if (targetTrail.count !== sourceTrail.count || targetTrail.head?.hash !== sourceTrail.head?.hash) {
          throw new StoreUnavailable(
            `the copied trail ends at seq ${targetTrail.head?.seq ?? 0} but the source at ${sourceTrail.head?.seq ?? 0}`,
          );
        }
        progress({ step: 'done' });
        return {
          ...report,
          audit: {
            events: sourceTrail.count,
            ...(sourceTrail.head === undefined
              ? {}
              : { head: { seq: sourceTrail.head.seq, hash: sourceTrail.head.hash } }),
            checkpoints: report.tables.audit_checkpoints ?? 0,
          },
        };
      } finally {
        raw.close();
      }
    } finally {
      await pgStore.close();
    }
  } finally {
    await source.close();
  }
}

async function copyTables(
  raw: DatabaseSync,
  target: PostgresStore,
  progress: (update: MigrationProgress) => void,
): Promise<Omit<SqliteToPostgresReport, 'audit'>> {
  const client = await target.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    // Nothing else may write the target while it is filled (and the chain's triggers need a still head).
    await client.query(`LOCK TABLE ${COPIED_TABLES.join(', ')} IN EXCLUSIVE MODE`);
    const occupied: string[] = [];
    for (const table of COPIED_TABLES) {
      const { rows } = await client.query(`SELECT EXISTS (SELECT 1 FROM ${table}) AS taken`);
      if (rows[0]?.taken === true) occupied.push(table);
    }
    if (occupied.length > 0) {
      throw new InvalidInput(
        `the target database already holds kubevisa data (in ${occupied.join(', ')}): migrate only into an empty ` +
          'database; nothing was copied',
        { details: { tables: occupied } },
      );
    }
    const tables: Record<string, number> = {};
    for (const table of COPIED_TABLES) {
      const columns = await matchingColumns(raw, client, table);
      const quoted = columns.map(quoteIdentifier).join(', ');
      const total = Number(raw.prepare(`SELECT count(*) AS n FROM ${table}`).get()?.n ?? 0);
      const order = table === 'audit_events' ? 'seq' : table === 'audit_checkpoints' ? 'id' : 'rowid';
      const select = raw.prepare(`SELECT ${quoted} FROM ${table} ORDER BY ${order}`);
      let copied = 0;
      let batch: unknown[][] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        const values: unknown[] = [];
        const tuples = batch.map((row) => {
          const placeholders = row.map((value) => {
            values.push(typeof value === 'bigint' ? Number(value) : value);
            return `$${values.length}`;
          });
          return `(${placeholders.join(', ')})`;
        });
        await client.query(`INSERT INTO ${table} (${quoted}) VALUES ${tuples.join(', ')}`, values);
        copied += batch.length;
        batch = [];
        progress({ step: 'copy', table, copied, total });
      };
      for (const row of select.iterate()) {
        batch.push(columns.map((column) => row[column] ?? null));
        if (batch.length >= ROWS_PER_INSERT) await flush();
      }
      await flush();
      if (total === 0) progress({ step: 'copy', table, copied: 0, total: 0 });
      tables[table] = copied;
    }
    const committed = await client.query('COMMIT');
    if (committed.command !== 'COMMIT') throw new StoreUnavailable('the copy was rolled back by PostgreSQL');
    return { tables };
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: unknown) => (broken = rollbackError as Error));
    throw translatePgError(error);
  } finally {
    client.release(broken);
  }
}

/** A plain lower-case SQL name: what every kubevisa column is called in both engines. */
const COLUMN_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Quotes a name for SQL (both dialects: double quotes, doubled inside); only plain names reach it. */
function quoteIdentifier(name: string): string {
  if (!COLUMN_NAME.test(name)) throw new Error(`not a plain column name: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/**
 * The columns to copy for `table`: those the SQLite file declares, each of which must be one of the target's own
 * as PostgreSQL's catalogue names them (the target may have more, filled by their defaults, such as an ordering
 * column only this engine keeps). Column names in the file are data, written by whoever could write the file: one
 * that is not the target's is never put into SQL; the file is refused (it was not written by this version of
 * kubevisa, or was altered) before anything is copied.
 */
async function matchingColumns(raw: DatabaseSync, client: import('pg').PoolClient, table: string): Promise<string[]> {
  const { rows } = await client.query<{ column_name: string }>(
    'SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ' +
      'ORDER BY ordinal_position',
    [table],
  );
  const target = rows.map((row) => row.column_name);
  const source = new Set(
    raw
      .prepare('SELECT name FROM pragma_table_info(?)')
      .all(table)
      .map((row) => String(row.name)),
  );
  const unknown = [...source].filter((name) => !target.includes(name));
  if (target.length === 0 || source.size === 0 || unknown.length > 0) {
    throw new InvalidInput(
      `the SQLite table ${table} does not have kubevisa's columns` +
        (unknown.length > 0 ? ` (unknown: ${unknown.map((n) => JSON.stringify(n)).join(', ')})` : '') +
        ': the file was not written by this version of kubevisa or was altered; nothing was copied',
      { details: { table, unknown } },
    );
  }
  return target.filter((name) => source.has(name));
}
