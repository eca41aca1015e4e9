/**
 * SCIM User and Group resources: reading what an identity provider sends (validated, with the read-only and
 * write-only attributes dropped) and rendering what kubevisa answers (id, meta, groups, ETag). Pure functions.
 *
 * kubevisa interprets a handful of attributes (userName, externalId, active, emails, displayName; a group's
 * displayName and members) and keeps every other attribute as sent, so an IdP reads back what it wrote.
 */
import { findForbiddenKey } from '../domain/own.ts';
import type { ScimGroupRecord, ScimUserRecord } from '../store/identity-records.ts';
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest } from './errors.ts';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA } from './schema.ts';
import { foldsIntoAscii } from '../domain/case-folding.ts';
import { hiddenCharacter, hiddenCharacterProblem } from '../domain/hidden-text.ts';

/** Longest userName, displayName or externalId accepted, in characters. */
export const MAX_NAME_LENGTH = 256;
/** Most members one group may hold (a larger group is split at the IdP or refused here). */
export const MAX_GROUP_MEMBERS = 10_000;

/** What kubevisa keeps of a user body. */
export interface UserFields {
  userName: string;
  externalId?: string;
  email?: string;
  displayName?: string;
  active: boolean;
  resource: JsonObject;
}

/** What kubevisa keeps of a group body. */
export interface GroupFields {
  displayName: string;
  externalId?: string;
  /** Member user ids, as sent (existence is checked by the service). */
  members: string[];
  resource: JsonObject;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Keys such as `__proto__` or `constructor` are never attributes: refused wherever they sit in the body. */
function refuseForbiddenKeys(body: JsonObject): void {
  const forbidden = findForbiddenKey(body);
  if (forbidden !== undefined) {
    throw badRequest(
      'invalidValue',
      `the body holds the key ${forbidden}, which is not a SCIM attribute and is never accepted`,
    );
  }
}

/** Attribute names compare case-insensitively in SCIM (RFC 7643 §2.1). */
function keyOf(object: JsonObject, name: string): string | undefined {
  const wanted = name.toLowerCase();
  return Object.keys(object).find((key) => key.toLowerCase() === wanted);
}

function field(object: JsonObject, name: string): JsonValue | undefined {
  const key = keyOf(object, name);
  return key === undefined ? undefined : object[key];
}

function requireSchema(body: JsonObject, schema: string, kind: string): void {
  const schemas = field(body, 'schemas');
  if (
    !Array.isArray(schemas) ||
    !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === schema.toLowerCase())
  ) {
    throw badRequest('invalidSyntax', `a ${kind} must list '${schema}' in 'schemas'`);
  }
  if (schemas.some((s) => typeof s !== 'string')) throw badRequest('invalidSyntax', "'schemas' must hold only strings");
}

function name(body: JsonObject, attribute: string, required: boolean): string | undefined {
  const value = field(body, attribute);
  if (value === undefined || value === null) {
    if (required) throw badRequest('invalidValue', `'${attribute}' is required: send it as a non-empty string`);
    return undefined;
  }
  if (typeof value !== 'string' || value.trim() === '') {
    throw badRequest('invalidValue', `'${attribute}' must be a non-empty string`);
  }
  if (value.length > MAX_NAME_LENGTH) {
    throw badRequest('invalidValue', `'${attribute}' is longer than ${MAX_NAME_LENGTH} characters`);
  }
  // Control characters have no place in a name and would let a value masquerade in logs and the UI.
  if (/\p{Cc}/u.test(value)) throw badRequest('invalidValue', `'${attribute}' contains control characters`);
  assertWellFormed(value, attribute);
  return value;
}

/**
 * A lone UTF-16 surrogate (JSON may carry one as "\ud800") has no UTF-8 form: the store would keep U+FFFD instead,
 * so the value would read back differently from what the identity provider sent (and matches on it would fail).
 */
