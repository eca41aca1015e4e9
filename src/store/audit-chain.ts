/**
 * The audit trail's hash chain, pure: canonical serialisation, the hash of one event, and a verifier that
 * pinpoints the first event that breaks the chain. Shared by every store engine (so they hash identically) and
 * by offline verification of an exported trail.
 *
 * Each event's hash is two-level:
 *
 *     contentText = canonical JSON of every field but seq, prevHash and hash
 *     contentHash = SHA-256(contentText)
 *     hash        = SHA-256(seq ‖ "\n" ‖ prevHash ‖ "\n" ‖ contentHash)     (seq in decimal, hashes in hex)
 *
 * Two things follow. An exported record can carry its content as the exact bytes that were hashed (see
 * src/audit/jsonl.ts), so verifying a file hashes bytes and never re-serialises anything. And a record can leave
 * its content out (another engagement's event in an evidence pack) and still prove where it sits: a redacted
 * record keeps seq, prevHash, contentHash and hash, and the chain through it verifies without revealing it.
 */
import { hash as digest } from 'node:crypto';
import { InvalidInput } from '../domain/errors.ts';
import type { AuditEvent, JsonValue } from './store.ts';

/** `prevHash` of the first event: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted (by UTF-16 code unit, as JSON Canonicalization Scheme, RFC 8785, does) and no
 * whitespace, so the same value always gives the same bytes whatever order its keys were built in. Numbers use
 * ECMAScript formatting (also as RFC 8785); properties whose value is `undefined` are left out, as JSON does.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i++) text += (i === 0 ? '' : ',') + canonicalJson(value[i] as JsonValue);
    return `${text}]`;
  }
  let text = '{';
  for (const key of Object.keys(value).sort()) {
    const item = value[key];
    if (item !== undefined) text += (text.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonicalJson(item);
  }
  return `${text}}`;
}

/** An event before its hash is known. */
export type UnhashedAuditEvent = Omit<AuditEvent, 'hash'>;
/** What an event's content hash covers: every field but its place in the chain. */
export type AuditContent = Omit<AuditEvent, 'seq' | 'prevHash' | 'hash'>;

/**
 * A record reduced to its place in the chain: what a redacted record in an export holds, and what the
 * verifier of an export file reads from every record (with `contentHash` computed from the record's bytes).
 */
export interface AuditLink {
  seq: number;
  prevHash: string;
  contentHash: string;
  hash: string;
}

/** One entry of a list to verify: a full event, or only its link. */
export type ChainEntry = AuditEvent | AuditLink;

function isLink(entry: ChainEntry): entry is AuditLink {
  return 'contentHash' in entry;
}

/** Absent optional fields may be undefined (in memory) or null (as a database row has them): both are left out. */
function present(value: string | null | undefined): value is string {
  return value !== undefined && value !== null;
}

/** A JSON string or number as canonical JSON writes it. */
const literal = JSON.stringify;

/**
 * The canonical JSON of an event's content, with its `details` already in canonical JSON (as the store keeps
 * them): equal to `canonicalJson` of the object holding the fields, but written directly in sorted key order,
 * since appending, exporting and verifying do this for every event. Reads only the known fields, so stray
 * properties never enter the hash. Keys in order: action, actor, at, cluster, details, engagementId, namespace,
 * outcome, personId, reason, sessionId, source (address, userAgent), visaId.
 */
export function auditContentTextWith(event: Omit<AuditContent, 'details'>, detailsJson: string): string {
  let text = `{"action":${literal(event.action)},"actor":${literal(event.actor)},"at":${literal(event.at)}`;
  if (present(event.cluster)) text += `,"cluster":${literal(event.cluster)}`;
  text += `,"details":${detailsJson}`;
  if (present(event.engagementId)) text += `,"engagementId":${literal(event.engagementId)}`;
  if (present(event.namespace)) text += `,"namespace":${literal(event.namespace)}`;
  text += `,"outcome":${literal(event.outcome)}`;
  if (present(event.personId)) text += `,"personId":${literal(event.personId)}`;
  if (present(event.reason)) text += `,"reason":${literal(event.reason)}`;
  if (present(event.sessionId)) text += `,"sessionId":${literal(event.sessionId)}`;
  const source = event.source as AuditEvent['source'] | null;
  if (source !== undefined && source !== null) {
    text += `,"source":{"address":${literal(source.address)}`;
    if (present(source.userAgent)) text += `,"userAgent":${literal(source.userAgent)}`;
    text += '}';
  }
  if (present(event.visaId)) text += `,"visaId":${literal(event.visaId)}`;
  return `${text}}`;
}

/** The canonical JSON of an event's content (see `auditContentTextWith`). */
export function auditContentText(event: AuditContent): string {
  return auditContentTextWith(event, canonicalJson(event.details));
}

/** SHA-256, lower-case hex, of a content text (a string, or its UTF-8 bytes as a file holds them). */
export function auditContentHash(contentText: string | Uint8Array): string {
  return digest('sha256', contentText, 'hex');
}

