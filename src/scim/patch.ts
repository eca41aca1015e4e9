/**
 * SCIM PATCH (RFC 7644 §3.5.2), kubevisa's own: add, replace and remove on attribute paths (`title`,
 * `name.givenName`, `urn:…:enterprise:2.0:User:department`), on value paths with a filter
 * (`members[value eq "ID"]`, `emails[type eq "work"].value`) and, without a path, with an object of attributes.
 *
 * Why not a library: a PATCH path is a walk, chosen by the identity provider, into an object. The general-purpose
 * patcher kubevisa used walked `__proto__.role` and `constructor.prototype.x` straight into `Object.prototype`.
 * Here every path is parsed against the RFC grammar before anything is applied, names such as `__proto__`,
 * `constructor` or `toString` are refused (`invalidPath` in a path, `invalidValue` as a key inside a value), and
 * the walk reads and writes only own properties of a working copy made of prototype-less objects, so even a path
 * that slipped through could not reach a prototype.
 *
 * What real identity providers send is taken as they send it:
 * - Okta: `{"op":"replace","value":{"active":false}}` (no path, an object of attributes), and group membership
 *   as `{"op":"remove","path":"members[value eq \"ID\"]"}`.
 * - Microsoft Entra ID: capitalised ops (`"Replace"`, `"Add"`, `"Remove"`), booleans as strings
 *   (`{"op":"Replace","path":"active","value":"False"}`: resources.ts reads them), member removal as
 *   `{"op":"Remove","path":"members","value":[{"value":"ID"}]}`, and `Replace` of
 *   `emails[type eq "work"].value` for a user who has no work email yet (added, as RFC 7644 says for a missing
 *   attribute).
 * Attribute names compare case-insensitively (RFC 7643 §2.1); an existing attribute keeps the case it was
 * stored with.
 *
 * The patched resource is then read again like a PUT body (resources.ts), so a PATCH can never store what a PUT
 * would refuse.
 */
import { findForbiddenKey, isForbiddenName } from '../domain/own.ts';
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest, ScimError } from './errors.ts';
import { parseFilter } from './filter.ts';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from './schema.ts';

/** Most operations one PATCH may carry. */
export const MAX_PATCH_OPERATIONS = 1000;
/** Longest path accepted, in characters (a filter inside a path is a query, not a program). */
export const MAX_PATH_LENGTH = 1024;

export interface PatchOperation {
  op: 'add' | 'replace' | 'remove';
  path?: string;
  value?: JsonValue;
}

/** A parsed PATH (RFC 7644 §3.5.2: `attrPath / valuePath [subAttr]`). */
interface PatchPath {
  /** The extension schema URN the attribute belongs to; undefined for a core attribute. */
  extension?: string;
  /** The attribute name, or the extension URN itself when the path names a whole extension. */
  attribute: string;
  filter?: ValueFilter;
  subAttribute?: string;
}

interface ValueFilter {
  text: string;
  matches(item: JsonValue): boolean;
  /** For `attr eq VALUE`: what a value created for a missing target starts with. */
  equality?: { attribute: string; value: string | number | boolean };
}

/** Objects of the working copy: no prototype, so no walk can reach one. */
type Node = { [key: string]: JsonValue };

const ATTRIBUTE_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const CORE_SCHEMAS = [USER_SCHEMA, GROUP_SCHEMA].map((urn) => urn.toLowerCase());
const EQUALITY = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s+eq\s+("(?:[^"\\]|\\.)*"|true|false|-?\d+(?:\.\d+)?)\s*$/i;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The own key of `object` that is `name` compared case-insensitively. */
function keyOf(object: Node, name: string): string | undefined {
  const wanted = name.toLowerCase();
  return Object.keys(object).find((key) => key.toLowerCase() === wanted);
}

function field(object: Node, name: string): JsonValue | undefined {
  const key = keyOf(object, name);
  return key === undefined ? undefined : object[key];
}

function emptyNode(): Node {
  return Object.create(null) as Node;
}

/** A deep copy made of prototype-less objects. */
function working(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(working);
  if (!isObject(value)) return value;
  const copy = emptyNode();
  for (const key of Object.keys(value)) copy[key] = working(value[key]!);
  return copy;
}

/** Back to ordinary objects, with own data properties only. */
function plain(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(plain);
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.keys(value).map((key) => [key, plain(value[key]!)]));
}

function deepEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]!));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k]!, b[k]!));
}

