import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openSqliteStore } from '../store/sqlite.ts';
import { ScimError } from './errors.ts';
import { parseFilter } from './filter.ts';
import { ScimService } from './service.ts';
import { applyPatch, readPatch } from './patch.ts';
import { project, readGroup, readUser, renderUser } from './resources.ts';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from './schema.ts';
import { generateScimToken, hashScimToken, matchScimToken } from './tokens.ts';
import type { ScimTokenRecord } from '../store/identity-records.ts';

function scimType(expected: string) {
  return (error: unknown) => {
    assert.ok(error instanceof ScimError, `expected a ScimError, got ${String(error)}`);
    assert.equal(error.scimType, expected);
    assert.equal(error.status, 400);
    return true;
  };
}

const user = (extra: Record<string, unknown> = {}) => ({
  schemas: [USER_SCHEMA],
  userName: 'Cora@Vendor.example',
  emails: [{ value: 'cora@vendor.example', primary: true, type: 'work' }],
  ...extra,
});

describe('filters', () => {
  const cora = {
    id: 'u1',
    externalId: '00uAbC',
    userName: 'Cora@Vendor.example',
    active: true,
    name: { givenName: 'Cora' },
    emails: [
      { value: 'cora@vendor.example', type: 'work' },
      { value: 'cora@home.example', type: 'home' },
    ],
    [ENTERPRISE_USER_SCHEMA]: { department: 'Ops' },
    members: [{ value: 'Member-1' }],
  };

  test('compares userName case-insensitively and externalId exactly', () => {
    assert.equal(parseFilter('userName eq "cora@vendor.EXAMPLE"').predicate(cora), true);
    assert.equal(parseFilter('externalId eq "00uAbC"').predicate(cora), true);
    assert.equal(parseFilter('externalId eq "00uabc"').predicate(cora), false);
    assert.equal(parseFilter('members[value eq "member-1"]').predicate(cora), false, 'member ids are exact');
  });

  test('a value holding a character that changes case into a plain letter is compared exactly, not taken for another', async () => {
    // U+212A, the Kelvin sign, lower-cases to k: "\u212Aora@…" must not find cora@….
    assert.equal(parseFilter('userName eq "\u212Aora@vendor.example"').predicate(cora), false);
    assert.equal(
      parseFilter('userName eq "\u212Aora@vendor.example"').predicate({ userName: '\u212Aora@vendor.example' }),
      true,
    );
    // The service answers an IdP's look-up from the userName index, then filters: nothing is found for the look-alike.
    const store = await openSqliteStore({ path: ':memory:' });
    try {
      const scim = new ScimService({ store, baseUrl: 'https://kv.example/scim/v2', maxResults: 100 });
      const client = { idp: 'okta', tokenId: 't', address: '127.0.0.1' };
      await scim.createUser(client, { schemas: [USER_SCHEMA], userName: 'kate@vendor.example' });
      assert.equal((await scim.listUsers(client, { filter: 'userName eq "KATE@vendor.example"' })).totalResults, 1);
      assert.equal(
        (await scim.listUsers(client, { filter: 'userName eq "\u212Aate@vendor.example"' })).totalResults,
        0,
      );
    } finally {
      await store.close();
    }
  });

  test('reports a plain equality so the caller can use an index', () => {
    assert.deepEqual(parseFilter('userName eq "x@y"').equality, { attribute: 'username', value: 'x@y' });
    assert.deepEqual(parseFilter(`${USER_SCHEMA}:userName eq "x@y"`).equality, { attribute: 'username', value: 'x@y' });
    assert.equal(parseFilter('userName eq "x" or userName eq "y"').equality, undefined);
  });

  test('and, or, not, value paths, pr, sub-attributes, extension URNs and complex attributes as their value', () => {
    const matches = (text: string) => parseFilter(text).predicate(cora);
    assert.equal(matches('userName sw "cora" and active eq true'), true);
    assert.equal(matches('userName eq "nobody" or name.givenName eq "cora"'), true);
    assert.equal(matches('not (active eq true)'), false);
    assert.equal(matches('emails[type eq "home" and value ew "home.example"]'), true);
    assert.equal(matches('emails[type eq "home" and value co "vendor"]'), false);
    assert.equal(matches('emails co "@home"'), true);
    assert.equal(matches('members eq "Member-1"'), true);
    assert.equal(matches('title pr'), false);
    assert.equal(matches('name.givenName pr'), true);
    assert.equal(matches(`${ENTERPRISE_USER_SCHEMA}:department eq "ops"`), true);
    assert.equal(matches('nickName ne "x"'), true, 'ne on an absent attribute is true');
  });

  test('refuses what does not parse with invalidFilter', () => {
    for (const text of [
      '',
      'userName',
      'userName eq',
      'userName eq "a" and',
      'userName zz "a"',
      'active eq True',
      'x'.repeat(5000),
    ]) {
      assert.throws(() => parseFilter(text), scimType('invalidFilter'), text.slice(0, 40));
    }
  });

  test('refuses unknown attributes, non-attributes and comparisons RFC 7644 does not allow with invalidFilter', () => {
    for (const [text, kinds] of [
      ['fooBar eq "x"', ['User']],
      ['1 eq 1', ['User']],
      ['"userName" eq "x"', ['User']],
      ['usrName eq "cora@vendor.example"', ['User']],
      ['members eq "u1"', ['User']],
      ['userName eq "x"', ['Group']],
      ['name.nickname eq "x"', ['User']],
      ['urn:example:custom:2.0:User:badge eq "x"', ['User']],
      [`${ENTERPRISE_USER_SCHEMA}:shoeSize eq "x"`, ['User']],
      ['userName[value eq "x"]', ['User']],
      ['emails[nope eq "x"]', ['User']],
      ['active gt false', ['User']],
      ['fooBar pr', ['User']],
      ['userName eq "x" and fooBar eq "y"', ['User']],
    ] as const) {
      assert.throws(() => parseFilter(text, kinds), scimType('invalidFilter'), text);
    }
  });

  test('accepts every attribute of the schemas, with or without the core URN, in any case', () => {
    for (const [text, kinds] of [
      ['USERNAME eq "x"', ['User']],
      [`${USER_SCHEMA}:userName eq "x"`, ['User']],
      ['name.givenName sw "C"', ['User']],
      ['emails[type eq "work" and primary eq true]', ['User']],
      ['meta.lastModified gt "2026-01-01T00:00:00Z"', ['User']],
      [`${ENTERPRISE_USER_SCHEMA}:manager.value eq "m1"`, ['User']],
      ['members[value eq "u1"]', ['Group']],
      ['displayName eq "Ops" and externalId pr', ['Group']],
      ['id eq "x" or members.value eq "u1"', ['User', 'Group']],
    ] as const) {
      assert.doesNotThrow(() => parseFilter(text, kinds), text);
    }
  });
});

