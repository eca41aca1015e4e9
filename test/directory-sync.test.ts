// The directory sync in a real kubevisa server (real OIDC provider, no cluster) reading Okta's recorded answers
// (test/fixtures/directories/okta.json) over HTTP: a suspended user is suspended and offboarded, a deprovisioned
// one deprovisioned, a group mapping follows Okta's group; and a server whose directory cannot be read does not
// start, saying why.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/main.ts';
import { api, loginAs, people } from './support/kubevisa-env.ts';
import { startLightEnv, type LightEnv } from './support/identity.ts';
import { loadRecording, serveRecordings, type Recording, type ReplayServer } from './support/directory-replay.ts';

const okta = loadRecording(new URL('./fixtures/directories/okta.json', import.meta.url));
const dora = { sub: 'dora', email: 'dora@vendor.example', password: 'dora-pw', groups: [], name: 'dora' };

/** The recording without its throttling (covered in directory-providers.test.ts), answered again at every sync. */
function steady(recording: Recording, edit: (body: unknown) => unknown = (b) => b): Recording {
  return {
    source: recording.source,
    exchanges: [
      // The start-up check reads one user.
      { request: { path: '/api/v1/users', query: { limit: '1' } }, response: { status: 200, body: [] } },
      ...recording.exchanges
        .filter((e) => e.response.status !== 429)
        .map((e) => ({
          ...e,
          response: {
            ...e.response,
            headers: { ...e.response.headers, 'x-rate-limit-remaining': '500' },
            body: edit(e.response.body),
          },
        })),
    ],
  };
}
/** Okta before anyone left: every user ACTIVE, nobody deprovisioned. */
const everyoneActive = steady(okta, (body) =>
  Array.isArray(body) ? body.map((u: Record<string, unknown>) => (u.status ? { ...u, status: 'ACTIVE' } : u)) : body,
);
// Dora is in the deprovisioned search only: as an active user she must be in the main list.
const doraActive = (recording: Recording): Recording => ({
  ...recording,
  exchanges: recording.exchanges.map((e) =>
    e.request.query?.search === 'status eq "DEPROVISIONED"' ? { ...e, response: { ...e.response, body: [] } } : e,
  ),
});
function withDoraListed(recording: Recording, doraUser: unknown): Recording {
  return {
    ...recording,
    exchanges: recording.exchanges.map((e) =>
      e.request.path === '/api/v1/users' &&
      e.request.query?.limit === '200' &&
      e.request.query.after === undefined &&
      !e.request.query.search
        ? { ...e, response: { ...e.response, body: [...(e.response.body as unknown[]), doraUser] } }
        : e,
    ),
  };
}

let env: LightEnv;
let directory: ReplayServer;
let secretsDir: string | undefined;

before(async () => {
  directory = await serveRecordings([], { repeat: true });
  const doraUser = (
    okta.exchanges.find((e) => e.request.query?.search === 'status eq "DEPROVISIONED"')!.response.body as Record<
      string,
      unknown
    >[]
  )[0]!;
  directory.replace([withDoraListed(doraActive(everyoneActive), { ...doraUser, status: 'ACTIVE' })]);
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-okta-'));
  const tokenFile = join(dir, 'okta.token');
  await writeFile(tokenFile, '00QCjAl4MlV-WPXM-e2e\n', { mode: 0o600 });
  env = await startLightEnv(
    {
      identity: {
        groupMappings: [{ group: 'vendor-acme', role: 'auditor' }],
        sync: { provider: 'okta', url: directory.url, tokenFile, interval: '1h', maxOffboardsPerRun: 5 },
      },
    },
    { accounts: [dora] },
  );
  secretsDir = dir;
});
after(async () => {
  await env?.stop();
  await directory?.stop();
  if (secretsDir) await rm(secretsDir, { recursive: true, force: true });
});

