// The console's decisions and records in Debian's Chromium against a real server, control plane and OIDC provider:
// the approval queue with the policy's verdict and the linter's findings, an approval narrowed to fewer namespaces
// and less time, a denial with its comment, an extension asked for and approved, an engagement's end date moved
// (earlier: the running visa is shortened live and the one that would start later is ended; later: no visa grows),
// the live audit tick reaching only those who may read the audit, a SCIM token shown once and never again, the
// audit export and the evidence pack downloaded and verified offline, and a person's identity provider status,
// sessions and offboarding receipt.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import {
  api,
  CLUSTER,
  cliPath,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';
import { openBrowser, screenshotDir, signIn, type TestBrowser } from './support/browser.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let samToken: string;
let coraToken: string;
let annToken: string;
let engagementId: string;
let shots: string;
let downloads: string;
const browsers: TestBrowser[] = [];
/** The visa approved narrower, then extended; and its extension. */
let narrowed: string;
let extension: string;
/** The contractor's browser, left open on My access by the extension test. */
let coraOnMyAccess: TestBrowser;

before(async () => {
  env = await startKubevisaEnv({ tls: true, autoApproval: false, extraConfig: { scim: {} } });
  await env.startInProcess();
  await env.kOk(['create', 'namespace', 'payments']);
  await env.kOk(['create', 'namespace', 'staging-a']);
  samToken = (await loginAs(env.serverUrl, people.sam)).token;
  annToken = (await loginAs(env.serverUrl, people.ann)).token;
  coraToken = (await loginAs(env.serverUrl, people.cora)).token;
  const created = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
    token: samToken,
    body: {
      name: 'acme-ops',
      vendor: 'Acme',
      contractors: [people.cora.email],
      sponsor: people.sam.email,
      endsAt: inDays(30),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['payments', 'staging-*'], profiles: ['viewer', 'debugger'] },
      maxVisaDuration: '8h',
    },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  engagementId = String(created.body.id);
  shots = await screenshotDir();
  downloads = await mkdtemp(join(tmpdir(), 'kubevisa-console-downloads-'));
});
after(async () => {
  for (const b of browsers) await b.close().catch(() => undefined);
  await env?.stop();
  if (downloads) await rm(downloads, { recursive: true, force: true });
});

async function browser(): Promise<TestBrowser> {
  const opened = await openBrowser();
  browsers.push(opened);
  return opened;
}

async function request(body: Record<string, unknown>): Promise<string> {
  const answer = await api(env.serverUrl, 'POST', '/api/v1/visas', { token: coraToken, body });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return String(answer.body.id);
}

async function visa(id: string) {
  const answer = await api(env.serverUrl, 'GET', `/api/v1/visas/${id}`, { token: samToken });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body as Record<string, unknown> & { namespaces: string[]; notBefore: string; notAfter: string };
}

/** Opens a second event stream in the page and records the kinds of event it receives. */
async function recordLiveEvents(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: string[] = [];
    (globalThis as unknown as { seenKinds: string[] }).seenKinds = seen;
    const source = new EventSource('/api/v1/console/events');
    for (const kind of ['visas', 'audit', 'signed-out']) source.addEventListener(kind, () => seen.push(kind));
  });
}
const liveKinds = (page: Page) => page.evaluate(() => (globalThis as unknown as { seenKinds: string[] }).seenKinds);

test('the audit tick reaches only those who may read the audit; everyone still hears of visas', async () => {
  const cora = await browser();
  const sam = await browser();
  await signIn(cora, env.serverUrl, people.cora);
  await signIn(sam, env.serverUrl, people.sam, '/audit');
  await recordLiveEvents(cora.page);
  await recordLiveEvents(sam.page);
  await new Promise((resolve) => setTimeout(resolve, 1500)); // both streams connected and the audit head read
  await request({ cluster: CLUSTER, namespaces: ['payments'], profile: 'viewer', duration: '1h', reason: 'tick' });
  await eventually('the admin hears of the new audit event', 10_000, async () =>
    (await liveKinds(sam.page)).includes('audit'),
  );
  await eventually('the contractor hears that visas changed', 10_000, async () =>
    (await liveKinds(cora.page)).includes('visas'),
  );
  assert.equal((await liveKinds(cora.page)).includes('audit'), false, 'no audit tick for a contractor');
  for (const b of [cora, sam]) assert.deepEqual(b.errorsOn(env.serverUrl), []);
  await cora.close();
  await sam.close();
});

