// Alert formats and signatures as plain values; delivery against a real HTTP receiver on 127.0.0.1 that answers
// the way a broken, slow or redirecting receiver would.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AlertDispatcher, webhookSink, type DeliveryOutcome } from './alert-delivery.ts';
import {
  retryDelayMs,
  signPayload,
  slackBody,
  verifySignature,
  webhookBody,
  WEBHOOK_BODY_VERSION,
  type Alert,
} from './alerts.ts';

const alert = (id: string, overrides: Partial<Alert> = {}): Alert => ({
  id,
  event: 'visa-expired',
  severity: 'info',
  at: '2026-03-02T18:00:00.000Z',
  title: `Visa ${id} expired`,
  text: 'visa v_1 (viewer on prod/payments for cora@vendor.example) reached its end; access is removed.',
  cluster: 'prod',
  visaId: 'v_1',
  personEmail: 'cora@vendor.example',
  recipients: ['cora@vendor.example', 'sam@corp.example'],
  details: { auditSeq: 7 },
  ...overrides,
});

describe('signatures', () => {
  const secret = 'whsec-test';
  const body = webhookBody(alert('a1'));
  const now = Date.UTC(2026, 2, 2, 18);
  const timestamp = Math.floor(now / 1000);
  const signature = signPayload(secret, timestamp, body);

  test('a receiver verifies the body and timestamp with the shared secret', () => {
    assert.match(signature, /^sha256=[0-9a-f]{64}$/);
    assert.equal(verifySignature({ secret, body, signature, timestamp: String(timestamp), nowMs: now }), true);
  });

  test('a changed byte, another secret, a replay five minutes later or a missing header fail', () => {
    const flipped = body.replace('v_1', 'v_2');
    assert.equal(
      verifySignature({ secret, body: flipped, signature, timestamp: String(timestamp), nowMs: now }),
      false,
    );
    assert.equal(
      verifySignature({ secret: 'other', body, signature, timestamp: String(timestamp), nowMs: now }),
      false,
    );
    assert.equal(
      verifySignature({ secret, body, signature, timestamp: String(timestamp), nowMs: now + 301_000 }),
      false,
    );
    assert.equal(
      verifySignature({ secret, body, signature: undefined, timestamp: String(timestamp), nowMs: now }),
      false,
    );
    assert.equal(verifySignature({ secret, body, signature, timestamp: '1e3', nowMs: now }), false);
  });
});

describe('formats', () => {
  test('the generic webhook body carries a version and every field', () => {
    const parsed = JSON.parse(webhookBody(alert('a1'))) as Record<string, unknown>;
    assert.equal(parsed['version'], WEBHOOK_BODY_VERSION);
    assert.equal(parsed['event'], 'visa-expired');
    assert.deepEqual(parsed['recipients'], ['cora@vendor.example', 'sam@corp.example']);
  });

  test('Slack gets text and a section, with its control characters escaped', () => {
    const parsed = JSON.parse(slackBody(alert('a1', { title: 'RoleBinding <x> & y' }))) as {
      text: string;
      blocks: { type: string }[];
    };
    assert.match(parsed.text, /RoleBinding &lt;x&gt; &amp; y/);
    assert.deepEqual(
      parsed.blocks.map((block) => block.type),
      ['section', 'context'],
    );
  });
});

describe('retry schedule', () => {
  const policy = { maxAttempts: 8, initialDelayMs: 1000, maxDelayMs: 60_000 };
  test('doubles from the initial delay, capped, with jitter between half and all of it', () => {
    assert.equal(
      retryDelayMs(1, policy, () => 1),
      1000,
    );
    assert.equal(
      retryDelayMs(1, policy, () => 0),
      500,
    );
    assert.equal(
      retryDelayMs(4, policy, () => 1),
      8000,
    );
    assert.equal(
      retryDelayMs(20, policy, () => 1),
      60_000,
    );
  });
  test('a receiver’s Retry-After is honoured up to the cap', () => {
    assert.equal(
      retryDelayMs(1, policy, () => 1, 30_000),
      30_000,
    );
    assert.equal(
      retryDelayMs(1, policy, () => 1, 600_000),
      60_000,
    );
  });
});

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

