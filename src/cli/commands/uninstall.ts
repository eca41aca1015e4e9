/**
 * `kubevisa uninstall`: removes from a cluster everything `kubevisa install` (or the demo) put there — every visa
 * RoleBinding, the profile ClusterRoles, kubevisa's own RBAC and its namespaces with every ServiceAccount in them —
 * with an admin's kubeconfig. An installation made by Helm is left to `helm uninstall`.
 */
import { uninstallKubevisa } from '../../cluster/install.ts';
import type { CommandRun } from '../framework.ts';
import { UsageError } from '../framework.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  if (positionals.length > 0) throw new UsageError(`uninstall takes options only, not '${positionals[0]}'`);
  const adminKubeconfig =
    typeof values.kubeconfig === 'string' ? values.kubeconfig : process.env.KUBECONFIG?.split(':')[0];
  if (!adminKubeconfig) throw new UsageError('--kubeconfig FILE (an admin kubeconfig for the cluster) is required');
  const cluster = typeof values.cluster === 'string' ? values.cluster : 'cluster';
  const started = Date.now();
  const { removed } = await uninstallKubevisa({
    adminKubeconfigPath: adminKubeconfig,
    clusterName: cluster,
    onProgress: (m) => io.err(`  ${m}\n`),
  });
  if (values.output === 'json') io.out(`${JSON.stringify({ removed }, null, 2)}\n`);
  io.err(
    removed.length === 0
      ? 'kubevisa was not installed in this cluster: nothing to remove.\n'
      : `Removed ${removed.length} object(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; every token kubevisa or a person was given died with its ServiceAccount.\n`,
  );
  return 0;
};
