/** `kubevisa revoke ID --reason R` (POST /api/v1/visas/{id}/revoke): access ends now. */
import type { VisaJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, outputFormat, requiredString, singlePositional } from '../options.ts';
import { describeVisa, nextStep } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'visa id', 'revoke');
  const reason = requiredString(values, 'reason', 'revoke', 'why access ends early; it is kept in the audit trail');
  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>(`/api/v1/visas/${encodeURIComponent(id)}/revoke`, { reason });
  const now = Date.now();
  await emit(io, format, visa, `${describeVisa(visa, now)}\n${nextStep(visa, now)}`);
};
