/**
 * Instants and durations at the edge: text from users and files becomes an absolute instant (epoch
 * milliseconds, UTC) or a whole number of seconds, and back. Pure: the clock is never read here.
 */
import { InvalidInput } from './errors.ts';
import type { Instant } from './model.ts';

const INSTANT_EXAMPLE = '2026-11-28T09:00:00Z';
const DURATION_EXAMPLE = '8h';

export const SECONDS_PER_MINUTE = 60;
export const SECONDS_PER_HOUR = 3600;
export const SECONDS_PER_DAY = 86_400;
/** The longest duration `parseDuration` accepts, in seconds (366 days): nothing in kubevisa lasts longer. */
export const MAX_DURATION_SECONDS = 366 * SECONDS_PER_DAY;

// RFC 3339 date-time: the offset is mandatory because a time without one names a different instant on every
// machine. `T`/`Z` may be lower case (RFC 3339 §5.6 note); a space separator is not accepted.
const RFC3339 =
  /^(?<year>\d{4})-(?<month>\d{2})-(?<day>\d{2})[Tt](?<hour>\d{2}):(?<minute>\d{2}):(?<second>\d{2})(?:\.(?<fraction>\d{1,9}))?(?:[Zz]|(?<sign>[+-])(?<offsetHours>\d{2}):(?<offsetMinutes>\d{2}))$/;

/**
 * Parses an RFC 3339 timestamp with `Z` or an explicit offset (`2026-11-28T09:00:00+05:30`) into the instant
 * it names (epoch milliseconds, UTC). Fractions of a second beyond milliseconds are truncated.
 * @param field the input's name, used in the error message.
 * @throws InvalidInput for anything else, including timestamps without an offset and impossible dates.
 */
export function parseInstant(text: unknown, field: string): Instant {
  const refuse = (why: string): InvalidInput =>
    new InvalidInput(`${field}: ${why}; use an RFC 3339 time with a UTC offset, e.g. ${INSTANT_EXAMPLE}`, {
      details: { field, value: text, example: INSTANT_EXAMPLE },
    });
  if (typeof text !== 'string') throw refuse(`expected a string, got ${describeType(text)}`);
  const match = RFC3339.exec(text);
  if (match === null) {
    const offsetless = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text);
    throw refuse(offsetless ? `'${text}' has no UTC offset` : `'${text}' is not a valid time`);
  }
  const groups = match.groups ?? {};
  // For `Z` the offset groups are absent and read as 0.
  const number = (name: string): number => Number(groups[name] ?? 0);
  const year = number('year');
  const month = number('month');
  const day = number('day');
  const hour = number('hour');
  const minute = number('minute');
  const second = number('second');
  const offsetHours = number('offsetHours');
  const offsetMinutes = number('offsetMinutes');
  const offsetSign = groups['sign'] === '-' ? -1 : 1;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    throw refuse(`'${text}' names a day that does not exist`);
  }
  // Leap seconds (:60) are refused: JavaScript time has no way to represent them.
  if (hour > 23 || minute > 59 || second > 59) throw refuse(`'${text}' names a time of day that does not exist`);
  if (offsetHours > 23 || offsetMinutes > 59) throw refuse(`'${text}' has an impossible UTC offset`);

  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0–99 to 1900–1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number((groups['fraction'] ?? '').padEnd(3, '0').slice(0, 3)));
  const offsetMs = offsetSign * (offsetHours * 60 + offsetMinutes) * 60_000;
  return date.getTime() - offsetMs;
}

/** Formats an instant (epoch milliseconds) as RFC 3339 in UTC: `2026-11-28T03:30:00Z`, with `.sss` only if needed. */
export function formatInstant(ms: Instant): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/**
 * Parses a duration such as `90s`, `30m`, `8h`, `1h30m` or `2d` into whole seconds. Units must appear in the
 * order d, h, m, s, each at most once.
 * @param field the input's name, used in the error message.
 * @throws InvalidInput for zero, negative, fractional or malformed input and for more than 366 days.
 */
export function parseDuration(text: unknown, field: string): number {
  const refuse = (why: string): InvalidInput =>
    new InvalidInput(
      `${field}: ${why}; use a whole number of days, hours, minutes and seconds such as 90s, 30m, ${DURATION_EXAMPLE}, 1h30m or 2d (at most 366d)`,
      { details: { field, value: text, example: DURATION_EXAMPLE, maxSeconds: MAX_DURATION_SECONDS } },
    );
  if (typeof text !== 'string') throw refuse(`expected a string, got ${describeType(text)}`);
  const match = text === '' ? null : DURATION.exec(text);
  if (match === null) {
    throw refuse(text.startsWith('-') ? `'${text}' is negative` : `'${text}' is not a duration`);
  }
  const [days, hours, minutes, seconds] = match.slice(1, 5).map((part) => Number(part ?? 0)) as [
    number,
    number,
    number,
    number,
  ];
  const total = days * SECONDS_PER_DAY + hours * SECONDS_PER_HOUR + minutes * SECONDS_PER_MINUTE + seconds;
  if (total === 0) throw refuse(`'${text}' is zero`);
  if (total > MAX_DURATION_SECONDS) throw refuse(`'${text}' is longer than 366 days`);
  return total;
}

/**
 * Formats seconds in the notation `parseDuration` reads, largest units first: 5400 → `1h30m`, 0 → `0s`.
 * Fractions of a second are dropped; negative durations get a leading `-`.
 */
export function formatDuration(seconds: number): string {
  if (seconds < 0) return `-${formatDuration(-seconds)}`;
  let rest = Math.floor(seconds);
  if (rest === 0) return '0s';
  let text = '';
  for (const [unit, size] of [
    ['d', SECONDS_PER_DAY],
    ['h', SECONDS_PER_HOUR],
    ['m', SECONDS_PER_MINUTE],
    ['s', 1],
  ] as const) {
    const count = Math.floor(rest / size);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * size;
  }
  return text;
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
