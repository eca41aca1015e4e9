// Forged change notifications naming visas (anyone able to connect to the database can NOTIFY).
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { decodeChange, encodeChange } from '../../store/change-codec.ts';
import { HOUR, MINUTE, NOW } from '../../domain/testing/fixtures.ts';
import { Reconciler } from '../reconciler.ts';
import { world, type World } from '../testing/races.ts';

let w: World | undefined;
let r: Reconciler | undefined;
afterEach(async () => {
  r?.stop();
  await w?.store.close();
});

test('ids of pending, denied, cancelled, other-cluster or unknown visas make nothing', async () => {
  w = await world();
  r = new Reconciler({ store: w.store, clusters: new Map([['prod', w.cluster]]), now: () => w!.clock.now });
  await r.start();
  await r.whenSettled('prod');
  const ask = () =>
    w!.visas.request(w!.carol, {
      cluster: 'prod',
      namespaces: ['payments'],
      profile: 'viewer',
      duration: '1h',
      reason: 'x',
    });
  const pending = await ask();
  const denied = await ask();
  await w.visas.deny(w.approver, denied.id, 'no');
  const cancelled = await ask();
  await w.visas.cancel(w.carol, cancelled.id);
  w.cluster.writes.length = 0;
  // As decoded from a forged payload (ids pass the codec's pattern).
  const forged = decodeChange(
    JSON.stringify({
      o: 'evil',
      c: {
        kind: 'clusters-changed',
        clusters: ['prod'],
        visaIds: [pending.id, denied.id, cancelled.id, 'v_nope', '__proto__'],
      },
    }),
  );
  assert.ok(forged && forged.change.kind === 'clusters-changed');
  const report = await r.convergeVisasSoon('prod', forged.change.visaIds!);
  await r.whenSettled('prod');
  assert.deepEqual(report.created, []);
  assert.deepEqual(
    w.cluster.writes.filter((x) => x.includes('create')),
    [],
  );
  // Ids that are not ids drop only the ids (a full pass), never turn into something else.
  const bad = decodeChange(
    JSON.stringify({ o: 'e', c: { kind: 'clusters-changed', clusters: ['prod'], visaIds: ['a b'] } }),
  );
  assert.deepEqual(bad?.change, { kind: 'clusters-changed', clusters: ['prod'] });
  // Encoding splits visa ids and keeps every cluster in each part.
  const parts = encodeChange('o', {
    kind: 'clusters-changed',
    clusters: ['prod'],
    visaIds: Array.from({ length: 2000 }, (_, i) => `v_${i}`),
  });
  assert.ok(parts.length > 1 && parts.every((p) => decodeChange(p)?.change.kind === 'clusters-changed'));
});

test('forged ids of live visas whose bindings the watch shows cost no cluster read or write, and an expiry goes on', async () => {
  const people = 60;
  const emails = Array.from({ length: people }, (_, i) => `p${i}@vendor.example`);
  w = await world(['carol@vendor.example', ...emails]);
  const ids: string[] = [];
  for (const [i, email] of emails.entries()) {
    const who = await w.person(`p${i}`, email, []);
    ids.push((await w.grant(['payments'], '2h', who)).id);
  }
  const short = await w.grant(['billing'], '1h');
  r = new Reconciler({ store: w.store, clusters: new Map([['prod', w.cluster]]), now: () => w!.clock.now });
  await r.start();
  w.cluster.replayBindings();
  await new Promise((resolve) => setImmediate(resolve));
  await r.whenSettled('prod');
  const reads = w.cluster.reads.get('getServiceAccount') ?? 0;
  const writes = w.cluster.writes.length;
  // Forged: the ids of the live visas (their binding names are visible in the cluster).
  const forged = r.convergeVisasSoon('prod', ids);
  w.clock.now = NOW + HOUR + MINUTE;
  const expiry = await r.expireDueNow('prod');
  assert.equal((await forged).error, undefined);
  assert.deepEqual(expiry.deleted, [`billing/kubevisa-${short.id}`]);
  assert.equal(w.cluster.reads.get('getServiceAccount') ?? 0, reads, 'no ServiceAccount read for bound visas');
  assert.deepEqual(
    w.cluster.writes.slice(writes).filter((write) => !write.startsWith('raise fence')),
    [`delete rolebinding billing/kubevisa-${short.id}`],
  );
});
