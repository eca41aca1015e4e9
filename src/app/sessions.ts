/**
 * Logins and sessions. kubevisa is the OIDC relying party: the device flow and the browser flow (PKCE between
 * the CLI and kubevisa, and between kubevisa and the IdP) both end in a kubevisa session whose secret only the
 * CLI holds (the server keeps its hash). The secret buys short access tokens, and only while the session, the
 * IdP grant (refreshed at the IdP when due) and the person are all still valid.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import type { OidcIdentity, OidcLogin, OidcRelyingParty, RefreshResult } from '../auth/oidc-rp.ts';
import { newAuthorizationRequestSecrets } from '../auth/oidc-rp.ts';
import {
  constantTimeEqual,
  generateSessionSecret,
  hashSessionSecret,
  isWellFormedSessionSecret,
} from '../auth/session-secrets.ts';
import { InvalidInput, NotFound, Unauthenticated } from '../domain/errors.ts';
import { own } from '../domain/own.ts';
import { configuredRoles, type RoleConfig } from '../domain/roles.ts';
import type { Actor, Person, PersonRole } from '../domain/model.ts';
import type { AuditSource, Session, Store } from '../store/store.ts';
import type { SecretBox } from '../auth/secret-box.ts';
import type { Caller } from './caller.ts';
import { extendTurn, releaseTurn, takeTurn } from './turns.ts';
import { IdentityProviderUnavailable } from '../auth/errors.ts';

/** What sessions read from the server configuration. */
export interface SessionSettings extends RoleConfig {
  /** How long a session lasts, in seconds. */
  sessionSeconds: number;
  /** How long an access token lasts, in seconds. */
  accessTokenSeconds: number;
}

export interface SessionServiceOptions {
  store: Store;
  rp: OidcRelyingParty;
  tokens: TokenIssuer;
  secretBox: SecretBox;
  config: SessionSettings;
  now?: () => number;
  /**
   * Told when a session ends (logout, or the IdP no longer vouches for it), so caches of its tokens (the gateway's)
   * drop them at once and direct-mode tokens issued under it are ended.
   */
  onSessionEnded?: (sessionId: string) => void;
}

export interface SessionAnswer {
  sessionSecret: string;
  accessToken: string;
  accessTokenExpiresAt: number;
  sessionExpiresAt: number;
  person: Person;
}

/**
 * What the identity lifecycle (issue 7) is told about logins, registered with `addLifecycleHooks`. Every hook is
 * awaited, so what it commits is durable before the login (or the refusal) is answered.
 */
export interface SessionLifecycleHooks {
  /** Before a session is created: throw Unauthenticated to refuse the login (e.g. deactivated by SCIM). */
  beforeLogin?(identity: OidcIdentity): Promise<void>;
  /**
   * The roles a person logging in holds: what the core configuration gives for the login's email and groups
   * (`base`) plus what the identity lifecycle's group mappings give. The one derivation both the login and the
   * identity sync use, so a login never drops a mapped role that the next sync would give back.
   */
  rolesAtLogin?(identity: OidcIdentity, base: readonly PersonRole[]): Promise<PersonRole[]>;
  /** After a session was created for the person (their groups and roles refreshed from the login). */
  afterLogin?(person: Person): Promise<void>;
  /** The IdP refused to refresh a session's grant; the session is already revoked when this runs. */
  idpRefreshRefused?(person: Person, sessionId: string): Promise<void>;
}

const LOGIN_TTL_MS = 10 * 60_000;
/**
 * How long one server may hold a session's refresh turn, in ms: past what one refresh can take, up to three IdP
 * requests (token, signing keys, userinfo) of at most oidc.timeoutSeconds each (10 s by default), since a turn taken
 * over from a holder still waiting presents its refresh token a second time. Shorter than the minute for which the
 * relying party reuses a rotation's answer, so a turn taken over on the holder's own server is answered from it.
 */
