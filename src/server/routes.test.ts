// Route declarations: what a declared route refuses before its handler runs, that an undeclared API route cannot be
// added, and that the OpenAPI document lists every declared route with its auth and schemas that compile.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Caller } from '../app/caller.ts';
import { Unauthenticated } from '../domain/errors.ts';
import type { Actor } from '../domain/model.ts';
import { buildApi } from './http.ts';
import { openApiDocument, type Router } from './routes.ts';

const actors: Record<string, Actor> = {
  ada: { personId: 'p_ada', email: 'ada@corp.example', roles: ['admin'], groups: [] },
  aud: { personId: 'p_aud', email: 'aud@corp.example', roles: ['auditor'], groups: [] },
  abe: { personId: 'p_abe', email: 'abe@corp.example', roles: ['approver'], groups: [] },
  cora: { personId: 'p_cora', email: 'cora@vendor.example', roles: [], groups: [] },
};

let app: FastifyInstance;
let router: Router;
const refuse = async (): Promise<never> => {
  throw new Error('not part of this test');
};

before(async () => {
  // The real API with its core routes; the services are never reached by these requests.
  ({ app, router } = await buildApi({
    visas: {} as never,
    engagements: {} as never,
    people: { me: async (caller: Caller) => ({ ...caller.actor, status: 'active' }) } as never,
    sessions: {
      authenticate: async (token: string) => {
        const actor = actors[token];
        if (!actor) throw new Unauthenticated('unknown token');
        return { actor, sessionId: `s_${token}` };
      },
    } as never,
    credentials: { issueDirect: refuse },
    profiles: async () => [],
    clusters: () => [],
    rawRoutes: [],
  }));
  const echo = async (_request: unknown, _reply: unknown, caller: Caller) => ({ email: caller.actor.email });
  router.route({
    method: 'GET',
    url: '/api/v1/test/admin',
    summary: 'admins',
    auth: 'admin',
    refusal: 'test',
    handler: echo,
  });
  router.route({
    method: 'GET',
    url: '/api/v1/test/auditor',
    summary: 'admins, auditors',
    auth: 'auditor',
    handler: echo,
  });
  router.route({ method: 'GET', url: '/api/v1/test/staff', summary: 'staff', auth: 'staff', handler: echo });
  router.route({
    method: 'POST',
    url: '/api/v1/test/token/:name',
    summary: 'its own token',
    auth: 'token',
    params: { type: 'object', properties: { name: { type: 'string', maxLength: 10 } } },
    querystring: { type: 'object', additionalProperties: false, properties: { n: { type: 'string' } } },
    body: { type: 'object', additionalProperties: false, properties: { x: { type: 'integer' } } },
    handler: async () => ({ ok: true }),
  });
  router.declarePrefix({ prefix: '/scim/v2', summary: 'SCIM', auth: 'token' });
  await app.register(
    async (scope) => {
      scope.get('/Users', async () => ({ Resources: [] }));
    },
    { prefix: '/scim/v2' },
  );
  await app.ready();
});
after(() => app.close());

async function get(url: string, token?: string) {
  const answer = await app.inject({
    method: 'GET',
    url,
    ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
  });
  return { status: answer.statusCode, body: answer.json() as Record<string, unknown> };
}

describe('a declared route', () => {
  test('admits only the roles its auth names, refusing with the one code for each meaning', async () => {
    assert.equal((await get('/api/v1/test/admin', 'ada')).status, 200);
    const notAdmin = await get('/api/v1/test/admin', 'aud');
    assert.equal(notAdmin.status, 403);
    assert.equal(notAdmin.body.code, 'ERR_FORBIDDEN');
    assert.match(String(notAdmin.body.detail), /only admins may test/);

    assert.equal((await get('/api/v1/test/auditor', 'aud')).status, 200);
    assert.equal((await get('/api/v1/test/auditor', 'ada')).status, 200);
    const notAuditor = await get('/api/v1/test/auditor', 'abe');
    assert.equal(notAuditor.status, 403);
    assert.equal(notAuditor.body.code, 'ERR_NOT_AN_AUDITOR');

    assert.equal((await get('/api/v1/test/staff', 'abe')).status, 200);
    assert.equal((await get('/api/v1/test/staff', 'cora')).body.code, 'ERR_FORBIDDEN');
  });

  test('needs a kubevisa session unless it is open or has a token of its own', async () => {
    const anonymous = await get('/api/v1/test/staff');
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, 'ERR_UNAUTHENTICATED');
    assert.equal((await get('/api/v1/me', 'cora')).body.email, 'cora@vendor.example');
  });

  test('an API route added without a declaration is refused when it is added', async () => {
    const declared = await buildApi({
      visas: {} as never,
      engagements: {} as never,
      people: {} as never,
      sessions: {} as never,
      credentials: { issueDirect: refuse },
      profiles: async () => [],
      clusters: () => [],
      rawRoutes: [],
    });
    assert.throws(
      () => declared.app.get('/api/v1/sneaky', async () => ({})),
      /registered without a declaration: use the server's route\(\)/,
    );
    // Pages outside the API (a web console's assets) need no declaration.
    declared.app.get('/console/index.html', async () => 'ok');
    await declared.app.close();
  });
});

