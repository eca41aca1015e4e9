/**
 * `kubevisa scim token rotate ID [--grace 1h]` (POST /api/v1/scim/tokens/{id}/rotate): a new token for the same
 * identity provider; the old one keeps working for the grace period (default 1h, `0s` ends it now) so the IdP
 * can be switched over without a failed provisioning call.
 */
import type { CommandRun } from '../framework.ts';
import { clientFrom, durationValue, emit, optionalString, outputFormat, singlePositional } from '../options.ts';
import { newTokenText, type NewScimTokenJson } from './scim-token-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'token id', 'scim token rotate');
  const graceText = optionalString(values, 'grace');
  const grace = graceText === undefined || graceText === '0s' ? graceText : durationValue(graceText, 'grace');
  const client = await clientFrom(values);
  const created = await client.post<NewScimTokenJson>(
    `/api/v1/scim/tokens/${encodeURIComponent(id)}/rotate`,
    grace === undefined ? {} : { grace },
  );
  const previous = created.previous;
  const until =
    previous?.state === 'revoked'
      ? `The old token ${id} is revoked now.`
      : `The old token ${id} keeps working until ${previous?.expiresAt ?? 'the grace period ends'}: switch the IdP over before then.`;
  await emit(io, format, created, `${newTokenText(created)}${until}\n`);
};
