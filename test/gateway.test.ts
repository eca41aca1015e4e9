// All of kubectl through the kubevisa gateway, against the real cluster: the person's kubeconfig points at
// kubevisa, never at the cluster; Kubernetes RBAC still decides the verbs; streams end the moment a visa does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { debuggerProfile } from '../src/rbac/profiles.ts';
import { openStore } from '../src/store/open.ts';
import { eventually, kubectl, kubectlBackground } from './support/kubectl.ts';

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: { token: string; personId: string };

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

async function grant(profile: string, namespaces: string[], duration = '1h') {
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile,
    cluster: CLUSTER,
    namespaces,
    duration,
    reason: 'gateway test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return approved.body;
}

async function runningPod(namespace: string, name: string) {
  await eventually(
    `default ServiceAccount in ${namespace}`,
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', namespace])).code === 0,
  );
  await env.kOk(['run', name, '-n', namespace, '--image=registry.example/app:1', '--port=8080']);
  await eventually(
    `pod ${name} Running`,
    30_000,
    async () => (await env.kOk(['get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.status.phase}'])) === 'Running',
  );
}

const gk = (args: string[], kubeconfig: string, extraEnv: Record<string, string> = {}, input?: string) =>
  kubectl(env.cp.binaries.kubectl, args, { kubeconfig, env: extraEnv, ...(input !== undefined ? { input } : {}) });

function readLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (c) => {
      data += c.toString();
      if (data.endsWith('\n')) {
        socket.destroy();
        resolve(data);
      }
    });
    socket.on('error', reject);
    setTimeout(() => socket.destroy(new Error(`no answer; got ${JSON.stringify(data)}`)), 10_000).unref();
  });
}

before(async () => {
  // The same rights as debugger, without session recording: exec over SPDY is only allowed unrecorded.
  const plain = {
    ...debuggerProfile,
    name: 'debugger-plain',
    recordSessions: false,
    description: 'debugger without recording (tests)',
  };
  env = await startKubevisaEnv({ tls: true, autoApproval: false, extraProfiles: [plain] });
  for (const ns of ['gw-dev', 'gw-debug', 'gw-plain', 'gw-other', 'gw-cut', 'gw-expire', 'gw-stop'])
    await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'gateway',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: {
      clusters: [CLUSTER],
      namespacePatterns: ['gw-*'],
      profiles: ['viewer', 'developer', 'debugger', 'debugger-plain'],
    },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await runningPod('gw-debug', 'app');
  await runningPod('gw-plain', 'app');
  await runningPod('gw-cut', 'app');
  await runningPod('gw-expire', 'app');
});
after(async () => {
  await env?.stop();
});

