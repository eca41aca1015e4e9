// RFC 7644's optional features that Okta and Microsoft Entra ID use, against the real server: Bulk (§3.7, with
// the request and response shapes of its examples in §3.7.1–3.7.3: bulkId references between operations,
// failOnErrors, maxOperations), POST /.search (§3.4.3), sortBy/sortOrder (§3.4.2.3) and /Me (§3.11). Bulk is
// checked to be no way around a rule a single request meets: ownership, prototype keys, audit per operation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createScimToken, scim, startLightEnv, type LightEnv, type ScimAnswer } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const BULK_REQUEST = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const BULK_RESPONSE = 'urn:ietf:params:scim:api:messages:2.0:BulkResponse';
const SEARCH = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';

let env: LightEnv;
let okta: string;
let entra: string;

before(async () => {
  env = await startLightEnv({ scim: {}, identity: {} });
  okta = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
  entra = (await createScimToken(env.serverUrl, env.admin, 'entra')).token;
});
after(async () => {
  await env?.stop();
});

const asOkta = (method: string, path: string, body?: unknown) => scim(env.serverUrl, okta, method, path, body);
const asEntra = (method: string, path: string, body?: unknown) => scim(env.serverUrl, entra, method, path, body);

interface BulkResult {
  method: string;
  bulkId?: string;
  location?: string;
  version?: string;
  status: string;
  response?: { schemas: string[]; status: string; scimType?: string; detail: string };
}

function operations(answer: ScimAnswer): BulkResult[] {
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.deepEqual(answer.body.schemas, [BULK_RESPONSE]);
  return answer.body.Operations as BulkResult[];
}

function assertScimError(answer: ScimAnswer, status: number, scimType?: string) {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.deepEqual(answer.body.schemas, [ERROR]);
  assert.equal(answer.body.status, String(status));
  if (scimType !== undefined) assert.equal(answer.body.scimType, scimType);
}

const user = (userName: string, extra: Record<string, unknown> = {}) => ({ schemas: [USER], userName, ...extra });

