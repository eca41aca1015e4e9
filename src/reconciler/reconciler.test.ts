// The reconciler against a fake of its narrow cluster port (testing/fake-cluster.ts) and a real SQLite store in
// memory, with a clock the test moves: what a granting visa makes in the cluster, what expiry and revocation remove
// (always before anything is added), drift repaired, bindings nobody wants removed, and namespaces it must not or
// cannot write. The same behaviour against a real kube-apiserver is covered by the end-to-end tests in test/.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { systemCaller, type Caller } from '../app/caller.ts';
import { EngagementService } from '../app/engagements.ts';
import { AppEvents } from '../app/events.ts';
import { VisaService } from '../app/visas.ts';
import { Fenced } from '../cluster/errors.ts';
import { PERSON_ANNOTATION } from '../cluster/objects.ts';
import type { Actor } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { aPolicy, DAY, HOUR, MINUTE, NOW } from '../domain/testing/fixtures.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { Reconciler, type PassReport } from './reconciler.ts';
import { FakeCluster } from './testing/fake-cluster.ts';

const EMAIL = 'carol@vendor.example';
let store: Store;
let clock: number;
let cluster: FakeCluster;
let reconciler: Reconciler;
let visas: VisaService;
let engagements: EngagementService;
let carol: Caller;
let approver: Caller;

beforeEach(async () => {
  clock = NOW;
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
    clusterNames: () => ['prod'],
    events: new AppEvents(),
    now: () => clock,
  };
  visas = new VisaService(ports);
  engagements = new EngagementService(ports);
  await engagements.createAs(systemCaller('test'), {
    name: 'acme',
    vendor: 'Acme',
    contractors: [EMAIL],
    sponsor: 'sam@corp.example',
    endsAt: new Date(NOW + 30 * DAY).toISOString(),
    ceiling: {
      clusters: ['prod'],
      namespacePatterns: ['payments', 'billing', 'gone'],
      profiles: ['viewer'],
    },
    maxVisaDuration: '3d',
  });
  cluster = new FakeCluster({
    name: 'prod',
    namespaces: ['payments', 'billing', 'kube-system'],
    profiles: SHIPPED_PROFILES,
  });
  reconciler = new Reconciler({ store, clusters: new Map([['prod', cluster]]), now: () => clock });
});
afterEach(async () => {
  reconciler.stop();
  await store.close();
});

async function grant(namespaces: string[], duration = '2h') {
  const requested = await visas.request(carol, {
    cluster: 'prod',
    namespaces,
    profile: 'viewer',
    duration,
    reason: 'JIRA-1',
  });
  return visas.approve(approver, requested.id, {});
}

describe('the reconciler', () => {
  test("makes the person's ServiceAccount, then one RoleBinding per granted namespace, each after a durable intent", async () => {
    const visa = await grant(['payments', 'billing']);
    const report = await reconciler.reconcileNow('prod');
    assert.equal(report.error, undefined);
    const sa = serviceAccountName(EMAIL);
    // The identity first, then the bindings (written concurrently, so in no particular order).
    assert.equal(cluster.writes[0], `create serviceaccount ${sa}`);
    assert.deepEqual(cluster.writes.slice(1).sort(), [
      `create rolebinding billing/kubevisa-${visa.id}`,
      `create rolebinding payments/kubevisa-${visa.id}`,
    ]);
    const binding = cluster.roleBindings.get(`payments/kubevisa-${visa.id}`)!;
    assert.equal(binding.roleRef.name, 'kubevisa:profile:viewer');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: 'kubevisa-visas' }]);
    assert.equal(binding.metadata.labels['kubevisa.io/visa'], visa.id);
    assert.equal(cluster.serviceAccounts.get(sa)?.metadata.annotations[PERSON_ANNOTATION], EMAIL);
    assert.equal((await store.getVisa(visa.id))?.state, 'active', 'the activation is recorded');
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), [], 'every intent is completed');
    const created = await store.listAudit({ visaId: visa.id });
    assert.ok(
      created.some((e) => e.action === 'cluster.rolebinding.create'),
      created.map((e) => e.action).join(),
    );
    // Converged: a second pass writes nothing.
    const before = cluster.writes.length;
    await reconciler.reconcileNow('prod');
    assert.equal(cluster.writes.length, before);
  });

  test('at notAfter the visa is recorded expired and its bindings and the ServiceAccount go', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    clock = NOW + HOUR + MINUTE;
    const report = await reconciler.reconcileNow('prod');
    assert.deepEqual(report.deleted.sort(), [
      `payments/kubevisa-${visa.id}`,
      `serviceaccount/${serviceAccountName(EMAIL)}`,
    ]);
    assert.equal(cluster.roleBindings.size, 0);
    assert.equal(cluster.serviceAccounts.size, 0);
    const stored = await store.getVisa(visa.id);
    assert.equal(stored?.state, 'expired');
    const [expired] = await store.listAudit({ visaId: visa.id, action: 'visa.expired' });
    assert.equal(expired?.actor, 'system');
  });

  test('removes access before it adds any: a revoked visa goes before a new one is bound', async () => {
    const old = await grant(['payments']);
    await reconciler.reconcileNow('prod');
    await visas.revoke(carol, old.id, 'done with it');
    const next = await grant(['billing']);
    cluster.writes.length = 0;
    await reconciler.reconcileNow('prod');
    assert.deepEqual(cluster.writes, [
      `delete rolebinding payments/kubevisa-${old.id}`,
      `create rolebinding billing/kubevisa-${next.id}`,
    ]);
  });

  test('a binding edited by someone else is deleted and made again; one nobody wants is removed', async () => {
    const visa = await grant(['payments']);
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    const edited = cluster.roleBindings.get(key)!;
    cluster.roleBindings.set(key, { ...edited, roleRef: { ...edited.roleRef, name: 'cluster-admin' } });
    cluster.roleBindings.set('billing/kubevisa-v_stray', {
      ...edited,
      metadata: {
        ...edited.metadata,
        namespace: 'billing',
        name: 'kubevisa-v_stray',
        labels: { ...edited.metadata.labels, 'kubevisa.io/visa': 'v_stray' },
      },
    });
    const report = await reconciler.reconcileNow('prod');
    assert.deepEqual(report.repaired, [key]);
    assert.deepEqual(report.deleted, ['billing/kubevisa-v_stray']);
    assert.equal(cluster.roleBindings.get(key)?.roleRef.name, 'kubevisa:profile:viewer');
    assert.equal(cluster.roleBindings.has('billing/kubevisa-v_stray'), false);
  });

  test('never writes a protected namespace, and reports one that does not exist without stopping the pass', async () => {
    // Rows written around the API's own refusal (an older version, or by hand).
    const visa = await grant(['payments']);
    await store.transaction(async (tx) => {
      const row = (await tx.getVisa(visa.id))!;
      await tx.updateVisa({ ...row, namespaces: ['payments', 'kube-system', 'gone'] }, row.version);
    });
    const report = await reconciler.reconcileNow('prod');
    assert.equal(report.error, undefined);
    assert.deepEqual(report.protectedNamespaces, ['kube-system']);
    assert.deepEqual(report.missingNamespaces, ['gone']);
    assert.deepEqual([...cluster.roleBindings.keys()], [`payments/kubevisa-${visa.id}`]);
  });

  test('a profile ClusterRole widened by hand is put back before any binding to it is made', async () => {
    const [name, role] = [...cluster.profileRoles].find(([n]) => n === 'kubevisa:profile:viewer')!;
    cluster.profileRoles.set(name, {
      ...role,
      rules: [...role.rules, { apiGroups: [''], resources: ['secrets'], verbs: ['get'] }],
    });
    const visa = await grant(['payments']);
    await reconciler.reconcileNow('prod');
    assert.equal(cluster.writes[0], `replace clusterrole ${name}`);
    assert.ok(cluster.writes.indexOf(`create rolebinding payments/kubevisa-${visa.id}`) > 0);
    assert.ok(!cluster.profileRoles.get(name)!.rules.some((r) => r.resources?.includes('secrets')));
  });
});

