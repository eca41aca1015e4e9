import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppEvents } from '../app/events.ts';
import type { Person, Visa } from '../domain/model.ts';
import type { AccessChange, ChangeFeed, ChangeListener, Session, StoredVisa } from '../store/store.ts';
import { coalesce, startFanout } from './fanout.ts';

/** Two processes' feeds joined by a wire: what one publishes the other hears. */
function pairedFeeds(): [ChangeFeed & { sent: AccessChange[] }, ChangeFeed & { sent: AccessChange[] }] {
  const listeners: (ChangeListener | undefined)[] = [undefined, undefined];
  const make = (me: 0 | 1) => {
    const sent: AccessChange[] = [];
    return {
      sent,
      publish: async (change: AccessChange) => {
        sent.push(change);
        listeners[1 - me]?.change(change);
      },
      subscribe: (listener: ChangeListener) => void (listeners[me] = listener),
      close: async () => undefined,
    };
  };
  return [make(0), make(1)];
}

const visa = (id: string, state: Visa['state']) => ({ id, state }) as StoredVisa;
const person = (id: string, status: Person['status']) => ({ id, status }) as Person;
/** Waits (at most 5 s) until `done`: the fan-out publishes on the next turn and reads the store before announcing. */
async function until(done: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !done() && Date.now() < deadline;)
    await new Promise((resolve) => setTimeout(resolve, 10));
}

test('what one process announces is announced by the other, once, and never sent back', async () => {
  const [feedA, feedB] = pairedFeeds();
  const a = new AppEvents();
  const b = new AppEvents();
  const stored = new Map([
    ['v1', visa('v1', 'revoked')],
    ['v2', visa('v2', 'active')],
  ]);
  const store = {
    listVisas: async (filter?: { ids?: readonly string[] }) =>
      (filter?.ids ?? []).flatMap((id) => (stored.has(id) ? [stored.get(id)!] : [])),
    getPerson: async (id: string) => (id === 'p1' ? person('p1', 'deprovisioned') : person(id, 'active')),
    // s1 was revoked; s2 is live, so a notification naming it (forged) signs nobody out.
    getSession: async (id: string) =>
      id === 's1'
        ? ({ id, revokedAt: 1, expiresAt: Date.now() + 60_000 } as Session)
        : ({ id, expiresAt: Date.now() + 60_000 } as Session),
  };
  const fanA = startFanout({ events: a, feed: feedA, store });
  const fanB = startFanout({ events: b, feed: feedB, store });
  const heard: string[] = [];
  b.on('visas-ended', (visas, reason) => heard.push(`ended ${visas.map((v) => v.id).join(',')} (${reason})`));
  b.on('session-ended', (id) => heard.push(`session ${id}`));
  b.on('person-deprovisioned', (p) => heard.push(`deprovisioned ${p.id}`));
  b.on('clusters-changed', (names, visaIds) =>
    heard.push(`clusters ${names.join(',')}${visaIds ? ` naming ${visaIds.join(',')}` : ''}`),
  );
  b.on('cluster-registry-changed', () => heard.push('registry'));

  // v2 is active in the store: a notification saying it ended (forged, or stale) ends nothing.
  a.emit('visas-ended', [visa('v1', 'revoked'), visa('v2', 'revoked')], 'revoked by ann');
  a.emit('session-ended', 's1');
  a.emit('session-ended', 's2');
  a.emit('person-deprovisioned', person('p1', 'deprovisioned'), 'left');
  a.emit('person-deprovisioned', person('p2', 'deprovisioned'), 'forged');
  a.emit('clusters-changed', ['prod'], ['v2']);
  a.emit('clusters-changed', ['prod', 'dev'], ['v3']);
  a.emit('cluster-registry-changed');
  await until(() => heard.length >= 5);
  // Anything else would have arrived by now too: the last change sent is the last one heard.
  await until(() => feedA.sent.length >= 6);
  // Each change is read from the store before it is announced, so their order may differ from the sender's.
  assert.deepEqual([...heard].sort(), [
    'clusters prod,dev naming v2,v3',
    'deprovisioned p1',
    'ended v1 (revoked by ann)',
    'registry',
    'session s1',
  ]);
  // B relayed nothing back to A.
  assert.deepEqual(feedB.sent, []);
  assert.deepEqual(
    feedA.sent.map((c) => c.kind),
    [
      'visas-ended',
      'sessions-ended',
      'person-deprovisioned',
      'person-deprovisioned',
      'clusters-changed',
      'cluster-registry-changed',
    ],
  );
  await fanA.stop();
  await fanB.stop();
});

