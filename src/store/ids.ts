/** Random, prefixed, URL- and DNS-safe identifiers. */
import { randomBytes } from 'node:crypto';

/** RFC 4648 base32 alphabet, lower-cased so ids stay valid in label values and DNS names. */
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Kinds of id: persons, sessions, intents (minted by the store), visas and engagements (by the server). */
export type IdPrefix = 'p_' | 's_' | 'i_' | 'v_' | 'e_';

/** `prefix` + 26 base32 characters: 128 random bits, enough that ids never collide and cannot be guessed. */
export function newId(prefix: IdPrefix): string {
  const bytes = randomBytes(16);
  let bits = 0;
  let buffer = 0;
  let out = '';
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return prefix + out;
}
