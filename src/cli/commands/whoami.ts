/** `kubevisa whoami`: the person the server sees behind your session (GET /api/v1/me). */
import type { PersonJson } from '../api-types.ts';
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, noPositionals, outputFormat } from '../options.ts';
import { personLine } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'whoami');
  const client = await clientFrom(values);
  const person = await client.get<PersonJson>('/api/v1/me');
  const lines = [
    personLine(person),
    `  id:      ${person.id}`,
    `  status:  ${person.status}`,
    `  groups:  ${person.groups?.length ? person.groups.join(', ') : '(none)'}`,
    `  server:  ${client.server}`,
  ];
  await emit(io, format, person, lines.join('\n'));
};
