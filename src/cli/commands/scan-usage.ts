/**
 * `kubevisa scan usage`: when each visa that grants access now was last used (gateway requests and the clusters'
 * audit logs), and which are stale (GET /api/v1/monitoring/usage; admins and auditors). Exits 1 when any is stale.
 */
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, outputFormat } from '../options.ts';
import { relativeTime } from '../present.ts';

interface UsageJson {
  generatedAt: string;
  staleAfterSeconds: number;
  visas: {
    id: string;
    personEmail: string;
    cluster: string;
    namespaces: string[];
    profile: string;
    notAfter: string;
    lastUsedAt: string | null;
    stale: boolean;
  }[];
  stalePersons: { email: string; lastUsedAt: string | null; visaIds: string[] }[];
}

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'scan usage');
  const client = await clientFrom(values);
  const usage = await client.get<UsageJson>('/api/v1/monitoring/usage');
  const now = Date.now();
  await render(io, format, usage, {
    columns: ['VISA', 'PERSON', 'CLUSTER', 'NAMESPACES', 'PROFILE', 'LAST USED', 'STALE', 'ENDS'],
    rows: usage.visas.map((v) => [
      v.id,
      v.personEmail,
      v.cluster,
      v.namespaces.join(','),
      v.profile,
      v.lastUsedAt === null ? 'never' : relativeTime(v.lastUsedAt, now),
      v.stale ? 'STALE' : '',
      relativeTime(v.notAfter, now),
    ]),
  });
  const stale = usage.visas.filter((v) => v.stale);
  if ((format === undefined || format === 'table') && stale.length > 0) {
    io.err(
      `${stale.length} visa(s) unused for ${Math.round(usage.staleAfterSeconds / 86_400)} day(s) or more: revoke what is no longer needed ('kubevisa revoke ID --reason unused').\n`,
    );
  }
  return stale.length > 0 ? 1 : 0;
};
