// SCIM requests built to reach object prototypes, against the real server and the real OIDC provider. The
// PATCH library kubevisa used to run wrote `__proto__.role`, `constructor.prototype.x`, a value key
// `"__proto__.x"` and `toString.x` into the server's prototypes: every mapped person became an admin at the next
// mapping pass, and `revokedAt` ended every session. Each attack is one line of the table below (id, attack,
// expected refusal); after each one nothing in the server process has gained a property, and after all of them
// every person keeps their roles and every session still works through a mapping pass.
//
// The server runs in this process (startLightEnv), so "nothing gained a property" is checked on the very
// prototypes the server uses.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { api, cliPath, loginAs, people, type TestPerson } from './support/kubevisa-env.ts';
import { createScimToken, scim, startLightEnv, type LightEnv, type ScimAnswer } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
/** Properties an attack below tries to plant on a prototype. */
const PLANTED = ['role', 'revokedAt', 'polluted', 'engagement', 'idp'];

let env: LightEnv;
let okta: string;
let userId: string;
let groupId: string;
const sessions = new Map<string, { token: string; sessionSecret: string }>();
let rolesBefore: Map<string, string[]>;

before(async () => {
  env = await startLightEnv({
    scim: {},
    identity: { groupMappings: [{ group: 'scim-auditors', idp: 'okta', role: 'auditor' }] },
  });
  okta = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
  const created = await scim(env.serverUrl, okta, 'POST', '/Users', {
    schemas: [USER],
    userName: people.cora.email,
    name: { givenName: 'Cora', familyName: 'Vendor' },
    emails: [{ value: people.cora.email, type: 'work', primary: true }],
    active: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  userId = String(created.body.id);
  const group = await scim(env.serverUrl, okta, 'POST', '/Groups', { schemas: [GROUP], displayName: 'scim-auditors' });
  assert.equal(group.status, 201, JSON.stringify(group.body));
  groupId = String(group.body.id);
  for (const person of [people.sam, people.cora, people.ann, people.eve] satisfies TestPerson[]) {
    sessions.set(person.email, await loginAs(env.serverUrl, person));
  }
  rolesBefore = await rolesOfEveryone();
  assert.deepEqual(rolesBefore.get(people.sam.email), ['admin']);
  assert.deepEqual(rolesBefore.get(people.cora.email), []);
});
after(async () => {
  await env?.stop();
});

async function rolesOfEveryone(): Promise<Map<string, string[]>> {
  const listed = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: sessions.get(people.sam.email)!.token });
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  return new Map((listed.body.items ?? []).map((p) => [String(p.email), p.roles as string[]]));
}

function assertScimError(answer: ScimAnswer, scimType: string) {
  assert.equal(answer.status, 400, JSON.stringify(answer.body));
  assert.match(answer.contentType, /application\/scim\+json/);
  assert.deepEqual(answer.body.schemas, [ERROR]);
  assert.equal(answer.body.status, '400');
  assert.equal(answer.body.scimType, scimType, String(answer.body.detail));
  assert.equal(typeof answer.body.detail, 'string');
}

function assertPrototypesClean() {
  const probes: Record<string, unknown>[] = [
    {},
    [] as never,
    Object.create(Object.prototype) as Record<string, unknown>,
  ];
  for (const probe of probes) {
    for (const name of PLANTED)
      assert.equal(probe[name], undefined, `a prototype in the server process gained '${name}'`);
  }
  assert.equal((Object.prototype.toString as unknown as Record<string, unknown>).polluted, undefined);
}

const patchOf = (operations: string) => `{"schemas":["${PATCH}"],"Operations":${operations}}`;

/**
 * The attack table. Bodies are raw JSON text, as an attacker sends them: `__proto__` stays an own key, which an
 * object literal in this file could not express.
 */
const attacks: { id: string; attack: string; method: string; path: () => string; body: string; scimType: string }[] = [
  {
    id: 'SCIM-PROTO-01',
    attack: 'PATCH a user at path __proto__.role',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"__proto__.role","value":"admin"}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-02',
    attack: 'PATCH a user at path constructor.prototype.role',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"constructor.prototype.role","value":"admin"}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-03',
    attack: 'PATCH a user without a path, value key "__proto__.role"',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","value":{"__proto__.role":"admin"}}]'),
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-04',
    attack: 'PATCH a user without a path, value key "constructor.prototype.revokedAt"',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"replace","value":{"constructor.prototype.revokedAt":1}}]'),
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-05',
    attack: 'PATCH a user at path __proto__.revokedAt (ends every session if it lands)',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"replace","path":"__proto__.revokedAt","value":1}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-06',
    attack: 'PATCH a user at path toString.polluted (a prototype method)',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"toString.polluted","value":"x"}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-07',
    attack: 'PATCH a user at path Constructor.Prototype.role (another case)',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"Constructor.Prototype.role","value":"admin"}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-08',
    attack: 'PATCH a user with __proto__ nested in a value',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"name","value":{"inner":{"__proto__":{"role":"admin"}}}}]'),
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-09',
    attack: 'PATCH a user with constructor.prototype nested in a list value',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"add","path":"emails","value":[{"constructor":{"prototype":{"role":"admin"}}}]}]'),
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-10',
    attack: 'PATCH a user at a sub-attribute named __proto__ after a filter',
    method: 'PATCH',
    path: () => `/Users/${userId}`,
    body: patchOf('[{"op":"replace","path":"emails[type eq \\"work\\"].__proto__","value":{"role":"admin"}}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-11',
    attack: 'PATCH a group at path __proto__.role',
    method: 'PATCH',
    path: () => `/Groups/${groupId}`,
    body: patchOf('[{"op":"add","path":"__proto__.role","value":"admin"}]'),
    scimType: 'invalidPath',
  },
  {
    id: 'SCIM-PROTO-12',
    attack: 'PATCH a group, a member carrying a __proto__ key',
    method: 'PATCH',
    path: () => `/Groups/${groupId}`,
    body: patchOf('[{"op":"add","path":"members","value":[{"value":"USER_ID","__proto__":{"role":"admin"}}]}]'),
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-13',
    attack: 'POST a user whose body has an own __proto__ key',
    method: 'POST',
    path: () => '/Users',
    body: `{"schemas":["${USER}"],"userName":"proto@vendor.example","__proto__":{"role":"admin","revokedAt":1}}`,
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-14',
    attack: 'PUT a user with constructor.prototype in its body',
    method: 'PUT',
    path: () => `/Users/${userId}`,
    body: `{"schemas":["${USER}"],"userName":"${people.cora.email}","constructor":{"prototype":{"role":"admin"}}}`,
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-15',
    attack: 'POST a group whose body has an own __proto__ key',
    method: 'POST',
    path: () => '/Groups',
    body: `{"schemas":["${GROUP}"],"displayName":"proto-group","__proto__":{"role":"admin"}}`,
    scimType: 'invalidValue',
  },
  {
    id: 'SCIM-PROTO-16',
    attack: 'PUT a group with __proto__ inside a member',
    method: 'PUT',
    path: () => `/Groups/${groupId}`,
    body: `{"schemas":["${GROUP}"],"displayName":"scim-auditors","members":[{"value":"x","__proto__":{"role":"admin"}}]}`,
    scimType: 'invalidValue',
  },
];