const REFRESH_HOLD_MS = 45_000;
/** How long a renewal waits for another server's, in ms. */
const REFRESH_WAIT_MS = 15_000;
const LOOPBACK_REDIRECT = /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d{1,5}(\/[A-Za-z0-9._~\-/]*)?$/;

export class SessionService {
  private readonly options: SessionServiceOptions;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly hooks: SessionLifecycleHooks[] = [];
  constructor(options: SessionServiceOptions) {
    this.options = options;
    this.store = options.store;
    this.now = options.now ?? Date.now;
  }

  /** Registers the identity lifecycle's hooks (see SessionLifecycleHooks). */
  addLifecycleHooks(hooks: SessionLifecycleHooks): void {
    this.hooks.push(hooks);
  }

  // ---- device flow ----

  async startDeviceLogin() {
    const now = this.now();
    const device = await this.options.rp.startDeviceAuthorization();
    const loginId = `l_${randomBytes(18).toString('base64url')}`;
    await this.store.transaction((tx) =>
      tx.insertLogin({
        id: hashLoginId(loginId),
        kind: 'device',
        payload: {
          deviceCode: this.options.secretBox.seal(device.deviceCode),
          intervalSeconds: device.intervalSeconds,
        },
        createdAt: now,
        expiresAt: Math.min(device.expiresAt, now + LOGIN_TTL_MS),
      }),
    );
    return {
      loginId,
      userCode: device.userCode,
      verificationUri: device.verificationUri,
      ...(device.verificationUriComplete ? { verificationUriComplete: device.verificationUriComplete } : {}),
      intervalSeconds: device.intervalSeconds,
      expiresAt: device.expiresAt,
    };
  }

  /** `pending` until the person has logged in at the IdP; then the session. */
  async pollDeviceLogin(loginId: string, source?: AuditSource): Promise<{ status: 'pending' } | SessionAnswer> {
    const now = this.now();
    const login = await this.store.getLogin(hashLoginId(loginId));
    if (!login || login.kind !== 'device') throw new NotFound('unknown login: start again with kubevisa login');
    if (login.expiresAt <= now) {
      await this.store.transaction(async (tx) => {
        await tx.deleteLogin(login.id);
        await tx.deleteLogin(devicePollTurn(login.id));
      });
      throw new Unauthenticated('the login expired before it was completed: run kubevisa login again');
    }
    // kubevisa is the OAuth client polling the IdP, so it keeps RFC 8628's interval (5 s more after `slow_down`)
    // whatever its own callers do, across every server on the store: a poll that comes sooner, to any of them, is told
    // to wait without asking, and anyone holding a login id cannot make kubevisa hammer the IdP.
    const intervalMs = Math.max(1, Number(login.payload.intervalSeconds) || 5) * 1000;
    const turn = devicePollTurn(login.id);
    if (!(await takeTurn(this.store, turn, 'device-poll', now, intervalMs))) return { status: 'pending' };
    const deviceCode = this.options.secretBox.open(String(login.payload.deviceCode));
    let result: Awaited<ReturnType<OidcRelyingParty['pollDeviceAuthorization']>>;
    try {
      result = await this.options.rp.pollDeviceAuthorization(deviceCode);
    } catch (error) {
      await releaseTurn(this.store, turn);
      return this.refuseIdentity(error, login.id, source);
    }
    if (result.status === 'pending') {
      if (result.slowDown) await extendTurn(this.store, turn, now + intervalMs + 5000);
      return { status: 'pending' };
    }
    await this.store.transaction(async (tx) => {
      await tx.deleteLogin(login.id);
      await tx.deleteLogin(turn);
    });
    return this.createSession(result, source);
  }

  // ---- browser flow ----

