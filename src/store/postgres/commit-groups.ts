/**
 * Group commit for `store.transaction` on PostgreSQL. Each COMMIT waits for a WAL flush, so transactions are
 * queued and committed in groups: the members of a group run one after another in one database transaction, each
 * in its own savepoint, and a single COMMIT (one flush) makes them all durable. Several groups run side by side,
 * each on its own connection (`parallelGroups`), so one group's round trips do not hold up the others: a burst
 * of transactions is shared out among the idle groups.
 *
 * The audit chain is what would serialise them: appending takes the chain's lock, held until COMMIT. So a
 * member's appends are only checked and hashed in memory (tx.ts appendAudit), and the group's events are chained
 * and inserted when it commits, in one round trip with the COMMIT: the lock is taken by the statement before the
 * INSERT, which links the events to the head in the database (audit-append.ts chainInDatabase), so it is held
 * for as long as the database takes to insert and flush, not across any round trip of the members. A member that
 * reads the trail inserts the group's events first and takes the lock then; its group commits right after it.
 * While it holds the lock, it waits for no other lock longer than CHAIN_HOLDER_LOCK_TIMEOUT_MS, and a group whose
 * COMMIT deadlocks with it waits for the lock again rather than fail every member (audit-append.ts LOCK_CHAIN).
 *
 * While a group runs, a member costs only its own statements' round trips: the statements that release its
 * savepoint and open the next one go as one simple query, and the group's connection is in pipeline mode, so
 * that query is sent without waiting for it and the next member's statements follow it.
 *
 * - A transaction that fails rolls back to its savepoint and only its caller is refused (with its own error: a
 *   Conflict for a serialisation failure or deadlock, as without groups); the others go on.
 * - Every caller is answered only after the shared COMMIT returned; if it fails (the database went away), every
 *   member is refused and none was kept (with StoreUnavailable, or a Conflict when the group's own statements
 *   collided with concurrent transactions). Nothing is acknowledged before it is durable.
 * - Within a group, transactions run in call order, so one sees the changes of those before it in its group
 *   (which commit with it or fail with it), and callers are answered in that order. Between groups running side
 *   by side, as between processes, the database's concurrency applies: a row one group changed waits for its
 *   COMMIT, and the version guards and unique keys refuse the loser of a race.
 */
import type pg from 'pg';
import { Conflict } from '../../domain/errors.ts';
import { StoreUnavailable } from '../errors.ts';
import type { StoreTx } from '../store.ts';
import { GroupAudit, chainInDatabase, headOfInserted, type KnownHead, type PendingEvent } from './audit-append.ts';
import { errorCode, isConflict, isUnavailable } from './sql.ts';
import { PgTx } from './tx.ts';

/** Most transactions committed together by default: bounds a group's latency. */
export const DEFAULT_MAX_GROUP_SIZE = 100;
/**
 * Groups running side by side by default (each on a connection of its own). Two overlap one group's round trips
 * with the other's; on the 2-core benchmark machine more made the lifecycle slower, each backend more costing the
 * database CPU per transaction (BENCHMARKS.md, issue 12).
 */
export const DEFAULT_PARALLEL_GROUPS = 2;

