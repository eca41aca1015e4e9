/**
 * SCIM Bulk (RFC 7644 §3.7): many User and Group writes in one request. Bulk is never a way around a rule a
 * single request meets: every operation runs through the same ScimService call as its own request would (the
 * same identity provider, so the same ownership rules; the same body checks, which refuse prototype keys; its
 * own transaction and audit event, with `bulkId` in the audit details through the client), the whole payload is
 * bounded by the same body limit, and operations are bounded in number.
 *
 * Operations run one after the other, in order, except that one referring to a `bulkId:…` that a later
 * operation creates waits for it; references left unresolved (a cycle, or a creation that failed) fail with 409.
 * `failOnErrors` stops the run after that many failed operations; the answer lists the operations that ran.
 */
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest, ScimError, scimErrorBody, type ScimErrorBody } from './errors.ts';
import { BULK_REQUEST_SCHEMA, BULK_RESPONSE_SCHEMA } from './schema.ts';
import { toScimError, type ScimClient, type ScimService } from './service.ts';

/** Most operations one bulk request may carry (ServiceProviderConfig `bulk.maxOperations`). */
export const BULK_MAX_OPERATIONS = 1000;

type Method = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Operation {
  index: number;
  method: Method;
  bulkId?: string;
  version?: string;
  /** `/Users`, `/Groups`, `/Users/{id}` or `/Groups/{id}`, possibly with `bulkId:…` for the id. */
  path: string;
  data?: JsonValue;
}

export interface BulkOperationResult {
  method: Method;
  bulkId?: string;
  version?: string;
  location?: string;
  /** The HTTP status as a string, as RFC 7644 writes it. */
  status: string;
  response?: ScimErrorBody;
}

export interface BulkResponse {
  schemas: [typeof BULK_RESPONSE_SCHEMA];
  Operations: BulkOperationResult[];
}

export interface BulkOptions {
  service: ScimService;
  /** Failures an identity provider cannot act on (500s), for the server log. */
  onInternalError: (message: string, error: unknown) => void;
}

