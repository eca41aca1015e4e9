/**
 * kubevisa's own access tokens: short-lived JWTs that the CLI presents to the API and, through kubectl's exec
 * plugin, to the gateway. They are bought with a session secret and live minutes, so a copied token is worth
 * little and revocation only has to outwait one lifetime.
 *
 * Verification trusts nothing in the token that could choose the key or the algorithm: the algorithm is
 * pinned to EdDSA (Ed25519), the key is picked by `kid` from the keys this issuer was configured with, and
 * tokens that carry key material or key locations in their header (`jwk`, `jku`, `x5u`, `x5c`) are refused
 * outright rather than ignored, so a forged token is reported as what it is.
 */
import { KeyObject, createPublicKey, randomBytes } from 'node:crypto';

import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';

import { InvalidInput, Unauthenticated } from '../domain/errors.ts';
import type { Instant } from '../domain/model.ts';

/** `typ` header of every kubevisa access token (RFC 8725 §3.11: explicit typing keeps JWT kinds apart). */
export const ACCESS_TOKEN_TYPE = 'kubevisa-access+jwt';
/** The only JWS algorithm issued and accepted: EdDSA over Ed25519. */
export const ACCESS_TOKEN_ALGORITHM = 'EdDSA';
/** Default lifetime of an access token, in seconds (10 minutes). */
export const DEFAULT_ACCESS_TOKEN_SECONDS = 600;
/** Longest lifetime an access token may have, in seconds (15 minutes). */
export const MAX_ACCESS_TOKEN_SECONDS = 900;
/** Largest clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. */
export const MAX_CLOCK_TOLERANCE_SECONDS = 60;
/** Longest token string looked at, in characters; anything longer is refused before parsing. */
const MAX_TOKEN_LENGTH = 4096;
/** Header parameters that point at or embed a key. A token must never pick its own key. */
const KEY_BEARING_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;

/** An Ed25519 key as Node or WebCrypto hands it out. */
export type Ed25519Key = KeyObject | CryptoKey;

/** A public key that verifies tokens but no longer signs them (the key before a rotation). */
export interface VerificationKey {
  keyId: string;
  /** Ed25519 public (or private: only its public half is used) key. */
  publicKey: Ed25519Key;
}

export interface TokenIssuerOptions {
  /** Exact `iss` of issued tokens and the only one accepted, e.g. `https://kubevisa.example.com`. */
  issuer: string;
  /** Exact `aud` of issued tokens and the only one accepted, e.g. `kubevisa`. */
  audience: string;
  /** Ed25519 private key that signs tokens (see signing-key.ts for persistence). */
  signingKey: Ed25519Key;
  /** `kid` header of issued tokens; verification finds the key by this id. */
  keyId: string;
  /** Keys still accepted on verify after a rotation, until the tokens they signed have expired. Default none. */
  previousKeys?: VerificationKey[];
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default 60, at most 60. */
  clockToleranceSeconds?: number;
}

export interface IssueAccessTokenInput {
  /** kubevisa person id (`sub`). */
  personId: string;
  /** Lower-cased email of the person (`email`). */
  email: string;
  /** Session the token was bought with (`sid`), so revoking the session can be checked per request. */
  sessionId: string;
  /** Issue time, epoch milliseconds. */
  now: Instant;
  /** Lifetime in seconds, a whole number from 1 to 900. Default 600. */
  expiresInSeconds?: number;
}

export interface IssuedAccessToken {
  /** The compact JWT. A credential: never log it. */
  token: string;
  /** `jti`: unique id of this token (for audit; not secret). */
  tokenId: string;
  /** Epoch milliseconds, whole seconds. */
  issuedAt: Instant;
  /** Epoch milliseconds, whole seconds. */
  expiresAt: Instant;
}

export interface VerifiedAccessToken {
  personId: string;
  email: string;
  sessionId: string;
  tokenId: string;
  /** Epoch milliseconds. */
  issuedAt: Instant;
  /** Epoch milliseconds. */
  expiresAt: Instant;
}

