// Renewing a session's IdP grant through the real SessionService on both store engines, against the real
// oidc-provider (src/dev/idp.ts): its public client rotates refresh tokens and revokes the whole grant when a rotated
// one is used a second time, as Hydra and Okta do. Each "server" below has its own relying party, so nothing is shared
// between them in memory: only the store can keep them from both spending one refresh token.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createTokenIssuer } from '../auth/access-tokens.ts';
import { createOidcRelyingParty, type OidcRelyingParty } from '../auth/oidc-rp.ts';
import { loadOrCreateSecretBox, type SecretBox } from '../auth/secret-box.ts';
import { hashSessionSecret } from '../auth/session-secrets.ts';
import { loadOrCreateSigningKey } from '../auth/signing-key.ts';
import { completeLoginWithHttp, startDevIdp, type DevIdp } from '../dev/idp.ts';
import { openPostgresStore } from '../store/postgres/store.ts';
import { createTestDatabase } from '../store/postgres/test-database.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { SessionService } from './sessions.ts';

const CALLBACK = 'http://127.0.0.1:9/api/v1/login/callback';
const PASSWORD = 'pw-0123456789';
/** Past the dev IdP's access token lifetime (600 s): a session's IdP grant is due for renewal. */
const IDP_TOKEN_DUE_MS = 700_000;

/** Two servers on one store: two PostgreSQL pools on one database, or two services on the one SQLite store. */
interface SharedStore {
  stores: [Store, Store];
  close(): Promise<void>;
}

const engines: { name: string; open(folder: string): Promise<SharedStore> }[] = [
  {
    name: 'sqlite',
    async open(folder) {
      const store = await openSqliteStore({ path: join(folder, 'kubevisa.db') });
      return { stores: [store, store], close: () => store.close() };
    },
  },
  {
    name: 'postgres',
    async open() {
      const database = await createTestDatabase('rp_sessions');
      const first = await openPostgresStore({ url: database.url, poolSize: 4 });
      const second = await openPostgresStore({ url: database.url, poolSize: 4 });
      return {
        stores: [first, second],
        async close() {
          await first.close();
          await second.close();
          await database.drop();
        },
      };
    },
  },
];

let idp: DevIdp;
let folder: string;
let secretBox: SecretBox;
/** Added to every clock below: 0 at login, then IDP_TOKEN_DUE_MS steps so the IdP grant is due. */
let offset = 0;
const clock = () => Date.now() + offset;

before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'kubevisa-renewal-'));
  secretBox = await loadOrCreateSecretBox(folder);
  idp = await startDevIdp({
    accounts: ['una', 'vic', 'wes'].map((name) => ({
      sub: `${name}-sub`,
      email: `${name}@vendor.example`,
      name,
      password: PASSWORD,
      groups: [],
    })),
    clients: [{ clientId: 'kubevisa-public', redirectUris: [CALLBACK] }],
  });
});
after(async () => {
  await idp?.stop();
  await rm(folder, { recursive: true, force: true });
});

function relyingParty(): Promise<OidcRelyingParty> {
  return createOidcRelyingParty({
    issuerUrl: idp.issuer,
    clientId: 'kubevisa-public',
    redirectUri: CALLBACK,
    allowInsecureHttpForLoopback: true,
    now: clock,
  });
}

/**
 * One kubevisa server's session service: its own relying party unless given one (default scopes, so userinfo is
 * asked too).
 */
async function server(store: Store, rp?: OidcRelyingParty): Promise<SessionService> {
  const key = await loadOrCreateSigningKey(folder);
  return new SessionService({
    store,
    rp: rp ?? (await relyingParty()),
    secretBox,
    tokens: createTokenIssuer({
      issuer: 'https://kv.example',
      audience: 'kubevisa',
      signingKey: key.privateKey,
      keyId: key.keyId,
    }),
    config: {
      sessionSeconds: 86_400,
      accessTokenSeconds: 600,
      roles: { admins: [], adminGroups: [], auditors: [], auditorGroups: [] },
      policy: { approverGroups: [] },
    },
    now: clock,
  });
}

/** A browser login as the CLI runs it, through the IdP's real login form; returns the session secret. */
async function login(sessions: SessionService, who: string): Promise<string> {
  offset = 0;
  const verifier = 'v'.repeat(43);
  const { authorizationUrl } = await sessions.startBrowserLogin({
    redirectUri: 'http://127.0.0.1:8000/callback',
    codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
    state: 'state-0123456789abcdef',
  });
  const result = await completeLoginWithHttp({ url: authorizationUrl, login: who, password: PASSWORD });
  assert.equal(result.flow, 'code');
  const cli = new URL(await sessions.finishBrowserLogin(new URL(result.flow === 'code' ? result.location : '')));
  return (await sessions.exchangeBrowserCode(cli.searchParams.get('code') ?? '', verifier)).sessionSecret;
}

