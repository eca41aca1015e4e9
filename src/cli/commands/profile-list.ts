/** `kubevisa profile list` (GET /api/v1/profiles). `-o yaml` shows the RBAC rules themselves. */
import type { Items, ProfileJson } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, outputFormat } from '../options.ts';
import { oneLine } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'profile list');
  const client = await clientFrom(values);
  const answer = await client.get<Items<ProfileJson>>('/api/v1/profiles');
  const items = answer.items ?? [];
  await render(
    io,
    format,
    { items },
    {
      columns: ['NAME', 'MAX VISA', 'DECLARED RISKS', 'RECORDED', 'DESCRIPTION'],
      rows: items.map((p) => [
        p.name,
        p.maxVisaDuration ?? '',
        (p.declaredRisks ?? []).map((r) => r.risk).join(',') || '-',
        p.recordSessions ? 'yes' : 'no',
        oneLine(p.description ?? '', 80),
      ]),
    },
  );
};
