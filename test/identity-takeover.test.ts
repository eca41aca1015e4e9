// Taking over someone through identity, against the real server and the real OIDC provider: an identity provider
// that provisions an admin's email before the admin's first login, and a verification claim sent as a string.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { USER_SCHEMA } from '../src/scim/schema.ts';
import { api, loginAs, type TestPerson } from './support/kubevisa-env.ts';
import { createScimToken, scim, startLightEnv, type LightEnv } from './support/identity.ts';

/** An admin by email in the server configuration who has not logged in yet. */
const ada: TestPerson = { sub: 'ada', email: 'ada@corp.example', password: 'ada-pw', groups: [] };
/** An auditor by email, likewise. */
const aud: TestPerson = { sub: 'aud', email: 'aud@corp.example', password: 'aud-pw', groups: [] };

describe('a SCIM identity provider and the people the configuration names', () => {
  let env: LightEnv;
  before(async () => {
    env = await startLightEnv(
      {
        scim: {},
        identity: {},
        roles: { admins: [ada.email], auditors: [aud.email], adminGroups: ['kubevisa-admins'] },
      } as { scim: unknown },
      {
        accounts: [
          { ...ada, name: 'Ada' },
          { ...aud, name: 'Aud' },
        ],
      },
    );
  });
  after(async () => {
    await env?.stop();
  });

  test('cannot take charge of an admin or auditor named in the configuration before their first login, so it cannot offboard them later', async () => {
    const entra = (await createScimToken(env.serverUrl, env.admin, 'entra')).token;
    for (const who of [ada, aud]) {
      const created = await scim(env.serverUrl, entra, 'POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: who.email.toUpperCase(),
        emails: [{ value: who.email, primary: true }],
      });
      assert.equal(created.status, 409, JSON.stringify(created.body));
      assert.equal(created.body.scimType, 'uniqueness');
      assert.match(String(created.body.detail), /kubevisa identity link .* --idp entra/);
    }
    const refused = await env.server.store.listAudit({ action: 'scim.user.refused' });
    assert.deepEqual(refused.map((e) => e.details.email).sort(), [ada.email, aud.email]);
    assert.deepEqual(await env.server.store.listScimLinks({ email: ada.email }), []);

    const session = await loginAs(env.serverUrl, ada);
    const me = await api(env.serverUrl, 'GET', '/api/v1/me', { token: session.token });
    assert.deepEqual(me.body.roles, ['admin']);
    assert.equal((await env.server.store.getPersonByEmail(ada.email))?.status, 'active');
  });
});

const fay: TestPerson = { sub: 'fay', email: 'fay@vendor.example', password: 'fay-pw', groups: [] };
const nat: TestPerson = { sub: 'nat', email: 'nat@vendor.example', password: 'nat-pw', groups: [] };
const tia: TestPerson = { sub: 'tia', email: 'tia@vendor.example', password: 'tia-pw', groups: [] };

describe('email_verified sent in another shape than a boolean', () => {
  let trusting: LightEnv;
  before(async () => {
    trusting = await startLightEnv(
      { scim: {} },
      {
        accounts: [
          { ...fay, name: 'Fay', emailVerified: 'False' },
          { ...nat, name: 'Nat', emailVerified: 'no' },
          { ...tia, name: 'Tia', emailVerified: 'TRUE' },
        ],
        oidc: { emailsVerifiedByIdp: true },
      },
    );
  });
  after(async () => {
    await trusting?.stop();
  });

  test('a claim that is sent and is not true is refused even where the IdP vouches for the emails it issues; "TRUE" logs in', async () => {
    await assert.rejects(loginAs(trusting.serverUrl, fay), /says fay@vendor\.example is not verified/);
    await assert.rejects(loginAs(trusting.serverUrl, nat), /says nat@vendor\.example is not verified/);
    for (const who of [fay, nat]) assert.equal(await trusting.server.store.getPersonByEmail(who.email), undefined);
    const refusals = await trusting.server.store.listAudit({ action: 'login.refused' });
    assert.deepEqual(refusals.map((e) => [e.actor, e.details.emailVerified]).sort(), [
      [fay.email, 'unverified'],
      [nat.email, 'unverified'],
    ]);
    const session = await loginAs(trusting.serverUrl, tia);
    assert.equal((await api(trusting.serverUrl, 'GET', '/api/v1/me', { token: session.token })).status, 200);
  });
});