const outcomes = (results: PromiseSettledResult<unknown>[]) =>
  results.map((r) => (r.status === 'fulfilled' ? 'issued' : `refused: ${(r.reason as Error).message}`));

for (const engine of engines) {
  describe(`renewing a session's IdP grant (${engine.name})`, () => {
    let shared: SharedStore;
    before(async () => {
      shared = await engine.open(folder);
    });
    after(async () => {
      await shared?.close();
    });

    test('two servers renewing one session at once: one asks the IdP, both serve, and the grant lives on', async () => {
      const [a, b] = await Promise.all(shared.stores.map((store) => server(store)));
      const secret = await login(a!, 'una-sub');
      const before = await shared.stores[0].getSessionBySecretHash(hashSessionSecret(secret));
      offset = IDP_TOKEN_DUE_MS;
      const first = outcomes(await Promise.allSettled([a!.issueAccessToken(secret), b!.issueAccessToken(secret)]));
      assert.deepEqual(first, ['issued', 'issued']);
      const renewed = await shared.stores[1].getSessionBySecretHash(hashSessionSecret(secret));
      assert.equal(renewed?.revokedAt, undefined, renewed?.revokeReason);
      assert.notEqual(renewed?.idpRefreshTokenCiphertext, before?.idpRefreshTokenCiphertext);
      // The token the winner stored is the live one: the next renewals, on either server, are accepted by the IdP.
      offset = 2 * IDP_TOKEN_DUE_MS;
      assert.deepEqual(outcomes(await Promise.allSettled([b!.issueAccessToken(secret)])), ['issued']);
      offset = 3 * IDP_TOKEN_DUE_MS;
      assert.deepEqual(outcomes(await Promise.allSettled([a!.issueAccessToken(secret)])), ['issued']);
    });

    test('a userinfo outage right after the IdP rotated the refresh token: served, and the new token is kept', async () => {
      const [a] = await Promise.all(shared.stores.map((store) => server(store)));
      const secret = await login(a!, 'vic-sub');
      offset = IDP_TOKEN_DUE_MS;
      idp.failNextUserinfo('outage');
      assert.deepEqual(outcomes(await Promise.allSettled([a!.issueAccessToken(secret)])), ['issued']);
      // Had the session kept the spent token, this renewal would present it again and the IdP would revoke the grant.
      offset = 2 * IDP_TOKEN_DUE_MS;
      assert.deepEqual(outcomes(await Promise.allSettled([a!.issueAccessToken(secret)])), ['issued']);
      const session = await shared.stores[0].getSessionBySecretHash(hashSessionSecret(secret));
      assert.equal(session?.revokedAt, undefined, session?.revokeReason);
    });

    test('a renewal that stalled after the IdP answered, past its turn, does not write back a token used since', async () => {
      // Two requests of one session on one server share its relying party, which reuses a rotation's answer.
      const rp = await relyingParty();
      let stalled!: () => void;
      const reachedGate = new Promise<void>((resolve) => (stalled = resolve));
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const slow: OidcRelyingParty = {
        ...rp,
        issuer: rp.issuer,
        async refresh(token, options) {
          const answer = await rp.refresh(token, options);
          stalled();
          await gate;
          return answer;
        },
      };
      const a = await server(shared.stores[0], slow);
      const b = await server(shared.stores[1], rp);
      const secret = await login(b, 'wes-sub');
      offset = IDP_TOKEN_DUE_MS;
      const first = a.issueAccessToken(secret);
      await reachedGate;
      // The first request's turn (45 s) lapses; the next one takes over and is given the rotated token from the relying
      // party's memory of it (a minute), and a later one renews again.
      offset = IDP_TOKEN_DUE_MS + 46_000;
      await b.issueAccessToken(secret);
      offset = 2 * IDP_TOKEN_DUE_MS;
      await b.issueAccessToken(secret);
      open();
      assert.deepEqual(outcomes(await Promise.allSettled([first])), ['issued']);
      // Had the stalled request stored its (already used) token over the current one, this renewal would present it.
      offset = 3 * IDP_TOKEN_DUE_MS;
      assert.deepEqual(outcomes(await Promise.allSettled([b.issueAccessToken(secret)])), ['issued']);
    });
  });
}
