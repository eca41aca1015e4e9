// The gateway on real sockets, with a small HTTPS upstream and an audit writer that can be held back: what it does
// when the audit trail cannot keep up, and what a watch cut before the upstream answered it is told.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, Agent as HttpAgent } from 'node:http';
import { Agent, createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import { aPerson, aProfile, aRequestedVisa } from '../domain/testing/fixtures.ts';
import { LocalCa } from '../dev/ca.ts';
import type { NewAuditEvent, Store } from '../store/store.ts';
import { Gateway, type EndedVisa } from './gateway.ts';
import { GrantIndex } from './grants.ts';

const HOUR = 3_600_000;
let dir: string;
let upstream: ReturnType<typeof createHttpsServer>;
let server: ReturnType<typeof createHttpServer>;
let gateway: Gateway;
let port: number;
const written: NewAuditEvent[] = [];
let release: () => void = () => {};
let held: Promise<void> = Promise.resolve();
let index: GrantIndex;
let revokedVisa: EndedVisa;
let deleted = 0;
/** What the store holds as active: the watch test revokes v_one, the delete test opens another. */
let activeVisas: unknown[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-backpressure-'));
  const ca = await LocalCa.create(dir, 'upstream-ca');
  const leaf = await ca.issue({
    name: 'upstream',
    commonName: 'upstream',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  upstream = createHttpsServer(
    { cert: await readFile(leaf.certFile), key: await readFile(leaf.keyFile) },
    (req, res) => {
      // A watch is held unanswered (a kube-apiserver slow to answer): the gateway must still say why it cut it.
      if (req.url?.includes('watch=true')) return;
      // A delete the cluster carries out but answers slowly (a finalizer, a slow admission webhook).
      if (req.method === 'DELETE') {
        deleted++;
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"Status"}'), 500);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"PodList","items":[]}');
    },
  );
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve()));
  const upstreamPort = (upstream.address() as { port: number }).port;
  const now = Date.now();
  const person = aPerson({ id: 'p_carol' });
  const visa = {
    ...aRequestedVisa(),
    id: 'v_one',
    cluster: 'prod',
    namespaces: ['shop'],
    state: 'active' as const,
    notBefore: now - HOUR,
    notAfter: now + HOUR,
  };
  activeVisas = [visa];
  const store = {
    listVisasInStates: async () => activeVisas,
    listPersons: async () => [person],
    listProfiles: async () => [aProfile()],
    getSession: async () => ({ id: 's1', personId: person.id, secretHash: 'x', createdAt: now, expiresAt: now + HOUR }),
  } as unknown as Store;
  revokedVisa = { ...visa, state: 'revoked', endedBy: 'sam@corp.example', endReason: 'contract paused' };
  index = new GrantIndex(store);
  await index.rebuild();
  const tokens = {
    verify: async () => ({ personId: person.id, email: person.email, sessionId: 's1', expiresAt: now + HOUR }),
  } as unknown as TokenIssuer;
  const tls = { ca: await readFile(ca.certFile) };
  gateway = new Gateway({
    store,
    tokens,
    index,
    clusters: new Map([
      [
        'prod',
        {
          name: 'prod',
          hostname: '127.0.0.1',
          port: upstreamPort,
          host: `127.0.0.1:${upstreamPort}`,
          ...tls,
          rejectUnauthorized: true,
          agent: new Agent({ keepAlive: true, ...tls }),
          streamAgent: new Agent({ keepAlive: false, ...tls }),
          token: () => 'kubevisa-own-token',
        },
      ],
    ]),
    rateLimit: { ratePerSecond: 1000, burst: 1000 },
    maxQueuedAuditEvents: 10,
    auditSink: {
      write: async (events) => {
        await held;
        written.push(...events);
      },
      close: async () => {},
    },
  });
  server = createHttpServer((req, res) => gateway.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as { port: number }).port;
});

after(async () => {
  release();
  await gateway?.stop();
  server?.close();
  upstream?.close();
  await rm(dir, { recursive: true, force: true });
});

