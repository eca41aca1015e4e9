import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidInput, RiskyProfile } from '../domain/errors.ts';
import { isDnsLabel, personHash, serviceAccountName } from '../domain/names.ts';
import { aProfile, aRequestedVisa, CONTRACTOR_EMAIL } from '../domain/testing/fixtures.ts';
import { ruleGrants } from '../rbac/rules.ts';
import { SHIPPED_PROFILES, viewerProfile } from '../rbac/profiles.ts';
import {
  PROFILE_CLUSTER_ROLE_SELECTOR,
  VISA_ROLE_BINDING_SELECTOR,
  isManaged,
  isVisaRoleBinding,
  kubevisaControllerRbac,
  kubevisaNamespaces,
  controllerServiceAccount,
  needsRecreate,
  personServiceAccount,
  profileClusterRole,
  roleBindingDifferences,
  roleBindingMatches,
  visaRoleBinding,
  type RoleBinding,
} from './objects.ts';

const visa = {
  ...aRequestedVisa({ namespaces: ['payments', 'staging-eu'] }),
  notAfter: Date.UTC(2026, 2, 2, 18, 0, 0),
};

describe('personServiceAccount', () => {
  it('is named from the email, lives in kubevisa-visas, and carries exactly the labels and annotations', () => {
    const account = personServiceAccount({ email: CONTRACTOR_EMAIL, personId: 'p_carol' });
    assert.deepEqual(account, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: {
        name: serviceAccountName(CONTRACTOR_EMAIL),
        namespace: 'kubevisa-visas',
        labels: { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/person': personHash(CONTRACTOR_EMAIL) },
        annotations: { 'kubevisa.io/person': CONTRACTOR_EMAIL, 'kubevisa.io/person-id': 'p_carol' },
      },
      automountServiceAccountToken: false,
    });
    assert.ok(isDnsLabel(account.metadata.name));
    assert.match(account.metadata.name, /^carol-vendor-example-[0-9a-f]{10}$/);
  });

  it('gives a long, odd email a valid name (≤ 63 characters) and keeps the email only in the annotation', () => {
    const email = `${'Ünïcödé.'.repeat(10)}@Vendor.Example`;
    const account = personServiceAccount({ email, personId: 'p_x' });
    assert.ok(isDnsLabel(account.metadata.name), account.metadata.name);
    assert.equal(account.metadata.annotations['kubevisa.io/person'], email);
    assert.match(account.metadata.labels['kubevisa.io/person'] ?? '', /^[0-9a-f]{16}$/);
  });
});

describe('visaRoleBinding', () => {
  it('binds the holder’s ServiceAccount to the profile ClusterRole with exactly the labels and annotations', () => {
    assert.deepEqual(visaRoleBinding({ visa, namespace: 'staging-eu' }), {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: {
        name: `kubevisa-${visa.id}`,
        namespace: 'staging-eu',
        labels: {
          'app.kubernetes.io/managed-by': 'kubevisa',
          'kubevisa.io/visa': visa.id,
          'kubevisa.io/person': personHash(CONTRACTOR_EMAIL),
        },
        annotations: {
          'kubevisa.io/not-after': '2026-03-02T18:00:00Z',
          'kubevisa.io/person': CONTRACTOR_EMAIL,
          'kubevisa.io/reason': visa.reason,
        },
      },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccountName(CONTRACTOR_EMAIL), namespace: 'kubevisa-visas' }],
    });
  });

  it('writes not-after as RFC 3339 in UTC, with milliseconds only when there are some', () => {
    const odd = { ...visa, notAfter: Date.UTC(2026, 2, 2, 18, 0, 0, 250) };
    assert.equal(
      visaRoleBinding({ visa: odd, namespace: 'payments' }).metadata.annotations['kubevisa.io/not-after'],
      '2026-03-02T18:00:00.250Z',
    );
  });

  it('refuses a namespace the visa does not grant', () => {
    assert.throws(
      () => visaRoleBinding({ visa, namespace: 'kube-system' }),
      (error: unknown) => error instanceof InvalidInput && /does not grant namespace 'kube-system'/.test(error.message),
    );
  });

  it('is a visa binding the managed selector finds', () => {
    const binding = visaRoleBinding({ visa, namespace: 'payments' });
    assert.equal(isManaged(binding), true);
    assert.equal(isVisaRoleBinding(binding), true);
    assert.equal(VISA_ROLE_BINDING_SELECTOR, 'app.kubernetes.io/managed-by=kubevisa,kubevisa.io/visa');
  });
});

