/**
 * The CLI as a person and a script use it: the real bin/kubevisa process against a fake API on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { commands } from './commands.ts';
import { writeCredential } from './config.ts';
import { aReceipt, aReceiptStep, aVisa, CAROL, FakeApi, problem, SESSION_SECRET } from './testing/fake-api.ts';
import { makeSandbox, seedLogin, type Sandbox } from './testing/run-cli.ts';

let api: FakeApi;
let sandbox: Sandbox;

before(async () => {
  api = await FakeApi.start();
});
after(async () => {
  await api.close();
});
beforeEach(async () => {
  api.requests.length = 0;
  sandbox = await makeSandbox();
  await seedLogin(sandbox, api.url);
});
afterEach(async () => {
  await sandbox.remove();
});

describe('help and usage', () => {
  test('--help for every command exits 0 and shows usage and an example of that command', async () => {
    // Four at a time: some forty node processes started at once on a 2-core machine each take longer than a
    // run's time limit, which says nothing about --help.
    const results: Awaited<ReturnType<typeof sandbox.run>>[] = [];
    for (let next = 0; next < commands.length; next += 4) {
      const batch = commands.slice(next, next + 4).map((c) => sandbox.run([...c.path, '--help']));
      results.push(...(await Promise.all(batch)));
    }
    commands.forEach((spec, i) => {
      const { code, stdout } = results[i] ?? assert.fail('no result');
      const name = spec.path.join(' ');
      assert.equal(code, 0, `kubevisa ${name} --help`);
      assert.match(stdout, /Usage: kubevisa /, name);
      assert.match(stdout, new RegExp(`Examples:\\n  kubevisa ${name}`), name);
    });
  });

  test('an unknown flag exits 2, names the flag and points at --help, without calling the server', async () => {
    const result = await sandbox.run(['request', '--cluster', 'prod', '--bogus']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Unknown option '--bogus'\. Run 'kubevisa request --help' for the options/);
    assert.deepEqual(api.calls(), []);
  });

  test('a missing required option exits 2 and says what it is for', async () => {
    const result = await sandbox.run([
      'request',
      '--cluster',
      'prod',
      '--ns',
      'payments',
      '--profile',
      'viewer',
      '--for',
      '8h',
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /missing --reason: why you need access/);
    assert.deepEqual(api.calls(), []);
  });

  test('a malformed duration or time is refused before anything is sent', async () => {
    const duration = await sandbox.run([
      'request',
      '--cluster',
      'p',
      '--ns',
      'a',
      '--profile',
      'v',
      '--for',
      '8 hours',
      '--reason',
      'r',
    ]);
    assert.equal(duration.code, 2);
    assert.match(duration.stderr, /--for: '8 hours' is not a duration; use .* 8h/);
    const time = await sandbox.run([
      'request',
      '--cluster',
      'p',
      '--ns',
      'a',
      '--profile',
      'v',
      '--for',
      '8h',
      '--reason',
      'r',
      '--start',
      '2026-03-03 09:00',
    ]);
    assert.equal(time.code, 2);
    assert.match(time.stderr, /--start: '2026-03-03 09:00' has no UTC offset/);
    assert.deepEqual(api.calls(), []);
  });

  test('an unknown output format is refused before the action runs', async () => {
    const result = await sandbox.run(['revoke', 'v_1', '--reason', 'done', '-o', 'xml']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown output format 'xml'/);
    assert.deepEqual(api.calls(), []);
  });
});

describe('requests and decisions', () => {
  test('request sends the documented body with a bearer token and says what happens next', async () => {
    api.on('POST', '/api/v1/visas', (request) => ({
      status: 201,
      body: aVisa({ namespaces: (request.body as { namespaces: string[] }).namespaces }),
    }));
    const result = await sandbox.runOk([
      'request',
      '--cluster',
      'prod',
      '--ns',
      'payments,ledger',
      '--ns',
      'refunds',
      '--profile',
      'developer',
      '--for',
      '8h',
      '--start',
      '2026-03-03T09:00:00+01:00',
      '--reason',
      'JIRA-123',
      '--engagement',
      'e_acme',
    ]);
    const sent = api.requests.find((r) => r.path === '/api/v1/visas');
    assert.deepEqual(sent?.body, {
      cluster: 'prod',
      namespaces: ['payments', 'ledger', 'refunds'],
      profile: 'developer',
      duration: '8h',
      startsAt: '2026-03-03T08:00:00Z',
      reason: 'JIRA-123',
      engagement: 'e_acme',
    });
    assert.match(String(sent?.headers.authorization), /^Bearer at-\d+$/);
    assert.match(result.stdout, /Visa v_8f2k1: requested/);
    assert.match(result.stdout, /Next: 1 approval needed/);
    assert.doesNotMatch(result.stdout + result.stderr, /at-\d+|kvs_/, 'no token or secret is printed');
  });

  test('a problem+json refusal prints its detail and code and exits 1', async () => {
    api.on(
      'POST',
      '/api/v1/visas/v_8f2k1/approve',
      problem(403, 'ERR_SELF_APPROVAL', 'you cannot approve your own request v_8f2k1'),
    );
    const result = await sandbox.run(['approve', 'v_8f2k1']);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'kubevisa: you cannot approve your own request v_8f2k1 [ERR_SELF_APPROVAL]\n');
    assert.equal(result.stdout, '');
  });

  test('approve sends only what narrows the request', async () => {
    api.on('POST', '/api/v1/visas/v_8f2k1/approve', { status: 200, body: aVisa({ state: 'active' }) });
    await sandbox.runOk(['approve', 'v_8f2k1', '--comment', 'ok', '--ns', 'payments', '--for', '4h']);
    assert.deepEqual(api.requests.at(-1)?.body, { comment: 'ok', namespaces: ['payments'], duration: '4h' });
    await sandbox.runOk(['approve', 'v_8f2k1']);
    assert.deepEqual(api.requests.at(-1)?.body, {});
  });

  test('deny, revoke, cancel and extend call their endpoints with their bodies', async () => {
    for (const action of ['deny', 'revoke', 'cancel']) {
      api.on('POST', `/api/v1/visas/v_1/${action}`, { status: 200, body: aVisa({ id: 'v_1', state: 'revoked' }) });
    }
    api.on('POST', '/api/v1/visas/v_1/extend', { status: 201, body: aVisa({ id: 'v_2', extends: 'v_1' }) });
    await sandbox.runOk(['deny', 'v_1', '--reason', 'use staging']);
    assert.deepEqual(api.requests.at(-1)?.body, { reason: 'use staging' });
    await sandbox.runOk(['revoke', 'v_1', '--reason', 'done']);
    assert.deepEqual(api.requests.at(-1)?.body, { reason: 'done' });
    await sandbox.runOk(['cancel', 'v_1']);
    assert.equal(api.requests.at(-1)?.path, '/api/v1/visas/v_1/cancel');
    const extended = await sandbox.runOk(['extend', 'v_1', '--for', '2h', '--reason', 'still migrating']);
    assert.deepEqual(api.requests.at(-1)?.body, { duration: '2h', reason: 'still migrating' });
    assert.match(extended.stdout, /Extension of v_1 requested as visa v_2/);
  });

  test('visas shows a table with relative deadlines and hides ended visas unless --all', async () => {
    api.on('GET', '/api/v1/visas', {
      status: 200,
      body: { items: [aVisa({ state: 'active' }), aVisa({ id: 'v_old', state: 'expired' })] },
    });
    const live = await sandbox.runOk(['visas', '--cluster', 'prod']);
    const lines = live.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID\s+PERSON\s+CLUSTER\s+NAMESPACES\s+PROFILE\s+STATE\s+NOT AFTER\s+REASON$/);
    assert.equal(lines.length, 2);
    assert.match(
      lines[1] ?? '',
      /v_8f2k1\s+carol@vendor\.example\s+prod\s+payments\s+developer\s+active\s+\S+Z \(in 3h\)\s+JIRA-123/,
    );
    assert.equal(api.requests.at(-1)?.query.get('cluster'), 'prod');
    const all = await sandbox.runOk(['visas', '--all']);
    assert.match(all.stdout, /v_old/);
  });

  test('-o json prints parseable JSON and -o yaml parseable YAML', async () => {
    api.on('GET', '/api/v1/visas', { status: 200, body: { items: [aVisa({ state: 'active' })] } });
    const json = await sandbox.runOk(['visas', '-o', 'json']);
    const parsed = JSON.parse(json.stdout) as { items: { id: string; notAfter: string }[] };
    assert.equal(parsed.items[0]?.id, 'v_8f2k1');
    const yaml = await sandbox.runOk(['whoami', '-o', 'yaml']);
    assert.equal((parseYaml(yaml.stdout) as { email: string }).email, CAROL.email);
  });

  test('engagement create sends the ceiling and the maximum visa length', async () => {
    api.on('POST', '/api/v1/engagements', (request) => {
      const body = request.body as Record<string, unknown>;
      return {
        status: 201,
        body: {
          id: 'e_new',
          status: 'active',
          startsAt: '2026-03-01T00:00:00Z',
          createdAt: '2026-03-01T00:00:00Z',
          createdBy: 'admin@corp.example',
          ...body,
        },
      };
    });
    const result = await sandbox.runOk([
      'engagement',
      'create',
      '--name',
      'acme-2026',
      '--vendor',
      'Acme Consulting',
      '--contractor',
      'carol@vendor.example,chris@vendor.example',
      '--sponsor',
      'sam@corp.example',
      '--ends',
      '2026-06-30T20:00:00+02:00',
      '--cluster',
      'prod',
      '--ns-pattern',
      'payments',
      '--ns-pattern',
      'staging-*',
      '--profile',
      'viewer,developer',
      '--max-visa',
      '8h',
    ]);
    assert.deepEqual(api.requests.at(-1)?.body, {
      name: 'acme-2026',
      vendor: 'Acme Consulting',
      contractors: ['carol@vendor.example', 'chris@vendor.example'],
      sponsor: 'sam@corp.example',
      endsAt: '2026-06-30T18:00:00Z',
      ceiling: { clusters: ['prod'], namespacePatterns: ['payments', 'staging-*'], profiles: ['viewer', 'developer'] },
      maxVisaDuration: '8h',
    });
    assert.match(result.stdout, /Engagement e_new \(acme-2026\) created/);
  });

  test('offboard prints the receipt as a table and exits 1 when a step failed', async () => {
    api.on('POST', '/api/v1/persons/carol%40vendor.example/offboard', {
      status: 201,
      body: aReceipt([
        aReceiptStep('visas', {
          detail: 'no live visa or pending request (2 ended by this or an earlier offboarding)',
        }),
        aReceiptStep('cluster/edge-7/serviceaccount', {
          status: 'unproven',
          detail: "could not be checked: cluster 'edge-7' is unreachable",
        }),
      ]),
    });
    const result = await sandbox.run(['offboard', 'carol@vendor.example', '--reason', 'contract ended']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^STEP\s+RESULT\s+DETAIL\n/);
    assert.match(
      result.stdout,
      /cluster edge-7: ServiceAccount deleted\s+FAILED\s+could not be checked: cluster 'edge-7'/,
    );
    assert.match(
      result.stderr,
      /offboarding carol@vendor\.example is incomplete: 1 of 2 step\(s\) failed \(cluster edge-7: ServiceAccount deleted\)/,
    );
    assert.deepEqual(api.requests.at(-1)?.body, { reason: 'contract ended' });
  });

  test('offboard prints each proven step, the streams it closed, and the summary that says who offboarded', async () => {
    api.on('POST', '/api/v1/persons/carol%40vendor.example/offboard', {
      status: 201,
      body: aReceipt(
        [
          aReceiptStep('sessions', { detail: 'all 1 session(s) are revoked or expired' }),
          aReceiptStep('streams-closed', {
            count: 1,
            detail: '1 stream(s) open at the commit closed (exec/attach on prod/payments)',
          }),
        ],
        {
          summary:
            'carol@vendor.example offboarded by sam@corp.example: contract ended. All 2 steps proven by live calls in 11.0 s.',
        },
      ),
    });
    const result = await sandbox.run(['offboard', 'carol@vendor.example', '--reason', 'contract ended']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /open streams closed \(kubectl exec.*\)\s+ok\s+1 stream\(s\) open at the commit closed/,
    );
    assert.match(
      result.stderr,
      /^carol@vendor\.example offboarded by sam@corp\.example: contract ended\. All 2 steps proven/,
    );
  });

  test('offboard exits 1 and says so while a step is still being proven', async () => {
    api.on('POST', '/api/v1/persons/carol%40vendor.example/offboard', {
      status: 201,
      body: aReceipt(
        [
          aReceiptStep('cluster/prod/token', {
            status: 'pending',
            detail: 'waiting for the ServiceAccount to be deleted',
          }),
        ],
        {
          id: 'o_2',
          summary: 'carol@vendor.example offboarded by sam@corp.example: left. 0 of 1 steps proven so far.',
        },
      ),
    });
    const result = await sandbox.run(['offboard', 'carol@vendor.example', '--reason', 'left']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /refused by kube-apiserver\s+PENDING\s+waiting/);
    assert.match(result.stderr, /1 of 1 step\(s\) are still being proven .*GET \/api\/v1\/offboardings\/o_2/);
  });

  test('profile list and engagement list render tables', async () => {
    api.on('GET', '/api/v1/profiles', {
      status: 200,
      body: {
        items: [
          {
            name: 'debugger',
            description: 'viewer + logs + exec',
            rules: [],
            declaredRisks: [{ risk: 'pods-exec', justification: 'debugging' }],
            maxVisaDuration: '4h',
            recordSessions: true,
          },
        ],
      },
    });
    const profiles = await sandbox.runOk(['profile', 'list']);
    assert.match(profiles.stdout, /debugger\s+4h\s+pods-exec\s+yes\s+viewer \+ logs \+ exec/);
    api.on('GET', '/api/v1/engagements', { status: 200, body: { items: [] } });
    const engagements = await sandbox.runOk(['engagement', 'list']);
    assert.equal(engagements.stdout, 'No resources found.\n');
  });
});

describe('session and tokens', () => {
  test('consecutive commands reuse the access token saved in session.json', async () => {
    const minted = api.tokensMinted;
    await sandbox.runOk(['whoami']);
    await sandbox.runOk(['whoami']);
    assert.equal(api.tokensMinted, minted + 1, 'one token exchange for two commands');
    const session = JSON.parse(await readFile(join(sandbox.configDir, 'session.json'), 'utf8')) as Record<
      string,
      string
    >;
    assert.match(session.accessToken ?? '', /^at-\d+$/);
    assert.equal((await stat(join(sandbox.configDir, 'session.json'))).mode & 0o777, 0o600);
  });

  test('a saved token with less than a minute left is replaced before use', async () => {
    api.acceptToken('at-almost-expired');
    await seedLogin(sandbox, api.url, {
      accessToken: 'at-almost-expired',
      accessTokenExpiresAt: new Date(Date.now() + 50_000).toISOString(),
    });
    await sandbox.runOk(['whoami']);
    const me = api.requests.find((r) => r.path === '/api/v1/me');
    assert.notEqual(me?.headers.authorization, 'Bearer at-almost-expired');
    assert.ok(api.requests.some((r) => r.path === '/api/v1/sessions/token'));
  });

  test('a session file readable by others is refused with the chmod that fixes it, and the secret is not sent', async () => {
    const file = join(sandbox.configDir, 'session.json');
    await chmod(file, 0o644);
    const result = await sandbox.run(['whoami']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /refusing to use .*session\.json: its mode is 0644.*chmod 600 .*session\.json/);
    assert.match(result.stderr, /\[ERR_INSECURE_FILE\]/);
    assert.deepEqual(api.calls(), []);
  });

  test('a session for another server is not sent to the server named with --server', async () => {
    const other = await FakeApi.start();
    try {
      const result = await sandbox.run(['whoami', '--server', other.url]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`you are logged in to ${api.url}, not ${other.url}`));
      assert.deepEqual(other.calls(), []);
    } finally {
      await other.close();
    }
  });

  test('an ended session tells the person to log in again', async () => {
    api.sessionSecret = 'kvs_another-secret';
    try {
      const result = await sandbox.run(['whoami']);
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /refused your session: the session has ended \[ERR_UNAUTHENTICATED\]\. Run 'kubevisa login --server/,
      );
    } finally {
      api.sessionSecret = SESSION_SECRET;
    }
  });

  test('an unreachable server is named, with what to check', async () => {
    const gone = await FakeApi.start();
    const url = gone.url;
    await gone.close();
    await seedLogin(sandbox, url);
    const result = await sandbox.run(['whoami']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`cannot reach the kubevisa server at ${url} \\(connection refused\\)`));
    assert.match(result.stderr, /kubevisa server/);
    assert.match(result.stderr, /--server/);
    assert.match(result.stderr, /\[ERR_SERVER_UNREACHABLE\]/);
  });

  test('logout ends the session on the server and removes the session and cached tokens', async () => {
    api.on('DELETE', '/api/v1/sessions/current', { status: 204 });
    await writeCredential(sandbox.configDir, {
      server: api.url,
      cluster: 'prod',
      token: 'tok',
      expirationTimestamp: new Date(Date.now() + 600_000).toISOString(),
    });
    const result = await sandbox.runOk(['logout']);
    assert.ok(api.calls().includes('DELETE /api/v1/sessions/current'));
    assert.match(result.stdout, /Logged out of .* \(carol@vendor\.example\)/);
    await assert.rejects(stat(join(sandbox.configDir, 'session.json')), { code: 'ENOENT' });
    await assert.rejects(stat(join(sandbox.configDir, 'credentials', 'prod.json')), { code: 'ENOENT' });
    const again = await sandbox.runOk(['logout']);
    assert.match(again.stdout, /not logged in/);
  });

  test('logout removes the local session even when the server cannot be reached, and says so with exit 1', async () => {
    const gone = await FakeApi.start();
    const url = gone.url;
    await gone.close();
    await seedLogin(sandbox, url, {
      accessToken: 'at-x',
      accessTokenExpiresAt: new Date(Date.now() + 600_000).toISOString(),
    });
    const result = await sandbox.run(['logout']);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /removed your session and cached tokens from this machine, but could not end the session on/,
    );
    assert.match(result.stderr, /\[ERR_SERVER_UNREACHABLE\]/);
    await assert.rejects(stat(join(sandbox.configDir, 'session.json')), { code: 'ENOENT' });
  });
});

describe('the one obvious argument', () => {
  test('audit evidence takes the engagement as people type it, or as --engagement', async () => {
    api.on('POST', '/api/v1/audit/evidence', problem(404, 'ERR_NOT_FOUND', 'no engagement acme-2026'));
    const positional = await sandbox.run(['audit', 'evidence', 'acme-2026']);
    assert.equal(positional.code, 1, positional.stderr);
    assert.deepEqual(api.requests.at(-1)?.body, { engagement: 'acme-2026' });
    const option = await sandbox.run(['audit', 'evidence', '--engagement', 'acme-2026']);
    assert.equal(option.code, 1, option.stderr);
    assert.deepEqual(api.requests.at(-1)?.body, { engagement: 'acme-2026' });
  });

  test('the same argument given twice differently, or two of them, exit 2 and send nothing', async () => {
    for (const args of [
      ['audit', 'evidence', 'acme-2026', '--engagement', 'other'],
      ['audit', 'evidence', 'acme-2026', 'other'],
      ['scim', 'token', 'create', 'okta', '--idp', 'entra'],
      ['scan', 'cluster', 'prod', 'staging'],
    ]) {
      const result = await sandbox.run(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /given twice|too many arguments/, args.join(' '));
    }
    assert.deepEqual(api.calls(), []);
  });

  test('scim token create and scan cluster take theirs positionally', async () => {
    api.on('POST', '/api/v1/scim/tokens', {
      status: 201,
      body: { id: 'st_1', idp: 'okta', token: 'kvscim_x', createdAt: new Date().toISOString() },
    });
    await sandbox.run(['scim', 'token', 'create', 'okta']);
    assert.deepEqual(api.requests.at(-1)?.body, { idp: 'okta' });
    api.on('POST', '/api/v1/monitoring/scans/prod', problem(404, 'ERR_NOT_FOUND', 'no cluster prod'));
    await sandbox.run(['scan', 'cluster', 'prod']);
    assert.equal(api.requests.at(-1)?.path, '/api/v1/monitoring/scans/prod');
  });

  test('a command that takes no argument refuses a stray one with exit 2', async () => {
    for (const args of [
      ['whoami', 'carol'],
      ['visas', 'requested'],
      ['logout', 'now'],
      ['demo', 'start'],
    ]) {
      const result = await sandbox.run(args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, new RegExp(`unexpected argument '${args[1]}'`), args.join(' '));
    }
    assert.deepEqual(api.calls(), []);
  });
});

describe('scan cluster', () => {
  test('without findings prints the summary alone, no empty-table line before it', async () => {
    api.on('POST', '/api/v1/monitoring/scans/prod', {
      status: 200,
      body: {
        cluster: 'prod',
        scannedAt: new Date().toISOString(),
        durations: { listMs: 3, analyzeMs: 2 },
        counts: { bindings: 12, subjects: 7 },
        coverage: { roleBindings: 'listed' },
        findings: [],
        changes: { added: [], resolved: [] },
      },
    });
    const result = await sandbox.runOk(['scan', 'cluster', 'prod']);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^Cluster prod: 12 bindings, 7 subjects, scanned in 5 ms; no finding shown\.\n$/);
    const json = await sandbox.runOk(['scan', 'cluster', 'prod', '-o', 'json']);
    assert.deepEqual((JSON.parse(json.stdout) as { findings: unknown[] }).findings, []);
  });
});