test("queue: each request shows the policy's verdict and the linter's findings; approve narrower; deny", async () => {
  // Left from the previous test: cora's viewer request. Cancel it so the queue holds only what this test asks.
  for (const pending of (await api(env.serverUrl, 'GET', '/api/v1/visas?state=requested', { token: coraToken })).body
    .items ?? []) {
    await api(env.serverUrl, 'POST', `/api/v1/visas/${String(pending.id)}/cancel`, { token: coraToken });
  }
  narrowed = await request({
    cluster: CLUSTER,
    namespaces: ['payments', 'staging-a'],
    profile: 'debugger',
    duration: '4h',
    reason: 'JIRA-7 debug the retries',
  });
  const denied = await request({
    cluster: CLUSTER,
    namespaces: ['payments'],
    profile: 'viewer',
    duration: '2h',
    reason: 'JIRA-8 just looking',
  });

  const ann = await browser();
  await signIn(ann, env.serverUrl, people.ann, '/queue');
  const card = ann.page.locator(`li[data-visa-id="${narrowed}"]`);
  await card.getByText('JIRA-7 debug the retries').waitFor();
  const verdict = card.locator('[data-verdict]');
  assert.equal(await verdict.getAttribute('data-verdict'), 'grants');
  assert.match(await verdict.innerText(), /approving grants it from .+ to .+/);
  // debugger declares pods/exec, attach and port-forward: the linter names each, with the declared justification.
  const findings = await card.locator('[data-findings] li').allInnerTexts();
  for (const risk of ['pods-exec', 'pods-attach', 'pods-portforward']) {
    assert.ok(
      findings.some((f) => f.startsWith(risk) && /declared: /.test(f)),
      `${risk} is listed: ${findings.join(' | ')}`,
    );
  }
  const viewerFindings = ann.page.locator(`li[data-visa-id="${denied}"] [data-findings]`);
  assert.match(await viewerFindings.innerText(), /no finding on viewer's rules/);
  await ann.page.screenshot({ path: join(shots, 'approvals-verdict.png'), fullPage: true });

  // Approve narrower: one namespace of two, 1h of 4h, with a comment.
  await card.getByRole('button', { name: 'Approve narrower…' }).click();
  await card.getByLabel('staging-a').uncheck();
  await card.getByLabel(/^For/).fill('1h');
  await card.getByLabel('Comment').fill('payments only, one hour');
  await card.getByRole('button', { name: 'Approve these' }).click();
  await card.waitFor({ state: 'detached' });
  const approved = await visa(narrowed);
  assert.equal(approved.state, 'active');
  assert.deepEqual(approved.namespaces, ['payments']);
  assert.equal(Date.parse(approved.notAfter) - Date.parse(approved.notBefore), 3600_000);
  assert.equal((approved.approvals as { comment?: string }[])[0]?.comment, 'payments only, one hour');

  // Deny with a comment the requester reads.
  const other = ann.page.locator(`li[data-visa-id="${denied}"]`);
  await other.getByRole('button', { name: 'Deny…' }).click();
  await other.getByLabel(/^Why/).fill('use the dashboard instead');
  await other.getByRole('button', { name: 'Deny', exact: true }).click();
  await other.waitFor({ state: 'detached' });
  const refused = await visa(denied);
  assert.equal(refused.state, 'denied');
  assert.equal(refused.endReason, 'use the dashboard instead');
  assert.equal(refused.decidedBy, people.ann.email);
  assert.deepEqual(ann.errorsOn(env.serverUrl), []);
});

test('extension: the contractor asks from My access; the approver sees it as an extension and approves it', async () => {
  const cora = await browser();
  coraOnMyAccess = cora;
  await signIn(cora, env.serverUrl, people.cora);
  const active = cora.page.locator(`li.card.active[data-visa-id="${narrowed}"]`);
  await active.getByRole('button', { name: 'Ask for an extension' }).click();
  await active.getByLabel('Extend by').selectOption('2h');
  await active.getByLabel('Reason').fill('JIRA-7 needs another look');
  await active.getByRole('button', { name: 'Send extension request' }).click();
  await active.getByRole('button', { name: 'Ask for an extension' }).waitFor();
  const pending = (await api(env.serverUrl, 'GET', '/api/v1/visas?state=requested', { token: samToken })).body.items;
  const asked = pending?.find((v) => v.extends === narrowed);
  assert.ok(asked, 'the extension request is stored with extends');
  extension = String(asked.id);

  const ann = await browser();
  await signIn(ann, env.serverUrl, people.ann, '/queue');
  const card = ann.page.locator(`li[data-visa-id="${extension}"]`);
  await card.getByText(`extension of ${narrowed}`).waitFor();
  await card.getByRole('button', { name: 'Approve', exact: true }).click();
  await card.waitFor({ state: 'detached' });
  const parent = await visa(narrowed);
  const approved = await visa(extension);
  assert.equal(approved.state, 'approved');
  assert.equal(approved.notBefore, parent.notAfter, 'the extension starts where the visa ends');
  assert.deepEqual([...cora.errorsOn(env.serverUrl), ...ann.errorsOn(env.serverUrl)], []);
  await ann.close();
});

test('engagement end date: earlier shortens the running visa live and ends the one after; later grows none', async () => {
  const cora = coraOnMyAccess; // still on My access, with the narrowed visa's countdown
  const sam = await browser();
  await signIn(sam, env.serverUrl, people.sam, '/admin/engagements');
  const row = sam.page.locator('tr[data-engagement="acme-ops"]');

  const newEnd = new Date(Math.ceil((Date.now() + 20 * 60_000) / 60_000) * 60_000);
  await row.getByRole('button', { name: 'Change end date…' }).click();
  const form = row.getByRole('form', { name: 'Change the end date of acme-ops' });
  await form.getByLabel('New end (UTC)').fill(newEnd.toISOString().slice(0, 10));
  await form.getByLabel('Time (UTC)').fill(newEnd.toISOString().slice(11, 16));
  await form.getByLabel('Reason').fill('scope cut by the client');
  assert.match(await form.innerText(), /visas running past the new end are shortened/);
  await sam.page.screenshot({ path: join(shots, 'admin-engagement-end-date.png'), fullPage: true });
  await form.getByRole('button', { name: 'Move the end date' }).click();
  await row.getByRole('status').getByText('1 visa(s) shortened, 1 ended').waitFor();

  const shortened = await visa(narrowed);
  assert.equal(Date.parse(shortened.notAfter), newEnd.getTime(), 'the running visa now ends with the engagement');
  assert.equal((await visa(extension)).state, 'revoked', 'the extension would only start after the new end');
  // The contractor's open page follows without a reload: about 20 minutes left instead of about an hour.
  await eventually("the contractor's countdown shows the new end", 10_000, async () => {
    const text = await cora.page.locator(`li.card.active[data-visa-id="${narrowed}"] [data-countdown]`).innerText();
    const minutes = /^(\d+) min/.exec(text);
    return minutes !== null && Number(minutes[1]) <= 21;
  });
  const audit = await api(env.serverUrl, 'GET', `/api/v1/audit/events?engagement=${engagementId}`, {
    token: samToken,
  });
  const actions = (audit.body.items ?? []).map((e) => e.action);
  for (const action of ['engagement.end-changed', 'visa.shortened', 'visa.revoked']) {
    assert.ok(actions.includes(action), `${action} is audited: ${actions.join(', ')}`);
  }

  // Later: no visa changes.
  await row.getByRole('button', { name: 'Change end date…' }).click();
  await form.getByLabel('New end (UTC)').fill(inDays(60).slice(0, 10));
  await form.getByLabel('Reason').fill('contract renewed');
  assert.match(await form.innerText(), /no visa is lengthened/);
  await form.getByRole('button', { name: 'Move the end date' }).click();
  await row.getByRole('status').getByText('0 visa(s) shortened, 0 ended').waitFor();
  assert.equal((await visa(narrowed)).notAfter, shortened.notAfter, 'a later end lengthens no visa');

  // An approver may not move it; a date in the past is refused with the API's words.
  const refused = await api(env.serverUrl, 'POST', `/api/v1/engagements/${engagementId}/end-date`, {
    token: annToken,
    body: { endsAt: inDays(10), reason: 'no' },
  });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  await row.getByRole('button', { name: 'Change end date…' }).click();
  await form.getByLabel('New end (UTC)').fill('2020-01-01');
  await form.getByLabel('Reason').fill('typo');
  await form.getByRole('button', { name: 'Move the end date' }).click();
  assert.match(await form.getByRole('alert').innerText(), /is not in the future.*ERR_INVALID_INPUT/);
  const errors = sam.errorsOn(env.serverUrl);
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0]!, /status of 400/, 'the refused change is the only error logged');
  assert.deepEqual(cora.errorsOn(env.serverUrl), []);
});

