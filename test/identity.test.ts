// The identity lifecycle end to end, on the real control plane with the real OIDC provider and the real server
// (TLS, so the gateway runs too): onboarding from SCIM groups, offboarding from SCIM, from the directory sync and
// from a refused IdP refresh, each with a receipt in which every step is proven by a live call.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { serviceAccountName } from '../src/domain/names.ts';
import { serveDevIdpDirectory, type DevIdpDirectoryServer } from '../src/dev/idp-directory.ts';
import type { Receipt } from '../src/identity/receipt.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectl, kubectlBackground } from './support/kubectl.ts';
import { createScimToken, scim, trustScimCa, withIdentitySections } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

let env: KubevisaEnv;
let directory: DevIdpDirectoryServer;
let admin: string;
let approver: string;
let okta: string;
let entra: string;
const scimIds: Record<string, string> = {};
const groupIds: Record<string, string> = {};

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
const asOkta = (method: string, path: string, body?: unknown) => scim(env.serverUrl, okta, method, path, body);
const asEntra = (method: string, path: string, body?: unknown) => scim(env.serverUrl, entra, method, path, body);
const k = (args: string[], kubeconfig: string) =>
  kubectl(env.cp.binaries.kubectl, args, { kubeconfig, timeoutMs: 15_000 });

function engagementMapping(group: string, name: string) {
  return {
    group,
    engagement: {
      name,
      vendor: `Vendor of ${name}`,
      sponsor: people.sam.email,
      endsAt: inDays(30),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['id-*'], profiles: ['viewer', 'developer'] },
      maxVisaDuration: '8h',
    },
  };
}

