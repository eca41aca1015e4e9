/**
 * `kubevisa scim token create --idp NAME` (POST /api/v1/scim/tokens): a new bearer token for one identity
 * provider's SCIM provisioning. The token is printed once; the server keeps only its hash.
 */
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, positionalOrOption, outputFormat, requiredString } from '../options.ts';
import { newTokenText, type NewScimTokenJson } from './scim-token-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const idp = requiredString(
    { idp: positionalOrOption(values, positionals, 'idp', 'scim token create') },
    'idp',
    'scim token create',
    'the identity provider the token is for, e.g. okta or entra',
  );
  const client = await clientFrom(values);
  const created = await client.post<NewScimTokenJson>('/api/v1/scim/tokens', { idp });
  await emit(io, format, created, newTokenText(created));
};