test('SCIM token: shown once on creation, never again (not after a reload, not through the API)', async () => {
  const sam = await browser();
  await signIn(sam, env.serverUrl, people.sam, '/admin/scim');
  await sam.page.getByLabel('Identity provider').fill('okta');
  await sam.page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await sam.page.locator('[data-secret]').innerText()).trim();
  assert.ok(secret.length >= 32, `a token is shown (${secret.length} characters)`);
  await sam.page.getByText('it is shown only once').waitFor();
  // It works, as the identity provider will use it (for a person who signed in already, once an admin links them).
  const linked = await api(env.serverUrl, 'POST', '/api/v1/identity/links', {
    token: samToken,
    body: { person: people.cora.email, idp: 'okta', reason: 'Acme people come from Okta' },
  });
  assert.equal(linked.status, 201, JSON.stringify(linked.body));
  const provisioned = await api(env.serverUrl, 'POST', '/scim/v2/Users', {
    token: secret,
    contentType: 'application/scim+json',
    body: {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: people.cora.email,
      active: true,
      emails: [{ primary: true, value: people.cora.email, type: 'work' }],
    },
  });
  assert.equal(provisioned.status, 201, JSON.stringify(provisioned.body));

  await sam.page.getByRole('button', { name: 'I have copied it' }).click();
  await sam.page.locator('[data-secret]').waitFor({ state: 'detached' });
  assert.equal((await sam.page.content()).includes(secret), false, 'gone from the page once dismissed');
  await sam.page.reload();
  await sam.page.getByRole('cell', { name: 'okta' }).first().waitFor();
  assert.equal((await sam.page.content()).includes(secret), false, 'not shown after a reload');
  const listed = await api(env.serverUrl, 'GET', '/api/v1/scim/tokens', { token: samToken });
  assert.equal(listed.status, 200);
  assert.equal(JSON.stringify(listed.body).includes(secret), false, 'the API never returns it again');
  assert.deepEqual(sam.errorsOn(env.serverUrl), []);
});

