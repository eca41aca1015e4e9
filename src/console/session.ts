/**
 * The console's sign-in: kubevisa's own browser login (authorization code + PKCE at the identity provider, then a
 * one-time code and a PKCE verifier between the console and kubevisa) ending in an ordinary kubevisa session, the
 * same row in the store as a CLI login. Its secret lives only in a cookie that script cannot read (HttpOnly), that
 * never travels over plain HTTP (Secure) nor with a request another site starts (SameSite=Strict), and that is sent
 * only to `/api/` (never to the gateway's `/clusters/` nor to SCIM).
 *
 * A request carrying that cookie and no Authorization header is turned into an ordinary bearer request before any
 * route sees it, so every API route (the core's and every capability's) authorizes the console exactly as it
 * authorizes the CLI: roles and 403s come from one place. Because a cookie is sent by the browser on its own, every
 * state-changing request authenticated by it must also carry the session's CSRF token in `X-CSRF-Token`, which only
 * the console's own page can learn (from `GET /api/v1/console/session`).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { constantTimeEqual } from '../auth/session-secrets.ts';
import { Forbidden, KubevisaError, Unauthenticated } from '../domain/errors.ts';
import { AddressLimiter, clientKey } from '../gateway/rate-limit.ts';
import type { SessionService } from '../app/sessions.ts';
import { readCookies, serializeCookie } from './cookies.ts';

/**
 * `__Host-`: browsers accept it only with the Secure flag, from this very host (no Domain), for Path=/. So no other
 * host, not even a sibling subdomain, can plant its own session or login cookie in front of ours ("cookie tossing",
 * found by attack with the `__Secure-` prefix, which allows a Domain). The gateway drops Cookie headers.
 */
export const SESSION_COOKIE = '__Host-kubevisa-console';
const LOGIN_COOKIE = '__Host-kubevisa-console-login';
const SESSION_COOKIE_PATH = '/';
const LOGIN_COOKIE_PATH = '/';
export const CALLBACK_PATH = '/api/v1/console/callback';
export const CSRF_HEADER = 'x-csrf-token';
/** A pending sign-in lives this long, in seconds (the IdP's login page included). */
const LOGIN_COOKIE_SECONDS = 600;
/** An access token this close to its expiry is renewed before use, in milliseconds. */
const RENEW_BEFORE_MS = 30_000;
/** Most sessions whose access token is kept in memory (the oldest is dropped first). */
const MAX_CACHED_TOKENS = 10_000;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Where the console may send someone after sign-in: one of its own pages. */
const NEXT_PATH = /^\/(?!\/)[A-Za-z0-9/_-]{0,100}$/;

/** A state-changing request authenticated by the console's cookie came without the session's CSRF token. */
export class CsrfRefused extends Forbidden {
  static override code = 'ERR_CSRF';
}

/** Sign-ins one client address may start: 30 at once, then one every two seconds. */
const SIGN_IN_LIMITS = { ratePerSecond: 0.5, burst: 30, refusalsPerSecond: 1, refusalBurst: 60 };

class SignInsLimited extends KubevisaError {
  static override code = 'ERR_RATE_LIMITED';
  constructor(message: string) {
    super(message, { status: 429 });
  }
}

export interface ConsoleSessionOptions {
  sessions: SessionService;
  /** The server's public URL (its origin is the only one state-changing requests may come from). */
  url: string;
  now?: () => number;
}

export class ConsoleSessions {
  private readonly options: ConsoleSessionOptions;
  private readonly now: () => number;
  private readonly origin: string;
  private readonly callbackUrl: string;
  /** Access tokens by hashed session secret: issuing one checks the session and may ask the IdP, so it is reused. */
  private readonly tokens = new Map<string, { accessToken: string; expiresAt: number }>();
  private readonly signIns = new AddressLimiter(SIGN_IN_LIMITS);
  /** Requests the bridge authenticated, with their session secret (gone with the request). */
  private readonly bridged = new WeakMap<FastifyRequest, string>();

  constructor(options: ConsoleSessionOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.origin = new URL(options.url).origin;
    this.callbackUrl = `${options.url.replace(/\/$/, '')}${CALLBACK_PATH}`;
  }

  /** The CSRF token of a session: derived from its secret, so it needs no storage and works on every replica. */
  csrfToken(sessionSecret: string): string {
    return createHmac('sha256', sessionSecret).update('kubevisa console csrf v1').digest('base64url');
  }