describe('kubectl through the gateway', () => {
  let kubeconfig: string;
  before(async () => {
    const dev = await grant('developer', ['gw-dev']);
    const debug = await grant('debugger', ['gw-debug']);
    const plain = await grant('debugger-plain', ['gw-plain']);
    kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora');
    for (const [ns, visa] of [
      ['gw-dev', dev],
      ['gw-debug', debug],
      ['gw-plain', plain],
    ] as const) {
      await eventually(
        `RoleBinding in ${ns}`,
        5000,
        async () => (await env.k(['get', 'rolebinding', `kubevisa-${String(visa.id)}`, '-n', ns])).code === 0,
      );
    }
  });

  test('get, list, discovery and api-resources work; other namespaces are refused at the gateway', async () => {
    const pods = await gk(['get', 'pods', '-n', 'gw-debug'], kubeconfig);
    assert.equal(pods.code, 0, pods.stderr);
    assert.match(pods.stdout, /app\s+1\/1\s+Running/);
    const resources = await gk(['api-resources', '--namespaced=true', '-o', 'name'], kubeconfig);
    assert.equal(resources.code, 0, resources.stderr);
    assert.match(resources.stdout, /^pods$/m);
    const version = await gk(['version', '-o', 'json'], kubeconfig);
    assert.match(version.stdout, /v1\.37\.2/);
    const other = await gk(['get', 'pods', '-n', 'gw-other'], kubeconfig);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /do not cover namespace 'gw-other'/);
  });

  test('auth can-i answers as the person: the profile, not more', async () => {
    const yes = await gk(['auth', 'can-i', 'create', 'deployments', '-n', 'gw-dev'], kubeconfig);
    assert.equal(yes.stdout.trim(), 'yes');
    const secrets = await gk(['auth', 'can-i', 'get', 'secrets', '-n', 'gw-dev'], kubeconfig);
    assert.equal(secrets.stdout.trim(), 'no');
    const whoami = await gk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], kubeconfig);
    assert.match(whoami.stdout, /^system:serviceaccount:kubevisa-visas:cora-vendor-example-/);
  });

  test('apply, server-side apply and delete', async () => {
    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'settings', namespace: 'gw-dev' },
      data: { a: '1' },
    });
    const applied = await gk(['apply', '-f', '-'], kubeconfig, {}, manifest);
    assert.equal(applied.code, 0, applied.stderr);
    const ssa = await gk(
      ['apply', '--server-side', '--force-conflicts', '--field-manager=cora', '-f', '-'],
      kubeconfig,
      {},
      manifest.replace('"1"', '"2"'),
    );
    assert.equal(ssa.code, 0, ssa.stderr);
    const value = await gk(['get', 'configmap', 'settings', '-n', 'gw-dev', '-o', 'jsonpath={.data.a}'], kubeconfig);
    assert.equal(value.stdout, '2');
    const deployment = await gk(
      ['create', 'deployment', 'web', '-n', 'gw-dev', '--image=registry.example/web:1'],
      kubeconfig,
    );
    assert.equal(deployment.code, 0, deployment.stderr);
    const deleted = await gk(['delete', 'configmap', 'settings', '-n', 'gw-dev'], kubeconfig);
    assert.equal(deleted.code, 0, deleted.stderr);
  });

  test('watch streams each event as it happens', async () => {
    const watch = kubectlBackground(
      env.cp.binaries.kubectl,
      ['get', 'configmaps', '-n', 'gw-dev', '-w', '--output-watch-events'],
      { kubeconfig },
    );
    try {
      await watch.waitFor(/kube-root-ca\.crt/);
      await env.kOk(['create', 'configmap', 'appeared', '-n', 'gw-dev']);
      await watch.waitFor(/ADDED\s+appeared/);
    } finally {
      watch.child.kill();
    }
  });

  test('logs -f follows the container log', async () => {
    const logs = kubectlBackground(env.cp.binaries.kubectl, ['logs', '-f', '-n', 'gw-debug', 'app'], { kubeconfig });
    try {
      await logs.waitFor(/kwok pod started/);
      await env.cp.appendPodLog('through-the-gateway');
      await logs.waitFor(/through-the-gateway/);
    } finally {
      logs.child.kill();
    }
  });

  for (const [protocol, extra] of [
    ['WebSocket', {}],
    ['SPDY', { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }],
  ] as const) {
    test(`exec and attach (${protocol})`, async () => {
      const result = await gk(
        ['exec', '-n', 'gw-plain', 'app', '--', 'sh', '-c', 'echo via-gateway-$((6*7))'],
        kubeconfig,
        extra,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'via-gateway-42\n');
      const stdin = await gk(
        ['exec', '-i', '-n', 'gw-plain', 'app', '--', 'head', '-c', '5'],
        kubeconfig,
        extra,
        'hello world',
      );
      assert.equal(stdin.stdout, 'hello');
      const attach = kubectlBackground(env.cp.binaries.kubectl, ['attach', '-n', 'gw-plain', 'app'], {
        kubeconfig,
        env: extra,
      });
      try {
        await new Promise((r) => setTimeout(r, 1000));
        await env.cp.appendPodLog(`attached-${protocol}`);
        await attach.waitFor(new RegExp(`attached-${protocol}`));
      } finally {
        attach.child.kill();
      }
    });
  }

  test('a recorded profile records exec as asciicast v2, listed in the audit trail; SPDY, which cannot be recorded, is refused', async () => {
    const result = await gk(
      [
        'exec',
        '-i',
        '-n',
        'gw-debug',
        'app',
        '--',
        'sh',
        '-c',
        'read line; echo "got $line"; echo recorded-session-output',
      ],
      kubeconfig,
      {},
      'typed-input\n',
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /got typed-input/);
    const handle = env.server!.capabilities.gateway;
    await eventually('the recording is in the audit trail', 5000, async () => {
      await handle.gateway.flushAudit();
      const events = await env.server!.store.listAudit({
        action: 'gateway.stream',
        personId: cora.personId,
        limit: 10_000,
      });
      return events.some(
        (e) => JSON.stringify(e.details.query).includes('recorded-session-output') && e.details.recording !== undefined,
      );
    });
    const events = await env.server!.store.listAudit({
      action: 'gateway.stream',
      personId: cora.personId,
      limit: 10_000,
    });
    const event = events.find((e) => JSON.stringify(e.details.query).includes('recorded-session-output'))!;
    const recording = event.details.recording as { file: string; sha256: string; bytes: number };
    assert.ok(existsSync(recording.file));
    const lines = readFileSync(recording.file, 'utf8').trim().split('\n');
    const header = JSON.parse(lines[0]!) as { version: number; title: string };
    assert.equal(header.version, 2);
    assert.match(header.title, /cora@vendor\.example exec test\/gw-debug\/app/);
    const records = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
    assert.ok(
      records.some(([, code, data]) => code === 'o' && data.includes('recorded-session-output')),
      'output recorded',
    );
    assert.ok(
      records.some(([, code, data]) => code === 'i' && data.includes('typed-input')),
      'input recorded',
    );
    assert.equal(readFileSync(recording.file).length, recording.bytes);
    const spdy = await gk(['exec', '-n', 'gw-debug', 'app', '--', 'true'], kubeconfig, {
      KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false',
    });
    assert.notEqual(spdy.code, 0);
    assert.match(spdy.stderr, /records exec and attach sessions/);
  });

  test('cp copies a file out of the pod', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kubevisa-cp-'));
    const target = join(dir, 'hostname');
    const copied = await gk(['cp', 'gw-plain/app:/etc/hostname', target], kubeconfig);
    assert.equal(copied.code, 0, copied.stderr);
    assert.equal(
      readFileSync(target, 'utf8'),
      readFileSync('/etc/hostname', 'utf8'),
      'kwok runs the container side on this machine',
    );
  });

  for (const [protocol, extra] of [
    ['WebSocket', {}],
    ['SPDY', { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }],
  ] as const) {
    test(`port-forward (${protocol})`, async () => {
      const forward = kubectlBackground(
        env.cp.binaries.kubectl,
        ['port-forward', '-n', 'gw-debug', 'pod/app', ':8080'],
        { kubeconfig, env: extra },
      );
      try {
        const [, port] = await forward.waitFor(/Forwarding from 127\.0\.0\.1:(\d+)/);
        assert.equal(await readLine(Number(port)), 'hello from the kwok pod port-forward target\n');
      } finally {
        forward.child.kill();
      }
    });
  }

  test('exec is refused where the profile does not allow it (Kubernetes RBAC decides)', async () => {
    await env.kOk(['run', 'dev-pod', '-n', 'gw-dev', '--image=registry.example/app:1']);
    await eventually(
      'dev-pod Running',
      30_000,
      async () =>
        (await env.kOk(['get', 'pod', 'dev-pod', '-n', 'gw-dev', '-o', 'jsonpath={.status.phase}'])) === 'Running',
    );
    const refused = await gk(['exec', '-n', 'gw-dev', 'dev-pod', '--', 'true'], kubeconfig);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /forbidden/i);
  });

  test('every request is in the audit trail with its attributes, never the raw query', async () => {
    await gk(['get', 'pods', '-n', 'gw-debug', '-l', 'run=app'], kubeconfig);
    await env.server!.capabilities.gateway.gateway.flushAudit();
    const events = await env.server!.store.listAudit({
      action: 'gateway.request',
      personId: cora.personId,
      limit: 10_000,
    });
    const list = events.find(
      (e) =>
        e.details.resource === 'pods' &&
        e.namespace === 'gw-debug' &&
        e.details.verb === 'list' &&
        (e.details.query as Record<string, string>).labelSelector === 'run=app',
    );
    assert.ok(list, 'the labelled list is recorded');
    assert.equal(list.details.status, 200);
    assert.equal(list.cluster, CLUSTER);
    assert.ok(typeof list.visaId === 'string');
    assert.ok(Number(list.details.bytesOut) > 0);
    assert.equal(JSON.stringify(events).includes(cora.token), false, 'no token in the trail');
    const execs = await env.server!.store.listAudit({
      action: 'gateway.stream',
      personId: cora.personId,
      limit: 10_000,
    });
    assert.ok(
      execs.some((e) => e.details.subresource === 'exec' && JSON.stringify(e.details.query).includes('via-gateway')),
    );
  });
});

