/**
 * Row → domain mapping for the store's tables, one small typed function per table. Engine-neutral: every engine
 * uses the same snake_case column names, so the PostgreSQL engine maps its rows through these too. Optional
 * fields are left out (never set to `undefined`) so a value reads back deep-equal to what was written.
 */
import type { Approval, Ceiling, DeclaredRisk, Engagement, Person, PolicyRule, Profile } from '../domain/model.ts';
import {
  AUDIT_OUTCOMES,
  ENGAGEMENT_STATUSES,
  PERSON_STATUSES,
  VISA_STATES,
  decodeApprovals,
  decodeCeiling,
  decodeDeclaredRisks,
  decodeJsonObject,
  decodePolicyRules,
  decodeRoles,
  decodeStringArray,
  definedOnly,
  integer,
  json,
  oneOf,
  optionalInteger,
  optionalText,
  text,
  type Row,
} from './rows.ts';
import type {
  AuditEvent,
  ClusterRecord,
  Intent,
  PendingLogin,
  RegisteredClusterRecord,
  Session,
  StoredVisa,
} from './store.ts';

export const PERSON_COLUMNS =
  'id, issuer, subject, email, display_name, groups_json, roles_json, status, created_at, updated_at';

export function mapPerson(row: Row): Person {
  const t = 'persons';
  return {
    id: text(row, t, 'id'),
    issuer: text(row, t, 'issuer'),
    subject: text(row, t, 'subject'),
    email: text(row, t, 'email'),
    displayName: text(row, t, 'display_name'),
    groups: json(row, t, 'groups_json', decodeStringArray),
    roles: json(row, t, 'roles_json', decodeRoles),
    status: oneOf(row, t, 'status', PERSON_STATUSES),
    createdAt: integer(row, t, 'created_at'),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

export const ENGAGEMENT_COLUMNS =
  'id, name, vendor, contractors_json, sponsor, starts_at, ends_at, ceiling_json, max_visa_seconds, status, ' +
  'ended_at, ended_by, end_reason, created_at, created_by';

export function mapEngagement(row: Row): Engagement {
  const t = 'engagements';
  return {
    id: text(row, t, 'id'),
    name: text(row, t, 'name'),
    vendor: text(row, t, 'vendor'),
    contractors: json(row, t, 'contractors_json', decodeStringArray),
    sponsor: text(row, t, 'sponsor'),
    startsAt: integer(row, t, 'starts_at'),
    endsAt: integer(row, t, 'ends_at'),
    ceiling: json(row, t, 'ceiling_json', decodeCeiling),
    maxVisaSeconds: integer(row, t, 'max_visa_seconds'),
    status: oneOf(row, t, 'status', ENGAGEMENT_STATUSES),
    ...definedOnly({
      endedAt: optionalInteger(row, t, 'ended_at'),
      endedBy: optionalText(row, t, 'ended_by'),
      endReason: optionalText(row, t, 'end_reason'),
    }),
    createdAt: integer(row, t, 'created_at'),
    createdBy: text(row, t, 'created_by'),
  };
}

export const VISA_COLUMNS =
  'id, engagement_id, person_id, person_email, cluster, namespaces_json, profile, reason, requested_at, ' +
  'requested_seconds, not_before, not_after, state, approvals_json, required_approvals, extends, decided_at, ' +
  'decided_by, ended_at, ended_by, end_reason, version';

export function mapVisa(row: Row): StoredVisa {
  const t = 'visas';
  return {
    id: text(row, t, 'id'),
    engagementId: text(row, t, 'engagement_id'),
    personId: text(row, t, 'person_id'),
    personEmail: text(row, t, 'person_email'),
    cluster: text(row, t, 'cluster'),
    namespaces: json(row, t, 'namespaces_json', decodeStringArray),
    profile: text(row, t, 'profile'),
    reason: text(row, t, 'reason'),
    requestedAt: integer(row, t, 'requested_at'),
    requestedSeconds: integer(row, t, 'requested_seconds'),
    notBefore: integer(row, t, 'not_before'),
    notAfter: integer(row, t, 'not_after'),
    state: oneOf(row, t, 'state', VISA_STATES),
    approvals: json(row, t, 'approvals_json', decodeApprovals),
    requiredApprovals: integer(row, t, 'required_approvals'),
    ...definedOnly({
      extends: optionalText(row, t, 'extends'),
      decidedAt: optionalInteger(row, t, 'decided_at'),
      decidedBy: optionalText(row, t, 'decided_by'),
      endedAt: optionalInteger(row, t, 'ended_at'),
      endedBy: optionalText(row, t, 'ended_by'),
      endReason: optionalText(row, t, 'end_reason'),
    }),
    version: integer(row, t, 'version'),
  };
}

export const INTENT_COLUMNS = 'id, kind, cluster, visa_id, person_id, payload_json, created_at, completed_at';

export function mapIntent(row: Row): Intent {
  const t = 'intents';
  return {
    id: text(row, t, 'id'),
    kind: text(row, t, 'kind'),
    cluster: text(row, t, 'cluster'),
    ...definedOnly({ visaId: optionalText(row, t, 'visa_id'), personId: optionalText(row, t, 'person_id') }),
    payload: json(row, t, 'payload_json', decodeJsonObject),
    createdAt: integer(row, t, 'created_at'),
    ...definedOnly({ completedAt: optionalInteger(row, t, 'completed_at') }),
  };
}

export const SESSION_COLUMNS =
  'id, person_id, secret_hash, created_at, expires_at, last_used_at, idp_refresh_token_ciphertext, ' +
  'idp_token_expires_at, revoked_at, revoke_reason';

export function mapSession(row: Row): Session {
  const t = 'sessions';
  return {
    id: text(row, t, 'id'),
    personId: text(row, t, 'person_id'),
    secretHash: text(row, t, 'secret_hash'),
    createdAt: integer(row, t, 'created_at'),
    expiresAt: integer(row, t, 'expires_at'),
    ...definedOnly({
      lastUsedAt: optionalInteger(row, t, 'last_used_at'),
      idpRefreshTokenCiphertext: optionalText(row, t, 'idp_refresh_token_ciphertext'),
      idpTokenExpiresAt: optionalInteger(row, t, 'idp_token_expires_at'),
      revokedAt: optionalInteger(row, t, 'revoked_at'),
      revokeReason: optionalText(row, t, 'revoke_reason'),
    }),
  };
}

export const LOGIN_COLUMNS = 'id, kind, lookup_key, payload_json, created_at, expires_at';

export function mapLogin(row: Row): PendingLogin {
  const t = 'pending_logins';
  return {
    id: text(row, t, 'id'),
    kind: text(row, t, 'kind'),
    ...definedOnly({ lookupKey: optionalText(row, t, 'lookup_key') }),
    payload: json(row, t, 'payload_json', decodeJsonObject),
    createdAt: integer(row, t, 'created_at'),
    expiresAt: integer(row, t, 'expires_at'),
  };
}

export const AUDIT_COLUMNS =
  'seq, at, actor, session_id, action, visa_id, engagement_id, person_id, cluster, namespace, outcome, reason, ' +
  'details_json, source_address, source_user_agent, prev_hash, hash';

export function mapAudit(row: Row): AuditEvent {
  const t = 'audit_events';
  const address = optionalText(row, t, 'source_address');
  const userAgent = optionalText(row, t, 'source_user_agent');
  return {
    seq: integer(row, t, 'seq'),
    at: integer(row, t, 'at'),
    actor: text(row, t, 'actor'),
    action: text(row, t, 'action'),
    ...definedOnly({
      sessionId: optionalText(row, t, 'session_id'),
      visaId: optionalText(row, t, 'visa_id'),
      engagementId: optionalText(row, t, 'engagement_id'),
      personId: optionalText(row, t, 'person_id'),
      cluster: optionalText(row, t, 'cluster'),
      namespace: optionalText(row, t, 'namespace'),
      reason: optionalText(row, t, 'reason'),
      source: address === undefined ? undefined : { address, ...definedOnly({ userAgent }) },
    }),
    outcome: oneOf(row, t, 'outcome', AUDIT_OUTCOMES),
    details: json(row, t, 'details_json', decodeJsonObject),
    prevHash: text(row, t, 'prev_hash'),
    hash: text(row, t, 'hash'),
  };
}

export const CLUSTER_COLUMNS = 'name, server, ca_data, credential_ref, created_at, updated_at';

export function mapCluster(row: Row): ClusterRecord {
  const t = 'clusters';
  return {
    name: text(row, t, 'name'),
    server: text(row, t, 'server'),
    ...definedOnly({ caData: optionalText(row, t, 'ca_data'), credentialRef: optionalText(row, t, 'credential_ref') }),
    createdAt: integer(row, t, 'created_at'),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

export const REGISTERED_CLUSTER_COLUMNS =
  'name, sealed_kubeconfig, direct_mode, registered_by, registered_at, credential_expires_at, updated_at';

export function mapRegisteredCluster(row: Row): RegisteredClusterRecord {
  const t = 'registered_clusters';
  return {
    name: text(row, t, 'name'),
    sealedKubeconfig: text(row, t, 'sealed_kubeconfig'),
    directMode: integer(row, t, 'direct_mode') === 1,
    registeredBy: text(row, t, 'registered_by'),
    registeredAt: integer(row, t, 'registered_at'),
    ...definedOnly({ credentialExpiresAt: optionalInteger(row, t, 'credential_expires_at') }),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

/** The named parameters of a registered_clusters row (both engines write it the same way). */
export function registeredClusterParams(cluster: RegisteredClusterRecord): Record<string, string | number | null> {
  return {
    name: cluster.name,
    sealed_kubeconfig: cluster.sealedKubeconfig,
    direct_mode: cluster.directMode ? 1 : 0,
    registered_by: cluster.registeredBy,
    registered_at: cluster.registeredAt,
    credential_expires_at: cluster.credentialExpiresAt ?? null,
    updated_at: cluster.updatedAt,
  };
}

export const PROFILE_COLUMNS =
  'name, description, rules_json, declared_risks_json, max_visa_seconds, record_sessions, direct_mode';

export function mapProfile(row: Row): Profile {
  const t = 'profiles';
  return {
    name: text(row, t, 'name'),
    description: text(row, t, 'description'),
    rules: json(row, t, 'rules_json', decodePolicyRules),
    declaredRisks: json(row, t, 'declared_risks_json', decodeDeclaredRisks),
    maxVisaSeconds: integer(row, t, 'max_visa_seconds'),
    recordSessions: integer(row, t, 'record_sessions') === 1,
    ...(optionalText(row, t, 'direct_mode') === undefined
      ? {}
      : { directMode: oneOf(row, t, 'direct_mode', DIRECT_MODES) }),
  };
}

const DIRECT_MODES: readonly NonNullable<Profile['directMode']>[] = ['allowed', 'denied'];

/**
 * Each field of the domain types the store persists, with the column (or, for nested JSON, `json`) that holds
 * it. The domain model is owned elsewhere and grows: because these are `Record<keyof T, …>`, a new field
 * breaks type-checking here until the store persists it, instead of being dropped silently on write. The
 * SQLite tests check that every named column exists.
 */
export const PERSISTED_COLUMNS = {
  persons: {
    id: 'id',
    issuer: 'issuer',
    subject: 'subject',
    email: 'email',
    displayName: 'display_name',
    groups: 'groups_json',
    roles: 'roles_json',
    status: 'status',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
  } satisfies Record<keyof Person, string>,
  engagements: {
    id: 'id',
    name: 'name',
    vendor: 'vendor',
    contractors: 'contractors_json',
    sponsor: 'sponsor',
    startsAt: 'starts_at',
    endsAt: 'ends_at',
    ceiling: 'ceiling_json',
    maxVisaSeconds: 'max_visa_seconds',
    status: 'status',
    endedAt: 'ended_at',
    endedBy: 'ended_by',
    endReason: 'end_reason',
    createdAt: 'created_at',
    createdBy: 'created_by',
  } satisfies Record<keyof Engagement, string>,
  visas: {
    id: 'id',
    engagementId: 'engagement_id',
    personId: 'person_id',
    personEmail: 'person_email',
    cluster: 'cluster',
    namespaces: 'namespaces_json',
    profile: 'profile',
    reason: 'reason',
    requestedAt: 'requested_at',
    requestedSeconds: 'requested_seconds',
    notBefore: 'not_before',
    notAfter: 'not_after',
    state: 'state',
    approvals: 'approvals_json',
    requiredApprovals: 'required_approvals',
    extends: 'extends',
    decidedAt: 'decided_at',
    decidedBy: 'decided_by',
    endedAt: 'ended_at',
    endedBy: 'ended_by',
    endReason: 'end_reason',
    version: 'version',
  } satisfies Record<keyof StoredVisa, string>,
  profiles: {
    name: 'name',
    description: 'description',
    rules: 'rules_json',
    declaredRisks: 'declared_risks_json',
    maxVisaSeconds: 'max_visa_seconds',
    recordSessions: 'record_sessions',
    directMode: 'direct_mode',
  } satisfies Record<keyof Profile, string>,
} as const;

/** The same guard for domain values stored inside JSON columns and rebuilt field by field in rows.ts. */
export const PERSISTED_JSON_FIELDS = {
  approval: { by: true, at: true, comment: true, automatic: true } satisfies Record<keyof Approval, true>,
  ceiling: { clusters: true, namespacePatterns: true, profiles: true } satisfies Record<keyof Ceiling, true>,
  policyRule: {
    apiGroups: true,
    resources: true,
    resourceNames: true,
    verbs: true,
    nonResourceURLs: true,
  } satisfies Record<keyof PolicyRule, true>,
  declaredRisk: { risk: true, justification: true } satisfies Record<keyof DeclaredRisk, true>,
} as const;
