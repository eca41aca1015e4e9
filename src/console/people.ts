/**
 * The people page's own facts (admins and auditors): for each person, what the identity providers say of them
 * (their SCIM records: which provider, active or deactivated, whether it is linked to them and so acts on them, when
 * it last wrote; or none, when only sign-ins know them) and their kubevisa sessions (when each began, was last used, ends or was ended; never a secret).
 */
import { personView } from '../app/views.ts';
import type { ServerContext } from '../server/context.ts';

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export async function peopleOverview(context: ServerContext) {
  const { store } = context;
  const now = context.now();
  const people = await store.listPersons();
  const scimByEmail = new Map<string, { idp: string; active: boolean; userName: string; updatedAt: string }[]>();
  for (const user of await store.listScimUsers()) {
    if (user.email === undefined) continue;
    const list = scimByEmail.get(user.email) ?? [];
    list.push({
      idp: user.provisionedBy,
      active: user.active,
      userName: user.userName,
      updatedAt: iso(user.updatedAt)!,
    });
    scimByEmail.set(user.email, list);
  }
  const items = [];
  for (const person of people) {
    const sessions = await store.listSessionsOfPerson(person.id);
    items.push({
      ...personView(person),
      issuer: person.issuer,
      identityProviders: scimByEmail.get(person.email.toLowerCase()) ?? [],
      sessions: sessions
        .sort((a, b) => b.createdAt - a.createdAt)
        .map((s) => ({
          id: s.id,
          createdAt: iso(s.createdAt)!,
          ...(s.lastUsedAt !== undefined ? { lastUsedAt: iso(s.lastUsedAt) } : {}),
          expiresAt: iso(s.expiresAt)!,
          ...(s.revokedAt !== undefined ? { revokedAt: iso(s.revokedAt), revokeReason: s.revokeReason } : {}),
          state: s.revokedAt !== undefined ? 'ended' : s.expiresAt <= now ? 'expired' : 'open',
        })),
    });
  }
  return { items };
}
