/**
 * Throwaway databases on the test machine's PostgreSQL (127.0.0.1:5432, trust authentication, user postgres),
 * for tests and benchmarks: each run creates its own `kv_test_<random>` database and drops it at the end, so
 * runs in parallel never see each other's data. `KUBEVISA_TEST_POSTGRES_URL` points elsewhere (it must name a
 * role allowed to create databases).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** The administrative connection: the server's `postgres` database. */
export const TEST_POSTGRES_URL =
  process.env.KUBEVISA_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  /** URL of the new database, same server and role as the administrative one. */
  url: string;
  name: string;
  /** Runs one statement on the new database as the administrative role. */
  admin(sql: string): Promise<pg.QueryResult>;
  /** Creates a login role `<database>_<suffix>` (roles belong to the server, so drop() removes it too). */
  createRole(suffix: string): Promise<string>;
  /** Drops the database (ending any connection left open) and the roles created for it. */
  drop(): Promise<void>;
}

async function withClient<T>(url: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/**
 * The administrative connection of the PostgreSQL server that fault tests restart (restartTestPostgres): a cluster of
 * the tests' own (scripts/setup.d/20-postgres.sh makes one on port 5433), else the machine's.
 */
export const RESTARTABLE_POSTGRES_URL = process.env.KUBEVISA_TEST_POSTGRES_RESTART_URL ?? TEST_POSTGRES_URL;

/**
 * Creates an empty database on `server` (an administrative URL, default TEST_POSTGRES_URL); fails with the server's
 * own message when PostgreSQL cannot be reached.
 */
export async function createTestDatabase(prefix = 'kv_test', server = TEST_POSTGRES_URL): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await withClient(server, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(server);
  url.pathname = `/${name}`;
  const roles: string[] = [];
  return {
    url: url.toString(),
    name,
    admin: (sql) => withClient(url.toString(), (client) => client.query(sql)),
    createRole: async (suffix) => {
      const role = `${name}_${suffix}`;
      await withClient(server, (client) => client.query(`CREATE ROLE ${role} LOGIN`));
      roles.push(role);
      return role;
    },
    drop: () =>
      withClient(server, async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        for (const role of roles) await client.query(`DROP ROLE IF EXISTS ${role}`);
      }),
  };
}

/**
 * The cluster fault tests restart, as Debian's postgresql-common names it: `<version> main`, the machine's, unless
 * KUBEVISA_TEST_POSTGRES_CLUSTER names another (the tests' own, at KUBEVISA_TEST_POSTGRES_RESTART_URL, so that the
 * restart does not cut off other tests using the machine's). Databases to restart under: RESTARTABLE_POSTGRES_URL.
 */
const CLUSTER_NAME = process.env.KUBEVISA_TEST_POSTGRES_CLUSTER ?? 'main';

/**
 * Restarts the test PostgreSQL with a fast shutdown (every session ends, in-flight transactions roll back) and waits
 * until it accepts connections again (at most a minute). Needs root (pg_ctlcluster); throws with what went wrong.
 */
export async function restartTestPostgres(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('restarting PostgreSQL needs root (pg_ctlcluster): run this test as root');
  const version = readdirSync('/etc/postgresql').sort().at(-1);
  if (version === undefined)
    throw new Error('no PostgreSQL cluster under /etc/postgresql: this test restarts the local one');
  const restart = spawnSync(
    'pg_ctlcluster',
    ['--skip-systemctl-redirect', version, CLUSTER_NAME, 'restart', '-m', 'fast'],
    {
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  if (restart.status !== 0) throw new Error(`pg_ctlcluster restart failed: ${restart.stderr}`);
  const port = new URL(RESTARTABLE_POSTGRES_URL).port || '5432';
  for (let waited = 0; waited < 60_000; waited += 100) {
    if (spawnSync('pg_isready', ['-q', '-h', '127.0.0.1', '-p', port]).status === 0) return;
    await sleep(100);
  }
  throw new Error('PostgreSQL did not accept connections within a minute of its restart');
}
