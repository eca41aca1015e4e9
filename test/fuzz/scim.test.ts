// Properties of what an identity provider sends to /scim/v2: filters (src/scim/filter.ts), PATCH bodies
// (src/scim/patch.ts) and User and Group bodies (src/scim/resources.ts). Whatever the input: a result or a ScimError
// 400 with the scimType RFC 7644 names, never another exception; and no input, however it names `__proto__`,
// `constructor` or `prototype`, changes a built-in prototype or leaves an object that inherits anything unusual.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ScimError, type ScimType } from '../../src/scim/errors.ts';
import { MAX_FILTER_LENGTH, parseFilter } from '../../src/scim/filter.ts';
import { applyPatch, readPatch } from '../../src/scim/patch.ts';
import { readGroup, readUser } from '../../src/scim/resources.ts';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from '../../src/scim/schema.ts';
import type { JsonObject } from '../../src/store/store.ts';
import { check, PROTOTYPE_KEYS, prototypeChangesDuring } from './fuzz.ts';
import { jsonText, nodesOf, objectText } from './json-text.ts';

/** Passes when `error` is the refusal the SCIM edge answers 400 with; `scimTypes` are those allowed here. */
function assertScim400(error: unknown, scimTypes: readonly ScimType[], input: string): void {
  assert.ok(error instanceof ScimError, `${input} threw ${String((error as Error)?.stack ?? error)}`);
  assert.equal(error.status, 400, `${input}: ${error.message}`);
  assert.ok(
    error.scimType !== undefined && scimTypes.includes(error.scimType),
    `${input}: scimType ${error.scimType} for ${error.message}`,
  );
  assert.ok(error.message.length > 15, 'the refusal says what was wrong');
}

/** Every object and array in `value` is an ordinary one: nothing inherited beyond Object's and Array's prototypes. */
function assertPlain(value: unknown, what: string): void {
  for (const node of nodesOf(value)) {
    const prototype = Object.getPrototypeOf(node) as unknown;
    assert.ok(
      prototype === Object.prototype || prototype === Array.prototype,
      `${what} holds an object with an unusual prototype`,
    );
    for (const key of Object.keys(node)) {
      assert.ok(!['__proto__', 'constructor', 'prototype'].includes(key), `${what} holds a key '${key}'`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Filters (RFC 7644 §3.4.2.2), from the grammar and from noise.

const attributePath = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('userName', 'externalId', 'id', 'active', 'displayName', 'title') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'emails.value',
      'emails',
      'emails.type',
      'members',
      'members.value',
      'name.givenName',
      'meta.lastModified',
      `${USER_SCHEMA}:userName`,
      `${ENTERPRISE_USER_SCHEMA}:manager.value`,
      `${ENTERPRISE_USER_SCHEMA}:department`,
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ...PROTOTYPE_KEYS,
      '__proto__.role',
      'constructor.prototype',
      'name.__proto__',
      `${USER_SCHEMA}:__proto__`,
    ),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z][A-Za-z0-9_$.-]{0,15}$/) },
);
const comparison = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le', 'EQ', 'Eq') },
  { weight: 1, arbitrary: fc.constantFrom('==', 'like', 'in', '', 'pr') },
);
const comparedValue = fc.oneof(
  fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.constantFrom('true', 'false', 'null', '0', '-1.5', '1e3', '"2026-01-01T00:00:00Z"', 'unquoted', '"', "'x'"),
);
const filterText: fc.Arbitrary<string> = fc.letrec<{ filter: string }>((tie) => ({
  filter: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(attributePath, comparison, comparedValue).map(([a, op, v]) => `${a} ${op} ${v}`),
    attributePath.map((a) => `${a} pr`),
    fc
      .tuple(tie('filter'), fc.constantFrom('and', 'or', 'AND', 'Or'), tie('filter'))
      .map(([l, op, r]) => `${l} ${op} ${r}`),
    tie('filter').map((f) => `not (${f})`),
    tie('filter').map((f) => `(${f})`),
    fc.tuple(attributePath, tie('filter')).map(([a, f]) => `${a}[${f}]`),
    fc.tuple(attributePath, tie('filter'), attributePath).map(([a, f, s]) => `${a}[${f}].${s}`),
  ),
})).filter;
/** A grammatical filter damaged in a few places (a character dropped, duplicated or replaced). */
const damagedFilter = fc
  .tuple(
    filterText,
    fc.array(fc.tuple(fc.nat(), fc.constantFrom('', '(', ')', '[', ']', '"', '\\', ' ', 'x')), { maxLength: 3 }),
  )
  .map(([text, edits]) => {
    let damaged = text;
    for (const [at, replacement] of edits) {
      const i = damaged.length === 0 ? 0 : at % damaged.length;
      damaged = damaged.slice(0, i) + replacement + damaged.slice(i + 1);
    }
    return damaged;
  });
