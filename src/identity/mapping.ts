/**
 * Group mappings: which IdP groups make someone a contractor of which engagement, or give which kubevisa role.
 * Pure functions: validation against what the server knows (clusters, profiles) and what a set of groups
 * implies. The lifecycle applies the result to the store.
 */
import { emailAddressProblem } from '../domain/email.ts';
import { InvalidInput } from '../domain/errors.ts';
import type { PersonRole } from '../domain/model.ts';
import { isNamespacePattern } from '../domain/names.ts';
import { own } from '../domain/own.ts';
import { PERSON_ROLES, sameGroup } from '../domain/roles.ts';
import { parseDuration, parseInstant } from '../domain/time.ts';
import type { GroupMapping } from './config.ts';

/**
 * Checks every engagement mapping against the clusters and profiles the server has, with the path of the
 * offending field in the message.
 * @throws InvalidInput
 */
export function validateMappings(
  mappings: readonly GroupMapping[],
  known: { clusters: readonly string[]; profiles: readonly string[]; now: number },
): void {
  mappings.forEach((mapping, index) => {
    const path = `identity.groupMappings[${index}].engagement`;
    const engagement = own(mapping, 'engagement');
    if (engagement === undefined) return;
    const refuse = (field: string, problem: string) =>
      new InvalidInput(`config: '${path}.${field}' ${problem}`, { details: { field: `${path}.${field}` } });
    const sponsorProblem = emailAddressProblem(engagement.sponsor);
    if (sponsorProblem !== undefined) throw refuse('sponsor', `must be the sponsor's email: ${sponsorProblem}`);
    for (const cluster of engagement.ceiling.clusters) {
      if (!known.clusters.includes(cluster)) {
        throw refuse(
          'ceiling.clusters',
          `names unknown cluster '${cluster}': the server manages ${known.clusters.join(', ') || '(no cluster)'}`,
        );
      }
    }
    for (const profile of engagement.ceiling.profiles) {
      if (!known.profiles.includes(profile)) {
        throw refuse(
          'ceiling.profiles',
          `names unknown profile '${profile}': known profiles are ${known.profiles.join(', ')}`,
        );
      }
    }
    for (const pattern of engagement.ceiling.namespacePatterns) {
      if (!isNamespacePattern(pattern)) {
        throw refuse(
          'ceiling.namespacePatterns',
          `holds '${pattern}', which is neither a namespace name nor a prefix with one trailing '*' (a bare '*' is refused)`,
        );
      }
    }
    const endsAt = parseInstant(engagement.endsAt, `config ${path}.endsAt`);
    if (endsAt <= known.now) throw refuse('endsAt', `(${engagement.endsAt}) is in the past: the contract has ended`);
    const startsAt = own(engagement, 'startsAt');
    if (startsAt !== undefined && parseInstant(startsAt, `config ${path}.startsAt`) >= endsAt) {
      throw refuse('startsAt', 'must be before endsAt');
    }
    parseDuration(engagement.maxVisaDuration, `config ${path}.maxVisaDuration`);
  });
}

/** A group someone is in, and the SCIM identity provider that provisioned it (none: directory or login claim). */
export interface GroupMembership {
  name: string;
  scimIdp?: string;
}

/** Does `mapping` apply to someone in `groups`? A mapping that names an `idp` ignores other IdPs' SCIM groups. */
export function matches(groups: readonly GroupMembership[], mapping: GroupMapping): boolean {
  const idp = own(mapping, 'idp');
  return groups.some(
    (g) =>
      sameGroup(g.name, mapping.group) &&
      (idp === undefined || own(g, 'scimIdp') === undefined || own(g, 'scimIdp') === idp),
  );
}

/** The names of the mapped engagements that `groups` make someone a contractor of. */
export function engagementsFor(groups: readonly GroupMembership[], mappings: readonly GroupMapping[]): Set<string> {
  const names = new Set<string>();
  for (const mapping of mappings) {
    const engagement = own(mapping, 'engagement');
    if (engagement !== undefined && matches(groups, mapping)) names.add(engagement.name);
  }
  return names;
}

/** The person's roles: what the core configuration gives plus what role mappings give, in a stable order. */
export function rolesFor(
  base: readonly PersonRole[],
  groups: readonly GroupMembership[],
  mappings: readonly GroupMapping[],
): PersonRole[] {
  // Own properties only: an engagement mapping has no `role`, and nothing inherited may give it one.
  const mapped = mappings.flatMap((m) => {
    const role = own(m, 'role');
    return role !== undefined && matches(groups, m) ? [role] : [];
  });
  const all = new Set<PersonRole>([...base, ...mapped]);
  return PERSON_ROLES.filter((role) => all.has(role));
}
