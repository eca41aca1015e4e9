/**
 * The CLI's state folder: `$KUBEVISA_CONFIG_DIR`, else `$XDG_CONFIG_HOME/kubevisa`, else
 * `~/.config/kubevisa` (created 0700). It holds
 *   - `config.json`: which server to talk to and which CA to trust (not secret);
 *   - `session.json`: the session secret that buys access tokens, plus the last access token (secret);
 *   - `credentials/<cluster>.json`: the last direct-mode cluster token per cluster (secret);
 *   - `credentials/<cluster>.last-call`: when `kubevisa credential --direct` last ran for the cluster (not secret).
 * Secret files are written 0600 through a temporary file and a rename, so a crash or a concurrent
 * `kubevisa credential` (kubectl runs several) never sees half a file, and they are refused when anyone
 * else could read them: a secret that may have leaked must not be used silently.
 *
 * This module is on the path of `kubevisa credential`, which kubectl runs for every request: it imports
 * only Node built-ins and the domain's error base.
 */
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { PersonJson } from './api-types.ts';
import { BadStateFile, InsecureFile } from './errors.ts';
import { UsageError } from './framework.ts';

/** What `config.json` holds. Both fields are optional: a fresh install has neither. */
export interface CliConfig {
  /** Base URL of the kubevisa server, e.g. `https://kubevisa.example:8443` (no trailing slash). */
  server?: string;
  /** Absolute path of a PEM file with the CA that signed the server's certificate. */
  caFile?: string;
}

/** What `session.json` holds: one login at one server. */
export interface StoredSession {
  /** The server this session belongs to; its secret is never sent anywhere else. */
  server: string;
  sessionSecret: string;
  /** RFC 3339. */
  sessionExpiresAt: string;
  person: PersonJson;
  /** The last access token and its expiry (RFC 3339), reused by later commands while it stays valid. */
  accessToken?: string;
  accessTokenExpiresAt?: string;
}

/** What `credentials/<cluster>.json` holds: a direct-mode cluster token. */
export interface CachedCredential {
  server: string;
  cluster: string;
  token: string;
  /** RFC 3339. */
  expirationTimestamp: string;
}

const OWNER_ONLY_FILE = 0o600;
const OWNER_ONLY_DIR = 0o700;

/** The state folder for this process: `$KUBEVISA_CONFIG_DIR`, `$XDG_CONFIG_HOME/kubevisa` or `~/.config/kubevisa`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KUBEVISA_CONFIG_DIR) return env.KUBEVISA_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'kubevisa');
  return join(homedir(), '.config', 'kubevisa');
}

export function configFile(dir: string): string {
  return join(dir, 'config.json');
}
export function sessionFile(dir: string): string {
  return join(dir, 'session.json');
}
export function credentialFile(dir: string, cluster: string): string {
  return join(dir, 'credentials', `${checkClusterName(cluster)}.json`);
}
/** Not `.json`: a cluster name may hold dots, and no cluster's credential file may share this name. */
export function lastCallFile(dir: string, cluster: string): string {
  return join(dir, 'credentials', `${checkClusterName(cluster)}.last-call`);
}

// Cluster names become file names here and path segments in URLs: allow only what cannot climb out of
// either (no `/`, no leading `.`), in the shape of a Kubernetes label value.
const CLUSTER_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** Returns `name` when it is a usable cluster name, else throws a UsageError saying what is allowed. */
export function checkClusterName(name: string): string {
  if (!CLUSTER_NAME.test(name)) {
    throw new UsageError(
      `'${name}' is not a cluster name: use 1–63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (see 'kubevisa kubeconfig --help')`,
    );
  }
  return name;
}

/** Reads `config.json`; a missing file is an empty configuration. */
export async function readConfig(dir: string): Promise<CliConfig> {
  const file = configFile(dir);
  const parsed = await readJsonFile(file, { secret: false });
  if (parsed === undefined) return {};
  const record = asRecord(parsed, file, 'a kubevisa config file');
  const config: CliConfig = {};
  if (record.server !== undefined) config.server = requireString(record, 'server', file, 'a kubevisa config file');
  if (record.caFile !== undefined) config.caFile = requireString(record, 'caFile', file, 'a kubevisa config file');
  return config;
}

export async function writeConfig(dir: string, config: CliConfig): Promise<void> {
  await writeFileAtomically(configFile(dir), JSON.stringify(config, null, 2) + '\n');
}

/**
 * Reads `session.json`, or undefined when there is none.
 * @throws InsecureFile when the file is readable by group or others or owned by someone else.
 */
export async function readSession(dir: string): Promise<StoredSession | undefined> {
  const file = sessionFile(dir);
  const parsed = await readJsonFile(file, { secret: true });
  if (parsed === undefined) return undefined;
  const what = 'a kubevisa session file';
  const record = asRecord(parsed, file, what);
  const session: StoredSession = {
    server: requireString(record, 'server', file, what),
    sessionSecret: requireString(record, 'sessionSecret', file, what),
    sessionExpiresAt: requireString(record, 'sessionExpiresAt', file, what),
    person: asRecord(record.person, file, what) as unknown as PersonJson,
  };
  if (typeof record.accessToken === 'string' && typeof record.accessTokenExpiresAt === 'string') {
    session.accessToken = record.accessToken;
    session.accessTokenExpiresAt = record.accessTokenExpiresAt;
  }
  return session;
}

export async function writeSession(dir: string, session: StoredSession): Promise<void> {
  await writeFileAtomically(sessionFile(dir), JSON.stringify(session, null, 2) + '\n');
}

export async function removeSession(dir: string): Promise<void> {
  await rm(sessionFile(dir), { force: true });
}

