/**
 * Runs the real `bin/kubevisa` as a child process for the CLI's tests, in a throw-away state folder and
 * home, with no display (so login defaults to the device flow) and a bounded run time.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PersonJson } from '../api-types.ts';
import { CAROL, SESSION_SECRET } from './fake-api.ts';

export const KUBEVISA_BIN = fileURLToPath(new URL('../../../bin/kubevisa', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  /** The folder every file of the test lives under. */
  root: string;
  /** KUBEVISA_CONFIG_DIR. */
  configDir: string;
  /** HOME, so nothing touches the real ~/.kube or ~/.config. */
  home: string;
  run: (args: string[], options?: RunOptions) => Promise<CliResult>;
  /** Runs and, on a non-zero exit, fails with the output so the test says why. */
  runOk: (args: string[], options?: RunOptions) => Promise<CliResult>;
  remove: () => Promise<void>;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  /** Kill the CLI after this many milliseconds (default 20000). */
  timeoutMs?: number;
  /** Called with stderr as it arrives (to act on a login prompt). */
  onStderr?: (textSoFar: string) => void;
}

export async function makeSandbox(): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), 'kubevisa-cli-test-'));
  const configDir = join(root, 'config');
  const home = join(root, 'home');
  await mkdir(home);
  const run = (args: string[], options: RunOptions = {}) => runCli(args, { configDir, home, ...options });
  return {
    root,
    configDir,
    home,
    run,
    runOk: async (args, options) => {
      const result = await run(args, options);
      if (result.code !== 0) {
        throw new Error(
          `kubevisa ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
        );
      }
      return result;
    },
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

/**
 * Runs `bin/kubevisa` with `configDir` as its state folder (and `home` as HOME, when given), without the test
 * runner's and the desktop's variables; for end-to-end tests that drive the CLI against a real server.
 */
export function runCli(args: string[], options: RunOptions & { configDir: string; home?: string }): Promise<CliResult> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    KUBEVISA_CONFIG_DIR: options.configDir,
    ...(options.home !== undefined ? { HOME: options.home } : {}),
    // The Node that runs the tests is Node 24; bin/kubevisa then uses it instead of looking for one.
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    DISPLAY: undefined,
    WAYLAND_DISPLAY: undefined,
    KUBECONFIG: undefined,
    XDG_CONFIG_HOME: undefined,
    NODE_EXTRA_CA_CERTS: undefined,
    // The test runner marks its own children; the CLI is not one of them.
    NODE_TEST_CONTEXT: undefined,
    NODE_OPTIONS: undefined,
    ...options.env,
  };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  return new Promise((resolve, reject) => {
    const child = spawn(KUBEVISA_BIN, args, { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      options.onStderr?.(stderr);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Writes config.json and a session.json (0600) as `kubevisa login` would, for tests that start logged in. */
export async function seedLogin(
  sandbox: Sandbox,
  server: string,
  session: { accessToken?: string; accessTokenExpiresAt?: string; sessionExpiresAt?: string; person?: PersonJson } = {},
): Promise<void> {
  await mkdir(sandbox.configDir, { recursive: true, mode: 0o700 });
  await writeFile(join(sandbox.configDir, 'config.json'), JSON.stringify({ server }));
  const file = join(sandbox.configDir, 'session.json');
  await writeFile(
    file,
    JSON.stringify({
      server,
      sessionSecret: SESSION_SECRET,
      sessionExpiresAt: session.sessionExpiresAt ?? new Date(Date.now() + 12 * 3600_000).toISOString(),
      person: session.person ?? CAROL,
      ...(session.accessToken
        ? { accessToken: session.accessToken, accessTokenExpiresAt: session.accessTokenExpiresAt }
        : {}),
    }),
    { mode: 0o600 },
  );
  await chmod(file, 0o600);
}