before(async () => {
  env = await startKubevisaEnv({ tls: true, autoApproval: false });
  trustScimCa(await readFile(env.config.tls!.caFile!));
  for (const ns of ['id-acme', 'id-beta', 'id-sync', 'id-refresh']) await env.kOk(['create', 'namespace', ns]);
  // A pod for `kubectl get pods -w` to show (the kwok node runs it).
  await eventually(
    'default ServiceAccount in id-acme',
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', 'id-acme'])).code === 0,
  );
  await env.kOk(['run', 'app', '-n', 'id-acme', '--image=registry.example/app:1']);
  directory = await serveDevIdpDirectory({ idp: env.idp, accounts: Object.values(people) });
  withIdentitySections(env.config, {
    scim: {},
    identity: {
      groupMappings: [
        engagementMapping('scim-acme', 'acme'),
        engagementMapping('scim-beta', 'beta'),
        engagementMapping('vendor-acme', 'acme-dir'),
        { group: 'scim-auditors', role: 'auditor' },
        { ...engagementMapping('scim-gamma', 'gamma'), idp: 'okta' },
        { group: 'scim-admins', idp: 'okta', role: 'admin' },
      ],
      sync: { provider: 'dev-idp', url: directory.url, token: directory.token, interval: '1h', maxOffboardsPerRun: 1 },
      offboarding: { retryInterval: '1s', wait: '40s' },
    },
  });
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  okta = (await createScimToken(env.serverUrl, admin, 'okta')).token;
  // Okta provisions cora and puts her in two mapped groups.
  const created = await asOkta('POST', '/Users', {
    schemas: [USER],
    userName: people.cora.email,
    name: { givenName: 'Cora', familyName: 'Vendor' },
    emails: [{ primary: true, value: people.cora.email, type: 'work' }],
    externalId: '00u-cora',
    active: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  scimIds.cora = String(created.body.id);
  for (const name of ['scim-acme', 'scim-beta', 'scim-auditors']) {
    const group = await asOkta('POST', '/Groups', { schemas: [GROUP], displayName: name, members: [] });
    assert.equal(group.status, 201, JSON.stringify(group.body));
    groupIds[name] = String(group.body.id);
  }
  for (const name of ['scim-acme', 'scim-beta']) {
    const added = await asOkta('PATCH', `/Groups/${groupIds[name]}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: scimIds.cora, display: people.cora.email }] }],
    });
    assert.equal(added.status, 204, JSON.stringify(added.body));
  }
});
after(async () => {
  await env?.stop();
  await directory?.stop();
});

async function requestAndApprove(token: string, engagement: string, namespace: string) {
  const requested = await call('POST', '/api/v1/visas', token, {
    engagement,
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces: [namespace],
    duration: '2h',
    reason: 'identity test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await eventually(
    `RoleBinding for ${String(approved.body.id)}`,
    10_000,
    async () =>
      (await env.k(['get', 'rolebinding', `kubevisa-${String(approved.body.id)}`, '-n', namespace])).code === 0,
  );
  return approved.body;
}

async function directKubeconfig(token: string, name: string) {
  const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, token);
  assert.equal(credential.status, 200, JSON.stringify(credential.body));
  return env.cp.writeTokenKubeconfig(String(credential.body.token), name);
}

async function receiptsOf(email: string): Promise<Receipt[]> {
  const listed = await call('GET', `/api/v1/offboardings?person=${encodeURIComponent(email)}`, admin);
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  return (listed.body.items ?? []) as unknown as Receipt[];
}

async function provenReceipt(email: string, trigger: string): Promise<Receipt> {
  let found: Receipt | undefined;
  let latest: Receipt | undefined;
  try {
    await eventually(`a proven ${trigger} receipt for ${email}`, 40_000, async () => {
      const mine = (await receiptsOf(email)).filter((r) => r.trigger.kind === trigger);
      latest = mine.at(-1);
      found = mine.find((r) => r.status === 'proven');
      return found !== undefined;
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}; the receipt says: ${latest?.summary ?? 'no receipt at all'}`);
  }
  return found!;
}

function assertEveryStepProven(receipt: Receipt) {
  const ids = receipt.steps.map((s) => s.id);
  for (const expected of [
    'person-status',
    'visas',
    'sessions',
    'access-token',
    `cluster/${CLUSTER}/rolebindings`,
    `cluster/${CLUSTER}/serviceaccount`,
    `cluster/${CLUSTER}/permissions`,
    `cluster/${CLUSTER}/token`,
  ]) {
    assert.ok(ids.includes(expected), `the receipt has step ${expected}`);
  }
  for (const step of receipt.steps) {
    assert.equal(step.status, 'proven', `${step.step}: ${step.detail}`);
    assert.equal(step.ok, true);
    assert.ok(step.provenAt, `${step.step} says when it was proven`);
  }
  assert.equal(receipt.status, 'proven');
  assert.match(receipt.summary, /All \d+ steps proven/);
}

describe('onboarding from SCIM groups', () => {
  test('creates the mapped engagements with the member as contractor, before she ever logs in', async () => {
    const engagements = await env.server!.store.listEngagements({ status: 'active' });
    for (const name of ['acme', 'beta']) {
      const engagement = engagements.find((e) => e.name === name);
      assert.ok(engagement, `engagement ${name} exists`);
      assert.deepEqual(engagement.contractors, [people.cora.email]);
      assert.equal(engagement.sponsor, people.sam.email);
    }
    const mappings = await call('GET', '/api/v1/identity/mappings', admin);
    assert.equal(mappings.status, 200);
    assert.ok(
      (mappings.body.items ?? []).some(
        (m) => m.engagement === 'acme' && (m.contractors as string[]).includes(people.cora.email),
      ),
    );
  });

  test('a role mapping gives the role while the person is in the group, and takes it back', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    assert.deepEqual((await call('GET', '/api/v1/me', cora.token)).body.roles, []);
    await asOkta('PATCH', `/Groups/${groupIds['scim-auditors']}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: scimIds.cora }] }],
    });
    assert.deepEqual((await call('GET', '/api/v1/me', cora.token)).body.roles, ['auditor']);
    await asOkta('PATCH', `/Groups/${groupIds['scim-auditors']}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${scimIds.cora}"]` }],
    });
    assert.deepEqual((await call('GET', '/api/v1/me', cora.token)).body.roles, []);
  });

  test('group removal revokes only the visas under that engagement', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const acmeVisa = await requestAndApprove(cora.token, 'acme', 'id-acme');
    const betaVisa = await requestAndApprove(cora.token, 'beta', 'id-beta');
    const kubeconfig = await directKubeconfig(cora.token, 'cora-groups');
    assert.equal((await k(['get', 'pods', '-n', 'id-beta'], kubeconfig)).code, 0);

    const removed = await asOkta('PATCH', `/Groups/${groupIds['scim-beta']}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${scimIds.cora}"]` }],
    });
    assert.equal(removed.status, 204);
    const beta = await call('GET', `/api/v1/visas/${String(betaVisa.id)}`, admin);
    assert.equal(beta.body.state, 'revoked', 'revoked before the SCIM answer');
    assert.match(String(beta.body.endReason), /removed from engagement 'beta'/);
    assert.equal((await call('GET', `/api/v1/visas/${String(acmeVisa.id)}`, admin)).body.state, 'active');
    await eventually(
      'the beta RoleBinding is gone',
      5000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${String(betaVisa.id)}`, '-n', 'id-beta'])).code !== 0,
    );
    await eventually(
      'kubectl refused in id-beta',
      5000,
      async () => (await k(['get', 'pods', '-n', 'id-beta'], kubeconfig)).code !== 0,
    );
    assert.equal((await k(['get', 'pods', '-n', 'id-acme'], kubeconfig)).code, 0, 'acme access is untouched');
    const again = await call('POST', '/api/v1/visas', cora.token, {
      engagement: 'beta',
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['id-beta'],
      duration: '1h',
      reason: 'again',
    });
    assert.ok(again.status === 403 || again.status === 404, `a request under beta got ${again.status}`);
  });
});

describe('a second SCIM identity provider', () => {
  test('cannot claim a group that a mapping trusts only from another IdP, nor the mapped role', async () => {
    entra = (await createScimToken(env.serverUrl, admin, 'entra')).token;
    const mappings = await call('GET', '/api/v1/identity/mappings', admin);
    const gamma = (mappings.body.items ?? []).find((m) => m.group === 'scim-gamma');
    assert.equal(gamma?.scimIdp, 'okta');
    // Entra takes the group names first and puts its own user in them; a user with cora's email (Okta provisioned
    // her) is refused, not merged.
    const dana = await asEntra('POST', '/Users', { schemas: [USER], userName: 'dana@vendor.example', active: true });
    assert.equal(dana.status, 201, JSON.stringify(dana.body));
    const twin = await asEntra('POST', '/Users', {
      schemas: [USER],
      userName: 'cora-at-entra',
      emails: [{ primary: true, value: people.cora.email }],
      active: true,
    });
    assert.equal(twin.status, 409, JSON.stringify(twin.body));
    assert.equal(twin.body.scimType, 'uniqueness');
    assert.equal(String(twin.body.detail).includes(scimIds.cora!), false, "Okta's user id is not named");
    for (const name of ['scim-gamma', 'scim-admins']) {
      const squatted = await asEntra('POST', '/Groups', {
        schemas: [GROUP],
        displayName: name,
        members: [{ value: String(dana.body.id) }],
      });
      assert.equal(squatted.status, 201, JSON.stringify(squatted.body));
    }
    const after = await call('GET', '/api/v1/identity/mappings', admin);
    const gammaAfter = (after.body.items ?? []).find((m) => m.group === 'scim-gamma');
    assert.equal(gammaAfter?.engagementId, null, 'no engagement was created from the other IdP group');
    const cora = await loginAs(env.serverUrl, people.cora);
    assert.deepEqual((await call('GET', '/api/v1/me', cora.token)).body.roles, [], 'not an admin through Entra');
    const engagements = await call('GET', '/api/v1/engagements', admin);
    assert.equal(
      (engagements.body.items ?? []).some((e) => e.name === 'gamma'),
      false,
      JSON.stringify(engagements.body),
    );
  });
});

describe('SCIM deactivation of a contractor with an active visa and an open watch', () => {
  test('the watch closes, the access token and a direct token are refused, and the receipt proves every step', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const visas = await call('GET', '/api/v1/visas?state=active', cora.token);
    assert.ok((visas.body.items ?? []).length >= 1, 'cora still holds the acme visa');
    const direct = await directKubeconfig(cora.token, 'cora-direct');
    const gateway = await env.writeGatewayKubeconfig(cora.token, 'cora-gateway');
    assert.equal((await k(['get', 'pods', '-n', 'id-acme'], direct)).code, 0);
    const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'pods', '-n', 'id-acme', '-w'], {
      kubeconfig: gateway,
    });
    await watch.waitFor(/^app\s/m);
    const exited = new Promise<number>((resolve) => watch.child.once('exit', () => resolve(Date.now())));
    // Entra (previous suite) could not provision a user with cora's email: Okta alone acts on her.
    const twins = await asEntra('GET', `/Users?filter=${encodeURIComponent('userName eq "cora-at-entra"')}`);
    assert.equal(twins.body.totalResults, 0);

    const deactivated = await asOkta('PATCH', `/Users/${scimIds.cora}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: false } }],
    });
    const answeredAt = Date.now();
    assert.equal(deactivated.status, 200, JSON.stringify(deactivated.body));
    assert.equal(deactivated.body.active, false);

    // The gateway and the API refuse her at once: the commit happened before the SCIM answer.
    assert.equal((await call('GET', '/api/v1/me', cora.token)).status, 401);
    const viaGateway = await k(['get', 'pods', '-n', 'id-acme'], gateway);
    assert.notEqual(viaGateway.code, 0);
    assert.match(viaGateway.stderr, /Unauthorized|401|must be logged in/i);
    const closedAt = await Promise.race([
      exited,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error(`the watch is still open: ${watch.output()}`)), 5000),
      ),
    ]);
    assert.ok(closedAt - answeredAt < 2000, `the watch closed ${closedAt - answeredAt} ms after the SCIM answer`);

    // The direct token dies with the ServiceAccount, within kube-apiserver's 10 s cache.
    const refusedAfter = await eventually('the direct token is refused', 15_000, async () => {
      const result = await k(['get', 'pods', '-n', 'id-acme'], direct);
      return result.code !== 0 && /Unauthorized|must be logged in/i.test(result.stderr);
    });
    assert.ok(refusedAfter <= 12_000, `refused ${refusedAfter} ms after the SCIM answer`);
    const sa = await env.k(['get', 'serviceaccount', serviceAccountName(people.cora.email), '-n', 'kubevisa-visas']);
    assert.notEqual(sa.code, 0, 'the ServiceAccount is gone');

    const receipt = await provenReceipt(people.cora.email, 'scim');
    assertEveryStepProven(receipt);
    assert.equal(receipt.person.status, 'suspended');
    assert.equal(receipt.trigger.by, 'scim:okta');
    const tokenStep = receipt.steps.find((s) => s.id === `cluster/${CLUSTER}/token`)!;
    assert.match(tokenStep.detail, /401 to a token it had accepted before the offboarding/);
    const accessStep = receipt.steps.find((s) => s.id === 'access-token')!;
    assert.match(accessStep.proof, /SessionService\.authenticate/);
    const fetched = await call('GET', `/api/v1/offboardings/${receipt.id}`, admin);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.body.id, receipt.id);

    const proven = await env.server!.store.listAudit({
      personId: receipt.person.id,
      action: 'offboarding.step-proven',
    });
    assert.deepEqual(
      new Set(proven.filter((e) => e.details.offboardingId === receipt.id).map((e) => e.details.step)),
      new Set(receipt.steps.map((s) => s.id)),
      'one audit event per proven step',
    );
  });

  test('replaying the same deactivation is harmless: same answer, no second offboarding', async () => {
    const person = await env.server!.store.getPersonByEmail(people.cora.email);
    const offboardedBefore = await env.server!.store.listAudit({ personId: person!.id, action: 'person.offboarded' });
    const receiptsBefore = await receiptsOf(people.cora.email);
    for (let i = 0; i < 2; i++) {
      const replay = await asOkta('PATCH', `/Users/${scimIds.cora}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active: false } }],
      });
      assert.equal(replay.status, 200);
      assert.equal(replay.body.active, false);
    }
    assert.equal((await receiptsOf(people.cora.email)).length, receiptsBefore.length);
    assert.equal(
      (await env.server!.store.listAudit({ personId: person!.id, action: 'person.offboarded' })).length,
      offboardedBefore.length,
    );
    assert.equal((await env.server!.store.getPerson(person!.id))?.status, 'suspended');
  });

  test('reactivation lets her log in again and restores nothing', async () => {
    const reactivated = await asOkta('PATCH', `/Users/${scimIds.cora}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: true } }],
    });
    assert.equal(reactivated.status, 200);
    const cora = await loginAs(env.serverUrl, people.cora);
    const live = await call('GET', '/api/v1/visas', cora.token);
    assert.deepEqual(
      (live.body.items ?? []).filter((v) => ['requested', 'approved', 'active'].includes(String(v.state))),
      [],
      'no visa came back',
    );
    assert.notEqual(
      (await env.k(['get', 'serviceaccount', serviceAccountName(people.cora.email), '-n', 'kubevisa-visas'])).code,
      0,
      'no ServiceAccount came back',
    );
    const engagement = (await env.server!.store.listEngagements({ status: 'active' })).find((e) => e.name === 'acme');
    assert.ok(
      engagement?.contractors.includes(people.cora.email),
      'she may request again under acme (still in the group)',
    );
  });
});