describe('directory sync from Okta in a running server', () => {
  test('a suspended user is suspended, a deprovisioned one deprovisioned, and the mapped group gives its role', async () => {
    const cora = await loginAs(env.serverUrl, people.cora);
    const carl = await loginAs(env.serverUrl, people.carl);
    await loginAs(env.serverUrl, dora);
    // Okta now: Carl SUSPENDED, Dora DEPROVISIONED, Sam LOCKED_OUT, Cora ACTIVE in Vendor-Acme.
    directory.replace([steady(okta)]);
    const report = await api(env.serverUrl, 'POST', '/api/v1/identity/sync', { token: env.admin });
    assert.equal(report.status, 200, JSON.stringify(report.body));
    assert.deepEqual([...(report.body.offboarded as string[])].sort(), ['carl@vendor.example', 'dora@vendor.example']);
    assert.equal((await env.server.store.getPersonByEmail('carl@vendor.example'))?.status, 'suspended');
    assert.equal((await env.server.store.getPersonByEmail('dora@vendor.example'))?.status, 'deprovisioned');
    assert.equal(
      (await env.server.store.getPersonByEmail('sam@corp.example'))?.status,
      'active',
      'LOCKED_OUT is not an offboarding',
    );
    const coraNow = await env.server.store.getPersonByEmail('cora@vendor.example');
    assert.equal(coraNow?.status, 'active');
    assert.ok(coraNow?.roles.includes('auditor'), `cora's roles: ${coraNow?.roles.join(', ')}`);
    const receipts = await api(
      env.serverUrl,
      'GET',
      `/api/v1/offboardings?person=${encodeURIComponent('dora@vendor.example')}`,
      { token: env.admin },
    );
    assert.equal(receipts.status, 200, JSON.stringify(receipts.body));
    assert.match(JSON.stringify(receipts.body), /deprovisioned or deleted in okta/);
    assert.equal(
      (await api(env.serverUrl, 'GET', '/api/v1/me', { token: carl.token })).status,
      401,
      "carl's session ended",
    );
    assert.equal((await api(env.serverUrl, 'GET', '/api/v1/me', { token: cora.token })).status, 200);
    assert.ok(directory.requests.every((r) => r.authorization === 'SSWS 00QCjAl4MlV-WPXM-e2e'));
  });
});

describe('start-up check', () => {
  async function startWith(sync: Record<string, unknown>, dir: string) {
    const [port] = await freePorts(1);
    return startServer(
      parseServerConfig(
        {
          listen: { host: '127.0.0.1', port },
          dataDir: join(dir, 'data'),
          oidc: { issuer: env.idp.issuer, clientId: 'kubevisa', clientSecret: 'x', allowInsecureHttp: true },
          clusters: [],
          identity: { sync },
        },
        dir,
      ),
    );
  }

  test('refuses to start with a directory it cannot reach, naming the provider and what to fix', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-okta-down-'));
    try {
      await writeFile(join(dir, 'okta.token'), 'tok\n');
      const [closed] = await freePorts(1);
      await assert.rejects(
        startWith({ provider: 'okta', url: `http://127.0.0.1:${closed}`, tokenFile: join(dir, 'okta.token') }, dir),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_DIRECTORY_UNAVAILABLE');
          assert.match(
            error.message,
            /^config: 'identity\.sync' names the okta directory, which kubevisa cannot read: okta: cannot reach http:\/\/127\.0\.0\.1:\d+ /,
          );
          assert.match(error.message, /docs\/identity-providers\/okta\.md/);
          return true;
        },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses to start when the directory refuses the credential', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-keycloak-denied-'));
    const keycloak = await serveRecordings([
      {
        source: ['Keycloak token endpoint refusing a wrong client secret (RFC 6749 §5.2 error response)'],
        exchanges: [
          {
            request: { method: 'POST', path: '/realms/acme/protocol/openid-connect/token' },
            response: {
              status: 401,
              body: { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' },
            },
          },
        ],
      },
    ]);
    try {
      await writeFile(join(dir, 'kc.secret'), 'wrong\n');
      await assert.rejects(
        startWith(
          {
            provider: 'keycloak',
            url: keycloak.url,
            realm: 'acme',
            clientId: 'kubevisa-sync',
            clientSecretFile: join(dir, 'kc.secret'),
          },
          dir,
        ),
        /names the keycloak directory, which kubevisa cannot read: keycloak: the token endpoint .* refused the credential with HTTP 401 \(unauthorized_client: Invalid client or Invalid client credentials\): check identity\.sync\.realm, clientId and clientSecretFile/,
      );
    } finally {
      await keycloak.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
