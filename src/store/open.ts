/**
 * The store factory: `openStore(config.store, { dataDir })` opens the engine the configuration names. It is the
 * only place that knows which engines exist; everything else receives a `Store` (store.ts) and never asks which.
 *
 * To add an engine: give its config shape in config.ts and one entry in `ENGINES` below.
 */
import { dirname, join } from 'node:path';
import { parseStoreConfig, readStorePassword, type StoreConfig } from './config.ts';
import { openSqliteStore } from './sqlite.ts';
import type { Store } from './store.ts';

export { describeStore, parseStoreConfig, type StoreConfig } from './config.ts';

export interface StoreOpenContext {
  /** The server's data folder (exists): SQLite's default database lives here, and SQLite locks it. */
  dataDir: string;
  /** Where `store.passwordEnv` is looked up; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Told what the operator should know about the open (a stale lock taken over); default: nothing. */
  onNotice?: (message: string) => void;
}

/** What a PostgreSQL opener receives: the URL and the password, read from where the config said. */
export interface PostgresConnectionOptions {
  url: string;
  /** Never logged, never part of an error message. */
  password?: string;
}

/** The database file of a SQLite store in `dataDir` when the config names none. */
export function defaultSqlitePath(dataDir: string): string {
  return join(dataDir, 'kubevisa.db');
}

type Openers = {
  [E in StoreConfig['engine']]: (
    config: Extract<StoreConfig, { engine: E }>,
    context: StoreOpenContext,
  ) => Promise<Store>;
};

const ENGINES: Openers = {
  sqlite: (config, context) =>
    openSqliteStore({
      path: config.path ?? defaultSqlitePath(context.dataDir),
      // One server per data folder (and per database folder, when the file lives elsewhere).
      lockFolders: [context.dataDir, ...(config.path === undefined ? [] : [dirname(config.path)])],
      ...(context.onNotice ? { onNotice: context.onNotice } : {}),
    }),
  postgres: async (config, context) => {
    const password = await readStorePassword(config, context.env ?? process.env);
    return openPostgres({ url: config.url, ...(password === undefined ? {} : { password }) }, context);
  },
};

/** The PostgreSQL engine (src/store/postgres/), loaded only when a configuration names it. */
async function openPostgres(connection: PostgresConnectionOptions, _context: StoreOpenContext): Promise<Store> {
  return (await import('./postgres/store.ts')).openPostgresStore(connection);
}

/**
 * Opens the store `config` names (validated again here: programmatic callers skip the config file). Refuses an
 * unknown engine or field with InvalidInput; an engine that cannot open throws its own error (StoreUnavailable,
 * SQLite's StoreLocked when another server holds the data folder).
 */
export async function openStore(config: StoreConfig, context: StoreOpenContext): Promise<Store> {
  const checked = parseStoreConfig(config, (path) => path);
  switch (checked.engine) {
    case 'sqlite':
      return ENGINES.sqlite(checked, context);
    case 'postgres':
      return ENGINES.postgres(checked, context);
  }
}
