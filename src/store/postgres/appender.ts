/**
 * Group commit for the audit trail on PostgreSQL: appends from many callers (every gateway request is an event)
 * are gathered while the previous batch commits, then written in one transaction: one lock of the chain, one
 * INSERT for the whole batch, one COMMIT and so one WAL flush. A caller's promise resolves only after that COMMIT
 * returned, i.e. once its events are durable; if the batch fails, every caller in it is refused and none of its
 * events was kept (fail closed). Batches from several processes take the same chain lock as any transaction's
 * appends (audit-append.ts), so the chain stays one line.
 *
 * The chain's lock is held from the moment it is granted until the flush of the COMMIT, so what runs in between
 * bounds the rate of every appender on the database. When this process knows the head (it committed it last), a
 * batch is chained from it and goes in as one self-committing statement: lock, insert and commit in one round
 * trip. When another process appended since, the database refuses that statement, having written nothing, and
 * the batch takes the lock and reads the head first (two round trips more while holding it).
 *
 * Two batches may be in flight: the next one is chained from the head the one before will leave and sent while
 * that one commits (on another connection, waiting for the lock in the database), so the chaining and the round
 * trip of one overlap the flush of the other. If the one before fails, or another process appends in between,
 * the next one's statement is refused the same way, and it takes the lock and reads the head.
 */
import type pg from 'pg';
import { Conflict } from '../../domain/errors.ts';
import { StoreUnavailable } from '../errors.ts';
import { assertStorableAuditContent } from '../audit-chain.ts';
import type { AuditAppender, AuditEvent, NewAuditEvent } from '../store.ts';
import {
  chainEvents,
  insertChained,
  insertChainedAtKnownHead,
  lockAuditChain,
  type AuditHead,
  type ChainedEvent,
  type KnownHead,
} from './audit-append.ts';
import { isConflict, isUnavailable, translatePgError } from './sql.ts';

/** Most events in one transaction by default: bounds a batch's latency and the size of its one INSERT. */
export const DEFAULT_MAX_BATCH_EVENTS = 2000;

export interface AuditAppenderOptions {
  /** Most events committed together; default 2000. A single call larger than this is still one batch. */
  maxBatchEvents?: number;
}

interface Waiting {
  events: readonly NewAuditEvent[];
  resolve: (appended: AuditEvent[]) => void;
  reject: (error: unknown) => void;
}

