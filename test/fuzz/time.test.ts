// Properties of duration and instant parsing (src/domain/time.ts), which every request, engagement and extension
// goes through: any input is either refused with InvalidInput (naming the field and giving an example) or read as a
// value within the stated bounds; and what kubevisa prints, it reads back as the same value.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInput } from '../../src/domain/errors.ts';
import {
  formatDuration,
  formatInstant,
  MAX_DURATION_SECONDS,
  parseDuration,
  parseInstant,
  SECONDS_PER_DAY,
  SECONDS_PER_HOUR,
  SECONDS_PER_MINUTE,
} from '../../src/domain/time.ts';
import { check } from './fuzz.ts';

/** The value, or the InvalidInput it was refused with; any other exception fails the property. */
function outcome<T>(read: () => T, input: unknown): { value: T } | { refused: InvalidInput } {
  try {
    return { value: read() };
  } catch (error) {
    assert.ok(error instanceof InvalidInput, `${String(input)} threw ${String(error)}`);
    assert.equal(error.status, 400);
    assert.match(error.message, /^when: /, 'the message names the field');
    assert.match(error.message, /(e\.g\.|such as) (2026-11-28T09:00:00Z|90s)/, 'the message gives an example');
    return { refused: error };
  }
}

/** Anything a JSON body or a command line could hold where a duration or an instant is expected. */
const anyInput = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, Number.NaN, Infinity, -0, 1e308, 9007199254740993n) },
);

/** Durations as people type them, with the usual mistakes. */
const durationText = fc.oneof(
  fc
    .tuple(
      fc.array(
        fc.tuple(
          fc.oneof(
            fc.nat({ max: 400 }).map(String),
            fc.constantFrom('0', '00', '-1', '1.5', '1e3', '99999999999999999999', ' 1', '+1'),
          ),
          fc.constantFrom('d', 'h', 'm', 's', 'D', 'H', 'ms', 'w', 'y', '', ' '),
        ),
        { minLength: 1, maxLength: 5 },
      ),
    )
    .map(([parts]) => parts.map(([n, unit]) => `${n}${unit}`).join('')),
  fc.string({ unit: fc.constantFrom('0', '1', '9', 'd', 'h', 'm', 's', '-', '.', ' '), maxLength: 12 }),
);

/** 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the span RFC 3339's four-digit years can name. */
const YEAR_0000 = new Date(0).setUTCFullYear(0, 0, 1);
const YEAR_9999_END = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const DAY_MS = 24 * 3600_000;
const rfc3339Parts = fc.record({
  year: fc.integer({ min: 0, max: 9999 }),
  month: fc.integer({ min: 0, max: 13 }),
  day: fc.integer({ min: 0, max: 32 }),
  hour: fc.integer({ min: 0, max: 25 }),
  minute: fc.integer({ min: 0, max: 60 }),
  second: fc.integer({ min: 0, max: 61 }),
  fraction: fc.option(fc.stringMatching(/^[0-9]{1,10}$/), { nil: undefined }),
  zone: fc.oneof(
    fc.constantFrom('Z', 'z', '', '+00:00', '-00:00', '+24:00', '+23:60', '+5:30', '+0530', ' Z'),
    fc
      .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
      .map(([sign, h, m]) => `${sign}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`),
  ),
  separator: fc.constantFrom('T', 't', ' ', '_'),
});
const pad = (n: number, width: number) => String(n).padStart(width, '0');

