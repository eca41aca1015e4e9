// The relying party against a real, in-process oidc-provider (dev-idp.ts) on 127.0.0.1: every login below
// goes through the IdP's actual login form, device pages and token endpoint.
import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { SignJWT, exportJWK } from 'jose';

import { InvalidInput, Unauthenticated } from '../domain/errors.ts';
import { completeLoginWithHttp, startDevIdp, type DevIdp } from '../dev/idp.ts';
import { IdentityProviderUnavailable, LoginDenied, LoginExpired } from './errors.ts';
import {
  DEFAULT_SCOPES,
  createOidcRelyingParty,
  newAuthorizationRequestSecrets,
  type OidcLogin,
  type OidcRelyingParty,
  type OidcRelyingPartyOptions,
} from './oidc-rp.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/api/v1/login/callback';
const SECRET = 'dev-client-secret-0123456789';
const SCOPES = 'openid email profile offline_access groups';
const PASSWORD = 'correct horse battery staple';

const ACCOUNTS = [
  {
    sub: 'alice-sub',
    email: 'Alice@Vendor.Example',
    name: 'Alice Contractor',
    password: PASSWORD,
    groups: ['contractors', 'vendor-acme'],
  },
  {
    sub: 'bob-sub',
    email: 'bob@vendor.example',
    emailVerified: false,
    name: 'Bob Unverified',
    password: PASSWORD,
    groups: [],
  },
  {
    sub: 'carol-sub',
    email: 'carol@vendor.example',
    name: 'Carol Leaving',
    password: PASSWORD,
    groups: ['contractors'],
  },
  {
    sub: 'dave-sub',
    email: 'dave@vendor.example',
    emailVerified: 'absent' as const,
    name: 'Dave Unsaid',
    password: PASSWORD,
    groups: [],
  },
];
const CLIENTS = [
  { clientId: 'kubevisa', clientSecret: SECRET, redirectUris: [REDIRECT_URI] },
  { clientId: 'kubevisa-public', redirectUris: [REDIRECT_URI] },
];

function isUnauthenticated(reason?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof Unauthenticated, `expected Unauthenticated, got ${String(error)}`);
    assert.equal(error.status, 401);
    if (reason !== undefined) assert.equal(error.details?.reason, reason, error.message);
    return true;
  };
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A token endpoint that answers every refresh with an ID token signed by `signingKey` but labelled with the
 * kid of the key its JWKS publishes: with the published key it is a genuine answer, with any other key it is
 * a forgery that only a signature check can catch (issuer, audience and times are all right).
 */
