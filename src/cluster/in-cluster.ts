/**
 * In-cluster mode: kubevisa running in a pod reaches its own cluster with the pod's ServiceAccount instead of a
 * kubeconfig from `kubevisa install`. The kubelet mounts a projected token (about an hour long, rewritten well
 * before it expires), the cluster's CA and the namespace under `/var/run/secrets/kubernetes.io/serviceaccount`, and
 * sets `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
 *
 * The rest of kubevisa reads a cluster's credential from a kubeconfig file (the cluster client once, the gateway
 * again every few seconds), so in-cluster mode writes one from that folder (0600, atomically) and writes it anew,
 * and hands the client the new token, whenever the kubelet renews the token. kubevisa never asks for a token of its
 * own in this mode: the kubelet's renewal is the only one.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import { tokenKubeconfigYaml } from './kubeconfig.ts';

/** Where the kubelet mounts a pod's ServiceAccount credential. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** How often the token file is read for a renewal, in milliseconds (default 10 s; the kubelet renews at 80 % of an hour). */
export const DEFAULT_TOKEN_CHECK_MS = 10_000;

export interface InClusterSource {
  /** The mounted ServiceAccount folder holding `token` and `ca.crt` (default SERVICE_ACCOUNT_DIR). */
  serviceAccountDir?: string;
  /** Where KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The kubeconfig (YAML) for the pod's ServiceAccount as mounted now. It holds a credential: never log it.
 * @throws InvalidInput naming what is missing when this does not look like a pod (no env vars, no token or CA).
 */
export async function inClusterKubeconfig(clusterName: string, source: InClusterSource = {}): Promise<string> {
  const dir = source.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const env = source.env ?? process.env;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new InvalidInput(
      `cluster '${clusterName}' is configured inCluster, but KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: is this running in a pod? Outside a cluster, give the cluster a kubeconfig from 'kubevisa install' instead`,
      { details: { cluster: clusterName } },
    );
  }
  const token = await readMounted(join(dir, 'token'), clusterName);
  const ca = await readMounted(join(dir, 'ca.crt'), clusterName);
  // An IPv6 service address needs brackets in a URL.
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return tokenKubeconfigYaml({
    clusterName,
    connection: { server, certificateAuthorityData: Buffer.from(ca).toString('base64'), insecureSkipTlsVerify: false },
    token: token.trim(),
  });
}

export interface InClusterCredential {
  /** Reads the token now and, if the kubelet renewed it, rewrites the file and calls onRenewed. @returns true if renewed. */
  check(): Promise<boolean>;
  stop(): void;
}

/**
 * Writes the in-cluster kubeconfig to `file` now, then keeps it current: every `checkIntervalMs` the token is read
 * and, when it changed, the file is rewritten and `onRenewed` gets the new token (for `ClusterClient.useToken`).
 * Polling rather than fs.watch: the kubelet replaces the folder's `..data` symlink, which inotify reports
 * unreliably across kernels and volume types, and one small read every 10 s costs nothing.
 * @throws InvalidInput as inClusterKubeconfig does, before anything is written.
 */
export async function startInClusterCredential(options: {
  clusterName: string;
  /** The kubeconfig file to write (0600). */
  file: string;
  source?: InClusterSource;
  onRenewed?: (token: string) => void;
  onError?: (error: Error) => void;
  /** Default DEFAULT_TOKEN_CHECK_MS. */
  checkIntervalMs?: number;
}): Promise<InClusterCredential> {
  const { clusterName, file } = options;
  const dir = options.source?.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const write = async () => {
    const yaml = await inClusterKubeconfig(clusterName, options.source);
    const temporary = `${file}.partial`;
    await writeFile(temporary, yaml, { mode: 0o600 });
    await rename(temporary, file);
  };
  await write();
  let current = (await readMounted(join(dir, 'token'), clusterName)).trim();
  const check = async () => {
    const token = (await readMounted(join(dir, 'token'), clusterName)).trim();
    if (token === current || token === '') return false;
    await write();
    current = token;
    options.onRenewed?.(token);
    return true;
  };
  const timer = setInterval(() => {
    check().catch((error: unknown) => options.onError?.(error instanceof Error ? error : new Error(String(error))));
  }, options.checkIntervalMs ?? DEFAULT_TOKEN_CHECK_MS);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}

async function readMounted(path: string, clusterName: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidInput(
      `cluster '${clusterName}' is configured inCluster, but ${path} cannot be read (${(error as Error).message}); the pod needs its ServiceAccount token mounted (automountServiceAccountToken: true)`,
      { details: { cluster: clusterName, path }, cause: error },
    );
  }
}
