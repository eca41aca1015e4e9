/**
 * Ory Hydra for the login tests: an OpenID-certified provider nobody here wrote, built from Go modules by
 * scripts/hydra-binary.sh, run on loopback ports with its state in memory (`DSN=memory`, SQLite), with the small
 * login and consent app every Hydra deployment needs, here in test code.
 *
 * Hydra has no user database and no login page of its own: it redirects the browser to the login app with a
 * `login_challenge`, and the app tells Hydra through the admin API whom it authenticated (accept) or that it
 * refused (reject); then the same for consent, where the app also sets the ID token's claims (email,
 * email_verified, name, groups). `browserLogin` plays the browser (cookies, redirects, the login form) up to the
 * redirect to the relying party's callback.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePorts } from '../../src/dev/cluster/control-plane.ts';
import { repoRoot } from './kubevisa-env.ts';

export interface HydraAccount {
  subject: string;
  email: string;
  password: string;
  name: string;
  groups: string[];
}

export interface Hydra {
  /** The issuer (`urls.self.issuer`), also the public URL. */
  issuer: string;
  adminUrl: string;
  /** Calls Hydra's admin API; throws unless the answer is 2xx. */
  admin(method: string, path: string, body?: unknown): Promise<unknown>;
  /** Registers an OAuth 2.0 client (POST /admin/clients) and returns its id and secret. */
  createClient(client: Record<string, unknown>): Promise<{ clientId: string; clientSecret: string }>;
  /**
   * Plays the browser from `authorizationUrl`: Hydra, the login form (this account and password), consent; returns
   * the URL Hydra finally redirects to (the relying party's callback, with `code` or `error`).
   */
  browserLogin(authorizationUrl: string, credentials: { email: string; password: string }): Promise<URL>;
  /** Revokes every consent of `subject` (and with it every token issued under it), as an admin would. */
  revokeConsent(subject: string): Promise<void>;
  /** What Hydra printed (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** The binary setup.sh built (KUBEVISA_HYDRA_BIN), or the cached one; a missing binary fails the test. */
export function hydraBinary(): string {
  if (process.env.KUBEVISA_HYDRA_BIN) return process.env.KUBEVISA_HYDRA_BIN;
  const check = spawnSync(join(repoRoot, 'scripts', 'hydra-binary.sh'), ['--check'], { encoding: 'utf8' });
  const path = check.stdout.trim().split('\n').at(-1);
  if (check.status !== 0 || !path) {
    throw new Error(
      `Ory Hydra is not built: ${check.stderr.trim()}. Run scripts/setup.sh (or scripts/hydra-binary.sh) first.`,
    );
  }
  return path;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => resolve(Buffer.concat(chunks).toString()));
    request.on('error', reject);
  });
}

