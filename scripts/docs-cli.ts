/**
 * docs/cli.md, made from the command table (src/cli/commands.ts) and the same help renderer `kubevisa COMMAND --help`
 * prints with (src/cli/framework.ts), so the reference cannot drift from what the command line says about itself.
 *
 *   node scripts/docs-cli.ts           prints the reference
 *   node scripts/docs-cli.ts --write   writes it to docs/cli.md
 *
 * test/docs-generated.test.ts fails when docs/cli.md and the command table differ.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { commands } from '../src/cli/commands.ts';
import { helpText, type CommandSpec } from '../src/cli/framework.ts';

export const CLI_DOC = fileURLToPath(new URL('../docs/cli.md', import.meta.url));
export const CLI_REFRESH = 'node scripts/docs-cli.ts --write';

/** A heading's anchor as GitHub makes it (lower case, spaces to dashes, punctuation dropped). */
function anchor(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replaceAll(' ', '-');
}

/** The CLI reference: an index of the commands, then each command's `--help`, verbatim, in the table's order. */
export function cliReference(table: readonly CommandSpec[] = commands): string {
  const name = (spec: CommandSpec) => `kubevisa ${spec.path.join(' ')}`;
  const lines = [
    '# CLI reference',
    '',
    `<!-- Made by scripts/docs-cli.ts from src/cli/commands.ts; do not edit by hand: run ${CLI_REFRESH}. -->`,
    '',
    'Every command below prints the same text with `--help`. `kubevisa --help` lists the commands; tables are for people and `-o json` (or `-o yaml`) for scripts where a command shows it. Exit codes: 0 success, 1 a refusal or failure, 2 bad usage.',
    '',
    '| Command | What it does |',
    '| --- | --- |',
    ...table.map((spec) => `| [\`${name(spec)}\`](#${anchor(name(spec))}) | ${spec.summary.replaceAll('|', '\\|')} |`),
  ];
  for (const spec of table) {
    lines.push('', `## ${name(spec)}`, '', '```text', helpText(spec).trimEnd(), '```');
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--write')) {
    writeFileSync(CLI_DOC, cliReference());
    process.stdout.write(`wrote the reference of ${commands.length} commands to ${CLI_DOC}\n`);
  } else {
    process.stdout.write(cliReference());
  }
}
