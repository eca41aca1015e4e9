// Direct mode end to end: the real server and control plane decide who may take a TokenRequest token (kubectl
// straight to kube-apiserver, no gateway), for how long, and what a refusal tells the person, through the API and
// through `kubevisa credential --direct` / `kubevisa kubeconfig --direct`.
import { runCli } from '../src/cli/testing/run-cli.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Profile } from '../src/domain/model.ts';
import { viewerProfile } from '../src/rbac/profiles.ts';
import { startServer } from '../src/server/main.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectl } from './support/kubectl.ts';

const { directMode: _viewerDirectMode, ...viewerRules } = viewerProfile;
/** Viewer's rules with session recording: gateway-only, and saying nothing about direct mode. */
const recordedViewer: Profile = {
  ...viewerRules,
  name: 'recorded-viewer',
  description: 'viewer, recorded (tests)',
  recordSessions: true,
};
/** Viewer plus exec, unrecorded: gateway-only because only the gateway cuts an exec at a revoke. */
const execViewer: Profile = {
  ...viewerRules,
  name: 'exec-viewer',
  description: 'viewer plus exec, unrecorded (tests)',
  rules: [...viewerProfile.rules, { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'] }],
  declaredRisks: [{ risk: 'pods-exec', justification: 'tests of direct mode' }],
};

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: { token: string; sessionSecret: string; personId: string };
let coraCli: string;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

async function grant(profile: string, namespaces: string[], duration = '1h') {
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile,
    cluster: CLUSTER,
    namespaces,
    duration,
    reason: 'direct mode test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return approved.body as { id: string; notAfter: string };
}

async function revoke(visaId: string, reason = 'test over') {
  const revoked = await call('POST', `/api/v1/visas/${visaId}/revoke`, admin, { reason });
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
}

const credential = () => call('POST', `/api/v1/clusters/${CLUSTER}/credential`, cora.token);

/** The claims of a JWT, unverified (the test only reads what kube-apiserver wrote). */
function claims(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Runs the real CLI with the test's state folder. */
function cli(args: string[], extraEnv: Record<string, string> = {}) {
  return runCli(args, { configDir: coraCli, timeoutMs: 60_000, env: extraEnv });
}

before(async () => {
  env = await startKubevisaEnv({ autoApproval: false, extraProfiles: [recordedViewer, execViewer] });
  await env.startInProcess();
  for (const ns of ['dm-view', 'dm-rec', 'dm-exec', 'dm-short', 'dm-cli', 'dm-revoke'])
    await env.kOk(['create', 'namespace', ns]);
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'direct',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(30),
    ceiling: {
      clusters: [CLUSTER],
      namespacePatterns: ['dm-*'],
      profiles: ['viewer', 'recorded-viewer', 'exec-viewer'],
    },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  coraCli = join(env.dir, 'cli-cora');
  await mkdir(coraCli, { recursive: true, mode: 0o700 });
  await writeFile(join(coraCli, 'config.json'), JSON.stringify({ server: env.serverUrl }));
  await writeFile(
    join(coraCli, 'session.json'),
    JSON.stringify({
      server: env.serverUrl,
      sessionSecret: cora.sessionSecret,
      sessionExpiresAt: new Date(Date.now() + 3600_000).toISOString(),
      person: { email: people.cora.email },
    }),
    { mode: 0o600 },
  );
});
after(async () => {
  await env?.stop();
});

describe('direct mode policy', () => {
  test('a viewer visa on a cluster that allows direct mode gets a token that ends by min(visa end, session end, now + 10 min)', async () => {
    const visa = await grant('viewer', ['dm-view']);
    try {
      const sessionId = String(claims(cora.token).sid);
      const session = await env.server!.store.getSession(sessionId);
      assert.ok(session, 'the session the access token names');
      const answer = await credential();
      const received = Date.now();
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const expires = Date.parse(String(answer.body.expirationTimestamp));
      const bound = Math.min(Date.parse(visa.notAfter), session.expiresAt, received + 10 * 60_000);
      assert.ok(expires <= bound, `expirationTimestamp ${String(answer.body.expirationTimestamp)} is after ${bound}`);
      // kube-apiserver signs the same instant into the token itself.
      const exp = Number(claims(String(answer.body.token)).exp) * 1000;
      assert.ok(exp <= bound, `the token's exp ${exp} is after ${bound}`);
      assert.ok(Math.abs(exp - expires) < 1000, 'exp and expirationTimestamp agree');
      assert.ok(expires > received + 9 * 60_000, 'it is a 10-minute token');

      const kubeconfig = await env.cp.writeTokenKubeconfig(String(answer.body.token), 'cora-viewer');
      await eventually('the RoleBinding lets the token list pods', 10_000, async () => {
        return (await env.k(['get', 'pods', '-n', 'dm-view'], kubeconfig)).code === 0;
      });
      const issued = await env.server!.store.listAudit({ action: 'credential.issued' });
      assert.deepEqual(issued.at(-1)?.details.visas, [visa.id]);
    } finally {
      await revoke(visa.id);
    }
  });

  test('a recording profile is refused with the reason and the way to the gateway, even if its row says allowed', async () => {
    const visa = await grant('recorded-viewer', ['dm-rec']);
    try {
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.code, 'ERR_DIRECT_MODE_DENIED');
      assert.equal(answer.body.reason, 'profile-gateway-only');
      assert.match(
        String(answer.body.detail),
        new RegExp(
          `visa ${visa.id} \\(profile 'recorded-viewer'\\) cannot be used in direct mode: it records sessions`,
        ),
      );
      assert.match(String(answer.body.detail), /'kubevisa kubeconfig --cluster test' \(without --direct\)/);
      assert.equal(answer.body.token, undefined);

      // A profile row edited behind kubevisa's back to say 'allowed' changes nothing: the rule is computed.
      await env.server!.store.transaction((tx) => tx.upsertProfile({ ...recordedViewer, directMode: 'allowed' }));
      const again = await credential();
      assert.equal(again.status, 403, JSON.stringify(again.body));
      assert.equal(again.body.reason, 'profile-gateway-only');

      const refused = await env.server!.store.listAudit({ action: 'credential.refused' });
      assert.equal(refused.at(-1)?.details.visa, visa.id);
    } finally {
      await env.server!.store.transaction((tx) => tx.upsertProfile(recordedViewer));
      await revoke(visa.id);
    }
  });

  test('a profile that grants pods/exec is refused', async () => {
    const visa = await grant('exec-viewer', ['dm-exec']);
    try {
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.code, 'ERR_DIRECT_MODE_DENIED');
      assert.match(String(answer.body.detail), /grants pods\/exec, which only the gateway records and cuts/);
    } finally {
      await revoke(visa.id);
    }
  });

  test('one gateway-only visa among several rules the token out, since it carries every binding', async () => {
    const viewer = await grant('viewer', ['dm-view']);
    const exec = await grant('exec-viewer', ['dm-exec']);
    try {
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.visa, exec.id);
      assert.match(String(answer.body.detail), /carries every visa you hold on cluster 'test'/);
    } finally {
      await revoke(exec.id);
      await revoke(viewer.id);
    }
  });

  test('a visa ending within 10 minutes gets no direct token (kube-apiserver issues none shorter); the gateway is named', async () => {
    const visa = await grant('viewer', ['dm-short'], '5m');
    try {
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.reason, 'visa-ends-soon');
      assert.match(String(answer.body.detail), /a direct token lives 10 minutes .* but must not outlive it/);
      assert.match(String(answer.body.detail), /kubevisa kubeconfig --cluster test/);
    } finally {
      await revoke(visa.id);
    }
  });

  test('a kubevisa session ending within 10 minutes gets no direct token', async () => {
    const visa = await grant('viewer', ['dm-view']);
    const sessionId = String(claims(cora.token).sid);
    const session = (await env.server!.store.getSession(sessionId))!;
    try {
      await env.server!.store.transaction((tx) => tx.updateSession(sessionId, { expiresAt: Date.now() + 5 * 60_000 }));
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.reason, 'session-ends-soon');
      assert.match(String(answer.body.detail), /your kubevisa session ends at/);
    } finally {
      await env.server!.store.transaction((tx) => tx.updateSession(sessionId, { expiresAt: session.expiresAt }));
      await revoke(visa.id);
    }
  });

  test('kubevisa credential --direct prints the refusal on stderr, nothing on stdout, and exits non-zero', async () => {
    const visa = await grant('recorded-viewer', ['dm-cli']);
    try {
      const result = await cli(['credential', '--cluster', CLUSTER, '--direct']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, /cannot be used in direct mode: it records sessions/);
      assert.match(result.stderr, /'kubevisa kubeconfig --cluster test' \(without --direct\)/);
      assert.match(result.stderr, /\[ERR_DIRECT_MODE_DENIED\]/);
    } finally {
      await revoke(visa.id);
    }
  });
});

