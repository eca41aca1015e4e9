/**
 * Verification of one chunk of an exported trail (whole lines), independent of every other chunk, so chunks can
 * be checked on several threads at once: each record must be well formed, hash to what it carries and follow the
 * record before it in the chunk. Links between chunks, and the diagnosis of a fault (gap, reorder, insertion),
 * are the caller's (verify-file.ts), which sees the whole file.
 */
import { linkAuditHash, type AuditLink } from '../store/audit-chain.ts';
import { parseRecordLine } from './jsonl.ts';

export interface ChunkSummary {
  /** Records checked: all of them, or those before `problem`. */
  records: number;
  redacted: number;
  first?: { seq: number; prevHash: string };
  last?: { seq: number; hash: string };
  /** The first record (0-based, within the chunk) that is not sound; nothing after it was checked. */
  problem?: { index: number; kind: 'malformed' | 'torn' | 'chain'; message: string };
  /** Hashes of the records at the seqs asked for (where checkpoints point). */
  hashesAt: [number, string][];
}

const NEWLINE = 0x0a;

/**
 * The records of a chunk as links (for the diagnosis of a fault), at most `limit`; `stopped` says a malformed
 * line or the limit ended the list before the chunk did.
 */
export function chunkLinks(bytes: Buffer, limit: number): { links: AuditLink[]; stopped: boolean } {
  const links: AuditLink[] = [];
  let start = 0;
  while (start < bytes.length) {
    if (links.length >= limit) return { links, stopped: true };
    let end = bytes.indexOf(NEWLINE, start);
    if (end === -1) end = bytes.length;
    const parsed = parseRecordLine(bytes, start, end);
    if (!parsed.ok) return { links, stopped: true };
    links.push(parsed.link);
    start = end + 1;
  }
  return { links, stopped: false };
}

/**
 * Checks the lines in `bytes`. `last` says this is the end of the file: a final line without its newline that is
 * not a record is then a torn record (a write cut short) rather than an altered one.
 */
export function verifyChunk(bytes: Buffer, last: boolean, wantSeqs: ReadonlySet<number>): ChunkSummary {
  const summary: ChunkSummary = { records: 0, redacted: 0, hashesAt: [] };
  let previous: { seq: number; hash: string } | undefined;
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(NEWLINE, start);
    const terminated = end !== -1;
    if (!terminated) end = bytes.length;
    const index = summary.records;
    if (end === start) {
      summary.problem = { index, kind: 'malformed', message: 'an empty line where a record should be' };
      return summary;
    }
    const parsed = parseRecordLine(bytes, start, end);
    start = end + 1;
    if (!parsed.ok) {
      summary.problem =
        last && !terminated
          ? { index, kind: 'torn', message: `the last record is cut short (${parsed.message})` }
          : { index, kind: 'malformed', message: `not a record: ${parsed.message}` };
      return summary;
    }
    const link = parsed.link;
    if (linkAuditHash(link.seq, link.prevHash, link.contentHash) !== link.hash) {
      summary.problem =
        last && !terminated
          ? { index, kind: 'torn', message: 'the last record is cut short (its bytes do not match its hash)' }
          : { index, kind: 'chain', message: 'content does not match its hash' };
      return summary;
    }
    if (previous !== undefined && (link.seq !== previous.seq + 1 || link.prevHash !== previous.hash)) {
      summary.problem = { index, kind: 'chain', message: `does not follow seq ${previous.seq}` };
      return summary;
    }
    if (previous === undefined) summary.first = { seq: link.seq, prevHash: link.prevHash };
    if (wantSeqs.has(link.seq)) summary.hashesAt.push([link.seq, link.hash]);
    if (parsed.redacted) summary.redacted++;
    previous = { seq: link.seq, hash: link.hash };
    summary.last = previous;
    summary.records++;
  }
  return summary;
}
