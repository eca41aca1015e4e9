/**
 * The export format of the audit trail: JSON lines, one record per line, in seq order, as SIEMs ingest them.
 *
 * A full record is one flat JSON object: `seq`, `prevHash` and `hash` first, then the event's content (`action`,
 * `actor`, `at` in epoch milliseconds, `cluster`, `details`, `engagementId`, `namespace`, `outcome`,
 * `personId`, `reason`, `sessionId`, `source`, `visaId`; absent ones left out) exactly as its content hash
 * covers it: the bytes from `"action"` to the closing brace, with a `{` in front, are the content text (see
 * src/store/audit-chain.ts). So verifying a record hashes its bytes; nothing is parsed or re-serialised, and a
 * record whose bytes changed in any way, even to an equivalent JSON spelling, no longer verifies.
 *
 * A redacted record (another engagement's event, in an evidence pack) is
 * `{"seq":…,"prevHash":"…","hash":"…","contentHash":"…","redacted":true}`.
 */
import { auditContentHash, type AuditLink } from '../store/audit-chain.ts';
import type { AuditRecord } from '../store/store.ts';

/** One line of an export, with its newline. */
export function exportLine(record: AuditRecord): string {
  return `{"seq":${record.seq},"prevHash":"${record.prevHash}","hash":"${record.hash}",${record.contentText.slice(1)}\n`;
}

/** One line of an export that proves where `record` sits without showing it. */
export function redactedLine(record: AuditRecord): string {
  return (
    `{"seq":${record.seq},"prevHash":"${record.prevHash}","hash":"${record.hash}",` +
    `"contentHash":"${auditContentHash(record.contentText)}","redacted":true}\n`
  );
}

/** A record's link as read from its line, and whether it was a redacted one. */
export type ParsedLink = { ok: true; link: AuditLink; redacted: boolean } | { ok: false; message: string };

const SEQ_PREFIX = Buffer.from('{"seq":');
const PREV_HASH = Buffer.from(',"prevHash":"');
const HASH = Buffer.from('","hash":"');
const CONTENT_START = Buffer.from('",');
const CONTENT_HASH = Buffer.from('"contentHash":"');
const REDACTED_END = Buffer.from('","redacted":true}');
const HASH_LENGTH = 64;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

function matchesAt(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  if (at + expected.length > bytes.length) return false;
  for (let i = 0; i < expected.length; i++) if (bytes[at + i] !== expected[i]) return false;
  return true;
}

/**
 * Reads the record in `line[start, end)` (without its newline): its seq, links and the hash of its content
 * bytes. Never throws. `line` is briefly changed in place (the comma before the content becomes the content's
 * opening brace while it is hashed) and restored.
 */
export function parseRecordLine(line: Buffer, start: number, end: number): ParsedLink {
  const bytes = line.subarray(start, end);
  if (!matchesAt(bytes, 0, SEQ_PREFIX)) return { ok: false, message: 'does not start with {"seq":' };
  let at = SEQ_PREFIX.length;
  let seq = 0;
  const digitsFrom = at;
  while (at < bytes.length && (bytes[at] as number) >= DIGIT_0 && (bytes[at] as number) <= DIGIT_9) {
    seq = seq * 10 + ((bytes[at] as number) - DIGIT_0);
    at++;
  }
  const digits = at - digitsFrom;
  if (digits === 0 || digits > 15 || bytes[digitsFrom] === DIGIT_0) {
    return { ok: false, message: "'seq' is not a whole number >= 1" };
  }
  if (!matchesAt(bytes, at, PREV_HASH)) return { ok: false, message: "'prevHash' does not follow 'seq'" };
  at += PREV_HASH.length;
  const prevHash = bytes.toString('latin1', at, at + HASH_LENGTH);
  at += HASH_LENGTH;
  if (!matchesAt(bytes, at, HASH)) return { ok: false, message: "'hash' does not follow 'prevHash'" };
  at += HASH.length;
  const hash = bytes.toString('latin1', at, at + HASH_LENGTH);
  at += HASH_LENGTH;
  if (!matchesAt(bytes, at, CONTENT_START)) return { ok: false, message: 'no content follows the hash' };
  at += CONTENT_START.length;
  if (matchesAt(bytes, at, CONTENT_HASH)) {
    const from = at + CONTENT_HASH.length;
    if (
      from + HASH_LENGTH + REDACTED_END.length !== bytes.length ||
      !matchesAt(bytes, from + HASH_LENGTH, REDACTED_END)
    ) {
      return { ok: false, message: 'a redacted record must hold contentHash and "redacted":true only' };
    }
    return {
      ok: true,
      redacted: true,
      link: { seq, prevHash, hash, contentHash: bytes.toString('latin1', from, from + HASH_LENGTH) },
    };
  }
  if (bytes.length - at < 2 || bytes[bytes.length - 1] !== CLOSE_BRACE) {
    return { ok: false, message: 'the record does not end with }' };
  }
  // The content text is `{` + the rest of the line: hash it where it lies instead of copying it.
  const brace = at - 1;
  const saved = bytes[brace] as number;
  bytes[brace] = OPEN_BRACE;
  const contentHash = auditContentHash(bytes.subarray(brace));
  bytes[brace] = saved;
  return { ok: true, redacted: false, link: { seq, prevHash, hash, contentHash } };
}
