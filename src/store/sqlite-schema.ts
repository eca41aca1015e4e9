/**
 * The SQLite schema as ordered, numbered migrations. A migration, once released, never changes: a new need is a
 * new migration with the next number. Tables are STRICT so a value of the wrong type is refused on write.
 * Times are INTEGER epoch milliseconds; JSON columns end in `_json`.
 */

export interface Migration {
  /** 1, 2, 3, … in the order they are applied. */
  version: number;
  /** Short description; stored beside the version so a mismatched build is recognised. */
  name: string;
  sql: string;
}

export const SQLITE_MIGRATIONS: readonly Migration[] = [
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
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (issuer, subject)
) STRICT;

CREATE TABLE engagements (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  vendor TEXT NOT NULL,
  contractors_json TEXT NOT NULL,
  sponsor TEXT NOT NULL,
  starts_at INTEGER NOT NULL,
  ends_at INTEGER NOT NULL,
  ceiling_json TEXT NOT NULL,
  max_visa_seconds INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'ended')),
  ended_at INTEGER,
  ended_by TEXT,
  end_reason TEXT,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL
) STRICT;
CREATE INDEX engagements_status ON engagements (status);

-- contractors_json is what an engagement reads back as; this table only indexes it for "engagements of X".
CREATE TABLE engagement_contractors (
  engagement_id TEXT NOT NULL REFERENCES engagements (id) ON DELETE CASCADE,
  email TEXT NOT NULL,
  PRIMARY KEY (engagement_id, email)
) STRICT;
CREATE INDEX engagement_contractors_email ON engagement_contractors (email);

CREATE TABLE visas (
  id TEXT PRIMARY KEY,
  engagement_id TEXT NOT NULL REFERENCES engagements (id),
  person_id TEXT NOT NULL REFERENCES persons (id),
  person_email TEXT NOT NULL,
  cluster TEXT NOT NULL,
  namespaces_json TEXT NOT NULL,
  profile TEXT NOT NULL,
  reason TEXT NOT NULL,
  requested_at INTEGER NOT NULL,
  requested_seconds INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('requested', 'approved', 'active', 'expired', 'revoked', 'denied', 'cancelled')),
  approvals_json TEXT NOT NULL,
  required_approvals INTEGER NOT NULL,
  extends TEXT,
  decided_at INTEGER,
  decided_by TEXT,
  ended_at INTEGER,
  ended_by TEXT,
  end_reason TEXT,
  version INTEGER NOT NULL CHECK (version >= 1)
) STRICT;
CREATE INDEX visas_state_not_after ON visas (state, not_after);
CREATE INDEX visas_not_after ON visas (not_after);
CREATE INDEX visas_cluster ON visas (cluster, state);
CREATE INDEX visas_person ON visas (person_id, state);
CREATE INDEX visas_engagement ON visas (engagement_id, state);

-- No foreign keys: an intent may concern objects kubevisa no longer knows (a stray binding to remove).
CREATE TABLE intents (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  cluster TEXT NOT NULL,
  visa_id TEXT,
  person_id TEXT,
  payload_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  completed_at INTEGER
) STRICT;
CREATE INDEX intents_pending ON intents (created_at, id) WHERE completed_at IS NULL;

CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  person_id TEXT NOT NULL REFERENCES persons (id),
  secret_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  last_used_at INTEGER,
  idp_refresh_token_ciphertext TEXT,
  idp_token_expires_at INTEGER,
  revoked_at INTEGER,
  revoke_reason TEXT
) STRICT;
CREATE INDEX sessions_person ON sessions (person_id, created_at);

