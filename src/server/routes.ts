/**
 * The one way to declare an API route, for the core API and the capabilities alike: method, path, a summary, who may
 * call it (`auth`) and its JSON schemas. The declaration is what fastify serves (schemas validated strictly), what
 * refuses a caller without the required role before the handler runs (through src/domain/permissions.ts), and what
 * the OpenAPI document at /api/v1/openapi.json is generated from. Protocol trees that keep their own framing and
 * errors (SCIM under /scim/v2) declare their prefix once; raw routes (the gateway) bypass the framework entirely.
 * A route under /api/ or /scim/ registered on fastify without a declaration is refused when it is added, so none can
 * slip into the API without saying who may call it (pages and assets elsewhere, such as a web console's, are not API).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Caller } from '../app/caller.ts';
import { requireAdmin, requireAuditReader, requireStaff } from '../domain/permissions.ts';

export type Schema = Record<string, unknown>;
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Who may call a route:
 * - `none`: anyone (logins, health);
 * - `token`: a bearer token of its own, checked by the handler (the audit webhook, /metrics, SCIM);
 * - `session`: any kubevisa session (the operation decides the rest, e.g. who may see a visa);
 * - `admin`, `auditor` (admins and auditors), `staff` (admins, approvers and auditors): a session holding the role.
 */
export type RouteAuth = 'none' | 'token' | 'session' | RoleAuth;
export type RoleAuth = 'admin' | 'auditor' | 'staff';

interface RouteBase {
  method: HttpMethod;
  url: string;
  /** One line for the OpenAPI document. */
  summary: string;
  body?: Schema;
  querystring?: Schema;
  params?: Schema;
  /** Largest accepted body in bytes (default: the API's 64 KiB). */
  bodyLimit?: number;
}

