/**
 * A small client for the kubevisa REST API (docs/api.md), over node:http / node:https.
 *
 * Why not fetch: the only way to give Node's fetch a private CA per request is an undici `Agent`, and undici
 * is not one of kubevisa's declared dependencies (it is in node_modules only as someone else's dependency,
 * at a different major version from the copy inside Node). node:https takes `ca` directly, loads in a few
 * milliseconds, and Node applies NODE_EXTRA_CA_CERTS to it by itself.
 *
 * Authenticated calls carry `Authorization: Bearer <access token>`. The token is bought with the session
 * secret (`POST /api/v1/sessions/token`), kept in memory for the process and in session.json with its expiry,
 * so consecutive commands reuse it while it stays valid for more than a minute. Tokens are never printed.
 */
import type { AccessTokenJson } from './api-types.ts';
import { configFile, readConfig, readSession, writeSession, type StoredSession } from './config.ts';
import { ApiError, NotLoggedIn, ServerTimeout, ServerUnreachable, UnexpectedResponse } from './errors.ts';
import { UsageError } from './framework.ts';
import type { ClientRequest, IncomingMessage } from 'node:http';

/** Default time for one request, headers and body included, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** A cached token is reused only while it stays valid for longer than this (milliseconds). */
export const MIN_TOKEN_REMAINING_MS = 60_000;
/** Answers larger than this are refused (bytes): nothing in the API is close, so more means a wrong server. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface ApiClientOptions {
  /** Base URL of the kubevisa server as returned by {@link normalizeServerUrl}. */
  server: string;
  /** PEM file of the CA to trust for this server instead of the system's roots (like kubectl's certificate-authority). */
  caFile?: string;
  /** The CLI's state folder (see config.ts). */
  configDir: string;
  /** Time for one request, headers and body included, in milliseconds (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Clock in epoch milliseconds (default Date.now). */
  now?: () => number;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | undefined>;
  /** Send the bearer token (default true). The login and token endpoints take none. */
  auth?: boolean;
}

interface AccessToken {
  token: string;
  expiresAtMs: number;
  /** True when the token came from memory or session.json rather than a fresh exchange. */
  cached: boolean;
}

export class ApiClient {
  readonly server: string;
  /** The CA file trusted for this server, if any (kubeconfig embeds it for kubectl). */
  readonly caFile: string | undefined;
  readonly #options: ApiClientOptions;
  readonly #now: () => number;
  #accessToken: AccessToken | undefined;
  #caPem: Promise<string | undefined> | undefined;

  constructor(options: ApiClientOptions) {
    this.server = options.server;
    this.caFile = options.caFile;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T> {
    return this.call<T>('GET', path, { query }).then((r) => r.body);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, { body: body ?? {} }).then((r) => r.body);
  }

  /**
   * One API call. Answers 2xx with the parsed JSON (undefined for an empty body); throws ApiError for a
   * problem+json answer, and the errors of {@link send} for transport failures.
   */
  async call<T>(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(this.server + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, value);
    }
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    if (options.auth === false) return this.#check<T>(method, path, await this.send(method, url, body));

