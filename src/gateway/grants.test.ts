import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Profile, Visa } from '../domain/model.ts';
import { aPerson, aProfile, aRequestedVisa, HOUR, NOW } from '../domain/testing/fixtures.ts';
import type { Store } from '../store/store.ts';
import { GrantIndex } from './grants.ts';

/** The three reads a rebuild makes, over plain values. */
function indexOver(visas: Visa[], profiles: Profile[], protectedNamespaces: string[] = []): Promise<GrantIndex> {
  const store = {
    listVisasInStates: async () => visas,
    listPersons: async () => [aPerson()],
    listProfiles: async () => profiles,
  } as unknown as Store;
  const index = new GrantIndex(store, protectedNamespaces);
  return index.rebuild().then(() => index);
}

function activeVisa(id: string, profile: string, namespaces: string[], notAfter: number): Visa {
  return { ...aRequestedVisa(), id, profile, namespaces, state: 'active', notBefore: NOW - HOUR, notAfter };
}

const recorded = aProfile({ name: 'debugger', recordSessions: true });
const plain = aProfile({ name: 'debugger-plain', recordSessions: false });

describe('grant index: several visas on one namespace', () => {
  test('the strictest covering visa decides recording, whichever one ends first', async () => {
    // The weaker visa ends first, so it is found first: it must not lift the recording the other asks for.
    const index = await indexOver(
      [
        activeVisa('v_weak', 'debugger-plain', ['shop'], NOW + HOUR),
        activeVisa('v_rec', 'debugger', ['shop'], NOW + 2 * HOUR),
      ],
      [recorded, plain],
    );
    const decision = index.decide('p_carol', 'prod', 'shop', NOW);
    assert.equal(decision.ok, true);
    if (!decision.ok) return;
    assert.equal(decision.recordSessions, true);
    assert.equal(decision.grant.visaId, 'v_rec');
    assert.deepEqual(
      decision.grants.map((g) => g.visaId),
      ['v_weak', 'v_rec'],
    );
  });

  test('a visa on another namespace neither covers nor tightens the request', async () => {
    const index = await indexOver(
      [
        activeVisa('v_weak', 'debugger-plain', ['shop'], NOW + HOUR),
        activeVisa('v_rec', 'debugger', ['other'], NOW + HOUR),
      ],
      [recorded, plain],
    );
    const decision = index.decide('p_carol', 'prod', 'shop', NOW);
    assert.ok(decision.ok);
    assert.equal(decision.recordSessions, false);
    assert.deepEqual(
      decision.grants.map((g) => g.visaId),
      ['v_weak'],
    );
  });

  test('a request that names no namespace is allowed by every visa on the cluster, and the audit names them all', async () => {
    const index = await indexOver(
      [activeVisa('v_a', 'debugger-plain', ['shop'], NOW + HOUR), activeVisa('v_b', 'debugger', ['other'], NOW + HOUR)],
      [recorded, plain],
    );
    const decision = index.decide('p_carol', 'prod', undefined, NOW);
    assert.ok(decision.ok);
    assert.deepEqual(
      decision.grants.map((g) => g.visaId),
      ['v_a', 'v_b'],
    );
  });

  test('once the recorded visa has ended, the one left decides', async () => {
    const index = await indexOver(
      [
        activeVisa('v_rec', 'debugger', ['shop'], NOW + HOUR),
        activeVisa('v_weak', 'debugger-plain', ['shop'], NOW + 2 * HOUR),
      ],
      [recorded, plain],
    );
    index.removeVisas(['v_rec']);
    const decision = index.decide('p_carol', 'prod', 'shop', NOW);
    assert.ok(decision.ok);
    assert.equal(decision.recordSessions, false);
    assert.equal(decision.grant.visaId, 'v_weak');
    assert.equal(index.holds('v_rec'), false);
    assert.equal(index.holds('v_weak'), true);
  });
});

describe('grant index: protected namespaces', () => {
  test('a visa row naming a protected namespace never admits a request there; its other namespaces still work', async () => {
    const index = await indexOver(
      [activeVisa('v_forced', 'debugger-plain', ['kube-system', 'kubevisa-visas', 'vault', 'shop'], NOW + HOUR)],
      [plain],
      ['vault'],
    );
    for (const namespace of ['kube-system', 'kubevisa-visas', 'vault'])
      assert.equal(index.decide('p_carol', 'prod', namespace, NOW).ok, false, namespace);
    assert.equal(index.decide('p_carol', 'prod', 'shop', NOW).ok, true);
  });
});

describe('grant index: an approved visa that has not started', () => {
  const approved = (id: string, namespaces: string[], notBefore: number): Visa => ({
    ...aRequestedVisa(),
    id,
    profile: 'debugger-plain',
    namespaces,
    state: 'approved',
    notBefore,
    notAfter: notBefore + HOUR,
  });

  test('the refusal says when it starts, for its namespace and for cluster-wide requests', async () => {
    const start = NOW + 2 * HOUR + 5 * 60_000;
    const index = await indexOver(
      [approved('v_later', ['shop'], start), activeVisa('v_now', 'debugger-plain', ['other'], NOW + HOUR)],
      [plain],
    );
    const forShop = index.decide('p_carol', 'prod', 'shop', NOW);
    assert.equal(forShop.ok, false);
    if (forShop.ok) return;
    assert.match(forShop.reason, /visa v_later for namespace 'shop' on cluster 'prod' starts at /);
    assert.ok(forShop.reason.includes(new Date(start).toISOString()), forShop.reason);
    assert.match(forShop.reason, /in 2 h 5 min/);
    assert.doesNotMatch(forShop.reason, /do not cover/);

    const alone = await indexOver([approved('v_later', ['shop'], NOW + 30_000)], [plain]);
    const discovery = alone.decide('p_carol', 'prod', undefined, NOW);
    assert.ok(!discovery.ok && /visa v_later for cluster 'prod' starts at .* \(in 30 s\)/.test(discovery.reason));
    assert.equal(alone.decide('p_carol', 'prod', 'shop', NOW + 30_000).ok, true, 'and from then on it grants');
  });

  test('a namespace no visa will ever cover is still refused as not covered', async () => {
    const index = await indexOver(
      [approved('v_later', ['shop'], NOW + HOUR), activeVisa('v_now', 'debugger-plain', ['other'], NOW + HOUR)],
      [plain],
    );
    const decision = index.decide('p_carol', 'prod', 'payments', NOW);
    assert.ok(!decision.ok && /do not cover namespace 'payments'/.test(decision.reason));
  });
});
