import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hiddenCharacter } from './hidden-text.ts';

test('bidirectional controls, zero-width characters and line separators are found and named; visible text is not', () => {
  const found: [string, string][] = [
    ['\u202Eelpmaxe.proc@anad', 'U+202E'],
    ['dana\u200B@corp.example', 'U+200B'],
    ['dana@corp\u2066.example', 'U+2066'],
    ['sub\u2028next', 'U+2028'],
    ['sub\u2029', 'U+2029'],
    ['\uFEFFdana@corp.example', 'U+FEFF'],
    ['da\u00ADna@corp.example', 'U+00AD'],
    ['a\u200Db', 'U+200D'],
    ['tag\u{E0041}', 'U+E0041'],
    ['nora\u3164@vendor.example', 'U+3164'],
    ['nora\uFE0F@vendor.example', 'U+FE0F'],
    ['nora\u034F@vendor.example', 'U+034F'],
    ['nora\u115F', 'U+115F'],
    ['nora\u2800@vendor.example', 'U+2800'],
    ['nora\u180B@vendor.example', 'U+180B'],
  ];
  for (const [text, character] of found) assert.equal(hiddenCharacter(text), character, JSON.stringify(text));
  for (const text of ['dana@corp.example', 'müller@vendor.example', '開発@example.jp', 'ok-\u{1F600}', 'a b', ''])
    assert.equal(hiddenCharacter(text), undefined, text);
});