test('ended visas leave at once, before the rest of the turn, and a visas-changed beside them is not sent', async () => {
  const sent: AccessChange[] = [];
  const feed: ChangeFeed = {
    publish: async (change) => void sent.push(change),
    subscribe: () => undefined,
    close: async () => undefined,
  };
  const events = new AppEvents();
  const store = { listVisas: async () => [], getPerson: async () => undefined, getSession: async () => undefined };
  const fan = startFanout({ events, feed, store });
  const seenByLaterListener: string[] = [];
  // A listener after the fan-out's, doing the turn's slow work (a gateway cutting its streams): the news is out first.
  events.on('visas-ended', () => seenByLaterListener.push(...sent.map((c) => c.kind)));
  events.emit('visas-changed');
  events.emit('clusters-changed', ['prod']);
  events.emit('visas-ended', [visa('v1', 'revoked')], 'engagement ended');
  assert.deepEqual(seenByLaterListener, ['visas-ended']);
  events.emit('visas-ended', [visa('v2', 'revoked')], 'revoked by ann');
  await until(() => sent.length >= 3);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(sent, [
    { kind: 'visas-ended', visaIds: ['v1'], reason: 'engagement ended' },
    { kind: 'visas-ended', visaIds: ['v2'], reason: 'revoked by ann' },
    { kind: 'clusters-changed', clusters: ['prod'] },
  ]);
  // The next turn's visas-changed is sent again.
  events.emit('visas-changed');
  await until(() => sent.length >= 4);
  assert.deepEqual(sent[3], { kind: 'visas-changed' });
  await fan.stop();
});

test('a gap in the feed makes the process re-read its caches; a deaf process hears nothing', async () => {
  let listener: ChangeListener | undefined;
  const feed: ChangeFeed = {
    publish: async () => undefined,
    subscribe: (l) => void (listener = l),
    close: async () => undefined,
  };
  const events = new AppEvents();
  let missed = 0;
  events.on('changes-missed', () => missed++);
  const store = { listVisas: async () => [], getPerson: async () => undefined, getSession: async () => undefined };
  const fan = startFanout({ events, feed, store });
  listener?.missed();
  assert.equal(missed, 1);
  await fan.stop();

  const deafEvents = new AppEvents();
  let heard = 0;
  deafEvents.on('changes-missed', () => heard++);
  deafEvents.on('visas-changed', () => heard++);
  const deaf = startFanout({ events: deafEvents, feed, store, deaf: true });
  listener?.missed();
  listener?.change({ kind: 'visas-changed' });
  assert.equal(heard, 0);
  await deaf.stop();
});

test('merges one turn of announcements into one change per kind', () => {
  assert.deepEqual(
    coalesce([
      { kind: 'visas-changed' },
      { kind: 'visas-ended', visaIds: ['v1'], reason: 'r' },
      { kind: 'visas-ended', visaIds: ['v2'], reason: 'r' },
      { kind: 'visas-ended', visaIds: ['v3'], reason: 'other' },
      { kind: 'visas-changed' },
      { kind: 'sessions-ended', sessionIds: ['s1'] },
      { kind: 'cluster-registry-changed' },
      { kind: 'sessions-ended', sessionIds: ['s2'] },
      { kind: 'cluster-registry-changed' },
    ]),
    [
      { kind: 'visas-changed' },
      { kind: 'visas-ended', visaIds: ['v1', 'v2'], reason: 'r' },
      { kind: 'visas-ended', visaIds: ['v3'], reason: 'other' },
      { kind: 'sessions-ended', sessionIds: ['s1', 's2'] },
      { kind: 'cluster-registry-changed' },
    ],
  );
});

