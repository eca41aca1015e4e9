/**
 * Child processes of the development control plane: each writes its output to a log file in the working
 * folder (never to the terminal), is stopped with SIGTERM then SIGKILL after a grace period, and is also
 * listed in a pid file read by a detached reaper that ends them if this process dies without cleaning up
 * (a test runner's timeout, a SIGKILL): no orphan etcd or kube-apiserver outlives its owner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5000 ms). Resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export function startProcess(options: {
  name: string;
  command: string;
  args: string[];
  workDir: string;
  pidFile: string;
  env?: Record<string, string>;
}): ManagedProcess {
  const logFile = join(options.workDir, `${options.name}.log`);
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(options.command, options.args, {
      cwd: options.workDir,
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, ...options.env },
    });
  } finally {
    closeSync(logFd);
  }
  if (child.pid === undefined) {
    throw new Error(`could not start ${options.name} (${options.command})`);
  }
  appendFileSync(options.pidFile, `${child.pid}\n`);
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (error) => {
      done = true;
      appendFileSync(logFile, `\n[kubevisa] failed to start: ${error.message}\n`);
      resolve('spawn-error');
    });
  });
  const pid = child.pid;
  return {
    name: options.name,
    pid,
    logFile,
    exited,
    hasExited: () => done,
    async stop(graceMs = 5000) {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The last lines of a process's log, for error messages. */
export function logTail(logFile: string, lines = 25): string {
  try {
    return readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (error) {
    return `(no log: ${(error as Error).message})`;
  }
}

/**
 * Starts a detached shell that waits for `ownerPid` to end and then kills every pid listed in `pidFile`
 * (SIGTERM, then SIGKILL 5 s later) and removes `workDir`. A clean stop() kills the reaper first.
 */
export function startReaper(ownerPid: number, pidFile: string, workDir: string): ChildProcess {
  const script = [
    'owner=$1; pids=$2; dir=$3',
    'while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done',
    'list=$(cat "$pids" 2>/dev/null)',
    '[ -n "$list" ] && kill -TERM $list 2>/dev/null',
    'for i in 1 2 3 4 5 6 7 8 9 10; do alive=""; for p in $list; do kill -0 "$p" 2>/dev/null && alive=1; done; [ -z "$alive" ] && break; sleep 0.5; done',
    '[ -n "$list" ] && kill -KILL $list 2>/dev/null',
    'rm -rf "$dir"',
  ].join('\n');
  const reaper = spawn('bash', ['-c', script, 'kubevisa-reaper', String(ownerPid), pidFile, workDir], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
  return reaper;
}
