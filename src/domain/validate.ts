/**
 * Small checks shared by the domain's validators. Input reaching the domain may come straight from a JSON body,
 * so the runtime type is checked too, not only the TypeScript type.
 */
import { InvalidInput } from './errors.ts';

/** Longest free-text reason (visa request, denial, revocation, ending an engagement), in characters. */
export const MAX_REASON_LENGTH = 500;

/**
 * The first `maxLength` UTF-16 units of `text`, one fewer when the cut would fall inside a surrogate pair: the lone
 * first half left by a plain slice is not valid Unicode, so the store cannot hold it as it was hashed, and the audit
 * trail refuses any event that carries it (for the gateway's writer, every later event too).
 */
export function clipText(text: string, maxLength: number): string {
  if (text.length <= maxLength) return text;
  const code = text.charCodeAt(maxLength - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? maxLength - 1 : maxLength);
}

/**
 * Returns the text with surrounding white space removed.
 * @throws InvalidInput when it is not a string, is blank, is not valid Unicode, holds a NUL character, or is longer
 *   than `maxLength` characters.
 */
export function requireText(value: unknown, field: string, maxLength: number): string {
  if (typeof value !== 'string') throw new InvalidInput(`${field}: required, as text`, { details: { field } });
  const text = value.trim();
  if (text === '') throw new InvalidInput(`${field}: must not be empty`, { details: { field } });
  // Neither can be stored as given: a lone UTF-16 surrogate has no UTF-8 form (it would read back as U+FFFD, and
  // an audit event holding it would no longer match its hash), and PostgreSQL's text type refuses NUL.
  if (!text.isWellFormed()) {
    throw new InvalidInput(`${field}: contains a lone UTF-16 surrogate, which is not valid Unicode; send valid text`, {
      details: { field },
    });
  }
  if (text.includes('\u0000')) {
    throw new InvalidInput(`${field}: contains a NUL character; send text without it`, { details: { field } });
  }
  // Count code points, not UTF-16 units, so an emoji counts as one character.
  const length = [...text].length;
  if (length > maxLength) {
    throw new InvalidInput(`${field}: ${length} characters is too long; at most ${maxLength} are allowed`, {
      details: { field, maxLength },
    });
  }
  return text;
}

/** A free-text reason: 1–500 characters after trimming. */
export function requireReason(value: unknown, field = 'reason'): string {
  return requireText(value, field, MAX_REASON_LENGTH);
}

/**
 * Returns the value as a list of strings.
 * @throws InvalidInput when it is not an array of strings or has fewer than `minItems` / more than `maxItems`.
 */
export function requireStringList(value: unknown, field: string, minItems: number, maxItems: number): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new InvalidInput(`${field}: required, as a list of text values`, { details: { field } });
  }
  if (value.length < minItems || value.length > maxItems) {
    const range = minItems === maxItems ? `${minItems}` : `${minItems} to ${maxItems}`;
    throw new InvalidInput(`${field}: has ${value.length} entries; ${range} are allowed`, {
      details: { field, minItems, maxItems },
    });
  }
  return [...value];
}

/** The first value that occurs twice in the list, if any. */
export function firstDuplicate(values: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const value of values) {
    if (seen.has(value)) return value;
    seen.add(value);
  }
  return undefined;
}

/** `a, b, c` for messages. */
export function listForHumans(values: readonly string[]): string {
  return values.length === 0 ? '(none)' : values.join(', ');
}

/**
 * Returns a positive whole number of seconds.
 * @throws InvalidInput when it is not an integer in [1, maxSeconds].
 */
export function requireSeconds(value: unknown, field: string, maxSeconds: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > maxSeconds) {
    throw new InvalidInput(`${field}: must be a whole number of seconds from 1 to ${maxSeconds}`, {
      details: { field, value, maxSeconds },
    });
  }
  return value;
}
