/**
 * `kubevisa engagement set-end ID --ends TIME --reason R` (POST /api/v1/engagements/{id}/end-date): an earlier end
 * ends or shortens the visas past it, a later one changes none.
 */
import type { EngagementJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, requiredString, singlePositional } from '../options.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'engagement id', 'engagement set-end');
  const endsAt = requiredString(values, 'ends', 'engagement set-end', 'the new end, e.g. 2026-05-31T18:00:00Z');
  const reason = requiredString(values, 'reason', 'engagement set-end', 'why the end date moves');
  const client = await clientFrom(values);
  const changed = await client.post<EngagementJson & { visasEnded: string[]; visasShortened: string[] }>(
    `/api/v1/engagements/${encodeURIComponent(id)}/end-date`,
    { endsAt, reason },
  );
  const effects = [
    changed.visasShortened.length > 0 ? `${changed.visasShortened.length} visa(s) now end with it` : '',
    changed.visasEnded.length > 0 ? `${changed.visasEnded.length} visa(s) that would start later were ended` : '',
  ].filter(Boolean);
  await emit(
    io,
    format,
    changed,
    `Engagement ${changed.id} (${changed.name}) now ends at ${changed.endsAt}${effects.length > 0 ? `: ${effects.join('; ')}` : '; no visa changed'}.`,
  );
};
