// Visas end to end on a real cluster: the real OIDC provider, the real server and API, kubevisa's own
// least-privilege credential, and the real kubectl deciding what a person can do.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';
import { serviceAccountName } from '../src/domain/names.ts';

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: { token: string; personId: string };
let engagementId: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  env = await startKubevisaEnv();
  await env.startInProcess();
  for (const ns of ['granted', 'granted-two', 'other', 'staging-web', 't-expiry', 't-revoke', 't-offboard', 't-ended'])
    await env.kOk(['create', 'namespace', ns]);
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'acme',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(30),
    ceiling: {
      clusters: [CLUSTER],
      namespacePatterns: ['granted', 'granted-*', 'staging-*', 'missing-ns', 't-*'],
      profiles: ['viewer', 'developer'],
    },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  engagementId = String(created.body.id);
});
after(async () => {
  await env?.stop();
});

async function requestAndApprove(token: string, body: Record<string, unknown>) {
  const requested = await call('POST', '/api/v1/visas', token, {
    profile: 'viewer',
    cluster: CLUSTER,
    reason: 'JIRA-1',
    duration: '1h',
    ...body,
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return approved.body;
}

async function directKubeconfig(token: string) {
  const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, token);
  assert.equal(credential.status, 200, JSON.stringify(credential.body));
  return env.cp.writeTokenKubeconfig(String(credential.body.token));
}

const rbExists = async (namespace: string, visaId: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;

async function auditEvents(action: string, visaId: string) {
  return (await env.server!.store.listAudit({ visaId, action })).map((e) => e);
}

describe('an approved visa', () => {
  test('lets kubectl into exactly the granted namespaces', async () => {
    const visa = await requestAndApprove(cora.token, { namespaces: ['granted', 'granted-two'] });
    assert.equal(visa.state, 'active');
    await eventually(
      'RoleBindings created',
      5000,
      async () => (await rbExists('granted', String(visa.id))) && (await rbExists('granted-two', String(visa.id))),
    );
    const kubeconfig = await directKubeconfig(cora.token);
    const inside = await env.k(['get', 'pods', '-n', 'granted'], kubeconfig);
    assert.equal(inside.code, 0, inside.stderr);
    const second = await env.k(['get', 'configmaps', '-n', 'granted-two'], kubeconfig);
    assert.equal(second.code, 0, second.stderr);
    const outside = await env.k(['get', 'pods', '-n', 'other'], kubeconfig);
    assert.notEqual(outside.code, 0);
    assert.match(outside.stderr, /forbidden/i);
    const clusterWide = await env.k(['get', 'pods', '--all-namespaces'], kubeconfig);
    assert.notEqual(clusterWide.code, 0);
    const secrets = await env.k(['get', 'secrets', '-n', 'granted'], kubeconfig);
    assert.notEqual(secrets.code, 0, 'viewer never reads secrets');
    // The binding explains itself to anyone with kubectl.
    const rb = JSON.parse(
      await env.kOk(['get', 'rolebinding', `kubevisa-${String(visa.id)}`, '-n', 'granted', '-o', 'json']),
    ) as {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      roleRef: { name: string };
      subjects: { name: string; namespace: string }[];
    };
    assert.equal(rb.metadata.labels['app.kubernetes.io/managed-by'], 'kubevisa');
    assert.equal(rb.metadata.labels['kubevisa.io/visa'], visa.id);
    assert.equal(rb.metadata.annotations['kubevisa.io/person'], people.cora.email);
    assert.equal(rb.metadata.annotations['kubevisa.io/not-after'], visa.notAfter);
    assert.equal(rb.roleRef.name, 'kubevisa:profile:viewer');
    assert.deepEqual(
      rb.subjects.map((s) => `${s.namespace}/${s.name}`),
      [`kubevisa-visas/${serviceAccountName(people.cora.email)}`],
    );
  });

  test('ends at notAfter: the RoleBinding goes within a second and kubectl is refused', async () => {
    const visa = await requestAndApprove(cora.token, {
      namespaces: ['t-expiry'],
      duration: '8s',
      profile: 'developer',
    });
    await eventually('RoleBinding created', 5000, () => rbExists('t-expiry', String(visa.id)));
    const kubeconfig = await directKubeconfig(cora.token);
    assert.equal((await env.k(['get', 'deployments', '-n', 't-expiry'], kubeconfig)).code, 0);
    const notAfter = Date.parse(String(visa.notAfter));
    await eventually(
      'the RoleBinding is gone after notAfter',
      20_000,
      async () => !(await rbExists('t-expiry', String(visa.id))),
    );
    const deleted = await auditEvents('cluster.rolebinding.delete', String(visa.id));
    assert.equal(deleted.length, 1);
    const lateness = deleted[0]!.at - notAfter;
    assert.ok(lateness >= 0 && lateness <= 1000, `deleted ${lateness} ms after notAfter`);
    await eventually(
      'kubectl refused',
      5000,
      async () => (await env.k(['get', 'deployments', '-n', 't-expiry'], kubeconfig)).code !== 0,
    );
    const stored = await call('GET', `/api/v1/visas/${String(visa.id)}`, cora.token);
    assert.equal(stored.body.state, 'expired');
  });

  test('revoke takes effect within a second', async () => {
    const visa = await requestAndApprove(cora.token, { namespaces: ['t-revoke'] });
    await eventually('RoleBinding created', 5000, () => rbExists('t-revoke', String(visa.id)));
    const kubeconfig = await directKubeconfig(cora.token);
    assert.equal((await env.k(['get', 'pods', '-n', 't-revoke'], kubeconfig)).code, 0);
    const revokedAt = Date.now();
    const revoked = await call('POST', `/api/v1/visas/${String(visa.id)}/revoke`, admin, { reason: 'work done' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(revoked.body.state, 'revoked');
    await eventually(
      'kubectl refused after revoke',
      5000,
      async () => (await env.k(['get', 'pods', '-n', 't-revoke'], kubeconfig)).code !== 0,
    );
    const deleted = await auditEvents('cluster.rolebinding.delete', String(visa.id));
    assert.equal(deleted.length, 1);
    assert.ok(deleted[0]!.at - revokedAt <= 1000, `RoleBinding deleted ${deleted[0]!.at - revokedAt} ms after revoke`);
  });

  test('auto-approval covers viewer on staging-* and nothing wider', async () => {
    const auto = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['staging-web'],
      duration: '2h',
      reason: 'look',
    });
    assert.equal(auto.status, 201);
    assert.equal(auto.body.state, 'active');
    const tooLong = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['staging-web'],
      duration: '5h',
      reason: 'look',
    });
    assert.equal(tooLong.body.state, 'requested', 'over the rule maximum needs a person');
    const developer = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'developer',
      cluster: CLUSTER,
      namespaces: ['staging-web'],
      duration: '1h',
      reason: 'fix',
    });
    assert.equal(developer.body.state, 'requested');
  });

  test('a namespace that does not exist is reported, not created', async () => {
    const visa = await requestAndApprove(cora.token, { namespaces: ['missing-ns'] });
    await eventually(
      'reported',
      5000,
      async () =>
        (await env.server!.store.listAudit({ visaId: String(visa.id), action: 'cluster.namespace-missing' })).length ===
        1,
    );
    assert.notEqual((await env.k(['get', 'namespace', 'missing-ns'])).code, 0);
  });
});

