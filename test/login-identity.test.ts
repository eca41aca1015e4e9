// What a login takes from the identity provider, against the real server and the real OIDC provider: the roles
// its groups give (one rule for a login and for identity mapping).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { identityOf } from '../src/identity/wire.ts';
import { api, loginAs, type TestPerson } from './support/kubevisa-env.ts';
import { startLightEnv, type LightEnv } from './support/identity.ts';

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
    assert.deepEqual(created?.details.roles, ['admin'], 'the login gave the configured role (roles.adminGroups)');
    const me = async () => (await api(env.serverUrl, 'GET', '/api/v1/me', { token: session.token })).body.roles;
    assert.deepEqual(await me(), ['admin', 'auditor'], 'and the mapping after the login added the mapped role');
    await identityOf(env.server.context).lifecycle.reconcileAll();
    await identityOf(env.server.context).lifecycle.applyMappings(dora.email, 'test');
    assert.deepEqual(await me(), ['admin', 'auditor'], 'a mapping pass agrees with the login');
    const changes = (await env.server.store.listAudit({ action: 'person.roles-changed' }))
      .filter((e) => e.details.email === dora.email)
      .map((e) => [e.details.before, e.details.after]);
    assert.deepEqual(
      changes,
      [[['admin'], ['admin', 'auditor']]],
      'the only change is the mapped role: no pass corrected what the login decided',
    );
  });
});
