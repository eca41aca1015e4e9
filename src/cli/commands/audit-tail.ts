/**
 * `kubevisa audit tail [-n N] [-f] [filters]`: the newest events (GET /api/v1/audit/events?order=desc), oldest
 * of them first; with --follow, then every new one as it is appended, until Ctrl-C.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { formatTable, render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, outputFormat } from '../options.ts';
import { countOption, eventTable, filterQuery, type AuditEventJson, type AuditPage } from './audit-shared.ts';

/** How often --follow asks for new events, in milliseconds. */
const FOLLOW_INTERVAL_MS = 1000;

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'audit tail');
  const filters = filterQuery(values);
  const count = countOption(values, 'lines', 20, 10_000);
  const client = await clientFrom(values);
  const newest = await client.get<AuditPage>('/api/v1/audit/events', {
    ...filters,
    order: 'desc',
    limit: String(count),
  });
  const items = [...newest.items].reverse();
  if (values.follow !== true) {
    await render(io, format, { items }, eventTable(items));
    return;
  }
  // Following prints as events come: JSON lines for scripts, table rows (header once) for people.
  const print = (events: AuditEventJson[], header: boolean) => {
    if (format === 'json' || format === 'yaml') {
      for (const event of events) io.out(`${JSON.stringify(event)}\n`);
      return;
    }
    const table = formatTable(eventTable(events).columns, eventTable(events).rows).split('\n');
    io.out(`${(header ? table : table.slice(1)).filter((line) => line !== '').join('\n')}\n`);
  };
  if (items.length > 0) print(items, true);
  let after = items.at(-1)?.seq ?? 0;
  let header = items.length === 0;
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    while (!stopped) {
      const page = await client.get<AuditPage>('/api/v1/audit/events', {
        ...filters,
        after: String(after),
        limit: '1000',
      });
      if (page.items.length > 0) {
        print(page.items, header);
        header = false;
        after = page.items.at(-1)?.seq ?? after;
      }
      if (page.next === undefined) await sleep(FOLLOW_INTERVAL_MS);
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
};
