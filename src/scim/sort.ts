/**
 * `sortBy` and `sortOrder` (RFC 7644 §3.4.2.3) on lists and searches. The attribute must be one the resources
 * have; a multi-valued attribute sorts by its primary value (else its first); strings compare as the filter does
 * (case-insensitively unless case-exact); resources without a value come last in ascending order (first in
 * descending), and ties keep a stable order by id, so that paging through a sorted list sees each resource once.
 */
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest } from './errors.ts';
import { bareName, CASE_EXACT, child, steps } from './filter.ts';
import { attributeAt, type ResourceKind } from './schema.ts';

export interface SortSpec {
  path: string[];
  caseExact: boolean;
  descending: boolean;
}

/**
 * Reads `sortBy` / `sortOrder`; undefined when there is nothing to sort by.
 * @throws ScimError 400 `invalidValue` for an unknown attribute or order.
 */
export function readSort(
  sortBy: string | undefined,
  sortOrder: string | undefined,
  kinds: readonly ResourceKind[],
): SortSpec | undefined {
  const order = sortOrder?.trim().toLowerCase();
  if (order !== undefined && order !== '' && order !== 'ascending' && order !== 'descending') {
    throw badRequest('invalidValue', `'sortOrder' is 'ascending' or 'descending', not '${sortOrder}'`);
  }
  if (sortBy === undefined || sortBy.trim() === '') return undefined;
  const bare = bareName(sortBy.trim());
  if (attributeAt(bare, kinds) === undefined) {
    throw badRequest(
      'invalidValue',
      `'sortBy' names '${sortBy}', which is not an attribute of ${kinds.join(' or ')} here: sort by userName, displayName, meta.lastModified…`,
    );
  }
  return { path: steps(bare), caseExact: CASE_EXACT.has(bare), descending: order === 'descending' };
}

type Key = string | number | boolean | undefined;

function keyOf(resource: JsonObject, spec: SortSpec): Key {
  let value: JsonValue | undefined = resource;
  for (const step of spec.path) {
    if (Array.isArray(value)) value = pick(value);
    value = child(value, step);
  }
  if (Array.isArray(value)) value = pick(value);
  if (typeof value === 'object' && value !== null) value = child(value, 'value');
  if (typeof value === 'string') return spec.caseExact ? value : value.toLowerCase();
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  return undefined;
}

/** The primary item of a multi-valued attribute, else its first. */
function pick(items: JsonValue[]): JsonValue | undefined {
  return items.find((item) => child(item, 'primary') === true) ?? items[0];
}

function compareKeys(a: Key, b: Key): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  if (typeof a !== typeof b) return typeof a < typeof b ? -1 : 1;
  return a < b ? -1 : 1;
}

/** A sorted copy; `resources` is left as it was. */
export function sortResources(resources: JsonObject[], spec: SortSpec | undefined): JsonObject[] {
  if (spec === undefined) return resources;
  const keyed = resources.map((resource) => ({ resource, key: keyOf(resource, spec), id: String(resource.id ?? '') }));
  keyed.sort((x, y) => {
    const byKey = compareKeys(x.key, y.key);
    if (byKey !== 0) return spec.descending ? -byKey : byKey;
    return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
  });
  return keyed.map((k) => k.resource);
}