    let token = await this.accessToken();
    let raw = await this.send(method, url, body, token.token);
    if (raw.status === 401 && token.cached) {
      // The cached token may have been invalidated early (a key rotation, a server restart with a new
      // key): buy a fresh one once before concluding that the session itself is gone.
      this.#accessToken = undefined;
      token = await this.#exchangeSessionSecret(await this.#session());
      raw = await this.send(method, url, body, token.token);
    }
    if (raw.status === 401) {
      const problem = parseProblem(raw);
      throw new NotLoggedIn(
        `the server at ${this.server} no longer accepts your login${problem?.detail ? ` (${problem.detail})` : ''}. Run 'kubevisa login --server ${this.server}' to log in again.`,
      );
    }
    return this.#check<T>(method, path, raw);
  }

  /**
   * An access token valid for more than a minute: from memory, else from session.json, else bought with
   * the session secret (and then saved to session.json for the next command).
   * @throws NotLoggedIn when there is no session for this server or the server refuses it.
   */
  async accessToken(): Promise<AccessToken> {
    const now = this.#now();
    if (this.#accessToken && this.#accessToken.expiresAtMs - now > MIN_TOKEN_REMAINING_MS) return this.#accessToken;
    const session = await this.#session();
    const savedExpiry = session.accessTokenExpiresAt ? Date.parse(session.accessTokenExpiresAt) : Number.NaN;
    if (session.accessToken && savedExpiry - now > MIN_TOKEN_REMAINING_MS) {
      this.#accessToken = { token: session.accessToken, expiresAtMs: savedExpiry, cached: true };
      return this.#accessToken;
    }
    return this.#exchangeSessionSecret(session);
  }

  /** The session for this server, refusing one that belongs to another server or has visibly expired. */
  async #session(): Promise<StoredSession> {
    const session = await readSession(this.#options.configDir);
    if (!session) {
      throw new NotLoggedIn(`you are not logged in to ${this.server}. Run 'kubevisa login --server ${this.server}'.`);
    }
    if (session.server !== this.server) {
      // The secret is only ever sent to the server that issued it.
      throw new NotLoggedIn(
        `you are logged in to ${session.server}, not ${this.server}. Drop --server to use ${session.server}, or run 'kubevisa login --server ${this.server}' (this replaces the current login).`,
      );
    }
    const sessionEnd = Date.parse(session.sessionExpiresAt);
    if (Number.isFinite(sessionEnd) && sessionEnd <= this.#now()) {
      throw new NotLoggedIn(
        `your session at ${this.server} ended at ${session.sessionExpiresAt}. Run 'kubevisa login --server ${this.server}' to log in again.`,
      );
    }
    return session;
  }

  async #exchangeSessionSecret(session: StoredSession): Promise<AccessToken> {
    let answer: AccessTokenJson;
    try {
      answer = (
        await this.call<AccessTokenJson>('POST', '/api/v1/sessions/token', {
          body: { sessionSecret: session.sessionSecret },
          auth: false,
        })
      ).body;
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        throw new NotLoggedIn(
          `the server at ${this.server} refused your session: ${error.message} [${error.code}]. Run 'kubevisa login --server ${this.server}' to log in again.`,
        );
      }
      throw error;
    }
    const expiresAtMs = typeof answer?.expiresAt === 'string' ? Date.parse(answer.expiresAt) : Number.NaN;
    if (typeof answer?.accessToken !== 'string' || answer.accessToken === '' || !Number.isFinite(expiresAtMs)) {
      throw new UnexpectedResponse(
        `the server at ${this.server} answered POST /api/v1/sessions/token without an accessToken and an RFC 3339 expiresAt; is it a kubevisa server of the same version as this CLI?`,
      );
    }
    this.#accessToken = { token: answer.accessToken, expiresAtMs, cached: false };
    await writeSession(this.#options.configDir, {
      ...session,
      accessToken: answer.accessToken,
      accessTokenExpiresAt: answer.expiresAt,
    });
    return this.#accessToken;
  }

  #check<T>(method: string, path: string, raw: RawResponse): ApiResponse<T> {
    if (raw.status >= 200 && raw.status < 300) {
      if (raw.body.length === 0) return { status: raw.status, body: undefined as T };
      if (!isJson(raw.contentType)) {
        throw new UnexpectedResponse(
          `the server at ${this.server} answered ${method} ${path} with ${raw.contentType || 'no content type'} instead of JSON; is ${this.server} a kubevisa server?`,
        );
      }
      return { status: raw.status, body: parseJson(raw, this.server, method, path) as T };
    }
    const problem = parseProblem(raw);
    if (problem) {
      const message = problem.detail || problem.title || `HTTP ${raw.status}`;
      throw new ApiError(message, { status: raw.status, code: problem.code || `ERR_HTTP_${raw.status}`, problem });
    }
    // A body that is not kubevisa's own error (a proxy's error page, say) may name addresses behind the server:
    // it is shown only when debugging.
    const snippet = process.env.KUBEVISA_DEBUG
      ? raw.body.toString('utf8').slice(0, 200).replace(/\s+/g, ' ').trim()
      : '';
    const what =
      raw.status >= 500
        ? `a proxy in front of it may have failed: try again in a minute; if it keeps failing, tell a kubevisa admin`
        : `is ${this.server} a kubevisa server of the same version as this CLI?`;
    throw new UnexpectedResponse(
      `the server at ${this.server} answered ${method} ${path} with HTTP ${raw.status}${snippet ? ` (${snippet})` : ''} and no kubevisa error; ${what}`,
    );
  }

  /**
   * Sends one request and reads the whole answer within the time limit.
   * @throws ServerUnreachable for connection and TLS failures, ServerTimeout past the limit.
   */
  async send(method: string, url: URL, body: string | undefined, bearer?: string): Promise<RawResponse> {
    const ca = await this.#ca();
    const headers: Record<string, string> = {
      accept: 'application/json, application/problem+json',
      'user-agent': 'kubevisa-cli',
    };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    const timeoutMs = this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // agent: false gives each request its own connection that closes afterwards: a CLI makes a handful of
    // calls, and a kept-alive socket would only hold the process open after the command is done.
    const requestOptions = { method, headers, agent: false as const };
    let transport: (onResponse: (response: IncomingMessage) => void) => ClientRequest;
    if (url.protocol === 'https:') {
      const { request } = await import('node:https');
      transport = (onResponse) => request(url, { ...requestOptions, ...(ca ? { ca } : {}) }, onResponse);
    } else {
      const { request } = await import('node:http');
      transport = (onResponse) => request(url, requestOptions, onResponse);
    }

    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: RawResponse | Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const request = transport((response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            request.destroy();
            finish(
              new UnexpectedResponse(
                `the server at ${this.server} sent more than ${MAX_BODY_BYTES} bytes for ${method} ${url.pathname}; is it a kubevisa server?`,
              ),
            );
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () =>
          finish({
            status: response.statusCode ?? 0,
            contentType: String(response.headers['content-type'] ?? ''),
            body: Buffer.concat(chunks),
          }),
        );
        response.on('error', (error: Error) => finish(describeNetworkError(error, this.server)));
      });
      const timer = setTimeout(() => {
        request.destroy();
        finish(
          new ServerTimeout(
            `the server at ${this.server} did not answer ${method} ${url.pathname} within ${timeoutMs / 1000} s. Check that it is running and reachable, or try again.`,
          ),
        );
      }, timeoutMs);
      request.on('error', (error: Error) => finish(describeNetworkError(error, this.server)));
      request.end(body);
    });
  }

  #ca(): Promise<string | undefined> {
    const caFile = this.#options.caFile;
    if (caFile === undefined) return Promise.resolve(undefined);
    this.#caPem ??= import('node:fs/promises').then(({ readFile }) =>
      readFile(caFile, 'utf8').then(
        (pem) => {
          if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
            throw new UsageError(
              `the CA file ${caFile} holds no PEM certificate: pass --ca-file with the PEM file of the CA that signed the kubevisa server's certificate`,
            );
          }
          return pem;
        },
        (error: NodeJS.ErrnoException) => {
          throw new UsageError(
            `cannot read the CA file ${caFile} (${error.code ?? error.message}): pass --ca-file with the PEM file of the CA that signed the kubevisa server's certificate, or fix 'caFile' in config.json`,
          );
        },
      ),
    );
    return this.#caPem;
  }
}

