/**
 * The audit trail's hash chain, pure: canonical serialisation, the hash of one event, and a verifier that
 * pinpoints the first event that breaks the chain. Shared by every store engine (so they hash identically) and
 * by offline verification of an exported trail.
 */
import { createHash } from 'node:crypto';
import type { AuditEvent, JsonObject, JsonValue } from './store.ts';

/** `prevHash` of the first event: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted (by UTF-16 code unit, as JSON Canonicalization Scheme, RFC 8785, does) and no
 * whitespace, so the same value always gives the same bytes whatever order its keys were built in. Numbers use
 * ECMAScript formatting (also as RFC 8785); properties whose value is `undefined` are left out, as JSON does.
 */
export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  const parts: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const item = value[key];
    if (item !== undefined) parts.push(`${JSON.stringify(key)}:${canonicalJson(item)}`);
  }
  return `{${parts.join(',')}}`;
}

/** An event before its hash is known. */
export type UnhashedAuditEvent = Omit<AuditEvent, 'hash'>;

/**
 * The object the hash covers: every field of the event but `hash`, with absent optional fields (undefined or
 * null, as an export may write them) left out, so a stored, re-read or exported event hashes the same.
 * Built field by field so stray properties on the argument never enter the hash.
 */
export function auditHashInput(event: UnhashedAuditEvent): JsonObject {
  const input: JsonObject = {
    seq: event.seq,
    at: event.at,
    actor: event.actor,
    action: event.action,
    outcome: event.outcome,
    details: event.details,
    prevHash: event.prevHash,
  };
  const optional: [string, string | undefined | null][] = [
    ['sessionId', event.sessionId],
    ['visaId', event.visaId],
    ['engagementId', event.engagementId],
    ['personId', event.personId],
    ['cluster', event.cluster],
    ['namespace', event.namespace],
    ['reason', event.reason],
  ];
  for (const [key, value] of optional) {
    if (value !== undefined && value !== null) input[key] = value;
  }
  if (event.source !== undefined && event.source !== null) {
    const source: JsonObject = { address: event.source.address };
    if (event.source.userAgent !== undefined && event.source.userAgent !== null) {
      source.userAgent = event.source.userAgent;
    }
    input.source = source;
  }
  return input;
}

/** SHA-256, lower-case hex, of the canonical JSON of `auditHashInput(event)`. */
export function computeAuditHash(event: UnhashedAuditEvent): string {
  return createHash('sha256')
    .update(canonicalJson(auditHashInput(event)), 'utf8')
    .digest('hex');
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
  | { ok: false; index: number; seq: number; fault: ChainFault; message: string };

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
 */
export function verifyChain(events: readonly AuditEvent[], options: VerifyChainOptions = {}): ChainVerdict {
  const start: Link = options.previous ?? { seq: 0, hash: GENESIS_HASH };
  const selfConsistent = events.map((event) => computeAuditHash(event) === event.hash);
  // Position of each self-consistent event by its hash, to tell a reordered event (its predecessor is later in
  // the list) from an inserted one (its predecessor is nowhere).
  const indexByHash = new Map<string, number>();
  events.forEach((event, index) => {
    if (selfConsistent[index] === true && !indexByHash.has(event.hash)) indexByHash.set(event.hash, index);
  });
  const fail = (index: number, fault: ChainFault, message: string): ChainVerdict => ({
    ok: false,
    index,
    seq: events[index]?.seq ?? -1,
    fault,
    message: `audit event at index ${index} (seq ${events[index]?.seq ?? '?'}): ${message}`,
  });

  let previous: Link = start;
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    if (event === undefined) break;
    if (selfConsistent[index] !== true) {
      return fail(index, 'hash-mismatch', 'content does not match its hash (altered)');
    }
    if (!follows(event, previous)) {
      const predecessor = previous;
      const successorLater = events.findIndex(
        (candidate, j) => j > index && selfConsistent[j] === true && follows(candidate, predecessor),
      );
      if (successorLater !== -1) {
        const ownPredecessor = indexByHash.get(event.prevHash);
        if (ownPredecessor !== undefined && ownPredecessor > index) {
          return fail(index, 'reorder', `out of place: it follows the event at index ${ownPredecessor}`);
        }
        return fail(
          index,
          'inserted',
          `not part of the chain: the event following seq ${predecessor.seq} is at index ${successorLater}`,
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
    // the genuine one is the one the chain continues from.
    const next = events[index + 1];
    const afterNext = events[index + 2];
    if (
      next !== undefined &&
      afterNext !== undefined &&
      next.hash !== event.hash &&
      selfConsistent[index + 1] === true &&
      follows(next, previous) &&
      follows(afterNext, next)
    ) {
      return fail(index, 'inserted', `not part of the chain: the chain continues from the event at index ${index + 1}`);
    }
    previous = event;
  }
  return { ok: true, count: events.length, head: { seq: previous.seq, hash: previous.hash } };
}