export class PostgresAuditAppender implements AuditAppender {
  private readonly connect: () => Promise<pg.PoolClient>;
  private readonly knownHead: KnownHead;
  private readonly maxBatchEvents: number;
  private readonly queue: Waiting[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(options: AuditAppenderOptions & { connect: () => Promise<pg.PoolClient>; knownHead: KnownHead }) {
    this.connect = options.connect;
    this.knownHead = options.knownHead;
    this.maxBatchEvents = options.maxBatchEvents ?? DEFAULT_MAX_BATCH_EVENTS;
    if (!Number.isSafeInteger(this.maxBatchEvents) || this.maxBatchEvents < 1) {
      throw new Error(`maxBatchEvents must be a whole number >= 1; got ${this.maxBatchEvents}`);
    }
  }

  /** Appends `events` in order (adjacent in the chain); resolves with them as stored once they are durable. */
  append(events: readonly NewAuditEvent[]): Promise<AuditEvent[]> {
    if (this.closed) return Promise.reject(new StoreUnavailable('the audit appender is closed'));
    if (events.length === 0) return Promise.resolve([]);
    // Checked here, for this caller alone: found while a batch is chained, it would fail every caller in the batch.
    try {
      for (const event of events) assertStorableAuditContent(event);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return new Promise<AuditEvent[]>((resolve, reject) => {
      this.queue.push({ events, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /** As `append`, for callers that need no result (the gateway). */
  async write(events: readonly NewAuditEvent[]): Promise<void> {
    await this.append(events);
  }

  /** Appends one event; resolves with it as stored once it is durable. */
  async appendOne(event: NewAuditEvent): Promise<AuditEvent> {
    const [appended] = await this.append([event]);
    if (appended === undefined) throw new Error('the appender returned no event');
    return appended;
  }

  /** Refuses new appends and waits for those already accepted to be written (or refused). */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
  }

  private async flush(): Promise<void> {
    try {
      // Let the callers of this turn of the event loop join the first batch.
      await new Promise<void>((resolve) => setImmediate(resolve));
      /** The batch in flight, and the head it will leave if it goes in as chained. */
      let inFlight: { done: Promise<void>; head: AuditHead | undefined } | undefined;
      for (;;) {
        if (this.queue.length === 0) {
          // Ends only when nothing is queued and nothing is in flight: appends arriving meanwhile are this
          // loop's, since `flushing` is still set.
          if (inFlight === undefined) break;
          await inFlight.done;
          inFlight = undefined;
          continue;
        }
        const from = inFlight === undefined ? this.knownHead.get() : inFlight.head;
        const next = this.startBatch(this.takeBatch(), from);
        await inFlight?.done;
        inFlight = next;
        // Those answered just now often append again at once: let them join the next batch.
        if (this.queue.length === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private takeBatch(): Waiting[] {
    const batch: Waiting[] = [];
    let count = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0];
      if (next === undefined || (batch.length > 0 && count + next.events.length > this.maxBatchEvents)) break;
      this.queue.shift();
      batch.push(next);
      count += next.events.length;
    }
    return batch;
  }

  /**
   * Chains `batch` from `from` (the head it is expected to extend; undefined: read it under the lock) and writes
   * it. Returns at once with the head the batch leaves if it goes in as chained, and the write under way.
   */
  private startBatch(
    batch: Waiting[],
    from: AuditHead | undefined,
  ): { done: Promise<void>; head: AuditHead | undefined } {
    const events = batch.flatMap((waiting) => waiting.events);
    let chained;
    try {
      chained = from === undefined ? undefined : chainEvents(events, from);
    } catch (error) {
      // Thrown out of the flush loop, it would end the process (nobody awaits the loop) and leave these unanswered.
      for (const waiting of batch) waiting.reject(error as Error);
      return { done: Promise.resolve(), head: from };
    }
    return { done: this.writeBatch(batch, events, chained), head: chained?.head };
  }

  private async writeBatch(
    batch: Waiting[],
    events: NewAuditEvent[],
    guessed: { chained: ChainedEvent[]; head: AuditHead | undefined } | undefined,
  ): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.connect();
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
      return;
    }
    let broken: Error | undefined;
    let inTransaction = false;
    try {
      let chained = guessed;
      if (chained !== undefined && !(await insertChainedAtKnownHead(client, chained.chained))) chained = undefined;
      if (chained === undefined) {
        // READ COMMITTED whatever the database's default: the head is read after the lock is granted, and must be
        // the one committed then (audit-append.ts lockAuditChain).
        await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
        inTransaction = true;
        chained = chainEvents(events, await lockAuditChain(client));
        await insertChained(client, chained.chained);
        const committed = await client.query('COMMIT');
        inTransaction = false;
        if (committed.command !== 'COMMIT') throw new Error(`COMMIT answered ${committed.command}`);
      }
      this.knownHead.committed(chained.head);
      let offset = 0;
      for (const waiting of batch) {
        waiting.resolve(chained.chained.slice(offset, offset + waiting.events.length).map((item) => item.event));
        offset += waiting.events.length;
      }
    } catch (error) {
      // Whether a COMMIT (or the self-committing insert) whose answer was lost took effect is unknown.
      this.knownHead.forget();
      if (isUnavailable(error)) broken = error instanceof Error ? error : new Error(String(error));
      else if (inTransaction) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => (broken = rollbackError as Error));
      }
      const translated = translatePgError(error);
      const failure =
        translated instanceof StoreUnavailable || (isConflict(error) && translated instanceof Conflict)
          ? translated
          : new StoreUnavailable(`audit events could not be made durable, so none was kept (${String(error)})`, {
              cause: error,
            });
      for (const waiting of batch) waiting.reject(failure);
    } finally {
      client.release(broken);
    }
  }
}
