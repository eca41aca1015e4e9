/**
 * The identity lifecycle: what the identity provider says about people becomes kubevisa state.
 *
 * - Onboarding from groups: membership of a mapped group makes someone a contractor of an engagement (created
 *   from the mapping when its first member appears) or gives a role; leaving the group removes them and revokes
 *   their visas under that engagement only.
 * - Offboarding from three signals: SCIM `active=false` or DELETE, the directory sync, and a refresh the IdP
 *   refuses (by policy). Each goes through the offboarding orchestrator and gets a receipt.
 * - Reactivation (SCIM `active=true`, the directory listing them active again) lets the person log in again and
 *   restores nothing else: their visas stay ended.
 *
 * Level-triggered like the reconciler: `reconcileAll` re-derives everything from the stored SCIM users and
 * groups, so a crash between the SCIM commit and the offboarding commit is repaired at the next start.
 */
import { EngagementNotActive, Unauthenticated } from '../domain/errors.ts';
import { own } from '../domain/own.ts';
import { configuredRoles, type RoleConfig } from '../domain/roles.ts';
import type { Person, PersonRole } from '../domain/model.ts';
import { isContractorOf } from '../domain/engagement.ts';
import type { OidcIdentity } from '../auth/oidc-rp.ts';
import type { Caller } from '../app/caller.ts';
import type { EngagementService } from '../app/engagements.ts';
import type { PeopleService } from '../app/people.ts';
import type { GroupChange, UserChange } from '../scim/service.ts';
import type { ScimUserRecord } from '../store/identity-records.ts';
import type { Store } from '../store/store.ts';
import type { GroupMapping, IdentityConfig } from './config.ts';
import type { DirectoryUser, SyncReport } from './directory.ts';
import { engagementsFor, rolesFor, type GroupMembership } from './mapping.ts';
import type { OffboardingOrchestrator } from './offboarding.ts';
import { linkedIdps } from './ownership.ts';
import { couldPassForAnother } from '../domain/email.ts';

export interface IdentityLifecycleOptions {
  store: Store;
  people: Pick<PeopleService, 'reactivateAs'>;
  engagements: Pick<EngagementService, 'createAs' | 'setContractorAs'>;
  offboarding: OffboardingOrchestrator;
  config: IdentityConfig;
  serverConfig: RoleConfig;
  /** Failures no caller waits for (a mapping that could not be applied after a login). */
  report: (message: string, error: unknown) => void;
  /** Told when the sync refuses to act (too many offboardings at once) or SCIM ownership refuses a user. */
  alert: (message: string) => Promise<void>;
  now?: () => number;
}

/**
 * kubevisa acting for the identity provider, named after what acts (`scim:okta`, `sync:dev-idp`, `idp-refresh`). It
 * holds no role: it acts through the application layer's `…As` operations, which ask no permission.
 */
export function systemCaller(name: string): Caller {
  return { actor: { personId: 'system', email: name, roles: [], groups: [] } };
}

export class IdentityLifecycle {
  private readonly options: IdentityLifecycleOptions;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly mappings: GroupMapping[];
  /** The last directory snapshot, by lower-cased email (empty without a sync). */
  private directory = new Map<string, DirectoryUser>();

  constructor(options: IdentityLifecycleOptions) {
    this.options = options;
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.mappings = options.config.groupMappings;
  }

  // ---- SCIM ----