describe('refusals', () => {
  test('self-approval is refused, also through the API directly', async () => {
    // ann is an approver and, here, also a contractor of her own engagement.
    const created = await call('POST', '/api/v1/engagements', admin, {
      name: 'ann-side-gig',
      vendor: 'Ann Ltd',
      contractors: [people.ann.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['granted'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const requested = await call('POST', '/api/v1/visas', approver, {
      engagement: 'ann-side-gig',
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'x',
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const self = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
    assert.equal(self.status, 403);
    assert.equal(self.body.code, 'ERR_SELF_APPROVAL');
    assert.match(self.contentType, /application\/problem\+json/);
    const after = await call('GET', `/api/v1/visas/${String(requested.body.id)}`, approver);
    assert.equal(after.body.state, 'requested', 'nothing changed');
  });

  test('an approver cannot widen a request, and a contractor cannot approve', async () => {
    const requested = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'x',
    });
    const widened = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {
      namespaces: ['granted', 'granted-two'],
    });
    assert.equal(widened.status, 400);
    assert.equal(widened.body.code, 'ERR_WIDENED_APPROVAL');
    const longer = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {
      duration: '2h',
    });
    assert.equal(longer.body.code, 'ERR_WIDENED_APPROVAL');
    const carl = await loginAs(env.serverUrl, people.carl);
    const peer = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, carl.token, {});
    assert.ok(peer.status === 403 || peer.status === 404, `a fellow contractor got ${peer.status}`);
    const after = await call('GET', `/api/v1/visas/${String(requested.body.id)}`, cora.token);
    assert.equal(after.body.state, 'requested');
  });

  test('over-long, outside-the-ceiling and unknown-profile requests are refused with what is allowed', async () => {
    const long = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '9h',
      reason: 'x',
    });
    assert.equal(long.status, 400);
    assert.equal(long.body.code, 'ERR_VISA_TOO_LONG');
    assert.match(String(long.body.detail), /8h/);
    const outside = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['other'],
      duration: '1h',
      reason: 'x',
    });
    assert.equal(outside.body.code, 'ERR_OUTSIDE_CEILING');
    assert.match(String(outside.body.detail), /granted/);
    const risky = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'debugger',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'x',
    });
    assert.equal(risky.body.code, 'ERR_OUTSIDE_CEILING', 'a profile the engagement does not allow');
    const unknown = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'root',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'x',
    });
    assert.equal(unknown.status, 400);
    assert.match(String(unknown.body.detail), /root/);
  });

  test('bad input on every endpoint gets a clear 4xx and changes nothing', async () => {
    const before = (await env.server!.store.getAuditHead())?.seq ?? 0;
    const visasBefore = (await env.server!.store.listVisas()).length;
    const cases: [string, string, unknown, number, RegExp][] = [
      ['POST', '/api/v1/visas', {}, 400, /missing the required field/],
      [
        'POST',
        '/api/v1/visas',
        { cluster: CLUSTER, namespaces: 'granted', profile: 'viewer', duration: '1h', reason: 'x' },
        400,
        /namespaces must be of type array/,
      ],
      [
        'POST',
        '/api/v1/visas',
        { cluster: CLUSTER, namespaces: ['Not_A_Namespace'], profile: 'viewer', duration: '1h', reason: 'x' },
        400,
        /Not_A_Namespace/,
      ],
      [
        'POST',
        '/api/v1/visas',
        { cluster: CLUSTER, namespaces: ['granted'], profile: 'viewer', duration: '1h', reason: 'x', extra: 1 },
        400,
        /unknown field 'extra'/,
      ],
      [
        'POST',
        '/api/v1/visas',
        { cluster: CLUSTER, namespaces: ['granted'], profile: 'viewer', duration: 'forever', reason: 'x' },
        400,
        /duration/,
      ],
      [
        'POST',
        '/api/v1/visas',
        {
          cluster: CLUSTER,
          namespaces: ['granted'],
          profile: 'viewer',
          duration: '1h',
          reason: 'x',
          startsAt: '2020-01-01T00:00:00Z',
        },
        400,
        /past|startsAt/,
      ],
      [
        'POST',
        '/api/v1/visas',
        {
          cluster: CLUSTER,
          namespaces: ['granted'],
          profile: 'viewer',
          duration: '1h',
          reason: 'x',
          startsAt: 'tomorrow',
        },
        400,
        /startsAt/,
      ],
      [
        'POST',
        '/api/v1/visas',
        { cluster: 'nope', namespaces: ['granted'], profile: 'viewer', duration: '1h', reason: 'x' },
        403,
        /nope/,
      ],
      ['POST', '/api/v1/visas', '{"cluster": ', 400, /not valid JSON/],
      ['POST', '/api/v1/visas', JSON.stringify({ reason: 'x'.repeat(70_000) }), 413, /larger than/],
      ['POST', '/api/v1/visas/v_unknown/approve', {}, 404, /not found/],
      ['POST', '/api/v1/visas/v_unknown/revoke', { reason: 7 }, 400, /reason must be of type string/],
      ['POST', '/api/v1/engagements', { name: 'x' }, 400, /missing the required field/],
      [
        'POST',
        '/api/v1/engagements',
        {
          name: 'bad name',
          vendor: 'v',
          contractors: ['a@b.example'],
          sponsor: 's@corp.example',
          endsAt: inDays(1),
          ceiling: { clusters: [CLUSTER], namespacePatterns: ['a'], profiles: ['viewer'] },
          maxVisaDuration: '1h',
        },
        400,
        /name/,
      ],
      [
        'POST',
        '/api/v1/engagements',
        {
          name: 'past',
          vendor: 'v',
          contractors: ['a@b.example'],
          sponsor: 's@corp.example',
          endsAt: '2020-01-01T00:00:00Z',
          ceiling: { clusters: [CLUSTER], namespacePatterns: ['a'], profiles: ['viewer'] },
          maxVisaDuration: '1h',
        },
        400,
        /endsAt/,
      ],
      [
        'POST',
        '/api/v1/engagements',
        {
          name: 'unknown-profile',
          vendor: 'v',
          contractors: ['a@b.example'],
          sponsor: 's@corp.example',
          endsAt: inDays(1),
          ceiling: { clusters: [CLUSTER], namespacePatterns: ['a'], profiles: ['god-mode'] },
          maxVisaDuration: '1h',
        },
        400,
        /god-mode/,
      ],
      ['POST', `/api/v1/engagements/${engagementId}/end`, {}, 400, /reason/],
      ['GET', '/api/v1/nothing-here', undefined, 404, /no such endpoint/],
    ];
    for (const [method, path, body, status, detail] of cases) {
      const token = path.startsWith('/api/v1/engagements') || path.includes('/revoke') ? admin : cora.token;
      const answer = await api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
      assert.equal(
        answer.status,
        status,
        `${method} ${path} ${String(JSON.stringify(body)).slice(0, 80)} → ${answer.status} ${JSON.stringify(answer.body)}`,
      );
      assert.match(answer.contentType, /application\/problem\+json/, `${method} ${path}`);
      assert.match(String(answer.body.detail), detail, `${method} ${path}: ${String(answer.body.detail)}`);
      assert.match(String(answer.body.code), /^ERR_/);
    }
    const unauthenticated = await api(env.serverUrl, 'GET', '/api/v1/visas', { token: 'not-a-token' });
    assert.equal(unauthenticated.status, 401);
    assert.equal((await env.server!.store.getAuditHead())?.seq ?? 0, before, 'no audit event: nothing happened');
    assert.equal((await env.server!.store.listVisas()).length, visasBefore);
  });

  test('the OpenAPI document describes the API', async () => {
    const doc = await api(env.serverUrl, 'GET', '/api/v1/openapi.json');
    assert.equal(doc.status, 200);
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;
    assert.ok(paths['/api/v1/visas']?.post);
    assert.ok(paths['/api/v1/visas/{id}/approve']?.post);
    assert.ok(paths['/api/v1/persons/{id}/offboard']?.post);
    // Routes the capabilities add are described too.
    assert.ok(paths['/api/v1/audit/events']?.get, 'audit');
    assert.ok(paths['/api/v1/persons/{id}/offboarding']?.post, 'identity');
    // Each operation says who may call it, from the same declaration that serves and guards the route.
    const auth = (path: string, method: string) =>
      (paths[path]?.[method] as Record<string, unknown>)['x-kubevisa-auth'];
    assert.equal(auth('/api/v1/persons/{id}/offboard', 'post'), 'admin');
    assert.equal(auth('/api/v1/audit/events', 'get'), 'auditor');
    assert.equal(auth('/api/v1/monitoring/audit-events/{cluster}', 'post'), 'token');
    assert.equal(auth('/api/v1/login/device', 'post'), 'none');
    for (const [path, operations] of Object.entries(paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const declared = (operation as Record<string, unknown>)['x-kubevisa-auth'];
        assert.ok(
          ['none', 'token', 'session', 'admin', 'auditor', 'staff'].includes(String(declared)),
          `${method} ${path}`,
        );
      }
    }
  });
});

