// kubevisa as the relying party of Ory Hydra v2.3.0 (built from Go modules, OpenID certified, written by nobody
// here), with the login and consent app of test/support/hydra.ts: the browser login (authorization code + PKCE,
// which this Hydra enforces), renewals at Hydra (which rotates refresh tokens and revokes a whole grant when one is
// used twice), a refused renewal after an admin revokes the consent, and what kubevisa says about device login,
// which Hydra v2.3.0 does not offer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer, type RunningServer } from '../src/server/main.ts';
import { hashSessionSecret } from '../src/auth/session-secrets.ts';
import { api, cliPath } from './support/kubevisa-env.ts';
import { eventually, kubectl, kubectlBackground } from './support/kubectl.ts';
import { startHydra, type Hydra, type HydraAccount } from './support/hydra.ts';

const accounts = {
  cora: {
    subject: 'hydra-cora',
    email: 'cora@vendor.example',
    password: 'cora-pw',
    name: 'Cora Contractor',
    groups: ['vendor-acme'],
  },
  sam: {
    subject: 'hydra-sam',
    email: 'sam@corp.example',
    password: 'sam-pw',
    name: 'Sam Sponsor',
    groups: ['kubevisa-admins'],
  },
  ivy: { subject: 'hydra-ivy', email: 'ivy@vendor.example', password: 'ivy-pw', name: 'Ivy Ivanova', groups: [] },
  rex: { subject: 'hydra-rex', email: 'rex@vendor.example', password: 'rex-pw', name: 'Rex Revoked', groups: [] },
} satisfies Record<string, HydraAccount>;
/** Hydra's access tokens live this long: kubevisa must renew at Hydra before selling a token past it. */
const IDP_TOKEN_SECONDS = 3;

let hydra: Hydra;
let server: RunningServer;
let serverUrl: string;
let dir: string;