  /**
   * Level-triggered on the user's state after the change, not on the transition: a deactivation the IdP
   * retries after an error still offboards, and a replayed one finds the person already offboarded.
   */
  async onUserChanged(change: UserChange): Promise<void> {
    const { before, after, idp } = change;
    const by = `scim:${idp}`;
    const email = after?.email ?? before?.email;
    const person = email === undefined ? undefined : await this.store.getPersonByEmail(email);
    const linked = email === undefined ? new Set<string>() : await linkedIdps(this.store, email);
    if (email !== undefined && person !== undefined && !linked.has(idp)) {
      // An identity provider acts only on the people linked to it (identity/ownership.ts): one an admin unlinked
      // keeps its SCIM user, but its deactivation or deletion no longer reaches the person.
      if (after === undefined || !after.active || before?.active !== after.active) {
        await this.store.transaction((tx) =>
          tx.appendAudit({
            at: this.now(),
            actor: by,
            action: 'scim.user.ignored',
            personId: person.id,
            outcome: 'refused',
            reason: `${idp} is not linked to ${email}: its ${after === undefined ? 'deletion' : `active=${String(after.active)}`} does not act on the person`,
            details: { email, idp, userId: (after ?? before)?.id ?? null },
          }),
        );
      }
    } else if (email !== undefined && person !== undefined) {
      // Someone may be provisioned by two IdPs. Any one of them deactivating or deleting them ends their access
      // (fail closed): otherwise a second, less trusted SCIM client could keep someone in by listing them active.
      const remaining = (await this.store.listScimUsersByEmail(email)).filter((u) => linked.has(u.provisionedBy));
      if (after === undefined) {
        const others = [...new Set(remaining.map((u) => u.provisionedBy))];
        const reason =
          `deleted at ${idp} (SCIM DELETE)` +
          (others.length > 0 ? `, though still provisioned at ${others.join(', ')}` : '');
        if (person.status === 'active') {
          await this.options.offboarding.start({
            personId: person.id,
            status: 'deprovisioned',
            trigger: { kind: 'scim', by },
            reason,
            caller: systemCaller(by),
          });
        } else if (person.status === 'suspended') {
          await this.deprovisionSuspended(person, by, reason);
        }
      } else if (after !== undefined && !after.active && person.status === 'active') {
        await this.options.offboarding.start({
          personId: person.id,
          status: 'suspended',
          trigger: { kind: 'scim', by },
          reason: `deactivated at ${idp} (SCIM active=false)`,
          caller: systemCaller(by),
        });
      } else if (
        after?.active === true &&
        before?.active !== true &&
        person.status === 'suspended' &&
        remaining.every((u) => u.active) &&
        (await this.scimSuspenderStillProvisions(person.id, remaining))
      ) {
        // Only a suspension by SCIM active=false is lifted here, and only once the identity provider that made it
        // lists the person as active again: another IdP cannot undo it, nor lift a suspension by the directory
        // sync or a refused refresh. A person an admin or a SCIM DELETE deprovisioned stays out for good.
        await this.options.people.reactivateAs(systemCaller(by), person.id, `active again at ${idp} (SCIM)`);
      }
    }
    if (before?.email !== undefined && before.email !== after?.email) await this.applyMappingsSafely(before.email, by);
    if (after?.email !== undefined) await this.applyMappingsSafely(after.email, by);
  }

  /** Was the person's last offboarding a SCIM deactivation by an identity provider that still provisions them? */
  private async scimSuspenderStillProvisions(personId: string, users: readonly ScimUserRecord[]): Promise<boolean> {
    const last = (await this.store.listOffboardings({ personId })).at(-1);
    if (last?.trigger !== 'scim') return false;
    const trigger = own(last.receipt, 'trigger');
    const by =
      typeof trigger === 'object' && trigger !== null && !Array.isArray(trigger) ? own(trigger, 'by') : undefined;
    return users.some((u) => by === `scim:${u.provisionedBy}`);
  }

  async onGroupChanged(change: GroupChange): Promise<void> {
    const { before, after, idp } = change;
    const renamed = before?.displayName !== after?.displayName;
    const beforeMembers = new Set(before?.members ?? []);
    const afterMembers = new Set(after?.members ?? []);
    const affected = renamed
      ? new Set([...beforeMembers, ...afterMembers])
      : new Set([
          ...[...beforeMembers].filter((m) => !afterMembers.has(m)),
          ...[...afterMembers].filter((m) => !beforeMembers.has(m)),
        ]);
    const emails = new Set<string>();
    for (const userId of affected) {
      const user = await this.store.getScimUser(userId);
      if (user?.email !== undefined) emails.add(user.email);
    }
    for (const email of emails) await this.applyMappingsSafely(email, `scim:${idp}`);
  }

  /**
   * Applies mappings after a SCIM change that is already committed: a mapping that cannot be applied (an ended
   * engagement, a sponsor in the group) must not make the IdP retry a change that succeeded; it is audited.
   */
  private async applyMappingsSafely(email: string, by: string): Promise<void> {
    try {
      await this.applyMappings(email, by);
    } catch (error) {
      const now = this.now();
      const reason = `group mappings for ${email} could not be applied: ${(error as Error).message}`;
      this.options.report(reason, error);
      await this.store.transaction((tx) =>
        tx.appendAudit({ at: now, actor: by, action: 'identity.mapping-failed', outcome: 'error', reason }),
      );
    }
  }

