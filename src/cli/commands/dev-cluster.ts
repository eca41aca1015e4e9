/** `kubevisa dev cluster`: a local control plane for manual use, until Ctrl-C. */
import type { CommandRun } from '../framework.ts';
import { startControlPlane } from '../../dev/cluster/control-plane.ts';

export const run: CommandRun = async ({ io }) => {
  const started = Date.now();
  io.err(
    'Starting a local Kubernetes v1.37.2 control plane (etcd, kube-apiserver, controller-manager, scheduler, a kwok node).\n',
  );
  io.err('The first run builds the binaries from Go modules: about 8 minutes on 2 cores; later runs take seconds.\n');
  const cp = await startControlPlane({ onProgress: (m) => io.err(`  ${m}\n`) });
  io.err(`Ready in ${((Date.now() - started) / 1000).toFixed(1)} s. Use it with:\n`);
  io.out(`export KUBECONFIG=${cp.adminKubeconfig}\n`);
  io.err(`kubectl: ${cp.binaries.kubectl}\n`);
  io.err(`kube-apiserver: ${cp.apiServerUrl}   audit log: ${cp.auditLogFile}\n`);
  io.err('Press Ctrl-C to stop everything.\n');
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      io.err(`\n${signal}: stopping the control plane ...\n`);
      resolve();
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
  });
  await cp.stop();
  io.err('Stopped; every process ended and the folder is removed.\n');
  return 0;
};
