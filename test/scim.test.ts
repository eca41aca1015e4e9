// SCIM 2.0 service provider against the real server and the real OIDC provider (no cluster needed here): the
// request sequences Okta and Microsoft Entra ID are documented to send, replayed and checked response by
// response; authentication with per-IdP tokens; and every refusal in SCIM's own error shape, changing nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, loginAs, people } from './support/kubevisa-env.ts';
import { makeSandbox, seedLogin } from '../src/cli/testing/run-cli.ts';
import { createScimToken, scim, startLightEnv, type LightEnv, type ScimAnswer } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
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

function assertScimError(answer: ScimAnswer, status: number, scimType?: string) {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.match(answer.contentType, /application\/scim\+json/);
  assert.deepEqual(answer.body.schemas, [ERROR]);
  assert.equal(answer.body.status, String(status), 'SCIM errors carry the status as a string');
  if (scimType !== undefined) assert.equal(answer.body.scimType, scimType);
  assert.equal(typeof answer.body.detail, 'string');
}

async function userCount(): Promise<number> {
  return (await env.server.store.listScimUsers()).length;
}

describe('Okta (developer.okta.com/docs/reference/scim/scim-20)', () => {
  let userId: string;
  let groupId: string;

  test('checks the user does not exist, then provisions it (201, password never kept)', async () => {
    const lookup = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName eq "carl@vendor.example"')}&startIndex=1&count=100`,
    );
    assert.equal(lookup.status, 200);
    assert.deepEqual(lookup.body.schemas, [LIST]);
    assert.equal(lookup.body.totalResults, 0);
    assert.deepEqual(lookup.body.Resources, []);
    const created = await asOkta('POST', '/Users', {
      schemas: [USER],
      userName: 'carl@vendor.example',
      name: { givenName: 'Carl', familyName: 'Vendor' },
      emails: [{ primary: true, value: 'carl@vendor.example', type: 'work' }],
      displayName: 'Carl Vendor',
      locale: 'en-US',
      externalId: '00ujl29u0le5T6Aj10h7',
      groups: [],
      password: '1mz050nq',
      active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.match(created.contentType, /application\/scim\+json/);
    userId = String(created.body.id);
    assert.match(userId, /^[0-9a-f-]{36}$/);
    assert.equal(created.body.userName, 'carl@vendor.example');
    assert.equal(created.body.active, true);
    assert.equal(created.body.externalId, '00ujl29u0le5T6Aj10h7');
    assert.equal(created.body.password, undefined, 'a password is never stored or returned');
    const meta = created.body.meta as Record<string, string>;
    assert.equal(meta.resourceType, 'User');
    assert.equal(meta.location, `${env.serverUrl}/scim/v2/Users/${userId}`);
    assert.equal(meta.version, 'W/"1"');
    assert.equal(created.headers.get('location'), meta.location);
    const stored = await env.server.store.getScimUser(userId);
    assert.equal(JSON.stringify(stored).includes('1mz050nq'), false);
  });

  test('reads the user back by id and by filter', async () => {
    const read = await asOkta('GET', `/Users/${userId}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.userName, 'carl@vendor.example');
    const found = await asOkta('GET', `/Users?filter=${encodeURIComponent('userName eq "CARL@vendor.example"')}`);
    assert.equal(found.body.totalResults, 1, 'userName is compared case-insensitively');
    assert.equal(found.body.Resources?.[0]?.id, userId);
  });

  test('updates the profile with PUT', async () => {
    const put = await asOkta('PUT', `/Users/${userId}`, {
      schemas: [USER],
      id: userId,
      userName: 'carl@vendor.example',
      name: { givenName: 'Carlos', familyName: 'Vendor' },
      emails: [{ primary: true, value: 'carl@vendor.example', type: 'work' }],
      displayName: 'Carlos Vendor',
      externalId: '00ujl29u0le5T6Aj10h7',
      active: true,
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal((put.body.name as Record<string, string>).givenName, 'Carlos');
    assert.equal((put.body.meta as Record<string, string>).version, 'W/"2"');
  });

  test('creates a group, finds it by displayName, adds and removes the member, renames it', async () => {
    const created = await asOkta('POST', '/Groups', { schemas: [GROUP], displayName: 'Test SCIMv2', members: [] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    groupId = String(created.body.id);
    const found = await asOkta(
      'GET',
      `/Groups?filter=${encodeURIComponent('displayName eq "Test SCIMv2"')}&startIndex=1&count=100`,
    );
    assert.equal(found.body.totalResults, 1);
    const added = await asOkta('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: userId, display: 'carl@vendor.example' }] }],
    });
    assert.equal(added.status, 204, JSON.stringify(added.body));
    const withMember = await asOkta('GET', `/Groups/${groupId}`);
    assert.deepEqual(
      (withMember.body.members as { value: string; display: string }[]).map((m) => [m.value, m.display]),
      [[userId, 'Carlos Vendor']],
    );
    const user = await asOkta('GET', `/Users/${userId}`);
    assert.deepEqual(
      (user.body.groups as { value: string }[]).map((g) => g.value),
      [groupId],
      'the user shows its groups',
    );
    const removed = await asOkta('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${userId}"]` }],
    });
    assert.equal(removed.status, 204);
    assert.deepEqual((await asOkta('GET', `/Groups/${groupId}`)).body.members, []);
    const renamed = await asOkta('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { id: groupId, displayName: 'Test SCIMv2 renamed' } }],
    });
    assert.equal(renamed.status, 204);
    assert.equal((await asOkta('GET', `/Groups/${groupId}`)).body.displayName, 'Test SCIMv2 renamed');
  });

  test('deactivates with {"op":"replace","value":{"active":false}}, then reactivates', async () => {
    const deactivated = await asOkta('PATCH', `/Users/${userId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: false } }],
    });
    assert.equal(deactivated.status, 200, JSON.stringify(deactivated.body));
    assert.equal(deactivated.body.active, false);
    const reactivated = await asOkta('PATCH', `/Users/${userId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: true } }],
    });
    assert.equal(reactivated.status, 200);
    assert.equal(reactivated.body.active, true);
  });

  test('deletes the group (and a repeated delete is 404)', async () => {
    assert.equal((await asOkta('DELETE', `/Groups/${groupId}`)).status, 204);
    assertScimError(await asOkta('DELETE', `/Groups/${groupId}`), 404);
  });
});

