// The offboarding receipt proves that open streams were cut, end to end on the real control plane, server and
// kubectl: a contractor holds a `kubectl exec` and a watch open through the gateway; a SCIM DELETE (and, for
// another contractor, an admin's `kubevisa offboard`) ends them, and the receipt carries a `streams-closed` step,
// proven, counting them, with a summary that says what actually happened.
import { runCli } from '../src/cli/testing/run-cli.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import type { PersonJson } from '../src/cli/api-types.ts';
import type { Receipt } from '../src/identity/receipt.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectlBackground } from './support/kubectl.ts';
import { createScimToken, scim, trustScimCa, withIdentitySections } from './support/identity.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';

let env: KubevisaEnv;
let admin: { token: string; sessionSecret: string };
let approver: string;
let okta: string;
let cliDir: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  env = await startKubevisaEnv({ tls: true, autoApproval: false });
  trustScimCa(await readFile(env.config.tls!.caFile!));
  for (const ns of ['ob-scim', 'ob-admin', 'ob-direct']) await env.kOk(['create', 'namespace', ns]);
  withIdentitySections(env.config, {
    scim: {},
    // The server answers `kubevisa offboard` within 25 s, inside the CLI's own limit.
    identity: { offboarding: { retryInterval: '1s', wait: '25s' } },
  });
  await env.startInProcess();
  admin = await loginAs(env.serverUrl, people.sam);
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  okta = (await createScimToken(env.serverUrl, admin.token, 'okta')).token;
  const engagement = await call('POST', '/api/v1/engagements', admin.token, {
    name: 'streams',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['ob-*'], profiles: ['debugger'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  for (const ns of ['ob-scim', 'ob-admin']) {
    await eventually(
      `default ServiceAccount in ${ns}`,
      20_000,
      async () => (await env.k(['get', 'sa', 'default', '-n', ns])).code === 0,
    );
    await env.kOk(['run', 'app', '-n', ns, '--image=registry.example/app:1']);
    await eventually(
      `pod app Running in ${ns}`,
      30_000,
      async () => (await env.kOk(['get', 'pod', 'app', '-n', ns, '-o', 'jsonpath={.status.phase}'])) === 'Running',
    );
  }
  cliDir = await mkdtemp(join(tmpdir(), 'kubevisa-offboard-cli-'));
  await writeConfig(cliDir, { server: env.serverUrl, caFile: env.config.tls!.caFile! });
  await writeSession(cliDir, {
    server: env.serverUrl,
    sessionSecret: admin.sessionSecret,
    sessionExpiresAt: inDays(1),
    person: (await call('GET', '/api/v1/me', admin.token)).body as unknown as PersonJson,
  });
});
after(async () => {
  await env?.stop();
  if (cliDir) await rm(cliDir, { recursive: true, force: true });
});

/** A debugger visa on `namespace`, approved, and its RoleBinding in place. */
async function grant(token: string, namespace: string) {
  const requested = await call('POST', '/api/v1/visas', token, {
    profile: 'debugger',
    cluster: CLUSTER,
    namespaces: [namespace],
    duration: '1h',
    reason: 'streams test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await eventually(
    `RoleBinding in ${namespace}`,
    10_000,
    async () =>
      (await env.k(['get', 'rolebinding', `kubevisa-${String(requested.body.id)}`, '-n', namespace])).code === 0,
  );
}

/** `kubectl exec … sleep 120` and `kubectl get pods -w` through the gateway, both registered as open streams. */
async function openStreams(token: string, personId: string, namespace: string, name: string) {
  const kubeconfig = await env.writeGatewayKubeconfig(token, name);
  const exec = kubectlBackground(env.cp.binaries.kubectl, ['exec', '-n', namespace, 'app', '--', 'sleep', '120'], {
    kubeconfig,
    timeoutMs: 150_000,
  });
  const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'pods', '-n', namespace, '-w'], {
    kubeconfig,
    timeoutMs: 150_000,
  });
  await watch.waitFor(/^app\s/m);
  const { gateway } = env.server!.capabilities.gateway;
  await eventually('the exec and the watch are open in the gateway', 15_000, async () => {
    const open = gateway.streams.all().filter((s) => s.personId === personId);
    return open.some((s) => s.kind === 'upgrade') && open.some((s) => s.kind === 'watch');
  });
  const ended = (p: typeof exec) => p.child.exitCode !== null || p.child.signalCode !== null;
  return {
    exec,
    watch,
    bothEnded: () => ended(exec) && ended(watch),
    kill: () => [exec, watch].forEach((p) => p.child.kill('SIGKILL')),
  };
}

function assertStreamsStep(receipt: Receipt, namespace: string) {
  const step = receipt.steps.find((s) => s.id === 'streams-closed');
  assert.ok(step, `the receipt has a streams-closed step: ${JSON.stringify(receipt.steps.map((s) => s.id))}`);
  assert.equal(step.status, 'proven', step.detail);
  assert.equal(step.ok, true);
  assert.ok((step.count ?? 0) >= 2, `counted the exec and the watch: ${step.detail}`);
  assert.match(step.detail, new RegExp(`exec/attach on ${CLUSTER}/${namespace}`));
  assert.match(step.detail, new RegExp(`watch on ${CLUSTER}/${namespace}`));
  assert.match(step.detail, /a fresh read of the gateway's registry at \S+ holds none of the person's streams/);
  assert.match(step.detail, /no direct-mode credential was ever issued to the person/);
}

