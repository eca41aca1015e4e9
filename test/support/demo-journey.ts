/** Steps of the demo's printed journey, as a newcomer types them: the CLI, and a device login at the demo IdP. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cliPath } from './kubevisa-env.ts';
import { kubectlBackground } from './kubectl.ts';

/** Runs a command (the kubevisa CLI by default) with extra environment, bounded in time. */
export function run(args: string[], env: Record<string, string>, timeoutMs = 30_000, command = cliPath) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `kubevisa login --device`, completed at the demo IdP with `kubevisa demo idp-login`, as the demo prints it. */
export async function login(serverUrl: string, caFile: string, configDir: string, email: string, password: string) {
  const env = { KUBEVISA_CONFIG_DIR: configDir };
  const pending = kubectlBackground(cliPath, ['login', '--server', serverUrl, '--ca-file', caFile, '--device'], {
    kubeconfig: '',
    env,
    timeoutMs: 60_000,
  });
  const [url] = await pending.waitFor(/http:\/\/127\.0\.0\.1:\d+\/device\?user_code=[A-Z0-9-]+/);
  const approved = await run(['demo', 'idp-login', url, '--login', email, '--password', password], env);
  assert.equal(approved.code, 0, approved.stderr);
  await pending.waitFor(/Logged in to .* as .*<[^>]+>/);
  await new Promise((resolve) => pending.child.once('exit', resolve));
  assert.equal(pending.child.exitCode, 0);
}
