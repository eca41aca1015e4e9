/**
 * /scim/v2 on the server's fastify app: bearer authentication with the per-IdP tokens, `application/scim+json`
 * in and out, and every error in SCIM's shape (its own error and not-found handlers, so the API's problem+json
 * never leaks here and vice versa).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { findForbiddenKey } from '../domain/own.ts';
import type { ScimTokenRecord } from '../store/identity-records.ts';
import type { Store } from '../store/store.ts';
import { SCIM_CONTENT_TYPE, ScimError, scimErrorBody } from './errors.ts';
import { resourceTypes, schemas, serviceProviderConfig, type ResourceKind } from './schema.ts';
import { BULK_MAX_OPERATIONS, runBulk } from './bulk.ts';
import { readSearchRequest, toScimError, type ListQuery, type ScimClient, type ScimService } from './service.ts';
import { matchScimToken } from './tokens.ts';

export const SCIM_PREFIX = '/scim/v2';
/** Largest SCIM request body, in bytes: a group PUT with thousands of members fits; also Bulk's maxPayloadSize. */
export const SCIM_BODY_LIMIT_BYTES = 1024 * 1024;
/** How long the token list is cached between store reads, in ms (revocations through this server are immediate). */
const TOKEN_CACHE_MS = 2000;
/** lastUsedAt is written at most this often per token, in ms: a provisioning burst must not write once per call. */
const LAST_USED_RESOLUTION_MS = 60_000;

export interface ScimRoutesOptions {
  service: ScimService;
  store: Store;
  /** The public base URL of /scim/v2, for discovery documents. */
  baseUrl: string;
  maxResults: number;
  now?: () => number;
  /** Where failures the IdP cannot act on (500s, lost lastUsedAt writes) are reported. */
  onInternalError: (message: string, error: unknown) => void;
}

export interface ScimRoutes {
  /** Drops the cached token list: call after creating, rotating or revoking a token. */
  invalidateTokens(): void;
}

