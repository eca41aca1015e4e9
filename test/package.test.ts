// The npm package as a newcomer gets it: `npm pack` (prepack compiles to JavaScript), the tarball installed into an
// empty folder with its production dependencies only, and `npx kubevisa` run from there — help, version, then the
// main commands against a real server: install into the real control plane, the server itself started the way the
// container image starts it (the Dockerfile's ENTRYPOINT, in a folder laid out as /opt/kubevisa is in the image),
// device login at the real OIDC provider, an engagement, a visa, kubectl through the gateway with the package's own
// credential plugin, and a revoke.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { LocalCa } from '../src/dev/ca.ts';
import { startControlPlane, type ControlPlane } from '../src/dev/cluster/control-plane.ts';
import { startDevIdp, type DevIdp } from '../src/dev/idp.ts';
import { localServerConfig } from '../src/dev/local-setup.ts';
import { kubectl, kubectlBackground, eventually } from './support/kubectl.ts';
import { people, repoRoot } from './support/kubevisa-env.ts';

const nodeDir = dirname(process.execPath);
let dir: string;
let image: string;
let tarball: string;
let cp: ControlPlane | undefined;
let idp: DevIdp | undefined;
let server: ChildProcess | undefined;

function exec(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      command,
      args,
      {
        cwd: options.cwd ?? dir,
        // Node 24 first on PATH, as on a machine that has only Node 24.
        env: { ...process.env, PATH: `${nodeDir}:${process.env.PATH ?? ''}`, ...options.env },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** `npx kubevisa …` in the folder the package is installed in. */
const npx = (args: string[], env: Record<string, string> = {}, timeoutMs = 60_000) =>
  exec('npx', ['--no-install', 'kubevisa', ...args], { cwd: image, env, timeoutMs });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-package-test-'));
  image = join(dir, 'opt', 'kubevisa');
  await mkdir(image, { recursive: true });
});
after(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((resolve) => server!.once('exit', resolve));
  }
  await idp?.stop();
  await cp?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('npm pack ships compiled JavaScript and a deliberate file list: no TypeScript, tests or sources', async () => {
  const packed = await exec('npm', ['pack', '--json', '--pack-destination', dir], {
    cwd: repoRoot,
    timeoutMs: 300_000,
  });
  assert.equal(packed.code, 0, packed.stderr);
  const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, info!.filename);
  const files = info!.files.map((f) => f.path);
  for (const required of [
    'package.json',
    'README.md',
    'dist/bin/kubevisa',
    'dist/src/cli/main.js',
    'dist/src/server/main.js',
    'dist/src/store/sqlite-audit-worker.js',
    'dist/src/audit/verify-worker.js',
    'dist/scripts/k8s-binaries.sh',
  ]) {
    assert.ok(files.includes(required), `${required} is in the package`);
  }
  const unwanted = files.filter((f) =>
    /\.ts$|\.test\.|(^|\/)test\/(?!k8s\/go\.(mod|sum)$)|^src\/|^bench\/|^deploy\/|node_modules/.test(f),
  );
  assert.deepEqual(unwanted, [], 'no TypeScript, tests, benchmarks or raw sources');
});

