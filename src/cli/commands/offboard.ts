/**
 * `kubevisa offboard PERSON --reason R` (POST /api/v1/persons/{idOrEmail}/offboard): prints the receipt,
 * one row per step, and exits 1 when any step failed so scripts and people cannot miss it.
 */
import type { OffboardReceiptJson } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, outputFormat, requiredString, singlePositional } from '../options.ts';
import { oneLine } from '../present.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const person = singlePositional(positionals, 'person', 'offboard');
  const reason = requiredString(values, 'reason', 'offboard', 'why the person is offboarded');
  const client = await clientFrom(values);
  const receipt = await client.post<OffboardReceiptJson>(`/api/v1/persons/${encodeURIComponent(person)}/offboard`, {
    reason,
  });
  const steps = receipt.steps ?? [];
  await render(io, format, receipt, {
    columns: ['STEP', 'RESULT', 'DETAIL'],
    rows: steps.map((s) => [s.step, s.ok ? 'ok' : 'FAILED', oneLine(s.detail ?? '', 120)]),
  });
  const failed = steps.filter((s) => !s.ok);
  const who = typeof receipt.person === 'string' ? receipt.person : (receipt.person?.email ?? person);
  if (failed.length > 0) {
    io.err(
      `kubevisa: offboarding ${who} is incomplete: ${failed.length} of ${steps.length} step(s) failed (${failed.map((s) => s.step).join(', ')}). See DETAIL, fix the cause and run the command again.\n`,
    );
    return 1;
  }
  if (format === undefined || format === 'table') io.err(`Offboarded ${who}: all ${steps.length} steps done.\n`);
  return 0;
};
