// A SCIM identity provider acts only on the people it provisioned or that an admin linked to it, against the real
// server and the real OIDC provider with two SCIM clients (Okta and Entra ID tokens). Before, a second SCIM client
// could create a user with an admin's email and delete it (or set active=false): the admin was offboarded. Now
// such a user is refused with 409 uniqueness, audited and alerted, never merged, and the refusal names no other
// identity provider's user.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeSandbox, seedLogin } from '../src/cli/testing/run-cli.ts';
import { api, loginAs, people } from './support/kubevisa-env.ts';
import { createScimToken, scim, startLightEnv, type LightEnv, type ScimAnswer } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

/** Collects what the identity alert webhook receives. */
async function startAlertReceiver(): Promise<{ server: Server; url: string; texts: string[] }> {
  const texts: string[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      texts.push(String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { text?: unknown }).text));
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, texts };
}

let env: LightEnv;
let alerts: Awaited<ReturnType<typeof startAlertReceiver>>;
let okta: string;
let entra: string;
let coraAtOkta: string;
let cora: { token: string; sessionSecret: string };
let sam: string;

const asOkta = (method: string, path: string, body?: unknown) => scim(env.serverUrl, okta, method, path, body);
const asEntra = (method: string, path: string, body?: unknown) => scim(env.serverUrl, entra, method, path, body);
const user = (userName: string, email?: string, active = true) => ({
  schemas: [USER],
  userName,
  ...(email !== undefined ? { emails: [{ value: email, primary: true, type: 'work' }] } : {}),
  active,
});
const setActive = (as: typeof asOkta, id: string, active: boolean) =>
  as('PATCH', `/Users/${id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active } }] });
const statusOf = async (email: string) => (await env.server.store.getPersonByEmail(email))?.status;

function assertRefusedAsTaken(answer: ScimAnswer, mustNotName: string[]) {
  assert.equal(answer.status, 409, JSON.stringify(answer.body));
  assert.equal(answer.body.scimType, 'uniqueness');
  assert.deepEqual(answer.body.schemas, ['urn:ietf:params:scim:api:messages:2.0:Error']);
  const detail = String(answer.body.detail);
  for (const secret of mustNotName)
    assert.equal(detail.includes(secret), false, `the 409 names '${secret}': ${detail}`);
  return detail;
}

before(async () => {
  alerts = await startAlertReceiver();
  env = await startLightEnv({ scim: {}, identity: { offboarding: { alertWebhook: alerts.url } } });
  okta = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
  entra = (await createScimToken(env.serverUrl, env.admin, 'entra')).token;
  sam = env.admin;
  // Okta provisions cora before her first login: Okta is linked to her email.
  const created = await asOkta('POST', '/Users', user(people.cora.email, people.cora.email));
  assert.equal(created.status, 201, JSON.stringify(created.body));
  coraAtOkta = String(created.body.id);
  cora = await loginAs(env.serverUrl, people.cora);
});
after(async () => {
  await env?.stop();
  await new Promise((resolve) => alerts?.server.close(resolve));
});

describe('an identity provider cannot take over a person another one provisioned', () => {
  test('a user with that email is refused with 409 uniqueness, names no other user, is not merged, and is audited and alerted', async () => {
    const usersBefore = (await env.server.store.listScimUsers()).length;
    const detail = assertRefusedAsTaken(await asEntra('POST', '/Users', user('cora-at-entra', people.cora.email)), [
      coraAtOkta,
      'okta',
    ]);
    assert.match(detail, /kubevisa identity link cora@vendor\.example --idp entra/);
    // The same address in another case, in a work email that is not primary: the same person.
    assertRefusedAsTaken(
      await asEntra('POST', '/Users', {
        schemas: [USER],
        userName: 'cora.vendor',
        emails: [{ value: people.cora.email.toUpperCase(), type: 'work' }],
      }),
      [coraAtOkta],
    );
    // Okta's own userName is taken, and the 409 does not hand Entra Okta's user id.
    assertRefusedAsTaken(await asEntra('POST', '/Users', user(people.cora.email, 'other@vendor.example')), [
      coraAtOkta,
    ]);
    assert.equal((await env.server.store.listScimUsers()).length, usersBefore, 'nothing was created');
    assert.deepEqual(
      (await env.server.store.listScimLinks({ email: people.cora.email })).map((l) => [l.idp, l.how]),
      [['okta', 'provisioned']],
    );

    const refusals = (await env.server.store.listAudit({ action: 'scim.user.refused' })).filter(
      (e) => e.details.email === people.cora.email,
    );
    assert.equal(refusals.length, 2);
    assert.equal(refusals[0]?.actor, 'scim:entra');
    assert.equal(refusals[0]?.outcome, 'refused');
    assert.deepEqual(refusals[0]?.details.linkedTo, ['okta'], 'the admins see which identity provider holds her');
    assert.equal(refusals[0]?.details.why, 'linked-elsewhere');
    assert.ok(
      (await env.server.store.listAudit({ action: 'identity.alert' })).some((e) =>
        String(e.reason).includes(`'entra' sent user 'cora-at-entra' with the email ${people.cora.email}`),
      ),
    );
    assert.ok(
      alerts.texts.some((text) => text.includes('cora-at-entra') && text.includes('kubevisa identity link')),
      `the alert webhook was told: ${JSON.stringify(alerts.texts)}`,
    );

    assert.equal(await statusOf(people.cora.email), 'active');
    assert.equal((await api(env.serverUrl, 'GET', '/api/v1/me', { token: cora.token })).status, 200);
  });

  test('an admin who only ever logged in through OIDC cannot be created, renamed into, deactivated or deleted by a SCIM client', async () => {
    assertRefusedAsTaken(await asEntra('POST', '/Users', user('sam-at-entra', people.sam.email)), []);
    const refusal = (await env.server.store.listAudit({ action: 'scim.user.refused' })).at(-1);
    assert.equal(refusal?.details.why, 'existing-person');

    // A user of its own, then its email changed to the admin's: refused the same way, the user unchanged.
    const decoy = await asEntra('POST', '/Users', user('decoy@vendor.example', 'decoy@vendor.example'));
    assert.equal(decoy.status, 201, JSON.stringify(decoy.body));
    const id = String(decoy.body.id);
    assertRefusedAsTaken(
      await asEntra('PATCH', `/Users/${id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'emails[type eq "work"].value', value: people.sam.email }],
      }),
      [],
    );
    assertRefusedAsTaken(await asEntra('PUT', `/Users/${id}`, user('decoy@vendor.example', people.sam.email)), []);
    const stored = await env.server.store.getScimUser(id);
    assert.equal(stored?.email, 'decoy@vendor.example');
    assert.equal(stored?.version, 1);

    assert.equal((await setActive(asEntra, id, false)).status, 200);
    assert.equal((await asEntra('DELETE', `/Users/${id}`)).status, 204);
    assert.equal(await statusOf(people.sam.email), 'active');
    const samPerson = await env.server.store.getPersonByEmail(people.sam.email);
    assert.deepEqual(await env.server.store.listOffboardings({ personId: samPerson!.id }), []);
    const persons = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: sam });
    assert.equal(persons.status, 200, 'the admin still administers');
  });

  test('the identity provider that provisioned someone still offboards and reactivates them', async () => {
    assert.equal((await setActive(asOkta, coraAtOkta, false)).status, 200);
    assert.equal(await statusOf(people.cora.email), 'suspended');
    assert.equal((await setActive(asOkta, coraAtOkta, true)).status, 200);
    assert.equal(await statusOf(people.cora.email), 'active');
    cora = await loginAs(env.serverUrl, people.cora);
  });
});

