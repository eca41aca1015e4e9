// The directory providers (Okta, Microsoft Entra ID, Google Workspace, Keycloak) against recorded answers in each
// API's documented shapes (test/fixtures/directories/, each naming its source), served over real HTTP on
// 127.0.0.1: pagination, throttling answers, suspended, deprovisioned and deleted users, group membership, and
// what each provider refuses.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DirectoryUser, IdentityDirectory } from '../src/identity/directory.ts';
import { createEntraDirectory, type EntraOptions } from '../src/identity/directories/entra.ts';
import { createGoogleDirectory, GOOGLE_SCOPES } from '../src/identity/directories/google.ts';
import { nextLink } from '../src/identity/directories/okta.ts';
import { createKeycloakDirectory } from '../src/identity/directories/keycloak.ts';
import { createOktaDirectory } from '../src/identity/directories/okta.ts';
import { loadRecording, serveRecordings, type Recording, type ReplayServer } from './support/directory-replay.ts';

const fixture = (name: string) => loadRecording(new URL(`./fixtures/directories/${name}.json`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kubevisa-directories-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const secret = (name: string, value: string) => {
  const file = join(dir, name);
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return file;
};
const servers: ReplayServer[] = [];
after(async () => {
  for (const server of servers) await server.stop();
});
async function replay(...recordings: Recording[]): Promise<ReplayServer> {
  const server = await serveRecordings(recordings);
  servers.push(server);
  return server;
}
/** A sleep that records each wait instead of taking it (the waits are what is under test). */
function recordedSleeps() {
  const waits: number[] = [];
  return { waits, sleep: (ms: number) => Promise.resolve(void waits.push(ms)) };
}
const byEmail = (users: DirectoryUser[]) => Object.fromEntries(users.map((u) => [u.email, u]));
const read = (directory: IdentityDirectory) => directory.listUsers(AbortSignal.timeout(20_000));
/** A one-exchange recording, for refusals. */
function answering(
  path: string,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  method = 'GET',
): Recording {
  return {
    source: ['made for this test'],
    exchanges: [{ request: { method, path }, response: { status, headers, body } }],
  };
}

describe('Okta (Management API, SSWS API token)', () => {
  test('reads every page, waits out a 429 until X-Rate-Limit-Reset, and maps each status', async () => {
    const server = await replay(fixture('okta'));
    const { waits, sleep } = recordedSleeps();
    const notes: string[] = [];
    const directory = createOktaDirectory({
      url: server.url,
      tokenFile: secret('okta.token', '00QCjAl4MlV-WPXM-recorded'),
      groups: ['vendor-acme', 'kubevisa-approvers'],
      report: (n) => notes.push(n),
      sleep,
    });
    const users = byEmail(await read(directory));
    assert.deepEqual(server.unmatched, [], 'every request was one the recording holds');
    assert.deepEqual(server.unused(), [], 'every recorded answer was asked for');
    assert.ok(server.requests.every((r) => r.authorization === 'SSWS 00QCjAl4MlV-WPXM-recorded'));
    assert.deepEqual(users['cora@vendor.example'], {
      id: '00u1f96ECLNVOKVMUSEA',
      email: 'cora@vendor.example',
      active: true,
      groups: ['vendor-acme'],
    });
    assert.equal(users['carl@vendor.example']!.active, false, 'SUSPENDED is inactive');
    assert.deepEqual(users['carl@vendor.example']!.groups, [], 'an inactive user is in no group');
    assert.equal(users['sam@corp.example']!.active, true, 'LOCKED_OUT is a few wrong passwords, not an offboarding');
    assert.equal(users['nina@vendor.example']!.active, false, 'PROVISIONED (never activated) is inactive');
    assert.deepEqual(users['dora@vendor.example'], {
      id: '00u2d3ECLNVOKVMUSEB',
      email: 'dora@vendor.example',
      active: false,
      deprovisioned: true,
      groups: [],
    });
    // The 429 asked to wait until its reset (3 s ahead, plus a second); the group answer that used up the window
    // (remaining 0) waited for its reset (2 s ahead) before the next call.
    assert.equal(waits.length, 2, `waits: ${waits.join(', ')}`);
    assert.ok(waits[0]! > 2000 && waits[0]! <= 4000, `429 wait ${waits[0]}`);
    assert.ok(waits[1]! > 1000 && waits[1]! <= 3000, `window wait ${waits[1]}`);
    assert.deepEqual(notes, ["okta: no group named 'kubevisa-approvers'"]);
  });

  test('parses Link headers the way Okta sends them, joined or not', () => {
    assert.equal(
      nextLink(
        '<https://a.okta.com/api/v1/users?limit=2>; rel="self", <https://a.okta.com/api/v1/users?after=x&limit=2>; rel="next"',
      ),
      'https://a.okta.com/api/v1/users?after=x&limit=2',
    );
    assert.equal(nextLink('<https://a.okta.com/api/v1/users?limit=2>; rel="self"'), undefined);
    assert.equal(nextLink(null), undefined);
  });

  test('never follows a next link to another host: the API token stays home', async () => {
    const elsewhere = await replay({ source: ['made for this test'], exchanges: [] });
    const server = await replay({
      source: ['made for this test'],
      exchanges: [
        {
          request: { path: '/api/v1/users', query: { limit: '200' } },
          response: { status: 200, headers: { link: `<${elsewhere.url}/api/v1/users?after=x>; rel="next"` }, body: [] },
        },
      ],
    });
    const directory = createOktaDirectory({ url: server.url, tokenFile: secret('okta2.token', 'tok'), groups: [] });
    await assert.rejects(read(directory), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_DIRECTORY_UNAVAILABLE');
      assert.match(error.message, /points at http:\/\/127\.0\.0\.1:\d+, not at the configured/);
      return true;
    });
    assert.equal(elsewhere.requests.length, 0, 'nothing was sent to the other host');
  });

  test('a refused token says what to check and names no secret', async () => {
    const server = await replay(
      answering('/api/v1/users', 401, {
        errorCode: 'E0000011',
        errorSummary: 'Invalid token provided',
        errorLink: 'E0000011',
        errorId: 'oaeXYZ',
        errorCauses: [],
      }),
      answering('/api/v1/users', 401, {
        errorCode: 'E0000011',
        errorSummary: 'Invalid token provided',
        errorLink: 'E0000011',
        errorId: 'oaeXYZ',
        errorCauses: [],
      }),
    );
    const directory = createOktaDirectory({
      url: server.url,
      tokenFile: secret('okta3.token', 'very-secret-token'),
      groups: [],
    });
    await assert.rejects(directory.check!(AbortSignal.timeout(5000)), (error: Error) => {
      assert.match(error.message, /HTTP 401 \(E0000011 Invalid token provided\): check identity\.sync\.tokenFile/);
      assert.doesNotMatch(error.message, /very-secret-token/);
      return true;
    });
    assert.equal(server.requests.length, 2, 'one retry after a 401, then the refusal');
  });

  test('gives up on throttling that outlasts the sync instead of sleeping past it', async () => {
    const server = await replay(
      answering(
        '/api/v1/users',
        429,
        { errorCode: 'E0000047', errorSummary: 'API call exceeded rate limit due to too many requests.' },
        {
          'x-rate-limit-remaining': '0',
          'x-rate-limit-reset': String(Math.floor(Date.now() / 1000) + 600),
        },
      ),
    );
    const { waits, sleep } = recordedSleeps();
    const directory = createOktaDirectory({
      url: server.url,
      tokenFile: secret('okta4.token', 'tok'),
      groups: [],
      sleep,
    });
    await assert.rejects(read(directory), /throttled; the API asks to wait 60\d s, longer than a sync waits/);
    assert.deepEqual(waits, []);
  });
});

describe('Microsoft Entra ID (Graph, client credentials)', () => {
  const tenant = '72f988bf-86f1-41af-91ab-2d7cd011db47';
  /** Entra ID read from `server`, the token endpoint included. */
  const entra = (server: ReplayServer, options: Partial<EntraOptions> & { clientSecret: string }) =>
    createEntraDirectory({
      tenant,
      clientId: 'c',
      clientSecretFile: secret(`entra-${randomUUID()}.secret`, options.clientSecret),
      emailAttribute: 'userPrincipalName',
      graphUrl: server.url,
      tokenUrl: `${server.url}/${tenant}/oauth2/v2.0/token`,
      groups: [],
      ...options,
    });
  test('follows @odata.nextLink, honours Retry-After, lists deleted users and transitive group members', async () => {
    const server = await replay(fixture('entra'));
    const { waits, sleep } = recordedSleeps();
    const directory = entra(server, {
      clientId: '535fb089-9ff3-47b6-9bfb-4f1264799865',
      clientSecret: 'qWgdYAmab0YSkuL1qKv5bPX',
      groups: ['vendor-acme'],
      sleep,
    });
    const users = byEmail(await read(directory));
    assert.deepEqual(server.unmatched, []);
    assert.deepEqual(server.unused(), []);
    const token = server.requests.find((r) => r.method === 'POST')!;
    assert.deepEqual(token.form, {
      grant_type: 'client_credentials',
      client_id: '535fb089-9ff3-47b6-9bfb-4f1264799865',
      client_secret: 'qWgdYAmab0YSkuL1qKv5bPX',
      scope: `${server.url}/.default`,
    });
    assert.equal(server.requests.filter((r) => r.method === 'POST').length, 1, 'one token for the whole read');
    assert.ok(
      server.requests
        .filter((r) => r.method === 'GET')
        .every((r) => r.authorization?.endsWith('.recorded-entra-token')),
    );
    assert.deepEqual(waits, [2000], 'Retry-After: 2');
    assert.deepEqual(users['adelev@contoso.com'], {
      id: '6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0',
      email: 'adelev@contoso.com',
      active: true,
      groups: ['vendor-acme'],
    });
    assert.equal(users['admin@contoso.com']!.active, false, 'accountEnabled false');
    assert.deepEqual(users['meganb@contoso.com']!.groups, ['vendor-acme'], 'the UPN, not mail, by default');
    assert.deepEqual(
      users['alexw@contoso.com'],
      {
        id: 'c25b1eaf-eb49-4f66-90a1-aa41be4d993a',
        email: 'alexw@contoso.com',
        active: false,
        deprovisioned: true,
        groups: [],
      },
      'the deleted user, its UPN without the object-id prefix',
    );
  });

  test('with emailAttribute: mail, reads mail', async () => {
    const server = await replay(fixture('entra'));
    const directory = entra(server, {
      clientSecret: 's',
      emailAttribute: 'mail',
      groups: ['vendor-acme'],
      sleep: () => Promise.resolve(),
    });
    const users = byEmail(await read(directory));
    assert.ok(users['megan.bowen@contoso.com']);
    assert.equal(users['admin@contoso.com'], undefined, 'a user without mail is left out');
  });

  test('a refused client secret names the AADSTS error and what to check', async () => {
    const server = await replay(
      answering(
        `/${tenant}/oauth2/v2.0/token`,
        401,
        {
          error: 'invalid_client',
          error_description:
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '535fb089-9ff3-47b6-9bfb-4f1264799865'.\r\nTrace ID: 2d3a3a1b-0000\r\nCorrelation ID: 6f1c-0000\r\nTimestamp: 2026-12-03 10:00:00Z",
          error_codes: [7000215],
          timestamp: '2026-12-03 10:00:00Z',
          trace_id: '2d3a3a1b-0000',
          correlation_id: '6f1c-0000',
          error_uri: 'https://login.microsoftonline.com/error?code=7000215',
        },
        {},
        'POST',
      ),
    );
    const directory = entra(server, { clientSecret: 'wrong-secret-value' });
    await assert.rejects(directory.check!(AbortSignal.timeout(5000)), (error: Error) => {
      assert.match(
        error.message,
        /refused the credential with HTTP 401 \(invalid_client: AADSTS7000215: Invalid client secret provided\./,
      );
      assert.match(error.message, /check identity\.sync\.tenant, clientId and clientSecretFile/);
      assert.doesNotMatch(error.message, /wrong-secret-value|Trace ID/);
      return true;
    });
  });

  test('missing Graph permissions: Authorization_RequestDenied says which permissions to grant', async () => {
    const server = await replay(
      answering(
        `/${tenant}/oauth2/v2.0/token`,
        200,
        { token_type: 'Bearer', expires_in: 3599, access_token: 't' },
        {},
        'POST',
      ),
      answering('/v1.0/users', 403, {
        error: {
          code: 'Authorization_RequestDenied',
          message: 'Insufficient privileges to complete the operation.',
          innerError: { date: '2026-12-03T10:00:00', 'request-id': 'r', 'client-request-id': 'r' },
        },
      }),
    );
    const directory = entra(server, { clientSecret: 's' });
    await assert.rejects(
      directory.check!(AbortSignal.timeout(5000)),
      /HTTP 403 \(Authorization_RequestDenied: Insufficient privileges to complete the operation\.\): grant the app the application permissions User\.Read\.All and GroupMember\.Read\.All/,
    );
  });
});

describe('Google Workspace (Admin SDK Directory, service account)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyFile = (tokenUri: string) =>
    secret(
      'google-key.json',
      JSON.stringify({
        type: 'service_account',
        project_id: 'kubevisa-sync',
        private_key_id: 'a1b2c3d4e5f6',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        client_email: 'kubevisa-sync@kubevisa-sync.iam.gserviceaccount.com',
        client_id: '113456789012345678901',
        auth_uri: 'https://accounts.google.com/o/oauth2/auth',
        token_uri: tokenUri,
      }),
    );

  test('signs a delegated JWT, pages by nextPageToken, backs off on rateLimitExceeded, reads suspended, archived and deleted users', async () => {
    const server = await replay(fixture('google'));
    const { waits, sleep } = recordedSleeps();
    const directory = createGoogleDirectory({
      keyFile: keyFile(`${server.url}/token`),
      subject: 'admin@example.com',
      customer: 'my_customer',
      url: server.url,
      groups: ['vendor-acme@example.com', 'kubevisa approvers'],
      sleep,
      random: () => 0,
    });
    const users = byEmail(await read(directory));
    assert.deepEqual(server.unmatched, []);
    assert.deepEqual(server.unused(), []);
    const form = server.requests.find((r) => r.method === 'POST')!.form!;
    assert.equal(form.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
    const [header, payload, signature] = form.assertion!.split('.') as [string, string, string];
    const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString()) as Record<string, unknown>;
    assert.deepEqual(decode(header), { alg: 'RS256', typ: 'JWT', kid: 'a1b2c3d4e5f6' });
    assert.ok(
      verify('sha256', Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature, 'base64url')),
      'signed with the service account key',
    );
    const claims = decode(payload);
    assert.equal(claims.iss, 'kubevisa-sync@kubevisa-sync.iam.gserviceaccount.com');
    assert.equal(claims.sub, 'admin@example.com');
    assert.equal(claims.aud, `${server.url}/token`);
    assert.equal(claims.scope, GOOGLE_SCOPES.join(' '));
    assert.ok(
      server.requests
        .filter((r) => r.method === 'GET')
        .every((r) => r.authorization === 'Bearer ya29.c.recorded-google-token'),
    );
    assert.deepEqual(waits, [1000], 'the first backoff step');
    assert.deepEqual(users['liz@example.com'], {
      id: '103398375844326234567',
      email: 'liz@example.com',
      active: true,
      groups: ['kubevisa approvers'],
    });
    assert.equal(users['contractor.bob@example.com']!.active, false, 'suspended');
    assert.deepEqual(users['contractor.bob@example.com']!.groups, []);
    assert.equal(users['old.timer@example.com']!.active, false, 'archived');
    assert.deepEqual(
      users['ana@example.com']!.groups,
      ['vendor-acme@example.com'],
      'a member by id; a GROUP member is not a user',
    );
    assert.deepEqual(users['gone@example.com'], {
      id: '109876543210987654321',
      email: 'gone@example.com',
      active: false,
      deprovisioned: true,
      groups: [],
    });
  });

  test('a delegation that is not set up: unauthorized_client, with what to configure', async () => {
    const server = await replay(
      answering(
        '/token',
        401,
        {
          error: 'unauthorized_client',
          error_description:
            'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
        },
        {},
        'POST',
      ),
    );
    const directory = createGoogleDirectory({
      keyFile: keyFile(`${server.url}/token`),
      subject: 'admin@example.com',
      customer: 'my_customer',
      url: server.url,
      groups: [],
    });
    await assert.rejects(
      directory.check!(AbortSignal.timeout(5000)),
      /unauthorized_client: Client is unauthorized .*domain-wide delegation for the read-only directory scopes/,
    );
  });
});

