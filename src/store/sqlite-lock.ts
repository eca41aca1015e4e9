/**
 * The SQLite engine's exclusive lock on its data folder: one kubevisa server per folder. Two servers on one
 * SQLite file would both reconcile the same clusters and both write the checkpoint files beside it; SQLite's own
 * locks only serialise their writes. PostgreSQL has no such lock: there, several servers share one database on
 * purpose.
 *
 * The lock is a file, `kubevisa.lock`, naming the holder's PID and host. It is created whole or not at all (written
 * under a private name, then hard-linked into place, which fails if the name exists: O_EXCL without the window in
 * which another process could read it empty). A lock whose holder is gone (same host, PID no longer running: a
 * crash, a kill -9; on Linux also a PID now used by a process that started later) is stale and taken over, and
 * the caller is told so. A holder on another host cannot be checked, so it is refused like a live one; the message
 * says how to clear it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubevisaError } from '../domain/errors.ts';
import { StoreUnavailable } from './errors.ts';

export const LOCK_FILE = 'kubevisa.lock';

/** Another kubevisa server holds the data folder. */
export class StoreLocked extends KubevisaError {
  static override code = 'ERR_STORE_LOCKED';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 409 });
  }
}

interface Holder {
  pid: number;
  host: string;
  /** Tells this holding apart from an earlier one by a process that got the same PID. */
  nonce: string;
  since: string;
  /** The holder's start time from /proc (Linux), to tell it apart from a later process with the same PID. */
  started?: string;
}

export interface FolderLock {
  readonly file: string;
  /** Removes the lock file if it is still this lock's (idempotent). */
  release(): Promise<void>;
}

/**
 * The state and start time (clock ticks since boot) of a process, from Linux's /proc; undefined elsewhere or when
 * it cannot be read. The start time tells a holder apart from a later process that was given the same PID.
 */
function processStat(pid: number): { state: string; started: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid … starttime …": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const started = fields[19];
    return state === undefined || started === undefined ? undefined : { state, started };
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote `holder` still runs (on this host). */
function isAlive(holder: Holder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = processStat(holder.pid);
  if (stat === undefined) return true;
  // A zombie has exited (its parent has not collected it yet); another start time is another process.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return holder.started === undefined || holder.started === stat.started;
}

async function readHolder(file: string): Promise<Holder | 'gone' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw new StoreUnavailable(`cannot read the lock file ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<Holder>;
    if (
      Number.isSafeInteger(parsed.pid) &&
      (parsed.pid as number) > 0 &&
      typeof parsed.host === 'string' &&
      typeof parsed.nonce === 'string' &&
      typeof parsed.since === 'string' &&
      (parsed.started === undefined || typeof parsed.started === 'string')
    ) {
      return parsed as Holder;
    }
  } catch {
    // Falls through: not a lock this code wrote.
  }
  return 'unreadable';
}

/** Creates `file` holding `content`, atomically and only if it does not exist. Returns false if it exists. */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(draft, content, { mode: 0o600, flag: 'wx' });
  try {
    await link(draft, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new StoreUnavailable(`cannot create the lock file ${file}: ${(error as Error).message}`);
  } finally {
    await unlink(draft).catch(() => undefined);
  }
}

function refusal(folder: string, file: string, holder: Holder): StoreLocked {
  const details = { folder, lockFile: file, pid: holder.pid, host: holder.host, since: holder.since };
  if (holder.host !== hostname()) {
    return new StoreLocked(
      `the data folder ${folder} is locked by a kubevisa server on host ${holder.host} (PID ${holder.pid}, since ` +
        `${holder.since}); this host cannot check whether it still runs. Stop it, or if it is gone, remove ${file}`,
      { details },
    );
  }
  const who = holder.pid === process.pid ? 'this same process' : `another kubevisa server (PID ${holder.pid})`;
  return new StoreLocked(
    `the data folder ${folder} is in use by ${who}, since ${holder.since}: two servers on one SQLite data folder ` +
      `would both reconcile the same clusters. Stop PID ${holder.pid} first, or give this server its own dataDir ` +
      `(lock file ${file})`,
    { details },
  );
}

/**
 * Takes the lock of `folder` (which must exist), taking over a stale one (and telling `onNotice`). Throws
 * StoreLocked, naming the holder's PID, when a live server holds it.
 */
export async function lockDataFolder(
  folder: string,
  options: { onNotice?: (message: string) => void } = {},
): Promise<FolderLock> {
  const file = join(folder, LOCK_FILE);
  const mine: Holder = {
    pid: process.pid,
    host: hostname(),
    nonce: randomBytes(12).toString('base64url'),
    since: new Date().toISOString(),
  };
  const started = processStat(process.pid)?.started;
  if (started !== undefined) mine.started = started;
  const content = `${JSON.stringify(mine)}\n`;
  // Each round either takes the lock, refuses, or removes one stale lock; a few rounds cover a race with
  // another server starting at the same moment.
  for (let round = 0; round < 5; round++) {
    if (await createExclusive(file, content)) return heldLock(file, mine.nonce);
    const holder = await readHolder(file);
    if (holder === 'gone') continue;
    if (holder === 'unreadable') {
      throw new StoreLocked(
        `the data folder ${folder} has a lock file ${file} that kubevisa did not write (or that was damaged); ` +
          `if no kubevisa server uses this folder, remove it`,
        { details: { folder, lockFile: file } },
      );
    }
    if (holder.host !== hostname() || isAlive(holder)) throw refusal(folder, file, holder);
    await removeStale(folder, file, holder, mine, options.onNotice);
  }
  throw new StoreLocked(`could not take the lock ${file}: other servers keep taking it; is one starting now?`, {
    details: { folder, lockFile: file },
  });
}

/**
 * Removes the lock of a dead holder. Two servers may find the same stale lock at once; a second lock file
 * (`kubevisa.lock.takeover`) lets only one of them remove it, so neither removes the lock the other just took.
 */
async function removeStale(
  folder: string,
  file: string,
  stale: Holder,
  mine: Holder,
  onNotice: ((message: string) => void) | undefined,
): Promise<void> {
  const guard = `${file}.takeover`;
  if (!(await createExclusive(guard, `${JSON.stringify(mine)}\n`))) {
    const other = await readHolder(guard);
    // A takeover that died half-way leaves its guard behind; a live one finishes by itself.
    if (other === 'unreadable' || (other !== 'gone' && other.host === hostname() && !isAlive(other))) {
      await unlink(guard).catch(() => undefined);
    } else {
      await sleep(20);
    }
    return;
  }
  try {
    const current = await readHolder(file);
    if (current !== 'gone' && current !== 'unreadable' && current.nonce === stale.nonce) {
      await unlink(file);
      onNotice?.(
        `took over the lock of the data folder ${folder} from PID ${stale.pid}, which no longer runs ` +
          `(it held the folder since ${stale.since} and stopped without releasing it)`,
      );
    }
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

function heldLock(file: string, nonce: string): FolderLock {
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      const current = await readHolder(file);
      if (current !== 'gone' && current !== 'unreadable' && current.nonce === nonce) await unlink(file);
    },
  };
}
