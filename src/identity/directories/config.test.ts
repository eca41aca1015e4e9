// identity.sync for each directory provider: what is accepted (with every default), and what is refused, with a
// message naming the field and what to do.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { parseIdentityConfig } from '../config.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubevisa-sync-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'secret'), 'value\n');
writeFileSync(join(dir, 'empty'), '\n');
const sync = (fields: Record<string, unknown>) => parseIdentityConfig({ sync: fields }, dir).sync;
const refused = (pattern: RegExp) => (error: Error & { code?: string }) => {
  assert.equal(error.code, 'ERR_INVALID_INPUT');
  assert.match(error.message, pattern);
  return true;
};

describe('identity.sync providers', () => {
  test('okta: the org URL and an API token file (relative to the config folder)', () => {
    assert.deepEqual(sync({ provider: 'okta', url: 'https://acme.okta.com/', tokenFile: 'secret' }), {
      provider: 'okta',
      url: 'https://acme.okta.com',
      tokenFile: join(dir, 'secret'),
      intervalMs: 300_000,
      timeoutMs: 120_000,
      missingUsers: 'offboard',
      maxOffboardsPerRun: 10,
    });
  });

  test('entra: Graph and the token endpoint default to the public cloud for the tenant', () => {
    assert.deepEqual(
      sync({ provider: 'entra', tenant: 'corp.example', clientId: 'c1', clientSecretFile: 'secret', timeout: '30s' }),
      {
        provider: 'entra',
        tenant: 'corp.example',
        clientId: 'c1',
        clientSecretFile: join(dir, 'secret'),
        emailAttribute: 'userPrincipalName',
        graphUrl: 'https://graph.microsoft.com',
        tokenUrl: 'https://login.microsoftonline.com/corp.example/oauth2/v2.0/token',
        intervalMs: 300_000,
        timeoutMs: 30_000,
        missingUsers: 'offboard',
        maxOffboardsPerRun: 10,
      },
    );
  });

  test('google: a key file, the admin to act as, my_customer by default', () => {
    const parsed = sync({ provider: 'google', keyFile: 'secret', subject: 'admin@corp.example' });
    assert.equal(parsed?.provider, 'google');
    assert.deepEqual(
      parsed && { keyFile: 'keyFile' in parsed && parsed.keyFile, customer: 'customer' in parsed && parsed.customer },
      { keyFile: join(dir, 'secret'), customer: 'my_customer' },
    );
  });

  test('keycloak: base URL, realm and a confidential client', () => {
    assert.equal(
      sync({
        provider: 'keycloak',
        url: 'https://sso.corp.example',
        realm: 'acme',
        clientId: 'k',
        clientSecretFile: 'secret',
      })?.provider,
      'keycloak',
    );
  });

  test('refuses what would send a credential in clear text, or read nothing', () => {
    assert.throws(
      () => sync({ provider: 'okta', url: 'http://acme.okta.com', tokenFile: 'secret' }),
      refused(/'identity\.sync\.url' must be an https URL \(the directory credential would travel in clear text\)/),
    );
    assert.doesNotThrow(() => sync({ provider: 'okta', url: 'http://127.0.0.1:8080', tokenFile: 'secret' }));
    assert.throws(
      () => sync({ provider: 'okta', url: 'https://acme.okta.com', tokenFile: 'empty' }),
      refused(/'identity\.sync\.tokenFile' is empty: it must hold an Okta API token/),
    );
    assert.throws(
      () => sync({ provider: 'okta', url: 'https://acme.okta.com', tokenFile: 'missing' }),
      refused(/'identity\.sync\.tokenFile' cannot be read .*give the path of a file holding an Okta API token/),
    );
    assert.throws(
      () => sync({ provider: 'okta', url: 'https://acme.okta.com', token: 'inline', tokenFile: 'secret' }),
      refused(
        /'identity\.sync\.token' is not a known field; known fields: provider, interval, timeout, missingUsers, maxOffboardsPerRun, url, tokenFile/,
      ),
    );
    assert.throws(
      () => sync({ provider: 'entra', tenant: 'corp.example/../x', clientId: 'c', clientSecretFile: 'secret' }),
      refused(/'identity\.sync\.tenant' must be the directory \(tenant\) id or a verified domain/),
    );
    assert.throws(
      () => sync({ provider: 'google', keyFile: 'secret', subject: 'not-an-email' }),
      refused(/'identity\.sync\.subject' must be the email of the admin/),
    );
    assert.throws(
      () => sync({ provider: 'ldap', url: 'https://x' }),
      refused(/'identity\.sync\.provider' must be one of okta, entra, google, keycloak, dev-idp; got "ldap"/),
    );
    assert.throws(
      () =>
        sync({
          provider: 'keycloak',
          url: 'https://sso.corp.example?x=1',
          realm: 'a',
          clientId: 'k',
          clientSecretFile: 'secret',
        }),
      refused(/must not carry a query or a fragment/),
    );
  });
});
