/**
 * Leader leases on PostgreSQL (migrations 5 and 7, table `leader_leases`). One statement per claim: the row lock that
 * INSERT … ON CONFLICT DO UPDATE takes makes concurrent claims of an expired lease serialise, and the loser's
 * WHERE is checked again against the winner's row, so exactly one replica starts each term. Every instant is the
 * database's `clock_timestamp()`; the caller's clock is never sent.
 *
 * Presence: each process holds a session advisory lock, keyed by its holder id, on a connection of its own. When
 * the process dies (kill -9, a crash, its host gone with its TCP connection reset) PostgreSQL ends that session and
 * the lock goes with it, at once; a process that is only paused or slow keeps it. A term whose holder proved its
 * presence at its latest claim and has lost it can therefore be taken without waiting for the term to run out:
 * a dead leader is replaced in a watch interval instead of a lease. Taking a term early is no more dangerous than
 * taking an expired one: a holder that is in fact alive is fenced by the next epoch like any deposed leader.
 */
import pg from 'pg';
import { InvalidInput } from '../../domain/errors.ts';
import type { LeaderLeases, LeaseTerm, Presence } from '../store.ts';

/**
 * The advisory-lock key space of this schema's presence locks (two int4 keys: this, then the holder's hash), so that
 * stores in two schemas of one database do not see each other's replicas.
 */
const PRESENCE_SPACE = `(hashtext(current_schema() || ':kubevisa-presence') & 2147483647)`;

/**
 * True while some session holds the presence lock of the holder named by the SQL expression `holder` (only the
 * session whose backend pid is the SQL expression `pid`, when given).
 */
const presenceHeld = (holder: string, pid?: string) => `EXISTS (
  SELECT 1 FROM pg_locks k
  WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND k.classid = ${PRESENCE_SPACE}::oid AND k.objid = (hashtext(${holder}) & 2147483647)::oid${
      pid === undefined ? '' : ` AND k.pid = ${pid}`
    })`;

/** The term in row `l` can be taken by a claim of EXCLUDED.holder: it expired, or its holder proved presence and lost it. */
const TAKEABLE = `(l.expires_at <= clock_timestamp()
    OR (l.present AND l.holder <> EXCLUDED.holder AND NOT ${presenceHeld('l.holder')}))`;

/**
 * The claim renews the holder's own running term. The SET below decides the epoch by this rather than by TAKEABLE:
 * TAKEABLE reads pg_locks anew at each evaluation, and a presence lock that reappears between the WHERE and the SET
 * would hand the term to a new holder under the old epoch, which the fence cannot tell apart. Every update that is
 * not this renewal passed the WHERE by TAKEABLE, so it starts a new term (the clock only moves on, so a term this
 * finds expired was expired for the WHERE too).
 */
const RENEWAL = `(l.holder = EXCLUDED.holder AND l.epoch = $4::bigint AND l.expires_at > clock_timestamp())`;

const CLAIM_SQL = `
WITH claimed AS (
  INSERT INTO leader_leases AS l (name, holder, epoch, expires_at, acquired_at, renewed_at, present)
  VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3::float8 / 1000), clock_timestamp(), clock_timestamp(),
    ${presenceHeld('$2::text', '$5::int')})
  ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN ${RENEWAL} THEN l.epoch ELSE l.epoch + 1 END,
    acquired_at = CASE WHEN ${RENEWAL} THEN l.acquired_at ELSE clock_timestamp() END,
    expires_at = EXCLUDED.expires_at,
    renewed_at = clock_timestamp(),
    present = EXCLUDED.present
  WHERE ${TAKEABLE} OR (l.holder = EXCLUDED.holder AND l.epoch = $4::bigint)
  RETURNING holder, epoch, expires_at
)
SELECT holder, epoch::text AS epoch,
  (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8 AS remaining_ms,
  (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS database_now FROM claimed
UNION ALL
SELECT holder, epoch::text, (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8,
  (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8
  FROM leader_leases WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`;

/** Read only: whether a claim by $2 now would start a new term (no row, an expired term, or an absent holder). */
const TAKEABLE_SQL = `
SELECT COALESCE((SELECT expires_at <= clock_timestamp()
    OR (present AND holder <> $2 AND NOT ${presenceHeld('holder')})
  FROM leader_leases WHERE name = $1), true) AS takeable`;

/** How often the presence connection proves it is still there; a failed or slow answer ends it (ms). */
const PRESENCE_HEARTBEAT_MS = 5000;

// A term ended early keeps its epoch: the next claim finds it expired and starts epoch + 1.
const RELEASE_SQL = `UPDATE leader_leases SET expires_at = clock_timestamp()
  WHERE name = $1 AND holder = $2 AND epoch = $3::bigint AND expires_at > clock_timestamp()`;