describe('profileClusterRole', () => {
  it('installs a shipped profile as kubevisa:profile:<name> with copies of its rules', () => {
    const role = profileClusterRole(viewerProfile);
    assert.equal(role.metadata.name, 'kubevisa:profile:viewer');
    assert.deepEqual(role.metadata.labels, {
      'app.kubernetes.io/managed-by': 'kubevisa',
      // Own objects are selected by part-of, which `helm install` leaves alone (it sets managed-by to Helm).
      'app.kubernetes.io/part-of': 'kubevisa',
      'kubevisa.io/profile': 'viewer',
    });
    assert.equal(PROFILE_CLUSTER_ROLE_SELECTOR, 'kubevisa.io/profile');
    assert.deepEqual(role.rules, viewerProfile.rules);
    assert.notEqual(role.rules[0], viewerProfile.rules[0]);
    role.rules[0]!.verbs.push('delete');
    assert.ok(!viewerProfile.rules[0]!.verbs.includes('delete'), 'the shipped profile is untouched');
  });

  it('accepts every shipped profile', () => {
    for (const profile of SHIPPED_PROFILES) assert.doesNotThrow(() => profileClusterRole(profile), profile.name);
  });

  it('refuses a profile with an undeclared risky rule', () => {
    const risky = aProfile({ name: 'peeker', rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }] });
    assert.throws(() => profileClusterRole(risky), RiskyProfile);
  });
});

