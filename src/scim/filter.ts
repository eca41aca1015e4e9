/**
 * SCIM filters (RFC 7644 §3.4.2.2). Parsing is scim2-parse-filter's; evaluation is here because it must know
 * the schema: string comparisons are case-insensitive except for case-exact attributes (`id`, `externalId`,
 * member and group ids), attribute names match case-insensitively, a path may carry its schema URN, and a
 * complex multi-valued attribute compared directly (`members eq "id"`, `emails co "@x"`) means its `value`.
 */
import { parse, type Filter } from 'scim2-parse-filter';
import { foldsIntoAscii } from '../domain/case-folding.ts';
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest } from './errors.ts';
import { attributeAt, GROUP_SCHEMA, USER_SCHEMA, type Attribute, type ResourceKind } from './schema.ts';

/** Longest filter accepted, in characters: a filter is a query, not a program. */
export const MAX_FILTER_LENGTH = 4096;

/** Attribute paths (lower-cased, without schema URN) compared exactly. */
export const CASE_EXACT: ReadonlySet<string> = new Set([
  'id',
  'externalid',
  'members.value',
  'groups.value',
  'meta.version',
]);

export type ScimPredicate = (resource: JsonObject) => boolean;

export interface ParsedFilter {
  predicate: ScimPredicate;
  /** Set when the whole filter is `ATTR eq "value"` on one attribute, so the caller can use an index. */
  equality?: { attribute: string; value: string };
}

/**
 * Parses and compiles a filter over resources of `kinds` (default both: a search at the root). Every attribute it
 * names must be one of theirs, and each comparison one RFC 7644 allows on its type. `'any'` skips that check: a
 * PATCH value path addresses whatever attributes the stored resource holds (patch.ts checks those names itself).
 * @throws ScimError 400 `invalidFilter` naming what is wrong.
 */
export function parseFilter(text: string, kinds: readonly ResourceKind[] | 'any' = ['User', 'Group']): ParsedFilter {
  if (text.length > MAX_FILTER_LENGTH) {
    throw badRequest('invalidFilter', `the filter is longer than ${MAX_FILTER_LENGTH} characters`);
  }
  let ast: Filter;
  try {
    ast = parse(text);
  } catch (error) {
    throw badRequest(
      'invalidFilter',
      `cannot parse the filter ${JSON.stringify(text)}: ${(error as Error).message}. ` +
        'Use RFC 7644 syntax, e.g. userName eq "ana@example.com" or externalId eq "00u1" and active eq true',
    );
  }
  if (kinds !== 'any') checkAttributes(ast, kinds, undefined);
  const predicate = (resource: JsonObject) => evaluate(ast, resource, '');
  if (ast.op === 'eq' && 'compValue' in ast && typeof ast.compValue === 'string') {
    return { predicate, equality: { attribute: bareName(ast.attrPath), value: ast.compValue } };
  }
  return { predicate };
}

/** ATTRNAME with at most one subAttr (RFC 7644 §3.10, figure 1); `$ref` is a sub-attribute SCIM itself defines. */
const ATTRIBUTE_PATH = /^[a-z][a-z0-9_-]*(?:\.(?:[a-z][a-z0-9_-]*|\$ref))?$/;
const ORDERING = new Set(['gt', 'ge', 'lt', 'le']);

function invalidFilter(message: string) {
  return badRequest('invalidFilter', message);
}

/**
 * Refuses a filter on an attribute the resources do not have (a typo such as `usrName eq "x"` must not silently
 * match nothing, and `1 eq 1` is not a filter at all), a value path on an attribute that is not a multi-valued
 * complex one, and `gt`/`ge`/`lt`/`le` on a boolean (RFC 7644 §3.4.2.2).
 */
function checkAttributes(filter: Filter, kinds: readonly ResourceKind[], parent: string | undefined): void {
  switch (filter.op) {
    case 'and':
    case 'or':
      for (const f of filter.filters) checkAttributes(f, kinds, parent);
      return;
    case 'not':
      checkAttributes(filter.filter, kinds, parent);
      return;
    case '[]': {
      const { path, attribute } = knownAttribute(filter.attrPath, kinds, parent);
      if (parent !== undefined || attribute === 'common' || !attribute.multiValued || attribute.type !== 'complex') {
        throw invalidFilter(
          `'${filter.attrPath}[…]' filters the values of a multi-valued attribute, which '${filter.attrPath}' is not here; e.g. emails[type eq "work"] or members[value eq "ID"]`,
        );
      }
      checkAttributes(filter.valFilter, kinds, path);
      return;
    }
    case 'pr':
      knownAttribute(filter.attrPath, kinds, parent);
      return;
    default: {
      const { attribute } = knownAttribute(filter.attrPath, kinds, parent);
      if (ORDERING.has(filter.op) && attribute !== 'common' && attribute.type === 'boolean') {
        throw invalidFilter(`'${filter.attrPath}' is a boolean: compare it with eq or ne, not ${filter.op}`);
      }
    }
  }
}

