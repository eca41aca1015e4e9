import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { verifyChain } from './audit-chain.ts';
import { storeConformanceSuite } from './conformance.ts';
import { openStore } from './open.ts';
import { openPostgresStore, runtimeRoleGrants, type PostgresStore } from './postgres/store.ts';
import { POSTGRES_MIGRATIONS } from './postgres/migrations.ts';
import { createTestDatabase, type TestDatabase } from './postgres/test-database.ts';
import type { PersonStatus } from '../domain/model.ts';
import type { AuditEvent, PersonLogin, Store } from './store.ts';

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
let database: TestDatabase;
let schemas = 0;
const storeSchemas = new Map<Store, string>();

/** The least-privilege role kubevisa runs as in production (docs/operations.md); the conformance suites use it. */
let runtimeRole: string;
const storeRoles = new Map<Store, string>();

before(async () => {
  database = await createTestDatabase();
  runtimeRole = await database.createRole('runtime');
});
after(async () => {
  await database.drop();
});

function urlAs(role: string | undefined): string {
  const url = new URL(database.url);
  if (role !== undefined) url.username = role;
  return url.toString();
}

/** Opens the store in `schema`, as the test's superuser or as `role`. */
async function openIn(schema: string, role?: string): Promise<PostgresStore> {
  const store = await openPostgresStore({ url: urlAs(role), schema, now: () => T0 });
  storeSchemas.set(store, schema);
  if (role !== undefined) storeRoles.set(store, role);
  return store;
}

/** A store in a schema of its own, fresh and empty, opened by the superuser (the schema's owner here). */
async function openFresh(): Promise<PostgresStore> {
  const schema = `s${++schemas}`;
  await database.admin(`CREATE SCHEMA ${schema}`);
  return openIn(schema);
}

/**
 * As production runs: the owner migrates the fresh schema, the runtime role gets the documented grants and the
 * store runs as that role (so its integrity check has nothing to report).
 */
async function openFreshAsRuntimeRole(): Promise<PostgresStore> {
  const owner = await openFresh();
  const schema = storeSchemas.get(owner) ?? '';
  await owner.close();
  for (const statement of runtimeRoleGrants(runtimeRole, schema)) await database.admin(statement);
  return openIn(schema, runtimeRole);
}

storeConformanceSuite('postgres', openFreshAsRuntimeRole, {
  reopen: async (previous) => {
    const schema = storeSchemas.get(previous);
    assert.ok(schema, 'store was not opened by this harness');
    return openIn(schema, storeRoles.get(previous));
  },
});

/** Appends one event in a transaction of its own; returns it as stored (its place in the chain given at commit). */
async function appendOne(store: Store, action = 'visa.requested'): Promise<AuditEvent> {
  await store.transaction((tx) => tx.appendAudit({ at: T0, actor: 'system', action, outcome: 'ok', details: {} }));
  const [event] = await store.listAudit({ newestFirst: true, limit: 1 });
  assert.ok(event);
  return event;
}

