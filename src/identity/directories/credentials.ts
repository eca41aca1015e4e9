/**
 * The directory APIs' credentials, each read from a file the admin controls: a static API token (Okta's `SSWS`,
 * the dev IdP's bearer token), OAuth 2.0 client credentials (Entra ID, Keycloak), and a Google service account's
 * signed JWT (RFC 7523, domain-wide delegation).
 *
 * Files are read again whenever a new access token is needed, so a rotated secret takes effect at the next token
 * without a restart. Access tokens live in memory only, until 60 s before they expire. Nothing here is logged:
 * error messages name the file and the token endpoint's own error code, never a secret.
 */
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DirectoryUnavailable } from '../directory.ts';
import { isRecord, ownString, ownValue } from './http.ts';

/** Reads a secret file (trimmed); a missing or empty file is a DirectoryUnavailable naming the config field. */
export function readSecretFile(path: string, field: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (error) {
    throw new DirectoryUnavailable(
      `'${field}' (${path}) cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  if (text === '') throw new DirectoryUnavailable(`'${field}' (${path}) is empty`);
  return text;
}

export interface AccessToken {
  value: string;
  /** When to stop using it, in ms since the epoch. */
  expiresAt: number;
}

/** Refresh a token this long before the provider says it expires, in ms. */
const EXPIRY_MARGIN_MS = 60_000;

/** Caches one access token; `fresh` forces a new one (after a 401). Concurrent callers share one request. */
export class TokenCache {
  private token: AccessToken | undefined;
  private pending: Promise<AccessToken> | undefined;
  private readonly obtain: (signal: AbortSignal) => Promise<AccessToken>;

  constructor(obtain: (signal: AbortSignal) => Promise<AccessToken>) {
    this.obtain = obtain;
  }

  async get(signal: AbortSignal, fresh = false): Promise<string> {
    if (!fresh && this.token !== undefined && this.token.expiresAt - EXPIRY_MARGIN_MS > Date.now()) {
      return this.token.value;
    }
    this.pending ??= this.obtain(signal).finally(() => {
      this.pending = undefined;
    });
    this.token = await this.pending;
    return this.token.value;
  }
}

/**
 * POSTs a token request (form-encoded) and reads `{ access_token, expires_in }` (RFC 6749 §5.1). A refusal says
 * the endpoint's `error` and `error_description` (RFC 6749 §5.2: no secret in them) and what to check.
 */
export async function requestToken(options: {
  provider: string;
  tokenUrl: string;
  form: Record<string, string>;
  signal: AbortSignal;
  hint: string;
}): Promise<AccessToken> {
  let response: Response;
  try {
    response = await fetch(options.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(options.form).toString(),
      redirect: 'manual',
      signal: options.signal,
    });
  } catch (error) {
    throw new DirectoryUnavailable(
      `${options.provider}: cannot reach the token endpoint ${new URL(options.tokenUrl).origin} (${(error as Error).message})`,
      { cause: error },
    );
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const accessToken = ownString(body, 'access_token');
  if (!response.ok || accessToken === undefined) {
    const code = ownString(body, 'error');
    const description = ownString(body, 'error_description');
    const said = code ? ` (${code}${description ? `: ${firstLine(description)}` : ''})` : '';
    throw new DirectoryUnavailable(
      `${options.provider}: the token endpoint ${new URL(options.tokenUrl).origin}${new URL(options.tokenUrl).pathname} refused the credential with HTTP ${response.status}${said}: ${options.hint}`,
    );
  }
  const expiresIn = ownValue(body, 'expires_in');
  const seconds = typeof expiresIn === 'number' ? expiresIn : typeof expiresIn === 'string' ? Number(expiresIn) : NaN;
  // A token without a lifetime is used for five minutes, then replaced.
  return {
    value: accessToken,
    expiresAt: Date.now() + (Number.isFinite(seconds) && seconds > 0 ? seconds : 300) * 1000,
  };
}

/** Entra's descriptions run to several lines (trace and correlation ids): the first says what is wrong. */
function firstLine(text: string): string {
  return text.split(/\r?\n/)[0]!.slice(0, 300);
}

/** OAuth 2.0 client credentials with the secret in the body (`client_secret_post`, what Entra and Keycloak take). */
export function clientCredentials(options: {
  provider: string;
  tokenUrl: string;
  clientId: string;
  clientSecretFile: string;
  secretField: string;
  scope?: string;
  hint: string;
}): TokenCache {
  return new TokenCache((signal) =>
    requestToken({
      provider: options.provider,
      tokenUrl: options.tokenUrl,
      form: {
        grant_type: 'client_credentials',
        client_id: options.clientId,
        client_secret: readSecretFile(options.clientSecretFile, options.secretField),
        ...(options.scope ? { scope: options.scope } : {}),
      },
      signal,
      hint: options.hint,
    }),
  );
}

/** The fields of a Google service account key file (JSON, as the Cloud console downloads it) that are used. */
export interface GoogleServiceAccountKey {
  clientEmail: string;
  privateKeyPem: string;
  privateKeyId: string;
  tokenUri: string;
}

const GOOGLE_TOKEN_URI = 'https://oauth2.googleapis.com/token';

/** Parses a service account key file; every problem names the field and what Google's key files hold. */
export function parseGoogleKeyFile(text: string, path: string): GoogleServiceAccountKey {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new DirectoryUnavailable(
      `${path} is not JSON: give the service account key file as downloaded (type service_account)`,
    );
  }
  if (!isRecord(raw) || ownString(raw, 'type') !== 'service_account') {
    throw new DirectoryUnavailable(`${path} is not a service account key file ("type": "service_account")`);
  }
  const clientEmail = ownString(raw, 'client_email');
  const privateKeyPem = ownString(raw, 'private_key');
  if (!clientEmail || !privateKeyPem) {
    throw new DirectoryUnavailable(
      `${path} lacks client_email or private_key: download a new JSON key for the service account`,
    );
  }
  try {
    createPrivateKey(privateKeyPem);
  } catch {
    throw new DirectoryUnavailable(`${path}: private_key is not a PEM private key`);
  }
  return {
    clientEmail,
    privateKeyPem,
    privateKeyId: ownString(raw, 'private_key_id') ?? '',
    tokenUri: ownString(raw, 'token_uri') ?? GOOGLE_TOKEN_URI,
  };
}

/**
 * A Google access token for `subject` (an admin the service account acts as, through domain-wide delegation):
 * a JWT signed with the service account's key, exchanged at its `token_uri` (RFC 7523 §2.1).
 */
export function googleServiceAccount(options: {
  keyFile: string;
  subject: string;
  scopes: string[];
  hint: string;
}): TokenCache {
  return new TokenCache(async (signal) => {
    const key = parseGoogleKeyFile(readSecretFile(options.keyFile, 'identity.sync.keyFile'), options.keyFile);
    const now = Math.floor(Date.now() / 1000);
    const assertion = signRs256Jwt(
      { alg: 'RS256', typ: 'JWT', ...(key.privateKeyId ? { kid: key.privateKeyId } : {}) },
      {
        iss: key.clientEmail,
        sub: options.subject,
        aud: key.tokenUri,
        scope: options.scopes.join(' '),
        iat: now,
        exp: now + 3600,
        jti: randomUUID(),
      },
      key.privateKeyPem,
    );
    return requestToken({
      provider: 'google',
      tokenUrl: key.tokenUri,
      form: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion },
      signal,
      hint: options.hint,
    });
  });
}

/** A compact JWS (RS256, RFC 7515) over `claims`: what Google's JWT bearer grant takes as `assertion`. */
export function signRs256Jwt(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  privateKeyPem: string,
): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signingInput = `${part(header)}.${part(claims)}`;
  const signature = sign('sha256', Buffer.from(signingInput), createPrivateKey(privateKeyPem)).toString('base64url');
  return `${signingInput}.${signature}`;
}
