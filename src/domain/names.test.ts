import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidInput } from './errors.ts';
import {
  isDnsLabel,
  isNamespacePattern,
  isVisaId,
  matchesAnyPattern,
  matchesPattern,
  personHash,
  profileClusterRoleName,
  roleBindingName,
  serviceAccountName,
  validateNamespaceName,
} from './names.ts';

describe('isDnsLabel', () => {
  for (const name of ['a', 'payments', 'staging-eu-1', '0abc', 'a'.repeat(63)]) {
    it(`accepts '${name.length > 20 ? `${name.slice(0, 8)}… (${name.length})` : name}'`, () => {
      assert.equal(isDnsLabel(name), true);
    });
  }
  for (const name of ['', 'Payments', '-lead', 'trail-', 'dot.ted', 'under_score', 'a'.repeat(64), 'pаyments']) {
    it(`refuses '${name.length > 20 ? `${name.slice(0, 8)}… (${name.length})` : name}'`, () => {
      assert.equal(isDnsLabel(name), false);
    });
  }
});

describe('validateNamespaceName', () => {
  it('returns a valid namespace name unchanged', () => {
    assert.equal(validateNamespaceName('payments', 'namespaces[0]'), 'payments');
  });

  it('refuses an invalid name with the field and what is allowed', () => {
    assert.throws(
      () => validateNamespaceName('Payments', 'namespaces[2]'),
      (error: unknown) =>
        error instanceof InvalidInput &&
        error.message.startsWith("namespaces[2]: 'Payments' is not a valid namespace name") &&
        error.message.includes('lower-case letters, digits'),
    );
  });

  it('refuses a value that is not a string', () => {
    assert.throws(() => validateNamespaceName(42, 'namespace'), InvalidInput);
  });
});

describe('namespace patterns', () => {
  it('matches an exact pattern only by equality', () => {
    assert.equal(matchesPattern('payments', 'payments'), true);
    assert.equal(matchesPattern('payments-v2', 'payments'), false);
  });

  it('matches a trailing wildcard by prefix', () => {
    assert.equal(matchesPattern('staging-eu', 'staging-*'), true);
    assert.equal(matchesPattern('staging-', 'staging-*'), true);
  });

  it('does not match the prefix without its dash, nor the prefix in the middle', () => {
    assert.equal(matchesPattern('staging', 'staging-*'), false);
    assert.equal(matchesPattern('prod-staging-eu', 'staging-*'), false);
  });

  it('treats a * that is not trailing as an ordinary character', () => {
    assert.equal(matchesPattern('staging-eu', 'st*-eu'), false);
  });

  it('matches any of several patterns', () => {
    assert.equal(matchesAnyPattern('staging-us', ['payments', 'staging-*']), true);
    assert.equal(matchesAnyPattern('kube-system', ['payments', 'staging-*']), false);
  });

  it('accepts names and prefixes with one trailing * as ceiling patterns', () => {
    for (const pattern of ['payments', 'staging-*', 'team-a*', 'x*'])
      assert.equal(isNamespacePattern(pattern), true, pattern);
  });

  it('refuses a bare *, inner wildcards and invalid names as ceiling patterns', () => {
    for (const pattern of ['*', '**', 'st*ging', '*-staging', 'Staging-*', '-x*', 'a'.repeat(63) + '*', '']) {
      assert.equal(isNamespacePattern(pattern), false, pattern);
    }
  });
});

describe('personHash', () => {
  it('is 16 hex characters and stable', () => {
    assert.match(personHash('carol@vendor.example'), /^[0-9a-f]{16}$/);
    assert.equal(personHash('carol@vendor.example'), personHash('carol@vendor.example'));
  });

  it('is the start of the SHA-256 of the exact email', () => {
    // sha256("carol@vendor.example"), computed independently with `printf %s … | sha256sum`.
    assert.equal(personHash('carol@vendor.example'), '2bb014158b48ee63');
  });

  it('differs for emails that differ only in case', () => {
    assert.notEqual(personHash('Carol@vendor.example'), personHash('carol@vendor.example'));
  });
});