export function registerScimRoutes(app: FastifyInstance, options: ScimRoutesOptions): ScimRoutes {
  const now = options.now ?? Date.now;
  let cached: { records: ScimTokenRecord[]; at: number } | undefined;
  const lastUsedWritten = new Map<string, number>();

  const tokens = async (): Promise<ScimTokenRecord[]> => {
    if (cached && now() - cached.at < TOKEN_CACHE_MS) return cached.records;
    cached = { records: await options.store.listScimTokens(), at: now() };
    return cached.records;
  };

  const authenticate = async (request: FastifyRequest): Promise<ScimClient> => {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match?.[1]) {
      throw new ScimError(401, "send the IdP's kubevisa SCIM token as 'Authorization: Bearer TOKEN'");
    }
    const record = matchScimToken(match[1], await tokens(), now());
    if (!record) {
      throw new ScimError(
        401,
        "the SCIM token is unknown, revoked or expired: create a new one with 'kubevisa scim token create --idp NAME'",
      );
    }
    const last = lastUsedWritten.get(record.id) ?? record.lastUsedAt ?? 0;
    if (now() - last >= LAST_USED_RESOLUTION_MS) {
      lastUsedWritten.set(record.id, now());
      options.store
        .transaction((tx) => tx.updateScimToken(record.id, { lastUsedAt: now() }))
        .catch((error: unknown) =>
          options.onInternalError(`could not record the use of SCIM token ${record.id}`, error),
        );
    }
    return { idp: record.idp, tokenId: record.id, address: request.socket.remoteAddress ?? 'unknown' };
  };

  const send = (reply: FastifyReply, status: number, body: unknown) =>
    reply.code(status).type(`${SCIM_CONTENT_TYPE}; charset=utf-8`).send(body);

  app.register(
    async (scim) => {
      // IdPs send application/scim+json (RFC 7644 §3.1) and sometimes plain JSON: both parse the same way, with
      // SCIM's body limit and error shape (the API's JSON parser is replaced inside this scope only).
      scim.removeContentTypeParser(['application/json']);
      scim.addContentTypeParser(
        ['application/scim+json', 'application/json'],
        { parseAs: 'string', bodyLimit: SCIM_BODY_LIMIT_BYTES },
        (_request, body, done) => {
          let parsed: unknown;
          try {
            parsed = body === '' ? undefined : JSON.parse(body as string);
          } catch (error) {
            done(
              new ScimError(400, `the body is not valid JSON: ${(error as Error).message}`, 'invalidSyntax'),
              undefined,
            );
            return;
          }
          // JSON.parse keeps `__proto__` as an own key; code that later merges or walks the body must never see
          // one (or `constructor`, `prototype`), so such a body is refused before any handler runs.
          const forbidden = findForbiddenKey(parsed);
          if (forbidden !== undefined) {
            done(
              new ScimError(
                400,
                `the body holds the key ${forbidden}, which is not a SCIM attribute and is never accepted`,
                'invalidValue',
              ),
              undefined,
            );
            return;
          }
          done(null, parsed);
        },
      );

      scim.setErrorHandler((error, request, reply) => {
        const scimError = toScimError(error) ?? fromFastify(error);
        if (scimError)
          return send(reply, scimError.status, scimErrorBody(scimError.status, scimError.message, scimError.scimType));
        options.onInternalError(`${request.method} ${request.url.split('?')[0]} failed`, error);
        return send(reply, 500, scimErrorBody(500, 'internal error: the kubevisa server log has the details'));
      });
      scim.setNotFoundHandler((request, reply) =>
        send(
          reply,
          404,
          scimErrorBody(
            404,
            `no such SCIM endpoint: ${request.method} ${request.url.split('?')[0]}; kubevisa serves /Users, /Groups, /.search, /Bulk, /ServiceProviderConfig, /ResourceTypes and /Schemas`,
          ),
        ),
      );

      const id = (request: FastifyRequest) => (request.params as { id: string }).id;
      const query = (request: FastifyRequest) => request.query as ListQuery;
      const ifMatch = (request: FastifyRequest) => {
        const value = request.headers['if-match'];
        return typeof value === 'string' ? value : undefined;
      };
      const location = (reply: FastifyReply, resource: { meta?: unknown }) => {
        const meta = resource.meta as { location?: string; version?: string } | undefined;
        if (meta?.location) reply.header('location', meta.location);
        if (meta?.version) reply.header('etag', meta.version);
      };

      scim.get('/ServiceProviderConfig', async (request, reply) => {
        await authenticate(request);
        return send(
          reply,
          200,
          serviceProviderConfig(options.baseUrl, options.maxResults, {
            bulkMaxOperations: BULK_MAX_OPERATIONS,
            bulkMaxPayloadBytes: SCIM_BODY_LIMIT_BYTES,
          }),
        );
      });
      scim.get('/ResourceTypes', async (request, reply) => {
        await authenticate(request);
        const all = resourceTypes(options.baseUrl);
        return send(reply, 200, listOf(all));
      });
      scim.get('/ResourceTypes/:id', async (request, reply) => {
        await authenticate(request);
        const found = resourceTypes(options.baseUrl).find((r) => r.id === id(request));
        if (!found) throw new ScimError(404, `no ResourceType '${id(request)}': kubevisa has User and Group`);
        return send(reply, 200, found);
      });
      scim.get('/Schemas', async (request, reply) => {
        await authenticate(request);
        return send(reply, 200, listOf(schemas(options.baseUrl)));
      });
      scim.get('/Schemas/:id', async (request, reply) => {
        await authenticate(request);
        const found = schemas(options.baseUrl).find((s) => s.id === id(request));
        if (!found) throw new ScimError(404, `no Schema '${id(request)}': GET /Schemas lists them`);
        return send(reply, 200, found);
      });

      scim.get('/Users', async (request, reply) => {
        const client = await authenticate(request);
        return send(reply, 200, await options.service.listUsers(client, query(request)));
      });
      scim.post('/Users', async (request, reply) => {
        const client = await authenticate(request);
        const created = await options.service.createUser(client, request.body);
        location(reply, created);
        return send(reply, 201, created);
      });
      scim.get('/Users/:id', async (request, reply) => {
        const client = await authenticate(request);
        const user = await options.service.getUser(client, id(request), query(request));
        location(reply, user);
        return send(reply, 200, user);
      });
      scim.put('/Users/:id', async (request, reply) => {
        const client = await authenticate(request);
        const user = await options.service.replaceUser(client, id(request), request.body, ifMatch(request));
        location(reply, user);
        return send(reply, 200, user);
      });
      scim.patch('/Users/:id', async (request, reply) => {
        const client = await authenticate(request);
        const user = await options.service.patchUser(client, id(request), request.body, ifMatch(request));
        location(reply, user);
        return send(reply, 200, user);
      });
      scim.delete('/Users/:id', async (request, reply) => {
        const client = await authenticate(request);
        await options.service.deleteUser(client, id(request), ifMatch(request));
        return reply.code(204).send();
      });

      scim.get('/Groups', async (request, reply) => {
        const client = await authenticate(request);
        return send(reply, 200, await options.service.listGroups(client, query(request)));
      });
      scim.post('/Groups', async (request, reply) => {
        const client = await authenticate(request);
        const created = await options.service.createGroup(client, request.body);
        location(reply, created);
        return send(reply, 201, created);
      });
      scim.get('/Groups/:id', async (request, reply) => {
        const client = await authenticate(request);
        const group = await options.service.getGroup(client, id(request), query(request));
        location(reply, group);
        return send(reply, 200, group);
      });
      scim.put('/Groups/:id', async (request, reply) => {
        const client = await authenticate(request);
        const group = await options.service.replaceGroup(client, id(request), request.body, ifMatch(request));
        location(reply, group);
        return send(reply, 200, group);
      });
      scim.patch('/Groups/:id', async (request, reply) => {
        const client = await authenticate(request);
        const group = await options.service.patchGroup(client, id(request), request.body, ifMatch(request));
        const wanted = query(request);
        if (wanted.attributes === undefined) {
          reply.header('etag', `W/"${group.version}"`);
          return reply.code(204).send();
        }
        return send(reply, 200, await options.service.renderGroupRecord(group, wanted));
      });
      scim.delete('/Groups/:id', async (request, reply) => {
        const client = await authenticate(request);
        await options.service.deleteGroup(client, id(request), ifMatch(request));
        return reply.code(204).send();
      });

      const search = (kinds: readonly ResourceKind[]) => async (request: FastifyRequest, reply: FastifyReply) => {
        const client = await authenticate(request);
        return send(reply, 200, await options.service.search(client, readSearchRequest(request.body), kinds));
      };
      scim.post('/.search', search(['User', 'Group']));
      scim.post('/Users/.search', search(['User']));
      scim.post('/Groups/.search', search(['Group']));

      scim.post('/Bulk', async (request, reply) => {
        const client = await authenticate(request);
        return send(
          reply,
          200,
          await runBulk({ service: options.service, onInternalError: options.onInternalError }, client, request.body),
        );
      });

      // RFC 7644 §3.11 lets a service provider answer 501 when it has no resource for the authenticated subject:
      // a kubevisa SCIM token authenticates an identity provider, never a User, so /Me aliases nothing.
      scim.all('/Me', async (request) => {
        const client = await authenticate(request);
        throw new ScimError(
          501,
          `/Me is not supported: the SCIM token authenticates the identity provider '${client.idp}', which is not a User. Use /Users/ID (see /ServiceProviderConfig)`,
        );
      });
    },
    { prefix: SCIM_PREFIX },
  );

  return {
    invalidateTokens() {
      cached = undefined;
    },
  };
}

function listOf<T>(resources: T[]) {
  return {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:ListResponse'],
    totalResults: resources.length,
    startIndex: 1,
    itemsPerPage: resources.length,
    Resources: resources,
  };
}

/** Fastify's own refusals (body too large, wrong media type, empty body) in SCIM terms. */
function fromFastify(error: unknown): ScimError | undefined {
  const e = error as { code?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ScimError(413, `the body is larger than ${SCIM_BODY_LIMIT_BYTES / 1024} KiB`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ScimError(415, 'send the body as application/scim+json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ScimError(400, 'the body is empty: send a SCIM resource', 'invalidSyntax');
  }
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    return new ScimError(e.statusCode, e.message ?? 'bad request', e.statusCode === 400 ? 'invalidSyntax' : undefined);
  }
  return undefined;
}