/**
 * Reads the cached direct-mode token for `cluster`, or undefined when there is none.
 * @throws InsecureFile as for the session file.
 */
export async function readCredential(dir: string, cluster: string): Promise<CachedCredential | undefined> {
  const file = credentialFile(dir, cluster);
  const parsed = await readJsonFile(file, { secret: true });
  if (parsed === undefined) return undefined;
  const what = 'a kubevisa credential cache file';
  const record = asRecord(parsed, file, what);
  return {
    server: requireString(record, 'server', file, what),
    cluster: requireString(record, 'cluster', file, what),
    token: requireString(record, 'token', file, what),
    expirationTimestamp: requireString(record, 'expirationTimestamp', file, what),
  };
}

export async function writeCredential(dir: string, credential: CachedCredential): Promise<void> {
  await writeFileAtomically(credentialFile(dir, credential.cluster), JSON.stringify(credential, null, 2) + '\n');
}

/** Removes the cached token for `cluster` (after the server refused to renew it); no error when there is none. */
export async function removeCredential(dir: string, cluster: string): Promise<void> {
  await rm(credentialFile(dir, cluster), { force: true });
}

/** When `kubevisa credential --direct` last ran for `cluster` (epoch ms), or undefined when it never did. */
export async function readLastCall(dir: string, cluster: string): Promise<number | undefined> {
  const file = lastCallFile(dir, cluster);
  const parsed = await readJsonFile(file, { secret: false });
  if (parsed === undefined) return undefined;
  const at = Date.parse(
    requireString(asRecord(parsed, file, 'a kubevisa call record'), 'at', file, 'a kubevisa call record'),
  );
  if (!Number.isFinite(at)) {
    throw new BadStateFile(
      `${file} does not hold an RFC 3339 'at'. Remove it; the next kubectl command writes it again.`,
    );
  }
  return at;
}

/** Records that `kubevisa credential --direct` ran for `cluster` at `at` (epoch ms). Holds no secret. */
export async function writeLastCall(dir: string, cluster: string, at: number): Promise<void> {
  await writeFileAtomically(
    lastCallFile(dir, cluster),
    JSON.stringify({ cluster, at: new Date(at).toISOString() }) + '\n',
  );
}

/** Removes every cached cluster token (after logout, or a login that may be someone else). */
export async function removeCredentials(dir: string): Promise<void> {
  await rm(join(dir, 'credentials'), { recursive: true, force: true });
}

/** Lists the clusters with a cached token (for messages and tests). */
export async function cachedCredentialClusters(dir: string): Promise<string[]> {
  try {
    const names = await readdir(join(dir, 'credentials'));
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
}

/**
 * Writes `text` to `file` with mode 0600 so that readers see either the old or the new content: a
 * temporary file in the same folder (same file system, so rename is atomic), flushed, then renamed over
 * the target. Parent folders are created 0700.
 */
export async function writeFileAtomically(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: OWNER_ONLY_DIR });
  // The name only has to be unique among concurrent writers; 'wx' refuses an existing file, so a
  // collision fails loudly instead of two writers sharing one temporary file.
  const temporary = `${file}.${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`;
  let handle: FileHandle | undefined = await open(temporary, 'wx', OWNER_ONLY_FILE);
  try {
    await handle.writeFile(text, 'utf8');
    // The mode passed to open is reduced by the umask but never widened; chmod makes it exactly 0600
    // even if the umask was unusual (it cannot be wider, but a reader should not have to reason about that).
    await handle.chmod(OWNER_ONLY_FILE);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, file);
  } catch (error) {
    if (handle) await handle.close();
    await unlink(temporary).catch((cleanupError: unknown) => {
      // The write already failed; report that, and mention the leftover only if it could not be removed.
      if (!isErrno(cleanupError, 'ENOENT')) {
        process.stderr.write(`kubevisa: could not remove the temporary file ${temporary}: ${String(cleanupError)}\n`);
      }
    });
    throw error;
  }
}

/**
 * Reads and parses a JSON file; undefined when it does not exist. With `secret`, the file's mode and owner
 * are checked on the open handle (not the path, which could be swapped between check and read).
 */
async function readJsonFile(file: string, { secret }: { secret: boolean }): Promise<unknown> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  try {
    if (secret) {
      const info = await handle.stat();
      const uid = process.getuid?.();
      if (uid !== undefined && info.uid !== uid) {
        throw new InsecureFile(
          `refusing to use ${file}: it belongs to user id ${info.uid}, not to you (${uid}), so someone else could have written it. Remove it and run 'kubevisa login' again.`,
        );
      }
      if ((info.mode & 0o077) !== 0) {
        const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
        throw new InsecureFile(
          `refusing to use ${file}: its mode is ${mode}, so other users can read the secret in it. Fix it with 'chmod 600 ${file}' (and consider 'kubevisa logout' then 'kubevisa login' if others may have read it).`,
        );
      }
    }
    const text = await handle.readFile('utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new BadStateFile(
        `${file} is not valid JSON (${(error as Error).message}). Remove it and run 'kubevisa login' again.`,
      );
    }
  } finally {
    await handle.close();
  }
}

function asRecord(value: unknown, file: string, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadStateFile(`${file} is not ${what}. Remove it and run 'kubevisa login' again.`);
  }
  return value as Record<string, unknown>;
}

function requireString(record: Record<string, unknown>, field: string, file: string, what: string): string {
  const value = record[field];
  if (typeof value !== 'string' || value === '') {
    throw new BadStateFile(
      `${file} is not ${what}: '${field}' is missing or not a string. Remove it and run 'kubevisa login' again.`,
    );
  }
  return value;
}

export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
