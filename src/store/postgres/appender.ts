/**
 * Group commit for the audit trail on PostgreSQL: appends from many callers (every gateway request is an event)
 * are gathered while the previous batch commits, then written in one transaction: one lock of the chain, one
 * INSERT for the whole batch, one COMMIT and so one WAL flush. A caller's promise resolves only after that COMMIT
 * returned, i.e. once its events are durable; if the batch fails, every caller in it is refused and none of its
 * events was kept (fail closed). Batches from several processes take the same chain lock as any transaction's
 * appends (audit-append.ts), so the chain stays one line.
 */
import type pg from 'pg';
import { StoreUnavailable } from '../errors.ts';
import type { AuditAppender, AuditEvent, NewAuditEvent } from '../store.ts';
import { chainEvents, insertChained, lockAuditChain } from './audit-append.ts';
import { isUnavailable, translatePgError } from './sql.ts';

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
  private readonly maxBatchEvents: number;
  private readonly queue: Waiting[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(options: AuditAppenderOptions & { connect: () => Promise<pg.PoolClient> }) {
    this.connect = options.connect;
    this.maxBatchEvents = options.maxBatchEvents ?? DEFAULT_MAX_BATCH_EVENTS;
    if (!Number.isSafeInteger(this.maxBatchEvents) || this.maxBatchEvents < 1) {
      throw new Error(`maxBatchEvents must be a whole number >= 1; got ${this.maxBatchEvents}`);
    }
  }

  /** Appends `events` in order (adjacent in the chain); resolves with them as stored once they are durable. */
  append(events: readonly NewAuditEvent[]): Promise<AuditEvent[]> {
    if (this.closed) return Promise.reject(new StoreUnavailable('the audit appender is closed'));
    if (events.length === 0) return Promise.resolve([]);
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
      while (this.queue.length > 0) await this.writeBatch(this.takeBatch());
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

  private async writeBatch(batch: Waiting[]): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.connect();
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
      return;
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const head = await lockAuditChain(client);
      const { chained } = chainEvents(
        batch.flatMap((waiting) => waiting.events),
        head,
      );
      await insertChained(client, chained);
      const committed = await client.query('COMMIT');
      if (committed.command !== 'COMMIT') throw new Error(`COMMIT answered ${committed.command}`);
      let offset = 0;
      for (const waiting of batch) {
        waiting.resolve(chained.slice(offset, offset + waiting.events.length).map((item) => item.event));
        offset += waiting.events.length;
      }
    } catch (error) {
      if (isUnavailable(error)) broken = error instanceof Error ? error : new Error(String(error));
      else await client.query('ROLLBACK').catch((rollbackError: unknown) => (broken = rollbackError as Error));
      const translated = translatePgError(error);
      const failure =
        translated instanceof StoreUnavailable
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
