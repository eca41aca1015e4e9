// Attacks on replicas that kubevisa withstands, against two real `kubevisa server` processes on one PostgreSQL
// database, the real control plane and the real OIDC provider: notifications forged on the change channel by a
// database role that has no grant at all (PostgreSQL lets any role that can connect NOTIFY on any channel; the
// replicas sign theirs with a key they share and drop the rest), malformed
// and prototype-shaped payloads, a browser login's callback and one-time code and a device login raced on two
// replicas at once, and a write by kubevisa's own ServiceAccount stamped below the fence.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { completeLoginWithHttp } from '../src/dev/idp.ts';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import { changeChannel } from '../src/store/postgres/store.ts';
import { TEST_POSTGRES_URL } from '../src/store/postgres/test-database.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectlBackground } from './support/kubectl.ts';
import { gatewayKubeconfig, startReplica, stopAll, type Replica } from './support/replicas.ts';

const NS = 'atk-replicas';
const CHANNEL = changeChannel('public');

let env: KubevisaEnv;
let admin: string;
let approver: string;
let outsiderRole: string;
let outsiderUrl: string;
const replicas = new Map<string, Replica>();
const running: ChildProcess[] = [];

const at = (name: string) => replicas.get(name)!;
const call = (replica: string, method: string, path: string, token?: string, body?: unknown) =>
  api(at(replica).url, method, path, { ...(token ? { token } : {}), ...(body !== undefined ? { body } : {}) });
const gatewayStatus = async (replica: string, token: string) =>
  (await call(replica, 'GET', `/clusters/${CLUSTER}/api/v1/namespaces/${NS}/pods`, token)).status;