describe('Microsoft Entra ID (learn.microsoft.com: "Develop a SCIM endpoint", request/response examples)', () => {
  let userId: string;
  let groupId: string;
  const userName = 'Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1';

  test('looks the user up by userName, then creates it with the enterprise extension', async () => {
    const lookup = await asEntra('GET', `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`);
    assert.equal(lookup.status, 200);
    assert.equal(lookup.body.totalResults, 0);
    const created = await asEntra('POST', '/Users', {
      schemas: [USER, ENTERPRISE],
      externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
      userName,
      active: true,
      emails: [{ primary: true, type: 'work', value: 'Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com' }],
      meta: { resourceType: 'User' },
      name: { formatted: 'givenName familyName', familyName: 'familyName', givenName: 'givenName' },
      roles: [],
      [ENTERPRISE]: { department: 'Engineering', employeeNumber: '42' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    userId = String(created.body.id);
    assert.deepEqual(created.body.schemas, [USER, ENTERPRISE]);
    assert.equal((created.body[ENTERPRISE] as Record<string, string>).department, 'Engineering');
    assert.equal((created.body.meta as Record<string, string>).resourceType, 'User');
  });

  test('finds it by userName and by externalId; a second create with the same userName is 409 uniqueness', async () => {
    const byName = await asEntra('GET', `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`);
    assert.equal(byName.body.totalResults, 1);
    const byExternal = await asEntra(
      'GET',
      `/Users?filter=${encodeURIComponent('externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')}`,
    );
    assert.equal(byExternal.body.Resources?.[0]?.id, userId);
    const again = await asEntra('POST', '/Users', { schemas: [USER], userName, active: true });
    assertScimError(again, 409, 'uniqueness');
  });

  test('updates attributes with Replace on paths (work email, family name, enterprise manager)', async () => {
    const patched = await asEntra('PATCH', `/Users/${userId}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@microsoft.com' },
        { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
        { op: 'Add', path: `${ENTERPRISE}:manager`, value: { value: 'manager-id' } },
      ],
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.equal((patched.body.emails as { value: string }[])[0]?.value, 'updatedEmail@microsoft.com');
    assert.equal((patched.body.name as Record<string, string>).familyName, 'updatedFamilyName');
    assert.deepEqual((patched.body[ENTERPRISE] as Record<string, unknown>).manager, { value: 'manager-id' });
    assert.equal((await env.server.store.getScimUser(userId))?.email, 'updatedemail@microsoft.com');
  });

  test('creates a group, reads it without members, adds and removes the member with value lists, renames it', async () => {
    const created = await asEntra('POST', '/Groups', {
      schemas: [GROUP, 'http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group'],
      externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159',
      displayName: 'Group1DisplayName',
      meta: { resourceType: 'Group' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    groupId = String(created.body.id);
    const withoutMembers = await asEntra('GET', `/Groups/${groupId}?excludedAttributes=members`);
    assert.equal(withoutMembers.body.members, undefined);
    assert.equal(withoutMembers.body.displayName, 'Group1DisplayName');
    const filtered = await asEntra(
      'GET',
      `/Groups?excludedAttributes=members&filter=${encodeURIComponent('displayName eq "Group1DisplayName"')}`,
    );
    assert.equal(filtered.body.totalResults, 1);
    assert.equal(filtered.body.Resources?.[0]?.members, undefined);
    const added = await asEntra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Add', path: 'members', value: [{ $ref: null, value: userId }] }],
    });
    assert.equal(added.status, 204, JSON.stringify(added.body));
    const isMember = await asEntra(
      'GET',
      `/Groups?filter=${encodeURIComponent(`id eq "${groupId}" and members[value eq "${userId}"]`)}&excludedAttributes=members`,
    );
    assert.equal(isMember.body.totalResults, 1);
    const removed = await asEntra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Remove', path: 'members', value: [{ $ref: null, value: userId }] }],
    });
    assert.equal(removed.status, 204);
    assert.deepEqual((await env.server.store.getScimGroup(groupId))?.members, []);
    const renamed = await asEntra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'displayName', value: '1879db59-updatedDisplayName' }],
    });
    assert.equal(renamed.status, 204);
  });

  test('disables with {"op":"Replace","path":"active","value":"False"} and re-enables with "True"', async () => {
    const disabled = await asEntra('PATCH', `/Users/${userId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'active', value: 'False' }],
    });
    assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
    assert.equal(disabled.body.active, false, 'the string "False" is a boolean false');
    const enabled = await asEntra('PATCH', `/Users/${userId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'active', value: 'True' }],
    });
    assert.equal(enabled.body.active, true);
  });

  test('deletes the user (204), which then is 404, and the group', async () => {
    assert.equal((await asEntra('DELETE', `/Users/${userId}`)).status, 204);
    assertScimError(await asEntra('GET', `/Users/${userId}`), 404);
    assert.equal((await asEntra('DELETE', `/Groups/${groupId}`)).status, 204);
  });
});

describe('authentication', () => {
  test('no token, a wrong token or a malformed header get 401 and change nothing', async () => {
    const before = await userCount();
    const body = { schemas: [USER], userName: 'intruder@example.com' };
    assertScimError(await scim(env.serverUrl, undefined, 'POST', '/Users', body), 401);
    assertScimError(await scim(env.serverUrl, 'kvscim_' + 'A'.repeat(43), 'POST', '/Users', body), 401);
    assertScimError(
      await scim(env.serverUrl, okta.slice(0, -1) + (okta.endsWith('A') ? 'B' : 'A'), 'POST', '/Users', body),
      401,
    );
    assertScimError(
      await scim(env.serverUrl, undefined, 'GET', '/Users', undefined, { authorization: `Basic ${okta}` }),
      401,
    );
    assert.equal(await userCount(), before);
  });

  test('a revoked token gets 401 at once; a rotated one works during its grace period only', async () => {
    const temp = await createScimToken(env.serverUrl, env.admin, 'temp');
    assert.equal((await scim(env.serverUrl, temp.token, 'GET', '/Users')).status, 200);
    const revoked = await api(env.serverUrl, 'DELETE', `/api/v1/scim/tokens/${temp.id}`, { token: env.admin });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(revoked.body.state, 'revoked');
    const before = await userCount();
    assertScimError(
      await scim(env.serverUrl, temp.token, 'POST', '/Users', { schemas: [USER], userName: 'x@y.z' }),
      401,
    );
    assert.equal(await userCount(), before);

    const rotating = await createScimToken(env.serverUrl, env.admin, 'rotating');
    const rotated = await api(env.serverUrl, 'POST', `/api/v1/scim/tokens/${rotating.id}/rotate`, {
      token: env.admin,
      body: { grace: '0s' },
    });
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    assert.equal((rotated.body.previous as { state: string }).state, 'revoked');
    assertScimError(await scim(env.serverUrl, rotating.token, 'GET', '/Users'), 401);
    assert.equal((await scim(env.serverUrl, String(rotated.body.token), 'GET', '/Users')).status, 200);
  });

  test('tokens are listed without secrets, and only admins manage them', async () => {
    const listed = await api(env.serverUrl, 'GET', '/api/v1/scim/tokens', { token: env.admin });
    assert.equal(listed.status, 200);
    const text = JSON.stringify(listed.body);
    assert.equal(text.includes(okta), false);
    assert.equal(/kvscim_|secretHash/.test(text), false);
    assert.ok((listed.body.items ?? []).some((t) => t.idp === 'okta' && t.state === 'live'));
    const eve = await loginAs(env.serverUrl, people.eve);
    const refused = await api(env.serverUrl, 'POST', '/api/v1/scim/tokens', {
      token: eve.token,
      body: { idp: 'evil' },
    });
    assert.equal(refused.status, 403);
    const stored = await env.server.store.listScimTokens();
    assert.ok(
      stored.every((t) => /^[0-9a-f]{64}$/.test(t.secretHash)),
      'only SHA-256 hashes are stored',
    );
  });
});

describe('refusals in SCIM shape, changing nothing', () => {
  test('malformed JSON, a missing schema, a missing userName or a wrong type get 400 with a scimType', async () => {
    const before = await userCount();
    assertScimError(await asOkta('POST', '/Users', '{"schemas": ['), 400, 'invalidSyntax');
    assertScimError(await asOkta('POST', '/Users', { userName: 'no-schema@x.y' }), 400, 'invalidSyntax');
    assertScimError(await asOkta('POST', '/Users', { schemas: [USER] }), 400, 'invalidValue');
    assertScimError(
      await asOkta('POST', '/Users', { schemas: [USER], userName: 'a@b.c', active: 'maybe' }),
      400,
      'invalidValue',
    );
    assertScimError(
      await asOkta('POST', '/Users', { schemas: [USER], userName: 'a@b.c', emails: 'a@b.c' }),
      400,
      'invalidValue',
    );
    assertScimError(await asOkta('POST', '/Users', [1, 2]), 400, 'invalidSyntax');
    assert.equal(await userCount(), before);
  });

  test('malformed filters get 400 invalidFilter', async () => {
    for (const filter of [
      'userName eq',
      'userName xx "a"',
      'userName eq "a" and',
      '(userName eq "a"',
      'active eq True',
    ]) {
      assertScimError(await asOkta('GET', `/Users?filter=${encodeURIComponent(filter)}`), 400, 'invalidFilter');
    }
    assertScimError(await asOkta('GET', '/Users?startIndex=abc'), 400, 'invalidValue');
  });

  test('filters on unknown attributes or that are not comparisons of an attribute get 400 invalidFilter', async () => {
    for (const [path, filter] of [
      ['/Users', 'fooBar eq "x"'],
      ['/Users', '1 eq 1'],
      ['/Users', 'active gt true'],
      ['/Groups', 'userName eq "x"'],
      ['/Groups', 'members[nope eq "x"]'],
    ]) {
      const answer = await asOkta('GET', `${path}?filter=${encodeURIComponent(filter!)}`);
      assertScimError(answer, 400, 'invalidFilter');
      assert.match(String(answer.body.detail), /attribute|boolean|multi-valued/, filter);
    }
  });

  test('a request line or headers too long get 431 in SCIM shape on /scim/v2, problem+json elsewhere', async () => {
    const longFilter = `userName eq "${'a'.repeat(20 * 1024)}"`;
    const line = await asOkta('GET', `/Users?filter=${encodeURIComponent(longFilter)}`);
    assertScimError(line, 431);
    assert.match(String(line.body.detail), /larger than 16 KiB.*\.search/);
    const headers = await scim(env.serverUrl, okta, 'GET', '/Users', undefined, { 'x-padding': 'b'.repeat(20 * 1024) });
    assertScimError(headers, 431);
    const apiAnswer = await api(env.serverUrl, 'GET', '/api/v1/me', {
      token: env.admin,
      headers: { 'x-padding': 'b'.repeat(20 * 1024) },
    });
    assert.equal(apiAnswer.status, 431);
    assert.equal(apiAnswer.body.code, 'ERR_HEADERS_TOO_LARGE');
    // Just under the limit still works.
    const fits = await asOkta('GET', `/Users?filter=${encodeURIComponent(`userName eq "${'a'.repeat(2000)}"`)}`);
    assert.equal(fits.status, 200);
  });

  test('malformed PATCH bodies get 400 and leave the user as it was', async () => {
    const created = await asOkta('POST', '/Users', {
      schemas: [USER],
      userName: 'patchme@vendor.example',
      active: true,
    });
    const id = String(created.body.id);
    assertScimError(
      await asOkta('PATCH', `/Users/${id}`, { Operations: [{ op: 'replace', value: { active: false } }] }),
      400,
      'invalidSyntax',
    );
    assertScimError(await asOkta('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [] }), 400, 'invalidSyntax');
    assertScimError(
      await asOkta('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'jump', value: 1 }] }),
      400,
      'invalidSyntax',
    );
    assertScimError(
      await asOkta('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'remove' }] }),
      400,
      'noTarget',
    );
    assertScimError(
      await asOkta('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'active', value: 'nope' }],
      }),
      400,
      'invalidValue',
    );
    assertScimError(
      await asOkta('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'id', value: 'mine' }],
      }),
      400,
      'mutability',
    );
    const after = await env.server.store.getScimUser(id);
    assert.equal(after?.active, true);
    assert.equal(after?.version, 1, 'nothing was written');
  });

  test('an unknown user or group id gets 404; an unknown endpoint too; a stale If-Match gets 412', async () => {
    assertScimError(await asOkta('GET', '/Users/00000000-0000-0000-0000-000000000000'), 404);
    assertScimError(
      await asOkta('PATCH', '/Users/nope', {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active: false } }],
      }),
      404,
    );
    assertScimError(await asOkta('PUT', '/Groups/nope', { schemas: [GROUP], displayName: 'x' }), 404);
    assertScimError(await asOkta('GET', '/Widgets'), 404);
    const created = await asOkta('POST', '/Users', { schemas: [USER], userName: 'etag@vendor.example' });
    const id = String(created.body.id);
    const stale = await scim(env.serverUrl, okta, 'DELETE', `/Users/${id}`, undefined, { 'if-match': 'W/"7"' });
    assertScimError(stale, 412);
    assert.ok(await env.server.store.getScimUser(id));
    assert.equal(
      (await scim(env.serverUrl, okta, 'DELETE', `/Users/${id}`, undefined, { 'if-match': 'W/"1"' })).status,
      204,
    );
  });

  test('a group with a member that is not a user gets 400 invalidValue', async () => {
    assertScimError(
      await asOkta('POST', '/Groups', {
        schemas: [GROUP],
        displayName: 'ghosts',
        members: [{ value: 'no-such-user' }],
      }),
      400,
      'invalidValue',
    );
    assert.equal(await env.server.store.getScimGroupByDisplayName('ghosts'), undefined);
  });
});

describe('lists', () => {
  test('filters with and/or/sw/co/pr, paginate with startIndex and count, and report totalResults', async () => {
    for (let i = 0; i < 7; i++) {
      const created = await asOkta('POST', '/Users', {
        schemas: [USER],
        userName: `page${i}@paging.example`,
        displayName: i % 2 === 0 ? 'Even' : 'Odd',
        active: i !== 3,
      });
      assert.equal(created.status, 201);
    }
    const all = await asOkta('GET', `/Users?filter=${encodeURIComponent('userName sw "page"')}`);
    assert.equal(all.body.totalResults, 7);
    const page = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName co "@paging"')}&startIndex=3&count=2`,
    );
    assert.equal(page.body.totalResults, 7);
    assert.equal(page.body.startIndex, 3);
    assert.equal(page.body.itemsPerPage, 2);
    assert.deepEqual(
      page.body.Resources?.map((r) => r.userName),
      ['page2@paging.example', 'page3@paging.example'],
    );
    const both = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName sw "page" and displayName eq "even" and active eq true')}`,
    );
    assert.equal(both.body.totalResults, 4);
    const either = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName eq "page1@paging.example" or userName eq "page5@paging.example"')}`,
    );
    assert.equal(either.body.totalResults, 2);
    const inactive = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName sw "page" and not (active eq true)')}`,
    );
    assert.deepEqual(
      inactive.body.Resources?.map((r) => r.userName),
      ['page3@paging.example'],
    );
    const emptyPage = await asOkta('GET', `/Users?filter=${encodeURIComponent('userName sw "page"')}&startIndex=100`);
    assert.equal(emptyPage.body.totalResults, 7);
    assert.equal(emptyPage.body.itemsPerPage, 0);
    const countZero = await asOkta('GET', `/Users?filter=${encodeURIComponent('userName sw "page"')}&count=0`);
    assert.equal(countZero.body.itemsPerPage, 0);
    assert.equal(countZero.body.totalResults, 7);
    const projected = await asOkta(
      'GET',
      `/Users?filter=${encodeURIComponent('userName eq "page0@paging.example"')}&attributes=userName`,
    );
    assert.deepEqual(Object.keys(projected.body.Resources?.[0] ?? {}).sort(), ['id', 'meta', 'schemas', 'userName']);
  });
});

