/**
 * Fencing: a deposed leader (paused, partitioned, slow) must never write to a cluster again, and a check inside
 * the replica cannot promise that (it can pause between the check and the write). So kube-apiserver enforces it:
 *
 * - Every object kubevisa writes carries the epoch of the lease term it was written under (annotation
 *   `kubevisa.io/epoch`, src/leader/).
 * - ConfigMap `kubevisa-fence` in `kubevisa-system` holds the highest epoch any leader has claimed. A new leader
 *   raises it before its first write, then waits until kube-apiserver enforces the new value (its admission plugin
 *   reads the ConfigMap from an informer cache, so a write right after the raise could still be judged against
 *   the old value; `awaitEnforced` proves it is not, with a dry-run write at the epoch below).
 * - ValidatingAdmissionPolicy `kubevisa-fencing`, bound with a paramRef to that ConfigMap, refuses any create or
 *   update by kubevisa's own identity whose epoch is below the fence, and any delete of an object whose epoch is
 *   below it. kubevisa deletes by first stamping the object with its epoch (an update, judged like any other), then
 *   deleting with a precondition on the stamped resourceVersion: the object deleted is exactly the one stamped, and
 *   once a newer leader raised the fence, a stamp from an older term no longer lets anything be deleted.
 * - The fence never goes down: an update that lowers it is refused by the same policy.
 *
 * The policy matches only requests made as kubevisa's ServiceAccount: people (and kube-controller-manager) edit or
 * delete kubevisa's objects as they always could, which the reconciler sees as drift. When the ConfigMap does not
 * exist (no leader ever ran on PostgreSQL: a single SQLite server never needs it), the binding lets writes through.
 */
import { CONTROLLER_USERNAME, SYSTEM_NAMESPACE } from './objects.ts';

/** Annotation on every object kubevisa writes: the epoch of the lease term it was written under (decimal). */
export const EPOCH_ANNOTATION = 'kubevisa.io/epoch';
/** The fence: ConfigMap `kubevisa-fence` in `kubevisa-system`, `data.epoch` = the highest epoch claimed. */
export const FENCE_CONFIG_MAP = 'kubevisa-fence';
/** The ValidatingAdmissionPolicy and its binding. */
export const FENCING_POLICY = 'kubevisa-fencing';
/** Every refusal by the policy starts with this (client.ts turns it into `Fenced`). */
export const FENCING_REFUSAL = 'kubevisa fencing:';

const labels = {
  'app.kubernetes.io/managed-by': 'kubevisa',
  'app.kubernetes.io/part-of': 'kubevisa',
  'app.kubernetes.io/component': 'controller',
};

export interface ValidatingAdmissionPolicy {
  apiVersion: 'admissionregistration.k8s.io/v1';
  kind: 'ValidatingAdmissionPolicy';
  metadata: {
    name: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    namespace?: undefined;
  };
  spec: Record<string, unknown>;
}
export interface ValidatingAdmissionPolicyBinding {
  apiVersion: 'admissionregistration.k8s.io/v1';
  kind: 'ValidatingAdmissionPolicyBinding';
  metadata: {
    name: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    namespace?: undefined;
  };
  spec: Record<string, unknown>;
}

// An object's epoch in CEL: 0 when it carries none (written before fencing existed, or by someone else).
const stampOf = (object: string) =>
  `(has(${object}.metadata.annotations) && '${EPOCH_ANNOTATION}' in ${object}.metadata.annotations ? int(${object}.metadata.annotations['${EPOCH_ANNOTATION}']) : 0)`;

