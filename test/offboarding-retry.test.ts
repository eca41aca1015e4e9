// Offboarding when the cluster is down, against the real control plane: kube-apiserver is stopped before an admin
// offboards a contractor, so every cluster step of the receipt stays unproven and is alerted; the kubevisa server is
// killed with SIGKILL while the receipt is open and started again (still without kube-apiserver); kube-apiserver
// comes back, and the resumed receipt completes with live proofs. Beside the receipt, the test checks for itself
// what each proof claims: no RoleBinding, no ServiceAccount, and a direct token issued before the offboarding
// refused by kube-apiserver.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serviceAccountName } from '../src/domain/names.ts';
import type { Receipt } from '../src/identity/receipt.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let server: ChildProcess | undefined;
let alertReceiver: Server;
const alerts: string[] = [];
let admin: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

const CLUSTER_STEPS = ['permissions', 'rolebindings', 'serviceaccount', 'token'].map((s) => `cluster/${CLUSTER}/${s}`);

before(async () => {
  alertReceiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      alerts.push(String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { text: unknown }).text));
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => alertReceiver.listen(0, '127.0.0.1', resolve));
  env = await startKubevisaEnv({
    autoApproval: false,
    extraConfig: {
      identity: {
        offboarding: {
          retryInterval: '1s',
          maxRetryInterval: '2s',
          alertWebhook: `http://127.0.0.1:${(alertReceiver.address() as AddressInfo).port}/offboarding`,
        },
      },
    },
  });
  await env.kOk(['create', 'namespace', 'ob-retry']);
  server = await startServerProcess(env);
  admin = (await loginAs(env.serverUrl, people.sam)).token;
});

after(async () => {
  server?.kill('SIGKILL');
  if (server) await waitForExit(server);
  await env?.stop();
  alertReceiver?.closeAllConnections();
  await new Promise((resolve) => alertReceiver?.close(resolve));
});

async function receipt(id: string): Promise<Receipt> {
  const answer = await call('GET', `/api/v1/offboardings/${id}`, admin);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body as unknown as Receipt;
}

async function receiptReaches(id: string, status: Receipt['status'], timeoutMs: number): Promise<Receipt> {
  let last: Receipt | undefined;
  try {
    await eventually(`receipt ${status}`, timeoutMs, async () => (last = await receipt(id)).status === status);
  } catch (error) {
    throw new Error(`${(error as Error).message}; the receipt: ${JSON.stringify(last, null, 2)}`, { cause: error });
  }
  return last!;
}

test('an offboarding while kube-apiserver is down is unproven and alerted, survives a kubevisa restart, and completes with live proofs once the cluster is back', async () => {
  const approver = (await loginAs(env.serverUrl, people.ann)).token;
  const cora = await loginAs(env.serverUrl, people.cora);
  const engagement = await call('POST', '/api/v1/engagements', admin, {
    name: 'retry',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['ob-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces: ['ob-retry'],
    duration: '1h',
    reason: 'JIRA-11',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const visaId = String(requested.body.id);
  assert.equal((await call('POST', `/api/v1/visas/${visaId}/approve`, approver, {})).status, 200);
  await eventually(
    'the visa RoleBinding',
    20_000,
    async () => (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', 'ob-retry'])).code === 0,
  );
  // A direct-mode token, the credential that outlives everything kubevisa controls but the ServiceAccount.
  const credential = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora.token);
  assert.equal(credential.status, 200, JSON.stringify(credential.body));
  const direct = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'cora-direct');
  const before = await env.k(['get', 'pods', '-n', 'ob-retry'], direct);
  assert.equal(before.code, 0, before.stderr);

  await env.cp.stopApiServer();
  const started = await call('POST', `/api/v1/persons/${encodeURIComponent(people.cora.email)}/offboarding`, admin, {
    reason: 'contract ended',
    wait: false,
  });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = String(started.body.id);

  const unproven = await receiptReaches(id, 'unproven', 60_000);
  assert.deepEqual(
    unproven.steps
      .filter((s) => s.status !== 'proven')
      .map((s) => s.id)
      .sort(),
    CLUSTER_STEPS,
    'only what needs the cluster is unproven; the store, token and stream steps are proven without it',
  );
  for (const step of unproven.steps.filter((s) => s.status !== 'proven')) {
    assert.equal(step.status, 'unproven', `${step.id}: ${step.detail}`);
  }
  assert.match(unproven.summary, /NOT proven yet/);
  await eventually('the unproven alert at the webhook', 20_000, async () =>
    alerts.some((a) => a.includes(people.cora.email) && /is NOT proven/.test(a)),
  );

  // The server dies with the receipt open, and starts again while kube-apiserver is still down.
  server!.kill('SIGKILL');
  await waitForExit(server!);
  server = await startServerProcess(env);
  const afterRestart = await receipt(id);
  assert.notEqual(afterRestart.status, 'proven', 'nothing could have proven the cluster steps yet');
  // The resumed receipt is retried (attempts grow) while the cluster is still unreachable.
  const attemptsBefore = unproven.steps.find((s) => s.id === `cluster/${CLUSTER}/serviceaccount`)!.attempts;
  await eventually('a retry after the restart', 20_000, async () => {
    const now = await receipt(id);
    return now.steps.find((s) => s.id === `cluster/${CLUSTER}/serviceaccount`)!.attempts > attemptsBefore;
  });
  assert.equal((await receipt(id)).status, 'unproven');

  await env.cp.startApiServer();
  const proven = await receiptReaches(id, 'proven', 90_000);
  for (const step of proven.steps) assert.equal(step.status, 'proven', `${step.id}: ${step.detail}`);
  const byId = new Map(proven.steps.map((s) => [s.id, s]));
  assert.match(byId.get(`cluster/${CLUSTER}/serviceaccount`)!.detail, /ServiceAccount in kubevisa-visas is gone/);
  assert.match(byId.get(`cluster/${CLUSTER}/rolebindings`)!.detail, /no RoleBinding labelled for the person/);
  assert.match(byId.get(`cluster/${CLUSTER}/permissions`)!.detail, /nothing beyond discovery in .*ob-retry/);
  // No canary could be minted (the cluster was down) and the restart would have lost it: the token proof waits out
  // kube-apiserver's cache after seeing the ServiceAccount gone, and says it is inferred.
  assert.match(byId.get(`cluster/${CLUSTER}/token`)!.detail, /^inferred, no canary token/);
  for (const stepId of CLUSTER_STEPS) assert.ok(byId.get(stepId)!.attempts >= 2, `${stepId} was retried`);
  await eventually('the proven-after-retry alert', 20_000, async () =>
    alerts.some((a) => a.includes(people.cora.email) && /is now proven/.test(a)),
  );

  // What the receipt claims, checked independently with the cluster admin's credential and the person's old token.
  const sa = serviceAccountName(people.cora.email);
  assert.notEqual((await env.k(['get', 'serviceaccount', sa, '-n', 'kubevisa-visas'])).code, 0, 'the SA is gone');
  assert.equal(
    await env.kOk(['get', 'rolebindings', '-A', '-l', `kubevisa.io/visa=${visaId}`, '-o', 'name']),
    '',
    'no RoleBinding of the visa is left',
  );
  const refused = await env.k(['get', 'pods', '-n', 'ob-retry'], direct);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /Unauthorized|must be logged in/i, 'kube-apiserver refuses the old direct token');
});
