import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidInput } from './errors.ts';
import { clipText, firstDuplicate, requireReason, requireSeconds, requireStringList, requireText } from './validate.ts';

describe('requireText', () => {
  it('returns the text without surrounding white space', () => {
    assert.equal(requireText('  JIRA-1 \n', 'reason', 10), 'JIRA-1');
  });

  it('counts characters, not UTF-16 units, against the limit', () => {
    assert.equal(requireText('🔑'.repeat(5), 'reason', 5), '🔑'.repeat(5));
    assert.throws(() => requireText('🔑'.repeat(6), 'reason', 5), /6 characters is too long; at most 5/);
  });

  it('refuses a value that is not text, naming the field', () => {
    assert.throws(
      () => requireText(42, 'vendor', 10),
      (error: unknown) => error instanceof InvalidInput && error.details?.['field'] === 'vendor',
    );
  });

  it('refuses text that cannot be stored as given: a lone surrogate or a NUL character', () => {
    for (const [value, message] of [
      ['JIRA-1 \ud800', /reason: contains a lone UTF-16 surrogate/],
      ['\udc00JIRA-1', /reason: contains a lone UTF-16 surrogate/],
      ['JIRA\u00001', /reason: contains a NUL character/],
    ] as const) {
      assert.throws(
        () => requireReason(value),
        (error: unknown) => error instanceof InvalidInput && message.test(error.message),
      );
    }
    assert.equal(requireReason('ticket \ud83d\ude00'), 'ticket 😀', 'a surrogate pair is valid text');
  });

  it('limits reasons to 500 characters', () => {
    assert.throws(() => requireReason('x'.repeat(501)), /at most 500/);
  });
});

describe('clipText', () => {
  it('keeps text up to the limit and cuts longer text at the limit, in UTF-16 units', () => {
    assert.equal(clipText('abc', 3), 'abc');
    assert.equal(clipText('abcd', 3), 'abc');
    assert.equal(clipText('ab\u{1F600}', 4), 'ab\u{1F600}');
  });

  it('never leaves the first half of a surrogate pair at the end', () => {
    assert.equal(clipText('ab\u{1F600}c', 3), 'ab');
    assert.equal(clipText('ab\u{1F600}c', 4), 'ab\u{1F600}');
    for (let limit = 1; limit < 12; limit++) assert.ok(clipText('a\u{1F600}\u{1F601}b\u{1F602}', limit).isWellFormed());
  });
});

describe('requireStringList', () => {
  it('returns a copy of a list of strings', () => {
    const input = ['a', 'b'];
    const output = requireStringList(input, 'namespaces', 1, 5);
    assert.deepEqual(output, input);
    assert.notEqual(output, input);
  });

  it('refuses a list holding something other than strings', () => {
    assert.throws(() => requireStringList(['a', 1], 'namespaces', 1, 5), /list of text values/);
    assert.throws(() => requireStringList('a', 'namespaces', 1, 5), /list of text values/);
  });

  it('refuses too few or too many entries, saying the range', () => {
    assert.throws(() => requireStringList([], 'namespaces', 1, 5), /has 0 entries; 1 to 5 are allowed/);
    assert.throws(() => requireStringList(['a', 'b'], 'namespaces', 1, 1), /has 2 entries; 1 are allowed/);
  });
});

describe('firstDuplicate and requireSeconds', () => {
  it('finds the first repeated value', () => {
    assert.equal(firstDuplicate(['a', 'b', 'c', 'b', 'a']), 'b');
    assert.equal(firstDuplicate(['a', 'b']), undefined);
  });

  it('accepts whole seconds within the range only', () => {
    assert.equal(requireSeconds(60, 'durationSeconds', 60), 60);
    for (const value of [0, 61, 1.5, '60', Number.POSITIVE_INFINITY]) {
      assert.throws(() => requireSeconds(value, 'durationSeconds', 60), InvalidInput, String(value));
    }
  });
});
