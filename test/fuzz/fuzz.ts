/**
 * Settings shared by the property tests in test/fuzz: every property runs with a fixed seed of its own (derived from
 * its name, so adding a property changes no other's inputs) and a fixed number of runs that keeps the whole fuzz
 * suite within its CI budget (about a minute on one core). fast-check prints the seed and the counterexample path of
 * a failure; both replay it exactly:
 *
 *   KUBEVISA_FUZZ_SEED=<seed> KUBEVISA_FUZZ_PATH=<path> node --test test/fuzz/<file>.test.ts
 *
 * KUBEVISA_FUZZ_RUNS=<n> runs every property n times instead (to search longer on a workstation), and
 * KUBEVISA_FUZZ_SEED alone explores other inputs than CI's.
 */
import fc from 'fast-check';

/** FNV-1a of the property's name: a stable 32-bit seed per property. */
function seedOf(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

function integerFromEnv(variable: string): number | undefined {
  const text = process.env[variable];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`${variable} must be an integer, not ${JSON.stringify(text)}`);
  return value;
}

/**
 * fast-check parameters for the property `name`: its fixed seed (or KUBEVISA_FUZZ_SEED), `runs` runs (or
 * KUBEVISA_FUZZ_RUNS) and, when KUBEVISA_FUZZ_PATH is set, the path of the counterexample to replay.
 */
export function fuzzParameters<T>(name: string, runs: number): fc.Parameters<T> {
  const path = process.env.KUBEVISA_FUZZ_PATH;
  return {
    seed: integerFromEnv('KUBEVISA_FUZZ_SEED') ?? seedOf(name),
    numRuns: integerFromEnv('KUBEVISA_FUZZ_RUNS') ?? runs,
    ...(path ? { path, endOnFailure: true } : {}),
  };
}

/** Checks `property` with the parameters of `name` (see fuzzParameters). */
export function check<T>(name: string, runs: number, property: fc.IProperty<T>): void {
  fc.assert(property, fuzzParameters<T>(name, runs));
}

/** The asynchronous counterpart of `check`. */
export async function checkAsync<T>(name: string, runs: number, property: fc.IAsyncProperty<T>): Promise<void> {
  await fc.assert(property, fuzzParameters<T>(name, runs));
}

/**
 * Keys that reach object prototypes when outside data is merged naively. Every generator of keys and paths in these
 * properties mixes them in, with their look-alikes.
 */
export const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype', '__defineGetter__', 'toString', 'valueOf'];

const PROTOTYPES: [string, object][] = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
];

/** Each own property of a prototype (symbols included) with what it holds: its value, or its getter and setter. */
function snapshot(prototype: object): Map<PropertyKey, unknown[]> {
  const held = new Map<PropertyKey, unknown[]>();
  for (const key of Reflect.ownKeys(prototype)) {
    const descriptor = Reflect.getOwnPropertyDescriptor(prototype, key)!;
    held.set(key, [descriptor.value, descriptor.get, descriptor.set]);
  }
  return held;
}

/**
 * Runs `action` and says what it changed on the built-in prototypes (a key added, removed or given another value),
 * with what it threw, if anything. Keys it added are deleted again at once, so one polluting input cannot make later
 * runs fail (or pass) for the wrong reason.
 */
export function prototypeChangesDuring(action: () => void): { changes: string[]; thrown?: unknown } {
  const before = PROTOTYPES.map(([, prototype]) => snapshot(prototype));
  let thrown: unknown;
  let threw = false;
  try {
    action();
  } catch (error) {
    threw = true;
    thrown = error;
  }
  const changes: string[] = [];
  PROTOTYPES.forEach(([name, prototype], index) => {
    const was = before[index]!;
    const now = snapshot(prototype);
    for (const [key, held] of now) {
      const previous = was.get(key);
      if (previous === undefined) {
        changes.push(`${name} gained ${String(key)}`);
        Reflect.deleteProperty(prototype, key);
      } else if (held.some((value, i) => value !== previous[i])) {
        changes.push(`${name}.${String(key)} was changed`);
      }
    }
    for (const key of was.keys()) if (!now.has(key)) changes.push(`${name} lost ${String(key)}`);
  });
  return threw ? { changes, thrown } : { changes };
}
