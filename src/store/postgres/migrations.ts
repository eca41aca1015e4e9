/**
 * The PostgreSQL schema as ordered, numbered migrations (the same tables and columns as the SQLite engine, so the
 * engine-neutral mappers read both). A migration, once released, never changes: a new need is a new migration
 * with the next number. Instants are BIGINT epoch milliseconds; JSON columns end in `_json` and are TEXT, not
 * JSONB: the audit trail hashes `details_json` byte for byte, and JSONB would reorder keys and normalise numbers.
 * `ord` columns keep insertion order, which SQLite gives for free as `rowid` and some listings are ordered by.
 *
 * Append-only is enforced twice in the database: triggers refuse UPDATE, DELETE and TRUNCATE of the audit tables
 * whoever runs them, and the runtime role is granted no UPDATE, DELETE or TRUNCATE there at all (see
 * `runtimeRoleGrants` in store.ts and docs/operations.md).
 */

export interface PostgresMigration {
  /** 1, 2, 3, … in the order they are applied. */
  version: number;
  /** Short description; stored beside the version so a mismatched build is recognised. */
  name: string;
  sql: string;
}

export const GENESIS_HASH_SQL = `'${'0'.repeat(64)}'`;

/**
 * The triggers that keep the audit trail append-only, as migration 2 created them. The store's integrity check
 * requires each to be present and enabled, and an open by the tables' owner recreates or re-enables any that is
 * not (someone with owner rights dropped or disabled it). Released text: never edit, add a migration instead.
 */
export const AUDIT_GUARD_TRIGGERS: readonly {
  table: string;
  name: string;
  sql: string;
  /** The function it runs. */
  fn: string;
  /** pg_trigger.tgtype as created: ROW 1, BEFORE 2, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32. */
  type: number;
}[] = [
  ['audit_events', 'no_update', 'BEFORE UPDATE', 'ROW', 'kubevisa_refuse_audit_change'],
  ['audit_events', 'no_delete', 'BEFORE DELETE', 'ROW', 'kubevisa_refuse_audit_change'],
  ['audit_events', 'no_truncate', 'BEFORE TRUNCATE', 'STATEMENT', 'kubevisa_refuse_audit_change'],
  ['audit_events', 'extend_head', 'BEFORE INSERT', 'ROW', 'kubevisa_audit_extends_head'],
  ['audit_checkpoints', 'no_update', 'BEFORE UPDATE', 'ROW', 'kubevisa_refuse_audit_change'],
  ['audit_checkpoints', 'no_delete', 'BEFORE DELETE', 'ROW', 'kubevisa_refuse_audit_change'],
  ['audit_checkpoints', 'no_truncate', 'BEFORE TRUNCATE', 'STATEMENT', 'kubevisa_refuse_audit_change'],
  ['audit_checkpoints', 'follow_trail', 'BEFORE INSERT', 'ROW', 'kubevisa_checkpoint_follows_trail'],
].map(([table, suffix, when, level, fn]) => ({
  table: table as string,
  name: `${table}_${suffix}`,
  sql: `CREATE TRIGGER ${table}_${suffix} ${when} ON ${table} FOR EACH ${level} EXECUTE FUNCTION ${fn}()`,
  fn: fn as string,
  type:
    (level === 'ROW' ? 1 : 0) +
    2 +
    ({ 'BEFORE INSERT': 4, 'BEFORE DELETE': 8, 'BEFORE UPDATE': 16, 'BEFORE TRUNCATE': 32 } as Record<string, number>)[
      when as string
    ]!,
}));