interface Job {
  work: (tx: StoreTx) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** A member's result: its value and the audit events it appended, not yet inserted; or its error. */
type Outcome = { ok: true; value: unknown; events: PendingEvent[] } | { ok: false; error: unknown };

export interface CommitGroupsOptions {
  /** A pooled connection (the caller's StoreUnavailable when none can be had). */
  connect: () => Promise<pg.PoolClient>;
  /** Told the chain's head after each COMMIT that appended (the audit appender starts from it). */
  knownHead: KnownHead;
  /** Most transactions per group; default DEFAULT_MAX_GROUP_SIZE. 1 commits each on its own. */
  maxGroupSize?: number;
  /**
   * Most groups running at once, each on its own connection (`connect` must be able to give that many);
   * default DEFAULT_PARALLEL_GROUPS. 1 runs the groups one after another, every transaction in call order.
   */
  parallelGroups?: number;
  /** Runs a transaction's callback marked as running inside `tx` (so the store refuses calls on itself). */
  runInside: <T>(tx: PgTx, body: () => Promise<T>) => Promise<T>;
}

/** A statement's result or error, without an unhandled rejection while nobody awaits it yet. */
type Settled = { ok: true; result: pg.QueryResult } | { ok: false; error: unknown };

function settle(query: Promise<pg.QueryResult | pg.QueryResult[]>): Promise<Settled> {
  return query.then(
    (result) => ({ ok: true, result: Array.isArray(result) ? (result.at(-1) as pg.QueryResult) : result }),
    (error: unknown) => ({ ok: false, error }),
  );
}

/** The error of the first control statement that failed, if one did (waits for them all). */
async function firstFailure(controls: Promise<Settled>[]): Promise<unknown> {
  for (const control of await Promise.all(controls)) if (!control.ok) return control.error ?? new Error('failed');
  return undefined;
}

/**
 * Holds back what is sent on `client` until the current run of synchronous code and promise callbacks is over,
 * then sends it in one write: a member's savepoint statements and the next member's first statement, or the
 * audit insert and the COMMIT, reach the database together (one system call on each side instead of one per
 * query). node-postgres corks its socket the same way around each of its extended-protocol queries.
 */
function coalesceWrites(client: pg.PoolClient): void {
  const stream = (client as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } })
    .connection?.stream;
  if (stream?.cork === undefined || stream.uncork === undefined) return;
  stream.cork();
  process.nextTick(() => stream.uncork?.());
}

