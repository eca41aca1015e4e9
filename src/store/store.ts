/**
 * The persistence seam: one interface, two engines (SQLite embedded by default, PostgreSQL for HA). Everything
 * is asynchronous so a networked engine fits behind the same calls. Every write happens inside
 * `store.transaction(async (tx) => …)`: the unit of work commits only when the callback resolves and rolls back
 * when it throws, so a state change and the audit event that records it are durable together or not at all.
 *
 * Times are instants in epoch milliseconds (UTC), as in the domain model; durations name their unit.
 * Reads return `undefined` for a missing row; writes that need an existing row throw `NotFound`, and writes that
 * would clash with existing data throw `Conflict` (both from src/domain/errors.ts).
 *
 * What an engine provides (and nothing outside src/store/ knows which engine it has):
 *  - `Store`: the reads of every aggregate (`PeopleReads`, `EngagementReads`, `VisaReads`, `IntentReads`,
 *    `AuditReads`, `CatalogReads`, `IdentityReads`), `transaction()` giving a `StoreTx` with their writes,
 *    and `close()`. Durable before a commit resolves; StoreUnavailable (503) when it cannot be.
 *  - The audit chain (audit-chain.ts): `appendAudit` links each event to the head under a lock the engine
 *    holds until commit (taken at the append, or at the commit), so concurrent transactions and processes build
 *    one chain without gaps.
 *  - `openAuditAppender()`: its fastest durable way to append batches (group commit), for the gateway.
 *  - `checkIntegrity()`: its checks of the trail's append-only protections (SQLite triggers, PostgreSQL
 *    triggers and grants), each finding returned once for the audit capability to record.
 *  - Registration in open.ts (`openStore(config, context)`): its config shape, parsed strictly in config.ts,
 *    and its opener. Engine-specific locking (SQLite's data-folder lock) happens inside its opener.
 *  - Passing the conformance suites (conformance.ts: `storeConformanceSuite(name, openFresh)`), which use
 *    only this interface.
 */
import type {
  Engagement,
  EngagementStatus,
  Instant,
  Person,
  PersonRole,
  PersonStatus,
  Profile,
  Visa,
  VisaState,
} from '../domain/model.ts';
import type {
  NewScimGroup,
  NewScimUser,
  OffboardingFilter,
  OffboardingRecord,
  OffboardingStatus,
  ScimGroupRecord,
  ScimLinkRecord,
  ScimTokenPatch,
  ScimTokenRecord,
  ScimUserRecord,
} from './identity-records.ts';

export type {
  NewScimGroup,
  NewScimUser,
  OffboardingFilter,
  OffboardingRecord,
  OffboardingStatus,
  ScimGroupRecord,
  ScimLinkRecord,
  ScimTokenPatch,
  ScimTokenRecord,
  ScimUserRecord,
} from './identity-records.ts';

/** A value that survives a JSON round trip unchanged (what JSON payload columns hold). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object: payloads, audit details. */
export type JsonObject = { [key: string]: JsonValue };

/** Identity facts from one OIDC login, used to create or refresh a person. */
export interface PersonLogin {
  issuer: string;
  subject: string;
  /** Lower-cased by the store before it is written or compared. */
  email: string;
  displayName: string;
  groups: string[];
  now: Instant;
}

export interface EngagementFilter {
  status?: EngagementStatus;
  /** Only engagements covering this contractor email (compared lower-cased). */
  contractor?: string;
}

/**
 * A visa as stored, with its optimistic-concurrency version: 1 at insert, +1 at every update. Pass the version
 * you read to `updateVisa` so a decision taken on a stale view is refused instead of silently overwriting.
 */
export interface StoredVisa extends Visa {
  version: number;
}

/** Every given criterion must match (AND). `state` and `states` together mean the state must be in both. */
export interface VisaFilter {
  state?: VisaState;
  states?: readonly VisaState[];
  personId?: string;
  engagementId?: string;
  cluster?: string;
  /** Only these visas (a receiver of a change re-reading what another process ended). Empty: none. */
  ids?: readonly string[];
}

/**
 * A durable record written before a cluster change, completed after it. Whatever is still pending at start-up
 * was interrupted and is repaired by the reconciler. `kind` belongs to the reconciler's vocabulary
 * (e.g. `rolebinding.create`, `rolebinding.delete`, `serviceaccount.delete`); the store does not interpret it.
 */
export interface Intent {
  /** `i_` + random unless the caller chose one. */
  id: string;
  kind: string;
  cluster: string;
  visaId?: string;
  personId?: string;
  payload: JsonObject;
  createdAt: Instant;
  completedAt?: Instant;
}
export type NewIntent = Omit<Intent, 'id' | 'completedAt'> & { id?: string };

