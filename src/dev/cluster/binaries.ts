/**
 * Finds the pinned Kubernetes binaries: KUBEVISA_K8S_BIN, or the cache that scripts/k8s-binaries.sh fills
 * (building them from Go modules the first time, which takes minutes; its progress goes to our stderr).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export interface KubernetesBinaries {
  dir: string;
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  kwok: string;
}

const script = fileURLToPath(new URL('../../../scripts/k8s-binaries.sh', import.meta.url));

export function binariesIn(dir: string): KubernetesBinaries {
  return {
    dir,
    etcd: join(dir, 'etcd'),
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    kubeScheduler: join(dir, 'kube-scheduler'),
    kubectl: join(dir, 'kubectl'),
    kwok: join(dir, 'kwok'),
  };
}

/** Runs the build script (a no-op when the cache is warm) and returns the binaries' paths. */
export async function kubernetesBinaries(options: { onProgress?: (message: string) => void } = {}) {
  const progress = options.onProgress ?? (() => {});
  const dir = await new Promise<string>((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      for (const line of c.toString().split('\n')) if (line.trim()) progress(line.trim());
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve(out.trim().split('\n').pop() ?? '');
      else reject(new Error(`building the Kubernetes binaries failed (exit ${code}):\n${err.slice(-3000)}`));
    });
  });
  return binariesIn(dir);
}