export interface RawResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

interface Problem extends Record<string, unknown> {
  code?: string;
  detail?: string;
  title?: string;
}

/** The problem+json document in an error answer, or undefined when the answer is not one. */
function parseProblem(raw: RawResponse): Problem | undefined {
  if (!isJson(raw.contentType) || raw.body.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.body.toString('utf8'));
  } catch {
    // A JSON content type with a body that does not parse is not a problem document; the caller then
    // reports the status and the start of the body instead.
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const record = parsed as Record<string, unknown>;
  const text = (name: string) => (typeof record[name] === 'string' ? (record[name] as string) : undefined);
  return { ...record, code: text('code'), detail: text('detail'), title: text('title') };
}

function parseJson(raw: RawResponse, server: string, method: string, path: string): unknown {
  try {
    return JSON.parse(raw.body.toString('utf8')) as unknown;
  } catch (error) {
    throw new UnexpectedResponse(
      `the server at ${server} answered ${method} ${path} with JSON that does not parse (${(error as Error).message}); is it a kubevisa server?`,
    );
  }
}

function isJson(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type === 'application/problem+json' || type.endsWith('+json');
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'the host name could not be looked up',
  ECONNRESET: 'the connection was reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'the connection timed out',
  EPIPE: 'the connection was closed',
};

