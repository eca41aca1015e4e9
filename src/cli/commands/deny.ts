/** `kubevisa deny ID --reason R` (POST /api/v1/visas/{id}/deny). */
import type { VisaJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, requiredString, singlePositional } from '../options.ts';
import { describeVisa } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'visa id', 'deny');
  const reason = requiredString(values, 'reason', 'deny', 'why the request is denied; the requester sees it');
  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>(`/api/v1/visas/${encodeURIComponent(id)}/deny`, { reason });
  await emit(io, format, visa, describeVisa(visa, Date.now()));
};
