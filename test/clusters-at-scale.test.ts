/**
 * Twenty clusters on one kubevisa deployment, registered at run time: two replicas on one PostgreSQL in front of the
 * test control plane's cluster and nineteen more kube-apiservers on its etcd (each a cluster of its own, with its
 * own objects, RBAC and ServiceAccount signing key: ControlPlane.addApiServer). kubevisa is installed into each with
 * its own least-privilege credential, and each is registered with the real `kubevisa cluster add`, against replica
 * A; replica B serves it too. Then one cluster's kube-apiserver is stopped: a short visa on every other cluster still
 * binds there and is gone after its deadline, and the stopped one catches up once it is back. `kubevisa cluster
 * remove` takes one out of service. Every figure is printed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import { createClusterClient, type ClusterClient } from '../src/cluster/client.ts';
import type { PersonJson } from '../src/cli/api-types.ts';
import { runCli } from '../src/cli/testing/run-cli.ts';
import { freePorts, type ExtraApiServer } from '../src/dev/cluster/control-plane.ts';
import { installIntoDataDir } from '../src/dev/local-setup.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { kubectl } from './support/kubectl.ts';
import { startReplica, stopAll, type Replica } from './support/replicas.ts';

const EXTRA = 19;
const NS = 'scale';
/** The cluster whose kube-apiserver is stopped while visas are granted on all the others. */
const DOWN = 'c07';

let env: KubevisaEnv;
let cliDir: string;
const replicas: Replica[] = [];
const extras = new Map<string, ExtraApiServer>();
/** kubevisa's credential for each extra cluster, as `kubevisa install` wrote it. */
const credentials = new Map<string, string>();
let sam: string;
let ann: string;
let cora: string;