  /**
   * `ownRedirectUri`: a redirect on kubevisa's own origin that the caller (the web console, never the public route)
   * accepts besides the CLI's loopback listener.
   */
  async startBrowserLogin(
    body: { redirectUri: string; codeChallenge: string; state: string },
    ownRedirectUri?: string,
  ) {
    if (body.redirectUri !== ownRedirectUri && !LOOPBACK_REDIRECT.test(body.redirectUri)) {
      throw new InvalidInput(
        'redirectUri must be a loopback URL such as http://127.0.0.1:PORT/callback (the CLI listens there)',
      );
    }
    if (!/^[A-Za-z0-9_-]{43}$/.test(body.codeChallenge)) {
      throw new InvalidInput('codeChallenge must be an S256 PKCE challenge: 43 base64url characters');
    }
    if (!/^[A-Za-z0-9_-]{16,128}$/.test(body.state))
      throw new InvalidInput('state must be 16–128 base64url characters');
    const now = this.now();
    const secrets = newAuthorizationRequestSecrets();
    await this.store.transaction((tx) =>
      tx.insertLogin({
        id: `b_${randomBytes(18).toString('base64url')}`,
        kind: 'browser',
        lookupKey: hashLoginId(secrets.state),
        payload: {
          idpSecrets: this.options.secretBox.seal(JSON.stringify(secrets)),
          cliRedirectUri: body.redirectUri,
          cliState: body.state,
          cliCodeChallenge: body.codeChallenge,
        },
        createdAt: now,
        expiresAt: now + LOGIN_TTL_MS,
      }),
    );
    return { authorizationUrl: await this.options.rp.authorizationUrl(secrets) };
  }

  /** The IdP redirected the browser back: finish at the IdP, then send the browser to the CLI with a one-time code. */
  async finishBrowserLogin(callbackUrl: URL, source?: AuditSource): Promise<string> {
    const state = callbackUrl.searchParams.get('state') ?? '';
    const login = await this.store.getLoginByLookupKey(hashLoginId(state));
    if (!login || login.kind !== 'browser' || login.expiresAt <= this.now()) {
      throw new Unauthenticated('unknown or expired login: run kubevisa login again');
    }
    const secrets = JSON.parse(this.options.secretBox.open(String(login.payload.idpSecrets))) as {
      state: string;
      nonce: string;
      codeVerifier: string;
    };
    let result: OidcLogin;
    try {
      result = await this.options.rp.exchangeCode(callbackUrl, secrets);
    } catch (error) {
      return this.refuseIdentity(error, login.id, source);
    }
    const answer = await this.createSession(result, source);
    const oneTimeCode = `c_${randomBytes(24).toString('base64url')}`;
    await this.store.transaction(async (tx) => {
      await tx.deleteLogin(login.id);
      await tx.insertLogin({
        id: hashLoginId(oneTimeCode),
        kind: 'browser-code',
        payload: {
          answer: this.options.secretBox.seal(JSON.stringify(answer)),
          codeChallenge: String(login.payload.cliCodeChallenge),
        },
        createdAt: this.now(),
        expiresAt: this.now() + 60_000,
      });
    });
    const target = new URL(String(login.payload.cliRedirectUri));
    target.searchParams.set('code', oneTimeCode);
    target.searchParams.set('state', String(login.payload.cliState));
    return target.toString();
  }

  /** The CLI trades the one-time code and its PKCE verifier for the session. */
  async exchangeBrowserCode(code: string, codeVerifier: string): Promise<SessionAnswer> {
    const login = await this.store.getLogin(hashLoginId(code));
    if (!login || login.kind !== 'browser-code' || login.expiresAt <= this.now()) {
      throw new Unauthenticated('unknown or expired login code: run kubevisa login again');
    }
    // The code works once, whatever the verifier: a wrong guess burns it, and of two concurrent exchanges only
    // the one whose delete removed the row goes on.
    const deleted = await this.store.transaction((tx) => tx.deleteLogin(login.id));
    if (!deleted) throw new Unauthenticated('this login code was already used: run kubevisa login again');
    const challenge = createHash('sha256').update(codeVerifier).digest('base64url');
    if (!constantTimeEqual(challenge, String(login.payload.codeChallenge))) {
      throw new Unauthenticated('the PKCE verifier does not match this login: run kubevisa login again');
    }
    return JSON.parse(this.options.secretBox.open(String(login.payload.answer))) as SessionAnswer;
  }

