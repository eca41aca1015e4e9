// The receipt's `streams-closed` step against a registry that behaves like the gateway's: the commit closes the
// person's streams (AccessService tells it, as the server wires it), the step counts them and proves with a fresh
// read that none remains. Without a registry the step is unproven, never silently proven; a stream that survives
// the commit is closed by the proof round and proven in the next. Real store, AccessService and token issuer;
// no cluster (the cluster steps are covered in offboarding.test.ts and test/offboarding-streams.test.ts).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createTokenIssuer } from '../auth/access-tokens.ts';
import { Unauthenticated } from '../domain/errors.ts';
import { AppEvents } from '../app/events.ts';
import { PeopleService } from '../app/people.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { systemCaller } from './lifecycle.ts';
import { OffboardingOrchestrator, type OffboardingAlert, type OpenStreamInfo } from './offboarding.ts';

let store: Store;
before(async () => {
  store = await openSqliteStore({ path: ':memory:' });
});
after(async () => {
  await store.close();
});

/** A registry of open streams per person; `sticky` streams survive the commit's close (a missed event). */
class FakeRegistry {
  readonly open = new Map<number, OpenStreamInfo & { personId: string; sticky: boolean }>();
  private nextId = 1;
  add(personId: string, kind: string, namespace: string, sticky = false): void {
    const id = this.nextId++;
    this.open.set(id, { id, personId, kind, cluster: 'prod', namespace, sticky });
  }
  openOf(personId: string): OpenStreamInfo[] {
    return [...this.open.values()]
      .filter((s) => s.personId === personId)
      .map(({ id, kind, cluster, namespace }) => ({ id, kind, cluster, namespace }));
  }
  closeOf(personId: string, _reason: string, options: { commit?: boolean } = {}): number {
    let closed = 0;
    for (const [id, stream] of this.open) {
      if (stream.personId !== personId || (options.commit === true && stream.sticky)) continue;
      this.open.delete(id);
      closed++;
    }
    return closed;
  }
}

async function setUp(email: string, registry: FakeRegistry | undefined) {
  const person = await store.transaction((tx) =>
    tx.upsertPersonFromLogin({
      issuer: 'https://idp',
      subject: email,
      email,
      displayName: email,
      groups: [],
      now: Date.now(),
    }),
  );
  const events = new AppEvents();
  // As the server wires it: the gateway closes the person's streams when told.
  events.on('person-deprovisioned', (p, reason) => registry?.closeOf(p.id, reason, { commit: true }));
  const people = new PeopleService({ store, clusterNames: () => [], events });
  const { privateKey } = generateKeyPairSync('ed25519');
  const tokens = createTokenIssuer({
    issuer: 'https://kv.test',
    audience: 'kubevisa',
    signingKey: privateKey,
    keyId: 'k1',
  });
  const alerts: OffboardingAlert[] = [];
  const offboarding = new OffboardingOrchestrator({
    store,
    people,
    sessions: {
      async authenticate() {
        throw new Unauthenticated('access ended for this person');
      },
    },
    tokens,
    clusters: new Map(),
    reconciler: { reconcileNow: () => Promise.reject(new Error('no cluster here')) },
    config: { waitMs: 5000, retryMs: 100, maxRetryMs: 200, tokenProofTimeoutMs: 11_000 },
    alert: async (alert) => {
      alerts.push(alert);
    },
    report: () => {},
  });
  if (registry)
    offboarding.attachStreams({ openOf: (id) => registry.openOf(id), closeOf: (id, r) => registry.closeOf(id, r) });
  return { person, offboarding, alerts };
}