const anyFilter = fc.oneof(
  { weight: 4, arbitrary: filterText },
  { weight: 3, arbitrary: damagedFilter },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.nat({ max: 3000 }).map((n) => `${'('.repeat(n)}userName eq "a"${')'.repeat(n)}`) },
  { weight: 1, arbitrary: fc.nat({ max: 1500 }).map((n) => `${'not ('.repeat(n)}active pr${')'.repeat(n)}`) },
);

/** Resources the filters are evaluated on: a realistic user with attacker-chosen extra attributes. */
const scimResource = fc
  .array(fc.tuple(fc.constantFrom(...PROTOTYPE_KEYS, 'title', 'emails', 'members', 'name'), jsonText), { maxLength: 3 })
  .map(
    (extra) =>
      JSON.parse(
        objectText([
          ['schemas', JSON.stringify([USER_SCHEMA, ENTERPRISE_USER_SCHEMA])],
          ['id', '"u-1"'],
          ['userName', '"ana@example.com"'],
          ['active', 'true'],
          ['emails', '[{"value":"ana@example.com","type":"work","primary":true}]'],
          ['name', '{"givenName":"Ana"}'],
          [ENTERPRISE_USER_SCHEMA, '{"department":"payments","manager":{"value":"u-2"}}'],
          ...extra,
        ]),
      ) as JsonObject,
  );

