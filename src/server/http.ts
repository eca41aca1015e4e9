/**
 * The REST API (docs/api.md) on fastify: every route declares its JSON schemas (validated strictly: wrong
 * types and unknown fields are refused, never coerced or dropped), the same declarations produce the OpenAPI
 * document, and every error leaves as application/problem+json with a stable code.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { ProtoSafeIncomingMessage } from './safe-incoming.ts';
import { headBytes, PARSER_HEADER_BYTES, refuseOversizedHead } from './oversized-head.ts';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { RawRoute } from './context.ts';
import { createRouter, openApiDocument, type Router, type Schema } from './routes.ts';
import { KubevisaError, Unauthenticated } from '../domain/errors.ts';
import { clipText } from '../domain/validate.ts';
import type { AuditSource } from '../store/store.ts';
import type { Caller } from '../app/caller.ts';
import type { CredentialService } from '../app/credentials.ts';
import type { EngagementService } from '../app/engagements.ts';
import type { PeopleService } from '../app/people.ts';
import type { SessionService } from '../app/sessions.ts';
import type { VisaService } from '../app/visas.ts';
import { engagementView, personView, profileView, visaView } from '../app/views.ts';
import { publicProblem } from './public-errors.ts';
import { AddressLimiter, clientKey } from '../gateway/rate-limit.ts';
import type { Profile } from '../domain/model.ts';

export interface ApiOptions {
  /** This replica's role, added to /healthz (src/leader/). */
  role?: () => { role: 'leader' | 'follower'; epoch: number };
  visas: VisaService;
  engagements: EngagementService;
  people: PeopleService;
  sessions: SessionService;
  /** Direct-mode credentials. */
  credentials: Pick<CredentialService, 'issueDirect'>;
  profiles: () => Promise<Profile[]>;
  clusters: () => { name: string; server: string; caData?: string; directMode?: boolean }[];
  /** Routes served before the API framework sees the request (the gateway); read on every request. */
  rawRoutes: RawRoute[];
  https?: { cert: Buffer; key: Buffer };
  logger?: boolean;
}

const BODY_LIMIT_BYTES = 64 * 1024;
/** Request headers larger than this (all together) are refused with 431. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** Headers beyond this count are ignored by Node; the gateway refuses requests that need more. */
export const MAX_HEADER_COUNT = 100;
/** A client must finish sending its headers within this time. */
export const HEADERS_TIMEOUT_MS = 10_000;
const str = (maxLength = 500) => ({ type: 'string', minLength: 1, maxLength });
const strList = (maxItems = 100, maxLength = 253) => ({ type: 'array', items: str(maxLength), maxItems });
const obj = (properties: Record<string, Schema>, required: string[] = []) => ({
  type: 'object',
  additionalProperties: false,
  required,
  properties,
});
const reasonBody = obj({ reason: str(500) }, ['reason']);

/** Logins one client address may start: 60 at once, then one a second (device and browser flows together). */
const LOGIN_START_LIMITS = { ratePerSecond: 1, burst: 60, refusalsPerSecond: 1, refusalBurst: 60 };

/** A client address started more logins than its budget allows; the answer carries Retry-After. */
class LoginStartsLimited extends KubevisaError {
  static override code = 'ERR_RATE_LIMITED';
  constructor(message: string) {
    super(message, { status: 429 });
  }
}

/** The API server: fastify, and the router every route of the API is declared with. */
export interface Api {
  app: FastifyInstance;
  router: Router;
}

