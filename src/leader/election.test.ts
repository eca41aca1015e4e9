import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaderLeases, LeaseTerm } from '../store/store.ts';
import { LeaderElection } from './election.ts';

/**
 * One lease row judged by a database clock the test moves (the same clock as the processes' monotonic ones, plus
 * `wallSkewMs` for a process whose wall clock is wrong). `hang` makes a holder's claims never answer; `fail` makes
 * them throw.
 */
class FakeLeases implements LeaderLeases {
  readonly exclusive = false;
  row: { holder: string; epoch: number; expiresAt: number } | undefined;
  dbNow = 1_000_000;
  readonly hang = new Set<string>();
  readonly fail = new Set<string>();

  async claim(input: { name: string; holder: string; durationMs: number; epoch?: number }): Promise<LeaseTerm> {
    if (this.fail.has(input.holder)) throw new Error('database unreachable');
    if (this.hang.has(input.holder)) return new Promise(() => undefined);
    const row = this.row;
    if (row === undefined || row.expiresAt <= this.dbNow) {
      this.row = { holder: input.holder, epoch: (row?.epoch ?? 0) + 1, expiresAt: this.dbNow + input.durationMs };
    } else if (row.holder === input.holder && row.epoch === input.epoch) {
      row.expiresAt = this.dbNow + input.durationMs;
    }
    const now = this.row!;
    return { holder: now.holder, epoch: now.epoch, remainingMs: now.expiresAt - this.dbNow, databaseNow: this.dbNow };
  }

  async release(input: { name: string; holder: string; epoch: number }): Promise<void> {
    if (this.row?.holder === input.holder && this.row.epoch === input.epoch) this.row.expiresAt = this.dbNow;
  }

  async readClock(): Promise<number> {
    return this.dbNow;
  }
}

/**
 * FakeLeases on an engine that sees presence: `alive` holds the holders whose presence is shown. A term whose holder
 * was present at its latest claim and is no longer can be taken before it expires, as in leases.ts.
 */
class FakePresentLeases extends FakeLeases {
  readonly alive = new Map<string, (why: string) => void>();
  present = new Map<string, boolean>();

  override async claim(input: { name: string; holder: string; durationMs: number; epoch?: number }) {
    const row = this.row;
    if (
      row !== undefined &&
      row.holder !== input.holder &&
      this.present.get(row.holder) &&
      !this.alive.has(row.holder)
    ) {
      row.expiresAt = this.dbNow; // taken as if expired
    }
    const term = await super.claim(input);
    if (this.row?.holder === input.holder) this.present.set(input.holder, this.alive.has(input.holder));
    return term;
  }

  async takeable(input: { name: string; holder: string }): Promise<boolean> {
    const row = this.row;
    if (row === undefined || row.expiresAt <= this.dbNow) return true;
    return row.holder !== input.holder && this.present.get(row.holder) === true && !this.alive.has(row.holder);
  }

  /** Holders whose presence the engine cannot see (session locks hidden by a pooler). */
  readonly hidden = new Set<string>();

  async holdPresence(input: { holder: string; onLost: (why: string) => void }) {
    if (this.hidden.has(input.holder)) throw new Error('session locks are hidden');
    this.alive.set(input.holder, input.onLost);
    return { close: async () => void this.alive.delete(input.holder) };
  }

  /** The holder's process died: the engine stops seeing it, and nothing of it runs any more. */
  kill(holder: string): void {
    this.alive.delete(holder);
    this.hang.add(holder);
  }

  /** The holder's presence connection ended while the process lives on. */
  dropPresence(holder: string): void {
    const onLost = this.alive.get(holder);
    this.alive.delete(holder);
    onLost?.('the connection that shows this process is alive ended');
  }
}

