import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { LocalCa } from '../dev/ca.ts';
import { ApiClient, normalizeServerUrl } from './api-client.ts';
import { readSession, writeSession } from './config.ts';
import { ApiError } from './errors.ts';
import { CAROL, FakeApi, problem, SESSION_SECRET } from './testing/fake-api.ts';

let api: FakeApi;
let root: string;

before(async () => {
  api = await FakeApi.start();
});
after(async () => {
  await api.close();
});
beforeEach(async () => {
  api.requests.length = 0;
  root = await mkdtemp(join(tmpdir(), 'kubevisa-client-test-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function loggedInClient(
  server = api.url,
  options: { timeoutMs?: number; caFile?: string } = {},
): Promise<ApiClient> {
  await writeSession(root, {
    server,
    sessionSecret: SESSION_SECRET,
    sessionExpiresAt: new Date(Date.now() + 3600_000).toISOString(),
    person: CAROL,
  });
  return new ApiClient({ server, configDir: root, ...options });
}

describe('answers', () => {
  test('a problem+json answer becomes an ApiError carrying its code, status and detail', async () => {
    api.on(
      'POST',
      '/api/v1/visas',
      problem(400, 'ERR_OUTSIDE_CEILING', "namespace 'kube-system' is outside the engagement's ceiling"),
    );
    const client = await loggedInClient();
    await assert.rejects(client.post('/api/v1/visas', {}), (error: unknown) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.code, 'ERR_OUTSIDE_CEILING');
      assert.equal(error.status, 400);
      assert.equal(error.message, "namespace 'kube-system' is outside the engagement's ceiling");
      return true;
    });
  });

  test('an error answer that is not problem+json is reported with its status, as a likely wrong server', async () => {
    api.on('GET', '/api/v1/me', { status: 404, contentType: 'text/html', body: '<h1>Not Found</h1>' });
    try {
      const client = await loggedInClient();
      await assert.rejects(client.get('/api/v1/me'), {
        code: 'ERR_UNEXPECTED_RESPONSE',
        message: /answered GET \/api\/v1\/me with HTTP 404 .*is .* a kubevisa server/,
      });
    } finally {
      api.on('GET', '/api/v1/me', { status: 200, body: CAROL });
    }
  });

  test("a proxy's error page is not echoed: the addresses behind the server stay out of the message", async () => {
    // What Envoy answers when its upstream is down.
    const page =
      'upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111; upstream 10.0.0.7:6443';
    api.on('GET', '/api/v1/me', { status: 503, contentType: 'text/plain', body: page });
    try {
      const client = await loggedInClient();
      await assert.rejects(client.get('/api/v1/me'), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ERR_UNEXPECTED_RESPONSE');
        assert.match(error.message, /answered GET \/api\/v1\/me with HTTP 503 and no kubevisa error; a proxy in front/);
        assert.doesNotMatch(error.message, /10\.0\.0\.7|6443|upstream/);
        return true;
      });
    } finally {
      api.on('GET', '/api/v1/me', { status: 200, body: CAROL });
    }
  });

  test('a server that does not answer in time fails with a timeout that names it', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const client = new ApiClient({ server: url, configDir: root, timeoutMs: 200 });
      // The client's own 0.2 s limit ends the call (the message says so); the silent server never answers.
      await assert.rejects(client.call('POST', '/api/v1/login/device', { auth: false }), {
        code: 'ERR_SERVER_TIMEOUT',
        message: new RegExp(`${url} did not answer POST /api/v1/login/device within 0.2 s`),
      });
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

describe('access tokens', () => {
  test('are bought once per process and saved to session.json for the next command', async () => {
    const client = await loggedInClient();
    const minted = api.tokensMinted;
    await client.get('/api/v1/me');
    await client.get('/api/v1/me');
    assert.equal(api.tokensMinted, minted + 1);
    const saved = await readSession(root);
    assert.match(saved?.accessToken ?? '', /^at-\d+$/);
    const next = new ApiClient({ server: api.url, configDir: root });
    await next.get('/api/v1/me');
    assert.equal(api.tokensMinted, minted + 1, 'a later process reuses the saved token');
  });

  test('a saved token the server no longer accepts is replaced once and the call retried', async () => {
    await loggedInClient();
    const saved = await readSession(root);
    await writeSession(root, {
      ...(saved ?? assert.fail()),
      accessToken: 'at-revoked',
      accessTokenExpiresAt: new Date(Date.now() + 600_000).toISOString(),
    });
    const client = new ApiClient({ server: api.url, configDir: root });
    const me = await client.get<{ email: string }>('/api/v1/me');
    assert.equal(me.email, CAROL.email);
    assert.deepEqual(api.calls(), ['GET /api/v1/me', 'POST /api/v1/sessions/token', 'GET /api/v1/me']);
  });

  test('are never requested for a session that visibly ended', async () => {
    await writeSession(root, {
      server: api.url,
      sessionSecret: SESSION_SECRET,
      sessionExpiresAt: '2020-01-01T00:00:00Z',
      person: CAROL,
    });
    const client = new ApiClient({ server: api.url, configDir: root });
    await assert.rejects(client.get('/api/v1/me'), {
      code: 'ERR_NOT_LOGGED_IN',
      message: /ended at 2020-01-01T00:00:00Z/,
    });
    assert.deepEqual(api.calls(), []);
  });
});

describe('TLS', () => {
  let ca: LocalCa;
  let secure: FakeApi;

  before(async () => {
    const caRoot = await mkdtemp(join(tmpdir(), 'kubevisa-client-ca-'));
    ca = await LocalCa.create(caRoot, 'kubevisa test CA');
    const leaf = await ca.issue({
      name: 'server',
      commonName: '127.0.0.1',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    secure = await FakeApi.start({
      cert: await readFile(leaf.certFile, 'utf8'),
      key: await readFile(leaf.keyFile, 'utf8'),
    });
  });
  after(async () => {
    await secure.close();
    await rm(ca.dir, { recursive: true, force: true });
  });

  test('trusts the server through the CA file and refuses it without, saying how to fix it', async () => {
    const trusting = await loggedInClient(secure.url, { caFile: ca.certFile });
    assert.equal((await trusting.get<{ email: string }>('/api/v1/me')).email, CAROL.email);
    const plain = new ApiClient({ server: secure.url, configDir: root });
    await assert.rejects(plain.get('/api/v1/me'), {
      code: 'ERR_SERVER_UNREACHABLE',
      message: /cannot trust the kubevisa server at https:\/\/127\.0\.0\.1:\d+: .* pass --ca-file FILE/,
    });
  });

  test('a CA file that cannot be read is a usage error naming the file', async () => {
    const client = new ApiClient({ server: secure.url, configDir: root, caFile: join(root, 'missing.pem') });
    await assert.rejects(client.call('POST', '/api/v1/login/device', { auth: false }), {
      code: 'ERR_USAGE',
      message: /cannot read the CA file .*missing\.pem \(ENOENT\)/,
    });
  });
});

describe('server URLs', () => {
  test('are normalised without a trailing slash and keep a path prefix', () => {
    assert.equal(normalizeServerUrl('https://kubevisa.example/'), 'https://kubevisa.example');
    assert.equal(normalizeServerUrl('https://corp.example/kubevisa//'), 'https://corp.example/kubevisa');
    assert.equal(normalizeServerUrl('http://127.0.0.1:8080'), 'http://127.0.0.1:8080');
    assert.equal(normalizeServerUrl('http://localhost:8080/'), 'http://localhost:8080');
  });

  test('refuse plain http beyond loopback, credentials, queries and non-URLs', () => {
    assert.throws(() => normalizeServerUrl('http://kubevisa.example'), {
      code: 'ERR_USAGE',
      message: /refusing plain http to kubevisa\.example/,
    });
    assert.throws(() => normalizeServerUrl('https://user:pw@kubevisa.example'), {
      code: 'ERR_USAGE',
      message: /carries credentials/,
    });
    assert.throws(() => normalizeServerUrl('https://kubevisa.example/?x=1'), { code: 'ERR_USAGE' });
    assert.throws(() => normalizeServerUrl('kubevisa.example'), { code: 'ERR_USAGE', message: /is not a URL/ });
    assert.throws(() => normalizeServerUrl('ftp://kubevisa.example'), {
      code: 'ERR_USAGE',
      message: /not an http\(s\) URL/,
    });
  });
});