describe('postgres store', () => {
  test('applies every migration once; a second open applies none', async () => {
    const first = await openFresh();
    try {
      assert.deepEqual(
        first.appliedMigrations,
        POSTGRES_MIGRATIONS.map((m) => m.version),
      );
      const second = await openIn(storeSchemas.get(first) ?? '');
      assert.deepEqual(second.appliedMigrations, []);
      await second.close();
    } finally {
      await first.close();
    }
  });

  test('refuses a database whose schema is newer than this build knows, and changes nothing', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    await store.close();
    await database.admin(`INSERT INTO ${schema}.schema_migrations VALUES (99, 'from the future', 0)`);
    await assert.rejects(openIn(schema), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_STORE_UNAVAILABLE');
      assert.match(error.message, /schema version 99 is newer than this kubevisa knows/);
      return true;
    });
    const { rows } = await database.admin(`SELECT count(*)::int AS n FROM ${schema}.schema_migrations`);
    assert.equal(rows[0].n, POSTGRES_MIGRATIONS.length + 1);
  });

  test('stores opening together on an empty schema migrate it once', async () => {
    const schema = `s${++schemas}`;
    await database.admin(`CREATE SCHEMA ${schema}`);
    const stores = await Promise.all([openIn(schema), openIn(schema), openIn(schema)]);
    try {
      const applied = stores.map((s) => s.appliedMigrations.length).sort();
      assert.deepEqual(applied, [0, 0, POSTGRES_MIGRATIONS.length]);
    } finally {
      for (const s of stores) await s.close();
    }
  });

  test('triggers refuse UPDATE, DELETE and TRUNCATE of audit events and checkpoints, even by the owner', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    try {
      const event = await appendOne(store);
      await store.transaction((tx) =>
        tx.appendAuditCheckpoint({ at: T0, seq: event.seq, hash: event.hash, keyId: 'k', signature: 'sig' }),
      );
      for (const statement of [
        `UPDATE ${schema}.audit_events SET actor = 'mallory'`,
        `DELETE FROM ${schema}.audit_events`,
        `TRUNCATE ${schema}.audit_events`,
        `UPDATE ${schema}.audit_checkpoints SET seq = 0`,
        `DELETE FROM ${schema}.audit_checkpoints`,
        `TRUNCATE ${schema}.audit_checkpoints`,
      ]) {
        await assert.rejects(database.admin(statement), /append-only/, statement);
      }
      await assert.rejects(
        database.admin(
          `INSERT INTO ${schema}.audit_events (seq, at, actor, action, outcome, details_json, prev_hash, hash) ` +
            `VALUES (7, 0, 'mallory', 'x', 'ok', '{}', 'p', 'h')`,
        ),
        /does not extend the head/,
      );
      const events = await store.listAudit();
      assert.equal(events.length, 1);
      assert.equal(events[0]?.actor, 'system');
    } finally {
      await store.close();
    }
  });

  test('a runtime role set up as documented may read and append the trail but not UPDATE or DELETE it', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    await store.close();
    const role = await database.createRole('documented');
    for (const statement of runtimeRoleGrants(role, schema)) await database.admin(statement);
    const url = new URL(database.url);
    url.username = role;
    const runtime = await openPostgresStore({ url: url.toString(), schema });
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const event = await appendOne(runtime);
      assert.equal(event.seq, 1);
      await runtime.transaction((tx) =>
        tx.upsertPersonFromLogin({
          issuer: 'i',
          subject: 's',
          email: 'a@b.example',
          displayName: 'A',
          groups: [],
          now: T0,
        }),
      );
      for (const statement of [
        `UPDATE ${schema}.audit_events SET actor = 'mallory'`,
        `DELETE FROM ${schema}.audit_events`,
        `TRUNCATE ${schema}.audit_events`,
        `ALTER TABLE ${schema}.audit_events DISABLE TRIGGER audit_events_no_update`,
        `DROP TRIGGER audit_events_no_delete ON ${schema}.audit_events`,
      ]) {
        await assert.rejects(client.query(statement), /permission denied|must be owner/, statement);
      }
      const findings = await runtime.inspectAuditProtections();
      assert.ok(findings.length > 0);
      assert.deepEqual(
        findings.filter((f) => !f.ok),
        [],
        'the documented runtime role passes every integrity check',
      );
      assert.deepEqual(await runtime.checkIntegrity(), [], 'nothing for the trail to record');
      assert.equal(verifyChain(await runtime.listAudit()).ok, true);
    } finally {
      await client.end();
      await runtime.close();
    }
  });

  test('the integrity check reports a disabled trigger and an owner role; the owner’s next open restores it', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    try {
      await database.admin(`ALTER TABLE ${schema}.audit_events DISABLE TRIGGER audit_events_no_delete`);
      await database.admin(`DROP TRIGGER audit_checkpoints_no_update ON ${schema}.audit_checkpoints`);
      const failed = (await store.inspectAuditProtections()).filter((f) => !f.ok);
      const messages = failed.map((f) => f.message).join('\n');
      assert.match(messages, /audit_events_no_delete on audit_events is disabled/);
      assert.match(messages, /audit_checkpoints_no_update on audit_checkpoints is missing/);
      assert.match(messages, /owns audit_events/, 'the test role owns the tables, and the check says so');
      const again = await openIn(schema);
      assert.deepEqual([...again.restoredGuards].sort(), ['audit_checkpoints_no_update', 'audit_events_no_delete']);
      const triggersNow = (await again.inspectAuditProtections()).filter((f) => f.check === 'audit-trigger' && !f.ok);
      assert.deepEqual(triggersNow, []);
      // What the audit capability records, each once: the restoration and a role (a superuser here) that could
      // change or unguard the trail.
      const recorded = await again.checkIntegrity();
      assert.deepEqual(recorded.map((f) => f.action).sort(), [
        'audit.guards-restored',
        'audit.role-can-change-trail',
        'audit.role-owns-trail',
      ]);
      assert.deepEqual(await again.checkIntegrity(), []);
      await again.close();
      // The first store, still open, finds the guards back in place and restores nothing more.
      assert.deepEqual((await store.checkIntegrity()).map((f) => f.action).sort(), [
        'audit.role-can-change-trail',
        'audit.role-owns-trail',
      ]);
    } finally {
      await store.close();
    }
  });

  test('a trigger enabled only for replication, a guard function replaced, and a trigger re-pointed are found and put back', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    try {
      await appendOne(store);
      // Each leaves the trigger "enabled" by name: 'R' fires only when session_replication_role = replica.
      await database.admin(`ALTER TABLE ${schema}.audit_events ENABLE REPLICA TRIGGER audit_events_no_update`);
      await database.admin(
        `CREATE OR REPLACE FUNCTION ${schema}.kubevisa_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql ` +
          `AS $$ BEGIN RETURN NULL; END $$`,
      );
      await database.admin(`DROP TRIGGER audit_checkpoints_follow_trail ON ${schema}.audit_checkpoints`);
      await database.admin(
        `CREATE TRIGGER audit_checkpoints_follow_trail BEFORE INSERT ON ${schema}.audit_checkpoints ` +
          `FOR EACH ROW WHEN (false) EXECUTE FUNCTION ${schema}.kubevisa_checkpoint_follows_trail()`,
      );
      const failed = (await store.inspectAuditProtections()).filter((f) => f.check === 'audit-trigger' && !f.ok);
      const messages = failed.map((f) => f.message).join('\n');
      assert.match(messages, /audit_events_no_update on audit_events is disabled \(it does not fire/);
      assert.match(messages, /guard function kubevisa_refuse_audit_change was replaced/);
      assert.match(messages, /audit_checkpoints_follow_trail on audit_checkpoints is altered/);

      const again = await openIn(schema);
      assert.deepEqual([...again.restoredGuards].sort(), [
        'audit_checkpoints_follow_trail',
        'audit_events_no_update',
        'kubevisa_refuse_audit_change',
      ]);
      assert.deepEqual(
        (await again.inspectAuditProtections()).filter((f) => f.check === 'audit-trigger' && !f.ok),
        [],
      );
      await again.close();
      // Put back for real: the guards refuse again, even for the owner.
      await assert.rejects(
        database.admin(`UPDATE ${schema}.audit_events SET actor = 'nobody'`),
        /append-only: UPDATE refused/,
      );
      await assert.rejects(database.admin(`DELETE FROM ${schema}.audit_events`), /append-only: DELETE refused/);
    } finally {
      await store.close();
    }
  });

  test('the documented runtime role cannot write the migrations table (it could claim a newer schema)', async () => {
    const store = await openFresh();
    const schema = storeSchemas.get(store) ?? '';
    await store.close();
    const role = await database.createRole('nomigrate');
    for (const statement of runtimeRoleGrants(role, schema)) await database.admin(statement);
    const url = new URL(database.url);
    url.username = role;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      for (const statement of [
        `INSERT INTO ${schema}.schema_migrations (version, name, applied_at) VALUES (99, 'x', 0)`,
        `UPDATE ${schema}.schema_migrations SET version = 99 WHERE version = 1`,
        `DELETE FROM ${schema}.schema_migrations`,
      ]) {
        await assert.rejects(client.query(statement), /permission denied/, statement);
      }
      const runtime = await openPostgresStore({ url: url.toString(), schema });
      await runtime.close();
    } finally {
      await client.end();
    }
  });

  test('a transaction whose failed statement was caught is not committed', async () => {
    const store = await openFresh();
    try {
      const person = (): PersonLogin => ({
        issuer: 'i',
        subject: 's1',
        email: 'a@b.example',
        displayName: 'A',
        groups: [],
        now: T0,
      });
      const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(person()));
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.putSetting('k', 1, T0);
          // A value the table's CHECK constraint refuses: the statement fails inside PostgreSQL.
          await tx.setPersonStatus(alice.id, 'on-holiday' as PersonStatus, T0).catch(() => undefined);
        }),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_STORE_UNAVAILABLE');
          assert.match(error.message, /rolled back because one of its statements failed/);
          return true;
        },
      );
      assert.equal(await store.getSetting('k'), undefined);
    } finally {
      await store.close();
    }
  });

  test('the group-commit appender writes many concurrent appends as one chain', async () => {
    const store = await openFresh();
    try {
      await appendOne(store, 'before');
      const appender = store.openAuditAppender();
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          appender.append([
            { at: T0 + i, actor: 'system', action: 'gateway.request', outcome: 'ok', details: { i } },
            { at: T0 + i, actor: 'system', action: 'gateway.request.end', outcome: 'ok', details: { i } },
          ]),
        ),
      );
      for (const [first, second] of results) assert.equal((second?.seq ?? 0) - (first?.seq ?? 0), 1);
      await appendOne(store, 'after');
      const events = await store.listAudit({ limit: 10000 });
      assert.equal(events.length, 602);
      assert.equal(verifyChain(events).ok, true);
      assert.equal(events.at(-1)?.action, 'after');
    } finally {
      await store.close();
    }
  });

  test('the store factory opens engine postgres from config, the password read from a file', async () => {
    const schema = `s${++schemas}`;
    await database.admin(`CREATE SCHEMA ${schema}`);
    const role = await database.createRole('factory');
    await database.admin(`ALTER ROLE ${role} SET search_path = ${schema}`);
    await database.admin(`GRANT ALL ON SCHEMA ${schema} TO ${role}`);
    const dataDir = await mkdtemp(join(tmpdir(), 'kubevisa-pg-'));
    const passwordFile = join(dataDir, 'db-password');
    await writeFile(passwordFile, 'not-checked-by-trust-auth\n', { mode: 0o600 });
    const url = new URL(database.url);
    url.username = role;
    const store = await openStore({ engine: 'postgres', url: url.toString(), passwordFile }, { dataDir });
    try {
      assert.equal(store.engine, 'postgres');
      await appendOne(store);
      assert.equal((await store.getAuditHead())?.seq, 1);
      const { rows } = await database.admin(`SELECT count(*)::int AS n FROM ${schema}.audit_events`);
      assert.equal(rows[0].n, 1, 'the tables live in the role’s schema');
    } finally {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('a password from the environment never appears in the error of a failed open', async () => {
    const env = { KV_DB_PASSWORD: 'hunter2-from-env' };
    await assert.rejects(
      openStore(
        { engine: 'postgres', url: 'postgres://kv@127.0.0.1:1/kv', passwordEnv: 'KV_DB_PASSWORD' },
        { dataDir: tmpdir(), env },
      ),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_STORE_UNAVAILABLE');
        assert.doesNotMatch(`${error.message} ${String(error.cause)}`, /hunter2/);
        return true;
      },
    );
  });

  test('refuses a URL that is not postgres:// with a message naming the field', async () => {
    await assert.rejects(openPostgresStore({ url: 'mysql://x@y/z' }), /store.url must start with postgres:\/\//);
  });

  test('an unreachable database is StoreUnavailable and the message holds no password', async () => {
    await assert.rejects(
      openPostgresStore({ url: 'postgres://kv@127.0.0.1:1/kv', password: 'hunter2-secret', connectTimeoutMs: 2000 }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_STORE_UNAVAILABLE');
        assert.doesNotMatch(error.message, /hunter2/);
        assert.match(error.message, /kv@127.0.0.1:1\/kv/);
        return true;
      },
    );
  });
});
