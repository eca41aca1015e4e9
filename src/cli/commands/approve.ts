/** `kubevisa approve ID`: approve a request, optionally narrower than asked (POST /api/v1/visas/{id}/approve). */
import type { VisaJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import {
  clientFrom,
  durationValue,
  emit,
  optionalString,
  outputFormat,
  singlePositional,
  stringList,
} from '../options.ts';
import { describeVisa, nextStep } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const id = singlePositional(positionals, 'visa id', 'approve');
  const body: { comment?: string; namespaces?: string[]; duration?: string } = {};
  const comment = optionalString(values, 'comment');
  if (comment !== undefined) body.comment = comment;
  const namespaces = stringList(values, 'ns');
  if (namespaces.length > 0) body.namespaces = namespaces;
  const duration = optionalString(values, 'for');
  if (duration !== undefined) body.duration = durationValue(duration, 'for');

  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>(`/api/v1/visas/${encodeURIComponent(id)}/approve`, body);
  const now = Date.now();
  await emit(io, format, visa, `${describeVisa(visa, now)}\n${nextStep(visa, now)}`);
};
