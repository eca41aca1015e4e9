// Properties of the API's JSON bodies: the real HTTP layer (src/server/http.ts: fastify, the route schemas, the
// problem+json errors) over the real application service and domain validators (src/app/,
// src/domain) and a real SQLite store. Whatever body a caller sends: a success whose result obeys the rules, or a 4xx
// problem+json with a stable code that changed nothing; never a 5xx. And no approval body, however odd, grants more
// than was asked for. Authentication is not what is fuzzed here: the session service answers for three fixed tokens
// (an admin, a contractor, an approver); everything after it is kubevisa's own code.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { Forbidden, Unauthenticated } from '../../src/domain/errors.ts';
import type { Actor, Person, Policy } from '../../src/domain/model.ts';
import { isDnsLabel, isNamespacePattern, matchesAnyPattern } from '../../src/domain/names.ts';
import { parseDuration } from '../../src/domain/time.ts';
import { SHIPPED_PROFILES } from '../../src/rbac/profiles.ts';
import { EngagementService } from '../../src/app/engagements.ts';
import { AppEvents } from '../../src/app/events.ts';
import { PeopleService } from '../../src/app/people.ts';
import { VisaService } from '../../src/app/visas.ts';
import { buildApi } from '../../src/server/http.ts';
import type { SessionService } from '../../src/app/sessions.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite.ts';
import { checkAsync, PROTOTYPE_KEYS } from './fuzz.ts';
import { jsonText, objectText } from './json-text.ts';

const CLUSTER = 'test';
const CEILING_PATTERNS = ['sec-*', 'payments'];
const MAX_VISA = '8h';
const POLICY: Policy = {
  requiredApprovals: 1,
  approverGroups: ['approvers'],
  autoApproval: [],
  maxVisaSeconds: 7 * 86_400,
  expiryNoticeSeconds: 900,
};

let dir: string;
let store: SqliteStore;
let app: FastifyInstance;
let visas: VisaService;
const tokens = new Map<string, Actor>();
let cora: Actor;

async function person(email: string, groups: string[], roles: Person['roles']): Promise<Actor> {
  const now = Date.now();
  const saved = await store.transaction(async (tx) => {
    const p = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: email,
      email,
      displayName: email,
      groups,
      now,
    });
    return roles.length > 0 ? tx.setPersonRoles(p.id, roles, now) : p;
  });
  return { personId: saved.id, email: saved.email, roles: saved.roles, groups: saved.groups };
}

/** One API call through fastify's own request injection (the whole HTTP layer, without a socket). */
async function call(method: string, url: string, token: string, payload?: string, contentType = 'application/json') {
  const answer = await app.inject({
    method: method as 'POST',
    url,
    headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': contentType }) },
    ...(payload === undefined ? {} : { payload }),
  });
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(answer.body) as Record<string, unknown>;
  } catch {
    body = { raw: answer.body };
  }
  return { status: answer.statusCode, contentType: String(answer.headers['content-type'] ?? ''), body };
}

