// The audit trail end to end on a real cluster, the real OIDC provider and the real server: every action is in
// the trail and can be found, exported, verified (by the server and offline) and packed as evidence with the
// CLI; an unwritable audit store refuses actions with 503 and changes nothing in the cluster; and kill -9 in
// the middle of a burst of actions loses none that was acknowledged.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PersonJson } from '../src/cli/api-types.ts';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import {
  api,
  CLUSTER,
  cliPath,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let admin: { token: string; sessionSecret: string; personId: string };
let approver: string;
let cora: { token: string; personId: string };
let cliDir: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
const rbExists = async (namespace: string, visaId: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;
/** Runs the CLI in `cwd` with its state folder `configDir`. */
function run(args: string[], configDir: string, cwd = process.cwd()) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(cliPath, args, {
      cwd,
      env: { ...process.env, KUBEVISA_CONFIG_DIR: configDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
/** The CLI as an admin would run it, logged in through the session this test bought. */
const cli = (args: string[]) => run(args, cliDir);

async function request(namespaces: string[], reason = 'audit test') {
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces,
    duration: '1h',
    reason,
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  return String(requested.body.id);
}

async function events(query: string) {
  const answer = await call('GET', `/api/v1/audit/events?${query}`, admin.token);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body.items as { seq: number; action: string; visaId?: string; actor: string; namespace?: string }[];
}

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false });
  for (const ns of ['a-search', 'a-closed-1', 'a-closed-2', 'a-burst']) await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  admin = await loginAs(env.serverUrl, people.sam);
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin.token, {
    name: 'audited',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['a-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  cliDir = await mkdtemp(join(tmpdir(), 'kubevisa-audit-cli-'));
  await writeConfig(cliDir, { server: env.serverUrl });
  await writeSession(cliDir, {
    server: env.serverUrl,
    sessionSecret: admin.sessionSecret,
    sessionExpiresAt: inDays(1),
    person: (await call('GET', '/api/v1/me', admin.token)).body as unknown as PersonJson,
  });
});
after(async () => {
  await env?.stop();
  if (cliDir) await rm(cliDir, { recursive: true, force: true });
});

describe('the trail over the API and the CLI', () => {
  let visaId: string;

  before(async () => {
    visaId = await request(['a-search'], 'JIRA-77: search me');
    assert.equal((await call('POST', `/api/v1/visas/${visaId}/approve`, approver, {})).status, 200);
    await eventually('RoleBinding created', 10_000, () => rbExists('a-search', visaId));
    assert.equal((await call('POST', `/api/v1/visas/${visaId}/revoke`, admin.token, { reason: 'done' })).status, 200);
    await eventually('RoleBinding removed', 10_000, async () => !(await rbExists('a-search', visaId)));
  });

  test("every step of a visa's life is in the trail, found by visa, person, cluster, namespace and time", async () => {
    const ofVisa = (await events(`visa=${visaId}`)).map((e) => e.action);
    for (const action of ['visa.requested', 'visa.approved', 'cluster.rolebinding.create', 'visa.revoked']) {
      assert.ok(
        ofVisa.some((a) => a.startsWith(action)),
        `${action} in ${ofVisa.join(', ')}`,
      );
    }
    const byCora = await events(`person=${encodeURIComponent(people.cora.email)}&action=visa.requested`);
    assert.ok(byCora.some((e) => e.visaId === visaId));
    const inNamespace = await events(`cluster=${CLUSTER}&namespace=a-search`);
    assert.ok(inNamespace.length > 0 && inNamespace.every((e) => e.namespace === 'a-search'));
    const future = await events(`visa=${visaId}&since=${encodeURIComponent(inDays(1))}`);
    assert.deepEqual(future, []);
    const newest = await events('order=desc&limit=2');
    assert.equal(newest.length, 2);
    assert.ok((newest[0]?.seq ?? 0) > (newest[1]?.seq ?? 0));
  });

  test('only admins and auditors read the trail', async () => {
    const refused = await call('GET', '/api/v1/audit/events', cora.token);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_NOT_AN_AUDITOR');
    assert.match(refused.contentType, /application\/problem\+json/);
    assert.equal((await call('POST', '/api/v1/audit/checkpoints', cora.token)).status, 403);
    const bad = await call('GET', '/api/v1/audit/events?since=yesterday', admin.token);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'ERR_INVALID_INPUT');
  });

  test('text that cannot be stored as hashed is refused at the door, and the trail still verifies', async () => {
    // JSON may carry a lone surrogate ("\ud800"); stored, it would read back as U+FFFD and break the chain.
    const badVisa = await call('POST', '/api/v1/visas', cora.token, {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: ['a-search'],
      duration: '1h',
      reason: 'JIRA-1 \ud800',
    });
    assert.equal(badVisa.status, 400, JSON.stringify(badVisa.body));
    assert.equal(badVisa.body.code, 'ERR_INVALID_INPUT');
    assert.match(String(badVisa.body.detail), /reason: contains a lone UTF-16 surrogate/);
    const pending = await request(['a-search'], 'JIRA-2: to deny');
    const badDenial = await call('POST', `/api/v1/visas/${pending}/deny`, approver, { reason: 'no \udfff' });
    assert.equal(badDenial.status, 400, JSON.stringify(badDenial.body));
    assert.match(String(badDenial.body.detail), /reason: contains a lone UTF-16 surrogate/);
    assert.equal(
      (await call('GET', `/api/v1/visas/${pending}`, cora.token)).body.state,
      'requested',
      'nothing changed',
    );
    assert.equal((await call('POST', `/api/v1/visas/${pending}/deny`, approver, { reason: 'no 😀' })).status, 200);
    const verdict = await call('POST', '/api/v1/audit/verify', admin.token, {});
    assert.equal(verdict.body.ok, true, String(verdict.body.summary));
  });

  test('the CLI searches, tails, exports, checkpoints and verifies, on the server and offline', async () => {
    const search = await cli(['audit', 'search', '--visa', visaId, '-o', 'json']);
    assert.equal(search.code, 0, search.stderr);
    assert.ok(
      (JSON.parse(search.stdout) as { items: { action: string }[] }).items.some((e) => e.action === 'visa.revoked'),
    );
    const tail = await cli(['audit', 'tail', '-n', '3']);
    assert.equal(tail.code, 0, tail.stderr);
    assert.match(tail.stdout, /^SEQ\s+TIME\s+ACTOR\s+ACTION/);

    const checkpoint = await cli(['audit', 'checkpoint', '-o', 'json']);
    assert.equal(checkpoint.code, 0, checkpoint.stderr);
    const work = await mkdtemp(join(tmpdir(), 'kubevisa-audit-files-'));
    try {
      await writeFile(join(work, 'checkpoint.json'), checkpoint.stdout);
      const key = await call('GET', '/api/v1/audit/public-key', admin.token);
      await writeFile(join(work, 'key.pem'), String(key.body.publicKeyPem));
      const trail = join(work, 'trail.jsonl');
      const exported = await cli(['audit', 'export', '--out', trail]);
      assert.equal(exported.code, 0, exported.stderr);
      const offline = ['audit', 'verify', '--from', trail, '--checkpoint', join(work, 'checkpoint.json')];
      const verified = await cli([...offline, '--public-key', join(work, 'key.pem')]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      assert.match(verified.stdout, /^.*key .*\nOK: \d+ record\(s\) verify/m);

      // One flipped byte in the middle of line 3: named, and the exit status says so.
      const bytes = await readFile(trail);
      const lineStart = bytes.indexOf('\n', bytes.indexOf('\n') + 1) + 1;
      bytes[lineStart + 150] = (bytes[lineStart + 150] as number) ^ 0x02;
      await writeFile(trail, bytes);
      const tampered = await cli([...offline, '--public-key', join(work, 'key.pem')]);
      assert.equal(tampered.code, 1);
      assert.match(tampered.stdout, /FAILED: line 3 \(seq 3\): content does not match its hash/);

      const onServer = await cli(['audit', 'verify', '-o', 'json']);
      assert.equal(onServer.code, 0, onServer.stdout + onServer.stderr);
      const verdict = JSON.parse(onServer.stdout) as { ok: boolean; checkpoints: { status: string }[] };
      assert.equal(verdict.ok, true);
      assert.ok(verdict.checkpoints.every((finding) => finding.status === 'matches'));
      // The CLI remembers the newest checkpoint it verified, to hold the server to it next time.
      const remembered = JSON.parse(await readFile(join(cliDir, 'audit-checkpoints.json'), 'utf8')) as Record<
        string,
        { seq: number }
      >;
      assert.ok((remembered[env.serverUrl]?.seq ?? 0) >= (JSON.parse(checkpoint.stdout) as { seq: number }).seq);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  test('audit tail --follow shows events as they are appended, until Ctrl-C', async () => {
    const follow = spawn(cliPath, ['audit', 'tail', '--follow', '-n', '1', '-o', 'json'], {
      env: { ...process.env, KUBEVISA_CONFIG_DIR: cliDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    follow.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await eventually('the newest event is shown', 20_000, async () => output.includes('\n'));
      const id = await request(['a-search'], 'followed');
      await eventually('the new request is shown', 20_000, async () =>
        output
          .trim()
          .split('\n')
          .some((line) => {
            const event = JSON.parse(line) as { action: string; visaId?: string };
            return event.action === 'visa.requested' && event.visaId === id;
          }),
      );
      follow.kill('SIGINT');
      const [code] = (await once(follow, 'exit')) as [number | null];
      assert.equal(code, 0);
    } finally {
      if (follow.exitCode === null && follow.signalCode === null) follow.kill('SIGKILL');
    }
  });

  test('an evidence pack verifies offline as its README says, showing only its engagement', async () => {
    const work = await mkdtemp(join(tmpdir(), 'kubevisa-evidence-'));
    const pack = join(work, 'pack');
    try {
      const made = await cli(['audit', 'evidence', '--engagement', 'audited', '--out', pack]);
      assert.equal(made.code, 0, made.stdout + made.stderr);
      assert.match(made.stdout, /Verification: OK/);
      assert.deepEqual((await readdir(pack)).sort(), [
        'README.md',
        'checkpoints.json',
        'engagement.json',
        'events.jsonl',
        'manifest.json',
        'public-key.pem',
      ]);
      const readme = await readFile(join(pack, 'README.md'), 'utf8');
      const command = /^ {7}(kubevisa audit verify .*)$/m.exec(readme)?.[1];
      assert.ok(command, 'the README gives the command');
      // The auditor runs it in the pack's folder, logged in nowhere.
      const offline = await run(command.split(' ').slice(1), join(work, 'no-login'), pack);
      assert.equal(offline.code, 0, offline.stdout + offline.stderr);
      assert.match(offline.stdout, /OK: \d+ record\(s\) verify \(seq \d+\.\.\d+, \d+ redacted\)/);
      const records = (await readFile(join(pack, 'events.jsonl'), 'utf8'))
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const engagementId = (JSON.parse(await readFile(join(pack, 'engagement.json'), 'utf8')) as { id: string }).id;
      const visas = await call('GET', `/api/v1/visas?engagement=${engagementId}`, admin.token);
      const visaIds = new Set((visas.body.items ?? []).map((visa) => String(visa.id)));
      const shown = records.filter((record) => record.redacted !== true);
      assert.ok(shown.some((record) => record.action === 'engagement.created' && record.engagementId === engagementId));
      for (const record of shown) {
        assert.ok(
          record.engagementId === engagementId ||
            visaIds.has(String(record.visaId)) ||
            (record.engagementId === undefined && record.personId === cora.personId),
          `shown record belongs to the engagement: ${JSON.stringify(record)}`,
        );
      }
      assert.ok(
        records.some((record) => record.redacted === true),
        'logins of others are redacted',
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('a server process', () => {
  before(async () => {
    await env.server?.stop();
    env.server = undefined;
  });

  // RLIMIT_FSIZE 0 (soft) on the running server: the kernel refuses every write it makes to any file, exactly as
  // a full or failing disk would, while reads keep working. Nothing is mocked: the server's own SQLite gets EFBIG.
  test('an unwritable audit store makes actions fail with 503 and changes nothing in the cluster', async () => {
    const server = await startServerProcess(env);
    try {
      const granted = await request(['a-closed-1']);
      assert.equal((await call('POST', `/api/v1/visas/${granted}/approve`, approver, {})).status, 200);
      await eventually('RoleBinding created', 10_000, () => rbExists('a-closed-1', granted));
      const pending = await request(['a-closed-2']);
      const before = (await events('order=desc&limit=1'))[0]?.seq ?? 0;

      execFileSync('prlimit', ['--pid', String(server.pid), '--fsize=0:unlimited']);
      try {
        const refusals = [
          await call('POST', `/api/v1/visas/${pending}/approve`, approver, {}),
          await call('POST', `/api/v1/visas/${granted}/revoke`, admin.token, { reason: 'cannot be recorded' }),
          await call('POST', '/api/v1/visas', cora.token, {
            profile: 'viewer',
            cluster: CLUSTER,
            namespaces: ['a-closed-2'],
            duration: '1h',
            reason: 'not recorded, not done',
          }),
        ];
        for (const refused of refusals) {
          assert.equal(refused.status, 503, JSON.stringify(refused.body));
          assert.equal(refused.body.code, 'ERR_STORE_UNAVAILABLE');
          assert.match(refused.contentType, /application\/problem\+json/);
        }
        // The gateway fails closed too: once a batch of its request events could not be written, it relays nothing.
        const gatewayPath = `/clusters/${CLUSTER}/api/v1/namespaces/a-closed-1/configmaps`;
        await api(env.serverUrl, 'GET', gatewayPath, { token: cora.token });
        await eventually('the gateway refuses while its trail cannot be written', 5000, async () => {
          const answer = await api(env.serverUrl, 'GET', gatewayPath, { token: cora.token });
          return answer.status === 503 && /audit trail cannot be written/.test(String(answer.body.message));
        });
        // Two full resyncs later the cluster still holds exactly what it held.
        await new Promise((resolve) => setTimeout(resolve, 11_000));
        assert.equal(await rbExists('a-closed-1', granted), true, 'the refused revoke removed nothing');
        assert.equal(await rbExists('a-closed-2', pending), false, 'the refused approval granted nothing');
        assert.equal((await call('GET', `/api/v1/visas/${granted}`, admin.token)).body.state, 'active');
        assert.equal((await call('GET', `/api/v1/visas/${pending}`, admin.token)).body.state, 'requested');
        assert.equal((await events('order=desc&limit=1'))[0]?.seq, before, 'nothing was appended');
      } finally {
        execFileSync('prlimit', ['--pid', String(server.pid), '--fsize=unlimited:unlimited']);
      }
      // Once the disk takes writes again, so does kubevisa (the gateway included); the trail is whole.
      await eventually('the gateway relays again', 10_000, async () => {
        const answer = await api(env.serverUrl, 'GET', `/clusters/${CLUSTER}/api/v1/namespaces/a-closed-1/configmaps`, {
          token: cora.token,
        });
        return answer.status === 200;
      });
      assert.equal((await call('POST', `/api/v1/visas/${granted}/revoke`, admin.token, { reason: 'now' })).status, 200);
      await eventually('RoleBinding removed', 10_000, async () => !(await rbExists('a-closed-1', granted)));
      const verdict = await call('POST', '/api/v1/audit/verify', admin.token, {});
      assert.equal(verdict.body.ok, true, String(verdict.body.summary));
    } finally {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
  });

  test('kill -9 of the server during a burst of audited actions loses no acknowledged event', async () => {
    let server = await startServerProcess(env);
    const acknowledged: string[] = [];
    let burst = true;
    const client = async () => {
      while (burst) {
        try {
          const answer = await call('POST', '/api/v1/visas', cora.token, {
            profile: 'viewer',
            cluster: CLUSTER,
            namespaces: ['a-burst'],
            duration: '1h',
            reason: 'burst',
          });
          if (answer.status === 201) acknowledged.push(String(answer.body.id));
        } catch {
          // The connection died with the server: this request was never acknowledged, which is the point.
          return;
        }
      }
    };
    const clients = Array.from({ length: 16 }, () => client());
    await eventually('the burst is under way', 20_000, async () => acknowledged.length >= 100);
    server.kill('SIGKILL');
    await waitForExit(server);
    burst = false;
    await Promise.all(clients);
    const ackedCount = acknowledged.length;
    assert.ok(ackedCount >= 100);

    server = await startServerProcess(env);
    try {
      const recorded = new Set<string>();
      let after = 0;
      for (;;) {
        const page = await call(
          'GET',
          `/api/v1/audit/events?action=visa.requested&after=${after}&limit=5000`,
          admin.token,
        );
        const items = page.body.items as { seq: number; visaId: string }[];
        for (const item of items) recorded.add(item.visaId);
        if (items.length < 5000) break;
        after = items.at(-1)?.seq ?? after;
      }
      const lost = acknowledged.filter((id) => !recorded.has(id));
      assert.deepEqual(lost, [], `${lost.length} of ${ackedCount} acknowledged requests have no audit event`);
      const verdict = await call('POST', '/api/v1/audit/verify', admin.token, {});
      assert.equal(verdict.body.ok, true, String(verdict.body.summary));
    } finally {
      server.kill('SIGTERM');
      await waitForExit(server);
    }
  });
});