describe('users and groups', () => {
  test('a user keeps what the IdP sent, minus id, meta, groups and password; its email links to a person', () => {
    const read = readUser(
      user({ id: 'mine', meta: { x: 1 }, groups: [{ value: 'g' }], password: 'secret', title: 'Dev' }),
    );
    assert.equal(read.userName, 'Cora@Vendor.example');
    assert.equal(read.email, 'cora@vendor.example');
    assert.equal(read.active, true, 'active defaults to true');
    assert.deepEqual(Object.keys(read.resource).sort(), ['active', 'emails', 'schemas', 'title', 'userName']);
  });

  test('the linking email is the primary one, else a work one, else the first, else an email-shaped userName', () => {
    const emails = (list: unknown[]) => readUser(user({ emails: list })).email;
    assert.equal(emails([{ value: 'a@x' }, { value: 'b@x', primary: true }]), 'b@x');
    assert.equal(
      emails([
        { value: 'a@x', type: 'home' },
        { value: 'W@x', type: 'work' },
      ]),
      'w@x',
    );
    assert.equal(emails([{ value: 'a@x' }]), 'a@x');
    assert.equal(readUser({ schemas: [USER_SCHEMA], userName: 'Only@Name.example' }).email, 'only@name.example');
    assert.equal(readUser({ schemas: [USER_SCHEMA], userName: 'no-email' }).email, undefined);
  });

  test('a linking email that would pass for another person’s once trimmed or lower-cased is refused, whatever the userName', () => {
    // `\u212Aate@…` lower-cases to kate@…; a leading U+FEFF is trimmed away by String.prototype.trim.
    for (const sent of ['\u212Aate@corp.example', '\uFEFFkate@corp.example']) {
      assert.throws(
        () => readUser({ schemas: [USER_SCHEMA], userName: 'attacker', emails: [{ value: sent, primary: true }] }),
        scimType('invalidValue'),
        JSON.stringify(sent),
      );
    }
    assert.equal(
      readUser({ schemas: [USER_SCHEMA], userName: 'plain', emails: [{ value: ' Kate@Corp.example ', primary: true }] })
        .email,
      'kate@corp.example',
      'ordinary spaces and case are still taken off',
    );
  });

  test('refuses wrong shapes with invalidSyntax or invalidValue', () => {
    assert.throws(() => readUser('x'), scimType('invalidSyntax'));
    assert.throws(() => readUser({ userName: 'a' }), scimType('invalidSyntax'));
    assert.throws(() => readUser({ schemas: [USER_SCHEMA] }), scimType('invalidValue'));
    assert.throws(() => readUser({ schemas: [USER_SCHEMA], userName: '  ' }), scimType('invalidValue'));
    assert.throws(() => readUser({ schemas: [USER_SCHEMA], userName: 'a\u0000b' }), scimType('invalidValue'));
    // A lone surrogate would be stored as U+FFFD and read back differently from what the IdP sent.
    assert.throws(() => readUser({ schemas: [USER_SCHEMA], userName: 'a\ud800b' }), scimType('invalidValue'));
    assert.throws(() => readUser(user({ externalId: 'x\udc00' })), scimType('invalidValue'));
    assert.throws(() => readUser(user({ emails: [{ value: 'c\ud800@vendor.example' }] })), scimType('invalidValue'));
    assert.throws(() => readUser(user({ emails: [{ value: 'c\u0001@vendor.example' }] })), scimType('invalidValue'));
    assert.throws(() => readGroup({ schemas: [GROUP_SCHEMA], displayName: 'g\ud800' }), scimType('invalidValue'));
    assert.throws(() => readUser(user({ active: 1 })), scimType('invalidValue'));
    assert.throws(() => readUser(user({ name: 'Cora' })), scimType('invalidValue'));
    assert.throws(() => readUser(user({ emails: [{ value: 3 }] })), scimType('invalidValue'));
    assert.throws(() => readUser(user({ [ENTERPRISE_USER_SCHEMA]: 'Ops' })), scimType('invalidValue'));
    assert.throws(
      () => readGroup({ schemas: [GROUP_SCHEMA], displayName: 'g', members: [{ value: 'g2', type: 'Group' }] }),
      scimType('invalidValue'),
    );
    assert.throws(
      () => readGroup({ schemas: [GROUP_SCHEMA], displayName: 'g', members: [{}] }),
      scimType('invalidValue'),
    );
  });

  test('renders id, meta with an ETag, groups, and the enterprise schema when the extension is present', () => {
    const rendered = renderUser(
      {
        id: 'u1',
        userName: 'cora@vendor.example',
        active: false,
        resource: {
          schemas: [USER_SCHEMA],
          userName: 'cora@vendor.example',
          [ENTERPRISE_USER_SCHEMA]: { department: 'Ops' },
        },
        provisionedBy: 'okta',
        version: 3,
        createdAt: 0,
        updatedAt: 1000,
      },
      [
        {
          id: 'g1',
          displayName: 'acme',
          members: ['u1'],
          resource: {},
          provisionedBy: 'okta',
          version: 1,
          createdAt: 0,
          updatedAt: 0,
        },
      ],
      'https://kv.example/scim/v2',
    );
    assert.deepEqual(rendered.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);
    assert.equal(rendered.active, false);
    assert.deepEqual(rendered.groups, [{ value: 'g1', display: 'acme', $ref: 'https://kv.example/scim/v2/Groups/g1' }]);
    assert.deepEqual(rendered.meta, {
      resourceType: 'User',
      created: '1970-01-01T00:00:00.000Z',
      lastModified: '1970-01-01T00:00:01.000Z',
      location: 'https://kv.example/scim/v2/Users/u1',
      version: 'W/"3"',
    });
    assert.deepEqual(Object.keys(project(rendered, 'userName,emails')).sort(), ['id', 'meta', 'schemas', 'userName']);
    assert.equal(project(rendered, undefined, 'groups').groups, undefined);
  });
});

