/**
 * kubevisa's server as an OpenID Connect relying party of the company IdP, over openid-client v6.
 *
 * The CLI never talks to the IdP's token endpoint: the server runs the device flow or the browser code flow
 * (always with PKCE S256), receives the IdP's tokens, and keeps the refresh token so it can ask the IdP again
 * before selling each new kubevisa access token. When the IdP refuses that refresh (the person was
 * deprovisioned, the grant revoked), {@link OidcRelyingParty.refresh} throws Unauthenticated and the kubevisa
 * session dies with it.
 *
 * ID tokens are validated by openid-client: issuer, audience, expiry, nonce, and — because
 * `enableNonRepudiationChecks` is on — the signature against the IdP's JWKS, with the algorithm pinned.
 * (Without that option openid-client trusts an ID token from the token endpoint on the strength of TLS alone,
 * as OIDC Core §3.1.3.7 allows.)
 */
import { createHash } from 'node:crypto';
import * as client from 'openid-client';

import { InvalidInput, KubevisaError, Unauthenticated } from '../domain/errors.ts';
import type { Instant } from '../domain/model.ts';
import { DeviceLoginUnsupported, IdentityProviderUnavailable, LoginDenied, LoginExpired } from './errors.ts';
import { foldsIntoAscii } from '../domain/case-folding.ts';
import { hiddenCharacter, hiddenCharacterProblem } from '../domain/hidden-text.ts';
import { MAX_EMAIL_LENGTH } from '../domain/email.ts';

/**
 * Scopes requested by default. `groups` is not among them because IdPs disagree about it: Dex, Okta and the
 * dev IdP need the `groups` scope to send the claim, while Google and Entra ID refuse an unknown scope.
 * Add it (`scopes: 'openid email profile offline_access groups'`) where the IdP supports it.
 */
export const DEFAULT_SCOPES = 'openid email profile offline_access';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const CODE_VERIFIER_PATTERN = /^[A-Za-z0-9\-._~]{43,128}$/;
const EMAIL_PATTERN = /^[^@\s]+@[^@\s]+$/;

/** OpenID Connect Core 1.0 §2: a subject "MUST NOT exceed 255 ASCII characters in length". */
const MAX_SUBJECT_LENGTH = 255;

/** Text the store holds exactly as given: valid Unicode without control characters. */
function isStorableText(value: string): boolean {
  return value.isWellFormed() && !/\p{Cc}/u.test(value);
}
/** How long the answer to a refresh that rotated the token is reused for the old token, in ms. */
const REFRESH_REUSE_MS = 60_000;
/**
 * Bounds that memory: past this many answers the oldest is forgotten first. Refreshes in flight are shared whatever
 * their number (it is bounded by the requests being served).
 */
const MAX_REMEMBERED_REFRESHES = 10_000;
/** Longest IdP-supplied error description copied into a message, in characters. */
const MAX_DESCRIPTION = 200;

export interface OidcRelyingPartyOptions {
  /** The IdP's issuer identifier; its `/.well-known/openid-configuration` is fetched once at creation. */
  issuerUrl: string | URL;
  clientId: string;
  /** Client secret of a confidential client. Without it kubevisa is a public client and relies on PKCE. */
  clientSecret?: string;
  /** How the secret is sent to the token endpoint. Default `client_secret_basic`. */
  clientAuthMethod?: 'client_secret_basic' | 'client_secret_post';
  /** kubevisa's callback for the browser flow, registered at the IdP; no query or fragment. */
  redirectUri: string;
  /** Space-separated scopes. Default {@link DEFAULT_SCOPES}; must contain `openid`. */
  scopes?: string;
  /**
   * Claim holding the person's email. Default `email`. Another claim (Entra ID's `upn`) carries no verification
   * of its own, so it needs {@link emailsVerifiedByIdp}.
   */
  emailClaim?: string;
  /**
   * The IdP only issues addresses it controls (an Entra ID tenant's UPNs, a Google Workspace domain), so an email
   * without an `email_verified` claim counts as verified. Default false: the login needs `email_verified: true`,
   * because the first login with an email owns that email's person, visas and roles. An explicit
   * `email_verified: false` is refused either way. See docs/identity.md for each IdP.
   */
  emailsVerifiedByIdp?: boolean;
  /** Claim holding the person's groups. Default `groups`. */
  groupsClaim?: string;
  /** The only algorithm accepted for ID token signatures. Default `RS256`. */
  idTokenSigningAlg?: string;
  /**
   * Allow plain `http://` when the issuer and every endpoint are on a loopback address (127.0.0.0/8, ::1,
   * localhost): for the in-process dev IdP only. Default false; plain HTTP elsewhere is always refused.
   */
  allowInsecureHttpForLoopback?: boolean;
  /** Time limit for each request to the IdP, in seconds. Default 10. */
  timeoutSeconds?: number;
  /** Clock for computed expiry instants, epoch milliseconds. Default Date.now. */
  now?: () => Instant;
}

