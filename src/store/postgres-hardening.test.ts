/**
 * What the outside review of the PostgreSQL engine found, each proven closed against the real server: the audit
 * guards cannot be fooled by a temporary table that shadows the trail, and the URL's sslmode is honoured (never a
 * silent fall-back to plain text).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { InvalidInput } from '../domain/errors.ts';
import { openPostgresStore, runtimeRoleGrants, type PostgresStore } from './postgres/store.ts';
import { createTestDatabase, type TestDatabase } from './postgres/test-database.ts';

let database: TestDatabase;
let runtimeRole: string;
/** The certificate the machine's PostgreSQL serves (Debian's default, CN=localhost), read from the server. */
let serverCertFile: string;

before(async () => {
  database = await createTestDatabase('kv_hardening');
  runtimeRole = await database.createRole('runtime');
  const owner = await openPostgresStore({ url: database.url });
  await owner.close();
  for (const statement of runtimeRoleGrants(runtimeRole)) await database.admin(statement);
  const ssl = await database.admin(`SELECT current_setting('ssl') AS on, current_setting('ssl_cert_file') AS file`);
  assert.equal(ssl.rows[0].on, 'on', 'these tests need the test PostgreSQL to offer TLS (Debian enables it)');
  serverCertFile = String(ssl.rows[0].file);
});
after(async () => {
  await database?.drop();
});

function urlWith(params: Record<string, string>, host = '127.0.0.1', role?: string): string {
  const url = new URL(database.url);
  url.hostname = host;
  if (role !== undefined) url.username = role;
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

async function tlsInUse(store: PostgresStore): Promise<boolean> {
  const client = await store.connect();
  try {
    const result = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return result.rows[0].ssl === true;
  } finally {
    client.release();
  }
}

describe('audit guards and temporary tables', () => {
  test('a temporary audit_events holding a forged head does not let the runtime role insert a broken link', async () => {
    const client = new pg.Client({ connectionString: urlWith({}, '127.0.0.1', runtimeRole) });
    await client.connect();
    try {
      const insert = (seq: number, prev: string) =>
        client.query(
          `INSERT INTO public.audit_events (seq, at, actor, action, outcome, details_json, prev_hash, hash)
           VALUES ($1, 0, 'x', 'x', 'ok', '{}', $2, $3)`,
          [seq, prev, `h${seq}`],
        );
      await insert(1, '0'.repeat(64));
      await client.query(`CREATE TEMP TABLE audit_events (seq bigint, hash text)`);
      await client.query(`INSERT INTO audit_events VALUES (4, 'forged')`);
      await assert.rejects(insert(5, 'forged'), /does not extend the head of the chain/);
      const trail = await database.admin('SELECT seq FROM public.audit_events ORDER BY seq');
      assert.deepEqual(
        trail.rows.map((row) => Number(row.seq)),
        [1],
      );
    } finally {
      await client.end();
    }
  });
});

describe('sslmode in store.url', () => {
  test('verify-ca with the server’s CA connects over TLS', async () => {
    const store = await openPostgresStore({
      url: urlWith({ sslmode: 'verify-ca', sslrootcert: serverCertFile }, '127.0.0.1', runtimeRole),
    });
    try {
      assert.equal(await tlsInUse(store), true);
    } finally {
      await store.close();
    }
  });

  test('verify-full checks the host name: the certificate names localhost, so 127.0.0.1 is refused', async () => {
    await assert.rejects(
      openPostgresStore({
        url: urlWith({ sslmode: 'verify-full', sslrootcert: serverCertFile }, '127.0.0.1', runtimeRole),
        connectTimeoutMs: 5000,
      }),
      /localhost|altnames|Hostname|host name/i,
    );
    const store = await openPostgresStore({
      url: urlWith({ sslmode: 'verify-full', sslrootcert: serverCertFile }, 'localhost', runtimeRole),
    });
    try {
      assert.equal(await tlsInUse(store), true);
    } finally {
      await store.close();
    }
  });

  test('require verifies the certificate too: a self-signed one not named as sslrootcert is refused', async () => {
    await assert.rejects(
      openPostgresStore({ url: urlWith({ sslmode: 'require' }, '127.0.0.1', runtimeRole), connectTimeoutMs: 5000 }),
      /self[- ]signed|certificate/i,
    );
  });

  test('no sslmode is plain text, as the URL says', async () => {
    const store = await openPostgresStore({ url: urlWith({}, '127.0.0.1', runtimeRole) });
    try {
      assert.equal(await tlsInUse(store), false);
    } finally {
      await store.close();
    }
  });

  for (const [params, message] of [
    [{ sslmode: 'prefer' }, /sslmode=prefer is not supported.*never falls back to plain text/],
    [{ sslmode: 'allow' }, /sslmode=allow is not supported/],
    [{ sslmode: 'verify_full' }, /sslmode=verify_full is not supported/],
    [{ sslrootcert: '/etc/ssl/certs/ca-certificates.crt' }, /names TLS files but no sslmode/],
    [{ sslmode: 'verify-full', sslcrl: '/x' }, /sslcrl is not supported/],
    [
      { sslmode: 'verify-full', sslrootcert: '/nonexistent/ca.pem' },
      /sslrootcert=\/nonexistent\/ca.pem cannot be read/,
    ],
  ] as const) {
    test(`refuses ${new URLSearchParams(params).toString()} with a clear message`, async () => {
      await assert.rejects(openPostgresStore({ url: urlWith(params) }), (error: unknown) => {
        assert.ok(error instanceof InvalidInput, String(error));
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
