/**
 * Follows a kube-apiserver audit log file (JSON lines) like `tail -F`: reads what was appended since the last
 * poll, keeps a line cut in half until its end arrives, and survives rotation (the file renamed and a new one
 * created: the old one is read to its end first) and truncation (read again from the start). Polling rather than
 * fs.watch, which misses events on some filesystems and after rotation.
 */
import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';

/** Where the tail stands: saved by the caller so a restarted server resumes instead of re-reading everything. */
export interface TailPosition {
  /** Inode of the file the offset belongs to. */
  inode: number;
  /** Bytes already read. */
  offset: number;
  /**
   * SHA-256 (hex) of the file's first bytes (up to 256, and not past `offset`): inodes are reused once a file is
   * deleted, so the inode alone cannot tell a new file from the one the offset belongs to.
   */
  head: string;
}

const HEAD_BYTES = 256;

async function headOf(file: FileHandle, offset: number): Promise<string> {
  const buffer = Buffer.alloc(Math.min(HEAD_BYTES, offset));
  const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
  return createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex');
}

export interface TailOptions {
  file: string;
  /** Resume here when the file is still the same one (same inode); otherwise start at its beginning. */
  start?: TailPosition;
  /** Complete lines, in order. A throw is reported to onError and the lines are not read again. */
  onLines: (lines: string[]) => void;
  onError: (error: Error) => void;
  /** Poll interval in ms (default 1000). */
  intervalMs?: number;
}

/** Longest line kept while waiting for its end (bytes); a longer one is skipped as garbage. */
const MAX_PARTIAL_BYTES = 4 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;

export interface Tail {
  /** Reads everything appended so far (also what the timer does). */
  poll(): Promise<void>;
  /** Where the tail stands now (undefined before the file was first opened). */
  position(): Promise<TailPosition | undefined>;
  stop(): Promise<void>;
}

export function tailFile(options: TailOptions): Tail {
  let handle: FileHandle | undefined;
  let inode = -1;
  let offset = 0;
  let partial = '';
  let polling: Promise<void> | undefined;
  let stopped = false;
  let reportedMissing = false;

  const deliver = (lines: string[]) => {
    if (lines.length === 0) return;
    try {
      options.onLines(lines);
    } catch (error) {
      options.onError(error instanceof Error ? error : new Error(String(error)));
    }
  };

  const readToEnd = async (file: FileHandle) => {
    const buffer = Buffer.alloc(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      const text = partial + buffer.toString('utf8', 0, bytesRead);
      const lastNewline = text.lastIndexOf('\n');
      if (lastNewline === -1) {
        partial = text.length > MAX_PARTIAL_BYTES ? '' : text;
        continue;
      }
      partial = text.slice(lastNewline + 1);
      if (partial.length > MAX_PARTIAL_BYTES) partial = '';
      deliver(text.slice(0, lastNewline).split('\n'));
    }
  };

  const pollOnce = async () => {
    if (handle === undefined) {
      try {
        handle = await open(options.file, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          // kube-apiserver creates the file on its first event; say so once, then keep waiting quietly.
          if (!reportedMissing) options.onError(new Error(`audit log ${options.file} does not exist (yet)`));
          reportedMissing = true;
          return;
        }
        throw error;
      }
      reportedMissing = false;
      const info = await handle.stat();
      const start = options.start;
      const resume =
        start !== undefined &&
        start.inode === info.ino &&
        start.offset <= info.size &&
        (await headOf(handle, start.offset)) === start.head;
      inode = info.ino;
      offset = resume ? start.offset : 0;
      partial = '';
    }
    const current = handle;
    const size = (await current.stat()).size;
    if (size < offset) {
      // Truncated in place (copytruncate rotation): the new content starts at 0.
      offset = 0;
      partial = '';
    }
    await readToEnd(current);
    let renamed = false;
    try {
      renamed = (await stat(options.file)).ino !== inode;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      renamed = true;
    }
    if (renamed) {
      // Rotated: everything in the old file has been read; the next poll opens the new one from its start.
      await readToEnd(current);
      await current.close();
      handle = undefined;
      partial = '';
    }
  };

  const poll = () => {
    polling ??= pollOnce()
      .catch((error: unknown) => options.onError(error instanceof Error ? error : new Error(String(error))))
      .finally(() => {
        polling = undefined;
      });
    return polling;
  };

  const timer = setInterval(() => {
    if (!stopped) void poll();
  }, options.intervalMs ?? 1000);
  timer.unref();

  return {
    poll,
    async position() {
      const current = handle;
      if (current === undefined || inode === -1) return undefined;
      const complete = offset - Buffer.byteLength(partial);
      return { inode, offset: complete, head: await headOf(current, complete) };
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await polling;
      await handle?.close();
      handle = undefined;
    },
  };
}