describe('PATCH as identity providers send it', () => {
  const base = { schemas: [USER_SCHEMA], id: 'u1', userName: 'cora@vendor.example', active: true };
  const patch = (operations: unknown[]) => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: operations });

  test('Okta: replace without a path, an object of attributes', () => {
    const result = applyPatch(base, patch([{ op: 'replace', value: { active: false } }]));
    assert.equal(readUser(result).active, false);
  });

  test('Entra ID: capitalised op and "False" as a string', () => {
    const result = applyPatch(base, patch([{ op: 'Replace', path: 'active', value: 'False' }]));
    assert.equal(readUser(result).active, false);
    assert.equal(readUser(applyPatch(base, patch([{ op: 'Replace', path: 'active', value: 'True' }]))).active, true);
  });

  test('group members: Okta removes by filter, Entra by value list; adding twice keeps one; removing a non-member is a no-op', () => {
    const group = {
      schemas: [GROUP_SCHEMA],
      id: 'g1',
      displayName: 'acme',
      members: [{ value: 'u1' }, { value: 'u2' }],
    };
    assert.deepEqual(readGroup(applyPatch(group, patch([{ op: 'remove', path: 'members[value eq "u1"]' }]))).members, [
      'u2',
    ]);
    assert.deepEqual(
      readGroup(applyPatch(group, patch([{ op: 'Remove', path: 'members', value: [{ $ref: null, value: 'u2' }] }])))
        .members,
      ['u1'],
    );
    const added = applyPatch(
      group,
      patch([
        {
          op: 'Add',
          path: 'members',
          value: [
            { value: 'u3', display: 'x' },
            { value: 'u1', display: 'again' },
          ],
        },
      ]),
    );
    assert.deepEqual([...new Set(readGroup(added).members)], ['u1', 'u2', 'u3']);
    const empty = { ...group, members: [] };
    assert.deepEqual(
      readGroup(applyPatch(empty, patch([{ op: 'remove', path: 'members[value eq "u9"]' }]))).members,
      [],
    );
  });

  test('refuses bodies that are not a PatchOp', () => {
    assert.throws(() => readPatch({ Operations: [] }), scimType('invalidSyntax'));
    assert.throws(() => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: [] }), scimType('invalidSyntax'));
    assert.throws(
      () => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'move', path: 'a' }] }),
      scimType('invalidSyntax'),
    );
    assert.throws(
      () => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'remove' }] }),
      scimType('noTarget'),
    );
    assert.throws(
      () => readPatch({ schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'add', path: 'title' }] }),
      scimType('invalidValue'),
    );
  });

  test('never mutates what it was given', () => {
    const original = structuredClone(base);
    applyPatch(base, patch([{ op: 'replace', value: { active: false, title: 'x' } }]));
    assert.deepEqual(base, original);
  });
});

