/** `kubevisa audit search [filters]` (GET /api/v1/audit/events): matching events, oldest first, one page. */
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, optionalString, outputFormat } from '../options.ts';
import { countOption, eventTable, filterQuery, type AuditPage } from './audit-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'audit search');
  const query: Record<string, string | undefined> = {
    ...filterQuery(values),
    limit: String(countOption(values, 'limit', 100, 10_000)),
  };
  const after = optionalString(values, 'after');
  if (after !== undefined) query.after = String(countOption(values, 'after', 0, Number.MAX_SAFE_INTEGER));
  const client = await clientFrom(values);
  const page = await client.get<AuditPage>('/api/v1/audit/events', query);
  await render(io, format, page, eventTable(page.items));
  if (format === undefined && page.next?.after !== undefined) {
    io.err(`(more events match: add --after ${page.next.after} for the next page, or use 'kubevisa audit export')\n`);
  }
};