function knownAttribute(
  attrPath: unknown,
  kinds: readonly ResourceKind[],
  parent: string | undefined,
): { path: string; attribute: Attribute | 'common' } {
  const text = String(attrPath);
  const bare = bareName(text);
  const cut = bare.startsWith('urn:') ? bare.lastIndexOf(':') + 1 : 0;
  const local = bare.slice(cut);
  if (typeof attrPath !== 'string' || !ATTRIBUTE_PATH.test(local)) {
    throw invalidFilter(
      `${JSON.stringify(text)} is not an attribute name: a filter compares an attribute with a value, e.g. userName eq "ana@example.com"`,
    );
  }
  const path = parent === undefined ? bare : `${parent}.${bare}`;
  const attribute = attributeAt(path, kinds);
  if (attribute === undefined) {
    throw invalidFilter(
      `'${parent === undefined ? text : `${parent}[${text}]`}' is not an attribute of ${kinds.join(' or ')} here: GET /Schemas lists them (userName, externalId, emails.value, displayName, members.value…)`,
    );
  }
  return { path, attribute };
}

/** `urn:…:User:userName` → `username`; extension paths keep their URN. Lower-cased. */
export function bareName(path: string): string {
  const lower = path.toLowerCase();
  for (const core of [USER_SCHEMA, GROUP_SCHEMA]) {
    const prefix = `${core.toLowerCase()}:`;
    if (lower.startsWith(prefix)) return lower.slice(prefix.length);
  }
  return lower;
}

/** Splits a path into its steps; an extension URN is one step (`urn:…:User`, then `department`). */
export function steps(path: string): string[] {
  const bare = bareName(path);
  if (bare.startsWith('urn:')) {
    const cut = bare.lastIndexOf(':');
    return [bare.slice(0, cut), ...bare.slice(cut + 1).split('.')];
  }
  return bare.split('.');
}

export function child(value: JsonValue | undefined, name: string): JsonValue | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const key = Object.keys(value).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : value[key];
}

/** Every value the path reaches (multi-valued attributes fan out). */
function resolve(resource: JsonValue, path: string[]): JsonValue[] {
  let current: JsonValue[] = [resource];
  for (const step of path) {
    const next: JsonValue[] = [];
    for (const value of current) {
      const items = Array.isArray(value) ? value : [value];
      for (const item of items) {
        const found = child(item, step);
        if (found === undefined || found === null) continue;
        if (Array.isArray(found)) next.push(...found);
        else next.push(found);
      }
    }
    current = next;
  }
  // A complex value compared directly stands for its `value` sub-attribute.
  return current.map((value) => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return child(value, 'value') ?? value;
    return value;
  });
}

type Scalar = string | number | boolean | null;

function compare(op: string, actual: JsonValue, expected: Scalar, caseExact: boolean): boolean {
  if (typeof actual === 'object' && actual !== null) return false;
  let a: Scalar = actual;
  let e: Scalar = expected;
  // Lower-cased, `\u212Aate@…` (the Kelvin sign) would equal kate@…: a value holding such a character is compared
  // exactly, as domain/roles.ts compares group names (an IdP looking up a user it cannot create is told none exists).
  if (typeof a === 'string' && typeof e === 'string' && !caseExact && !foldsIntoAscii(a) && !foldsIntoAscii(e)) {
    a = a.toLowerCase();
    e = e.toLowerCase();
  }
  switch (op) {
    case 'eq':
      return a === e;
    case 'ne':
      return a !== e;
    case 'co':
      return typeof a === 'string' && typeof e === 'string' && a.includes(e);
    case 'sw':
      return typeof a === 'string' && typeof e === 'string' && a.startsWith(e);
    case 'ew':
      return typeof a === 'string' && typeof e === 'string' && a.endsWith(e);
    case 'gt':
      return e !== null && a !== null && typeof a === typeof e && a > e;
    case 'ge':
      return e !== null && a !== null && typeof a === typeof e && a >= e;
    case 'lt':
      return e !== null && a !== null && typeof a === typeof e && a < e;
    case 'le':
      return e !== null && a !== null && typeof a === typeof e && a <= e;
    default:
      return false;
  }
}

/** `prefix` is the parent attribute inside a value path (`members[value eq "x"]` → `members.`). */
function evaluate(filter: Filter, resource: JsonValue, prefix: string): boolean {
  switch (filter.op) {
    case 'and':
      return filter.filters.every((f) => evaluate(f, resource, prefix));
    case 'or':
      return filter.filters.some((f) => evaluate(f, resource, prefix));
    case 'not':
      return !evaluate(filter.filter, resource, prefix);
    case '[]': {
      const path = steps(filter.attrPath);
      const parent = `${prefix}${path.join('.')}.`;
      let items: JsonValue[] = [resource];
      for (const step of path) {
        items = items.flatMap((item) => {
          const found = child(item, step);
          if (found === undefined || found === null) return [];
          return Array.isArray(found) ? found : [found];
        });
      }
      return items.some((item) => evaluate(filter.valFilter, item, parent));
    }
    case 'pr': {
      const values = resolve(resource, steps(filter.attrPath));
      return values.some((v) => v !== '' && !(Array.isArray(v) && v.length === 0));
    }
    default: {
      const path = steps(filter.attrPath);
      const caseExact = CASE_EXACT.has(`${prefix}${path.join('.')}`);
      const values = resolve(resource, path);
      // `ne` on an absent attribute is true: nothing there equals the value.
      if (values.length === 0) return filter.op === 'ne';
      if (filter.op === 'ne') return values.every((v) => compare('ne', v, filter.compValue, caseExact));
      return values.some((v) => compare(filter.op, v, filter.compValue, caseExact));
    }
  }
}
