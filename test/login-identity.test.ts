// What a login takes from the identity provider, against the real server and the real OIDC provider: the roles
// its groups give (one rule for a login and for identity mapping), and the email, which must be verified — the
// first login with an email owns that email's person, visas and roles.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, loginAs, type TestPerson } from './support/kubevisa-env.ts';
import { createScimToken, scim, startLightEnv, type LightEnv } from './support/identity.ts';

/** In the admin group and a mapped group, both spelled with another case than the configuration's. */
const dora: TestPerson = {
  sub: 'dora',
  email: 'dora@corp.example',
  password: 'dora-pw',
  groups: ['KubeVisa-Admins', 'KUBEVISA-AUDITORS'],
};

describe('one role rule for a login and for identity mapping', () => {
  let env: LightEnv;
  before(async () => {
    env = await startLightEnv(
      { scim: {}, identity: { groupMappings: [{ group: 'kubevisa-auditors', role: 'auditor' }] } },
      { accounts: [{ ...dora, name: 'Dora' }] },
    );
  });
  after(async () => {
    await env?.stop();
  });

  test('group names match whatever their case, at login and at every mapping pass, so the roles never flip', async () => {
    const session = await loginAs(env.serverUrl, dora);
    const created = (await env.server.store.listAudit({ action: 'session.created' })).find(
      (e) => e.actor === dora.email,
    );
    assert.deepEqual(
      created?.details.roles,
      ['admin', 'auditor'],
      'the login gave the configured role (roles.adminGroups) and the mapped one at once',
    );
    const me = async () => (await api(env.serverUrl, 'GET', '/api/v1/me', { token: session.token })).body.roles;
    assert.deepEqual(await me(), ['admin', 'auditor']);
    await env.server.capabilities.identity.lifecycle.reconcileAll();
    await env.server.capabilities.identity.lifecycle.applyMappings(dora.email, 'test');
    assert.deepEqual(await me(), ['admin', 'auditor'], 'a mapping pass agrees with the login');
    const changes = (await env.server.store.listAudit({ action: 'person.roles-changed' }))
      .filter((e) => e.details.email === dora.email)
      .map((e) => [e.details.before, e.details.after]);
    assert.deepEqual(changes, [], 'no mapping pass corrected what the login decided');
  });
});

/** Her login claim names no group; only the identity provider's SCIM provisioning puts her in a mapped one. */
const erin: TestPerson = { sub: 'erin', email: 'erin@corp.example', password: 'erin-pw', groups: [] };

describe('a login takes its mapped roles from the groups the sync would use (SCIM), not only from its claim', () => {
  let env: LightEnv;
  before(async () => {
    env = await startLightEnv(
      { scim: {}, identity: { groupMappings: [{ group: 'scim-auditors', idp: 'okta', role: 'auditor' }] } },
      { accounts: [{ ...erin, name: 'Erin' }] },
    );
  });
  after(async () => {
    await env?.stop();
  });

  test('a SCIM group mapped to a role gives it at the login itself, and no pass has to correct it', async () => {
    const okta = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
    const user = await scim(env.serverUrl, okta, 'POST', '/Users', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: erin.email,
      emails: [{ primary: true, value: erin.email }],
      active: true,
    });
    assert.equal(user.status, 201, JSON.stringify(user.body));
    const group = await scim(env.serverUrl, okta, 'POST', '/Groups', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
      displayName: 'scim-auditors',
      members: [{ value: String(user.body.id) }],
    });
    assert.equal(group.status, 201, JSON.stringify(group.body));

    await loginAs(env.serverUrl, erin);
    const created = (await env.server.store.listAudit({ action: 'session.created' })).find(
      (e) => e.actor === erin.email,
    );
    assert.deepEqual(created?.details.roles, ['auditor'], 'the login gave the mapped role at once');
    await env.server.capabilities.identity.lifecycle.applyMappings(erin.email, 'test');
    const changes = (await env.server.store.listAudit({ action: 'person.roles-changed' })).filter(
      (e) => e.details.email === erin.email,
    );
    assert.deepEqual(changes, [], 'the mapping pass after the login found nothing to change');
  });
});

/** The IdP sends no email_verified claim for Vic, `false` for Una, `true` for Val. */
const vic: TestPerson = { sub: 'vic', email: 'vic@vendor.example', password: 'vic-pw', groups: [] };
const una: TestPerson = { sub: 'una', email: 'una@vendor.example', password: 'una-pw', groups: [] };
const val: TestPerson = { sub: 'val', email: 'val@vendor.example', password: 'val-pw', groups: [] };
const accounts = [
  { ...vic, name: 'Vic', emailVerified: 'absent' as const },
  { ...una, name: 'Una', emailVerified: false },
  { ...val, name: 'Val', emailVerified: true },
];

describe('a login needs an email the identity provider says is verified', () => {
  let strict: LightEnv;
  let trusting: LightEnv;
  before(async () => {
    strict = await startLightEnv({ scim: {} }, { accounts });
    trusting = await startLightEnv({ scim: {} }, { accounts, oidc: { emailsVerifiedByIdp: true } });
  });
  after(async () => {
    await strict?.stop();
    await trusting?.stop();
  });

  const refusals = async (env: LightEnv, email: string) =>
    (await env.server.store.listAudit({ action: 'login.refused' })).filter((e) => e.actor === email);

  test('without an email_verified claim the login is refused with what to do, audited, and no person is made', async () => {
    await assert.rejects(
      loginAs(strict.serverUrl, vic),
      /did not say that vic@vendor\.example is verified \(no email_verified claim\).*oidc\.emailsVerifiedByIdp: true/,
    );
    const [refusal, ...more] = await refusals(strict, vic.email);
    assert.deepEqual(more, []);
    assert.equal(refusal?.outcome, 'refused');
    assert.equal(refusal?.details.reason, 'email_not_verified');
    assert.equal(refusal?.details.emailVerified, 'unknown');
    assert.equal(refusal?.details.subject, vic.sub);
    assert.equal(await strict.server.store.getPersonByEmail(vic.email), undefined, 'the email owns nothing');
  });

  test('email_verified: false is refused, and email_verified: true logs in', async () => {
    await assert.rejects(loginAs(strict.serverUrl, una), /says una@vendor\.example is not verified/);
    assert.equal((await refusals(strict, una.email))[0]?.details.emailVerified, 'unverified');
    const session = await loginAs(strict.serverUrl, val);
    assert.equal((await api(strict.serverUrl, 'GET', '/api/v1/me', { token: session.token })).status, 200);
  });

  test('with oidc.emailsVerifiedByIdp the missing claim is accepted, an explicit false still is not', async () => {
    const session = await loginAs(trusting.serverUrl, vic);
    const me = await api(trusting.serverUrl, 'GET', '/api/v1/me', { token: session.token });
    assert.equal(me.body.email, vic.email);
    await assert.rejects(loginAs(trusting.serverUrl, una), /not verified/);
  });
});
