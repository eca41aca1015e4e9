/**
 * `kubevisa install`: run once per cluster with admin rights. Creates kubevisa's namespaces, the profile
 * ClusterRoles and kubevisa's own least-privilege ServiceAccount, and writes kubevisa's credential for the
 * cluster into the server's data folder; from then on kubevisa uses only that credential.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { CommandRun } from '../framework.ts';
import { positionalOrOption } from '../options.ts';
import { UsageError } from '../framework.ts';
import { installKubevisa } from '../../cluster/install.ts';
import { SHIPPED_PROFILES } from '../../rbac/profiles.ts';
import { isDnsLabel } from '../../domain/names.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const cluster = positionalOrOption(values, positionals, 'cluster', 'install');
  if (typeof cluster !== 'string' || !isDnsLabel(cluster)) {
    throw new UsageError('--cluster NAME is required: a DNS label such as prod or staging-eu');
  }
  const adminKubeconfig =
    typeof values.kubeconfig === 'string' ? values.kubeconfig : process.env.KUBECONFIG?.split(':')[0];
  if (!adminKubeconfig) throw new UsageError('--kubeconfig FILE (an admin kubeconfig for the cluster) is required');
  const dataDir = resolve(typeof values['data-dir'] === 'string' ? values['data-dir'] : '.kubevisa');
  const started = Date.now();
  const result = await installKubevisa({
    adminKubeconfigPath: adminKubeconfig,
    clusterName: cluster,
    profiles: [...SHIPPED_PROFILES],
    onProgress: (m: string) => io.err(`  ${m}\n`),
  });
  await mkdir(join(dataDir, 'clusters'), { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'clusters', `${cluster}.kubeconfig`);
  await writeFile(file, result.kubeconfigYaml, { mode: 0o600 });
  io.err(`Installed kubevisa in cluster '${cluster}' in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`);
  io.out(`${file}\n`);
  io.err(
    `Add it to the server's config:\n  clusters:\n    - name: ${cluster}\n      kubeconfig: ${file}\n` +
      `or register it with a running server: kubevisa cluster add ${cluster} --kubeconfig ${file}\n`,
  );
  return 0;
};
