import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Profile } from '../domain/model.ts';
import { isDnsLabel, profileClusterRoleName } from '../domain/names.ts';
import {
  debuggerProfile,
  deployerProfile,
  developerProfile,
  findShippedProfile,
  SHIPPED_PROFILES,
  viewerProfile,
} from './profiles.ts';
import { ruleGrants, type RuleQuery } from './rules.ts';

function grants(profile: Profile, query: RuleQuery): boolean {
  return profile.rules.some((rule) => ruleGrants(rule, query));
}

const core = (resource: string, ...verbs: string[]): RuleQuery => ({ apiGroup: '', resource, verbs });
const apps = (resource: string, ...verbs: string[]): RuleQuery => ({ apiGroup: 'apps', resource, verbs });

describe('shipped profiles', () => {
  it('ships viewer, deployer, developer and debugger with valid, distinct names', () => {
    const names = SHIPPED_PROFILES.map((profile) => profile.name);
    assert.deepEqual([...names].sort(), ['debugger', 'deployer', 'developer', 'viewer']);
    assert.ok(names.every(isDnsLabel));
    assert.equal(profileClusterRoleName(viewerProfile.name), 'kubevisa:profile:viewer');
  });

  it('limits each profile to a sensible visa length', () => {
    assert.deepEqual(
      [viewerProfile, developerProfile, debuggerProfile, deployerProfile].map((profile) => profile.maxVisaSeconds),
      [7 * 86_400, 86_400, 8 * 3600, 12 * 3600],
    );
  });

  it('writes every rule out, without wildcards', () => {
    for (const profile of SHIPPED_PROFILES) {
      for (const rule of profile.rules) {
        const values = [...rule.verbs, ...(rule.resources ?? []), ...(rule.apiGroups ?? [])];
        assert.ok(!values.some((value) => value.includes('*')), `${profile.name}: ${JSON.stringify(rule)}`);
      }
    }
  });

  it('never lets any shipped profile read secrets, touch RBAC or write namespaces', () => {
    for (const profile of SHIPPED_PROFILES) {
      assert.equal(grants(profile, core('secrets', 'get', 'list', 'watch')), false, profile.name);
      assert.equal(
        grants(profile, { apiGroup: 'rbac.authorization.k8s.io', resource: 'rolebindings', verbs: 'any' }),
        false,
        profile.name,
      );
      assert.equal(grants(profile, core('namespaces', 'create', 'update', 'patch', 'delete')), false, profile.name);
      assert.equal(grants(profile, core('serviceaccounts/token', 'create')), false, profile.name);
    }
  });

  it('is frozen, so no caller can change what gets installed', () => {
    assert.throws(() => {
      (viewerProfile.rules as unknown[]).push({ verbs: ['*'] });
    }, TypeError);
    assert.throws(() => {
      (developerProfile.rules[0]?.verbs as string[]).push('*');
    }, TypeError);
  });

  it('is found by name', () => {
    assert.equal(findShippedProfile('debugger'), debuggerProfile);
    assert.equal(findShippedProfile('cluster-admin'), undefined);
  });
});

describe('viewer', () => {
  it('reads workloads, services, config maps and events', () => {
    for (const query of [
      core('pods', 'list'),
      core('services', 'get'),
      core('configmaps', 'watch'),
      core('events', 'list'),
      apps('deployments', 'get'),
    ]) {
      assert.equal(grants(viewerProfile, query), true, JSON.stringify(query));
    }
  });

  it('does not read logs or change anything', () => {
    assert.equal(grants(viewerProfile, core('pods/log', 'get')), false);
    assert.equal(grants(viewerProfile, core('pods', 'create', 'update', 'patch', 'delete')), false);
    assert.equal(grants(viewerProfile, apps('deployments', 'patch')), false);
  });
});

describe('developer', () => {
  it('edits workloads and reads logs', () => {
    assert.equal(grants(developerProfile, apps('deployments', 'create')), true);
    assert.equal(grants(developerProfile, apps('statefulsets', 'delete')), true);
    assert.equal(grants(developerProfile, core('configmaps', 'update')), true);
    assert.equal(
      grants(developerProfile, { apiGroup: 'networking.k8s.io', resource: 'ingresses', verbs: ['patch'] }),
      true,
    );
    assert.equal(grants(developerProfile, core('pods/log', 'get')), true);
  });

  it('cannot exec, attach or port-forward', () => {
    for (const subresource of ['exec', 'attach', 'portforward', 'ephemeralcontainers']) {
      assert.equal(
        grants(developerProfile, { apiGroup: '', resource: `pods/${subresource}`, verbs: 'any' }),
        false,
        subresource,
      );
    }
  });
});

describe('debugger', () => {
  it('adds logs, exec, attach and port-forward to viewing, with both WebSocket verbs', () => {
    for (const subresource of ['log', 'exec', 'attach', 'portforward']) {
      assert.equal(grants(debuggerProfile, core(`pods/${subresource}`, 'get')), true, subresource);
    }
    assert.equal(grants(debuggerProfile, core('pods/exec', 'create')), true);
  });

  it('declares each of those risks with a justification and records sessions', () => {
    assert.deepEqual(
      debuggerProfile.declaredRisks.map((declared) => declared.risk),
      ['pods-exec', 'pods-attach', 'pods-portforward'],
    );
    assert.ok(debuggerProfile.declaredRisks.every((declared) => declared.justification.length > 20));
    assert.equal(debuggerProfile.recordSessions, true);
  });

  it('changes nothing', () => {
    assert.equal(grants(debuggerProfile, apps('deployments', 'create', 'update', 'patch', 'delete')), false);
    assert.equal(grants(debuggerProfile, core('pods/ephemeralcontainers', 'patch')), false);
  });
});

describe('deployer', () => {
  it('rolls out, scales and rolls back deployments', () => {
    assert.equal(grants(deployerProfile, apps('deployments', 'create')), true);
    assert.equal(grants(deployerProfile, apps('deployments', 'patch')), true);
    assert.equal(grants(deployerProfile, apps('deployments/scale', 'update')), true);
    // `kubectl rollout undo` reads the history from replica sets and controller revisions.
    assert.equal(grants(deployerProfile, apps('replicasets', 'list')), true);
    assert.equal(grants(deployerProfile, apps('controllerrevisions', 'list')), true);
    assert.equal(grants(deployerProfile, { apiGroup: 'batch', resource: 'cronjobs', verbs: ['update'] }), true);
  });

  it('deletes nothing and cannot exec', () => {
    for (const profileQuery of [
      apps('deployments', 'delete'),
      core('services', 'delete'),
      core('configmaps', 'deletecollection'),
    ]) {
      assert.equal(grants(deployerProfile, profileQuery), false, JSON.stringify(profileQuery));
    }
    assert.equal(grants(deployerProfile, core('pods/exec', 'create', 'get')), false);
  });
});
