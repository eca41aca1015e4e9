/** Runs the real, Go-built kubectl the way a person would, with a bounded run time. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  kubeconfig: string;
  env?: Record<string, string>;
  input?: string;
  /** Kill kubectl after this many milliseconds (default 30000). */
  timeoutMs?: number;
}

export function kubectl(binary: string, args: string[], options: KubectlOptions): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      env: { ...process.env, KUBECONFIG: options.kubeconfig, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // kubectl may exit before reading its input (a command that reads none): the broken pipe is not the test's error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** kubectl that must succeed: returns stdout or throws with stderr. */
export async function kubectlOk(binary: string, args: string[], options: KubectlOptions): Promise<string> {
  const result = await kubectl(binary, args, options);
  if (result.code !== 0) {
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** Starts a long-running kubectl (watch, logs -f, port-forward) and returns it with its live output. */
export function kubectlBackground(
  binary: string,
  args: string[],
  options: KubectlOptions,
): {
  child: ChildProcess;
  output: () => string;
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
} {
  const child = spawn(binary, args, {
    env: { ...process.env, KUBECONFIG: options.kubeconfig, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (c: Buffer) => {
    output += c.toString();
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const hardStop = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  child.on('exit', () => {
    clearTimeout(hardStop);
    for (const l of listeners) l();
  });
  return {
    child,
    output: () => output,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            cleanup();
            resolve(match);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`kubectl ${args.join(' ')} ended before printing ${pattern}: ${output}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(`timed out waiting for ${pattern} from kubectl ${args.join(' ')}; output so far: ${output}`),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Polls `check` every 100 ms until it returns true or `timeoutMs` passes. */
export async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  let last = '';
  while (Date.now() - started < timeoutMs) {
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not true within ${timeoutMs} ms: ${what}${last ? ` (last error: ${last})` : ''}`);
}