/** The policy kube-apiserver enforces the fence with (see the module comment). */
export function fencingPolicy(): ValidatingAdmissionPolicy {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name: FENCING_POLICY, labels: { ...labels }, annotations: {} },
    spec: {
      // An expression that cannot be evaluated (an unreadable epoch) refuses the write: fencing fails closed.
      failurePolicy: 'Fail',
      paramKind: { apiVersion: 'v1', kind: 'ConfigMap' },
      matchConstraints: {
        resourceRules: [
          {
            apiGroups: ['rbac.authorization.k8s.io'],
            apiVersions: ['*'],
            operations: ['CREATE', 'UPDATE', 'DELETE'],
            resources: ['rolebindings', 'roles', 'clusterroles'],
          },
          {
            apiGroups: [''],
            apiVersions: ['*'],
            operations: ['CREATE', 'UPDATE', 'DELETE'],
            resources: ['serviceaccounts', 'configmaps'],
          },
        ],
      },
      matchConditions: [
        { name: 'written-by-kubevisa', expression: `request.userInfo.username == '${CONTROLLER_USERNAME}'` },
      ],
      variables: [
        { name: 'fence', expression: 'int(params.data.epoch)' },
        { name: 'stamp', expression: `request.operation == 'DELETE' ? -1 : ${stampOf('object')}` },
        { name: 'oldStamp', expression: `request.operation == 'CREATE' ? -1 : ${stampOf('oldObject')}` },
      ],
      validations: [
        {
          // A direct-mode credential records on the person's ServiceAccount until when its tokens live, from any
          // replica; such an update leaves the epoch as it was and grants nothing.
          expression:
            "request.operation == 'DELETE' || variables.stamp >= variables.fence || " +
            "(request.operation == 'UPDATE' && request.resource.resource == 'serviceaccounts' && variables.stamp == variables.oldStamp)",
          messageExpression: `'${FENCING_REFUSAL} this write carries epoch ' + string(variables.stamp) + ', below the fence at epoch ' + string(variables.fence) + ': a newer kubevisa leader holds the lease'`,
          reason: 'Forbidden',
        },
        {
          // A visa-labelled binding to a role kubevisa never binds (someone else's) is removed without a stamp: kubevisa
          // could not update it (it has no bind right on that role), and removing it only ever takes access away.
          expression:
            "request.operation != 'DELETE' || variables.oldStamp >= variables.fence || " +
            "(request.resource.resource == 'rolebindings' && !oldObject.roleRef.name.startsWith('kubevisa:profile:'))",
          messageExpression: `'${FENCING_REFUSAL} this delete was prepared at epoch ' + string(variables.oldStamp) + ', below the fence at epoch ' + string(variables.fence) + ': a newer kubevisa leader holds the lease'`,
          reason: 'Forbidden',
        },
        {
          expression:
            "request.resource.resource != 'configmaps' || request.operation != 'UPDATE' || " +
            'int(object.data.epoch) >= int(oldObject.data.epoch)',
          message: `${FENCING_REFUSAL} the fence never goes down`,
          reason: 'Forbidden',
        },
      ],
    },
  };
}

/** Binds the policy to the fence ConfigMap; no ConfigMap yet (no leader ever raised it) lets writes through. */
export function fencingPolicyBinding(): ValidatingAdmissionPolicyBinding {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name: FENCING_POLICY, labels: { ...labels }, annotations: {} },
    spec: {
      policyName: FENCING_POLICY,
      validationActions: ['Deny'],
      paramRef: { name: FENCE_CONFIG_MAP, namespace: SYSTEM_NAMESPACE, parameterNotFoundAction: 'Allow' },
    },
  };
}

/** The fence ConfigMap at `epoch` (kubevisa creates it the first time a leader raises it). */
export function fenceConfigMap(epoch: number) {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: FENCE_CONFIG_MAP,
      namespace: SYSTEM_NAMESPACE,
      labels: { ...labels },
      annotations: { [EPOCH_ANNOTATION]: String(epoch) },
    },
    data: { epoch: String(epoch) },
  };
}

/** The epoch an object carries, 0 when none (or unreadable). */
export function epochOf(object: { metadata?: { annotations?: Record<string, string> | undefined } }): number {
  const value = Number(object.metadata?.annotations?.[EPOCH_ANNOTATION] ?? '0');
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

/** A copy of `object` stamped with `epoch`. */
export function stamped<T extends { metadata: { annotations: Record<string, string> } }>(object: T, epoch: number): T {
  return {
    ...object,
    metadata: {
      ...object.metadata,
      annotations: { ...object.metadata.annotations, [EPOCH_ANNOTATION]: String(epoch) },
    },
  };
}
