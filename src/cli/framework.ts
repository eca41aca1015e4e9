/**
 * The command-line's small framework: every command declares its options, a one-line summary, a usage
 * line and at least one example, so `--help` is uniform; output is a table for people and `-o json|yaml`
 * for scripts; errors print what went wrong and what to do, with a stable code, and set the exit code.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KubevisaError } from '../domain/errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & {
  description: string;
  placeholder?: string;
};

export interface CommandSpec {
  /** Words that select the command, e.g. `['engagement', 'create']`. */
  path: string[];
  summary: string;
  usage: string;
  examples: string[];
  options?: Record<string, OptionSpec>;
  /** Names of positional arguments, for the help text. */
  positionals?: string[];
  /** Loaded only when the command runs, so quick commands stay quick. */
  load: () => Promise<{ run: CommandRun }>;
}

export type ParsedValues = Record<string, string | boolean | (string | boolean)[] | undefined>;
export type CommandRun = (input: { values: ParsedValues; positionals: string[]; io: Io }) => Promise<number | void>;

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const outputOption: Record<string, OptionSpec> = {
  output: {
    type: 'string',
    short: 'o',
    description: 'output format: table (default), json or yaml',
    placeholder: 'FORMAT',
  },
};

/** Exit codes: 0 success, 1 a refusal or failure, 2 bad usage. */
export class UsageError extends KubevisaError {
  static override code = 'ERR_USAGE';
}

/** Refuses arguments a command does not take (a stray word is a mistake to point out, never to ignore). */
export function noPositionals(positionals: string[], command: string): void {
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument '${positionals[0]}': 'kubevisa ${command}' takes options only. Run 'kubevisa ${command} --help'.`,
    );
  }
}

export function parseCommandArgs(spec: CommandSpec, argv: string[]) {
  const options = {
    ...(spec.options ?? {}),
    help: { type: 'boolean', short: 'h', description: 'show this help' },
  } as Record<string, OptionSpec>;
  const parseOptions: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, { description: _d, placeholder: _p, ...rest }] of Object.entries(options))
    parseOptions[name] = rest;
  try {
    return parseArgs({ args: argv, options: parseOptions, allowPositionals: true, strict: true });
  } catch (error) {
    // Node's message for an unknown option goes on to explain `--` for positionals that start with '-',
    // which is rarely the problem; keep the first sentence, which names the option.
    const message = (error as Error).message.split('. To specify a positional argument')[0];
    throw new UsageError(`${message}. Run 'kubevisa ${spec.path.join(' ')} --help' for the options.`);
  }
}

export function helpText(spec: CommandSpec): string {
  const lines = [`${spec.summary}`, '', `Usage: ${spec.usage}`];
  const options = Object.entries({
    ...(spec.options ?? {}),
    help: { type: 'boolean', short: 'h', description: 'show this help' } as OptionSpec,
  });
  if (options.length > 0) {
    lines.push('', 'Options:');
    const rendered = options.map(([name, o]) => {
      const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.placeholder ?? 'VALUE'}` : ''}`;
      const def = o.default !== undefined ? ` (default: ${String(o.default)})` : '';
      return [flag, `${o.description}${def}`] as const;
    });
    const width = Math.max(...rendered.map(([f]) => f.length));
    for (const [flag, text] of rendered) lines.push(`  ${flag.padEnd(width)}  ${text}`);
  }
  lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}

/** Renders rows as an aligned table (people) or JSON / YAML (scripts). */
export async function render(
  io: Io,
  format: string | undefined,
  data: unknown,
  table: { columns: string[]; rows: string[][] },
): Promise<void> {
  const chosen = format ?? 'table';
  if (chosen === 'json') {
    io.out(JSON.stringify(data, null, 2) + '\n');
  } else if (chosen === 'yaml') {
    const { stringify } = await import('yaml');
    io.out(stringify(data));
  } else if (chosen === 'table') {
    io.out(formatTable(table.columns, table.rows));
  } else {
    throw new UsageError(`unknown output format '${chosen}': use table, json or yaml`);
  }
}

export function formatTable(columns: string[], rows: string[][]): string {
  if (rows.length === 0) return 'No resources found.\n';
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(columns), ...rows.map(line)].join('\n') + '\n';
}
