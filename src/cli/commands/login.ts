/**
 * `kubevisa login`: gets a session from the kubevisa server, which sends the person to the company's
 * identity provider.
 *
 * - Device flow (`--device`, default without a display): the server hands out a user code; the person
 *   opens the verification URL on any device; the CLI polls until the login completes or the code expires.
 * - Browser flow (`--browser`, default with DISPLAY or WAYLAND_DISPLAY): authorization code with PKCE (S256)
 *   and a loopback redirect to 127.0.0.1 on a port chosen by the system (RFC 8252 §7.3). The state value
 *   ties the redirect to this login; the code verifier never leaves this process until the exchange.
 *
 * The session secret goes to session.json (0600); the server URL and CA file to config.json.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { access, constants } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { ApiClient, normalizeServerUrl, type ApiResponse } from '../api-client.ts';
import type { BrowserLoginJson, DeviceLoginJson, SessionJson } from '../api-types.ts';
import { configDir, readConfig, removeCredentials, writeConfig, writeSession } from '../config.ts';
import { ApiError, LoginFailed, UnexpectedResponse } from '../errors.ts';
import { UsageError, type CommandRun, type Io } from '../framework.ts';
import { emit, positionalOrOption, optionalString, outputFormat } from '../options.ts';
import { coarseDuration, personLine, relativeTime } from '../present.ts';

/** Longest wait for a device login, whatever the server's code expiry says (milliseconds). */
const MAX_DEVICE_WAIT_MS = 15 * 60_000;
/** Longest wait for the browser to come back to the loopback listener (milliseconds). */
const BROWSER_WAIT_MS = 5 * 60_000;
/** RFC 8628 §3.5: on `slow_down` the polling interval grows by 5 seconds. */
const SLOW_DOWN_STEP_MS = 5_000;

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);

  if (values.browser === true && values.device === true) {
    throw new UsageError('choose one of --browser and --device, not both');
  }
  const display = Boolean(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);
  const flow = values.device === true ? 'device' : values.browser === true ? 'browser' : display ? 'browser' : 'device';

  const dir = configDir();
  const config = await readConfig(dir);
  const serverText = positionalOrOption(values, positionals, 'server', 'login') ?? config.server;
  if (serverText === undefined) {
    throw new UsageError(
      "missing --server URL: the kubevisa server to log in to, e.g. 'kubevisa login --server https://kubevisa.example.com' (remembered afterwards)",
    );
  }
  const server = normalizeServerUrl(serverText);
  const caOption = optionalString(values, 'ca-file');
  const configuredServer = config.server === undefined ? undefined : normalizeServerUrl(config.server);
  const caFile = caOption !== undefined ? resolve(caOption) : configuredServer === server ? config.caFile : undefined;
  const client = new ApiClient({ server, configDir: dir, ...(caFile !== undefined ? { caFile } : {}) });

  const session = checkSession(
    flow === 'device' ? await deviceLogin(client, io) : await browserLogin(client, io),
    server,
  );

  // A new login may be another person: tokens cached for the previous one must not be handed to kubectl.
  await removeCredentials(dir);
  await writeSession(dir, {
    server,
    sessionSecret: session.sessionSecret,
    sessionExpiresAt: session.sessionExpiresAt,
    person: session.person,
    accessToken: session.accessToken,
    accessTokenExpiresAt: session.accessTokenExpiresAt,
  });
  await writeConfig(dir, { server, ...(caFile !== undefined ? { caFile } : {}) });

  const now = Date.now();
  await emit(
    io,
    format,
    { server, person: session.person, sessionExpiresAt: session.sessionExpiresAt },
    `Logged in to ${server} as ${personLine(session.person)}.\nThe session lasts until ${session.sessionExpiresAt} (${relativeTime(session.sessionExpiresAt, now)}).`,
  );
};