describe('Bulk (RFC 7644 §3.7)', () => {
  test('creates users and a group whose members refer to them by bulkId, even before they are created', async () => {
    const answer = await asOkta('POST', '/Bulk', {
      schemas: [BULK_REQUEST],
      Operations: [
        // The group comes first and names users created later in the request (§3.7.2).
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'ytrewq',
          data: {
            schemas: [GROUP],
            displayName: 'Bulk Tour Guides',
            members: [
              { type: 'User', value: 'bulkId:qwerty' },
              { type: 'User', value: 'bulkId:asdfgh' },
            ],
          },
        },
        { method: 'POST', path: '/Users', bulkId: 'qwerty', data: user('alice@bulk.example') },
        { method: 'POST', path: '/Users', bulkId: 'asdfgh', data: user('bob@bulk.example') },
      ],
    });
    const results = operations(answer);
    assert.deepEqual(
      results.map((r) => [r.method, r.bulkId, r.status]),
      [
        ['POST', 'ytrewq', '201'],
        ['POST', 'qwerty', '201'],
        ['POST', 'asdfgh', '201'],
      ],
    );
    const group = await asOkta('GET', new URL(results[0]!.location!).pathname.replace('/scim/v2', ''));
    const alice = await asOkta('GET', new URL(results[1]!.location!).pathname.replace('/scim/v2', ''));
    assert.equal(alice.body.userName, 'alice@bulk.example');
    assert.equal(results[1]!.version, (alice.body.meta as { version: string }).version);
    assert.deepEqual(
      (group.body.members as { value: string }[]).map((m) => m.value).sort(),
      [alice.body.id, new URL(results[2]!.location!).pathname.split('/').at(-1)].sort(),
    );
    // Each operation is audited as its own request would be, and says it came in a bulk request.
    const events = await env.server.store.listAudit({ action: 'scim.user.created' });
    const aliceEvent = events.find((e) => e.details['userName'] === 'alice@bulk.example');
    assert.deepEqual(aliceEvent?.details['bulk'], { operation: 1, bulkId: 'qwerty' });
    assert.equal(aliceEvent?.actor, 'scim:okta');
  });

  test('PUT, PATCH and DELETE by id, with version as If-Match; a stale version fails that operation alone', async () => {
    const created = operations(
      await asOkta('POST', '/Bulk', {
        schemas: [BULK_REQUEST],
        Operations: [{ method: 'POST', path: '/Users', bulkId: 'c1', data: user('carol@bulk.example') }],
      }),
    );
    const id = created[0]!.location!.split('/').at(-1)!;
    const answer = await asOkta('POST', '/Bulk', {
      schemas: [BULK_REQUEST],
      Operations: [
        { method: 'PUT', path: `/Users/${id}`, version: 'W/"1"', data: user('carol@bulk.example', { title: 'Lead' }) },
        {
          method: 'PATCH',
          path: `/Users/${id}`,
          version: 'W/"1"',
          data: { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] },
        },
        {
          method: 'PATCH',
          path: `/Users/${id}`,
          data: { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: 'Chief' }] },
        },
      ],
    });
    const results = operations(answer);
    assert.deepEqual(
      results.map((r) => r.status),
      ['200', '412', '200'],
    );
    assert.equal(results[1]!.response?.status, '412');
    const after = await asOkta('GET', `/Users/${id}`);
    assert.equal(after.body.title, 'Chief');
    assert.equal(after.body.active, true, 'the stale PATCH changed nothing');
    const deleted = operations(
      await asOkta('POST', '/Bulk', {
        schemas: [BULK_REQUEST],
        Operations: [{ method: 'DELETE', path: `/Users/${id}` }],
      }),
    );
    assert.deepEqual(
      deleted.map((r) => [r.status, r.location]),
      [['204', undefined]],
    );
    assertScimError(await asOkta('GET', `/Users/${id}`), 404);
  });

  test('failOnErrors stops after that many failures and lists only the operations that ran', async () => {
    const answer = await asOkta('POST', '/Bulk', {
      schemas: [BULK_REQUEST],
      failOnErrors: 1,
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'd1', data: user('dave@bulk.example') },
        { method: 'POST', path: '/Users', bulkId: 'd2', data: user('dave@bulk.example') },
        { method: 'POST', path: '/Users', bulkId: 'd3', data: user('erin@bulk.example') },
      ],
    });
    const results = operations(answer);
    assert.deepEqual(
      results.map((r) => [r.bulkId, r.status, r.response?.scimType]),
      [
        ['d1', '201', undefined],
        ['d2', '409', 'uniqueness'],
      ],
    );
    const erin = await asOkta('GET', `/Users?filter=${encodeURIComponent('userName eq "erin@bulk.example"')}`);
    assert.equal(erin.body.totalResults, 0, 'the operation after the limit never ran');
  });

  test('a reference to a failed or unknown bulkId, or a cycle, fails with 409; other operations still run', async () => {
    const answer = await asOkta('POST', '/Bulk', {
      schemas: [BULK_REQUEST],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'bad', data: { schemas: [USER] } },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g1',
          data: { schemas: [GROUP], displayName: 'Refers to bad', members: [{ value: 'bulkId:bad' }] },
        },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g2',
          data: { schemas: [GROUP], displayName: 'Refers to nothing', members: [{ value: 'bulkId:nothing' }] },
        },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'x',
          data: { schemas: [GROUP], displayName: 'X', members: [{ value: 'bulkId:y' }] },
        },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'y',
          data: { schemas: [GROUP], displayName: 'Y', members: [{ value: 'bulkId:x' }] },
        },
        { method: 'POST', path: '/Users', bulkId: 'fine', data: user('frank@bulk.example') },
      ],
    });
    const results = operations(answer);
    assert.deepEqual(
      results.map((r) => [r.bulkId, r.status]),
      [
        ['bad', '400'],
        ['g1', '409'],
        ['g2', '409'],
        ['x', '409'],
        ['y', '409'],
        ['fine', '201'],
      ],
    );
    const groups = await asOkta(
      'GET',
      `/Groups?filter=${encodeURIComponent('displayName sw "Refers" or displayName eq "X"')}`,
    );
    assert.equal(groups.body.totalResults, 0);
  });

  test('is no way around ownership: another identity provider’s user is not found through Bulk either', async () => {
    const mine = await asEntra('POST', '/Users', user('gina@entra.example'));
    const id = String(mine.body.id);
    const results = operations(
      await asOkta('POST', '/Bulk', {
        schemas: [BULK_REQUEST],
        Operations: [
          {
            method: 'PATCH',
            path: `/Users/${id}`,
            data: { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] },
          },
          { method: 'DELETE', path: `/Users/${id}` },
          {
            method: 'POST',
            path: '/Groups',
            bulkId: 'steal',
            data: { schemas: [GROUP], displayName: 'Steal', members: [{ value: id }] },
          },
        ],
      }),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['404', '404', '400'],
    );
    const still = await asEntra('GET', `/Users/${id}`);
    assert.equal(still.body.active, true);
  });

  test('refuses prototype keys, malformed requests and more than maxOperations before running anything', async () => {
    const before = (await env.server.store.listScimUsers()).length;
    const refusals: [unknown, number, string | undefined][] = [
      [
        `{"schemas":["${BULK_REQUEST}"],"Operations":[{"method":"POST","path":"/Users","bulkId":"p","data":{"schemas":["${USER}"],"userName":"p@x.example","__proto__":{"admin":true}}}]}`,
        400,
        'invalidValue',
      ],
      [{ Operations: [] }, 400, 'invalidSyntax'],
      [{ schemas: [BULK_REQUEST], Operations: [{ method: 'GET', path: '/Users' }] }, 400, 'invalidValue'],
      [
        { schemas: [BULK_REQUEST], Operations: [{ method: 'POST', path: '/Bulk', bulkId: 'n', data: {} }] },
        400,
        'invalidValue',
      ],
      [
        { schemas: [BULK_REQUEST], Operations: [{ method: 'POST', path: '/Users', data: user('nobulkid@x.example') }] },
        400,
        'invalidValue',
      ],
      [
        {
          schemas: [BULK_REQUEST],
          Operations: [
            { method: 'POST', path: '/Users', bulkId: 'same', data: user('twice1@x.example') },
            { method: 'POST', path: '/Users', bulkId: 'same', data: user('twice2@x.example') },
          ],
        },
        400,
        'invalidValue',
      ],
      [
        {
          schemas: [BULK_REQUEST],
          Operations: Array.from({ length: 1001 }, (_, i) => ({ method: 'DELETE', path: `/Users/u${i}` })),
        },
        413,
        undefined,
      ],
    ];
    for (const [body, status, scimType] of refusals) {
      assertScimError(await asOkta('POST', '/Bulk', body), status, scimType);
    }
    assertScimError(
      await asOkta('POST', '/Bulk', { schemas: [BULK_REQUEST], Operations: [], pad: 'x'.repeat(1024 * 1024) }),
      413,
    );
    assertScimError(
      await scim(env.serverUrl, 'kvscim_wrong', 'POST', '/Bulk', { schemas: [BULK_REQUEST], Operations: [] }),
      401,
    );
    assert.equal((await env.server.store.listScimUsers()).length, before);
  });
});