describe('the reconciler among replicas (src/leader/)', () => {
  test('a follower writes nothing; a leader raises the fence to its epoch before its first write of each term', async () => {
    const visa = await grant(['payments']);
    let leading = false;
    let epoch = 3;
    const fenced = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      leadership: { isLeader: () => leading, fenceEpoch: () => epoch },
    });
    const following = await fenced.reconcileNow('prod');
    assert.match(following.error ?? '', /does not lead/);
    assert.equal(cluster.writes.length, 0);
    leading = true;
    await fenced.reconcileNow('prod');
    assert.equal(cluster.writes[0], 'raise fence 3');
    assert.ok(cluster.writes.includes(`create rolebinding payments/kubevisa-${visa.id}`));
    // Same term: the fence is not raised again. A new term raises it first.
    await fenced.reconcileNow('prod');
    assert.equal(cluster.writes.filter((write) => write.startsWith('raise fence')).length, 1);
    epoch = 4;
    await visas.revoke(approver, visa.id, 'done');
    await fenced.reconcileNow('prod');
    const term4 = cluster.writes.slice(cluster.writes.indexOf('raise fence 4'));
    assert.deepEqual(term4.slice(0, 2), ['raise fence 4', `delete rolebinding payments/kubevisa-${visa.id}`]);
    fenced.stop();
  });

  test('judges deadlines by the clock it is given (the database’s), so one expired there is removed', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    const databaseClock = () => clock + HOUR + MINUTE;
    const late = new Reconciler({ store, clusters: new Map([['prod', cluster]]), now: databaseClock });
    await late.reconcileNow('prod');
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
    assert.equal(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`), false);
    late.stop();
  });
});

describe('the deadline pass (expiries without a full pass)', () => {
  const reads = (name: string) => cluster.reads.get(name) ?? 0;

  test('deletes exactly the bindings of the visas that ended, by name, without listing the cluster', async () => {
    const ended = await grant(['payments', 'billing'], '1h');
    const kept = await grant(['payments'], '2h');
    await reconciler.reconcileNow('prod');
    // One binding is already gone (deleted by hand): a 404 is no error.
    cluster.roleBindings.delete(`billing/kubevisa-${ended.id}`);
    cluster.writes.length = 0;
    const listed = reads('listManagedRoleBindings');
    const listedAccounts = reads('listManagedServiceAccounts');
    clock = NOW + HOUR + MINUTE;

    const report = await reconciler.expireDueNow('prod');
    assert.equal(report.error, undefined);
    assert.equal(report.kind, 'deadlines');
    assert.equal(reads('listManagedRoleBindings'), listed, 'no list of every binding');
    assert.equal(reads('listManagedServiceAccounts'), listedAccounts);
    assert.deepEqual(cluster.writes.sort(), [
      `delete rolebinding billing/kubevisa-${ended.id}`,
      `delete rolebinding payments/kubevisa-${ended.id}`,
    ]);
    assert.deepEqual([...cluster.roleBindings.keys()], [`payments/kubevisa-${kept.id}`]);
    assert.equal((await store.getVisa(ended.id))?.state, 'expired');
    assert.equal((await store.getVisa(kept.id))?.state, 'active');
    const audit = await store.listAudit({ visaId: ended.id });
    assert.equal(audit.filter((e) => e.action === 'visa.expired').length, 1);
    // The trail says what kubevisa deleted: the binding someone else had deleted is not recorded as its delete.
    const deletions = audit.filter((e) => e.action === 'cluster.rolebinding.delete');
    assert.deepEqual(
      deletions.map((e) => e.namespace),
      ['payments'],
    );
    assert.ok(deletions.every((e) => e.personId === ended.personId && e.engagementId === ended.engagementId));
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), [], 'every intent is completed');

    // Nothing more is due; the full pass that follows finds the cluster as the deadline pass left it.
    cluster.writes.length = 0;
    assert.deepEqual((await reconciler.expireDueNow('prod')).deleted, []);
    assert.deepEqual((await reconciler.reconcileNow('prod')).deleted, []);
    assert.deepEqual(cluster.writes, []);
  });

  test('deletes each binding at the version its watch or listing last showed, so the client can do it in one request', async (t) => {
    const watching = new Reconciler({ store, clusters: new Map([['prod', cluster]]), now: () => clock });
    t.after(() => watching.stop());
    await watching.start();
    const expiring = await grant(['payments'], '1h');
    const revoked = await grant(['billing'], '2h');
    await watching.reconcileNow('prod');
    const versionOf = (key: string) => cluster.roleBindings.get(key)?.metadata.resourceVersion;
    const expiringKey = `payments/kubevisa-${expiring.id}`;
    const revokedKey = `billing/kubevisa-${revoked.id}`;
    const expiringVersion = versionOf(expiringKey);
    const revokedVersion = versionOf(revokedKey);
    assert.ok(expiringVersion !== undefined && revokedVersion !== undefined);
    clock = NOW + HOUR;
    await watching.expireDueNow('prod');
    await visas.revoke(carol, revoked.id, 'done with it');
    await watching.reconcileNow('prod');
    assert.deepEqual(cluster.deletedAsSeen, [
      { key: expiringKey, resourceVersion: expiringVersion }, // from the watch: a deadline pass lists nothing
      { key: revokedKey, resourceVersion: revokedVersion }, // from the full pass's listing
    ]);
  });

  test('runs when the deadline timer fires, instead of a full pass', async (t) => {
    const visa = await grant(['payments'], '1h');
    const passes: PassReport[] = [];
    const timed = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      onPass: (report) => passes.push(report),
    });
    t.after(() => timed.stop());
    clock = NOW + HOUR - 50;
    await timed.start();
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`));
    const listed = reads('listManagedRoleBindings');
    clock = NOW + HOUR; // a visa with notAfter = now is over
    const started = Date.now();
    while (!passes.some((pass) => pass.kind === 'deadlines') && Date.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await timed.whenSettled('prod');
    assert.deepEqual(
      passes.map((pass) => pass.kind ?? 'full'),
      ['full', 'deadlines'],
    );
    assert.equal(reads('listManagedRoleBindings'), listed);
    assert.equal(cluster.roleBindings.size, 0);
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
  });

  test("its own deletions coming back through the watch start no full pass; someone else's do", async (t) => {
    const ended = await grant(['payments'], '1h');
    const kept = await grant(['billing'], '2h');
    const passes: PassReport[] = [];
    const watching = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      onPass: (report) => passes.push(report),
    });
    t.after(() => watching.stop());
    await watching.start();
    passes.length = 0;
    clock = NOW + HOUR;
    await watching.expireDueNow('prod');
    await new Promise((resolve) => setImmediate(resolve));
    await watching.whenSettled('prod');
    assert.deepEqual(
      passes.map((pass) => pass.kind ?? 'full'),
      ['deadlines'],
    );
    assert.equal(cluster.roleBindings.has(`payments/kubevisa-${ended.id}`), false);

    await cluster.deleteRoleBinding('billing', `kubevisa-${kept.id}`);
    await new Promise((resolve) => setImmediate(resolve));
    await watching.whenSettled('prod');
    // The full pass's own create comes back through the watch too, and may start one more (as it always has).
    assert.equal(passes[0]?.kind, 'deadlines');
    assert.ok(passes.length >= 2 && passes.slice(1).every((pass) => pass.kind === undefined));
    assert.ok(cluster.roleBindings.has(`billing/kubevisa-${kept.id}`), 'put back by the full pass');
  });

  test('a follower writes nothing; a leader raises the fence of a new term before its first delete', async (t) => {
    const visa = await grant(['payments'], '1h');
    let leading = true;
    let epoch = 3;
    const fenced = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      leadership: { isLeader: () => leading, fenceEpoch: () => epoch },
    });
    t.after(() => fenced.stop());
    await fenced.reconcileNow('prod');
    clock = NOW + HOUR + MINUTE;
    leading = false;
    cluster.writes.length = 0;
    const following = await fenced.expireDueNow('prod');
    assert.match(following.error ?? '', /does not lead/);
    assert.deepEqual(cluster.writes, []);
    assert.equal((await store.getVisa(visa.id))?.state, 'active', 'a follower records nothing either');

    leading = true;
    epoch = 4;
    await fenced.expireDueNow('prod');
    assert.deepEqual(cluster.writes, ['raise fence 4', `delete rolebinding payments/kubevisa-${visa.id}`]);
  });

  test('a crash between the intent and the delete is repaired by the next process', async (t) => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    let crash = false;
    const dying = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      beforeWrites: () => {
        // What a process killed right after its intents were durable leaves behind: intents, and no cluster write.
        if (crash) throw new Error('killed');
      },
    });
    t.after(() => dying.stop());
    crash = true;
    clock = NOW + HOUR + MINUTE;
    const report = await dying.expireDueNow('prod');
    assert.equal(report.error, 'killed');
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`));
    const [intent, ...more] = await store.listPendingIntents({ cluster: 'prod' });
    assert.deepEqual(more, []);
    assert.equal(intent?.kind, 'rolebinding.delete');
    assert.equal(intent?.visaId, visa.id);

    const next = new Reconciler({ store, clusters: new Map([['prod', cluster]]), now: () => clock });
    t.after(() => next.stop());
    await next.start();
    assert.equal(cluster.roleBindings.size, 0, 'the binding is gone');
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
  });

  test('a visa whose delete failed stays due, and the next deadline pass deletes it', async () => {
    const visa = await grant(['payments', 'billing'], '1h');
    await reconciler.reconcileNow('prod');
    const deleteRoleBinding = cluster.deleteRoleBinding.bind(cluster);
    cluster.deleteRoleBinding = async (namespace, name) => {
      if (namespace === 'billing') throw new Error('kube-apiserver timed out');
      return deleteRoleBinding(namespace, name);
    };
    clock = NOW + HOUR + MINUTE;
    const failed = await reconciler.expireDueNow('prod');
    assert.equal(failed.error, 'kube-apiserver timed out');
    assert.deepEqual(failed.deleted, [`payments/kubevisa-${visa.id}`], 'the other delete is made and audited');
    assert.equal((await store.getVisa(visa.id))?.state, 'active', 'not recorded expired while a binding is left');
    assert.equal((await store.listAudit({ visaId: visa.id, action: 'cluster.rolebinding.delete' })).length, 1);

    cluster.deleteRoleBinding = deleteRoleBinding;
    const retried = await reconciler.expireDueNow('prod');
    assert.equal(retried.error, undefined);
    assert.equal(cluster.roleBindings.size, 0);
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
  });

  test('runs while a full pass is still reading; that pass then neither makes the binding again nor records it', async () => {
    const ended = await grant(['payments'], '1h');
    const kept = await grant(['billing'], '2h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${ended.id}`;
    clock = NOW + HOUR - MINUTE;
    // The full pass reads every granting visa (the one ending still grants), then lists the cluster after the deadline
    // pass below deleted its binding, and is held there.
    const held = cluster.holdNextRoleBindingList();
    cluster.writes.length = 0;
    let fullDone = false;
    const full = reconciler.reconcileNow('prod').finally(() => (fullDone = true));
    // Released only once the deadline pass is over: it must not wait for the full pass.
    const deadlineDone = held.listed.then(async () => {
      clock = NOW + HOUR + MINUTE;
      const report = await reconciler.expireDueNow('prod');
      assert.equal(fullDone, false, 'the deadline pass ran while the full pass was still reading');
      return report;
    });
    const expired = await Promise.race([
      deadlineDone,
      new Promise<undefined>((resolve) => setTimeout(resolve, 5000, undefined)),
    ]);
    held.release();
    assert.ok(expired !== undefined, 'the deadline pass waited for the full pass');
    assert.deepEqual(expired.deleted, [key]);
    const report = await full;
    assert.equal(report.error, undefined);
    assert.deepEqual(report.created, [], 'no binding made for a visa whose notAfter had passed when it wrote');
    assert.deepEqual(cluster.writes, [`delete rolebinding ${key}`]);
    assert.deepEqual([...cluster.roleBindings.keys()], [`billing/kubevisa-${kept.id}`]);
    assert.equal((await store.getVisa(ended.id))?.state, 'expired');
    assert.equal((await store.listAudit({ visaId: ended.id, action: 'cluster.rolebinding.delete' })).length, 1);
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
  });

  test('a full pass makes no binding for a visa whose notAfter passed while it read', async () => {
    const visa = await grant(['payments'], '1h');
    clock = NOW + HOUR - MINUTE;
    const held = cluster.holdNextRoleBindingList();
    const full = reconciler.reconcileNow('prod');
    await held.listed;
    clock = NOW + HOUR + MINUTE;
    held.release();
    const report = await full;
    assert.equal(report.error, undefined);
    assert.deepEqual(report.created, [`serviceaccount/${serviceAccountName(EMAIL)}`]);
    assert.equal(cluster.roleBindings.size, 0);
    assert.equal((await store.listAudit({ visaId: visa.id, action: 'cluster.rolebinding.create' })).length, 0);
  });

  test('a binding a full pass listed and someone deleted before its delete is completed quietly: nothing to record', async () => {
    const visa = await grant(['payments']);
    await reconciler.reconcileNow('prod');
    const binding = cluster.roleBindings.get(`payments/kubevisa-${visa.id}`)!;
    cluster.roleBindings.set('billing/kubevisa-v_stray', {
      ...binding,
      metadata: {
        ...binding.metadata,
        namespace: 'billing',
        name: 'kubevisa-v_stray',
        labels: { ...binding.metadata.labels, 'kubevisa.io/visa': 'v_stray' },
      },
    });
    const held = cluster.holdNextRoleBindingList();
    const full = reconciler.reconcileNow('prod');
    await held.listed;
    cluster.roleBindings.delete('billing/kubevisa-v_stray');
    held.release();
    const report = await full;
    assert.equal(report.error, undefined);
    assert.deepEqual(report.deleted, []);
    assert.equal((await store.listAudit({ action: 'cluster.rolebinding.delete' })).length, 0);
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), [], 'its intent is completed');
  });

  test('on a cluster that allows direct mode, a full pass follows to judge the ServiceAccount and its tokens', async (t) => {
    await grant(['payments'], '1h');
    const passes: PassReport[] = [];
    const direct = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      allowsDirectMode: () => true,
      onPass: (report) => passes.push(report),
    });
    t.after(() => direct.stop());
    await direct.reconcileNow('prod');
    clock = NOW + HOUR + MINUTE;
    passes.length = 0;
    await direct.expireDueNow('prod');
    await direct.whenSettled('prod');
    assert.deepEqual(
      passes.map((pass) => pass.kind ?? 'full'),
      ['deadlines', 'full'],
    );
    assert.equal(cluster.serviceAccounts.size, 0, 'no visa left: the ServiceAccount went, and every token with it');
  });
});