export async function buildApi(options: ApiOptions): Promise<Api> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: BODY_LIMIT_BYTES,
    // Slow clients cannot hold a connection open forever while sending headers.
    connectionTimeout: 0,
    requestTimeout: 120_000,
    // One server for the API and the raw routes: the gateway must not pay for the framework on every request.
    serverFactory: (handler: (request: IncomingMessage, response: ServerResponse) => void) => {
      const route = (url: string | undefined) => options.rawRoutes.find((r) => url?.startsWith(r.prefix));
      const onRequest = (request: IncomingMessage, response: ServerResponse) => {
        if (headBytes(request) > MAX_HEADER_BYTES) return refuseOversizedHead(request, response, MAX_HEADER_BYTES);
        const raw = route(request.url);
        if (raw) raw.handle(request, response);
        else handler(request, response);
      };
      // Limits against slow or oversized requests (slowloris, header floods), for the API and the gateway alike.
      const limits = {
        IncomingMessage: ProtoSafeIncomingMessage,
        // Above MAX_HEADER_BYTES, so that the check in onRequest answers in the endpoint's own shape.
        maxHeaderSize: PARSER_HEADER_BYTES,
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: 120_000,
        keepAliveTimeout: 65_000,
        // Node checks the two timeouts above only this often (default 30 s): slowloris must not get 40 s.
        connectionsCheckingInterval: 1000,
      };
      const server = options.https
        ? createHttpsServer({ ...options.https, ...limits }, onRequest)
        : createHttpServer(limits, onRequest);
      server.maxHeadersCount = MAX_HEADER_COUNT;
      server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (headBytes(request) > MAX_HEADER_BYTES) {
          socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const raw = route(request.url);
        if (raw?.upgrade) raw.upgrade(request, socket, head);
        else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      });
      return server;
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  app.setErrorHandler((error, request, reply) => sendProblem(reply, request, error));
  app.setNotFoundHandler((request, reply) =>
    problem(reply, 404, 'ERR_NOT_FOUND', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`),
  );

  // API and SCIM answers hold people's data and secrets (a session, a SCIM token shown once): no cache keeps them
  // unless a route says otherwise, and no browser second-guesses their type.
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    const path = request.url;
    if ((path.startsWith('/api/') || path.startsWith('/scim/')) && !reply.hasHeader('cache-control')) {
      reply.header('cache-control', 'no-store');
    }
    return payload;
  });

  const router = createRouter(app, bearerAuthenticator(options.sessions));
  const route = router.route;
  // Starting a login is open to anyone and costs a pending login in the store and, for the device flow, a call to
  // the identity provider: without a budget per client address, one client could make kubevisa flood the
  // organisation's IdP until it throttles everyone's logins. The budget is checked before any of that work.
  const loginStarts = new AddressLimiter(LOGIN_START_LIMITS);
  const limitLoginStart = (request: FastifyRequest, reply: FastifyReply): void => {
    const key = clientKey(request.socket.remoteAddress);
    const now = Date.now();
    const wait = loginStarts.take(key, now);
    if (wait > 0) {
      reply.header('retry-after', String(wait));
      throw new LoginStartsLimited(
        `too many logins started from this address: try again in ${wait} s (kubevisa login waits for you; a script that logs in repeatedly should keep its session instead)`,
      );
    }
    // Only the request budget applies here; the second budget of the limiter is for refusals, which this is not.
    loginStarts.settle(key, now, false);
  };
  const params = (request: FastifyRequest) => request.params as Record<string, string>;
  const body = <T>(request: FastifyRequest) => request.body as T;

  route({
    method: 'GET',
    url: '/api/v1/me',
    summary: 'The caller',
    auth: 'session',
    handler: async (_r, _p, caller) => personView(await options.people.me(caller)),
  });
  route({
    method: 'POST',
    url: '/api/v1/engagements',
    summary: 'Create an engagement (admins)',
    auth: 'admin',
    refusal: 'create engagements',
    body: obj(
      {
        name: str(63),
        vendor: str(200),
        contractors: strList(500, 254),
        sponsor: str(254),
        startsAt: str(64),
        endsAt: str(64),
        ceiling: obj({ clusters: strList(), namespacePatterns: strList(), profiles: strList() }, [
          'clusters',
          'namespacePatterns',
          'profiles',
        ]),
        maxVisaDuration: str(32),
      },
      ['name', 'vendor', 'contractors', 'sponsor', 'endsAt', 'ceiling', 'maxVisaDuration'],
    ),
    handler: async (request, reply, caller) => {
      reply.code(201);
      const created = await options.engagements.create(caller, body(request));
      // What the ceiling matches but will never grant (protected namespaces), said once, in the answer.
      return { ...engagementView(created), ...(created.warnings.length > 0 ? { warnings: created.warnings } : {}) };
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/engagements',
    summary: 'Engagements the caller may see',
    auth: 'session',
    handler: async (_r, _p, caller) => ({ items: (await options.engagements.list(caller)).map(engagementView) }),
  });
  route({
    method: 'GET',
    url: '/api/v1/engagements/:id',
    summary: 'One engagement',
    auth: 'session',
    handler: async (request, _p, caller) => engagementView(await options.engagements.get(caller, params(request).id!)),
  });
  route({
    method: 'POST',
    url: '/api/v1/engagements/:id/end',
    summary: 'End an engagement and revoke every visa under it',
    auth: 'session',
    body: reasonBody,
    handler: async (request, _p, caller) =>
      engagementView(
        await options.engagements.end(caller, params(request).id!, body<{ reason: string }>(request).reason),
      ),
  });
  route({
    method: 'POST',
    url: '/api/v1/engagements/:id/end-date',
    summary:
      "Move an engagement's end date (admins; its sponsor only earlier): an earlier end ends or shortens the visas past it",
    auth: 'session',
    body: obj({ endsAt: str(64), reason: str(500) }, ['endsAt', 'reason']),
    handler: async (request, _p, caller) => {
      const { endsAt, reason } = body<{ endsAt: string; reason: string }>(request);
      const changed = await options.engagements.changeEnd(caller, params(request).id!, endsAt, reason);
      return {
        ...engagementView(changed.engagement),
        visasEnded: changed.visasEnded.map((v) => v.id),
        visasShortened: changed.visasShortened.map((v) => v.id),
      };
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/profiles',
    summary: 'Profiles',
    auth: 'session',
    handler: async () => ({ items: (await options.profiles()).map(profileView) }),
  });
  route({
    method: 'GET',
    url: '/api/v1/profiles/:name',
    summary: 'One profile',
    auth: 'session',
    handler: async (request, reply) => {
      const profile = (await options.profiles()).find((p) => p.name === params(request).name);
      if (!profile) return problem(reply, 404, 'ERR_NOT_FOUND', `no profile '${params(request).name}'`);
      return profileView(profile);
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/visas',
    summary: 'Request a visa',
    auth: 'session',
    body: obj(
      {
        engagement: str(63),
        cluster: str(63),
        namespaces: { type: 'array', items: { type: 'string', maxLength: 253 }, minItems: 1, maxItems: 50 },
        profile: str(63),
        duration: str(32),
        startsAt: str(64),
        reason: str(500),
      },
      ['cluster', 'namespaces', 'profile', 'duration', 'reason'],
    ),
    handler: async (request, reply, caller) => {
      reply.code(201);
      return visaView(await options.visas.request(caller, body(request)));
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/visas',
    summary: 'Visas the caller may see',
    auth: 'session',
    querystring: obj({ state: str(16), cluster: str(63), engagement: str(63), person: str(64) }),
    handler: async (request, _p, caller) => ({
      items: (await options.visas.list(caller, request.query as Record<string, string>)).map(visaView),
    }),
  });
  route({
    method: 'GET',
    url: '/api/v1/visas/:id',
    summary: 'One visa',
    auth: 'session',
    handler: async (request, _p, caller) => visaView(await options.visas.get(caller, params(request).id!)),
  });
  route({
    method: 'POST',
    url: '/api/v1/visas/:id/approve',
    summary: 'Approve (approvers; never the holder; may only narrow)',
    auth: 'session',
    body: obj({
      comment: str(500),
      namespaces: { type: 'array', items: { type: 'string', maxLength: 253 }, minItems: 1, maxItems: 50 },
      duration: str(32),
    }),
    handler: async (request, _p, caller) =>
      visaView(await options.visas.approve(caller, params(request).id!, (request.body ?? {}) as { comment?: string })),
  });
  route({
    method: 'POST',
    url: '/api/v1/visas/:id/deny',
    summary: 'Deny a request',
    auth: 'session',
    body: reasonBody,
    handler: async (request, _p, caller) =>
      visaView(await options.visas.deny(caller, params(request).id!, body<{ reason: string }>(request).reason)),
  });
  route({
    method: 'POST',
    url: '/api/v1/visas/:id/cancel',
    summary: 'Cancel your own request or visa',
    auth: 'session',
    handler: async (request, _p, caller) => visaView(await options.visas.cancel(caller, params(request).id!)),
  });
  route({
    method: 'POST',
    url: '/api/v1/visas/:id/revoke',
    summary: 'Revoke a visa now',
    auth: 'session',
    body: reasonBody,
    handler: async (request, _p, caller) =>
      visaView(await options.visas.revoke(caller, params(request).id!, body<{ reason: string }>(request).reason)),
  });
  route({
    method: 'POST',
    url: '/api/v1/visas/:id/extend',
    summary: 'Ask to extend a visa (needs a new approval)',
    auth: 'session',
    body: obj({ duration: str(32), reason: str(500) }, ['duration', 'reason']),
    handler: async (request, reply, caller) => {
      reply.code(201);
      return visaView(await options.visas.extend(caller, params(request).id!, body(request)));
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/persons',
    summary: 'Persons (admins, approvers, auditors)',
    auth: 'staff',
    refusal: 'list persons',
    handler: async (_r, _p, caller) => ({ items: (await options.people.list(caller)).map(personView) }),
  });
  route({
    method: 'GET',
    url: '/api/v1/clusters',
    summary: 'Clusters kubevisa manages',
    auth: 'session',
    handler: async () => ({ items: options.clusters() }),
  });
  route({
    method: 'POST',
    url: '/api/v1/clusters/:name/credential',
    summary: 'A short-lived token for your identity on a cluster (direct mode)',
    auth: 'session',
    handler: async (request, _p, caller) => {
      const issued = await options.credentials.issueDirect(caller, params(request).name!);
      return { token: issued.token, expirationTimestamp: new Date(issued.expirationTimestamp).toISOString() };
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/login/device',
    summary: 'Start a device-code login',
    auth: 'none',
    handler: async (request, reply) => {
      limitLoginStart(request, reply);
      const started = await options.sessions.startDeviceLogin();
      reply.code(201);
      return { ...started, expiresAt: new Date(started.expiresAt).toISOString() };
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/login/device/:loginId/poll',
    summary: 'Poll a device-code login',
    auth: 'none',
    handler: async (request, reply) => {
      const result = await options.sessions.pollDeviceLogin(params(request).loginId!, sourceOf(request));
      if ('status' in result) {
        reply.code(202);
        return result;
      }
      return sessionView(result);
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/login/browser',
    summary: 'Start a browser login (PKCE, loopback redirect)',
    auth: 'none',
    body: obj({ redirectUri: str(200), codeChallenge: str(128), state: str(128) }, [
      'redirectUri',
      'codeChallenge',
      'state',
    ]),
    handler: async (request, reply) => {
      limitLoginStart(request, reply);
      return options.sessions.startBrowserLogin(body(request));
    },
  });
  route({
    method: 'GET',
    url: '/api/v1/login/callback',
    summary: "The identity provider's redirect back to kubevisa",
    auth: 'none',
    handler: async (request, reply) => {
      try {
        const target = await options.sessions.finishBrowserLogin(
          new URL(request.url, 'http://kubevisa.invalid'),
          sourceOf(request),
        );
        return reply.redirect(target, 302);
      } catch (error) {
        const message = error instanceof KubevisaError ? publicProblem(error).message : 'the login failed';
        return reply
          .code(error instanceof KubevisaError ? error.status : 500)
          .type('text/html; charset=utf-8')
          .send(
            `<!doctype html><title>kubevisa login</title><p>Login failed: ${escapeHtml(message)}</p><p>Run <code>kubevisa login</code> again.</p>`,
          );
      }
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/login/exchange',
    summary: 'Trade the one-time login code and PKCE verifier for a session',
    auth: 'none',
    body: obj({ code: str(200), codeVerifier: str(128) }, ['code', 'codeVerifier']),
    handler: async (request) => {
      const { code, codeVerifier } = body<{ code: string; codeVerifier: string }>(request);
      return sessionView(await options.sessions.exchangeBrowserCode(code, codeVerifier));
    },
  });
  route({
    method: 'POST',
    url: '/api/v1/sessions/token',
    summary: 'A fresh access token for a session',
    auth: 'none',
    body: obj({ sessionSecret: str(200) }, ['sessionSecret']),
    handler: async (request) => {
      const issued = await options.sessions.issueAccessToken(body<{ sessionSecret: string }>(request).sessionSecret);
      return { accessToken: issued.accessToken, expiresAt: new Date(issued.expiresAt).toISOString() };
    },
  });
  route({
    method: 'DELETE',
    url: '/api/v1/sessions/current',
    summary: 'Log out',
    auth: 'session',
    handler: async (_r, _p, caller) => {
      await options.sessions.logout(caller);
      return undefined;
    },
  });

  let openapi: ReturnType<typeof openApiDocument> | undefined;
  app.get('/api/v1/openapi.json', async () => {
    // Built on first use, once every capability has declared its routes.
    openapi ??= openApiDocument(router.declared());
    return openapi;
  });
  // Liveness; the answer also says this replica's role among replicas (leader or follower, and the term's epoch).
  app.get('/healthz', async () => ({ status: 'ok', ...options.role?.() }));
  return { app, router };
}

/** kubevisa bearer authentication for API routes (extensions use it too). */
export function bearerAuthenticator(sessions: Pick<SessionService, 'authenticate'>) {
  return async (request: FastifyRequest): Promise<Caller> => {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header) : null;
    if (!match?.[1]) {
      throw new Unauthenticated('a kubevisa access token is required (Authorization: Bearer …): run kubevisa login');
    }
    const { actor, sessionId } = await sessions.authenticate(match[1]);
    return { actor, sessionId, source: sourceOf(request) };
  };
}

function sessionView(answer: {
  sessionSecret: string;
  accessToken: string;
  accessTokenExpiresAt: number;
  sessionExpiresAt: number;
  person: import('../domain/model.ts').Person;
}) {
  return {
    sessionSecret: answer.sessionSecret,
    accessToken: answer.accessToken,
    accessTokenExpiresAt: new Date(answer.accessTokenExpiresAt).toISOString(),
    sessionExpiresAt: new Date(answer.sessionExpiresAt).toISOString(),
    person: personView(answer.person),
  };
}

export function sourceOf(request: FastifyRequest): AuditSource {
  const userAgent = request.headers['user-agent'];
  return {
    address: request.socket.remoteAddress ?? 'unknown',
    ...(typeof userAgent === 'string' ? { userAgent: clipText(userAgent, 200) } : {}),
  };
}

function problem(
  reply: FastifyReply,
  status: number,
  code: string,
  detail: string,
  details: Record<string, unknown> = {},
) {
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ type: `https://kubevisa.dev/errors/${code}`, title: titleFor(status), status, code, detail, ...details });
}

function titleFor(status: number): string {
  return (
    {
      400: 'Bad Request',
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'Not Found',
      409: 'Conflict',
      413: 'Payload Too Large',
      415: 'Unsupported Media Type',
      429: 'Too Many Requests',
      502: 'Bad Gateway',
      503: 'Service Unavailable',
    }[status] ?? (status >= 500 ? 'Internal Server Error' : 'Error')
  );
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> }[];
  validationContext?: string;
}

