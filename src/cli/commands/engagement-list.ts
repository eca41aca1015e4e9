/** `kubevisa engagement list` (GET /api/v1/engagements). */
import type { EngagementJson, Items } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, outputFormat } from '../options.ts';
import { engagementTable } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'engagement list');
  const client = await clientFrom(values);
  const answer = await client.get<Items<EngagementJson>>('/api/v1/engagements');
  const items = answer.items ?? [];
  await render(io, format, { items }, engagementTable(items, Date.now()));
};