describe('fuzzing SCIM filters (src/scim/filter.ts)', () => {
  test('parseFilter returns a filter or refuses with 400 invalidFilter, and a filter never throws when evaluated', () => {
    check(
      'scim: filter',
      1500,
      fc.property(anyFilter, fc.array(scimResource, { minLength: 1, maxLength: 3 }), (text, resources) => {
        const { changes, thrown } = prototypeChangesDuring(() => {
          let parsed;
          try {
            parsed = parseFilter(text);
          } catch (error) {
            assertScim400(error, ['invalidFilter'], JSON.stringify(text));
            return;
          }
          assert.ok(text.length <= MAX_FILTER_LENGTH, 'a filter over the limit is refused');
          for (const resource of resources) assert.equal(typeof parsed.predicate(resource), 'boolean');
          if (parsed.equality) {
            assert.equal(typeof parsed.equality.value, 'string');
            assert.equal(parsed.equality.attribute, parsed.equality.attribute.toLowerCase());
          }
        });
        if (thrown !== undefined) throw thrown;
        assert.deepEqual(changes, [], `filter ${JSON.stringify(text)}`);
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// PATCH bodies (RFC 7644 §3.5.2): paths and value keys built to reach a prototype, ops in every spelling.

const pathStep = fc.oneof(
  {
    weight: 16,
    arbitrary: fc.constantFrom(
      'userName',
      'active',
      'title',
      'displayName',
      'name',
      'givenName',
      'emails',
      'value',
      'members',
      'type',
      'role',
      'department',
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_KEYS, 'Constructor', '__PROTO__', ' __proto__') },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
);
const patchPath = fc.oneof(
  { weight: 8, arbitrary: fc.array(pathStep, { minLength: 1, maxLength: 2 }).map((steps) => steps.join('.')) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.constantFrom('emails', 'members', 'emails', 'members', '__proto__', 'constructor'),
        filterText,
        fc.option(pathStep, { nil: undefined }),
      )
      .map(([attribute, filter, sub]) => `${attribute}[${filter}]${sub === undefined ? '' : `.${sub}`}`),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, 'urn:x:__proto__'), pathStep)
      .map(([urn, step]) => `${urn}:${step}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', '.', '..', '[', ']', 'members[', 'a..b', 'emails[type eq "work"]]'),
  },
);
/** Values identity providers send, and values built to pollute. */
const valueText = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.oneof(
      fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
      fc.constantFrom(
        'true',
        'false',
        '"False"',
        '"True"',
        '{"active":false}',
        '{"givenName":"Bo","familyName":"Lee"}',
        '{"value":"bo@example.com","type":"work"}',
        '[{"value":"bo@example.com","type":"home"}]',
        '[{"value":"u-2"}]',
        '{"value":"u-2"}',
        '{"title":"lead","displayName":"Bo"}',
        '{"department":"audit"}',
      ),
    ),
  },
  { weight: 2, arbitrary: jsonText },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '"admin"',
      '{"role":"admin"}',
      '{"__proto__":{"role":"admin"}}',
      '{"__proto__.role":"admin"}',
      '{"constructor":{"prototype":{"role":"admin"}}}',
      '{"name":{"__proto__":{"role":"admin"}}}',
      '{"revokedAt":1}',
    ),
  },
);
const operationText = fc
  .tuple(
    fc.oneof(
      { weight: 24, arbitrary: fc.constantFrom('"add"', '"replace"', '"remove"', '"Add"', '"Replace"', '"Remove"') },
      { weight: 1, arbitrary: fc.constantFrom('"copy"', '5', 'null', undefined) },
    ),
    fc.oneof(
      { weight: 12, arbitrary: patchPath.map((p) => JSON.stringify(p)) },
      { weight: 3, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.constantFrom('null', '5', '[]') },
    ),
    fc.option(valueText, { nil: undefined, freq: 12 }),
    fc.oneof(
      { weight: 12, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.tuple(fc.tuple(fc.constantFrom(...PROTOTYPE_KEYS), jsonText)) },
    ),
  )
  .map(([op, path, value, extra]) =>
    objectText([
      ...(op === undefined ? [] : [['op', op] as const]),
      ...(path === undefined ? [] : [['path', path] as const]),
      ...(value === undefined ? [] : [['value', value] as const]),
      ...extra,
    ]),
  );
const patchBody = fc.oneof(
  {
    weight: 24,
    arbitrary: fc
      .tuple(
        fc.oneof(
          { weight: 16, arbitrary: fc.constantFrom('Operations', 'operations') },
          { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor') },
        ),
        fc.array(operationText, { minLength: 1, maxLength: 3 }),
      )
      .map(([key, operations]) =>
        objectText([
          ['schemas', JSON.stringify([PATCH_OP_SCHEMA])],
          [key, `[${operations.join(',')}]`],
        ]),
      ),
  },
  { weight: 1, arbitrary: jsonText },
);

const USER = (): JsonObject => ({
  schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
  id: 'u-1',
  userName: 'ana@example.com',
  active: true,
  name: { givenName: 'Ana', familyName: 'Ng' },
  emails: [{ value: 'ana@example.com', type: 'work', primary: true }],
  [ENTERPRISE_USER_SCHEMA]: { department: 'payments', manager: { value: 'u-2' } },
});
const GROUP = (): JsonObject => ({
  schemas: [GROUP_SCHEMA],
  id: 'g-1',
  displayName: 'devs',
  members: [{ value: 'u-1' }],
});

describe('fuzzing SCIM PATCH (src/scim/patch.ts)', () => {
  test('readPatch and applyPatch give a result or a 400, never touch a prototype, and return only plain data', () => {
    check(
      'scim: patch',
      2500,
      fc.property(patchBody, fc.boolean(), (text, onGroup) => {
        const body: unknown = JSON.parse(text);
        const resource = onGroup ? GROUP() : USER();
        const before = JSON.stringify(resource);
        const { changes, thrown } = prototypeChangesDuring(() => {
          let operations;
          try {
            operations = readPatch(body);
          } catch (error) {
            assertScim400(error, ['invalidSyntax', 'invalidPath', 'invalidValue', 'noTarget', 'invalidFilter'], text);
            return;
          }
          let patched;
          try {
            patched = applyPatch(resource, operations);
          } catch (error) {
            assertScim400(
              error,
              ['invalidSyntax', 'invalidPath', 'invalidValue', 'noTarget', 'invalidFilter', 'mutability'],
              text,
            );
            return;
          }
          assertPlain(patched, `the result of ${text}`);
        });
        if (thrown !== undefined) throw thrown;
        assert.deepEqual(changes, [], `PATCH ${text}`);
        assert.equal(JSON.stringify(resource), before, 'the resource given is not changed');
        const fresh: Record<string, unknown> = {};
        assert.equal(fresh.role, undefined);
        assert.equal(fresh.revokedAt, undefined);
      }),
    );
  });

  test('the published prototype-pollution payloads are refused with 400 invalidPath or invalidValue', () => {
    const payloads = [
      '{"op":"add","path":"__proto__.role","value":"admin"}',
      '{"op":"add","path":"constructor.prototype.role","value":"admin"}',
      '{"op":"replace","path":"toString.role","value":"admin"}',
      '{"op":"add","value":{"__proto__.role":"admin"}}',
      '{"op":"add","value":{"__proto__":{"role":"admin"}}}',
      '{"op":"replace","path":"__proto__.revokedAt","value":1}',
    ];
    for (const operation of payloads) {
      const text = `{"schemas":[${JSON.stringify(PATCH_OP_SCHEMA)}],"Operations":[${operation}]}`;
      const { changes, thrown } = prototypeChangesDuring(() => applyPatch(USER(), readPatch(JSON.parse(text))));
      assertScim400(thrown, ['invalidPath', 'invalidValue'], operation);
      assert.deepEqual(changes, [], operation);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// User and Group bodies (POST, PUT, and the result of a PATCH).

const resourceBody = (schema: string) =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .array(
          fc.tuple(
            fc.constantFrom(
              'userName',
              'displayName',
              'externalId',
              'active',
              'emails',
              'members',
              'name',
              ...PROTOTYPE_KEYS,
            ),
            jsonText,
          ),
          { maxLength: 6 },
        )
        .map((entries) => objectText([['schemas', JSON.stringify([schema])], ...entries])),
    },
    { weight: 1, arbitrary: jsonText },
  );

describe('fuzzing SCIM resources (src/scim/resources.ts)', () => {
  for (const [kind, schema, read] of [
    ['User', USER_SCHEMA, readUser],
    ['Group', GROUP_SCHEMA, readGroup],
  ] as const) {
    test(`read${kind} returns fields or refuses with 400, and keeps only plain data`, () => {
      check(
        `scim: read ${kind}`,
        1500,
        fc.property(resourceBody(schema), (text) => {
          const { changes, thrown } = prototypeChangesDuring(() => {
            let fields;
            try {
              fields = read(JSON.parse(text));
            } catch (error) {
              assertScim400(error, ['invalidSyntax', 'invalidValue'], text);
              return;
            }
            assertPlain(fields.resource, `the ${kind} kept from ${text}`);
          });
          if (thrown !== undefined) throw thrown;
          assert.deepEqual(changes, [], text);
        }),
      );
    });
  }
});