/** Stream cuts a replica counted for a reason (its /metrics). */
async function cutsFor(replica: string, reason: string): Promise<number> {
  const text = String((await call(replica, 'GET', '/metrics')).body.raw ?? '');
  return text
    .split('\n')
    .filter((line) => line.startsWith('kubevisa_gateway_stream_cuts_total{') && line.includes(`reason="${reason}"`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** A debugger visa on NS for the holder of `token`, approved, with its RoleBinding in place. */
async function grant(token: string): Promise<string> {
  const requested = await call('B', 'POST', '/api/v1/visas', token, {
    profile: 'debugger',
    cluster: CLUSTER,
    namespaces: [NS],
    duration: '1h',
    reason: 'replica attacks',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  const approved = await call('A', 'POST', `/api/v1/visas/${id}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await eventually(
    `RoleBinding of ${id}`,
    15_000,
    async () => (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', NS])).code === 0,
  );
  return id;
}

/** `kubectl get pods -w` held open through one replica's gateway. */
async function watchVia(replica: string, token: string, name: string) {
  const kubeconfig = await gatewayKubeconfig(env, at(replica), token, name);
  const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'pods', '-n', NS, '-w'], {
    kubeconfig,
    timeoutMs: 120_000,
  });
  await watch.waitFor(/^app\s/m, 20_000);
  return {
    ended: () => watch.child.exitCode !== null || watch.child.signalCode !== null,
    kill: () => watch.child.kill('SIGKILL'),
  };
}

/** Sends each payload on kubevisa's change channel as the role with no grant on kubevisa's database. */
async function notifyAsOutsider(payloads: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: outsiderUrl });
  await client.connect();
  try {
    for (const payload of payloads) await client.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
  } finally {
    await client.end();
  }
}

const forged = (change: Record<string, unknown>) => JSON.stringify({ o: 'forged-origin', c: change });

before(async () => {
  env = await startKubevisaEnv({ store: 'postgres', tls: true, autoApproval: false });
  await env.kOk(['create', 'namespace', NS]);
  await eventually(
    `default ServiceAccount in ${NS}`,
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', NS])).code === 0,
  );
  await env.kOk(['run', 'app', '-n', NS, '--image=registry.example/app:1']);
  await eventually(
    'pod app Running',
    30_000,
    async () => (await env.kOk(['get', 'pod', 'app', '-n', NS, '-o', 'jsonpath={.status.phase}'])) === 'Running',
  );
  const [portB] = await freePorts(1);
  for (const [name, port] of [
    ['A', env.serverPort],
    ['B', portB!],
  ] as const) {
    const replica = await startReplica(env, name, port);
    running.push(replica.child);
    replicas.set(name, replica);
  }
  admin = (await loginAs(at('A').url, people.sam)).token;
  approver = (await loginAs(at('A').url, people.ann)).token;
  const engagement = await call('A', 'POST', '/api/v1/engagements', admin, {
    name: 'replica-attacks',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: { clusters: [CLUSTER], namespacePatterns: [NS], profiles: ['debugger'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  // A login role of the same PostgreSQL server with no grant on kubevisa's database (only PUBLIC's CONNECT).
  outsiderRole = `kv_outsider_${randomBytes(4).toString('hex')}`;
  const superuser = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await superuser.connect();
  try {
    await superuser.query(`CREATE ROLE ${outsiderRole} LOGIN PASSWORD 'outsider'`);
  } finally {
    await superuser.end();
  }
  const url = new URL(env.postgresUrl!);
  url.username = outsiderRole;
  url.password = 'outsider';
  outsiderUrl = url.toString();
});

after(async () => {
  await stopAll(running);
  await env?.stop();
  if (outsiderRole !== undefined) {
    const superuser = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await superuser.connect();
    await superuser.query(`DROP ROLE IF EXISTS ${outsiderRole}`).catch(() => undefined);
    await superuser.end();
  }
});

describe('notifications forged by a database role with no grant', () => {
  test('a forged end of an active visa, of its person and of its session ends nothing on any replica', async () => {
    const cora = await loginAs(at('B').url, people.cora);
    const visaId = await grant(cora.token);
    const watch = await watchVia('B', cora.token, 'cora-forged');
    try {
      const sessionId = String(
        (JSON.parse(Buffer.from(cora.token.split('.')[1]!, 'base64url').toString('utf8')) as { sid: string }).sid,
      );
      const reason = `forged ${randomBytes(4).toString('hex')}`;
      await notifyAsOutsider([
        forged({ kind: 'visas-ended', visaIds: [visaId], reason }),
        forged({ kind: 'person-deprovisioned', personId: cora.personId, reason }),
        forged({ kind: 'sessions-ended', sessionIds: [sessionId] }),
      ]);
      // Unsigned (the outsider does not hold the replicas' key): each replica drops them and says so. Were they
      // read, the replicas would re-read each id from the store, which says all three are live.
      for (const name of ['A', 'B']) {
        await eventually(`${name} to report the forged notifications`, 5000, async () =>
          /dropped \d+ change notification\(s\) on channel \S+ \(not signed with this installation's key, or unreadable\)/.test(
            at(name).output(),
          ),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(watch.ended(), false, 'the watch through B is still open');
      assert.equal(await gatewayStatus('A', cora.token), 200);
      assert.equal(await gatewayStatus('B', cora.token), 200);
      assert.equal(await cutsFor('B', reason), 0, 'nothing was cut for the forged reason');
      // The channel itself works: a real revoke on A still reaches B's stream at once.
      const real = `real revoke ${randomBytes(4).toString('hex')}`;
      assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: real })).status, 200);
      await eventually('the watch through B ended', 10_000, async () => watch.ended());
      assert.equal(await cutsFor('B', real), 1);
    } finally {
      watch.kill();
    }
  });

  test('malformed and prototype-shaped payloads crash no replica and leave the listener working', async () => {
    const payloads = [
      'not json',
      '{"__proto__":{"polluted":1},"o":"x","c":{"kind":"visas-changed"}}',
      '{"o":"x","c":{"kind":"clusters-changed","clusters":["__proto__","constructor","prototype"]}}',
      '{"o":"x","c":{"kind":"person-deprovisioned","personId":"__proto__","reason":"x"}}',
      '{"o":"x","c":{"kind":"visas-ended","visaIds":["constructor","__proto__"],"reason":"x"}}',
      '{"o":"x","c":{"kind":"sessions-ended","sessionIds":["__proto__"]}}',
      '{"o":"x","c":{"kind":"visas-ended","visaIds":"v_x","reason":{"toString":1}}}',
      '{"o":{"toString":1},"c":{"kind":"visas-changed"}}',
      `{"o":"x","c":{"kind":"clusters-changed","clusters":["${CLUSTER}"]}}`,
      '['.repeat(3900) + ']'.repeat(3900),
    ];
    await notifyAsOutsider(payloads);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    for (const name of ['A', 'B']) {
      assert.equal(at(name).child.exitCode, null, `${name} is running`);
      assert.equal((await call(name, 'GET', '/healthz')).status, 200, `${name} is healthy`);
    }
    assert.equal(Object.hasOwn(Object.prototype, 'polluted'), false);
    const carl = await loginAs(at('A').url, people.carl);
    const visaId = await grant(carl.token);
    const watch = await watchVia('B', carl.token, 'carl-after-garbage');
    try {
      assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: 'after' })).status, 200);
      await eventually('the watch through B ended', 10_000, async () => watch.ended());
    } finally {
      watch.kill();
    }
  });
});

describe('streams held through one replica, access ended through the other', () => {
  test('a port-forward and an exec through B end when A revokes their visa, and B refuses the next request', async () => {
    const carl = await loginAs(at('B').url, people.carl);
    const visaId = await grant(carl.token);
    const kubeconfig = await gatewayKubeconfig(env, at('B'), carl.token, 'carl-forward');
    const forward = kubectlBackground(env.cp.binaries.kubectl, ['port-forward', '-n', NS, 'pod/app', ':8080'], {
      kubeconfig,
      timeoutMs: 120_000,
    });
    const exec = kubectlBackground(
      env.cp.binaries.kubectl,
      ['exec', '-n', NS, 'app', '--', 'sh', '-c', 'echo exec-running; sleep 60'],
      { kubeconfig, timeoutMs: 120_000 },
    );
    const ended = (p: typeof forward) => p.child.exitCode !== null || p.child.signalCode !== null;
    try {
      await forward.waitFor(/Forwarding from/, 20_000);
      await exec.waitFor(/exec-running/, 20_000);
      const reason = `cross-replica cut ${randomBytes(4).toString('hex')}`;
      assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason })).status, 200);
      await eventually('the port-forward through B ended', 10_000, async () => ended(forward));
      await eventually('the exec through B ended', 10_000, async () => ended(exec));
      assert.equal(await cutsFor('B', reason), 2, 'B cut both, for the reason given on A');
      assert.equal(await gatewayStatus('B', carl.token), 403);
    } finally {
      forward.child.kill('SIGKILL');
      exec.child.kill('SIGKILL');
    }
  });
});

describe('a revocation reason heard on another replica', () => {
  test('499 letters and an emoji, revoked via A with a watch open on B: B cuts the watch, records it, goes on serving, and the trail verifies', async () => {
    // 500 characters, as the API allows, but 501 UTF-16 units: the change channel used to cut reasons at 500 units,
    // so B recorded the cut watch under a reason ending in half an emoji, which the trail refuses; B's gateway then
    // failed every write after it and answered 503 to everyone.
    const reason = `${'r'.repeat(499)}\u{1F600}`;
    const cora = await loginAs(at('B').url, people.cora);
    const carl = await loginAs(at('B').url, people.carl);
    const visaId = await grant(cora.token);
    await grant(carl.token);
    const watch = await watchVia('B', cora.token, 'cora-emoji-reason');
    try {
      assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason })).status, 200);
      await eventually('the watch through B ended', 10_000, async () => watch.ended());
      await eventually("B's record of the cut watch is in the trail", 15_000, async () => {
        const events = await call('A', 'GET', `/api/v1/audit/events?visa=${visaId}&action=gateway.request`, admin);
        return (events.body.items ?? []).some((event) => String(event.reason ?? '').startsWith('rrrr'));
      });
      assert.equal(await gatewayStatus('B', carl.token), 200, 'B still relays');
      const verdict = await call('A', 'POST', '/api/v1/audit/verify', admin, {});
      assert.equal(verdict.body.ok, true, String(verdict.body.summary));
    } finally {
      watch.kill();
    }
  });
});

describe('logins raced on two replicas', () => {
  test('a browser callback and its one-time code, each used at once on two replicas, work once', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const started = await call('B', 'POST', '/api/v1/login/browser', undefined, {
      redirectUri: 'http://127.0.0.1:9/callback',
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      state: randomBytes(16).toString('base64url'),
    });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const atIdp = await completeLoginWithHttp({
      url: String(started.body.authorizationUrl),
      login: people.carl.email,
      password: people.carl.password,
    });
    assert.equal(atIdp.flow, 'code');
    const back = new URL(atIdp.flow === 'code' ? atIdp.location : '');
    const callbacks = await Promise.all(['A', 'B'].map((r) => call(r, 'GET', back.pathname + back.search)));
    const redirected = callbacks.filter((answer) => answer.status === 302);
    assert.equal(redirected.length, 1, `one callback goes on: ${callbacks.map((c) => c.status).join(',')}`);
    const code = new URL(redirected[0]!.location!).searchParams.get('code');
    const trades = await Promise.all(
      ['A', 'B', 'A', 'B'].map((r) =>
        call(r, 'POST', '/api/v1/login/exchange', undefined, { code, codeVerifier: verifier }),
      ),
    );
    assert.deepEqual(
      trades.map((t) => t.status).sort(),
      [200, 401, 401, 401],
      'the one-time code is traded once, whichever replicas race',
    );
  });

  test('a device login polled at once on two replicas gives one session, then is gone', async () => {
    const started = await call('A', 'POST', '/api/v1/login/device');
    assert.equal(started.status, 201, JSON.stringify(started.body));
    await completeLoginWithHttp({
      url: String(started.body.verificationUriComplete),
      login: people.carl.email,
      password: people.carl.password,
    });
    const poll = (replica: string) =>
      call(replica, 'POST', `/api/v1/login/device/${String(started.body.loginId)}/poll`);
    let sessions = 0;
    for (let round = 0; round < 100 && sessions === 0; round++) {
      const answers = await Promise.all(['A', 'B', 'A', 'B'].map(poll));
      sessions = answers.filter((answer) => answer.status === 200).length;
      assert.ok(sessions <= 1, `at most one session per login: ${answers.map((a) => a.status).join(',')}`);
      if (sessions === 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(sessions, 1, 'the login completed');
    const again = await Promise.all(['A', 'B'].map(poll));
    assert.deepEqual(
      again.map((a) => a.status),
      [404, 404],
    );
  });
});

describe('fencing', () => {
  test("a RoleBinding written with kubevisa's own ServiceAccount below the fence is refused", async () => {
    const credential = env.config.clusters[0]!.kubeconfig!;
    const fence = Number(
      await env.kOk(['get', 'configmap', 'kubevisa-fence', '-n', 'kubevisa-system', '-o', 'jsonpath={.data.epoch}']),
    );
    assert.ok(fence >= 1, `a leader raised the fence: ${fence}`);
    const file = join(env.dir, 'below-fence.json');
    await writeFile(
      file,
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'below-fence', namespace: NS, annotations: { 'kubevisa.io/epoch': String(fence - 1) } },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
        subjects: [{ kind: 'User', name: 'mallory' }],
      }),
    );
    const created = await env.k(['create', '-f', file], credential);
    assert.notEqual(created.code, 0);
    assert.match(created.stderr, /kubevisa fencing: this write carries epoch \d+, below the fence/);
    assert.notEqual((await env.k(['get', 'rolebinding', 'below-fence', '-n', NS])).code, 0);
  });
});