  /**
   * The IdP answered for someone kubevisa does not accept (an email it does not vouch for): the refusal is
   * audited and the pending login dropped, so the CLI's next poll is told the login is over. Any other error
   * goes on as it is.
   */
  private async refuseIdentity(error: unknown, loginId: string, source: AuditSource | undefined): Promise<never> {
    if (error instanceof Unauthenticated && error.details?.reason === 'email_not_verified') {
      const details = error.details;
      const now = this.now();
      await this.store.transaction(async (tx) => {
        await tx.deleteLogin(loginId);
        await tx.appendAudit({
          at: now,
          actor: typeof details.email === 'string' ? details.email : 'unknown',
          action: 'login.refused',
          outcome: 'refused',
          reason: error.message,
          details: {
            reason: 'email_not_verified',
            emailVerified: String(details.emailVerified),
            issuer: String(details.issuer),
            subject: String(details.subject),
          },
          ...(source ? { source } : {}),
        });
      });
    }
    throw error;
  }

  // ---- sessions ----

  private async createSession(login: OidcLogin, source?: AuditSource): Promise<SessionAnswer> {
    const now = this.now();
    for (const hook of this.hooks) await hook.beforeLogin?.(login.identity);
    const secret = generateSessionSecret();
    const roles = await this.rolesFor(login.identity);
    const { person, session } = await this.store.transaction(async (tx) => {
      const upserted = await tx.upsertPersonFromLogin({ ...login.identity, now });
      if (upserted.status !== 'active') {
        await tx.appendAudit({
          at: now,
          actor: upserted.email,
          action: 'session.refused',
          personId: upserted.id,
          outcome: 'refused',
          reason: `person is ${upserted.status}`,
          ...(source ? { source } : {}),
        });
        return { person: upserted, session: undefined };
      }
      const person = await tx.setPersonRoles(upserted.id, roles, now);
      const session = await tx.insertSession({
        personId: person.id,
        secretHash: hashSessionSecret(secret),
        createdAt: now,
        expiresAt: now + this.options.config.sessionSeconds * 1000,
        ...(login.tokens.refreshToken
          ? { idpRefreshTokenCiphertext: this.options.secretBox.seal(login.tokens.refreshToken) }
          : {}),
        ...(login.tokens.accessTokenExpiresAt ? { idpTokenExpiresAt: login.tokens.accessTokenExpiresAt } : {}),
      });
      await tx.appendAudit({
        at: now,
        actor: person.email,
        sessionId: session.id,
        action: 'session.created',
        personId: person.id,
        outcome: 'ok',
        details: { roles, groups: person.groups },
        ...(source ? { source } : {}),
      });
      return { person, session };
    });
    if (!session) throw new Unauthenticated(`${person.email} is ${person.status} in kubevisa: ask an admin`);
    for (const hook of this.hooks) await hook.afterLogin?.(person);
    const access = await this.options.tokens.issue({
      personId: person.id,
      email: person.email,
      sessionId: session.id,
      now,
      expiresInSeconds: this.options.config.accessTokenSeconds,
    });
    return {
      sessionSecret: secret,
      accessToken: access.token,
      accessTokenExpiresAt: access.expiresAt,
      sessionExpiresAt: session.expiresAt,
      person,
    };
  }

