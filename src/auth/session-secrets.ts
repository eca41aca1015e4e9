/**
 * Session secrets: what `kubevisa login` keeps on the laptop and trades for short-lived access tokens.
 *
 * The secret is 32 random bytes (256 bits) written as base64url behind a `kvs_` prefix, so a leaked value is
 * recognisable by secret scanners and in logs. The store keeps only its SHA-256: a copy of the database does
 * not let anyone act as a person. SHA-256 without salt or stretching is enough here because the input is
 * uniformly random and long, not a password a person chose.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Prefix of every session secret. */
export const SESSION_SECRET_PREFIX = 'kvs_';

/** Random bytes in a session secret (256 bits). */
export const SESSION_SECRET_BYTES = 32;

/** `kvs_` + 43 base64url characters (32 bytes without padding). */
const SESSION_SECRET_PATTERN = /^kvs_[A-Za-z0-9_-]{43}$/;

/** A new random session secret: `kvs_` + base64url of 32 bytes from the operating system's CSPRNG. */
export function generateSessionSecret(): string {
  return SESSION_SECRET_PREFIX + randomBytes(SESSION_SECRET_BYTES).toString('base64url');
}

/**
 * True when `value` has the shape of a session secret. Lets the API refuse garbage with a clear message
 * before any lookup; it says nothing about whether the secret belongs to a live session.
 */
export function isWellFormedSessionSecret(value: unknown): value is string {
  return typeof value === 'string' && SESSION_SECRET_PATTERN.test(value);
}

/** The form kept in the store: lower-case hex SHA-256 of the secret's UTF-8 bytes (64 characters). */
export function hashSessionSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/**
 * Compares two strings in time that does not depend on where they differ. Both sides are hashed first so
 * the comparison is over equal-length buffers (crypto.timingSafeEqual throws on unequal lengths, and an early
 * length check would leak the length).
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const digestA = createHash('sha256').update(a, 'utf8').digest();
  const digestB = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(digestA, digestB);
}

/** True when `secret` hashes to `storedHash` (as produced by {@link hashSessionSecret}); constant time. */
export function verifySessionSecret(secret: string, storedHash: string): boolean {
  return constantTimeEqual(hashSessionSecret(secret), storedHash);
}
