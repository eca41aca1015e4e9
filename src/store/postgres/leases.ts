/**
 * Leader leases on PostgreSQL (migration 5, table `leader_leases`). One statement per claim: the row lock that
 * INSERT … ON CONFLICT DO UPDATE takes makes concurrent claims of an expired lease serialise, and the loser's
 * WHERE is checked again against the winner's row, so exactly one replica starts each term. Every instant is the
 * database's `clock_timestamp()`; the caller's clock is never sent.
 */
import type pg from 'pg';
import { InvalidInput } from '../../domain/errors.ts';
import type { LeaderLeases, LeaseTerm } from '../store.ts';

const CLAIM_SQL = `
WITH claimed AS (
  INSERT INTO leader_leases AS l (name, holder, epoch, expires_at, acquired_at, renewed_at)
  VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3::float8 / 1000), clock_timestamp(), clock_timestamp())
  ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.expires_at <= clock_timestamp() THEN l.epoch + 1 ELSE l.epoch END,
    acquired_at = CASE WHEN l.expires_at <= clock_timestamp() THEN clock_timestamp() ELSE l.acquired_at END,
    expires_at = EXCLUDED.expires_at,
    renewed_at = clock_timestamp()
  WHERE l.expires_at <= clock_timestamp() OR (l.holder = EXCLUDED.holder AND l.epoch = $4::bigint)
  RETURNING holder, epoch, expires_at
)
SELECT holder, epoch::text AS epoch,
  (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8 AS remaining_ms,
  (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS database_now FROM claimed
UNION ALL
SELECT holder, epoch::text, (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::float8,
  (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8
  FROM leader_leases WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`;

// A term ended early keeps its epoch: the next claim finds it expired and starts epoch + 1.
const RELEASE_SQL = `UPDATE leader_leases SET expires_at = clock_timestamp()
  WHERE name = $1 AND holder = $2 AND epoch = $3::bigint AND expires_at > clock_timestamp()`;

export function postgresLeases(query: (sql: string, values: unknown[]) => Promise<pg.QueryResult>): LeaderLeases {
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
        const result = await query(CLAIM_SQL, [name, holder, durationMs, epoch === undefined ? null : String(epoch)]);
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
  };
}
