/**
 * Outside data and object prototypes. JSON from an identity provider, a config file or a client may carry keys
 * such as `__proto__`, `constructor` or `prototype`; code that walks such keys as a path (`a.b.c`) or merges
 * such objects can end up writing to `Object.prototype`, and from then on every object in the process "has"
 * the property (a mapping without `role` suddenly reads `role: 'admin'`). Two habits close that class:
 *
 * - refuse the names at the edge, before any code walks them ({@link isForbiddenName}, {@link findForbiddenKey});
 * - read optional fields of parsed input and records by own property only ({@link own}), so even a polluted
 *   prototype is never read as data.
 *
 * Every kubevisa process also runs with `--disable-proto=throw`, so a `__proto__` access fails loudly.
 */

/**
 * Names that must never be a key or a path segment of outside data: `Object.prototype`'s own properties and
 * `prototype`. None is a valid SCIM attribute name, a config field or an API field. Written out rather than read
 * from `Object.prototype` at run time, which `--disable-proto` changes.
 */
const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(
  [
    '__proto__',
    'constructor',
    'prototype',
    '__defineGetter__',
    '__defineSetter__',
    '__lookupGetter__',
    '__lookupSetter__',
    'hasOwnProperty',
    'isPrototypeOf',
    'propertyIsEnumerable',
    'toLocaleString',
    'toString',
    'valueOf',
  ].map((name) => name.toLowerCase()),
);

/**
 * Is `name`, or any of its segments (split at `.`, `:`, `[` and `]`, the separators of SCIM paths, dotted config
 * keys and URNs), one of the forbidden names? Compared case-insensitively: SCIM attribute names are
 * case-insensitive, so `Constructor` means `constructor` to any code that normalises case.
 */
export function isForbiddenName(name: string): boolean {
  return name.split(/[.:[\]]/).some((segment) => FORBIDDEN_NAMES.has(segment.trim().toLowerCase()));
}

/**
 * The JSON path (`$.Operations[0].value["__proto__.x"]`) of the first key in `value`, at any depth, that
 * {@link isForbiddenName} refuses; undefined when there is none. Iterative, so a deeply nested body cannot
 * exhaust the stack.
 */
export function findForbiddenKey(value: unknown, root = '$'): string | undefined {
  const pending: { value: unknown; path: string }[] = [{ value, path: root }];
  while (pending.length > 0) {
    const { value: current, path } = pending.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (Array.isArray(current)) {
      current.forEach((item, index) => pending.push({ value: item, path: `${path}[${index}]` }));
      continue;
    }
    for (const key of Object.keys(current)) {
      const keyPath = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
      if (isForbiddenName(key)) return keyPath;
      pending.push({ value: (current as Record<string, unknown>)[key], path: keyPath });
    }
  }
  return undefined;
}

/** `object[key]` when `object` has it as its own property; undefined otherwise (never an inherited value). */
export function own<T extends object, K extends keyof T & string>(object: T, key: K): T[K] | undefined {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/**
 * A deep copy of parsed input in which every plain object has no prototype, so reading a field that is not there
 * gives undefined even if `Object.prototype` was polluted. Arrays stay arrays; other objects (a YAML date) are
 * kept as they are.
 */
export function ownData(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(ownData);
  if (typeof value !== 'object' || value === null) return value;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;
  const copy = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value)) copy[key] = ownData((value as Record<string, unknown>)[key]);
  return copy;
}