const BULK_ID = /^[A-Za-z0-9._~-]{1,128}$/;
const PATH = /^\/(Users|Groups)(?:\/([^/?#]+))?$/;
const REFERENCE = /^bulkId:(.+)$/;

function field(object: JsonObject, name: string): JsonValue | undefined {
  const key = Object.keys(object).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : object[key];
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks the whole request before any operation runs: a malformed operation anywhere means nothing changes.
 * @throws ScimError 400 `invalidSyntax` / `invalidValue`, 413 beyond BULK_MAX_OPERATIONS.
 */
export function readBulkRequest(body: unknown): { failOnErrors?: number; operations: Operation[] } {
  if (!isObject(body)) {
    throw badRequest(
      'invalidSyntax',
      `the body must be a BulkRequest: { "schemas": ["${BULK_REQUEST_SCHEMA}"], "Operations": [...] }`,
    );
  }
  const schemas = field(body, 'schemas');
  if (
    !Array.isArray(schemas) ||
    !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === BULK_REQUEST_SCHEMA.toLowerCase())
  ) {
    throw badRequest('invalidSyntax', `a bulk request must list '${BULK_REQUEST_SCHEMA}' in 'schemas'`);
  }
  const failOnErrors = field(body, 'failOnErrors');
  if (
    failOnErrors !== undefined &&
    (typeof failOnErrors !== 'number' || !Number.isInteger(failOnErrors) || failOnErrors < 1)
  ) {
    throw badRequest(
      'invalidValue',
      "'failOnErrors' must be a whole number of at least 1 (or absent: run every operation)",
    );
  }
  const list = field(body, 'Operations');
  if (!Array.isArray(list) || list.length === 0) {
    throw badRequest('invalidSyntax', "'Operations' must be a non-empty list of { method, path, bulkId, data }");
  }
  if (list.length > BULK_MAX_OPERATIONS) {
    throw new ScimError(
      413,
      `a bulk request carries at most ${BULK_MAX_OPERATIONS} operations, this one ${list.length}: split it`,
    );
  }
  const seen = new Set<string>();
  const operations = list.map((raw, index): Operation => {
    const where = `Operations[${index}]`;
    if (!isObject(raw)) throw badRequest('invalidSyntax', `${where} must be an object { method, path, bulkId, data }`);
    const method = String(field(raw, 'method') ?? '').toUpperCase();
    if (method !== 'POST' && method !== 'PUT' && method !== 'PATCH' && method !== 'DELETE') {
      throw badRequest('invalidValue', `${where}.method must be POST, PUT, PATCH or DELETE`);
    }
    const path = field(raw, 'path');
    const match = typeof path === 'string' ? PATH.exec(path) : null;
    if (typeof path !== 'string' || match === null) {
      throw badRequest('invalidValue', `${where}.path must be /Users, /Groups, /Users/ID or /Groups/ID`);
    }
    if ((method === 'POST') !== (match[2] === undefined)) {
      throw badRequest(
        'invalidValue',
        `${where}: ${method} goes to ${method === 'POST' ? '/Users or /Groups' : '/Users/ID or /Groups/ID'}`,
      );
    }
    const bulkId = field(raw, 'bulkId');
    if (bulkId !== undefined && (typeof bulkId !== 'string' || !BULK_ID.test(bulkId))) {
      throw badRequest('invalidValue', `${where}.bulkId must be 1 to 128 letters, digits or . _ ~ -`);
    }
    if (method === 'POST' && bulkId === undefined) throw badRequest('invalidValue', `${where}: a POST needs a bulkId`);
    if (typeof bulkId === 'string') {
      if (seen.has(bulkId)) throw badRequest('invalidValue', `${where}.bulkId '${bulkId}' is used twice`);
      seen.add(bulkId);
    }
    const version = field(raw, 'version');
    if (version !== undefined && typeof version !== 'string')
      throw badRequest('invalidValue', `${where}.version must be a string (an ETag)`);
    const data = field(raw, 'data');
    if (method !== 'DELETE' && !isObject(data))
      throw badRequest('invalidSyntax', `${where}.data must be the resource or PatchOp to send`);
    return {
      index,
      method,
      path,
      ...(typeof bulkId === 'string' ? { bulkId } : {}),
      ...(typeof version === 'string' ? { version } : {}),
      ...(data !== undefined ? { data } : {}),
    };
  });
  return { ...(typeof failOnErrors === 'number' ? { failOnErrors } : {}), operations };
}

/** Every `bulkId:…` an operation refers to, in its path and anywhere in its data. */
function referencesOf(operation: Operation): string[] {
  const found: string[] = [];
  const visit = (value: JsonValue | undefined): void => {
    if (typeof value === 'string') {
      const match = REFERENCE.exec(value);
      if (match) found.push(match[1]!);
    } else if (Array.isArray(value)) value.forEach(visit);
    else if (isObject(value)) Object.values(value).forEach(visit);
  };
  visit(operation.path.split('/')[2]);
  visit(operation.data);
  return found;
}

/** A copy with each `bulkId:…` replaced by the id its operation created. */
function resolved<T extends JsonValue | undefined>(value: T, ids: ReadonlyMap<string, string>): T {
  if (typeof value === 'string') {
    const match = REFERENCE.exec(value);
    return (match && ids.has(match[1]!) ? ids.get(match[1]!) : value) as T;
  }
  if (Array.isArray(value)) return value.map((item) => resolved(item, ids)) as T;
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolved(v, ids)])) as T;
  return value;
}