describe('discovery', () => {
  test('ServiceProviderConfig, ResourceTypes and Schemas describe what is supported', async () => {
    const config = await asOkta('GET', '/ServiceProviderConfig');
    assert.equal(config.status, 200);
    assert.equal((config.body.patch as { supported: boolean }).supported, true);
    assert.equal((config.body.filter as { supported: boolean }).supported, true);
    assert.deepEqual(config.body.bulk, { supported: true, maxOperations: 1000, maxPayloadSize: 1024 * 1024 });
    assert.deepEqual(config.body.sort, { supported: true });
    assert.equal((config.body.authenticationSchemes as { type: string }[])[0]?.type, 'oauthbearertoken');
    const types = await asOkta('GET', '/ResourceTypes');
    assert.deepEqual(
      types.body.Resources?.map((r) => r.id),
      ['User', 'Group'],
    );
    assert.deepEqual((types.body.Resources?.[0]?.schemaExtensions as { schema: string }[])[0]?.schema, ENTERPRISE);
    const schemas = await asOkta('GET', '/Schemas');
    assert.deepEqual(
      schemas.body.Resources?.map((r) => r.id),
      [USER, ENTERPRISE, GROUP],
    );
    const user = await asOkta('GET', `/Schemas/${USER}`);
    assert.ok((user.body.attributes as { name: string }[]).some((a) => a.name === 'userName'));
    assertScimError(await scim(env.serverUrl, undefined, 'GET', '/ServiceProviderConfig'), 401);
  });
});

