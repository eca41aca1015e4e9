// Clusters the reconciler starts and stops managing while it runs (registered or removed at run time), and a cluster
// that fails never holding up the others.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { systemCaller, type Caller } from '../app/caller.ts';
import { EngagementService } from '../app/engagements.ts';
import { AppEvents } from '../app/events.ts';
import { VisaService } from '../app/visas.ts';
import { ClusterUnreachable } from '../cluster/errors.ts';
import type { Actor } from '../domain/model.ts';
import { aPolicy, DAY, NOW } from '../domain/testing/fixtures.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { Reconciler } from './reconciler.ts';
import { FakeCluster } from './testing/fake-cluster.ts';

const EMAIL = 'carol@vendor.example';
let store: Store;
let reconciler: Reconciler;
let visas: VisaService;
let carol: Caller;
let approver: Caller;
let prod: FakeCluster;

const fake = (name: string) => new FakeCluster({ name, namespaces: ['payments'], profiles: SHIPPED_PROFILES });

beforeEach(async () => {
  store = await openSqliteStore({ path: ':memory:' });
  await store.transaction(async (tx) => {
    for (const profile of SHIPPED_PROFILES) await tx.upsertProfile(profile);
  });
  const person = async (subject: string, email: string, roles: Actor['roles']) => {
    const saved = await store.transaction(async (tx) => {
      const p = await tx.upsertPersonFromLogin({
        issuer: 'https://idp.example',
        subject,
        email,
        displayName: subject,
        groups: [],
        now: NOW - DAY,
      });
      return tx.setPersonRoles(p.id, roles, NOW - DAY);
    });
    return { actor: { personId: saved.id, email: saved.email, roles: saved.roles, groups: [] } };
  };
  carol = await person('carol', EMAIL, []);
  approver = await person('abe', 'abe@corp.example', ['approver']);
  const ports = {
    store,
    policy: aPolicy({ approverGroups: [] }),
    clusterNames: () => ['prod', 'edge', 'away'],
    events: new AppEvents(),
    now: () => NOW,
  };
  visas = new VisaService(ports);
  await new EngagementService(ports).createAs(systemCaller('test'), {
    name: 'acme',
    vendor: 'Acme',
    contractors: [EMAIL],
    sponsor: 'sam@corp.example',
    endsAt: new Date(NOW + 30 * DAY).toISOString(),
    ceiling: { clusters: ['prod', 'edge', 'away'], namespacePatterns: ['payments'], profiles: ['viewer'] },
    maxVisaDuration: '3d',
  });
  prod = fake('prod');
  reconciler = new Reconciler({ store, clusters: new Map([['prod', prod]]), now: () => NOW, resyncIntervalMs: 60_000 });
  await reconciler.start();
});

afterEach(async () => {
  reconciler.stop();
  await store.close();
});

async function grant(cluster: string) {
  const requested = await visas.request(carol, {
    cluster,
    namespaces: ['payments'],
    profile: 'viewer',
    duration: '2h',
    reason: 'JIRA-1',
  });
  return visas.approve(approver, requested.id, {});
}

test('a cluster added while running is converged at once and watched; once removed, nothing is written there', async () => {
  const visa = await grant('edge');
  const edge = fake('edge');
  reconciler.addCluster('edge', edge);
  await reconciler.whenSettled('edge');
  assert.ok(edge.roleBindings.has(`payments/kubevisa-${visa.id}`), 'bound without a restart');
  assert.deepEqual(
    reconciler
      .status()
      .map((r) => r.cluster)
      .sort(),
    ['edge', 'prod'],
  );

  // Drift is seen through the watch the add started: a binding someone else deleted is put back.
  await edge.deleteRoleBinding('payments', `kubevisa-${visa.id}`);
  await new Promise((resolve) => setImmediate(resolve));
  await reconciler.whenSettled('edge');
  assert.ok(edge.roleBindings.has(`payments/kubevisa-${visa.id}`), 'restored through the watch');

  reconciler.removeCluster('edge');
  const writes = edge.writes.length;
  reconciler.kick(['edge']);
  await edge.deleteRoleBinding('payments', `kubevisa-${visa.id}`);
  await new Promise((resolve) => setImmediate(resolve));
  await reconciler.whenSettled('edge');
  assert.equal(edge.writes.length, writes + 1, 'only the delete made by the test: no pass ran after the removal');
  assert.deepEqual(
    reconciler.status().map((r) => r.cluster),
    ['prod'],
  );
});

test('a cluster that does not answer fails only its own passes', async () => {
  const away = fake('away');
  away.listManagedRoleBindings = async () => {
    throw new ClusterUnreachable("cluster 'away' did not answer");
  };
  reconciler.addCluster('away', away);
  await grant('away');
  const onProd = await grant('prod');
  const [awayPass, prodPass] = await Promise.all([reconciler.reconcileNow('away'), reconciler.reconcileNow('prod')]);
  assert.match(awayPass.error ?? '', /did not answer/);
  assert.equal(prodPass.error, undefined);
  assert.ok(prod.roleBindings.has(`payments/kubevisa-${onProd.id}`));
});

test('a cluster removed and added again under its name is fenced again before the term’s first write there', async () => {
  const leading = new Reconciler({
    store,
    clusters: new Map(),
    now: () => NOW,
    resyncIntervalMs: 60_000,
    leadership: { isLeader: () => true, fenceEpoch: () => 5 },
  });
  await leading.start();
  try {
    const first = fake('edge');
    leading.addCluster('edge', first);
    assert.equal((await leading.reconcileNow('edge')).error, undefined);
    assert.equal(first.fence, 5);
    // Another cluster behind the same name (or the same one rebuilt, its fence ConfigMap gone): a deposed leader's
    // late writes would reach it unless this term raises its fence there too.
    leading.removeCluster('edge');
    const second = fake('edge');
    leading.addCluster('edge', second);
    assert.equal((await leading.reconcileNow('edge')).error, undefined);
    assert.equal(second.fence, 5, 'the cluster added again is fenced at this term');
  } finally {
    leading.stop();
  }
});