  /**
   * The onRequest hook: a request to `/api/` with the console's cookie and no Authorization header becomes a bearer
   * request; a state-changing one must carry the CSRF token and, when the browser says where it comes from, come
   * from the console's own origin.
   */
  readonly bridge = async (request: FastifyRequest): Promise<void> => {
    if (!request.url.startsWith('/api/') || request.headers.authorization !== undefined) return;
    const secret = readCookies(request.headers.cookie).get(SESSION_COOKIE);
    if (!secret) return;
    if (!SAFE_METHODS.has(request.method)) {
      const origin = request.headers.origin;
      if (origin !== undefined && origin !== this.origin) {
        throw new CsrfRefused(`a console change must come from the console's own page (${this.origin}), not ${origin}`);
      }
      const sent = request.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !constantTimeEqual(sent, this.csrfToken(secret))) {
        throw new CsrfRefused(
          `this change needs the console's CSRF token in the ${CSRF_HEADER} header: reload the console and try again`,
        );
      }
    }
    const accessToken = await this.accessToken(secret);
    // A session that no longer buys a token (ended, expired, person offboarded): the route answers 401 as for anyone.
    if (accessToken === undefined) return;
    request.headers.authorization = `Bearer ${accessToken}`;
    this.bridged.set(request, secret);
  };

  /** The console session secret of a request the bridge authenticated (undefined for the CLI's bearer requests). */
  secretOf(request: FastifyRequest): string | undefined {
    return this.bridged.get(request);
  }

  private async accessToken(secret: string): Promise<string | undefined> {
    const key = hash(secret);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt - RENEW_BEFORE_MS > this.now()) return cached.accessToken;
    try {
      const issued = await this.options.sessions.issueAccessToken(secret);
      this.tokens.delete(key);
      if (this.tokens.size >= MAX_CACHED_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
      this.tokens.set(key, issued);
      return issued.accessToken;
    } catch (error) {
      this.tokens.delete(key);
      if (error instanceof Unauthenticated) return undefined;
      throw error;
    }
  }

  /** `GET /api/v1/console/login?next=/queue`: off to the identity provider, with the PKCE verifier in a cookie. */
  async startSignIn(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const key = clientKey(request.socket.remoteAddress);
    const now = this.now();
    const wait = this.signIns.take(key, now);
    if (wait > 0) {
      reply.header('retry-after', String(wait));
      throw new SignInsLimited(`too many sign-ins started from this address: try again in ${wait} s`);
    }
    this.signIns.settle(key, now, false);
    const next = (request.query as { next?: string }).next;
    const target = next !== undefined && NEXT_PATH.test(next) ? next : '/';
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(24).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const { authorizationUrl } = await this.options.sessions.startBrowserLogin(
      { redirectUri: this.callbackUrl, codeChallenge: challenge, state },
      this.callbackUrl,
    );
    // Lax, not Strict: the browser comes back from the identity provider's site, and must bring this cookie.
    reply.header(
      'set-cookie',
      serializeCookie(LOGIN_COOKIE, `${state}.${verifier}.${Buffer.from(target).toString('base64url')}`, {
        path: LOGIN_COOKIE_PATH,
        maxAgeSeconds: LOGIN_COOKIE_SECONDS,
        sameSite: 'Lax',
      }),
    );
    return reply.header('cache-control', 'no-store').redirect(authorizationUrl, 302);
  }

  /**
   * `GET /api/v1/console/callback?code=…&state=…`: kubevisa's login callback sent the browser here with a one-time
   * code; the state must be this browser's own, and the code is traded with the verifier only this browser holds.
   */
  async finishSignIn(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const query = request.query as { code?: string; state?: string };
    const [state, verifier, encodedTarget] = (readCookies(request.headers.cookie).get(LOGIN_COOKIE) ?? '').split('.');
    reply.header(
      'set-cookie',
      serializeCookie(LOGIN_COOKIE, '', { path: LOGIN_COOKIE_PATH, maxAgeSeconds: 0, sameSite: 'Lax' }),
    );
    if (!state || !verifier || !query.state || !constantTimeEqual(query.state, state)) {
      throw new Unauthenticated(
        'this sign-in was not started in this browser or took longer than 10 minutes: sign in again',
      );
    }
    if (!query.code) throw new Unauthenticated('the sign-in came back without a code: sign in again');
    const answer = await this.options.sessions.exchangeBrowserCode(query.code, verifier);
    this.tokens.set(hash(answer.sessionSecret), {
      accessToken: answer.accessToken,
      expiresAt: answer.accessTokenExpiresAt,
    });
    const target = Buffer.from(encodedTarget ?? '', 'base64url').toString('utf8');
    reply.header('set-cookie', [
      serializeCookie(LOGIN_COOKIE, '', { path: LOGIN_COOKIE_PATH, maxAgeSeconds: 0, sameSite: 'Lax' }),
      serializeCookie(SESSION_COOKIE, answer.sessionSecret, {
        path: SESSION_COOKIE_PATH,
        maxAgeSeconds: Math.max(0, Math.floor((answer.sessionExpiresAt - this.now()) / 1000)),
        sameSite: 'Strict',
      }),
    ]);
    return reply.header('cache-control', 'no-store').redirect(NEXT_PATH.test(target) ? target : '/', 302);
  }

  /** Forgets the session's cached token and tells the browser to drop the cookie (the session itself ends elsewhere). */
  signOut(request: FastifyRequest, reply: FastifyReply): void {
    const secret = readCookies(request.headers.cookie).get(SESSION_COOKIE);
    if (secret) this.tokens.delete(hash(secret));
    reply.header(
      'set-cookie',
      serializeCookie(SESSION_COOKIE, '', { path: SESSION_COOKIE_PATH, maxAgeSeconds: 0, sameSite: 'Strict' }),
    );
  }
}

function hash(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}
