/**
 * How an AccessChange travels as text between processes (PostgreSQL NOTIFY payloads): JSON, tagged with the sending
 * process so it can skip its own, split so that no payload exceeds what the engine carries (PostgreSQL: under 8000
 * bytes). Decoding refuses anything that is not exactly a change: a payload anyone with the database could send must
 * not reach a listener as something else. With a key the replicas share, each payload is signed (HMAC-SHA256 before
 * the JSON) and one without a valid signature is refused: anyone else able to NOTIFY on the database can then send
 * nothing a listener acts on.
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
  c: AccessChange;
}

/** Characters of a payload's signature (base64url of HMAC-SHA256), followed by a '.' before the JSON. */
const SIGNATURE_LENGTH = 43;

function signatureOf(key: Uint8Array, json: string): string {
  return createHmac('sha256', key).update(json).digest('base64url');
}

/**
 * The payloads that carry `change` from process `origin`, each at most MAX_PAYLOAD_BYTES of JSON (plus its signature
 * when `key` is given: still under PostgreSQL's 8000 bytes).
 */
export function encodeChange(origin: string, change: AccessChange, key?: Uint8Array): string[] {
  const payloads = encodeUnsigned(origin, change);
  return key === undefined ? payloads : payloads.map((json) => `${signatureOf(key, json)}.${json}`);
}

/** The JSON of `payload` if its signature under `key` is valid, else undefined. */
function verified(payload: string, key: Uint8Array): string | undefined {
  if (payload.length <= SIGNATURE_LENGTH || payload[SIGNATURE_LENGTH] !== '.') return undefined;
  const json = payload.slice(SIGNATURE_LENGTH + 1);
  const given = Buffer.from(payload.slice(0, SIGNATURE_LENGTH));
  const expected = Buffer.from(signatureOf(key, json));
  return given.length === expected.length && timingSafeEqual(given, expected) ? json : undefined;
}

function encodeUnsigned(origin: string, change: AccessChange): string[] {
  const fixed = withinPayload(limitReason(change));
  const list = idsOf(fixed);
  if (list === undefined) return [JSON.stringify({ o: origin, c: fixed } satisfies Envelope)];
  // Every id costs its length plus quotes and a comma in JSON; the envelope around an empty list is measured once.
  const overhead = Buffer.byteLength(JSON.stringify({ o: origin, c: withIds(fixed, []) }));
  const payloads: string[] = [];
  let chunk: string[] = [];
  let size = overhead;
  for (const id of list) {
    const cost = Buffer.byteLength(id) + 3;
    if (chunk.length > 0 && size + cost > MAX_PAYLOAD_BYTES) {
      payloads.push(JSON.stringify({ o: origin, c: withIds(fixed, chunk) }));
      chunk = [];
      size = overhead;
    }
    chunk.push(id);
    size += cost;
  }
  if (chunk.length > 0) payloads.push(JSON.stringify({ o: origin, c: withIds(fixed, chunk) }));
  return payloads;
}

/**
 * The sender and the change in `payload`, or undefined when it is not one `encodeChange` makes (with `key`: signed
 * under that key).
 */
export function decodeChange(payload: string, key?: Uint8Array): { origin: string; change: AccessChange } | undefined {
  const json = key === undefined ? payload : verified(payload, key);
  if (json === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isRecord(parsed) || typeof parsed.o !== 'string' || !isRecord(parsed.c)) return undefined;
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
  return change === undefined ? undefined : { origin: parsed.o, change };
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