async function startForgingIdp(forge: boolean): Promise<{ issuer: string; server: Server }> {
  const published = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const forger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...(await exportJWK(published.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let issuer = '';
  const server = createServer((req, res) => {
    const json = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration') {
      json({
        issuer,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    } else if (req.url === '/jwks') {
      json({ keys: [jwk] });
    } else if (req.url === '/token') {
      req.resume();
      const now = Math.floor(Date.now() / 1000);
      void new SignJWT({ email: 'alice@vendor.example', email_verified: true, groups: ['contractors'] })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(issuer)
        .setAudience('kubevisa')
        .setSubject('alice-sub')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(forge ? forger.privateKey : published.privateKey)
        .then((idToken) => json({ access_token: 'at', token_type: 'Bearer', expires_in: 300, id_token: idToken }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { issuer, server };
}

describe('OIDC relying party against the in-process dev IdP', () => {
  let idp: DevIdp;
  let rp: OidcRelyingParty;
  const rpOptions = (overrides: Partial<OidcRelyingPartyOptions> = {}): OidcRelyingPartyOptions => ({
    issuerUrl: idp.issuer,
    clientId: 'kubevisa',
    clientSecret: SECRET,
    redirectUri: REDIRECT_URI,
    scopes: SCOPES,
    allowInsecureHttpForLoopback: true,
    timeoutSeconds: 5,
    ...overrides,
  });

  /** A full browser login for `login` through the real login form. */
  async function browserLogin(party: OidcRelyingParty, login: string): Promise<OidcLogin> {
    const secrets = newAuthorizationRequestSecrets();
    const result = await completeLoginWithHttp({
      url: await party.authorizationUrl(secrets),
      login,
      password: PASSWORD,
    });
    assert.equal(result.flow, 'code');
    return party.exchangeCode(result.flow === 'code' ? result.location : '', secrets);
  }

  before(async () => {
    idp = await startDevIdp({ accounts: ACCOUNTS, clients: CLIENTS });
    rp = await createOidcRelyingParty(rpOptions());
  });
  after(async () => {
    await idp.stop();
  });

  describe('device flow', () => {
    it('completes a device login: start, confirm in the browser, poll returns the identity with email and groups', async () => {
      const started = Date.now();
      const device = await rp.startDeviceAuthorization();
      assert.match(device.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
      assert.equal(device.intervalSeconds, 5);
      assert.ok(device.expiresAt >= started + 590_000 && device.expiresAt <= Date.now() + 600_000);
      assert.ok(device.verificationUriComplete?.startsWith(`${idp.issuer}/device`));

      assert.deepEqual(await rp.pollDeviceAuthorization(device.deviceCode), { status: 'pending' });

      const browser = await completeLoginWithHttp({
        url: device.verificationUriComplete ?? '',
        login: 'alice-sub',
        password: PASSWORD,
      });
      assert.deepEqual(browser, { flow: 'device', outcome: 'approved' });

      const done = await rp.pollDeviceAuthorization(device.deviceCode);
      assert.equal(done.status, 'done');
      if (done.status !== 'done') return;
      assert.deepEqual(done.identity, {
        issuer: idp.issuer,
        subject: 'alice-sub',
        email: 'alice@vendor.example',
        displayName: 'Alice Contractor',
        groups: ['contractors', 'vendor-acme'],
      });
      assert.equal(typeof done.tokens.accessToken, 'string');
      assert.equal(typeof done.tokens.refreshToken, 'string');
      assert.equal(typeof done.tokens.idToken, 'string');
      assert.ok((done.tokens.accessTokenExpiresAt ?? 0) > Date.now());
    });

    it('accepts the bare verification URI when the user code is typed in', async () => {
      const device = await rp.startDeviceAuthorization();
      const browser = await completeLoginWithHttp({
        url: device.verificationUri,
        userCode: device.userCode,
        login: 'alice@vendor.example',
        password: PASSWORD,
      });
      assert.deepEqual(browser, { flow: 'device', outcome: 'approved' });
      const done = await rp.pollDeviceAuthorization(device.deviceCode);
      assert.equal(done.status, 'done');
    });

    it('reports a declined device login as LoginDenied', async () => {
      const device = await rp.startDeviceAuthorization();
      const browser = await completeLoginWithHttp({
        url: device.verificationUriComplete ?? '',
        login: 'alice-sub',
        password: PASSWORD,
        decision: 'deny',
      });
      assert.deepEqual(browser, { flow: 'device', outcome: 'denied' });
      await assert.rejects(rp.pollDeviceAuthorization(device.deviceCode), (error: unknown) => {
        assert.ok(error instanceof LoginDenied);
        assert.equal(error.code, 'ERR_LOGIN_DENIED');
        return true;
      });
    });

    it('refuses a device code that was already redeemed, and the IdP revokes that grant', async () => {
      const device = await rp.startDeviceAuthorization();
      await completeLoginWithHttp({
        url: device.verificationUriComplete ?? '',
        login: 'alice-sub',
        password: PASSWORD,
      });
      const done = await rp.pollDeviceAuthorization(device.deviceCode);
      assert.equal(done.status, 'done');
      await assert.rejects(rp.pollDeviceAuthorization(device.deviceCode), LoginExpired);
      // RFC 6749 §4.1.2 spirit: a replayed code revokes what it bought.
      if (done.status === 'done')
        await assert.rejects(rp.refresh(done.tokens.refreshToken ?? ''), isUnauthenticated('invalid_grant'));
    });

    it('refuses an unknown device code', async () => {
      await assert.rejects(rp.pollDeviceAuthorization('not-a-device-code'), LoginExpired);
    });
  });

  describe('browser code flow with PKCE', () => {
    it('builds an authorization URL with S256 PKCE, state and nonce, and never the verifier', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const url = new URL(await rp.authorizationUrl(secrets));
      assert.equal(url.origin, idp.issuer);
      assert.equal(url.searchParams.get('client_id'), 'kubevisa');
      assert.equal(url.searchParams.get('response_type'), 'code');
      assert.equal(url.searchParams.get('redirect_uri'), REDIRECT_URI);
      assert.equal(url.searchParams.get('scope'), SCOPES);
      assert.equal(url.searchParams.get('state'), secrets.state);
      assert.equal(url.searchParams.get('nonce'), secrets.nonce);
      assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
      assert.match(url.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
      assert.ok(!url.href.includes(secrets.codeVerifier));
    });

    it('completes a browser login: authorization URL, login form, exchange of the redirect', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      assert.equal(result.flow, 'code');
      if (result.flow !== 'code') return;
      const location = new URL(result.location);
      assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
      assert.equal(location.searchParams.get('state'), secrets.state);
      assert.equal(location.searchParams.get('iss'), idp.issuer);
      const login = await rp.exchangeCode(result.location, secrets);
      assert.equal(login.identity.email, 'alice@vendor.example');
      assert.deepEqual(login.identity.groups, ['contractors', 'vendor-acme']);
      assert.equal(typeof login.tokens.refreshToken, 'string');
    });

    it('uses only the query of the callback URL, whatever host it arrived on', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      const proxied = new URL(result.location);
      proxied.host = 'kubevisa.internal:8443';
      const login = await rp.exchangeCode(proxied, secrets);
      assert.equal(login.identity.subject, 'alice-sub');
    });

    it('refuses a callback whose state was tampered with', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      const tampered = new URL(result.location);
      tampered.searchParams.set('state', newAuthorizationRequestSecrets().state);
      await assert.rejects(rp.exchangeCode(tampered, secrets), isUnauthenticated('OAUTH_INVALID_RESPONSE'));
      // And the other way round: the callback is genuine but the server expected another state.
      await assert.rejects(
        rp.exchangeCode(result.location, { ...secrets, state: 'another-state' }),
        isUnauthenticated('OAUTH_INVALID_RESPONSE'),
      );
    });

    it('refuses an ID token whose nonce is not the expected one', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      await assert.rejects(
        rp.exchangeCode(result.location, { ...secrets, nonce: 'another-nonce' }),
        isUnauthenticated('OAUTH_JWT_CLAIM_COMPARISON_FAILED'),
      );
    });

    it('refuses a code redeemed with the wrong PKCE verifier', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      const wrongVerifier = newAuthorizationRequestSecrets().codeVerifier;
      await assert.rejects(rp.exchangeCode(result.location, { ...secrets, codeVerifier: wrongVerifier }), LoginExpired);
    });

    it('refuses a code redeemed twice', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      await rp.exchangeCode(result.location, secrets);
      await assert.rejects(rp.exchangeCode(result.location, secrets), LoginExpired);
    });

    it('reports a cancelled browser login as LoginDenied', async () => {
      const secrets = newAuthorizationRequestSecrets();
      const result = await completeLoginWithHttp({
        url: await rp.authorizationUrl(secrets),
        login: 'alice-sub',
        password: PASSWORD,
        decision: 'deny',
      });
      if (result.flow !== 'code') throw new Error('expected a code flow');
      assert.equal(new URL(result.location).searchParams.get('error'), 'access_denied');
      await assert.rejects(rp.exchangeCode(result.location, secrets), LoginDenied);
    });

    it('works as a public client with PKCE alone', async () => {
      const publicRp = await createOidcRelyingParty(
        rpOptions({ clientId: 'kubevisa-public', clientSecret: undefined }),
      );
      const login = await browserLogin(publicRp, 'alice-sub');
      assert.equal(login.identity.subject, 'alice-sub');
      const renewed = await publicRp.refresh(login.tokens.refreshToken ?? '');
      // oidc-provider rotates public clients' refresh tokens: the old one must not be reused.
      assert.notEqual(renewed.tokens.refreshToken, login.tokens.refreshToken);
    });

    it('refuses malformed PKCE verifiers before contacting the IdP', async () => {
      await assert.rejects(
        rp.authorizationUrl({ ...newAuthorizationRequestSecrets(), codeVerifier: 'short' }),
        InvalidInput,
      );
    });
  });

  describe('refresh', () => {
    it('renews the tokens and returns the current identity', async () => {
      const login = await browserLogin(rp, 'alice-sub');
      const renewed = await rp.refresh(login.tokens.refreshToken ?? '', { expectedSubject: 'alice-sub' });
      assert.notEqual(renewed.tokens.accessToken, login.tokens.accessToken);
      assert.equal(typeof renewed.tokens.refreshToken, 'string');
      assert.deepEqual(renewed.identity?.groups, ['contractors', 'vendor-acme']);
      // The renewed refresh token works in turn.
      await rp.refresh(renewed.tokens.refreshToken ?? '');
    });

    it('fails with Unauthenticated once the IdP has disabled the account, and new logins fail too', async () => {
      const login = await browserLogin(rp, 'carol-sub');
      const renewed = await rp.refresh(login.tokens.refreshToken ?? '');

      idp.disableAccount('carol-sub');

      await assert.rejects(rp.refresh(renewed.tokens.refreshToken ?? ''), (error: unknown) => {
        isUnauthenticated('invalid_grant')(error);
        assert.ok(!(error instanceof IdentityProviderUnavailable));
        return true;
      });
      await assert.rejects(
        completeLoginWithHttp({
          url: await rp.authorizationUrl(newAuthorizationRequestSecrets()),
          login: 'carol-sub',
          password: PASSWORD,
        }),
        Unauthenticated,
      );
      const device = await rp.startDeviceAuthorization();
      await assert.rejects(
        completeLoginWithHttp({ url: device.verificationUriComplete ?? '', login: 'carol-sub', password: PASSWORD }),
        Unauthenticated,
      );
    });

    it('refuses an unknown refresh token', async () => {
      await assert.rejects(rp.refresh('not-a-refresh-token'), isUnauthenticated('invalid_grant'));
    });

    it('refuses a renewed ID token for another subject than the session', async () => {
      const login = await browserLogin(rp, 'alice-sub');
      await assert.rejects(
        rp.refresh(login.tokens.refreshToken ?? '', { expectedSubject: 'mallory-sub' }),
        isUnauthenticated('subject_changed'),
      );
    });

    it('treats a wrong client secret as an IdP problem, not as a dead session', async () => {
      const login = await browserLogin(rp, 'alice-sub');
      const misconfigured = await createOidcRelyingParty(rpOptions({ clientSecret: 'wrong-secret' }));
      await assert.rejects(misconfigured.refresh(login.tokens.refreshToken ?? ''), (error: unknown) => {
        assert.ok(error instanceof IdentityProviderUnavailable, String(error));
        assert.equal(error.details?.reason, 'invalid_client');
        return true;
      });
      // The session is intact: the correctly configured client still renews it.
      await rp.refresh(login.tokens.refreshToken ?? '');
    });
  });

  describe('refresh with an IdP that rotates refresh tokens (the public client)', () => {
    /** Default scopes, so the ID token lacks groups and every login and refresh asks userinfo too. */
    const rotating = (overrides: Partial<OidcRelyingPartyOptions> = {}) =>
      createOidcRelyingParty(
        rpOptions({ clientId: 'kubevisa-public', clientSecret: undefined, scopes: undefined, ...overrides }),
      );

    it('refused renewals take no room: after 10 000 of them, two renewals of one token at once still share one request', async () => {
      // A clock that stands still, so nothing remembered could expire while the refusals are made.
      const at = Date.now();
      const party = await rotating({ now: () => at });
      const login = await browserLogin(party, 'alice-sub');
      for (let batch = 0; batch < 50; batch++) {
        const refusals = Array.from({ length: 200 }, (_, i) => party.refresh(`dead-${batch}-${i}`));
        for (const refusal of await Promise.allSettled(refusals)) assert.equal(refusal.status, 'rejected');
      }
      const token = login.tokens.refreshToken ?? '';
      const [a, b] = await Promise.all([party.refresh(token), party.refresh(token)]);
      assert.equal(a.tokens.refreshToken, b.tokens.refreshToken);
      // Had the token been used twice, the IdP would have revoked the grant and this would be refused.
      await party.refresh(a.tokens.refreshToken ?? '');
    });

    it('a userinfo outage after the IdP rotated the token returns the new tokens, without identity', async () => {
      const party = await rotating();
      const login = await browserLogin(party, 'alice-sub');
      idp.failNextUserinfo('outage');
      const renewed = await party.refresh(login.tokens.refreshToken ?? '', { expectedSubject: 'alice-sub' });
      assert.notEqual(renewed.tokens.refreshToken, login.tokens.refreshToken);
      assert.equal(renewed.identity, undefined);
      // The grant is intact and the identity is read at the next refresh.
      const next = await party.refresh(renewed.tokens.refreshToken ?? '', { expectedSubject: 'alice-sub' });
      assert.equal(next.identity?.email, 'alice@vendor.example');
    });

    it('checks the subject of a renewed ID token even when userinfo cannot be asked', async () => {
      const party = await rotating();
      const login = await browserLogin(party, 'alice-sub');
      idp.failNextUserinfo('outage');
      await assert.rejects(
        party.refresh(login.tokens.refreshToken ?? '', { expectedSubject: 'mallory-sub' }),
        isUnauthenticated('subject_changed'),
      );
    });

    it('reports an access token refused at userinfo as such, not as a client configuration problem', async () => {
      const party = await rotating();
      idp.failNextUserinfo('revoke-token');
      await assert.rejects(browserLogin(party, 'alice-sub'), (error: unknown) => {
        assert.ok(error instanceof IdentityProviderUnavailable, String(error));
        assert.deepEqual(error.details, { reason: 'invalid_token', status: 401, endpoint: 'userinfo' });
        assert.match(error.message, /userinfo endpoint refused the access token it had just issued/);
        assert.doesNotMatch(error.message, /client/);
        return true;
      });
    });
  });

  describe('identity', () => {
    it('refuses a person whose email the IdP marks as not verified', async () => {
      const device = await rp.startDeviceAuthorization();
      await completeLoginWithHttp({ url: device.verificationUriComplete ?? '', login: 'bob-sub', password: PASSWORD });
      await assert.rejects(rp.pollDeviceAuthorization(device.deviceCode), isUnauthenticated('email_not_verified'));
    });

    it('refuses a person whose email the IdP does not say is verified (no email_verified claim)', async () => {
      await assert.rejects(browserLogin(rp, 'dave-sub'), (error: unknown) => {
        isUnauthenticated('email_not_verified')(error);
        assert.match((error as Error).message, /did not say that dave@vendor\.example is verified/);
        assert.match((error as Error).message, /oidc\.emailsVerifiedByIdp: true/);
        return true;
      });
    });

    it('with emailsVerifiedByIdp, accepts an email without the claim but still refuses email_verified: false', async () => {
      const party = await createOidcRelyingParty(rpOptions({ emailsVerifiedByIdp: true }));
      assert.equal((await browserLogin(party, 'dave-sub')).identity.email, 'dave@vendor.example');
      await assert.rejects(browserLogin(party, 'bob-sub'), isUnauthenticated('email_not_verified'));
    });

    it('a custom email claim, which nothing verifies, needs emailsVerifiedByIdp', async () => {
      await assert.rejects(createOidcRelyingParty(rpOptions({ emailClaim: 'upn' })), /emailsVerifiedByIdp/);
    });

    it('refuses a login without the configured email claim', async () => {
      const party = await createOidcRelyingParty(rpOptions({ emailClaim: 'work_email', emailsVerifiedByIdp: true }));
      await assert.rejects(browserLogin(party, 'alice-sub'), isUnauthenticated('no_email'));
    });

    it('reads a custom groups claim name and yields no groups when the claim is absent', async () => {
      const party = await createOidcRelyingParty(rpOptions({ groupsClaim: 'roles' }));
      const login = await browserLogin(party, 'alice-sub');
      assert.deepEqual(login.identity.groups, []);
    });

    it('gets no groups with the default scopes, which do not ask for them', async () => {
      const party = await createOidcRelyingParty(rpOptions({ scopes: undefined }));
      const url = new URL(await party.authorizationUrl(newAuthorizationRequestSecrets()));
      assert.equal(url.searchParams.get('scope'), DEFAULT_SCOPES);
      const login = await browserLogin(party, 'alice-sub');
      assert.equal(login.identity.email, 'alice@vendor.example');
      assert.deepEqual(login.identity.groups, []);
    });

    it('asks userinfo for email and groups when the ID token carries only the subject', async () => {
      const sparse = await startDevIdp({ accounts: ACCOUNTS, clients: CLIENTS, claimsInIdToken: false });
      try {
        const party = await createOidcRelyingParty(rpOptions({ issuerUrl: sparse.issuer }));
        const login = await browserLogin(party, 'alice-sub');
        assert.deepEqual(login.identity, {
          issuer: sparse.issuer,
          subject: 'alice-sub',
          email: 'alice@vendor.example',
          displayName: 'Alice Contractor',
          groups: ['contractors', 'vendor-acme'],
        });
      } finally {
        await sparse.stop();
      }
    });

    it('checks ID token signatures against the IdP JWKS: a forged signature is refused, a genuine one accepted', async () => {
      for (const forge of [false, true]) {
        const forging = await startForgingIdp(forge);
        try {
          const party = await createOidcRelyingParty(rpOptions({ issuerUrl: forging.issuer }));
          const refreshed = party.refresh('any-refresh-token');
          if (forge) {
            await assert.rejects(refreshed, isUnauthenticated('OAUTH_INVALID_RESPONSE'));
          } else {
            assert.equal((await refreshed).identity?.email, 'alice@vendor.example');
          }
        } finally {
          forging.server.closeAllConnections();
          await new Promise<void>((resolve) => forging.server.close(() => resolve()));
        }
      }
    });

    it('refuses an ID token signed with another algorithm than the pinned one', async () => {
      const party = await createOidcRelyingParty(rpOptions({ idTokenSigningAlg: 'ES256' }));
      await assert.rejects(browserLogin(party, 'alice-sub'), Unauthenticated);
    });
  });

  describe('configuration', () => {
    it('refuses a plain-http issuer unless it is on loopback and explicitly allowed', async () => {
      await assert.rejects(createOidcRelyingParty(rpOptions({ allowInsecureHttpForLoopback: false })), InvalidInput);
      await assert.rejects(createOidcRelyingParty(rpOptions({ issuerUrl: 'http://idp.example.test' })), InvalidInput);
    });

    it('refuses scopes without openid and a redirect URI with a query', async () => {
      await assert.rejects(createOidcRelyingParty(rpOptions({ scopes: 'email profile' })), InvalidInput);
      await assert.rejects(createOidcRelyingParty(rpOptions({ redirectUri: `${REDIRECT_URI}?x=1` })), InvalidInput);
    });

    it('reports an unreachable IdP as IdentityProviderUnavailable', async () => {
      const port = await closedPort();
      await assert.rejects(
        createOidcRelyingParty(rpOptions({ issuerUrl: `http://127.0.0.1:${port}` })),
        (error: unknown) => {
          assert.ok(error instanceof IdentityProviderUnavailable);
          assert.equal(error.status, 502);
          assert.ok(!(error instanceof Unauthenticated));
          return true;
        },
      );
    });
  });
});