export interface IntentFilter {
  cluster?: string;
}

/** A person's login to kubevisa. The session secret itself is never stored, only its hash. */
export interface Session {
  /** `s_` + random unless the caller chose one. */
  id: string;
  personId: string;
  /** Hash of the session secret (hex or base64url, the auth layer's choice); unique. */
  secretHash: string;
  createdAt: Instant;
  expiresAt: Instant;
  lastUsedAt?: Instant;
  /** The IdP refresh token, encrypted by the auth layer; dropped when the session is revoked. */
  idpRefreshTokenCiphertext?: string;
  idpTokenExpiresAt?: Instant;
  revokedAt?: Instant;
  revokeReason?: string;
}
export type NewSession = Omit<Session, 'id' | 'lastUsedAt' | 'revokedAt' | 'revokeReason'> & { id?: string };

/**
 * Fields of a session that may change; `undefined` leaves a field as it is, `null` clears it. The IdP refresh token is
 * not among them: it changes only by `swapSessionGrant`, so nothing can write back a token another caller has used.
 */
export interface SessionPatch {
  expiresAt?: Instant;
  lastUsedAt?: Instant;
  idpTokenExpiresAt?: Instant | null;
}

/** A session's hold on its IdP grant, as read: the sealed refresh token and when the IdP's token is due. */
export interface SessionGrant {
  idpRefreshTokenCiphertext: string;
  idpTokenExpiresAt: Instant;
}

/** Short-lived state of a device-code or browser login that has not finished yet. */
export interface PendingLogin {
  /** Chosen by the auth layer (often the hash of a device code). */
  id: string;
  /** e.g. `device`, `browser`. */
  kind: string;
  /** A second unique handle to find the login by: the device flow's user code, the browser flow's `state`. */
  lookupKey?: string;
  payload: JsonObject;
  createdAt: Instant;
  expiresAt: Instant;
}

/** Fields of a pending login that may change; `undefined` leaves a field as it is. */
export interface PendingLoginPatch {
  payload?: JsonObject;
  expiresAt?: Instant;
}

export type AuditOutcome = 'ok' | 'refused' | 'error';

/** Where a request came from. */
export interface AuditSource {
  /** Socket address of the client (`ip` or `ip:port`). */
  address: string;
  userAgent?: string;
}

/**
 * One hash-chained audit record. `hash` is the SHA-256 (hex) of the canonical JSON of every other field,
 * `prevHash` included (see audit-chain.ts); the first event's `prevHash` is 64 zeros.
 */
export interface AuditEvent {
  /** 1, 2, 3, … without gaps, assigned by the store in commit order. */
  seq: number;
  at: Instant;
  /** Email of the acting person, or `system`. */
  actor: string;
  sessionId?: string;
  /** Dotted verb phrase: `visa.requested`, `visa.approved`, `cluster.rolebinding.created`, … */
  action: string;
  visaId?: string;
  engagementId?: string;
  personId?: string;
  cluster?: string;
  namespace?: string;
  outcome: AuditOutcome;
  reason?: string;
  details: JsonObject;
  source?: AuditSource;
  prevHash: string;
  hash: string;
}
/**
 * An event as the chain verifies it and an export writes it: its place in the chain and the exact canonical
 * text its content hash covers (see audit-chain.ts).
 */
export interface AuditRecord {
  seq: number;
  prevHash: string;
  hash: string;
  contentText: string;
  /** What the record is about, for deciding what an evidence pack shows (the content text holds them too). */
  engagementId?: string;
  visaId?: string;
  personId?: string;
}
/** What a caller appends; the store assigns `seq`, `prevHash` and `hash`. `details` defaults to `{}`. */
export type NewAuditEvent = Omit<AuditEvent, 'seq' | 'prevHash' | 'hash' | 'details'> & { details?: JsonObject };

export interface AuditFilter {
  /** Only events with a larger seq (paging cursor); default 0. */
  afterSeq?: number;
  /** Only events with a smaller seq (paging cursor for `newestFirst`). */
  beforeSeq?: number;
  /** Only events up to and including this seq (the end of an export window). */
  throughSeq?: number;
  /** Most events returned; default 1000, at most 10000. */
  limit?: number;
  /** Newest first (seq descending) instead of oldest first: the last events of a trail. Default false. */
  newestFirst?: boolean;
  visaId?: string;
  personId?: string;
  engagementId?: string;
  action?: string;
  /** Acting person's email (or `system`), compared exactly. */
  actor?: string;
  /** Events by or about a person: `personId` is theirs or `actor` is their email. */
  involving?: { personId?: string; email?: string };
  cluster?: string;
  namespace?: string;
  /** Only events with `at` ≥ this instant. */
  since?: Instant;
  /** Only events with `at` < this instant. */
  until?: Instant;
}

