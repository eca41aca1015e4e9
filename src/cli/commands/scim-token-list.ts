/** `kubevisa scim token list` (GET /api/v1/scim/tokens): every SCIM token, live or not, never its secret. */
import type { Items } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, outputFormat } from '../options.ts';
import { tokenTable, type ScimTokenJson } from './scim-token-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'scim token list');
  const client = await clientFrom(values);
  const answer = await client.get<Items<ScimTokenJson>>('/api/v1/scim/tokens');
  const items = answer.items ?? [];
  await render(io, format, { items }, tokenTable(items, Date.now()));
};
