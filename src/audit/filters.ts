/**
 * The query of the audit endpoints (`GET /api/v1/audit/events` and `/export`) as a store filter. Every value
 * arrives as a string; anything malformed is refused with what was wrong and what is allowed.
 */
import { personByIdOrEmail } from '../app/people.ts';
import { couldPassForAnother } from '../domain/email.ts';
import { InvalidInput } from '../domain/errors.ts';
import { parseInstant } from '../domain/time.ts';
import type { AuditFilter, Store } from '../store/store.ts';

/** The query parameters, as the routes declare them. */
export interface AuditQuery {
  /** A person by id (`p_…`) or email: events by them or about them. */
  person?: string;
  visa?: string;
  /** An engagement by id (`e_…`) or name. */
  engagement?: string;
  cluster?: string;
  namespace?: string;
  action?: string;
  /** RFC 3339 times: events at or after `since`, before `until`. */
  since?: string;
  until?: string;
  /** Seq cursors: after (exclusive), before (exclusive), through (inclusive). */
  after?: string;
  before?: string;
  through?: string;
  limit?: string;
  /** `asc` (default) or `desc` (newest first). */
  order?: string;
}

const text = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength });
const seq = { type: 'string', pattern: '^[0-9]{1,15}$' };

/** The JSON schema of AuditQuery, for the routes (unknown parameters are refused). */
export const AUDIT_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    person: text(254),
    visa: text(64),
    engagement: text(64),
    cluster: text(63),
    namespace: text(253),
    action: text(100),
    since: text(64),
    until: text(64),
    after: seq,
    before: seq,
    through: seq,
    limit: { type: 'string', pattern: '^[0-9]{1,5}$' },
    order: { type: 'string', enum: ['asc', 'desc'] },
  },
};

function wholeNumber(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/** Resolves names (a person's email, an engagement's name) and builds the store filter. */
export async function auditFilterOf(query: AuditQuery, store: Store): Promise<AuditFilter> {
  const filter: AuditFilter = {};
  const assign = <K extends keyof AuditFilter>(key: K, value: AuditFilter[K] | undefined) => {
    if (value !== undefined) filter[key] = value;
  };
  assign('afterSeq', wholeNumber(query.after));
  assign('beforeSeq', wholeNumber(query.before));
  assign('throughSeq', wholeNumber(query.through));
  assign('limit', wholeNumber(query.limit));
  assign('visaId', query.visa);
  assign('cluster', query.cluster);
  assign('namespace', query.namespace);
  assign('action', query.action);
  if (query.order === 'desc') filter.newestFirst = true;
  if (query.since !== undefined) filter.since = parseInstant(query.since, 'since');
  if (query.until !== undefined) filter.until = parseInstant(query.until, 'until');
  if (filter.since !== undefined && filter.until !== undefined && filter.until <= filter.since) {
    throw new InvalidInput(`'until' must be later than 'since'`);
  }
  if (query.person !== undefined) filter.involving = await personOf(query.person, store);
  if (query.engagement !== undefined) filter.engagementId = await engagementIdOf(query.engagement, store);
  return filter;
}

/**
 * Events by a person carry their email as `actor`; events about them carry their id. Both are matched, and an
 * email nobody logged in with still matches the events that name it.
 */
async function personOf(idOrEmail: string, store: Store): Promise<{ personId?: string; email: string }> {
  const person = idOrEmail.startsWith('p_')
    ? await store.getPerson(idOrEmail)
    : await personByIdOrEmail(store, idOrEmail);
  if (person !== undefined) return { personId: person.id, email: person.email };
  if (idOrEmail.startsWith('p_')) throw new InvalidInput(`no person with id '${idOrEmail}'`);
  // A look-alike of someone's address (`\u212Aate@…`) is matched as written, so it never finds kate@…'s events.
  return { email: couldPassForAnother(idOrEmail) ? idOrEmail : idOrEmail.toLowerCase() };
}

async function engagementIdOf(idOrName: string, store: Store): Promise<string> {
  if ((await store.getEngagement(idOrName)) !== undefined) return idOrName;
  const named = (await store.listEngagements()).filter((engagement) => engagement.name === idOrName);
  const chosen = named.find((engagement) => engagement.status === 'active') ?? named[0];
  if (chosen === undefined) throw new InvalidInput(`no engagement with id or name '${idOrName}'`);
  return chosen.id;
}