describe('serviceAccountName', () => {
  it('is a readable slug of the email plus 10 hex characters', () => {
    assert.match(serviceAccountName('carol@vendor.example'), /^carol-vendor-example-[0-9a-f]{10}$/);
  });

  it('lower-cases ASCII and collapses runs of other characters into one dash', () => {
    assert.match(serviceAccountName('Carol.O+Brien@Vendor.Example'), /^carol-o-brien-vendor-example-[0-9a-f]{10}$/);
  });

  it('gives emails that differ only in case different names', () => {
    assert.notEqual(serviceAccountName('Carol@vendor.example'), serviceAccountName('carol@vendor.example'));
  });

  it('gives a Cyrillic look-alike a different name from the Latin original', () => {
    const latin = serviceAccountName('admin@vendor.example');
    const cyrillic = serviceAccountName('\u0430dmin@vendor.example'); // Cyrillic small a
    assert.notEqual(cyrillic, latin);
    assert.ok(isDnsLabel(cyrillic));
  });

  it('gives fullwidth and Kelvin-sign look-alikes different names', () => {
    const names = new Set([
      serviceAccountName('kim@vendor.example'),
      serviceAccountName('\u212Aim@vendor.example'), // Kelvin sign, which toLowerCase() folds to 'k'
      serviceAccountName('\uFF4Bim@vendor.example'), // fullwidth k
    ]);
    assert.equal(names.size, 3);
  });

  it('does not fold non-ASCII letters into ASCII in the slug', () => {
    assert.match(serviceAccountName('\u212Aim@vendor.example'), /^im-vendor-example-/);
  });

  it('stays a DNS label of at most 63 characters for a very long email', () => {
    const name = serviceAccountName(`${'a.'.repeat(200)}b@${'sub.'.repeat(50)}example`);
    assert.ok(name.length <= 63, `${name.length} characters`);
    assert.ok(isDnsLabel(name), name);
  });

  it('does not end the slug with a dash when truncation cuts at a separator', () => {
    const name = serviceAccountName(`${'x'.repeat(51)}.y@vendor.example`);
    assert.ok(isDnsLabel(name), name);
    assert.match(name, /^x{51}-[0-9a-f]{10}$/);
  });

  it('falls back to a fixed slug when the email has no ASCII letter or digit', () => {
    assert.match(
      serviceAccountName('\u0436\u0435\u043D\u044F@\u043F\u0440\u0438\u043C\u0435\u0440.\u0440\u0444'),
      /^person-[0-9a-f]{10}$/,
    );
  });

  it('produces distinct valid names for thousands of similar emails', () => {
    const emails = generateSimilarEmails(4000);
    const names = new Set<string>();
    for (const email of emails) {
      const name = serviceAccountName(email);
      assert.ok(isDnsLabel(name), `${email} → ${name}`);
      names.add(name);
    }
    assert.equal(emails.length, new Set(emails).size, 'the generator must not repeat itself');
    assert.equal(names.size, emails.length);
  });
});

describe('object names', () => {
  it('names a visa RoleBinding kubevisa-<visa id>', () => {
    assert.equal(roleBindingName('v_7k2m9q'), 'kubevisa-v_7k2m9q');
  });

  it('refuses a visa id that cannot be a label value', () => {
    assert.throws(() => roleBindingName('v/../x'), InvalidInput);
    assert.throws(() => roleBindingName(''), InvalidInput);
    assert.throws(() => roleBindingName('v'.repeat(64)), InvalidInput);
  });

  it('accepts the ids the store mints as visa ids', () => {
    assert.equal(isVisaId('v_abcdefghijklmnopqrstuvwxyz'), true);
    assert.equal(isVisaId('_leading'), false);
  });

  it('names a profile ClusterRole kubevisa:profile:<name>', () => {
    assert.equal(profileClusterRoleName('debugger'), 'kubevisa:profile:debugger');
  });

  it('refuses a profile name that is not a DNS label', () => {
    assert.throws(() => profileClusterRoleName('Cluster:Admin'), InvalidInput);
  });
});

/**
 * Emails built to collide in the slug: the same local part in many spellings (case, separators, look-alikes,
 * a differing character beyond the truncation point).
 */
function generateSimilarEmails(count: number): string[] {
  const variants = [
    (i: number) => `user${i}@vendor.example`,
    (i: number) => `User${i}@vendor.example`,
    (i: number) => `user.${i}@vendor.example`,
    (i: number) => `user+${i}@vendor.example`,
    (i: number) => `us\u0435r${i}@vendor.example`, // Cyrillic e
    (i: number) => `\uFF55ser${i}@vendor.example`, // fullwidth u
    (i: number) => `${'long'.repeat(20)}${i}@vendor.example`,
    (i: number) => `user${i}@VENDOR.example`,
  ];
  const emails: string[] = [];
  for (let i = 0; emails.length < count; i += 1) {
    for (const variant of variants) emails.push(variant(i));
  }
  return emails.slice(0, count);
}
