import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { profileClusterRole, type ClusterRole } from '../cluster/objects.ts';
import { viewerProfile } from '../rbac/profiles.ts';
import { alertFromAudit } from '../monitor/notices.ts';
import type { AuditEvent } from '../store/store.ts';
import { profileDrift, rulesSummary } from './profiles.ts';

const installed = (change: (role: ClusterRole) => ClusterRole = (role) => role): ClusterRole =>
  change({
    ...profileClusterRole(viewerProfile),
    metadata: { ...profileClusterRole(viewerProfile).metadata, resourceVersion: '7' },
  });

describe('profileDrift', () => {
  it('finds nothing when the installed role holds the reviewed rules, in any order', () => {
    assert.deepEqual(
      profileDrift([viewerProfile], [installed((role) => ({ ...role, rules: [...role.rules].reverse() }))]),
      [],
    );
  });

  it('reports a widened role with what was added, and the reviewed role to restore', () => {
    const widened = installed((role) => ({
      ...role,
      rules: [...role.rules, { apiGroups: [''], resources: ['secrets'], verbs: ['get'] }],
    }));
    const [drift, ...more] = profileDrift([viewerProfile], [widened]);
    assert.equal(more.length, 0);
    assert.deepEqual(drift?.added, ['apiGroups=[""] resources=[secrets] verbs=[get]']);
    assert.deepEqual(drift?.removed, []);
    assert.deepEqual(drift?.desired.rules, profileClusterRole(viewerProfile).rules);
    assert.equal(drift?.actual.metadata.resourceVersion, '7');
  });

  it('reports a narrowed role and an aggregation rule, and ignores profiles this cluster does not have', () => {
    const narrowed = installed((role) => ({ ...role, rules: role.rules.slice(1) }));
    assert.equal(profileDrift([viewerProfile], [narrowed])[0]?.removed.length, 1);
    const aggregated = installed((role) => ({ ...role, aggregationRule: { clusterRoleSelectors: [] } }) as ClusterRole);
    assert.match(profileDrift([viewerProfile], [aggregated])[0]?.added[0] ?? '', /aggregationRule/);
    assert.deepEqual(profileDrift([viewerProfile], []), []);
  });

  it('summarises rules one per clause for the audit trail', () => {
    assert.equal(rulesSummary([]), '(no rules)');
    assert.match(
      rulesSummary(profileClusterRole(viewerProfile).rules),
      /^apiGroups=\[""\] resources=\[.*pods.*\] verbs=\[get,list,watch\]; /,
    );
  });
});

describe('alerts for a profile ClusterRole edited by hand', () => {
  const event = (action: string, details: AuditEvent['details']): AuditEvent => ({
    seq: 9,
    at: Date.UTC(2026, 2, 2, 9, 30),
    actor: 'system',
    action,
    cluster: 'prod',
    outcome: action.endsWith('failed') ? 'error' : 'ok',
    details,
    ...(action.endsWith('failed') ? { reason: 'forbidden' } : {}),
    prevHash: '0'.repeat(64),
    hash: '1'.repeat(64),
  });

  it('says what was added and that it was restored', () => {
    const alert = alertFromAudit(
      event('cluster.drift.repaired', {
        object: 'ClusterRole kubevisa:profile:viewer',
        name: 'kubevisa:profile:viewer',
        added: 'apiGroups=[""] resources=[secrets] verbs=[get]',
      }),
      {},
    );
    assert.equal(alert?.event, 'drift-repaired');
    assert.equal(alert?.title, 'Drift repaired: ClusterRole kubevisa:profile:viewer');
    assert.match(
      alert?.text ?? '',
      /adding apiGroups=\[""\] resources=\[secrets\] verbs=\[get\]; kubevisa restored the reviewed rules/,
    );
  });

  it('is critical when kubevisa could not restore it', () => {
    const alert = alertFromAudit(
      event('cluster.drift.repair-failed', { object: 'ClusterRole kubevisa:profile:viewer' }),
      {},
    );
    assert.equal(alert?.event, 'drift-detected');
    assert.equal(alert?.severity, 'critical');
    assert.match(
      alert?.text ?? '',
      /kubevisa:profile:viewer in cluster prod differs from what kubevisa installed and was not put back: forbidden\./,
    );
  });
});
