// Text an identity provider sends that the store could not hold as sent: a lone UTF-16 surrogate (JSON carries one
// as "\ud800"; both engines stored U+FFFD instead, so a SCIM externalId or an OIDC display name read back differently
// from what was sent) and a NUL (PostgreSQL refused it: a login whose `name` or `sub` held one failed with a server
// error there, while SQLite took it). Against the real server, the real OIDC provider and each engine; afterwards
// the audit trail verifies.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../src/store/postgres/test-database.ts';
import { createScimToken, scim, startLightEnv, type LightEnv } from './support/identity.ts';
import { api, loginAs } from './support/kubevisa-env.ts';

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const nora = { sub: 'nora', email: 'nora@vendor.example', name: 'Nora \ud800 N\u0000', password: 'pw', groups: [] };
const olga = { sub: 'olga\udc00', email: 'olga@vendor.example', name: 'Olga', password: 'pw', groups: [] };
const rita = { sub: 'rita\u0000', email: 'rita@vendor.example', name: 'Rita', password: 'pw', groups: [] };
// Random hex, so that PostgreSQL cannot compress it below its index row limit (2,704 bytes in a btree): a subject or
// an address this long could not be indexed there, and the login failed with a server error, while SQLite took it.
const sara = {
  sub: randomBytes(5_000).toString('hex'),
  email: 'sara@vendor.example',
  name: 'Sara',
  password: 'pw',
  groups: [],
};
// An invisible character in a subject or an address (src/domain/hidden-text.ts): a line separator, which breaks a log
// line in two, and a zero-width space, with which two addresses look the same.
const uma = { sub: 'uma\u2028admin', email: 'uma@vendor.example', name: 'Uma', password: 'pw', groups: [] };
const vera = { sub: 'vera', email: 'vera\u200B@vendor.example', name: 'Vera', password: 'pw', groups: [] };
const tina = {
  sub: 'tina',
  email: `${randomBytes(2_000).toString('hex')}@vendor.example`,
  name: 'Tina',
  password: 'pw',
  groups: [],
};

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`identity text on ${engine}`, () => {
    let env: LightEnv;
    let database: TestDatabase | undefined;
    let okta: string;
    before(async () => {
      database = engine === 'postgres' ? await createTestDatabase('kv_idtext') : undefined;
      const store = database ? { store: { engine: 'postgres', url: database.url } } : {};
      env = await startLightEnv({ scim: {}, ...store } as { scim: unknown }, {
        accounts: [nora, olga, rita, sara, tina, uma, vera],
      });
      okta = (await createScimToken(env.serverUrl, env.admin, 'okta')).token;
    });
    after(async () => {
      await env?.stop();
      await database?.drop();
    });

    test('SCIM refuses a lone surrogate or a control character in any attribute it stores, naming it; nothing is created', async () => {
      const user = (extra: Record<string, unknown>) => ({ schemas: [USER], userName: 'x@vendor.example', ...extra });
      const cases: [Record<string, unknown>, string][] = [
        [user({ userName: 'a\ud800@vendor.example' }), "'userName' contains a lone UTF-16 surrogate"],
        [user({ displayName: 'C \udc00' }), "'displayName' contains a lone UTF-16 surrogate"],
        [user({ externalId: 'x\ud800' }), "'externalId' contains a lone UTF-16 surrogate"],
        [user({ emails: [{ value: 'f\ud800@vendor.example', primary: true }] }), "'emails[0].value' contains a lone"],
        [user({ emails: [{ value: 'f\u0000@vendor.example', primary: true }] }), "'emails[0].value' contains control"],
        [{ schemas: [GROUP], displayName: 'g\ud800' }, "'displayName' contains a lone UTF-16 surrogate"],
      ];
      for (const [body, message] of cases) {
        const answer = await scim(env.serverUrl, okta, 'POST', body.userName ? '/Users' : '/Groups', body);
        assert.equal(answer.status, 400, JSON.stringify(answer.body));
        assert.equal(answer.body.scimType, 'invalidValue');
        assert.ok(String(answer.body.detail).includes(message), String(answer.body.detail));
      }
      const created = await scim(env.serverUrl, okta, 'POST', '/Users', user({ externalId: 'ext-\u{1F600}' }));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const patched = await scim(env.serverUrl, okta, 'PATCH', `/Users/${String(created.body.id)}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'externalId', value: 'ext-\ud800' }],
      });
      assert.equal(patched.status, 400, JSON.stringify(patched.body));
      const listed = await scim(env.serverUrl, okta, 'GET', '/Users');
      assert.deepEqual(
        (listed.body.Resources ?? []).map((resource) => [resource.userName, resource.externalId]),
        [['x@vendor.example', 'ext-\u{1F600}']],
        'only the valid user, its externalId as sent',
      );
    });

    test('a login whose subject holds a lone surrogate or a NUL is refused as such; a display name is stored as it is then shown', async () => {
      for (const account of [olga, rita]) {
        await assert.rejects(loginAs(env.serverUrl, account), (error: Error) => {
          assert.match(error.message, /401/);
          assert.match(
            error.message,
            /the \\"sub\\" claim the identity provider sent holds a control character or text that is not valid Unicode/,
          );
          return true;
        });
      }
      const session = await loginAs(env.serverUrl, nora);
      const listed = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: env.admin });
      const person = (listed.body.items ?? []).find((p) => p.email === nora.email);
      assert.equal(person?.displayName, 'Nora \ufffd N', 'the stored name is the one kubevisa used');
      assert.equal((await api(env.serverUrl, 'GET', '/api/v1/me', { token: session.token })).status, 200);
      const emails = (listed.body.items ?? []).map((p) => p.email);
      assert.ok(!emails.includes(olga.email) && !emails.includes(rita.email), 'no person for a refused login');
      const verdict = await api(env.serverUrl, 'POST', '/api/v1/audit/verify', { token: env.admin, body: {} });
      assert.equal(verdict.body.ok, true, String(verdict.body.summary));
    });

    test('a login, a SCIM user, an engagement or an identity link whose identifier holds an invisible character is refused naming it; nothing is created', async () => {
      for (const [account, claim, character] of [
        [uma, 'sub', 'U\\+2028'],
        [vera, 'email', 'U\\+200B'],
      ] as const) {
        await assert.rejects(loginAs(env.serverUrl, account), (error: Error) => {
          assert.match(error.message, /401/);
          assert.match(
            error.message,
            new RegExp(
              `the \\\\"${claim}\\\\" claim the identity provider sent holds ${character}, an invisible character`,
            ),
          );
          return true;
        });
      }
      const scimUser = await scim(env.serverUrl, okta, 'POST', '/Users', {
        schemas: [USER],
        userName: '\u202Eelpmaxe.rodnev@anad',
      });
      assert.equal(scimUser.status, 400, JSON.stringify(scimUser.body));
      assert.equal(scimUser.body.scimType, 'invalidValue');
      assert.match(String(scimUser.body.detail), /^userName holds U\+202E, an invisible character/);
      const engagement = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
        token: env.admin,
        body: {
          name: 'hidden-text',
          vendor: 'Acme',
          contractors: ['nora\u200B@vendor.example'],
          sponsor: 'sam@corp.example',
          endsAt: new Date(Date.now() + 3 * 86_400_000).toISOString(),
          ceiling: { clusters: ['test'], namespacePatterns: ['ht-*'], profiles: ['viewer'] },
          maxVisaDuration: '8h',
        },
      });
      assert.equal(engagement.status, 400, JSON.stringify(engagement.body));
      assert.match(String(engagement.body.detail), /contractors\[0\]: .* holds U\+200B, an invisible character/);
      // A link made ahead for someone who has not logged in yet names them by an address: the same check.
      const link = await api(env.serverUrl, 'POST', '/api/v1/identity/links', {
        token: env.admin,
        body: { person: 'nora\u2800@vendor.example', idp: 'okta', reason: 'ahead of the first login' },
      });
      assert.equal(link.status, 400, JSON.stringify(link.body));
      assert.match(String(link.body.detail), /^person: .* holds U\+2800, an invisible character/);
      const links = await api(env.serverUrl, 'GET', '/api/v1/identity/links', { token: env.admin });
      assert.equal(JSON.stringify(links.body).includes('\\u2800'), false, 'no link was made');
      assert.equal(JSON.stringify(links.body).includes('\u2800'), false, 'no link was made');
      const persons = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: env.admin });
      const emails = (persons.body.items ?? []).map((p) => p.email);
      assert.ok(!emails.includes(uma.email) && !emails.includes(vera.email), 'no person for a refused login');
      const users = await scim(env.serverUrl, okta, 'GET', '/Users');
      assert.ok(
        !(users.body.Resources ?? []).some((resource) => String(resource.userName).includes('\u202E')),
        'no SCIM user was created',
      );
      const engagements = await api(env.serverUrl, 'GET', '/api/v1/engagements', { token: env.admin });
      assert.ok(!JSON.stringify(engagements.body).includes('hidden-text'), 'no engagement was created');
    });

    test('a login whose subject or address is longer than OpenID Connect and email allow is refused as such, on either engine', async () => {
      for (const [account, claim] of [
        [sara, 'sub'],
        [tina, 'email'],
      ] as const) {
        await assert.rejects(loginAs(env.serverUrl, account), (error: Error) => {
          assert.match(error.message, /401/);
          assert.match(
            error.message,
            new RegExp(`the \\\\"${claim}\\\\" claim the identity provider sent is longer than`),
          );
          return true;
        });
      }
      const listed = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: env.admin });
      const emails = (listed.body.items ?? []).map((p) => p.email);
      assert.ok(!emails.includes(sara.email) && !emails.includes(tina.email), 'no person for a refused login');
    });

    test('an offboarding or an identity link whose reason holds a lone surrogate or a NUL is refused naming the reason, and changes nothing', async () => {
      await loginAs(env.serverUrl, nora);
      const offboarding = await api(
        env.serverUrl,
        'POST',
        `/api/v1/persons/${encodeURIComponent(nora.email)}/offboarding`,
        {
          token: env.admin,
          body: { reason: 'left \ud800' },
        },
      );
      assert.equal(offboarding.status, 400, JSON.stringify(offboarding.body));
      assert.match(String(offboarding.body.detail), /^reason: contains a lone UTF-16 surrogate/);
      const link = await api(env.serverUrl, 'POST', '/api/v1/identity/links', {
        token: env.admin,
        body: { person: nora.email, idp: 'okta', reason: 'link \u0000' },
      });
      assert.equal(link.status, 400, JSON.stringify(link.body));
      assert.match(String(link.body.detail), /^reason: contains a NUL character/);
      const listed = await api(env.serverUrl, 'GET', '/api/v1/persons', { token: env.admin });
      assert.equal((listed.body.items ?? []).find((p) => p.email === nora.email)?.status, 'active');
      const links = await api(env.serverUrl, 'GET', '/api/v1/identity/links', { token: env.admin });
      assert.equal(JSON.stringify(links.body).includes(nora.email), false, 'no link was made');
    });
  });
}
