/**
 * Microsoft Entra ID, through Microsoft Graph v1.0, as an application (OAuth 2.0 client credentials at
 * `login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, scope `https://graph.microsoft.com/.default`; the
 * client secret read from a file). Application permissions: `User.Read.All` and `GroupMember.Read.All`.
 *
 * - Users: `GET /v1.0/users?$select=id,userPrincipalName,mail,accountEnabled&$top=999`; `active` =
 *   `accountEnabled`. Pages follow `@odata.nextLink`.
 * - Deleted users (soft-deleted for 30 days): `GET /v1.0/directory/deletedItems/microsoft.graph.user`; their
 *   `userPrincipalName` carries the object id (without dashes) in front, which is taken off.
 * - Groups: for each mapped group, `GET /v1.0/groups?$filter=displayName eq 'NAME'`, then
 *   `GET /v1.0/groups/{id}/transitiveMembers` (nested groups count), keeping `#microsoft.graph.user` members.
 * - Throttling: 429 (and 503) with `Retry-After` seconds, as Graph's throttling guidance says.
 */
import { clientCredentials } from './credentials.ts';
import { DirectoryHttp, isRecord, ownString, ownValue, retryAfterMs, walkPages } from './http.ts';
import { assembleSnapshot, distinctGroups, type ProviderWiring, type ReadUser } from './snapshot.ts';
import type { DirectorySourceOf } from '../config.ts';
import { DirectoryUnavailable, type DirectoryUser, type IdentityDirectory } from '../directory.ts';

/** `identity.sync` for Entra ID (fields documented in config.ts), and what the server wires in. */
export type EntraOptions = DirectorySourceOf<'entra'> & ProviderWiring;

export function createEntraDirectory(options: EntraOptions): IdentityDirectory {
  const graph = new URL(options.graphUrl);
  const tokens = clientCredentials({
    provider: 'entra',
    tokenUrl: options.tokenUrl,
    clientId: options.clientId,
    clientSecretFile: options.clientSecretFile,
    secretField: 'identity.sync.clientSecretFile',
    scope: `${graph.origin}/.default`,
    hint: 'check identity.sync.tenant, clientId and clientSecretFile (an expired client secret is the usual cause)',
  });
  const http = new DirectoryHttp({
    provider: 'entra',
    origins: [graph.origin],
    authorization: async (signal, fresh) => `Bearer ${await tokens.get(signal, fresh)}`,
    throttle: (status, headers, _body, attempt) =>
      status === 429 || status === 503 ? (retryAfterMs(headers) ?? 1000 * 2 ** attempt) : undefined,
    describeError: (body) => {
      const error = ownValue(body, 'error');
      const code = ownString(error, 'code');
      const message = ownString(error, 'message');
      return code ? `${code}${message ? `: ${message}` : ''}` : undefined;
    },
    credentialHint:
      'grant the app the application permissions User.Read.All and GroupMember.Read.All, with admin consent',
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  const all = (path: string, signal: AbortSignal) =>
    walkPages('entra', new URL(path, graph).toString(), async (url) => {
      const { body } = await http.getJson(url, signal);
      const value = ownValue(body, 'value');
      if (!Array.isArray(value))
        throw new DirectoryUnavailable(`entra: ${new URL(url).pathname} answered without a value list`);
      const next = ownString(body, '@odata.nextLink');
      return {
        items: value as unknown[],
        next: next === undefined ? undefined : http.pinned(next, '@odata.nextLink').toString(),
      };
    });
  const emailOf = (raw: unknown, deleted: boolean): string | undefined => {
    if (options.emailAttribute === 'mail') return ownString(raw, 'mail') ?? undefined;
    const upn = ownString(raw, 'userPrincipalName');
    const id = ownString(raw, 'id');
    if (!deleted || upn === undefined || id === undefined) return upn;
    // A deleted user's UPN is "<object id without dashes><original UPN>", freeing the UPN for a new account.
    const prefix = id.replace(/-/g, '');
    return upn.toLowerCase().startsWith(prefix.toLowerCase()) ? upn.slice(prefix.length) : upn;
  };
  const toUser = (raw: unknown, deleted: boolean): ReadUser | undefined => {
    const id = ownString(raw, 'id');
    if (id === undefined) return undefined;
    return { id, email: emailOf(raw, deleted), active: !deleted && ownValue(raw, 'accountEnabled') === true };
  };
  const users = (raws: unknown[], deleted: boolean) =>
    raws.map((r) => toUser(r, deleted)).filter((u): u is ReadUser => u !== undefined);

  return {
    name: 'entra',
    async check(signal) {
      await http.getJson(new URL('/v1.0/users?$select=id&$top=1', graph), signal);
    },
    async listUsers(signal): Promise<DirectoryUser[]> {
      const select = '$select=id,userPrincipalName,mail,accountEnabled&$top=999';
      const live = users(await all(`/v1.0/users?${select}`, signal), false);
      const deleted = users(
        await all(
          '/v1.0/directory/deletedItems/microsoft.graph.user?$select=id,userPrincipalName,mail&$top=999',
          signal,
        ),
        true,
      );
      const members = new Map<string, Set<string>>();
      const missing: string[] = [];
      for (const group of distinctGroups(options.groups)) {
        const filter = encodeURIComponent(`displayName eq '${group.replace(/'/g, "''")}'`);
        const found = await all(`/v1.0/groups?$filter=${filter}&$select=id,displayName`, signal);
        if (found.length === 0) missing.push(group);
        const ids = new Set<string>();
        for (const g of found) {
          const id = ownString(g, 'id');
          if (id === undefined) continue;
          const memberList = await all(
            `/v1.0/groups/${encodeURIComponent(id)}/transitiveMembers?$select=id&$top=999`,
            signal,
          );
          for (const member of memberList) {
            if (isRecord(member) && ownString(member, '@odata.type') === '#microsoft.graph.user') {
              const memberId = ownString(member, 'id');
              if (memberId !== undefined) ids.add(memberId);
            }
          }
        }
        members.set(group, ids);
      }
      const snapshot = assembleSnapshot({ users: live, deleted, members }, 'entra');
      if (missing.length > 0) snapshot.notes.push(`entra: no group named ${missing.map((g) => `'${g}'`).join(', ')}`);
      for (const note of snapshot.notes) options.report?.(note);
      return snapshot.users;
    },
  };
}