describe('Keycloak (Admin REST, client credentials)', () => {
  test('pages by first/max until a short page, finds a sub-group by name, leaves out users without email', async () => {
    const server = await replay(fixture('keycloak'));
    const notes: string[] = [];
    const directory = createKeycloakDirectory({
      url: server.url,
      realm: 'acme',
      clientId: 'kubevisa-sync',
      clientSecretFile: secret('keycloak.secret', 'kc-secret'),
      groups: ['vendor-acme'],
      pageSize: 2,
      report: (n) => notes.push(n),
    });
    const users = byEmail(await read(directory));
    assert.deepEqual(server.unmatched, []);
    assert.deepEqual(server.unused(), []);
    assert.deepEqual(server.requests.find((r) => r.method === 'POST')!.form, {
      grant_type: 'client_credentials',
      client_id: 'kubevisa-sync',
      client_secret: 'kc-secret',
    });
    assert.deepEqual(Object.keys(users).sort(), ['carl@vendor.example', 'cora@vendor.example']);
    assert.deepEqual(users['cora@vendor.example']!.groups, ['vendor-acme']);
    assert.equal(users['carl@vendor.example']!.active, false, 'enabled: false');
    assert.deepEqual(notes, ['keycloak: 1 user(s) without an email address were left out']);
  });

  test('a service account without view-users: 403 names the roles to give', async () => {
    const server = await replay(
      answering(
        '/realms/acme/protocol/openid-connect/token',
        200,
        { access_token: 't', expires_in: 300, token_type: 'Bearer' },
        {},
        'POST',
      ),
      answering('/admin/realms/acme/users', 403, { error: 'HTTP 403 Forbidden' }),
    );
    const directory = createKeycloakDirectory({
      url: server.url,
      realm: 'acme',
      clientId: 'kubevisa-sync',
      clientSecretFile: secret('keycloak2.secret', 's'),
      groups: [],
    });
    await assert.rejects(
      directory.check!(AbortSignal.timeout(5000)),
      /HTTP 403 \(HTTP 403 Forbidden\): give the client's service account the realm-management roles view-users and query-groups/,
    );
  });
});
