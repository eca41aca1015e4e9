/**
 * The SCIM service provider's operations on Users and Groups: each write is validated, committed together with
 * its audit event in one transaction, and only then reported to the identity lifecycle (which onboards and
 * offboards). The lifecycle's commit is awaited before the IdP gets its answer, so when Okta or Entra ID sees
 * `200` for `active=false`, the person's sessions and visas have already ended.
 */
import { randomUUID } from 'node:crypto';
import { Conflict, KubevisaError, NotFound } from '../domain/errors.ts';
import { own } from '../domain/own.ts';
import type { NewScimGroup, NewScimUser, ScimGroupRecord, ScimUserRecord } from '../store/identity-records.ts';
import type { JsonObject, Store, StoreTx } from '../store/store.ts';
import { badRequest, ScimEmailTaken, ScimError } from './errors.ts';
import { parseFilter, type ParsedFilter } from './filter.ts';
import { applyPatch, readPatch } from './patch.ts';
import { project, readGroup, readUser, renderGroup, renderUser, etagOf } from './resources.ts';
import { LIST_RESPONSE_SCHEMA, SEARCH_REQUEST_SCHEMA, type ResourceKind } from './schema.ts';
import { readSort, sortResources } from './sort.ts';

/** Who is calling: the identity provider the bearer token belongs to. */
export interface ScimClient {
  idp: string;
  tokenId: string;
  /** Socket address, for the audit trail. */
  address: string;
  /** Set when the write is one operation of a bulk request (its index in `Operations`, its bulkId). */
  bulk?: { operation: number; bulkId?: string };
}

export interface UserChange {
  idp: string;
  /** undefined when the user was created. */
  before?: ScimUserRecord;
  /** undefined when the user was deleted. */
  after?: ScimUserRecord;
}

export interface GroupChange {
  idp: string;
  before?: ScimGroupRecord;
  after?: ScimGroupRecord;
}

/** An identity provider sends a user whose linking email is `email`: created with it, or changed to it. */
export interface EmailClaim {
  idp: string;
  email: string;
  userName: string;
}

/** Which identity provider may send which email (identity/ownership.ts implements it). */
export interface ScimOwnership {
  /**
   * Runs inside the write's transaction: returns to let the write go on (recording any new link in `tx`), or
   * throws ScimEmailTaken, which rolls the write back.
   */
  claim(tx: StoreTx, claim: EmailClaim, at: number): Promise<void>;
  /** After a refused write rolled back: records and reports the refusal (in its own transaction). */
  refused(client: ScimClient, claim: EmailClaim, refusal: ScimEmailTaken): Promise<void>;
}

export interface ScimServiceOptions {
  store: Store;
  /** `https://kubevisa.example/scim/v2`: the base of every `location`. */
  baseUrl: string;
  /** Largest page a list returns. */
  maxResults: number;
  now?: () => number;
  /** Awaited after each committed user change (the lifecycle onboards and offboards here). */
  onUserChanged?: (change: UserChange) => Promise<void>;
  /** Awaited after each committed group change (group mappings are re-applied here). */
  onGroupChanged?: (change: GroupChange) => Promise<void>;
  /** Decides which emails an identity provider may send; without it, any (tests of the SCIM protocol alone). */
  ownership?: ScimOwnership;
}

export interface ListQuery {
  filter?: string;
  startIndex?: string;
  count?: string;
  attributes?: string;
  excludedAttributes?: string;
  sortBy?: string;
  sortOrder?: string;
}

export interface ListResponse {
  schemas: [typeof LIST_RESPONSE_SCHEMA];
  totalResults: number;
  startIndex: number;
  itemsPerPage: number;
  Resources: JsonObject[];
}

export class ScimService {
  private readonly options: ScimServiceOptions;
  private readonly store: Store;
  private readonly now: () => number;

  /** The base of every `location`. */
  get baseUrl(): string {
    return this.options.baseUrl;
  }

  constructor(options: ScimServiceOptions) {
    this.options = options;
    this.store = options.store;
    this.now = options.now ?? Date.now;
  }

  // ---- users ----

