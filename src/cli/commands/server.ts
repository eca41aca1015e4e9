/** `kubevisa server FILE | --config FILE [--config FILE…]`: runs the API and the reconciler until SIGINT/SIGTERM. */
import type { CommandRun } from '../framework.ts';
import { UsageError } from '../framework.ts';
import { loadServerConfig } from '../../server/config.ts';
import { startServer } from '../../server/main.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  if (positionals.length > 1) {
    throw new UsageError(
      `too many arguments (${positionals.join(' ')}): 'kubevisa server' takes one config file; give more with --config FILE. Run 'kubevisa server --help'.`,
    );
  }
  // The positional file first, then each --config: later files' fields win (a Secret's fragment over a ConfigMap).
  const files = [...positionals, ...[values.config].flat()].filter((file): file is string => typeof file === 'string');
  if (files.length === 0)
    throw new UsageError("--config FILE is required: see 'kubevisa server --help' for the file's shape");
  const config = await loadServerConfig(files);
  const server = await startServer(config, {
    onProgress: (m) => io.err(`${m}\n`),
    adoptKeys: values['adopt-keys'] === true,
  });
  io.out(`kubevisa server ready at ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  io.err('stopping ...\n');
  await server.stop();
  return 0;
};