export async function runBulk(options: BulkOptions, caller: ScimClient, body: unknown): Promise<BulkResponse> {
  const { failOnErrors, operations } = readBulkRequest(body);
  const created = new Map<string, string>();
  const failedBulkIds = new Set<string>();
  const results = new Map<number, BulkOperationResult>();
  const creators = new Set(operations.flatMap((o) => (o.method === 'POST' && o.bulkId ? [o.bulkId] : [])));
  // Each operation's references are found once, and an operation is looked at again only when one of the
  // operations it waits for has finished: a megabyte of operations chained in reverse order costs one walk of
  // the payload, not one walk per operation that runs (which a SCIM token holder could turn into minutes of CPU).
  const references = new Map(operations.map((o) => [o.index, [...new Set(referencesOf(o))]]));
  const waitingFor = new Map<number, number>();
  const dependents = new Map<string, Operation[]>();
  const queued = new Set<number>();
  let ready: Operation[] = [];
  for (const operation of operations) {
    const refs = references.get(operation.index)!;
    for (const id of refs) {
      const list = dependents.get(id);
      if (list) list.push(operation);
      else dependents.set(id, [operation]);
    }
    const unresolved = refs.filter((id) => creators.has(id)).length;
    waitingFor.set(operation.index, unresolved);
    // One that names an unknown bulkId is failed right away, in its place in the request.
    if (unresolved === 0 || unresolved < refs.length) {
      ready.push(operation);
      queued.add(operation.index);
    }
  }
  let errors = 0;
  const stopped = (): boolean => failOnErrors !== undefined && errors >= failOnErrors;
  while (ready.length > 0 && !stopped()) {
    const next: Operation[] = [];
    const release = (bulkId: string, succeeded: boolean): void => {
      for (const dependent of dependents.get(bulkId) ?? []) {
        if (queued.has(dependent.index)) continue;
        const left = waitingFor.get(dependent.index)! - 1;
        waitingFor.set(dependent.index, left);
        if (!succeeded || left === 0) {
          next.push(dependent);
          queued.add(dependent.index);
        }
      }
    };
    for (const operation of ready) {
      if (stopped()) break;
      const unknown = references.get(operation.index)!.find((id) => !creators.has(id) || failedBulkIds.has(id));
      let result: BulkOperationResult;
      if (unknown !== undefined) {
        result = failure(
          operation,
          new ScimError(409, `bulkId '${unknown}' names no operation of this request that created a resource`),
        );
      } else {
        // Each operation is its own request to the service, audited as one, with where it came from.
        const client: ScimClient = {
          ...caller,
          bulk: { operation: operation.index, ...(operation.bulkId ? { bulkId: operation.bulkId } : {}) },
        };
        result = await runOne(options, client, operation, created);
      }
      results.set(operation.index, result);
      const failed = Number(result.status) >= 400;
      if (failed) errors += 1;
      if (operation.method === 'POST' && operation.bulkId) {
        if (failed) failedBulkIds.add(operation.bulkId);
        release(operation.bulkId, !failed);
      }
    }
    // Next round in the request's order, as a client reading the response expects.
    ready = next.sort((a, b) => a.index - b.index);
  }
  if (!stopped()) {
    // What never became ready refers to each other in a cycle: none of it can run.
    for (const operation of operations) {
      if (queued.has(operation.index)) continue;
      results.set(
        operation.index,
        failure(
          operation,
          new ScimError(
            409,
            `the bulkId references of this operation form a cycle with others: ${references.get(operation.index)!.join(', ')}`,
          ),
        ),
      );
      errors += 1;
    }
  }
  return {
    schemas: [BULK_RESPONSE_SCHEMA],
    Operations: [...results.entries()].sort(([a], [b]) => a - b).map(([, r]) => r),
  };
}

function failure(operation: Operation, error: ScimError): BulkOperationResult {
  return {
    method: operation.method,
    ...(operation.bulkId ? { bulkId: operation.bulkId } : {}),
    status: String(error.status),
    response: scimErrorBody(error.status, error.message, error.scimType),
  };
}

async function runOne(
  options: BulkOptions,
  client: ScimClient,
  operation: Operation,
  created: Map<string, string>,
): Promise<BulkOperationResult> {
  const { service } = options;
  const [, type, id] = PATH.exec(resolved(operation.path, created))!;
  const data = resolved(operation.data, created);
  const users = type === 'Users';
  const done = (status: number, resource?: JsonObject | { id: string; version: number }): BulkOperationResult => {
    const meta =
      resource && 'meta' in resource ? (resource.meta as { location?: string; version?: string }) : undefined;
    const location = meta?.location ?? (id !== undefined ? `${service.baseUrl}/${type}/${id}` : undefined);
    const version =
      meta?.version ?? (resource && typeof resource.version === 'number' ? `W/"${resource.version}"` : undefined);
    return {
      method: operation.method,
      ...(operation.bulkId ? { bulkId: operation.bulkId } : {}),
      ...(version !== undefined ? { version } : {}),
      ...(location !== undefined && operation.method !== 'DELETE' ? { location } : {}),
      status: String(status),
    };
  };
  try {
    switch (operation.method) {
      case 'POST': {
        const resource = users ? await service.createUser(client, data) : await service.createGroup(client, data);
        created.set(operation.bulkId!, String(resource.id));
        return done(201, resource);
      }
      case 'PUT':
        return done(
          200,
          users
            ? await service.replaceUser(client, id!, data, operation.version)
            : await service.replaceGroup(client, id!, data, operation.version),
        );
      case 'PATCH':
        return users
          ? done(200, await service.patchUser(client, id!, data, operation.version))
          : done(204, await service.patchGroup(client, id!, data, operation.version));
      case 'DELETE':
        if (users) await service.deleteUser(client, id!, operation.version);
        else await service.deleteGroup(client, id!, operation.version);
        return done(204);
    }
  } catch (error) {
    const known = toScimError(error);
    if (known) return failure(operation, known);
    options.onInternalError(`bulk operation ${operation.index} (${operation.method} ${operation.path}) failed`, error);
    return failure(operation, new ScimError(500, 'internal error: the kubevisa server log has the details'));
  }
}
