// The console's insight screens in Debian's Chromium on seeded data of realistic size: the who-has-access matrix
// over a cluster holding 20,000 extra RoleBindings in 400 namespaces, the exposure benchmark's scale (server-side
// pages of rows and namespace columns, only the rows in view in the page, a drill-down to bindings, permissions and
// the visa's audit events), and the audit timeline over 5,000 events (filters, live tail, chain verification, and
// the replay of a real recorded kubectl exec). bench/console-load.ts measures the matrix's server-side work.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { openBrowser, screenshotDir, seriousAxeViolations, signIn, type TestBrowser } from './support/browser.ts';
import { eventually, kubectl } from './support/kubectl.ts';

const NAMESPACES = 400;
const BINDINGS_PER_NAMESPACE = 50;
const SEEDED_EVENTS = 5000;

let env: KubevisaEnv;
let admin: string;
let visaId: string;
let sam: TestBrowser;
let shots: string;

before(
  async () => {
    env = await startKubevisaEnv({ tls: true, autoApproval: false });
    const server = await env.startInProcess();
    admin = (await loginAs(env.serverUrl, people.sam)).token;
    const approver = (await loginAs(env.serverUrl, people.ann)).token;
    const cora = await loginAs(env.serverUrl, people.cora);

    // Unmanaged RBAC of a busy cluster: people of a vendor bound directly (shadow access), a team group, robots.
    const items: unknown[] = [];
    for (let n = 0; n < NAMESPACES; n++) {
      const namespace = `team-${String(n).padStart(2, '0')}`;
      items.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
      for (let b = 0; b < BINDINGS_PER_NAMESPACE; b++) {
        const subject =
          b % 10 === 0
            ? { kind: 'User', name: `outsider-${n}-${b}@vendor.example`, apiGroup: 'rbac.authorization.k8s.io' }
            : b % 10 === 1
              ? { kind: 'Group', name: `team-${n}`, apiGroup: 'rbac.authorization.k8s.io' }
              : { kind: 'User', name: `dev-${String(n * BINDINGS_PER_NAMESPACE + b).padStart(5, '0')}@corp.example` };
        items.push({
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: `rb-${b}`, namespace },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: b % 7 === 0 ? 'admin' : 'view' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', ...subject }],
        });
      }
    }
    // Plain creates (no server-side apply bookkeeping), namespaces first, then the bindings in two halves at once:
    // 20,000 objects take minutes on a loaded 2-core machine.
    const create = async (objects: unknown[]) => {
      const created = await kubectl(env.cp.binaries.kubectl, ['create', '-f', '-'], {
        kubeconfig: env.cp.adminKubeconfig,
        input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
        timeoutMs: 500_000,
      });
      assert.equal(created.code, 0, created.stderr);
    };
    const isNamespace = (item: unknown) => (item as { kind: string }).kind === 'Namespace';
    await create(items.filter(isNamespace));
    const bindings = items.filter((item) => !isNamespace(item));
    const half = Math.ceil(bindings.length / 2);
    await Promise.all([create(bindings.slice(0, half)), create(bindings.slice(half))]);

    await env.kOk(['create', 'namespace', 'ci-rec']);
    const engagement = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
      token: admin,
      body: {
        name: 'insight',
        vendor: 'Acme',
        contractors: [people.cora.email],
        sponsor: people.sam.email,
        endsAt: inDays(10),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['ci-*'], profiles: ['debugger'] },
        maxVisaDuration: '8h',
      },
    });
    assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
    await eventually(
      'default ServiceAccount in ci-rec',
      20_000,
      async () => (await env.k(['get', 'sa', 'default', '-n', 'ci-rec'])).code === 0,
    );
    await env.kOk(['run', 'app', '-n', 'ci-rec', '--image=registry.example/app:1']);
    await eventually(
      'pod app Running',
      30_000,
      async () =>
        (await env.kOk(['get', 'pod', 'app', '-n', 'ci-rec', '-o', 'jsonpath={.status.phase}'])) === 'Running',
    );
    const requested = await api(env.serverUrl, 'POST', '/api/v1/visas', {
      token: cora.token,
      body: { cluster: CLUSTER, namespaces: ['ci-rec'], profile: 'debugger', duration: '2h', reason: 'INC-7 debug' },
    });
    assert.equal(requested.status, 201, JSON.stringify(requested.body));
    visaId = String(requested.body.id);
    assert.equal(
      (await api(env.serverUrl, 'POST', `/api/v1/visas/${visaId}/approve`, { token: approver, body: {} })).status,
      200,
    );
    const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora');
    await eventually('a recorded kubectl exec through the gateway', 30_000, async () => {
      const exec = await env.k(['exec', '-n', 'ci-rec', 'app', '--', 'sh', '-c', 'echo replay-$((6*7))'], kubeconfig);
      return exec.code === 0 && exec.stdout.includes('replay-42');
    });

    // A trail of realistic length: what months of requests and decisions leave behind.
    await server.store.transaction(async (tx) => {
      for (let i = 0; i < SEEDED_EVENTS; i++) {
        await tx.appendAudit({
          at: Date.now() - (SEEDED_EVENTS - i) * 60_000,
          actor: `dev-${String(i % 500).padStart(5, '0')}@corp.example`,
          action: i % 3 === 0 ? 'visa.requested' : i % 3 === 1 ? 'visa.approved' : 'session.created',
          outcome: 'ok',
          details: { seeded: i },
        });
      }
    });
    sam = await openBrowser();
    await signIn(sam, env.serverUrl, people.sam, '/who');
    shots = await screenshotDir();
    // Seeding 20,000 bindings and the server's first analysis of them outlast the default five minutes under load.
  },
  { timeout: 900_000 },
);
after(async () => {
  await sam?.close();
  await env?.stop();
});