/** Who logged in, as the IdP says. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  /** Lower-cased. */
  email: string;
  displayName: string;
  groups: string[];
}

/** The IdP's tokens. Credentials: keep them server-side and never log them. */
export interface OidcTokens {
  accessToken: string;
  /** Present when the IdP issued one; on refresh, the new one replaces the old (rotation). */
  refreshToken: string | undefined;
  idToken: string | undefined;
  /** Epoch milliseconds, when the IdP said how long the access token lives. */
  accessTokenExpiresAt: Instant | undefined;
  scope: string | undefined;
}

export interface OidcLogin {
  identity: OidcIdentity;
  tokens: OidcTokens;
}

export interface DeviceAuthorization {
  /** Secret between kubevisa and the IdP: never give it to the CLI or log it. */
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  /** The verification URI with the user code filled in, when the IdP offers one. */
  verificationUriComplete: string | undefined;
  /** Least time between two polls, in seconds (the IdP's `interval`, default 5). */
  intervalSeconds: number;
  /** Epoch milliseconds after which the device code is dead. */
  expiresAt: Instant;
}

export type DevicePollResult =
  /** Not yet; `slowDown` when the IdP asked to poll less often (add 5 s to the interval, RFC 8628 §3.5). */
  { status: 'pending'; slowDown?: boolean } | ({ status: 'done' } & OidcLogin);

/** Per-login values the server keeps between the authorization redirect and the callback. */
export interface AuthorizationRequestSecrets {
  state: string;
  nonce: string;
  /** PKCE code verifier (RFC 7636), 43–128 unreserved characters. */
  codeVerifier: string;
}

export interface RefreshResult {
  tokens: OidcTokens;
  /**
   * Fresh identity when the IdP sent a new ID token (groups may have changed); undefined otherwise, and when the IdP
   * could not complete it (its userinfo endpoint failed): the tokens are returned all the same, because the IdP has
   * already spent the old refresh token, and the identity is read again at the next refresh.
   */
  identity: OidcIdentity | undefined;
}

export interface OidcRelyingParty {
  /** The IdP's issuer identifier as discovered. */
  readonly issuer: string;
  /** Starts a device login (RFC 8628). */
  startDeviceAuthorization(): Promise<DeviceAuthorization>;
  /**
   * Asks the IdP once whether the device login finished; never waits. Throws LoginDenied when the person
   * declined, LoginExpired when the code expired or was used, IdentityProviderUnavailable when the IdP
   * cannot answer, Unauthenticated when the identity is unacceptable (no email, email not verified).
   */
  pollDeviceAuthorization(deviceCode: string): Promise<DevicePollResult>;
  /** The IdP URL to send the browser to (code flow, PKCE S256, with `state` and `nonce`). */
  authorizationUrl(secrets: AuthorizationRequestSecrets): Promise<string>;
  /**
   * Trades the callback for tokens. Only the query of `callbackUrl` is used; the redirect URI sent to the
   * IdP is always the configured one, so a proxy's Host header cannot change it. Throws Unauthenticated
   * (LoginDenied for an IdP `access_denied`) when state, nonce, PKCE or the ID token do not check out.
   */
  exchangeCode(callbackUrl: string | URL, secrets: AuthorizationRequestSecrets): Promise<OidcLogin>;
  /**
   * Renews the IdP tokens. Throws Unauthenticated when the IdP refuses the grant (`invalid_grant`: the person
   * was deprovisioned or the grant revoked) or when a new ID token names another subject than
   * `expectedSubject`; IdentityProviderUnavailable when the IdP cannot be asked or refuses kubevisa itself.
   */
  refresh(refreshToken: string, options?: { expectedSubject?: string }): Promise<RefreshResult>;
}

