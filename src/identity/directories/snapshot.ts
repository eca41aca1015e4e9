/**
 * Turns what a provider read (its users, its deleted users, the members of each mapped group) into the one shape
 * the sync applies. Pure: every provider ends here, so the rules below hold for all of them.
 *
 * - Only the groups that group mappings name are read (a company has thousands; kubevisa acts on a few), and a
 *   member gets the group under the name the mapping uses, whatever case or key (a Google group's email) matched.
 * - A user without an email cannot be linked to a person and is left out (and counted in a note).
 * - Deleted users (still in the provider's recycle bin) count only for an email no live account holds: a rehire
 *   with a new account is not offboarded by their old, deleted one.
 * - Two live accounts with one email (Entra `mail` is not unique): the person is active only if every one of
 *   them is (fail closed), with the groups of the active ones, and a note says so.
 */
import { couldPassForAnother } from '../../domain/email.ts';
import type { DirectoryUser } from '../directory.ts';

/** What the server hands every provider beside its configuration. */
export interface ProviderWiring {
  /** The group names the group mappings use: only these groups' members are read. */
  groups: string[];
  /** Notes an admin should see (users without email, a mapped group that does not exist). */
  report?: (note: string) => void;
  /** Waiting, replaceable in tests of the throttling rules. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface ReadUser {
  id: string;
  /** As the provider spells it; lower-cased here. */
  email: string | undefined;
  active: boolean;
}

export interface ReadDirectory {
  users: ReadUser[];
  /** Deleted (or Okta-deprovisioned) accounts the provider still lists. */
  deleted: ReadUser[];
  /** Mapped group name → ids of the users in it. */
  members: Map<string, Set<string>>;
}

export interface Snapshot {
  users: DirectoryUser[];
  /** What an admin should know (users without email, duplicate emails, mapped groups that do not exist). */
  notes: string[];
}

/**
 * A directory user's address as kubevisa compares it: trimmed and lower-cased, except one that could pass for another
 * person's, which is kept as the directory sent it — normalised, `\u212Aate@…` would become kate@… and keep or end
 * her access — so that the sync sees it and refuses it (lifecycle.ts applyDirectory).
 */
function comparedEmail(sent: string | undefined): string | undefined {
  if (!sent) return undefined;
  return couldPassForAnother(sent) ? sent : sent.trim().toLowerCase() || undefined;
}

export function assembleSnapshot(read: ReadDirectory, provider: string): Snapshot {
  const notes: string[] = [];
  const groupsOf = new Map<string, string[]>();
  for (const [group, ids] of read.members) {
    for (const id of ids) groupsOf.set(id, [...(groupsOf.get(id) ?? []), group]);
  }
  const live = new Map<string, DirectoryUser>();
  let withoutEmail = 0;
  const duplicates = new Set<string>();
  for (const user of read.users) {
    const email = comparedEmail(user.email);
    if (!email) {
      withoutEmail++;
      continue;
    }
    const groups = user.active ? (groupsOf.get(user.id) ?? []) : [];
    const before = live.get(email);
    if (before === undefined) {
      live.set(email, { id: user.id, email, active: user.active, groups: [...groups] });
      continue;
    }
    duplicates.add(email);
    before.active = before.active && user.active;
    before.groups = before.active ? [...new Set([...before.groups, ...groups])] : [];
  }
  const deleted = new Map<string, DirectoryUser>();
  for (const user of read.deleted) {
    const email = comparedEmail(user.email);
    if (!email || live.has(email)) continue;
    deleted.set(email, { id: user.id, email, active: false, deprovisioned: true, groups: [] });
  }
  if (withoutEmail > 0) notes.push(`${provider}: ${withoutEmail} user(s) without an email address were left out`);
  if (duplicates.size > 0) {
    notes.push(
      `${provider}: several accounts share the address(es) ${[...duplicates].slice(0, 10).join(', ')}; each counts as active only if all its accounts are`,
    );
  }
  return { users: [...live.values(), ...deleted.values()], notes };
}

/** The mapped group names, once each (case-insensitively), as the first mapping spells them. */
export function distinctGroups(groups: readonly string[]): string[] {
  const seen = new Map<string, string>();
  for (const group of groups) if (!seen.has(group.toLowerCase())) seen.set(group.toLowerCase(), group);
  return [...seen.values()];
}
