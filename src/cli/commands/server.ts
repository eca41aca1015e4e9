/** `kubevisa server --config FILE`: runs the API and the reconciler until SIGINT/SIGTERM. */
import type { CommandRun } from '../framework.ts';
import { positionalOrOption } from '../options.ts';
import { UsageError } from '../framework.ts';
import { loadServerConfig } from '../../server/config.ts';
import { startServer } from '../../server/main.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const file = positionalOrOption(values, positionals, 'config', 'server');
  if (typeof file !== 'string')
    throw new UsageError("--config FILE is required: see 'kubevisa server --help' for the file's shape");
  const config = await loadServerConfig(file);
  const server = await startServer(config, { onProgress: (m) => io.err(`${m}\n`) });
  io.out(`kubevisa server ready at ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  io.err('stopping ...\n');
  await server.stop();
  return 0;
};
