/**
 * A real OpenID Provider (the certified `oidc-provider`) run in-process on 127.0.0.1, for tests and the demo.
 * Nothing here is meant for production: accounts and passwords are plain values in memory, consent is granted
 * automatically, and every token, session and grant disappears when the process ends.
 *
 * What it offers, so kubevisa's relying party is tested against the real protocol:
 * - authorization code flow with PKCE (required for every client), and the device flow (RFC 8628);
 * - ID tokens carrying `email`, `email_verified`, `name` and `groups` (scopes `email`, `profile`, `groups`);
 * - refresh tokens for every client allowed the refresh_token grant, without `offline_access` consent;
 * - a login page that works with a plain HTML form POST of `login` and `password` (no JavaScript), so
 *   {@link completeLoginWithHttp} can drive a whole login with `fetch` and a cookie jar;
 * - {@link DevIdp.disableAccount}: the account is deprovisioned, so its refresh tokens and new logins fail.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Provider } from 'oidc-provider';
import type {
  Account,
  Adapter,
  AdapterPayload,
  ClientMetadata,
  Configuration,
  ErrorOut,
  Interaction,
  ProviderContext,
} from 'oidc-provider';

import { KubevisaError, Unauthenticated } from '../domain/errors.ts';
import { constantTimeEqual } from '../auth/session-secrets.ts';
import { ProtoSafeIncomingMessage } from '../server/safe-incoming.ts';

export interface DevIdpAccount {
  /** Subject (`sub`): never changes for the account. */
  sub: string;
  email: string;
  /**
   * `email_verified` claim. Default true; `'absent'` leaves the claim out, as some IdPs do; another string is sent
   * as it is (some IdPs send "true" / "false" as strings).
   */
  emailVerified?: boolean | 'absent' | (string & {});
  /** `name` claim. */
  name: string;
  /** Password for the login form (a test value: compared in constant time, stored in plain memory). */
  password: string;
  /** `groups` claim. */
  groups: string[];
}

export interface DevIdpClient {
  clientId: string;
  /** Confidential client (client_secret_basic) when set; public client (PKCE only) otherwise. */
  clientSecret?: string;
  /** Where the code flow may return to; empty for a device-flow-only client. */
  redirectUris: string[];
}

export interface DevIdpOptions {
  /** TCP port on 127.0.0.1. Default 0: any free port. */
  port?: number;
  accounts: DevIdpAccount[];
  clients: DevIdpClient[];
  /**
   * Put the profile claims (email, name, groups) into the ID token. Default true. With false the ID token
   * holds only `sub` and the relying party has to ask the userinfo endpoint, as with some real IdPs.
   */
  claimsInIdToken?: boolean;
}

export interface DevIdp {
  /** Issuer identifier, `http://127.0.0.1:<port>`. */
  issuer: string;
  /** Base URL to reach the provider (the same as the issuer). */
  url: string;
  /**
   * Deprovisions an account, as a company IdP does when someone leaves: it can no longer log in, its
   * sessions at the IdP end, and every refresh_token grant for it fails with invalid_grant.
   */
  disableAccount(sub: string): void;
  /**
   * Makes the next request to the userinfo endpoint fail as a company IdP's can: `'outage'` drops the connection
   * without an answer (a crash or a timeout at the IdP); `'revoke-token'` revokes the access token it presents first,
   * so the provider itself answers 401 invalid_token (the grant was revoked meanwhile).
   */
  failNextUserinfo(how: 'outage' | 'revoke-token'): void;
  /** Stops listening and closes open connections. */
  stop(): Promise<void>;
}

/** The dev IdP did something a login script cannot handle (an error page, an unexpected form). */
export class DevIdpError extends KubevisaError {
  static override code = 'ERR_DEV_IDP';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 502 });
  }
}

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** Lifetimes in seconds: short enough for a dev loop, long enough for a slow test machine. */
const TTL_SECONDS = {
  AccessToken: 600,
  AuthorizationCode: 60,
  DeviceCode: 600,
  Grant: 86_400,
  IdToken: 600,
  Interaction: 600,
  RefreshToken: 86_400,
  Session: 86_400,
};
/** Largest form body the login page reads, in bytes. */
const MAX_FORM_BYTES = 16 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Storage: everything in one Map per provider, with the secondary indexes oidc-provider's adapter API needs.

interface StoredEntry {
  payload: AdapterPayload;
  /** Epoch milliseconds; undefined for entries without expiry. */
  expiresAt: number | undefined;
}