describe('every API and SCIM answer', () => {
  test('is never cached and says nosniff, answers and refusals alike', async () => {
    for (const [url, token] of [
      ['/api/v1/test/staff', 'ada'],
      ['/api/v1/test/admin', 'cora'],
      ['/api/v1/nowhere', undefined],
      ['/scim/v2/Users', undefined],
    ] as const) {
      const answer = await app.inject({
        method: 'GET',
        url,
        ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
      });
      assert.equal(answer.headers['cache-control'], 'no-store', url);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff', url);
    }
  });
});

describe('the OpenAPI document', () => {
  test('lists every declared route and every route of a declared prefix, each with its auth', async () => {
    const answer = await app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
    assert.equal(answer.statusCode, 200);
    const doc = answer.json() as { openapi: string; paths: Record<string, Record<string, Record<string, unknown>>> };
    assert.equal(doc.openapi, '3.1.0');
    const { routes, prefixed } = router.declared();
    assert.ok(routes.length >= 25, `the core routes and this test's: ${routes.length}`);
    for (const route of [...routes, ...prefixed]) {
      const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
      const operation = doc.paths[path]?.[route.method.toLowerCase()];
      assert.ok(operation, `${route.method} ${route.url} is in the document`);
      const auth = 'auth' in route ? route.auth : route.prefix.auth;
      assert.equal(operation['x-kubevisa-auth'], auth, `${route.method} ${route.url}`);
      const security = operation.security as Record<string, unknown>[];
      if (auth === 'none') assert.deepEqual(security, []);
      else if (auth === 'token') assert.deepEqual(security, [{ routeToken: [] }]);
      else assert.deepEqual(security, [{ bearer: [] }]);
    }
    assert.deepEqual(doc.paths['/api/v1/test/auditor']?.get?.['x-kubevisa-roles'], ['admin', 'auditor']);
    assert.deepEqual(doc.paths['/api/v1/engagements']?.post?.['x-kubevisa-roles'], ['admin']);
    assert.equal(doc.paths['/scim/v2/Users']?.get?.['x-kubevisa-auth'], 'token');
    assert.equal(doc.paths['/api/v1/login/device']?.post?.['x-kubevisa-auth'], 'none');
    const token = doc.paths['/api/v1/test/token/{name}']?.post;
    assert.deepEqual(
      (token?.parameters as { name: string; in: string }[]).map((p) => `${p.in}:${p.name}`),
      ['path:name', 'query:n'],
    );
  });

  test('every schema in it is valid JSON Schema (each compiles in a strict validator)', async () => {
    const doc = openApiDocument(router.declared());
    const schemas: unknown[] = [];
    for (const operations of Object.values(doc.paths)) {
      for (const operation of Object.values(operations) as Record<string, unknown>[]) {
        const body = operation.requestBody as { content: Record<string, { schema: unknown }> } | undefined;
        if (body) schemas.push(body.content['application/json']!.schema);
        for (const p of (operation.parameters as { schema: unknown }[] | undefined) ?? []) schemas.push(p.schema);
      }
    }
    assert.ok(schemas.length > 20, `schemas found: ${schemas.length}`);
    // fastify compiles every schema with Ajv in strict mode when it starts: an invalid one fails ready().
    const check = Fastify({ ajv: { customOptions: { strict: true } } });
    schemas.forEach((schema, i) => check.post(`/s${i}`, { schema: { body: schema as object } }, async () => ({})));
    await check.ready();
    await check.close();
    // ...and would fail it for a schema that is not JSON Schema, so the check above can fail.
    const broken = Fastify({ ajv: { customOptions: { strict: true } } });
    broken.post('/broken', { schema: { body: { type: 'objekt' } } }, async () => ({}));
    await assert.rejects(async () => {
      await broken.ready();
    });
    await broken.close();
  });
});