  async createUser(client: ScimClient, body: unknown): Promise<JsonObject> {
    const fields = readUser(body);
    const now = this.now();
    const claim =
      fields.email === undefined ? undefined : { idp: client.idp, email: fields.email, userName: fields.userName };
    const created = await this.claiming(client, claim, () =>
      this.store.transaction(async (tx) => {
        const taken = await tx.getScimUserByUserName(fields.userName);
        // Another identity provider's user id is never named: the caller may not know it exists.
        if (taken) {
          throw uniqueness(
            `a User with userName '${fields.userName}' already exists${taken.provisionedBy === client.idp ? ` (id ${taken.id})` : ''}`,
          );
        }
        if (claim !== undefined) await this.options.ownership?.claim(tx, claim, now);
        const user = await tx.insertScimUser({
          id: randomUUID(),
          ...fields,
          provisionedBy: client.idp,
          createdAt: now,
          updatedAt: now,
        });
        await this.audit(tx, client, 'scim.user.created', now, userDetails(user));
        return user;
      }),
    );
    await this.options.onUserChanged?.({ idp: client.idp, after: created });
    return renderUser(created, [], this.options.baseUrl);
  }

  /**
   * Runs a user write; when ownership refused its email (the write rolled back), the refusal is recorded and
   * reported before the identity provider gets its 409.
   */
  private async claiming<T>(
    client: ScimClient,
    claim: EmailClaim | undefined | (() => EmailClaim | undefined),
    write: () => Promise<T>,
  ): Promise<T> {
    try {
      return await write();
    } catch (error) {
      const claimed = typeof claim === 'function' ? claim() : claim;
      if (error instanceof ScimEmailTaken && claimed !== undefined) {
        await this.options.ownership?.refused(client, claimed, error);
      }
      throw error;
    }
  }

  async getUser(client: ScimClient, id: string, query: ListQuery = {}): Promise<JsonObject> {
    const user = await this.requireUser(id, client.idp);
    const groups = await this.store.listScimGroupsOfUser(id);
    return project(renderUser(user, groups, this.options.baseUrl), query.attributes, query.excludedAttributes);
  }

  async replaceUser(client: ScimClient, id: string, body: unknown, ifMatch?: string): Promise<JsonObject> {
    const fields = readUser(body);
    return this.changeUser(client, id, ifMatch, 'scim.user.replaced', () => fields);
  }

  async patchUser(client: ScimClient, id: string, body: unknown, ifMatch?: string): Promise<JsonObject> {
    const operations = readPatch(body);
    return this.changeUser(client, id, ifMatch, 'scim.user.patched', (current) => {
      const view: JsonObject = {
        ...current.resource,
        id: current.id,
        userName: current.userName,
        ...(current.externalId !== undefined ? { externalId: current.externalId } : {}),
        active: current.active,
      };
      const patched = applyPatch(view, operations);
      if (own(patched, 'id') !== current.id)
        throw new ScimError(400, "'id' is set by kubevisa and cannot change", 'mutability');
      return readUser(patched);
    });
  }

  private async changeUser(
    client: ScimClient,
    id: string,
    ifMatch: string | undefined,
    action: string,
    next: (current: ScimUserRecord) => ReturnType<typeof readUser>,
  ): Promise<JsonObject> {
    const now = this.now();
    let claim: EmailClaim | undefined;
    const { before, after } = await this.claiming(
      client,
      () => claim,
      () =>
        this.store.transaction(async (tx) => {
          const current = await tx.getScimUser(id);
          // Each identity provider sees and changes only the users it provisioned.
          if (!current || current.provisionedBy !== client.idp) throw notFound('User', id);
          checkIfMatch(ifMatch, current.version);
          const fields = next(current);
          const taken = await tx.getScimUserByUserName(fields.userName);
          if (taken && taken.id !== id) throw uniqueness(`another User already has userName '${fields.userName}'`);
          // A user whose email changes is a claim on the new email, as if it were created with it.
          if (fields.email !== undefined && fields.email !== current.email) {
            claim = { idp: client.idp, email: fields.email, userName: fields.userName };
            await this.options.ownership?.claim(tx, claim, now);
          }
          const replacement: NewScimUser = {
            id,
            ...fields,
            provisionedBy: current.provisionedBy,
            createdAt: current.createdAt,
            updatedAt: now,
          };
          const updated = await tx.updateScimUser(replacement, current.version);
          await this.audit(tx, client, action, now, {
            ...userDetails(updated),
            ...(current.active !== updated.active ? { activeBefore: current.active } : {}),
          });
          return { before: current, after: updated };
        }),
    );
    await this.options.onUserChanged?.({ idp: client.idp, before, after });
    const groups = await this.store.listScimGroupsOfUser(id);
    return renderUser(after, groups, this.options.baseUrl);
  }

