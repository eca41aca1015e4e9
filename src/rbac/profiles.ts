/**
 * The profiles kubevisa ships. Every rule is written out (no wildcards) so a reviewer sees exactly what a holder
 * can do, and a Kubernetes upgrade that adds resources widens nothing. None of them can read Secrets, touch RBAC
 * or write namespaces; only `debugger` reaches into containers, and it declares and records that.
 *
 * Direct mode (a TokenRequest token, kubectl straight to kube-apiserver) is allowed for the three profiles that
 * neither record nor open exec, attach or port-forward streams, on clusters whose configuration allows it;
 * `debugger` is gateway-only, since only the gateway records its sessions and cuts them at a revoke.
 *
 * A caveat shared with Kubernetes' own `edit` role: whoever may create pods (developer, deployer) can start one
 * that mounts a Secret or runs as a ServiceAccount of that namespace. Namespaces holding credentials a contractor
 * must not see need an admission policy besides these profiles.
 */
import type { PolicyRule, Profile } from '../domain/model.ts';
import { CORE_GROUP } from './rules.ts';

const HOUR = 3600;
const DAY = 24 * HOUR;

const READ = ['get', 'list', 'watch'];
const CHANGE = ['create', 'update', 'patch'];
const CHANGE_AND_DELETE = ['create', 'update', 'patch', 'delete', 'deletecollection'];

/** Read access to the usual namespaced workload objects. No Secrets, no pod logs (they often carry secrets). */
const READ_WORKLOADS: PolicyRule[] = [
  {
    apiGroups: [CORE_GROUP],
    resources: [
      'pods',
      'pods/status',
      'services',
      'endpoints',
      'configmaps',
      'events',
      'persistentvolumeclaims',
      'replicationcontrollers',
      'serviceaccounts',
      'limitranges',
      'resourcequotas',
    ],
    verbs: READ,
  },
  {
    apiGroups: ['apps'],
    resources: ['deployments', 'replicasets', 'statefulsets', 'daemonsets', 'controllerrevisions'],
    verbs: READ,
  },
  { apiGroups: ['batch'], resources: ['jobs', 'cronjobs'], verbs: READ },
  { apiGroups: ['networking.k8s.io'], resources: ['ingresses', 'networkpolicies'], verbs: READ },
  { apiGroups: ['autoscaling'], resources: ['horizontalpodautoscalers'], verbs: READ },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: READ },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: READ },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: READ },
  // `kubectl top pods`.
  { apiGroups: ['metrics.k8s.io'], resources: ['pods'], verbs: ['get', 'list'] },
];

const READ_LOGS: PolicyRule = { apiGroups: [CORE_GROUP], resources: ['pods/log'], verbs: ['get'] };

// `kubectl scale` and `kubectl rollout` work through the scale subresources.
const SCALE: PolicyRule = {
  apiGroups: ['apps'],
  resources: ['deployments/scale', 'replicasets/scale', 'statefulsets/scale'],
  verbs: ['get', 'update', 'patch'],
};

export const viewerProfile: Profile = {
  name: 'viewer',
  description: 'Read-only view of workloads, services, config maps and events. No Secrets, no logs.',
  rules: READ_WORKLOADS,
  declaredRisks: [],
  maxVisaSeconds: 7 * DAY,
  recordSessions: false,
  directMode: 'allowed',
};