/**
 * A signed statement that the audit trail, at the time it was made, ended at `seq` with `hash` (seq 0 and the
 * genesis hash for an empty trail). Append-only: a later checkpoint never covers less of the trail. Signing and
 * checking the signature belong to src/audit/checkpoints.ts; the store only keeps them.
 */
export interface AuditCheckpoint {
  /** 1, 2, 3, … in the order they were written. */
  id: number;
  /** When it was signed. */
  at: Instant;
  seq: number;
  hash: string;
  /** Which key signed it (see src/audit/checkpoints.ts). */
  keyId: string;
  /** Ed25519 signature, base64url. */
  signature: string;
}
/** What a caller appends; the store assigns `id`. */
export type NewAuditCheckpoint = Omit<AuditCheckpoint, 'id'>;

export interface AuditCheckpointFilter {
  /** Most checkpoints returned; default 1000, at most 10000. */
  limit?: number;
  /** Newest first instead of oldest first; default false. */
  newestFirst?: boolean;
  /** Only checkpoints covering at most this seq. */
  throughSeq?: number;
}

/** A cluster kubevisa manages. Its credential lives in a file named by `credentialRef`, never in the store. */
export interface ClusterRecord {
  name: string;
  /** kube-apiserver URL. */
  server: string;
  /** PEM (or base64 PEM, as in a kubeconfig) of the CA that signs the server certificate. */
  caData?: string;
  /** Where kubevisa's own credential for this cluster is kept (a file path). */
  credentialRef?: string;
  createdAt: Instant;
  updatedAt: Instant;
}
/** Input of `upsertCluster`: `now` becomes `createdAt` on insert and `updatedAt` always. */
export type ClusterInput = Omit<ClusterRecord, 'createdAt' | 'updatedAt'> & { now: Instant };

/**
 * A cluster an admin registered at run time (`kubevisa cluster add`), beside those of the start-up configuration.
 * Its kubeconfig holds kubevisa's credential: the store keeps it only sealed (auth/secret-box.ts), so a copy of the
 * database alone reveals no credential; no API returns it.
 */
export interface RegisteredClusterRecord {
  name: string;
  /** kubevisa's kubeconfig for the cluster (YAML), sealed by the server's secret box. */
  sealedKubeconfig: string;
  /** Whether people may take direct-mode tokens for this cluster (see `clusters[].directMode`). */
  directMode: boolean;
  /** Email of the admin who registered it. */
  registeredBy: string;
  registeredAt: Instant;
  /** When the credential in the kubeconfig expires (its JWT `exp`); absent when it does not say. */
  credentialExpiresAt?: Instant;
  /** Last change: registration or a renewal of the credential. */
  updatedAt: Instant;
}

// The interface is split by aggregate: each has its reads (on the store and inside a transaction) and its writes
// (inside a transaction only). A use case or capability can ask for just the part it touches
// (`VisaReads & VisaWrites`), and an engine implements them all. The conformance suite is split the same way.

/** People (from OIDC logins), their kubevisa sessions, and logins still in progress. */
export interface PeopleReads {
  getPerson(id: string): Promise<Person | undefined>;
  /** Compared lower-cased. */
  getPersonByEmail(email: string): Promise<Person | undefined>;
  getPersonBySubject(issuer: string, subject: string): Promise<Person | undefined>;
  /** Ordered by email. */
  listPersons(): Promise<Person[]>;

  getSession(id: string): Promise<Session | undefined>;
  /**
   * The session whose secret hashes to `secretHash`, revoked or expired ones included (the caller decides).
   * Looking up by a hash of a high-entropy secret is safe against timing: no secret is compared here.
   */
  getSessionBySecretHash(secretHash: string): Promise<Session | undefined>;
  /** Ordered by createdAt, then id. */
  listSessionsOfPerson(personId: string): Promise<Session[]>;

  /** Expired logins included (the caller decides). */
  getLogin(id: string): Promise<PendingLogin | undefined>;
  getLoginByLookupKey(lookupKey: string): Promise<PendingLogin | undefined>;
}

export interface PeopleWrites {
  /**
   * Creates the person for (issuer, subject) with a new `p_` id, status active and no roles, or refreshes the
   * email, display name and groups of the existing one. Never changes status or roles.
   * Throws Conflict when the email already belongs to another identity (the email is what grants access).
   */
  upsertPersonFromLogin(login: PersonLogin): Promise<Person>;
  /** Throws NotFound for an unknown id. */
  setPersonStatus(id: string, status: PersonStatus, now: Instant): Promise<Person>;
  /** Throws NotFound for an unknown id. */
  setPersonRoles(id: string, roles: PersonRole[], now: Instant): Promise<Person>;

