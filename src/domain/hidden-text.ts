/**
 * Characters that change how the text around them is shown without being seen themselves: format characters (Unicode
 * category Cf — the bidirectional embeddings, overrides and isolates such as U+202E, which shows what follows right to
 * left; zero-width spaces and joiners; the soft hyphen; the byte-order mark) and the line and paragraph separators
 * (U+2028, U+2029, which JSON carries unescaped and which break a log line in two). In an address or a subject they
 * let two identities look the same in the console, the CLI, an approval message or the audit trail
 * (`dana@corp.example` and `dana\u200B@corp.example`), or make one read as another
 * (`\u202Eelpmaxe.proc@anad` shows as `dana@corp.example`). Identifiers holding one are refused where they enter
 * (logins, SCIM, the directory sync, engagements). Display names are not identifiers and legitimately use joiners
 * (Persian, emoji sequences), so they are not checked here.
 */
// Also every default-ignorable code point (variation selectors, the combining grapheme joiner, Hangul fillers, Mongolian
// free variation selectors), which render as nothing, and the braille blank U+2800, which renders as a space.
const HIDDEN = /[\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]/u;

/** The first hidden character of `text` as `U+XXXX` (for messages), or undefined when it holds none. */
export function hiddenCharacter(text: string): string | undefined {
  const found = HIDDEN.exec(text)?.[0];
  return found === undefined ? undefined : `U+${found.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** `text` quoted, each hidden character written as an escape (`"dana\u200B@corp.example"`), so a message shows it. */
export function quoteShowingHidden(text: string): string {
  const hidden = new RegExp(HIDDEN.source, 'gu');
  return `"${text.replace(hidden, (found) => `\\u{${found.codePointAt(0)!.toString(16).toUpperCase()}}`)}"`;
}

/** Why an identifier holding `character` (from hiddenCharacter) is refused, for error messages. */
export function hiddenCharacterProblem(character: string): string {
  return `holds ${character}, an invisible character that changes how text is shown, so it could pass for another identity`;
}
