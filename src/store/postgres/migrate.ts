/**
 * Applying the PostgreSQL migrations: at start, in one transaction, under a transaction-scoped advisory lock, so
 * that several kubevisa processes starting together on one database migrate it once and the others wait and then
 * find it current. A database whose `schema_migrations` names a version this build does not know was written by a
 * newer kubevisa: refused, with nothing changed (DDL is transactional in PostgreSQL).
 */
import type pg from 'pg';
import { StoreUnavailable } from '../errors.ts';
import { integer, text } from '../rows.ts';
import { AUDIT_LOCK_CLASS } from './audit-append.ts';
import type { PostgresMigration } from './migrations.ts';
import { bind, errorCode, translatePgError } from './sql.ts';

/** Applies what `client`'s schema lacks; returns the versions applied. `now` is stored as when. */
export async function applyMigrations(
  client: pg.ClientBase,
  migrations: readonly PostgresMigration[],
  now: number,
): Promise<number[]> {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`migration list out of order: position ${index + 1} holds version ${migration.version}`);
    }
  });
  // READ COMMITTED whatever the database's default: after waiting for another process's migration, the next
  // statements must see what it committed.
  await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
  try {
    // Key 0 of the store's lock class: the audit chain's keys are hashes of schema names, and a clash would only
    // make a migration wait for an append.
    await client.query(
      bind("SELECT pg_advisory_xact_lock(:class, hashtext('kubevisa.migrate.' || current_schema())) AS locked", {
        class: AUDIT_LOCK_CLASS,
      }),
    );
    // Checked before creating: CREATE TABLE IF NOT EXISTS needs the right to create even when the table exists,
    // which the runtime role has not.
    const known = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
    if (known.rows[0]?.present !== true) {
      await client.query(
        'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
      );
    }
    const appliedRows = (await client.query('SELECT version, name FROM schema_migrations ORDER BY version')).rows;
    appliedRows.forEach((row: Record<string, unknown>, index) => {
      const version = integer(row, 'schema_migrations', 'version');
      const name = text(row, 'schema_migrations', 'name');
      const known = migrations[index];
      if (version !== index + 1 || known === undefined) {
        throw new StoreUnavailable(
          `database schema version ${version} is newer than this kubevisa knows (it knows 1..${migrations.length}): ` +
            'the database was written by a newer kubevisa; run that version, or restore a backup made for this one',
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
    for (const migration of migrations.slice(appliedRows.length)) {
      await client.query(migration.sql);
      await client.query(
        bind('INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :now)', {
          version: migration.version,
          name: migration.name,
          now,
        }),
      );
      applied.push(migration.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (errorCode(error) === '42501') {
      throw new StoreUnavailable(
        'the database schema needs migrating but this role may not change it (permission denied): start kubevisa ' +
          'once as the role that owns the schema, then again as the runtime role (docs/operations.md, Migrations)',
        { cause: error },
      );
    }
    throw translatePgError(error);
  }
}
