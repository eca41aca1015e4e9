/**
 * The reconciler's decision about direct-mode tokens, on a fake of its cluster port and the real (in-memory SQLite)
 * store: when a person's ServiceAccount is made again, why, and which bindings wait for kube-apiserver's token cache.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { OwnRbac } from '../cluster/client.ts';
import {
  DIRECT_TOKENS_UNTIL_ANNOTATION,
  kubevisaControllerRbac,
  profileClusterRole,
  ROTATED_AT_ANNOTATION,
  type RoleBinding,
  type ServiceAccount,
} from '../cluster/objects.ts';
import type { Person, Profile, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { anEngagement, CONTRACTOR_EMAIL, HOUR, MINUTE, NOW } from '../domain/testing/fixtures.ts';
import { formatInstant } from '../domain/time.ts';
import { debuggerProfile, viewerProfile } from '../rbac/profiles.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import type { ReconcilerCluster } from './cluster-port.ts';
import { desiredServiceAccount } from './desired.ts';
import { TOKEN_CACHE_HOLD_MS } from './direct-tokens.ts';
import { Reconciler, type PassReport } from './reconciler.ts';

const PROFILES: Profile[] = [viewerProfile, debuggerProfile];
const SA = serviceAccountName(CONTRACTOR_EMAIL);

/** An in-memory cluster: person ServiceAccounts (each with a fresh uid) and visa RoleBindings. */
class FakeCluster implements ReconcilerCluster {
  readonly name = 'prod';
  readonly accounts = new Map<string, ServiceAccount>();
  readonly bindings = new Map<string, RoleBinding>();
  readonly calls: string[] = [];
  failNextAccountCreate = false;
  #uids = 0;

  async listManagedRoleBindings() {
    return [...this.bindings.values()];
  }
  async raiseFence(epoch: number) {
    this.calls.push(`raise fence ${epoch}`);
  }
  async createRoleBinding(binding: RoleBinding) {
    this.calls.push(`create rolebinding ${binding.metadata.namespace}/${binding.metadata.name}`);
    this.bindings.set(`${binding.metadata.namespace}/${binding.metadata.name}`, binding);
  }
  async deleteRoleBinding(namespace: string, name: string) {
    this.calls.push(`delete rolebinding ${namespace}/${name}`);
    return this.bindings.delete(`${namespace}/${name}`);
  }
  async listManagedServiceAccounts() {
    return [...this.accounts.values()];
  }
  async createServiceAccount(account: ServiceAccount) {
    if (this.failNextAccountCreate) {
      this.failNextAccountCreate = false;
      throw new Error('create failed (test)');
    }
    if (this.accounts.has(account.metadata.name)) throw new Error(`${account.metadata.name} exists`);
    this.calls.push(`create serviceaccount ${account.metadata.name}`);
    this.accounts.set(account.metadata.name, {
      ...account,
      metadata: { ...account.metadata, uid: `uid-${++this.#uids}` },
    });
  }
  async deleteServiceAccount(name: string) {
    this.calls.push(`delete serviceaccount ${name}`);
    return this.accounts.delete(name);
  }
  async getServiceAccount(name: string) {
    return this.accounts.get(name);
  }
  watchManagedRoleBindings() {
    return () => {};
  }
  async listProfileClusterRoles() {
    return PROFILES.map(profileClusterRole);
  }
  async replaceProfileClusterRole() {
    throw new Error('not expected');
  }
  watchProfileClusterRoles() {
    return () => {};
  }
  async readOwnRbac(): Promise<OwnRbac> {
    return kubevisaControllerRbac(PROFILES.map((profile) => profile.name));
  }
  async replaceOwnRole() {
    throw new Error('not expected');
  }
  watchOwnRbac() {
    return () => {};
  }

  /** Marks the person's ServiceAccount as having direct tokens that may live until `until`. */
  recordDirectTokens(until: number) {
    const account = this.accounts.get(SA)!;
    account.metadata.annotations[DIRECT_TOKENS_UNTIL_ANNOTATION] = formatInstant(until);
  }
}

