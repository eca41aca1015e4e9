/**
 * The newest checkpoint, kept in a file beside the database as well as in it. Restoring the database from an
 * older backup rolls its checkpoints back with it; the file, written after each checkpoint, still names the newer
 * head, so the server notices at start (and every verification reports it). Restoring the whole data folder
 * defeats this copy too: that is what checkpoints held elsewhere (an auditor's, an evidence pack's, the CLI's
 * remembered one) are for.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import { parseCheckpoint, type CheckpointRecord } from './checkpoints.ts';

/** File name inside the data folder. */
export const LATEST_CHECKPOINT_FILE = 'audit-latest-checkpoint.json';

/** The checkpoint in `path`, or undefined when there is none yet. Throws InvalidInput for a file that is not one. */
export async function readLatestCheckpoint(path: string): Promise<CheckpointRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidInput(`${path} is not JSON: it should hold the newest audit checkpoint`, { cause: error });
  }
  return parseCheckpoint(value, path);
}

/** Replaces the file atomically and durably: written and fsynced aside, renamed over, folder fsynced. */
export async function writeLatestCheckpoint(path: string, checkpoint: CheckpointRecord): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(checkpoint)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary);
    throw error;
  }
  const folder = await open(dirname(path), 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}