  /** Throws NotFound when the person does not exist, Conflict when the id or secret hash exists. */
  insertSession(session: NewSession): Promise<Session>;
  /** Throws NotFound for an unknown id. */
  updateSession(id: string, patch: SessionPatch): Promise<Session>;
  /**
   * Compare-and-set of the session's IdP grant: writes `next` only when the session is not revoked and still holds
   * exactly `expected`, and returns whether it wrote (false for an unknown id). Of the callers that read one grant,
   * only one can change it: so one server of many takes a renewal at the IdP, and a caller that stalled cannot write
   * back a refresh token that another has already used.
   */
  swapSessionGrant(
    id: string,
    expected: SessionGrant,
    next: { idpRefreshTokenCiphertext: string; idpTokenExpiresAt: Instant | null },
  ): Promise<boolean>;
  /**
   * Marks the session revoked and drops its IdP refresh token. Idempotent: a revoked session keeps its first
   * revocation time and reason. Throws NotFound for an unknown id.
   */
  revokeSession(id: string, now: Instant, reason: string): Promise<Session>;
  /** Revokes every session of the person not revoked yet; returns how many were revoked now. */
  revokeSessionsOfPerson(personId: string, now: Instant, reason: string): Promise<number>;

  /** Throws Conflict when the id or lookup key exists. */
  insertLogin(login: PendingLogin): Promise<PendingLogin>;
  /** Throws NotFound for an unknown id. */
  updateLogin(id: string, patch: PendingLoginPatch): Promise<PendingLogin>;
  /** Returns whether a login was deleted. */
  deleteLogin(id: string): Promise<boolean>;
  /** Deletes logins with expiresAt ≤ now; returns how many. */
  deleteExpiredLogins(now: Instant): Promise<number>;
}

/** Engagements: the contracts visas are granted under. */
export interface EngagementReads {
  getEngagement(id: string): Promise<Engagement | undefined>;
  /** Ordered by start, then id. */
  listEngagements(filter?: EngagementFilter): Promise<Engagement[]>;
}

export interface EngagementWrites {
  /** Throws Conflict when the id exists. */
  insertEngagement(engagement: Engagement): Promise<Engagement>;
  /** Replaces every field but the id. Throws NotFound for an unknown id. */
  updateEngagement(engagement: Engagement): Promise<Engagement>;
}

/** Visas, with the queries the reconciler and the gateway's index read them by. */
export interface VisaReads {
  getVisa(id: string): Promise<StoredVisa | undefined>;
  /** Ordered by requestedAt, then id. */
  listVisas(filter?: VisaFilter): Promise<StoredVisa[]>;
  /**
   * Visas that should have bindings in the cluster at `now`: state approved or active and
   * notBefore ≤ now < notAfter (the window is half-open). Ordered by notAfter, then id.
   */
  listVisasGrantingAt(now: Instant): Promise<StoredVisa[]>;
  /** Visas in any of `states`, ordered by notAfter, then id. */
  listVisasInStates(states: readonly VisaState[]): Promise<StoredVisa[]>;
  /**
   * Visas in `filter.states` (default approved and active) whose notAfter ≤ `t`: those that have ended by `t`
   * (a visa with notAfter = t is over at t), in `filter.cluster` only when given. Ordered by notAfter, then id: the
   * reconciler's deadline queue. Its cost follows the number of visas returned, not the number of live ones.
   */
  listVisasEndingBefore(
    t: Instant,
    filter?: { states?: readonly VisaState[]; cluster?: string },
  ): Promise<StoredVisa[]>;
  /**
   * The earliest deadline after `t` of a visa in state approved or active: a notBefore or a notAfter later than
   * `t`; undefined when there is none. The reconciler arms its deadline timer with it without reading every visa.
   */
  nextVisaDeadlineAfter(t: Instant): Promise<Instant | undefined>;
}

export interface VisaWrites {
  /** Stores version 1. Throws Conflict when the id exists, NotFound when the engagement or person does not. */
  insertVisa(visa: Visa): Promise<StoredVisa>;
  /**
   * Replaces every field but the id and increments the version. With `expectedVersion`, throws Conflict unless
   * the stored version is exactly that (someone else changed the visa since it was read). Throws NotFound for
   * an unknown id.
   */
  updateVisa(visa: Visa, expectedVersion?: number): Promise<StoredVisa>;
  /**
   * `updateVisa` for many visas at once, in the order given, as one statement where the engine can (ending every
   * visa of an engagement must not cost a round trip per visa): the same checks per visa, the same errors for the
   * first one refused, and then nothing of the transaction is kept. Ids must be distinct (Error otherwise).
   * @returns each visa as stored, in the order given.
   */
  updateVisas(updates: readonly VisaUpdate[]): Promise<StoredVisa[]>;
}