function invalidPath(where: string, path: string, problem: string): ScimError {
  return badRequest(
    'invalidPath',
    `${where} '${path}' ${problem}; use an attribute path such as 'title', 'name.givenName', ` +
      `'emails[type eq "work"].value' or 'members[value eq "ID"]'`,
  );
}

function checkName(name: string, where: string, path: string): void {
  if (isForbiddenName(name)) {
    throw invalidPath(where, path, `names '${name}', which is not a SCIM attribute and is never accepted`);
  }
  if (!ATTRIBUTE_NAME.test(name) && name !== '$ref') {
    throw invalidPath(
      where,
      path,
      `holds '${name}', which is not an attribute name (a letter, then letters, digits, '-' or '_')`,
    );
  }
}

/** A schema URN is not an attribute name, but none of its segments may name a prototype property either. */
function refuseForbiddenUrn(urn: string, where: string, path: string): void {
  const segment = urn.split(':').find((part) => isForbiddenName(part));
  if (segment !== undefined) checkName(segment, where, path);
}

/** Extension URNs a path may name as a whole: the enterprise one and any the resource carries or declares. */
function extensionsOf(resource: Node): string[] {
  const declared = field(resource, 'schemas');
  return [
    ENTERPRISE_USER_SCHEMA,
    ...Object.keys(resource).filter((key) => /^urn:/i.test(key)),
    ...(Array.isArray(declared) ? declared.filter((s): s is string => typeof s === 'string') : []),
  ].filter((urn) => !CORE_SCHEMAS.includes(urn.toLowerCase()));
}

