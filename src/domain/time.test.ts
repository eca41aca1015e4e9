import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidInput } from './errors.ts';
import { formatDuration, formatInstant, MAX_DURATION_SECONDS, parseDuration, parseInstant } from './time.ts';

describe('parseInstant', () => {
  it('reads a UTC time ending in Z', () => {
    assert.equal(parseInstant('2026-11-28T09:00:00Z', 'endsAt'), Date.UTC(2026, 10, 28, 9, 0, 0));
  });

  it('stores a time with a positive offset as the UTC instant it names', () => {
    assert.equal(parseInstant('2026-11-28T09:00:00+05:30', 'endsAt'), Date.UTC(2026, 10, 28, 3, 30, 0));
  });

  it('stores a time with a negative offset as the UTC instant it names', () => {
    assert.equal(parseInstant('2026-11-28T21:15:00-08:00', 'endsAt'), Date.UTC(2026, 10, 29, 5, 15, 0));
  });

  it('crosses a year boundary when the offset demands it', () => {
    assert.equal(parseInstant('2027-01-01T01:00:00+02:00', 'endsAt'), Date.UTC(2026, 11, 31, 23, 0, 0));
  });

  it('keeps milliseconds and truncates finer fractions', () => {
    assert.equal(parseInstant('2026-11-28T09:00:00.123456789Z', 'at'), Date.UTC(2026, 10, 28, 9, 0, 0, 123));
    assert.equal(parseInstant('2026-11-28T09:00:00.5Z', 'at'), Date.UTC(2026, 10, 28, 9, 0, 0, 500));
  });

  it('accepts lower-case t and z as RFC 3339 allows', () => {
    assert.equal(parseInstant('2026-11-28t09:00:00z', 'at'), Date.UTC(2026, 10, 28, 9, 0, 0));
  });

  it('accepts 29 February in a leap year', () => {
    assert.equal(parseInstant('2028-02-29T00:00:00Z', 'at'), Date.UTC(2028, 1, 29));
  });

  it('refuses a time without an offset, naming the field and showing an example', () => {
    assert.throws(
      () => parseInstant('2026-11-28T09:00:00', 'endsAt'),
      (error: unknown) =>
        error instanceof InvalidInput &&
        error.code === 'ERR_INVALID_INPUT' &&
        error.message.includes('endsAt') &&
        error.message.includes('no UTC offset') &&
        error.message.includes('2026-11-28T09:00:00Z') &&
        error.details?.['field'] === 'endsAt',
    );
  });

  for (const [text, why] of [
    ['2026-11-28', 'a date only'],
    ['2026-11-28 09:00:00Z', 'a space separator'],
    ['2026-02-29T09:00:00Z', 'a day that does not exist (not a leap year)'],
    ['2026-04-31T09:00:00Z', 'the 31st of a 30-day month'],
    ['2026-13-01T09:00:00Z', 'month 13'],
    ['2026-11-28T24:00:00Z', 'hour 24'],
    ['2026-11-28T09:60:00Z', 'minute 60'],
    ['2026-11-28T09:00:60Z', 'a leap second'],
    ['2026-11-28T09:00:00+24:00', 'an offset of 24 hours'],
    ['2026-11-28T09:00:00+0530', 'an offset without a colon'],
    ['tomorrow', 'words'],
    ['', 'an empty string'],
    [' 2026-11-28T09:00:00Z', 'leading white space'],
  ] as const) {
    it(`refuses ${why}`, () => {
      assert.throws(() => parseInstant(text, 'startsAt'), InvalidInput);
    });
  }

  it('refuses a value that is not a string', () => {
    assert.throws(() => parseInstant(1764320400000, 'startsAt'), /startsAt: expected a string, got number/);
    assert.throws(() => parseInstant(null, 'startsAt'), /got null/);
  });
});

describe('formatInstant', () => {
  it('prints UTC with Z and no fraction for whole seconds', () => {
    assert.equal(formatInstant(Date.UTC(2026, 10, 28, 3, 30, 0)), '2026-11-28T03:30:00Z');
  });

  it('prints milliseconds when there are some', () => {
    assert.equal(formatInstant(Date.UTC(2026, 10, 28, 3, 30, 0, 7)), '2026-11-28T03:30:00.007Z');
  });

  it('round-trips through parseInstant', () => {
    const instant = parseInstant('2026-11-28T09:00:00+05:30', 'at');
    assert.equal(parseInstant(formatInstant(instant), 'at'), instant);
  });
});

describe('parseDuration', () => {
  for (const [text, seconds] of [
    ['90s', 90],
    ['30m', 1800],
    ['8h', 28_800],
    ['1h30m', 5400],
    ['2d', 172_800],
    ['1d2h3m4s', 93_784],
    ['366d', MAX_DURATION_SECONDS],
  ] as const) {
    it(`reads ${text} as ${seconds} seconds`, () => {
      assert.equal(parseDuration(text, 'duration'), seconds);
    });
  }

  for (const [text, message] of [
    ['0s', /is zero/],
    ['0h0m', /is zero/],
    ['-1h', /is negative/],
    ['367d', /longer than 366 days/],
    ['8785h', /longer than 366 days/],
    ['8', /is not a duration/],
    ['1.5h', /is not a duration/],
    ['30m1h', /is not a duration/],
    ['1h1h', /is not a duration/],
    ['8H', /is not a duration/],
    ['1 h', /is not a duration/],
    ['', /is not a duration/],
    ['forever', /is not a duration/],
  ] as const) {
    it(`refuses '${text}'`, () => {
      assert.throws(
        () => parseDuration(text, 'duration'),
        (error: unknown) =>
          error instanceof InvalidInput && message.test(error.message) && error.message.startsWith('duration: '),
      );
    });
  }

  it('refuses a number: durations are written with units', () => {
    assert.throws(() => parseDuration(3600, 'duration'), /expected a string, got number/);
  });

  it('says what is allowed in the message', () => {
    assert.throws(() => parseDuration('soon', 'maxVisaDuration'), /90s, 30m, 8h, 1h30m or 2d/);
  });
});

describe('formatDuration', () => {
  for (const [seconds, text] of [
    [0, '0s'],
    [90, '1m30s'],
    [1800, '30m'],
    [5400, '1h30m'],
    [86_400, '1d'],
    [93_784, '1d2h3m4s'],
    [-90, '-1m30s'],
    [59.9, '59s'],
  ] as const) {
    it(`prints ${seconds} seconds as ${text}`, () => {
      assert.equal(formatDuration(seconds), text);
    });
  }

  it('round-trips through parseDuration for every minute of a week', () => {
    for (let seconds = 60; seconds <= 7 * 86_400; seconds += 60) {
      assert.equal(parseDuration(formatDuration(seconds), 'duration'), seconds);
    }
  });
});