const OUTCOMES: readonly string[] = ['ok', 'refused', 'error'];

/** The text fields of an event, beside `source`'s, that the store keeps in columns of their own (not in details). */
const AUDIT_TEXT_FIELDS = [
  'actor',
  'sessionId',
  'action',
  'visaId',
  'engagementId',
  'personId',
  'cluster',
  'namespace',
  'reason',
] as const;

/**
 * `event` with every text field assertStorableAuditContent checks made storable: a lone surrogate and a NUL each
 * become U+FFFD. For a writer that must never queue an event the trail refuses: the gateway's retries a refused
 * batch, and serves nobody meanwhile, so one such event would stop it for good. Returns `event` itself when every
 * field was storable already.
 */
export function storableAuditText<T extends Omit<AuditContent, 'details'>>(event: T): T {
  const fix = (value: string | undefined) =>
    value === undefined || (value.isWellFormed() && !value.includes('\u0000'))
      ? value
      : value.toWellFormed().replaceAll('\u0000', '\ufffd');
  let fixed: T | undefined;
  for (const field of AUDIT_TEXT_FIELDS) {
    const value = event[field];
    if (typeof value !== 'string' || fix(value) === value) continue;
    fixed ??= { ...event };
    fixed = { ...fixed, [field]: fix(value) };
  }
  if (event.source !== undefined) {
    const address = fix(event.source.address);
    const userAgent = fix(event.source.userAgent);
    if (address !== event.source.address || userAgent !== event.source.userAgent) {
      fixed = {
        ...(fixed ?? event),
        source: { ...event.source, address: address!, ...(userAgent !== undefined ? { userAgent } : {}) },
      };
    }
  }
  return fixed ?? event;
}

/**
 * Refuses, before anything is written, content that would not read back as it was hashed, so an appended event
 * can never break verification of the chain later:
 * - a lone UTF-16 surrogate in a text field: it has no UTF-8 form, so the store holds U+FFFD instead while the
 *   hash covers the escaped surrogate (details are safe: canonical JSON escapes it, and the JSON text is stored);
 * - a NUL character: PostgreSQL's text type cannot hold it, and engines must agree on what they accept;
 * - a time that is not a whole number of milliseconds, or an unknown outcome.
 * Each engine calls it where it prepares an event (a PostgreSQL commit group inserts a member's events after the
 * member has returned, when a refusal could no longer be that member's alone).
 */
export function assertStorableAuditContent(event: Omit<AuditContent, 'details'>): void {
  const texts: [string, unknown][] = [
    ...AUDIT_TEXT_FIELDS.map((field): [string, unknown] => [field, event[field]]),
    ['source.address', event.source?.address],
    ['source.userAgent', event.source?.userAgent],
  ];
  for (const [field, value] of texts) {
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') {
      throw new InvalidInput(`audit event ${field} must be text; got ${typeof value}`, { details: { field } });
    }
    if (value.includes('\u0000')) {
      throw new InvalidInput(`audit event ${field} contains a NUL character, which the store cannot hold`, {
        details: { field },
      });
    }
    if (!value.isWellFormed()) {
      throw new InvalidInput(
        `audit event ${field} contains a lone UTF-16 surrogate (text that is not valid Unicode), which the store ` +
          'cannot hold as it was hashed; send valid Unicode text',
        { details: { field } },
      );
    }
  }
  if (!Number.isSafeInteger(event.at)) {
    throw new InvalidInput(`audit event time must be a whole number of milliseconds; got ${event.at}`);
  }
  if (!OUTCOMES.includes(event.outcome)) {
    throw new InvalidInput(`audit event outcome must be one of ${OUTCOMES.join(', ')}; got ${String(event.outcome)}`);
  }
}

/** SHA-256, lower-case hex, of `seq ‖ "\n" ‖ prevHash ‖ "\n" ‖ contentHash`. */
export function linkAuditHash(seq: number, prevHash: string, contentHash: string): string {
  return digest('sha256', `${seq}\n${prevHash}\n${contentHash}`, 'hex');
}

/** The hash an event must carry: its content hash linked to its seq and its predecessor's hash. */
export function computeAuditHash(event: UnhashedAuditEvent): string {
  return linkAuditHash(event.seq, event.prevHash, auditContentHash(auditContentText(event)));
}

/** Whether an entry's hash matches what it holds (for a link: its seq, prevHash and content hash). */
export function isSelfConsistent(entry: ChainEntry): boolean {
  return isLink(entry)
    ? linkAuditHash(entry.seq, entry.prevHash, entry.contentHash) === entry.hash
    : computeAuditHash(entry) === entry.hash;
}

