// Three real `kubevisa server` processes on one PostgreSQL database, the real control plane and the real OIDC provider:
// any replica serves any request (a device login started on A and polled on B, a browser login started on B that
// comes back to A and is traded on C), and what one replica does to access reaches the others' open streams and token
// checks (a revoke, a logout, an offboarding; a replica killed with open streams; the notification connection killed;
// a replica that hears no notification at all still cuts access by its periodic re-check). A server given other keys
// refuses to start.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { completeLoginWithHttp } from '../src/dev/idp.ts';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';
import { eventually, kubectl, kubectlBackground } from './support/kubectl.ts';
import {
  gatewayKubeconfig,
  spawnServer,
  startReplica,
  stopAll,
  writeReplicaConfig,
  type Replica,
} from './support/replicas.ts';

const NS = 'fan';

let env: KubevisaEnv;
let admin: string;
let approver: string;
const replicas = new Map<string, Replica>();
const running: ChildProcess[] = [];

async function startNamed(name: string, port: number, extraEnv: Record<string, string> = {}): Promise<Replica> {
  const replica = await startReplica(env, name, port, extraEnv);
  running.push(replica.child);
  replicas.set(name, replica);
  return replica;
}

const at = (name: string) => replicas.get(name)!;
const call = (replica: string, method: string, path: string, token?: string, body?: unknown) =>
  api(at(replica).url, method, path, { ...(token ? { token } : {}), ...(body !== undefined ? { body } : {}) });

/** A kubeconfig whose cluster is the gateway of one replica. */
const kubeconfigVia = (replica: string, token: string, name: string) =>
  gatewayKubeconfig(env, at(replica), token, name);