/** One visa to replace and, when given, the version it must still have (see `updateVisa`). */
export interface VisaUpdate {
  visa: Visa;
  expectedVersion?: number;
}

/** The reconciler's durable intents (written before a cluster change, completed after it). */
export interface IntentReads {
  getIntent(id: string): Promise<Intent | undefined>;
  /** Intents not completed yet, oldest first (createdAt, then id). */
  listPendingIntents(filter?: IntentFilter): Promise<Intent[]>;
}

export interface IntentWrites {
  /** Throws Conflict when the id exists. */
  insertIntent(intent: NewIntent): Promise<Intent>;
  /** Idempotent: a completed intent keeps its first completion time. Throws NotFound for an unknown id. */
  completeIntent(id: string, now: Instant): Promise<Intent>;
  /**
   * `insertIntent` for each, in order, in one statement where the engine can (a reconciler phase's thousand intents
   * are otherwise a thousand round trips). Throws Conflict when an id exists or appears twice.
   */
  insertIntents(intents: readonly NewIntent[]): Promise<Intent[]>;
  /** `completeIntent` for each id, in one statement where the engine can. Throws NotFound when an id is unknown. */
  completeIntents(ids: readonly string[], now: Instant): Promise<void>;
}

/** The hash-chained audit trail and its signed checkpoints. */
export interface AuditReads {
  /** Ordered by seq. */
  listAudit(filter?: AuditFilter): Promise<AuditEvent[]>;
  /** The newest event's seq and hash, or undefined when the trail is empty (what a checkpoint signs). */
  getAuditHead(): Promise<{ seq: number; hash: string } | undefined>;
  getAuditEvent(seq: number): Promise<AuditEvent | undefined>;
  /** As listAudit (same filters, order and paging), each event as its chain record: verification and export. */
  listAuditRecords(filter?: AuditFilter): Promise<AuditRecord[]>;
  /** Ordered by id (oldest first unless `newestFirst`). */
  listAuditCheckpoints(filter?: AuditCheckpointFilter): Promise<AuditCheckpoint[]>;
}

export interface AuditWrites {
  /**
   * Appends to the hash chain, inside this transaction: if the transaction rolls back, the event was never
   * written and its seq is reused by the next one. Appends are serialised so the chain stays linear under
   * concurrent transactions (and, on an engine several processes share, under concurrent processes). The
   * event's place in the chain (seq, hash) is not returned: an engine may assign it only when the transaction
   * commits (PostgreSQL does, so the chain's lock is held for the commit only).
   */
  appendAudit(event: NewAuditEvent): Promise<void>;
  /**
   * Records a signed checkpoint. Throws Conflict when it does not name the trail's event at its seq exactly, or
   * covers less of the trail than the newest checkpoint already stored.
   */
  appendAuditCheckpoint(checkpoint: NewAuditCheckpoint): Promise<AuditCheckpoint>;
}

/** What the server is configured with: managed clusters, RBAC profiles, small settings. */
export interface CatalogReads {
  getCluster(name: string): Promise<ClusterRecord | undefined>;
  /** Ordered by name. */
  listClusters(): Promise<ClusterRecord[]>;
  getRegisteredCluster(name: string): Promise<RegisteredClusterRecord | undefined>;
  /** Ordered by name. */
  listRegisteredClusters(): Promise<RegisteredClusterRecord[]>;

  getProfile(name: string): Promise<Profile | undefined>;
  /** Ordered by name. */
  listProfiles(): Promise<Profile[]>;

  getSetting(key: string): Promise<JsonValue | undefined>;
}

export interface CatalogWrites {
  /** Creates or replaces the cluster's connection facts; `createdAt` survives replacement. */
  upsertCluster(cluster: ClusterInput): Promise<ClusterRecord>;
  /** Returns whether a cluster was deleted. */
  deleteCluster(name: string): Promise<boolean>;
  /** Registers a cluster. Throws Conflict when one of that name is registered already. */
  insertRegisteredCluster(cluster: RegisteredClusterRecord): Promise<RegisteredClusterRecord>;
  /** Replaces a registered cluster's sealed kubeconfig after a renewal. Throws NotFound when it is not registered. */
  updateRegisteredClusterCredential(
    name: string,
    credential: { sealedKubeconfig: string; credentialExpiresAt?: Instant; now: Instant },
  ): Promise<RegisteredClusterRecord>;
  /** Returns whether a registered cluster was deleted. */
  deleteRegisteredCluster(name: string): Promise<boolean>;
  /**
   * Whether the cluster is registered, keeping it registered until this transaction ends: a transaction deleting it
   * waits for this one (and then sees what this one wrote), or this one waits for it and is told it is gone.
   */
  holdRegisteredCluster(name: string): Promise<boolean>;