/** Fresh random state, nonce and PKCE code verifier for one browser login. */
export function newAuthorizationRequestSecrets(): AuthorizationRequestSecrets {
  return { state: client.randomState(), nonce: client.randomNonce(), codeVerifier: client.randomPKCECodeVerifier() };
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

function requireText(value: unknown, label: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidInput(`${label} must be a non-empty string`);
  return value;
}

function describeOAuthError(error: { error: string; error_description?: string | undefined }): string {
  const description = error.error_description?.slice(0, MAX_DESCRIPTION);
  return description === undefined || description === '' ? error.error : `${error.error}: ${description}`;
}

type Phase = 'discovery' | 'login' | 'device' | 'refresh' | 'userinfo';

/** openid-client error codes meaning "the answer did not validate": a refusal, not an outage. */
const VALIDATION_FAILURES = new Set([
  'OAUTH_INVALID_RESPONSE',
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_KEY_SELECTION_FAILED',
  'OAUTH_PARSE_ERROR',
  'OAUTH_UNSUPPORTED_OPERATION',
]);

/**
 * Sorts what openid-client throws into kubevisa errors. The line that matters: only a refusal about the
 * person or their grant becomes Unauthenticated; an unreachable or misconfigured IdP never does, so it
 * cannot be mistaken for a deprovisioning.
 */
function classify(error: unknown, phase: Phase): KubevisaError {
  if (error instanceof KubevisaError) return error;
  if (phase === 'discovery') {
    // Whatever went wrong (unreachable, not an OpenID Provider, issuer mismatch), nobody is logging in yet.
    const message = error instanceof Error ? error.message : String(error);
    return new IdentityProviderUnavailable(`could not discover the identity provider: ${message}`, { cause: error });
  }
  if (error instanceof client.AuthorizationResponseError) {
    const details = { reason: error.error };
    if (error.error === 'access_denied')
      return new LoginDenied(`the identity provider denied the login (${describeOAuthError(error)})`, { details });
    return new Unauthenticated(
      `the identity provider answered the login with an error (${describeOAuthError(error)})`,
      {
        details,
      },
    );
  }
  if (error instanceof client.ResponseBodyError) {
    const details = { reason: error.error, status: error.status };
    if (error.status >= 500 || error.error === 'temporarily_unavailable' || error.error === 'server_error') {
      return new IdentityProviderUnavailable(`the identity provider failed (${describeOAuthError(error)})`, {
        details,
        cause: error,
      });
    }
    if (error.error === 'invalid_client' || error.error === 'unauthorized_client' || error.error === 'invalid_scope') {
      return new IdentityProviderUnavailable(
        `the identity provider refused kubevisa's client configuration (${describeOAuthError(error)}); check the OIDC client id, secret and scopes`,
        { details, cause: error },
      );
    }
    if (phase === 'device') {
      if (error.error === 'access_denied') return new LoginDenied('the person declined the device login', { details });
      if (error.error === 'expired_token')
        return new LoginExpired('the device code expired; start the login again', { details });
      if (error.error === 'invalid_grant')
        return new LoginExpired(
          `the device code is no longer valid (${describeOAuthError(error)}); start the login again`,
          {
            details,
          },
        );
    }
    if (phase === 'refresh' && error.error === 'invalid_grant') {
      return new Unauthenticated(
        `the identity provider refused to renew the session (${describeOAuthError(error)}): the person may have been deprovisioned or the grant revoked`,
        { details },
      );
    }
    if (phase === 'login' && error.error === 'invalid_grant') {
      return new LoginExpired(
        `the identity provider refused the authorization code (${describeOAuthError(error)}); start the login again`,
        { details },
      );
    }
    if (phase === 'refresh' || phase === 'userinfo') {
      // Any other refusal is a protocol problem between kubevisa and the IdP, not news about the person.
      return new IdentityProviderUnavailable(
        `the identity provider refused the ${phase} request (${describeOAuthError(error)})`,
        {
          details,
          cause: error,
        },
      );
    }
    return new Unauthenticated(`the identity provider refused the login (${describeOAuthError(error)})`, { details });
  }
  if (error instanceof client.WWWAuthenticateChallengeError) {
    const reason = error.cause[0]?.parameters.error ?? 'unauthorized';
    if (phase === 'userinfo') {
      // Userinfo is asked with the access token the IdP has just issued, not with kubevisa's client credentials: a
      // challenge there (RFC 6750 invalid_token) says that token is no longer good, e.g. the grant was revoked in the
      // meantime. Not taken as news about the person either: the next token request is the IdP's verdict.
      const description = error.cause[0]?.parameters.error_description?.slice(0, MAX_DESCRIPTION);
      return new IdentityProviderUnavailable(
        `the identity provider's userinfo endpoint refused the access token it had just issued (HTTP ${error.status}, ${reason}${description ? `: ${description}` : ''}): the grant may have been revoked at the identity provider meanwhile; try again, and log in again if this persists`,
        { details: { reason, status: error.status, endpoint: 'userinfo' }, cause: error },
      );
    }
    // A 401 challenge at the token endpoint is about kubevisa's own client authentication, not the person.
    return new IdentityProviderUnavailable(
      `the identity provider refused kubevisa's client authentication (HTTP ${error.status}, ${reason}); check the OIDC client id and secret`,
      { details: { reason, status: error.status }, cause: error },
    );
  }
  if (error instanceof client.ClientError && error.code !== undefined && VALIDATION_FAILURES.has(error.code)) {
    // State, nonce, issuer, audience, signature or timestamps did not match: refuse the login. The message
    // is openid-client's and names the failed check, never a token value.
    return new Unauthenticated(
      `the identity provider's answer failed validation: ${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ''}`,
      {
        details: { reason: error.code },
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new IdentityProviderUnavailable(
    `could not complete the ${phase} request to the identity provider: ${message}`,
    { cause: error },
  );
}

/** Discovers the IdP and returns the relying party. Throws InvalidInput for bad options. */
export async function createOidcRelyingParty(options: OidcRelyingPartyOptions): Promise<OidcRelyingParty> {
  const issuerUrl = new URL(options.issuerUrl);
  const clientId = requireText(options.clientId, 'clientId');
  const redirectUri = new URL(requireText(options.redirectUri, 'redirectUri'));
  if (redirectUri.search !== '' || redirectUri.hash !== '') {
    throw new InvalidInput('redirectUri must not have a query or fragment');
  }
  const scopes = (options.scopes ?? DEFAULT_SCOPES).split(/\s+/).filter((scope) => scope !== '');
  if (!scopes.includes('openid')) throw new InvalidInput('scopes must include openid', { details: { scopes } });
  const scope = scopes.join(' ');
  const emailClaim = options.emailClaim ?? 'email';
  const emailsVerifiedByIdp = options.emailsVerifiedByIdp === true;
  if (emailClaim !== 'email' && !emailsVerifiedByIdp) {
    throw new InvalidInput(
      `emailClaim '${emailClaim}' has no email_verified claim to vouch for it: set emailsVerifiedByIdp (oidc.emailsVerifiedByIdp: true) only if the identity provider issues that claim solely for addresses it controls (docs/identity.md)`,
    );
  }
  const groupsClaim = options.groupsClaim ?? 'groups';
  const now = options.now ?? Date.now;
  const timeoutSeconds = options.timeoutSeconds ?? 10;
  if (!(timeoutSeconds > 0)) throw new InvalidInput('timeoutSeconds must be a positive number of seconds');

  const insecure = issuerUrl.protocol === 'http:';
  if (insecure && !(options.allowInsecureHttpForLoopback === true && isLoopbackHost(issuerUrl.hostname))) {
    throw new InvalidInput(
      `the issuer ${issuerUrl.href} uses plain http; only https is allowed (plain http only on a loopback address with allowInsecureHttpForLoopback)`,
    );
  }
  if (issuerUrl.protocol !== 'https:' && !insecure) {
    throw new InvalidInput(`the issuer ${issuerUrl.href} must be an https URL`);
  }

  const clientAuth =
    options.clientSecret === undefined
      ? client.None()
      : options.clientAuthMethod === 'client_secret_post'
        ? client.ClientSecretPost(options.clientSecret)
        : client.ClientSecretBasic(options.clientSecret);

  let config: client.Configuration;
  try {
    config = await client.discovery(
      issuerUrl,
      clientId,
      { id_token_signed_response_alg: options.idTokenSigningAlg ?? 'RS256' },
      clientAuth,
      { execute: insecure ? [client.allowInsecureRequests] : [], timeout: timeoutSeconds },
    );
  } catch (error) {
    throw classify(error, 'discovery');
  }
  client.enableNonRepudiationChecks(config);

  const metadata = config.serverMetadata();
  if (insecure) {
    // allowInsecureRequests applies to every request of this configuration: make sure discovery did not
    // point any endpoint at a plain-http host off this machine.
    for (const endpoint of [
      metadata.authorization_endpoint,
      metadata.token_endpoint,
      metadata.device_authorization_endpoint,
      metadata.userinfo_endpoint,
      metadata.jwks_uri,
    ]) {
      if (endpoint === undefined) continue;
      const url = new URL(endpoint);
      if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
        throw new InvalidInput(
          `the identity provider's endpoint ${url.origin} uses plain http off the loopback interface`,
        );
      }
    }
  }

  function tokensOf(response: client.TokenEndpointResponse): OidcTokens {
    return {
      accessToken: response.access_token,
      refreshToken: response.refresh_token,
      idToken: response.id_token,
      accessTokenExpiresAt: typeof response.expires_in === 'number' ? now() + response.expires_in * 1000 : undefined,
      scope: response.scope,
    };
  }

  /** Builds the identity from the validated ID token, asking userinfo for what the ID token leaves out. */
  async function identityOf(
    response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers,
  ): Promise<OidcIdentity> {
    const idToken = response.claims();
    if (idToken === undefined) {
      throw new Unauthenticated('the identity provider sent no ID token; the openid scope is required', {
        details: { reason: 'no_id_token' },
      });
    }
    // Prototype-less: a claim the IdP did not send reads as undefined, never as something inherited.
    const claims = Object.assign(Object.create(null) as Record<string, unknown>, idToken);
    if (
      (claims[emailClaim] === undefined ||
        claims[groupsClaim] === undefined ||
        (!emailsVerifiedByIdp && claims.email_verified === undefined)) &&
      metadata.userinfo_endpoint !== undefined
    ) {
      let userinfo: client.UserInfoResponse;
      try {
        // openid-client checks that userinfo speaks of the same subject as the ID token.
        userinfo = await client.fetchUserInfo(config, response.access_token, idToken.sub);
      } catch (error) {
        throw classify(error, 'userinfo');
      }
      for (const [name, value] of Object.entries(userinfo)) {
        // The signed ID token wins where both speak.
        if (claims[name] === undefined) claims[name] = value;
      }
    }

    const rawEmail = claims[emailClaim];
    if (typeof rawEmail !== 'string' || !EMAIL_PATTERN.test(rawEmail.trim())) {
      throw new Unauthenticated(
        `the identity provider did not send an email address in the "${emailClaim}" claim; kubevisa needs one to identify a person`,
        {
          details: { reason: 'no_email', claim: emailClaim },
        },
      );
    }
    // Neither the subject nor the address can be stored as sent when it holds a NUL (PostgreSQL's text refuses it: the
    // login failed with a server error there, and SQLite took it) or a lone UTF-16 surrogate (stored as U+FFFD, so
    // the person would not be found under it at the next login).
    for (const [claim, value] of [
      ['sub', idToken.sub],
      [emailClaim, rawEmail],
    ] as const) {
      if (!isStorableText(value)) {
        throw new Unauthenticated(
          `the "${claim}" claim the identity provider sent holds a control character or text that is not valid Unicode, which kubevisa cannot store as it was sent: ask your identity provider's admin to correct it`,
          { details: { reason: 'claim_not_text', claim } },
        );
      }
    }
    for (const [claim, value] of [
      ['sub', idToken.sub],
      [emailClaim, rawEmail],
    ] as const) {
      const hidden = hiddenCharacter(value);
      if (hidden !== undefined) {
        throw new Unauthenticated(
          `the "${claim}" claim the identity provider sent ${hiddenCharacterProblem(hidden)}: ask your identity provider's admin to correct it`,
          { details: { reason: 'claim_hidden_character', claim, character: hidden } },
        );
      }
    }
    // Both are indexed, and PostgreSQL cannot index a value of more than 2,704 bytes: a longer one failed the login
    // with a server error there (SQLite took it). Neither is that long from a conforming IdP, nor could such an address
    // be listed in an engagement.
    for (const [claim, value, limit] of [
      ['sub', idToken.sub, MAX_SUBJECT_LENGTH],
      [emailClaim, rawEmail.trim(), MAX_EMAIL_LENGTH],
    ] as const) {
      if (value.length > limit) {
        throw new Unauthenticated(
          `the "${claim}" claim the identity provider sent is longer than ${limit} characters, which kubevisa cannot store: ask your identity provider's admin to correct it`,
          { details: { reason: 'claim_too_long', claim, length: value.length, limit } },
        );
      }
    }
    if (foldsIntoAscii(rawEmail)) {
      throw new Unauthenticated(
        `the email address the identity provider sent holds a character that changes case into a plain letter (such as the Kelvin sign), so kubevisa cannot tell it from another person's address: ask your identity provider's admin to give you a plain address`,
        { details: { reason: 'email_case_folding', claim: emailClaim } },
      );
    }
    const email = rawEmail.trim().toLowerCase();
    // Some IdPs send the strings "true" / "false", in any case. Only the standard claim speaks of `email`; a custom
    // email claim is accepted only with emailsVerifiedByIdp (checked when the relying party is created). A claim
    // that is sent but is not true ("False", 0, "no") is a refusal, never "not said": emailsVerifiedByIdp only
    // stands in for a claim the IdP does not send.
    const verified = emailClaim === 'email' ? claims.email_verified : undefined;
    const verdict =
      verified === true || (typeof verified === 'string' && verified.trim().toLowerCase() === 'true')
        ? 'verified'
        : verified === undefined || verified === null
          ? 'unknown'
          : 'unverified';
    if (verdict === 'unverified' || (verdict === 'unknown' && !emailsVerifiedByIdp)) {
      throw new Unauthenticated(
        verdict === 'unverified'
          ? `the identity provider says ${email} is not verified; verify the address at the identity provider and log in again`
          : `the identity provider did not say that ${email} is verified (no email_verified claim), and kubevisa only accepts verified addresses: verify it at the identity provider, or, if this identity provider only issues addresses it controls, ask an admin to set oidc.emailsVerifiedByIdp: true (docs/identity.md)`,
        {
          details: {
            reason: 'email_not_verified',
            email,
            emailVerified: verdict,
            issuer: idToken.iss,
            subject: idToken.sub,
          },
        },
      );
    }

    const rawGroups = claims[groupsClaim];
    const groupList = Array.isArray(rawGroups) ? rawGroups : typeof rawGroups === 'string' ? [rawGroups] : [];
    const groups = [
      ...new Set(groupList.filter((group): group is string => typeof group === 'string' && group !== '')),
    ];

    // A display name is only shown, and people may often edit theirs at the IdP: what the store cannot hold as given
    // (a NUL, a lone surrogate) is replaced rather than refused, so that what is stored is what is used.
    const text = (value: unknown): string | undefined => {
      if (typeof value !== 'string') return undefined;
      const cleaned = value
        .toWellFormed()
        .replace(/\p{Cc}/gu, ' ')
        .trim();
      return cleaned === '' ? undefined : cleaned;
    };
    const fullName = [text(claims.given_name), text(claims.family_name)].filter((part) => part !== undefined).join(' ');
    const displayName =
      text(claims.name) ?? text(claims.preferred_username) ?? (fullName === '' ? undefined : fullName) ?? email;

    return { issuer: idToken.iss, subject: idToken.sub, email, displayName, groups };
  }

  // Refreshes in flight, and answers that rotated the refresh token, by the refresh token's SHA-256 (see `refresh`).
  // Answers are remembered in the order they came, each for REFRESH_REUSE_MS: the oldest is always first.
  const refreshesInFlight = new Map<string, Promise<RefreshAnswer>>();
  const rotatedAnswers = new Map<string, { result: RefreshAnswer; until: Instant }>();

  function checkSecrets(secrets: AuthorizationRequestSecrets): void {
    requireText(secrets.state, 'state');
    requireText(secrets.nonce, 'nonce');
    if (typeof secrets.codeVerifier !== 'string' || !CODE_VERIFIER_PATTERN.test(secrets.codeVerifier)) {
      throw new InvalidInput('codeVerifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~ (RFC 7636)');
    }
  }

  /** A refresh's answer with the subject of its ID token, which the identity may lack. */
  type RefreshAnswer = RefreshResult & { subject: string | undefined };

  async function refreshOnce(refreshToken: string): Promise<RefreshAnswer> {
    let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
    try {
      response = await client.refreshTokenGrant(config, refreshToken);
    } catch (error) {
      throw classify(error, 'refresh');
    }
    const tokens = tokensOf(response);
    // Many IdPs do not rotate refresh tokens: keep using the one we have.
    tokens.refreshToken ??= refreshToken;
    if (response.id_token === undefined) return { tokens, identity: undefined, subject: undefined };
    // The ID token is validated by now, so its subject is known even when userinfo cannot be asked.
    const subject = response.claims()?.sub;
    try {
      return { tokens, identity: await identityOf(response), subject };
    } catch (error) {
      // A rotating IdP has spent the old refresh token: dropping the new one over an outage at userinfo would leave the
      // session with a token whose next use revokes the grant. A refusal (Unauthenticated) still ends the renewal.
      if (error instanceof IdentityProviderUnavailable) return { tokens, identity: undefined, subject };
      throw error;
    }
  }

  function checkSubject(result: RefreshAnswer, refreshOptions: { expectedSubject?: string }): RefreshResult {
    if (
      result.subject !== undefined &&
      refreshOptions.expectedSubject !== undefined &&
      result.subject !== refreshOptions.expectedSubject
    ) {
      // OIDC Core §12.2: a refreshed ID token must name the same subject; anything else is not this session.
      throw new Unauthenticated('the identity provider renewed the session for a different subject', {
        details: { reason: 'subject_changed' },
      });
    }
    return { tokens: result.tokens, identity: result.identity };
  }

  return {
    issuer: metadata.issuer,

    async startDeviceAuthorization(): Promise<DeviceAuthorization> {
      if (metadata.device_authorization_endpoint === undefined) {
        throw new DeviceLoginUnsupported(
          `the identity provider ${metadata.issuer} does not offer device login (its discovery document has no device_authorization_endpoint): log in with the browser instead (kubevisa login --browser)`,
        );
      }
      let response: client.DeviceAuthorizationResponse;
      try {
        response = await client.initiateDeviceAuthorization(config, { scope });
      } catch (error) {
        throw classify(error, 'device');
      }
      return {
        deviceCode: response.device_code,
        userCode: response.user_code,
        verificationUri: response.verification_uri,
        verificationUriComplete: response.verification_uri_complete,
        intervalSeconds: response.interval ?? 5,
        expiresAt: now() + response.expires_in * 1000,
      };
    },

    async pollDeviceAuthorization(deviceCode: string): Promise<DevicePollResult> {
      requireText(deviceCode, 'deviceCode');
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        // One token request, not openid-client's pollDeviceAuthorizationGrant: that one sleeps and loops
        // until done, while kubevisa's API answers each CLI poll at once (202 pending).
        response = await client.genericGrantRequest(config, DEVICE_CODE_GRANT, { device_code: deviceCode });
      } catch (error) {
        if (error instanceof client.ResponseBodyError && error.error === 'authorization_pending')
          return { status: 'pending' };
        if (error instanceof client.ResponseBodyError && error.error === 'slow_down')
          return { status: 'pending', slowDown: true };
        throw classify(error, 'device');
      }
      return { status: 'done', identity: await identityOf(response), tokens: tokensOf(response) };
    },

    async authorizationUrl(secrets: AuthorizationRequestSecrets): Promise<string> {
      checkSecrets(secrets);
      const codeChallenge = await client.calculatePKCECodeChallenge(secrets.codeVerifier);
      return client.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri.href,
        scope,
        state: secrets.state,
        nonce: secrets.nonce,
        code_challenge: codeChallenge,
        code_challenge_method: 'S256',
      }).href;
    },

    async exchangeCode(callbackUrl: string | URL, secrets: AuthorizationRequestSecrets): Promise<OidcLogin> {
      checkSecrets(secrets);
      const current = new URL(redirectUri);
      try {
        current.search = new URL(callbackUrl, redirectUri).search;
      } catch (cause) {
        throw new InvalidInput('callbackUrl is not a URL', { cause });
      }
      let response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
      try {
        response = await client.authorizationCodeGrant(config, current, {
          expectedState: secrets.state,
          expectedNonce: secrets.nonce,
          pkceCodeVerifier: secrets.codeVerifier,
          idTokenExpected: true,
        });
      } catch (error) {
        throw classify(error, 'login');
      }
      return { identity: await identityOf(response), tokens: tokensOf(response) };
    },

    refresh(refreshToken: string, refreshOptions: { expectedSubject?: string } = {}): Promise<RefreshResult> {
      requireText(refreshToken, 'refreshToken');
      // IdPs that rotate refresh tokens (Ory Hydra, Okta, Keycloak with rotation on) take each one once: a second
      // use is taken as theft and revokes the whole grant, which kubevisa would read as a deprovisioning. Two callers
      // renewing with one token at the same moment must not do that, so every refresh of one token in flight shares one
      // request, and when the IdP rotated the token, its answer is reused for a minute after (a caller that read the
      // token just before the rotated one was stored presents the old one). Across servers, the store makes sure only
      // one renews a session (src/app/sessions.ts).
      const key = createHash('sha256').update(refreshToken).digest('base64url');
      const at = now();
      for (const [k, entry] of rotatedAnswers) {
        if (entry.until > at) break;
        rotatedAnswers.delete(k);
      }
      const known = rotatedAnswers.get(key);
      if (known !== undefined && known.until > at)
        return Promise.resolve(known.result).then((answer) => checkSubject(answer, refreshOptions));
      let pending = refreshesInFlight.get(key);
      if (pending === undefined) {
        const started = refreshOnce(refreshToken);
        pending = started;
        refreshesInFlight.set(key, started);
        started.then(
          (answer) => {
            refreshesInFlight.delete(key);
            // Only a rotated token needs its answer kept: a token the IdP did not replace is asked about again, so a
            // deprovisioning is seen at the next renewal, not a minute later.
            if (answer.tokens.refreshToken === refreshToken) return;
            rotatedAnswers.set(key, { result: answer, until: now() + REFRESH_REUSE_MS });
            if (rotatedAnswers.size > MAX_REMEMBERED_REFRESHES) {
              const oldest = rotatedAnswers.keys().next().value;
              if (oldest !== undefined) rotatedAnswers.delete(oldest);
            }
          },
          // Neither a refusal nor an outage is remembered: the next caller asks the IdP again, and refused tokens
          // (anyone can make up one) take no room.
          () => refreshesInFlight.delete(key),
        );
      }
      return pending.then((answer) => checkSubject(answer, refreshOptions));
    },
  };
}
