/**
 * `kubevisa scim token revoke ID` (DELETE /api/v1/scim/tokens/{id}): the identity provider using it gets 401
 * from its next SCIM call on.
 */
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, singlePositional } from '../options.ts';
import type { ScimTokenJson } from './scim-token-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'token id', 'scim token revoke');
  const client = await clientFrom(values);
  const answer = await client.call<ScimTokenJson>('DELETE', `/api/v1/scim/tokens/${encodeURIComponent(id)}`);
  const token = answer.body;
  await emit(
    io,
    format,
    token,
    `SCIM token ${token.id} (${token.idp}) is revoked: ${token.idp}'s SCIM calls with it now get 401.`,
  );
};
