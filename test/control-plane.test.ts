// Proof that the test control plane is real: RBAC, impersonation limits, TokenRequest and its
// invalidation, namespace deletion, the audit log, and exec / logs / attach / port-forward on the kwok
// node, all through the Go-built kubectl as a person would use it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { startControlPlane, type ControlPlane } from '../src/dev/cluster/control-plane.ts';
import { eventually, kubectl, kubectlBackground, kubectlOk } from './support/kubectl.ts';

let cp: ControlPlane;
const k = (args: string[], options: { env?: Record<string, string>; input?: string } = {}) =>
  kubectl(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig, ...options });
const kOk = (args: string[], options: { env?: Record<string, string>; input?: string } = {}) =>
  kubectlOk(cp.binaries.kubectl, args, { kubeconfig: cp.adminKubeconfig, ...options });

before(async () => {
  cp = await startControlPlane();
});
after(async () => {
  await cp?.stop();
});

function apply(manifest: object) {
  return kOk(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
}

async function runningPod(namespace: string, name: string) {
  await eventually(`ServiceAccount default in ${namespace}`, 20_000, async () => {
    return (await k(['get', 'serviceaccount', 'default', '-n', namespace])).code === 0;
  });
  await apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1', ports: [{ containerPort: 8080 }] }] },
  });
  await eventually(`pod ${name} Running`, 30_000, async () => {
    const phase = await kOk(['get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.status.phase}']);
    return phase === 'Running';
  });
}

