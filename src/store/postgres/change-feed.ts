/**
 * Changes between kubevisa processes on one PostgreSQL database: NOTIFY to send, LISTEN on a connection of its own
 * to receive. PostgreSQL keeps nothing for a listener that is not connected, so every time the connection is
 * (re)established the listener is told `missed` and re-reads what it caches; a heartbeat finds a connection that died
 * without saying so (a partition), so a gap never lasts longer than the heartbeat plus a reconnect.
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
  /** Notifications dropped since the last report, and when that was reported. */
  private refused = 0;
  private refusedReportedAt = -Infinity;

  constructor(options: PostgresChangeFeedOptions) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(options.channel)) throw new Error(`not a channel name: ${options.channel}`);
    this.options = options;
  }

  async publish(change: AccessChange): Promise<void> {
    // Every part in one statement (one round trip): 1,000 ended visas are four notifications, and the receivers
    // should not wait for this process to send them one after another.
    const text = 'SELECT pg_notify($1, payload) FROM unnest($2::text[]) WITH ORDINALITY AS p(payload, n) ORDER BY n';
    const values = [this.options.channel, encodeChange(this.origin, change, this.options.key)];
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
      const decoded = message.payload === undefined ? undefined : decodeChange(message.payload, this.options.key);
      if (decoded === undefined) {
        this.noteRefused();
        return;
      }
      if (decoded.origin === this.origin) return;
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

  /** Says, at most once a minute, how many notifications were dropped: something else sends on this channel. */
  private noteRefused(): void {
    this.refused++;
    const now = Date.now();
    if (now - this.refusedReportedAt < REFUSED_REPORT_MS) return;
    const what = this.options.key ? "not signed with this installation's key, or unreadable" : 'unreadable';
    this.report(
      `dropped ${this.refused} change notification(s) on channel ${this.options.channel} (${what}): something other than this installation's kubevisa servers sends on it (find it in pg_stat_activity)`,
    );
    this.refused = 0;
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
