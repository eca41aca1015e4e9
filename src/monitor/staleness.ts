/**
 * Stale access: a visa that grants access but has not been used for `staleAfterMs`, and a person whose identity
 * (their ServiceAccount, or their gateway requests) has not been used for as long while they hold access. Idle time
 * counts from the last use, or from when access started when it was never used. Pure: usage, visas and the clock
 * come in as arguments.
 */
import type { Instant, Visa } from '../domain/model.ts';

export interface StaleVisa {
  visa: Visa;
  /** Last recorded use of the visa; undefined when it was never used. */
  lastUsedAt: Instant | undefined;
  /** What idle time counts from: the last use, or the visa's start. */
  idleSince: Instant;
  /** now − idleSince, in ms. */
  idleMs: number;
}

export interface StalePerson {
  personId: string;
  email: string;
  lastUsedAt: Instant | undefined;
  idleSince: Instant;
  idleMs: number;
  /** The person's visas that grant now. */
  visaIds: string[];
}

export interface StalenessInput {
  /** Visas granting now (approved or active, within their window). */
  granting: readonly Visa[];
  lastUseOfVisa: (visaId: string) => Instant | undefined;
  lastUseOfPerson: (personId: string) => Instant | undefined;
  now: Instant;
  /** Unused for at least this long counts as stale, in ms. */
  staleAfterMs: number;
}

export interface StalenessReport {
  visas: StaleVisa[];
  persons: StalePerson[];
}

export function findStaleAccess(input: StalenessInput): StalenessReport {
  const visas: StaleVisa[] = [];
  const byPerson = new Map<string, { email: string; since: Instant; visaIds: string[] }>();
  for (const visa of input.granting) {
    const lastUsedAt = input.lastUseOfVisa(visa.id);
    const idleSince = Math.max(lastUsedAt ?? visa.notBefore, visa.notBefore);
    const idleMs = input.now - idleSince;
    if (idleMs >= input.staleAfterMs) visas.push({ visa, lastUsedAt, idleSince, idleMs });
    const person = byPerson.get(visa.personId);
    if (person === undefined) {
      byPerson.set(visa.personId, { email: visa.personEmail, since: visa.notBefore, visaIds: [visa.id] });
    } else {
      person.since = Math.min(person.since, visa.notBefore);
      person.visaIds.push(visa.id);
    }
  }
  const persons: StalePerson[] = [];
  for (const [personId, person] of byPerson) {
    const lastUsedAt = input.lastUseOfPerson(personId);
    const idleSince = Math.max(lastUsedAt ?? person.since, person.since);
    const idleMs = input.now - idleSince;
    if (idleMs >= input.staleAfterMs) {
      persons.push({ personId, email: person.email, lastUsedAt, idleSince, idleMs, visaIds: person.visaIds });
    }
  }
  return { visas, persons };
}