describe('cutting streams', () => {
  test('revoke closes an open watch, exec and port-forward at once, and refuses new requests', async () => {
    const visa = await grant('debugger', ['gw-cut']);
    await eventually(
      'RoleBinding in gw-cut',
      5000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${String(visa.id)}`, '-n', 'gw-cut'])).code === 0,
    );
    const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-cut');
    const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'pods', '-n', 'gw-cut', '-w'], { kubeconfig });
    // The exec prints a line once it runs in the pod, then waits: seen running before the revoke, it cannot pass
    // the "ended" check below by having failed at once.
    const exec = kubectlBackground(
      env.cp.binaries.kubectl,
      ['exec', '-n', 'gw-cut', 'app', '--', 'sh', '-c', 'echo exec-running; sleep 60'],
      { kubeconfig },
    );
    const forward = kubectlBackground(env.cp.binaries.kubectl, ['port-forward', '-n', 'gw-cut', 'pod/app', ':8080'], {
      kubeconfig,
    });
    try {
      await watch.waitFor(/app/);
      await exec.waitFor(/exec-running/);
      await forward.waitFor(/Forwarding from/);
      const { gateway } = env.server!.capabilities.gateway;
      const cutStreams = () => gateway.streams.all().filter((s) => s.namespace === 'gw-cut');
      await eventually('three streams open', 5000, async () => cutStreams().length === 3);
      assert.deepEqual(
        cutStreams()
          .map((s) => `${s.kind}${s.session ? ' session' : ''}`)
          .sort(),
        ['upgrade', 'upgrade session', 'watch'],
        'the watch, the port-forward and the exec session',
      );
      const revokedAt = Date.now();
      const revoked = await call('POST', `/api/v1/visas/${String(visa.id)}/revoke`, admin, { reason: 'cut test' });
      assert.equal(revoked.status, 200);
      assert.equal(cutStreams().length, 0, 'closed before the revoke call returned');
      const ended = (p: typeof watch) => p.child.exitCode !== null || p.child.signalCode !== null;
      await eventually('watch ended', 5000, async () => ended(watch));
      await eventually('exec ended', 5000, async () => ended(exec));
      await eventually('port-forward ended', 5000, async () => ended(forward));
      // `sleep 60` in the pod was cut, not finished: the exec ended long before its command would have.
      assert.ok(Date.now() - revokedAt < 60_000);
      assert.notEqual(exec.child.exitCode, 0, `the cut exec does not report success: ${exec.output()}`);
      const refused = await gk(['get', 'pods', '-n', 'gw-cut'], kubeconfig);
      assert.notEqual(refused.code, 0);
      await gateway.flushAudit();
      const closed = await env.server!.store.listAudit({ visaId: String(visa.id), limit: 1000 });
      assert.ok(
        closed.some(
          (e) => e.reason === 'cut test' && (e.action === 'gateway.stream' || e.action === 'gateway.request'),
        ),
        'the close reason is recorded',
      );
    } finally {
      for (const p of [watch, exec, forward]) p.child.kill('SIGKILL');
    }
  });

  test('a watch is closed at notAfter, by the gateway', async () => {
    const visa = await grant('viewer', ['gw-expire'], '6s');
    await eventually(
      'RoleBinding in gw-expire',
      5000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${String(visa.id)}`, '-n', 'gw-expire'])).code === 0,
    );
    const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-expire');
    const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'pods', '-n', 'gw-expire', '-w'], { kubeconfig });
    let endedAt: number | undefined;
    watch.child.once('exit', () => (endedAt = Date.now()));
    try {
      await watch.waitFor(/app/);
      const notAfter = Date.parse(String(visa.notAfter));
      // Upper bound: the gateway arms a timer for the earliest notAfter of its index and closes the stream when it
      // fires; what follows is event-loop lag and kubectl noticing the end (milliseconds, seconds on a loaded
      // machine). Nothing else would end this watch soon: kube-apiserver keeps a watch open for 30 to 60 minutes
      // (--min-request-timeout 1800 s) and kubectl -w reconnects, and the reconciler's removal of the RoleBinding
      // does not touch an open watch. So 20 s after notAfter separates "the gateway cut it" from "something else
      // did, much later" with room for a slow machine.
      const boundMs = 20_000;
      await eventually(
        'the watch ends at the deadline',
        notAfter + boundMs - Date.now(),
        async () => endedAt !== undefined,
      );
      assert.ok(endedAt! >= notAfter, `ended ${notAfter - endedAt!} ms before notAfter`);
      assert.ok(endedAt! <= notAfter + boundMs, `ended ${endedAt! - notAfter} ms after notAfter`);
      // And it was the gateway's deadline that ended it: the trail records the watch cut for that reason.
      await env.server!.capabilities.gateway.gateway.flushAudit();
      const events = await env.server!.store.listAudit({ visaId: String(visa.id), limit: 100 });
      assert.ok(
        events.some((e) => e.action === 'gateway.request' && e.details.verb === 'watch' && e.reason === 'visa expired'),
        `the watch cut at notAfter is recorded: ${JSON.stringify(events.map((e) => [e.action, e.details.verb, e.reason]))}`,
      );
    } finally {
      watch.child.kill('SIGKILL');
    }
  });
});