describe('fuzzing durations (parseDuration)', () => {
  test('any input is refused with InvalidInput or read as whole seconds in [1 s, 366 days]', () => {
    check(
      'time: duration bounds',
      3000,
      fc.property(fc.oneof(durationText, anyInput), (input) => {
        const result = outcome(() => parseDuration(input, 'when'), input);
        if ('refused' in result) return;
        assert.ok(Number.isSafeInteger(result.value), `${String(input)} → ${result.value}`);
        assert.ok(result.value >= 1 && result.value <= MAX_DURATION_SECONDS, `${String(input)} → ${result.value}`);
        assert.equal(typeof input, 'string');
        // An accepted duration means what its units say: the oracle adds them up.
        const units = { d: SECONDS_PER_DAY, h: SECONDS_PER_HOUR, m: SECONDS_PER_MINUTE, s: 1 };
        let total = 0;
        for (const [, n, unit] of (input as string).matchAll(/(\d+)([dhms])/g))
          total += Number(n) * units[unit as keyof typeof units];
        assert.equal(result.value, total, String(input));
      }),
    );
  });

  test('formatDuration and parseDuration round-trip every duration kubevisa accepts', () => {
    check(
      'time: duration round trip',
      3000,
      fc.property(fc.integer({ min: 1, max: MAX_DURATION_SECONDS }), (seconds) => {
        assert.equal(parseDuration(formatDuration(seconds), 'when'), seconds);
      }),
    );
  });
});

describe('fuzzing instants (parseInstant)', () => {
  test('any input is refused with InvalidInput or read as an instant between the years 0000 and 9999', () => {
    check(
      'time: instant bounds',
      3000,
      fc.property(
        fc.oneof(
          anyInput,
          rfc3339Parts.map(
            (p) =>
              `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}${p.separator}${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}${p.fraction === undefined ? '' : `.${p.fraction}`}${p.zone}`,
          ),
        ),
        (input) => {
          const result = outcome(() => parseInstant(input, 'when'), input);
          if ('refused' in result) return;
          assert.ok(Number.isSafeInteger(result.value), `${String(input)} → ${result.value}`);
          // An offset moves the instant by less than a day either way.
          assert.ok(result.value > YEAR_0000 - DAY_MS, `${String(input)} → ${result.value}`);
          assert.ok(result.value < YEAR_9999_END + DAY_MS, `${String(input)} → ${result.value}`);
        },
      ),
    );
  });

  test('a valid RFC 3339 time is read as the instant it names (oracle: Date.UTC and the offset)', () => {
    check(
      'time: instant oracle',
      3000,
      fc.property(rfc3339Parts, (p) => {
        const text = `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}${p.separator}${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}${p.fraction === undefined ? '' : `.${p.fraction}`}${p.zone}`;
        const result = outcome(() => parseInstant(text, 'when'), text);
        const date = new Date(0);
        date.setUTCFullYear(p.year, p.month - 1, p.day);
        const real = p.month >= 1 && p.month <= 12 && date.getUTCMonth() === p.month - 1 && date.getUTCDate() === p.day;
        const zone = /^(?:[Zz]|([+-])(\d{2}):(\d{2}))$/.exec(p.zone);
        // Fractions of up to nine digits (nanoseconds, as Kubernetes writes them) are read.
        const valid =
          (p.fraction === undefined || p.fraction.length <= 9) &&
          real &&
          p.hour <= 23 &&
          p.minute <= 59 &&
          p.second <= 59 &&
          zone !== null &&
          /^[Tt]$/.test(p.separator) &&
          (zone[1] === undefined || (Number(zone[2]) <= 23 && Number(zone[3]) <= 59));
        if (!valid) {
          assert.ok('refused' in result, `${text} is not a valid RFC 3339 time, yet it was read`);
          return;
        }
        assert.ok(
          'value' in result,
          `${text} is valid, yet it was refused: ${'refused' in result ? result.refused.message : ''}`,
        );
        const offsetMinutes =
          zone[1] === undefined ? 0 : (zone[1] === '-' ? -1 : 1) * (Number(zone[2]) * 60 + Number(zone[3]));
        const ms = Number((p.fraction ?? '').padEnd(3, '0').slice(0, 3));
        date.setUTCHours(p.hour, p.minute, p.second, ms);
        assert.equal(result.value, date.getTime() - offsetMinutes * 60_000, text);
      }),
    );
  });

  test('formatInstant and parseInstant round-trip every instant from year 0000 to 9999', () => {
    check(
      'time: instant round trip',
      3000,
      fc.property(fc.integer({ min: YEAR_0000, max: YEAR_9999_END }), (ms) => {
        assert.equal(parseInstant(formatInstant(ms), 'when'), ms);
      }),
    );
  });
});