  /** A person deactivated earlier and now deleted at the IdP: nothing left to end, the status says so. */
  private async deprovisionSuspended(person: Person, by: string, reason: string): Promise<void> {
    const now = this.now();
    await this.store.transaction(async (tx) => {
      await tx.setPersonStatus(person.id, 'deprovisioned', now);
      await tx.appendAudit({
        at: now,
        actor: by,
        action: 'person.deprovisioned',
        personId: person.id,
        outcome: 'ok',
        reason,
        details: { email: person.email, previousStatus: person.status },
      });
    });
  }

  /** The SCIM users of `email` whose identity provider is linked to it: the only ones that speak for the person. */
  private async linkedScimUsers(email: string): Promise<ScimUserRecord[]> {
    const linked = await linkedIdps(this.store, email);
    return (await this.store.listScimUsersByEmail(email)).filter((user) => linked.has(user.provisionedBy));
  }

  /** Tells the admins (the identity alert webhook and the audit trail), as a refused sync does. */
  raiseAlert(message: string): Promise<void> {
    return this.options.alert(message);
  }

  // ---- logins (SessionService hooks) ----

  /** Refuses a login the IdP has deactivated (SCIM or directory), or, by policy, one it never provisioned. */
  async beforeLogin(identity: OidcIdentity): Promise<void> {
    const email = identity.email.toLowerCase();
    const scimUsers = await this.linkedScimUsers(email);
    const entry = this.directory.get(email);
    let refusal: string | undefined;
    if (scimUsers.some((u) => !u.active)) {
      refusal = `${email} is deactivated at the identity provider (SCIM): ask your admin`;
    } else if (entry !== undefined && !entry.active) {
      refusal = `${email} is disabled in the directory: ask your admin`;
    } else if (this.options.config.requireProvisioned && scimUsers.length === 0 && entry === undefined) {
      refusal = `${email} was not provisioned by the identity provider (SCIM or directory): ask your admin to assign kubevisa to you`;
    }
    if (refusal === undefined) return;
    const now = this.now();
    await this.store.transaction((tx) =>
      tx.appendAudit({ at: now, actor: email, action: 'login.refused', outcome: 'refused', reason: refusal }),
    );
    throw new Unauthenticated(refusal);
  }

  /**
   * The roles of someone logging in: `base` (the core configuration's, for the login's email and groups) plus the
   * mapped roles their groups give, judged as the sync judges them ({@link rolesFor}), with the login's own group
   * claim standing for the person's groups where no SCIM or directory source applies. A failure to read the groups
   * refuses the login rather than answering with fewer (or more) roles than the person holds.
   */
  async rolesAtLogin(identity: OidcIdentity, base: readonly PersonRole[]): Promise<PersonRole[]> {
    if (this.mappings.length === 0) return [...base];
    return rolesFor(base, await this.groupsOf(identity.email.toLowerCase(), identity.groups), this.mappings);
  }

  /** The login itself stands even when a mapping cannot be applied: it is audited and re-applied later. */
  async afterLogin(person: Person): Promise<void> {
    await this.applyMappingsSafely(person.email, 'login');
  }

  /** The IdP refused a refresh: the session is already dead; by policy the person is suspended and offboarded. */
  async idpRefreshRefused(person: Person, sessionId: string): Promise<void> {
    if (this.options.config.onRefreshFailure !== 'suspend') return;
    const current = await this.store.getPerson(person.id);
    if (current?.status !== 'active') return;
    try {
      await this.options.offboarding.start({
        personId: person.id,
        status: 'suspended',
        trigger: { kind: 'refresh', by: 'idp-refresh' },
        reason: `the identity provider refused to refresh session ${sessionId} (account disabled or grant revoked)`,
        caller: systemCaller('idp-refresh'),
      });
    } catch (error) {
      // The caller already gets 401; the periodic reconcile and the sync remain as the other two signals.
      this.options.report(`suspending ${person.email} after a refused refresh failed`, error);
    }
  }

  // ---- directory sync ----