function assertWellFormed(value: string, attribute: string): void {
  if (!value.isWellFormed()) {
    throw badRequest(
      'invalidValue',
      `'${attribute}' contains a lone UTF-16 surrogate, which is not valid Unicode: send valid text`,
    );
  }
}

/**
 * SCIM booleans. Microsoft Entra ID sends `"True"` / `"False"` strings in PATCH values (a documented quirk), so
 * those strings are read as booleans; anything else is refused rather than guessed.
 */
export function scimBoolean(value: JsonValue | undefined, attribute: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  throw badRequest('invalidValue', `'${attribute}' must be true or false, not ${JSON.stringify(value)}`);
}

/** Checks a multi-valued attribute such as `emails`: a list of objects with a string `value`. */
function checkMultiValued(body: JsonObject, attribute: string): JsonObject[] {
  const value = field(body, attribute);
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value))
    throw badRequest('invalidValue', `'${attribute}' must be a list of { value, type, primary }`);
  return value.map((item, index) => {
    if (!isObject(item)) throw badRequest('invalidValue', `'${attribute}[${index}]' must be an object with 'value'`);
    const itemValue = field(item, 'value');
    if (itemValue !== undefined && typeof itemValue !== 'string') {
      throw badRequest('invalidValue', `'${attribute}[${index}].value' must be a string`);
    }
    if (itemValue !== undefined) {
      if (/\p{Cc}/u.test(itemValue))
        throw badRequest('invalidValue', `'${attribute}[${index}].value' contains control characters`);
      assertWellFormed(itemValue, `${attribute}[${index}].value`);
    }
    const primary = scimBoolean(field(item, 'primary'), `${attribute}[${index}].primary`);
    const primaryKey = keyOf(item, 'primary');
    return primaryKey !== undefined && primary !== undefined ? { ...item, [primaryKey]: primary } : item;
  });
}

/**
 * The email that links a SCIM user to a kubevisa person: the primary email, else a work email, else the first, else
 * the userName when it is an address. As sent: it is checked before it is trimmed and lower-cased (readUser).
 */
function linkingEmail(emails: JsonObject[], userName: string): string | undefined {
  const valueOf = (item: JsonObject | undefined) => {
    const value = item === undefined ? undefined : field(item, 'value');
    return typeof value === 'string' && value.includes('@') ? value : undefined;
  };
  const primary = emails.find((item) => field(item, 'primary') === true);
  const work = emails.find((item) => String(field(item, 'type') ?? '').toLowerCase() === 'work');
  return valueOf(primary) ?? valueOf(work) ?? valueOf(emails[0]) ?? (userName.includes('@') ? userName : undefined);
}

/** Attributes the server owns or must never keep: dropped from what is stored (RFC 7643 §2.2 mutability). */
const DROPPED_USER_ATTRIBUTES = ['id', 'meta', 'groups', 'password'];
const DROPPED_GROUP_ATTRIBUTES = ['id', 'meta', 'members'];

function without(body: JsonObject, names: string[]): JsonObject {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  return Object.fromEntries(Object.entries(body).filter(([key]) => !drop.has(key.toLowerCase())));
}

/**
 * Reads a User body (POST, PUT, or the result of a PATCH).
 * @throws ScimError 400 with `invalidSyntax` or `invalidValue`, saying what to send instead.
 */
