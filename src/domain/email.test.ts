import { test } from 'node:test';
import assert from 'node:assert/strict';
import { couldPassForAnother, emailAddressProblem, MAX_EMAIL_LENGTH, parseEmailAddress } from './email.ts';

test('an address is taken in lower case; one that is not an address, too long or holding an invisible character is refused naming the field', () => {
  assert.equal(parseEmailAddress('Dana@Corp.Example', 'sponsor'), 'dana@corp.example');
  assert.equal(parseEmailAddress('müller@vendor.example', 'contractors[0]'), 'müller@vendor.example');
  const refusals: [unknown, RegExp][] = [
    ['dana', /^sponsor: 'dana' is not an email address \(e\.g\. dana@example\.com\)$/],
    ['dana@localhost', /is not an email address/],
    ['da na@corp.example', /is not an email address/],
    [undefined, /^sponsor: missing is not an email address/],
    [`${'a'.repeat(64)}@${'b'.repeat(MAX_EMAIL_LENGTH - 68)}.com`, /is not an email address/],
    ['dana\u200B@corp.example', /^sponsor: "dana\\u\{200B\}@corp\.example" holds U\+200B, an invisible character/],
    ['nora\u2800@vendor.example', /holds U\+2800, an invisible character .*; type the address again$/],
    // Each lower- or upper-cases into a plain letter: the Kelvin sign, the dotted capital I, the long s, the dotless i.
    [
      '\u212Aate@corp.example',
      /^sponsor: '\u212Aate@corp\.example' holds U\+212A '\u212A', which changes case into a plain letter/,
    ],
    ['\u0130nes@corp.example', /holds U\+0130/],
    ['\u017Fam@corp.example', /holds U\+017F/],
    ['b\u0131ll@corp.example', /holds U\+0131/],
  ];
  for (const [value, message] of refusals) {
    assert.throws(() => parseEmailAddress(value, 'sponsor'), { code: 'ERR_INVALID_INPUT', message }, String(value));
    assert.ok(emailAddressProblem(value) !== undefined, String(value));
  }
  assert.equal(emailAddressProblem('dana@corp.example'), undefined);
});

test('an address that could pass for another person’s is told apart before it is trimmed or lower-cased', () => {
  assert.equal(couldPassForAnother('Kate@Corp.Example'), false);
  assert.equal(couldPassForAnother('müller@vendor.example'), false);
  // Each would be kate@corp.example once trimmed and lower-cased.
  for (const sent of ['\u212Aate@corp.example', '\uFEFFkate@corp.example', 'kate@corp.example\u200B']) {
    assert.equal(couldPassForAnother(sent), true, JSON.stringify(sent));
  }
});
