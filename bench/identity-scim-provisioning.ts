/**
 * SCIM provisioning throughput: N users (default 1,000) provisioned in one run against the real server (real
 * OIDC provider for the admin login, SQLite store, no cluster needed), the way Okta and Entra ID do it: for each
 * user a `GET /Users?filter=userName eq "…"` then a `POST /Users`, with C users in flight (default 8). Then the
 * same users deactivated with PATCH (no person has logged in, so no cluster work), then a full list.
 *
 * Reports requests/s and latency p50/p99/max for each kind of request, measured in one run.
 * Run: node bench/identity-scim-provisioning.ts [--users 1000] [--concurrency 8] [--json FILE]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createScimToken, scim, startLightEnv } from '../test/support/identity.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
    json: { type: 'string' },
  },
});

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;

interface Series {
  requests: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

function summarise(latencies: number[], seconds: number): Series {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    requests: latencies.length,
    seconds: round(seconds),
    perSecond: Math.round(latencies.length / seconds),
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

/** Runs `work(i)` for i in [0, count) with `concurrency` in flight. */
async function pool(count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

async function main() {
  const users = Number(values.users);
  const concurrency = Number(values.concurrency);
  log('starting the IdP and the server');
  const env = await startLightEnv({ scim: {}, identity: {} });
  try {
    const token = (await createScimToken(env.serverUrl, env.admin, 'bench')).token;
    const lookups: number[] = [];
    const creates: number[] = [];
    const ids: string[] = [];
    log(`provisioning ${users} users, ${concurrency} in flight`);
    const started = performance.now();
    await pool(users, concurrency, async (i) => {
      const userName = `user${i}@bench.example`;
      let t = performance.now();
      const found = await scim(
        env.serverUrl,
        token,
        'GET',
        `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`,
      );
      lookups.push(performance.now() - t);
      if (found.status !== 200 || found.body.totalResults !== 0) throw new Error(`lookup ${i}: ${found.status}`);
      t = performance.now();
      const created = await scim(env.serverUrl, token, 'POST', '/Users', {
        schemas: [USER],
        userName,
        externalId: `00u${i}`,
        name: { givenName: 'User', familyName: String(i) },
        emails: [{ primary: true, type: 'work', value: userName }],
        active: true,
      });
      creates.push(performance.now() - t);
      if (created.status !== 201) throw new Error(`create ${i}: ${created.status} ${JSON.stringify(created.body)}`);
      ids.push(String(created.body.id));
    });
    const provisionSeconds = (performance.now() - started) / 1000;

    log(`deactivating ${users} users`);
    const patches: number[] = [];
    const patchStarted = performance.now();
    await pool(ids.length, concurrency, async (i) => {
      const t = performance.now();
      const patched = await scim(env.serverUrl, token, 'PATCH', `/Users/${ids[i]}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', value: { active: false } }],
      });
      patches.push(performance.now() - t);
      if (patched.status !== 200) throw new Error(`patch ${i}: ${patched.status}`);
    });
    const patchSeconds = (performance.now() - patchStarted) / 1000;

    const listStarted = performance.now();
    const page = await scim(env.serverUrl, token, 'GET', '/Users?startIndex=1&count=200');
    const listMs = performance.now() - listStarted;
    if (page.body.totalResults !== users) throw new Error(`list says ${String(page.body.totalResults)} users`);

    const results = {
      users,
      concurrency,
      provisioning: {
        usersPerSecond: Math.round(users / provisionSeconds),
        seconds: Math.round(provisionSeconds * 10) / 10,
        lookup: summarise(lookups, provisionSeconds),
        create: summarise(creates, provisionSeconds),
        allRequests: summarise([...lookups, ...creates], provisionSeconds),
      },
      deactivation: summarise(patches, patchSeconds),
      firstPageOf200Ms: Math.round(listMs * 10) / 10,
    };
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
  } finally {
    await env.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`[bench] failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
