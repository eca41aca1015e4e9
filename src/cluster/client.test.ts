// The parts of ClusterClient decided before any request: argument checks that must refuse without reaching the
// cluster. The client pointed at a closed port proves it: reaching it would be ClusterUnreachable, not InvalidInput.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { LocalCa } from '../dev/ca.ts';
import { InvalidInput, type KubevisaError } from '../domain/errors.ts';
import { aRequestedVisa } from '../domain/testing/fixtures.ts';
import { createClusterClient, validateTokenSeconds, type RoleBindingEvent } from './client.ts';
import { ClusterForbidden, ClusterRequestFailed, UnexpectedTokenExpiry } from './errors.ts';
import { personServiceAccount, visaRoleBinding } from './objects.ts';

const kubeconfigYaml = stringify({
  apiVersion: 'v1',
  kind: 'Config',
  // Port 9 (discard) on loopback: nothing answers, and nothing here should try.
  clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:9' } }],
  users: [{ name: 'u', user: { token: 'x' } }],
  contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
  'current-context': 'c',
});
const client = createClusterClient({ name: 'offline', kubeconfigYaml });

describe('validateTokenSeconds', () => {
  for (const seconds of [600, 601, 3600, 3606, 3608, 86_400]) {
    it(`accepts ${seconds} s`, () => assert.doesNotThrow(() => validateTokenSeconds(seconds)));
  }
  for (const [seconds, why] of [
    [599, /too short: kube-apiserver requires at least 600 s/],
    [0, /too short/],
    [-600, /too short/],
    [3607, /may extend a 3607 s token to a year/],
    [600.5, /not a whole number/],
    [Number.NaN, /not a whole number/],
    [400 * 86_400, /too long/],
  ] as const) {
    it(`refuses ${seconds} s`, () => {
      assert.throws(
        () => validateTokenSeconds(seconds),
        (error: unknown) => error instanceof InvalidInput && why.test(error.message),
      );
    });
  }
});

describe('createClusterClient', () => {
  it('exposes the server and CA but no credential', () => {
    assert.equal(client.server, 'https://127.0.0.1:9');
    assert.equal(client.caData, undefined);
    assert.deepEqual(client.connection, { server: 'https://127.0.0.1:9', insecureSkipTlsVerify: false });
    assert.doesNotMatch(JSON.stringify(client.connection), /"x"/);
  });

  it('refuses a request timeout that is not a positive number of milliseconds', () => {
    assert.throws(() => createClusterClient({ name: 'c', kubeconfigYaml, requestTimeoutMs: 0 }), InvalidInput);
  });

  it('refuses a watch timeout client-node would cut short (its inactivity limit is 30 s)', () => {
    assert.throws(() => createClusterClient({ name: 'c', kubeconfigYaml, watchTimeoutSeconds: 30 }), InvalidInput);
    assert.throws(() => createClusterClient({ name: 'c', kubeconfigYaml, watchTimeoutSeconds: 0 }), InvalidInput);
  });
});

describe('refusals before any request', () => {
  const binding = visaRoleBinding({ visa: aRequestedVisa(), namespace: 'payments' });

  it('createRoleBinding refuses a roleRef that is not a profile ClusterRole', async () => {
    for (const roleRef of [
      { ...binding.roleRef, name: 'cluster-admin' },
      { ...binding.roleRef, kind: 'Role' },
    ]) {
      await assert.rejects(client.createRoleBinding({ ...binding, roleRef }), (error: unknown) => {
        return error instanceof InvalidInput && /must bind a profile ClusterRole/.test(error.message);
      });
    }
  });

  it('createRoleBinding refuses a binding the managed selector would not find', async () => {
    const labels = { ...binding.metadata.labels };
    delete labels['kubevisa.io/visa'];
    await assert.rejects(
      client.createRoleBinding({ ...binding, metadata: { ...binding.metadata, labels } }),
      (error: unknown) => error instanceof InvalidInput && /kubevisa could never find it again/.test(error.message),
    );
  });

  it('createRoleBinding refuses a protected namespace, whatever the binding says', async () => {
    for (const namespace of ['kube-system', 'kubevisa-system', 'kubevisa-visas']) {
      await assert.rejects(
        client.createRoleBinding({ ...binding, metadata: { ...binding.metadata, namespace } }),
        (error: unknown) =>
          error instanceof InvalidInput && new RegExp(`namespace '${namespace}' is protected`).test(error.message),
      );
    }
  });

  it('replaceRoleBinding needs the resourceVersion that was read', async () => {
    await assert.rejects(client.replaceRoleBinding(binding), /metadata\.resourceVersion is required/);
  });

  it('createServiceAccount refuses any namespace but kubevisa-visas', async () => {
    const account = personServiceAccount({ email: 'a@b.example', personId: 'p_a' });
    await assert.rejects(
      client.createServiceAccount({ ...account, metadata: { ...account.metadata, namespace: 'kube-system' } }),
      (error: unknown) =>
        error instanceof InvalidInput && /live in kubevisa-visas, not 'kube-system'/.test(error.message),
    );
  });

  it('token requests refuse a lifetime kube-apiserver would refuse or extend', async () => {
    await assert.rejects(client.createServiceAccountToken('anyone', 3607), InvalidInput);
    await assert.rejects(client.createOwnToken(599), InvalidInput);
  });
});

