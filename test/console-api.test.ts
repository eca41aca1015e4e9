// The console's routes and the engagement end date over real HTTP, against a real server and the real OIDC provider
// (no cluster: the engagement and its visas are written to the server's store as the API would write them). Who
// may call each route, and what it answers. ann holds no role here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import type { PersonJson } from '../src/cli/api-types.ts';
import { runCli } from '../src/cli/testing/run-cli.ts';
import { newId } from '../src/store/ids.ts';
import { requestVisa } from '../src/domain/visa.ts';
import { findShippedProfile } from '../src/rbac/profiles.ts';
import { api, loginAs, people } from './support/kubevisa-env.ts';
import { startLightEnv, type LightEnv } from './support/identity.ts';

const HOUR = 3600_000;
let env: LightEnv;
let ann: string;
let cora: string;
const engagementId = 'e_console_api';
let running: string;
let later: string;

before(async () => {
  env = await startLightEnv();
  ann = (await loginAs(env.serverUrl, people.ann)).token;
  const coraLogin = await loginAs(env.serverUrl, people.cora);
  cora = coraLogin.token;
  const { store, context } = env.server;
  const now = Date.now();
  const person = (await store.getPersonByEmail(people.cora.email))!;
  const engagement = {
    id: engagementId,
    name: 'console-api',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    startsAt: now - HOUR,
    endsAt: now + 30 * 24 * HOUR,
    ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['viewer', 'debugger'] },
    maxVisaSeconds: 8 * 3600,
    status: 'active' as const,
    createdAt: now - HOUR,
    createdBy: people.sam.email,
  };
  const policy = context.config.policy;
  const ask = (profile: string, startsAt: number, seconds: number) =>
    requestVisa(
      {
        id: newId('v_'),
        cluster: 'prod',
        namespaces: ['payments'],
        profile,
        durationSeconds: seconds,
        startsAt,
        reason: 'JIRA-1',
      },
      { person, engagement, profile: findShippedProfile(profile)!, policy, now },
    );
  const approved = (visa: ReturnType<typeof ask>) => ({
    ...visa,
    state: 'approved' as const,
    approvals: [{ by: people.ann.email, at: now }],
    decidedAt: now,
    decidedBy: people.ann.email,
  });
  await store.transaction(async (tx) => {
    await tx.insertEngagement(engagement);
    running = (await tx.insertVisa(approved(ask('viewer', now, 4 * 3600)))).id;
    later = (await tx.insertVisa(approved(ask('viewer', now + 3 * HOUR, 3600)))).id;
    await tx.insertVisa(ask('debugger', now, 2 * 3600));
  });
});
after(async () => {
  await env?.stop();
});

test("the queue answers each request with the policy's verdict and the profile's findings", async () => {
  const queue = await api(env.serverUrl, 'GET', '/api/v1/console/queue', { token: env.admin });
  assert.equal(queue.status, 200, JSON.stringify(queue.body));
  const [item] = queue.body.items ?? [];
  assert.equal(item?.profile, 'debugger');
  assert.equal((item?.verdict as { kind: string }).kind, 'grants');
  const findings = item?.findings as { risk: string; justification?: string }[];
  assert.ok(
    findings.some((f) => f.risk === 'pods-exec' && f.justification),
    JSON.stringify(findings),
  );
  const own = await api(env.serverUrl, 'GET', '/api/v1/console/queue', { token: cora });
  assert.equal(((own.body.items ?? [])[0]?.verdict as { code?: string }).code, 'ERR_SELF_APPROVAL');
});

test('people: admins and auditors read sessions and identity provider status; anyone else may not', async () => {
  const answer = await api(env.serverUrl, 'GET', '/api/v1/console/people', { token: env.admin });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const coraRow = (answer.body.items ?? []).find((p) => p.email === people.cora.email);
  const sessions = coraRow?.sessions as { state: string; secretHash?: string }[];
  assert.ok(sessions.some((s) => s.state === 'open'));
  assert.equal(JSON.stringify(answer.body).includes('secretHash'), false, 'no secret material');
  assert.deepEqual(coraRow?.identityProviders, []);
  const refused = await api(env.serverUrl, 'GET', '/api/v1/console/people', { token: ann });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, 'ERR_NOT_AN_AUDITOR');
});