export function readUser(body: unknown): UserFields {
  if (!isObject(body)) throw badRequest('invalidSyntax', 'the body must be a JSON object (a SCIM User)');
  refuseForbiddenKeys(body);
  requireSchema(body, USER_SCHEMA, 'User');
  const userName = name(body, 'userName', true) as string;
  const externalId = name(body, 'externalId', false);
  const displayName = name(body, 'displayName', false);
  const active = scimBoolean(field(body, 'active'), 'active') ?? true;
  const emails = checkMultiValued(body, 'emails');
  checkMultiValued(body, 'phoneNumbers');
  const nameValue = field(body, 'name');
  if (nameValue !== undefined && nameValue !== null && !isObject(nameValue)) {
    throw badRequest('invalidValue', "'name' must be an object such as { givenName, familyName }");
  }
  const enterprise = field(body, ENTERPRISE_USER_SCHEMA);
  if (enterprise !== undefined && !isObject(enterprise)) {
    throw badRequest('invalidValue', `'${ENTERPRISE_USER_SCHEMA}' must be an object`);
  }
  const resource = without(body, DROPPED_USER_ATTRIBUTES);
  const activeKey = keyOf(resource, 'active') ?? 'active';
  resource[activeKey] = active;
  const emailsKey = keyOf(resource, 'emails');
  if (emailsKey !== undefined) resource[emailsKey] = emails;
  const sentEmail = linkingEmail(emails, userName);
  // Lower-cased, `\u212Aate@…` (Kelvin sign) would link to kate@…, and trimmed, a leading U+FEFF would vanish: the
  // address is checked as sent, and only then trimmed and lower-cased.
  for (const [what, value] of [
    ['userName', userName],
    ['the linking email', sentEmail ?? ''],
  ] as const) {
    if (foldsIntoAscii(value)) {
      throw badRequest(
        'invalidValue',
        `${what} holds a character that changes case into a plain letter (such as the Kelvin sign), which would make it another person's address: send a plain address`,
      );
    }
    const hidden = hiddenCharacter(value);
    if (hidden !== undefined) {
      throw badRequest('invalidValue', `${what} ${hiddenCharacterProblem(hidden)}: send the address without it`);
    }
  }
  const email = sentEmail?.trim().toLowerCase();
  return {
    userName,
    ...(externalId !== undefined ? { externalId } : {}),
    ...(email !== undefined ? { email } : {}),
    ...(displayName !== undefined ? { displayName } : {}),
    active,
    resource,
  };
}

/**
 * Reads a Group body (POST, PUT, or the result of a PATCH). Members must be users: kubevisa does not nest groups.
 * @throws ScimError 400.
 */
export function readGroup(body: unknown): GroupFields {
  if (!isObject(body)) throw badRequest('invalidSyntax', 'the body must be a JSON object (a SCIM Group)');
  refuseForbiddenKeys(body);
  requireSchema(body, GROUP_SCHEMA, 'Group');
  const displayName = name(body, 'displayName', true) as string;
  const externalId = name(body, 'externalId', false);
  const rawMembers = field(body, 'members');
  const members: string[] = [];
  if (rawMembers !== undefined && rawMembers !== null) {
    if (!Array.isArray(rawMembers)) throw badRequest('invalidValue', "'members' must be a list of { value: USER_ID }");
    if (rawMembers.length > MAX_GROUP_MEMBERS) {
      throw badRequest('invalidValue', `a group may hold at most ${MAX_GROUP_MEMBERS} members`);
    }
    rawMembers.forEach((member, index) => {
      if (!isObject(member))
        throw badRequest('invalidValue', `'members[${index}]' must be an object { value: USER_ID }`);
      const value = field(member, 'value');
      if (typeof value !== 'string' || value === '') {
        throw badRequest('invalidValue', `'members[${index}].value' must be the id of a User`);
      }
      const type = field(member, 'type');
      if (type !== undefined && type !== null && String(type).toLowerCase() !== 'user') {
        throw badRequest(
          'invalidValue',
          `'members[${index}]' is a ${String(type)}: kubevisa only takes users as members`,
        );
      }
      members.push(value);
    });
  }
  return {
    displayName,
    ...(externalId !== undefined ? { externalId } : {}),
    members,
    resource: without(body, DROPPED_GROUP_ATTRIBUTES),
  };
}

export function etagOf(version: number): string {
  return `W/"${version}"`;
}

function meta(resourceType: string, location: string, createdAt: number, updatedAt: number, version: number) {
  return {
    resourceType,
    created: new Date(createdAt).toISOString(),
    lastModified: new Date(updatedAt).toISOString(),
    location,
    version: etagOf(version),
  };
}

