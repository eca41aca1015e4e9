/**
 * Private keys on disk: created once, never overwritten, owner-only. Creation writes a temporary file with
 * O_EXCL (never into a file or symlink someone else prepared; the mode applies at creation), syncs it, links it
 * into place and syncs the folder, so two processes starting together end up with one key — the first one
 * written — and a crash never loses a key that was used.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { access, link, lstat, mkdir, open, readFile, readlink, stat, unlink, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { dirname, isAbsolute } from 'node:path';
import { getSystemErrorMessage } from 'node:util';

import { InvalidInput } from '../domain/errors.ts';

/** True when `error` is a Node system error with this code (ENOENT, EEXIST, …). */
export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Writes `pem` to `path` (mode 0600) unless a file is already there, durably: the content is synced before the link
 * gives it its name, and the folder after, so a key that was used is still there after a crash (a key lost then would
 * be made anew at the next start, and everything signed or sealed with the first would stop verifying or opening).
 * Two processes may call this at once for the same path: one links its key, the other learns that it lost.
 * @returns 'created' when this call wrote the key, 'exists' when another process had written one first (read it).
 */
export async function writePrivateKeyOnce(path: string, pem: string): Promise<'created' | 'exists'> {
  const temporaryPath = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporaryPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.writeFile(pem, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  let outcome: 'created' | 'exists' = 'created';
  try {
    await link(temporaryPath, path);
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw error;
    outcome = 'exists';
  } finally {
    await unlink(temporaryPath);
  }
  // Also when another process won: its key is used from now on, and it may not have synced the folder yet.
  await syncFolder(dirname(path));
  return outcome;
}

/** fsync of a folder: makes the names created or removed in it durable (the file's own fsync does not). */
async function syncFolder(path: string): Promise<void> {
  const folder = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

/** The groups this process is in (its own and its supplementary ones): who may share a root-owned key with it. */
export function processGroups(): number[] {
  return [...new Set([process.getgid?.(), ...(process.getgroups?.() ?? [])].filter((gid) => gid !== undefined))];
}

/**
 * True when a private key file with this owner, group and mode can be used: readable by its owner only (0600 or
 * less), or, for a file owned by root whose group is one of this process's (`groups`), also by that group (0640 or
 * less), as PostgreSQL allows for its server key. The second case is how Kubernetes mounts a Secret into a pod that
 * sets an fsGroup (the Helm chart's does): the kubelet writes each file as root and then adds group read for the
 * pod's fsGroup, whatever the volume's defaultMode says, so a key mounted from a Secret arrives as root:<fsGroup>
 * 0440, and the server runs in that group. A group the process is not in (root:adm 0640 on a host) is someone
 * else's: its members could read the key, so the file is refused.
 *
 * The owner must be this process's user (`owner`, the effective uid) or root, as OpenSSH and PostgreSQL require:
 * a server running as root can read a 0600 file that belongs to anyone, and that someone could read or replace
 * the key.
 */
export function isPrivateKeyFileMode(
  info: { mode: number; uid: number; gid: number },
  groups: readonly number[] = processGroups(),
  owner: number | undefined = process.geteuid?.(),
): boolean {
  if (owner !== undefined && info.uid !== owner && info.uid !== 0) return false;
  if ((info.mode & 0o077) === 0) return true;
  return info.uid === 0 && (info.mode & 0o037) === 0 && groups.includes(info.gid);
}

/** Which key a file holds, for the errors about it. */
export interface KeyFileRole {
  /** Starts every message, followed by the path: `the audit checkpoint key`. */
  name: string;
  /** Ends the refusal of a file someone else could read or own: `replace the key if anyone else may have read it`. */
  ifExposed: string;
}

/**
 * Reads a private key file after checking the folders on the way to it (followKeyPath) and the file it actually
 * opened: the checks on the file run on the open descriptor (fstat), not on the path, so a symlink or file swapped
 * between a check and a read (someone who can write the key's directory) cannot slip in a key others can read. Symlinks are followed on purpose: a Kubernetes Secret
 * volume presents each key as a symlink into its `..data` directory. Only a regular file is read: a FIFO would
 * block the start (it is opened non-blocking so the open itself cannot hang) and a device or directory is no key.
 * Every refusal is an InvalidInput naming `key`, the path, what is wrong and what to do: a file that is not
 * private, one larger than any key (MAX_KEY_FILE_BYTES), and a path that cannot be opened at all (missing,
 * unreadable, a symlink loop…; see unopenableFile).
 */
export async function readPrivateKeyFile(path: string, key: KeyFileRole): Promise<string> {
  // Every folder on the way, a symbolic link's too, must be safe: a key checked below could otherwise be swapped
  // before the next read (at every TLS check) for another file kubevisa owns, with a certificate of someone's making.
  if (process.platform !== 'win32') await followKeyPath(path, key.name);
  let handle: FileHandle;
  try {
    handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  } catch (error) {
    throw unopenableFile(key.name, path, error);
  }
  try {
    const info = await handle.stat();
    const refuse = (reason: string) =>
      new InvalidInput(`${key.name} ${reason}; ${key.ifExposed}`, {
        details: { path, mode: (info.mode & 0o777).toString(8), uid: info.uid, gid: info.gid },
      });
    if (!info.isFile()) throw refuse(`${path} is not a regular file`);
    if (!isPrivateKeyFileMode(info)) throw refuse(privateKeyFileAdvice(path, info));
    return await readAtMost(handle, MAX_KEY_FILE_BYTES, () => {
      return new InvalidInput(
        `${key.name} ${path} holds more than ${MAX_KEY_FILE_BYTES} bytes, far more than any private key: name the ` +
          'key file itself',
        { details: { path, size: info.size } },
      );
    });
  } finally {
    await handle.close();
  }
}

/**
 * The most a private key file may hold, in bytes (64 KiB): a PEM RSA key of 16384 bits is about 12 KiB. A path that
 * leads to something larger (a log, a database, /proc/kcore for a server running as root) is refused before it is read
 * whole: it would be held in memory at start and at every TLS reload, and past 512 MiB fail with no path named.
 */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Reads `handle` to its end as UTF-8 and throws `tooLarge()` once more than `maxBytes` came, without reading further.
 * Does not trust the size fstat gives (files under /proc say 0).
 */
async function readAtMost(handle: FileHandle, maxBytes: number, tooLarge: () => Error): Promise<string> {
  const buffer = Buffer.alloc(maxBytes + 1);
  let length = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
    if (bytesRead === 0) return buffer.toString('utf8', 0, length);
    length += bytesRead;
    if (length > maxBytes) throw tooLarge();
  }
}

/** As readPrivateKeyFile, but undefined when nothing is at `path`: a key kubevisa makes on its first start. */
export async function readPrivateKeyFileIfPresent(path: string, key: KeyFileRole): Promise<string | undefined> {
  try {
    return await readPrivateKeyFile(path, key);
  } catch (error) {
    if (error instanceof InvalidInput && isErrno(error.cause, 'ENOENT')) return undefined;
    throw error;
  }
}

/**
 * The error for a file that could not be opened (`error` from open or readFile): an InvalidInput that says which
 * file (`name`, then `path`), what was wrong and what to do, with the system error as its cause and its code in
 * `details.errno`. Anything that is not a system error is returned unchanged.
 */
export function unopenableFile(name: string, path: string, error: unknown): unknown {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  if (code === undefined) return error;
  const user = process.geteuid?.();
  let problem: string;
  let fix = 'check the path';
  switch (code) {
    case 'ENOENT':
      problem = 'it does not exist, or is a symbolic link to nothing';
      fix = 'check the path, and that the file is there';
      break;
    case 'EACCES':
    case 'EPERM':
      problem = `this process (user ${user}) may not read it, or may not enter a folder above it`;
      fix = `make it readable by user ${user}, and every folder above it searchable (x) by that user`;
      break;
    case 'ELOOP':
      problem = 'its symbolic links form a loop, or a chain too long to follow';
      fix = 'point the path at the file itself';
      break;
    case 'ENOTDIR':
      problem = 'a part of the path before the file name is not a folder';
      break;
    case 'EISDIR':
      problem = 'it is a folder';
      fix = 'name the file itself';
      break;
    default: {
      const errno = (error as NodeJS.ErrnoException).errno;
      problem = typeof errno === 'number' ? getSystemErrorMessage(errno) : (error as Error).message;
      fix = 'check the path and its permissions';
    }
  }
  return new InvalidInput(`${name} ${path} cannot be opened: ${problem} (${code}); ${fix}`, {
    details: { path, errno: code },
    cause: error,
  });
}

/** What to tell someone whose key file isPrivateKeyFileMode refused: what is wrong with it and what to run. */
export function privateKeyFileAdvice(
  path: string,
  info: { mode: number; uid: number; gid: number },
  owner: number | undefined = process.geteuid?.(),
): string {
  const mode = (info.mode & 0o777).toString(8);
  if (owner !== undefined && info.uid !== owner && info.uid !== 0) {
    return `${path} is owned by user ${info.uid}, who could read or replace it: run chown ${owner} on it (or chown root)`;
  }
  if (info.uid === 0 && (info.mode & 0o037) === 0) {
    return (
      `${path} is readable by group ${info.gid} (mode ${mode}), which this process is not in: run chmod 600 on it, ` +
      'or give it the group kubevisa runs as'
    );
  }
  return `${path} can be read by group or others (mode ${mode}): run chmod 600 on it (640 at most for a file owned by root in kubevisa's group)`;
}

const SETGID = 0o2000;

/**
 * What is known of a folder beyond its owner, group and mode (folderFacts): where it sits among the mounts. Absent
 * when not looked up: as false.
 */
export interface FolderMount {
  /** A file system (a volume) is mounted right there: the kubelet's emptyDir, a PersistentVolume, a Secret. */
  volumeRoot?: boolean;
  /** Its file system is mounted read-only (EROFS), so nobody can write it, whatever its mode. */
  readOnly?: boolean;
}

/**
 * True when a folder with this owner, group and mode may hold kubevisa's private keys. Whoever can write a folder can
 * rename, remove and add names in it, so could swap a key kubevisa keeps there for one of their own (or a symlink to
 * one) between two starts: the folder must be writable by its owner only, and that owner is this process's user
 * (`owner`, the effective uid) or root, as for a key file. A folder on a read-only mount (`info.readOnly`) is
 * accepted whatever its mode: nobody can write it. One shape of a root-owned folder that others may write is
 * accepted too: setgid with a group this process is in (`groups`). That is how the kubelet hands a pod an emptyDir or
 * a volume with an fsGroup: root-owned, group fsGroup, setgid, group-writable; every container of the pod runs in that
 * group anyway. An emptyDir is even 2777, writable by users outside that group; that is accepted only at the root of
 * a mounted volume (`info.volumeRoot`), where the node's own users cannot reach it (the kubelet's pod folders are
 * root's), never for a folder on a host: there any local user could swap the store or a key in it.
 * A sticky folder (as /tmp) is not enough: nobody may rename another's file in it, but anyone may add the names
 * kubevisa has not made yet (the database, its journal, a key), which kubevisa would then open as its own.
 */
export function isKeyFolderMode(
  info: { mode: number; uid: number; gid: number } & FolderMount,
  groups: readonly number[] = processGroups(),
  owner: number | undefined = process.geteuid?.(),
): boolean {
  if (owner !== undefined && info.uid !== owner && info.uid !== 0) return false;
  if ((info.mode & 0o022) === 0 || info.readOnly === true) return true;
  if (info.uid !== 0 || (info.mode & SETGID) === 0 || !groups.includes(info.gid)) return false;
  return (info.mode & 0o002) === 0 || info.volumeRoot === true;
}

/** What to tell someone whose key folder isKeyFolderMode refused: whose it is, who else may write it, what to run. */
export function keyFolderAdvice(
  path: string,
  info: { mode: number; uid: number; gid: number },
  owner: number | undefined = process.geteuid?.(),
  groups: readonly number[] = processGroups(),
): string {
  const facts = `owner ${info.uid}, group ${info.gid}, mode ${(info.mode & 0o7777).toString(8)}`;
  if (owner !== undefined && info.uid !== owner && info.uid !== 0) {
    return `${path} belongs to user ${info.uid} (${facts}), who could replace the keys in it: run chown ${owner} on it (or chown root)`;
  }
  const writers = [(info.mode & 0o020) !== 0 ? `group ${info.gid}` : '', (info.mode & 0o002) !== 0 ? 'others' : '']
    .filter((who) => who !== '')
    .join(' and ');
  let fix = 'run chmod 700 on it';
  if (info.uid === 0 && (info.mode & SETGID) !== 0 && groups.includes(info.gid)) {
    fix =
      "run chmod o-w on it (others may write such a folder only at the root of a volume, as the kubelet's emptyDir, " +
      'which this is not)';
  } else if (info.uid === 0 && owner !== 0) {
    fix = `run chown ${owner} on it and chmod 700 (a root-owned folder others may write is accepted only setgid with a group kubevisa runs in, as the kubelet makes a pod's volume; the sticky bit is not enough: anyone could still make the files kubevisa has yet to make)`;
  }
  return `${path} can be written by ${writers} (${facts}), who could swap a key in it for another: ${fix}`;
}

/**
 * The folder at `realPath` (no symbolic links in it) as isKeyFolderMode and isFolderAboveKeysMode judge it: its
 * stat, and, only when others than its owner may write it, whether it is a volume's root and whether it is read-only.
 */
async function folderFacts(realPath: string): Promise<Stats & FolderMount> {
  const info = await stat(realPath);
  if ((info.mode & 0o022) === 0 || !info.isDirectory()) return info;
  const readOnly = await access(realPath, fsConstants.W_OK).then(
    () => false,
    (error: unknown) => isErrno(error, 'EROFS'),
  );
  return Object.assign(info, { readOnly, volumeRoot: await isMountPoint(realPath) });
}

/**
 * True when a file system is mounted at `realPath` (no symbolic links in it), from this process's mount table
 * (/proc/self/mountinfo: the fifth field of each line, with space, tab, newline and backslash written in octal).
 * Without a mount table (not Linux) nothing is known to be a volume: false, so such a folder is refused.
 */
export async function isMountPoint(realPath: string, mountTable = '/proc/self/mountinfo'): Promise<boolean> {
  let table: string;
  try {
    table = await readFile(mountTable, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
  for (const line of table.split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint === undefined) continue;
    const decoded = mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    if (decoded === realPath) return true;
  }
  return false;
}

const STICKY = 0o1000;

/**
 * True when a folder on the way to a key folder (one above it, or one a symbolic link on the way leads through) is
 * safe: acceptable as a key folder itself (isKeyFolderMode), or root-owned and sticky (as /tmp), where others may add
 * names but not rename or remove kubevisa's. Whoever could rename a name in such a folder could move the key folder,
 * or a folder above it, away and put another in its place.
 */
export function isFolderAboveKeysMode(
  info: { mode: number; uid: number; gid: number } & FolderMount,
  groups: readonly number[] = processGroups(),
  owner: number | undefined = process.geteuid?.(),
): boolean {
  return isKeyFolderMode(info, groups, owner) || (info.uid === 0 && (info.mode & STICKY) !== 0);
}

/**
 * What to tell someone whose folder above a key folder isFolderAboveKeysMode refused, to follow "lies inside <folder>,
 * which": whose it is or who else may write it, and what to run.
 */
export function folderAboveAdvice(
  info: { mode: number; uid: number; gid: number },
  owner: number | undefined = process.geteuid?.(),
): string {
  const facts = `owner ${info.uid}, group ${info.gid}, mode ${(info.mode & 0o7777).toString(8)}`;
  const threat = 'who could move what is in it and put something of their own in its place';
  if (owner !== undefined && info.uid !== owner && info.uid !== 0) {
    return `belongs to user ${info.uid} (${facts}), ${threat}: run chown root on it (or chown ${owner}), or name a folder elsewhere`;
  }
  const writers = [(info.mode & 0o020) !== 0 ? `group ${info.gid}` : '', (info.mode & 0o002) !== 0 ? 'others' : '']
    .filter((who) => who !== '')
    .join(' and ');
  return `can be written by ${writers} (${facts}), ${threat}: run chmod go-w on it (or, for a root-owned folder others must keep writing, chmod +t as /tmp), or name a folder elsewhere`;
}

/** An error as a failed system call gives it (code, errno, syscall, path), for unopenableFile. */
function systemError(code: 'ENOTDIR' | 'ELOOP', path: string): NodeJS.ErrnoException {
  const errno = osConstants.errno[code];
  return Object.assign(new Error(`${code}: ${getSystemErrorMessage(-errno)}, lstat '${path}'`), {
    code,
    errno: -errno,
    syscall: 'lstat',
    path,
  });
}

/** Linux's own limit on symbolic links followed in one path (ELOOP beyond). */
const MAX_SYMLINKS = 40;

/**
 * Follows `path` (a key folder, or a key file) from `/` one name at a time as the system does (a symbolic link read
 * and followed where it stands, `..` taken from the folder reached, not from the text) and refuses it, with an
 * InvalidInput starting with `name`, when a folder it passes through is not safe (isFolderAboveKeysMode), or when a
 * symbolic link on the way lies in a folder others may write and belongs to someone else than kubevisa's user or root
 * (the rule of the kernel's fs.protected_symlinks, which kubevisa does not count on being set). Checking the key
 * folder alone is not enough: whoever could write a folder above it, or one a symbolic link leads through, could swap
 * what is there, between the check and the moment a key or the store is opened by name, for something of their own.
 * Once every folder on the way is safe, nobody else can change where the path leads. A name that is missing, a path
 * through a file and too many symbolic links are refused as unopenableFile says (ENOENT, ENOTDIR, ELOOP).
 * @returns where `path` really leads: an absolute path without symbolic links (what is there is not checked).
 */
async function followKeyPath(path: string, name: string): Promise<string> {
  const refuse = (message: string, details: Record<string, unknown>) =>
    new InvalidInput(`${name} ${path} ${message}`, { details: { path, ...details } });
  // process.cwd() has no symbolic links in it (getcwd).
  const pending = (isAbsolute(path) ? path : `${process.cwd()}/${path}`).split('/');
  let current = '/';
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      current = dirname(current);
      continue;
    }
    const folder = await folderFacts(current);
    if (!folder.isDirectory()) throw unopenableFile(name, path, systemError('ENOTDIR', current));
    if (!isFolderAboveKeysMode(folder)) {
      throw refuse(`lies inside ${current}, which ${folderAboveAdvice(folder)}`, {
        folder: current,
        mode: (folder.mode & 0o7777).toString(8),
        uid: folder.uid,
        gid: folder.gid,
      });
    }
    const next = current === '/' ? `/${part}` : `${current}/${part}`;
    let entry;
    try {
      entry = await lstat(next);
    } catch (error) {
      throw unopenableFile(name, path, error);
    }
    if (!entry.isSymbolicLink()) {
      current = next;
      continue;
    }
    const user = process.geteuid?.();
    if ((folder.mode & 0o022) !== 0 && user !== undefined && entry.uid !== user && entry.uid !== 0) {
      throw refuse(
        `is reached through the symbolic link ${next}, which belongs to user ${entry.uid} in a folder others may write ` +
          `(${current}, mode ${(folder.mode & 0o7777).toString(8)}): they could point it elsewhere; name what it leads ` +
          'to instead, or make the link yourself',
        { link: next, uid: entry.uid },
      );
    }
    links += 1;
    if (links > MAX_SYMLINKS) throw unopenableFile(name, path, systemError('ELOOP', next));
    const target = await readlink(next);
    if (isAbsolute(target)) current = '/';
    pending.unshift(...target.split('/'));
  }
  return current;
}

/**
 * Makes the folder kubevisa keeps private keys in (mode 0700) if it is missing, and refuses one that isKeyFolderMode
 * does not accept, or that is no folder, or that lies inside a folder someone else could write (see
 * followKeyPath), with an InvalidInput that starts with `name` and names the folder, its owner and mode, and
 * what to run. Called at start for the data folder, and by each key's loader for its key's folder.
 */
export async function ensureKeyFolder(path: string, name = 'the data folder'): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
    // Something other than a folder is in the way: refused below, by name.
    if (!isErrno(error, 'EEXIST')) throw error;
  });
  const real = process.platform === 'win32' ? path : await followKeyPath(path, name);
  const info = await folderFacts(real);
  const details = { path, mode: (info.mode & 0o7777).toString(8), uid: info.uid, gid: info.gid };
  if (!info.isDirectory()) {
    throw new InvalidInput(`${name} ${path} is not a folder: move what is there, or name another folder`, { details });
  }
  if (!isKeyFolderMode(info)) throw new InvalidInput(`${name} ${keyFolderAdvice(path, info)}`, { details });
}