async function settled(offboarding: OffboardingOrchestrator, id: string, status: string) {
  for (let i = 0; i < 100; i++) {
    const receipt = (await offboarding.get(id))!;
    if (receipt.status === status) return receipt;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return (await offboarding.get(id))!;
}

test('counts the streams the commit closed and proves with a fresh read that none remains', async () => {
  const registry = new FakeRegistry();
  const { person, offboarding } = await setUp('cora@vendor.example', registry);
  registry.add(person.id, 'exec/attach', 'payments');
  registry.add(person.id, 'watch', 'payments');
  registry.add('p_someone-else', 'watch', 'payments');
  try {
    const started = await offboarding.start({
      personId: person.id,
      status: 'deprovisioned',
      trigger: { kind: 'scim', by: 'scim:okta' },
      reason: 'deleted at okta (SCIM DELETE)',
      caller: systemCaller('scim:okta'),
    });
    const receipt = await offboarding.waitFor(started.id, 5000);
    assert.equal(receipt.status, 'proven', receipt.summary);
    const step = receipt.steps.find((s) => s.id === 'streams-closed')!;
    assert.equal(step.status, 'proven');
    assert.equal(step.count, 2);
    assert.match(
      step.detail,
      /^2 stream\(s\) open at the commit closed \(exec\/attach on prod\/payments, watch on prod\/payments\); a fresh read of the gateway's registry at \S+ holds none of the person's streams; no direct-mode credential was ever issued to the person, so every stream of theirs went through the gateway$/,
    );
    assert.equal(registry.open.size, 1, "another person's stream stays open");
    assert.match(receipt.summary, /^cora@vendor\.example deprovisioned \(deleted at okta\)\. All \d+ steps proven/);
    const started2 = (await store.listAudit({ action: 'offboarding.started', personId: person.id }))[0]!;
    assert.equal(started2.details.streamsOpen, 2);
    assert.equal(started2.details.streamsClosed, 2);
  } finally {
    await offboarding.stop();
  }
});

test('without the gateway registry the step is unproven, alerted, and never passes', async () => {
  const { person, offboarding, alerts } = await setUp('carl@vendor.example', undefined);
  try {
    const started = await offboarding.start({
      personId: person.id,
      status: 'suspended',
      trigger: { kind: 'scim', by: 'scim:entra' },
      reason: 'deactivated at entra (SCIM active=false)',
      caller: systemCaller('scim:entra'),
    });
    const receipt = await settled(offboarding, started.id, 'unproven');
    assert.equal(receipt.status, 'unproven');
    const step = receipt.steps.find((s) => s.id === 'streams-closed')!;
    assert.equal(step.status, 'unproven');
    assert.equal(step.ok, false);
    assert.match(step.detail, /no gateway registry of open streams is attached/);
    assert.equal(step.count, undefined);
    assert.deepEqual(
      receipt.steps.filter((s) => s.status !== 'proven').map((s) => s.id),
      ['streams-closed'],
    );
    assert.deepEqual(
      alerts.map((a) => a.kind),
      ['unproven'],
    );
    assert.match(receipt.summary, /^carl@vendor\.example suspended \(deactivated at entra\)\. /);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal((await offboarding.get(started.id))!.status, 'unproven', 'retries do not make it pass');
  } finally {
    await offboarding.stop();
  }
});

test('a stream that survived the commit is closed by the proof and proven in the next round, counted', async () => {
  const registry = new FakeRegistry();
  const { person, offboarding, alerts } = await setUp('dana@vendor.example', registry);
  registry.add(person.id, 'port-forward', 'payments', true);
  try {
    const started = await offboarding.start({
      personId: person.id,
      status: 'deprovisioned',
      trigger: { kind: 'admin', by: 'sam@corp.example' },
      reason: 'contract ended',
      caller: { actor: { personId: 'p_sam', email: 'sam@corp.example', roles: ['admin'], groups: [] } },
    });
    const unproven = await settled(offboarding, started.id, 'unproven');
    const first = unproven.steps.find((s) => s.id === 'streams-closed')!;
    assert.equal(first.status, 'unproven');
    assert.match(
      first.detail,
      /1 stream\(s\) of the person were still open after the commit \(port-forward on prod\/payments\); 1 closed now/,
    );
    assert.equal(registry.open.size, 0, 'the proof round closed it');
    const proven = await settled(offboarding, started.id, 'proven');
    assert.equal(proven.status, 'proven', proven.summary);
    const step = proven.steps.find((s) => s.id === 'streams-closed')!;
    assert.equal(step.count, 1);
    assert.match(step.detail, /^1 stream\(s\) open at the commit closed, 1 of them by a later proof round/);
    assert.deepEqual(
      alerts.map((a) => a.kind),
      ['unproven', 'proven-after-retry'],
    );
    assert.match(
      proven.summary,
      /^dana@vendor\.example offboarded by sam@corp\.example: contract ended\. All \d+ steps/,
    );
  } finally {
    await offboarding.stop();
  }
});