/**
 * Why the chain breaks at an index:
 * - `hash-mismatch`: the event's content (or its hash) was altered; its hash does not match what it holds.
 * - `gap`: events are missing before this one (its seq skips ahead and nothing in the list fills the hole).
 * - `reorder`: the event is genuine but out of place; its predecessor comes later in the list.
 * - `inserted`: a well-formed event that is not part of the chain (the real successor comes after it).
 * - `broken-link`: the event does not follow its predecessor and none of the above explains why.
 */
export type ChainFault = 'hash-mismatch' | 'gap' | 'reorder' | 'inserted' | 'broken-link';

export type ChainVerdict =
  | { ok: true; count: number; head: { seq: number; hash: string } }
  | {
      ok: false;
      index: number;
      seq: number;
      fault: ChainFault;
      /** What is wrong, without the position (for callers that number events their own way). */
      detail: string;
      /** `detail` prefixed with the index and seq. */
      message: string;
    };

export interface VerifyChainOptions {
  /**
   * The event just before the list, when verifying a slice of the trail (e.g. from a signed checkpoint).
   * Default: the genesis, `{ seq: 0, hash: GENESIS_HASH }`, i.e. the list must start at seq 1.
   */
  previous?: { seq: number; hash: string };
}

interface Link {
  seq: number;
  hash: string;
  prevHash?: string;
}

function follows(event: Link, predecessor: Link): boolean {
  return event.seq === predecessor.seq + 1 && event.prevHash === predecessor.hash;
}

/**
 * Checks that `events` (in list order) form an unbroken chain and reports the first index that does not.
 * A chain cannot show that events were cut off its end: that is what signed checkpoints are for
 * (compare `head` with the last checkpoint).
 *
 * Each event is hashed at most once, and only as far as the verdict needs: the walk stops at the first fault,
 * and looks ahead only to tell a reordered event from an inserted one.
 */
export function verifyChain(events: readonly ChainEntry[], options: VerifyChainOptions = {}): ChainVerdict {
  const start: Link = options.previous ?? { seq: 0, hash: GENESIS_HASH };
  // 0 = not checked yet, 1 = consistent, 2 = altered.
  const checked = new Uint8Array(events.length);
  const selfConsistent = (index: number): boolean => {
    if (checked[index] === 0) {
      const event = events[index];
      checked[index] = event !== undefined && isSelfConsistent(event) ? 1 : 2;
    }
    return checked[index] === 1;
  };
  const fail = (index: number, fault: ChainFault, detail: string): ChainVerdict => ({
    ok: false,
    index,
    seq: events[index]?.seq ?? -1,
    fault,
    detail,
    message: `audit event at index ${index} (seq ${events[index]?.seq ?? '?'}): ${detail}`,
  });
  /** Where the self-consistent event with this hash is, after `from` (to tell a reorder from an insertion). */
  const laterIndexOfHash = (hash: string, from: number): number => {
    for (let j = from + 1; j < events.length; j++) {
      if (events[j]?.hash === hash && selfConsistent(j)) return j;
    }
    return -1;
  };

  let previous: Link = start;
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    if (event === undefined) break;
    if (!selfConsistent(index)) {
      return fail(index, 'hash-mismatch', 'content does not match its hash (altered)');
    }
    if (!follows(event, previous)) {
      const predecessor = previous;
      const successorLater = events.findIndex(
        (candidate, j) => j > index && follows(candidate, predecessor) && selfConsistent(j),
      );
      if (successorLater !== -1) {
        const ownPredecessor = laterIndexOfHash(event.prevHash, index);
        if (ownPredecessor !== -1) {
          return fail(
            index,
            'reorder',
            `out of place: it follows seq ${events[ownPredecessor]?.seq ?? '?'}, which comes later in the list`,
          );
        }
        return fail(
          index,
          'inserted',
          `not part of the chain: the event that follows seq ${predecessor.seq} comes ${successorLater - index} later`,
        );
      }
      if (event.seq === predecessor.seq && event.prevHash === predecessor.prevHash) {
        return fail(index, 'inserted', `claims the same place as the event before it (seq ${event.seq})`);
      }
      if (event.seq > predecessor.seq + 1) {
        return fail(index, 'gap', `events seq ${predecessor.seq + 1}..${event.seq - 1} are missing`);
      }
      return fail(index, 'broken-link', `does not follow seq ${predecessor.seq} (prevHash or seq mismatch)`);
    }
    // Two self-consistent events claiming the same place (a forged event linked to a genuine predecessor):
    // the genuine one is the one the chain continues from. The cheap link checks come first, so a valid chain
    // never hashes an event twice.
    const next = events[index + 1];
    const afterNext = events[index + 2];
    if (
      next !== undefined &&
      afterNext !== undefined &&
      next.hash !== event.hash &&
      follows(next, previous) &&
      follows(afterNext, next) &&
      selfConsistent(index + 1)
    ) {
      return fail(index, 'inserted', 'not part of the chain: the chain continues from the event after it');
    }
    previous = event;
  }
  return { ok: true, count: events.length, head: { seq: previous.seq, hash: previous.hash } };
}