  /** Creates or replaces the profile. */
  upsertProfile(profile: Profile): Promise<Profile>;
  /** Returns whether a profile was deleted. */
  deleteProfile(name: string): Promise<boolean>;

  /** Small server state (e.g. a fencing token, the last checkpoint). */
  putSetting(key: string, value: JsonValue, now: Instant): Promise<void>;
}

/** Identity lifecycle (issue 7): SCIM users and groups, SCIM tokens and links, offboarding receipts. */
export interface IdentityReads {
  getScimUser(id: string): Promise<ScimUserRecord | undefined>;
  /** Compared case-insensitively. */
  getScimUserByUserName(userName: string): Promise<ScimUserRecord | undefined>;
  /** Users whose linking email is `email` (compared lower-cased), ordered by createdAt, then id. */
  listScimUsersByEmail(email: string): Promise<ScimUserRecord[]>;
  /** Ordered by createdAt, then id (a stable order for SCIM paging). */
  listScimUsers(): Promise<ScimUserRecord[]>;
  getScimGroup(id: string): Promise<ScimGroupRecord | undefined>;
  /** Compared case-insensitively. */
  getScimGroupByDisplayName(displayName: string): Promise<ScimGroupRecord | undefined>;
  /** Ordered by createdAt, then id. */
  listScimGroups(): Promise<ScimGroupRecord[]>;
  /** The groups `userId` is a member of, ordered by createdAt, then id. */
  listScimGroupsOfUser(userId: string): Promise<ScimGroupRecord[]>;
  getScimToken(id: string): Promise<ScimTokenRecord | undefined>;
  /** Every token, revoked and expired ones included (the caller decides), ordered by createdAt, then id. */
  listScimTokens(): Promise<ScimTokenRecord[]>;
  /** Links of one email (compared lower-cased) and/or one identity provider; ordered by createdAt, then insertion. */
  listScimLinks(filter?: { email?: string; idp?: string }): Promise<ScimLinkRecord[]>;
  getOffboarding(id: string): Promise<OffboardingRecord | undefined>;
  /** Ordered by createdAt, then id. */
  listOffboardings(filter?: OffboardingFilter): Promise<OffboardingRecord[]>;
}

export interface IdentityWrites {
  /** Stores version 1. Throws Conflict when the id exists or the userName is taken (case-insensitively). */
  insertScimUser(user: NewScimUser): Promise<ScimUserRecord>;
  /**
   * Replaces every field but id and createdAt and increments the version. With `expectedVersion`, throws
   * Conflict unless the stored version is exactly that. Throws Conflict when the new userName is taken by
   * another user, NotFound for an unknown id.
   */
  updateScimUser(user: NewScimUser, expectedVersion?: number): Promise<ScimUserRecord>;
  /** Deletes the user and their group memberships (each group's version increments). Returns whether it existed. */
  deleteScimUser(id: string, now: Instant): Promise<boolean>;
  /**
   * Stores version 1. Throws Conflict when the id exists or the displayName is taken (case-insensitively),
   * NotFound when a member is not a SCIM user. Duplicate members are stored once.
   */
  insertScimGroup(group: NewScimGroup): Promise<ScimGroupRecord>;
  /** Replaces every field but id and createdAt (members included) and increments the version; as updateScimUser. */
  updateScimGroup(group: NewScimGroup, expectedVersion?: number): Promise<ScimGroupRecord>;
  /** Returns whether a group was deleted. */
  deleteScimGroup(id: string): Promise<boolean>;
  /** Throws Conflict when the id or the secret hash exists. */
  insertScimToken(token: ScimTokenRecord): Promise<ScimTokenRecord>;
  /** A revoked token keeps its first revocation. Throws NotFound for an unknown id. */
  updateScimToken(id: string, patch: ScimTokenPatch): Promise<ScimTokenRecord>;
  /** Lower-cases the email. Throws Conflict when the email is already linked to that identity provider. */
  insertScimLink(link: ScimLinkRecord): Promise<ScimLinkRecord>;
  /** Returns whether a link was deleted. */
  deleteScimLink(email: string, idp: string): Promise<boolean>;
  /** Throws Conflict when the id exists. */
  insertOffboarding(record: OffboardingRecord): Promise<OffboardingRecord>;
  /** Replaces status, receipt and updatedAt. Throws NotFound for an unknown id. */
  updateOffboarding(
    id: string,
    change: { status: OffboardingStatus; receipt: JsonObject; updatedAt: Instant },
  ): Promise<OffboardingRecord>;
}