/** The schemas a resource declares: the core one first, the enterprise extension when it carries that part. */
function schemasOf(resource: JsonObject, core: string): string[] {
  const declared = field(resource, 'schemas');
  const list = Array.isArray(declared) ? declared.filter((s): s is string => typeof s === 'string') : [];
  const others = list.filter((s) => s.toLowerCase() !== core.toLowerCase());
  if (keyOf(resource, ENTERPRISE_USER_SCHEMA) !== undefined && !others.includes(ENTERPRISE_USER_SCHEMA)) {
    others.push(ENTERPRISE_USER_SCHEMA);
  }
  return [core, ...others];
}

export function renderUser(user: ScimUserRecord, groups: ScimGroupRecord[], baseUrl: string): JsonObject {
  const rest = without(user.resource, ['schemas', 'userName', 'externalId', 'active']);
  return {
    schemas: schemasOf(user.resource, USER_SCHEMA),
    id: user.id,
    ...(user.externalId !== undefined ? { externalId: user.externalId } : {}),
    userName: user.userName,
    ...rest,
    active: user.active,
    groups: groups.map((g) => ({ value: g.id, display: g.displayName, $ref: `${baseUrl}/Groups/${g.id}` })),
    meta: meta('User', `${baseUrl}/Users/${user.id}`, user.createdAt, user.updatedAt, user.version),
  };
}

export function renderGroup(group: ScimGroupRecord, memberNames: Map<string, string>, baseUrl: string): JsonObject {
  const rest = without(group.resource, ['schemas', 'displayName', 'externalId']);
  return {
    schemas: schemasOf(group.resource, GROUP_SCHEMA),
    id: group.id,
    ...(group.externalId !== undefined ? { externalId: group.externalId } : {}),
    displayName: group.displayName,
    ...rest,
    members: group.members.map((id) => {
      const display = memberNames.get(id);
      return { value: id, ...(display !== undefined ? { display } : {}), $ref: `${baseUrl}/Users/${id}`, type: 'User' };
    }),
    meta: meta('Group', `${baseUrl}/Groups/${group.id}`, group.createdAt, group.updatedAt, group.version),
  };
}

/** Attributes returned whatever `attributes` or `excludedAttributes` say (RFC 7643 §7 `returned: always`). */
const ALWAYS_RETURNED = ['id', 'schemas', 'meta'];

/**
 * Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) at the top level: a sub-attribute path such
 * as `name.givenName` selects its whole parent, and a path prefixed with the core schema URN is that attribute.
 */
export function project(resource: JsonObject, attributes?: string, excludedAttributes?: string): JsonObject {
  const names = (list: string) =>
    list
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '')
      .map((item) => {
        const core = [USER_SCHEMA, GROUP_SCHEMA].find((urn) => item.toLowerCase().startsWith(`${urn.toLowerCase()}:`));
        const bare = core === undefined ? item : item.slice(core.length + 1);
        const isExtension = bare.toLowerCase().startsWith('urn:');
        return (isExtension ? bare : (bare.split('.')[0] ?? bare)).toLowerCase();
      });
  if (attributes !== undefined && attributes.trim() !== '') {
    const wanted = new Set([...names(attributes), ...ALWAYS_RETURNED]);
    const extensionPrefixes = [...wanted].filter((n) => n.startsWith('urn:'));
    return Object.fromEntries(
      Object.entries(resource).filter(
        ([key]) =>
          wanted.has(key.toLowerCase()) ||
          extensionPrefixes.some((prefix) => prefix.startsWith(`${key.toLowerCase()}:`)),
      ),
    );
  }
  if (excludedAttributes !== undefined && excludedAttributes.trim() !== '') {
    const unwanted = new Set(names(excludedAttributes).filter((n) => !ALWAYS_RETURNED.includes(n)));
    return Object.fromEntries(Object.entries(resource).filter(([key]) => !unwanted.has(key.toLowerCase())));
  }
  return resource;
}