describe('login gating', () => {
  test('a person deactivated by SCIM cannot log in; reactivated, they can', async () => {
    const created = await asOkta('POST', '/Users', {
      schemas: [USER],
      userName: people.carl.email.toUpperCase(),
      emails: [{ value: people.carl.email, primary: true }],
      active: false,
    });
    assert.equal(created.status, 409, 'carl@vendor.example was provisioned by the Okta sequence above');
    const carl = (await env.server.store.listScimUsersByEmail(people.carl.email))[0]!;
    await asOkta('PATCH', `/Users/${carl.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: false } }],
    });
    await assert.rejects(loginAs(env.serverUrl, people.carl), /deactivated at the identity provider/);
    const refusals = await env.server.store.listAudit({ action: 'login.refused' });
    assert.ok(refusals.some((e) => e.actor === people.carl.email));
    await asOkta('PATCH', `/Users/${carl.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: true } }],
    });
    const session = await loginAs(env.serverUrl, people.carl);
    assert.match(session.token, /^ey/);
  });
});

describe('identity providers are kept apart', () => {
  test("one identity provider can neither see nor change another's users and groups", async () => {
    const created = await asOkta('POST', '/Users', {
      schemas: [USER],
      userName: 'okta-only@vendor.example',
      emails: [{ value: 'okta-only@vendor.example', primary: true }],
      active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = String(created.body.id);
    const asOther = (method: string, path: string, body?: unknown) => scim(env.serverUrl, entra, method, path, body);
    assertScimError(await asOther('GET', `/Users/${id}`), 404);
    assertScimError(
      await asOther('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active: false } }],
      }),
      404,
    );
    assertScimError(await asOther('DELETE', `/Users/${id}`), 404);
    const listed = await asOther('GET', '/Users?count=1000');
    assert.equal(JSON.stringify(listed.body).includes('okta-only@vendor.example'), false, 'not listed to another IdP');
    const group = await asOther('POST', '/Groups', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
      displayName: 'entra-team',
      members: [{ value: id }],
    });
    assertScimError(group, 400);
    assert.equal((await asOkta('GET', `/Users/${id}`)).body.active, true, 'unchanged');
  });
});