  /** Trades a session secret for a fresh access token, re-checking everything that could have ended the session. */
  async issueAccessToken(sessionSecret: unknown): Promise<{ accessToken: string; expiresAt: number }> {
    if (!isWellFormedSessionSecret(sessionSecret))
      throw new Unauthenticated('not a kubevisa session: run kubevisa login');
    const now = this.now();
    const session = await this.store.getSessionBySecretHash(hashSessionSecret(sessionSecret));
    if (!session) throw new Unauthenticated('unknown session: run kubevisa login');
    // Optional fields are read as own properties: nothing inherited can end (or keep) a session.
    if (own(session, 'revokedAt') !== undefined)
      throw new Unauthenticated(
        `this session was ended (${own(session, 'revokeReason') ?? 'revoked'}): run kubevisa login`,
      );
    if (session.expiresAt <= now) throw new Unauthenticated('this session has expired: run kubevisa login');
    const person = await this.store.getPerson(session.personId);
    if (!person || person.status !== 'active') {
      throw new Unauthenticated(
        `${person?.email ?? 'this person'} is ${person?.status ?? 'unknown'} in kubevisa: access ended`,
      );
    }
    const idpTokenExpiresAt = own(session, 'idpTokenExpiresAt');
    if (idpTokenExpiresAt !== undefined && idpTokenExpiresAt <= now) await this.refreshAtIdp(session.id, person);
    const access = await this.options.tokens.issue({
      personId: person.id,
      email: person.email,
      sessionId: session.id,
      now,
      expiresInSeconds: this.options.config.accessTokenSeconds,
    });
    await this.store.transaction((tx) => tx.updateSession(session.id, { lastUsedAt: now }));
    return { accessToken: access.token, expiresAt: access.expiresAt };
  }