class MemoryStore {
  readonly entries = new Map<string, StoredEntry>();
  readonly sessionIdByUid = new Map<string, string>();
  readonly deviceCodeIdByUserCode = new Map<string, string>();
  readonly keysByGrantId = new Map<string, Set<string>>();

  get(key: string): AdapterPayload | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(key: string, payload: AdapterPayload, expiresInSeconds: number | undefined): void {
    this.delete(key);
    const expiresAt = typeof expiresInSeconds === 'number' ? Date.now() + expiresInSeconds * 1000 : undefined;
    this.entries.set(key, { payload, expiresAt });
    const id = key.slice(key.indexOf(':') + 1);
    if (key.startsWith('Session:') && typeof payload.uid === 'string') this.sessionIdByUid.set(payload.uid, id);
    if (typeof payload.userCode === 'string') this.deviceCodeIdByUserCode.set(payload.userCode, id);
    if (typeof payload.grantId === 'string') {
      const members = this.keysByGrantId.get(payload.grantId) ?? new Set<string>();
      members.add(key);
      this.keysByGrantId.set(payload.grantId, members);
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    const { uid, userCode, grantId } = entry.payload;
    if (typeof uid === 'string') this.sessionIdByUid.delete(uid);
    if (typeof userCode === 'string') this.deviceCodeIdByUserCode.delete(userCode);
    if (typeof grantId === 'string') this.keysByGrantId.get(grantId)?.delete(key);
  }

  deleteByGrantId(grantId: string): void {
    for (const key of this.keysByGrantId.get(grantId) ?? []) this.delete(key);
    this.keysByGrantId.delete(grantId);
  }

  /** Drops every entry of `model` whose payload belongs to `accountId`. */
  deleteByAccount(model: string, accountId: string): void {
    for (const [key, entry] of [...this.entries]) {
      if (key.startsWith(`${model}:`) && entry.payload.accountId === accountId) this.delete(key);
    }
  }
}

function adapterFactory(store: MemoryStore): (modelName: string) => Adapter {
  return (modelName) => {
    const keyOf = (id: string): string => `${modelName}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        store.set(keyOf(id), payload, expiresIn);
      },
      async find(id) {
        return store.get(keyOf(id));
      },
      async findByUid(uid) {
        const id = store.sessionIdByUid.get(uid);
        return id === undefined ? undefined : store.get(keyOf(id));
      },
      async findByUserCode(userCode) {
        const id = store.deviceCodeIdByUserCode.get(userCode);
        return id === undefined ? undefined : store.get(keyOf(id));
      },
      async consume(id) {
        const payload = store.get(keyOf(id));
        if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        store.delete(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        store.deleteByGrantId(grantId);
      },
    };
  };
}

// ---------------------------------------------------------------------------------------------------------
// Pages. Plain HTML without scripts; `data-kubevisa-*` attributes let completeLoginWithHttp read them.

function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)} · kubevisa dev IdP</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
<p><small>kubevisa development identity provider: not for production use.</small></p>
</body>
</html>`;
}

function loginPage(uid: string, clientId: string, error: string | undefined): string {
  const base = `/interaction/${encodeURIComponent(uid)}`;
  return page(
    'Sign in',
    `<p>to continue to <strong>${escapeHtml(clientId)}</strong></p>
${error === undefined ? '' : `<p data-kubevisa-login-error role="alert">${escapeHtml(error)}</p>`}
<form id="kubevisa-login" method="post" action="${base}/login">
  <p><label>Login (subject or email) <input type="text" name="login" autocomplete="username" required autofocus></label></p>
  <p><label>Password <input type="password" name="password" autocomplete="current-password" required></label></p>
  <p><button type="submit">Sign in</button></p>
</form>
<form id="kubevisa-abort" method="post" action="${base}/abort"><button type="submit">Cancel</button></form>`,
  );
}

function errorPage(title: string, error: string, description: string | undefined): string {
  const text = description === undefined || description === '' ? error : `${error}: ${description}`;
  return page(title, `<pre data-kubevisa-error>${escapeHtml(text)}</pre>`);
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(html),
  });
  res.end(html);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const contentType = req.headers['content-type'] ?? '';
  if (!contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new DevIdpError('the login form must be posted as application/x-www-form-urlencoded');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new DevIdpError(`the form body exceeds ${MAX_FORM_BYTES} bytes`);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------------------------------------------------

/** Starts the dev IdP on 127.0.0.1 and resolves once it accepts connections. */
export async function startDevIdp(options: DevIdpOptions): Promise<DevIdp> {
  const accounts = new Map<string, DevIdpAccount>();
  for (const account of options.accounts) {
    if (accounts.has(account.sub)) throw new DevIdpError(`account ${account.sub} is listed twice`);
    accounts.set(account.sub, { ...account, groups: [...account.groups] });
  }
  const disabled = new Set<string>();
  const store = new MemoryStore();
  const clientIds = new Set(options.clients.map((client) => client.clientId));

  // The demo runs with --disable-proto=throw too: a `__proto__` header must not stop the identity provider.
  const server: Server = createServer({ IncomingMessage: ProtoSafeIncomingMessage });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  function findActiveAccount(sub: string): DevIdpAccount | undefined {
    return disabled.has(sub) ? undefined : accounts.get(sub);
  }

  function accountForLogin(login: string): DevIdpAccount | undefined {
    const wanted = login.trim().toLowerCase();
    for (const account of accounts.values()) {
      if (account.sub === login.trim() || account.email.toLowerCase() === wanted) return account;
    }
    return undefined;
  }

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingJwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    use: 'sig',
    alg: 'RS256',
  };

  const clients: ClientMetadata[] = options.clients.map((client) => {
    const codeFlow = client.redirectUris.length > 0;
    return {
      client_id: client.clientId,
      ...(client.clientSecret === undefined ? {} : { client_secret: client.clientSecret }),
      redirect_uris: [...client.redirectUris],
      response_types: codeFlow ? ['code'] : [],
      grant_types: [...(codeFlow ? ['authorization_code'] : []), 'refresh_token', DEVICE_CODE_GRANT],
      token_endpoint_auth_method: client.clientSecret === undefined ? 'none' : 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
      application_type: 'web',
    };
  });

  const configuration: Configuration = {
    adapter: adapterFactory(store),
    clients,
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // By default oidc-provider keeps scope-derived claims out of the ID token whenever an access token is
    // issued (they are only at userinfo); most company IdPs put email and groups in the ID token.
    conformIdTokenClaims: options.claimsInIdToken === false,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      deviceFlow: {
        enabled: true,
        async userCodeInputSource(ctx, form, _out, error) {
          ctx.type = 'html';
          if (error?.name === 'AbortedError') {
            ctx.body = page(
              'Sign-in cancelled',
              '<p data-kubevisa-page="device-aborted">The device login was cancelled.</p>',
            );
            return;
          }
          const message =
            error === undefined ? 'Enter the code shown on your device.' : `That did not work: ${error.message}.`;
          ctx.body = page(
            'Device sign-in',
            `<p${error === undefined ? '' : ' data-kubevisa-device-error'}>${escapeHtml(message)}</p>
${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`,
          );
        },
        async userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
          ctx.type = 'html';
          ctx.body = page(
            'Confirm device',
            `<p><strong>${escapeHtml(client.clientName ?? client.clientId)}</strong> asks to sign in on a device showing
the code <code>${escapeHtml(userCode)}</code>. Continue only if your device shows this code.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`,
          );
        },
        async successSource(ctx) {
          ctx.type = 'html';
          ctx.body = page(
            'Signed in',
            '<p data-kubevisa-page="device-success">You can close this page and return to your device.</p>',
          );
        },
      },
    },
    async findAccount(_ctx, sub): Promise<Account | undefined> {
      // Called for every login, code exchange and refresh: a disabled account fails all of them
      // ("referenced account not found" → invalid_grant at the token endpoint).
      const account = findActiveAccount(sub);
      if (account === undefined) return undefined;
      return {
        accountId: account.sub,
        async claims() {
          return {
            sub: account.sub,
            email: account.email,
            ...(account.emailVerified === 'absent' ? {} : { email_verified: account.emailVerified ?? true }),
            name: account.name,
            groups: [...account.groups],
          };
        },
      };
    },
    interactions: {
      async url(_ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    // oidc-provider only keeps offline_access when the authorization request carries prompt=consent (OIDC
    // Core §11); the kubevisa RP does not force a consent screen, so refresh tokens are issued regardless.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    // Without offline_access the default ties tokens to the browser session; kubevisa's session outlives it.
    async expiresWithSession() {
      return false;
    },
    pkce: { required: () => true },
    async renderError(ctx: ProviderContext, out: ErrorOut) {
      ctx.type = 'html';
      ctx.body = errorPage('Sign-in failed', out.error, out.error_description);
    },
    ttl: TTL_SECONDS,
  };

  const provider = new Provider(issuer, configuration);
  const providerListener = provider.callback();
  let userinfoFailure: 'outage' | 'revoke-token' | undefined;

  /** Applies a failure asked for by failNextUserinfo; true when the request was dropped. */
  function failUserinfo(req: IncomingMessage, res: ServerResponse): boolean {
    const how = userinfoFailure;
    userinfoFailure = undefined;
    if (how === 'outage') {
      res.destroy();
      return true;
    }
    const presented = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    // Opaque access tokens are stored under their own value, as oidc-provider revokes them.
    if (presented !== undefined) store.delete(`AccessToken:${presented}`);
    return false;
  }

  async function autoConsent(req: IncomingMessage, res: ServerResponse, interaction: Interaction): Promise<void> {
    const clientId = String(interaction.params.client_id ?? '');
    const accountId = interaction.session?.accountId;
    if (!clientIds.has(clientId) || accountId === undefined) {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'consent is only automatic for registered clients' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const grant =
      (interaction.grantId === undefined ? undefined : await provider.Grant.find(interaction.grantId)) ??
      new provider.Grant({ accountId, clientId });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = interaction.prompt.details;
    if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {}))
      grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  async function handleInteraction(
    req: IncomingMessage,
    res: ServerResponse,
    uid: string,
    action: string | undefined,
  ): Promise<void> {
    const interaction = await provider.interactionDetails(req, res);
    if (interaction.uid !== uid) {
      sendHtml(
        res,
        400,
        errorPage('Sign-in failed', 'invalid_request', 'this sign-in page belongs to another login; start again'),
      );
      return;
    }
    const clientId = String(interaction.params.client_id ?? '');
    if (action === undefined && req.method === 'GET') {
      if (interaction.prompt.name === 'login') {
        sendHtml(res, 200, loginPage(uid, clientId, undefined));
      } else if (interaction.prompt.name === 'consent') {
        await autoConsent(req, res, interaction);
      } else {
        sendHtml(
          res,
          501,
          errorPage('Sign-in failed', 'interaction_required', `prompt ${interaction.prompt.name} is not supported`),
        );
      }
      return;
    }
    if (req.method !== 'POST') {
      sendHtml(res, 405, errorPage('Sign-in failed', 'invalid_request', 'use the form on the sign-in page'));
      return;
    }
    if (action === 'abort') {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    if (interaction.prompt.name !== 'login') {
      sendHtml(res, 400, errorPage('Sign-in failed', 'invalid_request', 'this login is not waiting for a password'));
      return;
    }
    const form = await readForm(req);
    const account = accountForLogin(form.get('login') ?? '');
    // Compare even when the account is unknown so both cases take about the same time.
    const passwordMatches = constantTimeEqual(
      form.get('password') ?? '',
      account?.password ?? randomBytes(16).toString('hex'),
    );
    if (account === undefined || !passwordMatches || disabled.has(account.sub)) {
      sendHtml(res, 200, loginPage(uid, clientId, 'Invalid login or password.'));
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: account.sub } },
      { mergeWithLastSubmission: false },
    );
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/.exec(path);
    let handled: Promise<unknown>;
    if (match !== null) handled = handleInteraction(req, res, match[1] ?? '', match[2]);
    else if (path === '/me' && userinfoFailure !== undefined && failUserinfo(req, res)) handled = Promise.resolve();
    else handled = providerListener(req, res);
    handled.catch((error: unknown) => {
      // Interaction errors (expired interaction, missing cookie) become an error page; no stack leaves.
      const description = error instanceof Error ? error.message : 'unexpected error';
      if (!res.headersSent) {
        sendHtml(
          res,
          error instanceof KubevisaError ? error.status : 400,
          errorPage('Sign-in failed', 'invalid_request', description),
        );
      } else {
        res.destroy();
      }
    });
  });

  return {
    issuer,
    url: issuer,
    disableAccount(sub: string): void {
      if (!accounts.has(sub)) throw new DevIdpError(`no account ${sub} at the dev IdP`);
      disabled.add(sub);
      // End the IdP sessions too, so a browser that is still signed in cannot get a new code silently.
      store.deleteByAccount('Session', sub);
    },
    failNextUserinfo(how: 'outage' | 'revoke-token'): void {
      userinfoFailure = how;
    },
    async stop(): Promise<void> {
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        server.closeAllConnections();
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Driving a login from a script: fetch, a cookie jar and a tiny form reader for the pages above.

export interface CompleteLoginOptions {
  /** A browser authorization URL, or a device `verification_uri_complete` (or `verification_uri` plus userCode). */
  url: string;
  /** Account subject or email. */
  login: string;
  password: string;
  /** Device user code, needed only when `url` is the bare verification URI. */
  userCode?: string;
  /** Approve (default) or decline: `deny` presses Cancel on the login page or Abort on the device page. */
  decision?: 'approve' | 'deny';
  /** Time limit for each HTTP request, in milliseconds. Default 5000. */
  requestTimeoutMs?: number;
}

export type CompleteLoginResult =
  /** Code flow: the final redirect to the client's redirect URI (with `code` and `state`, or an `error`). */
  { flow: 'code'; location: string } | { flow: 'device'; outcome: 'approved' | 'denied' };

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  /** Epoch milliseconds; undefined for a session cookie. */
  expiresAt: number | undefined;
}

/** A cookie jar for one origin: enough of RFC 6265 (path scoping, expiry, deletion) for the dev IdP. */
class CookieJar {
  readonly #cookies = new Map<string, StoredCookie>();

  store(response: Response, requestUrl: URL): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = header.split(';');
      const separator = pair.indexOf('=');
      if (separator <= 0) continue;
      const cookie: StoredCookie = {
        name: pair.slice(0, separator).trim(),
        value: pair.slice(separator + 1).trim(),
        // RFC 6265 §5.1.4 default-path: the request path up to its last slash.
        path: requestUrl.pathname.slice(0, Math.max(1, requestUrl.pathname.lastIndexOf('/'))),
        expiresAt: undefined,
      };
      for (const attribute of attributes) {
        const [rawName = '', ...rest] = attribute.split('=');
        const name = rawName.trim().toLowerCase();
        const value = rest.join('=').trim();
        if (name === 'path' && value.startsWith('/')) cookie.path = value;
        if (name === 'expires') cookie.expiresAt ??= Date.parse(value);
        if (name === 'max-age') cookie.expiresAt = Date.now() + Number(value) * 1000;
      }
      const key = `${cookie.name};${cookie.path}`;
      if (cookie.expiresAt !== undefined && !(cookie.expiresAt > Date.now())) {
        this.#cookies.delete(key);
      } else {
        this.#cookies.set(key, cookie);
      }
    }
  }

  headerFor(url: URL): string {
    const now = Date.now();
    const matches = [...this.#cookies.values()].filter(
      (cookie) =>
        (cookie.expiresAt === undefined || cookie.expiresAt > now) &&
        (url.pathname === cookie.path ||
          url.pathname.startsWith(cookie.path.endsWith('/') ? cookie.path : `${cookie.path}/`)),
    );
    // Longer paths first, as browsers send them (RFC 6265 §5.4).
    matches.sort((a, b) => b.path.length - a.path.length);
    return matches.map((cookie) => `${cookie.name}=${cookie.value}`).join('; ');
  }
}

