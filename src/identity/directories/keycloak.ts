/**
 * Keycloak, through its Admin REST API, as a confidential client's service account (client credentials at
 * `{url}/realms/{realm}/protocol/openid-connect/token`; the client secret read from a file) holding the
 * `realm-management` client roles `view-users` and `query-groups`.
 *
 * - Users: `GET {url}/admin/realms/{realm}/users?briefRepresentation=true&first=N&max=100`, paged by `first` and
 *   `max` until a page comes back short; `active` = `enabled`. A deleted user is gone from the list (missing).
 * - Groups: for each mapped group, `GET …/groups?search=NAME&exact=true` (a tree: sub-groups are searched too),
 *   then `GET …/groups/{id}/members?first=N&max=100&briefRepresentation=true`. Members of a sub-group are not
 *   members of its parent here, as in Keycloak's own group membership.
 * - Keycloak itself does not throttle; a proxy in front of it may answer 429 with `Retry-After`, which is waited for.
 */
import { clientCredentials } from './credentials.ts';
import { DirectoryHttp, ownString, ownValue, retryAfterMs } from './http.ts';
import { assembleSnapshot, distinctGroups, type ProviderWiring, type ReadUser } from './snapshot.ts';
import type { DirectorySourceOf } from '../config.ts';
import { DirectoryUnavailable, type DirectoryUser, type IdentityDirectory } from '../directory.ts';

/** `identity.sync` for Keycloak (fields documented in config.ts), and what the server wires in. */
export type KeycloakOptions = DirectorySourceOf<'keycloak'> &
  ProviderWiring & {
    /** Page size (default 100). */
    pageSize?: number;
  };

/** Pages read by `first`/`max` are bounded like link-walked ones. */
const MAX_OFFSET_PAGES = 10_000;

export function createKeycloakDirectory(options: KeycloakOptions): IdentityDirectory {
  const base = options.url.replace(/\/+$/, '');
  const realm = encodeURIComponent(options.realm);
  const max = options.pageSize ?? 100;
  const tokens = clientCredentials({
    provider: 'keycloak',
    tokenUrl: `${base}/realms/${realm}/protocol/openid-connect/token`,
    clientId: options.clientId,
    clientSecretFile: options.clientSecretFile,
    secretField: 'identity.sync.clientSecretFile',
    hint: 'check identity.sync.realm, clientId and clientSecretFile; the client needs Client authentication on and Service accounts roles enabled',
  });
  const http = new DirectoryHttp({
    provider: 'keycloak',
    origins: [base],
    authorization: async (signal, fresh) => `Bearer ${await tokens.get(signal, fresh)}`,
    throttle: (status, headers, _body, attempt) =>
      status === 429 || status === 503 ? (retryAfterMs(headers) ?? 1000 * 2 ** attempt) : undefined,
    describeError: (body) => ownString(body, 'errorMessage') ?? ownString(body, 'error'),
    credentialHint: "give the client's service account the realm-management roles view-users and query-groups",
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  const admin = (path: string, query: Record<string, string>) => {
    const url = new URL(`${base}/admin/realms/${realm}/${path}`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  };
  const list = async (url: URL, signal: AbortSignal): Promise<unknown[]> => {
    const { body } = await http.getJson(url, signal);
    if (!Array.isArray(body)) throw new DirectoryUnavailable(`keycloak: ${url.pathname} did not answer a list`);
    return body as unknown[];
  };
  /** Every page of an offset-paged list: `first` grows by `max` until a page is short. */
  const all = async (path: string, query: Record<string, string>, signal: AbortSignal): Promise<unknown[]> => {
    const items: unknown[] = [];
    for (let page = 0; page < MAX_OFFSET_PAGES; page++) {
      const got = await list(admin(path, { ...query, first: String(page * max), max: String(max) }), signal);
      items.push(...got);
      if (got.length < max) return items;
    }
    throw new DirectoryUnavailable(`keycloak: more than ${MAX_OFFSET_PAGES} pages of ${path}; refused`);
  };
  const toUser = (raw: unknown): ReadUser | undefined => {
    const id = ownString(raw, 'id');
    if (id === undefined) return undefined;
    return { id, email: ownString(raw, 'email'), active: ownValue(raw, 'enabled') === true };
  };
  /** Groups named `name` in a search answer's tree (the search returns matches with their parents). */
  const named = (tree: unknown[], name: string): string[] => {
    const ids: string[] = [];
    const visit = (nodes: unknown) => {
      if (!Array.isArray(nodes)) return;
      for (const node of nodes) {
        const id = ownString(node, 'id');
        if (id !== undefined && ownString(node, 'name')?.toLowerCase() === name.toLowerCase()) ids.push(id);
        visit(ownValue(node, 'subGroups'));
      }
    };
    visit(tree);
    return ids;
  };

  return {
    name: 'keycloak',
    async check(signal) {
      await list(admin('users', { briefRepresentation: 'true', first: '0', max: '1' }), signal);
    },
    async listUsers(signal): Promise<DirectoryUser[]> {
      const live = (await all('users', { briefRepresentation: 'true' }, signal))
        .map(toUser)
        .filter((u): u is ReadUser => u !== undefined);
      const members = new Map<string, Set<string>>();
      const missing: string[] = [];
      for (const group of distinctGroups(options.groups)) {
        const found = named(await list(admin('groups', { search: group, exact: 'true' }), signal), group);
        if (found.length === 0) missing.push(group);
        const ids = new Set<string>();
        for (const id of found) {
          for (const member of await all(
            `groups/${encodeURIComponent(id)}/members`,
            { briefRepresentation: 'true' },
            signal,
          )) {
            const memberId = ownString(member, 'id');
            if (memberId !== undefined) ids.add(memberId);
          }
        }
        members.set(group, ids);
      }
      const snapshot = assembleSnapshot({ users: live, deleted: [], members }, 'keycloak');
      if (missing.length > 0)
        snapshot.notes.push(`keycloak: no group named ${missing.map((g) => `'${g}'`).join(', ')}`);
      for (const note of snapshot.notes) options.report?.(note);
      return snapshot.users;
    },
  };
}
