import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { profileClusterRole, visaRoleBinding } from '../cluster/objects.ts';
import type { PolicyRule, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { viewerProfile } from '../rbac/profiles.ts';
import { driftFindings } from './drift.ts';
import { analyzeExposure, buildDirectory, type ExposureInput } from './exposure.ts';
import { diffFindings, isAlertable, type Finding } from './findings.ts';
import { compactRules, filterMatrix, permissionMatrix, resourceLabel } from '../rbac/matrix.ts';
import {
  buildRbacIndex,
  identityOf,
  selectorMatches,
  type BindingLike,
  type ClusterRoleLike,
  type RbacObjects,
  type RoleLike,
  type SubjectLike,
} from '../rbac/rbac-index.ts';

const meta = (name: string, namespace?: string, labels: Record<string, string> = {}) => ({
  name,
  ...(namespace === undefined ? {} : { namespace }),
  labels,
  annotations: {},
});
const role = (namespace: string, name: string, rules: PolicyRule[]): RoleLike => ({
  metadata: meta(name, namespace),
  rules,
});
const clusterRole = (name: string, rules: PolicyRule[], extra: Partial<ClusterRoleLike> = {}): ClusterRoleLike => ({
  metadata: meta(name),
  rules,
  ...extra,
});
const user = (name: string): SubjectLike => ({ kind: 'User', name, apiGroup: 'rbac.authorization.k8s.io' });
const group = (name: string): SubjectLike => ({ kind: 'Group', name, apiGroup: 'rbac.authorization.k8s.io' });
const sa = (namespace: string, name: string): SubjectLike => ({ kind: 'ServiceAccount', name, namespace });
const roleBinding = (
  namespace: string,
  name: string,
  ref: { kind: 'Role' | 'ClusterRole'; name: string },
  subjects: SubjectLike[],
  labels: Record<string, string> = {},
): BindingLike => ({
  metadata: meta(name, namespace, labels),
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', ...ref },
  subjects,
});
const clusterRoleBinding = (
  name: string,
  roleName: string,
  subjects: SubjectLike[],
  labels: Record<string, string> = {},
): BindingLike => ({
  metadata: meta(name, undefined, labels),
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName },
  subjects,
});

const readPods: PolicyRule = { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] };
const readSecrets: PolicyRule = { apiGroups: [''], resources: ['secrets'], verbs: ['get'] };
const execPods: PolicyRule = { apiGroups: [''], resources: ['pods/exec'], verbs: ['create'] };
const nodesProxy: PolicyRule = { apiGroups: [''], resources: ['nodes/proxy'], verbs: ['get'] };
const everything: PolicyRule = { apiGroups: ['*'], resources: ['*'], verbs: ['*'] };
const selfReview: PolicyRule = {
  apiGroups: ['authorization.k8s.io'],
  resources: ['selfsubjectaccessreviews'],
  verbs: ['create'],
};

const directory = buildDirectory({
  engagements: [
    {
      name: 'acme',
      contractors: ['Cora@Vendor.example', 'carl@vendor.example'],
      sponsor: 'sam@corp.example',
      status: 'active',
    },
    { name: 'old-deal', contractors: ['olga@former.example'], sponsor: 'sam@corp.example', status: 'ended' },
  ],
  persons: [
    { id: 'p_sam', email: 'sam@corp.example', status: 'active', roles: ['admin'] },
    { id: 'p_cora', email: 'cora@vendor.example', status: 'active', roles: [] },
    { id: 'p_dan', email: 'dan@corp.example', status: 'deprovisioned', roles: [] },
    { id: 'p_emma', email: 'emma@corp.example', status: 'active', roles: [] },
    { id: 'p_kim', email: 'kim@corp.example', status: 'active', roles: [] },
  ],
});

const emptyObjects: RbacObjects = { roles: [], clusterRoles: [], roleBindings: [], clusterRoleBindings: [] };
function scan(objects: Partial<RbacObjects>, extra: Partial<ExposureInput> = {}) {
  return analyzeExposure({
    cluster: 'prod',
    objects: { ...emptyObjects, ...objects },
    tokenSecrets: [],
    legacyTokenUses: [],
    directory,
    ...extra,
  });
}
const byKind = (findings: Finding[], kind: Finding['kind']) => findings.filter((f) => f.kind === kind);

