/**
 * `kubevisa kubeconfig`: writes a context whose user is the `kubevisa credential` exec plugin, keeps what
 * the file already had, and never writes a secret.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { access, constants, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test, type TestContext } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { LocalCa } from '../dev/ca.ts';
import { FakeApi, SESSION_SECRET } from './testing/fake-api.ts';
import { KUBEVISA_BIN, makeSandbox, seedLogin, type Sandbox } from './testing/run-cli.ts';

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

const EXISTING = `# my own notes: keep me
apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example:6443
users:
- name: other
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: other-plugin
contexts:
- name: other
  context:
    cluster: other
    user: other
current-context: other
`;

interface Named<T> {
  name: string;
  [key: string]: T | string;
}
interface Kubeconfig {
  'current-context': string;
  clusters: Named<{ server: string; 'certificate-authority-data'?: string }>[];
  users: Named<{ exec: Record<string, unknown> }>[];
  contexts: Named<{ cluster: string; user: string; namespace?: string }>[];
}

let api: FakeApi;
let sandbox: Sandbox;

before(async () => {
  api = await FakeApi.start();
  api.on('GET', '/api/v1/clusters', {
    status: 200,
    body: {
      items: [
        { name: 'prod', server: 'https://10.0.0.1:6443', caData: Buffer.from(CA_PEM).toString('base64') },
        { name: 'staging', server: 'https://10.0.0.2:6443' },
      ],
    },
  });
});
after(async () => {
  await api.close();
});
beforeEach(async () => {
  sandbox = await makeSandbox();
  await seedLogin(sandbox, api.url);
});
afterEach(async () => {
  await sandbox.remove();
});

function entry<T>(list: Named<T>[], name: string, key: string): T {
  const found = list.find((e) => e.name === name);
  assert.ok(found, `no entry named ${name}`);
  return found[key] as T;
}

describe('gateway mode', () => {
  test('adds an exec-plugin context through the gateway, keeps the other entries and comments, writes 0600', async () => {
    const file = join(sandbox.root, 'kubeconfig');
    await writeFile(file, EXISTING, { mode: 0o644 });
    const result = await sandbox.runOk([
      'kubeconfig',
      '--cluster',
      'prod',
      '--kubeconfig',
      file,
      '--namespace',
      'payments',
    ]);
    assert.match(result.stdout, /Context 'kubevisa-prod' .* through the kubevisa gateway/);

    const text = await readFile(file, 'utf8');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(text, /# my own notes: keep me/);
    const config = parseYaml(text) as Kubeconfig;
    assert.deepEqual(
      config.contexts.map((c) => c.name),
      ['other', 'kubevisa-prod'],
    );
    assert.equal(entry(config.clusters, 'other', 'cluster').server, 'https://other.example:6443');
    assert.equal(config['current-context'], 'kubevisa-prod');
    assert.deepEqual(entry(config.contexts, 'kubevisa-prod', 'context'), {
      cluster: 'kubevisa-prod',
      user: 'kubevisa-prod',
      namespace: 'payments',
    });
    assert.deepEqual(entry(config.clusters, 'kubevisa-prod', 'cluster'), { server: `${api.url}/clusters/prod` });

    const user = entry(config.users, 'kubevisa-prod', 'user');
    assert.deepEqual(Object.keys(user), ['exec'], 'the user has no token, no certificate, nothing but the plugin');
    const { installHint, ...exec } = user.exec;
    assert.deepEqual(exec, {
      apiVersion: 'client.authentication.k8s.io/v1',
      command: KUBEVISA_BIN,
      args: ['credential', '--cluster', 'prod'],
      interactiveMode: 'Never',
      provideClusterInfo: false,
    });
    assert.equal(typeof installHint, 'string');
    await access(exec.command as string, constants.X_OK);
    assert.doesNotMatch(text, new RegExp(`${SESSION_SECRET}|at-\\d|token:`), 'no secret in the file');
  });

  test('running it again updates the entries in place instead of adding duplicates', async () => {
    const file = join(sandbox.root, 'kubeconfig');
    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file]);
    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file, '--namespace', 'ledger']);
    const config = parseYaml(await readFile(file, 'utf8')) as Kubeconfig;
    assert.equal(config.contexts.length, 1);
    assert.equal(config.users.length, 1);
    assert.equal(entry(config.contexts, 'kubevisa-prod', 'context').namespace, 'ledger');
  });

  test('without --kubeconfig it writes the first file named in $KUBECONFIG', async () => {
    const first = join(sandbox.root, 'first.yaml');
    const second = join(sandbox.root, 'second.yaml');
    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--context-name', 'work'], {
      env: { KUBECONFIG: `${first}:${second}` },
    });
    const config = parseYaml(await readFile(first, 'utf8')) as Kubeconfig;
    assert.equal(config['current-context'], 'work');
    await assert.rejects(stat(second), { code: 'ENOENT' });
  });

  test('embeds the CA the CLI trusts for an https server', async (t) => {
    const { secure, ca } = await startSecureApi(t);
    secure.on('GET', '/api/v1/clusters', {
      status: 200,
      body: { items: [{ name: 'prod', server: 'https://10.0.0.1:6443' }] },
    });
    await seedLogin(sandbox, secure.url);
    const file = join(sandbox.root, 'kubeconfig');

    const untrusted = await sandbox.run(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /cannot trust the kubevisa server at https:\/\/127\.0\.0\.1:\d+: .*--ca-file FILE/);

    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file, '--ca-file', ca.certFile]);
    const config = parseYaml(await readFile(file, 'utf8')) as Kubeconfig;
    const cluster = entry(config.clusters, 'kubevisa-prod', 'cluster');
    assert.equal(cluster.server, `${secure.url}/clusters/prod`);
    assert.equal(
      cluster['certificate-authority-data'],
      Buffer.from(await readFile(ca.certFile, 'utf8')).toString('base64'),
    );
  });

  test('warns that kubectl sends no credentials to a plain http server', async () => {
    const result = await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--kubeconfig', join(sandbox.root, 'k')]);
    assert.match(result.stderr, /warning: .*plain http.*kubectl never sends credentials/);
  });
});

describe('direct mode', () => {
  test("uses the cluster's own server and CA and asks the plugin for a direct token", async () => {
    const file = join(sandbox.root, 'kubeconfig');
    const result = await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--direct', '--kubeconfig', file]);
    assert.match(result.stdout, /directly at https:\/\/10\.0\.0\.1:6443/);
    const config = parseYaml(await readFile(file, 'utf8')) as Kubeconfig;
    assert.deepEqual(entry(config.clusters, 'kubevisa-prod-direct', 'cluster'), {
      server: 'https://10.0.0.1:6443',
      'certificate-authority-data': Buffer.from(CA_PEM).toString('base64'),
    });
    assert.deepEqual(entry(config.users, 'kubevisa-prod-direct', 'user').exec.args, [
      'credential',
      '--cluster',
      'prod',
      '--direct',
    ]);
  });

  test('warns when the server sends no CA for the cluster', async () => {
    const file = join(sandbox.root, 'kubeconfig');
    const result = await sandbox.runOk(['kubeconfig', '--cluster', 'staging', '--direct', '--kubeconfig', file]);
    assert.match(result.stderr, /warning: the server sent no CA for cluster 'staging'/);
  });
});

test('an unknown cluster is refused with the list of known ones, and the file is left alone', async () => {
  const file = join(sandbox.root, 'kubeconfig');
  await writeFile(file, EXISTING);
  const result = await sandbox.run(['kubeconfig', '--cluster', 'nope', '--kubeconfig', file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /knows no cluster 'nope'; known clusters: prod, staging \[ERR_NOT_FOUND\]/);
  assert.equal(await readFile(file, 'utf8'), EXISTING);
});

test('a file that is not a kubeconfig is refused, not overwritten', async () => {
  const file = join(sandbox.root, 'kubeconfig');
  await writeFile(file, '- just\n- a list\n');
  const result = await sandbox.run(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /is not a kubeconfig .*\[ERR_BAD_KUBECONFIG\]/);
  assert.equal(await readFile(file, 'utf8'), '- just\n- a list\n');
});

describe('with the real kubectl', () => {
  // kubectl sends credentials only over TLS (kubernetes/kubectl#744), so these run against an https fake.
  const version = { status: 200, body: { major: '1', minor: '37', gitVersion: 'v1.37.2' } };

  /** `kubectl get --raw /version` with the file, or undefined (test skipped) when kubectl is not at hand. */
  async function kubectlVersion(t: TestContext, file: string): Promise<string | undefined> {
    const binaries = process.env.KUBEVISA_K8S_BIN;
    if (!binaries) {
      t.skip('KUBEVISA_K8S_BIN is not set: run the tests through scripts/test.sh (or source scripts/setup.sh)');
      return undefined;
    }
    const { stdout } = await promisify(execFile)(
      join(binaries, 'kubectl'),
      ['--kubeconfig', file, 'get', '--raw', '/version'],
      {
        env: {
          HOME: sandbox.home,
          KUBEVISA_CONFIG_DIR: sandbox.configDir,
          PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        },
        timeout: 30_000,
      },
    );
    return stdout;
  }

  test('gateway mode: kubectl runs the plugin and sends the kubevisa token to /clusters/NAME', async (t) => {
    const { secure, ca } = await startSecureApi(t);
    secure.on('GET', '/api/v1/clusters', {
      status: 200,
      body: { items: [{ name: 'prod', server: 'https://10.0.0.1:6443' }] },
    });
    secure.on('GET', '/clusters/prod/version', version);
    await seedLogin(sandbox, secure.url);
    const file = join(sandbox.root, 'kubeconfig');
    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--kubeconfig', file, '--ca-file', ca.certFile]);
    secure.requests.length = 0;
    const stdout = await kubectlVersion(t, file);
    if (stdout === undefined) return;
    assert.match(stdout, /v1\.37\.2/);
    const call = secure.requests.find((r) => r.path === '/clusters/prod/version');
    assert.match(String(call?.headers.authorization), /^Bearer at-\d+$/);
  });

  test("direct mode: kubectl runs the plugin and sends the cluster token to the cluster's own server", async (t) => {
    const { secure, ca } = await startSecureApi(t);
    const caData = Buffer.from(await readFile(ca.certFile, 'utf8')).toString('base64');
    // The same fake plays the cluster's API server under /direct.
    secure.on('GET', '/api/v1/clusters', {
      status: 200,
      body: { items: [{ name: 'prod', server: `${secure.url}/direct`, caData }] },
    });
    secure.on('POST', '/api/v1/clusters/prod/credential', () => {
      secure.acceptToken('sa-token-1');
      return {
        status: 200,
        body: { token: 'sa-token-1', expirationTimestamp: new Date(Date.now() + 600_000).toISOString() },
      };
    });
    secure.on('GET', '/direct/version', version);
    await seedLogin(sandbox, secure.url);
    await writeFile(
      join(sandbox.configDir, 'config.json'),
      JSON.stringify({ server: secure.url, caFile: ca.certFile }),
    );
    const file = join(sandbox.root, 'kubeconfig');
    await sandbox.runOk(['kubeconfig', '--cluster', 'prod', '--direct', '--kubeconfig', file]);
    const stdout = await kubectlVersion(t, file);
    if (stdout === undefined) return;
    assert.match(stdout, /v1\.37\.2/);
    const call = secure.requests.find((r) => r.path === '/direct/version');
    assert.equal(call?.headers.authorization, 'Bearer sa-token-1');
  });
});

/** An https FakeApi with a certificate for 127.0.0.1 from a new local CA, closed when the test ends. */
async function startSecureApi(t: TestContext): Promise<{ secure: FakeApi; ca: LocalCa }> {
  const caDir = join(sandbox.root, 'ca');
  await mkdir(caDir);
  const ca = await LocalCa.create(caDir, 'kubevisa test CA');
  const leaf = await ca.issue({ name: 'server', commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'], usage: 'server' });
  const secure = await FakeApi.start({
    cert: await readFile(leaf.certFile, 'utf8'),
    key: await readFile(leaf.keyFile, 'utf8'),
  });
  t.after(() => secure.close());
  return { secure, ca };
}