test('the end date over HTTP: refusals change nothing; an earlier end shortens and ends visas', async () => {
  const path = `/api/v1/engagements/${engagementId}/end-date`;
  const soon = new Date(Date.now() + 2 * HOUR).toISOString();
  for (const [token, status, code] of [
    [ann, 404, 'ERR_NOT_FOUND'],
    [cora, 403, 'ERR_FORBIDDEN'],
  ] as const) {
    const refused = await api(env.serverUrl, 'POST', path, { token, body: { endsAt: soon, reason: 'no' } });
    assert.equal(refused.status, status, JSON.stringify(refused.body));
    assert.equal(refused.body.code, code);
  }
  const bad = await api(env.serverUrl, 'POST', path, { token: env.admin, body: { endsAt: 'soon', reason: 'x' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'ERR_INVALID_INPUT');
  const missing = await api(env.serverUrl, 'POST', path, { token: env.admin, body: { endsAt: soon } });
  assert.equal(missing.status, 400);
  const stored = await env.server.store.getEngagement(engagementId);
  assert.equal(stored?.endsAt, stored!.startsAt + HOUR + 30 * 24 * HOUR, 'unchanged by the refusals');

  const changed = await api(env.serverUrl, 'POST', path, {
    token: env.admin,
    body: { endsAt: soon, reason: 'scope cut' },
  });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.deepEqual(changed.body.visasShortened, [running]);
  assert.deepEqual(changed.body.visasEnded, [later]);
  assert.equal((await env.server.store.getVisa(running))?.notAfter, Date.parse(soon));
  assert.equal((await env.server.store.getVisa(later))?.state, 'revoked');
});

/** Listens to the console's event stream as the bearer of `token`; `kinds` fills as events arrive. */
function listen(token: string): { kinds: string[]; close(): void } {
  const kinds: string[] = [];
  const req: ClientRequest = httpRequest(new URL('/api/v1/console/events', env.serverUrl), {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
  });
  req.on('response', (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      for (const match of chunk.matchAll(/^event: (\S+)$/gm)) kinds.push(match[1]!);
    });
  });
  req.on('error', () => undefined);
  req.end();
  return { kinds, close: () => req.destroy() };
}

test('the live audit tick reaches only those who may read the audit; everyone hears that visas changed', async () => {
  const admin = listen(env.admin);
  const contractor = listen(cora);
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500)); // both connected, the audit head read once
    const pending = (await api(env.serverUrl, 'GET', '/api/v1/visas?state=requested', { token: cora })).body.items;
    const id = String(pending?.[0]?.id);
    assert.equal((await api(env.serverUrl, 'POST', `/api/v1/visas/${id}/cancel`, { token: cora })).status, 200);
    for (let i = 0; i < 100 && !(admin.kinds.includes('audit') && contractor.kinds.includes('visas')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(admin.kinds.includes('audit'), `the admin hears of the audit event: ${admin.kinds.join(',')}`);
    assert.ok(contractor.kinds.includes('visas'), `the contractor hears visas changed: ${contractor.kinds.join(',')}`);
    assert.equal(
      contractor.kinds.includes('audit'),
      false,
      `no audit tick for a contractor: ${contractor.kinds.join(',')}`,
    );
  } finally {
    admin.close();
    contractor.close();
  }
});

test('kubevisa engagement set-end: the real CLI moves the end date later, and no visa grows', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-set-end-'));
  try {
    const sam = await loginAs(env.serverUrl, people.sam);
    await writeConfig(dir, { server: env.serverUrl });
    await writeSession(dir, {
      server: env.serverUrl,
      sessionSecret: sam.sessionSecret,
      sessionExpiresAt: new Date(Date.now() + 24 * HOUR).toISOString(),
      person: (await api(env.serverUrl, 'GET', '/api/v1/me', { token: sam.token })).body as unknown as PersonJson,
    });
    const before = (await env.server.store.getVisa(running))!.notAfter;
    const ends = new Date(Date.now() + 60 * 24 * HOUR).toISOString();
    const args = ['engagement', 'set-end', 'console-api', '--ends', ends, '--reason', 'contract renewed'];
    const moved = await runCli(args, { configDir: dir, timeoutMs: 60_000 });
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(moved.stdout, /now ends at .*; no visa changed/);
    assert.equal((await env.server.store.getEngagement(engagementId))?.endsAt, Date.parse(ends));
    assert.equal((await env.server.store.getVisa(running))?.notAfter, before, 'a later end lengthens no visa');
    const missing = await runCli(['engagement', 'set-end', 'console-api', '--reason', 'x'], {
      configDir: dir,
      timeoutMs: 60_000,
    });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /missing --ends/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