function setup<L extends FakeLeases>(t: TestContext, leases: L = new FakeLeases() as L) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const log: string[] = [];
  const errors: string[] = [];
  const make = (holder: string, wallSkewMs = 0) =>
    new LeaderElection({
      leases,
      holder,
      leaseMs: 8000,
      renewEveryMs: 2000,
      monotonicNow: () => leases.dbNow,
      wallNow: () => leases.dbNow + wallSkewMs,
      onElected: (epoch) => log.push(`${holder} elected ${epoch}`),
      onDeposed: (epoch, why) => log.push(`${holder} deposed ${epoch}: ${why}`),
      onError: (error) => errors.push(`${holder}: ${error.message}`),
    });
  // Moves every clock and fires the timers due, letting each claim's promise settle in between.
  const advance = async (ms: number) => {
    for (let step = 0; step < ms; step += 500) {
      leases.dbNow += 500;
      t.mock.timers.tick(500);
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { leases, log, errors, make, advance };
}

/** Replicas a (elected) and b (following) on an engine that sees presence. */
async function presentPair(t: TestContext) {
  const env = setup(t, new FakePresentLeases());
  const a = env.make('a');
  const b = env.make('b');
  await a.start();
  await b.start();
  return { ...env, a, b };
}

test('one replica leads with epoch 1 and another follows, seeing who leads', async (t) => {
  const { log, make } = setup(t);
  const a = make('a');
  const b = make('b');
  await a.start();
  await b.start();
  assert.equal(a.isLeader(), true);
  assert.deepEqual(b.status(), { role: 'follower', epoch: 1, holder: 'a', self: 'b' });
  assert.deepEqual(log, ['a elected 1']);
  await a.stop();
  await b.stop();
});

test('a leader whose renewal fails steps down at once; another takes over only once the lease ended, with the next epoch', async (t) => {
  const { leases, log, make, advance } = setup(t);
  const a = make('a');
  const b = make('b');
  await a.start();
  await b.start();
  leases.fail.add('a');
  await advance(2000);
  assert.equal(a.isLeader(), false);
  assert.match(log.at(-1)!, /^a deposed 1: renewing the lease failed/);
  // The row still says a until it expires (8 s after a's last renewal): b must wait for it.
  await advance(4000);
  assert.equal(b.isLeader(), false);
  await advance(4000);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  assert.ok(log.includes('b elected 2'));
  leases.fail.clear();
  await advance(2000);
  assert.deepEqual(a.status(), { role: 'follower', epoch: 2, holder: 'b', self: 'a' });
  // Its late writes still carry the term they were decided in, which the fence refuses.
  assert.equal(a.currentEpoch(), 1);
  await a.stop();
  await b.stop();
});

test('a leader whose renewals never answer stops believing it leads before the lease ends in the database', async (t) => {
  const { leases, make, advance } = setup(t);
  const a = make('a');
  await a.start();
  const expiresAt = leases.row!.expiresAt;
  leases.hang.add('a');
  // Without its timers firing (a paused process), isLeader() already says no once the term may have ended.
  leases.dbNow = expiresAt - 400;
  assert.equal(a.isLeader(), false);
  leases.dbNow = expiresAt - 8000 + 1000;
  await advance(8000);
  assert.equal(a.isLeader(), false);
  assert.equal(a.status().role, 'follower');
});

test('deadlines are read from the database clock, whatever this process’s wall clock says', async (t) => {
  const { leases, make } = setup(t);
  const ahead = make('ahead', 10 * 60_000);
  const behind = make('behind', -10 * 60_000);
  await ahead.start();
  await behind.start();
  assert.equal(ahead.databaseNow(), leases.dbNow);
  assert.equal(behind.databaseNow(), leases.dbNow);
  await ahead.stop();
  await behind.stop();
});

test('stopping a leader ends its term so the next claim takes over at once', async (t) => {
  const { log, make, advance } = setup(t);
  const a = make('a');
  const b = make('b');
  await a.start();
  await b.start();
  await a.stop();
  await advance(2000);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  assert.ok(log.includes('a deposed 1: the server is stopping'));
  await b.stop();
});

test('a renewal interval above half the lease is refused', () => {
  assert.throws(
    () =>
      new LeaderElection({
        leases: new FakeLeases(),
        holder: 'x',
        leaseMs: 4000,
        renewEveryMs: 3000,
        onElected: () => undefined,
        onDeposed: () => undefined,
      }),
    /renewEveryMs \(3000\) must be positive and at most half of leaseMs \(4000\)/,
  );
});

test('a process whose wall clock is off knows the database clock before its first claim, and claims nothing to learn it', async (t) => {
  const { leases, make } = setup(t);
  const ahead = make('ahead', 600_000);
  const behind = make('behind', -600_000);
  assert.equal(ahead.databaseNow(), leases.dbNow + 600_000, 'before syncing, only its own clock is known');
  await ahead.syncClock();
  await behind.syncClock();
  assert.equal(ahead.databaseNow(), leases.dbNow);
  assert.equal(behind.databaseNow(), leases.dbNow);
  assert.equal(leases.row, undefined, 'reading the clock claims no lease');
  assert.equal(ahead.isLeader(), false);
});

test('a clock reading that took long to come back does not replace a quick one: its error is half its round trip', async () => {
  let wall = 1_000_000;
  let db = wall + 60_000;
  let delayMs = 0;
  const leases = {
    exclusive: false,
    claim: async () => {
      throw new Error('not claimed here');
    },
    release: async () => undefined,
    // The database reads its clock at once; the answer reaches the process `delayMs` later (a slow network, a wait).
    readClock: async () => {
      const read = db;
      wall += delayMs;
      db += delayMs;
      return read;
    },
  };
  const election = new LeaderElection({
    leases,
    holder: 'me',
    monotonicNow: () => wall,
    wallNow: () => wall,
    onElected: () => undefined,
    onDeposed: () => undefined,
  });
  await election.syncClock();
  assert.equal(election.databaseNow(), db, 'a quick reading');
  delayMs = 4000;
  await election.syncClock();
  assert.equal(election.databaseNow(), db, 'a reading 4 s late would have put this clock 2 s behind');
  delayMs = 100;
  db += 30;
  await election.syncClock();
  assert.equal(election.databaseNow(), db - 50, 'a quick reading is taken, with half its round trip of error');
});

test('a leader that dies is replaced within a watch interval, long before its lease ends, with the next epoch', async (t) => {
  const { leases, log, a, b, advance } = await presentPair(t);
  assert.equal(a.isLeader(), true);
  await advance(1000);
  leases.kill('a');
  // b watches every 500 ms (a quarter of its 2 s claims): the lease has 7 s left when b takes it.
  await advance(1000);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  assert.ok(log.includes('b elected 2'));
  assert.ok(leases.row!.expiresAt - leases.dbNow > 6000, 'b holds a fresh term');
  await b.stop();
});

test('a leader that is alive but silent (paused, its presence still seen) keeps its term until the lease ends', async (t) => {
  const { leases, a, b, advance } = await presentPair(t);
  assert.equal(a.isLeader(), true);
  leases.hang.add('a');
  await advance(6000);
  assert.equal(b.isLeader(), false);
  assert.equal(leases.row!.holder, 'a');
  await advance(4000);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  await b.stop();
});

test('a leader whose presence is no longer seen steps down at once; a replica takes over with the next epoch', async (t) => {
  const { leases, log, a, b, advance } = await presentPair(t);
  leases.dropPresence('a');
  assert.equal(a.isLeader(), false);
  assert.match(
    log.at(-1)!,
    /^a deposed 1: the connection that shows this process is alive ended: another replica may take over$/,
  );
  await advance(500);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  // a shows its presence again at its next claim and follows b.
  await advance(2000);
  assert.ok(leases.alive.has('a'));
  assert.deepEqual(a.status(), { role: 'follower', epoch: 2, holder: 'b', self: 'a' });
  await a.stop();
  await b.stop();
});

test('a leader that lost its presence resumes its own term when no replica took it', async (t) => {
  const { leases, log, make, advance } = setup(t, new FakePresentLeases());
  const a = make('a');
  await a.start();
  leases.dropPresence('a');
  assert.equal(a.isLeader(), false);
  await advance(2000);
  assert.equal(a.isLeader(), true);
  assert.equal(a.currentEpoch(), 1);
  assert.deepEqual(log, [
    'a elected 1',
    'a deposed 1: the connection that shows this process is alive ended: another replica may take over',
    'a elected 1',
  ]);
  await a.stop();
});

test('a holder that could not show its presence is taken over only when its lease ends', async (t) => {
  const { leases, errors, make, advance } = setup(t, new FakePresentLeases());
  const a = make('a');
  const b = make('b');
  // A pooler between a and the database hides session locks: a cannot show presence, and its term records that.
  leases.hidden.add('a');
  await a.start();
  assert.equal(a.isLeader(), true);
  assert.deepEqual(errors, ['a: cannot show the store this replica is alive (retrying): session locks are hidden']);
  await b.start();
  leases.kill('a');
  await advance(4000);
  assert.equal(b.isLeader(), false, 'a term recorded without presence is not taken early');
  await advance(6000);
  assert.equal(b.isLeader(), true);
  assert.equal(b.currentEpoch(), 2);
  await b.stop();
});
