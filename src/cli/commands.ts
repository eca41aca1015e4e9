/** The command table: what each command is, its options and examples; the code loads on use. */
import { outputOption, type CommandSpec } from './framework.ts';

export const commands: CommandSpec[] = [
  {
    path: ['dev', 'cluster'],
    summary: 'Run a local Kubernetes control plane (etcd, kube-apiserver, controllers, a kwok node) until Ctrl-C',
    usage: 'kubevisa dev cluster',
    examples: [
      'kubevisa dev cluster',
      'eval "$(kubevisa dev cluster | head -1)"   # in another shell: export KUBECONFIG=…',
    ],
    load: () => import('./commands/dev-cluster.ts'),
  },
];