/** A filter's comparison value: a JSON string or number, or a boolean in any case. */
function literal(text: string): string | number | boolean {
  if (/^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
  return JSON.parse(text) as string | number;
}

function parseValueFilter(text: string, attributePath: string, where: string, path: string): ValueFilter {
  let predicate: (resource: JsonObject) => boolean;
  try {
    // The whole value path is itself a filter expression: evaluated on a one-item wrapper, it keeps the filter's
    // case rules (member ids compare exactly, other strings case-insensitively).
    predicate = parseFilter(`${attributePath}[${text}]`, 'any').predicate;
  } catch (error) {
    throw invalidPath(where, path, `has a filter that does not parse (${(error as Error).message})`);
  }
  for (const name of text.match(/[A-Za-z_$][\w$-]*(?=\s+(?:eq|ne|co|sw|ew|gt|ge|lt|le|pr)\b)/gi) ?? []) {
    checkName(name, where, path);
  }
  const steps = attributePath.toLowerCase().startsWith('urn:')
    ? [attributePath.slice(0, attributePath.lastIndexOf(':')), attributePath.slice(attributePath.lastIndexOf(':') + 1)]
    : [attributePath];
  const wrap = (item: JsonValue): JsonObject =>
    steps.reduceRight<JsonValue>((inner, step) => Object.fromEntries([[step, inner]]), [item]) as JsonObject;
  const equality = EQUALITY.exec(text);
  return {
    text,
    matches: (item) => predicate(wrap(item)),
    ...(equality ? { equality: { attribute: equality[1]!, value: literal(equality[2]!) } } : {}),
  };
}

/**
 * Parses a PATCH path (or an attribute key of a value without a path, where filters are not allowed).
 * @throws ScimError 400 `invalidPath`.
 */
function parsePath(path: string, extensions: readonly string[], where: string, allowFilter = true): PatchPath {
  if (path.length > MAX_PATH_LENGTH)
    throw invalidPath(where, path.slice(0, 40), `is longer than ${MAX_PATH_LENGTH} characters`);
  let head = path.trim();
  let filterText: string | undefined;
  let tail: string | undefined;
  const open = head.indexOf('[');
  if (open >= 0) {
    const close = head.lastIndexOf(']');
    if (!allowFilter) throw invalidPath(where, path, 'is an attribute key and cannot carry a [filter]');
    if (close < open) throw invalidPath(where, path, "opens a filter with '[' that is never closed");
    const after = head.slice(close + 1);
    if (after !== '' && !after.startsWith('.'))
      throw invalidPath(where, path, "has text after ']' that is not '.subAttribute'");
    filterText = head.slice(open + 1, close);
    tail = after === '' ? undefined : after.slice(1);
    head = head.slice(0, open);
  } else if (head.includes(']')) {
    throw invalidPath(where, path, "closes a filter with ']' that was never opened");
  }

  let extension: string | undefined;
  let names = head;
  if (/^urn:/i.test(head)) {
    const whole = extensions.find((urn) => urn.toLowerCase() === head.toLowerCase());
    if (whole !== undefined) {
      if (filterText !== undefined)
        throw invalidPath(where, path, 'filters a whole extension, which is not multi-valued');
      refuseForbiddenUrn(whole, where, path);
      return { attribute: whole };
    }
    const cut = head.lastIndexOf(':');
    const urn = head.slice(0, cut);
    refuseForbiddenUrn(urn, where, path);
    names = head.slice(cut + 1);
    if (!CORE_SCHEMAS.includes(urn.toLowerCase())) {
      extension = extensions.find((known) => known.toLowerCase() === urn.toLowerCase()) ?? urn;
    }
  }
  const parts = names.split('.');
  for (const part of [...parts, ...(tail === undefined ? [] : [tail])]) checkName(part, where, path);
  if (parts.length > 2) throw invalidPath(where, path, 'goes deeper than attribute.subAttribute');
  if (filterText !== undefined && parts.length > 1) {
    throw invalidPath(where, path, 'filters a sub-attribute; a [filter] follows a multi-valued attribute');
  }
  const attribute = parts[0]!;
  const subAttribute = parts.length === 2 ? parts[1] : tail;
  const filter =
    filterText === undefined
      ? undefined
      : parseValueFilter(filterText, extension === undefined ? attribute : `${extension}:${attribute}`, where, path);
  return {
    ...(extension !== undefined ? { extension } : {}),
    attribute,
    ...(filter !== undefined ? { filter } : {}),
    ...(subAttribute !== undefined ? { subAttribute } : {}),
  };
}

/**
 * Checks a PatchOp body and returns its operations with lower-case ops. Every path is parsed here, so a
 * malformed one is refused before anything is read or written.
 * @throws ScimError 400 `invalidSyntax` / `invalidPath` / `invalidValue` / `noTarget`.
 */
export function readPatch(body: unknown): PatchOperation[] {
  if (!isObject(body)) throw badRequest('invalidSyntax', 'the body must be a JSON object (a SCIM PatchOp)');
  const forbidden = findForbiddenKey(body);
  if (forbidden !== undefined) {
    throw badRequest(
      'invalidValue',
      `the body holds the key ${forbidden}, which is not a SCIM attribute and is never accepted`,
    );
  }
  const document = body as Node;
  const schemas = field(document, 'schemas');
  if (!Array.isArray(schemas) || !schemas.includes(PATCH_OP_SCHEMA)) {
    throw badRequest('invalidSyntax', `a PATCH body must list '${PATCH_OP_SCHEMA}' in 'schemas'`);
  }
  const operations = field(document, 'Operations');
  if (!Array.isArray(operations) || operations.length === 0) {
    throw badRequest('invalidSyntax', "a PATCH body needs 'Operations': a non-empty list of { op, path, value }");
  }
  if (operations.length > MAX_PATCH_OPERATIONS) {
    throw badRequest('invalidValue', `a PATCH may carry at most ${MAX_PATCH_OPERATIONS} operations`);
  }
  return operations.map((raw, index): PatchOperation => {
    const where = `Operations[${index}]`;
    if (!isObject(raw)) throw badRequest('invalidSyntax', `${where} must be an object { op, path, value }`);
    const rawOp = field(raw, 'op');
    const op = typeof rawOp === 'string' ? rawOp.toLowerCase() : '';
    if (op !== 'add' && op !== 'replace' && op !== 'remove') {
      throw badRequest('invalidSyntax', `${where}.op must be add, replace or remove, not ${JSON.stringify(rawOp)}`);
    }
    const path = field(raw, 'path');
    const hasValue = keyOf(raw, 'value') !== undefined;
    const value = field(raw, 'value');
    if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
      throw badRequest('invalidPath', `${where}.path must be a non-empty string`);
    }
    if (op === 'remove' && path === undefined) {
      throw badRequest('noTarget', `${where} is a remove without a path: say what to remove`);
    }
    if (op !== 'remove' && !hasValue) throw badRequest('invalidValue', `${where} is an ${op} without a value`);
    if (path !== undefined) {
      parsePath(path, [ENTERPRISE_USER_SCHEMA], `${where}.path`);
    } else {
      if (!isObject(value)) {
        throw badRequest(
          'invalidValue',
          `${where} is an ${op} without a path: its value must be an object of attributes, such as {"active": false}`,
        );
      }
      for (const key of Object.keys(value)) parsePath(key, [ENTERPRISE_USER_SCHEMA], `${where}.value key`, false);
    }
    return { op, ...(path !== undefined ? { path } : {}), ...(hasValue ? { value: value ?? null } : {}) };
  });
}