describe('delivery to a receiver', () => {
  let server: Server;
  let base: string;
  const received: Received[] = [];
  /** What the receiver does next, per path; the default answers 204. */
  const scripts = new Map<string, ((response: ServerResponse) => void)[]>();

  before(async () => {
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const path = request.url ?? '/';
        received.push({ path, headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
        const step = scripts.get(path)?.shift();
        if (step !== undefined) step(response);
        else response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const outcomes: { sink: string; id: string; outcome: DeliveryOutcome; attempt: number }[] = [];
  const dispatcher = (
    path: string,
    options: { secret?: string; maxAttempts?: number; attemptTimeoutMs?: number; maxPending?: number } = {},
  ) =>
    new AlertDispatcher({
      sinks: [
        webhookSink({
          name: path,
          url: `${base}${path}`,
          format: 'webhook',
          ...(options.secret === undefined ? {} : { secret: options.secret }),
        }),
      ],
      retry: { maxAttempts: options.maxAttempts ?? 4, initialDelayMs: 20, maxDelayMs: 100 },
      attemptTimeoutMs: options.attemptTimeoutMs ?? 2000,
      ...(options.maxPending === undefined ? {} : { maxPending: options.maxPending }),
      onOutcome: ({ sink, alert: a, outcome, attempt }) => outcomes.push({ sink, id: a.id, outcome, attempt }),
    });
  const at = (path: string) => received.filter((r) => r.path === path);

  test('arrives signed: the receiver verifies the signature with the shared secret', async () => {
    const alerts = dispatcher('/signed', { secret: 'shared-secret' });
    alerts.publish(alert('signed-1'));
    assert.equal(await alerts.idle(5000), true);
    const [delivery] = at('/signed');
    assert.ok(delivery);
    assert.equal(delivery.headers['x-kubevisa-event'], 'visa-expired');
    assert.match(String(delivery.headers['x-kubevisa-delivery']), /^signed-1\//);
    assert.equal(
      verifySignature({
        secret: 'shared-secret',
        body: delivery.body,
        signature: delivery.headers['x-kubevisa-signature'] as string,
        timestamp: delivery.headers['x-kubevisa-timestamp'] as string,
      }),
      true,
    );
    assert.equal((JSON.parse(delivery.body) as Alert).id, 'signed-1');
    await alerts.stop();
  });

  test('is retried with backoff after 500 and 429 until it is accepted', async () => {
    scripts.set('/flaky', [(r) => r.writeHead(500).end(), (r) => r.writeHead(429, { 'retry-after': '0' }).end()]);
    const alerts = dispatcher('/flaky');
    alerts.publish(alert('flaky-1'));
    assert.equal(await alerts.idle(5000), true);
    assert.equal(at('/flaky').length, 3);
    assert.deepEqual(
      outcomes.filter((o) => o.id === 'flaky-1').map((o) => `${o.outcome}#${o.attempt}`),
      ['retrying#1', 'retrying#2', 'delivered#3'],
    );
    await alerts.stop();
  });

  test('publish never waits for the receiver, even one that never answers; the attempt times out and is retried', async () => {
    let hung = 0;
    scripts.set('/hang', [
      () => {
        hung++; // never answers
      },
    ]);
    // Long enough that, on a loaded machine, the 99 answered attempts are not cut off too; the hung one still is.
    const alerts = dispatcher('/hang', { attemptTimeoutMs: 1000, maxAttempts: 8 });
    for (let i = 0; i < 100; i++) assert.equal(alerts.publish(alert(`hang-${i}`)), undefined, 'nothing to await');
    // publish returned before any attempt could even reach the receiver, let alone end: it never waits for one.
    assert.equal(hung, 0);
    assert.equal(outcomes.filter((o) => o.sink === '/hang').length, 0);
    assert.equal(await alerts.idle(20_000), true);
    assert.equal(hung, 1);
    assert.equal(outcomes.filter((o) => o.sink === '/hang' && o.outcome === 'delivered').length, 100);
    await alerts.stop();
  });

  test('a 4xx other than 408/429 is not retried', async () => {
    scripts.set('/bad', [(r) => r.writeHead(400).end()]);
    const alerts = dispatcher('/bad');
    alerts.publish(alert('bad-1'));
    assert.equal(await alerts.idle(5000), true);
    assert.equal(at('/bad').length, 1);
    assert.deepEqual(
      outcomes.filter((o) => o.id === 'bad-1').map((o) => o.outcome),
      ['failed'],
    );
    await alerts.stop();
  });

  test('a redirect is not followed: a signed body goes only where it was configured to', async () => {
    scripts.set('/redirect', [(r) => r.writeHead(302, { location: `${base}/elsewhere` }).end()]);
    const alerts = dispatcher('/redirect', { secret: 's' });
    alerts.publish(alert('redirect-1'));
    assert.equal(await alerts.idle(5000), true);
    assert.equal(at('/elsewhere').length, 0);
    assert.equal(outcomes.find((o) => o.id === 'redirect-1')?.outcome, 'failed');
    await alerts.stop();
  });

  test('gives up after maxAttempts, and drops the oldest when too many are pending', async () => {
    scripts.set(
      '/down',
      Array.from({ length: 10 }, () => (r: ServerResponse) => r.writeHead(503).end()),
    );
    const alerts = dispatcher('/down', { maxAttempts: 2, maxPending: 2 });
    alerts.publish(alert('down-1'));
    alerts.publish(alert('down-2'));
    alerts.publish(alert('down-3'));
    assert.equal(await alerts.idle(5000), true);
    const final = (id: string) => outcomes.filter((o) => o.id === id).at(-1)?.outcome;
    assert.equal(final('down-1'), 'dropped');
    assert.equal(final('down-2'), 'failed');
    assert.equal(final('down-3'), 'failed');
    await alerts.stop();
  });

  test('a sink only gets the events it asked for', async () => {
    const alerts = new AlertDispatcher({
      sinks: [
        webhookSink({
          name: 'only-stale',
          url: `${base}/only-stale`,
          format: 'slack',
          events: new Set(['stale-access']),
        }),
      ],
    });
    alerts.publish(alert('x-1'));
    alerts.publish(alert('x-2', { event: 'stale-access' }));
    assert.equal(await alerts.idle(5000), true);
    const deliveries = at('/only-stale');
    assert.equal(deliveries.length, 1);
    assert.match((JSON.parse(deliveries[0]!.body) as { text: string }).text, /Visa x-2 expired/);
    await alerts.stop();
  });
});