/** A refusal must be a 4xx problem+json with a stable code and a message; a 5xx is never acceptable. */
function assertRefusal(answer: Awaited<ReturnType<typeof call>>, what: string): void {
  assert.ok(answer.status >= 400 && answer.status < 500, `${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
  assert.match(answer.contentType, /^application\/problem\+json/, what);
  assert.match(String(answer.body.code), /^ERR_[A-Z_]+$/, what);
  assert.notEqual(answer.body.code, 'ERR_INTERNAL', what);
  assert.ok(String(answer.body.detail ?? '').length > 10, `${what}: the refusal says what is wrong`);
}

/** What the store holds that a refused request must not have changed. */
async function counts() {
  const [engagements, visas, audit] = await Promise.all([
    store.listEngagements(),
    store.listVisas({}),
    store.listAudit({ limit: 1_000_000 }),
  ]);
  return { engagements: engagements.length, visas: visas.length, audit: audit.length };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-fuzz-api-'));
  store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
  await store.transaction(async (tx) => {
    for (const profile of SHIPPED_PROFILES) await tx.upsertProfile(profile);
  });
  const admin = await person('sam@corp.example', [], ['admin']);
  cora = await person('cora@vendor.example', [], []);
  const ann = await person('ann@corp.example', ['approvers'], []);
  tokens.set('admin', admin).set('cora', cora).set('ann', ann);
  const ports = { store, policy: POLICY, clusterNames: () => [CLUSTER], events: new AppEvents() };
  visas = new VisaService(ports);
  const sessions = {
    authenticate: async (token: string) => {
      const actor = tokens.get(token);
      if (!actor) throw new Unauthenticated('unknown token');
      return { actor, sessionId: `s-${token}` };
    },
  } as unknown as SessionService;
  const refuse = async () => {
    throw new Forbidden('not part of this test');
  };
  ({ app } = await buildApi({
    visas,
    engagements: new EngagementService(ports),
    people: new PeopleService(ports),
    sessions,
    credentials: { issueDirect: refuse },
    profiles: () => store.listProfiles(),
    clusters: () => [],
    rawRoutes: [],
  }));
  await app.ready();
  const engagement = await call(
    'POST',
    '/api/v1/engagements',
    'admin',
    JSON.stringify({
      name: 'acme',
      vendor: 'Acme',
      contractors: [cora.email],
      sponsor: admin.email,
      endsAt: new Date(Date.now() + 30 * 86_400_000).toISOString(),
      ceiling: { clusters: [CLUSTER], namespacePatterns: CEILING_PATTERNS, profiles: ['viewer', 'debugger'] },
      maxVisaDuration: MAX_VISA,
    }),
  );
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
});

after(async () => {
  await app?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// Bodies: the fields a route expects, each one right, wrong in type or range, missing, or joined by odd keys.

/** A field: the values a route accepts, and values that are wrong in type, form or range. */
interface FieldSpec {
  good: fc.Arbitrary<string>;
  bad: fc.Arbitrary<string>;
}
const json = (value: unknown) => JSON.stringify(value);
const texts = (...values: string[]) => fc.constantFrom(...values.map((v) => json(v)));
const anyText = fc.string({ maxLength: 20 }).map(json);
const spec = (good: fc.Arbitrary<string>, ...bad: fc.Arbitrary<string>[]): FieldSpec => ({
  good,
  bad: fc.oneof(jsonText, anyText, ...bad),
});
const listOf = (items: string[], minLength = 1) => fc.subarray(items, { minLength }).map((chosen) => json(chosen));
const oddKey = fc.tuple(
  fc.oneof(fc.constantFrom(...PROTOTYPE_KEYS, 'role', 'state', 'approvals', 'roles'), fc.string({ maxLength: 8 })),
  jsonText,
);

/**
 * Bodies for a route: mostly a good body with at most one fault (a field dropped, or given a bad value, or an odd
 * key added), so that most runs reach the domain's rules; sometimes a body wrong everywhere, or not an object at all.
 */
function body(fields: Record<string, FieldSpec>): fc.Arbitrary<string> {
  const names = Object.keys(fields);
  const goodEntries = fc.tuple(...names.map((name) => fields[name]!.good.map((v) => [name, v] as [string, string])));
  const oneFault = fc
    .tuple(
      goodEntries,
      fc.nat({ max: names.length - 1 }),
      fc.oneof(
        { weight: 2, arbitrary: fc.constant<'none'>('none') },
        { weight: 1, arbitrary: fc.constant<'drop'>('drop') },
        { weight: 3, arbitrary: fc.constant<'bad'>('bad') },
        { weight: 1, arbitrary: fc.constant<'odd'>('odd') },
      ),
      fc.oneof(...names.map((name) => fields[name]!.bad)),
      oddKey,
    )
    .map(([entries, at, fault, badValue, odd]) => {
      const chosen: [string, string][] = entries.map(([k, v]) => [k, v]);
      if (fault === 'drop') chosen.splice(at, 1);
      if (fault === 'bad') chosen[at] = [chosen[at]![0], badValue];
      if (fault === 'odd') chosen.push(odd);
      return objectText(chosen);
    });
  const everywhere = fc
    .tuple(
      ...names.map((name) =>
        fc.oneof(
          { weight: 3, arbitrary: fields[name]!.good.map((v) => [name, v] as [string, string]) },
          { weight: 1, arbitrary: fields[name]!.bad.map((v) => [name, v] as [string, string]) },
          { weight: 1, arbitrary: fc.constant(undefined) },
        ),
      ),
    )
    .map((entries) => objectText(entries.filter((e) => e !== undefined)));
  return fc.oneof(
    { weight: 6, arbitrary: oneFault },
    { weight: 2, arbitrary: everywhere },
    { weight: 1, arbitrary: jsonText },
    { weight: 1, arbitrary: fc.constantFrom('', '{', '{"a":1,}', 'null', '[]', '"x"', '{"a":1}{"b":2}', '\u0000') },
  );
}

const soon = (hours: number) => new Date(Date.now() + hours * 3600_000).toISOString();
const duration = (...good: string[]) =>
  spec(texts(...good), texts('0s', '-1h', '366d', '400d', '1.5h', 'PT1H', '1h1h', 'h', ''));
const instant = (good: fc.Arbitrary<string>) =>
  spec(
    good,
    texts(
      '2020-01-01T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-01-01T00:00:00',
      'tomorrow',
      '9999-12-31T23:59:59-23:59',
    ),
  );
const emailList = listOf(['cora@vendor.example', 'carl@vendor.example', 'dora@vendor.example']);

const engagementBody = body({
  name: spec(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,8}[a-z0-9]$/).map(json),
    texts('Acme', '-x', 'a'.repeat(64), 'acme', 'a_b'),
  ),
  vendor: spec(texts('Acme', 'Beta Ltd'), texts('', ' ', 'x'.repeat(201))),
  contractors: spec(
    emailList,
    texts('cora@vendor.example'),
    fc.constant(json(['not-an-email'])),
    fc.constant(json(['a@b.c', 'A@B.C'])),
    fc.constant('[]'),
  ),
  sponsor: spec(texts('sam@corp.example'), texts('cora@vendor.example', 'x', '')),
  startsAt: instant(fc.integer({ min: -48, max: 48 }).map((h) => json(soon(h)))),
  endsAt: instant(fc.integer({ min: 49, max: 24 * 60 }).map((h) => json(soon(h)))),
  ceiling: spec(
    fc
      .record({
        clusters: fc.constant([CLUSTER]),
        namespacePatterns: fc.subarray(['sec-*', 'payments', 'staging-*', 'team-a'], { minLength: 1 }),
        profiles: fc.subarray(['viewer', 'debugger'], { minLength: 1 }),
      })
      .map(json),
    fc
      .record({
        clusters: fc.constantFrom([CLUSTER], ['prod'], [], [CLUSTER, CLUSTER]),
        namespacePatterns: fc.constantFrom(
          ['*'],
          ['kube-*'],
          ['a*b'],
          ['-x*'],
          ['sec-**'],
          [''],
          ['sec-*', 'sec-*'],
          [],
        ),
        profiles: fc.constantFrom(['viewer'], ['admin'], []),
      })
      .map(json),
  ),
  maxVisaDuration: duration('1h', '8h', '2d'),
});

const visaBody = body({
  engagement: spec(texts('acme'), texts('nope', '')),
  cluster: spec(texts(CLUSTER), texts('prod', '', 'TEST')),
  namespaces: spec(
    listOf(['sec-a', 'sec-b', 'payments', 'sec-x1']),
    fc
      .constantFrom(
        ['kube-system'],
        ['sec-a', 'sec-a'],
        ['Sec-A'],
        ['sec-'],
        ['x'.repeat(64)],
        ['*'],
        [],
        ['staging-a'],
      )
      .map(json),
  ),
  profile: spec(texts('viewer', 'debugger'), texts('deployer', 'admin', 'Viewer')),
  duration: duration('30m', '1h', '8h'),
  startsAt: instant(fc.integer({ min: 0, max: 4 }).map((h) => json(soon(h + 0.1)))),
  reason: spec(texts('JIRA-1', 'incident 42'), texts('', ' ', 'x'.repeat(501))),
});

/** Approvals are where a request could be widened: the "bad" values here are wider ones. */
const approvalBody = body({
  comment: spec(texts('ok'), texts('', 'x'.repeat(501))),
  namespaces: spec(listOf(['sec-a', 'sec-b']), listOf(['sec-a', 'sec-b', 'sec-c', 'payments', 'kube-system'])),
  duration: duration('30m', '1h', '2h', '3h', '8h'),
});

// ---------------------------------------------------------------------------------------------------------------

describe('fuzzing the API bodies (src/server/http.ts, src/app/, src/domain)', () => {
  test('POST /api/v1/engagements: an engagement within the rules, or a 4xx that changed nothing', async () => {
    await checkAsync(
      'api: engagement bodies',
      250,
      fc.asyncProperty(engagementBody, async (payload) => {
        const before = await counts();
        const answer = await call('POST', '/api/v1/engagements', 'admin', payload);
        if (answer.status !== 201) {
          assertRefusal(answer, payload);
          assert.deepEqual(await counts(), before, `a refused body changed nothing: ${payload}`);
          return;
        }
        const e = answer.body as {
          name: string;
          contractors: string[];
          sponsor: string;
          startsAt: string;
          endsAt: string;
          ceiling: { clusters: string[]; namespacePatterns: string[]; profiles: string[] };
        };
        assert.ok(isDnsLabel(e.name), e.name);
        assert.ok(Date.parse(e.endsAt) > Date.parse(e.startsAt));
        assert.ok(!e.contractors.includes(e.sponsor));
        for (const c of e.contractors) assert.equal(c, c.toLowerCase());
        assert.deepEqual(e.ceiling.clusters, [CLUSTER]);
        for (const p of e.ceiling.namespacePatterns) assert.ok(isNamespacePattern(p) && p !== '*', p);
        for (const p of e.ceiling.profiles)
          assert.ok(
            SHIPPED_PROFILES.some((s) => s.name === p),
            p,
          );
      }),
    );
  });

  test('POST /api/v1/visas: a request inside the engagement’s ceiling, or a 4xx that changed nothing', async () => {
    await checkAsync(
      'api: visa request bodies',
      300,
      fc.asyncProperty(visaBody, async (payload) => {
        const before = await counts();
        const answer = await call('POST', '/api/v1/visas', 'cora', payload);
        if (answer.status !== 201) {
          assertRefusal(answer, payload);
          assert.deepEqual(await counts(), before, `a refused body changed nothing: ${payload}`);
          return;
        }
        const v = answer.body as {
          cluster: string;
          namespaces: string[];
          profile: string;
          requestedDuration: string;
          notAfter?: string;
          state: string;
        };
        assert.equal(v.cluster, CLUSTER);
        assert.equal(v.state, 'requested', 'nothing is granted without an approval');
        assert.ok(['viewer', 'debugger'].includes(v.profile));
        for (const ns of v.namespaces) assert.ok(isDnsLabel(ns) && matchesAnyPattern(ns, CEILING_PATTERNS), ns);
        // A request has no window until it is approved: what it asks for is its duration.
        assert.equal(v.notAfter, undefined);
        assert.ok(parseDuration(v.requestedDuration, 'requestedDuration') <= 8 * 3600, v.requestedDuration);
      }),
    );
  });

  test('POST /api/v1/visas/:id/approve: never grants another namespace or a longer window than was asked for', async () => {
    const requested = ['sec-a', 'sec-b'];
    await checkAsync(
      'api: approval bodies',
      200,
      fc.asyncProperty(approvalBody, async (payload) => {
        const visa = await visas.request(
          { actor: cora },
          {
            engagement: 'acme',
            cluster: CLUSTER,
            namespaces: requested,
            profile: 'viewer',
            duration: '2h',
            reason: 'fuzz',
          },
        );
        const before = await counts();
        const answer = await call('POST', `/api/v1/visas/${visa.id}/approve`, 'ann', payload);
        if (answer.status !== 200) {
          assertRefusal(answer, payload);
          assert.deepEqual(await counts(), before, `a refused approval changed nothing: ${payload}`);
          assert.equal((await store.getVisa(visa.id))?.state, 'requested');
          return;
        }
        const v = answer.body as { namespaces: string[]; notBefore: string; notAfter: string; state: string };
        assert.ok(['approved', 'active'].includes(v.state), v.state);
        for (const ns of v.namespaces) assert.ok(requested.includes(ns), `approved ${ns}, never asked for`);
        assert.ok(Date.parse(v.notAfter) - Date.parse(v.notBefore) <= 2 * 3600_000, 'approved longer than asked');
      }),
    );
  });

  test('every other route with a body answers a body it cannot use with a 4xx, never a 5xx', async () => {
    const visa = await visas.request(
      { actor: cora },
      {
        engagement: 'acme',
        cluster: CLUSTER,
        namespaces: ['sec-a'],
        profile: 'viewer',
        duration: '1h',
        reason: 'fuzz',
      },
    );
    const routes: [string, string, string][] = [
      ['POST', `/api/v1/visas/${visa.id}/deny`, 'ann'],
      ['POST', `/api/v1/visas/${visa.id}/revoke`, 'cora'],
      ['POST', `/api/v1/visas/${visa.id}/extend`, 'cora'],
      ['POST', '/api/v1/engagements/acme/end', 'cora'],
      ['POST', '/api/v1/persons/nobody/offboard', 'admin'],
      ['POST', '/api/v1/login/browser', 'cora'],
      ['POST', '/api/v1/login/exchange', 'cora'],
      ['POST', '/api/v1/sessions/token', 'cora'],
      ['GET', '/api/v1/visas?state=active', 'cora'],
      ['PUT', '/api/v1/visas', 'cora'],
    ];
    const anyBody = body({
      reason: spec(texts('because'), texts('', 'x'.repeat(501))),
      duration: duration('1h'),
      redirectUri: spec(texts('http://127.0.0.1:8000/cb'), texts('https://evil.example/cb', 'javascript:alert(1)')),
      codeChallenge: spec(texts('abc'), texts('x'.repeat(129))),
      state: spec(texts('s'), texts('')),
      code: spec(texts('c'), texts('')),
      codeVerifier: spec(texts('v'), texts('')),
      sessionSecret: spec(texts('s'), texts('')),
    });
    await checkAsync(
      'api: other bodies',
      300,
      fc.asyncProperty(
        fc.constantFrom(...routes),
        anyBody,
        fc.constantFrom(
          'application/json',
          'application/json; charset=utf-8',
          'text/plain',
          'application/x-www-form-urlencoded',
        ),
        async ([method, url, token], payload, contentType) => {
          const answer = await call(method, url, token, payload, contentType);
          assert.ok(
            answer.status < 500,
            `${method} ${url} ${payload}: ${answer.status} ${JSON.stringify(answer.body)}`,
          );
          if (answer.status >= 400) assertRefusal(answer, `${method} ${url} ${payload}`);
        },
      ),
    );
  });
});
