// Microsoft Entra ID's provisioning conformance, replayed against a real `kubevisa server`: the request sequence of
// Entra's SCIM validator and of the provisioning service as learn.microsoft.com documents it ("Tutorial: Develop
// and plan provisioning for a SCIM endpoint", its "User operations" and "Group operations" request/response
// examples, and the "Known issues" list of quirks): look a user up by userName and by externalId (empty list when
// absent), create it with the enterprise extension, PATCH with capitalised ops (`Replace`, `Add`, `Remove`),
// `Replace` with no path and an object of attributes, booleans as the strings "True"/"False", a group read with
// `excludedAttributes=members`, members added as value lists and removed with a `members[value eq "…"]` path, a
// rename, then DELETE. Each answer is checked as the validator checks it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createScimToken, scim, startLightEnv, type LightEnv } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';

let env: LightEnv;
let token: string;
const entra = (method: string, path: string, body?: unknown) => scim(env.serverUrl, token, method, path, body);
const filter = (resource: string, text: string, extra = '') =>
  `/${resource}?filter=${encodeURIComponent(text)}${extra}`;

before(async () => {
  env = await startLightEnv({ scim: {}, identity: {} });
  token = (await createScimToken(env.serverUrl, env.admin, 'entra')).token;
});
after(async () => {
  await env?.stop();
});

describe('Entra ID SCIM validator sequence', () => {
  const upn = 'Test_User_dfeef4c5@entra-validator.example';
  const externalId = '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef';
  let id = '';
  let second = '';
  let groupId = '';

  test('filter on userName and on externalId find nothing before the create', async () => {
    for (const path of [filter('Users', `userName eq "${upn}"`), filter('Users', `externalId eq "${externalId}"`)]) {
      const answer = await entra('GET', path);
      assert.equal(answer.status, 200);
      assert.deepEqual(answer.body.schemas, [LIST]);
      assert.equal(answer.body.totalResults, 0);
    }
  });

  test('creates the user with the enterprise extension; it is then found by userName and by externalId', async () => {
    const created = await entra('POST', '/Users', {
      schemas: [USER, ENTERPRISE],
      externalId,
      userName: upn,
      active: true,
      emails: [{ primary: true, type: 'work', value: 'Test_User_11bb6097@entra-validator.example' }],
      displayName: 'Test User',
      name: { formatted: 'Test User', familyName: 'User', givenName: 'Test' },
      [ENTERPRISE]: { employeeNumber: '4c2b', department: 'Ops', manager: { value: 'mgr-1' } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = String(created.body.id);
    assert.equal((created.body[ENTERPRISE] as { department: string }).department, 'Ops');
    const byUpn = await entra('GET', filter('Users', `userName eq "${upn}"`));
    assert.equal(byUpn.body.Resources?.[0]?.id, id);
    const byExternal = await entra('GET', filter('Users', `externalId eq "${externalId}"`));
    assert.equal(byExternal.body.Resources?.[0]?.id, id);
    const other = await entra('POST', '/Users', { schemas: [USER], userName: 'second@entra-validator.example' });
    second = String(other.body.id);
  });

  test('Replace with no path, an object of attributes, and capitalised ops on paths', async () => {
    const noPath = await entra('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', value: { displayName: 'Tested User', title: 'Validator' } }],
    });
    assert.equal(noPath.status, 200, JSON.stringify(noPath.body));
    assert.equal(noPath.body.displayName, 'Tested User');
    assert.equal(noPath.body.title, 'Validator');
    const paths = await entra('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', path: 'name.familyName', value: 'Userson' },
        { op: 'Replace', path: 'emails[type eq "work"].value', value: 'moved@entra-validator.example' },
        { op: 'Add', path: `${ENTERPRISE}:department`, value: 'Platform' },
      ],
    });
    assert.equal(paths.status, 200, JSON.stringify(paths.body));
    assert.equal((paths.body.name as { familyName: string }).familyName, 'Userson');
    assert.deepEqual(
      (paths.body.emails as { value: string }[]).map((e) => e.value),
      ['moved@entra-validator.example'],
    );
    assert.equal((paths.body[ENTERPRISE] as { department: string }).department, 'Platform');
  });

  test('disables with "False" and enables with "True" (booleans as strings)', async () => {
    const off = await entra('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'active', value: 'False' }],
    });
    assert.equal(off.status, 200);
    assert.equal(off.body.active, false);
    const on = await entra('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: 'True' }],
    });
    assert.equal(on.body.active, true);
  });

  test('creates a group, reads it with excludedAttributes=members, adds and removes members, renames it', async () => {
    const created = await entra('POST', '/Groups', {
      schemas: [GROUP],
      externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159',
      displayName: 'Validator Group',
      members: [],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    groupId = String(created.body.id);
    const lookup = await entra(
      'GET',
      filter('Groups', 'displayName eq "Validator Group"', '&excludedAttributes=members'),
    );
    assert.equal(lookup.body.totalResults, 1);
    assert.equal(lookup.body.Resources?.[0]?.members, undefined);
    const add = await entra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Add', path: 'members', value: [{ value: id }, { value: second }] }],
    });
    assert.equal(add.status, 204, JSON.stringify(add.body));
    const members = async () =>
      ((await entra('GET', `/Groups/${groupId}`)).body.members as { value: string }[]).map((m) => m.value).sort();
    assert.deepEqual(await members(), [id, second].sort());
    const remove = await entra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Remove', path: `members[value eq "${second}"]` }],
    });
    assert.equal(remove.status, 204);
    assert.deepEqual(await members(), [id]);
    const member = await entra('GET', filter('Groups', `members[value eq "${id}"]`, '&excludedAttributes=members'));
    assert.equal(member.body.totalResults, 1, 'the group is found by its member');
    const rename = await entra('PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'displayName', value: 'Validator Group Renamed' }],
    });
    assert.equal(rename.status, 204);
    assert.equal((await entra('GET', `/Groups/${groupId}`)).body.displayName, 'Validator Group Renamed');
  });

  test('deletes the user and the group: 204, then 404; the group no longer lists the user', async () => {
    const deleted = await entra('DELETE', `/Users/${id}`);
    assert.equal(deleted.status, 204);
    assert.equal((await entra('GET', `/Users/${id}`)).status, 404);
    assert.deepEqual((await entra('GET', `/Groups/${groupId}`)).body.members, []);
    assert.equal((await entra('DELETE', `/Groups/${groupId}`)).status, 204);
    assert.equal((await entra('GET', `/Groups/${groupId}`)).status, 404);
  });
});