export function postgresLeases(
  query: (sql: string, values: unknown[]) => Promise<pg.QueryResult>,
  presenceConfig: () => pg.ClientConfig,
): LeaderLeases & { closePresences(): Promise<void> } {
  const presences = new Set<pg.Client>();
  /** The backend pid of each holder id's presence session shown through this store, while it lasts. */
  const owned = new Map<string, { client: pg.Client; pid: number }>();
  return {
    exclusive: false,
    async claim({ name, holder, durationMs, epoch }) {
      if (!Number.isFinite(durationMs) || durationMs <= 0) {
        throw new InvalidInput(`a lease lasts a positive number of milliseconds, got ${durationMs}`, {
          details: { field: 'durationMs', value: durationMs },
        });
      }
      let row: { holder: string; epoch: string; remaining_ms: number; database_now: number } | undefined;
      // A claim that lost a race for a row another claim was inserting answers no row (its snapshot predates that
      // row); the next statement sees it.
      for (let attempt = 1; row === undefined && attempt <= 3; attempt++) {
        const result = await query(CLAIM_SQL, [
          name,
          holder,
          durationMs,
          epoch === undefined ? null : String(epoch),
          // Presence is recorded only when the lock is held by this process's own presence session: a lock on the
          // same key held by anyone else (another role of the database, a stale session of this process, an id
          // hashing alike) would let this live holder's term be taken the moment that other session lets go.
          owned.get(holder)?.pid ?? null,
        ]);
        row = result.rows[0] as typeof row;
      }
      if (row === undefined) throw new Error(`lease '${name}': three claims in a row answered no row`);
      const term: LeaseTerm = {
        holder: row.holder,
        epoch: Number(row.epoch),
        remainingMs: Number(row.remaining_ms),
        databaseNow: Number(row.database_now),
      };
      return term;
    },
    async release({ name, holder, epoch }) {
      await query(RELEASE_SQL, [name, holder, String(epoch)]);
    },
    async readClock() {
      const result = await query(`SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS now`, []);
      return Number((result.rows[0] as { now: number }).now);
    },
    async takeable({ name, holder }) {
      const result = await query(TAKEABLE_SQL, [name, holder]);
      return (result.rows[0] as { takeable: boolean }).takeable;
    },
    async holdPresence({ holder, onLost }) {
      const client = new pg.Client({
        ...presenceConfig(),
        // Operators (and tests) can tell this connection from the others in pg_stat_activity.
        application_name: `kubevisa-presence:${process.pid}`,
        keepAlive: true,
        query_timeout: PRESENCE_HEARTBEAT_MS,
      });
      // 'error' comes before 'end' when the server ends the connection; 'end' is where it is handled.
      client.on('error', () => undefined);
      let pid: number;
      try {
        await client.connect();
        // The backend's own pid as the server knows it (behind a proxy, the one the connection's key data names
        // may not be): claims record presence only when pg_locks shows this very session holding the lock.
        const locked = await client.query(
          `SELECT pg_try_advisory_lock(${PRESENCE_SPACE}, hashtext($1) & 2147483647) AS locked, pg_backend_pid() AS pid`,
          [holder],
        );
        pid = (locked.rows[0] as { pid: number }).pid;
        if ((locked.rows[0] as { locked: boolean }).locked !== true) {
          // Another live process's id hashes to the same key: this one claims without presence, so its terms are
          // taken over only once they expire.
          throw new Error(`the presence lock of '${holder}' is held by another session`);
        }
        // This session idles between heartbeats by design: an idle_session_timeout set on the database or role
        // (PostgreSQL 14 and later) must not end it, or the leader would lose its term each time it fired.
        await client.query(
          `SELECT set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000`,
        );
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      }
      presences.add(client);
      owned.set(holder, { client, pid });
      const disown = () => {
        presences.delete(client);
        if (owned.get(holder)?.client === client) owned.delete(holder);
      };
      let ended = false;
      const heartbeat = setInterval(() => {
        client.query('SELECT 1').catch(() => void client.end().catch(() => undefined));
      }, PRESENCE_HEARTBEAT_MS);
      heartbeat.unref();
      client.once('end', () => {
        clearInterval(heartbeat);
        disown();
        if (ended) return;
        ended = true;
        onLost('the connection that shows this process is alive ended');
      });
      const presence: Presence = {
        async close() {
          ended = true;
          clearInterval(heartbeat);
          disown();
          await client.end().catch(() => undefined);
        },
      };
      return presence;
    },
    async closePresences() {
      await Promise.all([...presences].map((client) => client.end().catch(() => undefined)));
    },
  };
}
