import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ScimError } from './errors.ts';
import { applyPatch, readPatch, type PatchOperation } from './patch.ts';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from './schema.ts';
import type { JsonObject } from '../store/store.ts';

const patch = (...operations: unknown[]) => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: operations });
const run = (resource: JsonObject, ...operations: unknown[]) => applyPatch(resource, patch(...operations));

function refusedWith(scimType: string) {
  return (error: unknown) => {
    assert.ok(error instanceof ScimError, `expected a ScimError, got ${String(error)}`);
    assert.equal(error.status, 400);
    assert.equal(error.scimType, scimType, error.message);
    return true;
  };
}

/** Nothing was written to a prototype: a fresh object, a function and an array have none of the names. */
function assertPrototypesClean(names: string[]) {
  const probes: Record<string, unknown>[] = [{}, Object.create(Object.prototype), [] as never, (() => {}) as never];
  for (const probe of probes) {
    for (const name of names) assert.equal(probe[name], undefined, `a prototype gained '${name}'`);
  }
  assert.equal((Object.prototype.toString as unknown as Record<string, unknown>).polluted, undefined);
}

const cora = (): JsonObject => ({
  schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
  id: 'u1',
  userName: 'cora@vendor.example',
  name: { givenName: 'Cora', familyName: 'Vendor' },
  emails: [
    { value: 'cora@vendor.example', type: 'work', primary: true },
    { value: 'cora@home.example', type: 'home' },
  ],
  active: true,
  [ENTERPRISE_USER_SCHEMA]: { department: 'Ops', manager: { value: 'm1' } },
});

const group = (): JsonObject => ({
  schemas: [GROUP_SCHEMA],
  id: 'g1',
  displayName: 'acme',
  members: [{ value: 'u1' }, { value: 'u2' }],
});

describe('PATCH add (RFC 7644 §3.5.2.1)', () => {
  test('sets a missing simple attribute and replaces an existing one', () => {
    assert.equal(run(cora(), { op: 'add', path: 'title', value: 'Dev' }).title, 'Dev');
    assert.equal(run(cora(), { op: 'add', path: 'userName', value: 'c@x' }).userName, 'c@x');
  });

  test('appends to a multi-valued attribute, each value once', () => {
    const result = run(cora(), {
      op: 'add',
      path: 'emails',
      value: [
        { value: 'c@other.example', type: 'other' },
        { value: 'cora@home.example', type: 'home' },
      ],
    });
    assert.deepEqual(
      (result.emails as JsonObject[]).map((e) => e.value),
      ['cora@vendor.example', 'cora@home.example', 'c@other.example'],
    );
  });

  test('adds group members once, by id, whatever else each entry carries', () => {
    const result = run(group(), {
      op: 'Add',
      path: 'members',
      value: [
        { value: 'u3', display: 'x' },
        { value: 'u1', display: 'again' },
      ],
    });
    assert.deepEqual(
      (result.members as JsonObject[]).map((m) => m.value),
      ['u1', 'u2', 'u3'],
    );
  });

  test('merges sub-attributes into a complex attribute and sets one by its sub-attribute path', () => {
    const merged = run(cora(), { op: 'add', path: 'name', value: { middleName: 'M' } });
    assert.deepEqual(merged.name, { givenName: 'Cora', familyName: 'Vendor', middleName: 'M' });
    assert.throws(() => run(cora(), { op: 'add', path: 'name', value: 'Cora V' }), refusedWith('invalidValue'));
    const fresh = run(
      { schemas: [USER_SCHEMA], id: 'u2', userName: 'x' },
      { op: 'add', path: 'name.givenName', value: 'X' },
    );
    assert.deepEqual(fresh.name, { givenName: 'X' });
  });

  test('without a path, adds every attribute of the value object, dotted keys and extension objects included', () => {
    const result = run(cora(), {
      op: 'add',
      value: {
        nickName: 'Co',
        'name.honorificPrefix': 'Dr',
        [`${ENTERPRISE_USER_SCHEMA}:costCenter`]: '42',
        [ENTERPRISE_USER_SCHEMA]: { division: 'East' },
      },
    });
    assert.equal(result.nickName, 'Co');
    assert.equal((result.name as JsonObject).honorificPrefix, 'Dr');
    assert.deepEqual(result[ENTERPRISE_USER_SCHEMA], {
      department: 'Ops',
      manager: { value: 'm1' },
      costCenter: '42',
      division: 'East',
    });
  });

  test('through the enterprise extension URN, creating the extension object when the user has none', () => {
    const result = run(
      { schemas: [USER_SCHEMA], id: 'u2', userName: 'x' },
      { op: 'Add', path: `${ENTERPRISE_USER_SCHEMA}:manager`, value: { value: 'manager-id' } },
    );
    assert.deepEqual(result[ENTERPRISE_USER_SCHEMA], { manager: { value: 'manager-id' } });
  });

  test('through an equality filter that matches nothing, adds the entry the filter describes', () => {
    const result = run(
      { schemas: [USER_SCHEMA], id: 'u2', userName: 'x' },
      { op: 'add', path: 'emails[type eq "work"].value', value: 'x@work.example' },
    );
    assert.deepEqual(result.emails, [{ type: 'work', value: 'x@work.example' }]);
  });
});

