/**
 * Offline verification of an exported trail (JSON lines, see jsonl.ts), as an auditor runs it with
 * `kubevisa audit verify --from FILE`: no server, no database, only the file, the checkpoints they were given
 * and the public key they trust.
 *
 * The file is read in chunks of whole lines that worker threads check in parallel (parse, hash, link within the
 * chunk: chunk.ts); this thread stitches the chunks' ends together. At the first fault it re-reads the
 * neighbourhood and runs the exact diagnosis (verifyChain) on it, so a deleted, inserted or reordered record is
 * named as such, at its line.
 */
import { availableParallelism } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { InvalidInput } from '../domain/errors.ts';
import { GENESIS_HASH, verifyChain, type AuditLink } from '../store/audit-chain.ts';
import { checkpointSignatureValid, type CheckpointRecord } from './checkpoints.ts';
import { chunkLinks, verifyChunk, type ChunkSummary } from './chunk.ts';
import { parseRecordLine } from './jsonl.ts';
import { judgeCheckpoints, trailVerification, type TrailFault, type TrailVerification } from './verdict.ts';
import type { ChunkTask } from './verify-worker.ts';

/** Default chunk size: large enough that messaging costs nothing next to hashing, small enough to stream. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** Records after a fault read for its diagnosis (how far a displaced record is looked for). */
const DIAGNOSIS_LOOKAHEAD = 20_000;
const NEWLINE = 0x0a;

export interface VerifyFileOptions {
  /** Signed checkpoints to hold the trail against (a pack's, or ones the auditor kept from earlier). */
  checkpoints?: readonly CheckpointRecord[];
  /** The key checkpoints must be signed with; without it their signatures are not checked (and it is said). */
  publicKey?: KeyObject;
  /** Worker threads; default the machine's parallelism, at most 4. 0 checks everything on this thread. */
  workers?: number;
  /** Bytes per chunk; default 4 MiB. */
  chunkBytes?: number;
}

interface ChunkInfo {
  /** Where the chunk starts in the file, and its length, in bytes. */
  offset: number;
  length: number;
  /** Index of its first record in the whole file. Known once the chunks before it are summarised. */
  firstIndex: number;
  summary: ChunkSummary;
}

/** Verifies the export at `path`. Throws InvalidInput only when the file cannot be read at all. */
export async function verifyExportFile(path: string, options: VerifyFileOptions = {}): Promise<TrailVerification> {
  const checkpoints = options.checkpoints ?? [];
  const wantSeqs = [...new Set(checkpoints.map((checkpoint) => checkpoint.seq))];
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new InvalidInput(`cannot read the audit export ${path}: ${(error as Error).message}`, { cause: error });
  }
  const pool = new ChunkPool(options.workers ?? Math.min(4, availableParallelism()));
  try {
    const firstLine = await readFirstLine(handle);
    const chunks = await checkChunks(handle, pool, options.chunkBytes ?? DEFAULT_CHUNK_BYTES, wantSeqs);
    return await stitch(handle, chunks, firstLine, checkpoints, options.publicKey);
  } finally {
    await pool.close();
    await handle.close();
  }
}

/** The first record's seq (to find the checkpoint a window starts from), if it parses. */
async function readFirstLine(handle: FileHandle): Promise<number | undefined> {
  const buffer = Buffer.alloc(64 * 1024);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  const end = buffer.subarray(0, bytesRead).indexOf(NEWLINE);
  const parsed = parseRecordLine(buffer, 0, end === -1 ? bytesRead : end);
  return parsed.ok ? parsed.link.seq : undefined;
}