describe('an admin links and unlinks identity providers', () => {
  let coraAtEntra: string;

  test('only an admin links; a linked identity provider then provisions and offboards the person too', async () => {
    const body = {
      person: people.cora.email,
      idp: 'entra',
      reason: 'CHG-42: Entra provisions contractors from now on',
    };
    const refused = await api(env.serverUrl, 'POST', '/api/v1/identity/links', { token: cora.token, body });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    const linked = await api(env.serverUrl, 'POST', '/api/v1/identity/links', { token: sam, body });
    assert.equal(linked.status, 201, JSON.stringify(linked.body));
    assert.deepEqual(
      { idp: linked.body.idp, how: linked.body.how, by: linked.body.by, reason: linked.body.reason },
      { idp: 'entra', how: 'linked', by: people.sam.email, reason: body.reason },
    );
    assert.equal((await api(env.serverUrl, 'POST', '/api/v1/identity/links', { token: sam, body })).status, 409);
    const listed = await api(
      env.serverUrl,
      'GET',
      `/api/v1/identity/links?person=${encodeURIComponent(people.cora.email)}`,
      {
        token: sam,
      },
    );
    assert.deepEqual(
      (listed.body.items ?? []).map((l) => [l.idp, l.how]),
      [
        ['okta', 'provisioned'],
        ['entra', 'linked'],
      ],
    );
    assert.ok(
      (await env.server.store.listAudit({ action: 'identity.link.created' })).some(
        (e) => e.actor === people.sam.email && e.details.idp === 'entra' && e.reason === body.reason,
      ),
    );

    const created = await asEntra('POST', '/Users', user('cora-at-entra', people.cora.email));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    coraAtEntra = String(created.body.id);
    // Two identity providers legitimately provision her: either deactivating her suspends her (fail closed).
    assert.equal((await setActive(asEntra, coraAtEntra, false)).status, 200);
    assert.equal(await statusOf(people.cora.email), 'suspended');
    assert.equal((await setActive(asEntra, coraAtEntra, true)).status, 200);
    assert.equal(await statusOf(people.cora.email), 'active');
    cora = await loginAs(env.serverUrl, people.cora);
  });

  test('once unlinked, an identity provider keeps its user but its deactivation and deletion no longer reach the person', async () => {
    const unlinked = await api(
      env.serverUrl,
      'DELETE',
      `/api/v1/identity/links/entra/${encodeURIComponent(people.cora.email)}`,
      { token: sam },
    );
    assert.equal(unlinked.status, 200, JSON.stringify(unlinked.body));
    assert.equal(
      (
        await api(env.serverUrl, 'DELETE', `/api/v1/identity/links/entra/${encodeURIComponent(people.cora.email)}`, {
          token: sam,
        })
      ).status,
      404,
    );
    assert.equal(
      (await setActive(asEntra, coraAtEntra, false)).status,
      200,
      'the identity provider is answered as usual',
    );
    assert.equal(await statusOf(people.cora.email), 'active');
    // Its inactive user does not keep her from logging in either.
    const again = await loginAs(env.serverUrl, people.cora);
    assert.equal((await api(env.serverUrl, 'GET', '/api/v1/me', { token: again.token })).status, 200);
    assert.equal((await asEntra('DELETE', `/Users/${coraAtEntra}`)).status, 204);
    assert.equal(await statusOf(people.cora.email), 'active');
    const ignored = (await env.server.store.listAudit({ action: 'scim.user.ignored' })).map((e) => e.reason);
    assert.ok(
      ignored.some((reason) => /entra is not linked to cora@vendor\.example: its active=false/.test(String(reason))),
    );
    assert.ok(ignored.some((reason) => /its deletion does not act on the person/.test(String(reason))));
    assert.ok(
      (await env.server.store.listAudit({ action: 'identity.link.deleted' })).some(
        (e) => e.actor === people.sam.email && e.details.idp === 'entra',
      ),
    );
  });
});