describe('POST /.search (RFC 7644 §3.4.3)', () => {
  test('searches users, groups, or both, with filter, attributes, sorting and paging in the body', async () => {
    for (const name of ['sa3@search.example', 'sa1@search.example', 'sa2@search.example']) {
      assert.equal((await asOkta('POST', '/Users', user(name, { title: `T-${name.slice(2, 3)}` }))).status, 201);
    }
    await asOkta('POST', '/Groups', { schemas: [GROUP], displayName: 'search team' });
    const users = await asOkta('POST', '/Users/.search', {
      schemas: [SEARCH],
      filter: 'userName ew "@search.example"',
      attributes: ['userName'],
      sortBy: 'userName',
      sortOrder: 'descending',
      startIndex: 2,
      count: 2,
    });
    assert.equal(users.status, 200, JSON.stringify(users.body));
    assert.equal(users.body.totalResults, 3);
    assert.equal(users.body.startIndex, 2);
    assert.deepEqual(
      users.body.Resources?.map((r) => r.userName),
      ['sa2@search.example', 'sa1@search.example'],
    );
    assert.deepEqual(Object.keys(users.body.Resources?.[0] ?? {}).sort(), ['id', 'meta', 'schemas', 'userName']);
    const both = await asOkta('POST', '/.search', {
      schemas: [SEARCH],
      filter: 'userName sw "sa1" or displayName eq "search team"',
    });
    assert.deepEqual(both.body.Resources?.map((r) => (r.meta as { resourceType: string }).resourceType).sort(), [
      'Group',
      'User',
    ]);
    const groups = await asOkta('POST', '/Groups/.search', {
      schemas: [SEARCH],
      filter: 'displayName eq "search team"',
    });
    assert.equal(groups.body.totalResults, 1);
    const theirs = await asEntra('POST', '/Users/.search', {
      schemas: [SEARCH],
      filter: 'userName ew "@search.example"',
    });
    assert.equal(theirs.body.totalResults, 0, "one identity provider's search never finds another's users");
  });

  test('refuses a body that is not a SearchRequest, and filters as GET does', async () => {
    assertScimError(await asOkta('POST', '/Users/.search', { filter: 'userName pr' }), 400, 'invalidSyntax');
    assertScimError(await asOkta('POST', '/Users/.search', { schemas: [SEARCH], filtr: 'x' }), 400, 'invalidSyntax');
    assertScimError(await asOkta('POST', '/Users/.search', { schemas: [SEARCH], count: 'ten' }), 400, 'invalidValue');
    assertScimError(
      await asOkta('POST', '/Users/.search', { schemas: [SEARCH], filter: 'fooBar eq "x"' }),
      400,
      'invalidFilter',
    );
    const single = await asOkta('POST', '/Users/.search', { schemas: [SEARCH], attributes: 'userName', count: 1 });
    assert.equal(single.status, 200, 'one attribute may come as a string');
  });
});

