/**
 * `kubevisa login` end to end against the fake API: the device flow with polling, and the browser flow with
 * PKCE and a loopback redirect (a fake `xdg-open` records the URL; the test plays the browser).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import type { SessionJson } from './api-types.ts';
import { CAROL, FakeApi, problem, type RecordedRequest } from './testing/fake-api.ts';
import { makeSandbox, type Sandbox } from './testing/run-cli.ts';

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
});
afterEach(async () => {
  await sandbox.remove();
});

function aSession(): SessionJson {
  const token = api.mintToken();
  return {
    sessionSecret: 'kvs_from-login',
    accessToken: token.accessToken,
    accessTokenExpiresAt: token.expiresAt,
    sessionExpiresAt: new Date(Date.now() + 12 * 3600_000).toISOString(),
    person: CAROL,
  };
}

function deviceStart(expiresInMs: number) {
  return {
    status: 200,
    body: {
      loginId: 'l_1',
      userCode: 'WXYZ-1234',
      verificationUri: `${api.url}/device`,
      verificationUriComplete: `${api.url}/device?user_code=WXYZ-1234`,
      intervalSeconds: 1,
      expiresAt: new Date(Date.now() + expiresInMs).toISOString(),
    },
  };
}

describe('device flow', () => {
  test('prints the URL and code on stderr, polls until the session comes, saves it 0600 and says who you are', async () => {
    api.on('POST', '/api/v1/login/device', () => deviceStart(10 * 60_000));
    let polls = 0;
    api.on('POST', '/api/v1/login/device/l_1/poll', () => {
      polls += 1;
      return polls < 3 ? { status: 202, body: { status: 'pending' } } : { status: 200, body: aSession() };
    });
    const result = await sandbox.runOk(['login', '--server', api.url]);
    assert.equal(polls, 3);
    assert.match(result.stderr, new RegExp(`${api.url}/device\\?user_code=WXYZ-1234`));
    assert.match(result.stderr, /shows the code WXYZ-1234/);
    assert.match(result.stdout, new RegExp(`Logged in to ${api.url} as Carol Contractor <carol@vendor\\.example>`));
    assert.doesNotMatch(result.stdout + result.stderr, /kvs_|at-\d/, 'no secret or token is printed');

    const file = join(sandbox.configDir, 'session.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(dirname(file))).mode & 0o777, 0o700);
    const saved = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    assert.equal(saved.sessionSecret, 'kvs_from-login');
    assert.equal(saved.server, api.url);
    const config = JSON.parse(await readFile(join(sandbox.configDir, 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(config.server, api.url);

    // The saved login works for the next command without another exchange.
    const minted = api.tokensMinted;
    const whoami = await sandbox.runOk(['whoami']);
    assert.match(whoami.stdout, /carol@vendor\.example/);
    assert.equal(api.tokensMinted, minted);
  });

  test('gives up with a clear message when the code expires, and saves nothing', async () => {
    api.on('POST', '/api/v1/login/device', () => deviceStart(1500));
    api.on('POST', '/api/v1/login/device/l_1/poll', { status: 202, body: { status: 'pending' } });
    const result = await sandbox.run(['login', '--server', api.url, '--device']);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /the code WXYZ-1234 expired before the login was completed.*kubevisa login --device.*\[ERR_LOGIN_FAILED\]/,
    );
    await assert.rejects(stat(join(sandbox.configDir, 'session.json')), { code: 'ENOENT' });
  });

  test('a refusal while polling (the person denied it) ends the login with the server’s words', async () => {
    api.on('POST', '/api/v1/login/device', () => deviceStart(60_000));
    api.on(
      'POST',
      '/api/v1/login/device/l_1/poll',
      problem(403, 'ERR_LOGIN_DENIED', 'the login was denied at the identity provider'),
    );
    const result = await sandbox.run(['login', '--server', api.url, '--device']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the login was denied at the identity provider \[ERR_LOGIN_DENIED\]/);
  });
});

describe('browser flow', () => {
  async function fakeOpener(): Promise<{ pathEntry: string; log: string }> {
    const bin = join(sandbox.root, 'bin');
    await mkdir(bin);
    const log = join(sandbox.root, 'opened-url');
    await writeFile(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${log}'\n`);
    await chmod(join(bin, 'xdg-open'), 0o755);
    return { pathEntry: bin, log };
  }

  function browserRoutes(): () => RecordedRequest | undefined {
    api.on('POST', '/api/v1/login/browser', (request) => {
      const { state } = request.body as { state: string };
      return { status: 200, body: { authorizationUrl: `https://idp.example/authorize?state=${state}` } };
    });
    api.on('POST', '/api/v1/login/exchange', (request) => {
      const started = api.requests.find((r) => r.path === '/api/v1/login/browser')?.body as { codeChallenge: string };
      const { code, codeVerifier } = request.body as { code: string; codeVerifier: string };
      const challenge = createHash('sha256').update(codeVerifier).digest('base64url');
      if (code !== 'code-123' || challenge !== started.codeChallenge) {
        return problem(400, 'ERR_INVALID_GRANT', 'wrong code or code verifier');
      }
      return { status: 200, body: aSession() };
    });
    return () => api.requests.find((r) => r.path === '/api/v1/login/browser');
  }

  /** Runs `kubevisa login --browser` and, once it waits, plays the browser coming back with `query(state)`. */
  async function loginComingBackWith(query: (state: string) => string) {
    const opener = await fakeOpener();
    const started = browserRoutes();
    let browserAnswer: Promise<Response> | undefined;
    const result = await sandbox.run(['login', '--server', api.url, '--browser'], {
      env: { PATH: `${opener.pathEntry}:${dirname(process.execPath)}:${process.env.PATH}` },
      onStderr: (text) => {
        if (browserAnswer || !text.includes('Waiting for the browser')) return;
        const body = started()?.body as { redirectUri: string; state: string };
        browserAnswer = fetch(`${body.redirectUri}?${query(body.state)}`);
      },
    });
    return { result, opener, browser: await browserAnswer, started: started()?.body as Record<string, string> };
  }

  test('opens the browser, takes the code from the loopback redirect and exchanges it with the PKCE verifier', async () => {
    const { result, opener, browser, started } = await loginComingBackWith((state) => `code=code-123&state=${state}`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(started.redirectUri ?? '', /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    assert.match(started.codeChallenge ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Object.keys(started).sort().join(','), 'codeChallenge,redirectUri,state');
    assert.equal(await readWhenWritten(opener.log), `https://idp.example/authorize?state=${started.state}`);
    assert.equal(browser?.status, 200);
    assert.match(await (browser as Response).text(), /You are logged in to kubevisa/);
    assert.match(result.stdout, /Logged in to .* as Carol Contractor/);
    assert.equal((await stat(join(sandbox.configDir, 'session.json'))).mode & 0o777, 0o600);
  });

  test('refuses a redirect whose state is not this login’s and exchanges nothing', async () => {
    const { result, browser } = await loginComingBackWith(() => 'code=code-123&state=forged');
    assert.equal(result.code, 1);
    assert.match(result.stderr, /state that does not match this login.*\[ERR_LOGIN_FAILED\]/);
    assert.equal(browser?.status, 400);
    assert.ok(!api.calls().includes('POST /api/v1/login/exchange'));
    await assert.rejects(stat(join(sandbox.configDir, 'session.json')), { code: 'ENOENT' });
  });

  test('a server refusing to start the browser login ends the command at once', async () => {
    api.on('POST', '/api/v1/login/browser', problem(400, 'ERR_INVALID_INPUT', 'redirectUri must be a loopback URL'));
    // The login listener waits up to minutes for the browser: had it (or a timer) kept the process alive, the
    // run would be killed at its limit and exit with no code, not 1.
    const result = await sandbox.run(['login', '--server', api.url, '--browser'], { timeoutMs: 20_000 });
    assert.equal(result.code, 1, 'the command ended by itself');
    assert.match(result.stderr, /redirectUri must be a loopback URL \[ERR_INVALID_INPUT\]/);
  });

  test('reports an error the identity provider sent back', async () => {
    const { result } = await loginComingBackWith(
      (state) => `error=access_denied&error_description=not+in+group&state=${state}`,
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the identity provider refused the login: access_denied \(not in group\)/);
  });
});

test('--browser and --device together are a usage error', async () => {
  const result = await sandbox.run(['login', '--server', api.url, '--browser', '--device']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /choose one of --browser and --device/);
});

test('login without a server says how to name one', async () => {
  const result = await sandbox.run(['login']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /missing --server URL/);
});

/** The opener runs detached, so its file may appear a moment after the CLI is done; wait up to 5 s. */
async function readWhenWritten(file: string): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      return '';
    });
    // Empty: not created yet, or created and not yet written.
    if (text !== '' || Date.now() > deadline) return text;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
