import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Visa } from '../domain/model.ts';
import { auditUseOf, parseAuditLine, parseAuditPayload, serviceAccountOf } from './audit-log.ts';
import { findStaleAccess } from './staleness.ts';
import { UsageTracker } from './usage.ts';

// Quoted from the test control plane's kube-apiserver (v1.37.2, audit level Metadata): a request made with a legacy
// token Secret, and the same request impersonated (how the gateway reaches the cluster).
const LEGACY_TOKEN_LINE =
  '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"d411b4c5-4728-4577-93dc-06d26d20ac2c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/pods?limit=500","verb":"list","user":{"username":"system:serviceaccount:ci:deployer","uid":"852851bc-1132-4f64-8b0c-09ba4e3ecd3c","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v0.0.0 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"pods","namespace":"ci","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T23:56:54.765315Z","stageTimestamp":"2026-11-27T23:56:54.770146Z","annotations":{"authentication.k8s.io/legacy-token":"system:serviceaccount:ci:deployer","authentication.k8s.io/legacy-token-manual-secret":"deployer-token","authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \\"deployer/ci\\" of ClusterRole \\"view\\" to ServiceAccount \\"deployer/ci\\""}}';
const IMPERSONATED_LINE =
  '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"af2af893-65a4-450a-a731-08bac2cffc30","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/pods?limit=500","verb":"list","user":{"username":"kubevisa-dev-admin","groups":["system:masters","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=eee034db675a036a72e1c006717b9abfa7963dc371820b5fc912386a3e14f869"]}},"impersonatedUser":{"username":"system:serviceaccount:ci:deployer","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"]},"authenticationMetadata":{"impersonationConstraint":"impersonate:serviceaccount"},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v0.0.0 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"pods","namespace":"ci","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T23:56:54.827880Z","stageTimestamp":"2026-11-27T23:56:54.830023Z","annotations":{"authorization.k8s.io/decision":"allow"}}';

describe('reading kube-apiserver audit events', () => {
  test('a request with a legacy token: who, when, where, and that the token never expires', () => {
    const use = parseAuditLine(LEGACY_TOKEN_LINE);
    assert.deepEqual(use, {
      at: Date.parse('2026-11-27T23:56:54.770146Z'),
      username: 'system:serviceaccount:ci:deployer',
      serviceAccount: { namespace: 'ci', name: 'deployer' },
      namespace: 'ci',
      legacyToken: true,
      code: 200,
    });
  });

  test('an impersonated request counts for the impersonated account, not the one that impersonated', () => {
    const use = parseAuditLine(IMPERSONATED_LINE);
    assert.equal(use?.username, 'system:serviceaccount:ci:deployer');
    assert.equal(use.legacyToken, false);
    assert.equal(use.credentialId, undefined, "the impersonator's credential id is not the person's");
  });

  test('a bound token’s credential id is kept (it names the token, it is not the token)', () => {
    const event = JSON.parse(LEGACY_TOKEN_LINE) as Record<string, unknown>;
    event['annotations'] = {};
    (event['user'] as Record<string, unknown>)['extra'] = { 'authentication.kubernetes.io/credential-id': ['JTI=abc'] };
    assert.equal(auditUseOf(event)?.credentialId, 'JTI=abc');
  });

  test('other stages, blank, truncated and foreign lines are skipped', () => {
    assert.equal(parseAuditLine(LEGACY_TOKEN_LINE.replace('ResponseComplete', 'ResponseStarted')), undefined);
    assert.equal(parseAuditLine(''), undefined);
    assert.equal(parseAuditLine(LEGACY_TOKEN_LINE.slice(0, 200)), undefined);
    assert.equal(parseAuditLine('{"kind":"Status"}'), undefined);
    assert.equal(parseAuditLine('not json'), undefined);
  });

  test('an audit webhook EventList', () => {
    const body = {
      kind: 'EventList',
      items: [JSON.parse(LEGACY_TOKEN_LINE), JSON.parse(IMPERSONATED_LINE), { kind: 'x' }],
    };
    assert.equal(parseAuditPayload(body).length, 2);
  });

  test("an EventList as kube-apiserver's webhook sends it: the items carry no kind of their own", () => {
    const withoutKind = (line: string) => {
      const { kind: _kind, apiVersion: _apiVersion, ...item } = JSON.parse(line) as Record<string, unknown>;
      return item;
    };
    const body = {
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      items: [withoutKind(LEGACY_TOKEN_LINE), withoutKind(IMPERSONATED_LINE), { kind: 'Status' }],
    };
    const uses = parseAuditPayload(body);
    assert.equal(uses.length, 2, 'both events read, the item of another kind not');
    assert.deepEqual(
      uses.map((use) => use.username),
      [auditUseOf(JSON.parse(LEGACY_TOKEN_LINE))?.username, auditUseOf(JSON.parse(IMPERSONATED_LINE))?.username],
    );
  });

  test('ServiceAccount usernames', () => {
    assert.deepEqual(serviceAccountOf('system:serviceaccount:kubevisa-visas:cora-1'), {
      namespace: 'kubevisa-visas',
      name: 'cora-1',
    });
    assert.equal(serviceAccountOf('system:serviceaccount:broken'), undefined);
    assert.equal(serviceAccountOf('alice@example.com'), undefined);
  });
});

