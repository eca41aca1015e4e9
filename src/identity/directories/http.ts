/**
 * The one HTTP client every directory provider reads through: JSON GETs with a credential, bounded retries on
 * throttling, and refusals that say what to fix.
 *
 * Three rules hold for every provider:
 * - **The credential goes only to the configured origins.** A next-page link (Okta's `Link`, Graph's
 *   `@odata.nextLink`) naming another host is refused, never followed: an answer must not be able to send the
 *   API token elsewhere.
 * - **Throttling waits, within the read's deadline.** The provider says how long (`Retry-After`, Okta's
 *   `X-Rate-Limit-Reset`, Google's `rateLimitExceeded` with exponential backoff). A single wait longer than a
 *   minute fails the read at once, and a wait is cut short when the read's deadline (`identity.sync.timeout`)
 *   passes; either way nobody is offboarded on a failed read, and the next sync tries again.
 * - **Every failure is a DirectoryUnavailable** naming the provider, the request and the provider's own error
 *   text, never the credential.
 */
import { DirectoryUnavailable } from '../directory.ts';

/** The directory API answered an error status (not throttling): `answered` is that status. */
export class DirectoryRefused extends DirectoryUnavailable {
  static override code = 'ERR_DIRECTORY_REFUSED';
  readonly answered: number;
  constructor(message: string, answered: number) {
    super(message);
    this.answered = answered;
  }
}

/** What a provider says about a throttled answer: wait this long (ms), then retry. */
export type ThrottleRule = (status: number, headers: Headers, body: unknown, attempt: number) => number | undefined;

export interface DirectoryHttpOptions {
  /** The provider's name for messages (`okta`, `entra`, …). */
  provider: string;
  /** Origins (`https://acme.okta.com`) the credential may be sent to. */
  origins: string[];
  /** `Authorization` header value for a request; `fresh` asks for a new token after a 401. */
  authorization: (signal: AbortSignal, fresh: boolean) => Promise<string>;
  /** Which answers are throttling, and how long to wait. Default: 429 with `Retry-After`. */
  throttle?: ThrottleRule;
  /** Turns the provider's error body into a sentence (`errorSummary`, `error.message`, …). */
  describeError?: (body: unknown) => string | undefined;
  /** What to check when the credential is refused (401/403), e.g. "check identity.sync.tokenFile". */
  credentialHint: string;
  /** Most throttled retries of one request (default 8). */
  maxRetries?: number;
  /** Clock and sleep, for tests of the waiting rules. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface JsonAnswer {
  body: unknown;
  headers: Headers;
}

export function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** `Retry-After` in seconds or as an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The longest single throttling wait a read accepts, in ms; a longer one fails the read now. */
const MAX_SINGLE_WAIT_MS = 60_000;

export class DirectoryHttp {
  private readonly options: DirectoryHttpOptions;
  private readonly origins: Set<string>;

  constructor(options: DirectoryHttpOptions) {
    this.options = options;
    this.origins = new Set(options.origins.map((o) => new URL(o).origin));
  }

  /** Throws unless `url` is on a configured origin (a next-page link from an answer, say). */
  pinned(url: string, what: string): URL {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new DirectoryUnavailable(`${this.options.provider}: ${what} is not a URL: ${JSON.stringify(url)}`);
    }
    if (!this.origins.has(parsed.origin)) {
      throw new DirectoryUnavailable(
        `${this.options.provider}: ${what} points at ${parsed.origin}, not at the configured ${[...this.origins].join(', ')}; it was not followed (the API credential goes nowhere else)`,
      );
    }
    return parsed;
  }