describe('SCIM tokens', () => {
  const record = (id: string, token: string, extra: Partial<ScimTokenRecord> = {}): ScimTokenRecord => ({
    id,
    idp: 'okta',
    secretHash: hashScimToken(token),
    createdAt: 0,
    createdBy: 'sam@corp.example',
    ...extra,
  });

  test('a new token is recognisable, random, and only its SHA-256 is kept', () => {
    const a = generateScimToken();
    const b = generateScimToken();
    assert.match(a.token, /^kvscim_[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a.token, b.token);
    assert.equal(a.secretHash, hashScimToken(a.token));
    assert.equal(a.secretHash.includes(a.token), false);
  });

  test('matches only a live token: not revoked, not past its grace period, well-formed', () => {
    const live = generateScimToken().token;
    const revoked = generateScimToken().token;
    const expired = generateScimToken().token;
    const records = [
      record('t1', live),
      record('t2', revoked, { revokedAt: 5 }),
      record('t3', expired, { expiresAt: 10 }),
    ];
    assert.equal(matchScimToken(live, records, 100)?.id, 't1');
    assert.equal(matchScimToken(revoked, records, 100), undefined);
    assert.equal(matchScimToken(expired, records, 100), undefined);
    assert.equal(matchScimToken(expired, records, 9)?.id, 't3', 'still valid during the grace period');
    assert.equal(matchScimToken(`${live}x`, records, 100), undefined);
    assert.equal(matchScimToken('not-a-token', [record('t4', 'not-a-token')], 100), undefined, 'malformed is refused');
  });
});
