// kubevisa's errors never echo its internals to a contractor: with the cluster's kube-apiserver stopped, the API
// route a contractor calls that reaches the cluster (a direct-mode credential) and the CLI command kubectl runs for
// it answer with the cluster's name, what happened and what to do, and nothing of kube-apiserver's host:port, the
// server's file paths or the raw Node error; the server log keeps the detail. Real control plane, server and CLI.
import { runCli } from '../src/cli/testing/run-cli.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import type { PersonJson } from '../src/cli/api-types.ts';
import type { Profile } from '../src/domain/model.ts';
import { viewerProfile } from '../src/rbac/profiles.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let cora: { token: string; sessionSecret: string; personId: string };
let cliDir: string;
let apiServerPort: number;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

before(async () => {
  // A profile that may be used in direct mode, so the credential route goes all the way to the cluster.
  const direct = { ...viewerProfile, name: 'viewer-direct', directMode: 'allowed' } as Profile;
  env = await startKubevisaEnv({ autoApproval: false, extraProfiles: [direct] });
  for (const cluster of env.config.clusters) (cluster as { directMode?: boolean }).directMode = true;
  await env.kOk(['create', 'namespace', 'ni-app']);
  await env.startInProcess();
  const admin = (await loginAs(env.serverUrl, people.sam)).token;
  const approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const engagement = await call('POST', '/api/v1/engagements', admin, {
    name: 'internals',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['ni-*'], profiles: ['viewer-direct'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile: 'viewer-direct',
    cluster: CLUSTER,
    namespaces: ['ni-app'],
    duration: '2h',
    reason: 'internals test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await eventually(
    'RoleBinding in ni-app',
    10_000,
    async () =>
      (await env.k(['get', 'rolebinding', `kubevisa-${String(requested.body.id)}`, '-n', 'ni-app'])).code === 0,
  );
  apiServerPort = Number(new URL(env.cp.apiServerUrl).port);
  cliDir = await mkdtemp(join(tmpdir(), 'kubevisa-internals-cli-'));
  await writeConfig(cliDir, { server: env.serverUrl });
  await writeSession(cliDir, {
    server: env.serverUrl,
    sessionSecret: cora.sessionSecret,
    sessionExpiresAt: inDays(1),
    person: (await call('GET', '/api/v1/me', cora.token)).body as unknown as PersonJson,
  });
});
after(async () => {
  await env?.stop();
  if (cliDir) await rm(cliDir, { recursive: true, force: true });
});

/** What must never reach a contractor: kube-apiserver's address, the server's files, Node's error text. */
function assertNoInternals(text: string, where: string) {
  for (const leak of [
    `127.0.0.1:${apiServerPort}`,
    env.cp.apiServerUrl,
    String(apiServerPort),
    '/tmp/',
    env.dir,
    'ECONNREFUSED',
    'fetch failed',
    'connection refused',
    'kubeconfig',
  ]) {
    assert.ok(!text.includes(leak), `${where} gives away '${leak}': ${text}`);
  }
}

/** Runs the real CLI with the test's state folder. */
function cli(args: string[]) {
  return runCli(args, { configDir: cliDir, timeoutMs: 60_000 });
}

/** Collects what the in-process server writes to its log (stderr) while `work` runs. */
async function serverLogDuring<T>(work: () => Promise<T>): Promise<{ result: T; log: string }> {
  const write = process.stderr.write.bind(process.stderr);
  let log = '';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    log += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  try {
    return { result: await work(), log };
  } finally {
    process.stderr.write = write;
  }
}

test('with kube-apiserver down, the API and the CLI tell a contractor which cluster and what to do, never its address, paths or Node errors', async () => {
  // The route reaches the cluster: it answers while kube-apiserver runs.
  const working = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora.token);
  assert.equal(working.status, 200, JSON.stringify(working.body));

  process.kill(env.cp.pidOf('kube-apiserver')!, 'SIGKILL');
  await eventually('kube-apiserver refuses connections', 15_000, async () => {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(apiServerPort, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    return refused;
  });

  const { result: answer, log } = await serverLogDuring(() =>
    call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora.token),
  );
  assert.equal(answer.status, 503, JSON.stringify(answer.body));
  assert.equal(answer.body.code, 'ERR_CLUSTER_UNREACHABLE');
  assertNoInternals(JSON.stringify(answer.body), 'the API answer');
  assert.match(String(answer.body.detail), /cannot reach cluster 'test' right now; this is not about your access/);
  assert.match(String(answer.body.detail), /Try again in a minute; if it keeps failing, tell a kubevisa admin/);
  assert.equal(answer.body.cluster, CLUSTER);
  assert.ok(log.includes(`127.0.0.1:${apiServerPort}`), `the server log keeps the address: ${log}`);
  assert.match(log, /ERR_CLUSTER_UNREACHABLE/);

  // What kubectl shows its user: the exec plugin's own words on stderr.
  const plugin = await cli(['credential', '--cluster', CLUSTER, '--direct']);
  assert.equal(plugin.code, 1, plugin.stdout);
  assert.equal(plugin.stdout, '', 'no credential printed');
  assertNoInternals(plugin.stderr, 'the CLI');
  assert.match(plugin.stderr, /cannot reach cluster 'test' right now.*\[ERR_CLUSTER_UNREACHABLE\]/);
});