/** The next call of `method` on `target` waits, before it reads anything, until `open` is called. */
function gate<T extends object, K extends keyof T>(target: T, method: K) {
  const original = target[method] as (...args: unknown[]) => Promise<unknown>;
  const reached = Promise.withResolvers<void>();
  const opened = Promise.withResolvers<void>();
  (target as Record<K, unknown>)[method] = async (...args: unknown[]) => {
    (target as Record<K, unknown>)[method] = original;
    reached.resolve();
    await opened.promise;
    return original.apply(target, args);
  };
  return { reached: reached.promise, open: () => opened.resolve() };
}

// A deadline pass beside a full pass: the interleavings the concurrent passes allow. Each test holds the full pass at a
// point of its reads (a gate the test opens), runs a deadline pass there, then lets the full pass write.
describe('a deadline pass beside a full pass', () => {
  const within = <T>(promise: Promise<T>, ms = 2000) =>
    Promise.race([promise, new Promise<undefined>((resolve) => setTimeout(resolve, ms, undefined))]);

  test('a visa cut short while a full pass reads keeps no binding once the deadline pass deleted it', async () => {
    const visa = await grant(['payments'], '2h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    clock = NOW + 10 * MINUTE;
    // The full pass reads the granting visas (this one ends at NOW + 2h), and is held before it lists the bindings.
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    // The sponsor brings the engagement's end forward: the visa now ends at NOW + 20 min.
    await engagements.changeEndAs(systemCaller('test'), visa.engagementId, NOW + 20 * MINUTE, 'contract cut short');
    clock = NOW + 21 * MINUTE;
    const expired = await reconciler.expireDueNow('prod');
    assert.deepEqual(expired.deleted, [key]);
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
    list.open();
    const report = await full;
    assert.equal(report.error, undefined);
    assert.equal(cluster.roleBindings.has(key), false, 'the binding of a visa recorded expired was made again');
    assert.deepEqual(
      await store.listAudit({ visaId: visa.id, action: 'cluster.rolebinding.create' }).then((a) => a.length),
      1,
    );
  });

  test('a clock that steps back a few ms (a new database clock sample) does not bring back a deleted binding', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    clock = NOW + HOUR - 5;
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    // The deadline timer fires just after notAfter.
    clock = NOW + HOUR + 2;
    const expired = await reconciler.expireDueNow('prod');
    assert.deepEqual(expired.deleted, [key]);
    // databaseNow() re-measures its offset at every lease claim; this sample puts the clock 4 ms back.
    clock = NOW + HOUR - 2;
    list.open();
    await full;
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
    assert.equal(cluster.roleBindings.has(key), false, 'the binding of a visa recorded expired was made again');
  });

  test('a full pass that starts just after a notAfter leaves the deadline pass nothing to do while it reads', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    // An approval's kick starts a full pass a moment after the notAfter, before the deadline timer fires.
    clock = NOW + HOUR + 1;
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    const expired = await within(reconciler.expireDueNow('prod'));
    const recordedExpired = (await store.getVisa(visa.id))?.state === 'expired';
    const bindingLeft = cluster.roleBindings.has(key);
    list.open();
    await full;
    assert.ok(expired !== undefined, 'the deadline pass waited for the full pass');
    assert.ok(!(recordedExpired && bindingLeft), 'recorded expired while its binding is left for the full pass');
    assert.equal(bindingLeft, false, 'the binding of the visa that ended is left until the full pass writes');
  });

  test("a deadline pass does not wait while a full pass reads the cluster's live visas", async () => {
    await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    clock = NOW + HOUR + MINUTE;
    // listVisas({ cluster, states: approved/active }): every live visa of the cluster, a read of the full pass.
    const read = gate(store, 'listVisas');
    const full = reconciler.reconcileNow('prod');
    await read.reached;
    const expired = await within(reconciler.expireDueNow('prod'));
    read.open();
    await full;
    assert.ok(expired !== undefined, "the deadline pass waited behind the full pass's read of every live visa");
  });

  test('a delete the deadline pass failed to make stays pending after a full pass that read before it', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    clock = NOW + HOUR - MINUTE;
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    const deleteRoleBinding = cluster.deleteRoleBinding.bind(cluster);
    cluster.deleteRoleBinding = async () => {
      throw new Error('kube-apiserver timed out');
    };
    clock = NOW + HOUR + MINUTE;
    const failed = await reconciler.expireDueNow('prod');
    assert.equal(failed.error, 'kube-apiserver timed out');
    assert.equal((await store.listPendingIntents({ cluster: 'prod' })).length, 1);
    cluster.deleteRoleBinding = deleteRoleBinding;
    list.open();
    const report = await full;
    assert.equal(report.error, undefined);
    assert.equal(cluster.roleBindings.has(key), true, 'the full pass, whose picture predates the deadline, kept it');
    assert.equal(
      (await store.listPendingIntents({ cluster: 'prod' })).length,
      1,
      'the intent of a delete that was not made was completed',
    );
  });

  test('a drifted binding the deadline pass deleted meanwhile is not recorded as repaired', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    const key = `payments/kubevisa-${visa.id}`;
    const edited = cluster.roleBindings.get(key)!;
    cluster.roleBindings.set(key, { ...edited, roleRef: { ...edited.roleRef, name: 'cluster-admin' } });
    clock = NOW + HOUR - MINUTE;
    const list = gate(cluster, 'listManagedServiceAccounts');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    // The full pass has the drifted binding in its picture (listed beside the ServiceAccounts, held here).
    await new Promise((resolve) => setImmediate(resolve));
    clock = NOW + HOUR + MINUTE;
    const expired = await reconciler.expireDueNow('prod');
    assert.deepEqual(expired.deleted, [key]);
    list.open();
    const report = await full;
    assert.equal(cluster.roleBindings.has(key), false);
    assert.deepEqual(report.repaired, [], 'a repair recorded for a delete the full pass did not make');
    assert.deepEqual(await store.listAudit({ action: 'cluster.rolebinding.repair-delete' }), []);
  });

  test('a binding deleted by a full pass is not recorded deleted a second time by the deadline pass', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    // The full pass settles states just before notAfter and reads the granting visas just after it: the visa is
    // not granting, not yet recorded expired, so the full pass deletes its binding and the deadline pass deletes it
    // again (kube-apiserver answers 404).
    clock = NOW + HOUR - 1;
    const profiles = gate(store, 'listProfiles');
    const full = reconciler.reconcileNow('prod');
    await profiles.reached;
    clock = NOW + HOUR + 1;
    profiles.open();
    await full;
    await reconciler.expireDueNow('prod');
    assert.equal((await store.getVisa(visa.id))?.state, 'expired');
    assert.equal(
      (await store.listAudit({ action: 'cluster.rolebinding.delete' })).length,
      1,
      'one binding deleted once, audited twice',
    );
  });

  test('a deadline pass fenced while a full pass reads: the full pass writes nothing once this replica is deposed', async () => {
    await grant(['payments'], '1h');
    let leading = true;
    const fenced: Error[] = [];
    const replica = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      leadership: {
        isLeader: () => leading,
        fenceEpoch: () => 3,
        onFenced: (error) => {
          fenced.push(error);
          leading = false;
        },
      },
    });
    try {
      await replica.reconcileNow('prod');
      const next = await grant(['billing'], '2h');
      clock = NOW + HOUR - MINUTE;
      const list = gate(cluster, 'listManagedRoleBindings');
      const full = replica.reconcileNow('prod');
      await list.reached;
      const deleteRoleBinding = cluster.deleteRoleBinding.bind(cluster);
      cluster.deleteRoleBinding = async () => {
        throw new Fenced('kubevisa fencing: epoch 3 is below the fence 4');
      };
      clock = NOW + HOUR + MINUTE;
      const deadline = await replica.expireDueNow('prod');
      assert.match(deadline.error ?? '', /fencing/);
      assert.equal(fenced.length, 1);
      cluster.deleteRoleBinding = deleteRoleBinding;
      cluster.writes.length = 0;
      list.open();
      await full;
      assert.equal(
        cluster.writes.includes(`create rolebinding billing/kubevisa-${next.id}`),
        false,
        'a deposed replica went on writing',
      );
    } finally {
      replica.stop();
    }
  });
});

