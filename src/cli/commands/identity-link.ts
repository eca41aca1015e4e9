/**
 * `kubevisa identity link|unlink|links`: which SCIM identity providers may act on whom (POST, DELETE and GET
 * /api/v1/identity/links). Linking is an admin's decision that an identity provider provisions and offboards a
 * person another one (or none) provisioned first; see docs/identity.md, "Which identity provider acts on whom".
 */
import type { Items } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, emit, optionalString, outputFormat, requiredString, singlePositional } from '../options.ts';
import { relativeTime } from '../present.ts';

/** A link as the API shows it. */
export interface ScimLinkJson {
  email: string;
  idp: string;
  how: 'provisioned' | 'claimed' | 'linked' | 'migrated';
  by: string;
  reason?: string;
  createdAt: string;
}

export const link: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const person = singlePositional(positionals, 'person (email or id)', 'identity link');
  const idp = requiredString(values, 'idp', 'identity link', 'the identity provider, as its SCIM token was created');
  const reason = requiredString(values, 'reason', 'identity link', 'why this identity provider may act on them');
  const client = await clientFrom(values);
  const created = await client.post<ScimLinkJson>('/api/v1/identity/links', { person, idp, reason });
  await emit(
    io,
    format,
    created,
    `${created.email} is linked to ${created.idp}: it may now provision, deactivate and delete them.`,
  );
};

export const unlink: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const person = singlePositional(positionals, 'person (email or id)', 'identity unlink');
  const idp = requiredString(values, 'idp', 'identity unlink', 'the identity provider to unlink');
  const client = await clientFrom(values);
  const answer = await client.call<ScimLinkJson>(
    'DELETE',
    `/api/v1/identity/links/${encodeURIComponent(idp)}/${encodeURIComponent(person)}`,
  );
  await emit(
    io,
    format,
    answer.body,
    `${answer.body.email} is no longer linked to ${answer.body.idp}: its SCIM changes no longer reach them.`,
  );
};

export const list: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const query = new URLSearchParams();
  if (positionals.length > 0)
    query.set('person', singlePositional(positionals, 'person (email or id)', 'identity links'));
  const idp = optionalString(values, 'idp');
  if (idp !== undefined) query.set('idp', idp);
  const client = await clientFrom(values);
  const answer = await client.get<Items<ScimLinkJson>>(`/api/v1/identity/links${query.size > 0 ? `?${query}` : ''}`);
  const items = answer.items ?? [];
  const now = Date.now();
  await render(
    io,
    format,
    { items },
    {
      columns: ['EMAIL', 'IDP', 'HOW', 'BY', 'SINCE', 'REASON'],
      rows: items.map((l) => [l.email, l.idp, l.how, l.by, relativeTime(l.createdAt, now), l.reason ?? '-']),
    },
  );
};
