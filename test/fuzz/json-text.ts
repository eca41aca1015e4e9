/**
 * JSON text as an attacker writes it, for the properties in test/fuzz: objects may repeat keys and hold `__proto__`,
 * `constructor` or `prototype` as ordinary keys, which a JavaScript object literal cannot express but `JSON.parse`
 * (what every body parser of kubevisa ends in) turns into own properties. Built as text, then parsed.
 */
import fc from 'fast-check';
import { PROTOTYPE_KEYS } from './fuzz.ts';

/** Keys built to reach a prototype: the prototype keys and their dotted forms. */
export const POLLUTING_KEYS = [...PROTOTYPE_KEYS, '__proto__.role', 'constructor.prototype.x', 'toString.x'];
/** Keys that mean something somewhere in kubevisa's inputs. */
export const MEANINGFUL_KEYS = [
  'role',
  'revokedAt',
  'admin',
  'active',
  'userName',
  'value',
  'display',
  'schemas',
  'Operations',
  'op',
  'path',
  'members',
  'emails',
  'type',
  'primary',
  'name',
  'givenName',
  'externalId',
  'id',
  'meta',
  'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User',
];

/** Mostly meaningful keys, sometimes a polluting one (often enough that most runs of a property meet one). */
export const jsonKey = fc.oneof(
  { weight: 24, arbitrary: fc.constantFrom(...MEANINGFUL_KEYS) },
  { weight: 1, arbitrary: fc.constantFrom(...POLLUTING_KEYS) },
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }) },
);

const scalarText = fc.oneof(
  fc.string({ maxLength: 20 }).map((s) => JSON.stringify(s)),
  fc.constantFrom('true', 'false', 'null', '"True"', '"False"', '"admin"', '""', '0', '-1', '1e999', '1.5'),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
);

/** A JSON value as text, at most a few levels deep. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalarText, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
  object: fc
    .array(fc.tuple(jsonKey, tie('value')), { maxLength: 5 })
    .map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`),
})).value;

/** An object as text from (key, value-as-text) pairs, keys repeated or not. */
export function objectText(entries: readonly (readonly [string, string])[]): string {
  return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;
}

/** Every plain object and array reachable from `value` (itself included). */
export function nodesOf(value: unknown): object[] {
  const found: object[] = [];
  const pending = [value];
  while (pending.length > 0) {
    const current = pending.pop();
    if (typeof current !== 'object' || current === null) continue;
    found.push(current);
    pending.push(...(Array.isArray(current) ? current : Object.values(current)));
  }
  return found;
}