/** Public JWK of a verification key, with `kid`, `alg` and `use` set. */
export interface PublicJwk {
  kty: string;
  crv: string;
  x: string;
  kid: string;
  alg: typeof ACCESS_TOKEN_ALGORITHM;
  use: 'sig';
}

export interface TokenIssuer {
  readonly issuer: string;
  readonly audience: string;
  readonly keyId: string;
  /** Signs a new access token. Throws InvalidInput for bad input (empty ids, lifetime out of range). */
  issue(input: IssueAccessTokenInput): Promise<IssuedAccessToken>;
  /**
   * Verifies a token presented at time `now` (epoch milliseconds). Resolves to its claims or rejects with
   * Unauthenticated (never anything else); `details.reason` says why, as a stable code: `malformed`,
   * `key_in_header`, `algorithm`, `type`, `unknown_key`, `signature`, `expired`, `not_yet_valid`, `claims`.
   */
  verify(token: unknown, now: Instant): Promise<VerifiedAccessToken>;
  /** The public keys accepted by `verify`, as a JWK Set (for other replicas or offline checks). */
  jwks(): { keys: PublicJwk[] };
}

type RefusalReason =
  | 'malformed'
  | 'key_in_header'
  | 'algorithm'
  | 'type'
  | 'unknown_key'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'claims';

function refuse(reason: RefusalReason, message: string): Unauthenticated {
  return new Unauthenticated(message, { details: { reason } });
}

/** Turns a Node or WebCrypto Ed25519 key into a KeyObject, checking type and curve. */
function toEd25519KeyObject(key: Ed25519Key, expected: 'private' | 'public-or-private', label: string): KeyObject {
  let keyObject: KeyObject;
  if (key instanceof KeyObject) {
    keyObject = key;
  } else if (typeof CryptoKey !== 'undefined' && key instanceof CryptoKey) {
    // The public half is derived from the private key; WebCrypto only lets that happen for extractable keys
    // (and Node deprecates KeyObject.from on non-extractable ones).
    if (!key.extractable) {
      throw new InvalidInput(`${label} is a non-extractable CryptoKey; pass a KeyObject or an extractable CryptoKey`);
    }
    keyObject = KeyObject.from(key);
  } else {
    throw new InvalidInput(`${label} must be a KeyObject or CryptoKey holding an Ed25519 key`);
  }
  if (keyObject.type === 'secret' || keyObject.asymmetricKeyType !== 'ed25519') {
    throw new InvalidInput(`${label} must be an Ed25519 key (got ${keyObject.asymmetricKeyType ?? keyObject.type})`);
  }
  if (expected === 'private' && keyObject.type !== 'private') {
    throw new InvalidInput(`${label} must be the Ed25519 private key (got a ${keyObject.type} key)`);
  }
  return keyObject;
}

function requireText(value: unknown, label: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidInput(`${label} must be a non-empty string`);
  }
  return value;
}

function publicJwkOf(publicKey: KeyObject, keyId: string): PublicJwk {
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.kty !== 'string' || typeof jwk.crv !== 'string' || typeof jwk.x !== 'string') {
    throw new InvalidInput('the verification key could not be exported as an OKP JWK');
  }
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid: keyId, alg: ACCESS_TOKEN_ALGORITHM, use: 'sig' };
}

/** Maps what jose throws to an Unauthenticated with a reason; the token itself never enters a message. */
function explainJoseFailure(error: unknown): Unauthenticated {
  if (error instanceof joseErrors.JWTExpired) {
    return refuse('expired', 'the access token has expired; get a new one with the session secret');
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') {
      return refuse('not_yet_valid', 'the access token is not valid yet (nbf is in the future)');
    }
    if (error.claim === 'iat' && error.reason === 'check_failed') {
      return refuse('not_yet_valid', 'the access token was issued in the future (iat)');
    }
    return refuse(
      'claims',
      `the access token's "${error.claim}" claim is ${error.reason === 'missing' ? 'missing' : 'not the expected value'}`,
    );
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return refuse('signature', 'the access token signature does not verify');
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) {
    return refuse('algorithm', `the access token algorithm is not allowed; only ${ACCESS_TOKEN_ALGORITHM} is`);
  }
  if (error instanceof joseErrors.JOSEError) {
    return refuse('malformed', `the access token is malformed (${error.code})`);
  }
  return refuse('malformed', 'the access token could not be verified');
}