// What held when the two kinds of pass run side by side (guards for the properties the change relies on).
describe('a deadline pass beside a full pass: what holds', () => {
  const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

  test('whenSettled waits for both passes, the full one held in its reads and the deadline one in its delete', async () => {
    await grant(['payments'], '1h');
    await grant(['billing'], '2h');
    await reconciler.reconcileNow('prod');
    clock = NOW + HOUR - MINUTE;
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    clock = NOW + HOUR + MINUTE;
    const del = gate(cluster, 'deleteRoleBinding');
    const deadline = reconciler.expireDueNow('prod');
    await del.reached;
    let settled = false;
    const whenSettled = reconciler.whenSettled('prod').then(() => (settled = true));
    list.open();
    await tick();
    assert.equal(settled, false, 'the full pass waits for the write section, and whenSettled for it');
    del.open();
    await Promise.all([full, deadline, whenSettled]);
    assert.equal(settled, true);
    assert.equal(cluster.roleBindings.size, 1);
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
  });

  test('a cluster removed while both passes run: they finish, and one added again under the name is reconciled', async () => {
    const visa = await grant(['payments'], '1h');
    await reconciler.reconcileNow('prod');
    clock = NOW + HOUR - MINUTE;
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = reconciler.reconcileNow('prod');
    await list.reached;
    clock = NOW + HOUR + MINUTE;
    const del = gate(cluster, 'deleteRoleBinding');
    const deadline = reconciler.expireDueNow('prod');
    await del.reached;
    reconciler.removeCluster('prod');
    del.open();
    list.open();
    const [fullReport, deadlineReport] = await Promise.all([full, deadline]);
    assert.equal(fullReport.error, undefined);
    assert.equal(deadlineReport.error, undefined);
    await assert.rejects(reconciler.expireDueNow('prod'), /unknown cluster/);
    const again = new FakeCluster({ name: 'prod', namespaces: ['payments', 'billing'], profiles: SHIPPED_PROFILES });
    reconciler.addCluster('prod', again);
    const report = await reconciler.reconcileNow('prod');
    assert.equal(report.error, undefined);
    assert.equal(again.roleBindings.has(`payments/kubevisa-${visa.id}`), false);
  });
});