test('changes of clusters keep the visas they name only while every merged one names its own', () => {
  assert.deepEqual(
    coalesce([
      { kind: 'clusters-changed', clusters: ['prod'], visaIds: ['v1'] },
      { kind: 'clusters-changed', clusters: ['dev'], visaIds: ['v2', 'v1'] },
    ]),
    [{ kind: 'clusters-changed', clusters: ['prod', 'dev'], visaIds: ['v1', 'v2'] }],
  );
  assert.deepEqual(
    coalesce([
      { kind: 'clusters-changed', clusters: ['prod'], visaIds: ['v1'] },
      { kind: 'clusters-changed', clusters: ['prod'] },
      { kind: 'clusters-changed', clusters: ['prod'], visaIds: ['v3'] },
    ]),
    [{ kind: 'clusters-changed', clusters: ['prod'] }],
  );
});

test('a flood of notifications is read a few at a time, and what overflows makes the process re-read its caches once', async () => {
  let listener: ChangeListener | undefined;
  const feed: ChangeFeed = {
    publish: async () => undefined,
    subscribe: (l) => void (listener = l),
    close: async () => undefined,
  };
  let concurrent = 0;
  let most = 0;
  let reads = 0;
  const store = {
    listVisas: async () => {
      reads++;
      most = Math.max(most, ++concurrent);
      await new Promise((resolve) => setTimeout(resolve, 1));
      concurrent--;
      return [];
    },
    getPerson: async () => undefined,
    getSession: async () => undefined,
  };
  const events = new AppEvents();
  let missed = 0;
  events.on('changes-missed', () => missed++);
  const reports: string[] = [];
  const fan = startFanout({ events, feed, store, onError: (message) => reports.push(message) });
  // Each with a reason of its own: parts of one reason are merged (the next test).
  for (let i = 0; i < 5000; i++) listener?.change({ kind: 'visas-ended', visaIds: [`v${i}`], reason: `forged ${i}` });
  await until(() => reads > 0 && concurrent === 0 && reads >= 256);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(most <= 4, `${most} reads at once`);
  assert.ok(reads <= 256 + 4, `${reads} reads for 5,000 notifications`);
  assert.equal(missed, 1, 'the overflow is announced once, as missed changes');
  assert.equal(reports.length, 1, reports.join('; '));
  // Drained: the next notification is read again, one by one.
  const before = reads;
  listener?.change({ kind: 'visas-ended', visaIds: ['v-after'], reason: 'real' });
  await until(() => reads > before);
  assert.equal(reads, before + 1);
  assert.equal(missed, 1);
  await fan.stop();
});

test('the parts of one batch of ended visas, heard together, are read and announced as one', async () => {
  let listener: ChangeListener | undefined;
  const feed: ChangeFeed = {
    publish: async () => undefined,
    subscribe: (l) => void (listener = l),
    close: async () => undefined,
  };
  const asked: string[][] = [];
  const store = {
    listVisas: async (filter?: { ids?: readonly string[] }) => {
      asked.push([...(filter?.ids ?? [])]);
      // v-live is still active in the store: it is not announced, whatever the notification says.
      return (filter?.ids ?? []).map((id) => visa(id, id === 'v-live' ? 'active' : 'revoked'));
    },
    getPerson: async () => undefined,
    getSession: async () => undefined,
  };
  const events = new AppEvents();
  const announced: string[] = [];
  events.on('visas-ended', (visas, reason) => announced.push(`${reason}: ${visas.map((v) => v.id).join(',')}`));
  const fan = startFanout({ events, feed, store });
  const ids = Array.from({ length: 1000 }, (_, i) => `v${i}`);
  for (let part = 0; part < 4; part++)
    listener?.change({
      kind: 'visas-ended',
      visaIds: ids.slice(part * 250, part * 250 + 250),
      reason: 'engagement ended',
    });
  listener?.change({ kind: 'visas-ended', visaIds: ['v-other', 'v-live'], reason: 'revoked by ann' });
  await until(() => announced.length >= 2);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(announced.sort(), [`engagement ended: ${ids.join(',')}`, 'revoked by ann: v-other']);
  // Read in chunks of at most 500 ids: two reads for the thousand, one for the other reason.
  assert.deepEqual(
    asked.map((chunk) => chunk.length).sort((a, b) => a - b),
    [2, 500, 500],
  );
  // Heard on a later turn, a part is a change of its own again.
  listener?.change({ kind: 'visas-ended', visaIds: ['v-late'], reason: 'engagement ended' });
  await until(() => announced.length >= 3);
  assert.equal(announced[2], 'engagement ended: v-late');
  await fan.stop();
});
