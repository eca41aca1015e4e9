/**
 * `kubevisa extend ID --for D --reason R` (POST /api/v1/visas/{id}/extend). An extension is a new request
 * that needs approval again; the current visa keeps its own end until then.
 */
import type { VisaJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, durationValue, emit, outputFormat, requiredString, singlePositional } from '../options.ts';
import { describeVisa, nextStep } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'visa id', 'extend');
  const duration = durationValue(requiredString(values, 'for', 'extend', 'how much longer, e.g. --for 2h'), 'for');
  const reason = requiredString(values, 'reason', 'extend', 'why you need more time');
  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>(`/api/v1/visas/${encodeURIComponent(id)}/extend`, { duration, reason });
  const now = Date.now();
  await emit(
    io,
    format,
    visa,
    `Extension of ${id} requested as visa ${visa.id}.\n${describeVisa(visa, now)}\n${nextStep(visa, now)}`,
  );
};