describe('kubevisaControllerRbac', () => {
  const rbac = kubevisaControllerRbac(['viewer', 'developer', 'viewer']);
  const allRules = [...rbac.clusterRole.rules, ...rbac.visasRole.rules, ...rbac.selfTokenRole.rules];

  it('lets kubevisa bind, and restore in place, exactly the named profile ClusterRoles', () => {
    const profileRules = rbac.clusterRole.rules.filter((rule) =>
      (rule.resourceNames ?? []).some((name) => name.startsWith('kubevisa:profile:')),
    );
    assert.deepEqual(profileRules, [
      {
        apiGroups: ['rbac.authorization.k8s.io'],
        resources: ['clusterroles'],
        verbs: ['bind', 'escalate', 'update'],
        resourceNames: ['kubevisa:profile:developer', 'kubevisa:profile:viewer'],
      },
    ]);
  });

  it('leaves the bind rule out when there are no profiles (empty resourceNames would mean every ClusterRole)', () => {
    const none = kubevisaControllerRbac([]);
    assert.ok(none.clusterRole.rules.every((rule) => !rule.verbs.includes('bind')));
  });

  it('has no escalate beyond the profiles, no wildcard, no Secrets, no ClusterRoleBinding writes, no user or group impersonation', () => {
    for (const rule of allRules) {
      if (rule.verbs.includes('escalate')) {
        assert.ok(
          rule.resourceNames?.length && rule.resourceNames.every((name) => name.startsWith('kubevisa:profile:')),
        );
      }
      assert.ok(![...rule.verbs, ...(rule.resources ?? []), ...(rule.apiGroups ?? [])].includes('*'));
    }
    const grants = (apiGroup: string, resource: string, verbs: string[]) =>
      allRules.some((rule) => ruleGrants(rule, { apiGroup, resource, verbs }));
    assert.equal(grants('', 'secrets', ['get', 'list', 'watch', 'create']), false);
    assert.equal(
      grants('rbac.authorization.k8s.io', 'clusterrolebindings', ['create', 'update', 'patch', 'delete']),
      false,
    );
    assert.equal(grants('rbac.authorization.k8s.io', 'clusterroles', ['create', 'patch', 'delete']), false);
    const unnamed = allRules.filter((rule) => (rule.resourceNames ?? []).length === 0);
    assert.equal(
      unnamed.some((rule) =>
        ruleGrants(rule, {
          apiGroup: 'rbac.authorization.k8s.io',
          resource: 'clusterroles',
          verbs: ['update', 'escalate', 'bind'],
        }),
      ),
      false,
      'update, escalate and bind only by name',
    );
    assert.equal(grants('rbac.authorization.k8s.io', 'roles', ['create', 'patch', 'delete']), false);
    // Updates of its own roles only, by name: Kubernetes then accepts only rules kubevisa already holds.
    const updatable = allRules
      .filter((rule) => rule.verbs.includes('update') && rule.resources?.some((r) => r.endsWith('roles')))
      .flatMap((rule) => rule.resourceNames ?? ['(any)']);
    assert.deepEqual(updatable.sort(), [
      'kubevisa:controller',
      'kubevisa:profile:developer',
      'kubevisa:profile:viewer',
      'kubevisa:self-token',
      'kubevisa:visas',
    ]);
    assert.equal(grants('', 'users', ['impersonate']), false);
    assert.equal(grants('', 'groups', ['impersonate']), false);
    assert.equal(grants('authentication.k8s.io', 'userextras/scopes', ['impersonate']), false);
    assert.equal(grants('', 'namespaces', ['create', 'update', 'patch', 'delete']), false);
    assert.equal(grants('', 'pods', ['get', 'create']), false);
  });

  it('keeps ServiceAccounts, their tokens and impersonation inside kubevisa-visas (a namespaced Role)', () => {
    assert.equal(rbac.visasRole.metadata.namespace, 'kubevisa-visas');
    assert.ok(
      rbac.clusterRole.rules.every((rule) => !(rule.resources ?? []).some((r) => r.startsWith('serviceaccounts'))),
    );
    assert.deepEqual(
      rbac.visasRole.rules.map((rule) => `${rule.resources?.join(',')}:${rule.verbs.join(',')}`),
      [
        'serviceaccounts:get,list,watch,create,update,patch,delete',
        'serviceaccounts/token:create',
        'serviceaccounts:impersonate',
        'roles:update',
      ],
    );
    assert.deepEqual(rbac.visasRoleBinding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'kubevisa:visas',
    });
  });

  it('lets kubevisa renew its own token and no other, and raise its fence, in kubevisa-system', () => {
    assert.equal(rbac.selfTokenRole.metadata.namespace, 'kubevisa-system');
    assert.deepEqual(rbac.selfTokenRole.rules, [
      { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'], resourceNames: ['kubevisa'] },
      {
        apiGroups: ['rbac.authorization.k8s.io'],
        resources: ['roles'],
        verbs: ['update'],
        resourceNames: ['kubevisa:self-token'],
      },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'update'], resourceNames: ['kubevisa-fence'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    ]);
  });

  it('binds everything to ServiceAccount kubevisa in kubevisa-system, labelled as kubevisa’s own (not a visa’s)', () => {
    const subject = { kind: 'ServiceAccount', name: 'kubevisa', namespace: 'kubevisa-system' };
    for (const binding of [rbac.clusterRoleBinding, rbac.visasRoleBinding, rbac.selfTokenRoleBinding]) {
      assert.deepEqual(binding.subjects, [subject]);
      assert.equal(isManaged(binding), true);
    }
    assert.equal(isVisaRoleBinding(rbac.visasRoleBinding), false);
    assert.equal(isVisaRoleBinding(rbac.selfTokenRoleBinding), false);
    assert.deepEqual(rbac.clusterRoleBinding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'kubevisa:controller',
    });
  });

  it('names the namespaces and kubevisa’s ServiceAccount', () => {
    assert.deepEqual(
      kubevisaNamespaces().map((namespace) => namespace.metadata.name),
      ['kubevisa-visas', 'kubevisa-system'],
    );
    const account = controllerServiceAccount();
    assert.equal(`${account.metadata.namespace}/${account.metadata.name}`, 'kubevisa-system/kubevisa');
    assert.equal(account.automountServiceAccountToken, false);
  });
});

