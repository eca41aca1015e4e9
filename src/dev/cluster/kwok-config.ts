/**
 * kwok's configuration for the simulated node: stages that make the node Ready and pods Running (kwok
 * refuses to start without stages), and the "kubelet" behaviours that make exec, logs, attach and
 * port-forward real: exec runs a local command in `execWorkDir`, logs and attach read a file in CRI log
 * format, and port-forward connects every pod port to one local TCP port.
 */
import { stringify } from 'yaml';

export interface KwokConfigOptions {
  execWorkDir: string;
  /** CRI-format log file: `<RFC3339Nano> stdout F <line>` per line. */
  podLogFile: string;
  portForwardTarget: { address: string; port: number };
}

const kwokApi = 'kwok.x-k8s.io/v1alpha1';

/** The node's conditions: Ready, and no pressure of any kind (the same five a healthy kubelet reports). */
const nodeConditions = [
  ['Ready', 'True', 'KubeletReady'],
  ...['MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable'].map((type) => [
    type,
    'False',
    `KubeletHasNo${type}`,
  ]),
]
  .map(
    ([type, status, reason]) => `- type: ${type}
  status: "${status}"
  reason: ${reason}
  message: kwok simulates this node
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
`,
  )
  .join('');

const nodeReadyTemplate = `
{{ $now := Now }}
conditions:
${nodeConditions}addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
- type: Hostname
  address: {{ NodeName | Quote }}
{{ with NodePort }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ . }}
{{ end }}
allocatable: { cpu: "32", memory: 64Gi, pods: "110" }
capacity: { cpu: "32", memory: 64Gi, pods: "110" }
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: kwok
  kubeProxyVersion: kwok
  containerRuntimeVersion: kwok
  kernelVersion: kwok
  osImage: kwok
  machineID: ""
  bootID: ""
  systemUUID: ""
phase: Running
`;

const podRunningTemplate = `
{{ $now := Now }}
conditions:
- { type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }} }
- { type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }} }
- { type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }} }
- { type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }} }
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  containerID: {{ printf "kwok://%s" .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPWith .spec.nodeName }}
hostIP: {{ . | Quote }}
{{ end }}
{{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ . | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
`;

export function kwokConfigYaml(options: KwokConfigOptions): string {
  const documents = [
    {
      apiVersion: kwokApi,
      kind: 'Stage',
      metadata: { name: 'node-ready' },
      spec: {
        resourceRef: { apiGroup: 'v1', kind: 'Node' },
        selector: {
          matchExpressions: [
            {
              key: '.status.conditions.[] | select( .type == "Ready" ) | .status',
              operator: 'NotIn',
              values: ['True'],
            },
          ],
        },
        next: { statusTemplate: nodeReadyTemplate },
      },
    },
    {
      apiVersion: kwokApi,
      kind: 'Stage',
      metadata: { name: 'pod-running' },
      spec: {
        resourceRef: { apiGroup: 'v1', kind: 'Pod' },
        selector: {
          matchExpressions: [
            { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' },
            { key: '.status.phase', operator: 'In', values: ['Pending'] },
          ],
        },
        next: { statusTemplate: podRunningTemplate },
      },
    },
    {
      apiVersion: kwokApi,
      kind: 'Stage',
      metadata: { name: 'pod-delete' },
      spec: {
        resourceRef: { apiGroup: 'v1', kind: 'Pod' },
        selector: { matchExpressions: [{ key: '.metadata.deletionTimestamp', operator: 'Exists' }] },
        next: { delete: true },
      },
    },
    {
      apiVersion: kwokApi,
      kind: 'ClusterExec',
      metadata: { name: 'local-exec' },
      spec: { execs: [{ local: { workDir: options.execWorkDir } }] },
    },
    {
      apiVersion: kwokApi,
      kind: 'ClusterLogs',
      metadata: { name: 'file-logs' },
      spec: { logs: [{ logsFile: options.podLogFile, follow: true }] },
    },
    {
      apiVersion: kwokApi,
      kind: 'ClusterAttach',
      metadata: { name: 'file-attach' },
      spec: { attaches: [{ logsFile: options.podLogFile }] },
    },
    {
      apiVersion: kwokApi,
      kind: 'ClusterPortForward',
      metadata: { name: 'local-port' },
      spec: { forwards: [{ target: options.portForwardTarget }] },
    },
  ];
  return documents.map((doc) => stringify(doc, { lineWidth: 0 })).join('---\n');
}

/** One line in the CRI log format kwok reads (and the kubelet writes). */
export function criLogLine(text: string, at = new Date()): string {
  return `${at.toISOString()} stdout F ${text}\n`;
}