/** The first of `statements` that failed, or the last one's result (waits for them all). */
async function firstFailureOrLast(statements: Promise<Settled>[]): Promise<Settled> {
  const settled = await Promise.all(statements);
  return settled.find((statement) => !statement.ok) ?? (settled.at(-1) as Settled);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A collision (serialisation failure, deadlock, lock timeout) in the group's own statements, which refuses every
 * member though none of them failed: each was not made and can be tried again as it is.
 */
function groupConflict(cause: unknown): Conflict {
  return new Conflict(
    `a concurrent transaction collided with the commit of this one's group (${messageOf(cause)}); nothing was ` +
      'changed, try again',
    { details: { postgresCode: errorCode(cause) } },
  );
}

const REFUSED_STATEMENT =
  'the transaction was rolled back because one of its statements failed; a tx call that throws must end the ' +
  'transaction';

export class CommitGroups {
  private readonly options: CommitGroupsOptions;
  private readonly maxGroupSize: number;
  private readonly parallelGroups: number;
  private readonly queue: Job[] = [];
  /** Groups running now. */
  private running = 0;
  private startScheduled = false;

  constructor(options: CommitGroupsOptions) {
    this.options = options;
    this.maxGroupSize = options.maxGroupSize ?? DEFAULT_MAX_GROUP_SIZE;
    this.parallelGroups = options.parallelGroups ?? DEFAULT_PARALLEL_GROUPS;
    for (const [name, value] of [
      ['maxGroupSize', this.maxGroupSize],
      ['parallelGroups', this.parallelGroups],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new Error(`${name} must be a whole number >= 1; got ${value}`);
    }
  }

  /** Queues `work`; resolves with its value once the group it ran in has committed. */
  run<T>(work: (tx: StoreTx) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: (value) => resolve(value as T), reject });
      // Start on a microtask, so every transaction asked for in the same synchronous burst is shared out at once.
      this.scheduleStart(queueMicrotask);
    });
  }

  private scheduleStart(when: (start: () => void) => void): void {
    if (this.startScheduled) return;
    this.startScheduled = true;
    when(() => {
      this.startScheduled = false;
      this.startGroups();
    });
  }

  /**
   * Starts a group on every idle connection while transactions wait, sharing them out evenly: with 16 waiting and
   * 2 groups idle, each takes 8, so their round trips overlap instead of adding up in one group.
   */
  private startGroups(): void {
    while (this.queue.length > 0 && this.running < this.parallelGroups) {
      const idle = this.parallelGroups - this.running;
      const jobs = this.queue.splice(0, Math.min(this.maxGroupSize, Math.ceil(this.queue.length / idle)));
      this.running++;
      void this.runGroup(jobs).finally(() => {
        this.running--;
        // The callers just answered often start their next transaction at once: on the event loop's check phase
        // (after pending I/O callbacks and every queued microtask) they have queued it, and join the next group.
        if (this.queue.length > 0) this.scheduleStart(setImmediate);
      });
    }
  }

  private async runGroup(jobs: Job[]): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.options.connect();
    } catch (error) {
      // No connection within the connect timeout: everyone waiting has waited that long; refuse them all rather
      // than make each wait again.
      for (const job of [...jobs, ...this.queue.splice(0)]) job.reject(error);
      return;
    }
    const audit = new GroupAudit();
    const done: { job: Job; value: unknown }[] = [];
    let broken: Error | undefined;
    // The control statements are pipelined (the connection is in pipeline mode): sent without waiting, and the
    // member that follows sends its statements behind them. If one failed, what followed it ran in an aborted
    // transaction (or in one a later ROLLBACK TO had cleared), so all of them are checked before the COMMIT is
    // sent, and any failure loses the group.
    coalesceWrites(client);
    // The isolation level is stated, not inherited from the database's default_transaction_isolation: the chaining
    // at COMMIT needs READ COMMITTED (each statement sees what was committed before it started, so the INSERT after
    // the chain's lock extends the true head; audit-append.ts chainInDatabase), and so do the version guards, which
    // under REPEATABLE READ would refuse every race with a serialisation failure instead of their own Conflict.
    const controls: Promise<Settled>[] = [
      settle(client.query('BEGIN ISOLATION LEVEL READ COMMITTED; SAVEPOINT kv_tx')),
    ];
    /** The member being run: refused too if something unforeseen throws. */
    let current: Job | undefined;
    /** A member returned since the savepoint was opened: release it and open the next before another member. */
    let savepointUsed = false;
    try {
      while (jobs.length > 0) {
        const job = jobs.shift() as Job;
        current = job;
        if (savepointUsed) {
          // Its predecessor's work joins the group's, and this member gets a savepoint of its own; sent together
          // with this member's first statement (coalesceWrites). The last member's savepoint needs no statement:
          // COMMIT releases it.
          coalesceWrites(client);
          controls.push(settle(client.query('RELEASE SAVEPOINT kv_tx; SAVEPOINT kv_tx')));
          savepointUsed = false;
        }
        const mark = audit.mark();
        const outcome = await this.runMember(client, audit, job);
        if (outcome.ok) {
          // Its events wait for the group's commit.
          audit.add(outcome.events);
          savepointUsed = true;
          done.push({ job, value: outcome.value });
          current = undefined;
          // A member that read the trail took the chain's lock: commit now rather than hold it for more members.
          if (audit.holdsLock) break;
          continue;
        }
        // A control statement that failed before this member makes its failure the group's (its statements ran in
        // an aborted transaction); those sent before it have been answered by now.
        const lost = await firstFailure(controls);
        if (lost !== undefined) {
          broken = asError(lost);
          this.lose(job, undefined, done, lost);
          return;
        }
        // Undo this member only: its statements go, and its inserted events and the chain's lock if it took it.
        audit.restore(mark);
        try {
          await client.query('ROLLBACK TO SAVEPOINT kv_tx');
        } catch (error) {
          broken = asError(error);
          this.lose(job, outcome.error, done, error);
          return;
        }
        // The savepoint is still in place, and empty: the next member starts in it.
        current = undefined;
        job.reject(outcome.error);
      }
      const lost = await firstFailure(controls);
      if (lost !== undefined) {
        broken = asError(lost);
        this.lose(undefined, undefined, done, lost);
        return;
      }
      if (done.length === 0) {
        try {
          await client.query('ROLLBACK');
        } catch (error) {
          broken = asError(error);
        }
        return;
      }
      // The events and the COMMIT go together (pipelined: one round trip). If the INSERT is refused, the COMMIT
      // only ends the aborted transaction (PostgreSQL answers it with ROLLBACK), and the group is lost.
      coalesceWrites(client);
      const statements = audit.pending.length === 0 ? [] : chainInDatabase(client, audit.pending).map(settle);
      const committed = await settle(client.query('COMMIT'));
      const insert = statements.length === 0 ? undefined : await firstFailureOrLast(statements);
      if (insert !== undefined && !insert.ok) {
        broken = asError(insert.error);
        this.lose(undefined, undefined, done, insert.error);
        return;
      }
      if (!committed.ok) {
        const error = committed.error;
        broken = asError(error);
        this.options.knownHead.forget();
        const failure = isConflict(error)
          ? groupConflict(error)
          : new StoreUnavailable(
              isUnavailable(error)
                ? `the database went away while committing (${messageOf(error)}): the change was not acknowledged`
                : `the change could not be committed, so it was not made (${messageOf(error)})`,
              { cause: error },
            );
        for (const member of done) member.job.reject(failure);
        return;
      }
      if (committed.result.command !== 'COMMIT') {
        // Cannot happen while every refused statement rolls its member back; if it does, nothing was kept.
        const failure = new StoreUnavailable(`${REFUSED_STATEMENT} (COMMIT answered ${committed.result.command})`);
        for (const member of done) member.job.reject(failure);
        return;
      }
      if (insert?.ok === true) this.options.knownHead.committed(headOfInserted(insert.result.rows));
      for (const member of done) member.job.resolve(member.value);
    } catch (error) {
      // A fault of this code, not of a member: nobody is acknowledged, and the connection is not reused.
      broken = asError(error);
      this.lose(current, undefined, done, error);
    } finally {
      // Members left when the group ended early go back to the front of the queue, in call order.
      this.queue.unshift(...jobs);
      client.release(broken);
    }
  }

  /** Runs one member's callback in the open savepoint; a caught refused statement counts as a failure. */
  private async runMember(client: pg.PoolClient, audit: GroupAudit, job: Job): Promise<Outcome> {
    const tx = new PgTx(client, audit);
    let value: unknown;
    try {
      value = await this.options.runInside(tx, () => job.work(tx));
    } catch (error) {
      tx.end();
      return { ok: false, error };
    }
    tx.end();
    if (tx.failedStatement !== undefined) {
      return { ok: false, error: new StoreUnavailable(REFUSED_STATEMENT, { cause: tx.failedStatement }) };
    }
    return { ok: true, value, events: tx.takePendingAudit() };
  }

  /**
   * The group's database transaction is lost (the connection broke, or a control statement failed): `job` is
   * refused with its own error if it failed first, every member already done with the group's error, since none
   * was kept: a Conflict when concurrent transactions collided with the group's own statements, else
   * StoreUnavailable.
   */
  private lose(job: Job | undefined, jobError: unknown, done: { job: Job }[], cause: unknown): void {
    this.options.knownHead.forget();
    const failure = isConflict(cause)
      ? groupConflict(cause)
      : new StoreUnavailable(
          isUnavailable(cause)
            ? `the connection to the database was lost (${messageOf(cause)}), so the change was not made; try again`
            : `the database refused the transaction's group (${messageOf(cause)}), so the change was not made; try again`,
          { cause },
        );
    job?.reject(jobError ?? failure);
    for (const member of done) member.job.reject(failure);
  }
}