const agent = new HttpAgent({ keepAlive: true, maxSockets: 8 });
function get(path: string): Promise<{ status: number; body: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, agent, headers: { authorization: 'Bearer a-token' } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('audit back-pressure', () => {
  test('when the audit writer falls behind, new requests get 503 with Retry-After, and every relayed one is recorded', async () => {
    held = new Promise<void>((resolve) => (release = resolve));
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => get(`/clusters/prod/api/v1/namespaces/shop/pods?n=${i}`)),
    );
    const relayed = answers.filter((a) => a.status === 200).length;
    const refused = answers.filter((a) => a.status === 503);
    assert.equal(relayed + refused.length, 40, JSON.stringify(answers.map((a) => a.status)));
    assert.ok(relayed >= 10 && relayed < 40, `${relayed} relayed before the queue was full`);
    for (const answer of refused) {
      assert.equal(answer.retryAfter, '1');
      assert.match(answer.body, /backlog of audit events/);
    }
    release();
    await gateway.flushAudit();
    const recorded = written.filter((e) => e.action === 'gateway.request');
    assert.equal(recorded.length, relayed, 'every relayed request is in the trail, none dropped');
    // The 503s gave way while the queue was full, and were counted: their trace is the summary written after.
    const summaries = written.filter((e) => e.action === 'gateway.refused.summary');
    assert.equal(
      summaries.reduce((n, e) => n + Number((e.details!.statuses as Record<string, number>)['503'] ?? 0), 0),
      refused.length,
    );
    const again = await get('/clusters/prod/api/v1/namespaces/shop/pods');
    assert.equal(again.status, 200, 'relaying resumes once the trail has caught up');
  });
});

describe('a watch cut before the cluster answered it', () => {
  test('is answered with why it was cut, as kube-apiserver would refuse it, not reset', async () => {
    const watch = get('/clusters/prod/api/v1/namespaces/shop/pods?watch=true');
    for (let i = 0; i < 100 && !gateway.streams.all().some((s) => s.kind === 'watch'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(gateway.streams.all().filter((s) => s.kind === 'watch').length, 1, 'the watch is open at the gateway');
    index.removeVisas([revokedVisa.id]);
    assert.equal(gateway.recheckStreams('visa revoked', new Map([[revokedVisa.id, revokedVisa]])), 1);
    const answer = await watch;
    assert.equal(answer.status, 403);
    const status = JSON.parse(answer.body) as { kind: string; reason: string; message: string };
    assert.equal(status.kind, 'Status');
    assert.equal(status.reason, 'Forbidden');
    assert.match(status.message, /^visa v_one was revoked by sam@corp\.example: contract paused\./);
  });
});

describe('a delete cut before the cluster answered it', () => {
  test('is reset, not answered with a refusal: the cluster may have carried it out', async () => {
    const visa = { ...revokedVisa, id: 'v_two', state: 'active' as const };
    activeVisas = [visa];
    await index.rebuild();
    const answer = new Promise<string>((resolve) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/clusters/prod/api/v1/namespaces/shop/pods/web',
          method: 'DELETE',
          agent: false,
          headers: { authorization: 'Bearer a-token' },
        },
        (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c));
          res.on('end', () => resolve(`answered ${res.statusCode} ${b}`));
        },
      );
      req.on('error', (error) => resolve(`reset: ${error.message}`));
      req.end();
    });
    for (let i = 0; i < 100 && deleted === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(
      deleted,
      1,
      `the cluster received the delete: ${await Promise.race([answer, Promise.resolve('pending')])}`,
    );
    index.removeVisas([visa.id]);
    assert.equal(gateway.recheckStreams('visa revoked', new Map([[visa.id, { ...revokedVisa, id: visa.id }]])), 1);
    assert.match(await answer, /^reset/);
    const deletes = () => written.filter((e) => e.action === 'gateway.request' && e.details?.verb === 'delete');
    for (let i = 0; i < 100 && deletes().length === 0; i++) {
      await gateway.flushAudit();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const recorded = deletes();
    assert.equal(recorded.length, 1);
    assert.notEqual(
      recorded[0]!.outcome,
      'refused',
      'the trail does not say a delete the cluster received was refused',
    );
    assert.equal(recorded[0]!.reason, 'visa revoked');
  });
});