  async deleteUser(client: ScimClient, id: string, ifMatch?: string): Promise<void> {
    const now = this.now();
    const { before, groups } = await this.store.transaction(async (tx) => {
      const current = await tx.getScimUser(id);
      if (!current || current.provisionedBy !== client.idp) throw notFound('User', id);
      checkIfMatch(ifMatch, current.version);
      const memberOf = await tx.listScimGroupsOfUser(id);
      await tx.deleteScimUser(id, now);
      await this.audit(tx, client, 'scim.user.deleted', now, userDetails(current));
      return { before: current, groups: memberOf };
    });
    await this.options.onUserChanged?.({ idp: client.idp, before });
    // The groups lost a member: their mappings are re-applied too.
    for (const group of groups) {
      const after = await this.store.getScimGroup(group.id);
      if (after) await this.options.onGroupChanged?.({ idp: client.idp, before: group, after });
    }
  }

  async listUsers(client: ScimClient, query: ListQuery): Promise<ListResponse> {
    return this.search(client, query, ['User']);
  }

  /**
   * Lists (GET /Users, GET /Groups) and searches (POST /.search at the root or under a resource type): the
   * caller's own resources of `kinds` that match the filter, sorted, one page of them.
   */
  async search(client: ScimClient, query: ListQuery, kinds: readonly ResourceKind[]): Promise<ListResponse> {
    const page = readPaging(query, this.options.maxResults);
    const sort = readSort(query.sortBy, query.sortOrder, kinds);
    const parsed = query.filter !== undefined ? parseFilter(query.filter, kinds) : undefined;
    const rendered: JsonObject[] = [];
    if (kinds.includes('User')) rendered.push(...(await this.renderedUsers(client, parsed)));
    if (kinds.includes('Group')) rendered.push(...(await this.renderedGroups(client, parsed, query)));
    const matching = parsed ? rendered.filter(parsed.predicate) : rendered;
    return listResponse(sortResources(matching, sort), page, query);
  }

  private async renderedUsers(client: ScimClient, parsed: ParsedFilter | undefined): Promise<JsonObject[]> {
    let candidates: ScimUserRecord[];
    if (parsed?.equality?.attribute === 'username') {
      // Okta and Entra ID look a user up by userName before every create: answer from the index.
      const found = await this.store.getScimUserByUserName(parsed.equality.value);
      candidates = found ? [found] : [];
    } else {
      candidates = await this.store.listScimUsers();
    }
    candidates = candidates.filter((user) => user.provisionedBy === client.idp);
    const groupsOf = await this.groupsByUser();
    return candidates.map((user) => renderUser(user, groupsOf.get(user.id) ?? [], this.options.baseUrl));
  }

  private async groupsByUser(): Promise<Map<string, ScimGroupRecord[]>> {
    const byUser = new Map<string, ScimGroupRecord[]>();
    for (const group of await this.store.listScimGroups()) {
      for (const member of group.members) byUser.set(member, [...(byUser.get(member) ?? []), group]);
    }
    return byUser;
  }

  private async requireUser(id: string, idp: string): Promise<ScimUserRecord> {
    const user = await this.store.getScimUser(id);
    if (!user || user.provisionedBy !== idp) throw notFound('User', id);
    return user;
  }

  // ---- groups ----

  async createGroup(client: ScimClient, body: unknown): Promise<JsonObject> {
    const fields = readGroup(body);
    const now = this.now();
    const created = await this.store.transaction(async (tx) => {
      const taken = await tx.getScimGroupByDisplayName(fields.displayName);
      if (taken) {
        throw uniqueness(
          `a Group named '${fields.displayName}' already exists${taken.provisionedBy === client.idp ? ` (id ${taken.id})` : ''}`,
        );
      }
      await requireMembers(tx, fields.members, client.idp);
      const group = await tx.insertScimGroup({
        id: randomUUID(),
        ...fields,
        provisionedBy: client.idp,
        createdAt: now,
        updatedAt: now,
      });
      await this.audit(tx, client, 'scim.group.created', now, groupDetails(group));
      return group;
    });
    await this.options.onGroupChanged?.({ idp: client.idp, after: created });
    return renderGroup(created, await this.memberNames(created.members), this.options.baseUrl);
  }

