import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEngagement, type EngagementInput } from './engagement.ts';
import { InvalidInput, ProtectedNamespace } from './errors.ts';
import type { Engagement } from './model.ts';
import {
  ALWAYS_PROTECTED_NAMESPACES,
  isProtectedNamespace,
  protectedCeilingWarnings,
  protectedReachedBy,
  validateProtectedNamespaces,
} from './protected-namespaces.ts';
import {
  admin,
  anEngagement,
  aPerson,
  aPolicy,
  aProfile,
  aRequestedVisa,
  aRequestInput,
  DAY,
  deepFreeze,
  HOUR,
  MINUTE,
  NOW,
  sponsor,
} from './testing/fixtures.ts';
import { approveVisa, extendVisa, requestVisa } from './visa.ts';

const kubeStar: Engagement = anEngagement({
  ceiling: { clusters: ['prod'], namespacePatterns: ['kube*', 'payments*', 'kubevisa-*'], profiles: ['viewer'] },
});

function refusedAsProtected(names: string[]) {
  return (error: unknown): boolean =>
    error instanceof ProtectedNamespace &&
    error.code === 'ERR_PROTECTED_NAMESPACE' &&
    error.status === 403 &&
    JSON.stringify(error.details?.['protected']) === JSON.stringify(names) &&
    /never grants the cluster's system namespaces \(kube-system, kube-public, kube-node-lease\), its own \(kubevisa-visas, kubevisa-system\)/.test(
      error.message,
    );
}

describe('protected namespaces', () => {
  it("always protects the cluster's system namespaces and kubevisa's own", () => {
    assert.deepEqual([...ALWAYS_PROTECTED_NAMESPACES].sort(), [
      'kube-node-lease',
      'kube-public',
      'kube-system',
      'kubevisa-system',
      'kubevisa-visas',
    ]);
    for (const namespace of ALWAYS_PROTECTED_NAMESPACES) assert.equal(isProtectedNamespace(namespace), true);
    assert.equal(isProtectedNamespace('kube-systems'), false, 'exact names, not prefixes');
    assert.equal(isProtectedNamespace('payments'), false);
  });

  it("adds an admin's names and prefix patterns", () => {
    const extra = ['vault', 'secrets-*'];
    assert.equal(isProtectedNamespace('vault', extra), true);
    assert.equal(isProtectedNamespace('secrets-db', extra), true);
    assert.equal(isProtectedNamespace('vault-ui', extra), false);
  });

  it('validates configured entries and says what is allowed', () => {
    assert.deepEqual(validateProtectedNamespaces(['vault', 'secrets-*', 'vault'], 'protectedNamespaces'), [
      'vault',
      'secrets-*',
    ]);
    assert.deepEqual(validateProtectedNamespaces(undefined, 'protectedNamespaces'), []);
    assert.throws(
      () => validateProtectedNamespaces(['Vault', '*'], 'protectedNamespaces'),
      (error: unknown) =>
        error instanceof InvalidInput && /'Vault', '\*'.*namespace names .* trailing \*/.test(error.message),
    );
  });

  it('knows what a ceiling pattern reaches, exact or by prefix', () => {
    assert.deepEqual(protectedReachedBy('kube*'), [
      'kube-system',
      'kube-public',
      'kube-node-lease',
      'kubevisa-visas',
      'kubevisa-system',
    ]);
    assert.deepEqual(protectedReachedBy('kube-system'), ['kube-system']);
    assert.deepEqual(protectedReachedBy('payments'), []);
    assert.deepEqual(protectedReachedBy('secrets*', ['secrets-db']), ['secrets-db']);
    assert.deepEqual(protectedReachedBy('sec*', ['secrets-*']), ['secrets-*']);
    assert.deepEqual(protectedReachedBy('secrets-db-*', ['secrets-*']), ['secrets-*']);
  });
});