/** Runs the real CLI with the test's state folder. */
function cli(args: string[]) {
  return runCli(args, { configDir: cliDir, timeoutMs: 150_000 });
}

describe('the offboarding receipt proves the open streams were cut', () => {
  test('a SCIM DELETE during an open kubectl exec and watch: both end, and the receipt says deprovisioned (deleted at okta) with the streams counted', async () => {
    const created = await scim(env.serverUrl, okta, 'POST', '/Users', {
      schemas: [USER],
      userName: people.cora.email,
      emails: [{ primary: true, value: people.cora.email, type: 'work' }],
      externalId: '00u-cora',
      active: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const cora = await loginAs(env.serverUrl, people.cora);
    await grant(cora.token, 'ob-scim');
    const streams = await openStreams(cora.token, cora.personId, 'ob-scim', 'cora-gateway');
    try {
      const deleted = await scim(env.serverUrl, okta, 'DELETE', `/Users/${String(created.body.id)}`);
      assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
      await eventually('the exec and the watch ended', 5000, async () => streams.bothEnded());

      const listed = await call(
        'GET',
        `/api/v1/offboardings?person=${encodeURIComponent(people.cora.email)}`,
        admin.token,
      );
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      const id = String((listed.body.items ?? [])[0]?.id);
      let receipt: Receipt | undefined;
      await eventually('the receipt is proven', 60_000, async () => {
        const fetched = await call('GET', `/api/v1/offboardings/${id}`, admin.token);
        receipt = fetched.body as unknown as Receipt;
        return receipt.status === 'proven';
      });
      assert.equal(receipt!.person.status, 'deprovisioned');
      assertStreamsStep(receipt!, 'ob-scim');
      assert.match(receipt!.summary, /^cora@vendor\.example deprovisioned \(deleted at okta\)\. All \d+ steps proven/);
      assert.doesNotMatch(receipt!.summary, /deactivated/);
      const started = await env.server!.store.listAudit({ action: 'offboarding.started', personId: cora.personId });
      assert.ok(Number(started.at(-1)!.details.streamsClosed) >= 2, JSON.stringify(started.at(-1)!.details));
    } finally {
      streams.kill();
    }
  });

  test('kubevisa offboard by an admin during an open exec and watch prints the streams-closed step and "offboarded by" the admin', async () => {
    const carl = await loginAs(env.serverUrl, people.carl);
    await grant(carl.token, 'ob-admin');
    const streams = await openStreams(carl.token, carl.personId, 'ob-admin', 'carl-gateway');
    try {
      const result = await cli(['offboard', people.carl.email, '--reason', 'contract ended']);
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      await eventually('the exec and the watch ended', 5000, async () => streams.bothEnded());
      assert.match(
        result.stdout,
        /open streams closed \(kubectl exec, attach, port-forward, watch, logs -f\)\s+ok\s+\d+ stream\(s\) open at the commit closed/,
      );
      assert.match(
        result.stderr,
        /^carl@vendor\.example offboarded by sam@corp\.example: contract ended\. All \d+ steps proven by live calls/m,
      );

      const listed = await call(
        'GET',
        `/api/v1/offboardings?person=${encodeURIComponent(people.carl.email)}`,
        admin.token,
      );
      const receipt = (listed.body.items ?? []).at(-1) as unknown as Receipt;
      assert.equal(receipt.status, 'proven', receipt.summary);
      assert.equal(receipt.trigger.kind, 'admin');
      assertStreamsStep(receipt, 'ob-admin');
    } finally {
      streams.kill();
    }
  });

  test('a person who was given a direct-mode credential: the streams-closed proof says such streams are beyond the gateway, never claims them', async () => {
    const engagement = await call('POST', '/api/v1/engagements', admin.token, {
      name: 'streams-direct',
      vendor: 'Acme',
      contractors: [people.eve.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['ob-direct'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
    const eve = await loginAs(env.serverUrl, people.eve);
    const requested = await call('POST', '/api/v1/visas', eve.token, {
      engagement: 'streams-direct',
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['ob-direct'],
      duration: '1h',
      reason: 'direct-mode caveat',
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, eve.token);
    assert.equal(credential.status, 200, JSON.stringify(credential.body));

    const offboarded = await call('POST', `/api/v1/persons/${eve.personId}/offboard`, admin.token, {
      reason: 'contract ended',
    });
    assert.ok(offboarded.status < 300, JSON.stringify(offboarded.body));
    const listed = await call(
      'GET',
      `/api/v1/offboardings?person=${encodeURIComponent(people.eve.email)}`,
      admin.token,
    );
    const id = String((listed.body.items ?? []).at(-1)?.id);
    let receipt: Receipt | undefined;
    await eventually('the receipt is proven', 60_000, async () => {
      receipt = (await call('GET', `/api/v1/offboardings/${id}`, admin.token)).body as unknown as Receipt;
      return receipt.status === 'proven';
    });
    const step = receipt!.steps.find((s) => s.id === 'streams-closed')!;
    assert.match(
      step.detail,
      /NOT covered: 1 direct-mode credential\(s\) were issued to the person \(the last at \S+\), and a stream opened with one straight at kube-apiserver/,
    );
  });
});