/**
 * Applies the operations to `resource` (not mutated) and returns the result, built of own data properties only.
 * @throws ScimError 400 `invalidPath` / `invalidValue` / `noTarget` naming the operation.
 */
export function applyPatch(resource: JsonObject, operations: readonly PatchOperation[]): JsonObject {
  const document = working(resource) as Node;
  operations.forEach((operation, index) => {
    const where = `Operations[${index}]`;
    if (operation.path !== undefined) {
      apply(document, parsePath(operation.path, extensionsOf(document), `${where}.path`), operation, where);
      return;
    }
    const value = operation.value;
    if (operation.op === 'remove' || !isObject(value)) {
      throw badRequest('invalidValue', `${where} without a path must be an add or replace of an object of attributes`);
    }
    for (const key of Object.keys(value)) {
      const path = parsePath(key, extensionsOf(document), `${where}.value key`, false);
      apply(document, path, { op: operation.op, value: value[key]! }, where);
    }
  });
  return plain(document) as JsonObject;
}

/** The object an attribute lives in: the resource, or its extension object (made when an add needs it). */
function holderOf(document: Node, path: PatchPath, create: boolean): Node | undefined {
  if (path.extension === undefined) return document;
  const key = keyOf(document, path.extension);
  const existing = key === undefined ? undefined : document[key];
  if (isObject(existing)) return existing;
  if (!create) return undefined;
  const made = emptyNode();
  document[key ?? path.extension] = made;
  return made;
}

function apply(document: Node, path: PatchPath, operation: Omit<PatchOperation, 'path'>, where: string): void {
  const holder = holderOf(document, path, operation.op !== 'remove');
  if (holder === undefined) return;
  const key = keyOf(holder, path.attribute);
  const name = key ?? path.attribute;
  const current = key === undefined ? undefined : holder[key];
  if (path.filter !== undefined) {
    applyFiltered(holder, name, current, path.filter, path.subAttribute, operation, where);
    return;
  }
  if (path.subAttribute !== undefined) {
    if (current === undefined || current === null) {
      if (operation.op === 'remove') return;
      const made = emptyNode();
      made[path.subAttribute] = working(operation.value ?? null);
      holder[name] = made;
      return;
    }
    const targets = Array.isArray(current) ? current.filter(isObject) : isObject(current) ? [current] : undefined;
    if (targets === undefined) {
      throw badRequest(
        'invalidPath',
        `${where}: '${name}' is a simple attribute and has no sub-attribute '${path.subAttribute}'`,
      );
    }
    for (const target of targets) applyToAttribute(target, path.subAttribute, operation, where);
    return;
  }
  applyToAttribute(holder, path.attribute, operation, where);
  if (Array.isArray(holder[name]) && (holder[name] as JsonValue[]).length === 0 && operation.op === 'remove') {
    delete holder[name];
  }
}

/** add, replace or remove of one attribute (or sub-attribute) of `holder`, without a filter. */
function applyToAttribute(holder: Node, attribute: string, operation: Omit<PatchOperation, 'path'>, where: string) {
  const key = keyOf(holder, attribute);
  const name = key ?? attribute;
  const current = key === undefined ? undefined : holder[key];
  switch (operation.op) {
    case 'add':
      holder[name] = added(current, operation.value ?? null, name, where);
      return;
    case 'replace':
      holder[name] = replaced(current, operation.value ?? null);
      return;
    case 'remove':
      if (key === undefined) return;
      if (operation.value !== undefined && Array.isArray(current)) {
        holder[key] = withoutValues(current, operation.value, key, where);
      } else {
        delete holder[key];
      }
  }
}

/** RFC 7644 §3.5.2.1: a multi-valued attribute gains values (each once), a complex one gains sub-attributes. */
function added(current: JsonValue | undefined, value: JsonValue, name: string, where: string): JsonValue {
  const incoming = working(value);
  if (Array.isArray(current)) {
    const result = [...current];
    for (const item of Array.isArray(incoming) ? incoming : [incoming]) {
      if (!result.some((existing) => sameValue(existing, item, name))) result.push(item);
    }
    return result;
  }
  if (isObject(current)) {
    if (!isObject(incoming)) {
      throw badRequest('invalidValue', `${where}: '${name}' is complex: add an object of its sub-attributes`);
    }
    return merged(current, incoming);
  }
  return incoming;
}

