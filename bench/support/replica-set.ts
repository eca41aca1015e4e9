/**
 * What the replica benchmarks share: three `kubevisa server` processes on one throwaway PostgreSQL database beside
 * the real control plane (TLS, the gateway's rate limits out of the way), raw HTTPS watches through a gateway, a
 * bounded worker pool, and CPU and memory read from /proc.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import { freePorts } from '../../src/dev/cluster/control-plane.ts';
import type { DevIdpAccount } from '../../src/dev/idp.ts';
import { startKubevisaEnv, type KubevisaEnv } from '../../test/support/kubevisa-env.ts';
import { startReplica, stopAll, type Replica } from '../../test/support/replicas.ts';

export const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

export const round = (n: number) => Math.round(n * 10) / 10;

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

export function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? NaN),
  };
}

/** A positive whole number from a command-line option, or an error naming the option. */
export function positiveOption(values: Record<string, string | boolean | undefined>, name: string): number {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name} must be a positive whole number, got '${String(values[name])}'`);
  return value;
}

/** Runs `work` over `items` with at most `limit` at a time. */
export async function pool<T>(
  items: T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        await work(items[index]!, index);
      }
    }),
  );
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU seconds (user + system) and resident memory of a process, from /proc. */
export function usage(pid: number): { cpuSeconds: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssPages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
  return { cpuSeconds: ticks / CLOCK_TICKS, rssMiB: round((rssPages * 4096) / 1024 / 1024) };
}

export interface Stream {
  replica: string;
  /** Whether the gateway answered 200. */
  opened: Promise<boolean>;
  /** performance.now() when the stream ended. */
  closed: Promise<number>;
  /** Whether it has ended by now. */
  ended(): boolean;
  destroy(): void;
}

/** A raw HTTPS watch (`path` with ?watch=1) through one replica's gateway, on a connection of its own. */
export function openWatch(replica: Replica, path: string, token: string, ca: Buffer): Stream {
  let request: ReturnType<typeof httpsRequest> | undefined;
  let markOpened: (ok: boolean) => void = () => {};
  const opened = new Promise<boolean>((resolve) => (markOpened = resolve));
  const closed = new Promise<number>((resolve) => {
    request = httpsRequest(
      `${replica.url}${path}`,
      { agent: false, ca, headers: { authorization: `Bearer ${token}` } },
      (response) => {
        markOpened(response.statusCode === 200);
        response.on('data', () => {});
        response.on('close', () => resolve(performance.now()));
      },
    );
    request.on('error', () => {
      markOpened(false);
      resolve(performance.now());
    });
    request.end();
  });
  let ended = false;
  void closed.then(() => (ended = true));
  return { replica: replica.name, opened, closed, ended: () => ended, destroy: () => request?.destroy() };
}

export interface ReplicaSet {
  env: KubevisaEnv;
  /** A, B and C; A is on the environment's port (the public URL the IdP sends browsers back to). */
  replicas: Replica[];
  /** The CA that signed the replicas' serving certificate. */
  ca: Buffer;
  stop(): Promise<void>;
}

/** The control plane, the IdP (with `accounts` beside the test people) and three replicas on one PostgreSQL. */
export async function startReplicaSet(accounts: DevIdpAccount[] = []): Promise<ReplicaSet> {
  log('starting the control plane, the IdP and a PostgreSQL database (about a minute)');
  const env = await startKubevisaEnv({
    store: 'postgres',
    tls: true,
    autoApproval: false,
    accounts,
    // The load comes from one address: neither the per-person nor the per-address limit may be what is measured.
    extraConfig: {
      gateway: { ratePerSecond: 1_000_000, burst: 1_000_000, addressRatePerSecond: 1_000_000, addressBurst: 1_000_000 },
    },
  });
  const replicas: Replica[] = [];
  try {
    const caFile = env.config.tls?.caFile;
    if (caFile === undefined) throw new Error('the environment serves TLS without a CA file: clients cannot trust it');
    // A first, alone (it migrates the schema); then B and C.
    const [portB, portC] = await freePorts(2);
    replicas.push(await startReplica(env, 'A', env.serverPort));
    replicas.push(...(await Promise.all([startReplica(env, 'B', portB!), startReplica(env, 'C', portC!)])));
    log(`replicas A, B and C running (pids ${replicas.map((r) => r.child.pid).join(', ')})`);
    return {
      env,
      replicas,
      ca: readFileSync(caFile),
      async stop() {
        await stopAll(replicas.map((replica) => replica.child));
        await env.stop();
      },
    };
  } catch (error) {
    await stopAll(replicas.map((replica) => replica.child));
    await env.stop();
    throw error;
  }
}

/** Creates namespaces in one apply. */
export async function createNamespaces(env: KubevisaEnv, names: string[]): Promise<void> {
  await env.kOk(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: names.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })),
    }),
  );
}