/** Reads the file in chunks of whole lines and has each checked, in order, at most two per worker in flight. */
async function checkChunks(
  handle: FileHandle,
  pool: ChunkPool,
  chunkBytes: number,
  wantSeqs: number[],
): Promise<ChunkInfo[]> {
  const size = (await handle.stat()).size;
  const pending: Promise<ChunkInfo>[] = [];
  const done: ChunkInfo[] = [];
  let offset = 0;
  let carry = new Uint8Array(0);
  while (offset < size || carry.length > 0) {
    const want = Math.min(chunkBytes, size - offset);
    const bytes = new Uint8Array(carry.length + want);
    bytes.set(carry, 0);
    const { bytesRead } = await handle.read(bytes, carry.length, want, offset);
    const start = offset - carry.length;
    offset += bytesRead;
    const filled = bytes.subarray(0, carry.length + bytesRead);
    const atEnd = offset >= size;
    const cut = atEnd ? filled.length : filled.lastIndexOf(NEWLINE) + 1;
    if (cut === 0) {
      // One line longer than a chunk: keep reading until its end.
      carry = filled.slice();
      continue;
    }
    // The unfinished last line is copied out; the chunk itself is handed over without a copy.
    carry = filled.slice(cut);
    const chunk = filled.subarray(0, cut);
    const length = chunk.length;
    pending.push(
      pool.check(chunk, atEnd && carry.length === 0, wantSeqs).then((summary) => ({
        offset: start,
        length,
        firstIndex: 0,
        summary,
      })),
    );
    if (pending.length >= pool.capacity) done.push(await (pending.shift() as Promise<ChunkInfo>));
  }
  for (const info of pending) done.push(await info);
  return done;
}

async function stitch(
  handle: FileHandle,
  chunks: ChunkInfo[],
  firstSeq: number | undefined,
  checkpoints: readonly CheckpointRecord[],
  publicKey: KeyObject | undefined,
): Promise<TrailVerification> {
  const anchor = anchorFor(firstSeq, checkpoints, publicKey);
  const hashes = new Map<number, string>([[anchor.seq, anchor.hash]]);
  let previous: { seq: number; hash: string } = anchor;
  let index = 0;
  let redacted = 0;
  let fault: DiagnosedFault | undefined;
  for (const [position, chunk] of chunks.entries()) {
    chunk.firstIndex = index;
    const { summary } = chunk;
    const first = summary.first;
    if (first !== undefined && (first.seq !== previous.seq + 1 || first.prevHash !== previous.hash)) {
      fault = await diagnose(handle, chunks, position, index, anchor);
      break;
    }
    for (const [seq, hash] of summary.hashesAt) hashes.set(seq, hash);
    redacted += summary.redacted;
    if (summary.last !== undefined) previous = summary.last;
    index += summary.records;
    const problem = summary.problem;
    if (problem !== undefined) {
      fault =
        problem.kind === 'chain'
          ? await diagnose(handle, chunks, position, index, anchor)
          : {
              index,
              line: index + 1,
              ...seqOf(previous, index),
              kind: problem.kind,
              message: `line ${index + 1}: ${problem.message}`,
            };
      break;
    }
  }
  const verified = fault === undefined ? index : fault.index;
  const head = verified === 0 ? undefined : (fault?.head ?? previous);
  const findings = judgeCheckpoints({
    checkpoints,
    ...(publicKey === undefined ? {} : { publicKey }),
    firstSeq: firstSeq ?? 1,
    headSeq: head?.seq ?? anchor.seq,
    broken: fault !== undefined,
    hashAt: (seq) => (head !== undefined && seq <= head.seq ? hashes.get(seq) : undefined),
  });
  return trailVerification({
    records: verified,
    redacted,
    ...(firstSeq === undefined ? {} : { first: firstSeq }),
    ...(head === undefined ? {} : { head }),
    ...(fault === undefined ? {} : { fault: withoutHead(fault) }),
    checkpoints: findings,
  });
}

/** The seq a faulty record most likely has: the one after the last good record (for messages only). */
function seqOf(previous: { seq: number }, index: number): { seq?: number } {
  return index === 0 ? {} : { seq: previous.seq + 1 };
}

function withoutHead(fault: DiagnosedFault): TrailFault {
  const { head: _head, ...rest } = fault;
  return rest;
}

/**
 * What the first record must follow: the genesis for a trail from seq 1; for a window (an evidence pack), the
 * checkpoint just before it, if one is given and (with a key) genuinely signed.
 */
function anchorFor(
  firstSeq: number | undefined,
  checkpoints: readonly CheckpointRecord[],
  publicKey: KeyObject | undefined,
): { seq: number; hash: string } {
  if (firstSeq === undefined || firstSeq <= 1) return { seq: 0, hash: GENESIS_HASH };
  const before = checkpoints.find(
    (checkpoint) =>
      checkpoint.seq === firstSeq - 1 && (publicKey === undefined || checkpointSignatureValid(checkpoint, publicKey)),
  );
  return before === undefined ? { seq: 0, hash: GENESIS_HASH } : { seq: before.seq, hash: before.hash };
}

