/**
 * A tiny stand-in for the kubevisa API (docs/api.md) on 127.0.0.1 for the CLI's tests: canned JSON per
 * route, every request recorded, bearer tokens minted by `POST /api/v1/sessions/token` and checked on every
 * other route unless the route says it needs none. Real sockets, so the CLI's real HTTP code runs.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { OffboardReceiptJson, PersonJson, VisaJson } from '../api-types.ts';
import type { ReceiptStep } from '../../identity/receipt.ts';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body, or undefined when there was none. */
  body: unknown;
}

export interface FakeAnswer {
  status: number;
  body?: unknown;
  /** Default: application/json, or application/problem+json for status ≥ 400. */
  contentType?: string;
}

export type FakeHandler = (request: RecordedRequest) => FakeAnswer | Promise<FakeAnswer>;

/** Routes that need no bearer token, as in docs/api.md. */
const PUBLIC_ROUTES = [/^POST \/api\/v1\/login\//, /^POST \/api\/v1\/sessions\/token$/];

export const SESSION_SECRET = 'kvs_test-secret-0000000000000000000000000000000';

export const CAROL: PersonJson = {
  id: 'p_carol',
  issuer: 'https://idp.example',
  subject: 'carol',
  email: 'carol@vendor.example',
  displayName: 'Carol Contractor',
  groups: ['vendors'],
  roles: [],
  status: 'active',
  createdAt: '2026-01-05T09:00:00Z',
  updatedAt: '2026-01-05T09:00:00Z',
};

export function problem(status: number, code: string, detail: string): FakeAnswer {
  return {
    status,
    contentType: 'application/problem+json',
    body: { type: `https://kubevisa.dev/problems/${code}`, title: 'refused', status, code, detail },
  };
}

/** A visa in the API's JSON shape, with its window around `now`. */
export function aVisa(overrides: Partial<VisaJson> = {}, now = Date.now()): VisaJson {
  const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
  return {
    id: 'v_8f2k1',
    engagementId: 'e_acme',
    personId: CAROL.id,
    personEmail: CAROL.email,
    cluster: 'prod',
    namespaces: ['payments'],
    profile: 'developer',
    reason: 'JIRA-123',
    requestedAt: iso(now - 60_000),
    requestedDuration: '8h',
    notBefore: iso(now),
    notAfter: iso(now + 3 * 3600_000 + 30_000),
    state: 'requested',
    approvals: [],
    requiredApprovals: 1,
    ...overrides,
  };
}

/**
 * A step of an offboarding receipt with the id and wording the server uses (src/identity/offboarding.ts), proven
 * unless `status` says otherwise.
 */
export function aReceiptStep(
  id: 'visas' | 'sessions' | 'streams-closed' | `cluster/${string}/serviceaccount` | `cluster/${string}/token`,
  overrides: Partial<ReceiptStep> = {},
): ReceiptStep {
  const cluster = /^cluster\/([^/]+)\//.exec(id)?.[1];
  const wording: Record<string, { step: string; proof: string }> = {
    visas: {
      step: 'every visa revoked (or request cancelled)',
      proof: 'store read: no visa of the person is requested, approved or active',
    },
    sessions: {
      step: 'every kubevisa session ended',
      proof: 'store read: every session of the person is revoked or expired',
    },
    'streams-closed': {
      step: 'open streams closed (kubectl exec, attach, port-forward, watch, logs -f)',
      proof:
        "the gateway's registry of open streams: the person's streams registered before the commit are gone, and a fresh read after it holds none of theirs",
    },
    serviceaccount: {
      step: `cluster ${cluster}: ServiceAccount deleted`,
      proof:
        'fresh list of ServiceAccounts in kubevisa-visas: the person’s is gone, so every token it was issued is void',
    },
    token: {
      step: `cluster ${cluster}: a token issued before offboarding is refused by kube-apiserver`,
      proof:
        'a TokenRequest token minted and accepted before the offboarding, presented again until kube-apiserver answers 401',
    },
  };
  const status = overrides.status ?? 'proven';
  return {
    id,
    ...wording[cluster === undefined ? id : id.slice(id.lastIndexOf('/') + 1)]!,
    ...(cluster !== undefined ? { cluster } : {}),
    status,
    ok: status === 'proven',
    detail: 'proven',
    attempts: 1,
    ...overrides,
  };
}

/** An offboarding receipt as the server answers it, for Carol, offboarded by sam@corp.example. */
export function aReceipt(steps: ReceiptStep[], overrides: Partial<OffboardReceiptJson> = {}): OffboardReceiptJson {
  const status = steps.every((s) => s.status === 'proven')
    ? 'proven'
    : steps.some((s) => s.status === 'unproven')
      ? 'unproven'
      : 'proving';
  return {
    id: 'o_1',
    person: { id: CAROL.id, email: CAROL.email, status: 'deprovisioned' },
    trigger: { kind: 'admin', by: 'sam@corp.example', reason: 'contract ended' },
    status,
    startedAt: '2026-03-01T09:00:00Z',
    steps,
    timings: { committed: 0 },
    summary: `${CAROL.email} offboarded by sam@corp.example: contract ended.`,
    ...overrides,
  };
}

export class FakeApi {
  readonly requests: RecordedRequest[] = [];
  /** How many access tokens `POST /api/v1/sessions/token` has minted. */
  tokensMinted = 0;
  /** Lifetime of minted access tokens, in milliseconds. */
  tokenLifetimeMs = 10 * 60_000;
  /** The session secret the token endpoint accepts. */
  sessionSecret = SESSION_SECRET;
  readonly #routes = new Map<string, FakeHandler>();
  readonly #validTokens = new Set<string>();
  readonly #server: Server;
  url = '';

  private constructor(tls?: { cert: string; key: string }) {
    const listener = (request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        const url = new URL(request.url ?? '/', 'http://fake');
        const text = Buffer.concat(chunks).toString('utf8');
        const recorded: RecordedRequest = {
          method: request.method ?? 'GET',
          path: url.pathname,
          query: url.searchParams,
          headers: request.headers,
          body: text === '' ? undefined : (JSON.parse(text) as unknown),
        };
        this.requests.push(recorded);
        void this.#answer(recorded).then((answer) => {
          const contentType =
            answer.contentType ?? (answer.status >= 400 ? 'application/problem+json' : 'application/json');
          response.writeHead(answer.status, answer.body === undefined ? {} : { 'content-type': contentType });
          response.end(answer.body === undefined ? undefined : JSON.stringify(answer.body));
        });
      });
    };
    this.#server = tls ? createTlsServer(tls, listener) : createServer(listener);
    this.on('POST', '/api/v1/sessions/token', (request) => {
      const secret = (request.body as { sessionSecret?: unknown } | undefined)?.sessionSecret;
      if (secret !== this.sessionSecret) return problem(401, 'ERR_UNAUTHENTICATED', 'the session has ended');
      return { status: 200, body: this.mintToken() };
    });
    this.on('GET', '/api/v1/me', () => ({ status: 200, body: CAROL }));
  }

  /** Starts on a free port of 127.0.0.1; with `tls` (PEM certificate and key) it speaks https. */
  static async start(tls?: { cert: string; key: string }): Promise<FakeApi> {
    const api = new FakeApi(tls);
    await new Promise<void>((resolve) => api.#server.listen(0, '127.0.0.1', resolve));
    api.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(api.#server.address() as AddressInfo).port}`;
    return api;
  }

  /** Answers `method path` (exact path) with the handler, or always with the given answer. */
  on(method: string, path: string, answer: FakeHandler | FakeAnswer): this {
    this.#routes.set(`${method} ${path}`, typeof answer === 'function' ? answer : () => answer);
    return this;
  }

  /** A fresh access token the fake accepts, as `POST /api/v1/sessions/token` answers. */
  mintToken(): { accessToken: string; expiresAt: string } {
    this.tokensMinted += 1;
    const accessToken = `at-${this.tokensMinted}`;
    this.#validTokens.add(accessToken);
    return { accessToken, expiresAt: new Date(Date.now() + this.tokenLifetimeMs).toISOString() };
  }

  /** Makes the fake accept `token` as if it had minted it (for tokens seeded into session.json). */
  acceptToken(token: string): void {
    this.#validTokens.add(token);
  }

  /** Requests other than the token exchange, as `METHOD path` strings. */
  calls(): string[] {
    return this.requests.map((r) => `${r.method} ${r.path}`);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #answer(request: RecordedRequest): Promise<FakeAnswer> {
    const key = `${request.method} ${request.path}`;
    if (!PUBLIC_ROUTES.some((pattern) => pattern.test(key))) {
      const token = /^Bearer (.+)$/.exec(String(request.headers.authorization ?? ''))?.[1];
      if (token === undefined || !this.#validTokens.has(token)) {
        return problem(401, 'ERR_UNAUTHENTICATED', 'missing or invalid access token');
      }
    }
    const handler = this.#routes.get(key);
    if (!handler) return problem(404, 'ERR_NOT_FOUND', `the fake API has no route ${key}`);
    return handler(request);
  }
}
