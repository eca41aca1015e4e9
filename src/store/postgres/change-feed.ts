/**
 * Changes between kubevisa processes on one PostgreSQL database: NOTIFY to send, LISTEN on a connection of its own
 * to receive. PostgreSQL keeps nothing for a listener that is not connected, so every time the connection is
 * (re)established the listener is told `missed` and re-reads what it caches; a heartbeat finds a connection that died
 * without saying so (a partition), so a gap never lasts longer than the heartbeat plus a reconnect.
 *
 * With the installation's key, payloads are signed (change-codec.ts); any role can LISTEN and send a signed payload
 * again, so a receiver also drops one sent more than REPLAY_WINDOW_MS from its clock, or heard before.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { decodeChange, encodeChange } from '../change-codec.ts';
import type { AccessChange, ChangeFeed, ChangeListener } from '../store.ts';

/** How often the listening connection is checked, in milliseconds. */
const HEARTBEAT_MS = 5000;
/** First wait before reconnecting, doubled after each failure up to RECONNECT_MAX_MS, in milliseconds. */
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 2000;
/** Refused notifications are reported at most this often, in milliseconds (anyone able to NOTIFY can send many). */
const REFUSED_REPORT_MS = 60_000;
/**
 * A signed payload is taken only within this long of the receiver's clock (either way: the servers' clocks differ a
 * little), and only once: the payloads taken within it are remembered, at most MAX_REMEMBERED of them.
 */
const REPLAY_WINDOW_MS = 5 * 60_000;
const MAX_REMEMBERED = 100_000;

/** Why a notification was dropped, as the report says it. */
const REFUSALS = {
  unsigned: "not signed with this installation's key, or unreadable",
  replayed: 'sent again: heard before',
  stale: `sent more than ${REPLAY_WINDOW_MS / 60_000} minutes from this server's clock: sent again later, or the servers' clocks differ`,
} as const;
type Refusal = keyof typeof REFUSALS;

export interface PostgresChangeFeedOptions {
  /** The store's connection settings (the listener opens its own connection with them). */
  clientConfig: pg.ClientConfig;
  /** The NOTIFY channel: one per kubevisa installation (database and schema). A plain identifier. */
  channel: string;
  /** Runs one statement on the store's pool (publishing needs no connection of its own). */
  query: (text: string, values: unknown[]) => Promise<unknown>;
  /** Told when the listening connection breaks or cannot be made (it is retried). Default: stderr. */
  onError?: (message: string) => void;
  /**
   * The key the processes of this installation share: every payload is signed with it, and one that is not signed
   * with it is dropped. Without it payloads travel unsigned (and anyone able to NOTIFY on the database can send them).
   */
  key?: Uint8Array;
  /** The clock signed payloads are stamped and judged by, epoch ms (default Date.now; see ChangeFeedOptions). */
  now?: () => number;
}