test('audit: the export downloads the trail; the evidence pack downloads and verifies offline', async () => {
  const sam = await browser();
  await signIn(sam, env.serverUrl, people.sam, '/audit');
  const save = async (click: () => Promise<void>, name: string) => {
    const [download] = await Promise.all([sam.page.waitForEvent('download'), click()]);
    const path = join(downloads, name);
    await download.saveAs(path);
    return path;
  };
  const exported = await save(
    () => sam.page.getByRole('link', { name: 'Export (JSON lines)' }).click(),
    'kubevisa-audit.jsonl',
  );
  const lines = (await readFile(exported, 'utf8')).trim().split('\n');
  const records = lines.map((line) => JSON.parse(line) as { action?: string });
  assert.ok(
    records.some((r) => r.action === 'engagement.end-changed'),
    `the export holds the trail (${lines.length} lines)`,
  );

  const pack = sam.page.getByRole('form', { name: 'Evidence pack' });
  await pack.getByLabel('Evidence pack for').selectOption({ label: 'acme-ops' });
  await pack.getByRole('button', { name: 'Make the pack' }).click();
  const files = pack.getByRole('region', { name: 'Evidence pack of acme-ops' });
  await files.waitFor();
  await sam.page.screenshot({ path: join(shots, 'audit-evidence.png'), fullPage: true });
  const saved: Record<string, string> = {};
  for (const name of ['events.jsonl', 'checkpoints.json', 'public-key.pem', 'engagement.json']) {
    saved[name] = await save(() => files.getByRole('link', { name }).click(), name);
  }
  assert.equal(JSON.parse(await readFile(saved['engagement.json']!, 'utf8')).name, 'acme-ops');
  // The auditor's own check, with the CLI and no server.
  const verified = await promisify(execFile)(
    cliPath,
    [
      'audit',
      'verify',
      '--from',
      saved['events.jsonl']!,
      '--checkpoint',
      saved['checkpoints.json']!,
      '--public-key',
      saved['public-key.pem']!,
      '-o',
      'json',
    ],
    { env: { ...process.env, KUBEVISA_CONFIG_DIR: join(downloads, 'cli') } },
  );
  const verdict = JSON.parse(verified.stdout) as { ok: boolean; records: number; redacted: number };
  assert.equal(verdict.ok, true, verified.stdout);
  assert.ok(verdict.records > verdict.redacted, 'the pack holds the engagement events in full');
  assert.deepEqual(sam.errorsOn(env.serverUrl), []);
});