  async getGroup(client: ScimClient, id: string, query: ListQuery = {}): Promise<JsonObject> {
    const group = await this.store.getScimGroup(id);
    if (!group || group.provisionedBy !== client.idp) throw notFound('Group', id);
    const names = excludesMembers(query) ? new Map<string, string>() : await this.memberNames(group.members);
    return project(renderGroup(group, names, this.options.baseUrl), query.attributes, query.excludedAttributes);
  }

  async replaceGroup(client: ScimClient, id: string, body: unknown, ifMatch?: string): Promise<JsonObject> {
    const fields = readGroup(body);
    const group = await this.changeGroup(client, id, ifMatch, 'scim.group.replaced', () => fields);
    return renderGroup(group, await this.memberNames(group.members), this.options.baseUrl);
  }

  /** Answers 204 (Okta and Entra ID both accept it) unless the IdP asked for attributes back. */
  async patchGroup(client: ScimClient, id: string, body: unknown, ifMatch?: string): Promise<ScimGroupRecord> {
    const operations = readPatch(body);
    return this.changeGroup(client, id, ifMatch, 'scim.group.patched', (current) => {
      const view: JsonObject = {
        ...current.resource,
        id: current.id,
        displayName: current.displayName,
        ...(current.externalId !== undefined ? { externalId: current.externalId } : {}),
        // Always present, even empty: removing a member from an empty group must be a no-op, not an error.
        members: current.members.map((value) => ({ value })),
      };
      const patched = applyPatch(view, operations);
      if (own(patched, 'id') !== current.id)
        throw new ScimError(400, "'id' is set by kubevisa and cannot change", 'mutability');
      return readGroup(patched);
    });
  }

  async renderGroupRecord(group: ScimGroupRecord, query: ListQuery = {}): Promise<JsonObject> {
    const names = excludesMembers(query) ? new Map<string, string>() : await this.memberNames(group.members);
    return project(renderGroup(group, names, this.options.baseUrl), query.attributes, query.excludedAttributes);
  }

  private async changeGroup(
    client: ScimClient,
    id: string,
    ifMatch: string | undefined,
    action: string,
    next: (current: ScimGroupRecord) => ReturnType<typeof readGroup>,
  ): Promise<ScimGroupRecord> {
    const now = this.now();
    const { before, after } = await this.store.transaction(async (tx) => {
      const current = await tx.getScimGroup(id);
      if (!current || current.provisionedBy !== client.idp) throw notFound('Group', id);
      checkIfMatch(ifMatch, current.version);
      const fields = next(current);
      const taken = await tx.getScimGroupByDisplayName(fields.displayName);
      if (taken && taken.id !== id) throw uniqueness(`another Group is named '${fields.displayName}'`);
      await requireMembers(tx, fields.members, client.idp);
      const replacement: NewScimGroup = {
        id,
        ...fields,
        provisionedBy: current.provisionedBy,
        createdAt: current.createdAt,
        updatedAt: now,
      };
      const updated = await tx.updateScimGroup(replacement, current.version);
      const added = updated.members.filter((m) => !current.members.includes(m));
      const removed = current.members.filter((m) => !updated.members.includes(m));
      await this.audit(tx, client, action, now, {
        ...groupDetails(updated),
        ...(added.length > 0 ? { membersAdded: added } : {}),
        ...(removed.length > 0 ? { membersRemoved: removed } : {}),
      });
      return { before: current, after: updated };
    });
    await this.options.onGroupChanged?.({ idp: client.idp, before, after });
    return after;
  }

  async deleteGroup(client: ScimClient, id: string, ifMatch?: string): Promise<void> {
    const now = this.now();
    const before = await this.store.transaction(async (tx) => {
      const current = await tx.getScimGroup(id);
      if (!current || current.provisionedBy !== client.idp) throw notFound('Group', id);
      checkIfMatch(ifMatch, current.version);
      await tx.deleteScimGroup(id);
      await this.audit(tx, client, 'scim.group.deleted', now, groupDetails(current));
      return current;
    });
    await this.options.onGroupChanged?.({ idp: client.idp, before });
  }