describe('direct mode after a revoke', () => {
  test("real kubectl works with a --direct kubeconfig; after a revoke its next call prints the visa's words and id, and the plugin prints no token", async () => {
    const visa = await grant('viewer', ['dm-revoke']);
    const kubeconfig = join(env.dir, 'cora-revoke.kubeconfig');
    const written = await cli(['kubeconfig', '--cluster', CLUSTER, '--direct', '--kubeconfig', kubeconfig]);
    assert.equal(written.code, 0, written.stderr);
    const kubectlAsCora = (args: string[]) =>
      kubectl(env.cp.binaries.kubectl, args, { kubeconfig, env: { KUBEVISA_CONFIG_DIR: coraCli } });

    await eventually('kubectl lists pods with the direct token', 15_000, async () => {
      const listed = await kubectlAsCora(['get', 'pods', '-n', 'dm-revoke']);
      return listed.code === 0;
    });
    assert.ok(existsSync(join(coraCli, 'credentials', `${CLUSTER}.json`)), 'the token is cached');

    await revoke(visa.id, 'contract paused');
    const refused = await kubectlAsCora(['get', 'pods', '-n', 'dm-revoke']);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      new RegExp(
        `visa ${visa.id} \\(viewer on dm-revoke in cluster 'test'\\) was revoked by sam@corp\\.example at [0-9T:.Z-]+: contract paused; request a new one with 'kubevisa request --cluster test --ns dm-revoke --profile viewer`,
      ),
    );
    assert.match(refused.stderr, /\[ERR_VISA_ENDED\]/);
    assert.doesNotMatch(refused.stderr, /forbidden|Unauthorized/i, 'no raw RBAC or authentication error');
    assert.ok(!existsSync(join(coraCli, 'credentials', `${CLUSTER}.json`)), 'the cached token is removed');

    const plugin = await cli(['credential', '--cluster', CLUSTER, '--direct']);
    assert.equal(plugin.code, 1);
    assert.equal(plugin.stdout, '', 'no token printed');
    assert.match(plugin.stderr, new RegExp(`visa ${visa.id} .* was revoked by sam@corp\\.example`));
  });
});