describe('PATCH replace (RFC 7644 §3.5.2.3)', () => {
  test('Okta: no path, an object of attributes', () => {
    assert.equal(run(cora(), { op: 'replace', value: { active: false } }).active, false);
  });

  test('Entra ID: capitalised op and "False" as a string (kept for resources.ts to read as a boolean)', () => {
    assert.equal(run(cora(), { op: 'Replace', path: 'active', value: 'False' }).active, 'False');
  });

  test('attribute names compare case-insensitively and keep the stored case', () => {
    const result = run(
      cora(),
      { op: 'replace', path: 'USERNAME', value: 'c@x' },
      { op: 'replace', path: 'Name.GivenName', value: 'C' },
    );
    assert.equal(result.userName, 'c@x');
    assert.equal(Object.hasOwn(result, 'USERNAME'), false);
    assert.deepEqual(result.name, { givenName: 'C', familyName: 'Vendor' });
  });

  test('a complex attribute keeps the sub-attributes the value does not name; a multi-valued one is replaced whole', () => {
    assert.deepEqual(run(cora(), { op: 'replace', path: 'name', value: { familyName: 'V' } }).name, {
      givenName: 'Cora',
      familyName: 'V',
    });
    assert.deepEqual(run(cora(), { op: 'replace', path: 'emails', value: [{ value: 'n@x' }] }).emails, [
      { value: 'n@x' },
    ]);
  });

  test('Entra ID: the work email through a value filter, the family name and the enterprise manager', () => {
    const result = run(
      cora(),
      { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@microsoft.com' },
      { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
      { op: 'Replace', path: `${ENTERPRISE_USER_SCHEMA}:manager.value`, value: 'm2' },
    );
    assert.deepEqual(result.emails, [
      { value: 'updatedEmail@microsoft.com', type: 'work', primary: true },
      { value: 'cora@home.example', type: 'home' },
    ]);
    assert.equal((result.name as JsonObject).familyName, 'updatedFamilyName');
    assert.deepEqual((result[ENTERPRISE_USER_SCHEMA] as JsonObject).manager, { value: 'm2' });
  });

  test('a filter on a boolean, and the core schema URN as a path prefix', () => {
    const result = run(
      cora(),
      { op: 'replace', path: 'emails[primary eq true].display', value: 'main' },
      { op: 'replace', path: `${USER_SCHEMA}:displayName`, value: 'Cora V' },
    );
    assert.equal((result.emails as JsonObject[])[0]!.display, 'main');
    assert.equal(result.displayName, 'Cora V');
  });

  test('a filter that is not an equality and matches nothing is noTarget', () => {
    assert.throws(
      () => run(cora(), { op: 'replace', path: 'emails[value co "nowhere"].type', value: 'x' }),
      refusedWith('noTarget'),
    );
  });

  test('the group rename Okta sends (its id included, unchanged)', () => {
    const result = run(group(), { op: 'replace', value: { id: 'g1', displayName: 'acme renamed' } });
    assert.equal(result.displayName, 'acme renamed');
    assert.equal(result.id, 'g1');
  });
});

describe('PATCH remove (RFC 7644 §3.5.2.2)', () => {
  test('Okta: a member by filter; removing a non-member or from an empty group changes nothing', () => {
    assert.deepEqual(run(group(), { op: 'remove', path: 'members[value eq "u1"]' }).members, [{ value: 'u2' }]);
    assert.deepEqual(run(group(), { op: 'remove', path: 'members[value eq "u9"]' }).members, group().members);
    const empty = { ...group(), members: [] };
    assert.deepEqual(run(empty, { op: 'remove', path: 'members[value eq "u9"]' }).members, []);
  });

  test('member ids compare exactly', () => {
    assert.deepEqual(run(group(), { op: 'remove', path: 'members[value eq "U1"]' }).members, group().members);
  });

  test('Entra ID: members by a value list, whatever else each entry carries', () => {
    const result = run(group(), { op: 'Remove', path: 'members', value: [{ $ref: null, value: 'u2' }] });
    assert.deepEqual(result.members, [{ value: 'u1' }]);
    assert.throws(
      () => run(group(), { op: 'Remove', path: 'members', value: [{ display: 'x' }] }),
      refusedWith('invalidValue'),
    );
  });

  test('an attribute, a sub-attribute, a sub-attribute of filtered values; the last value unassigns the attribute', () => {
    assert.equal(Object.hasOwn(run(cora(), { op: 'remove', path: 'name' }), 'name'), false);
    assert.deepEqual(run(cora(), { op: 'remove', path: 'name.familyName' }).name, { givenName: 'Cora' });
    assert.deepEqual(run(cora(), { op: 'remove', path: 'emails[type eq "work"].primary' }).emails, [
      { value: 'cora@vendor.example', type: 'work' },
      { value: 'cora@home.example', type: 'home' },
    ]);
    const single = run(
      cora(),
      { op: 'remove', path: 'emails[type eq "home"]' },
      { op: 'remove', path: 'emails[type eq "work"]' },
    );
    assert.equal(Object.hasOwn(single, 'emails'), false);
    assert.deepEqual(run(cora(), { op: 'remove', path: 'nickName' }), cora(), 'a missing attribute is a no-op');
  });

  test('an enterprise attribute, and the whole extension', () => {
    assert.deepEqual(
      run(cora(), { op: 'remove', path: `${ENTERPRISE_USER_SCHEMA}:department` })[ENTERPRISE_USER_SCHEMA],
      {
        manager: { value: 'm1' },
      },
    );
    assert.equal(
      Object.hasOwn(run(cora(), { op: 'remove', path: ENTERPRISE_USER_SCHEMA }), ENTERPRISE_USER_SCHEMA),
      false,
    );
  });
});

describe('PATCH refuses what is not a SCIM path or value, before anything is applied', () => {
  const attacks: [string, unknown, string][] = [
    ['__proto__ in a path', { op: 'add', path: '__proto__.role', value: 'admin' }, 'invalidPath'],
    [
      'constructor.prototype in a path',
      { op: 'add', path: 'constructor.prototype.role', value: 'admin' },
      'invalidPath',
    ],
    ['a prototype method in a path', { op: 'add', path: 'toString.polluted', value: 'x' }, 'invalidPath'],
    [
      'a prototype name as a sub-attribute',
      { op: 'replace', path: 'name.__proto__', value: { role: 'admin' } },
      'invalidPath',
    ],
    [
      'a prototype name after a filter',
      { op: 'replace', path: 'emails[type eq "work"].constructor', value: 'x' },
      'invalidPath',
    ],
    ['a prototype name inside a filter', { op: 'remove', path: 'emails[constructor eq "x"]' }, 'invalidPath'],
    [
      'a prototype name in an extension URN',
      { op: 'add', path: 'urn:x:__proto__:role', value: 'admin' },
      'invalidPath',
    ],
    ['a case variant', { op: 'add', path: 'Constructor.Prototype.role', value: 'admin' }, 'invalidPath'],
    ['a dotted __proto__ key in a value', { op: 'add', value: { '__proto__.role': 'admin' } }, 'invalidValue'],
    [
      'a constructor.prototype key in a value',
      { op: 'replace', value: { 'constructor.prototype.role': 'admin' } },
      'invalidValue',
    ],
    [
      'a __proto__ key nested in a value',
      { op: 'add', path: 'name', value: { inner: { ['__proto__']: { role: 'admin' } } } },
      'invalidValue',
    ],
    [
      'a prototype key in a list in a value',
      { op: 'add', path: 'emails', value: [{ prototype: { role: 'admin' } }] },
      'invalidValue',
    ],
    ['a path three levels deep', { op: 'add', path: 'a.b.c', value: 'x' }, 'invalidPath'],
    ['an unclosed filter', { op: 'remove', path: 'members[value eq "u1"' }, 'invalidPath'],
    ['a filter that does not parse', { op: 'remove', path: 'members[value zz "u1"]' }, 'invalidPath'],
    ['text after a filter', { op: 'remove', path: 'members[value eq "u1"]x' }, 'invalidPath'],
    ['a filter on a sub-attribute', { op: 'remove', path: 'name.givenName[value eq "x"]' }, 'invalidPath'],
    ['a filter in a value key', { op: 'add', value: { 'emails[type eq "work"].value': 'x' } }, 'invalidPath'],
    ['a name that is not an attribute name', { op: 'add', path: '_hidden', value: 'x' }, 'invalidPath'],
    ['an add without a path and without an object', { op: 'add', value: 'x' }, 'invalidValue'],
  ];
  for (const [name, operation, scimType] of attacks) {
    test(`${name}: 400 ${scimType}, Object.prototype untouched`, () => {
      // JSON.parse, as the edge does: `__proto__` arrives as an own key.
      const operations = JSON.parse(JSON.stringify([operation])) as unknown[];
      assert.throws(() => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: operations }), refusedWith(scimType));
      assertPrototypesClean(['role', 'polluted']);
    });
  }

  test('a body with an own __proto__ key is refused as a whole', () => {
    const body = JSON.parse(
      `{"schemas":["${PATCH_OP_SCHEMA}"],"Operations":[{"op":"add","path":"title","value":"x"}],"__proto__":{"role":"admin"}}`,
    ) as unknown;
    assert.throws(() => readPatch(body), refusedWith('invalidValue'));
    assertPrototypesClean(['role']);
  });

  test('applyPatch itself never walks a forbidden name, even if handed one without readPatch', () => {
    const operations: PatchOperation[] = [{ op: 'add', path: 'constructor.prototype.role', value: 'admin' }];
    assert.throws(() => applyPatch(cora(), operations), refusedWith('invalidPath'));
    assert.throws(
      () => applyPatch(cora(), [{ op: 'add', value: JSON.parse('{"__proto__":{"role":"admin"}}') as JsonObject }]),
      refusedWith('invalidPath'),
    );
    assertPrototypesClean(['role']);
  });

  test('at most MAX_PATCH_OPERATIONS operations', () => {
    const many = Array.from({ length: 1001 }, () => ({ op: 'add', path: 'title', value: 'x' }));
    assert.throws(() => patch(...many), refusedWith('invalidValue'));
  });
});