/** Every read, available both inside a transaction and directly on the store. */
export interface StoreReader
  extends PeopleReads, EngagementReads, VisaReads, IntentReads, AuditReads, CatalogReads, IdentityReads {}

/** The unit of work: every read and every write. Unusable once its transaction has ended. */
export interface StoreTx
  extends
    StoreReader,
    PeopleWrites,
    EngagementWrites,
    VisaWrites,
    IntentWrites,
    AuditWrites,
    CatalogWrites,
    IdentityWrites {}

/**
 * Appends audit events off the caller's hot path: the gateway hands it batches of request events. Each `write`
 * appends its events, in order, to the one chain in one transaction and resolves once they are durable; when it
 * rejects, none of them was kept (the caller keeps them and tries again). The engine picks the fastest durable
 * route it has (SQLite: a worker thread with its own connection, so the event loop never runs SQLite or waits
 * for an fsync); it must keep the chain one chain with every other writer (`tx.appendAudit`, other processes).
 */
export interface AuditAppender {
  write(events: readonly NewAuditEvent[]): Promise<void>;
  /** Lets pending writes finish, then releases what the appender holds (a thread, connections); later writes reject. */
  close(): Promise<void>;
}

/**
 * Something an engine's integrity check found wrong (and repaired), for the audit capability to put in the
 * trail as an event with outcome `error`: e.g. SQLite's append-only triggers dropped by someone with the file
 * (`audit.guards-restored`).
 */
export interface IntegrityFinding {
  /** The audit action to record it as. */
  action: string;
  /** One sentence for the operator. */
  reason: string;
  details: JsonObject;
}

/**
 * What one server process tells the others after it committed a change that ends or changes access. Only ids and
 * short reasons travel (never a secret, never a whole record): each receiver re-reads what it needs from the store.
 */
export type AccessChange =
  /** These visas stopped granting; `reason` as the process that ended them said it (e.g. `revoked by …`). */
  | { kind: 'visas-ended'; visaIds: string[]; reason: string }
  /** Some visa was created or changed state: indexes re-read the store. */
  | { kind: 'visas-changed' }
  /** These kubevisa sessions ended (logout, the IdP refused a refresh): their access tokens stop working. */
  | { kind: 'sessions-ended'; sessionIds: string[] }
  /** A person was deprovisioned (offboarded). */
  | { kind: 'person-deprovisioned'; personId: string; reason: string }
  /** The reconciler must converge these clusters: only these visas when `visaIds` is given, else anything. */
  | { kind: 'clusters-changed'; clusters: string[]; visaIds?: string[] }
  /** A cluster was registered or removed at run time: read the registered clusters from the store again. */
  | { kind: 'cluster-registry-changed' };

/** Told what other processes on the same store announced. */
export interface ChangeListener {
  /** A change another process committed and published. */
  change(change: AccessChange): void;
  /**
   * Changes may have been missed (the feed's connection broke and came back; whatever was sent meanwhile is lost):
   * everything cached from the store must be read again.
   */
  missed(): void;
}

/**
 * Carries AccessChanges between the server processes that share one store. On an engine only one process can use
 * (SQLite, whose data folder is locked) there is no one else to tell: `publish` delivers to nobody and listeners
 * hear nothing. On PostgreSQL: LISTEN/NOTIFY on a dedicated connection that reconnects by itself and reports each
 * gap through `missed`. Delivery is at most once and never guaranteed: callers keep a periodic re-check.
 */
export interface ChangeFeedOptions {
  /**
   * A key every process sharing the store holds: notifications are signed with it, and those not signed with it are
   * dropped, so whoever else can reach the database cannot send changes. Engines with no other process ignore it.
   */
  key?: Uint8Array;
  /**
   * The clock signed notifications are stamped and judged by, epoch ms (default Date.now): the database's
   * (src/leader/), so that a server whose own clock is off still hears the others and is heard.
   */
  now?: () => number;
}

export interface ChangeFeed {
  /** Sends to every other process; resolves once the engine accepted it. Rejects with StoreUnavailable. */
  publish(change: AccessChange): Promise<void>;
  /** Starts delivering to `listener` (changes this process published itself are not delivered). */
  subscribe(listener: ChangeListener): void;
  /** Stops listening and releases the connection. */
  close(): Promise<void>;
}