async function deviceLogin(client: ApiClient, io: Io): Promise<unknown> {
  const start = (await client.call<DeviceLoginJson>('POST', '/api/v1/login/device', { auth: false, body: {} })).body;
  if (
    typeof start?.loginId !== 'string' ||
    typeof start.userCode !== 'string' ||
    typeof start.verificationUri !== 'string'
  ) {
    throw new UnexpectedResponse(
      `the server at ${client.server} answered POST /api/v1/login/device without loginId, userCode and verificationUri; is it a kubevisa server of the same version as this CLI?`,
    );
  }
  const now = Date.now();
  const expiresAt = Date.parse(start.expiresAt);
  const deadline = Math.min(Number.isFinite(expiresAt) ? expiresAt : Infinity, now + MAX_DEVICE_WAIT_MS);
  let intervalMs = Math.max(1, Number(start.intervalSeconds) || 5) * 1000;
  io.err(
    [
      'To log in, open this URL in a browser (on any device):',
      `  ${start.verificationUriComplete || start.verificationUri}`,
      `and check that it shows the code ${start.userCode}${start.verificationUriComplete ? '' : ' (enter it there)'}.`,
      `Waiting for you to finish (up to ${coarseDuration((deadline - now) / 1000)}) ...`,
      '',
    ].join('\n'),
  );
  const pollPath = `/api/v1/login/device/${encodeURIComponent(start.loginId)}/poll`;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new LoginFailed(
        `the code ${start.userCode} expired before the login was completed. Run 'kubevisa login --device' again and finish in the browser within the time shown.`,
      );
    }
    await sleep(Math.min(intervalMs, remaining));
    let answer: ApiResponse<unknown>;
    try {
      answer = await client.call<unknown>('POST', pollPath, { auth: false, body: {} });
    } catch (error) {
      // RFC 8628's slow_down: the server wants fewer polls; anything else ends the login.
      if (error instanceof ApiError && (error.status === 429 || error.code === 'ERR_SLOW_DOWN')) {
        intervalMs += SLOW_DOWN_STEP_MS;
        continue;
      }
      throw error;
    }
    if (answer.status === 202) continue;
    return answer.body;
  }
}

