/** `kubevisa visas`: the visas you can see (GET /api/v1/visas), live ones unless --all or --state. */
import type { Items, VisaJson } from '../api-types.ts';
import { render, UsageError, type CommandRun } from '../framework.ts';
import { clientFrom, noPositionals, optionalString, outputFormat } from '../options.ts';
import { visaTable } from '../present.ts';

const STATES = ['requested', 'approved', 'active', 'expired', 'revoked', 'denied', 'cancelled'];
/** Shown without --all or --state: the visas that still grant, or may yet grant, access. */
const LIVE_STATES = new Set(['requested', 'approved', 'active']);

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'visas');
  const state = optionalString(values, 'state');
  if (state !== undefined && !STATES.includes(state)) {
    throw new UsageError(`unknown --state '${state}': use one of ${STATES.join(', ')}`);
  }
  const client = await clientFrom(values);
  const answer = await client.get<Items<VisaJson>>('/api/v1/visas', {
    state,
    cluster: optionalString(values, 'cluster'),
    engagement: optionalString(values, 'engagement'),
    person: optionalString(values, 'person'),
  });
  const all = values.all === true || state !== undefined;
  const items = (answer.items ?? []).filter((v) => all || LIVE_STATES.has(v.state));
  await render(io, format, { items }, visaTable(items, Date.now()));
};
