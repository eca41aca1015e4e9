/**
 * The small pieces between the engine's SQL and node-postgres: `:name` parameters turned into `$n` (so the
 * statements read like the SQLite engine's), named prepared statements reused per connection, BIGINT read back
 * as a JavaScript number, and PostgreSQL's errors turned into the store's stable ones.
 */
import pg from 'pg';
import { Conflict, NotFound } from '../../domain/errors.ts';
import { StoreUnavailable } from '../errors.ts';

/** A value a statement parameter may take. */
export type SqlValue = string | number | boolean | null;
export type Params = Record<string, SqlValue>;
/** One result row: column name → value (text, number, null). */
export type PgRow = Record<string, unknown>;

/** What can run a statement: a pool (one statement, any connection) or one client (inside a transaction). */
export interface Queryable {
  query(config: pg.QueryConfig): Promise<pg.QueryResult<PgRow>>;
}

interface Compiled {
  name: string;
  text: string;
  names: string[];
}

const compiled = new Map<string, Compiled>();

/**
 * `SELECT … WHERE id = :id` → `SELECT … WHERE id = $1` and the parameter order, cached by SQL text. Each text gets
 * a statement name, so a connection parses and plans it once and later runs only bind and execute. `::type`
 * casts are left alone.
 */
export function compile(sql: string): Compiled {
  let found = compiled.get(sql);
  if (found === undefined) {
    const names: string[] = [];
    const text = sql.replace(/(?<![:\w]):([a-z_][a-z0-9_]*)/g, (_match, name: string) => {
      let index = names.indexOf(name);
      if (index === -1) index = names.push(name) - 1;
      return `$${index + 1}`;
    });
    found = { name: `kv${compiled.size + 1}`, text, names };
    compiled.set(sql, found);
  }
  return found;
}

/** The query config for `sql` with `params` bound by name; a missing parameter is a programming error. */
export function bind(sql: string, params: Params = {}): pg.QueryConfig {
  const statement = compile(sql);
  const values = statement.names.map((name) => {
    const value = params[name];
    if (value === undefined) throw new Error(`SQL parameter :${name} has no value`);
    return value;
  });
  return { name: statement.name, text: statement.text, values };
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * Type parsers for the store's pools: BIGINT (instants in ms, seqs, versions) as a number. Every such value is
 * far below 2^53; one that is not is refused rather than rounded. COUNT(*) and SUM also return BIGINT/NUMERIC.
 */
export const STORE_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === INT8_OID || oid === NUMERIC_OID) {
      return (value: string) => {
        const parsed = Number(value);
        if (!Number.isSafeInteger(parsed)) throw new Error(`integer ${value} is beyond what the store reads exactly`);
        return parsed;
      };
    }
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** The SQLSTATE of a PostgreSQL error, or the errno-style code of a socket error. */
export function errorCode(error: unknown): string | undefined {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/** Socket-level failures: the server is down, restarting, or unreachable. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * Whether the error means the database could not be reached or stopped serving (as opposed to refusing the
 * statement): connection exceptions (08), operator intervention such as a shutdown or restart (57P0x), resources
 * exhausted such as a full disk (53), system errors (58), or a socket that closed under the client.
 */
export function isUnavailable(error: unknown): boolean {
  const code = errorCode(error);
  if (code !== undefined) {
    if (NETWORK_CODES.has(code)) return true;
    if (/^(08|53|58)/.test(code) || /^57P0[1-4]$/.test(code)) return true;
  }
  return (
    error instanceof Error &&
    /Connection terminated|connection (is )?closed|Client has encountered/i.test(error.message)
  );
}

/**
 * SQLSTATEs of a collision with concurrent transactions, after which trying again can succeed: a serialisation
 * failure (40001), a deadlock (40P01), a lock waited for longer than lock_timeout (55P03).
 */
const CONFLICT_CODES = new Set(['40001', '40P01', '55P03']);

/** Whether PostgreSQL refused the statement because of concurrent transactions (see CONFLICT_CODES). */
export function isConflict(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && CONFLICT_CODES.has(code);
}

/**
 * Turns PostgreSQL's refusals into the domain's stable errors: a unique or primary-key clash is Conflict, a
 * missing referenced row NotFound, a serialisation failure, deadlock or lock timeout Conflict (retry), an
 * unreachable database StoreUnavailable. Anything else is returned unchanged.
 */
export function translatePgError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  if (error instanceof Conflict || error instanceof NotFound || error instanceof StoreUnavailable) return error;
  const code = errorCode(error);
  if (code === '23505') return new Conflict(`already exists (${error.message})`);
  if (code === '23503') return new NotFound(`a referenced record does not exist (${error.message})`);
  if (isConflict(error)) {
    return new Conflict(
      code === '55P03'
        ? `this change waited too long for a lock a concurrent change holds (${error.message}); nothing was changed, try again`
        : `a concurrent change collided with this one (${error.message}); nothing was changed, try again`,
      { details: { postgresCode: code } },
    );
  }
  if (isUnavailable(error)) {
    return new StoreUnavailable(
      `the database is unreachable or stopped serving (${error.message}); nothing was changed, try again`,
      { cause: error, ...(code === undefined ? {} : { details: { postgresCode: code } }) },
    );
  }
  return error;
}
