// A full pass that read (visas, then the cluster) before a visa pass wrote, writing after it.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { serviceAccountName } from '../../domain/names.ts';
import type { Store } from '../../store/store.ts';
import { Reconciler, type PassReport } from '../reconciler.ts';
import { EMAIL, world, type World } from '../testing/races.ts';

let w: World;
let store: Store;
let r: Reconciler;
let passes: PassReport[];
beforeEach(async () => {
  w = await world();
  store = w.store;
  passes = [];
  r = new Reconciler({
    store,
    clusters: new Map([['prod', w.cluster]]),
    now: () => w.clock.now,
    onPass: (p) => passes.push(p),
  });
});
afterEach(async () => {
  r.stop();
  await store.close();
});

test('a full pass that read before does not delete the ServiceAccount a visa pass found and bound a new visa to', async () => {
  const first = await w.grant(['payments']);
  await r.start();
  await r.whenSettled('prod');
  const sa = serviceAccountName(EMAIL);
  assert.ok(w.cluster.serviceAccounts.has(sa));
  // Carol's only visa is revoked; a full pass reads (no visa of hers grants: her ServiceAccount is unwanted) and
  // lists the cluster, slowly (thousands of bindings).
  await w.visas.revoke(w.approver, first.id, 'done');
  const held = w.cluster.holdNextRoleBindingList();
  const full = r.reconcileNow('prod');
  await held.listed;
  // Meanwhile a new visa of hers is approved: the visa pass finds her ServiceAccount ready and binds to it.
  const next = await w.grant(['billing']);
  const made = await r.convergeVisasSoon('prod', [next.id]);
  assert.deepEqual(made.created, [`billing/kubevisa-${next.id}`]);
  held.release();
  const report = await full;
  const key = `billing/kubevisa-${next.id}`;
  const dangling = w.cluster.roleBindings.has(key) && !w.cluster.serviceAccounts.has(sa);
  await r.whenSettled('prod');
  assert.equal(
    report.deleted.includes(`serviceaccount/${sa}`),
    false,
    'the ServiceAccount of a person with a granting visa (bound by the visa pass) was deleted by a full pass with an older read',
  );
  assert.equal(dangling, false);
});

test('a full pass that read a granting visa before a visa pass made its objects takes them as made, and binds the rest', async () => {
  await r.start();
  await r.whenSettled('prod');
  // Approved (its visa pass is slow to start: the approval came through the change feed, or waited behind a write).
  const visa = await w.grant(['payments', 'billing']);
  const other = await w.grant(['billing'], '3h');
  // A full pass (the 30 s resync, or any kick) reads both granting visas and lists the cluster before they are made.
  const held = w.cluster.holdNextRoleBindingList();
  const full = r.reconcileNow('prod');
  await held.listed;
  await r.convergeVisasSoon('prod', [visa.id]);
  held.release();
  const report = await full;
  assert.equal(
    report.error,
    undefined,
    'the full pass failed (retried with backoff) because a visa pass made what it planned to make',
  );
  assert.ok(w.cluster.roleBindings.has(`billing/kubevisa-${other.id}`), 'the other visa is bound by the full pass');
  assert.deepEqual(await w.store.listPendingIntents({ cluster: 'prod' }), []);
});
