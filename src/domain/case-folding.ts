/**
 * Emails and group names are compared without regard to case, by lower-casing them. A few non-ASCII characters
 * change case into plain ASCII letters: the Kelvin sign `K` (U+212A) lower-cases to `k`, the dotted `İ` (U+0130) to
 * `i` and a combining dot, the long `ſ` (U+017F) and the dotless `ı` (U+0131) upper-case to `S` and `I`. An identity
 * provider that vouches for `\u212Aate@corp.example` would otherwise log its holder in as `kate@corp.example`, and
 * a group `\u212Aubevisa-admins` would count as `kubevisa-admins`. Such names are refused at the edge (logins, SCIM)
 * and never compared case-insensitively.
 */
export function foldsIntoAscii(text: string): boolean {
  return asciiFoldingCharacter(text) !== undefined;
}

/** The first character of `text` that changes case into a plain ASCII letter (see foldsIntoAscii), if any. */
export function asciiFoldingCharacter(text: string): string | undefined {
  for (const char of text) {
    if (char.charCodeAt(0) < 0x80) continue;
    if (/[A-Za-z]/.test(char.toLowerCase() + char.toUpperCase())) return char;
  }
  return undefined;
}