/**
 * RFC 7644 §3.5.2.3: a multi-valued attribute is replaced as a whole, a complex one has the given sub-attributes
 * replaced (the others stay), anything else takes the new value.
 */
function replaced(current: JsonValue | undefined, value: JsonValue): JsonValue {
  const incoming = working(value);
  if (Array.isArray(current)) return Array.isArray(incoming) ? incoming : [incoming];
  if (isObject(current) && isObject(incoming)) return merged(current, incoming);
  return incoming;
}

function merged(current: JsonObject, incoming: JsonObject): Node {
  const result = emptyNode();
  for (const key of Object.keys(current)) result[key] = current[key]!;
  for (const key of Object.keys(incoming)) result[keyOf(result, key) ?? key] = incoming[key]!;
  return result;
}

/** A group's members are the same member when their ids are; any other value only when equal throughout. */
function sameValue(a: JsonValue, b: JsonValue, attribute: string): boolean {
  if (deepEqual(a, b)) return true;
  if (attribute.toLowerCase() !== 'members' || !isObject(a) || !isObject(b)) return false;
  const id = field(a, 'value');
  return typeof id === 'string' && id === field(b, 'value');
}

/** The `value` a multi-valued entry stands for (`{ value: ID }` or the bare ID). */
function valueOf(item: JsonValue): JsonValue | undefined {
  return isObject(item) ? field(item, 'value') : item;
}

/**
 * A remove with a value list (Entra ID's member removal): entries with the same `value` go, whatever other
 * sub-attributes either side carries (IdPs add `display` or `$ref: null` to some and not to others).
 */
function withoutValues(current: JsonValue[], value: JsonValue, name: string, where: string): JsonValue[] {
  const removals = (Array.isArray(value) ? value : [value]).map(working);
  const members = name.toLowerCase() === 'members';
  for (const removal of removals) {
    if (members && typeof valueOf(removal) !== 'string') {
      throw badRequest('invalidValue', `${where}: a member to remove must be { "value": USER_ID }`);
    }
  }
  return current.filter(
    (item) =>
      !removals.some((removal) => {
        const wanted = valueOf(removal);
        return deepEqual(item, removal) || (wanted !== undefined && wanted !== null && wanted === valueOf(item));
      }),
  );
}

function applyFiltered(
  holder: Node,
  name: string,
  current: JsonValue | undefined,
  filter: ValueFilter,
  subAttribute: string | undefined,
  operation: Omit<PatchOperation, 'path'>,
  where: string,
): void {
  if (current !== undefined && current !== null && !Array.isArray(current)) {
    throw badRequest(
      'invalidPath',
      `${where}: '${name}' is not multi-valued, so it cannot be filtered with [${filter.text}]`,
    );
  }
  const items = current ?? [];
  const matching = new Set(items.filter((item) => filter.matches(item)));
  if (operation.op === 'remove') {
    if (matching.size === 0) return;
    if (subAttribute === undefined) {
      const rest = items.filter((item) => !matching.has(item));
      if (rest.length === 0) delete holder[name];
      else holder[name] = rest;
      return;
    }
    for (const item of matching) if (isObject(item)) applyToAttribute(item, subAttribute, operation, where);
    return;
  }
  if (matching.size === 0) {
    // Entra ID replaces `emails[type eq "work"].value` of a user who has no work email: add the entry the
    // filter describes (RFC 7644: a missing target of a replace is treated as an add).
    const value = working(operation.value ?? null);
    if (filter.equality === undefined || (subAttribute === undefined && !isObject(value))) {
      throw badRequest('noTarget', `${where}: no value of '${name}' matches [${filter.text}]`);
    }
    const made = emptyNode();
    made[filter.equality.attribute] = filter.equality.value;
    if (subAttribute !== undefined) made[subAttribute] = value;
    else for (const key of Object.keys(value as Node)) made[key] = (value as Node)[key]!;
    holder[name] = [...items, made];
    return;
  }
  holder[name] = items.map((item) => {
    if (!matching.has(item)) return item;
    if (subAttribute !== undefined) {
      if (!isObject(item)) {
        throw badRequest('invalidPath', `${where}: the values of '${name}' have no sub-attribute '${subAttribute}'`);
      }
      applyToAttribute(item, subAttribute, operation, where);
      return item;
    }
    return operation.op === 'add'
      ? added(item, operation.value ?? null, name, where)
      : replaced(item, operation.value ?? null);
  });
}
