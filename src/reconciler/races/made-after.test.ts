// The madeAfter guard does not keep a binding of a visa revoked on a replica whose notification was lost.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { Reconciler, type PassReport } from '../reconciler.ts';
import { tick, world, type World } from '../testing/races.ts';

let w: World;
let r: Reconciler;
const passes: PassReport[] = [];
beforeEach(async () => {
  w = await world();
  r = new Reconciler({
    store: w.store,
    clusters: new Map([['prod', w.cluster]]),
    now: () => w.clock.now,
    onPass: (p) => passes.push(p),
  });
});
afterEach(async () => {
  r.stop();
  await w.store.close();
});

test('a binding kept by madeAfter after its visa was revoked (notification lost) goes with the full pass the visa pass asked for', async () => {
  await r.start();
  await r.whenSettled('prod');
  const held = w.cluster.holdNextRoleBindingList();
  const full = r.reconcileNow('prod'); // reads the visas: none grants
  await held.listed;
  const visa = await w.grant(['payments']);
  await r.convergeVisasSoon('prod', [visa.id]); // binds it (read newer than the full pass's)
  await w.visas.revoke(w.approver, visa.id, 'revoked on a follower; its NOTIFY is lost: no visa pass for it');
  held.release();
  const report = await full;
  const key = `payments/kubevisa-${visa.id}`;
  // The older full pass keeps it (a newer read made it); the full pass the visa pass asked for removes it.
  assert.ok(w.cluster.roleBindings.has(key) && !report.deleted.includes(key));
  for (let i = 0; i < 5; i++) {
    await tick();
    await r.whenSettled('prod');
  }
  assert.equal(w.cluster.roleBindings.has(key), false);
});