describe('shadow access', () => {
  const visaSa = serviceAccountName('cora@vendor.example');
  const objects: Partial<RbacObjects> = {
    roles: [role('payments', 'reader', [readPods])],
    clusterRoles: [clusterRole('edit', [readPods, readSecrets]), clusterRole('kubevisa:profile:viewer', [readPods])],
    roleBindings: [
      roleBinding('payments', 'cora-by-hand', { kind: 'Role', name: 'reader' }, [user('cora@vendor.example')]),
      roleBinding('payments', 'olga-left-over', { kind: 'ClusterRole', name: 'edit' }, [user('olga@former.example')]),
      roleBinding('payments', 'new-vendor-person', { kind: 'Role', name: 'reader' }, [user('vic@vendor.example')]),
      roleBinding('payments', 'dan', { kind: 'Role', name: 'reader' }, [user('dan@corp.example')]),
      roleBinding('payments', 'cert-user', { kind: 'Role', name: 'reader' }, [user('jenkins')]),
      // kim@corp.example is active staff; this is another identity that lower-cases to hers (U+212A, the Kelvin sign).
      roleBinding('payments', 'kim-look-alike', { kind: 'Role', name: 'reader' }, [user('\u212Aim@corp.example')]),
      roleBinding('payments', 'employee', { kind: 'Role', name: 'reader' }, [user('sam@corp.example')]),
      roleBinding('payments', 'idp-person', { kind: 'Role', name: 'reader' }, [user('emma@corp.example')]),
      roleBinding('payments', 'keep-visa', { kind: 'ClusterRole', name: 'edit' }, [sa('kubevisa-visas', visaSa)]),
      roleBinding(
        'payments',
        'kubevisa-v_1',
        { kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
        [sa('kubevisa-visas', visaSa)],
        { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': 'v_1' },
      ),
      roleBinding('ci', 'deployer', { kind: 'ClusterRole', name: 'edit' }, [sa('ci', 'deployer')]),
    ],
  };
  const found = (binding: string) =>
    scan(objects, {
      tokenSecrets: [{ namespace: 'ci', name: 'deployer-token', serviceAccount: 'deployer' }],
    }).findings.find((f) => f.kind === 'shadow-access' && f.binding === binding);

  test('a RoleBinding to a contractor’s email, case-insensitively', () => {
    const finding = found('RoleBinding payments/cora-by-hand');
    assert.equal(finding?.reason, 'contractor-email');
    assert.equal(finding.severity, 'high');
    assert.equal(finding.subject, 'User:cora@vendor.example');
    assert.match(finding.summary, /contractor of acme/);
  });

  test('a contractor whose every engagement ended is critical', () => {
    const finding = found('RoleBinding payments/olga-left-over');
    assert.equal(finding?.reason, 'contractor-email');
    assert.equal(finding.severity, 'critical');
    assert.deepEqual(finding.risks, ['secrets-read']);
  });

  test('an unknown user of an engagement’s contractor domain', () => {
    const finding = found('RoleBinding payments/new-vendor-person');
    assert.equal(finding?.reason, 'contractor-domain');
    assert.deepEqual(finding.details.reasons, ['contractor-domain', 'unknown-user']);
  });

  test('a deprovisioned person', () => {
    assert.equal(found('RoleBinding payments/dan')?.reason, 'deprovisioned-user');
  });

  test('a user the identity provider does not know', () => {
    assert.equal(found('RoleBinding payments/cert-user')?.reason, 'unknown-user');
  });

  test('a user whose name would pass for a known person’s once lower-cased is reported as a look-alike, not taken for them', () => {
    const finding = found('RoleBinding payments/kim-look-alike');
    assert.equal(finding?.reason, 'look-alike-user');
    assert.equal(finding.severity, 'high');
  });

  test('a visa holder’s ServiceAccount bound by hand outlives the visa: critical', () => {
    const finding = found('RoleBinding payments/keep-visa');
    assert.equal(finding?.reason, 'visa-identity');
    assert.equal(finding.severity, 'critical');
  });

  test('a ServiceAccount with a legacy token Secret, and the Secret itself', () => {
    const result = scan(objects, {
      tokenSecrets: [{ namespace: 'ci', name: 'deployer-token', serviceAccount: 'deployer', lastUsed: '2026-01-02' }],
    });
    const shadow = result.findings.find((f) => f.binding === 'RoleBinding ci/deployer' && f.kind === 'shadow-access');
    assert.equal(shadow?.reason, 'legacy-token');
    assert.deepEqual(shadow.details.secrets, ['ci/deployer-token']);
    const secret = result.findings.find((f) => f.id === 'legacy-token:ci/deployer-token');
    assert.equal(secret?.severity, 'high');
    assert.deepEqual(secret.details.bindings, ['RoleBinding ci/deployer']);
    assert.match(secret.summary, /never expire.*last used 2026-01-02/);
  });

  test('a ServiceAccount seen using a legacy token in the audit log', () => {
    const result = scan(objects, {
      legacyTokenUses: [{ serviceAccount: 'ci/deployer', lastSeen: Date.UTC(2026, 0, 2) }],
    });
    const shadow = result.findings.find((f) => f.binding === 'RoleBinding ci/deployer' && f.kind === 'shadow-access');
    assert.equal(shadow?.reason, 'legacy-token-in-use');
  });

  test('employees, known people, visa bindings and Kubernetes’ own are not shadow access', () => {
    assert.equal(found('RoleBinding payments/employee'), undefined);
    assert.equal(found('RoleBinding payments/idp-person'), undefined);
    assert.equal(found('RoleBinding payments/kubevisa-v_1'), undefined);
    const result = scan({
      clusterRoles: [clusterRole('system:node', [readPods])],
      clusterRoleBindings: [clusterRoleBinding('system:node', 'system:node', [user('system:kube-scheduler')])],
    });
    assert.deepEqual(byKind(result.findings, 'shadow-access'), []);
  });
});

describe('broad groups', () => {
  const objects: Partial<RbacObjects> = {
    clusterRoles: [
      clusterRole('secret-reader', [readSecrets]),
      clusterRole('pod-reader', [readPods]),
      clusterRole('system:basic-user', [selfReview], { metadata: meta('system:basic-user', undefined, {}) }),
    ],
    clusterRoleBindings: [
      clusterRoleBinding('everyone-reads-secrets', 'secret-reader', [group('system:authenticated')]),
      clusterRoleBinding('all-sas', 'pod-reader', [group('system:serviceaccounts')]),
      clusterRoleBinding('system:basic-user', 'system:basic-user', [group('system:authenticated')], {
        'kubernetes.io/bootstrapping': 'rbac-defaults',
      }),
    ],
    roleBindings: [
      roleBinding('payments', 'visa-holders', { kind: 'ClusterRole', name: 'pod-reader' }, [
        group('system:serviceaccounts:kubevisa-visas'),
      ]),
      roleBinding('payments', 'ci-sas', { kind: 'ClusterRole', name: 'pod-reader' }, [
        group('system:serviceaccounts:ci'),
      ]),
    ],
  };

  test('each binding to a group every visa holder is in is reported, with who it reaches', () => {
    const broad = byKind(scan(objects).findings, 'broad-group');
    const ids = broad.map((f) => f.id).sort();
    assert.deepEqual(ids, [
      'broad-group:ClusterRoleBinding all-sas:system:serviceaccounts',
      'broad-group:ClusterRoleBinding everyone-reads-secrets:system:authenticated',
      'broad-group:ClusterRoleBinding system:basic-user:system:authenticated',
      'broad-group:RoleBinding payments/visa-holders:system:serviceaccounts:kubevisa-visas',
    ]);
    const secrets = broad.find((f) => f.binding === 'ClusterRoleBinding everyone-reads-secrets');
    assert.equal(secrets?.severity, 'critical');
    assert.match(secrets.summary, /every authenticated user, so every visa holder, with risks secrets-read/);
    const builtin = broad.find((f) => f.binding === 'ClusterRoleBinding system:basic-user');
    assert.equal(builtin?.severity, 'info');
    assert.equal(isAlertable(builtin), false);
    assert.equal(isAlertable(secrets), true);
  });

  test('a visa holder’s effective rules include every broad group’s', () => {
    const index = buildRbacIndex({ ...emptyObjects, ...objects });
    const holder = index.subjects.get('Group:system:serviceaccounts:kubevisa-visas');
    assert.ok(holder);
    const identity = {
      username: 'system:serviceaccount:kubevisa-visas:cora-1',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:kubevisa-visas', 'system:authenticated'],
    };
    const rules = index.rulesFor(identity, 'payments');
    assert.ok(rules.includes(readSecrets));
    assert.ok(rules.includes(readPods));
    assert.ok(rules.includes(selfReview));
    // Not the ServiceAccounts of another namespace's group.
    assert.equal(index.grantsFor(identity, 'payments').filter((g) => g.binding.name === 'ci-sas').length, 0);
  });
});

describe('risky permissions', () => {
  test('the linter’s risks per grant, but only those a RoleBinding can really use', () => {
    const result = scan({
      clusterRoles: [clusterRole('node-debug', [nodesProxy, execPods]), clusterRole('cluster-admin', [everything])],
      roleBindings: [roleBinding('payments', 'debug', { kind: 'ClusterRole', name: 'node-debug' }, [user('jenkins')])],
      clusterRoleBindings: [clusterRoleBinding('root', 'cluster-admin', [user('bob@corp.example')])],
    });
    const risky = byKind(result.findings, 'risky-permission');
    const debug = risky.find((f) => f.binding === 'RoleBinding payments/debug');
    assert.deepEqual(debug?.risks, ['pods-exec'], 'nodes/proxy is cluster-scoped: out of a RoleBinding’s reach');
    const root = risky.find((f) => f.binding === 'ClusterRoleBinding root');
    assert.equal(root?.severity, 'critical');
    assert.ok(
      root.risks?.includes('wildcard') && root.risks.includes('secrets-read') && root.risks.includes('escalate'),
    );
    assert.equal(risky[0]?.severity, 'critical', 'most severe first');
  });

  test('a visa binding with a declared risk is reported as managed, not alertable', () => {
    const result = scan({
      clusterRoles: [clusterRole('kubevisa:profile:debugger', [readPods, execPods])],
      roleBindings: [
        roleBinding(
          'payments',
          'kubevisa-v_2',
          { kind: 'ClusterRole', name: 'kubevisa:profile:debugger' },
          [sa('kubevisa-visas', 'cora-1')],
          { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': 'v_2' },
        ),
      ],
    });
    const [finding] = byKind(result.findings, 'risky-permission');
    assert.equal(finding?.managed, true);
    assert.equal(finding.details.visaId, 'v_2');
    assert.equal(isAlertable(finding), false);
  });
});

describe('resolving roles', () => {
  test('an aggregated ClusterRole holds the rules of the roles its selectors match', () => {
    const objects: RbacObjects = {
      ...emptyObjects,
      clusterRoles: [
        clusterRole('monitoring', [], {
          aggregationRule: {
            clusterRoleSelectors: [{ matchLabels: { 'rbac.example/aggregate-to-monitoring': 'true' } }],
          },
        }),
        {
          metadata: meta('secrets-piece', undefined, { 'rbac.example/aggregate-to-monitoring': 'true' }),
          rules: [readSecrets],
        },
        { metadata: meta('unrelated', undefined, {}), rules: [execPods] },
      ],
      clusterRoleBindings: [clusterRoleBinding('mon', 'monitoring', [user('grafana')])],
    };
    const index = buildRbacIndex(objects);
    assert.deepEqual(index.roles.get('ClusterRole:monitoring')?.rules, [readSecrets]);
    assert.deepEqual(index.roles.get('ClusterRole:monitoring')?.risks, ['secrets-read']);
  });

  test('label selectors: In, NotIn, Exists, DoesNotExist; an empty selector matches everything', () => {
    const labels = { tier: 'web', team: 'a' };
    assert.equal(selectorMatches({}, labels), true);
    assert.equal(
      selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] }, labels),
      true,
    );
    assert.equal(
      selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] }, labels),
      false,
    );
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'Exists' }] }, labels), false);
    assert.equal(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }, labels), true);
    assert.equal(selectorMatches({ matchLabels: { team: 'b' } }, labels), false);
  });

  test('a binding to a role that does not exist grants nothing and is reported', () => {
    const result = scan({
      roleBindings: [roleBinding('payments', 'waiting', { kind: 'Role', name: 'not-yet' }, [user('jenkins')])],
    });
    const [dangling] = byKind(result.findings, 'dangling-binding');
    assert.equal(dangling?.role, 'Role payments/not-yet');
    assert.deepEqual(result.index.rulesFor({ username: 'jenkins', groups: [] }, 'payments'), []);
  });

  test('a User subject named like a ServiceAccount is that ServiceAccount', () => {
    const index = buildRbacIndex({
      ...emptyObjects,
      roles: [role('ci', 'r', [readPods])],
      roleBindings: [roleBinding('ci', 'b', { kind: 'Role', name: 'r' }, [user('system:serviceaccount:ci:builder')])],
    });
    const subject = index.subjects.get('ServiceAccount:ci/builder');
    assert.ok(subject);
    assert.deepEqual(identityOf(subject).groups, [
      'system:serviceaccounts',
      'system:serviceaccounts:ci',
      'system:authenticated',
    ]);
    assert.deepEqual(index.rulesFor(identityOf(subject), 'ci'), [readPods]);
  });
});

