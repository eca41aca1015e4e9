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