/** Builds the issuer/verifier of kubevisa access tokens. Throws InvalidInput for a bad configuration. */
export function createTokenIssuer(options: TokenIssuerOptions): TokenIssuer {
  const issuer = requireText(options.issuer, 'issuer');
  const audience = requireText(options.audience, 'audience');
  const keyId = requireText(options.keyId, 'keyId');
  const signingKey = toEd25519KeyObject(options.signingKey, 'private', 'signingKey');
  const clockToleranceSeconds = options.clockToleranceSeconds ?? MAX_CLOCK_TOLERANCE_SECONDS;
  if (
    !Number.isInteger(clockToleranceSeconds) ||
    clockToleranceSeconds < 0 ||
    clockToleranceSeconds > MAX_CLOCK_TOLERANCE_SECONDS
  ) {
    throw new InvalidInput(`clockToleranceSeconds must be a whole number from 0 to ${MAX_CLOCK_TOLERANCE_SECONDS}`, {
      details: { clockToleranceSeconds },
    });
  }

  // The only keys verify will ever use, by kid. Nothing from a token header can add to this map.
  const verificationKeys = new Map<string, KeyObject>();
  verificationKeys.set(keyId, createPublicKey(signingKey));
  for (const [index, previous] of (options.previousKeys ?? []).entries()) {
    const previousId = requireText(previous.keyId, `previousKeys[${index}].keyId`);
    if (verificationKeys.has(previousId)) {
      throw new InvalidInput(`key id ${previousId} is configured twice; every verification key needs its own id`);
    }
    const key = toEd25519KeyObject(previous.publicKey, 'public-or-private', `previousKeys[${index}].publicKey`);
    verificationKeys.set(previousId, key.type === 'private' ? createPublicKey(key) : key);
  }
  const jwks = { keys: [...verificationKeys].map(([kid, key]) => publicJwkOf(key, kid)) };

  async function issue(input: IssueAccessTokenInput): Promise<IssuedAccessToken> {
    const personId = requireText(input.personId, 'personId');
    const email = requireText(input.email, 'email');
    const sessionId = requireText(input.sessionId, 'sessionId');
    if (typeof input.now !== 'number' || !Number.isFinite(input.now) || input.now < 0) {
      throw new InvalidInput('now must be an instant in epoch milliseconds');
    }
    const lifetime = input.expiresInSeconds ?? DEFAULT_ACCESS_TOKEN_SECONDS;
    if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_ACCESS_TOKEN_SECONDS) {
      throw new InvalidInput(`expiresInSeconds must be a whole number from 1 to ${MAX_ACCESS_TOKEN_SECONDS}`, {
        details: { expiresInSeconds: lifetime, max: MAX_ACCESS_TOKEN_SECONDS },
      });
    }
    const issuedAtSeconds = Math.floor(input.now / 1000);
    const expiresAtSeconds = issuedAtSeconds + lifetime;
    const tokenId = randomBytes(16).toString('base64url');
    const token = await new SignJWT({ email, sid: sessionId })
      .setProtectedHeader({ alg: ACCESS_TOKEN_ALGORITHM, typ: ACCESS_TOKEN_TYPE, kid: keyId })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(personId)
      .setJti(tokenId)
      .setIssuedAt(issuedAtSeconds)
      .setNotBefore(issuedAtSeconds)
      .setExpirationTime(expiresAtSeconds)
      .sign(signingKey);
    return { token, tokenId, issuedAt: issuedAtSeconds * 1000, expiresAt: expiresAtSeconds * 1000 };
  }

  /** Checks the header before any cryptography, so forged headers are refused with a precise reason. */
  function keyForHeader(token: string): KeyObject {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch (cause) {
      throw refuse(
        'malformed',
        `the access token is malformed (${cause instanceof Error ? cause.message : 'unreadable header'})`,
      );
    }
    for (const name of KEY_BEARING_HEADERS) {
      if (Object.hasOwn(header, name)) {
        throw refuse(
          'key_in_header',
          `the access token header carries "${name}"; kubevisa only uses its own configured keys`,
        );
      }
    }
    if (header.alg !== ACCESS_TOKEN_ALGORITHM) {
      throw refuse(
        'algorithm',
        `the access token algorithm ${JSON.stringify(header.alg ?? null)} is not allowed; only ${ACCESS_TOKEN_ALGORITHM} is`,
      );
    }
    if (header.typ !== ACCESS_TOKEN_TYPE) {
      throw refuse('type', `the token is not a kubevisa access token (typ must be ${ACCESS_TOKEN_TYPE})`);
    }
    const key = typeof header.kid === 'string' ? verificationKeys.get(header.kid) : undefined;
    if (key === undefined) {
      throw refuse('unknown_key', 'the access token was signed with a key kubevisa does not know (kid)');
    }
    return key;
  }

  async function verifyOrThrow(token: unknown, now: Instant): Promise<VerifiedAccessToken> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw refuse('malformed', `the access token must be a compact JWT of at most ${MAX_TOKEN_LENGTH} characters`);
    }
    if (typeof now !== 'number' || !Number.isFinite(now)) {
      // A caller bug, but verify promises Unauthenticated only: fail closed.
      throw refuse('malformed', 'the access token cannot be checked without the current time');
    }
    const key = keyForHeader(token);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: [ACCESS_TOKEN_ALGORITHM],
        issuer,
        audience,
        typ: ACCESS_TOKEN_TYPE,
        clockTolerance: clockToleranceSeconds,
        currentDate: new Date(now),
        requiredClaims: ['sub', 'sid', 'email', 'jti', 'iat', 'nbf', 'exp'],
        // Also refuses an `iat` in the future beyond the tolerance.
        maxTokenAge: MAX_ACCESS_TOKEN_SECONDS,
      }));
    } catch (error) {
      throw explainJoseFailure(error);
    }
    const { sub, sid, email, jti, iat, exp, aud } = payload;
    if (aud !== audience) {
      // jose accepts an array that contains the audience; kubevisa tokens name exactly one audience, so a
      // token addressed to several parties is not one of ours.
      throw refuse('claims', 'the access token\'s "aud" claim is not the expected value');
    }
    if (typeof sub !== 'string' || typeof sid !== 'string' || typeof email !== 'string' || typeof jti !== 'string') {
      throw refuse('claims', 'the access token claims sub, sid, email and jti must be strings');
    }
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp - iat > MAX_ACCESS_TOKEN_SECONDS) {
      // Even a token signed with our key must not outlive the maximum: a bug elsewhere stays bounded.
      throw refuse('claims', `the access token lives longer than ${MAX_ACCESS_TOKEN_SECONDS} seconds`);
    }
    return { personId: sub, email, sessionId: sid, tokenId: jti, issuedAt: iat * 1000, expiresAt: exp * 1000 };
  }

  async function verify(token: unknown, now: Instant): Promise<VerifiedAccessToken> {
    try {
      return await verifyOrThrow(token, now);
    } catch (error) {
      if (error instanceof Unauthenticated) throw error;
      // Anything unexpected (a runtime crypto error, a bug) still answers 401, never 500 with a stack.
      throw refuse('malformed', 'the access token could not be verified');
    }
  }

  return { issuer, audience, keyId, issue, verify, jwks: () => structuredClone(jwks) };
}