function sendProblem(reply: FastifyReply, request: FastifyRequest, error: unknown) {
  if (error instanceof KubevisaError) {
    // The caller learns what happened and what to do; upstream addresses and paths stay in the server log.
    const shown = publicProblem(error);
    if (shown.withheld) {
      const cause = error.cause instanceof Error ? ` (cause: ${error.cause.message})` : '';
      process.stderr.write(
        `kubevisa server: ${request.method} ${request.url.split('?')[0]} answered ${error.status} ${error.code}: ${error.message}${cause}\n`,
      );
    }
    return problem(reply, error.status, error.code, shown.message, shown.details);
  }
  const e = error as FastifyLikeError;
  if (e.validation && e.validation.length > 0) {
    return problem(reply, 400, 'ERR_INVALID_INPUT', validationMessage(e.validationContext ?? 'body', e.validation[0]!));
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problem(
        reply,
        413,
        'ERR_BODY_TOO_LARGE',
        `the request body is larger than ${BODY_LIMIT_BYTES / 1024} KiB`,
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem(reply, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return problem(reply, 400, 'ERR_INVALID_INPUT', 'the request body is empty: send a JSON object');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return problem(reply, 400, 'ERR_MALFORMED_JSON', `the request body is not valid JSON: ${e.message}`);
  }
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    const detail =
      e.statusCode === 400 && /JSON/i.test(e.message) ? `the request body is not valid JSON: ${e.message}` : e.message;
    return problem(
      reply,
      e.statusCode,
      e.statusCode === 400 && /JSON/i.test(e.message) ? 'ERR_MALFORMED_JSON' : 'ERR_BAD_REQUEST',
      detail,
    );
  }
  request.log.error({ err: error }, 'request failed');
  process.stderr.write(
    `kubevisa server: ${request.method} ${request.url.split('?')[0]} failed: ${(error as Error)?.stack ?? String(error)}\n`,
  );
  return problem(reply, 500, 'ERR_INTERNAL', 'internal error: the server log has the details');
}

function validationMessage(
  context: string,
  issue: { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> },
): string {
  const where = `${context}${issue.instancePath.replaceAll('/', '.')}`;
  switch (issue.keyword) {
    case 'required':
      return `${where} is missing the required field '${String(issue.params.missingProperty)}'`;
    case 'additionalProperties':
      return `${where} has an unknown field '${String(issue.params.additionalProperty)}'`;
    case 'type':
      return `${where} must be of type ${String(issue.params.type)}`;
    default:
      return `${where} ${issue.message ?? 'is invalid'}`;
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
