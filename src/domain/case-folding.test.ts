import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldsIntoAscii } from './case-folding.ts';
import { sameGroup } from './roles.ts';

test('characters that change case into ASCII letters are found; plain and other accented text is not', () => {
  for (const text of ['\u212Aate@corp.example', 'adm\u0130n', '\u017Fam@corp.example', 'l\u0131nus', 'x\u212A'])
    assert.equal(foldsIntoAscii(text), true, text);
  for (const text of ['kate@corp.example', 'KATE@corp.example', 'Équipe-Ops', 'müller@vendor.example', '開発', ''])
    assert.equal(foldsIntoAscii(text), false, text);
});

test('a group name with the Kelvin sign is not the same group as its ASCII look-alike; case alone still is', () => {
  assert.equal(sameGroup('\u212Aubevisa-admins', 'kubevisa-admins'), false);
  assert.equal(sameGroup('kubevisa-admins', '\u212Aubevisa-admins'), false);
  assert.equal(sameGroup('\u212Aubevisa-admins', '\u212Aubevisa-admins'), true);
  assert.equal(sameGroup('Kubevisa-Admins', 'kubevisa-admins'), true);
  assert.equal(sameGroup('ÉQUIPE', 'équipe'), true);
});