describe('engagement creation with protected namespaces', () => {
  const ctx = { now: NOW, actor: admin, knownProfiles: ['viewer'], knownClusters: ['prod'] };
  const input = (namespacePatterns: string[]): EngagementInput => ({
    id: 'e_x',
    name: 'x',
    vendor: 'Acme',
    contractors: ['carol@vendor.example'],
    sponsor: 'sam@corp.example',
    endsAt: NOW + 30 * DAY,
    ceiling: { clusters: ['prod'], namespacePatterns, profiles: ['viewer'] },
    maxVisaSeconds: 3600,
  });

  it('refuses a ceiling that names a protected namespace exactly', () => {
    assert.throws(
      () => createEngagement(input(['payments', 'kubevisa-visas']), ctx),
      (error: unknown) => {
        return (
          error instanceof ProtectedNamespace &&
          error.details?.['field'] === 'ceiling.namespacePatterns' &&
          /'kubevisa-visas' is a protected namespace and can never be granted.*remove it from the ceiling/.test(
            error.message,
          )
        );
      },
    );
    assert.throws(
      () => createEngagement(input(['vault']), { ...ctx, protectedNamespaces: ['vault'] }),
      ProtectedNamespace,
    );
  });

  it('accepts a pattern that merely matches protected namespaces, and says they are never granted', () => {
    const engagement = createEngagement(input(['kube*', 'payments']), ctx);
    assert.deepEqual(engagement.ceiling.namespacePatterns, ['kube*', 'payments']);
    const [warning, ...more] = protectedCeilingWarnings(engagement.ceiling.namespacePatterns);
    assert.equal(more.length, 0);
    assert.match(warning!, /'kube\*' also matches protected kube-system, .*kubevisa-system: .* never grant them/);
  });
});

describe('visa requests, extensions and approvals with protected namespaces', () => {
  const context = (policy = aPolicy()) => ({
    person: aPerson(),
    engagement: kubeStar,
    profile: aProfile(),
    policy,
    now: NOW,
  });

  it('refuses a request for kube-system although the ceiling kube* matches it', () => {
    assert.throws(
      () => requestVisa(aRequestInput({ namespaces: ['payments-eu', 'kube-system'] }), context()),
      refusedAsProtected(['kube-system']),
    );
    assert.throws(
      () => requestVisa(aRequestInput({ namespaces: ['kubevisa-system'] }), context()),
      refusedAsProtected(['kubevisa-system']),
    );
  });

  it('refuses a namespace an admin protected, and names the configuration', () => {
    assert.throws(
      () =>
        requestVisa(
          aRequestInput({ namespaces: ['payments-vault'] }),
          context(aPolicy({ protectedNamespaces: ['payments-vault'] })),
        ),
      (error: unknown) =>
        error instanceof ProtectedNamespace && /protected by the configuration \(payments-vault\)/.test(error.message),
    );
    assert.equal(requestVisa(aRequestInput({ namespaces: ['payments-eu'] }), context()).namespaces[0], 'payments-eu');
  });

  it('refuses to approve a request made before its namespace became protected', () => {
    const requested = deepFreeze(aRequestedVisa({ namespaces: ['payments'] }));
    const policy = aPolicy({ protectedNamespaces: ['payments'] });
    const approval = { engagement: anEngagement(), policy, now: NOW + MINUTE };
    assert.throws(
      () => approveVisa(requested, sponsor, approval),
      (error: unknown) =>
        error instanceof ProtectedNamespace && /approving visa v_one is refused.*deny it/.test(error.message),
    );
  });

  it('refuses to extend a visa into a namespace that became protected', () => {
    const active = approveVisa(deepFreeze(aRequestedVisa()), sponsor, {
      engagement: anEngagement(),
      policy: aPolicy(),
      now: NOW + MINUTE,
    });
    assert.throws(
      () =>
        extendVisa(
          active,
          { id: 'v_two', durationSeconds: 3600, reason: 'more' },
          {
            person: aPerson(),
            engagement: anEngagement(),
            profile: aProfile(),
            policy: aPolicy({ protectedNamespaces: ['payments'] }),
            now: NOW + HOUR,
          },
        ),
      refusedAsProtected(['payments']),
    );
  });
});