describe('kubevisa identity link, links and unlink (the CLI against the real server)', () => {
  test('an admin links eve to okta, sees the link, and removes it; a missing --reason is a usage error', async () => {
    const sandbox = await makeSandbox();
    try {
      await seedLogin(sandbox, env.serverUrl, {
        accessToken: sam,
        accessTokenExpiresAt: new Date(Date.now() + 9 * 60_000).toISOString(),
      });
      const usage = await sandbox.run(['identity', 'link', people.eve.email, '--idp', 'okta']);
      assert.equal(usage.code, 2, usage.stderr);
      assert.match(usage.stderr, /missing --reason/);
      const linked = await sandbox.runOk([
        'identity',
        'link',
        people.eve.email,
        '--idp',
        'okta',
        '--reason',
        'Okta manages staff',
      ]);
      assert.match(linked.stdout, /eve@corp\.example is linked to okta/);
      const listed = await sandbox.runOk(['identity', 'links', people.eve.email]);
      assert.match(listed.stdout, /eve@corp\.example\s+okta\s+linked\s+sam@corp\.example/);
      const all = JSON.parse((await sandbox.runOk(['identity', 'links', '-o', 'json'])).stdout) as {
        items: { email: string }[];
      };
      assert.ok(all.items.some((l) => l.email === people.cora.email));
      const unlinked = await sandbox.runOk(['identity', 'unlink', people.eve.email, '--idp', 'okta']);
      assert.match(unlinked.stdout, /no longer linked to okta/);
      const again = await sandbox.run(['identity', 'unlink', people.eve.email, '--idp', 'okta']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /is not linked to identity provider 'okta'/);
    } finally {
      await sandbox.remove();
    }
  });
});

describe('identity.claimExistingPeople', () => {
  let claiming: LightEnv;
  before(async () => {
    claiming = await startLightEnv({ scim: {}, identity: { claimExistingPeople: ['okta'] } });
  });
  after(async () => {
    await claiming?.stop();
  });

  test('lets the named identity provider take charge of people who logged in before any provisioned them, and no other', async () => {
    const oktaToken = (await createScimToken(claiming.serverUrl, claiming.admin, 'okta')).token;
    const entraToken = (await createScimToken(claiming.serverUrl, claiming.admin, 'entra')).token;
    await loginAs(claiming.serverUrl, people.ann);
    await loginAs(claiming.serverUrl, people.eve);
    const claimed = await scim(
      claiming.serverUrl,
      oktaToken,
      'POST',
      '/Users',
      user(people.ann.email, people.ann.email),
    );
    assert.equal(claimed.status, 201, JSON.stringify(claimed.body));
    assert.deepEqual(
      (await claiming.server.store.listScimLinks({ email: people.ann.email })).map((l) => [l.idp, l.how]),
      [['okta', 'claimed']],
    );
    const audited = (await claiming.server.store.listAudit({ action: 'identity.link.created' })).find(
      (e) => e.details.email === people.ann.email,
    );
    assert.match(String(audited?.reason), /okta took charge of ann@corp\.example, who existed/);
    const refused = await scim(
      claiming.serverUrl,
      entraToken,
      'POST',
      '/Users',
      user(people.eve.email, people.eve.email),
    );
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.scimType, 'uniqueness');
  });
});