/** A route anyone (or a token of its own) may call: the handler gets no caller. */
export interface OpenRoute extends RouteBase {
  auth: 'none' | 'token';
  handler(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

/** A route for a kubevisa session: the handler gets the authenticated caller, whose role was checked. */
export interface SessionRoute extends RouteBase {
  auth: 'session' | RoleAuth;
  /** Completes the refusal "only admins may …" for a role route (e.g. `create SCIM tokens`). */
  refusal?: string;
  handler(request: FastifyRequest, reply: FastifyReply, caller: Caller): Promise<unknown>;
}

export type RouteSpec = OpenRoute | SessionRoute;

/** A tree served by a protocol of its own (SCIM), declared once for the OpenAPI document. */
export interface PrefixDeclaration {
  prefix: string;
  summary: string;
  auth: 'none' | 'token';
}

/** What the declarations hold: every route, for the OpenAPI document and its test. */
export interface DeclaredRoutes {
  routes: readonly RouteSpec[];
  prefixes: readonly PrefixDeclaration[];
  /** Routes registered inside a declared prefix: method and path. */
  prefixed: readonly { method: string; url: string; prefix: PrefixDeclaration }[];
}

export interface Router {
  /** Declares and serves a route. */
  route(spec: RouteSpec): void;
  /** Declares a tree a capability serves under its own protocol (`prefix` must end before the first segment). */
  declarePrefix(declaration: PrefixDeclaration): void;
  declared(): DeclaredRoutes;
}

/** Paths served without a declaration: the OpenAPI document itself, health, and fastify's own HEAD twins. */
const UNDECLARED_OK = new Set(['/api/v1/openapi.json', '/healthz']);

export function createRouter(app: FastifyInstance, authenticate: (request: FastifyRequest) => Promise<Caller>): Router {
  const routes: RouteSpec[] = [];
  const prefixes: PrefixDeclaration[] = [];
  const prefixed: { method: string; url: string; prefix: PrefixDeclaration }[] = [];
  let declaring: RouteSpec | undefined;

  app.addHook('onRoute', (options) => {
    const url = options.url ?? '';
    const methods = [options.method].flat().filter((m) => m !== 'HEAD' && m !== 'OPTIONS');
    if (methods.length === 0 || UNDECLARED_OK.has(url) || !/^\/(api|scim)\//.test(url)) return;
    if (declaring !== undefined && declaring.url === url) return;
    const prefix = prefixes.find((p) => url.startsWith(p.prefix));
    if (prefix) {
      for (const method of methods) prefixed.push({ method, url, prefix });
      return;
    }
    throw new Error(
      `route ${methods.join(',')} ${url} was registered without a declaration: use the server's route() so it says who may call it`,
    );
  });

  return {
    route(spec) {
      routes.push(spec);
      declaring = spec;
      try {
        app.route({
          method: spec.method,
          url: spec.url,
          ...(spec.bodyLimit !== undefined ? { bodyLimit: spec.bodyLimit } : {}),
          schema: {
            ...(spec.body ? { body: spec.body } : {}),
            ...(spec.querystring ? { querystring: spec.querystring } : {}),
            ...(spec.params ? { params: spec.params } : {}),
          },
          handler: async (request, reply) => {
            let result: unknown;
            if (spec.auth === 'none' || spec.auth === 'token') {
              result = await (spec as OpenRoute).handler(request, reply);
            } else {
              const session = spec as SessionRoute;
              const caller = await authenticate(request);
              requireRole(session, caller);
              result = await session.handler(request, reply, caller);
            }
            if (result === undefined) {
              if (!reply.sent) reply.code(204).send();
              return reply;
            }
            return result;
          },
        });
      } finally {
        declaring = undefined;
      }
    },
    declarePrefix(declaration) {
      prefixes.push(declaration);
    },
    declared: () => ({ routes, prefixes, prefixed }),
  };
}

function requireRole(spec: SessionRoute, caller: Caller): void {
  const what = spec.refusal ?? `${spec.method} ${spec.url}`;
  if (spec.auth === 'admin') requireAdmin(caller.actor, what);
  else if (spec.auth === 'auditor') requireAuditReader(caller.actor, what);
  else if (spec.auth === 'staff') requireStaff(caller.actor, what);
}

/** The roles each `auth` admits, as the OpenAPI document states them. */
const ROLES_OF: Record<RouteAuth, string[] | undefined> = {
  none: undefined,
  token: undefined,
  session: [],
  admin: ['admin'],
  auditor: ['admin', 'auditor'],
  staff: ['admin', 'approver', 'auditor'],
};

/**
 * The OpenAPI 3.1 document of every declared route: `security` says a kubevisa session is needed (`bearer`) or a
 * token of the route's own (`routeToken`); `x-kubevisa-auth` says which of {@link RouteAuth} and `x-kubevisa-roles`
 * the roles admitted.
 */
export function openApiDocument(declared: DeclaredRoutes) {
  const paths: Record<string, Record<string, unknown>> = {};
  const add = (
    method: string,
    url: string,
    operation: { summary: string; auth: RouteAuth; body?: Schema; querystring?: Schema; params?: Schema },
  ) => {
    const path = url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: { name: string; in: string; required: boolean; schema: unknown }[] = [
      ...url.matchAll(/:([A-Za-z]+)/g),
    ].map((m) => ({
      name: m[1]!,
      in: 'path',
      required: true,
      schema: (operation.params?.properties as Record<string, unknown> | undefined)?.[m[1]!] ?? {
        type: 'string',
      },
    }));
    const query = operation.querystring as { properties?: Record<string, unknown>; required?: string[] } | undefined;
    for (const [name, schema] of Object.entries(query?.properties ?? {})) {
      parameters.push({ name, in: 'query', required: query?.required?.includes(name) ?? false, schema });
    }
    const roles = ROLES_OF[operation.auth];
    const security = operation.auth === 'token' ? [{ routeToken: [] }] : roles === undefined ? [] : [{ bearer: [] }];
    (paths[path] ??= {})[method.toLowerCase()] = {
      summary: operation.summary,
      security,
      'x-kubevisa-auth': operation.auth,
      ...(roles !== undefined && roles.length > 0 ? { 'x-kubevisa-roles': roles } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(operation.body
        ? { requestBody: { required: true, content: { 'application/json': { schema: operation.body } } } }
        : {}),
      responses: {
        '200': { description: 'OK' },
        default: {
          description: 'An error',
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        },
      },
    };
  };
  for (const route of declared.routes) add(route.method, route.url, route);
  for (const route of declared.prefixed) {
    add(route.method, route.url, {
      summary: `${route.prefix.summary}: ${route.method} ${route.url}`,
      auth: route.prefix.auth,
    });
  }
  return {
    openapi: '3.1.0',
    info: { title: 'kubevisa API', version: 'v1' },
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'a kubevisa access token' },
        routeToken: { type: 'http', scheme: 'bearer', description: "the route's own token (see its summary)" },
      },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'code', 'detail'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            code: { type: 'string' },
            detail: { type: 'string' },
          },
        },
      },
    },
  };
}