const AUDIT_GUARD_SQL = AUDIT_GUARD_TRIGGERS.map((guard) => `${guard.sql};`).join('\n');

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'core tables',
    sql: `
CREATE TABLE persons (
  id TEXT PRIMARY KEY,
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  groups_json TEXT NOT NULL,
  roles_json TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deprovisioned')),
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (issuer, subject)
);

CREATE TABLE engagements (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  vendor TEXT NOT NULL,
  contractors_json TEXT NOT NULL,
  sponsor TEXT NOT NULL,
  starts_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  ceiling_json TEXT NOT NULL,
  max_visa_seconds BIGINT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'ended')),
  ended_at BIGINT,
  ended_by TEXT,
  end_reason TEXT,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE INDEX engagements_status ON engagements (status);

CREATE TABLE engagement_contractors (
  engagement_id TEXT NOT NULL REFERENCES engagements (id) ON DELETE CASCADE,
  email TEXT NOT NULL,
  PRIMARY KEY (engagement_id, email)
);
CREATE INDEX engagement_contractors_email ON engagement_contractors (email);

CREATE TABLE visas (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  engagement_id TEXT NOT NULL REFERENCES engagements (id),
  person_id TEXT NOT NULL REFERENCES persons (id),
  person_email TEXT NOT NULL,
  cluster TEXT NOT NULL,
  namespaces_json TEXT NOT NULL,
  profile TEXT NOT NULL,
  reason TEXT NOT NULL,
  requested_at BIGINT NOT NULL,
  requested_seconds BIGINT NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('requested', 'approved', 'active', 'expired', 'revoked', 'denied', 'cancelled')),
  approvals_json TEXT NOT NULL,
  required_approvals INTEGER NOT NULL,
  extends TEXT,
  decided_at BIGINT,
  decided_by TEXT,
  ended_at BIGINT,
  ended_by TEXT,
  end_reason TEXT,
  version INTEGER NOT NULL CHECK (version >= 1)
);
CREATE INDEX visas_state_not_after ON visas (state, not_after);
CREATE INDEX visas_not_after ON visas (not_after);
CREATE INDEX visas_cluster ON visas (cluster, state);
CREATE INDEX visas_person ON visas (person_id, state);
CREATE INDEX visas_engagement ON visas (engagement_id, state);
CREATE INDEX visas_requested ON visas (requested_at, ord);

-- No foreign keys: an intent may concern objects kubevisa no longer knows (a stray binding to remove).
CREATE TABLE intents (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  cluster TEXT NOT NULL,
  visa_id TEXT,
  person_id TEXT,
  payload_json TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  completed_at BIGINT
);
CREATE INDEX intents_pending ON intents (created_at, ord) WHERE completed_at IS NULL;

CREATE TABLE sessions (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  person_id TEXT NOT NULL REFERENCES persons (id),
  secret_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  last_used_at BIGINT,
  idp_refresh_token_ciphertext TEXT,
  idp_token_expires_at BIGINT,
  revoked_at BIGINT,
  revoke_reason TEXT
);
CREATE INDEX sessions_person ON sessions (person_id, created_at);

CREATE TABLE pending_logins (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  lookup_key TEXT UNIQUE,
  payload_json TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX pending_logins_expires ON pending_logins (expires_at);

-- seq is assigned by the store (head + 1) while it holds the chain's lock, never by a sequence: a rolled-back
-- append must leave no gap. No foreign keys: the trail must accept every event and outlive what it describes.
CREATE TABLE audit_events (
  seq BIGINT PRIMARY KEY CHECK (seq >= 1),
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  session_id TEXT,
  action TEXT NOT NULL,
  visa_id TEXT,
  engagement_id TEXT,
  person_id TEXT,
  cluster TEXT,
  namespace TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
  reason TEXT,
  details_json TEXT NOT NULL,
  source_address TEXT,
  source_user_agent TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_events_visa ON audit_events (visa_id, seq) WHERE visa_id IS NOT NULL;
CREATE INDEX audit_events_person ON audit_events (person_id, seq) WHERE person_id IS NOT NULL;
CREATE INDEX audit_events_engagement ON audit_events (engagement_id, seq) WHERE engagement_id IS NOT NULL;
CREATE INDEX audit_events_action ON audit_events (action, seq);

CREATE TABLE audit_checkpoints (
  id BIGINT PRIMARY KEY CHECK (id >= 1),
  created_at BIGINT NOT NULL,
  seq BIGINT NOT NULL CHECK (seq >= 0),
  hash TEXT NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

CREATE TABLE clusters (
  name TEXT PRIMARY KEY,
  server TEXT NOT NULL,
  ca_data TEXT,
  credential_ref TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE profiles (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL,
  rules_json TEXT NOT NULL,
  declared_risks_json TEXT NOT NULL,
  max_visa_seconds BIGINT NOT NULL,
  record_sessions INTEGER NOT NULL CHECK (record_sessions IN (0, 1)),
  direct_mode TEXT CHECK (direct_mode IS NULL OR direct_mode IN ('allowed', 'denied'))
);

CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value_json TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);

-- Keys ending in _key are the lower-cased userName / displayName: SCIM compares them case-insensitively.
CREATE TABLE scim_users (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  user_name TEXT NOT NULL,
  user_name_key TEXT NOT NULL UNIQUE,
  external_id TEXT,
  email TEXT,
  display_name TEXT,
  active INTEGER NOT NULL CHECK (active IN (0, 1)),
  resource_json TEXT NOT NULL,
  provisioned_by TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX scim_users_external_id ON scim_users (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX scim_users_email ON scim_users (email) WHERE email IS NOT NULL;
CREATE INDEX scim_users_created ON scim_users (created_at, ord);

CREATE TABLE scim_groups (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  display_name_key TEXT NOT NULL UNIQUE,
  external_id TEXT,
  members_json TEXT NOT NULL,
  resource_json TEXT NOT NULL,
  provisioned_by TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX scim_groups_created ON scim_groups (created_at, ord);

CREATE TABLE scim_group_members (
  group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_user ON scim_group_members (user_id);

CREATE TABLE scim_tokens (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  idp TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at BIGINT,
  last_used_at BIGINT,
  revoked_at BIGINT,
  revoked_by TEXT
);

-- No foreign key to persons: a receipt must outlive anything it describes.
CREATE TABLE offboardings (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  id TEXT PRIMARY KEY,
  person_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('proving', 'proven', 'unproven')),
  trigger TEXT NOT NULL,
  receipt_json TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX offboardings_person ON offboardings (person_id, created_at);
CREATE INDEX offboardings_open ON offboardings (status) WHERE status <> 'proven';

CREATE TABLE scim_links (
  ord BIGINT GENERATED ALWAYS AS IDENTITY,
  email TEXT NOT NULL,
  idp TEXT NOT NULL,
  how TEXT NOT NULL CHECK (how IN ('provisioned', 'claimed', 'linked', 'migrated')),
  linked_by TEXT NOT NULL,
  reason TEXT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (email, idp)
);
CREATE INDEX scim_links_idp ON scim_links (idp);
`,
  },
  {
    version: 2,
    name: 'audit trail append-only',
    // The hash chain makes tampering evident; these triggers make the accidental kind (a stray UPDATE in a
    // maintenance session, a bug, a TRUNCATE) impossible, and refuse an insert that does not extend the head.
    // The statement-level TRUNCATE trigger matters: TRUNCATE fires no row triggers. The functions keep the schema
    // they were created in, so they work (and cannot be redirected) whatever search_path the session has.
    sql: `
CREATE FUNCTION kubevisa_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
BEGIN
  RAISE EXCEPTION '% are append-only: % refused', replace(TG_TABLE_NAME, '_', ' '), TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION kubevisa_audit_extends_head() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
DECLARE
  head_seq BIGINT;
  head_hash TEXT;
BEGIN
  SELECT seq, hash INTO head_seq, head_hash FROM audit_events ORDER BY seq DESC LIMIT 1;
  IF NEW.seq IS DISTINCT FROM COALESCE(head_seq, 0) + 1
     OR NEW.prev_hash IS DISTINCT FROM COALESCE(head_hash, ${GENESIS_HASH_SQL}) THEN
    RAISE EXCEPTION 'audit events are append-only: insert does not extend the head of the chain'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION kubevisa_checkpoint_follows_trail() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_checkpoints)
     OR NEW.seq < (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints)
     OR NEW.hash IS DISTINCT FROM (CASE WHEN NEW.seq = 0 THEN ${GENESIS_HASH_SQL}
       ELSE (SELECT hash FROM audit_events WHERE seq = NEW.seq) END) THEN
    RAISE EXCEPTION 'audit checkpoints are append-only: checkpoint does not match the trail or goes back'
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$;

${AUDIT_GUARD_SQL}

-- Nobody but the owner may change the trail, whatever was granted to PUBLIC.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM PUBLIC;
`,
  },
  {
    version: 3,
    name: 'audit guards search their own schema before temporary tables',
    // PostgreSQL searches pg_temp first unless a search_path names it: a role allowed to create temporary tables
    // could shadow audit_events with its own and make the "extends the head" check read a forged head. Naming
    // the schema, then pg_temp last, makes the guards read only the real tables.
    sql: `
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION kubevisa_refuse_audit_change() SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION kubevisa_audit_extends_head() SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION kubevisa_checkpoint_follows_trail() SET search_path = %I, pg_temp', current_schema());
END
$$;
`,
  },
  {
    version: 4,
    name: 'clusters registered at run time',
    // Kept apart from `clusters` (every managed cluster's connection facts): only these carry a credential, sealed.
    sql: `
CREATE TABLE registered_clusters (
  name TEXT PRIMARY KEY,
  sealed_kubeconfig TEXT NOT NULL,
  direct_mode INTEGER NOT NULL CHECK (direct_mode IN (0, 1)),
  registered_by TEXT NOT NULL,
  registered_at BIGINT NOT NULL,
  credential_expires_at BIGINT,
  updated_at BIGINT NOT NULL
);
`,
  },
  {
    version: 5,
    name: 'leader leases',
    // One row per lease. expires_at is written and compared with the database's clock only (clock_timestamp()),
    // so a replica whose clock is off can neither keep a lease past its end nor take one early. epoch rises at
    // every takeover and never falls: it is the fencing token every cluster write carries.
    sql: `
CREATE TABLE leader_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  epoch BIGINT NOT NULL CHECK (epoch >= 1),
  expires_at TIMESTAMPTZ NOT NULL,
  acquired_at TIMESTAMPTZ NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL
);
`,
  },
  {
    version: 6,
    name: 'visas: the next start',
    // The reconciler's deadline timer asks for the next notBefore and notAfter of a live visa; (state, not_after)
    // already answers the second.
    sql: `
CREATE INDEX visas_state_not_before ON visas (state, not_before);
`,
  },
  {
    version: 7,
    name: 'leader leases: the holder is present',
    // True when the holder's latest claim saw its presence lock held (leases.ts): a session lock on a connection of
    // its own that PostgreSQL drops the moment the process dies. A term whose holder proved presence and lost it
    // can be taken before it expires; one whose holder never could (a pooler between kubevisa and the database
    // hides session locks) only once it expires, as before.
    sql: `
ALTER TABLE leader_leases ADD COLUMN present BOOLEAN NOT NULL DEFAULT false;
`,
  },
];

/** The tables the runtime role may only read and insert into. */
export const APPEND_ONLY_TABLES: readonly string[] = ['audit_events', 'audit_checkpoints'];

/**
 * The guard functions the triggers run, as migration 2 created them and migration 3 pinned their search_path: the
 * body (`pg_proc.prosrc`, the text between the dollar quotes) and the statement that puts it back. The integrity
 * check compares each with the database, so a function replaced by one that does nothing (the owner can) is found,
 * not only a trigger dropped or disabled.
 */
export const AUDIT_GUARD_FUNCTIONS: readonly { name: string; body: string; createSql: string }[] = [
  ...(POSTGRES_MIGRATIONS.find((m) => m.version === 2)?.sql ?? '').matchAll(
    /CREATE FUNCTION (kubevisa_[a-z_]+)\(\)[^$]*\$\$([\s\S]*?)\$\$;/g,
  ),
].map((match) => ({
  name: match[1]!,
  body: match[2]!,
  createSql: match[0].replace(/^CREATE FUNCTION/, 'CREATE OR REPLACE FUNCTION'),
}));
