// Okta's SCIM 2.0 conformance run, replayed against a real `kubevisa server`: the request sequence of Okta's
// "OKTA SCIM 2.0 SPEC TEST" (the Runscope test suite that developer.okta.com "Test your SCIM API" hands to
// integrators, and that the Okta Integration Network review runs) — ServiceProviderConfig, the Users endpoint with
// count/startIndex, an unknown user by filter and by id, a random user that must not exist, creation with
// realistic values, the same user read back, a duplicate create (409), the userName case check, the Groups
// endpoint — followed by the profile push and deactivation Okta's provisioning then sends (PUT, PATCH
// active=false), and paging through a list with startIndex/count as Okta's import does. Each answer is checked
// as that suite checks it (status, schemas, the fields it reads).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createScimToken, scim, startLightEnv, type LightEnv } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

let env: LightEnv;
let token: string;
const okta = (method: string, path: string, body?: unknown) => scim(env.serverUrl, token, method, path, body);
const byUserName = (userName: string) => `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`;

before(async () => {
  env = await startLightEnv({ scim: {}, identity: {} });
  token = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
});
after(async () => {
  await env?.stop();
});

describe('OKTA SCIM 2.0 SPEC TEST, step by step', () => {
  // The suite's variables: a random email that must not exist, then the user it creates.
  const random = `${randomUUID().slice(0, 8)}@okta-spec.example`;
  let id = '';

  test('ServiceProviderConfig says what Okta may use', async () => {
    const config = await okta('GET', '/ServiceProviderConfig');
    assert.equal(config.status, 200);
    assert.equal((config.body.patch as { supported: boolean }).supported, true);
    assert.equal((config.body.filter as { supported: boolean }).supported, true);
  });

  test('Test Users endpoint: GET /Users?count=1&startIndex=1 is a ListResponse', async () => {
    await okta('POST', '/Users', { schemas: [USER], userName: 'seed@okta-spec.example', active: true });
    const list = await okta('GET', '/Users?count=1&startIndex=1');
    assert.equal(list.status, 200);
    assert.match(list.contentType, /application\/scim\+json/);
    assert.deepEqual(list.body.schemas, [LIST]);
    assert.equal(list.body.itemsPerPage, 1);
    assert.equal(list.body.startIndex, 1);
    assert.equal(typeof list.body.totalResults, 'number');
    assert.equal(list.body.Resources?.length, 1);
    const first = await okta('GET', `/Users/${String(list.body.Resources?.[0]?.id)}`);
    assert.equal(first.status, 200, 'Get Users/{{id}}');
    assert.equal(typeof first.body.userName, 'string');
  });

  test('Test invalid User by username, and by ID: an empty list, then 404 in SCIM shape', async () => {
    const unknown = await okta('GET', byUserName('invalid-user@okta-spec.example'));
    assert.equal(unknown.status, 200);
    assert.equal(unknown.body.totalResults, 0);
    assert.deepEqual(unknown.body.Resources, []);
    const missing = await okta('GET', `/Users/${randomUUID()}`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body.schemas, [ERROR]);
    assert.equal(missing.body.status, '404');
  });

  test('Make sure random user doesn’t exist, then create it with realistic values', async () => {
    assert.equal((await okta('GET', byUserName(random))).body.totalResults, 0);
    const created = await okta('POST', '/Users', {
      schemas: [USER],
      userName: random,
      name: { givenName: 'Rand', familyName: 'Om' },
      emails: [{ primary: true, value: random, type: 'work' }],
      displayName: 'Rand Om',
      active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.active, true);
    assert.equal(created.body.userName, random);
    assert.deepEqual(created.body.name, { givenName: 'Rand', familyName: 'Om' });
    id = String(created.body.id);
  });

  test('Verify that user was created, by id', async () => {
    const read = await okta('GET', `/Users/${id}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.userName, random);
  });

  test('Expect failure when recreating user with same values: 409 uniqueness', async () => {
    const again = await okta('POST', '/Users', { schemas: [USER], userName: random, active: true });
    assert.equal(again.status, 409);
    assert.equal(again.body.scimType, 'uniqueness');
  });

  test('Username Case Sensitivity Check: the upper-cased userName finds the user', async () => {
    const found = await okta('GET', byUserName(random.toUpperCase()));
    assert.equal(found.status, 200);
    assert.equal(found.body.totalResults, 1);
    assert.equal(found.body.Resources?.[0]?.id, id);
  });

  test('Test Groups endpoint: GET /Groups is a ListResponse', async () => {
    const groups = await okta('GET', '/Groups?count=100&startIndex=1');
    assert.equal(groups.status, 200);
    assert.deepEqual(groups.body.schemas, [LIST]);
  });

  test('Profile push (PUT) and deactivation (PATCH active=false), as Okta provisioning sends them', async () => {
    const put = await okta('PUT', `/Users/${id}`, {
      schemas: [USER],
      id,
      userName: random,
      name: { givenName: 'Randall', familyName: 'Om' },
      emails: [{ primary: true, value: random, type: 'work' }],
      active: true,
    });
    assert.equal(put.status, 200);
    assert.equal((put.body.name as { givenName: string }).givenName, 'Randall');
    const off = await okta('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: false } }],
    });
    assert.equal(off.status, 200);
    assert.equal(off.body.active, false);
    assert.equal((await okta('GET', `/Users/${id}`)).body.active, false);
  });

  test('Import pages through users with startIndex and count, each exactly once', async () => {
    for (let i = 0; i < 5; i++) {
      await okta('POST', '/Users', { schemas: [USER], userName: `page${i}@okta-spec.example`, active: true });
    }
    const total = Number((await okta('GET', '/Users?count=1')).body.totalResults);
    const seen: string[] = [];
    for (let start = 1; start <= total; start += 2) {
      const page = await okta('GET', `/Users?startIndex=${start}&count=2`);
      assert.equal(page.body.startIndex, start);
      assert.equal(page.body.totalResults, total);
      assert.equal(page.body.itemsPerPage, page.body.Resources?.length);
      seen.push(...(page.body.Resources ?? []).map((r) => String(r.id)));
    }
    assert.equal(seen.length, total);
    assert.equal(new Set(seen).size, total, 'no user twice, none left out');
    const beyond = await okta('GET', `/Users?startIndex=${total + 1}&count=2`);
    assert.deepEqual(beyond.body.Resources, []);
  });
});
