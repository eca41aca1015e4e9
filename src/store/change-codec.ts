/**
 * How an AccessChange travels as text between processes (PostgreSQL NOTIFY payloads): JSON, tagged with the sending
 * process so it can skip its own, split so that no payload exceeds what the engine carries (PostgreSQL: under 8000
 * bytes). Decoding refuses anything that is not exactly a change: a payload anyone with the database could send must
 * not reach a listener as something else. With a key the replicas share, each payload is signed (HMAC-SHA256 before
 * the JSON) and one without a valid signature is refused: anyone else able to NOTIFY on the database can then send
 * nothing a listener acts on. Any role can LISTEN, though, and send again what it heard: a signed payload also names
 * the channel it was sent on (signed with it, so another installation sharing the key refuses it), when it was sent
 * and its number from its sender, by which the receiver refuses what is old or was heard before (change-feed.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AccessChange } from './store.ts';
import { clipText } from '../domain/validate.ts';

/** Largest payload produced, in bytes: PostgreSQL refuses 8000 and more, and the rest is a margin. */
export const MAX_PAYLOAD_BYTES = 7600;
/** Reasons are cut to this many characters: they are for messages, and ids are what receivers act on. */
const MAX_REASON = 500;
/** Ids are the store's (`v_…`, `s_…`, `p_…`) and cluster names (DNS labels): short and plain. */
const ID = /^[A-Za-z0-9._:-]{1,253}$/;

interface Envelope {
  /** The sending process. */
  o: string;
  /** Signed payloads only: when it was sent (epoch ms) and its number from its sender (each payload its own). */
  t?: number;
  n?: number;
  c: AccessChange;
}

/** What a signed payload is bound to: the channel it is sent on, when it is sent, and its sender's next number. */
export interface Stamp {
  channel: string;
  at: number;
  seq: number;
}

/** Characters of a payload's signature (base64url of HMAC-SHA256), followed by a '.' before the JSON. */
const SIGNATURE_LENGTH = 43;

/** The signature covers the channel too (a channel name has no NUL): a payload is valid on its own channel only. */
function signatureOf(key: Uint8Array, channel: string, json: string): string {
  return createHmac('sha256', key).update(`${channel}\u0000${json}`).digest('base64url');
}

/**
 * The payloads that carry `change` from process `origin`, each at most MAX_PAYLOAD_BYTES of JSON (plus its signature
 * when `key` is given: still under PostgreSQL's 8000 bytes). Signed payloads carry `stamp` (the first `stamp.seq`,
 * the next ones counting up from it: the sender goes on from `seq` + the number of payloads).
 */
export function encodeChange(
  origin: string,
  change: AccessChange,
  key?: Uint8Array,
  stamp: Stamp = { channel: '', at: 0, seq: 0 },
): string[] {
  if (key === undefined) return encodeUnsigned(origin, change);
  return encodeUnsigned(origin, change, stamp).map((json) => `${signatureOf(key, stamp.channel, json)}.${json}`);
}

/** The JSON of `payload` if its signature under `key` for `channel` is valid, else undefined. */
function verified(payload: string, key: Uint8Array, channel: string): string | undefined {
  if (payload.length <= SIGNATURE_LENGTH || payload[SIGNATURE_LENGTH] !== '.') return undefined;
  const json = payload.slice(SIGNATURE_LENGTH + 1);
  const given = Buffer.from(payload.slice(0, SIGNATURE_LENGTH));
  const expected = Buffer.from(signatureOf(key, channel, json));
  return given.length === expected.length && timingSafeEqual(given, expected) ? json : undefined;
}

function encodeUnsigned(origin: string, change: AccessChange, stamp?: Stamp): string[] {
  let seq = stamp?.seq ?? 0;
  const envelope = (c: AccessChange): string =>
    JSON.stringify(
      (stamp === undefined ? { o: origin, c } : { o: origin, t: stamp.at, n: seq++, c }) satisfies Envelope,
    );
  const fixed = withinPayload(limitReason(change));
  const list = idsOf(fixed);
  if (list === undefined) return [envelope(fixed)];
  // Every id costs its length plus quotes and a comma in JSON; the envelope around an empty list is measured once
  // (with the largest number a stamp can carry).
  const overhead = Buffer.byteLength(
    JSON.stringify({
      o: origin,
      ...(stamp === undefined ? {} : { t: stamp.at, n: Number.MAX_SAFE_INTEGER }),
      c: withIds(fixed, []),
    }),
  );
  const payloads: string[] = [];
  let chunk: string[] = [];
  let size = overhead;
  for (const id of list) {
    const cost = Buffer.byteLength(id) + 3;
    if (chunk.length > 0 && size + cost > MAX_PAYLOAD_BYTES) {
      payloads.push(envelope(withIds(fixed, chunk)));
      chunk = [];
      size = overhead;
    }
    chunk.push(id);
    size += cost;
  }
  if (chunk.length > 0) payloads.push(envelope(withIds(fixed, chunk)));
  return payloads;
}