  async applyDirectory(users: DirectoryUser[], directory: string): Promise<SyncReport> {
    const startedAt = this.now();
    const by = `sync:${directory}`;
    const config = this.options.config.sync;
    // An address with a character that lower-cases into ASCII (the Kelvin sign) would stand for someone else's once
    // lower-cased (`\u212Aate@…` for kate@…): such entries are left out, so they can neither keep nor end anyone.
    // So is one holding an invisible character (hidden-text.ts), which could pass for another person's address.
    const lookAlikes = users.filter((u) => couldPassForAnother(u.email));
    if (lookAlikes.length > 0) {
      const reason = `the directory lists ${lookAlikes.length} address(es) holding a character that changes case into a plain letter (such as the Kelvin sign) or an invisible one (such as U+202E or U+200B); they were ignored, since they could pass for another person's address: fix them at the directory`;
      await this.store.transaction((tx) =>
        tx.appendAudit({
          at: startedAt,
          actor: by,
          action: 'identity.sync-entries-ignored',
          outcome: 'refused',
          reason,
          details: { emails: lookAlikes.map((u) => u.email).slice(0, 100) },
        }),
      );
      await this.options.alert(reason);
    }
    const listed = users.filter((u) => !couldPassForAnother(u.email));
    const snapshot = new Map(listed.map((u) => [u.email.toLowerCase(), u]));
    const persons = await this.store.listPersons();
    const toOffboard = persons.filter((p) => {
      if (p.status !== 'active') return false;
      const entry = snapshot.get(p.email);
      return entry === undefined ? config?.missingUsers !== 'ignore' : !entry.active;
    });
    const limit = config?.maxOffboardsPerRun ?? 10;
    if (toOffboard.length > limit) {
      const refused = `the directory would offboard ${toOffboard.length} people at once, more than maxOffboardsPerRun (${limit}): nobody was offboarded; check the directory, then raise the limit if this is right`;
      await this.store.transaction((tx) =>
        tx.appendAudit({
          at: startedAt,
          actor: by,
          action: 'identity.sync-refused',
          outcome: 'refused',
          reason: refused,
          details: { users: users.length, wouldOffboard: toOffboard.map((p) => p.email).slice(0, 100) },
        }),
      );
      await this.options.alert(refused);
      return { startedAt, finishedAt: this.now(), users: users.length, offboarded: [], reactivated: [], refused };
    }
    const previous = this.directory;
    this.directory = snapshot;
    const offboarded: string[] = [];
    for (const person of toOffboard) {
      const entry = snapshot.get(person.email);
      await this.options.offboarding.start({
        personId: person.id,
        status: entry === undefined || entry.deprovisioned === true ? 'deprovisioned' : 'suspended',
        trigger: { kind: 'sync', by },
        reason:
          entry === undefined
            ? `no longer listed by ${directory}`
            : entry.deprovisioned === true
              ? `deprovisioned or deleted in ${directory}`
              : `disabled in ${directory}`,
        caller: systemCaller(by),
      });
      offboarded.push(person.email);
    }
    const reactivated: string[] = [];
    for (const person of persons.filter((p) => p.status === 'suspended' && snapshot.get(p.email)?.active === true)) {
      // Only undo what a sync did: a suspension by SCIM or by a refused refresh is not the directory's to lift.
      const last = (await this.store.listOffboardings({ personId: person.id })).at(-1);
      if (last?.trigger !== 'sync') continue;
      await this.options.people.reactivateAs(systemCaller(by), person.id, `active again in ${directory}`);
      reactivated.push(person.email);
    }
    for (const user of listed) {
      const before = previous.get(user.email);
      if (before === undefined || before.active !== user.active || !sameGroups(before.groups, user.groups)) {
        await this.applyMappings(user.email, by);
      }
    }
    for (const [email] of previous) if (!snapshot.has(email)) await this.applyMappings(email, by);
    return { startedAt, finishedAt: this.now(), users: users.length, offboarded, reactivated };
  }

  // ---- group mappings ----

  /**
   * The groups the configured source says `email` is in (none for someone deactivated there), each SCIM group
   * with the identity provider that provisioned it, for mappings that trust only one.
   */
  async groupsOf(email: string, loginClaim?: readonly string[]): Promise<GroupMembership[]> {
    const source = this.options.config.groupSource;
    const scimUsers = await this.linkedScimUsers(email);
    if (source === 'scim' || (source === 'auto' && scimUsers.length > 0)) {
      const groups = new Map<string, GroupMembership>();
      for (const user of scimUsers.filter((u) => u.active)) {
        for (const group of await this.store.listScimGroupsOfUser(user.id))
          groups.set(group.id, { name: group.displayName, scimIdp: group.provisionedBy });
      }
      return [...groups.values()];
    }
    const entry = this.directory.get(email);
    if (source === 'directory' || (source === 'auto' && entry !== undefined)) {
      return entry?.active ? entry.groups.map((name) => ({ name })) : [];
    }
    if (loginClaim !== undefined) return loginClaim.map((name) => ({ name }));
    const person = await this.store.getPersonByEmail(email);
    return person?.status === 'active' ? person.groups.map((name) => ({ name })) : [];
  }