export const developerProfile: Profile = {
  name: 'developer',
  description:
    'Edit workloads, services, config maps, ingresses and volume claims, and read logs. No Secrets, no exec, no RBAC.',
  rules: [
    ...READ_WORKLOADS,
    READ_LOGS,
    {
      apiGroups: [CORE_GROUP],
      resources: ['pods', 'services', 'configmaps', 'persistentvolumeclaims'],
      verbs: CHANGE_AND_DELETE,
    },
    {
      apiGroups: ['apps'],
      resources: ['deployments', 'replicasets', 'statefulsets', 'daemonsets'],
      verbs: CHANGE_AND_DELETE,
    },
    SCALE,
    { apiGroups: ['batch'], resources: ['jobs', 'cronjobs'], verbs: CHANGE_AND_DELETE },
    { apiGroups: ['networking.k8s.io'], resources: ['ingresses'], verbs: CHANGE_AND_DELETE },
    { apiGroups: ['autoscaling'], resources: ['horizontalpodautoscalers'], verbs: CHANGE_AND_DELETE },
    { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: CHANGE_AND_DELETE },
  ],
  declaredRisks: [
    {
      risk: 'pods-create',
      justification:
        'Developing means running workloads. A pod can run as any ServiceAccount of its namespace: grant this profile only on namespaces whose ServiceAccounts and Secrets the holder may use.',
    },
  ],
  maxVisaSeconds: 1 * DAY,
  recordSessions: false,
  directMode: 'allowed',
};

// A WebSocket upgrade is authorized as `get` on many Kubernetes versions and as `create` on newer ones.
const STREAM_VERBS = ['get', 'create'];

export const debuggerProfile: Profile = {
  name: 'debugger',
  description: 'Viewer plus logs, exec, attach and port-forward into pods, for troubleshooting. Sessions are recorded.',
  rules: [
    ...READ_WORKLOADS,
    READ_LOGS,
    { apiGroups: [CORE_GROUP], resources: ['pods/exec'], verbs: STREAM_VERBS },
    { apiGroups: [CORE_GROUP], resources: ['pods/attach'], verbs: STREAM_VERBS },
    { apiGroups: [CORE_GROUP], resources: ['pods/portforward'], verbs: STREAM_VERBS },
  ],
  declaredRisks: [
    {
      risk: 'pods-exec',
      justification:
        'Troubleshooting needs a shell in the running container (kubectl exec, kubectl cp); sessions are recorded and the profile is limited to 8 h.',
    },
    {
      risk: 'pods-attach',
      justification:
        'Attaching to a running process is the only way to debug some interactive containers; sessions are recorded.',
    },
    {
      risk: 'pods-portforward',
      justification:
        'Reaching a pod’s debug or admin port without exposing it through a Service; limited to the visa’s namespaces and 8 h.',
    },
  ],
  maxVisaSeconds: 8 * HOUR,
  recordSessions: true,
  directMode: 'denied',
};

export const deployerProfile: Profile = {
  name: 'deployer',
  description:
    'Roll out releases: create and update deployments, stateful sets, daemon sets, jobs, cron jobs, services and config maps; scale and roll back. No deletes, no Secrets.',
  rules: [
    ...READ_WORKLOADS,
    { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'daemonsets'], verbs: CHANGE },
    SCALE,
    { apiGroups: [CORE_GROUP], resources: ['services', 'configmaps'], verbs: CHANGE },
    { apiGroups: ['batch'], resources: ['jobs', 'cronjobs'], verbs: CHANGE },
  ],
  declaredRisks: [
    {
      risk: 'pods-create',
      justification:
        'Rolling out a release changes pod templates. A pod can run as any ServiceAccount of its namespace: grant this profile only on namespaces whose ServiceAccounts and Secrets the holder may use.',
    },
  ],
  maxVisaSeconds: 12 * HOUR,
  recordSessions: false,
  directMode: 'allowed',
};

/**
 * The shipped profiles, deeply frozen: they share rule objects, so a caller that changed one in place would
 * silently change the others (and what gets installed in every cluster).
 */
export const SHIPPED_PROFILES: readonly Profile[] = [
  viewerProfile,
  deployerProfile,
  developerProfile,
  debuggerProfile,
].map(deepFreeze);

/** The shipped profile with that name, if any. */
export function findShippedProfile(name: string): Profile | undefined {
  return SHIPPED_PROFILES.find((profile) => profile.name === name);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
