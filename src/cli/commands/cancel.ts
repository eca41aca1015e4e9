/** `kubevisa cancel ID` (POST /api/v1/visas/{id}/cancel): withdraw your own request. */
import type { VisaJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, singlePositional } from '../options.ts';
import { describeVisa } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'visa id', 'cancel');
  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>(`/api/v1/visas/${encodeURIComponent(id)}/cancel`);
  await emit(io, format, visa, describeVisa(visa, Date.now()));
};