export async function startHydra(options: {
  accounts: HydraAccount[];
  /** Access token lifetime (Hydra's `ttl.access_token`), e.g. `3s`: how soon kubevisa must refresh. */
  accessTokenTtl?: string;
}): Promise<Hydra> {
  const [publicPort, adminPort] = await freePorts(2);
  const issuer = `http://127.0.0.1:${publicPort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  async function admin(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`${adminUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`Hydra admin ${method} ${path}: HTTP ${response.status} ${text}`);
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  }
  const redirectTo = (answer: unknown) => (answer as { redirect_to: string }).redirect_to;

  // The login and consent app.
  const app = createServer((request: IncomingMessage, response: ServerResponse) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://app.invalid');
      const send302 = (location: string) => response.writeHead(302, { location }).end();
      if (url.pathname === '/login' && request.method === 'GET') {
        const challenge = url.searchParams.get('login_challenge') ?? '';
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        response.end(
          `<!doctype html><form method="post" action="/login"><input type="hidden" name="login_challenge" value="${challenge}"><input name="email"><input name="password" type="password"><button>Log in</button></form>`,
        );
        return;
      }
      if (url.pathname === '/login' && request.method === 'POST') {
        const form = new URLSearchParams(await readBody(request));
        const challenge = encodeURIComponent(form.get('login_challenge') ?? '');
        const account = options.accounts.find(
          (a) => a.email === form.get('email') && a.password === form.get('password'),
        );
        const answer = account
          ? await admin('PUT', `/admin/oauth2/auth/requests/login/accept?login_challenge=${challenge}`, {
              subject: account.subject,
              remember: false,
            })
          : await admin('PUT', `/admin/oauth2/auth/requests/login/reject?login_challenge=${challenge}`, {
              error: 'access_denied',
              error_description: 'The email address or the password is wrong.',
            });
        send302(redirectTo(answer));
        return;
      }
      if (url.pathname === '/consent' && request.method === 'GET') {
        const challenge = encodeURIComponent(url.searchParams.get('consent_challenge') ?? '');
        const consent = (await admin('GET', `/admin/oauth2/auth/requests/consent?consent_challenge=${challenge}`)) as {
          subject: string;
          requested_scope: string[];
          requested_access_token_audience: string[];
        };
        const account = options.accounts.find((a) => a.subject === consent.subject);
        if (!account) throw new Error(`no account ${consent.subject}`);
        const answer = await admin('PUT', `/admin/oauth2/auth/requests/consent/accept?consent_challenge=${challenge}`, {
          grant_scope: consent.requested_scope,
          grant_access_token_audience: consent.requested_access_token_audience,
          remember: false,
          session: {
            id_token: { email: account.email, email_verified: true, name: account.name, groups: account.groups },
          },
        });
        send302(redirectTo(answer));
        return;
      }
      response.writeHead(404).end();
    })().catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end((error as Error).message);
    });
  });
  await new Promise<void>((resolve, reject) => {
    app.once('error', reject);
    app.listen(0, '127.0.0.1', () => resolve());
  });
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;

  let output = '';
  const child: ChildProcess = spawn(hydraBinary(), ['serve', 'all', '--dev', '--sqa-opt-out'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      DSN: 'memory',
      URLS_SELF_ISSUER: issuer,
      URLS_LOGIN: `${appUrl}/login`,
      URLS_CONSENT: `${appUrl}/consent`,
      SERVE_PUBLIC_HOST: '127.0.0.1',
      SERVE_PUBLIC_PORT: String(publicPort),
      SERVE_ADMIN_HOST: '127.0.0.1',
      SERVE_ADMIN_PORT: String(adminPort),
      SECRETS_SYSTEM: randomBytes(24).toString('base64url'),
      // Every authorization code flow must carry PKCE: a relying party without it is refused.
      OAUTH2_PKCE_ENFORCED: 'true',
      SQA_OPT_OUT: 'true',
      LOG_LEVEL: 'warn',
      ...(options.accessTokenTtl ? { TTL_ACCESS_TOKEN: options.accessTokenTtl } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => {
      app.close(() => resolve());
      app.closeAllConnections();
    });
  };

  // Ready when the admin API says so (migrations of the in-memory database run first) and the public JWKS answers.
  // The first JWKS request makes Hydra generate its ID token key (RSA 4096): on a loaded machine that takes many
  // seconds, and a request given up early makes Hydra start over, so that one waits as long as the deadline allows.
  const deadline = Date.now() + 180_000;
  const remaining = () => Math.max(1000, deadline - Date.now());
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`Hydra exited during start-up: ${output}`);
    }
    const ok = (url: string, timeoutMs: number) =>
      fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).then(
        (r) => r.ok,
        () => false,
      );
    if ((await ok(`${adminUrl}/health/ready`, 2000)) && (await ok(`${issuer}/.well-known/jwks.json`, remaining()))) {
      break;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Hydra did not become ready in 180 s: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  return {
    issuer,
    adminUrl,
    admin,
    async createClient(client) {
      const created = (await admin('POST', '/admin/clients', client)) as { client_id: string; client_secret: string };
      return { clientId: created.client_id, clientSecret: created.client_secret };
    },
    async browserLogin(authorizationUrl, credentials) {
      const jar = new Map<string, string>(); // cookies ignore ports: one jar for 127.0.0.1 is a browser's view
      const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const remember = (response: Response) => {
        for (const line of response.headers.getSetCookie()) {
          const [pair] = line.split(';');
          const at = pair!.indexOf('=');
          if (at > 0) jar.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
        }
      };
      let url = new URL(authorizationUrl);
      for (let hop = 0; hop < 20; hop++) {
        let response: Response;
        if (url.origin === appUrl && url.pathname === '/login') {
          // The login page: fill in and submit its form.
          const page = await fetch(url, { headers: { cookie: cookieHeader() }, redirect: 'manual' });
          remember(page);
          response = await fetch(`${appUrl}/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookieHeader() },
            body: new URLSearchParams({
              login_challenge: url.searchParams.get('login_challenge') ?? '',
              email: credentials.email,
              password: credentials.password,
            }).toString(),
            redirect: 'manual',
          });
        } else {
          response = await fetch(url, { headers: { cookie: cookieHeader() }, redirect: 'manual' });
        }
        remember(response);
        const location = response.headers.get('location');
        if (response.status < 300 || response.status >= 400 || location === null) {
          throw new Error(
            `the browser stopped at ${url.origin}${url.pathname}: HTTP ${response.status} ${await response.text()}`,
          );
        }
        const next = new URL(location, url);
        // Hydra, the login app and nothing else: the first redirect elsewhere is the relying party's callback.
        if (next.origin !== issuer && next.origin !== appUrl) return next;
        url = next;
      }
      throw new Error('more than 20 redirects between Hydra and the login app');
    },
    async revokeConsent(subject) {
      await admin('DELETE', `/admin/oauth2/auth/sessions/consent?subject=${encodeURIComponent(subject)}&all=true`);
    },
    output: () => output,
    stop,
  };
}