async function browserLogin(client: ApiClient, io: Io): Promise<unknown> {
  const codeVerifier = randomBytes(32).toString('base64url');
  const codeChallenge = createHash('sha256').update(codeVerifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');

  const listener = createServer();
  await new Promise<void>((resolveListen, rejectListen) => {
    listener.once('error', rejectListen);
    listener.listen(0, '127.0.0.1', () => resolveListen());
  });
  try {
    const { port } = listener.address() as AddressInfo;
    const redirectUri = `http://127.0.0.1:${port}/callback`;
    const callback = waitForCallback(listener, state);
    // If the login fails before the browser comes back, the pending wait must not become an unhandled rejection.
    callback.catch(() => undefined);

    const { authorizationUrl } = (
      await client.call<BrowserLoginJson>('POST', '/api/v1/login/browser', {
        auth: false,
        body: { redirectUri, codeChallenge, state },
      })
    ).body;
    if (typeof authorizationUrl !== 'string' || !/^https?:\/\//.test(authorizationUrl)) {
      throw new UnexpectedResponse(
        `the server at ${client.server} answered POST /api/v1/login/browser without an http(s) authorizationUrl; is it a kubevisa server of the same version as this CLI?`,
      );
    }
    const opener = await findOpener();
    io.err(
      opener
        ? `Opening your browser to log in. If it does not open, open this URL on this machine:\n  ${authorizationUrl}\n`
        : `Open this URL in a browser on this machine to log in:\n  ${authorizationUrl}\n`,
    );
    if (opener) openUrl(opener, authorizationUrl, io);
    io.err(
      `Waiting for the browser to come back to ${redirectUri} (up to ${coarseDuration(BROWSER_WAIT_MS / 1000)}) ...\n`,
    );

    const code = await callback;
    return (await client.call<unknown>('POST', '/api/v1/login/exchange', { auth: false, body: { code, codeVerifier } }))
      .body;
  } finally {
    listener.closeAllConnections();
    listener.close();
  }
}

/** Resolves with the authorization code from the first request to /callback, or rejects with why not. */
function waitForCallback(listener: ReturnType<typeof createServer>, state: string): Promise<string> {
  return new Promise<string>((resolveCode, rejectCode) => {
    const timer = setTimeout(() => {
      rejectCode(
        new LoginFailed(
          `the browser did not come back within ${coarseDuration(BROWSER_WAIT_MS / 1000)}. Run 'kubevisa login' again, or 'kubevisa login --device' to log in with a code.`,
        ),
      );
    }, BROWSER_WAIT_MS);
    // The listening socket keeps the process alive while it waits; once the login ends another way and the
    // listener is closed, this timer must not hold the process open for minutes.
    timer.unref();
    listener.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const url = new URL(request.url ?? '/', 'http://127.0.0.1');
      if (request.method !== 'GET' || url.pathname !== '/callback') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found.\n');
        return;
      }
      clearTimeout(timer);
      const error = url.searchParams.get('error');
      const code = url.searchParams.get('code');
      if (!sameSecret(url.searchParams.get('state') ?? '', state)) {
        page(response, 400, 'This answer does not belong to the login that is waiting. Run kubevisa login again.');
        rejectCode(
          new LoginFailed(
            "the browser came back with a state that does not match this login (an old tab, or a redirect someone else started); nothing was saved. Run 'kubevisa login' again.",
          ),
        );
      } else if (error !== null) {
        const description = url.searchParams.get('error_description');
        page(response, 400, `The login was refused: ${error}${description ? ` (${description})` : ''}.`);
        rejectCode(
          new LoginFailed(`the identity provider refused the login: ${error}${description ? ` (${description})` : ''}`),
        );
      } else if (!code) {
        page(response, 400, 'The answer carries no authorization code. Run kubevisa login again.');
        rejectCode(new LoginFailed("the browser came back without an authorization code; run 'kubevisa login' again"));
      } else {
        page(response, 200, 'You are logged in to kubevisa. You can close this tab and go back to the terminal.');
        resolveCode(code);
      }
    });
  });
}

function page(response: ServerResponse, status: number, text: string): void {
  const escaped = text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  response
    .writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    .end(`<!doctype html><title>kubevisa login</title><p>${escaped}</p>\n`);
}

/** Compares the state in constant time: it is a secret that binds the redirect to this process. */
function sameSecret(a: string, b: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** The command that opens a URL in the desktop's browser: `xdg-open` on PATH (`open` on macOS), if any. */
async function findOpener(): Promise<string | undefined> {
  const name = process.platform === 'darwin' ? 'open' : 'xdg-open';
  for (const folder of (process.env.PATH ?? '').split(delimiter)) {
    if (folder === '') continue;
    const candidate = join(folder, name);
    const executable = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (executable) return candidate;
  }
  return undefined;
}

function openUrl(opener: string, url: string, io: Io): void {
  const child = spawn(opener, [url], { detached: true, stdio: 'ignore' });
  child.on('error', (error) => io.err(`Could not start ${opener} (${error.message}); open the URL above yourself.\n`));
  child.unref();
}

/** Checks the shape of a *session* answer before anything is written to disk. */
function checkSession(answer: unknown, server: string): SessionJson {
  const session = answer as Partial<SessionJson> | undefined;
  const strings = ['sessionSecret', 'accessToken', 'accessTokenExpiresAt', 'sessionExpiresAt'] as const;
  const missing: string[] = strings.filter((field) => typeof session?.[field] !== 'string' || session[field] === '');
  if (typeof session?.person?.email !== 'string') missing.push('person');
  if (missing.length > 0) {
    throw new UnexpectedResponse(
      `the server at ${server} completed the login without ${missing.join(', ')} in its session answer; is it a kubevisa server of the same version as this CLI?`,
    );
  }
  return session as SessionJson;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
