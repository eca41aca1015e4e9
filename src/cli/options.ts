/**
 * Reading parsed command-line values: required options, repeatable lists, durations and times. Every
 * problem is a UsageError (exit 2) that names the option, says what is allowed and points at --help, and
 * is raised before anything is sent to the server.
 */
import { resolve } from 'node:path';
import { KubevisaError } from '../domain/errors.ts';
import { formatInstant, parseDuration, parseInstant } from '../domain/time.ts';
import { connect, type ApiClient } from './api-client.ts';
import { configDir } from './config.ts';
import { render, UsageError, type Io, type ParsedValues } from './framework.ts';

const OUTPUT_FORMATS = ['table', 'json', 'yaml'];

/** The `-o` value, checked before the command acts (an action must not run and then fail to print). */
export function outputFormat(values: ParsedValues): string | undefined {
  const format = optionalString(values, 'output');
  if (format !== undefined && !OUTPUT_FORMATS.includes(format)) {
    throw new UsageError(`unknown output format '${format}': use -o table, -o json or -o yaml`);
  }
  return format;
}

export function optionalString(values: ParsedValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** The value of a required option; `what` says what it is for, e.g. 'the cluster to request access to'. */
export function requiredString(values: ParsedValues, name: string, command: string, what: string): string {
  const value = optionalString(values, name);
  if (value === undefined || value.trim() === '') {
    throw new UsageError(`missing --${name}: ${what}. Run 'kubevisa ${command} --help' for the options.`);
  }
  return value.trim();
}

/** Every value of a repeatable option, each also split on commas: `--ns a,b --ns c` → a, b, c. */
export function stringList(values: ParsedValues, name: string): string[] {
  const raw = values[name];
  const items = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  return items
    .filter((item): item is string => typeof item === 'string')
    .flatMap((item) => item.split(','))
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

export function requiredList(values: ParsedValues, name: string, command: string, what: string): string[] {
  const list = stringList(values, name);
  if (list.length === 0) {
    throw new UsageError(`missing --${name}: ${what}. Run 'kubevisa ${command} --help' for the options.`);
  }
  return list;
}

/** A duration option checked with the server's own rules (`90s`, `30m`, `8h`, `1h30m`, `2d`), sent as typed. */
export function durationValue(text: string, name: string): string {
  rethrowAsUsage(() => parseDuration(text, `--${name}`));
  return text;
}

/** A time option (RFC 3339 with a UTC offset), sent to the server in UTC. */
export function instantValue(text: string, name: string): string {
  return formatInstant(rethrowAsUsage(() => parseInstant(text, `--${name}`)));
}

/** Exactly one positional argument, e.g. the visa id of `kubevisa approve ID`. */
export function singlePositional(positionals: string[], what: string, command: string): string {
  if (positionals.length !== 1 || positionals[0] === undefined || positionals[0] === '') {
    const got = positionals.length === 0 ? 'none was given' : `got ${positionals.length}: ${positionals.join(' ')}`;
    throw new UsageError(
      `expected exactly one ${what} (${got}). Usage: kubevisa ${command} ${what.toUpperCase().replace(/ /g, '_')}`,
    );
  }
  return positionals[0];
}

/**
 * A command's one obvious argument, typed as people type it (`kubevisa audit evidence acme-2026`) or as its option
 * (`--engagement acme-2026`). Both at once must agree; undefined when neither is given.
 */
export function positionalOrOption(
  values: ParsedValues,
  positionals: string[],
  name: string,
  command: string,
): string | undefined {
  if (positionals.length > 1) {
    throw new UsageError(
      `too many arguments (${positionals.join(' ')}): 'kubevisa ${command}' takes one, the ${name} (or --${name}). Run 'kubevisa ${command} --help'.`,
    );
  }
  const positional = positionals[0];
  const option = optionalString(values, name);
  if (positional !== undefined && option !== undefined && positional !== option) {
    throw new UsageError(
      `the ${name} is given twice, as '${positional}' and as --${name} '${option}': give it once. Run 'kubevisa ${command} --help'.`,
    );
  }
  return positional ?? option;
}

export { noPositionals } from './framework.ts';

/**
 * An API client for `--server` / `--ca-file` (relative CA paths are taken from the working folder). `timeoutMs`:
 * how long one API call may take (default the client's, 30 s).
 */
export function clientFrom(values: ParsedValues, options: { timeoutMs?: number } = {}): Promise<ApiClient> {
  const server = optionalString(values, 'server');
  const caFile = optionalString(values, 'ca-file');
  return connect({
    configDir: configDir(),
    ...(server !== undefined ? { server } : {}),
    ...(caFile !== undefined ? { caFile: resolve(caFile) } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
}

function rethrowAsUsage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    // The domain says InvalidInput (exit 1 from a server); typed on the command line it is bad usage.
    if (error instanceof KubevisaError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
}

/** Prints `data` as JSON or YAML for scripts, else the sentence(s) written for people. */
export async function emit(io: Io, format: string | undefined, data: unknown, forPeople: string): Promise<void> {
  if (format === 'json' || format === 'yaml') await render(io, format, data, { columns: [], rows: [] });
  else io.out(forPeople.endsWith('\n') ? forPeople : `${forPeople}\n`);
}