describe('a cluster that does not allow direct mode', () => {
  before(async () => {
    // The same server and data, with the cluster's directMode setting off (the default of a real configuration).
    await env.server!.stop();
    env.server = await startServer({
      ...env.config,
      clusters: env.config.clusters.map((cluster) => ({ ...cluster, directMode: false })),
    });
  });

  test('refuses a viewer visa holder, naming the cluster setting and the gateway', async () => {
    const visa = await grant('viewer', ['dm-view']);
    try {
      const answer = await credential();
      assert.equal(answer.status, 403, JSON.stringify(answer.body));
      assert.equal(answer.body.code, 'ERR_DIRECT_MODE_DENIED');
      assert.equal(answer.body.reason, 'cluster');
      assert.match(String(answer.body.detail), /cluster 'test' does not allow direct mode \(its 'directMode' setting/);
      assert.match(String(answer.body.detail), /'kubevisa kubeconfig --cluster test' \(without --direct\)/);

      const clusters = await call('GET', '/api/v1/clusters', cora.token);
      assert.deepEqual(
        clusters.body.items?.map((c) => [c.name, c.directMode]),
        [[CLUSTER, false]],
      );
      const kubeconfig = join(env.dir, 'cora-direct.kubeconfig');
      const refused = await cli(['kubeconfig', '--cluster', CLUSTER, '--direct', '--kubeconfig', kubeconfig]);
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.stderr,
        /cluster 'test' does not allow direct mode.*\(without --direct\).*\[ERR_DIRECT_MODE_DENIED\]/,
      );
      const gateway = await cli(['kubeconfig', '--cluster', CLUSTER, '--kubeconfig', kubeconfig]);
      assert.equal(gateway.code, 0, gateway.stderr);
    } finally {
      await revoke(visa.id);
    }
  });
});