interface HtmlForm {
  id: string | undefined;
  action: string | undefined;
  method: string;
  fields: Array<[string, string]>;
}

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_match, entity: string) => {
    const lower = entity.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(Number.parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(Number.parseInt(lower.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[lower] ?? '';
  });
}

function parseAttributes(source: string): Map<string, string> {
  const attributes = new Map<string, string>();
  for (const match of source.matchAll(/([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/g)) {
    const name = (match[1] ?? '').toLowerCase();
    if (!attributes.has(name)) attributes.set(name, decodeEntities(match[2] ?? match[3] ?? match[4] ?? ''));
  }
  return attributes;
}

function parseForms(html: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attributes = parseAttributes(match[1] ?? '');
    const fields: Array<[string, string]> = [];
    for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
      const inputAttributes = parseAttributes(input[1] ?? '');
      const name = inputAttributes.get('name');
      if (name !== undefined) fields.push([name, inputAttributes.get('value') ?? '']);
    }
    forms.push({
      id: attributes.get('id'),
      action: attributes.get('action'),
      method: (attributes.get('method') ?? 'get').toLowerCase(),
      fields,
    });
  }
  return forms;
}

function pageError(html: string): string | undefined {
  const match = /<[^>]+data-kubevisa-(?:error|login-error|device-error)[^>]*>([\s\S]*?)<\//.exec(html);
  return match === null ? undefined : decodeEntities(match[1] ?? '').trim();
}

/**
 * Completes a login at the dev IdP the way a person with a browser without JavaScript would: follows the
 * redirects of `url` with a cookie jar, submits the login form, confirms (or aborts) the device code and
 * grants consent. Only the IdP's own origin is ever contacted; the first redirect that leaves it is the
 * answer of a code flow and is returned without being followed.
 *
 * Throws Unauthenticated when the IdP refuses the login (wrong password, disabled account) and DevIdpError
 * when it shows an error page or anything this script does not recognise.
 */
export async function completeLoginWithHttp(options: CompleteLoginOptions): Promise<CompleteLoginResult> {
  const start = new URL(options.url);
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const deny = options.decision === 'deny';
  const jar = new CookieJar();
  let request: { url: URL; method: 'GET' | 'POST'; form?: URLSearchParams } = { url: start, method: 'GET' };
  let credentialsSent = false;

  for (let step = 0; step < 30; step += 1) {
    if (request.url.origin !== start.origin) {
      throw new DevIdpError(`refusing to send a form to ${request.url.origin}: only ${start.origin} is the IdP`);
    }
    const headers: Record<string, string> = { accept: 'text/html' };
    const cookie = jar.headerFor(request.url);
    if (cookie !== '') headers.cookie = cookie;
    if (request.form !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      body: request.form?.toString(),
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    jar.store(response, request.url);

    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel();
      const target = new URL(location, request.url);
      if (target.origin !== start.origin) return { flow: 'code', location: target.href };
      request = { url: target, method: 'GET' };
      continue;
    }

    const html = await response.text();
    if (html.includes('data-kubevisa-page="device-success"')) return { flow: 'device', outcome: 'approved' };
    if (html.includes('data-kubevisa-page="device-aborted"')) return { flow: 'device', outcome: 'denied' };

    const forms = parseForms(html);
    const byId = (id: string): HtmlForm | undefined => forms.find((form) => form.id === id);
    const submit = (form: HtmlForm, fields: Array<[string, string]>): void => {
      if (form.method !== 'post' || form.action === undefined) {
        throw new DevIdpError(
          `unexpected form on ${request.url.pathname}: only POST forms with an action are followed`,
        );
      }
      request = { url: new URL(form.action, request.url), method: 'POST', form: new URLSearchParams(fields) };
    };

    const loginForm = byId('kubevisa-login');
    const abortForm = byId('kubevisa-abort');
    const confirmForm = byId('op.deviceConfirmForm');
    const inputForm = byId('op.deviceInputForm');
    if (loginForm !== undefined) {
      if (credentialsSent) {
        throw new Unauthenticated(
          `the dev IdP refused the login for ${JSON.stringify(options.login)}: ${pageError(html) ?? 'no reason given'}`,
        );
      }
      if (deny && abortForm !== undefined) {
        submit(abortForm, abortForm.fields);
      } else {
        credentialsSent = true;
        submit(loginForm, [
          ...loginForm.fields.filter(([name]) => name !== 'login' && name !== 'password'),
          ['login', options.login],
          ['password', options.password],
        ]);
      }
    } else if (confirmForm !== undefined) {
      const hidden = confirmForm.fields.filter(([name]) => name !== 'confirm');
      submit(confirmForm, deny ? [...hidden, ['abort', 'yes']] : confirmForm.fields);
    } else if (inputForm !== undefined) {
      if (pageError(html) !== undefined) {
        throw new DevIdpError(`the dev IdP did not accept the device code: ${pageError(html) ?? ''}`);
      }
      if (options.userCode === undefined) {
        throw new DevIdpError(
          'the dev IdP asks for the device user code; pass userCode or the verification_uri_complete',
        );
      }
      submit(inputForm, [
        ...inputForm.fields.filter(([name]) => name !== 'user_code'),
        ['user_code', options.userCode],
      ]);
    } else if (response.ok && forms.length === 1 && forms[0] !== undefined && forms[0].id === undefined) {
      // oidc-provider's form_post page (device verification_uri_complete): a browser submits it by script.
      submit(forms[0], forms[0].fields);
    } else {
      throw new DevIdpError(
        `the dev IdP answered HTTP ${response.status} on ${request.url.pathname}: ${pageError(html) ?? 'an unexpected page'}`,
        {
          details: { status: response.status },
        },
      );
    }
  }
  throw new DevIdpError('the login did not finish within 30 HTTP steps');
}