  async listGroups(client: ScimClient, query: ListQuery): Promise<ListResponse> {
    return this.search(client, query, ['Group']);
  }

  private async renderedGroups(
    client: ScimClient,
    parsed: ParsedFilter | undefined,
    query: ListQuery,
  ): Promise<JsonObject[]> {
    let candidates: ScimGroupRecord[];
    if (parsed?.equality?.attribute === 'displayname') {
      const found = await this.store.getScimGroupByDisplayName(parsed.equality.value);
      candidates = found ? [found] : [];
    } else {
      candidates = await this.store.listScimGroups();
    }
    candidates = candidates.filter((group) => group.provisionedBy === client.idp);
    const names = excludesMembers(query) ? new Map<string, string>() : await this.memberNames();
    return candidates.map((group) => renderGroup(group, names, this.options.baseUrl));
  }

  /** Display names of users (`displayName`, else `userName`), for the members' `display`. */
  private async memberNames(ids?: string[]): Promise<Map<string, string>> {
    const users = ids === undefined ? await this.store.listScimUsers() : await this.usersById(ids);
    return new Map(users.map((u) => [u.id, u.displayName ?? u.userName]));
  }

  private async usersById(ids: string[]): Promise<ScimUserRecord[]> {
    const users: ScimUserRecord[] = [];
    for (const id of ids) {
      const user = await this.store.getScimUser(id);
      if (user) users.push(user);
    }
    return users;
  }

  private audit(tx: StoreTx, client: ScimClient, action: string, at: number, details: JsonObject) {
    return tx.appendAudit({
      at,
      actor: `scim:${client.idp}`,
      action,
      outcome: 'ok',
      details: { ...details, tokenId: client.tokenId, ...(client.bulk ? { bulk: client.bulk } : {}) },
      source: { address: client.address },
    });
  }
}

function userDetails(user: ScimUserRecord): JsonObject {
  return {
    id: user.id,
    userName: user.userName,
    active: user.active,
    ...(user.email !== undefined ? { email: user.email } : {}),
    ...(user.externalId !== undefined ? { externalId: user.externalId } : {}),
  };
}

function groupDetails(group: ScimGroupRecord): JsonObject {
  return { id: group.id, displayName: group.displayName, members: group.members.length };
}

async function requireMembers(tx: StoreTx, members: string[], idp: string): Promise<void> {
  for (const member of new Set(members)) {
    // A group holds only users of the identity provider that provisioned it.
    if ((await tx.getScimUser(member))?.provisionedBy !== idp) {
      throw badRequest('invalidValue', `member '${member}' is not a User here: create the user before adding it`);
    }
  }
}

function excludesMembers(query: ListQuery): boolean {
  const excluded = (query.excludedAttributes ?? '')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim());
  const wanted = query.attributes
    ?.toLowerCase()
    .split(',')
    .map((s) => s.trim());
  return excluded.includes('members') || (wanted !== undefined && !wanted.includes('members'));
}

function notFound(kind: 'User' | 'Group', id: string): ScimError {
  return new ScimError(404, `no ${kind} with id '${id}': list them with GET /${kind}s`);
}

function uniqueness(message: string): ScimError {
  return new ScimError(409, message, 'uniqueness');
}

/** RFC 7644 §3.14: a write with If-Match must name the current version, or nothing changes (412). */
function checkIfMatch(ifMatch: string | undefined, version: number): void {
  if (ifMatch === undefined || ifMatch.trim() === '*') return;
  const current = etagOf(version);
  const accepted = ifMatch.split(',').map((tag) => tag.trim());
  if (!accepted.includes(current) && !accepted.includes(current.slice(2))) {
    throw new ScimError(412, `the resource changed (now version ${current}); read it again and retry`);
  }
}

