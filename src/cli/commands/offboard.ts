/**
 * `kubevisa offboard PERSON --reason R` (POST /api/v1/persons/{idOrEmail}/offboard): prints the receipt, one row
 * per step with what proved it, then its summary (what happened: "offboarded by …"), and exits 1 when any step
 * is not proven so scripts and people cannot miss it.
 */
import type { OffboardReceiptJson } from '../api-types.ts';
import { render, type CommandRun } from '../framework.ts';
import { clientFrom, outputFormat, requiredString, singlePositional } from '../options.ts';
import { oneLine } from '../present.ts';

/** Longer than the server's wait for the receipt, so the answer is not cut off by the CLI's own limit (ms). */
const OFFBOARD_TIMEOUT_MS = 120_000;

/** The receipt as the server sends it; `id`, `status`, `summary` and step `status`/`count` come from newer servers. */
type Receipt = Omit<OffboardReceiptJson, 'steps'> & {
  id?: string;
  status?: string;
  summary?: string;
  steps?: { step: string; ok: boolean; detail: string; status?: string; count?: number }[];
};

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const person = singlePositional(positionals, 'person', 'offboard');
  const reason = requiredString(values, 'reason', 'offboard', 'why the person is offboarded');
  // The server answers once every step is proven or its `identity.offboarding.wait` (default 30 s) is up.
  const client = await clientFrom(values, { timeoutMs: OFFBOARD_TIMEOUT_MS });
  const receipt = await client.post<Receipt>(`/api/v1/persons/${encodeURIComponent(person)}/offboard`, { reason });
  const steps = receipt.steps ?? [];
  const result = (s: (typeof steps)[number]) => (s.ok ? 'ok' : s.status === 'pending' ? 'PENDING' : 'FAILED');
  await render(io, format, receipt, {
    columns: ['STEP', 'RESULT', 'DETAIL'],
    rows: steps.map((s) => [s.step, result(s), oneLine(s.detail ?? '', 160)]),
  });
  const table = format === undefined || format === 'table';
  if (table && receipt.summary) io.err(`${receipt.summary}\n`);
  const who = typeof receipt.person === 'string' ? receipt.person : (receipt.person?.email ?? person);
  const failed = steps.filter((s) => !s.ok && s.status !== 'pending');
  const pending = steps.filter((s) => !s.ok && s.status === 'pending');
  if (failed.length > 0) {
    io.err(
      `kubevisa: offboarding ${who} is incomplete: ${failed.length} of ${steps.length} step(s) failed (${failed.map((s) => s.step).join(', ')}). See DETAIL, fix the cause and run the command again.\n`,
    );
    return 1;
  }
  if (pending.length > 0) {
    io.err(
      `kubevisa: offboarding ${who} is committed but ${pending.length} of ${steps.length} step(s) are still being proven (${pending.map((s) => s.step).join(', ')}); kubevisa keeps proving them and alerts if one cannot be${receipt.id ? `. The receipt: GET /api/v1/offboardings/${receipt.id}` : ''}.\n`,
    );
    return 1;
  }
  if (table && !receipt.summary) io.err(`Offboarded ${who}: all ${steps.length} steps done.\n`);
  return 0;
};