/**
 * One term of a named lease as the engine judged it: who holds it, the term's epoch (raised at every takeover,
 * never lowered), and how long it has left by the engine's clock (never the caller's), in milliseconds.
 */
export interface LeaseTerm {
  holder: string;
  epoch: number;
  /** Time left by the engine's clock when it answered, in ms (Infinity for a lease that cannot be lost). */
  remainingMs: number;
  /** The engine's clock when it answered, epoch ms: deadlines are judged by it, not by the caller's clock. */
  databaseNow: number;
}

/**
 * Leader leases (src/leader/ elects with it). `claim` takes the lease when it is free or expired (a new term, epoch
 * + 1) or renews it when the caller holds the term `epoch` and it has not expired; either way it answers the term
 * in force afterwards, so a caller that lost sees who won. Expiry is judged by the engine's clock alone, so a
 * replica whose clock is wrong can neither keep a lease past its end nor take one early.
 */
export interface LeaderLeases {
  /**
   * True when the engine itself guarantees a single process (SQLite's data-folder lock): the lease is always
   * held, with a fixed epoch, and nothing can take it over.
   */
  readonly exclusive: boolean;
  /**
   * @param durationMs how long the term lasts from this claim, by the engine's clock (> 0).
   * @param epoch the term the caller holds (a renewal); absent to take a free or expired lease.
   */
  claim(input: { name: string; holder: string; durationMs: number; epoch?: number }): Promise<LeaseTerm>;
  /** Ends the term `epoch` of `holder` at once (a clean stop), so another replica takes over without waiting. */
  release(input: { name: string; holder: string; epoch: number }): Promise<void>;
  /** The engine's clock, epoch ms, without claiming anything (a server reads it before it decides anything). */
  readClock(): Promise<number>;
  /**
   * Read only: whether a claim by `holder` now would start a new term (the lease is free, expired, or its holder
   * is gone). Followers ask it often and claim only when it says yes. Absent on engines where nothing can take over.
   */
  takeable?(input: { name: string; holder: string }): Promise<boolean>;
  /**
   * Shows the engine that the process `holder` is alive for as long as the returned presence is open, so that its
   * terms can be taken as soon as the process dies rather than when they expire. `onLost` is called once if the
   * engine stops seeing the presence (the connection ended) before `close`. Rejects when it cannot be shown (the
   * caller claims without it and tries again later). Absent on engines where nothing can take over.
   */
  holdPresence?(input: { holder: string; onLost: (why: string) => void }): Promise<Presence>;
}

/** A process's presence shown to the store (LeaderLeases.holdPresence). */
export interface Presence {
  close(): Promise<void>;
}

/** A name for messages and metrics only: no code outside src/store/ may branch on it. */
export type StoreEngine = 'sqlite' | 'postgres';

export interface Store extends StoreReader {
  readonly engine: StoreEngine;
  /**
   * Runs `work` as one transaction: commits when it resolves (durably, before this promise resolves), rolls
   * back and rethrows when it throws. Returns what `work` returned. `tx` must not be used after `work` settles.
   * When a `tx` call throws, let the error end the transaction: on PostgreSQL a failed statement aborts the
   * whole transaction, so carrying on after catching it works on one engine only.
   * Calling the store itself (not `tx`) from inside `work` is refused on SQLite (it would wait for itself).
   * An engine may commit concurrent transactions together (group commit: one fsync for many); each still
   * resolves only once it is durable. When the commit cannot be made durable (disk full, I/O error, read-only
   * file), it rejects with StoreUnavailable (503) and none of the transaction was kept: callers fail closed.
   */
  transaction<T>(work: (tx: StoreTx) => Promise<T>): Promise<T>;
  /**
   * A new appender for batches of audit events (the gateway's request events). The caller closes it before
   * closing the store.
   */
  openAuditAppender(): AuditAppender;
  /**
   * A new feed of changes between the processes sharing this store (see ChangeFeed). The caller closes it before
   * closing the store.
   */
  openChangeFeed(options?: ChangeFeedOptions): ChangeFeed;
  /**
   * Runs the engine's integrity checks of the audit trail's protections (repairing what it can) and returns what
   * was found wrong since the store was opened and not returned before: each finding is returned once. Empty
   * when all is well.
   */
  checkIntegrity(): Promise<IntegrityFinding[]>;
  /** Leader leases: one reconciler at a time among the processes sharing this store. */
  readonly leases: LeaderLeases;
  /** Waits for running transactions, then closes. Every later call rejects. */
  close(): Promise<void>;
}
