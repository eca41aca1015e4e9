/** `kubevisa engagement end ID --reason R` (POST /api/v1/engagements/{id}/end): every visa under it is revoked. */
import type { EngagementJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, requiredString, singlePositional } from '../options.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'engagement id', 'engagement end');
  const reason = requiredString(values, 'reason', 'engagement end', 'why the engagement ends early');
  const client = await clientFrom(values);
  const engagement = await client.post<EngagementJson>(`/api/v1/engagements/${encodeURIComponent(id)}/end`, {
    reason,
  });
  await emit(
    io,
    format,
    engagement,
    `Engagement ${engagement.id} (${engagement.name}) is ${engagement.status}${engagement.endedAt ? ` since ${engagement.endedAt}` : ''}: every visa under it is revoked.`,
  );
};