  /**
   * Makes engagement membership and mapped roles of `email` match their groups. Idempotent: nothing changes
   * (and nothing is audited) when they already match.
   */
  async applyMappings(email: string, by: string): Promise<void> {
    if (this.mappings.length === 0) return;
    const lower = email.toLowerCase();
    const person = await this.store.getPersonByEmail(lower);
    const groups = person !== undefined && person.status !== 'active' ? [] : await this.groupsOf(lower);
    const wanted = engagementsFor(groups, this.mappings);
    const caller = systemCaller(by);
    const active = await this.store.listEngagements({ status: 'active' });
    for (const mapping of this.mappings) {
      const spec = own(mapping, 'engagement');
      if (spec === undefined) continue;
      const engagement = active.find((e) => e.name === spec.name);
      const member = wanted.has(spec.name);
      const reason = `${member ? 'member' : 'no longer a member'} of group '${mapping.group}' (${by})`;
      if (member && engagement === undefined) {
        await this.createMappedEngagement(mapping, lower, caller, reason);
      } else if (engagement !== undefined && member !== isContractorOf(lower, engagement)) {
        await this.options.engagements.setContractorAs(caller, engagement.id, lower, member, reason);
      }
    }
    if (person !== undefined && person.status === 'active') {
      const base = configuredRoles(person.email, person.groups, this.options.serverConfig);
      const roles = rolesFor(base, groups, this.mappings);
      if (roles.join(',') !== person.roles.join(',')) {
        const now = this.now();
        await this.store.transaction(async (tx) => {
          await tx.setPersonRoles(person.id, roles, now);
          await tx.appendAudit({
            at: now,
            actor: by,
            action: 'person.roles-changed',
            personId: person.id,
            outcome: 'ok',
            details: {
              email: person.email,
              before: person.roles,
              after: roles,
              groups: groups.map((g) => (g.scimIdp ? `${g.scimIdp}:${g.name}` : g.name)),
            },
          });
        });
      }
    }
  }

  private async createMappedEngagement(
    mapping: GroupMapping,
    email: string,
    caller: Caller,
    reason: string,
  ): Promise<void> {
    const spec = own(mapping, 'engagement');
    if (spec === undefined) return;
    // An engagement of that name that has ended stays ended: a mapping never revives a closed contract.
    const ended = (await this.store.listEngagements({ status: 'ended' })).find((e) => e.name === spec.name);
    if (ended) {
      throw new EngagementNotActive(
        `engagement '${spec.name}' has ended; group '${mapping.group}' maps to it: rename the mapping's engagement to start a new contract`,
      );
    }
    try {
      await this.options.engagements.createAs(caller, {
        name: spec.name,
        vendor: spec.vendor,
        contractors: [email],
        sponsor: spec.sponsor,
        ...(own(spec, 'startsAt') !== undefined ? { startsAt: spec.startsAt! } : {}),
        endsAt: spec.endsAt,
        ceiling: spec.ceiling,
        maxVisaDuration: spec.maxVisaDuration,
      });
    } catch (error) {
      // Two first members at once (an IdP pushing a group's members in parallel): the other one created it.
      const created = (await this.store.listEngagements({ status: 'active' })).find((e) => e.name === spec.name);
      if (created === undefined) throw error;
      await this.options.engagements.setContractorAs(caller, created.id, email, true, reason);
    }
  }

  /**
   * Re-derives everything from what is stored: SCIM users deactivated while their person is still active are
   * offboarded (a crash between the two commits), and every SCIM user's mappings are re-applied.
   */
  async reconcileAll(): Promise<void> {
    for (const user of await this.store.listScimUsers()) {
      if (user.email === undefined) continue;
      if (!(await linkedIdps(this.store, user.email)).has(user.provisionedBy)) continue;
      const person = await this.store.getPersonByEmail(user.email);
      if (!user.active && person?.status === 'active') {
        await this.options.offboarding.start({
          personId: person.id,
          status: 'suspended',
          trigger: { kind: 'scim', by: `scim:${user.provisionedBy}` },
          reason: `deactivated at ${user.provisionedBy} (SCIM active=false), found at start-up`,
          caller: systemCaller(`scim:${user.provisionedBy}`),
        });
      }
      await this.applyMappings(user.email, 'reconcile');
    }
  }
}

function sameGroups(a: string[], b: string[]): boolean {
  const norm = (list: string[]) =>
    list
      .map((g) => g.toLowerCase())
      .sort()
      .join('\n');
  return norm(a) === norm(b);
}
