/**
 * Okta, through its Management API (`/api/v1`), authenticated with an API token (`Authorization: SSWS …`) read
 * from a file.
 *
 * - Users: `GET /api/v1/users?limit=200`, which lists every user but the deprovisioned ones, then
 *   `GET /api/v1/users?search=status eq "DEPROVISIONED"` for those (listed, so `missingUsers: ignore` still ends
 *   them). Pages follow the `Link: <…>; rel="next"` header.
 * - Status: `ACTIVE`, `RECOVERY`, `PASSWORD_EXPIRED` and `LOCKED_OUT` are active (the person can still or again
 *   sign in; a lock-out is a few failed passwords, not an admin's decision); `SUSPENDED`, `STAGED` and
 *   `PROVISIONED` (never activated) are not; `DEPROVISIONED` is deprovisioned.
 * - Groups: for each mapped group, `GET /api/v1/groups?search=profile.name eq "NAME"`, then
 *   `GET /api/v1/groups/{id}/users?limit=200` (paged).
 * - Rate limits: every answer carries `X-Rate-Limit-Limit`, `-Remaining` and `-Reset` (epoch seconds). A 429 waits
 *   until the reset; an answer that leaves no request in the window waits for the reset before the next call.
 */
import { DirectoryHttp, ownString, ownValue, retryAfterMs, sleepFor, walkPages } from './http.ts';
import { readSecretFile } from './credentials.ts';
import { assembleSnapshot, distinctGroups, type ProviderWiring, type ReadUser } from './snapshot.ts';
import type { DirectorySourceOf } from '../config.ts';
import type { DirectoryUser, IdentityDirectory } from '../directory.ts';
import { DirectoryUnavailable } from '../directory.ts';

/** `identity.sync` for Okta (fields documented in config.ts), and what the server wires in. */
export type OktaOptions = DirectorySourceOf<'okta'> & ProviderWiring;

const ACTIVE = new Set(['ACTIVE', 'RECOVERY', 'PASSWORD_EXPIRED', 'LOCKED_OUT']);
const PAGE = 200;

/** The `rel="next"` target of one or more `Link` headers (fetch joins repeated headers with ", "). */
export function nextLink(header: string | null): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (match && /(?:^|;)\s*rel="?next"?\s*(?:;|$)/i.test(match[2]!)) return match[1];
  }
  return undefined;
}

/** How long to wait after an answer of Okta's: until `X-Rate-Limit-Reset`, or undefined. */
function untilReset(headers: Headers, now = Date.now()): number | undefined {
  const reset = Number(headers.get('x-rate-limit-reset'));
  if (!Number.isFinite(reset) || reset <= 0) return undefined;
  // One second more: Okta's reset is whole seconds, and clocks differ a little.
  return Math.max(0, reset * 1000 - now) + 1000;
}

export function createOktaDirectory(options: OktaOptions): IdentityDirectory {
  const base = new URL(options.url);
  const sleep = options.sleep ?? sleepFor;
  const http = new DirectoryHttp({
    provider: 'okta',
    origins: [base.origin],
    authorization: () => Promise.resolve(`SSWS ${readSecretFile(options.tokenFile, 'identity.sync.tokenFile')}`),
    throttle: (status, headers, _body, attempt) =>
      status === 429 ? (untilReset(headers) ?? retryAfterMs(headers) ?? 1000 * 2 ** attempt) : undefined,
    describeError: (body) => {
      const summary = ownString(body, 'errorSummary');
      const code = ownString(body, 'errorCode');
      return summary ? `${code ? `${code} ` : ''}${summary}` : undefined;
    },
    credentialHint:
      'check identity.sync.tokenFile: the API token must be valid and belong to an admin with at least the Read-only Administrator role',
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });

  /** GETs one page; when it used up the rate-limit window, waits for the reset before returning. */
  const page = async (url: string, signal: AbortSignal) => {
    const answer = await http.getJson(url, signal);
    if (answer.headers.get('x-rate-limit-remaining') === '0') {
      const wait = untilReset(answer.headers);
      if (wait !== undefined && wait > 0) await sleep(Math.min(wait, 60_000), signal);
    }
    if (!Array.isArray(answer.body))
      throw new DirectoryUnavailable(`okta: ${new URL(url).pathname} did not answer a list`);
    const next = nextLink(answer.headers.get('link'));
    return {
      items: answer.body as unknown[],
      next: next === undefined ? undefined : http.pinned(next, 'the Link rel="next"').toString(),
    };
  };
  const all = (path: string, signal: AbortSignal) =>
    walkPages('okta', new URL(path, base).toString(), (url) => page(url, signal));

  const toUser = (raw: unknown): ReadUser | undefined => {
    const id = ownString(raw, 'id');
    const status = ownString(raw, 'status');
    if (id === undefined || status === undefined) return undefined;
    const profile = ownValue(raw, 'profile');
    return { id, email: ownString(profile, 'email') ?? ownString(profile, 'login'), active: ACTIVE.has(status) };
  };
  const users = (raws: unknown[]) => raws.map(toUser).filter((u): u is ReadUser => u !== undefined);

  return {
    name: 'okta',
    async check(signal) {
      await http.getJson(new URL('/api/v1/users?limit=1', base), signal);
    },
    async listUsers(signal): Promise<DirectoryUser[]> {
      const live = users(await all(`/api/v1/users?limit=${PAGE}`, signal));
      const search = encodeURIComponent('status eq "DEPROVISIONED"');
      const deleted = users(await all(`/api/v1/users?search=${search}&limit=${PAGE}`, signal));
      const members = new Map<string, Set<string>>();
      const missing: string[] = [];
      for (const group of distinctGroups(options.groups)) {
        const filter = encodeURIComponent(`profile.name eq "${group.replace(/["\\]/g, '\\$&')}"`);
        const found = (await all(`/api/v1/groups?search=${filter}&limit=${PAGE}`, signal)).filter(
          (g) => ownString(ownValue(g, 'profile'), 'name')?.toLowerCase() === group.toLowerCase(),
        );
        if (found.length === 0) missing.push(group);
        const ids = new Set<string>();
        for (const g of found) {
          const id = ownString(g, 'id');
          if (id === undefined) continue;
          for (const user of users(await all(`/api/v1/groups/${encodeURIComponent(id)}/users?limit=${PAGE}`, signal)))
            ids.add(user.id);
        }
        members.set(group, ids);
      }
      const snapshot = assembleSnapshot({ users: live, deleted, members }, 'okta');
      if (missing.length > 0) snapshot.notes.push(`okta: no group named ${missing.map((g) => `'${g}'`).join(', ')}`);
      for (const note of snapshot.notes) options.report?.(note);
      return snapshot.users;
    },
  };
}