async function cliOk(args: string[]): Promise<string> {
  const result = await runCli(args, { configDir: cliDir, timeoutMs: 60_000 });
  assert.equal(result.code, 0, `kubevisa ${args.join(' ')}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stdout;
}

/** The admin kubeconfig of a cluster by kubevisa's name for it. */
const adminOf = (cluster: string) =>
  cluster === CLUSTER ? env.cp.adminKubeconfig : extras.get(cluster)!.adminKubeconfig;

/** Per cluster, the project's cluster client with that cluster's admin kubeconfig (one connection pool each). */
const observers = new Map<string, ClusterClient>();

/**
 * Whether the visa's RoleBinding exists on the cluster, as its kube-apiserver answers a GET; an unreachable cluster
 * answers neither (it throws). Asked through a kept connection rather than with a kubectl process: the waits below
 * ask nineteen clusters every 200 ms, and nineteen kubectl processes that often kept both cores busy (load 10 to
 * 17), which slowed kubevisa's expiries and this process's own reading of the clock by seconds.
 */
async function bindingExists(cluster: string, visaId: string): Promise<boolean> {
  let client = observers.get(cluster);
  if (client === undefined) {
    client = createClusterClient({ name: cluster, kubeconfigPath: adminOf(cluster), requestTimeoutMs: 10_000 });
    observers.set(cluster, client);
  }
  return (await client.getRoleBinding(NS, `kubevisa-${visaId}`)) !== undefined;
}

/** `bindingExists` for waiting: a failed read is not an answer, so neither wait ends on one. */
const seenBound = (cluster: string, visaId: string) => bindingExists(cluster, visaId).catch(() => false);
const seenGone = (cluster: string, visaId: string) =>
  bindingExists(cluster, visaId).then(
    (exists) => !exists,
    () => false,
  );

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return Date.now();
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
    }),
  );
}

before(async () => {
  env = await startKubevisaEnv({
    store: 'postgres',
    tls: true,
    autoApproval: false,
    extraConfig: { resyncInterval: '2s' },
  });
  const [portB] = await freePorts(1);
  replicas.push(await startReplica(env, 'A', env.serverPort));
  replicas.push(await startReplica(env, 'B', portB!));
  const names = Array.from({ length: EXTRA }, (_, i) => `c${String(i + 1).padStart(2, '0')}`);
  let started = Date.now();
  // Four at a time: each kube-apiserver takes a few seconds of CPU to start.
  await pool(names, 4, async (name) => {
    extras.set(name, await env.cp.addApiServer(name));
  });
  console.log(`${EXTRA} more kube-apiservers on one etcd started in ${Date.now() - started} ms`);
  const credentialsDir = join(env.dir, 'extra-credentials');
  await mkdir(credentialsDir, { recursive: true, mode: 0o700 });
  started = Date.now();
  await pool(names, 4, async (name) => {
    credentials.set(
      name,
      await installIntoDataDir({
        adminKubeconfig: extras.get(name)!.adminKubeconfig,
        clusterName: name,
        dataDir: credentialsDir,
      }),
    );
  });
  console.log(`kubevisa installed into ${EXTRA} clusters in ${Date.now() - started} ms`);
  for (const cluster of [CLUSTER, ...names]) {
    const created = await kubectl(env.cp.binaries.kubectl, ['create', 'namespace', NS], {
      kubeconfig: adminOf(cluster),
    });
    assert.equal(created.code, 0, created.stderr);
  }
  const samSession = await loginAs(replicas[0]!.url, people.sam);
  sam = samSession.token;
  ann = (await loginAs(replicas[0]!.url, people.ann)).token;
  cora = (await loginAs(replicas[1]!.url, people.cora)).token;
  cliDir = await mkdtemp(join(tmpdir(), 'kubevisa-scale-cli-'));
  await writeConfig(cliDir, { server: env.serverUrl, caFile: env.config.tls!.caFile! });
  await writeSession(cliDir, {
    server: env.serverUrl,
    sessionSecret: samSession.sessionSecret,
    sessionExpiresAt: inDays(1),
    person: (await api(env.serverUrl, 'GET', '/api/v1/me', { token: sam })).body as unknown as PersonJson,
  });
});

after(async () => {
  for (const replica of replicas)
    console.log(`--- ${replica.name}\n${replica.output().trim().split('\n').slice(-8).join('\n')}`);
  await stopAll(replicas.map((replica) => replica.child as ChildProcess));
  await env?.stop();
  if (cliDir) await rm(cliDir, { recursive: true, force: true });
});

test('nineteen clusters added with `kubevisa cluster add` on replica A: both replicas list all twenty', async () => {
  const started = Date.now();
  for (const [name, file] of credentials) {
    const added = JSON.parse(await cliOk(['cluster', 'add', name, '--kubeconfig', file, '-o', 'json'])) as {
      name: string;
    };
    assert.equal(added.name, name);
  }
  console.log(`${EXTRA} clusters registered with the CLI in ${Date.now() - started} ms`);
  const listed = JSON.parse(await cliOk(['cluster', 'list', '-o', 'json'])) as {
    items: { name: string; source: string; reachable: boolean }[];
  };
  assert.equal(listed.items.length, EXTRA + 1);
  assert.deepEqual(
    listed.items.filter((c) => c.source === 'registered').map((c) => c.name),
    [...credentials.keys()].sort(),
  );
  assert.ok(
    listed.items.every((c) => c.reachable),
    JSON.stringify(listed.items.filter((c) => !c.reachable)),
  );
  // B learns of them from the store (it re-reads the registered clusters every 10 s).
  await until('replica B to serve all twenty', 30_000, async () => {
    const answer = await api(replicas[1]!.url, 'GET', '/api/v1/clusters/status', { token: sam });
    return answer.status === 200 && (answer.body.items as unknown[]).length === EXTRA + 1;
  });
});

test(`with ${DOWN} down, a short visa on each of the other nineteen binds there and is gone after its deadline; ${DOWN} catches up once back`, async () => {
  const clusters = [CLUSTER, ...extras.keys()];
  const engagement = await api(replicas[0]!.url, 'POST', '/api/v1/engagements', {
    token: sam,
    body: {
      name: 'scale',
      vendor: 'Acme',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters, namespacePatterns: [NS], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    },
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  await extras.get(DOWN)!.stop();
  const grant = async (cluster: string, duration: string, via: Replica) => {
    const requested = await api(via.url, 'POST', '/api/v1/visas', {
      token: cora,
      body: { profile: 'viewer', cluster, namespaces: [NS], duration, reason: 'SCALE-1' },
    });
    assert.equal(requested.status, 201, `${cluster}: ${JSON.stringify(requested.body)}`);
    const approved = await api(via.url, 'POST', `/api/v1/visas/${String(requested.body.id)}/approve`, {
      token: ann,
      body: {},
    });
    assert.equal(approved.status, 200, `${cluster}: ${JSON.stringify(approved.body)}`);
    return {
      cluster,
      id: String(requested.body.id),
      approvedAt: Date.now(),
      notAfter: Date.parse(String(approved.body.notAfter)),
    };
  };
  const live = clusters.filter((cluster) => cluster !== DOWN);
  const visas = [];
  for (const [i, cluster] of live.entries()) visas.push(await grant(cluster, '30s', replicas[i % 2]!));
  const onDown = await grant(DOWN, '1h', replicas[0]!);
  const bound = await Promise.all(
    visas.map(
      async (visa) =>
        (await until(`the binding on ${visa.cluster}`, 30_000, () => seenBound(visa.cluster, visa.id))) -
        visa.approvedAt,
    ),
  );
  console.log(
    `with ${DOWN} down: bindings on ${live.length} clusters, slowest ${Math.max(...bound)} ms after its approval`,
  );
  const late = await Promise.all(
    visas.map(
      async (visa) =>
        (await until(`the expired binding on ${visa.cluster} to go`, visa.notAfter - Date.now() + 30_000, () =>
          seenGone(visa.cluster, visa.id),
        )) - visa.notAfter,
    ),
  );
  console.log(`with ${DOWN} down: bindings gone ${Math.min(...late)}–${Math.max(...late)} ms after notAfter`);
  assert.ok(Math.max(...late) < 20_000, `${Math.max(...late)} ms after notAfter`);
  assert.ok(Math.min(...late) > -500, `a binding went ${-Math.min(...late)} ms before its visa's notAfter`);
  await extras.get(DOWN)!.start();
  const backAt = Date.now();
  const caughtUp = await until(`the binding on ${DOWN} once it is back`, 60_000, () => seenBound(DOWN, onDown.id));
  console.log(`${DOWN} back: its visa's binding made ${caughtUp - backAt} ms after its kube-apiserver was`);
});

test('`kubevisa cluster remove` takes a cluster out: it is no longer listed and no visa may name it', async () => {
  const removed = await runCli(['cluster', 'remove', 'c19', '--force'], { configDir: cliDir, timeoutMs: 60_000 });
  assert.equal(removed.code, 0, `${removed.stdout}\n${removed.stderr}`);
  const listed = JSON.parse(await cliOk(['cluster', 'list', '-o', 'json'])) as { items: { name: string }[] };
  assert.equal(listed.items.length, EXTRA);
  assert.ok(!listed.items.some((c) => c.name === 'c19'));
  const refused = await api(replicas[1]!.url, 'POST', '/api/v1/visas', {
    token: cora,
    body: { profile: 'viewer', cluster: 'c19', namespaces: [NS], duration: '1h', reason: 'SCALE-2' },
  });
  assert.ok(refused.status >= 400 && refused.status < 500, JSON.stringify(refused.body));
  assert.match(JSON.stringify(refused.body), /c19/);
});
