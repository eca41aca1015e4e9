/** `kubevisa request`: ask for a visa (POST /api/v1/visas) and say what happens next. */
import type { NewVisaJson, VisaJson } from '../api-types.ts';
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
import { describeVisa, nextStep } from '../present.ts';

const command = 'request';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, command);
  const body: NewVisaJson = {
    cluster: requiredString(values, 'cluster', command, 'the cluster to get access to'),
    namespaces: requiredList(values, 'ns', command, 'the namespace(s) to get access to, e.g. --ns payments'),
    profile: requiredString(
      values,
      'profile',
      command,
      "what you need to do there, e.g. --profile viewer (see 'kubevisa profile list')",
    ),
    duration: durationValue(requiredString(values, 'for', command, 'how long you need access, e.g. --for 8h'), 'for'),
    reason: requiredString(values, 'reason', command, 'why you need access, e.g. --reason "JIRA-123"'),
  };
  const start = optionalString(values, 'start');
  if (start !== undefined) body.startsAt = instantValue(start, 'start');
  const engagement = optionalString(values, 'engagement');
  if (engagement !== undefined) body.engagement = engagement;

  const client = await clientFrom(values);
  const visa = await client.post<VisaJson>('/api/v1/visas', body);
  const now = Date.now();
  await emit(io, format, visa, `${describeVisa(visa, now)}\n${nextStep(visa, now)}`);
};
