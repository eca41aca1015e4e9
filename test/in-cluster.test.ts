// In-cluster mode, end to end: `kubevisa server` runs as a pod would — no kubeconfig, the cluster reached with a
// ServiceAccount token from a folder laid out as /var/run/secrets/kubernetes.io/serviceaccount (a real token for
// kubevisa's real ServiceAccount, made by `kubectl create token`), KUBERNETES_SERVICE_HOST/PORT set, and its TLS
// from a folder laid out as a mounted cert-manager Secret (tls.crt, tls.key). The kubelet's token renewal and
// cert-manager's certificate renewal are played by rewriting those files; the old token is then killed (its bound
// Secret deleted), so only a server that picked the new one up keeps working.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { parse } from 'yaml';
import { LocalCa } from '../src/dev/ca.ts';
import { InvalidInput } from '../src/domain/errors.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { eventually } from './support/kubectl.ts';
import {
  CLUSTER,
  api,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';

let env: KubevisaEnv;
let server: ChildProcess | undefined;
let serviceAccountDir: string;
let tlsDir: string;

/** A token for kubevisa's own ServiceAccount bound to a Secret: deleting the Secret kills the token. */
async function boundToken(secret: string): Promise<string> {
  await env.kOk(['create', 'secret', 'generic', secret, '-n', 'kubevisa-system']);
  const token = await env.kOk([
    'create',
    'token',
    'kubevisa',
    '-n',
    'kubevisa-system',
    '--bound-object-kind',
    'Secret',
    '--bound-object-name',
    secret,
    '--duration',
    '15m',
  ]);
  return token.trim();
}

/** Replaces a mounted file the way the kubelet does: the new content appears whole, never half-written. */
async function replaceFile(file: string, content: string | Buffer) {
  await writeFile(`${file}.new`, content, { mode: 0o600 });
  await rename(`${file}.new`, file);
}

/** The SHA-256 fingerprint of the certificate the server presents now. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

before(async () => {
  env = await startKubevisaEnv({ tls: true });
  serviceAccountDir = join(env.dir, 'serviceaccount');
  tlsDir = join(env.dir, 'tls-secret');
  await mkdir(serviceAccountDir, { recursive: true });
  await mkdir(tlsDir, { recursive: true });
  await writeFile(join(serviceAccountDir, 'token'), await boundToken('first-token-holder'), { mode: 0o600 });
  await copyFile(env.cp.caCertFile, join(serviceAccountDir, 'ca.crt'));
  await writeFile(join(serviceAccountDir, 'namespace'), 'kubevisa-system');
  await copyFile(env.config.tls!.certFile, join(tlsDir, 'tls.crt'));
  await copyFile(env.config.tls!.keyFile, join(tlsDir, 'tls.key'));

  // The same config as every end-to-end test, with the cluster in-cluster and TLS from the Secret's folder.
  const raw = JSON.parse(await readFile(env.configFile, 'utf8')) as Record<string, unknown>;
  const config = {
    ...raw,
    clusters: [{ name: CLUSTER, inCluster: true, serviceAccountDir, directMode: true }],
    tls: { certFile: join(tlsDir, 'tls.crt'), keyFile: join(tlsDir, 'tls.key') },
  };
  await writeFile(env.configFile, JSON.stringify(config), { mode: 0o600 });
  const apiServer = new URL(env.cp.apiServerUrl);
  server = await startServerProcess(env, {
    KUBERNETES_SERVICE_HOST: apiServer.hostname,
    KUBERNETES_SERVICE_PORT: apiServer.port,
  });
});

after(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await waitForExit(server);
  }
  await env?.stop();
});

test('refuses an in-cluster cluster that also names a kubeconfig, and one outside a pod, with what to do', async () => {
  const base = { dataDir: '/tmp/kv', oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' } };
  assert.throws(
    () => parseServerConfig({ ...base, clusters: [{ name: 'local', inCluster: true, kubeconfig: 'x' }] }, '/'),
    (error: unknown) => error instanceof InvalidInput && /both 'inCluster' and 'kubeconfig'/.test(error.message),
  );
  const parsed = parseServerConfig({ ...base, clusters: [{ name: 'local', inCluster: true }] }, '/');
  assert.equal(parsed.clusters[0]!.kubeconfig, '/tmp/kv/clusters/local.in-cluster.kubeconfig');
  const { inClusterKubeconfig } = await import('../src/cluster/in-cluster.ts');
  await assert.rejects(
    inClusterKubeconfig('local', { serviceAccountDir, env: {} }),
    /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/,
  );
  await assert.rejects(
    inClusterKubeconfig('local', {
      serviceAccountDir: join(env.dir, 'nowhere'),
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '6443' },
    }),
    /nowhere\/token cannot be read .*automountServiceAccountToken/,
  );
});

test('serves with the pod ServiceAccount, picks up a renewed token and a renewed certificate without a restart', async () => {
  // The kubeconfig kubevisa wrote from the mounted folder: 0600, the service host, the mounted token.
  const kubeconfigFile = join(env.config.dataDir, 'clusters', `${CLUSTER}.in-cluster.kubeconfig`);
  assert.equal((await stat(kubeconfigFile)).mode & 0o777, 0o600);
  const firstToken = (await readFile(join(serviceAccountDir, 'token'), 'utf8')).trim();
  const written = parse(await readFile(kubeconfigFile, 'utf8')) as {
    clusters: { cluster: { server: string } }[];
    users: { user: { token: string } }[];
  };
  assert.equal(written.clusters[0]!.cluster.server, env.cp.apiServerUrl);
  assert.equal(written.users[0]!.user.token, firstToken);
  assert.equal((await api(env.serverUrl, 'GET', '/readyz')).status, 200);

  // The kubelet renews the token; the old one then dies (its bound Secret is deleted).
  const secondToken = await boundToken('second-token-holder');
  await replaceFile(join(serviceAccountDir, 'token'), secondToken);
  await eventually('kubevisa rewrites its kubeconfig with the renewed token', 30_000, async () =>
    (await readFile(kubeconfigFile, 'utf8')).includes(secondToken),
  );
  await env.kOk(['delete', 'secret', 'first-token-holder', '-n', 'kubevisa-system']);
  // kube-apiserver sees the deletion through its informer (--service-account-lookup): moments later under load.
  const oldToken = await env.cp.writeTokenKubeconfig(firstToken, 'old-token');
  await eventually(
    'the first token no longer authenticates',
    15_000,
    async () => (await env.k(['auth', 'whoami'], oldToken)).code !== 0,
  );

  // Work that needs the cluster: an auto-approved visa becomes a RoleBinding, and kubectl's path through the gateway.
  await env.kOk(['create', 'namespace', 'staging-incluster']);
  const sam = await loginAs(env.serverUrl, people.sam);
  const engagement = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
    token: sam.token,
    body: {
      name: 'in-cluster',
      vendor: 'Acme',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(10),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['staging-*'], profiles: ['viewer'] },
      maxVisaDuration: '8h',
    },
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
  const cora = await loginAs(env.serverUrl, people.cora);
  const visa = await api(env.serverUrl, 'POST', '/api/v1/visas', {
    token: cora.token,
    body: { profile: 'viewer', cluster: CLUSTER, namespaces: ['staging-incluster'], duration: '1h', reason: 'look' },
  });
  assert.equal(visa.status, 201, JSON.stringify(visa.body));
  assert.equal(visa.body.state, 'active');
  await eventually('the reconciler, on the renewed token, creates the RoleBinding', 20_000, async () => {
    const bindings = await env.kOk(['get', 'rolebindings', '-n', 'staging-incluster', '-o', 'name']);
    return bindings.includes(`kubevisa-${String(visa.body.id)}`);
  });
  // The gateway re-reads the kubeconfig file about once a minute.
  await eventually('the gateway forwards with the renewed token', 90_000, async () => {
    const pods = await api(env.serverUrl, 'GET', `/clusters/${CLUSTER}/api/v1/namespaces/staging-incluster/pods`, {
      token: cora.token,
    });
    return pods.status === 200;
  });

  // cert-manager renews the certificate: a new one from the same CA is served without a restart.
  const before = await servedFingerprint(env.serverPort);
  const renewed = await LocalCa.open(join(env.dir, 'pki')).issue({
    name: 'renewed',
    commonName: 'kubevisa-renewed',
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['localhost'],
    usage: 'server',
  });
  const renewedFingerprint = new X509Certificate(await readFile(renewed.certFile)).fingerprint256;
  assert.notEqual(renewedFingerprint, before);
  await replaceFile(join(tlsDir, 'tls.key'), await readFile(renewed.keyFile));
  await replaceFile(join(tlsDir, 'tls.crt'), await readFile(renewed.certFile));
  await eventually('the server presents the renewed certificate', 30_000, async () => {
    return (await servedFingerprint(env.serverPort)) === renewedFingerprint;
  });
  assert.equal((await api(env.serverUrl, 'GET', '/healthz')).status, 200, 'the renewed certificate is trusted');
  assert.equal(server!.exitCode, null, 'the same server process throughout');
});