CREATE TABLE pending_logins (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  lookup_key TEXT UNIQUE,
  payload_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_logins_expires ON pending_logins (expires_at);

-- seq is assigned by the store (head + 1), never by AUTOINCREMENT: a rolled-back append must leave no gap.
-- No foreign keys: the trail must accept every event and outlive what it describes.
CREATE TABLE audit_events (
  seq INTEGER PRIMARY KEY CHECK (seq >= 1),
  at INTEGER NOT NULL,
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
) STRICT;
CREATE INDEX audit_events_visa ON audit_events (visa_id, seq) WHERE visa_id IS NOT NULL;
CREATE INDEX audit_events_person ON audit_events (person_id, seq) WHERE person_id IS NOT NULL;
CREATE INDEX audit_events_engagement ON audit_events (engagement_id, seq) WHERE engagement_id IS NOT NULL;
CREATE INDEX audit_events_action ON audit_events (action, seq);

CREATE TABLE clusters (
  name TEXT PRIMARY KEY,
  server TEXT NOT NULL,
  ca_data TEXT,
  credential_ref TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE profiles (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL,
  rules_json TEXT NOT NULL,
  declared_risks_json TEXT NOT NULL,
  max_visa_seconds INTEGER NOT NULL,
  record_sessions INTEGER NOT NULL CHECK (record_sessions IN (0, 1))
) STRICT;

CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
`,
  },
  {
    version: 2,
    name: 'audit trail append-only',
    // The hash chain makes tampering evident; these triggers make the accidental kind (a stray UPDATE in a
    // maintenance session, a bug) impossible, and refuse an insert that does not extend the chain's head.
    sql: `
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused');
END;

CREATE TRIGGER audit_events_extend_head BEFORE INSERT ON audit_events
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events)
  OR NEW.prev_hash IS NOT COALESCE(
    (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1),
    '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: insert does not extend the head of the chain');
END;
`,
  },
  {
    version: 3,
    name: 'identity lifecycle: scim users, groups, tokens; offboarding receipts',
    // Keys ending in _key are the lower-cased userName / displayName: SCIM compares them case-insensitively
    // (RFC 7643 caseExact false), and two users differing only in case would be one person to an IdP.
    sql: `
CREATE TABLE scim_users (
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
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX scim_users_external_id ON scim_users (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX scim_users_email ON scim_users (email) WHERE email IS NOT NULL;
CREATE INDEX scim_users_created ON scim_users (created_at, id);

CREATE TABLE scim_groups (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  display_name_key TEXT NOT NULL UNIQUE,
  external_id TEXT,
  members_json TEXT NOT NULL,
  resource_json TEXT NOT NULL,
  provisioned_by TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX scim_groups_created ON scim_groups (created_at, id);

-- members_json is what a group reads back as; this table only indexes it for "groups of user X".
CREATE TABLE scim_group_members (
  group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX scim_group_members_user ON scim_group_members (user_id);

CREATE TABLE scim_tokens (
  id TEXT PRIMARY KEY,
  idp TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  expires_at INTEGER,
  last_used_at INTEGER,
  revoked_at INTEGER,
  revoked_by TEXT
) STRICT;

-- No foreign key to persons: a receipt must outlive anything it describes.
CREATE TABLE offboardings (
  id TEXT PRIMARY KEY,
  person_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('proving', 'proven', 'unproven')),
  trigger TEXT NOT NULL,
  receipt_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX offboardings_person ON offboardings (person_id, created_at);
CREATE INDEX offboardings_open ON offboardings (status) WHERE status <> 'proven';
`,
  },
  {
    version: 4,
    name: 'audit checkpoints',
    // Signed checkpoints of the audit chain's head. The signature lives beside the row; these triggers keep the
    // table append-only and refuse a checkpoint that does not name an event of the trail exactly as it stands, or
    // that covers less of the trail than an earlier checkpoint (which only a rollback could make true).
    sql: `
CREATE TABLE audit_checkpoints (
  id INTEGER PRIMARY KEY CHECK (id >= 1),
  created_at INTEGER NOT NULL,
  seq INTEGER NOT NULL CHECK (seq >= 0),
  hash TEXT NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL
) STRICT;
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused');
END;

CREATE TRIGGER audit_checkpoints_follow_trail BEFORE INSERT ON audit_checkpoints
WHEN NEW.id IS NOT (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_checkpoints)
  OR NEW.seq < (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints)
  OR NEW.hash IS NOT (CASE WHEN NEW.seq = 0
    THEN '0000000000000000000000000000000000000000000000000000000000000000'
    ELSE (SELECT hash FROM audit_events WHERE seq = NEW.seq) END)
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: checkpoint does not match the trail or goes back');
END;
`,
  },
  {
    version: 5,
    name: 'profiles: direct mode',
    // NULL is a profile that says nothing about direct mode, which means denied; kept apart from an explicit
    // 'denied' so a profile reads back exactly as it was written.
    sql: `
ALTER TABLE profiles ADD COLUMN direct_mode TEXT CHECK (direct_mode IS NULL OR direct_mode IN ('allowed', 'denied'));
`,
  },
  {
    version: 6,
    name: 'identity: which SCIM identity providers act on whom',
    // Keyed by email, like SCIM users: an identity provider provisions people before their first login. Users
    // provisioned before this migration keep their identity provider's link.
    sql: `
CREATE TABLE scim_links (
  email TEXT NOT NULL,
  idp TEXT NOT NULL,
  how TEXT NOT NULL CHECK (how IN ('provisioned', 'claimed', 'linked', 'migrated')),
  linked_by TEXT NOT NULL,
  reason TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (email, idp)
) STRICT;
CREATE INDEX scim_links_idp ON scim_links (idp);
INSERT INTO scim_links (email, idp, how, linked_by, created_at)
  SELECT email, provisioned_by, 'migrated', 'scim:' || provisioned_by, MIN(created_at)
  FROM scim_users WHERE email IS NOT NULL GROUP BY email, provisioned_by;
`,
  },
  {
    version: 7,
    name: 'clusters registered at run time',
    // Kept apart from `clusters` (every managed cluster's connection facts): only these carry a credential, sealed.
    sql: `
CREATE TABLE registered_clusters (
  name TEXT PRIMARY KEY,
  sealed_kubeconfig TEXT NOT NULL,
  direct_mode INTEGER NOT NULL CHECK (direct_mode IN (0, 1)),
  registered_by TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  credential_expires_at INTEGER,
  updated_at INTEGER NOT NULL
) STRICT;
`,
  },
  {
    version: 8,
    name: 'visas: the next start',
    // The reconciler's deadline timer asks for the next notBefore and notAfter of a live visa; (state, not_after)
    // already answers the second.
    sql: `
CREATE INDEX visas_state_not_before ON visas (state, not_before);
`,
  },
];

/**
 * The triggers that keep the audit trail append-only, as statements that recreate any that are missing. An open
 * runs them (see sqlite.ts): someone with the database file can drop a trigger, and the store must not go on
 * writing without its guards. `migration` is the version that created it; each must match what that migration
 * created (sqlite.test.ts checks the text).
 */
export const AUDIT_GUARD_TRIGGERS: readonly { name: string; migration: number; sql: string }[] = [
  {
    name: 'audit_events_no_update',
    migration: 2,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused');
END`,
  },
  {
    name: 'audit_events_no_delete',
    migration: 2,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused');
END`,
  },
  {
    name: 'audit_events_extend_head',
    migration: 2,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_events_extend_head BEFORE INSERT ON audit_events
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events)
  OR NEW.prev_hash IS NOT COALESCE(
    (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1),
    '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
  SELECT RAISE(ABORT, 'audit events are append-only: insert does not extend the head of the chain');
END`,
  },
  {
    name: 'audit_checkpoints_no_update',
    migration: 4,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused');
END`,
  },
  {
    name: 'audit_checkpoints_no_delete',
    migration: 4,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused');
END`,
  },
  {
    name: 'audit_checkpoints_follow_trail',
    migration: 4,
    sql: `CREATE TRIGGER IF NOT EXISTS audit_checkpoints_follow_trail BEFORE INSERT ON audit_checkpoints
WHEN NEW.id IS NOT (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_checkpoints)
  OR NEW.seq < (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints)
  OR NEW.hash IS NOT (CASE WHEN NEW.seq = 0
    THEN '0000000000000000000000000000000000000000000000000000000000000000'
    ELSE (SELECT hash FROM audit_events WHERE seq = NEW.seq) END)
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: checkpoint does not match the trail or goes back');
END`,
  },
];
