/** `kubevisa engagement create` (POST /api/v1/engagements): the contract that bounds every visa under it. */
import type { EngagementJson, NewEngagementJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import {
  clientFrom,
  durationValue,
  emit,
  instantValue,
  noPositionals,
  optionalString,
  outputFormat,
  requiredList,
  requiredString,
} from '../options.ts';
import { timeWithRelative } from '../present.ts';

const command = 'engagement create';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, command);
  const body: NewEngagementJson = {
    name: requiredString(values, 'name', command, 'a short name for the contract, e.g. acme-2026'),
    vendor: requiredString(values, 'vendor', command, "the contractor's company"),
    contractors: requiredList(values, 'contractor', command, 'the email of each contractor it covers'),
    sponsor: requiredString(values, 'sponsor', command, 'the email of the employee who answers for it'),
    endsAt: instantValue(
      requiredString(values, 'ends', command, 'when the contract ends, e.g. 2026-06-30T18:00:00Z'),
      'ends',
    ),
    ceiling: {
      clusters: requiredList(values, 'cluster', command, 'the cluster(s) visas may be for'),
      namespacePatterns: requiredList(
        values,
        'ns-pattern',
        command,
        "the namespaces visas may cover, e.g. payments or 'staging-*'",
      ),
      profiles: requiredList(values, 'profile', command, 'the profile(s) visas may use'),
    },
    maxVisaDuration: durationValue(
      requiredString(values, 'max-visa', command, 'the longest single visa, e.g. 8h'),
      'max-visa',
    ),
  };
  const starts = optionalString(values, 'starts');
  if (starts !== undefined) body.startsAt = instantValue(starts, 'starts');

  const client = await clientFrom(values);
  const engagement = await client.post<EngagementJson & { warnings?: string[] }>('/api/v1/engagements', body);
  const now = Date.now();
  await emit(
    io,
    format,
    engagement,
    [
      `Engagement ${engagement.id} (${engagement.name}) created for ${engagement.vendor}.`,
      `  contractors: ${engagement.contractors.join(', ')}; sponsor: ${engagement.sponsor}`,
      `  from ${engagement.startsAt} until ${timeWithRelative(engagement.endsAt, now)}`,
      `  ceiling: clusters ${engagement.ceiling.clusters.join(', ')}; namespaces ${engagement.ceiling.namespacePatterns.join(', ')}; profiles ${engagement.ceiling.profiles.join(', ')}`,
      ...(engagement.warnings ?? []).map((warning) => `  note: ${warning}`),
      `Contractors can now run 'kubevisa request --engagement ${engagement.id} …'.`,
    ].join('\n'),
  );
};