describe('roleBindingDifferences', () => {
  const desired = visaRoleBinding({ visa, namespace: 'payments' });
  // What kube-apiserver sends back: server fields set, the ServiceAccount subject's empty apiGroup omitted,
  // and labels or annotations others added.
  const actual = (change: (binding: RoleBinding) => void = () => {}): RoleBinding => {
    const copy = structuredClone(desired);
    copy.metadata.resourceVersion = '4711';
    copy.metadata.uid = 'c0ffee';
    copy.metadata.labels['team'] = 'payments';
    copy.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'] = '{}';
    change(copy);
    return copy;
  };

  it('finds none in what the cluster sends back for the same binding', () => {
    assert.deepEqual(roleBindingDifferences(actual(), desired), []);
    assert.equal(roleBindingMatches(actual(), desired), true);
    assert.equal(
      roleBindingMatches(
        actual((b) => (b.subjects[0]!.apiGroup = '')),
        desired,
      ),
      true,
      'an explicit empty apiGroup is the default',
    );
  });

  it('reports a changed roleRef, which needs delete and create', () => {
    const changed = actual((b) => (b.roleRef.name = 'cluster-admin'));
    assert.deepEqual(roleBindingDifferences(changed, desired), [
      'roleRef is ClusterRole rbac.authorization.k8s.io/cluster-admin, expected ClusterRole rbac.authorization.k8s.io/kubevisa:profile:viewer',
    ]);
    assert.equal(needsRecreate(changed, desired), true);
    assert.equal(needsRecreate(actual(), desired), false);
  });

  it('reports an added subject', () => {
    const changed = actual((b) =>
      b.subjects.push({ kind: 'User', name: 'mallory@example.com', apiGroup: 'rbac.authorization.k8s.io' }),
    );
    const sa = serviceAccountName(CONTRACTOR_EMAIL);
    assert.deepEqual(roleBindingDifferences(changed, desired), [
      `subjects are [ServiceAccount kubevisa-visas/${sa}, User mallory@example.com], expected [ServiceAccount kubevisa-visas/${sa}]`,
    ]);
  });

  it('reports a subject moved to another namespace', () => {
    const changed = actual((b) => (b.subjects[0]!.namespace = 'default'));
    assert.equal(roleBindingDifferences(changed, desired).length, 1);
  });

  it('reports a removed or changed label and a changed not-after', () => {
    const changed = actual((b) => {
      delete b.metadata.labels['kubevisa.io/visa'];
      b.metadata.labels['app.kubernetes.io/managed-by'] = 'helm';
      b.metadata.annotations['kubevisa.io/not-after'] = '2099-01-01T00:00:00Z';
    });
    assert.deepEqual(roleBindingDifferences(changed, desired), [
      "label app.kubernetes.io/managed-by is 'helm', expected 'kubevisa'",
      'label kubevisa.io/visa is missing',
      "annotation kubevisa.io/not-after is '2099-01-01T00:00:00Z', expected '2026-03-02T18:00:00Z'",
    ]);
  });

  it('ignores the reason annotation and labels added by others', () => {
    const changed = actual((b) => (b.metadata.annotations['kubevisa.io/reason'] = 'edited'));
    assert.deepEqual(roleBindingDifferences(changed, desired), []);
  });

  it('reports a different namespace or name', () => {
    const changed = actual((b) => (b.metadata.namespace = 'staging-eu'));
    assert.deepEqual(roleBindingDifferences(changed, desired), [
      `is staging-eu/kubevisa-${visa.id}, expected payments/kubevisa-${visa.id}`,
    ]);
  });
});

describe('isManaged', () => {
  it('is true only for managed-by=kubevisa', () => {
    assert.equal(isManaged({ metadata: { labels: { 'app.kubernetes.io/managed-by': 'kubevisa' } } }), true);
    assert.equal(isManaged({ metadata: { labels: { 'app.kubernetes.io/managed-by': 'Kubevisa' } } }), false);
    assert.equal(isManaged({ metadata: { labels: {} } }), false);
    assert.equal(isManaged({}), false);
  });
});