test('installs from the tarball into an empty folder; npx kubevisa --help and --version work with no dev tool', async () => {
  await writeFile(join(image, 'package.json'), JSON.stringify({ name: 'kubevisa-image', private: true }));
  const installed = await exec(
    'npm',
    ['install', '--prefer-offline', '--omit=dev', '--no-audit', '--no-fund', tarball],
    { cwd: image, timeoutMs: 300_000 },
  );
  assert.equal(installed.code, 0, installed.stderr);
  const modules = await readdir(join(image, 'node_modules'));
  for (const devOnly of ['typescript', 'eslint', 'prettier', 'vite', 'playwright-core', 'fast-check']) {
    assert.ok(!modules.includes(devOnly), `${devOnly} is not installed`);
  }
  const help = await npx(['--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage: kubevisa COMMAND/);
  assert.match(help.stdout, /uninstall/);
  const version = await npx(['--version']);
  assert.equal(version.code, 0, version.stderr);
  const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.match(version.stdout, new RegExp(`^kubevisa ${manifest.version.replaceAll('.', '\\.')} \\(Node\\.js v24\\.`));
  const serverHelp = await npx(['server', '--help']);
  assert.match(serverHelp.stdout, /kubevisa server --config/);
  // Started without the flag (`node …/kubevisa`), the launcher runs itself again with --disable-proto=throw.
  const probe = await exec(process.execPath, [join(image, 'node_modules/kubevisa/dist/bin/kubevisa'), '--version']);
  assert.equal(probe.code, 0, probe.stderr);
});

test('the main commands against a real server started by the image entrypoint, through kubectl and the gateway', async () => {
  cp = await startControlPlane();
  await exec(cp.binaries.kubectl, ['--kubeconfig', cp.adminKubeconfig, 'create', 'namespace', 'staging-pkg']);
  const state = join(dir, 'state');
  const data = join(state, 'data');
  const installed = await npx(['install', '--cluster', 'test', '--kubeconfig', cp.adminKubeconfig, '--data-dir', data]);
  assert.equal(installed.code, 0, installed.stderr);
  const credential = installed.stdout.trim();
  assert.equal(credential, join(data, 'clusters', 'test.kubeconfig'));

  const pki = join(state, 'pki');
  await mkdir(pki, { recursive: true });
  const ca = await LocalCa.create(pki, 'kubevisa-package-test');
  const serving = await ca.issue({
    name: 'server',
    commonName: 'kubevisa',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const serverUrl = `https://127.0.0.1:${port}`;
  idp = await startDevIdp({
    accounts: [people.cora, people.sam].map((p) => ({ ...p, name: p.sub })),
    clients: [
      { clientId: 'kubevisa', clientSecret: 'package-test', redirectUris: [`${serverUrl}/api/v1/login/callback`] },
    ],
  });
  const configFile = join(state, 'server.yaml');
  await writeFile(
    configFile,
    JSON.stringify(
      localServerConfig({
        port,
        dataDir: data,
        issuer: idp.issuer,
        clientSecret: 'package-test',
        clusterName: 'test',
        credential,
        tls: { ...serving, caFile: ca.certFile },
      }),
    ),
  );

  // The Dockerfile's own ENTRYPOINT and CMD, with the image's node and /opt/kubevisa mapped onto this machine.
  const dockerfile = await readFile(join(repoRoot, 'Dockerfile'), 'utf8');
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
  assert.deepEqual(cmd.slice(0, 2), ['server', '--config']);
  const [node, ...nodeArgs] = entrypoint.map((word) => word.replace('/opt/kubevisa', image));
  assert.equal(node, '/nodejs/bin/node');
  assert.ok(existsSync(nodeArgs[nodeArgs.length - 1]!), `the entrypoint's script exists: ${nodeArgs.join(' ')}`);
  server = spawn(process.execPath, [...nodeArgs, 'server', '--config', configFile], {
    cwd: data,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let serverOutput = '';
  server.stdout!.on('data', (c: Buffer) => (serverOutput += c.toString()));
  server.stderr!.on('data', (c: Buffer) => (serverOutput += c.toString()));
  await eventually('the server from the package is ready', 60_000, async () => {
    if (server!.exitCode !== null) throw new Error(serverOutput);
    return serverOutput.includes('kubevisa server ready');
  });

  const cli = join(image, 'node_modules', '.bin', 'kubevisa');
  const login = async (configDir: string, person: { email: string; password: string }) => {
    const pending = kubectlBackground(cli, ['login', '--server', serverUrl, '--ca-file', ca.certFile, '--device'], {
      kubeconfig: '',
      env: { KUBEVISA_CONFIG_DIR: configDir, PATH: `${nodeDir}:${process.env.PATH ?? ''}` },
      timeoutMs: 60_000,
    });
    const [url] = await pending.waitFor(/http:\/\/127\.0\.0\.1:\d+\/device\?user_code=[A-Z0-9-]+/, 30_000);
    const done = await npx(['demo', 'idp-login', url, '--login', person.email, '--password', person.password]);
    assert.equal(done.code, 0, done.stderr);
    await pending.waitFor(/Logged in to .* as /, 30_000);
  };
  const sam = { KUBEVISA_CONFIG_DIR: join(state, 'sam') };
  const cora = { KUBEVISA_CONFIG_DIR: join(state, 'cora'), KUBECONFIG: join(state, 'cora', 'kubeconfig') };
  await login(sam.KUBEVISA_CONFIG_DIR, people.sam);
  await login(cora.KUBEVISA_CONFIG_DIR, people.cora);

  const ends = new Date(Date.now() + 10 * 86_400_000).toISOString();
  const engagement = await npx(
    [
      'engagement',
      'create',
      '--name',
      'pkg',
      '--vendor',
      'Acme',
      '--contractor',
      people.cora.email,
      '--sponsor',
      people.sam.email,
      '--ends',
      ends,
      '--cluster',
      'test',
      '--ns-pattern',
      'staging-*',
      '--profile',
      'viewer',
      '--max-visa',
      '8h',
    ],
    sam,
  );
  assert.equal(engagement.code, 0, engagement.stderr);
  const requested = await npx(
    [
      'request',
      '--cluster',
      'test',
      '--ns',
      'staging-pkg',
      '--profile',
      'viewer',
      '--for',
      '1h',
      '--reason',
      'PKG-1',
      '-o',
      'json',
    ],
    cora,
  );
  assert.equal(requested.code, 0, requested.stderr);
  const visa = JSON.parse(requested.stdout) as { id: string; state: string };
  assert.equal(visa.state, 'active', 'viewer on staging-* is auto-approved');
  const listed = await npx(['visas', '-o', 'json'], cora);
  assert.match(listed.stdout, new RegExp(visa.id));

  const written = await npx(['kubeconfig', '--cluster', 'test'], cora);
  assert.equal(written.code, 0, written.stderr);
  const kubeconfig = parse(await readFile(cora.KUBECONFIG, 'utf8')) as {
    users: { user: { exec: { command: string } } }[];
  };
  const plugin = kubeconfig.users[0]!.user.exec.command;
  assert.ok(
    plugin.startsWith(join(image, 'node_modules', 'kubevisa')),
    `kubectl's credential plugin is the package's own: ${plugin}`,
  );
  const kubectlEnv = { ...cora, PATH: `${nodeDir}:${process.env.PATH ?? ''}` };
  await eventually('kubectl reaches staging-pkg through the gateway', 20_000, async () => {
    const pods = await kubectl(cp!.binaries.kubectl, ['get', 'pods', '-n', 'staging-pkg'], {
      kubeconfig: cora.KUBECONFIG,
      env: kubectlEnv,
    });
    if (pods.code !== 0) throw new Error(pods.stderr);
    return true;
  });
  const revoked = await npx(['revoke', visa.id, '--reason', 'done'], sam);
  assert.equal(revoked.code, 0, revoked.stderr);
  await eventually('kubectl is refused after the revoke', 10_000, async () => {
    const pods = await kubectl(cp!.binaries.kubectl, ['get', 'pods', '-n', 'staging-pkg'], {
      kubeconfig: cora.KUBECONFIG,
      env: kubectlEnv,
    });
    return pods.code !== 0;
  });
});
