/**
 * An email address as kubevisa accepts it wherever a person is named by one: engagements (contractors, sponsor),
 * group mappings' sponsors and role lists in the config, and links to identity providers made for someone who has not
 * logged in yet. One check, so that an address refused in one place cannot be recorded through another.
 */
import { asciiFoldingCharacter, foldsIntoAscii } from './case-folding.ts';
import { InvalidInput } from './errors.ts';
import { hiddenCharacter, hiddenCharacterProblem, quoteShowingHidden } from './hidden-text.ts';

/** The longest email address (RFC 5321 §4.5.3.1.3: a path of 256 octets, less its angle brackets). */
export const MAX_EMAIL_LENGTH = 254;
// Deliberately loose (the IdP is the authority on addresses): one `@`, no white space, a dot in the domain.
const EMAIL = /^[^\s@]{1,64}@[^\s@.]+(\.[^\s@.]+)+$/;

/** What is wrong with `value` as an email address, or undefined when it is one (see parseEmailAddress). */
export function emailAddressProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > MAX_EMAIL_LENGTH || !EMAIL.test(value)) {
    const shown = typeof value === 'string' ? `'${value}'` : 'missing';
    return `${shown} is not an email address (e.g. dana@example.com)`;
  }
  const hidden = hiddenCharacter(value);
  if (hidden !== undefined)
    return `${quoteShowingHidden(value)} ${hiddenCharacterProblem(hidden)}; type the address again`;
  const folding = asciiFoldingCharacter(value);
  if (folding !== undefined) {
    const code = `U+${folding.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    return `'${value}' holds ${code} '${folding}', which changes case into a plain letter (as the Kelvin sign does into k), so it would stand for another address once lower-cased; type the address in plain letters`;
  }
  return undefined;
}

/**
 * Whether `address`, as sent (before any trimming or lower-casing), could pass for another person's: it holds an
 * invisible character, or one that changes case into a plain letter (`\u212Aate@…` lower-cases to kate@…). Such an
 * address is refused, never compared; check it before normalising, which would hide what is wrong with it.
 */
export function couldPassForAnother(address: string): boolean {
  return foldsIntoAscii(address) || hiddenCharacter(address) !== undefined;
}

/** `value` as an email address in lower case (how kubevisa compares them); InvalidInput naming `field` otherwise. */
export function parseEmailAddress(value: unknown, field: string): string {
  const problem = emailAddressProblem(value);
  if (problem !== undefined) {
    const hidden = typeof value === 'string' ? hiddenCharacter(value) : undefined;
    throw new InvalidInput(`${field}: ${problem}`, {
      details: { field, value, ...(hidden !== undefined ? { character: hidden } : {}) },
    });
  }
  return (value as string).toLowerCase();
}
