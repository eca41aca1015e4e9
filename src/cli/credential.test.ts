/**
 * `kubevisa credential`, the command kubectl runs for every request: answers from its cache while the token
 * has at least a minute left, fetches otherwise, fails with a message kubectl can show, and loads no
 * package from node_modules.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { FakeApi, problem } from './testing/fake-api.ts';
import { makeSandbox, seedLogin, type Sandbox } from './testing/run-cli.ts';

let api: FakeApi;
let sandbox: Sandbox;

before(async () => {
  api = await FakeApi.start();
});
after(async () => {
  await api.close();
});
beforeEach(async () => {
  api.requests.length = 0;
  sandbox = await makeSandbox();
  await seedLogin(sandbox, api.url);
});
afterEach(async () => {
  await sandbox.remove();
});

const inMinutes = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString().replace(/\.\d+Z$/, 'Z');

interface ExecCredential {
  apiVersion: string;
  kind: string;
  status: { token: string; expirationTimestamp: string };
}

function parseCredential(stdout: string): ExecCredential {
  return JSON.parse(stdout) as ExecCredential;
}

async function writeCachedCredential(token: string, expirationTimestamp: string, mode = 0o600): Promise<string> {
  const file = join(sandbox.configDir, 'credentials', 'prod.json');
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify({ server: api.url, cluster: 'prod', token, expirationTimestamp }), { mode });
  await chmod(file, mode);
  return file;
}

async function writeLastCall(at: string): Promise<void> {
  const file = join(sandbox.configDir, 'credentials', 'prod.last-call');
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify({ cluster: 'prod', at }), { mode: 0o600 });
}

describe('direct mode', () => {
  test('fetches a cluster token, prints an ExecCredential and caches it 0600', async () => {
    const expires = inMinutes(10);
    api.on('POST', '/api/v1/clusters/prod/credential', {
      status: 200,
      body: { token: 'sa-token-1', expirationTimestamp: expires },
    });
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.deepEqual(parseCredential(result.stdout), {
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: { token: 'sa-token-1', expirationTimestamp: expires },
    });
    assert.equal(result.stderr, '');
    const file = join(sandbox.configDir, 'credentials', 'prod.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((JSON.parse(await readFile(file, 'utf8')) as { token: string }).token, 'sa-token-1');
  });

  test('answers from the cache without contacting the server while the token has more than a minute left', async () => {
    // A server that is gone: any attempt to reach it would fail the command.
    const gone = await FakeApi.start();
    await gone.close();
    await seedLogin(sandbox, gone.url);
    const expires = inMinutes(2);
    await writeCachedCredential('sa-cached', expires);
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.deepEqual(parseCredential(result.stdout).status, { token: 'sa-cached', expirationTimestamp: expires });
  });

  test('fetches a new token when the cached one has less than a minute left', async () => {
    await writeCachedCredential('sa-stale', new Date(Date.now() + 50_000).toISOString());
    api.on('POST', '/api/v1/clusters/prod/credential', {
      status: 200,
      body: { token: 'sa-fresh', expirationTimestamp: inMinutes(10) },
    });
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(parseCredential(result.stdout).status.token, 'sa-fresh');
    assert.ok(api.calls().includes('POST /api/v1/clusters/prod/credential'));
  });

  test('a refusal reaches kubectl as a message on stderr and exit 1, with nothing on stdout', async () => {
    api.on(
      'POST',
      '/api/v1/clusters/prod/credential',
      problem(403, 'ERR_FORBIDDEN', 'you hold no active visa for cluster prod'),
    );
    const result = await sandbox.run(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'kubevisa: you hold no active visa for cluster prod [ERR_FORBIDDEN]\n');
  });

  test('a call within 30 s of the previous one asks the server even with a valid cached token', async () => {
    await writeCachedCredential('sa-cached', inMinutes(10));
    await writeLastCall(new Date(Date.now() - 5_000).toISOString());
    api.on('POST', '/api/v1/clusters/prod/credential', {
      status: 200,
      body: { token: 'sa-rechecked', expirationTimestamp: inMinutes(10) },
    });
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(parseCredential(result.stdout).status.token, 'sa-rechecked');
    assert.deepEqual(api.calls(), ['POST /api/v1/sessions/token', 'POST /api/v1/clusters/prod/credential']);
  });

  test('a call long after the previous one answers from the cache, and records when it ran without any secret', async () => {
    await writeCachedCredential('sa-cached', inMinutes(10));
    await writeLastCall(new Date(Date.now() - 10 * 60_000).toISOString());
    const before = Date.now();
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(parseCredential(result.stdout).status.token, 'sa-cached');
    assert.deepEqual(api.calls(), []);
    const state = await readFile(join(sandbox.configDir, 'credentials', 'prod.last-call'), 'utf8');
    const recorded = JSON.parse(state) as { cluster: string; at: string };
    assert.equal(recorded.cluster, 'prod');
    assert.ok(Date.parse(recorded.at) >= before - 1000);
    assert.doesNotMatch(state, /sa-cached|kvs_/, 'no token or session secret in it');
  });

  test("after a revoke the repeated call prints the visa's words, no token, exits 1 and drops the cached token", async () => {
    const file = await writeCachedCredential('sa-cached', inMinutes(9));
    await writeLastCall(new Date(Date.now() - 2_000).toISOString());
    const words =
      "visa v_cut (viewer on payments in cluster 'prod') was revoked by sam@corp.example at 2026-03-02T09:59:00Z: work done; request a new one with 'kubevisa request --cluster prod --ns payments --profile viewer --for DURATION --reason TEXT'";
    api.on('POST', '/api/v1/clusters/prod/credential', problem(403, 'ERR_VISA_ENDED', words));
    const result = await sandbox.run(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `kubevisa: ${words} [ERR_VISA_ENDED]\n`);
    await assert.rejects(stat(file), { code: 'ENOENT' });
    // The next call has nothing cached to fall back on: it asks again and is refused again.
    const next = await sandbox.run(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(next.code, 1);
    assert.equal(next.stdout, '');
  });

  test('when the server cannot be reached on a repeated call, the cached token is used and the person is told', async () => {
    const gone = await FakeApi.start();
    await gone.close();
    await seedLogin(sandbox, gone.url, { accessToken: 'at-saved', accessTokenExpiresAt: inMinutes(5) });
    const expires = inMinutes(8);
    await writeCachedCredential('sa-cached', expires);
    await writeLastCall(new Date(Date.now() - 1_000).toISOString());
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(parseCredential(result.stdout).status.token, 'sa-cached');
    assert.match(
      result.stderr,
      new RegExp(`could not ask the kubevisa server about cluster 'prod' .*valid until ${expires}`),
    );
  });

  test('refuses a cache file that others can read', async () => {
    const file = await writeCachedCredential('sa-cached', inMinutes(10), 0o640);
    const result = await sandbox.run(['credential', '--cluster', 'prod', '--direct']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`its mode is 0640.*chmod 600 ${file}`));
    assert.equal(result.stdout, '');
  });
});

describe('gateway mode', () => {
  test('hands out the kubevisa access token saved in session.json while it has more than a minute left', async () => {
    const expires = inMinutes(5);
    await seedLogin(sandbox, api.url, { accessToken: 'at-saved', accessTokenExpiresAt: expires });
    const result = await sandbox.runOk(['credential', '--cluster', 'prod']);
    assert.deepEqual(parseCredential(result.stdout).status, { token: 'at-saved', expirationTimestamp: expires });
    assert.deepEqual(api.calls(), []);
  });

  test('buys a new access token with the session secret when the saved one is about to expire', async () => {
    await seedLogin(sandbox, api.url, {
      accessToken: 'at-old',
      accessTokenExpiresAt: new Date(Date.now() + 30_000).toISOString(),
    });
    const result = await sandbox.runOk(['credential', '--cluster', 'prod']);
    const { token, expirationTimestamp } = parseCredential(result.stdout).status;
    assert.match(token, /^at-\d+$/);
    assert.ok(Date.parse(expirationTimestamp) > Date.now() + 5 * 60_000);
    assert.deepEqual(api.calls(), ['POST /api/v1/sessions/token']);
    const session = JSON.parse(await readFile(join(sandbox.configDir, 'session.json'), 'utf8')) as {
      accessToken: string;
    };
    assert.equal(session.accessToken, token, 'the next run reuses it');
  });

  test('without a login it tells the person to log in, on stderr', async () => {
    const fresh = await makeSandbox();
    try {
      const result = await fresh.run(['credential', '--cluster', 'prod']);
      assert.equal(result.code, 1);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /not logged in to kubevisa: run 'kubevisa login'.*\[ERR_NOT_LOGGED_IN\]/);
    } finally {
      await fresh.remove();
    }
  });

  test('refuses a cluster name that could leave the credentials folder', async () => {
    const result = await sandbox.run(['credential', '--cluster', '../session', '--direct']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /'\.\.\/session' is not a cluster name/);
  });
});

describe('start-up cost', () => {
  const cliRoot = fileURLToPath(new URL('.', import.meta.url));

  test('from a warm cache it loads no package from node_modules and not the API client', async () => {
    const trace = join(sandbox.root, 'modules.txt');
    await writeCachedCredential('sa-cached', inMinutes(10));
    const hook = fileURLToPath(new URL('./testing/trace-imports.ts', import.meta.url));
    const result = await sandbox.runOk(['credential', '--cluster', 'prod', '--direct'], {
      env: { NODE_OPTIONS: `--import=${hook}`, KUBEVISA_TRACE_IMPORTS: trace },
    });
    assert.equal(parseCredential(result.stdout).status.token, 'sa-cached');
    const loaded = (await readFile(trace, 'utf8')).trim().split('\n');
    assert.ok(
      loaded.some((url) => url.endsWith('/src/cli/commands/credential.ts')),
      'the trace saw the command load',
    );
    assert.deepEqual(
      loaded.filter((url) => url.includes('/node_modules/')),
      [],
    );
    assert.ok(!loaded.some((url) => url.endsWith('/api-client.ts')), 'the API client is loaded only on a cache miss');
  });

  test('no package outside Node is reachable through the static imports of main.ts and credential.ts', async () => {
    // Static imports are what a cache hit pays for; the dynamic import of the API client is followed too,
    // so a refetch stays light as well.
    const bare = new Set<string>();
    const seen = new Set<string>();
    const visit = async (file: string, followDynamic: boolean): Promise<void> => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = await readFile(file, 'utf8');
      const specifiers = [...staticImports(source), ...(followDynamic ? dynamicImports(source) : [])];
      for (const specifier of specifiers) {
        if (specifier.startsWith('.')) await visit(resolve(dirname(file), specifier), false);
        else if (!specifier.startsWith('node:')) bare.add(`${specifier} (from ${file})`);
      }
    };
    await visit(join(cliRoot, 'main.ts'), false);
    await visit(join(cliRoot, 'commands', 'credential.ts'), true);
    assert.ok(seen.has(join(cliRoot, 'api-client.ts')), 'the walk followed the dynamic import of the API client');
    assert.deepEqual([...bare], []);
  });
});

/** Module specifiers of `import … from '…'`, `import '…'` and `export … from '…'`, without `import type`. */
function staticImports(source: string): string[] {
  const found: string[] = [];
  const pattern = /^\s*(import|export)\s+(type\s+)?([^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;
  for (const match of source.matchAll(pattern)) {
    if (match[2] === undefined && match[4] !== undefined) found.push(match[4]);
  }
  return found;
}

function dynamicImports(source: string): string[] {
  return [...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? '');
}
