// Anonymous floods of the API's own routes, against the real server and OIDC provider. Starting a device login is
// open to anyone and makes kubevisa call the identity provider and store a pending login: a client that repeats it
// must not be able to make kubevisa hammer the organisation's IdP (which then throttles everyone's logins).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';

let env: KubevisaEnv;

before(async () => {
  env = await startKubevisaEnv();
  await env.startInProcess();
});

after(async () => {
  await env?.stop();
});

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: Record<string, unknown>;
}

/** POST with no credential from a given loopback address. */
function post(path: string, localAddress: string, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, env.serverUrl),
      {
        method: 'POST',
        localAddress,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { raw: text };
          }
          const retryAfter = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
            body: parsed,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('anonymous floods of the API', () => {
  test('one address starting 200 device logins gets a bounded number started and the rest 429 with Retry-After; another address still starts one', async () => {
    const statuses = new Map<number, number>();
    let refused: Answer | undefined;
    for (let i = 0; i < 200; i += 10) {
      const answers = await Promise.all(Array.from({ length: 10 }, () => post('/api/v1/login/device', '127.0.0.1')));
      for (const answer of answers) {
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status === 429) refused ??= answer;
      }
    }
    const started = statuses.get(201) ?? 0;
    assert.ok(
      started <= 80,
      `at most the per-address burst (plus what refills meanwhile) is started: ${JSON.stringify([...statuses])}`,
    );
    assert.equal(started + (statuses.get(429) ?? 0), 200, JSON.stringify([...statuses]));
    assert.ok(refused, 'the flood is refused');
    assert.match(String(refused.retryAfter), /^[1-9]\d*$/);
    assert.equal(refused.body.code, 'ERR_RATE_LIMITED');
    assert.match(String(refused.body.detail), /too many logins started from this address/);

    // A browser login start draws on the same budget. It refills at one start a second, so one of these may find a
    // start refilled since the flood; a budget of its own would let all ten through.
    const browser = await Promise.all(
      Array.from({ length: 10 }, () =>
        post('/api/v1/login/browser', '127.0.0.1', {
          redirectUri: 'http://127.0.0.1:9999/callback',
          codeChallenge: 'a'.repeat(43),
          state: 'b'.repeat(32),
        }),
      ),
    );
    const browserRefused = browser.filter((answer) => answer.status === 429).length;
    assert.ok(
      browserRefused >= 8,
      `a browser login start shares the budget: ${JSON.stringify(browser.map((answer) => answer.status))}`,
    );

    const elsewhere = await post('/api/v1/login/device', '127.0.0.2');
    assert.equal(elsewhere.status, 201, JSON.stringify(elsewhere.body));
  });

  test('polling one device login 50 times at once asks the identity provider once per interval, not once per poll', async () => {
    const started = await post('/api/v1/login/device', '127.0.0.3');
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const intervalSeconds = Number(started.body.intervalSeconds);
    assert.ok(intervalSeconds >= 1, JSON.stringify(started.body));
    // The server runs in this process: its calls to the identity provider go through this process's fetch.
    const tokenRequests: string[] = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.startsWith(env.idp.issuer) && /token/.test(new URL(url).pathname)) tokenRequests.push(url);
      return realFetch(input, init);
    };
    const t0 = Date.now();
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 50; i++)
        statuses.push((await post(`/api/v1/login/device/${String(started.body.loginId)}/poll`, '127.0.0.3')).status);
    } finally {
      globalThis.fetch = realFetch;
    }
    const elapsedSeconds = (Date.now() - t0) / 1000;
    assert.deepEqual(new Set(statuses), new Set([202]), 'every poll is told to wait (202 pending)');
    assert.ok(
      tokenRequests.length <= 1 + Math.ceil(elapsedSeconds / intervalSeconds),
      `${tokenRequests.length} token requests in ${elapsedSeconds.toFixed(1)} s (interval ${intervalSeconds} s)`,
    );
  });
});