/** What a payload carried: its sender and change, and (signed ones) when it was sent and its number. */
export interface Decoded {
  origin: string;
  change: AccessChange;
  at?: number;
  seq?: number;
}

/**
 * The sender and the change in `payload`, or undefined when it is not one `encodeChange` makes (with `key`: signed
 * under that key for `channel`, and stamped).
 */
export function decodeChange(payload: string, key?: Uint8Array, channel = ''): Decoded | undefined {
  const json = key === undefined ? payload : verified(payload, key, channel);
  if (json === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isRecord(parsed) || typeof parsed.o !== 'string' || !isRecord(parsed.c)) return undefined;
  const stamped = Number.isSafeInteger(parsed.t) && Number.isSafeInteger(parsed.n);
  if (key !== undefined && !stamped) return undefined;
  const c = parsed.c;
  const ids = (value: unknown): string[] | undefined =>
    Array.isArray(value) && value.every((id) => typeof id === 'string' && ID.test(id))
      ? (value as string[])
      : undefined;
  // The receiver records the streams it cuts under the reason: text the audit trail refuses (a lone surrogate, a NUL;
  // anyone able to connect to the database can NOTIFY) would stop its gateway's trail, so such a change is dropped.
  const reason =
    typeof c.reason === 'string' && c.reason.isWellFormed() && !c.reason.includes('\u0000')
      ? clipText(c.reason, MAX_REASON)
      : undefined;
  let change: AccessChange | undefined;
  switch (c.kind) {
    case 'visas-ended': {
      const visaIds = ids(c.visaIds);
      if (visaIds && reason !== undefined) change = { kind: 'visas-ended', visaIds, reason };
      break;
    }
    case 'visas-changed':
      change = { kind: 'visas-changed' };
      break;
    case 'cluster-registry-changed':
      change = { kind: 'cluster-registry-changed' };
      break;
    case 'sessions-ended': {
      const sessionIds = ids(c.sessionIds);
      if (sessionIds) change = { kind: 'sessions-ended', sessionIds };
      break;
    }
    case 'person-deprovisioned':
      if (typeof c.personId === 'string' && ID.test(c.personId) && reason !== undefined)
        change = { kind: 'person-deprovisioned', personId: c.personId, reason };
      break;
    case 'clusters-changed': {
      const clusters = ids(c.clusters);
      // Ids that are not ids are dropped, not the change: the clusters are then converged in full.
      const visaIds = c.visaIds === undefined ? undefined : ids(c.visaIds);
      if (clusters) change = { kind: 'clusters-changed', clusters, ...(visaIds ? { visaIds } : {}) };
      break;
    }
  }
  if (change === undefined) return undefined;
  return stamped
    ? { origin: parsed.o, change, at: parsed.t as number, seq: parsed.n as number }
    : { origin: parsed.o, change };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A change of clusters that names visas is split by its visas, each payload carrying every cluster: when the clusters
 * alone take more than half a payload, the visas are left out (the receivers converge the clusters in full).
 */
function withinPayload(change: AccessChange): AccessChange {
  if (change.kind !== 'clusters-changed' || change.visaIds === undefined) return change;
  const clustersOnly = { kind: change.kind, clusters: change.clusters };
  if (Buffer.byteLength(JSON.stringify(clustersOnly)) <= MAX_PAYLOAD_BYTES / 2) return change;
  return clustersOnly;
}

function limitReason(change: AccessChange): AccessChange {
  if (change.kind === 'visas-ended' || change.kind === 'person-deprovisioned')
    return { ...change, reason: clipText(change.reason, MAX_REASON) };
  return change;
}

function idsOf(change: AccessChange): string[] | undefined {
  switch (change.kind) {
    case 'visas-ended':
      return change.visaIds;
    case 'sessions-ended':
      return change.sessionIds;
    case 'clusters-changed':
      return change.visaIds ?? change.clusters;
    default:
      return undefined;
  }
}

function withIds(change: AccessChange, ids: string[]): AccessChange {
  switch (change.kind) {
    case 'visas-ended':
      return { ...change, visaIds: ids };
    case 'sessions-ended':
      return { ...change, sessionIds: ids };
    case 'clusters-changed':
      return change.visaIds !== undefined ? { ...change, visaIds: ids } : { ...change, clusters: ids };
    default:
      return change;
  }
}