describe('UsageTracker', () => {
  test('last use only moves forward, whatever order uses arrive in', () => {
    const usage = new UsageTracker();
    usage.recordUse('p_1', 'v_1', 2000);
    usage.recordUse('p_1', 'v_1', 1000);
    usage.recordUse('p_1', undefined, 1500);
    assert.equal(usage.lastUseOfVisa('v_1'), 2000);
    assert.equal(usage.lastUseOfPerson('p_1'), 2000);
  });

  test('a snapshot restores into a new tracker, merged with what it recorded meanwhile', () => {
    const first = new UsageTracker();
    first.recordUse('p_1', 'v_1', 1000);
    first.recordLegacyTokenUse('prod', { namespace: 'ci', name: 'deployer' }, 500);
    const second = new UsageTracker();
    second.recordUse('p_1', 'v_1', 3000);
    second.restore(JSON.parse(JSON.stringify(first.snapshot())));
    assert.equal(second.lastUseOfVisa('v_1'), 3000);
    assert.deepEqual(second.legacyTokenUses('prod'), [{ serviceAccount: 'ci/deployer', lastSeen: 500 }]);
    assert.deepEqual(second.legacyTokenUses('staging'), []);
  });

  test('takeChanged says whether anything new was recorded since it was last asked', () => {
    const usage = new UsageTracker();
    assert.equal(usage.takeChanged(), false);
    usage.recordUse('p_1', 'v_1', 1000);
    assert.equal(usage.takeChanged(), true);
    usage.recordUse('p_1', 'v_1', 900);
    assert.equal(usage.takeChanged(), false);
  });

  test('forget drops ended visas and people without access', () => {
    const usage = new UsageTracker();
    usage.recordUse('p_1', 'v_1', 1000);
    usage.recordUse('p_2', 'v_2', 1000);
    usage.forget({ visaIds: new Set(['v_2']), personIds: new Set(['p_2']) });
    assert.equal(usage.lastUseOfVisa('v_1'), undefined);
    assert.equal(usage.lastUseOfPerson('p_1'), undefined);
    assert.equal(usage.lastUseOfVisa('v_2'), 1000);
  });
});

describe('stale access', () => {
  const DAY = 86_400_000;
  const now = Date.UTC(2026, 2, 20);
  const visa = (id: string, personId: string, notBefore: number): Visa => ({
    id,
    engagementId: 'e_1',
    personId,
    personEmail: `${personId}@vendor.example`,
    cluster: 'prod',
    namespaces: ['payments'],
    profile: 'viewer',
    reason: 'r',
    requestedAt: notBefore,
    requestedSeconds: 30 * 86_400,
    notBefore,
    notAfter: notBefore + 30 * DAY,
    state: 'active',
    approvals: [],
    requiredApprovals: 1,
  });

  test('unused for N days counts from the last use, or from the start when never used', () => {
    const usage = new UsageTracker();
    usage.recordUse('p_a', 'v_used', now - 2 * DAY);
    usage.recordUse('p_b', 'v_old_use', now - 20 * DAY);
    const report = findStaleAccess({
      granting: [
        visa('v_used', 'p_a', now - 20 * DAY),
        visa('v_old_use', 'p_b', now - 25 * DAY),
        visa('v_never', 'p_c', now - 15 * DAY),
        visa('v_young', 'p_d', now - 3 * DAY),
      ],
      lastUseOfVisa: (id) => usage.lastUseOfVisa(id),
      lastUseOfPerson: (id) => usage.lastUseOfPerson(id),
      now,
      staleAfterMs: 14 * DAY,
    });
    assert.deepEqual(
      report.visas.map((s) => [s.visa.id, s.lastUsedAt === undefined ? 'never' : 'used', Math.round(s.idleMs / DAY)]),
      [
        ['v_old_use', 'used', 20],
        ['v_never', 'never', 15],
      ],
    );
    assert.deepEqual(
      report.persons.map((p) => p.personId),
      ['p_b', 'p_c'],
    );
  });

  test('a person is not stale while any use of theirs is recent, even if one visa is', () => {
    const report = findStaleAccess({
      granting: [visa('v_1', 'p_a', now - 20 * DAY), visa('v_2', 'p_a', now - 20 * DAY)],
      lastUseOfVisa: (id) => (id === 'v_2' ? now - DAY : undefined),
      lastUseOfPerson: () => now - DAY,
      now,
      staleAfterMs: 14 * DAY,
    });
    assert.deepEqual(
      report.visas.map((s) => s.visa.id),
      ['v_1'],
    );
    assert.deepEqual(report.persons, []);
  });
});
