/**
 * SCIM bearer tokens, one (or more, during a rotation) per identity provider. Only the SHA-256 of a token is
 * stored; a presented token is hashed and compared with every live hash in constant time, so neither the
 * comparison nor the order of the list tells an attacker how close a guess was.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ScimTokenRecord } from '../store/identity-records.ts';

/** Every SCIM token starts with this, so secret scanners (and people) recognise a leaked one. */
export const SCIM_TOKEN_PREFIX = 'kvscim_';
/** Random bytes in a token: 256 bits. */
const TOKEN_BYTES = 32;
const TOKEN_SHAPE = /^kvscim_[A-Za-z0-9_-]{43}$/;
/** IdP names: what audit events and `scim token list` show. */
const IDP_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function isValidIdpName(idp: string): boolean {
  return IDP_NAME.test(idp);
}

/** A new token (shown once to the admin) and the hash to store. */
export function generateScimToken(): { token: string; secretHash: string } {
  const token = `${SCIM_TOKEN_PREFIX}${randomBytes(TOKEN_BYTES).toString('base64url')}`;
  return { token, secretHash: hashScimToken(token) };
}

export function hashScimToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Whether a token may be used at `now`: not revoked and not past a rotation's grace period. */
export function isLive(record: ScimTokenRecord, now: number): boolean {
  return record.revokedAt === undefined && (record.expiresAt === undefined || record.expiresAt > now);
}

/**
 * The live token record matching `presented`, or undefined. Every live record is compared (no early exit) and
 * each comparison takes the same time, so timing reveals nothing about the stored hashes.
 */
export function matchScimToken(
  presented: string,
  records: ScimTokenRecord[],
  now: number,
): ScimTokenRecord | undefined {
  // A malformed token is refused before hashing, but only after the same work as a real miss would cost.
  const wellFormed = TOKEN_SHAPE.test(presented);
  const presentedHash = Buffer.from(hashScimToken(presented), 'hex');
  let found: ScimTokenRecord | undefined;
  for (const record of records) {
    const stored = Buffer.from(record.secretHash, 'hex');
    const equal = stored.length === presentedHash.length && timingSafeEqual(stored, presentedHash);
    if (equal && isLive(record, now) && wellFormed) found = record;
  }
  return found;
}