// The visa pass: a commit names the visas it changed, and only those are converged, without listing the cluster.
describe('the visa pass (the visas a commit named, without listing the cluster)', () => {
  const reads = (name: string) => cluster.reads.get(name) ?? 0;
  const settle = async (r: Reconciler) => {
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      await r.whenSettled('prod');
    }
  };
  /** A reconciler that has run its first full pass and watches the fake cluster, with every pass it runs. */
  async function started(t: { after: (fn: () => void) => void }, options: { allowsDirectMode?: boolean } = {}) {
    const passes: PassReport[] = [];
    const r = new Reconciler({
      store,
      clusters: new Map([['prod', cluster]]),
      now: () => clock,
      onPass: (report) => passes.push(report),
      ...(options.allowsDirectMode ? { allowsDirectMode: () => true } : {}),
    });
    t.after(() => r.stop());
    await r.start();
    await settle(r);
    passes.length = 0;
    return { r, passes, kinds: () => passes.map((pass) => pass.kind ?? 'full') };
  }

  test("makes an approved visa's ServiceAccount and bindings without listing the cluster; its echo starts no full pass", async (t) => {
    const { r, kinds } = await started(t);
    const listed = reads('listManagedRoleBindings');
    const listedAccounts = reads('listManagedServiceAccounts');
    const visa = await grant(['payments', 'billing']);
    const report = await r.convergeVisasSoon('prod', [visa.id]);
    await settle(r);
    assert.equal(report.error, undefined);
    assert.equal(report.kind, 'visas');
    assert.deepEqual(report.created.sort(), [
      `billing/kubevisa-${visa.id}`,
      `payments/kubevisa-${visa.id}`,
      `serviceaccount/${serviceAccountName(EMAIL)}`,
    ]);
    assert.equal(reads('listManagedRoleBindings'), listed, 'no list of every binding');
    assert.equal(reads('listManagedServiceAccounts'), listedAccounts);
    assert.deepEqual(kinds(), ['visas'], 'its own creations coming back through the watch start no full pass');
    assert.equal((await store.getVisa(visa.id))?.state, 'active');
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
    assert.equal((await store.listAudit({ visaId: visa.id, action: 'cluster.rolebinding.create' })).length, 2);
    // A full pass after it finds the cluster converged.
    cluster.writes.length = 0;
    assert.deepEqual((await r.reconcileNow('prod')).created, []);
    assert.deepEqual(cluster.writes, []);
  });

  test('before a full pass has judged the profiles it binds nothing and asks for one', async () => {
    const visa = await grant(['payments']);
    const report = await reconciler.convergeVisasSoon('prod', [visa.id]);
    assert.deepEqual(report.created, []);
    assert.deepEqual(cluster.writes, []);
    await reconciler.whenSettled('prod');
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`), 'the full pass it asked for bound it');
  });

  test("a revoked visa's bindings go at once, then a full pass removes the ServiceAccount nobody needs", async (t) => {
    const visa = await grant(['payments', 'billing']);
    const { r, kinds } = await started(t);
    assert.equal(cluster.roleBindings.size, 2);
    await visas.revoke(approver, visa.id, 'done early');
    const report = await r.convergeVisasSoon('prod', [visa.id]);
    assert.deepEqual(report.deleted.sort(), [`billing/kubevisa-${visa.id}`, `payments/kubevisa-${visa.id}`]);
    await settle(r);
    assert.equal(kinds()[0], 'visas');
    assert.ok(kinds().includes('full'), kinds().join());
    assert.equal(cluster.roleBindings.size, 0);
    assert.equal(cluster.serviceAccounts.size, 0);
    assert.equal((await store.listAudit({ visaId: visa.id, action: 'cluster.rolebinding.delete' })).length, 2);
  });

  test('ids of visas that ended long ago cost no cluster write when their bindings are not there', async (t) => {
    const visa = await grant(['payments'], '1h');
    const { r } = await started(t);
    clock = NOW + HOUR + MINUTE;
    await r.expireDueNow('prod');
    await settle(r);
    clock = NOW + HOUR + RECENT_END;
    cluster.writes.length = 0;
    const report = await r.convergeVisasSoon('prod', [visa.id, 'v_unknown']);
    assert.equal(report.error, undefined);
    assert.deepEqual(
      cluster.writes.filter((write) => write.includes('rolebinding')),
      [],
    );
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
  });

  test('binds no visa whose profile ClusterRole was widened and could not be restored', async (t) => {
    const { r } = await started(t);
    const role = cluster.profileRoles.get('kubevisa:profile:viewer')!;
    role.rules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['get'] });
    cluster.replaceProfileClusterRole = async () => {
      throw new Error('forbidden (test)');
    };
    await r.reconcileNow('prod');
    const visa = await grant(['payments']);
    cluster.writes.length = 0;
    const report = await r.convergeVisasSoon('prod', [visa.id]);
    assert.deepEqual(report.created, []);
    assert.deepEqual(cluster.writes, []);
    assert.equal(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`), false);
  });

  test('a full pass that read the visas before a visa pass made a binding does not delete it as unwanted', async (t) => {
    const { r } = await started(t);
    // The full pass reads the visas (none grants yet) and is held before it lists the cluster.
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = r.reconcileNow('prod');
    await list.reached;
    const visa = await grant(['payments']);
    const made = await r.convergeVisasSoon('prod', [visa.id]);
    assert.deepEqual(made.created.sort(), [
      `payments/kubevisa-${visa.id}`,
      `serviceaccount/${serviceAccountName(EMAIL)}`,
    ]);
    list.open();
    const report = await full;
    assert.equal(report.error, undefined);
    assert.deepEqual(report.deleted, [], 'neither the binding nor the ServiceAccount made from a newer read');
    await settle(r);
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`));
    assert.equal(cluster.serviceAccounts.size, 1);
  });

  test('a full pass running alongside a visa pass that made something is followed by one more', async (t) => {
    const { r, kinds } = await started(t);
    const list = gate(cluster, 'listManagedRoleBindings');
    const full = r.reconcileNow('prod');
    await list.reached;
    const visa = await grant(['payments']);
    await r.convergeVisasSoon('prod', [visa.id]);
    list.open();
    await full;
    await settle(r);
    // The held full pass, the visa pass, and the full pass the visa pass asked for (it lists after the binding).
    assert.deepEqual(kinds().filter((kind) => kind === 'full').length, 2, kinds().join());
  });

  test('a visa revoked while the pass writes gets no binding', async (t) => {
    const { r } = await started(t);
    const visa = await grant(['payments']);
    const read = gate(cluster, 'getServiceAccount');
    const pass = r.convergeVisasSoon('prod', [visa.id]);
    await read.reached;
    await visas.revoke(approver, visa.id, 'changed my mind');
    read.open();
    const report = await pass;
    assert.equal(report.error, undefined);
    assert.deepEqual(report.created, [`serviceaccount/${serviceAccountName(EMAIL)}`]);
    assert.equal(cluster.roleBindings.size, 0);
  });

  test('a binding already there (made by someone else, not yet seen) leaves the judgement to a full pass', async (t) => {
    const { r, kinds } = await started(t);
    const visa = await grant(['payments']);
    // Made unseen by the watch, as kube-apiserver would refuse a second create.
    cluster.watchManagedRoleBindings = () => () => undefined;
    const foreign = structuredClone(visaBindingOf(visa.id));
    cluster.roleBindings.set(`payments/kubevisa-${visa.id}`, foreign);
    const report = await r.convergeVisasSoon('prod', [visa.id]);
    assert.equal(report.error, undefined);
    await settle(r);
    assert.ok(kinds().includes('full'), kinds().join());
    assert.deepEqual(await store.listPendingIntents({ cluster: 'prod' }), []);
  });

  test('on a cluster that allows direct mode, granting is the full pass’s judgement', async (t) => {
    const { r, kinds } = await started(t, { allowsDirectMode: true });
    const visa = await grant(['payments']);
    const report = await r.convergeVisasSoon('prod', [visa.id]);
    assert.deepEqual(report.created, []);
    await settle(r);
    assert.ok(kinds().includes('full'));
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`));
  });

  test('takes at most 500 visas a pass, and a flood of ids beyond 5,000 becomes one full pass', async (t) => {
    const { r, kinds } = await started(t);
    const ids = Array.from({ length: 700 }, (_, i) => `v_none${i}`);
    await r.convergeVisasSoon('prod', ids);
    await settle(r);
    assert.deepEqual(kinds(), ['visas', 'visas']);
    const before = kinds().length;
    const flood = Array.from({ length: 5001 }, (_, i) => `v_flood${i}`);
    const report = await r.convergeVisasSoon('prod', flood);
    assert.equal(report.kind, undefined, 'a full pass');
    await settle(r);
    assert.ok(
      kinds()
        .slice(before)
        .every((kind) => kind === 'full'),
      kinds().join(),
    );
  });

  test('activations at notBefore are visa passes', async (t) => {
    const { r, kinds } = await started(t);
    const requested = await visas.request(carol, {
      cluster: 'prod',
      namespaces: ['payments'],
      profile: 'viewer',
      duration: '2h',
      reason: 'JIRA-2',
      startsAt: new Date(NOW + 50).toISOString(),
    });
    const visa = await visas.approve(approver, requested.id, {});
    await r.reconcileNow('prod');
    await settle(r);
    const before = kinds().length;
    clock = NOW + 60;
    const started_ = Date.now();
    while (!cluster.roleBindings.has(`payments/kubevisa-${visa.id}`) && Date.now() - started_ < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await settle(r);
    assert.ok(cluster.roleBindings.has(`payments/kubevisa-${visa.id}`));
    assert.deepEqual(kinds().slice(before), ['visas']);
  });
});

const RECENT_END = 11 * MINUTE;

function visaBindingOf(visaId: string) {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: `kubevisa-${visaId}`,
      namespace: 'payments',
      labels: { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': visaId },
      annotations: {},
      resourceVersion: '1',
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'someone-else', namespace: 'kubevisa-visas' }],
  } as unknown as ReturnType<FakeCluster['roleBindings']['get']> & object;
}