function readPaging(query: ListQuery, maxResults: number): { startIndex: number; count: number } {
  const integer = (value: string | undefined, name: string, fallback: number) => {
    if (value === undefined || value === '') return fallback;
    if (!/^-?\d{1,9}$/.test(value))
      throw badRequest('invalidValue', `'${name}' must be a whole number, not '${value}'`);
    return Number(value);
  };
  // RFC 7644 §3.4.2.4: startIndex below 1 means 1, a negative count means 0.
  const startIndex = Math.max(1, integer(query.startIndex, 'startIndex', 1));
  const count = Math.min(maxResults, Math.max(0, integer(query.count, 'count', maxResults)));
  return { startIndex, count };
}

function listResponse(
  matching: JsonObject[],
  page: { startIndex: number; count: number },
  query: ListQuery,
): ListResponse {
  const slice = matching.slice(page.startIndex - 1, page.startIndex - 1 + page.count);
  return {
    schemas: [LIST_RESPONSE_SCHEMA],
    totalResults: matching.length,
    startIndex: page.startIndex,
    itemsPerPage: slice.length,
    Resources: slice.map((r) => project(r, query.attributes, query.excludedAttributes)),
  };
}

/**
 * A SearchRequest body (RFC 7644 §3.4.3) as the query a GET list takes: the same parameters, with
 * `attributes` and `excludedAttributes` as lists and `startIndex` / `count` as numbers.
 * @throws ScimError 400 `invalidSyntax` or `invalidValue` saying what to send instead.
 */
export function readSearchRequest(body: unknown): ListQuery {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest(
      'invalidSyntax',
      `the body must be a SearchRequest: { "schemas": ["${SEARCH_REQUEST_SCHEMA}"], "filter": … }`,
    );
  }
  const request = body as JsonObject;
  const value = (name: string) => {
    const key = Object.keys(request).find((k) => k.toLowerCase() === name.toLowerCase());
    return key === undefined ? undefined : request[key];
  };
  const schemas = value('schemas');
  if (
    !Array.isArray(schemas) ||
    !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === SEARCH_REQUEST_SCHEMA.toLowerCase())
  ) {
    throw badRequest('invalidSyntax', `a search must list '${SEARCH_REQUEST_SCHEMA}' in 'schemas'`);
  }
  const known = new Set([
    'schemas',
    'filter',
    'sortby',
    'sortorder',
    'startindex',
    'count',
    'attributes',
    'excludedattributes',
  ]);
  const unknown = Object.keys(request).find((k) => !known.has(k.toLowerCase()));
  if (unknown !== undefined) {
    throw badRequest('invalidSyntax', `'${unknown}' is not a SearchRequest parameter: use ${[...known].join(', ')}`);
  }
  const query: ListQuery = {};
  for (const name of ['filter', 'sortBy', 'sortOrder'] as const) {
    const given = value(name);
    if (given === undefined || given === null) continue;
    if (typeof given !== 'string') throw badRequest('invalidValue', `'${name}' must be a string`);
    query[name] = given;
  }
  for (const name of ['startIndex', 'count'] as const) {
    const given = value(name);
    if (given === undefined || given === null) continue;
    if (typeof given !== 'number' && typeof given !== 'string')
      throw badRequest('invalidValue', `'${name}' must be a whole number`);
    query[name] = String(given);
  }
  for (const name of ['attributes', 'excludedAttributes'] as const) {
    const given = value(name);
    if (given === undefined || given === null) continue;
    const list = typeof given === 'string' ? [given] : given;
    if (!Array.isArray(list) || list.some((item) => typeof item !== 'string')) {
      throw badRequest('invalidValue', `'${name}' must be a list of attribute names, e.g. ["userName", "emails"]`);
    }
    query[name] = list.join(',');
  }
  return query;
}

/** Store errors that reach the SCIM edge in SCIM terms (a race lost to another writer, a vanished member). */
export function toScimError(error: unknown): ScimError | undefined {
  if (error instanceof ScimError) return error;
  if (error instanceof Conflict) {
    // A version clash is a lost race, not a taken name: no scimType, the IdP reads and retries.
    const race = error.details?.expectedVersion !== undefined;
    return new ScimError(409, error.message, race ? undefined : 'uniqueness');
  }
  if (error instanceof NotFound) return new ScimError(404, error.message);
  if (error instanceof KubevisaError && error.status < 500) {
    return new ScimError(error.status, error.message, error.status === 400 ? 'invalidValue' : undefined);
  }
  return undefined;
}