test("people: identity provider status and sessions; offboarding's receipt shown step by step", async () => {
  const sam = await browser();
  await signIn(sam, env.serverUrl, people.sam, '/admin/people');
  const cora = sam.page.locator(`tr[data-person="${people.cora.email}"]`);
  assert.match(await cora.locator('[data-idp-status]').innerText(), /^okta: active/);
  const ann = sam.page.locator(`tr[data-person="${people.ann.email}"]`);
  assert.match(await ann.locator('[data-idp-status]').innerText(), /no SCIM record/);
  const sessions = cora.getByRole('button', { name: /open of/ });
  assert.match(await sessions.innerText(), /^[1-9]\d* open of [1-9]/, 'cora signed in: her sessions are listed');
  await sessions.click();
  assert.ok((await cora.locator('[data-session="open"]').count()) >= 1);
  await sam.page.screenshot({ path: join(shots, 'admin-people.png'), fullPage: true });

  await cora.getByRole('button', { name: 'Offboard…' }).click();
  const region = sam.page.getByRole('region', { name: `Offboard ${people.cora.email}` });
  await region.getByLabel('Reason').fill('left Acme');
  await region.getByRole('button', { name: 'Offboard now' }).click();
  await region.locator('ol.receipt li').first().waitFor();
  await eventually('every step of the receipt is proven', 30_000, async () => {
    const steps = await region.locator('ol.receipt li').count();
    return steps > 0 && (await region.locator('ol.receipt li.ok').count()) === steps;
  });
  await sam.page.screenshot({ path: join(shots, 'admin-offboarding.png'), fullPage: true });
  const steps = await region.locator('ol.receipt li').allInnerTexts();
  assert.ok(steps.length >= 2, `the receipt has its steps: ${steps.join(' | ')}`);
  const receipts = await api(env.serverUrl, 'GET', '/api/v1/offboardings', { token: samToken });
  assert.ok((receipts.body.items ?? []).some((r) => JSON.stringify(r).includes(people.cora.email)));
  // Her sessions ended with her: the page says so once it reloads.
  await region.getByRole('button', { name: 'Close' }).click();
  await sam.page.reload();
  const after = sam.page.locator(`tr[data-person="${people.cora.email}"]`);
  await after.getByRole('button', { name: /open of/ }).waitFor();
  assert.match(await after.getByRole('button', { name: /open of/ }).innerText(), /^0 open of/);
  assert.deepEqual(sam.errorsOn(env.serverUrl), []);
});
