/** `kubevisa profile lint FILE…`: the guardrail linter on profile files, for review before installing them. */
import { readFile } from 'node:fs/promises';
import type { CommandRun } from '../framework.ts';
import { render, UsageError } from '../framework.ts';
import { lintProfileDocument } from '../../rbac/lint.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  if (positionals.length === 0) throw new UsageError('name at least one profile file: kubevisa profile lint FILE');
  const results = [];
  for (const file of positionals) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
    }
    const { profile, findings } = lintProfileDocument(text);
    results.push({ file, profile: profile?.name ?? null, findings });
  }
  const format = typeof values.output === 'string' ? values.output : undefined;
  const rows = results.flatMap((r) => r.findings.map((f) => [`${r.file}:${f.line}`, f.risk, f.message]));
  if (format === undefined || format === 'table') {
    if (rows.length === 0) {
      io.out(`${results.map((r) => `${r.file}: profile '${r.profile}' is clean`).join('\n')}\n`);
    } else {
      await render(io, format, results, { columns: ['WHERE', 'RULE', 'FINDING'], rows });
      io.err(
        `${rows.length} finding(s). Remove the rule, or declare the risk with a justification under 'declaredRisks' (risk: <RULE>).\n`,
      );
    }
  } else {
    await render(io, format, results, { columns: [], rows: [] });
  }
  return rows.length === 0 ? 0 : 1;
};
