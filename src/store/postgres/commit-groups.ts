/**
 * Group commit for `store.transaction` on PostgreSQL. Nearly every transaction appends to the audit chain, and
 * the chain's lock is held until COMMIT has flushed the WAL; run each on its own connection, they would commit one
 * after another, one flush each, however many connections there are. So transactions are queued and run one after
 * another in one database transaction, each in its own savepoint, and a single COMMIT (one flush) makes them all
 * durable: the chain is locked once per group, at the first append, and the appends of the group extend the head
 * in memory (audit-append.ts, ChainHold).
 *
 * While the chain is locked, every round trip of the group delays every appender on the database, so a member
 * costs only its own statements' round trips: its audit events (chained in memory, tx.ts appendAudit) go in with
 * the statements that release its savepoint and open the next one, as one simple query, and the group's connection
 * is in pipeline mode, so that query is sent without waiting for it and the next member's statements follow it.
 *
 * - A transaction that fails rolls back to its savepoint and only its caller is refused (with its own error: a
 *   Conflict for a serialisation failure or deadlock, as without groups); the others go on.
 * - Every caller is answered only after the shared COMMIT returned; if it fails (the database went away), every
 *   member is refused and none was kept. Nothing is acknowledged before it is durable.
 * - Transactions run in call order, so one sees the changes of those before it in its group (which commit with it
 *   or fail with it), and callers are answered in that order.
 *
 * This is the SQLite engine's model (sqlite.ts, runGroup): one writer per process, transactions one at a time.
 * Several processes on one database run their groups side by side, serialised on the chain's lock only where
 * they append.
 */
import type pg from 'pg';
import { StoreUnavailable } from '../errors.ts';
import type { StoreTx } from '../store.ts';
import { ChainHold, insertChainedSql, type ChainedEvent, type KnownHead } from './audit-append.ts';
import { isUnavailable } from './sql.ts';
import { PgTx } from './tx.ts';

/** Most transactions committed together by default: bounds how long a group holds the chain's lock. */
export const DEFAULT_MAX_GROUP_SIZE = 100;

interface Job {
  work: (tx: StoreTx) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** A member's result: its value and the audit events it appended, not yet inserted; or its error. */
type Outcome = { ok: true; value: unknown; events: ChainedEvent[] } | { ok: false; error: unknown };

export interface CommitGroupsOptions {
  /** A pooled connection (the caller's StoreUnavailable when none can be had). */
  connect: () => Promise<pg.PoolClient>;
  /** Told the chain's head after each COMMIT that appended (the audit appender starts from it). */
  knownHead: KnownHead;
  /** Most transactions per group; default DEFAULT_MAX_GROUP_SIZE. 1 commits each on its own. */
  maxGroupSize?: number;
  /** Runs a transaction's callback marked as running inside `tx` (so the store refuses calls on itself). */
  runInside: <T>(tx: PgTx, body: () => Promise<T>) => Promise<T>;
}

/** Resolves on the event loop's check phase: after pending I/O callbacks and every queued microtask. */
function nextTurnOfEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
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

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const REFUSED_STATEMENT =
  'the transaction was rolled back because one of its statements failed; a tx call that throws must end the ' +
  'transaction';

export class CommitGroups {
  private readonly options: CommitGroupsOptions;
  private readonly maxGroupSize: number;
  private readonly queue: Job[] = [];
  private draining = false;

  constructor(options: CommitGroupsOptions) {
    this.options = options;
    this.maxGroupSize = options.maxGroupSize ?? DEFAULT_MAX_GROUP_SIZE;
    if (!Number.isSafeInteger(this.maxGroupSize) || this.maxGroupSize < 1) {
      throw new Error(`maxGroupSize must be a whole number >= 1; got ${this.maxGroupSize}`);
    }
  }

  /** Queues `work`; resolves with its value once the group it ran in has committed. */
  run<T>(work: (tx: StoreTx) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: (value) => resolve(value as T), reject });
      if (this.draining) return;
      this.draining = true;
      // Start on a microtask, so every transaction asked for in the same synchronous burst joins the first group.
      queueMicrotask(() => void this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        await this.runGroup();
        // The callers just answered often start their next transaction at once; letting them queue first makes
        // the next group carry them all in one flush.
        await nextTurnOfEventLoop();
      }
    } finally {
      this.draining = false;
    }
  }

  private async runGroup(): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.options.connect();
    } catch (error) {
      // No connection within the connect timeout: everyone waiting has waited that long; refuse them all rather
      // than make each wait again.
      for (const job of this.queue.splice(0)) job.reject(error);
      return;
    }
    const chain = new ChainHold(client);
    const done: { job: Job; value: unknown }[] = [];
    let broken: Error | undefined;
    // The control statements are pipelined (the connection is in pipeline mode): sent without waiting, and the
    // member that follows sends its statements behind them. If one failed, what followed it ran in an aborted
    // transaction (or in one a later ROLLBACK TO had cleared, without the failed member's events), so all of them
    // are checked before the COMMIT is sent, and any failure loses the group.
    const controls: Promise<Settled>[] = [settle(client.query('BEGIN; SAVEPOINT kv_tx'))];
    /** The member being run: refused too if something unforeseen throws. */
    let current: Job | undefined;
    try {
      for (let taken = 0; taken < this.maxGroupSize; taken++) {
        const job = this.queue.shift();
        if (job === undefined) break;
        current = job;
        const mark = chain.mark();
        const outcome = await this.runMember(client, chain, job);
        if (outcome.ok) {
          // The member's events, then its savepoint released (its work joins the group's) and the next one opened.
          // The events were checked when appended (audit-append.ts) and the chain is locked: only a database
          // that stopped serving refuses this, and then the group is lost anyway.
          const events = insertChainedSql(outcome.events);
          controls.push(
            settle(client.query(`${events === '' ? '' : `${events}; `}RELEASE SAVEPOINT kv_tx; SAVEPOINT kv_tx`)),
          );
          done.push({ job, value: outcome.value });
          current = undefined;
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
        // Undo this member only. Its appends go, and the lock too if this member took it.
        chain.restore(mark);
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
      const committed = await settle(client.query('COMMIT'));
      if (!committed.ok) {
        const error = committed.error;
        broken = asError(error);
        this.options.knownHead.forget();
        const failure = new StoreUnavailable(
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
      this.options.knownHead.committed(chain.appended);
      for (const member of done) member.job.resolve(member.value);
    } catch (error) {
      // A fault of this code, not of a member: nobody is acknowledged, and the connection is not reused.
      broken = asError(error);
      this.lose(current, undefined, done, error);
    } finally {
      client.release(broken);
    }
  }

  /** Runs one member's callback in the open savepoint; a caught refused statement counts as a failure. */
  private async runMember(client: pg.PoolClient, chain: ChainHold, job: Job): Promise<Outcome> {
    const tx = new PgTx(client, chain);
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
   * refused with its own error if it failed first, every member already done with StoreUnavailable, since none
   * was kept.
   */
  private lose(job: Job | undefined, jobError: unknown, done: { job: Job }[], cause: unknown): void {
    this.options.knownHead.forget();
    const failure = new StoreUnavailable(
      `the database transaction was lost (${messageOf(cause)}), so the change was not made; try again`,
      { cause },
    );
    job?.reject(jobError ?? failure);
    for (const member of done) member.job.reject(failure);
  }
}