describe('the permission matrix', () => {
  const objects: RbacObjects = {
    ...emptyObjects,
    roles: [role('payments', 'reader', [readPods]), role('payments', 'writer', [{ ...readPods, verbs: ['create'] }])],
    clusterRoles: [clusterRole('basic', [selfReview])],
    roleBindings: [
      roleBinding('payments', 'r', { kind: 'Role', name: 'reader' }, [user('jenkins'), sa('ci', 'builder')]),
      roleBinding('payments', 'w', { kind: 'Role', name: 'writer' }, [user('jenkins')]),
    ],
    clusterRoleBindings: [clusterRoleBinding('basic', 'basic', [group('system:authenticated')])],
  };

  test('one row per subject and namespace it is bound in, plus cluster scope, with verbs merged', () => {
    const rows = permissionMatrix(buildRbacIndex(objects));
    const jenkins = rows.filter((row) => row.subject.key === 'User:jenkins');
    assert.deepEqual(
      jenkins.map((row) => row.namespace),
      ['', 'payments'],
    );
    const payments = jenkins[1]!;
    assert.deepEqual(payments.permissions.resources, [
      { apiGroup: '', resource: 'pods', resourceNames: [], verbs: ['create', 'get', 'list'] },
      { apiGroup: 'authorization.k8s.io', resource: 'selfsubjectaccessreviews', resourceNames: [], verbs: ['create'] },
    ]);
  });

  test('filters by subject, namespace and verb', () => {
    const rows = permissionMatrix(buildRbacIndex(objects));
    const creators = filterMatrix(rows, { verb: 'create', resource: 'pods' });
    assert.deepEqual(
      creators.map((row) => `${row.subject.key} ${row.namespace}`),
      ['User:jenkins payments'],
    );
    assert.deepEqual(
      filterMatrix(rows, { subject: 'ci/builder', namespace: 'payments' }).map((row) => row.namespace),
      ['', 'payments'],
    );
  });

  test('resources are named as kubectl auth can-i --list names them', () => {
    assert.equal(resourceLabel({ apiGroup: '', resource: 'pods/exec' }), 'pods/exec');
    assert.equal(resourceLabel({ apiGroup: 'apps', resource: 'deployments' }), 'deployments.apps');
    assert.equal(resourceLabel({ apiGroup: 'apps', resource: 'deployments/scale' }), 'deployments.apps/scale');
    assert.equal(resourceLabel({ apiGroup: '*', resource: '*' }), '*.*');
  });

  test('compacting keeps resourceNames apart and non-resource URLs separate', () => {
    const compact = compactRules([
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['b', 'a'], verbs: ['get'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['list'] },
      { nonResourceURLs: ['/healthz'], verbs: ['get'] },
    ]);
    assert.deepEqual(compact.resources, [
      { apiGroup: '', resource: 'configmaps', resourceNames: [], verbs: ['list'] },
      { apiGroup: '', resource: 'configmaps', resourceNames: ['a', 'b'], verbs: ['get'] },
    ]);
    assert.deepEqual(compact.nonResourceURLs, [{ url: '/healthz', verbs: ['get'] }]);
  });
});

