/**
 * Google Workspace, through the Admin SDK Directory API (`/admin/directory/v1`), as a service account with
 * domain-wide delegation acting as an admin (`subject`), scopes `admin.directory.user.readonly` and
 * `admin.directory.group.member.readonly` (`admin.directory.group.readonly` too when a mapping names a group by
 * name rather than by email). The key file (JSON) is read from a file.
 *
 * - Users: `GET /admin/directory/v1/users?customer=my_customer&maxResults=500`; `active` = not `suspended` and not
 *   `archived`. Deleted users (restorable for 20 days): the same with `showDeleted=true`. Pages follow
 *   `nextPageToken`.
 * - Groups: a mapping names a group by its email (`vendor-acme@corp.example`, read directly) or by its name
 *   (looked up in `GET /admin/directory/v1/groups?customer=…`); members from
 *   `GET /admin/directory/v1/groups/{key}/members?includeDerivedMembership=true` (nested groups count). A
 *   `CUSTOMER` member (the whole organisation) makes every user a member.
 * - Throttling: 403 or 429 whose `error.errors[].reason` is `rateLimitExceeded`, `userRateLimitExceeded` or
 *   `quotaExceeded` (or `status` `RESOURCE_EXHAUSTED`), retried with truncated exponential backoff and jitter,
 *   as Google's API guidance asks.
 */
import { googleServiceAccount } from './credentials.ts';
import { DirectoryHttp, DirectoryRefused, ownString, ownValue, walkPages } from './http.ts';
import { assembleSnapshot, distinctGroups, type ProviderWiring, type ReadUser } from './snapshot.ts';
import type { DirectorySourceOf } from '../config.ts';
import { DirectoryUnavailable, type DirectoryUser, type IdentityDirectory } from '../directory.ts';

/** `identity.sync` for Google (fields documented in config.ts), and what the server wires in. */
export type GoogleOptions = DirectorySourceOf<'google'> &
  ProviderWiring & {
    /** Jitter source for the backoff (tests make it 0). */
    random?: () => number;
  };

export const GOOGLE_SCOPES = [
  'https://www.googleapis.com/auth/admin.directory.user.readonly',
  'https://www.googleapis.com/auth/admin.directory.group.member.readonly',
  'https://www.googleapis.com/auth/admin.directory.group.readonly',
];
const THROTTLED = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'quotaExceeded']);

/** Google's throttling answer: 403 or 429 with a usage-limit reason. */
export function isGoogleThrottle(status: number, body: unknown): boolean {
  if (status !== 403 && status !== 429) return false;
  const error = ownValue(body, 'error');
  if (ownString(error, 'status') === 'RESOURCE_EXHAUSTED') return true;
  const errors = ownValue(error, 'errors');
  return Array.isArray(errors) && errors.some((e) => THROTTLED.has(ownString(e, 'reason') ?? ''));
}

export function createGoogleDirectory(options: GoogleOptions): IdentityDirectory {
  const base = new URL(options.url);
  const random = options.random ?? Math.random;
  const tokens = googleServiceAccount({
    keyFile: options.keyFile,
    subject: options.subject,
    scopes: GOOGLE_SCOPES,
    hint: "check identity.sync.keyFile and subject, and that the service account's client id has domain-wide delegation for the read-only directory scopes (docs/identity-providers/google.md)",
  });
  const http = new DirectoryHttp({
    provider: 'google',
    origins: [base.origin],
    authorization: async (signal, fresh) => `Bearer ${await tokens.get(signal, fresh)}`,
    throttle: (status, _headers, body, attempt) =>
      isGoogleThrottle(status, body) || status === 503
        ? Math.min(2 ** attempt * 1000, 32_000) + Math.floor(random() * 1000)
        : undefined,
    describeError: (body) => ownString(ownValue(body, 'error'), 'message'),
    credentialHint:
      "the subject must be an admin allowed to read users and groups, and the API must be enabled in the service account's project",
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  const path = (p: string, query: Record<string, string>) => {
    const url = new URL(`/admin/directory/v1/${p}`, base);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  };
  /** Every page of a list answer, by `pageToken`. */
  const all = (first: URL, field: string, signal: AbortSignal) =>
    walkPages('google', first.toString(), async (url) => {
      const { body } = await http.getJson(url, signal);
      const items = ownValue(body, field);
      // Google leaves the list out of an empty page.
      if (items !== undefined && !Array.isArray(items)) {
        throw new DirectoryUnavailable(`google: ${first.pathname} answered a '${field}' that is not a list`);
      }
      const token = ownString(body, 'nextPageToken');
      if (!token) return { items: (items ?? []) as unknown[], next: undefined };
      const next = new URL(first);
      next.searchParams.set('pageToken', token);
      return { items: (items ?? []) as unknown[], next: next.toString() };
    });
  const toUser = (raw: unknown, deleted: boolean): ReadUser | undefined => {
    const id = ownString(raw, 'id');
    if (id === undefined) return undefined;
    const active = !deleted && ownValue(raw, 'suspended') !== true && ownValue(raw, 'archived') !== true;
    return { id, email: ownString(raw, 'primaryEmail'), active };
  };
  const users = (raws: unknown[], deleted: boolean) =>
    raws.map((r) => toUser(r, deleted)).filter((u): u is ReadUser => u !== undefined);

  return {
    name: 'google',
    async check(signal) {
      await http.getJson(path('users', { customer: options.customer, maxResults: '1' }), signal);
    },
    async listUsers(signal): Promise<DirectoryUser[]> {
      const query = { customer: options.customer, maxResults: '500', projection: 'basic' };
      const live = users(await all(path('users', query), 'users', signal), false);
      const deleted = users(await all(path('users', { ...query, showDeleted: 'true' }), 'users', signal), true);
      const wanted = distinctGroups(options.groups);
      const byName = wanted.some((g) => !g.includes('@'))
        ? await all(path('groups', { customer: options.customer, maxResults: '200' }), 'groups', signal)
        : [];
      const members = new Map<string, Set<string>>();
      const missing: string[] = [];
      for (const group of wanted) {
        const key = group.includes('@')
          ? group
          : byName
              .filter((g) => ownString(g, 'name')?.toLowerCase() === group.toLowerCase())
              .map((g) => ownString(g, 'id'))
              .find((id) => id !== undefined);
        const ids = new Set<string>();
        members.set(group, ids);
        if (key === undefined) {
          missing.push(group);
          continue;
        }
        let list: unknown[];
        try {
          list = await all(
            path(`groups/${encodeURIComponent(key)}/members`, { includeDerivedMembership: 'true', maxResults: '200' }),
            'members',
            signal,
          );
        } catch (error) {
          // An unknown group email answers 404: the group is missing, not the directory.
          if (error instanceof DirectoryRefused && error.answered === 404) {
            missing.push(group);
            continue;
          }
          throw error;
        }
        for (const member of list) {
          const type = ownString(member, 'type');
          if (type === 'CUSTOMER') for (const user of live) ids.add(user.id);
          const id = ownString(member, 'id');
          if (type === 'USER' && id !== undefined) ids.add(id);
        }
      }
      const snapshot = assembleSnapshot({ users: live, deleted, members }, 'google');
      if (missing.length > 0) snapshot.notes.push(`google: no group ${missing.map((g) => `'${g}'`).join(', ')}`);
      for (const note of snapshot.notes) options.report?.(note);
      return snapshot.users;
    },
  };
}