describe('offboarding from the directory sync', () => {
  test('a person disabled in the directory is offboarded at the next sync, with a proven receipt', async () => {
    const eve = await loginAs(env.serverUrl, people.eve);
    const created = await call('POST', '/api/v1/engagements', admin, {
      name: 'eve-sync',
      vendor: 'Eve Ltd',
      contractors: [people.eve.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['id-sync'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await requestAndApprove(eve.token, 'eve-sync', 'id-sync');
    const direct = await directKubeconfig(eve.token, 'eve-direct');
    assert.equal((await k(['get', 'pods', '-n', 'id-sync'], direct)).code, 0);

    directory.disableAccount(people.eve.sub);
    const synced = await call('POST', '/api/v1/identity/sync', admin);
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.deepEqual(synced.body.offboarded, [people.eve.email]);
    assert.equal((await call('GET', '/api/v1/me', eve.token)).status, 401);
    const receipt = await provenReceipt(people.eve.email, 'sync');
    assertEveryStepProven(receipt);
    assert.equal((await k(['get', 'pods', '-n', 'id-sync'], direct)).code === 0, false, 'the direct token is dead');
  });
});

describe('offboarding from a refused refresh at the identity provider', () => {
  test('the session dies and, by policy, the person is suspended and offboarded with a proven receipt', async () => {
    // carl was never provisioned by SCIM: the directory's groups make him a contractor of acme-dir.
    const acmeDir = (await env.server!.store.listEngagements({ status: 'active' })).find((e) => e.name === 'acme-dir');
    assert.ok(acmeDir?.contractors.includes(people.carl.email), 'onboarded from the directory groups');
    const carl = await loginAs(env.serverUrl, people.carl);
    await requestAndApprove(carl.token, 'acme-dir', 'id-refresh');
    const direct = await directKubeconfig(carl.token, 'carl-direct');
    assert.equal((await k(['get', 'pods', '-n', 'id-refresh'], direct)).code, 0);

    env.idp.disableAccount(people.carl.sub);
    // The IdP grant is due for a refresh (as it is after its access token lifetime): the next renewal asks it.
    const { sessionId } = await env.server!.context.sessions.authenticate(carl.token);
    await env.server!.store.transaction((tx) => tx.updateSession(sessionId, { idpTokenExpiresAt: Date.now() - 1000 }));
    const renewed = await api(env.serverUrl, 'POST', '/api/v1/sessions/token', {
      body: { sessionSecret: carl.sessionSecret },
    });
    assert.equal(renewed.status, 401, JSON.stringify(renewed.body));
    assert.match(String(renewed.body.detail), /no longer accepts this login/);
    const person = await env.server!.store.getPersonByEmail(people.carl.email);
    assert.equal(person?.status, 'suspended');
    const receipt = await provenReceipt(people.carl.email, 'refresh');
    assertEveryStepProven(receipt);
    assert.notEqual((await k(['get', 'pods', '-n', 'id-refresh'], direct)).code, 0, 'the direct token is dead');
  });
});

describe('offboarding by an admin', () => {
  test('POST /api/v1/persons/:id/offboarding answers with the receipt, every step proven', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    await requestAndApprove(cora.token, 'acme', 'id-acme');
    const direct = await directKubeconfig(cora.token, 'cora-admin-offboard');
    assert.equal((await k(['get', 'pods', '-n', 'id-acme'], direct)).code, 0);
    const answered = await call('POST', `/api/v1/persons/${encodeURIComponent(people.cora.email)}/offboarding`, admin, {
      reason: 'contract ended',
    });
    assert.equal(answered.status, 201, JSON.stringify(answered.body));
    const receipt = answered.body as unknown as Receipt;
    assertEveryStepProven(receipt);
    assert.equal(receipt.trigger.kind, 'admin');
    assert.equal(receipt.trigger.by, people.sam.email);
    assert.equal(receipt.person.status, 'deprovisioned');
    assert.ok(receipt.timings.complete! >= 10_000, 'the token proof waited out kube-apiserver’s cache');
    assert.notEqual((await k(['get', 'pods', '-n', 'id-acme'], direct)).code, 0);
    const refused = await call(
      'POST',
      `/api/v1/persons/${encodeURIComponent(people.cora.email)}/offboarding`,
      approver,
      {
        reason: 'not mine to do',
      },
    );
    assert.equal(refused.status, 403);
  });
});

describe('directory safety', () => {
  test('a directory that suddenly lists (almost) nobody offboards nobody, and alerts', async () => {
    const before = await env.server!.store.listOffboardings();
    for (const person of [people.sam, people.ann, people.cora]) directory.removeAccount(person.sub);
    const synced = await call('POST', '/api/v1/identity/sync', admin);
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.match(String(synced.body.refused), /maxOffboardsPerRun \(1\)/);
    assert.deepEqual(synced.body.offboarded, []);
    assert.equal((await env.server!.store.listOffboardings()).length, before.length);
    assert.equal((await call('GET', '/api/v1/me', admin)).status, 200, 'the admin is still here');
    const alerts = await env.server!.store.listAudit({ action: 'identity.sync-refused' });
    assert.equal(alerts.length, 1);
  });
});

// Last in the file: it leaves ann deprovisioned.
describe('a person two SCIM identity providers provision', () => {
  test('either IdP deactivating them suspends them, only the one that did can bring them back, and a DELETE at either is for good', async () => {
    const person = async () => (await env.server!.store.getPersonByEmail(people.ann.email))!;
    assert.equal((await person()).status, 'active');
    // Ann logged in before any identity provider provisioned her: an admin links her to both, so both may act on her.
    for (const idp of ['okta', 'entra']) {
      const linked = await call('POST', '/api/v1/identity/links', admin, {
        person: people.ann.email,
        idp,
        reason: `${idp} provisions staff`,
      });
      assert.equal(linked.status, 201, JSON.stringify(linked.body));
    }
    const provision = async (as: typeof asOkta, userName: string) => {
      const created = await as('POST', '/Users', {
        schemas: [USER],
        userName,
        emails: [{ primary: true, value: people.ann.email }],
        active: true,
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = String(created.body.id);
      return async (active: boolean) => {
        const patched = await as('PATCH', `/Users/${id}`, {
          schemas: [PATCH],
          Operations: [{ op: 'replace', value: { active } }],
        });
        assert.equal(patched.status, 200, JSON.stringify(patched.body));
      };
    };
    const atOkta = await provision(asOkta, people.ann.email);
    const atEntra = await provision(asEntra, 'ann-at-entra');

    await atOkta(false);
    assert.equal((await person()).status, 'suspended', 'Okta deactivated her; Entra still lists her as active');
    // Entra, the other IdP, cannot undo Okta's deactivation, even by toggling its own user.
    await atEntra(false);
    await atEntra(true);
    assert.equal((await person()).status, 'suspended', 'not lifted by the other IdP');
    await atOkta(true);
    assert.equal((await person()).status, 'active', 'lifted by Okta, which made it');

    // A DELETE at Entra deprovisions her for good, though Okta still provisions her.
    const entraId = String(
      (await asEntra('GET', `/Users?filter=${encodeURIComponent('userName eq "ann-at-entra"')}`)).body.Resources?.[0]
        ?.id,
    );
    assert.equal((await asEntra('DELETE', `/Users/${entraId}`)).status, 204);
    assert.equal((await person()).status, 'deprovisioned');
    const last = (await env.server!.store.listOffboardings({ personId: (await person()).id })).at(-1);
    assert.match(JSON.stringify(last?.receipt), /deleted at entra \(SCIM DELETE\), though still provisioned at okta/);
    await atOkta(false);
    await atOkta(true);
    assert.equal((await person()).status, 'deprovisioned', 'no identity provider brings back a deleted person');
  });
});
