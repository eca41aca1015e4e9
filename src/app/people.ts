/**
 * People: who is calling, who exists, offboarding and reactivation. Each operation a person calls asks the domain's
 * permission rules first, then runs the `…As` operation, which the identity lifecycle (SCIM, the directory sync, a
 * refused IdP refresh) calls directly as kubevisa's own actor.
 */
import { couldPassForAnother } from '../domain/email.ts';
import { NotFound } from '../domain/errors.ts';
import type { Person, Visa } from '../domain/model.ts';
import type { PeopleReads } from '../store/store.ts';
import { requireAdmin, requireStaff } from '../domain/permissions.ts';
import type { Caller } from './caller.ts';
import { announceEnded, auditAs, type AppPorts } from './ports.ts';
import { endVisasInTx } from './visas.ts';

export type PeopleServiceOptions = Omit<AppPorts, 'policy'>;

export interface OffboardOutcome {
  person: Person;
  visasEnded: Visa[];
  sessionsEnded: number;
}

export class PeopleService {
  private readonly options: PeopleServiceOptions;
  private readonly now: () => number;

  constructor(options: PeopleServiceOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** The caller's own record. */
  async me(caller: Caller): Promise<Person> {
    const person = await this.options.store.getPerson(caller.actor.personId);
    if (!person) throw new NotFound(`person ${caller.actor.personId} not found`);
    return person;
  }

  /** Everyone kubevisa knows (admins, approvers, auditors). */
  async list(caller: Caller): Promise<Person[]> {
    requireStaff(caller.actor, 'list persons');
    return this.options.store.listPersons();
  }

  /** A person by id or email (lower-cased), whoever asks. */
  async find(idOrEmail: string): Promise<Person> {
    const person = await personByIdOrEmail(this.options.store, idOrEmail);
    if (!person) throw new NotFound(`no person '${idOrEmail}': they have never logged in to kubevisa`);
    return person;
  }

  /** Offboards a person (admins). See {@link offboardAs}. */
  async offboard(
    caller: Caller,
    idOrEmail: string,
    reason: string,
    options: { status?: 'suspended' | 'deprovisioned' } = {},
  ): Promise<OffboardOutcome> {
    requireAdmin(caller.actor, 'offboard a person');
    return this.offboardAs(caller, idOrEmail, reason, options);
  }

  /**
   * Ends everything a person has, as `as`: status (deprovisioned by default; `suspended` when the identity provider
   * only deactivated them, so SCIM can reactivate), visas, sessions. Proof of the cluster side is the identity
   * lifecycle's receipt.
   */
  async offboardAs(
    as: Caller,
    idOrEmail: string,
    reason: string,
    options: { status?: 'suspended' | 'deprovisioned' } = {},
  ): Promise<OffboardOutcome> {
    const status = options.status ?? 'deprovisioned';
    const person = await this.find(idOrEmail);
    const now = this.now();
    let ended: Visa[] = [];
    let sessions = 0;
    await this.options.store.transaction(async (tx) => {
      await tx.setPersonStatus(person.id, status, now);
      await auditAs(tx, as, {
        action: 'person.offboarded',
        personId: person.id,
        reason,
        at: now,
        details: { email: person.email, status },
      });
      const visas = await tx.listVisas({ personId: person.id });
      ended = await endVisasInTx(tx, visas, as, `offboarded: ${reason}`, now);
      sessions = await tx.revokeSessionsOfPerson(person.id, now, `offboarded: ${reason}`);
      await auditAs(tx, as, { action: 'session.revoked-all', personId: person.id, at: now, details: { sessions } });
    });
    // Every cluster converges: the person's ServiceAccounts go wherever they are.
    announceEnded(this.options.events, ended, `offboarded: ${reason}`, this.options.clusterNames());
    const deprovisioned = { ...person, status };
    this.options.events.emit('person-deprovisioned', deprovisioned, reason);
    return { person: deprovisioned, visasEnded: ended, sessionsEnded: sessions };
  }

  /** Lets a suspended or deprovisioned person log in again (admins). See {@link reactivateAs}. */
  async reactivate(caller: Caller, personId: string, reason: string): Promise<Person> {
    requireAdmin(caller.actor, 'reactivate a person');
    return this.reactivateAs(caller, personId, reason);
  }

  /**
   * Lets a suspended or deprovisioned person log in again, as `as` (the identity provider reactivated them).
   * Restores nothing else: their visas stay ended, so access must be requested again.
   */
  async reactivateAs(as: Caller, personId: string, reason: string): Promise<Person> {
    const now = this.now();
    return this.options.store.transaction(async (tx) => {
      const person = await tx.getPerson(personId);
      if (!person) throw new NotFound(`no person '${personId}'`);
      if (person.status === 'active') return person;
      const saved = await tx.setPersonStatus(person.id, 'active', now);
      await auditAs(tx, as, {
        action: 'person.reactivated',
        personId: person.id,
        reason,
        at: now,
        details: { email: person.email, previousStatus: person.status },
      });
      return saved;
    });
  }
}

/**
 * The person `idOrEmail` names — their id, or their address in any case — or undefined. An address that could pass
 * for another person's (`\u212Aate@…`, the Kelvin sign, lower-cases to kate@…) names no one: it is never lower-cased
 * into someone else's.
 */
export async function personByIdOrEmail(people: PeopleReads, idOrEmail: string): Promise<Person | undefined> {
  const byId = await people.getPerson(idOrEmail);
  if (byId !== undefined || couldPassForAnother(idOrEmail)) return byId;
  return people.getPersonByEmail(idOrEmail.toLowerCase());
}