describe('the control plane', () => {
  test('serves a Ready kwok node and reports the pinned version', async () => {
    const nodes = JSON.parse(await kOk(['get', 'nodes', '-o', 'json'])) as {
      items: { metadata: { name: string }; status: { conditions: { type: string; status: string }[] } }[];
    };
    assert.equal(nodes.items.length, 1);
    assert.equal(nodes.items[0]?.metadata.name, cp.nodeName);
    assert.ok(nodes.items[0]?.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'));
    const version = JSON.parse(await kOk(['version', '-o', 'json'])) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    assert.equal(version.clientVersion.gitVersion, 'v1.37.2');
    assert.equal(version.serverVersion.gitVersion, 'v1.37.2');
  });

  test('RBAC: a namespaced RoleBinding allows inside its namespace and nothing outside', async () => {
    await kOk(['create', 'namespace', 'rbac-in']);
    await kOk(['create', 'namespace', 'rbac-out']);
    await kOk(['create', 'serviceaccount', 'alice', '-n', 'rbac-in']);
    await kOk(['create', 'role', 'pod-reader', '-n', 'rbac-in', '--verb=get,list,watch', '--resource=pods']);
    await kOk([
      'create',
      'rolebinding',
      'alice-reads',
      '-n',
      'rbac-in',
      '--role=pod-reader',
      '--serviceaccount=rbac-in:alice',
    ]);
    const as = '--as=system:serviceaccount:rbac-in:alice';
    const inside = await k(['auth', 'can-i', 'list', 'pods', '-n', 'rbac-in', as]);
    assert.equal(inside.stdout.trim(), 'yes');
    const outside = await k(['auth', 'can-i', 'list', 'pods', '-n', 'rbac-out', as]);
    assert.equal(outside.stdout.trim(), 'no');
    assert.notEqual(outside.code, 0);
    const clusterWide = await k(['auth', 'can-i', 'list', 'pods', '--all-namespaces', as]);
    assert.equal(clusterWide.stdout.trim(), 'no');
  });

  test('impersonation limited to ServiceAccounts of one namespace refuses everyone else', async () => {
    await kOk(['create', 'namespace', 'imp-visas']);
    await kOk(['create', 'namespace', 'imp-home']);
    await kOk(['create', 'namespace', 'imp-elsewhere']);
    await kOk(['create', 'serviceaccount', 'gateway', '-n', 'imp-home']);
    await kOk(['create', 'serviceaccount', 'holder', '-n', 'imp-visas']);
    await kOk(['create', 'serviceaccount', 'victim', '-n', 'imp-elsewhere']);
    await kOk([
      'create',
      'role',
      'impersonate-sas',
      '-n',
      'imp-visas',
      '--verb=impersonate',
      '--resource=serviceaccounts',
    ]);
    await kOk([
      'create',
      'rolebinding',
      'gateway-impersonates',
      '-n',
      'imp-visas',
      '--role=impersonate-sas',
      '--serviceaccount=imp-home:gateway',
    ]);
    const token = (await kOk(['create', 'token', 'gateway', '-n', 'imp-home', '--duration=10m'])).trim();
    const gatewayKubeconfig = await cp.writeTokenKubeconfig(token);
    const asGateway = (extra: string[]) =>
      kubectl(cp.binaries.kubectl, ['auth', 'whoami', '-o', 'json', ...extra], { kubeconfig: gatewayKubeconfig });

    const allowed = await asGateway(['--as=system:serviceaccount:imp-visas:holder']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(JSON.parse(allowed.stdout).status.userInfo.username, 'system:serviceaccount:imp-visas:holder');

    for (const [what, extra] of [
      ['a ServiceAccount in another namespace', ['--as=system:serviceaccount:imp-elsewhere:victim']],
      ['a user', ['--as=jane@example.com']],
      ['a group', ['--as=system:serviceaccount:imp-visas:holder', '--as-group=system:masters']],
    ] as const) {
      // /version is readable by every authenticated identity, so only the impersonation itself can fail.
      const refused = await kubectl(cp.binaries.kubectl, ['get', '--raw', '/version', ...extra], {
        kubeconfig: gatewayKubeconfig,
      });
      assert.notEqual(refused.code, 0, `impersonating ${what} must be refused`);
      assert.match(refused.stderr, /cannot impersonate/i, what);
    }
  });

  test('a TokenRequest token authenticates until its ServiceAccount is deleted', async () => {
    await kOk(['create', 'namespace', 'tokens']);
    await kOk(['create', 'serviceaccount', 'bob', '-n', 'tokens']);
    const token = (await kOk(['create', 'token', 'bob', '-n', 'tokens', '--duration=10m'])).trim();
    const bobKubeconfig = await cp.writeTokenKubeconfig(token);
    const whoami = () => kubectl(cp.binaries.kubectl, ['auth', 'whoami', '-o', 'json'], { kubeconfig: bobKubeconfig });
    const before = await whoami();
    assert.equal(before.code, 0, before.stderr);
    assert.equal(JSON.parse(before.stdout).status.userInfo.username, 'system:serviceaccount:tokens:bob');
    await kOk(['delete', 'serviceaccount', 'bob', '-n', 'tokens']);
    // kube-apiserver caches token authentication for up to 10 s.
    await eventually('the deleted ServiceAccount token is refused', 15_000, async () => {
      const after = await whoami();
      return after.code !== 0 && /Unauthorized|must be logged in/i.test(after.stderr);
    });
  });

  test('a deleted namespace finishes deleting', async () => {
    await kOk(['create', 'namespace', 'short-lived']);
    await kOk(['create', 'configmap', 'x', '-n', 'short-lived', '--from-literal=a=b']);
    await kOk(['delete', 'namespace', 'short-lived', '--wait=false']);
    await eventually('namespace short-lived gone', 30_000, async () => {
      const result = await k(['get', 'namespace', 'short-lived']);
      return result.code !== 0 && /NotFound/.test(result.stderr);
    });
  });

  test('the audit log records an impersonated request', async () => {
    await kOk(
      ['get', 'pods', '-n', 'default', '--as=system:serviceaccount:default:audited', '--as-group=system:authenticated'],
      {},
    ).catch(() => '');
    await eventually('an audit line for the impersonated user', 10_000, async () => {
      const lines = readFileSync(cp.auditLogFile, 'utf8').trim().split('\n');
      return lines.some((line) => {
        const event = JSON.parse(line) as { impersonatedUser?: { username?: string }; user?: { username?: string } };
        return (
          event.impersonatedUser?.username === 'system:serviceaccount:default:audited' &&
          event.user?.username === 'kubevisa-dev-admin'
        );
      });
    });
  });
});

describe('the kwok node answers like a kubelet', () => {
  before(async () => {
    await kOk(['create', 'namespace', 'workloads']);
    await runningPod('workloads', 'app');
  });

  for (const [protocol, env] of [
    ['WebSocket', {}],
    ['SPDY', { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }],
  ] as const) {
    test(`kubectl exec runs a command (${protocol})`, async () => {
      const result = await k(
        ['exec', '-n', 'workloads', 'app', '--', 'sh', '-c', 'echo hello-$((6*7)); echo oops >&2; exit 3'],
        { env },
      );
      assert.equal(result.stdout, 'hello-42\n');
      assert.match(result.stderr, /oops/);
      // kwok reports a local command's non-zero exit as an error that names the status.
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /exit status 3/);
    });

    test(`kubectl exec -i passes standard input (${protocol})`, async () => {
      // kwok's local exec does not pass on the end of standard input, so read a known length.
      const result = await k(['exec', '-i', '-n', 'workloads', 'app', '--', 'head', '-c', '12'], {
        env,
        input: 'twelve bytes and more',
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'twelve bytes');
    });
  }

  test('kubectl logs -f streams lines as they are written', async () => {
    const logs = kubectlBackground(cp.binaries.kubectl, ['logs', '-f', '-n', 'workloads', 'app'], {
      kubeconfig: cp.adminKubeconfig,
    });
    try {
      await logs.waitFor(/kwok pod started/);
      const marker = `line-${Date.now()}`;
      await cp.appendPodLog(marker);
      await logs.waitFor(new RegExp(marker));
    } finally {
      logs.child.kill();
    }
  });

  for (const [protocol, env] of [
    ['WebSocket', {}],
    ['SPDY', { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }],
  ] as const) {
    test(`kubectl port-forward reaches the pod (${protocol})`, async () => {
      const forward = kubectlBackground(cp.binaries.kubectl, ['port-forward', '-n', 'workloads', 'pod/app', ':8080'], {
        kubeconfig: cp.adminKubeconfig,
        env,
      });
      try {
        const [, port] = await forward.waitFor(/Forwarding from 127\.0\.0\.1:(\d+)/);
        const reply = await new Promise<string>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1');
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
        assert.equal(reply, 'hello from the kwok pod port-forward target\n');
      } finally {
        forward.child.kill();
      }
    });
  }
});

describe('cleanup', () => {
  test('a control plane whose owner is killed leaves no process and no folder behind', async () => {
    const script = `
      import { startControlPlane } from ${JSON.stringify(new URL('../src/dev/cluster/control-plane.ts', import.meta.url).href)};
      const cp = await startControlPlane({ binaries: ${JSON.stringify(cp.binaries)} });
      console.log(JSON.stringify({ pids: cp.pids, workDir: cp.workDir }));
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const started = await new Promise<{ pids: number[]; workDir: string }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line));
      });
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    assert.equal(started.pids.length, 5, 'etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok');
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(started.pids.every(alive));
    child.kill('SIGKILL');
    await eventually('every control-plane process is gone', 20_000, async () =>
      started.pids.every((pid) => !alive(pid)),
    );
    await eventually('the work folder is removed', 10_000, async () => !existsSync(started.workDir));
  });

  test('a start during which kwok crashes is retried from scratch and succeeds, saying so', async () => {
    // kwok v0.8.0 sometimes dies while it builds its CEL environments; a kwok that exits at once on its first run
    // stands in for that crash, the real kwok runs after it.
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-kwok-crash-'));
    const mark = join(dir, 'crashed-once');
    const wrapper = join(dir, 'kwok');
    await writeFile(
      wrapper,
      `#!/bin/sh\nif [ ! -f '${mark}' ]; then touch '${mark}'; echo 'simulated kwok crash' >&2; exit 2; fi\nexec '${cp.binaries.kwok}' "$@"\n`,
      { mode: 0o755 },
    );
    const progress: string[] = [];
    const retried = await startControlPlane({
      binaries: { ...cp.binaries, kwok: wrapper },
      onProgress: (message) => progress.push(message),
    });
    try {
      assert.ok(existsSync(mark), 'the first kwok ran and crashed');
      assert.ok(
        progress.some((m) => /kwok crashed while starting .*starting again \(1\/2\)/.test(m)),
        progress.join('\n'),
      );
      const node = await kubectlOk(cp.binaries.kubectl, ['get', 'nodes', '-o', 'name'], {
        kubeconfig: retried.adminKubeconfig,
      });
      assert.match(node, /node\/kwok-node-0/);
    } finally {
      await retried.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('stop() ends every process', async () => {
    const second = await startControlPlane({ binaries: cp.binaries });
    const pids = second.pids;
    await second.stop();
    for (const pid of pids) {
      assert.throws(() => process.kill(pid, 0), /ESRCH/, `pid ${pid} still alive after stop()`);
    }
    assert.equal(existsSync(second.workDir), false);
  });
});