describe('an admin offboarding outranks the identity provider', () => {
  test('SCIM cannot reactivate a person an admin deprovisioned', async () => {
    await loginAs(env.serverUrl, people.eve);
    // Eve logged in before Okta provisioned her: Okta may act on her once an admin links her to it.
    const linked = await api(env.serverUrl, 'POST', '/api/v1/identity/links', {
      token: env.admin,
      body: { person: people.eve.email, idp: 'okta', reason: 'Okta manages staff accounts' },
    });
    assert.equal(linked.status, 201, JSON.stringify(linked.body));
    const created = await asOkta('POST', '/Users', {
      schemas: [USER],
      userName: people.eve.email,
      emails: [{ value: people.eve.email, primary: true }],
      active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const eveScim = (await env.server.store.listScimUsersByEmail(people.eve.email))[0]!;
    const offboarded = await api(
      env.serverUrl,
      'POST',
      `/api/v1/persons/${encodeURIComponent(people.eve.email)}/offboard`,
      {
        token: env.admin,
        body: { reason: 'left the company' },
      },
    );
    assert.equal(offboarded.status, 200, JSON.stringify(offboarded.body));
    // The IdP toggles the account off and on again (or a sync replays an old state): nothing comes back.
    for (const active of [false, true]) {
      const patched = await asOkta('PATCH', `/Users/${eveScim.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active } }],
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
    }
    assert.equal((await env.server.store.getPersonByEmail(people.eve.email))?.status, 'deprovisioned');
    await assert.rejects(loginAs(env.serverUrl, people.eve));
  });
});

describe('kubevisa scim token (the CLI against the real server)', () => {
  test('create shows the token once, list never does, rotate and revoke change what /scim/v2 accepts', async () => {
    const sandbox = await makeSandbox();
    try {
      await seedLogin(sandbox, env.serverUrl, {
        accessToken: env.admin,
        accessTokenExpiresAt: new Date(Date.now() + 9 * 60_000).toISOString(),
      });
      const shown = await sandbox.runOk(['scim', 'token', 'create', '--idp', 'cli-okta']);
      assert.match(shown.stdout, /shown once; kubevisa keeps only its hash/);
      assert.match(shown.stdout, new RegExp(`SCIM base URL:\\s+${env.serverUrl}/scim/v2`));
      const created = JSON.parse(
        (await sandbox.runOk(['scim', 'token', 'create', '--idp', 'cli-okta', '-o', 'json'])).stdout,
      ) as {
        id: string;
        token: string;
      };
      assert.equal((await scim(env.serverUrl, created.token, 'GET', '/Users?count=1')).status, 200);

      const listed = await sandbox.runOk(['scim', 'token', 'list']);
      assert.match(listed.stdout, new RegExp(`${created.id}\\s+cli-okta\\s+live`));
      assert.equal(listed.stdout.includes(created.token), false, 'a secret is never listed');

      const rotated = JSON.parse(
        (await sandbox.runOk(['scim', 'token', 'rotate', created.id, '--grace', '0s', '-o', 'json'])).stdout,
      ) as { id: string; token: string; previous: { state: string } };
      assert.equal(rotated.previous.state, 'revoked');
      assertScimError(await scim(env.serverUrl, created.token, 'GET', '/Users?count=1'), 401);
      assert.equal((await scim(env.serverUrl, rotated.token, 'GET', '/Users?count=1')).status, 200);

      const revoked = await sandbox.runOk(['scim', 'token', 'revoke', rotated.id]);
      assert.match(revoked.stdout, /is revoked: cli-okta's SCIM calls with it now get 401/);
      assertScimError(await scim(env.serverUrl, rotated.token, 'GET', '/Users?count=1'), 401);

      const usage = await sandbox.run(['scim', 'token', 'create']);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /missing --idp/);
      const unknown = await sandbox.run(['scim', 'token', 'revoke', 'st_nope']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no SCIM token 'st_nope'/);
    } finally {
      await sandbox.remove();
    }
  });
});