describe('SCIM requests aimed at object prototypes are refused and change nothing', () => {
  for (const attack of attacks) {
    test(`${attack.id} ${attack.attack}: 400 ${attack.scimType}`, async () => {
      const userBefore = await env.server.store.getScimUser(userId);
      const groupBefore = await env.server.store.getScimGroup(groupId);
      const usersBefore = (await env.server.store.listScimUsers()).length;
      const body = attack.body.replace('USER_ID', userId);
      assertScimError(await scim(env.serverUrl, okta, attack.method, attack.path(), body), attack.scimType);
      assertPrototypesClean();
      assert.deepEqual(await env.server.store.getScimUser(userId), userBefore, 'the user is unchanged');
      assert.deepEqual(await env.server.store.getScimGroup(groupId), groupBefore, 'the group is unchanged');
      assert.equal((await env.server.store.listScimUsers()).length, usersBefore, 'nothing was created');
    });
  }
});

describe('after every attack', () => {
  test('a mapping pass gives nobody a role, and every session still works', async () => {
    await env.server.capabilities.identity.lifecycle.reconcileAll();
    // A real group change runs the mapping for cora: she is an auditor while in the group, and only then.
    const added = await scim(env.serverUrl, okta, 'PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: userId }] }],
    });
    assert.equal(added.status, 204, JSON.stringify(added.body));
    assert.deepEqual((await rolesOfEveryone()).get(people.cora.email), ['auditor']);
    const removed = await scim(env.serverUrl, okta, 'PATCH', `/Groups/${groupId}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${userId}"]` }],
    });
    assert.equal(removed.status, 204, JSON.stringify(removed.body));
    assertPrototypesClean();

    assert.deepEqual(await rolesOfEveryone(), rolesBefore, 'every person has the roles they had before the attacks');
    for (const [email, session] of sessions) {
      const me = await api(env.serverUrl, 'GET', '/api/v1/me', { token: session.token });
      assert.equal(me.status, 200, `${email}: ${JSON.stringify(me.body)}`);
      assert.deepEqual(me.body.roles, rolesBefore.get(email), `${email} keeps their roles`);
      const renewed = await api(env.serverUrl, 'POST', '/api/v1/sessions/token', {
        body: { sessionSecret: session.sessionSecret },
      });
      assert.equal(
        renewed.status,
        200,
        `${email}'s session still sells access tokens: ${JSON.stringify(renewed.body)}`,
      );
    }
  });
});

describe('every kubevisa process runs with --disable-proto=throw', () => {
  test('this test process (node --test passes the flag on to each file), so the in-process server too', () => {
    assert.throws(
      () => (({}) as Record<string, unknown>)['__proto__'],
      /disallowed with --disable-proto=throw/,
      'run the tests through scripts/test.sh, which starts node --test with --disable-proto=throw',
    );
  });

  test('worker threads inherit it (the gateway audit writer and the audit verifier start workers)', async () => {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       let result = 'allowed';
       try { ({}).__proto__; } catch { result = 'throws'; }
       parentPort.postMessage(result);`,
      { eval: true },
    );
    try {
      const result = await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      assert.equal(result, 'throws');
    } finally {
      await worker.terminate();
    }
  });

  test('bin/kubevisa, which runs the CLI and `kubevisa server`', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-proto-'));
    try {
      const probe = join(dir, 'probe.mjs');
      await writeFile(
        probe,
        'let result = "allowed"; try { ({}).__proto__; } catch { result = "throws"; } console.log(`proto:${result}`); process.exit(0);\n',
      );
      const output = await new Promise<string>((resolve, reject) => {
        const child = spawn(cliPath, ['version'], {
          env: { ...process.env, NODE_OPTIONS: `--import=${probe}` },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
        child.once('error', reject);
        child.once('exit', () => resolve(text));
      });
      assert.match(output, /proto:throws/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
