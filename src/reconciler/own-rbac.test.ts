import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OwnRbac } from '../cluster/client.ts';
import { kubevisaControllerRbac } from '../cluster/objects.ts';
import { ownRbacDrift } from './own-rbac.ts';

const desired = kubevisaControllerRbac(['viewer']);
const installed = (): OwnRbac => {
  const withVersion = <T extends { metadata: object }>(object: T): T => ({
    ...object,
    metadata: { ...object.metadata, resourceVersion: '5' },
  });
  return {
    clusterRole: withVersion(desired.clusterRole),
    clusterRoleBinding: withVersion(desired.clusterRoleBinding),
    visasRole: withVersion(desired.visasRole),
    visasRoleBinding: withVersion(desired.visasRoleBinding),
    selfTokenRole: withVersion(desired.selfTokenRole),
    selfTokenRoleBinding: withVersion(desired.selfTokenRoleBinding),
  };
};

describe('ownRbacDrift', () => {
  it('finds nothing in what install made', () => {
    assert.deepEqual(ownRbacDrift(desired, installed()), []);
  });

  it('offers to write back a widened role, at the version read', () => {
    const actual = installed();
    actual.clusterRole!.rules = [
      ...actual.clusterRole!.rules,
      { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
    ];
    const [drift, ...more] = ownRbacDrift(desired, actual);
    assert.equal(more.length, 0);
    assert.equal(drift?.object, 'ClusterRole kubevisa:controller');
    assert.deepEqual(drift?.added, ['apiGroups=[""] resources=[secrets] verbs=[get]']);
    assert.deepEqual(drift?.restore?.rules, desired.clusterRole.rules);
    assert.equal(drift?.restore?.metadata.resourceVersion, '5');
  });

  it('reports a binding with an extra subject or another roleRef, and never offers to write it', () => {
    const actual = installed();
    actual.clusterRoleBinding!.subjects = [
      ...actual.clusterRoleBinding!.subjects,
      { kind: 'User', name: 'mallory@evil.example', apiGroup: 'rbac.authorization.k8s.io' },
    ];
    actual.visasRoleBinding!.roleRef = { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' };
    const drifts = ownRbacDrift(desired, actual);
    assert.deepEqual(
      drifts.map((drift) => [drift.object, drift.added, drift.restore]),
      [
        ['ClusterRoleBinding kubevisa:controller', ['subject User mallory@evil.example'], undefined],
        ['RoleBinding kubevisa-visas/kubevisa:visas', ['roleRef ClusterRole admin'], undefined],
      ],
    );
  });

  it('reports a missing object', () => {
    const actual = installed();
    delete actual.selfTokenRole;
    assert.deepEqual(
      ownRbacDrift(desired, actual).map((drift) => [drift.object, drift.removed]),
      [['Role kubevisa-system/kubevisa:self-token', ['the whole object']]],
    );
  });
});