/** A debugger visa on NS for the holder of `token`, approved, with its RoleBinding in place. */
async function grant(token: string): Promise<string> {
  // The only visa of the holder on NS: a stream stays open (rightly) while any other visa covers it.
  const mine = await call('A', 'GET', '/api/v1/visas?state=active', token);
  for (const visa of mine.body.items ?? [])
    await call('A', 'POST', `/api/v1/visas/${String(visa.id)}/revoke`, admin, { reason: 'one visa at a time' });
  const requested = await call('B', 'POST', '/api/v1/visas', token, {
    profile: 'debugger',
    cluster: CLUSTER,
    namespaces: [NS],
    duration: '1h',
    reason: 'replicas test',
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

/** `kubectl exec` and `kubectl get pods -w` held open through one replica's gateway. */
async function openStreams(replica: string, token: string, name: string, kinds: ('exec' | 'watch')[]) {
  const kubeconfig = await kubeconfigVia(replica, token, name);
  const open = kinds.map((kind) =>
    kubectlBackground(
      env.cp.binaries.kubectl,
      kind === 'exec'
        ? ['exec', '-n', NS, 'app', '--', 'sh', '-c', 'echo exec-ready; sleep 120']
        : ['get', 'pods', '-n', NS, '-w'],
      { kubeconfig, timeoutMs: 150_000 },
    ),
  );
  await Promise.all(open.map((p, i) => p.waitFor(kinds[i] === 'exec' ? /exec-ready/ : /^app\s/m, 20_000)));
  const ended = (p: (typeof open)[number]) => p.child.exitCode !== null || p.child.signalCode !== null;
  return {
    kubeconfig,
    allEnded: () => open.every(ended),
    anyEnded: () => open.some(ended),
    kill: () => open.forEach((p) => p.child.kill('SIGKILL')),
  };
}

/** What one replica's gateway answers for a list in NS with this token (200, 401 or 403). */
async function gatewayStatus(replica: string, token: string): Promise<number> {
  return (await call(replica, 'GET', `/clusters/${CLUSTER}/api/v1/namespaces/${NS}/pods`, token)).status;
}

/** Stream cuts a replica counted for a reason (its /metrics). */
async function cutsFor(replica: string, reason: string): Promise<number> {
  const metrics = await call(replica, 'GET', '/metrics');
  const text = String(metrics.body.raw ?? '');
  return text
    .split('\n')
    .filter((line) => line.startsWith('kubevisa_gateway_stream_cuts_total{') && line.includes(`reason="${reason}"`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Reconcile passes of one kind a replica ran without failing (its /metrics). */
async function passesOf(replica: string, kind: 'full' | 'deadlines' | 'visas'): Promise<number> {
  const text = String((await call(replica, 'GET', '/metrics')).body.raw ?? '');
  return text
    .split('\n')
    .filter(
      (line) =>
        line.startsWith('kubevisa_reconcile_passes_total{') &&
        line.includes(`kind="${kind}"`) &&
        line.includes('outcome="ok"'),
    )
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** The role a replica reports (`leader` or `follower`). */
async function roleOf(replica: string): Promise<string> {
  return String((await call(replica, 'GET', '/healthz')).body.role);
}

async function deviceLoginAcross(start: string, poll: string, person: (typeof people)[keyof typeof people]) {
  const started = await call(start, 'POST', '/api/v1/login/device');
  assert.equal(started.status, 201, JSON.stringify(started.body));
  await completeLoginWithHttp({
    url: String(started.body.verificationUriComplete),
    login: person.email,
    password: person.password,
  });
  for (let i = 0; i < 200; i++) {
    const polled = await call(poll, 'POST', `/api/v1/login/device/${String(started.body.loginId)}/poll`);
    if (polled.status === 200)
      return {
        token: String(polled.body.accessToken),
        personId: String((polled.body.person as { id: string }).id),
      };
    assert.equal(polled.status, 202, JSON.stringify(polled.body));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the device login did not complete');
}

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
  // A first, alone (it migrates the schema); then B and C beside it. The IdP sends browsers back to A (publicUrl).
  const [portB, portC] = await freePorts(2);
  await startNamed('A', env.serverPort);
  await Promise.all([startNamed('B', portB!), startNamed('C', portC!)]);
  admin = (await loginAs(at('A').url, people.sam)).token;
  approver = (await loginAs(at('C').url, people.ann)).token;
  const engagement = await call('B', 'POST', '/api/v1/engagements', admin, {
    name: 'replicas',
    vendor: 'Acme',
    contractors: [people.cora.email, people.carl.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: { clusters: [CLUSTER], namespacePatterns: [NS], profiles: ['debugger'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
});

after(async () => {
  await stopAll(running);
  await env?.stop();
});

describe('any replica serves any request', () => {
  test('a device login started on A is polled to its end on B, and its token works on every replica', async () => {
    const cora = await deviceLoginAcross('A', 'B', people.cora);
    for (const replica of ['A', 'B', 'C']) {
      const me = await call(replica, 'GET', '/api/v1/me', cora.token);
      assert.equal(me.status, 200, `${replica}: ${JSON.stringify(me.body)}`);
      assert.equal(me.body.email, people.cora.email);
    }
  });

  test('a browser login started on B comes back from the IdP to A and is traded for the session on C', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const started = await call('B', 'POST', '/api/v1/login/browser', undefined, {
      redirectUri: 'http://127.0.0.1:9/callback',
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      state,
    });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const atIdp = await completeLoginWithHttp({
      url: String(started.body.authorizationUrl),
      login: people.carl.email,
      password: people.carl.password,
    });
    assert.equal(atIdp.flow, 'code');
    const back = new URL(atIdp.flow === 'code' ? atIdp.location : '');
    assert.equal(back.origin, at('A').url, 'the IdP sends the browser to the public URL: replica A');
    const callback = await call('A', 'GET', back.pathname + back.search);
    assert.equal(callback.status, 302, JSON.stringify(callback.body));
    const toCli = new URL(callback.location!);
    assert.equal(toCli.searchParams.get('state'), state);
    const exchanged = await call('C', 'POST', '/api/v1/login/exchange', undefined, {
      code: toCli.searchParams.get('code'),
      codeVerifier: verifier,
    });
    assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
    const me = await call('B', 'GET', '/api/v1/me', String(exchanged.body.accessToken));
    assert.equal(me.body.email, people.carl.email);
  });
});

describe('what one replica does to access reaches the others', () => {
  test('an approval and a revoke on followers reach the leader, which binds and unbinds the visa; followers run no pass', async () => {
    const roles = await Promise.all(['A', 'B', 'C'].map(async (name) => [name, await roleOf(name)] as const));
    const leader = roles.find(([, role]) => role === 'leader')?.[0];
    const followers = roles.filter(([, role]) => role === 'follower').map(([name]) => name);
    assert.ok(leader !== undefined && followers.length === 2, JSON.stringify(roles));
    const carl = await loginAs(at(followers[0]!).url, people.carl);
    const requested = await call(followers[0]!, 'POST', '/api/v1/visas', carl.token, {
      profile: 'debugger',
      cluster: CLUSTER,
      namespaces: [NS],
      duration: '1h',
      reason: 'visa pass across replicas',
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const id = String(requested.body.id);
    const approved = await call(followers[1]!, 'POST', `/api/v1/visas/${id}/approve`, approver, {});
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    await eventually(
      `RoleBinding of ${id}`,
      15_000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', NS])).code === 0,
    );
    for (const follower of followers) {
      assert.equal(await passesOf(follower, 'full'), 0, 'followers write nothing');
      assert.equal(await passesOf(follower, 'visas'), 0, 'followers write nothing');
    }
    assert.ok((await passesOf(leader, 'full')) > 0, 'the leader reconciles');
    const revoked = await call(followers[0]!, 'POST', `/api/v1/visas/${id}/revoke`, admin, { reason: 'done' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    await eventually(
      `RoleBinding of ${id} gone`,
      15_000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', NS])).code !== 0,
    );
  });

  test('a revoke via A ends a watch and an exec held through B, and B refuses the token', async () => {
    const cora = await loginAs(at('B').url, people.cora);
    const visaId = await grant(cora.token);
    const streams = await openStreams('B', cora.token, 'cora-b', ['exec', 'watch']);
    try {
      const reason = `fanout revoke ${randomBytes(4).toString('hex')}`;
      const revoked = await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      await eventually('the exec and the watch on B ended', 10_000, async () => streams.allEnded());
      assert.equal(await gatewayStatus('B', cora.token), 403, 'B refuses: no visa covers the request');
      const refused = await kubectl(env.cp.binaries.kubectl, ['get', 'pods', '-n', NS], {
        kubeconfig: streams.kubeconfig,
      });
      assert.notEqual(refused.code, 0, 'kubectl through B is refused');
      // Cut by the notification from A (the cut carries the revoke's reason), not by B's periodic re-check.
      assert.equal(await cutsFor('B', reason), 2, 'B cut both streams for the revoke it was told of');
    } finally {
      streams.kill();
    }
  });

  test('a logout on C: A and B refuse the token and end the streams it opened', async () => {
    const cora = await loginAs(at('C').url, people.cora);
    await grant(cora.token);
    // Both gateways have checked (and cached) the token, and hold streams it opened; the visa stays valid.
    assert.equal(await gatewayStatus('A', cora.token), 200);
    assert.equal(await gatewayStatus('B', cora.token), 200);
    const onA = await openStreams('A', cora.token, 'cora-logout-a', ['watch']);
    const onB = await openStreams('B', cora.token, 'cora-logout-b', ['exec']);
    try {
      const cutsBefore = (await cutsFor('A', 'session ended')) + (await cutsFor('B', 'session ended'));
      const out = await call('C', 'DELETE', '/api/v1/sessions/current', cora.token);
      assert.ok(out.status === 200 || out.status === 204, JSON.stringify(out.body));
      await eventually('the watch on A and the exec on B ended', 10_000, async () => onA.allEnded() && onB.allEnded());
      // Cut because the session ended (heard from C), not because access to the namespace did. Counted before any
      // other request with the token is sent: one in flight at the logout would be cut too.
      assert.equal((await cutsFor('A', 'session ended')) + (await cutsFor('B', 'session ended')) - cutsBefore, 2);
      await eventually('A and B refuse the ended session', 10_000, async () => {
        const statuses = await Promise.all([gatewayStatus('A', cora.token), gatewayStatus('B', cora.token)]);
        return statuses.every((status) => status === 401);
      });
      for (const replica of ['A', 'B', 'C'])
        assert.equal((await call(replica, 'GET', '/api/v1/me', cora.token)).status, 401, replica);
    } finally {
      onA.kill();
      onB.kill();
    }
  });

  test('offboarding via A closes the person’s streams on B and C', async () => {
    const carl = await loginAs(at('B').url, people.carl);
    await grant(carl.token);
    const onB = await openStreams('B', carl.token, 'carl-b', ['watch']);
    const onC = await openStreams('C', carl.token, 'carl-c', ['exec']);
    try {
      const started = await call('A', 'POST', `/api/v1/persons/${carl.personId}/offboarding`, admin, {
        reason: 'contract ended',
        wait: false,
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      await eventually('the watch on B and the exec on C ended', 10_000, async () => onB.allEnded() && onC.allEnded());
      for (const replica of ['A', 'B', 'C']) {
        const status = await gatewayStatus(replica, carl.token);
        assert.ok(status === 401 || status === 403, `${replica} refuses the offboarded person: ${status}`);
      }
    } finally {
      onB.kill();
      onC.kill();
    }
  });

  test('with its notification connection killed, B still cuts the streams of a visa A revokes', async () => {
    const cora = await loginAs(at('A').url, people.cora);
    const visaId = await grant(cora.token);
    const streams = await openStreams('B', cora.token, 'cora-b2', ['watch']);
    try {
      const admin_ = new pg.Client({ connectionString: env.postgresUrl });
      await admin_.connect();
      try {
        const killed = await admin_.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [`kubevisa-changes:${at('B').child.pid}`],
        );
        assert.equal(killed.rowCount, 1, "B's LISTEN connection was found and ended");
      } finally {
        await admin_.end();
      }
      // At once: the notification may reach nobody on B; B's re-check (on reconnect, or periodic) must still cut.
      const revoked = await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: 'listen killed' });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      await eventually('the watch on B ended', 15_000, async () => streams.allEnded());
      assert.equal(await gatewayStatus('B', cora.token), 403);
      assert.match(at('B').output(), /the connection listening for changes from other kubevisa processes ended/);
    } finally {
      streams.kill();
    }
  });

  test('a replica killed with open streams: the client sees its stream end, and the others serve the token', async () => {
    const cora = await loginAs(at('A').url, people.cora);
    await grant(cora.token);
    const streams = await openStreams('C', cora.token, 'cora-c', ['watch', 'exec']);
    try {
      at('C').child.kill('SIGKILL');
      await eventually('both streams through C ended', 10_000, async () => streams.allEnded());
      assert.equal(await gatewayStatus('A', cora.token), 200, 'A still serves the same token');
      assert.equal(await gatewayStatus('B', cora.token), 200, 'and so does B');
    } finally {
      streams.kill();
    }
  });

  test('a replica that hears no notification at all still ends access by its periodic re-check', async () => {
    const [port] = await freePorts(1);
    await startNamed('D', port!, { KUBEVISA_FAULT: 'deaf-to-replicas' });
    const cora = await loginAs(at('A').url, people.cora);
    const visaId = await grant(cora.token);
    const streams = await openStreams('D', cora.token, 'cora-d', ['watch']);
    try {
      const reason = `deaf revoke ${randomBytes(4).toString('hex')}`;
      assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason })).status, 200);
      await eventually('the watch through the deaf replica ended', 15_000, async () => streams.allEnded());
      assert.equal(await gatewayStatus('D', cora.token), 403);
      assert.equal(await cutsFor('D', reason), 0, 'no notification reached D');
      assert.ok((await cutsFor('D', 'access changed')) >= 1, 'D cut the stream on its periodic re-read');
      // A logout elsewhere: D's cached token is re-checked against the store within seconds, and a stream the
      // session opened through D ends by D's re-read of the sessions of its open streams.
      await grant(cora.token);
      await eventually('D serves the new visa', 10_000, async () => (await gatewayStatus('D', cora.token)) === 200);
      const held = await openStreams('D', cora.token, 'cora-d-logout', ['watch']);
      try {
        assert.ok([200, 204].includes((await call('A', 'DELETE', '/api/v1/sessions/current', cora.token)).status));
        await eventually('the watch of the ended session on D ended', 15_000, async () => held.allEnded());
        assert.equal(await cutsFor('D', 'session ended'), 0, 'no notification reached D');
        assert.equal(await cutsFor('D', 'session ended (found on re-check)'), 1);
        await eventually(
          'D refuses the ended session',
          15_000,
          async () => (await gatewayStatus('D', cora.token)) === 401,
        );
      } finally {
        held.kill();
      }
    } finally {
      streams.kill();
    }
  });

  test('a replica cut off from PostgreSQL cuts every stream it holds and admits nothing until the store answers, without crashing', async () => {
    // E reaches PostgreSQL through a proxy the test can freeze: a silent partition (sockets open, no bytes pass).
    const database = new URL(env.postgresUrl!);
    let frozen = false;
    const pairs: Socket[] = [];
    const proxy = createServer((client) => {
      client.on('error', () => undefined);
      if (frozen) return;
      const upstream = createConnection({ host: database.hostname, port: Number(database.port || 5432) });
      upstream.on('error', () => undefined);
      client.pipe(upstream).pipe(client);
      pairs.push(client, upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const viaProxy = new URL(env.postgresUrl!);
    viaProxy.host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const [port] = await freePorts(1);
    const started = await spawnServer(
      await writeReplicaConfig(env, 'E', port!, { store: { engine: 'postgres', url: viaProxy.toString() } }),
    );
    assert.ok(started.ready, started.output());
    running.push(started.child);
    replicas.set('E', { name: 'E', url: `https://127.0.0.1:${port}`, child: started.child, output: started.output });
    try {
      const cora = await loginAs(at('A').url, people.cora);
      const visaId = await grant(cora.token);
      const streams = await openStreams('E', cora.token, 'cora-e', ['watch']);
      try {
        frozen = true;
        for (const socket of pairs) {
          socket.unpipe();
          socket.pause();
        }
        const revokedAt = Date.now();
        const reason = `revoked while E was cut off ${randomBytes(4).toString('hex')}`;
        assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason })).status, 200);
        // E cannot hear of it, nor read it: once its index is too old to trust it cuts everything (10 s, read every 2 s).
        await eventually('the watch through E ended', 25_000, async () => streams.allEnded());
        console.log(`a replica cut off from PostgreSQL cut its streams ${Date.now() - revokedAt} ms after the revoke`);
        assert.match(started.output(), /cannot confirm access right now: its store has not answered/);
        const refused = await Promise.race([
          gatewayStatus('E', cora.token),
          new Promise<number>((resolve) => setTimeout(() => resolve(0), 15_000)),
        ]);
        assert.ok(refused >= 400, `E answered ${refused} while cut off`);
        assert.equal(started.child.exitCode, null, `E is still running:\n${started.output().slice(-2000)}`);
      } finally {
        streams.kill();
      }
      // The partition heals: E reads the store again and serves what it says (the visa is revoked).
      frozen = false;
      for (const socket of pairs) socket.destroy();
      await eventually('E serves again, refusing the revoked visa', 60_000, async () => {
        const status = await gatewayStatus('E', cora.token).catch(() => 0);
        return status === 403;
      });
      await grant(cora.token);
      await eventually('E serves a new visa', 30_000, async () => (await gatewayStatus('E', cora.token)) === 200);
    } finally {
      started.child.kill('SIGKILL');
      proxy.close();
    }
  });

  test('a direct-mode token ends with a logout handled by a follower, the person keeping another session', async () => {
    const roles = await Promise.all(
      ['A', 'B'].map(async (name) => ({ name, role: String((await call(name, 'GET', '/healthz')).body.role) })),
    );
    const follower = roles.find((r) => r.role === 'follower')?.name;
    assert.ok(follower, `a follower among A and B: ${JSON.stringify(roles)}`);
    // Eve, with a viewer visa (a direct token carries only visas that may be used without the gateway).
    const engagement = await call('A', 'POST', '/api/v1/engagements', admin, {
      name: 'direct-logout',
      vendor: 'Acme',
      contractors: [people.eve.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: [NS], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    });
    assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
    const s1 = await loginAs(at(follower).url, people.eve);
    await loginAs(at(follower).url, people.eve); // a second session, which stays
    const requested = await call(follower, 'POST', '/api/v1/visas', s1.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: [NS],
      duration: '1h',
      reason: 'direct token and logout',
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    const visaId = String(requested.body.id);
    assert.equal((await call('A', 'POST', `/api/v1/visas/${visaId}/approve`, approver, {})).status, 200);
    try {
      await eventually(
        `RoleBinding of ${visaId}`,
        15_000,
        async () => (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', NS])).code === 0,
      );
      const credential = await call(follower, 'POST', `/api/v1/clusters/${CLUSTER}/credential`, s1.token);
      assert.equal(credential.status, 200, JSON.stringify(credential.body));
      const kubeconfig = await env.cp.writeTokenKubeconfig(String(credential.body.token), 'eve-direct');
      await eventually(
        'the direct token works',
        15_000,
        async () => (await env.k(['get', 'pods', '-n', NS], kubeconfig)).code === 0,
      );
      assert.ok([200, 204].includes((await call(follower, 'DELETE', '/api/v1/sessions/current', s1.token)).status));
      const loggedOutAt = Date.now();
      await eventually(
        'kube-apiserver refuses the direct token of the ended session',
        30_000,
        async () => (await env.k(['get', 'pods', '-n', NS], kubeconfig)).code !== 0,
      );
      console.log(`direct token of a session logged out on a follower refused ${Date.now() - loggedOutAt} ms later`);
    } finally {
      await call('A', 'POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason: 'test done' });
    }
  });
});

describe('replicas must share their keys', () => {
  test('a server with its own keys refuses to start, naming them and how to fix it', async () => {
    // Its own data folder, so its signing and secret keys are made afresh.
    const dataDir = join(env.dir, 'other-keys');
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const [port] = await freePorts(1);
    const started = await spawnServer(await writeReplicaConfig(env, 'other-keys', port!, { dataDir }));
    running.push(started.child);
    assert.equal(started.ready, false, 'it must not start');
    await waitForExit(started.child);
    assert.notEqual(started.child.exitCode, 0);
    assert.match(
      started.output(),
      /this server's access-token signing key \(access-token-signing-key\.pem\) and secret key \(session-encryption\.key\) differ/,
    );
    assert.match(started.output(), /--adopt-keys/);
    assert.match(started.output(), /ERR_REPLICA_KEYS_DIFFER/);
  });
});
