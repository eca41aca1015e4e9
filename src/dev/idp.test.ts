import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { Unauthenticated } from '../domain/errors.ts';
import { DevIdpError, completeLoginWithHttp, startDevIdp, type DevIdp } from './idp.ts';
import { createOidcRelyingParty, newAuthorizationRequestSecrets, type OidcRelyingParty } from '../auth/oidc-rp.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const PASSWORD = 'p4ssw0rd-for-tests';

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

/** One raw HTTP/1.1 GET with extra header lines; resolves with the status code. */
function rawGet(url: string, headerLines: string[]): Promise<number> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () =>
      socket.write(
        [`GET ${pathname} HTTP/1.1`, `Host: ${hostname}`, ...headerLines, 'Connection: close', '', ''].join('\r\n'),
      ),
    );
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
}

describe('dev IdP', () => {
  let idp: DevIdp;
  let rp: OidcRelyingParty;

  before(async () => {
    idp = await startDevIdp({
      accounts: [
        { sub: 'alice-sub', email: 'alice@vendor.example', name: 'Alice', password: PASSWORD, groups: ['contractors'] },
      ],
      clients: [{ clientId: 'kubevisa', clientSecret: 'secret', redirectUris: [REDIRECT_URI] }],
    });
    rp = await createOidcRelyingParty({
      issuerUrl: idp.issuer,
      clientId: 'kubevisa',
      clientSecret: 'secret',
      redirectUri: REDIRECT_URI,
      scopes: 'openid email profile groups offline_access',
      allowInsecureHttpForLoopback: true,
    });
  });
  after(async () => {
    await idp.stop();
  });

  it('keeps serving after a request with a header named __proto__ (the demo runs with --disable-proto=throw)', async () => {
    const discovery = `${idp.issuer}/.well-known/openid-configuration`;
    assert.equal(await rawGet(discovery, ['__proto__: {"admin":true}']), 200);
    assert.equal(await rawGet(discovery, []), 200);
  });

  it('listens on 127.0.0.1 and advertises the device flow, PKCE S256, refresh tokens and the groups scope', async () => {
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    const response = await fetch(`${idp.url}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) });
    const metadata = (await response.json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, idp.issuer);
    assert.equal(metadata.device_authorization_endpoint, `${idp.issuer}/device/auth`);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    for (const scope of ['openid', 'offline_access', 'email', 'profile', 'groups']) {
      assert.ok((metadata.scopes_supported as string[]).includes(scope), scope);
    }
    for (const grant of ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code']) {
      assert.ok((metadata.grant_types_supported as string[]).includes(grant), grant);
    }
  });

  it('serves a login page that is a plain HTML form posting login and password, without scripts', async () => {
    const start = await rp.authorizationUrl(newAuthorizationRequestSecrets());
    const redirect = await fetch(start, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
    assert.equal(redirect.status, 303);
    const loginUrl = new URL(redirect.headers.get('location') ?? '', idp.url);
    assert.match(loginUrl.pathname, /^\/interaction\/[A-Za-z0-9_-]+$/);
    const cookie = redirect.headers
      .getSetCookie()
      .map((header) => header.split(';')[0])
      .join('; ');
    const loginPage = await fetch(loginUrl, { headers: { cookie }, signal: AbortSignal.timeout(5000) });
    assert.equal(loginPage.status, 200);
    const html = await loginPage.text();
    assert.match(html, new RegExp(`<form id="kubevisa-login" method="post" action="${loginUrl.pathname}/login">`));
    assert.match(html, /<input type="text" name="login"/);
    assert.match(html, /<input type="password" name="password"/);
    assert.doesNotMatch(html, /<script/i);
  });

  it('refuses a wrong password and an unknown login, without echoing the password', async () => {
    for (const [login, password] of [
      ['alice-sub', 'wrong-password'],
      ['nobody', PASSWORD],
    ] as const) {
      await assert.rejects(
        completeLoginWithHttp({ url: await rp.authorizationUrl(newAuthorizationRequestSecrets()), login, password }),
        (error: unknown) => {
          assert.ok(error instanceof Unauthenticated, String(error));
          assert.match(error.message, /Invalid login or password/);
          assert.ok(!error.message.includes(password));
          return true;
        },
      );
    }
  });

  it('accepts the email address as login, in any letter case', async () => {
    const device = await rp.startDeviceAuthorization();
    const result = await completeLoginWithHttp({
      url: device.verificationUriComplete ?? '',
      login: 'ALICE@Vendor.Example',
      password: PASSWORD,
    });
    assert.deepEqual(result, { flow: 'device', outcome: 'approved' });
  });

  it('requires PKCE: an authorization request without a code challenge comes back as invalid_request', async () => {
    const url = new URL(await rp.authorizationUrl(newAuthorizationRequestSecrets()));
    url.searchParams.delete('code_challenge');
    url.searchParams.delete('code_challenge_method');
    const result = await completeLoginWithHttp({ url: url.href, login: 'alice-sub', password: PASSWORD });
    assert.equal(result.flow, 'code');
    if (result.flow === 'code') {
      const location = new URL(result.location);
      assert.equal(location.searchParams.get('error'), 'invalid_request');
      assert.equal(location.searchParams.get('code'), null);
    }
  });

  it('shows an error page, not a redirect, for an unregistered redirect URI', async () => {
    const url = new URL(await rp.authorizationUrl(newAuthorizationRequestSecrets()));
    url.searchParams.set('redirect_uri', 'http://127.0.0.1:9/elsewhere');
    await assert.rejects(
      completeLoginWithHttp({ url: url.href, login: 'alice-sub', password: PASSWORD }),
      (error: unknown) => {
        assert.ok(error instanceof DevIdpError);
        assert.match(error.message, /redirect_uri/);
        return true;
      },
    );
  });

  it('refuses to disable an account it does not have', () => {
    assert.throws(() => idp.disableAccount('nobody'), DevIdpError);
  });

  it('refuses a configuration that lists an account twice, before listening', async () => {
    const account = { sub: 'x', email: 'x@y.z', name: 'X', password: 'p', groups: [] };
    await assert.rejects(startDevIdp({ accounts: [account, account], clients: [] }), DevIdpError);
  });

  it('stops listening on stop()', async () => {
    const other = await startDevIdp({ accounts: [], clients: [] });
    const response = await fetch(`${other.url}/.well-known/openid-configuration`, {
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(response.status, 200);
    await other.stop();
    await assert.rejects(fetch(`${other.url}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) }));
  });

  describe('completeLoginWithHttp', () => {
    let phishing: Server;
    let collector: Server;
    let phishingUrl = '';
    let collectorHits = 0;
    before(async () => {
      collector = createServer((_req, res) => {
        collectorHits += 1;
        res.end();
      });
      const collectorUrl = await listen(collector);
      // A page on another origin whose login form posts to a third origin.
      phishing = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(
          `<form id="kubevisa-login" method="post" action="${collectorUrl}/steal"><input name="login"><input name="password"></form>`,
        );
      });
      phishingUrl = await listen(phishing);
    });
    after(async () => {
      await close(phishing);
      await close(collector);
    });

    it('never posts credentials to an origin other than the one it started on', async () => {
      await assert.rejects(
        completeLoginWithHttp({ url: phishingUrl, login: 'alice-sub', password: PASSWORD }),
        DevIdpError,
      );
      assert.equal(collectorHits, 0);
    });

    it('asks for the user code when given the bare verification URI without one', async () => {
      const device = await rp.startDeviceAuthorization();
      await assert.rejects(
        completeLoginWithHttp({ url: device.verificationUri, login: 'alice-sub', password: PASSWORD }),
        /userCode/,
      );
    });

    it('reports a mistyped user code as an error of the IdP', async () => {
      const device = await rp.startDeviceAuthorization();
      await assert.rejects(
        completeLoginWithHttp({
          url: device.verificationUri,
          userCode: 'BBBB-BBBB',
          login: 'alice-sub',
          password: PASSWORD,
        }),
        (error: unknown) => error instanceof DevIdpError && /not found/.test(error.message),
      );
    });
  });
});
