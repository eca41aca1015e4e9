// A visa pass binds only profiles a full pass of this term, over the cluster object now registered, judged: a full pass
// still under way from an earlier term (or over a cluster removed and registered again under its name) records no
// judgement, so a profile ClusterRole widened meanwhile, which kubevisa cannot restore, is never bound by a visa pass.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import type { Store } from '../../store/store.ts';
import { Reconciler } from '../reconciler.ts';
import { FakeCluster } from '../testing/fake-cluster.ts';
import { SHIPPED_PROFILES } from '../../rbac/profiles.ts';
import { gate, holdAfter, tick, widenViewerUnrestorably, world, type World } from '../testing/races.ts';

let w: World;
let store: Store;
const stops: (() => void)[] = [];
beforeEach(async () => {
  w = await world();
  store = w.store;
});
afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await store.close();
});

test('a new leadership term binds no visa to a widened, unrestorable profile before a full pass of the term judged it', async () => {
  let leading = true;
  const r = new Reconciler({
    store,
    clusters: new Map([['prod', w.cluster]]),
    now: () => w.clock.now,
    leadership: { isLeader: () => leading, fenceEpoch: () => (leading ? 3 : 3) },
  });
  stops.push(() => r.stop());
  await r.start();
  await r.whenSettled('prod');

  // Term 1: a full pass reads the profile ClusterRoles (all as reviewed) and is slow to go on (thousands of bindings).
  const profiles = holdAfter(w.cluster, 'listProfileClusterRoles');
  const full = r.reconcileNow('prod');
  await profiles.reached;
  // The lease is lost: this replica stops (stop() clears the profile judgement, its watches end).
  leading = false;
  r.stop();
  // While another replica leads (or nobody does), someone widens the viewer ClusterRole, and kubevisa cannot restore it.
  widenViewerUnrestorably(w.cluster);
  // The old term's full pass goes on and records its (now stale) judgement: viewer trusted. It then lists the bindings.
  const list = gate(w.cluster, 'listManagedRoleBindings');
  profiles.release();
  await list.reached;

  // Term 2 on this replica: start() asks for a full pass, queued behind the old one.
  leading = true;
  const starting = r.start();
  await tick();
  // An approval in term 2: its visa pass binds at once.
  const visa = await w.grant(['payments']);
  assert.deepEqual((await r.convergeVisasSoon('prod', [visa.id])).created, []);
  const key = `payments/kubevisa-${visa.id}`;
  const boundWhileUnjudged = w.cluster.roleBindings.has(key);
  const role = w.cluster.profileRoles.get('kubevisa:profile:viewer')!;
  assert.ok(
    role.rules.some((rule) => rule.resources?.includes('secrets')),
    'the role is still widened',
  );

  list.open();
  await full;
  await starting;
  await r.whenSettled('prod');
  assert.equal(
    boundWhileUnjudged,
    false,
    'a visa pass of the new term bound a visa to a profile ClusterRole that grants secrets and could not be restored',
  );
});

test('a cluster registered again under its name: no visa pass binds there from the old cluster object’s judgement', async () => {
  const r = new Reconciler({ store, clusters: new Map([['prod', w.cluster]]), now: () => w.clock.now });
  stops.push(() => r.stop());
  await r.start();
  await r.whenSettled('prod');

  // A full pass over the old cluster object is about to read its profile ClusterRoles.
  const profiles = holdAfter(w.cluster, 'listProfileClusterRoles');
  const full = r.reconcileNow('prod');
  await profiles.reached;
  // The admin removes 'prod' and registers 'prod' again (another API server, or a rebuilt one) where the viewer
  // ClusterRole grants more than reviewed and kubevisa cannot restore it.
  r.removeCluster('prod');
  const again = new FakeCluster({ name: 'prod', namespaces: ['payments', 'billing'], profiles: SHIPPED_PROFILES });
  widenViewerUnrestorably(again);
  r.addCluster('prod', again);
  // The old object's pass records its judgement (viewer trusted) under the name, then lists the old cluster's bindings.
  const list = gate(w.cluster, 'listManagedRoleBindings');
  profiles.release();
  await list.reached;

  const visa = await w.grant(['payments']);
  await r.convergeVisasSoon('prod', [visa.id]);
  const key = `payments/kubevisa-${visa.id}`;
  const bound = again.roleBindings.has(key);
  list.open();
  await full;
  await r.whenSettled('prod');
  await tick(20);
  await r.whenSettled('prod');
  assert.equal(
    bound,
    false,
    'bound to the widened viewer role of the newly registered cluster before any full pass judged it',
  );
});
