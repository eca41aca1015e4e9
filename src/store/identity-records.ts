/**
 * What the identity lifecycle keeps (issue 7): users and groups an identity provider provisioned over SCIM, the
 * per-IdP SCIM bearer tokens (hashes only), and offboarding receipts. The types, their column lists and the
 * row → record mappers live here, next to each other, so the Store interface only names them.
 */
import type { Instant } from '../domain/model.ts';
import {
  decodeJsonObject,
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
import type { JsonObject } from './store.ts';

/** A user an identity provider provisioned over SCIM (RFC 7643 §4.1). */
export interface ScimUserRecord {
  /** The SCIM `id` kubevisa assigned (a UUID); chosen by the caller. */
  id: string;
  /** As the IdP sent it; unique among SCIM users compared case-insensitively (RFC 7643: caseExact false). */
  userName: string;
  /** The IdP's own id for the user (caseExact), when it sent one. */
  externalId?: string;
  /** Lower-cased email that links the user to a kubevisa person (the person's login email). */
  email?: string;
  displayName?: string;
  active: boolean;
  /**
   * The SCIM resource as last written by the IdP, without `id`, `meta` and group membership (kubevisa owns
   * those): what a GET returns, so attributes kubevisa does not interpret survive a round trip.
   */
  resource: JsonObject;
  /** Name of the identity provider (SCIM token) that created the user. */
  provisionedBy: string;
  /** 1 at insert, +1 at every update: the SCIM `meta.version` (ETag) and optimistic concurrency. */
  version: number;
  createdAt: Instant;
  updatedAt: Instant;
}
export type NewScimUser = Omit<ScimUserRecord, 'version'>;

/** A group an identity provider provisioned over SCIM (RFC 7643 §4.2). */
export interface ScimGroupRecord {
  /** The SCIM `id` (a UUID); chosen by the caller. */
  id: string;
  /** Unique among SCIM groups compared case-insensitively: group mappings name groups by it. */
  displayName: string;
  externalId?: string;
  /** SCIM ids of the member users, in insertion order, without duplicates. */
  members: string[];
  /** The resource as last written, without `id`, `meta` and `members`. */
  resource: JsonObject;
  provisionedBy: string;
  version: number;
  createdAt: Instant;
  updatedAt: Instant;
}
export type NewScimGroup = Omit<ScimGroupRecord, 'version'>;

/** A bearer token one identity provider uses to call kubevisa's SCIM endpoint. The token itself is never stored. */
export interface ScimTokenRecord {
  /** Chosen by the caller; shown in `kubevisa scim token list`. */
  id: string;
  /** Name of the identity provider the token is for (`okta`, `entra`); audit events name it. */
  idp: string;
  /** SHA-256 (hex) of the token. */
  secretHash: string;
  createdAt: Instant;
  /** Email of the admin who created it. */
  createdBy: string;
  /** After this instant the token is refused (set when it is rotated with a grace period). */
  expiresAt?: Instant;
  lastUsedAt?: Instant;
  revokedAt?: Instant;
  revokedBy?: string;
}

/** Fields of a SCIM token that may change; `undefined` leaves a field as it is. */
export interface ScimTokenPatch {
  expiresAt?: Instant;
  lastUsedAt?: Instant;
  revokedAt?: Instant;
  revokedBy?: string;
}

/**
 * How a SCIM identity provider came to act on the person with an email: it provisioned the email first
 * (`provisioned`), took charge of someone who already existed because the configuration lets it (`claimed`), an
 * admin linked it (`linked`), or it provisioned the email before links existed (`migrated`).
 */
export type ScimLinkHow = 'provisioned' | 'claimed' | 'linked' | 'migrated';
export const SCIM_LINK_HOWS: readonly ScimLinkHow[] = ['provisioned', 'claimed', 'linked', 'migrated'];

/**
 * A SCIM identity provider that may act on (provision, deactivate, delete, assert the groups of) the person with
 * `email`. Keyed by email, not person: an IdP provisions people before their first login.
 */
export interface ScimLinkRecord {
  /** Lower-cased by the store. */
  email: string;
  /** The identity provider's name, as its SCIM token was created (`okta`). */
  idp: string;
  how: ScimLinkHow;
  /** `scim:okta` for a link an IdP made by provisioning or claiming; the admin's email for `linked`. */
  by: string;
  reason?: string;
  createdAt: Instant;
}

export type OffboardingStatus = 'proving' | 'proven' | 'unproven';
export const OFFBOARDING_STATUSES: readonly OffboardingStatus[] = ['proving', 'proven', 'unproven'];

/** One offboarding and its receipt (steps and the live proof of each). */
export interface OffboardingRecord {
  /** Chosen by the caller. */
  id: string;
  personId: string;
  /** proving: steps still being proven; proven: every step proven; unproven: a step failed and is being retried. */
  status: OffboardingStatus;
  /** What started it: `admin`, `scim`, `sync`, `refresh`. */
  trigger: string;
  /** The receipt as the API shows it. */
  receipt: JsonObject;
  createdAt: Instant;
  updatedAt: Instant;
}

export interface OffboardingFilter {
  personId?: string;
  /** Only offboardings in one of these statuses. */
  statuses?: readonly OffboardingStatus[];
}

export const SCIM_USER_COLUMNS =
  'id, user_name, external_id, email, display_name, active, resource_json, provisioned_by, version, created_at, ' +
  'updated_at';

export function mapScimUser(row: Row): ScimUserRecord {
  const t = 'scim_users';
  return {
    id: text(row, t, 'id'),
    userName: text(row, t, 'user_name'),
    ...definedOnly({
      externalId: optionalText(row, t, 'external_id'),
      email: optionalText(row, t, 'email'),
      displayName: optionalText(row, t, 'display_name'),
    }),
    active: integer(row, t, 'active') === 1,
    resource: json(row, t, 'resource_json', decodeJsonObject),
    provisionedBy: text(row, t, 'provisioned_by'),
    version: integer(row, t, 'version'),
    createdAt: integer(row, t, 'created_at'),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

export const SCIM_GROUP_COLUMNS =
  'id, display_name, external_id, members_json, resource_json, provisioned_by, version, created_at, updated_at';

export function mapScimGroup(row: Row): ScimGroupRecord {
  const t = 'scim_groups';
  return {
    id: text(row, t, 'id'),
    displayName: text(row, t, 'display_name'),
    ...definedOnly({ externalId: optionalText(row, t, 'external_id') }),
    members: json(row, t, 'members_json', decodeStringArray),
    resource: json(row, t, 'resource_json', decodeJsonObject),
    provisionedBy: text(row, t, 'provisioned_by'),
    version: integer(row, t, 'version'),
    createdAt: integer(row, t, 'created_at'),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

export const SCIM_TOKEN_COLUMNS =
  'id, idp, secret_hash, created_at, created_by, expires_at, last_used_at, revoked_at, revoked_by';

export function mapScimToken(row: Row): ScimTokenRecord {
  const t = 'scim_tokens';
  return {
    id: text(row, t, 'id'),
    idp: text(row, t, 'idp'),
    secretHash: text(row, t, 'secret_hash'),
    createdAt: integer(row, t, 'created_at'),
    createdBy: text(row, t, 'created_by'),
    ...definedOnly({
      expiresAt: optionalInteger(row, t, 'expires_at'),
      lastUsedAt: optionalInteger(row, t, 'last_used_at'),
      revokedAt: optionalInteger(row, t, 'revoked_at'),
      revokedBy: optionalText(row, t, 'revoked_by'),
    }),
  };
}

export const SCIM_LINK_COLUMNS = 'email, idp, how, linked_by, reason, created_at';

export function mapScimLink(row: Row): ScimLinkRecord {
  const t = 'scim_links';
  return {
    email: text(row, t, 'email'),
    idp: text(row, t, 'idp'),
    how: oneOf(row, t, 'how', SCIM_LINK_HOWS),
    by: text(row, t, 'linked_by'),
    ...definedOnly({ reason: optionalText(row, t, 'reason') }),
    createdAt: integer(row, t, 'created_at'),
  };
}

export const OFFBOARDING_COLUMNS = 'id, person_id, status, trigger, receipt_json, created_at, updated_at';

export function mapOffboarding(row: Row): OffboardingRecord {
  const t = 'offboardings';
  return {
    id: text(row, t, 'id'),
    personId: text(row, t, 'person_id'),
    status: oneOf(row, t, 'status', OFFBOARDING_STATUSES),
    trigger: text(row, t, 'trigger'),
    receipt: json(row, t, 'receipt_json', decodeJsonObject),
    createdAt: integer(row, t, 'created_at'),
    updatedAt: integer(row, t, 'updated_at'),
  };
}

/** Which column holds each field, for the schema test that every persisted field has a column. */
export const IDENTITY_PERSISTED_COLUMNS = {
  scim_users: {
    id: 'id',
    userName: 'user_name',
    externalId: 'external_id',
    email: 'email',
    displayName: 'display_name',
    active: 'active',
    resource: 'resource_json',
    provisionedBy: 'provisioned_by',
    version: 'version',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
  } satisfies Record<keyof ScimUserRecord, string>,
  scim_groups: {
    id: 'id',
    displayName: 'display_name',
    externalId: 'external_id',
    members: 'members_json',
    resource: 'resource_json',
    provisionedBy: 'provisioned_by',
    version: 'version',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
  } satisfies Record<keyof ScimGroupRecord, string>,
  scim_tokens: {
    id: 'id',
    idp: 'idp',
    secretHash: 'secret_hash',
    createdAt: 'created_at',
    createdBy: 'created_by',
    expiresAt: 'expires_at',
    lastUsedAt: 'last_used_at',
    revokedAt: 'revoked_at',
    revokedBy: 'revoked_by',
  } satisfies Record<keyof ScimTokenRecord, string>,
  scim_links: {
    email: 'email',
    idp: 'idp',
    how: 'how',
    by: 'linked_by',
    reason: 'reason',
    createdAt: 'created_at',
  } satisfies Record<keyof ScimLinkRecord, string>,
  offboardings: {
    id: 'id',
    personId: 'person_id',
    status: 'status',
    trigger: 'trigger',
    receipt: 'receipt_json',
    createdAt: 'created_at',
    updatedAt: 'updated_at',
  } satisfies Record<keyof OffboardingRecord, string>,
};
