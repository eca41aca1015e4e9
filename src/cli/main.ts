/**
 * kubevisa's command line. It imports only the framework and the command table up front and loads a
 * command's module when that command runs: kubectl calls `kubevisa credential` on every request, so the
 * start-up path must stay a few tens of milliseconds.
 */
import { readFileSync } from 'node:fs';
import { commands } from './commands.ts';
import { helpText, noPositionals, parseCommandArgs, UsageError, type CommandSpec, type Io } from './framework.ts';

const io: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

function findCommand(argv: string[]): { spec: CommandSpec; rest: string[] } | undefined {
  let best: { spec: CommandSpec; rest: string[] } | undefined;
  for (const spec of commands) {
    if (spec.path.every((word, i) => argv[i] === word) && (!best || spec.path.length > best.spec.path.length)) {
      best = { spec, rest: argv.slice(spec.path.length) };
    }
  }
  return best;
}

function overview(): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  return [
    'kubevisa: contractor access to Kubernetes that is approved, scoped, time-limited, revocable and audited.',
    '',
    'Usage: kubevisa COMMAND [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`),
    '',
    "Run 'kubevisa COMMAND --help' for a command's options and examples; 'kubevisa --version' for the version.",
    '',
  ].join('\n');
}

/** The version in the package.json next to the sources: `../../` in a clone, `../../../` in the npm package. */
function version(): string {
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      const manifest = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === 'kubevisa' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // Not at this depth: try the next.
    }
  }
  return 'unknown';
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--version' || argv[0] === 'version') {
    io.out(`kubevisa ${version()} (Node.js ${process.version})\n`);
    return 0;
  }
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(overview());
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    const group = commands.filter((c) => c.path[0] === argv[0]);
    if (group.length > 0) {
      io.err(`kubevisa ${argv[0]}: choose one of: ${group.map((c) => c.path.slice(1).join(' ')).join(', ')}\n`);
    } else {
      io.err(`kubevisa: unknown command '${argv[0]}'. Run 'kubevisa --help' for the list of commands.\n`);
    }
    return 2;
  }
  const { spec, rest } = found;
  try {
    const parsed = parseCommandArgs(spec, rest);
    if (parsed.values.help) {
      io.out(helpText(spec));
      return 0;
    }
    if (spec.positionals === undefined) noPositionals(parsed.positionals, spec.path.join(' '));
    const module = await spec.load();
    return (await module.run({ values: parsed.values, positionals: parsed.positionals, io })) ?? 0;
  } catch (error) {
    return reportError(error);
  }
}

function reportError(error: unknown): number {
  if (error instanceof UsageError) {
    io.err(`kubevisa: ${error.message}\n`);
    return 2;
  }
  const coded = error as { code?: unknown; message?: unknown };
  if (error instanceof Error && typeof coded.code === 'string' && coded.code.startsWith('ERR_')) {
    io.err(`kubevisa: ${error.message} [${coded.code}]\n`);
    return 1;
  }
  io.err(`kubevisa: ${error instanceof Error ? error.message : String(error)}\n`);
  if (process.env.KUBEVISA_DEBUG && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
  return 1;
}

process.exitCode = await main(process.argv.slice(2));