describe('changes between scans', () => {
  test('new findings are added, gone ones resolved, by id', () => {
    const a = scan({
      clusterRoles: [clusterRole('edit', [readSecrets])],
      roleBindings: [roleBinding('x', 'one', { kind: 'ClusterRole', name: 'edit' }, [user('cora@vendor.example')])],
    }).findings;
    const b = scan({
      clusterRoles: [clusterRole('edit', [readSecrets])],
      roleBindings: [roleBinding('x', 'two', { kind: 'ClusterRole', name: 'edit' }, [user('cora@vendor.example')])],
    }).findings;
    const changes = diffFindings(a, b);
    assert.ok(changes.added.some((f) => f.id === 'shadow-access:RoleBinding x/two:User:cora@vendor.example'));
    assert.ok(changes.resolved.some((f) => f.id === 'shadow-access:RoleBinding x/one:User:cora@vendor.example'));
    assert.deepEqual(diffFindings(a, a), { added: [], resolved: [] });
  });
});

describe('drift', () => {
  const now = Date.UTC(2026, 2, 2, 12);
  const visa: Visa = {
    id: 'v_d1',
    engagementId: 'e_1',
    personId: 'p_cora',
    personEmail: 'cora@vendor.example',
    cluster: 'prod',
    namespaces: ['payments', 'web'],
    profile: 'viewer',
    reason: 'JIRA-1',
    requestedAt: now - 3600_000,
    requestedSeconds: 7200,
    notBefore: now - 3600_000,
    notAfter: now + 3600_000,
    state: 'active',
    approvals: [],
    requiredApprovals: 1,
  };
  const desired = visa.namespaces.map((namespace) => ({
    binding: visaRoleBinding({ visa, namespace }),
    since: visa.notBefore,
  }));
  const viewerRole = profileClusterRole(viewerProfile);
  const base = {
    desired,
    recentlyEnded: new Set<string>(),
    profileRoles: { desired: [viewerRole], actual: [viewerRole] },
    now,
  };

  test('no drift when the cluster matches', () => {
    assert.deepEqual(driftFindings({ ...base, actual: desired.map((d) => d.binding) }), []);
  });

  test('an edited subject, a missing binding and a hand-made copy are each reported', () => {
    const [payments, web] = desired.map((d) => d.binding);
    const edited = structuredClone(payments!);
    edited.subjects.push({ kind: 'User', name: 'mallory@vendor.example', apiGroup: 'rbac.authorization.k8s.io' });
    const copy = structuredClone(web!);
    copy.metadata.namespace = 'prod-db';
    const findings = driftFindings({ ...base, actual: [edited, copy] });
    const byReason = new Map(findings.map((f) => [f.reason, f]));
    assert.match(byReason.get('changed')?.summary ?? '', /payments\/kubevisa-v_d1 was changed: subjects are .*mallory/);
    assert.equal(byReason.get('missing')?.binding, 'RoleBinding web/kubevisa-v_d1');
    assert.equal(byReason.get('unexpected')?.binding, 'RoleBinding prod-db/kubevisa-v_d1');
  });

  test('a just-granted visa and a just-ended one are given time to converge', () => {
    const young = desired.map((d) => ({ ...d, since: now - 5_000 }));
    assert.deepEqual(driftFindings({ ...base, desired: young, actual: [] }), []);
    const ended = driftFindings({
      ...base,
      desired: [],
      actual: desired.map((d) => d.binding),
      recentlyEnded: new Set(['v_d1']),
    });
    assert.deepEqual(ended, []);
  });

  test('a widened profile ClusterRole is critical drift', () => {
    const widened = structuredClone(viewerRole);
    widened.rules.push(readSecrets);
    const [finding] = driftFindings({
      ...base,
      actual: desired.map((d) => d.binding),
      profileRoles: { desired: [viewerRole], actual: [widened] },
    });
    assert.equal(finding?.reason, 'profile-changed');
    assert.equal(finding.severity, 'critical');
    assert.deepEqual(finding.details.added, ['apiGroups=[""] resources=[secrets] verbs=[get]']);
    assert.equal(isAlertable(finding), true);
  });
});