test(
  'who has access: thousands of subjects, paged by the server, virtualised, with drill-down',
  { timeout: 600_000 },
  async () => {
    const page = sam.page;
    const status = page.getByRole('status').filter({ hasText: 'subject(s)' });
    await status.waitFor({ timeout: 60_000 });
    const total = Number(/^(\d+) subject/.exec(await status.innerText())?.[1]);
    assert.ok(total >= NAMESPACES * BINDINGS_PER_NAMESPACE * 0.8, `${total} subjects listed`);
    const matrix = page.getByRole('table', { name: /Who has access/ });
    const rendered = await matrix.getByRole('row').count();
    assert.ok(rendered > 5 && rendered < 60, `only the rows in view are in the page (${rendered} of ${total})`);
    await page.screenshot({ path: join(shots, 'who-has-access.png'), fullPage: true });

    // The last rows come from a later page of the server's answer, loaded when scrolled to.
    await matrix.evaluate((el) => (el.scrollTop = el.scrollHeight));
    // Row 1 is the header of namespace columns; the subjects follow.
    const lastRow = matrix.locator(`[aria-rowindex="${total + 1}"][data-subject]`);
    await lastRow.waitFor({ timeout: 20_000 });
    assert.ok(total > 200, 'the last row lies beyond the first page of 200');

    // Shadow access is flagged: a vendor's person bound directly, outside kubevisa.
    await page.getByLabel('Show').selectOption('findings');
    await page.getByLabel('Person or subject').fill('outsider-3-');
    await page.getByRole('button', { name: 'Filter' }).click();
    const outsider = matrix.locator('[data-subject="User:outsider-3-0@vendor.example"]');
    await outsider.waitFor();
    assert.match(await outsider.innerText(), /shadow/);

    // The contractor's visa: its profile, time left, and a drill-down to binding, permissions and audit events.
    await page.getByLabel('Show').selectOption('people');
    await page.getByLabel('Person or subject').fill('cora');
    await page.getByRole('button', { name: 'Filter' }).click();
    const cell = matrix.getByRole('button', { name: /ci-rec profile debugger/ });
    await cell.waitFor();
    assert.match(await cell.innerText(), /left/);
    await cell.click();
    const drill = page.getByRole('region', { name: 'What stands behind this access' });
    await drill.getByText(`RoleBinding ci-rec/kubevisa-${visaId}`, { exact: false }).first().waitFor();
    await drill.getByText('pods/exec').first().waitFor();
    await drill.getByText('visa.approved').first().waitFor();
    await page.screenshot({ path: join(shots, 'who-has-access-drilldown.png'), fullPage: true });
    assert.deepEqual(await seriousAxeViolations(page), []);
    assert.deepEqual(sam.errorsOn(env.serverUrl), []);
  },
);

test('audit timeline: filters, live tail, chain verification and the replay of a recorded exec', async () => {
  const page = sam.page;
  await page.goto(`${env.serverUrl}/audit`);
  const table = page.getByRole('table', { name: 'Audit events, newest first' });
  await table.locator('tbody tr').first().waitFor();
  assert.equal(await table.locator('tbody tr').count(), 100, 'one page of the 5,000 events');
  await page.getByRole('button', { name: 'Older events' }).click();
  await eventually('the next page', 10_000, async () => (await table.locator('tbody tr').count()) === 200);

  // Live tail: an event made elsewhere (the CLI) shows without a reload.
  const ended = await api(env.serverUrl, 'POST', '/api/v1/scim/tokens', { token: admin, body: { idp: 'okta' } });
  assert.equal(ended.status, 201);
  await table.getByText('scim.token.created').waitFor({ timeout: 10_000 });

  await page.getByRole('button', { name: 'Verify the chain' }).click();
  await page.locator('[data-verdict="ok"]').waitFor({ timeout: 60_000 });
  assert.match(
    await page.getByRole('region', { name: 'Chain verification' }).innerText(),
    /Last signed checkpoint: #\d+/,
  );

  await page.locator('input[name="visa"]').fill(visaId);
  await page.getByRole('button', { name: 'Filter' }).click();
  await eventually("only the visa's events", 10_000, async () => {
    const rows = await table.locator('tbody tr').allInnerTexts();
    return rows.length > 0 && rows.every((r) => r.includes(visaId) || r.includes('gateway'));
  });
  await page.getByRole('button', { name: 'Replay session' }).first().click();
  const replay = page.getByRole('region', { name: 'Session replay' });
  await replay.getByRole('button', { name: 'Show all' }).click();
  await eventually('the recorded output is shown', 10_000, async () =>
    (await replay.locator('[data-replay]').innerText()).includes('replay-42'),
  );
  await page.screenshot({ path: join(shots, 'audit.png'), fullPage: true });
  assert.deepEqual(await seriousAxeViolations(page), []);
  assert.deepEqual(sam.errorsOn(env.serverUrl), []);
});