let store: Store;
let cluster: FakeCluster;
let reconciler: Reconciler;
let person: Person;
let clock: number;
let clusterAllowsDirectMode: boolean;

beforeEach(async () => {
  store = await openSqliteStore({ path: ':memory:' });
  clock = NOW;
  clusterAllowsDirectMode = true;
  person = await store.transaction(async (tx) => {
    for (const profile of PROFILES) await tx.upsertProfile(profile);
    await tx.insertEngagement(anEngagement());
    return tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: 'carol',
      email: CONTRACTOR_EMAIL,
      displayName: 'Carol',
      groups: [],
      now: NOW - HOUR,
    });
  });
  await store.transaction((tx) =>
    tx.insertSession({
      personId: person.id,
      secretHash: 'hash-1',
      createdAt: NOW - HOUR,
      expiresAt: NOW + 8 * HOUR,
    }),
  );
  cluster = new FakeCluster();
  reconciler = new Reconciler({
    store,
    clusters: new Map([['prod', cluster]]),
    now: () => clock,
    allowsDirectMode: () => clusterAllowsDirectMode,
  });
});
afterEach(async () => {
  reconciler.stop();
  await store.close();
});

async function grant(id: string, profile: string, namespace: string): Promise<void> {
  const visa: Visa = {
    id,
    engagementId: 'e_acme',
    personId: person.id,
    personEmail: person.email,
    cluster: 'prod',
    namespaces: [namespace],
    profile,
    reason: 'JIRA-1',
    requestedAt: clock - MINUTE,
    requestedSeconds: 3600,
    notBefore: clock - MINUTE,
    notAfter: clock + HOUR,
    state: 'active',
    approvals: [{ by: 'sam@corp.example', at: clock - MINUTE }],
    requiredApprovals: 1,
  };
  await store.transaction((tx) => tx.insertVisa(visa));
}

async function pass(): Promise<PassReport> {
  const report = await reconciler.reconcileNow('prod');
  assert.equal(report.error, undefined, report.error);
  return report;
}

const rotations = () => store.listAudit({ action: 'cluster.serviceaccount.rotated', limit: 100 });

/** A viewer visa bound, and a direct token issued for the ServiceAccount that lives until `until`. */
async function holderOfDirectToken(until = clock + 10 * MINUTE) {
  await grant('v_view', 'viewer', 'payments');
  await pass();
  assert.ok(cluster.bindings.has('payments/kubevisa-v_view'));
  cluster.recordDirectTokens(until);
  return cluster.accounts.get(SA)!.metadata.uid;
}

