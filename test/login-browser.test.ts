// The browser login end to end: the real CLI (`kubevisa login --browser`) with a stand-in for xdg-open that
// hands the URL to this test, which plays the browser against the real OIDC provider and the real server:
// authorization code + PKCE between kubevisa and the IdP, and between the CLI and kubevisa on a loopback redirect.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { completeLoginWithHttp } from '../src/dev/idp.ts';
import { api, cliPath, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectlBackground } from './support/kubectl.ts';

let env: KubevisaEnv;
let dir: string;

before(async () => {
  env = await startKubevisaEnv({ tls: true });
  await env.startInProcess();
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-browser-'));
});
after(async () => {
  await env?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Plays the browser at the IdP, then follows the IdP's redirect to kubevisa (not further): the redirect to the CLI. */
async function loginAtIdpAndReturn(
  authorizationUrl: string,
  person: { email: string; password: string },
): Promise<URL> {
  const atIdp = await completeLoginWithHttp({ url: authorizationUrl, login: person.email, password: person.password });
  if (atIdp.flow !== 'code') throw new Error('expected the code flow');
  const back = new URL(atIdp.location);
  const callback = await api(env.serverUrl, 'GET', back.pathname + back.search);
  assert.equal(callback.status, 302, JSON.stringify(callback.body));
  return new URL(callback.location!);
}

test('kubevisa login --browser completes through the real IdP and server and stores a working session', async () => {
  const opened = join(dir, 'opened-url');
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > ${JSON.stringify(opened)}\n`);
  await chmod(join(bin, 'xdg-open'), 0o755);
  const configDir = join(dir, 'cora');
  const login = kubectlBackground(
    cliPath,
    ['login', '--server', env.serverUrl, '--ca-file', env.config.tls!.caFile!, '--browser'],
    {
      kubeconfig: '',
      env: { KUBEVISA_CONFIG_DIR: configDir, PATH: `${bin}:${process.env.PATH}`, DISPLAY: ':0' },
      timeoutMs: 60_000,
    },
  );
  await eventually('the CLI opened the browser', 15_000, async () =>
    (await readFile(opened, 'utf8').catch(() => '')).startsWith('http'),
  );
  const authorizationUrl = await readFile(opened, 'utf8');
  assert.match(authorizationUrl, /code_challenge_method=S256/);
  // The IdP sends the browser back to kubevisa; kubevisa sends it on to the CLI with a one-time code.
  const toCli = await loginAtIdpAndReturn(authorizationUrl, people.cora);
  assert.equal(toCli.hostname, '127.0.0.1', 'the code goes to the loopback listener only');
  const delivered = await fetch(toCli, { signal: AbortSignal.timeout(10_000) });
  assert.equal(delivered.status, 200);
  await login.waitFor(/Logged in to .* as .*cora@vendor\.example/);
  const session = JSON.parse(await readFile(join(configDir, 'session.json'), 'utf8')) as { sessionSecret: string };
  const token = await api(env.serverUrl, 'POST', '/api/v1/sessions/token', {
    body: { sessionSecret: session.sessionSecret },
  });
  assert.equal(token.status, 200);
  const me = await api(env.serverUrl, 'GET', '/api/v1/me', { token: String(token.body.accessToken) });
  assert.equal(me.body.email, people.cora.email);
});

test('the one-time login code works once, only with its PKCE verifier, and only for a loopback redirect', async () => {
  const nonLoopback = await api(env.serverUrl, 'POST', '/api/v1/login/browser', {
    body: { redirectUri: 'https://evil.example/callback', codeChallenge: 'a'.repeat(43), state: 'b'.repeat(32) },
  });
  assert.equal(nonLoopback.status, 400);
  assert.match(String(nonLoopback.body.detail), /loopback/);

  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  const started = await api(env.serverUrl, 'POST', '/api/v1/login/browser', {
    body: { redirectUri: 'http://127.0.0.1:9/callback', codeChallenge: challenge, state },
  });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const toCli = await loginAtIdpAndReturn(String(started.body.authorizationUrl), people.sam);
  assert.equal(toCli.searchParams.get('state'), state, 'the CLI gets its own state back');
  const code = toCli.searchParams.get('code')!;
  const wrong = await api(env.serverUrl, 'POST', '/api/v1/login/exchange', {
    body: { code, codeVerifier: randomBytes(32).toString('base64url') },
  });
  assert.equal(wrong.status, 401, 'a wrong verifier is refused');
  const burnt = await api(env.serverUrl, 'POST', '/api/v1/login/exchange', { body: { code, codeVerifier: verifier } });
  assert.equal(burnt.status, 401, 'and it burnt the code: a stolen code is worth one guess');
});
