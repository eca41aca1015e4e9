import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { LocalCa } from '../dev/ca.ts';
import { describeToken, scanKubeconfig } from './kubeconfig-scan.ts';

// Real time: the certificates below are issued now by openssl.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const jwt = (payload: Record<string, unknown>) =>
  [{ alg: 'RS256', kid: 'k' }, payload]
    .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
    .join('.') + '.c2lnbmF0dXJl';

// The claims of a token kube-controller-manager's token controller puts in a `kubernetes.io/service-account-token`
// Secret (no exp), and of a TokenRequest token (exp, `kubernetes.io` claim).
const LEGACY = jwt({
  iss: 'kubernetes/serviceaccount',
  'kubernetes.io/serviceaccount/namespace': 'ci',
  'kubernetes.io/serviceaccount/secret.name': 'deployer-token',
  'kubernetes.io/serviceaccount/service-account.name': 'deployer',
  sub: 'system:serviceaccount:ci:deployer',
});
const BOUND = jwt({
  iss: 'https://kubernetes.default.svc.cluster.local',
  exp: NOW / 1000 + 3600,
  'kubernetes.io': { namespace: 'kubevisa-visas', serviceaccount: { name: 'cora-1' } },
  sub: 'system:serviceaccount:kubevisa-visas:cora-1',
});
const STATIC = 'abcdef.0123456789abcdef';
const PASSWORD = 'hunter2-password';
const REFRESH = 'refresh-token-value-1234';

let dir: string;
let certData: string;
let mastersCertFile: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-kcscan-'));
  const ca = await LocalCa.create(dir, 'test-ca');
  const dev = await ca.issue({
    name: 'dev',
    commonName: 'dev@corp.example',
    organizations: ['dev'],
    usage: 'client',
    days: 400,
  });
  const masters = await ca.issue({
    name: 'root',
    commonName: 'root',
    organizations: ['system:masters'],
    usage: 'client',
    days: 10,
  });
  certData = (await readFile(dev.certFile)).toString('base64');
  mastersCertFile = masters.certFile;
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function kubeconfig(users: Record<string, Record<string, unknown>>): string {
  const names = Object.keys(users);
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'prod', cluster: { server: 'https://prod.example:6443', 'insecure-skip-tls-verify': true } }],
    users: names.map((name) => ({ name, user: users[name] })),
    contexts: names.map((name) => ({ name, context: { cluster: 'prod', user: name, namespace: 'payments' } })),
    'current-context': names[0],
  });
}

function scan(text: string) {
  const file = join(dir, 'config');
  return scanKubeconfig({
    file,
    text,
    readFile: (path) => {
      try {
        return readFileSync(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    resolvePath: (path) => resolve(dirname(file), path),
    now: NOW,
  });
}

describe('scan kubeconfig', () => {
  test('tells every kind of credential apart and rates it, without a secret in the report', () => {
    const text = kubeconfig({
      legacy: { token: LEGACY },
      bound: { token: BOUND },
      static: { token: STATIC },
      cert: { 'client-certificate-data': certData, 'client-key-data': 'a2V5' },
      masters: { 'client-certificate': mastersCertFile, 'client-key': 'root.key' },
      basic: { username: 'admin', password: PASSWORD },
      kubevisa: {
        exec: {
          apiVersion: 'client.authentication.k8s.io/v1',
          command: '/usr/local/bin/kubevisa',
          args: ['credential'],
        },
      },
      oidc: {
        'auth-provider': { name: 'oidc', config: { 'refresh-token': REFRESH, 'idp-issuer-url': 'https://idp' } },
      },
    });
    const reports = scan(text);
    const summary = Object.fromEntries(reports.map((r) => [r.context, `${r.credentials[0]?.kind} ${r.risk}`]));
    assert.deepEqual(summary, {
      legacy: 'legacy-serviceaccount-token critical',
      bound: 'serviceaccount-token low',
      static: 'static-token high',
      cert: 'client-certificate high',
      masters: 'client-certificate critical',
      basic: 'basic-auth high',
      kubevisa: 'exec-plugin none',
      oidc: 'auth-provider high',
    });
    const legacy = reports.find((r) => r.context === 'legacy')!;
    assert.equal(legacy.credentials[0]?.identity, 'ServiceAccount ci/deployer');
    assert.equal(legacy.current, true);
    assert.equal(legacy.insecureSkipTlsVerify, true);
    const cert = reports.find((r) => r.context === 'cert')!.credentials[0]!;
    assert.equal(cert.identity, 'dev@corp.example (groups dev)');
    assert.match(cert.description, /private key embedded.*expires in 1\.\d years/);
    const shown = JSON.stringify(reports);
    for (const secret of [LEGACY, BOUND, STATIC, PASSWORD, REFRESH, certData]) {
      assert.equal(shown.includes(secret), false, 'no secret is ever in the report');
    }
  });

  test('token expiry sets the risk: a week or more is high, a day medium, less low, expired low', () => {
    const token = (hours: number) =>
      describeToken(
        jwt({ sub: 'oidc-user', email: 'x@corp.example', exp: NOW / 1000 + hours * 3600 }),
        'embedded',
        NOW,
      );
    assert.equal(token(24 * 30).risk, 'high');
    assert.equal(token(48).risk, 'medium');
    assert.equal(token(2).risk, 'low');
    const expired = token(-1);
    assert.equal(expired.expired, true);
    assert.match(expired.description, /has expired/);
    assert.equal(expired.identity, 'x@corp.example');
  });

  test('a token file is read to judge it; a missing one is a problem, not a crash', () => {
    const reports = scan(kubeconfig({ missing: { tokenFile: 'nope.token' } }));
    assert.deepEqual(reports[0]?.problems, ['tokenFile nope.token cannot be read']);
    assert.equal(reports[0]?.credentials[0]?.kind, 'none');
  });

  test('an exec plugin given environment values may carry secrets', () => {
    const [report] = scan(
      kubeconfig({
        aws: {
          exec: { command: 'aws', args: ['eks', 'get-token'], env: [{ name: 'AWS_SECRET_ACCESS_KEY', value: 'x' }] },
        },
      }),
    );
    assert.equal(report?.risk, 'medium');
    assert.match(report?.credentials[0]?.description ?? '', /AWS_SECRET_ACCESS_KEY/);
  });

  test('text that is not a kubeconfig is refused with the file named', () => {
    assert.throws(() => scan('a: [1'), /config is not valid YAML/);
    assert.throws(() => scan('- a\n- b\n'), /is not a kubeconfig/);
  });
});