describe('what PATCH returns', () => {
  test('never mutates what it was given, and is built of ordinary objects with own properties only', () => {
    const original = cora();
    const copy = structuredClone(original);
    const result = run(
      original,
      { op: 'replace', value: { active: false, title: 'x' } },
      { op: 'add', path: 'name.middleName', value: 'M' },
    );
    assert.deepEqual(original, copy);
    const objects: unknown[] = [result];
    while (objects.length > 0) {
      const next = objects.pop();
      if (typeof next !== 'object' || next === null) continue;
      if (Array.isArray(next)) {
        objects.push(...(next as unknown[]));
        continue;
      }
      assert.equal(Object.getPrototypeOf(next), Object.prototype);
      for (const key of Object.keys(next)) objects.push((next as Record<string, unknown>)[key]);
    }
  });

  test('random paths and keys built from attribute names and prototype names never reach a prototype (seeded)', () => {
    const segment = fc.constantFrom(
      'name',
      'givenName',
      'emails',
      'value',
      'type',
      'members',
      '__proto__',
      'constructor',
      'prototype',
      'toString',
      'valueOf',
      'hasOwnProperty',
      'polluted',
    );
    const pathText = fc
      .tuple(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([parts, filtered]) =>
        filtered ? `${parts[0]}[value eq "x"].${parts.slice(1).join('.')}` : parts.join('.'),
      );
    const value = fc.oneof(
      fc.constant<unknown>('admin'),
      fc.dictionary(pathText, fc.constant<unknown>('admin'), { maxKeys: 3 }),
    );
    const operation = fc.record(
      {
        op: fc.constantFrom('add', 'replace', 'remove', 'Add', 'Replace'),
        path: pathText,
        value,
      },
      { requiredKeys: ['op'] },
    );
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 4 }), (operations) => {
        const body = JSON.parse(JSON.stringify({ schemas: [PATCH_OP_SCHEMA], Operations: operations })) as unknown;
        try {
          applyPatch(cora(), readPatch(body));
        } catch (error) {
          assert.ok(error instanceof ScimError && error.status === 400, String(error));
        }
        assertPrototypesClean(['role', 'polluted', 'value', 'givenName', 'type']);
      }),
      { seed: 20_260_710, numRuns: 400 },
    );
  });
});