  /** GETs JSON, retrying throttled answers and one 401 with a fresh token. */
  async getJson(url: URL | string, signal: AbortSignal, headers: Record<string, string> = {}): Promise<JsonAnswer> {
    const target = this.pinned(url.toString(), 'a request');
    const sleep = this.options.sleep ?? sleepFor;
    const maxRetries = this.options.maxRetries ?? 8;
    let fresh = false;
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.options.authorization(signal, fresh);
      let response: Response;
      try {
        response = await fetch(target, {
          headers: { accept: 'application/json', ...headers, authorization },
          redirect: 'manual',
          signal,
        });
      } catch (error) {
        if (signal.aborted) throw this.timedOut(target, error);
        throw new DirectoryUnavailable(
          `${this.options.provider}: cannot reach ${target.origin} (${(error as Error).message}): check the URL and the network path from kubevisa`,
          { cause: error },
        );
      }
      const body = await readBody(response);
      if (response.ok) {
        if (body === undefined) {
          throw new DirectoryUnavailable(
            `${this.options.provider}: ${describe(target)} answered HTTP ${response.status} without a JSON body`,
          );
        }
        return { body, headers: response.headers };
      }
      if (response.status === 401 && !fresh) {
        fresh = true; // a token revoked or expired early: one retry with a new one
        continue;
      }
      const waitMs = (this.options.throttle ?? defaultThrottle)(response.status, response.headers, body, attempt);
      if (waitMs !== undefined) {
        if (attempt >= maxRetries) {
          throw new DirectoryUnavailable(
            `${this.options.provider}: still throttled after ${maxRetries} retries of ${describe(target)}; the next sync tries again`,
          );
        }
        if (waitMs > MAX_SINGLE_WAIT_MS) {
          throw new DirectoryUnavailable(
            `${this.options.provider}: throttled; the API asks to wait ${Math.ceil(waitMs / 1000)} s, longer than a sync waits (${MAX_SINGLE_WAIT_MS / 1000} s); the next sync tries again`,
          );
        }
        try {
          await sleep(waitMs, signal);
        } catch (error) {
          throw this.timedOut(target, error);
        }
        continue;
      }
      throw this.refused(target, response.status, body);
    }
  }

  private timedOut(target: URL, error: unknown): DirectoryUnavailable {
    return new DirectoryUnavailable(
      `${this.options.provider}: reading ${describe(target)} did not finish before the sync's deadline (identity.sync.timeout)`,
      { cause: error },
    );
  }

  private refused(target: URL, status: number, body: unknown): DirectoryRefused {
    const said = this.options.describeError?.(body);
    const hint =
      status === 401 || status === 403
        ? `: ${this.options.credentialHint}`
        : status === 404
          ? ': check the URL (and the tenant, realm or customer it names)'
          : '';
    return new DirectoryRefused(
      `${this.options.provider}: ${describe(target)} answered HTTP ${status}${said ? ` (${said})` : ''}${hint}`,
      status,
    );
  }
}

/** The request for messages: path only, never the query (Graph's skip tokens are long and say nothing). */
function describe(url: URL): string {
  return `GET ${url.origin}${url.pathname}`;
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function defaultThrottle(status: number, headers: Headers): number | undefined {
  if (status !== 429 && status !== 503) return undefined;
  return retryAfterMs(headers) ?? 1000;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An own string property, or undefined (answers are outside data: never read through the prototype). */
export function ownString(value: unknown, key: string): string | undefined {
  if (!isRecord(value) || !Object.hasOwn(value, key)) return undefined;
  const found = value[key];
  return typeof found === 'string' ? found : undefined;
}

export function ownValue(value: unknown, key: string): unknown {
  return isRecord(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

/** Bounds every paged walk: a provider that keeps answering "next" (or loops) fails instead of running forever. */
export const MAX_PAGES = 10_000;

/** Follows pages until `next` returns undefined; refuses a loop or an endless walk. */
export async function walkPages<T>(
  provider: string,
  first: string,
  fetchPage: (url: string) => Promise<{ items: T[]; next: string | undefined }>,
): Promise<T[]> {
  const items: T[] = [];
  const seen = new Set<string>();
  let url: string | undefined = first;
  while (url !== undefined) {
    if (seen.has(url)) throw new DirectoryUnavailable(`${provider}: the next-page link repeats a page already read`);
    if (seen.size >= MAX_PAGES) throw new DirectoryUnavailable(`${provider}: more than ${MAX_PAGES} pages; refused`);
    seen.add(url);
    const page = await fetchPage(url);
    items.push(...page.items);
    url = page.next;
  }
  return items;
}