// Last in the file: it stops the server.
describe('stopping the server', () => {
  test('closes open watches, and every request it relayed, the cut watch included, is in the trail', async () => {
    const visa = await grant('viewer', ['gw-stop']);
    await eventually(
      'RoleBinding in gw-stop',
      5000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${String(visa.id)}`, '-n', 'gw-stop'])).code === 0,
    );
    const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-stop');
    assert.equal((await gk(['get', 'configmaps', '-n', 'gw-stop'], kubeconfig)).code, 0);
    const watch = kubectlBackground(env.cp.binaries.kubectl, ['get', 'configmaps', '-n', 'gw-stop', '-w'], {
      kubeconfig,
    });
    try {
      await watch.waitFor(/kube-root-ca/);
      const { gateway } = env.server!.capabilities.gateway;
      await eventually('the watch is open at the gateway', 5000, async () =>
        gateway.streams.all().some((s) => s.namespace === 'gw-stop' && s.kind === 'watch'),
      );
      const server = env.server!;
      const { config } = server.context;
      await server.stop();
      env.server = undefined;
      await eventually(
        'the watch ended',
        5000,
        async () => watch.child.exitCode !== null || watch.child.signalCode !== null,
      );
      const store = await openStore(config.store, { dataDir: config.dataDir });
      try {
        const events = await store.listAudit({ visaId: String(visa.id), limit: 100 });
        const requests = events.filter((e) => e.action === 'gateway.request');
        assert.ok(
          requests.some((e) => e.details.verb === 'list'),
          'the plain list is recorded',
        );
        assert.ok(
          requests.some((e) => e.details.verb === 'watch' && e.reason === 'server stopping'),
          `the watch cut by the stop is recorded: ${JSON.stringify(events.map((e) => [e.action, e.details.verb, e.reason, e.details.query]))}`,
        );
      } finally {
        await store.close();
      }
    } finally {
      watch.child.kill('SIGKILL');
    }
  });
});
