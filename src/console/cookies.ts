/**
 * The console's cookies: reading them from a request (into a Map, so no cookie name reaches an object prototype) and
 * writing them with the flags the session needs.
 */

/** Cookies of a `Cookie` header; a name given twice keeps its first value (the most specific path comes first). */
export function readCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (!header) return cookies;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at < 1) continue;
    const name = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (!cookies.has(name)) cookies.set(name, value);
  }
  return cookies;
}

export interface CookieOptions {
  path: string;
  /** Seconds; 0 deletes the cookie. */
  maxAgeSeconds: number;
  /** `Strict` for the session; `Lax` only for the short login cookie that must survive the IdP's redirect back. */
  sameSite: 'Strict' | 'Lax';
}

/** A Set-Cookie value: always HttpOnly (no script reads it) and Secure (never sent over plain HTTP). */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  return `${name}=${value}; Path=${options.path}; Max-Age=${options.maxAgeSeconds}; HttpOnly; Secure; SameSite=${options.sameSite}`;
}
