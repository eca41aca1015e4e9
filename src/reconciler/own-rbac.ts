/**
 * How kubevisa's own RBAC in a cluster differs from what `kubevisa install` made (`kubevisaControllerRbac`). Pure:
 * the reconciler reads both sides and hands them in. Its roles can be put back when someone widened them (the API
 * server only accepts rules kubevisa already holds, so a narrowed role stays for `kubevisa install`); its bindings
 * are only ever reported: writing them would let a stolen kubevisa credential add subjects to itself.
 */
import type { OwnRbac } from '../cluster/client.ts';
import type {
  ClusterRole,
  ClusterRoleBinding,
  KubevisaControllerRbac,
  Role,
  RoleBinding,
  Subject,
} from '../cluster/objects.ts';
import { ruleSetDifference } from '../rbac/rules.ts';

export interface OwnRbacDrift {
  /** `ClusterRole kubevisa:controller`, `RoleBinding kubevisa-visas/kubevisa:visas`. */
  object: string;
  /** What it grants or lets in beyond what install made: rules, subjects, another roleRef. */
  added: string[];
  /** What it lacks (`the whole object` when it is gone). */
  removed: string[];
  /** For a role: what install made, at the resourceVersion read, to write back. Absent for bindings. */
  restore?: ClusterRole | Role;
  /** The version read, so a report is made once per version. */
  resourceVersion: string;
}

/**
 * Every own object that differs from `desired`. The ClusterRole's profile rule (bind, escalate and update on the
 * profile ClusterRoles) is compared by its names too: a name that is not an installed profile role is drift.
 */
export function ownRbacDrift(desired: KubevisaControllerRbac, actual: OwnRbac): OwnRbacDrift[] {
  const drifts: OwnRbacDrift[] = [];
  const roles: [ClusterRole | Role, ClusterRole | Role | undefined][] = [
    [desired.clusterRole, actual.clusterRole],
    [desired.visasRole, actual.visasRole],
    [desired.selfTokenRole, actual.selfTokenRole],
  ];
  for (const [want, have] of roles) {
    const object = describe(want);
    if (have === undefined) {
      drifts.push({ object, added: [], removed: ['the whole object'], resourceVersion: '' });
      continue;
    }
    const added = ruleSetDifference(have.rules, want.rules);
    const removed = ruleSetDifference(want.rules, have.rules);
    if (added.length === 0 && removed.length === 0) continue;
    const resourceVersion = have.metadata.resourceVersion ?? '';
    const restore = { ...want, metadata: { ...want.metadata, resourceVersion } } as ClusterRole | Role;
    drifts.push({ object, added, removed, restore, resourceVersion });
  }
  const bindings: [ClusterRoleBinding | RoleBinding, ClusterRoleBinding | RoleBinding | undefined][] = [
    [desired.clusterRoleBinding, actual.clusterRoleBinding],
    [desired.visasRoleBinding, actual.visasRoleBinding],
    [desired.selfTokenRoleBinding, actual.selfTokenRoleBinding],
  ];
  for (const [want, have] of bindings) {
    const object = describe(want);
    if (have === undefined) {
      drifts.push({ object, added: [], removed: ['the whole object'], resourceVersion: '' });
      continue;
    }
    const wantSubjects = want.subjects.map(subjectText);
    const haveSubjects = have.subjects.map(subjectText);
    const added = haveSubjects.filter((subject) => !wantSubjects.includes(subject)).map((s) => `subject ${s}`);
    const removed = wantSubjects.filter((subject) => !haveSubjects.includes(subject)).map((s) => `subject ${s}`);
    const ref = (binding: ClusterRoleBinding | RoleBinding) => `${binding.roleRef.kind} ${binding.roleRef.name}`;
    if (ref(have) !== ref(want)) {
      added.push(`roleRef ${ref(have)}`);
      removed.push(`roleRef ${ref(want)}`);
    }
    if (added.length === 0 && removed.length === 0) continue;
    drifts.push({ object, added, removed, resourceVersion: have.metadata.resourceVersion ?? '' });
  }
  return drifts;
}

function describe(object: { kind: string; metadata: { name: string; namespace?: string } }): string {
  const { name, namespace } = object.metadata;
  return `${object.kind} ${namespace === undefined ? '' : `${namespace}/`}${name}`;
}

// kube-apiserver omits a ServiceAccount subject's empty apiGroup when reading back; only kind, namespace and name
// tell subjects apart here.
function subjectText(subject: Subject): string {
  return `${subject.kind} ${subject.namespace === undefined ? '' : `${subject.namespace}/`}${subject.name}`;
}
