/**
 * The `store` section of the server's configuration, parsed strictly: an engine kubevisa does not know, a field
 * the engine does not take, or a missing one is refused with a message naming the field and what is allowed.
 * (It used to accept anything and open SQLite, so `engine: postgres` silently ran on a local file.)
 *
 *   store: { engine: sqlite, path?: FILE }                      # default: DATA_DIR/kubevisa.db
 *   store: { engine: postgres, url: postgres://USER@HOST:PORT/DB, passwordFile?: FILE | passwordEnv?: NAME }
 *
 * The PostgreSQL password never sits in the configuration: the URL may not carry one, and only the name of
 * the file or environment variable holding it is kept, so echoing or logging the parsed config reveals nothing.
 * It is read when the store opens (open.ts).
 */
import { readFile } from 'node:fs/promises';
import { InvalidInput } from '../domain/errors.ts';

export interface SqliteStoreConfig {
  engine: 'sqlite';
  /** Database file; default `kubevisa.db` in the data folder. */
  path?: string;
}

export interface PostgresStoreConfig {
  engine: 'postgres';
  /** `postgres://` or `postgresql://` URL without a password. */
  url: string;
  /** File holding the password (trailing newline ignored). At most one of `passwordFile`, `passwordEnv`. */
  passwordFile?: string;
  /** Name of the environment variable holding the password. */
  passwordEnv?: string;
}

export type StoreConfig = SqliteStoreConfig | PostgresStoreConfig;

/** The fields each engine takes, `engine` included. */
const FIELDS = {
  sqlite: ['engine', 'path'],
  postgres: ['engine', 'url', 'passwordFile', 'passwordEnv'],
} as const;
export const STORE_ENGINES = Object.keys(FIELDS) as (keyof typeof FIELDS)[];

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalText(raw: Record<string, unknown>, field: string): string | undefined {
  const value = Object.hasOwn(raw, field) ? raw[field] : undefined;
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidInput(`config: 'store.${field}' must be a non-empty string`);
  }
  return value;
}

/**
 * Validates the `store` section (absent means SQLite in the data folder). Relative paths go through
 * `resolvePath` (the server resolves them against the config file's folder).
 */
export function parseStoreConfig(raw: unknown, resolvePath: (path: string) => string): StoreConfig {
  if (raw === undefined) return { engine: 'sqlite' };
  const allowed = `one of: ${STORE_ENGINES.join(', ')}`;
  if (!isRecord(raw)) {
    throw new InvalidInput(`config: 'store' must be an object such as { engine: sqlite } (engine ${allowed})`);
  }
  const engine = Object.hasOwn(raw, 'engine') ? raw.engine : undefined;
  if (engine === undefined) throw new InvalidInput(`config: 'store.engine' is required: ${allowed}`);
  if (typeof engine !== 'string' || !Object.hasOwn(FIELDS, engine)) {
    throw new InvalidInput(
      `config: 'store.engine' ${JSON.stringify(engine)} is not an engine kubevisa knows; ${allowed}`,
      {
        details: { allowed: STORE_ENGINES },
      },
    );
  }
  const known = engine as keyof typeof FIELDS;
  const fields: readonly string[] = FIELDS[known];
  for (const key of Object.keys(raw)) {
    if (!fields.includes(key)) {
      throw new InvalidInput(
        `config: 'store.${key}' is not a field of the ${engine} engine; its fields: ${fields.join(', ')}`,
      );
    }
  }
  if (known === 'sqlite') {
    const path = optionalText(raw, 'path');
    return { engine: known, ...(path === undefined ? {} : { path: resolvePath(path) }) };
  }
  const url = optionalText(raw, 'url');
  if (url === undefined) {
    throw new InvalidInput(`config: 'store.url' is required for engine postgres: postgres://USER@HOST:PORT/DATABASE`);
  }
  checkPostgresUrl(url);
  const passwordFile = optionalText(raw, 'passwordFile');
  const passwordEnv = optionalText(raw, 'passwordEnv');
  if (passwordFile !== undefined && passwordEnv !== undefined) {
    throw new InvalidInput(`config: give 'store.passwordFile' or 'store.passwordEnv', not both`);
  }
  if (passwordEnv !== undefined && !ENV_NAME.test(passwordEnv)) {
    throw new InvalidInput(
      `config: 'store.passwordEnv' must be the name of an environment variable (letters, digits, _), not its value`,
    );
  }
  return {
    engine: known,
    url,
    ...(passwordFile === undefined ? {} : { passwordFile: resolvePath(passwordFile) }),
    ...(passwordEnv === undefined ? {} : { passwordEnv }),
  };
}

function checkPostgresUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidInput(`config: 'store.url' is not a URL; expected postgres://USER@HOST:PORT/DATABASE`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new InvalidInput(
      `config: 'store.url' must start with postgres:// or postgresql:// (got ${parsed.protocol}//…)`,
    );
  }
  // The message never repeats the URL: it holds the password the operator is told to move.
  if (parsed.password !== '' || parsed.searchParams.has('password')) {
    throw new InvalidInput(
      `config: 'store.url' must not contain the password; put it in a file named by 'store.passwordFile' ` +
        `or an environment variable named by 'store.passwordEnv'`,
    );
  }
}

/** The store as it may be shown to people (start-up line, diagnostics): never a secret. */
export function describeStore(config: StoreConfig, defaultSqlitePath: string): string {
  if (config.engine === 'sqlite') return `sqlite ${config.path ?? defaultSqlitePath}`;
  const url = new URL(config.url);
  const source = config.passwordFile
    ? `, password from file ${config.passwordFile}`
    : config.passwordEnv
      ? `, password from $${config.passwordEnv}`
      : '';
  return `postgres ${url.protocol}//${url.username ? `${url.username}@` : ''}${url.host}${url.pathname}${source}`;
}

/**
 * Reads the PostgreSQL password from where the configuration says; undefined when it names no source (the
 * server authenticates another way, e.g. a client certificate or trust on loopback). The value is returned to
 * the engine's opener only: never logged, never in an error message.
 */
export async function readStorePassword(
  config: PostgresStoreConfig,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string | undefined> {
  if (config.passwordFile !== undefined) {
    let content: string;
    try {
      content = await readFile(config.passwordFile, 'utf8');
    } catch (error) {
      throw new InvalidInput(
        `cannot read the store password file ${config.passwordFile} (store.passwordFile): ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const password = content.replace(/\r?\n$/, '');
    if (password === '') throw new InvalidInput(`the store password file ${config.passwordFile} is empty`);
    return password;
  }
  if (config.passwordEnv !== undefined) {
    const password = Object.hasOwn(env, config.passwordEnv) ? env[config.passwordEnv] : undefined;
    if (password === undefined || password === '') {
      throw new InvalidInput(
        `the environment variable ${config.passwordEnv} named by 'store.passwordEnv' is not set (or empty)`,
      );
    }
    return password;
  }
  return undefined;
}