export class PostgresChangeFeed implements ChangeFeed {
  /** This process, so that it skips what it sent itself. */
  private readonly origin = randomBytes(9).toString('base64url');
  private readonly options: PostgresChangeFeedOptions;
  private listener: ChangeListener | undefined;
  private client: pg.Client | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private delayMs = RECONNECT_FIRST_MS;
  private closed = false;
  /** Notifications dropped since the last report, by why, and when that was reported. */
  private refused = new Map<Refusal, number>();
  private refusedReportedAt = -Infinity;
  /** The number of this process's next signed payload. */
  private seq = 0;
  /** The signed payloads taken (sender and number), with when they were sent, oldest first. */
  private readonly taken = new Map<string, number>();

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  constructor(options: PostgresChangeFeedOptions) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(options.channel)) throw new Error(`not a channel name: ${options.channel}`);
    this.options = options;
  }

  async publish(change: AccessChange): Promise<void> {
    // Every part in one statement (one round trip): 1,000 ended visas are four notifications, and the receivers
    // should not wait for this process to send them one after another.
    const text = 'SELECT pg_notify($1, payload) FROM unnest($2::text[]) WITH ORDINALITY AS p(payload, n) ORDER BY n';
    const { channel, key } = this.options;
    const payloads = encodeChange(this.origin, change, key, { channel, at: this.now(), seq: this.seq });
    this.seq += payloads.length;
    const values = [channel, payloads];
    // On the listening connection when there is one: the pool is shared with audit batches and the reconciler, and
    // a revocation's notification queued behind them (seconds when thousands of streams were just cut) keeps the
    // others' streams open that long. The statement is one transaction: it failed whole or was sent whole.
    const listening = this.client;
    if (listening !== undefined) {
      try {
        await listening.query(text, values);
        return;
      } catch {
        // The connection is failing (the heartbeat reconnects it): the pool sends it instead.
      }
    }
    await this.options.query(text, values);
  }

  subscribe(listener: ChangeListener): void {
    if (this.listener !== undefined) throw new Error('the change feed already has a listener');
    this.listener = listener;
    void this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      ...this.options.clientConfig,
      // Operators (and tests) can tell this connection from the pool's in pg_stat_activity.
      application_name: `kubevisa-changes:${process.pid}`,
      keepAlive: true,
      query_timeout: HEARTBEAT_MS,
    });
    // 'error' comes before 'end' when the server ends the connection; 'end' is where it is handled.
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(`LISTEN ${this.options.channel}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      this.report(`cannot listen for changes from other kubevisa processes (retrying): ${messageOf(error)}`);
      this.scheduleReconnect();
      return;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.delayMs = RECONNECT_FIRST_MS;
    client.on('notification', (message) => {
      const { key, channel } = this.options;
      const decoded = message.payload === undefined ? undefined : decodeChange(message.payload, key, channel);
      if (decoded === undefined) {
        this.noteRefused('unsigned');
        return;
      }
      if (decoded.origin === this.origin) return;
      if (key !== undefined) {
        const refusal = this.take(decoded.origin, decoded.at!, decoded.seq!);
        if (refusal !== undefined) {
          this.noteRefused(refusal);
          return;
        }
      }
      this.listener?.change(decoded.change);
    });
    client.once('end', () => {
      if (this.client !== client) return;
      this.client = undefined;
      clearInterval(this.heartbeat);
      if (this.closed) return;
      this.report('the connection listening for changes from other kubevisa processes ended (reconnecting)');
      this.scheduleReconnect();
    });
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      // A query that fails or times out means the connection is gone: ending it reconnects (the 'end' above).
      client.query('SELECT 1').catch(() => void client.end().catch(() => undefined));
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
    // Whatever was sent before this connection listened is lost (before the first one too: the caches were filled
    // while it was being made).
    this.listener?.missed();
  }

  /** Why the signed payload `seq` of `origin`, sent `at`, is refused; undefined when it is fresh and now taken. */
  private take(origin: string, at: number, seq: number): Refusal | undefined {
    const now = this.now();
    if (Math.abs(now - at) > REPLAY_WINDOW_MS) return 'stale';
    const id = `${origin}:${seq}`;
    if (this.taken.has(id)) return 'replayed';
    // Oldest first (as they arrived): what fell out of the window is refused as stale anyway.
    for (const [old, sentAt] of this.taken) {
      if (this.taken.size < MAX_REMEMBERED && sentAt >= now - REPLAY_WINDOW_MS) break;
      this.taken.delete(old);
    }
    this.taken.set(id, at);
    return undefined;
  }

  /** Says, at most once a minute, how many notifications were dropped: something else sends on this channel. */
  private noteRefused(why: Refusal): void {
    this.refused.set(why, (this.refused.get(why) ?? 0) + 1);
    const now = Date.now();
    if (now - this.refusedReportedAt < REFUSED_REPORT_MS) return;
    const label = (refusal: Refusal) =>
      refusal === 'unsigned' && this.options.key === undefined ? 'unreadable' : REFUSALS[refusal];
    const counts = [...this.refused];
    const total = counts.reduce((sum, [, count]) => sum + count, 0);
    const what =
      counts.length === 1
        ? label(counts[0]![0])
        : counts.map(([refusal, count]) => `${count} ${label(refusal)}`).join('; ');
    this.report(
      `dropped ${total} change notification(s) on channel ${this.options.channel} (${what}): something other than this installation's kubevisa servers sends on it (find it in pg_stat_activity)`,
    );
    this.refused.clear();
    this.refusedReportedAt = now;
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.connect(), this.delayMs);
    this.retry.unref();
    this.delayMs = Math.min(RECONNECT_MAX_MS, this.delayMs * 2);
  }

  private report(message: string): void {
    (this.options.onError ?? ((m) => process.stderr.write(`kubevisa: ${m}\n`)))(message);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