  /**
   * The IdP is asked again when its token is due: a refused refresh ends the session (deprovisioned at the IdP).
   * One server at a time asks for one session (a turn in the store): an IdP that rotates refresh tokens takes a second
   * use of one as theft and revokes the grant, and two kubectl processes renewing at once may reach two servers. The
   * others wait for the holder's answer and use it.
   */
  private async refreshAtIdp(sessionId: string, person: Person) {
    const turn = `${sessionId}.idp-refresh`;
    const waitUntil = this.now() + REFRESH_WAIT_MS;
    while (!(await takeTurn(this.store, turn, 'idp-refresh', this.now(), REFRESH_HOLD_MS))) {
      if (this.now() >= waitUntil)
        throw new IdentityProviderUnavailable(
          'another kubevisa server is renewing this session at the identity provider and has not finished: try again in a moment',
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (!(await this.refreshIsDue(sessionId))) return;
    }
    try {
      // Read again under the turn: the last holder may have renewed it, rotating the token read before.
      if (!(await this.refreshIsDue(sessionId))) return;
      const session = await this.store.getSession(sessionId);
      if (session) await this.refreshHeld(session, person);
    } finally {
      // A turn not given back (the store is down) frees itself when it expires.
      await releaseTurn(this.store, turn).catch((error: unknown) =>
        process.stderr.write(
          `kubevisa: giving back the refresh turn of session ${sessionId} failed (it expires by itself): ${error instanceof Error ? error.message : String(error)}\n`,
        ),
      );
    }
  }

  /** Whether the session's IdP token is (still) due for renewal; an ended session refuses. */
  private async refreshIsDue(sessionId: string): Promise<boolean> {
    const session = await this.store.getSession(sessionId);
    if (!session || own(session, 'revokedAt') !== undefined)
      throw new Unauthenticated('this session was ended: run kubevisa login');
    const idpTokenExpiresAt = own(session, 'idpTokenExpiresAt');
    return idpTokenExpiresAt !== undefined && idpTokenExpiresAt <= this.now();
  }

  /**
   * Asks the IdP with the refresh token of `session` (read under the turn) and stores the answer, or ends the session.
   * The answer is written by compare-and-set over the grant that was read, so a holder that stalled past its turn
   * (another server has renewed since) never writes back a refresh token that one has already used.
   */
  private async refreshHeld(session: Session, person: Person) {
    const now = this.now();
    const sessionId = session.id;
    const sealedRefreshToken = own(session, 'idpRefreshTokenCiphertext');
    const due = own(session, 'idpTokenExpiresAt');
    if (due === undefined) return;
    if (!sealedRefreshToken) {
      // The IdP gave no refresh token, so it cannot be asked again whether the person is still valid: the session
      // lasts no longer than the IdP's own grant.
      await this.store.transaction((tx) => tx.revokeSession(sessionId, now, 'the identity provider grant expired'));
      this.options.onSessionEnded?.(sessionId);
      throw new Unauthenticated('your identity provider login has expired and cannot be refreshed: run kubevisa login');
    }
    const refreshToken = this.options.secretBox.open(sealedRefreshToken);
    let refreshed: RefreshResult;
    try {
      refreshed = await this.options.rp.refresh(refreshToken, { expectedSubject: person.subject });
    } catch (error) {
      if (!(error instanceof Unauthenticated)) throw error;
      await this.store.transaction(async (tx) => {
        await tx.revokeSession(sessionId, now, 'the identity provider refused to refresh the login');
        await tx.appendAudit({
          at: now,
          actor: 'system',
          sessionId,
          personId: person.id,
          action: 'session.revoked',
          outcome: 'ok',
          reason: 'identity provider refused refresh',
        });
      });
      this.options.onSessionEnded?.(sessionId);
      for (const hook of this.hooks) await hook.idpRefreshRefused?.(person, sessionId);
      throw new Unauthenticated('your identity provider no longer accepts this login: run kubevisa login');
    }
    // The IdP answered, so a rotating IdP has spent the old token: the new one is what the session keeps.
    const stored = await this.store.transaction((tx) =>
      tx.swapSessionGrant(
        sessionId,
        { idpRefreshTokenCiphertext: sealedRefreshToken, idpTokenExpiresAt: due },
        {
          idpRefreshTokenCiphertext: this.options.secretBox.seal(refreshed.tokens.refreshToken ?? refreshToken),
          idpTokenExpiresAt: refreshed.tokens.accessTokenExpiresAt ?? null,
        },
      ),
    );
    // Not stored: the session ended meanwhile (refreshIsDue refuses), or another server renewed it and its token stands.
    if (!stored) await this.refreshIsDue(sessionId);
  }

  /** Verifies a bearer access token and returns who is calling; the session and person are checked live. */
  async authenticate(token: string): Promise<{ actor: Actor; sessionId: string; person: Person }> {
    const verified = await this.options.tokens.verify(token, this.now());
    const session = await this.store.getSession(verified.sessionId);
    if (!session || own(session, 'revokedAt') !== undefined)
      throw new Unauthenticated('this session was ended: run kubevisa login');
    if (session.expiresAt <= this.now()) throw new Unauthenticated('this session has expired: run kubevisa login');
    const person = await this.store.getPerson(verified.personId);
    if (!person || person.status !== 'active') throw new Unauthenticated('access ended for this person');
    return { actor: actorOf(person), sessionId: session.id, person };
  }

  /** Ends the caller's own session. */
  async logout(caller: Caller): Promise<void> {
    const { actor, sessionId } = caller;
    if (sessionId === undefined) throw new InvalidInput('only a person logged in to kubevisa has a session to end');
    const now = this.now();
    await this.store.transaction(async (tx) => {
      await tx.revokeSession(sessionId, now, 'logged out');
      await tx.appendAudit({
        at: now,
        actor: actor.email,
        sessionId,
        personId: actor.personId,
        action: 'session.logged-out',
        outcome: 'ok',
      });
    });
    this.options.onSessionEnded?.(sessionId);
  }

  private async rolesFor(identity: OidcIdentity): Promise<PersonRole[]> {
    const base = configuredRoles(identity.email, identity.groups, this.options.config);
    let roles = base;
    for (const hook of this.hooks) if (hook.rolesAtLogin) roles = await hook.rolesAtLogin(identity, roles);
    return roles;
  }
}

export function actorOf(person: Person): Actor {
  return { personId: person.id, email: person.email, roles: person.roles, groups: person.groups };
}

/** The turn that lets one server at a time ask the IdP about a device login (its id hashed, as the login's). */
function devicePollTurn(hashedLoginId: string): string {
  return `${hashedLoginId}.poll`;
}

/** Login handles are bearer secrets too: only their hash is stored. */
function hashLoginId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}