// The watch's restart logic against a real HTTP server playing kube-apiserver: what it must do when the server
// says 410 Gone, sends a bookmark, refuses, or the consumer's handler throws.
describe('watchManagedRoleBindings against a scripted server', () => {
  const rbLine = (type: string, name: string, resourceVersion: string) =>
    JSON.stringify({
      type,
      object: {
        kind: 'RoleBinding',
        apiVersion: 'rbac.authorization.k8s.io/v1',
        metadata: {
          name,
          namespace: 'payments',
          resourceVersion,
          labels: { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': 'v_1' },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
        subjects: [],
      },
    }) + '\n';

  async function scriptedServer(script: ((response: ServerResponse, url: URL) => void)[]) {
    const urls: URL[] = [];
    const open = new Set<ServerResponse>();
    const server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      urls.push(url);
      open.add(response);
      response.on('close', () => open.delete(response));
      const step = script[Math.min(urls.length, script.length) - 1];
      step?.(response, url);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const yaml = stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // client-node speaks plain HTTP only with verification explicitly off; fine for a loopback stand-in.
      clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 'x' } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    });
    return {
      urls,
      client: createClusterClient({ name: 'scripted', kubeconfigYaml: yaml }),
      async close() {
        for (const response of open) response.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  const stream = (response: ServerResponse, ...lines: string[]) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    for (const line of lines) response.write(line);
  };

  it('resumes from the last resourceVersion (bookmarks included) and starts over with RESYNC after 410 Gone', async () => {
    const gone = JSON.stringify({
      type: 'ERROR',
      object: {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message: 'too old resource version: 7 (9)',
        reason: 'Expired',
        code: 410,
      },
    });
    const scripted = await scriptedServer([
      (response) => {
        stream(
          response,
          rbLine('ADDED', 'kubevisa-v_1', '5'),
          JSON.stringify({ type: 'BOOKMARK', object: { kind: 'RoleBinding', metadata: { resourceVersion: '7' } } }) +
            '\n',
        );
        response.end();
      },
      (response) => {
        stream(response, gone + '\n');
        response.end();
      },
      (response) => stream(response, rbLine('ADDED', 'kubevisa-v_1', '9')),
    ]);
    const events: RoleBindingEvent[] = [];
    const errors: KubevisaError[] = [];
    const stop = scripted.client.watchManagedRoleBindings(
      (event) => events.push(event),
      (error) => errors.push(error),
    );
    try {
      await waitUntil(() => events.length >= 3, 5_000);
      assert.deepEqual(
        events.map((event) =>
          'roleBinding' in event ? `${event.type} ${event.roleBinding.metadata.resourceVersion}` : event.type,
        ),
        ['ADDED 5', 'RESYNC', 'ADDED 9'],
      );
      const versions = scripted.urls.map((url) => url.searchParams.get('resourceVersion'));
      assert.deepEqual(versions, [null, '7', null]);
      const first = scripted.urls[0]!;
      assert.equal(first.pathname, '/apis/rbac.authorization.k8s.io/v1/rolebindings');
      assert.equal(first.searchParams.get('watch'), 'true');
      assert.equal(first.searchParams.get('labelSelector'), 'app.kubernetes.io/managed-by=kubevisa,kubevisa.io/visa');
      assert.equal(first.searchParams.get('allowWatchBookmarks'), 'true');
      assert.equal(first.searchParams.get('timeoutSeconds'), '20');
      assert.deepEqual(errors, []);
    } finally {
      stop();
      await scripted.close();
    }
  });

  it('reports a refusal as ClusterForbidden and retries with growing pauses', async () => {
    const scripted = await scriptedServer([
      (response) => {
        response.writeHead(403, { 'content-type': 'application/json' });
        response.end('{"kind":"Status","code":403,"reason":"Forbidden","message":"nope"}');
      },
    ]);
    const errors: KubevisaError[] = [];
    const started = Date.now();
    const stop = scripted.client.watchManagedRoleBindings(
      () => {},
      (error) => errors.push(error),
    );
    try {
      await waitUntil(() => errors.length >= 3, 5_000);
      // Pauses of 500 ms then 1 s: the third attempt comes no sooner than 1.5 s after the first.
      assert.ok(Date.now() - started >= 1400, `${Date.now() - started} ms`);
      assert.ok(
        errors.every((error) => error instanceof ClusterForbidden),
        errors.map(String).join('\n'),
      );
    } finally {
      stop();
      await scripted.close();
    }
    const attempts = scripted.urls.length;
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.equal(scripted.urls.length, attempts, 'no retry after stop()');
  });

  it('reports an ERROR event that is not 410 with the Status it carried', async () => {
    const scripted = await scriptedServer([
      (response) => {
        stream(
          response,
          JSON.stringify({
            type: 'ERROR',
            object: { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcd is sad' },
          }) + '\n',
        );
        response.end();
      },
      (response) => stream(response),
    ]);
    const errors: KubevisaError[] = [];
    const stop = scripted.client.watchManagedRoleBindings(
      () => {},
      (error) => errors.push(error),
    );
    try {
      await waitUntil(() => errors.length >= 1, 5_000);
      assert.equal(errors[0]?.code, 'ERR_CLUSTER_REQUEST_FAILED');
      assert.match(errors[0]?.message ?? '', /answered 500: etcd is sad/);
    } finally {
      stop();
      await scripted.close();
    }
  });

  it('reports a handler that throws instead of letting client-node swallow it', async () => {
    const scripted = await scriptedServer([(response) => stream(response, rbLine('ADDED', 'kubevisa-v_1', '5'))]);
    const errors: KubevisaError[] = [];
    const stop = scripted.client.watchManagedRoleBindings(
      () => {
        throw new Error('reconciler bug');
      },
      (error) => errors.push(error),
    );
    try {
      await waitUntil(() => errors.length >= 1, 5_000);
      assert.match(errors[0]?.message ?? '', /event handler threw: reconciler bug/);
      assert.equal(errors[0]?.code, 'ERR_KUBEVISA');
    } finally {
      stop();
      await scripted.close();
    }
  });
});

describe('createServiceAccountToken against a scripted server', () => {
  async function tokenServer(status: Record<string, unknown>) {
    const server = createServer((request, response) => {
      response.writeHead(201, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', status }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const yaml = stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 'x' } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    });
    return { server, client: createClusterClient({ name: 'scripted', kubeconfigYaml: yaml, now: () => NOW }) };
  }
  const NOW = Date.UTC(2026, 10, 28, 9, 0, 0);

  it('withholds a token that lives far longer than asked (what the 3607 s extension hands out)', async () => {
    const { server, client: scripted } = await tokenServer({
      token: 'year-long',
      expirationTimestamp: new Date(NOW + 365 * 86_400_000).toISOString(),
    });
    try {
      await assert.rejects(scripted.createServiceAccountToken('carol-0123456789', 600), (error: unknown) => {
        return error instanceof UnexpectedTokenExpiry && !error.message.includes('year-long');
      });
    } finally {
      server.close();
    }
  });

  it('accepts the expiry asked for, give or take clock skew, as epoch milliseconds', async () => {
    const expires = NOW + 600_000 + 60_000;
    const { server, client: scripted } = await tokenServer({
      token: 't',
      expirationTimestamp: new Date(expires).toISOString(),
    });
    try {
      assert.deepEqual(await scripted.createServiceAccountToken('carol-0123456789', 600), {
        token: 't',
        expirationTimestamp: expires,
      });
    } finally {
      server.close();
    }
  });

  it('refuses an answer without a token', async () => {
    const { server, client: scripted } = await tokenServer({});
    try {
      await assert.rejects(scripted.createOwnToken(600), (error: unknown) => {
        return error instanceof ClusterRequestFailed && /without a token/.test(error.message);
      });
    } finally {
      server.close();
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('connections to the cluster', () => {
  it('are reused from one request to the next, not opened (a TLS handshake each) per request', async (t) => {
    const folder = await mkdtemp(join(tmpdir(), 'kubevisa-client-tls-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    const ca = await LocalCa.create(folder, 'kubevisa test CA');
    const leaf = await ca.issue({
      name: 'server',
      commonName: '127.0.0.1',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    let handshakes = 0;
    const server = createHttpsServer(
      { cert: await readFile(leaf.certFile), key: await readFile(leaf.keyFile) },
      (request, response) => {
        // kubevisa's delete of a binding that is not there: answered 404, which the client reports as `false`.
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404 }));
      },
    );
    server.on('secureConnection', () => handshakes++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => server.close(resolve)));
    t.after(() => server.closeAllConnections());
    const { port } = server.address() as AddressInfo;
    const secure = createClusterClient({
      name: 'tls',
      kubeconfigYaml: stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'c',
            cluster: {
              server: `https://127.0.0.1:${port}`,
              'certificate-authority-data': (await readFile(ca.certFile)).toString('base64'),
            },
          },
        ],
        users: [{ name: 'u', user: { token: 'x' } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'c',
      }),
    });
    for (let i = 0; i < 20; i++) assert.equal(await secure.deleteRoleBinding('payments', `kubevisa-v_${i}`), false);
    const sequential = handshakes;
    await Promise.all(
      Array.from({ length: 4 }, (_, i) => secure.deleteRoleBinding('payments', `kubevisa-v_parallel${i}`)),
    );
    // Twenty one after the other: one connection, or two when the next request starts before the last answer was
    // read to its end (client-node reads an error's body after it settles). Four at once may each need one more.
    assert.ok(sequential <= 2, `${sequential} TLS handshakes for 20 requests one after the other`);
    assert.ok(handshakes <= 6, `${handshakes} TLS handshakes for 24 requests`);
  });
});