describe('sortBy and sortOrder on lists (RFC 7644 §3.4.2.3)', () => {
  test('sort by a string case-insensitively, by a sub-attribute, and page through the order', async () => {
    for (const [name, family] of [
      ['Zed@sort.example', 'alpha'],
      ['amy@sort.example', 'Charlie'],
      ['Bob@sort.example', 'bravo'],
      ['nofamily@sort.example', undefined],
    ] as const) {
      await asOkta('POST', '/Users', user(name, family ? { name: { familyName: family } } : {}));
    }
    const filter = encodeURIComponent('userName ew "@sort.example"');
    const ascending = await asOkta('GET', `/Users?filter=${filter}&sortBy=userName`);
    assert.deepEqual(
      ascending.body.Resources?.map((r) => r.userName),
      ['amy@sort.example', 'Bob@sort.example', 'nofamily@sort.example', 'Zed@sort.example'],
    );
    const byFamily = await asOkta('GET', `/Users?filter=${filter}&sortBy=name.familyName&sortOrder=descending`);
    assert.deepEqual(
      byFamily.body.Resources?.map((r) => r.userName),
      ['nofamily@sort.example', 'amy@sort.example', 'Bob@sort.example', 'Zed@sort.example'],
    );
    const pages = [];
    for (const start of [1, 3]) {
      const page = await asOkta('GET', `/Users?filter=${filter}&sortBy=name.familyName&startIndex=${start}&count=2`);
      pages.push(...(page.body.Resources ?? []).map((r) => r.userName));
    }
    assert.deepEqual(pages, ['Zed@sort.example', 'Bob@sort.example', 'amy@sort.example', 'nofamily@sort.example']);
  });

  test('an unknown sortBy attribute or sortOrder gets 400 invalidValue', async () => {
    assertScimError(await asOkta('GET', '/Users?sortBy=shoeSize'), 400, 'invalidValue');
    assertScimError(await asOkta('GET', '/Users?sortBy=userName&sortOrder=sideways'), 400, 'invalidValue');
  });
});

describe('/Me (RFC 7644 §3.11)', () => {
  test('answers 501 to an identity provider (no User behind its token), 401 without a token', async () => {
    for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) {
      const answer = await asOkta(
        method,
        '/Me',
        method === 'GET' || method === 'DELETE' ? undefined : user('me@x.example'),
      );
      assertScimError(answer, 501);
      assert.match(String(answer.body.detail), /identity provider 'okta', which is not a User/);
    }
    assertScimError(await scim(env.serverUrl, undefined, 'GET', '/Me'), 401);
    const config = await asOkta('GET', '/ServiceProviderConfig');
    assert.match(
      (config.body.authenticationSchemes as { description: string }[])[0]!.description,
      /\/Me answers 501 \(RFC 7644 §3\.11\)/,
    );
  });
});
