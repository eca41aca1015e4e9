/**
 * Several `kubevisa server` processes on one environment's PostgreSQL database, as replicas behind one public URL:
 * each listens on its own port and shares the environment's data folder (its keys and cluster credentials), as
 * replicas mounting one Secret do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_KEY_FILE } from '../../src/audit/checkpoints.ts';
import { SIGNING_KEY_FILE } from '../../src/auth/signing-key.ts';
import { CLUSTER, cliPath, waitForExit, type KubevisaEnv } from './kubevisa-env.ts';

/** The files every replica must share, as the Helm chart's Secret names them (its keys, mounted into the data folder). */
export const SHARED_KEY_FILES = [SIGNING_KEY_FILE, 'session-encryption.key', CHECKPOINT_KEY_FILE];

/**
 * Writes the key files of a Secret's `data` (base64, as Kubernetes holds them) into a data folder as the kubelet
 * mounts them into the chart's pod: owned by root, in the pod's fsGroup, mode 0440. There the server runs in that
 * group (65532); here it runs as this process, so the files get this process's group. Only root can give a file to
 * root; run as another user, an owner-only (0600) file stands in for it.
 */
export async function mountSecretKeys(data: Record<string, string>, dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  for (const name of SHARED_KEY_FILES) {
    const value = data[name];
    if (value === undefined) throw new Error(`the Secret holds no ${name}`);
    const file = join(dataDir, name);
    await writeFile(file, Buffer.from(value, 'base64'), { mode: 0o600 });
    if (process.getuid?.() === 0) {
      await chown(file, 0, process.getgid!());
      await chmod(file, 0o440);
    }
  }
}

export interface Replica {
  name: string;
  /** Its own address (the public URL, the token issuer, is the environment's `serverUrl`). */
  url: string;
  child: ChildProcess;
  /** What it wrote to stdout and stderr so far. */
  output: () => string;
}

/**
 * The config of one replica: the environment's, on `port`, under the environment's URL as its public URL, with
 * `changes` over it. Returns the file.
 */
export async function writeReplicaConfig(
  env: KubevisaEnv,
  name: string,
  port: number,
  changes: Record<string, unknown> = {},
): Promise<string> {
  const raw = JSON.parse(await readFile(env.configFile, 'utf8')) as Record<string, unknown>;
  const file = join(env.dir, `${name}.json`);
  const config = { ...raw, listen: { host: '127.0.0.1', port }, publicUrl: env.serverUrl, ...changes };
  await writeFile(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

/** Spawns `kubevisa server --config FILE`; resolves once it is ready, or once it exited (`ready: false`). */
export async function spawnServer(
  configFile: string,
  extraEnv: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ child: ChildProcess; output: () => string; ready: boolean }> {
  const child = spawn(cliPath, ['server', '--config', configFile], {
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (output.includes('kubevisa server ready')) return { child, output: () => output, ready: true };
    if (child.exitCode !== null || child.signalCode !== null) return { child, output: () => output, ready: false };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`kubevisa server did not become ready in ${timeoutMs / 1000} s: ${output}`);
}

/** Starts replica `name` on `port`; throws with its output when it does not start. */
export async function startReplica(
  env: KubevisaEnv,
  name: string,
  port: number,
  extraEnv: Record<string, string> = {},
): Promise<Replica> {
  const started = await spawnServer(await writeReplicaConfig(env, name, port), extraEnv);
  if (!started.ready) throw new Error(`replica ${name} exited: ${started.output()}`);
  return { name, url: `https://127.0.0.1:${port}`, child: started.child, output: started.output };
}

/** SIGTERM, then SIGKILL after 10 s, for every process still running. */
export async function stopAll(children: Iterable<ChildProcess>): Promise<void> {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill('SIGTERM');
    await Promise.race([waitForExit(child), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    child.kill('SIGKILL');
  }
}

/** A kubeconfig (written under the environment's folder) whose cluster is one replica's gateway, as `token`. */
export async function gatewayKubeconfig(
  env: KubevisaEnv,
  replica: Replica,
  token: string,
  name: string,
): Promise<string> {
  const file = join(env.dir, `${name}.kubeconfig`);
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: CLUSTER,
          cluster: { server: `${replica.url}/clusters/${CLUSTER}`, 'certificate-authority': env.config.tls!.caFile },
        },
      ],
      users: [{ name, user: { token } }],
      contexts: [{ name: CLUSTER, context: { cluster: CLUSTER, user: name } }],
      'current-context': CLUSTER,
    }),
    { mode: 0o600 },
  );
  return file;
}