const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function describeNetworkError(error: Error, server: string): ServerUnreachable {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (TLS_TRUST_CODES.has(code)) {
    return new ServerUnreachable(
      `cannot trust the kubevisa server at ${server}: ${error.message} (${code}). If it uses a private CA, pass --ca-file FILE with that CA's PEM certificate ('kubevisa login' remembers it) or set NODE_EXTRA_CA_CERTS; check that --server names the host in its certificate.`,
      { cause: error },
    );
  }
  if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    return new ServerUnreachable(
      `cannot talk TLS to ${server} (${code}): the server probably speaks plain http, or another protocol, on that port. Check the scheme and port in --server.`,
      { cause: error },
    );
  }
  const reason = NETWORK_REASONS[code] ?? (code ? `${error.message}, ${code}` : error.message);
  return new ServerUnreachable(
    `cannot reach the kubevisa server at ${server} (${reason}). Check that it is running (start one with 'kubevisa server') and that --server, or 'server' in config.json, names it.`,
    { cause: error },
  );
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * Checks and normalises a server URL: http or https, no credentials, query or fragment, no trailing slash.
 * Plain http is accepted only for loopback addresses, because the session secret and tokens travel in the
 * requests.
 * @throws UsageError saying what is wrong with the URL.
 */
export function normalizeServerUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch (error) {
    throw new UsageError(
      `'${text}' is not a URL (${(error as Error).message}): pass the kubevisa server's base URL, e.g. --server https://kubevisa.example.com`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UsageError(`'${text}' is not an http(s) URL: pass e.g. --server https://kubevisa.example.com`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError(
      `'${text}' carries credentials, a query or a fragment: pass only the server's base URL, e.g. --server https://kubevisa.example.com`,
    );
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
    throw new UsageError(
      `refusing plain http to ${url.host}: the session secret and tokens would cross the network unencrypted. Use https:// (plain http is accepted only for 127.0.0.1, [::1] and localhost).`,
    );
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

/**
 * A client for the server named by `--server` (else config.json), trusting `--ca-file` (else config.json's
 * caFile, else the system's roots plus NODE_EXTRA_CA_CERTS).
 * @throws UsageError when no server is known.
 */
export async function connect(options: {
  configDir: string;
  server?: string;
  caFile?: string;
  timeoutMs?: number;
}): Promise<ApiClient> {
  const config = await readConfig(options.configDir);
  const server = options.server ?? config.server;
  if (server === undefined) {
    throw new UsageError(
      `no kubevisa server is configured: pass --server URL, or log in once with 'kubevisa login --server URL' (it is remembered in ${configFile(options.configDir)})`,
    );
  }
  const normalized = normalizeServerUrl(server);
  // config.json's CA belongs to config.json's server; another server named with --server needs its own.
  const configuredServer = config.server === undefined ? undefined : normalizeServerUrl(config.server);
  const caFile = options.caFile ?? (configuredServer === normalized ? config.caFile : undefined);
  return new ApiClient({
    server: normalized,
    configDir: options.configDir,
    ...(caFile !== undefined ? { caFile } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
}
