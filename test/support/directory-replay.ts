/**
 * Serves recorded directory API answers (test/fixtures/directories/) on 127.0.0.1, so the providers are tested
 * against the APIs' real shapes over real HTTP: each recording lists request → response exchanges, each with the
 * vendor documentation it was taken from (`source`).
 *
 * An exchange is answered once, in order, so a recording can throttle a request and then answer its retry. In
 * recorded text, `{{base}}` becomes this server's URL (next-page links point back here) and `{{epoch+N}}` the
 * current Unix time plus N seconds (Okta's `X-Rate-Limit-Reset`). A request nothing matches gets 404 and is kept
 * in `unmatched`, so a test can prove the provider asked exactly what the recording holds.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedExchange {
  /** What the recording stands for (shown when a test fails). */
  note?: string;
  request: { method?: string; path: string; query?: Record<string, string> };
  response: { status: number; headers?: Record<string, string | string[]>; body?: unknown };
}

export interface Recording {
  /** Where the shapes come from: the vendor's documented example responses. */
  source: string[];
  exchanges: RecordedExchange[];
}

export interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  /** The form fields of a token request. */
  form: Record<string, string> | undefined;
}

export interface ReplayServer {
  url: string;
  requests: SeenRequest[];
  unmatched: SeenRequest[];
  /** Exchanges never asked for. */
  unused(): RecordedExchange[];
  /** Answers from these recordings from now on (a directory that changed between two syncs). */
  replace(recordings: Recording[]): void;
  stop(): Promise<void>;
}

export function loadRecording(path: URL): Recording {
  return JSON.parse(readFileSync(path, 'utf8')) as Recording;
}

function substitute(text: string, base: string): string {
  return text
    .replaceAll('{{base}}', base)
    .replace(/\{\{epoch\+(\d+)\}\}/g, (_all, n: string) => String(Math.floor(Date.now() / 1000) + Number(n)));
}

/** A recorded request without `query` matches any query; with one, exactly that query (in any order). */
function sameQuery(wanted: Record<string, string> | undefined, got: Record<string, string>): boolean {
  if (wanted === undefined) return true;
  const want = wanted;
  const keys = new Set([...Object.keys(want), ...Object.keys(got)]);
  for (const key of keys) if (want[key] !== got[key]) return false;
  return true;
}

/**
 * @param options.repeat answer every exchange as often as it is asked for (a server whose syncs run again and
 * again), instead of once and in order.
 */
export async function serveRecordings(
  recordings: Recording[],
  options: { repeat?: boolean } = {},
): Promise<ReplayServer> {
  const load = (from: Recording[]) => from.flatMap((r) => r.exchanges.map((exchange) => ({ exchange, used: false })));
  let pending = load(recordings);
  const requests: SeenRequest[] = [];
  const unmatched: SeenRequest[] = [];
  let base = '';
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', base);
      const query = Object.fromEntries(url.searchParams);
      const body = Buffer.concat(chunks).toString();
      const seen: SeenRequest = {
        method: request.method ?? 'GET',
        path: url.pathname,
        query,
        authorization: request.headers.authorization,
        form: request.headers['content-type']?.startsWith('application/x-www-form-urlencoded')
          ? Object.fromEntries(new URLSearchParams(body))
          : undefined,
      };
      requests.push(seen);
      const found = pending.find(
        (p) =>
          !p.used &&
          (p.exchange.request.method ?? 'GET') === seen.method &&
          p.exchange.request.path === seen.path &&
          sameQuery(p.exchange.request.query, query),
      );
      if (!found) {
        unmatched.push(seen);
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: `no recorded answer for ${seen.method} ${url.pathname}${url.search}` }));
        return;
      }
      found.used = options.repeat !== true;
      const { status, headers = {}, body: recorded } = found.exchange.response;
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(headers)) {
        out[name] = Array.isArray(value) ? value.map((v) => substitute(v, base)) : substitute(value, base);
      }
      if (recorded === undefined) {
        response.writeHead(status, out);
        response.end();
        return;
      }
      response.writeHead(status, { 'content-type': 'application/json', ...out });
      response.end(substitute(JSON.stringify(recorded), base));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    unmatched,
    unused: () => pending.filter((p) => !p.used).map((p) => p.exchange),
    replace(next) {
      pending = load(next);
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
