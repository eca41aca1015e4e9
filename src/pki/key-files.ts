/**
 * Private keys on disk: created once, never overwritten, owner-only. Creation writes a temporary file with
 * O_EXCL (never into a file or symlink someone else prepared; the mode applies at creation), syncs it, and
 * links it into place, so two processes starting together end up with one key — the first one written.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, open, unlink } from 'node:fs/promises';

/** True when `error` is a Node system error with this code (ENOENT, EEXIST, …). */
export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Writes `pem` to `path` (mode 0600) unless a file is already there.
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
  try {
    await link(temporaryPath, path);
    return 'created';
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw error;
    return 'exists';
  } finally {
    await unlink(temporaryPath);
  }
}

/**
 * True when a private key file with this owner and mode can be used: readable by its owner only (0600 or less), or,
 * for a file owned by root, also by its group (0640 or less), as PostgreSQL allows for its server key. The second
 * case is how Kubernetes mounts a Secret into a pod that sets an fsGroup (the Helm chart's does): the kubelet writes
 * each file as root and then adds group read for the pod's fsGroup, whatever the volume's defaultMode says, so a key
 * mounted from a Secret arrives as root:<fsGroup> 0440. That group is the pod's own; others still read nothing.
 */
export function isPrivateKeyFileMode(info: { mode: number; uid: number }): boolean {
  if ((info.mode & 0o077) === 0) return true;
  return info.uid === 0 && (info.mode & 0o037) === 0;
}
