/**
 * `kubevisa audit export [filters] [--out FILE]` (GET /api/v1/audit/export): every matching event as JSON lines,
 * oldest first, streamed to stdout or a file (created 0600, never overwritten). An unfiltered export can be
 * verified offline with `kubevisa audit verify --from FILE`.
 */
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, optionalString } from '../options.ts';
import { filterQuery, streamGet } from './audit-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  noPositionals(positionals, 'audit export');
  const query = filterQuery(values);
  const out = optionalString(values, 'out');
  const client = await clientFrom(values);
  if (out === undefined) {
    await streamGet(client, '/api/v1/audit/export', query, process.stdout);
    return;
  }
  // 'wx': an export never replaces a file, least of all an earlier export someone kept as evidence.
  const file = createWriteStream(out, { flags: 'wx', mode: 0o600 });
  try {
    await streamGet(client, '/api/v1/audit/export', query, file);
  } finally {
    file.end();
    await finished(file);
  }
  io.err(`wrote ${out}\n`);
};