before(async () => {
  hydra = await startHydra({ accounts: Object.values(accounts), accessTokenTtl: `${IDP_TOKEN_SECONDS}s` });
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-hydra-'));
  const [port] = await freePorts(1);
  serverUrl = `http://127.0.0.1:${port}`;
  const { clientId, clientSecret } = await hydra.createClient({
    client_name: 'kubevisa',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope: 'openid email profile offline_access groups',
    redirect_uris: [`${serverUrl}/api/v1/login/callback`],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  const dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  server = await startServer(
    parseServerConfig(
      {
        listen: { host: '127.0.0.1', port },
        dataDir,
        oidc: {
          issuer: hydra.issuer,
          clientId,
          clientSecret,
          scopes: 'openid email profile offline_access groups',
          allowInsecureHttp: true,
        },
        roles: { adminGroups: ['kubevisa-admins'] },
        clusters: [],
      },
      dir,
    ),
  );
});
after(async () => {
  await server?.stop();
  await hydra?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The browser login as the CLI drives it: kubevisa → Hydra → login app → consent → kubevisa → the CLI's loopback. */
async function browserLogin(account: HydraAccount) {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const started = await api(serverUrl, 'POST', '/api/v1/login/browser', {
    body: {
      redirectUri: 'http://127.0.0.1:9/callback',
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      state,
    },
  });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const authorizationUrl = new URL(String(started.body.authorizationUrl));
  const callback = await hydra.browserLogin(authorizationUrl.href, account);
  const back = await api(serverUrl, 'GET', callback.pathname + callback.search);
  return { authorizationUrl, callback, back, verifier, state };
}

async function loggedIn(account: HydraAccount) {
  const { back, verifier } = await browserLogin(account);
  assert.equal(back.status, 302, JSON.stringify(back.body));
  const code = new URL(back.location!).searchParams.get('code')!;
  const session = await api(serverUrl, 'POST', '/api/v1/login/exchange', { body: { code, codeVerifier: verifier } });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  return { sessionSecret: String(session.body.sessionSecret), accessToken: String(session.body.accessToken) };
}

const renew = (sessionSecret: string) => api(serverUrl, 'POST', '/api/v1/sessions/token', { body: { sessionSecret } });
describe('Ory Hydra v2.3.0 as the identity provider', () => {
  test('a browser login (code flow, PKCE S256 enforced by Hydra) yields a working kubevisa session', async () => {
    const { authorizationUrl, callback, back, state } = await browserLogin(accounts.sam);
    assert.equal(authorizationUrl.origin, hydra.issuer, 'the browser goes to Hydra');
    assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorizationUrl.searchParams.get('nonce'));
    assert.equal(callback.origin, serverUrl, 'Hydra sends the browser back to kubevisa');
    assert.ok(callback.searchParams.get('code'), `Hydra answered ${callback.search}`);
    assert.equal(back.status, 302, JSON.stringify(back.body));
    const toCli = new URL(back.location!);
    assert.equal(toCli.searchParams.get('state'), state);
    const session = await loggedIn(accounts.cora);
    const me = await api(serverUrl, 'GET', '/api/v1/me', { token: session.accessToken });
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal(me.body.email, 'cora@vendor.example', 'the email from the ID token Hydra signed');
    assert.deepEqual(me.body.groups, ['vendor-acme'], 'the groups claim the consent app set');
  });

  test('a login the login app refuses comes back as access_denied and creates no session', async () => {
    const { callback, back } = await browserLogin({ ...accounts.ivy, password: 'wrong' });
    assert.equal(callback.searchParams.get('error'), 'access_denied');
    assert.equal(back.status, 401, `kubevisa answered ${back.status}`);
    assert.equal(await server.store.getPersonByEmail('ivy@vendor.example'), undefined);
  });

  test('renewals ask Hydra again, and renewals racing on one rotated refresh token do not revoke the grant', async () => {
    const session = await loggedIn(accounts.ivy);
    for (let round = 0; round < 2; round++) {
      const before = await idpTokenExpiry(session.sessionSecret);
      await eventually('Hydra access token due', (IDP_TOKEN_SECONDS + 5) * 1000, () =>
        Promise.resolve(Date.now() > before),
      );
      // Four kubectl processes renewing at once: one refresh at Hydra, four fresh kubevisa tokens.
      const renewed = await Promise.all([1, 2, 3, 4].map(() => renew(session.sessionSecret)));
      assert.deepEqual(
        renewed.map((r) => r.status),
        [200, 200, 200, 200],
        JSON.stringify(renewed.map((r) => r.body)),
      );
      assert.ok((await idpTokenExpiry(session.sessionSecret)) > before, 'Hydra issued a new token');
    }
    const me = await api(serverUrl, 'GET', '/api/v1/me', {
      token: String((await renew(session.sessionSecret)).body.accessToken),
    });
    assert.equal(me.body.email, 'ivy@vendor.example');
  });

  test('a consent revoked at Hydra makes the next renewal fail closed: session ended, person suspended', async () => {
    const session = await loggedIn(accounts.rex);
    const before = await idpTokenExpiry(session.sessionSecret);
    await hydra.revokeConsent(accounts.rex.subject);
    await eventually('Hydra access token due', (IDP_TOKEN_SECONDS + 5) * 1000, () =>
      Promise.resolve(Date.now() > before),
    );
    const refused = await renew(session.sessionSecret);
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    assert.match(String(refused.body.detail), /identity provider no longer accepts this login/);
    const again = await renew(session.sessionSecret);
    assert.equal(again.status, 401, 'the session stays ended');
    assert.equal((await api(serverUrl, 'GET', '/api/v1/me', { token: session.accessToken })).status, 401);
    await eventually(
      'rex suspended',
      10_000,
      async () => (await server.store.getPersonByEmail('rex@vendor.example'))?.status === 'suspended',
    );
  });

  test('kubevisa login --browser (the real CLI) logs in through Hydra and stores a session that works', async () => {
    const opened = join(dir, 'opened-url');
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    // A stand-in for xdg-open that hands the URL to this test, which then plays the browser.
    await writeFile(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > ${JSON.stringify(opened)}\n`);
    await chmod(join(bin, 'xdg-open'), 0o755);
    const configDir = join(dir, 'cli-sam');
    const login = kubectlBackground(cliPath, ['login', '--server', serverUrl, '--browser'], {
      kubeconfig: '',
      env: { KUBEVISA_CONFIG_DIR: configDir, PATH: `${bin}:${process.env.PATH}`, DISPLAY: ':0' },
      timeoutMs: 60_000,
    });
    await eventually('the CLI opened the browser', 20_000, async () =>
      (await readFile(opened, 'utf8').catch(() => '')).startsWith('http'),
    );
    const callback = await hydra.browserLogin(await readFile(opened, 'utf8'), accounts.sam);
    const back = await api(serverUrl, 'GET', callback.pathname + callback.search);
    assert.equal(back.status, 302, JSON.stringify(back.body));
    assert.equal((await fetch(back.location!, { signal: AbortSignal.timeout(10_000) })).status, 200);
    await login.waitFor(/Logged in to .* as .*sam@corp\.example/);
    const stored = JSON.parse(await readFile(join(configDir, 'session.json'), 'utf8')) as { sessionSecret: string };
    const token = await renew(stored.sessionSecret);
    const me = await api(serverUrl, 'GET', '/api/v1/me', { token: String(token.body.accessToken) });
    assert.equal(me.body.email, 'sam@corp.example');
    assert.ok((me.body.roles as string[]).includes('admin'), 'kubevisa-admins in the groups claim Hydra signed');
  });

  test('device login: Hydra v2.3.0 offers no device authorization grant, and kubevisa says so', async () => {
    const discovery = (await (await fetch(`${hydra.issuer}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(discovery.device_authorization_endpoint, undefined);
    assert.ok(!(discovery.grant_types_supported as string[]).includes('urn:ietf:params:oauth:grant-type:device_code'));
    const started = await api(serverUrl, 'POST', '/api/v1/login/device');
    assert.equal(started.status, 501, JSON.stringify(started.body));
    assert.match(String(started.body.detail), /does not offer device login .*kubevisa login --browser/);
    const cli = await kubectl(cliPath, ['login', '--server', serverUrl, '--device'], {
      kubeconfig: '',
      env: { KUBEVISA_CONFIG_DIR: join(dir, 'cli-device') },
      timeoutMs: 30_000,
    });
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /does not offer device login .*kubevisa login --browser/);
  });
});

/** When Hydra's access token of the session expires, as kubevisa stored it (epoch ms). */
async function idpTokenExpiry(sessionSecret: string): Promise<number> {
  const session = await server.store.getSessionBySecretHash(hashSessionSecret(sessionSecret));
  const expiresAt = session?.idpTokenExpiresAt;
  if (expiresAt === undefined) throw new Error('the session holds no IdP token expiry');
  return expiresAt;
}