describe('ending access for good', () => {
  test('revoking a visa also ends its approved extension, which would otherwise start at the old deadline', async () => {
    const visa = await requestAndApprove(cora.token, { namespaces: ['granted'], duration: '1h' });
    const extension = await call('POST', `/api/v1/visas/${String(visa.id)}/extend`, cora.token, {
      duration: '1h',
      reason: 'more time',
    });
    assert.equal(extension.status, 201, JSON.stringify(extension.body));
    assert.equal(extension.body.extends, visa.id);
    const approved = await call('POST', `/api/v1/visas/${String(extension.body.id)}/approve`, approver, {});
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.body.state, 'approved', 'it starts when the first visa ends');
    const revoked = await call('POST', `/api/v1/visas/${String(visa.id)}/revoke`, admin, { reason: 'contract paused' });
    assert.equal(revoked.status, 200);
    const after = await call('GET', `/api/v1/visas/${String(extension.body.id)}`, cora.token);
    assert.equal(after.body.state, 'revoked');
    assert.match(String(after.body.endReason), /the visa it extends was revoked/);
  });

  test('ending the engagement revokes all its visas, and approving afterwards is refused', async () => {
    const created = await call('POST', '/api/v1/engagements', admin, {
      name: 'short-contract',
      vendor: 'Beta',
      contractors: [people.carl.email],
      sponsor: people.sam.email,
      endsAt: inDays(2),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['granted'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    const carl = await loginAs(env.serverUrl, people.carl);
    const active = await requestAndApprove(carl.token, { engagement: 'short-contract', namespaces: ['granted'] });
    const pending = await call('POST', '/api/v1/visas', carl.token, {
      engagement: 'short-contract',
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'later',
    });
    await eventually('RoleBinding created', 5000, () => rbExists('granted', String(active.id)));
    const ended = await call('POST', `/api/v1/engagements/${String(created.body.id)}/end`, admin, {
      reason: 'contract over',
    });
    assert.equal(ended.status, 200, JSON.stringify(ended.body));
    assert.equal(ended.body.status, 'ended');
    await eventually('RoleBinding removed', 5000, async () => !(await rbExists('granted', String(active.id))));
    assert.equal((await call('GET', `/api/v1/visas/${String(active.id)}`, carl.token)).body.state, 'revoked');
    const late = await call('POST', `/api/v1/visas/${String(pending.body.id)}/approve`, approver, {});
    assert.equal(late.status, 409, JSON.stringify(late.body));
    const again = await call('POST', '/api/v1/visas', carl.token, {
      engagement: 'short-contract',
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['granted'],
      duration: '1h',
      reason: 'again',
    });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'ERR_ENGAGEMENT_NOT_ACTIVE');
  });

  test('offboarding deletes the identity: old tokens stop authenticating, sessions end', async () => {
    const eve = people.carl;
    const carl = await loginAs(env.serverUrl, eve);
    const created = await call('POST', '/api/v1/engagements', admin, {
      name: 'offboard-me',
      vendor: 'Gamma',
      contractors: [eve.email],
      sponsor: people.sam.email,
      endsAt: inDays(2),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['granted-two'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    assert.equal(created.status, 201);
    await requestAndApprove(carl.token, { engagement: 'offboard-me', namespaces: ['granted-two'] });
    const kubeconfig = await directKubeconfig(carl.token);
    assert.equal((await env.k(['get', 'pods', '-n', 'granted-two'], kubeconfig)).code, 0);
    const receipt = await call('POST', `/api/v1/persons/${encodeURIComponent(eve.email)}/offboard`, admin, {
      reason: 'left the company',
    });
    assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
    const steps = receipt.body.steps as { step: string; ok: boolean }[];
    assert.ok(steps.length >= 5);
    assert.ok(
      steps.every((s) => s.ok),
      JSON.stringify(steps),
    );
    assert.notEqual(
      (await env.k(['get', 'serviceaccount', serviceAccountName(eve.email), '-n', 'kubevisa-visas'])).code,
      0,
    );
    await eventually('the old token stops authenticating (10 s token cache)', 15_000, async () => {
      const result = await env.k(['get', 'pods', '-n', 'granted-two'], kubeconfig);
      return result.code !== 0 && /Unauthorized|must be logged in/i.test(result.stderr);
    });
    const renewed = await api(env.serverUrl, 'POST', '/api/v1/sessions/token', {
      body: { sessionSecret: carl.sessionSecret },
    });
    assert.equal(renewed.status, 401);
    const me = await call('GET', '/api/v1/me', carl.token);
    assert.equal(me.status, 401, 'an access token issued before offboarding no longer works');
  });
});