/** A fault with the last record that verified before it, when the diagnosis moved the fault earlier. */
type DiagnosedFault = TrailFault & { head?: { seq: number; hash: string } };

/**
 * Names the first chain fault exactly: re-reads the records from two before `faultIndex` (a forged record may
 * sit just before where the break shows) plus a look-ahead, and lets verifyChain tell gap, reorder, insertion and
 * alteration apart.
 */
async function diagnose(
  handle: FileHandle,
  chunks: ChunkInfo[],
  faultChunk: number,
  faultIndex: number,
  anchor: { seq: number; hash: string },
): Promise<DiagnosedFault> {
  let startChunk = faultChunk;
  while (startChunk > 0 && (chunks[startChunk]?.firstIndex ?? 0) > faultIndex - 2) startChunk--;
  const startInfo = chunks[startChunk] as ChunkInfo;
  const before = startChunk === 0 ? anchor : (chunks[startChunk - 1]?.summary.last ?? anchor);
  const entries: AuditLink[] = [];
  const wanted = faultIndex - startInfo.firstIndex + DIAGNOSIS_LOOKAHEAD;
  for (let c = startChunk; c < chunks.length && entries.length < wanted; c++) {
    const info = chunks[c] as ChunkInfo;
    const bytes = Buffer.alloc(info.length);
    await handle.read(bytes, 0, info.length, info.offset);
    const { links, stopped } = chunkLinks(bytes, wanted - entries.length);
    entries.push(...links);
    if (stopped) break;
  }
  const verdict = verifyChain(entries, { previous: before });
  if (verdict.ok) {
    // The window verifies on its own only if the fault lies past the look-ahead; report where it was seen.
    return {
      index: faultIndex,
      line: faultIndex + 1,
      kind: 'broken-link',
      message: `line ${faultIndex + 1}: the chain breaks here`,
    };
  }
  const index = startInfo.firstIndex + verdict.index;
  const previousEntry = verdict.index > 0 ? entries[verdict.index - 1] : undefined;
  const head =
    previousEntry !== undefined
      ? { seq: previousEntry.seq, hash: previousEntry.hash }
      : startInfo.firstIndex > 0
        ? before
        : undefined;
  return {
    index,
    line: index + 1,
    seq: verdict.seq,
    kind: verdict.fault,
    message: `line ${index + 1} (seq ${verdict.seq}): ${verdict.detail}`,
    ...(head === undefined ? {} : { head }),
  };
}

/** Worker threads that check chunks; with size 0 it checks them on this thread. */
class ChunkPool {
  readonly capacity: number;
  private readonly slots: { worker: Worker; waiting: Waiter[] }[] = [];
  private failure: Error | undefined;
  private nextId = 0;

  constructor(size: number) {
    this.capacity = Math.max(2, size * 2);
    for (let i = 0; i < size; i++) {
      const slot = { worker: new Worker(new URL('./verify-worker.ts', import.meta.url)), waiting: [] as Waiter[] };
      // A worker answers its chunks in the order it was sent them.
      slot.worker.on('message', (message: { summary: ChunkSummary }) => slot.waiting.shift()?.resolve(message.summary));
      slot.worker.on('error', (error: Error) => {
        this.failure = error;
        for (const waiter of slot.waiting.splice(0)) waiter.reject(error);
      });
      this.slots.push(slot);
    }
  }

  check(bytes: Uint8Array, last: boolean, wantSeqs: number[]): Promise<ChunkSummary> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.slots.length === 0) {
      return Promise.resolve(
        verifyChunk(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), last, new Set(wantSeqs)),
      );
    }
    const slot = this.slots.reduce((a, b) => (b.waiting.length < a.waiting.length ? b : a));
    return new Promise<ChunkSummary>((resolve, reject) => {
      slot.waiting.push({ resolve, reject });
      const task: ChunkTask = { id: this.nextId++, bytes, last, wantSeqs };
      // Transferred, not copied: the chunk is the worker's from here on.
      slot.worker.postMessage(task, [bytes.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }
}

interface Waiter {
  resolve: (summary: ChunkSummary) => void;
  reject: (error: Error) => void;
}
