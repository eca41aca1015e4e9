// Two SessionServices on one store stand for two kubevisa servers behind one load balancer: the IdP must be asked
// once however the CLI's calls are spread over them.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createTokenIssuer } from '../auth/access-tokens.ts';
import type { OidcRelyingParty, RefreshResult } from '../auth/oidc-rp.ts';
import { loadOrCreateSecretBox, type SecretBox } from '../auth/secret-box.ts';
import { generateSessionSecret, hashSessionSecret } from '../auth/session-secrets.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { SessionService } from './sessions.ts';

let dir: string;
let store: Store;
let secretBox: SecretBox;
const { privateKey } = generateKeyPairSync('ed25519');
const tokens = createTokenIssuer({
  issuer: 'https://kubevisa.example',
  audience: 'kubevisa',
  signingKey: privateKey,
  keyId: 'k1',
});
const config = {
  sessionSeconds: 3600,
  accessTokenSeconds: 300,
  roles: { admins: [], adminGroups: [], auditors: [], auditorGroups: [] },
  policy: { approverGroups: [] },
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-sessions-'));
  store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
  secretBox = await loadOrCreateSecretBox(dir);
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** An IdP that rotates refresh tokens and counts what it was asked; each answer takes `delayMs`. */
function fakeIdp(delayMs: number) {
  const asked = { refresh: 0, poll: 0 };
  const rp = {
    issuer: 'https://idp.example',
    startDeviceAuthorization: async () => ({
      deviceCode: 'device-code',
      userCode: 'ABCD-EFGH',
      verificationUri: 'https://idp.example/device',
      verificationUriComplete: undefined,
      intervalSeconds: 5,
      expiresAt: Date.now() + 600_000,
    }),
    pollDeviceAuthorization: async () => {
      asked.poll++;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return { status: 'pending' as const };
    },
    refresh: async (): Promise<RefreshResult> => {
      asked.refresh++;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return {
        tokens: {
          accessToken: 'at',
          refreshToken: `rotated-${asked.refresh}`,
          idToken: undefined,
          accessTokenExpiresAt: Date.now() + 600_000,
          scope: undefined,
        },
        identity: undefined,
      };
    },
  } as unknown as OidcRelyingParty;
  return { rp, asked };
}

test('a session due for an IdP refresh is refreshed once when two servers are asked for a token at once', async () => {
  const idp = fakeIdp(200);
  const servers = [1, 2].map(() => new SessionService({ store, rp: idp.rp, tokens, secretBox, config }));
  const secret = generateSessionSecret();
  const now = Date.now();
  await store.transaction(async (tx) => {
    const person = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: 'cora',
      email: 'cora@vendor.example',
      displayName: 'Cora',
      groups: [],
      now,
    });
    await tx.insertSession({
      personId: person.id,
      secretHash: hashSessionSecret(secret),
      createdAt: now,
      expiresAt: now + 3_600_000,
      idpRefreshTokenCiphertext: secretBox.seal('refresh-1'),
      idpTokenExpiresAt: now - 1000,
    });
  });
  const answers = await Promise.all([...servers, ...servers].map((server) => server.issueAccessToken(secret)));
  assert.equal(answers.length, 4);
  assert.equal(idp.asked.refresh, 1, 'one refresh at the IdP for four token requests on two servers');
  const cora = await store.getPersonByEmail('cora@vendor.example');
  const [session] = await store.listSessionsOfPerson(cora!.id);
  assert.equal(secretBox.open(session!.idpRefreshTokenCiphertext!), 'rotated-1', 'the rotated token is kept');
});

test('a device login is polled at the IdP once per interval whichever server the CLI polls', async () => {
  const idp = fakeIdp(50);
  const [a, b] = [1, 2].map(() => new SessionService({ store, rp: idp.rp, tokens, secretBox, config }));
  const { loginId } = await a!.startDeviceLogin();
  const polls = await Promise.all([a, b, a, b, a, b].map((server) => server!.pollDeviceLogin(loginId)));
  assert.ok(polls.every((poll) => 'status' in poll && poll.status === 'pending'));
  assert.equal(idp.asked.poll, 1, 'six polls over two servers inside one interval asked the IdP once');
});
