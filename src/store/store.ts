/**
 * The persistence seam: one interface, two engines (SQLite embedded by default, PostgreSQL for HA). Everything
 * is asynchronous so a networked engine fits behind the same calls. Every write happens inside
 * `store.transaction(async (tx) => …)`: the unit of work commits only when the callback resolves and rolls back
 * when it throws, so a state change and the audit event that records it are durable together or not at all.
 *
 * Times are instants in epoch milliseconds (UTC), as in the domain model; durations name their unit.
 * Reads return `undefined` for a missing row; writes that need an existing row throw `NotFound`, and writes that
 * would clash with existing data throw `Conflict` (both from src/domain/errors.ts).
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

/** Fields of a session that may change; `undefined` leaves a field as it is, `null` clears it. */
export interface SessionPatch {
  expiresAt?: Instant;
  lastUsedAt?: Instant;
  idpRefreshTokenCiphertext?: string | null;
  idpTokenExpiresAt?: Instant | null;
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
/** What a caller appends; the store assigns `seq`, `prevHash` and `hash`. `details` defaults to `{}`. */
export type NewAuditEvent = Omit<AuditEvent, 'seq' | 'prevHash' | 'hash' | 'details'> & { details?: JsonObject };

export interface AuditFilter {
  /** Only events with a larger seq (paging cursor); default 0. */
  afterSeq?: number;
  /** Most events returned; default 1000, at most 10000. */
  limit?: number;
  visaId?: string;
  personId?: string;
  engagementId?: string;
  action?: string;
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

/** Every read, available both inside a transaction and directly on the store. */
export interface StoreReader {
  getPerson(id: string): Promise<Person | undefined>;
  /** Compared lower-cased. */
  getPersonByEmail(email: string): Promise<Person | undefined>;
  getPersonBySubject(issuer: string, subject: string): Promise<Person | undefined>;
  /** Ordered by email. */
  listPersons(): Promise<Person[]>;

  getEngagement(id: string): Promise<Engagement | undefined>;
  /** Ordered by start, then id. */
  listEngagements(filter?: EngagementFilter): Promise<Engagement[]>;

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
   * Visas in `states` (default approved and active) whose notAfter ≤ `t`: those that have ended by `t`
   * (a visa with notAfter = t is over at t). Ordered by notAfter, then id: the reconciler's deadline queue.
   */
  listVisasEndingBefore(t: Instant, states?: readonly VisaState[]): Promise<StoredVisa[]>;

  getIntent(id: string): Promise<Intent | undefined>;
  /** Intents not completed yet, oldest first (createdAt, then id). */
  listPendingIntents(filter?: IntentFilter): Promise<Intent[]>;

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

  /** Ordered by seq. */
  listAudit(filter?: AuditFilter): Promise<AuditEvent[]>;
  /** The newest event's seq and hash, or undefined when the trail is empty (what a checkpoint signs). */
  getAuditHead(): Promise<{ seq: number; hash: string } | undefined>;

  getCluster(name: string): Promise<ClusterRecord | undefined>;
  /** Ordered by name. */
  listClusters(): Promise<ClusterRecord[]>;

  getProfile(name: string): Promise<Profile | undefined>;
  /** Ordered by name. */
  listProfiles(): Promise<Profile[]>;

  getSetting(key: string): Promise<JsonValue | undefined>;
}

/** The unit of work: every read and every write. Unusable once its transaction has ended. */
export interface StoreTx extends StoreReader {
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

  /** Throws Conflict when the id exists. */
  insertEngagement(engagement: Engagement): Promise<Engagement>;
  /** Replaces every field but the id. Throws NotFound for an unknown id. */
  updateEngagement(engagement: Engagement): Promise<Engagement>;

  /** Stores version 1. Throws Conflict when the id exists, NotFound when the engagement or person does not. */
  insertVisa(visa: Visa): Promise<StoredVisa>;
  /**
   * Replaces every field but the id and increments the version. With `expectedVersion`, throws Conflict unless
   * the stored version is exactly that (someone else changed the visa since it was read). Throws NotFound for
   * an unknown id.
   */
  updateVisa(visa: Visa, expectedVersion?: number): Promise<StoredVisa>;

  /** Throws Conflict when the id exists. */
  insertIntent(intent: NewIntent): Promise<Intent>;
  /** Idempotent: a completed intent keeps its first completion time. Throws NotFound for an unknown id. */
  completeIntent(id: string, now: Instant): Promise<Intent>;

  /** Throws NotFound when the person does not exist, Conflict when the id or secret hash exists. */
  insertSession(session: NewSession): Promise<Session>;
  /** Throws NotFound for an unknown id. */
  updateSession(id: string, patch: SessionPatch): Promise<Session>;
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

  /**
   * Appends to the hash chain, inside this transaction: if the transaction rolls back, the event was never
   * written and its seq is reused by the next one. Appends are serialised so the chain stays linear under
   * concurrent transactions.
   */
  appendAudit(event: NewAuditEvent): Promise<AuditEvent>;

  /** Creates or replaces the cluster's connection facts; `createdAt` survives replacement. */
  upsertCluster(cluster: ClusterInput): Promise<ClusterRecord>;
  /** Returns whether a cluster was deleted. */
  deleteCluster(name: string): Promise<boolean>;

  /** Creates or replaces the profile. */
  upsertProfile(profile: Profile): Promise<Profile>;
  /** Returns whether a profile was deleted. */
  deleteProfile(name: string): Promise<boolean>;

  /** Small server state (e.g. a fencing token, the last checkpoint). */
  putSetting(key: string, value: JsonValue, now: Instant): Promise<void>;
}

export type StoreEngine = 'sqlite' | 'postgres';

export interface Store extends StoreReader {
  readonly engine: StoreEngine;
  /**
   * Runs `work` as one transaction: commits when it resolves (durably, before this promise resolves), rolls
   * back and rethrows when it throws. Returns what `work` returned. `tx` must not be used after `work` settles.
   * When a `tx` call throws, let the error end the transaction: on PostgreSQL a failed statement aborts the
   * whole transaction, so carrying on after catching it works on one engine only.
   * Calling the store itself (not `tx`) from inside `work` is refused on SQLite (it would wait for itself).
   */
  transaction<T>(work: (tx: StoreTx) => Promise<T>): Promise<T>;
  /** Waits for running transactions, then closes. Every later call rejects. */
  close(): Promise<void>;
}