describe('reconciler: direct tokens end before a binding they must not carry', () => {
  test('a gateway-only visa for a person with a live direct token: the ServiceAccount is made again, audited, and the binding waits out the token cache', async () => {
    const oldUid = await holderOfDirectToken();
    await grant('v_debug', 'debugger', 'payments');
    cluster.calls.length = 0;
    const first = await pass();

    const account = cluster.accounts.get(SA)!;
    assert.notEqual(account.metadata.uid, oldUid, 'a new uid ends every token of the old one');
    assert.deepEqual(cluster.calls, [`delete serviceaccount ${SA}`, `create serviceaccount ${SA}`]);
    assert.equal(account.metadata.annotations[DIRECT_TOKENS_UNTIL_ANNOTATION], undefined);
    assert.equal(account.metadata.annotations[ROTATED_AT_ANNOTATION], formatInstant(clock));
    const desired = desiredServiceAccount(person.email, person.id);
    assert.deepEqual(account.metadata.labels, desired.metadata.labels, 'kubevisa keeps its labels');
    for (const [key, value] of Object.entries(desired.metadata.annotations))
      assert.equal(account.metadata.annotations[key], value, `kubevisa keeps ${key}`);
    assert.deepEqual(first.rotated, [SA]);
    assert.deepEqual(first.held, ['payments/kubevisa-v_debug']);
    assert.equal(cluster.bindings.has('payments/kubevisa-v_debug'), false, 'held');
    assert.ok(cluster.bindings.has('payments/kubevisa-v_view'), 'the bindings it had stay');

    const [event, ...more] = await rotations();
    assert.equal(more.length, 0);
    assert.equal(event!.personId, person.id);
    assert.equal(event!.visaId, 'v_debug');
    assert.match(event!.details.reason as string, /visa v_debug \(profile 'debugger'\)/);

    clock += TOKEN_CACHE_HOLD_MS - 1;
    assert.deepEqual((await pass()).held, ['payments/kubevisa-v_debug'], 'still inside the token cache');
    clock += 1;
    cluster.calls.length = 0;
    const later = await pass();
    assert.equal(later.held, undefined);
    assert.deepEqual(cluster.calls, ['create rolebinding payments/kubevisa-v_debug'], 'no second rotation');
    assert.equal((await rotations()).length, 1);
  });

  test('a person without a live direct token gets a gateway-only visa bound at once, with no rotation', async () => {
    await holderOfDirectToken(clock - 1);
    await grant('v_debug', 'debugger', 'payments');
    cluster.calls.length = 0;
    const report = await pass();
    assert.deepEqual(cluster.calls, ['create rolebinding payments/kubevisa-v_debug']);
    assert.equal(report.rotated, undefined);
    assert.equal(report.held, undefined);
    assert.deepEqual(await rotations(), []);
  });

  test('a visa direct mode may carry is bound at once, whatever the token', async () => {
    await holderOfDirectToken();
    await grant('v_view2', 'viewer', 'staging-a');
    cluster.calls.length = 0;
    await pass();
    assert.deepEqual(cluster.calls, ['create rolebinding staging-a/kubevisa-v_view2']);
    assert.deepEqual(await rotations(), []);
  });

  test('on a cluster whose configuration no longer allows direct mode, any new binding ends a live token first', async () => {
    await holderOfDirectToken();
    clusterAllowsDirectMode = false;
    await grant('v_view2', 'viewer', 'staging-a');
    const report = await pass();
    assert.deepEqual(report.rotated, [SA]);
    assert.deepEqual(report.held, ['staging-a/kubevisa-v_view2']);
  });

  test('ending a person’s direct tokens (a logout) makes the ServiceAccount again and leaves its bindings; with none live it does nothing', async () => {
    const oldUid = await holderOfDirectToken();
    await reconciler.endDirectTokens(person.id, 'session s_1 ended');
    assert.notEqual(cluster.accounts.get(SA)!.metadata.uid, oldUid);
    assert.ok(cluster.bindings.has('payments/kubevisa-v_view'));
    const [event] = await rotations();
    assert.equal(event!.details.reason, 'session s_1 ended');

    const uid = cluster.accounts.get(SA)!.metadata.uid;
    await reconciler.endDirectTokens(person.id, 'session s_2 ended');
    assert.equal(cluster.accounts.get(SA)!.metadata.uid, uid, 'no live direct token, nothing to end');
    assert.equal((await rotations()).length, 1);
  });

  test('a live direct token of a person with no live session left is ended by any pass', async () => {
    const oldUid = await holderOfDirectToken();
    const [session] = await store.listSessionsOfPerson(person.id);
    await store.transaction((tx) => tx.revokeSession(session!.id, clock, 'logged out'));
    await pass();
    assert.notEqual(cluster.accounts.get(SA)!.metadata.uid, oldUid);
    assert.match((await rotations())[0]!.details.reason as string, /no live kubevisa session/);
  });

  test('a rotation cut short after the delete is finished by the next pass, which still holds the gateway-only binding', async () => {
    await holderOfDirectToken();
    await grant('v_debug', 'debugger', 'payments');
    cluster.failNextAccountCreate = true;
    const failed = await reconciler.reconcileNow('prod');
    assert.match(failed.error ?? '', /create failed/);
    assert.equal(cluster.accounts.has(SA), false, 'deleted, not made again yet');
    assert.equal(cluster.bindings.has('payments/kubevisa-v_debug'), false);

    clock += 1_000;
    const retried = await pass();
    const account = cluster.accounts.get(SA)!;
    assert.equal(account.metadata.annotations[ROTATED_AT_ANNOTATION], formatInstant(clock));
    assert.deepEqual(retried.held, ['payments/kubevisa-v_debug']);
  });
});
