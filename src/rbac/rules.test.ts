import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyRule } from '../domain/model.ts';
import { listsVerb, ruleGrants, ruleGrantsAny } from './rules.ts';

const readPods: PolicyRule = { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] };

describe('ruleGrants', () => {
  it('grants a listed verb on a listed resource in the core group', () => {
    assert.equal(ruleGrants(readPods, { apiGroup: '', resource: 'pods', verbs: ['get'] }), true);
  });

  it('does not grant an unlisted verb', () => {
    assert.equal(ruleGrants(readPods, { apiGroup: '', resource: 'pods', verbs: ['delete'] }), false);
  });

  it('does not grant the same resource name in another API group', () => {
    assert.equal(ruleGrants(readPods, { apiGroup: 'metrics.k8s.io', resource: 'pods', verbs: ['get'] }), false);
  });

  it('does not include subresources in the parent resource', () => {
    assert.equal(ruleGrants(readPods, { apiGroup: '', resource: 'pods/exec', verbs: ['get'] }), false);
  });

  it('matches a subresource through */<subresource>', () => {
    const anyExec: PolicyRule = { apiGroups: [''], resources: ['*/exec'], verbs: ['create'] };
    assert.equal(ruleGrants(anyExec, { apiGroup: '', resource: 'pods/exec', verbs: ['create'] }), true);
    assert.equal(ruleGrants(anyExec, { apiGroup: '', resource: 'pods', verbs: ['create'] }), false);
  });

  it('matches everything through * in group, resource and verb', () => {
    const all: PolicyRule = { apiGroups: ['*'], resources: ['*'], verbs: ['*'] };
    assert.equal(
      ruleGrants(all, { apiGroup: 'rbac.authorization.k8s.io', resource: 'clusterroles', verbs: ['escalate'] }),
      true,
    );
    assert.equal(ruleGrants(all, { apiGroup: '', resource: 'pods/exec', verbs: 'any' }), true);
  });

  it('compares names case-sensitively, as RBAC does', () => {
    const shouting: PolicyRule = { apiGroups: [''], resources: ['Secrets'], verbs: ['GET'] };
    assert.equal(ruleGrants(shouting, { apiGroup: '', resource: 'secrets', verbs: ['get'] }), false);
  });

  it('grants nothing without apiGroups', () => {
    assert.equal(
      ruleGrants({ resources: ['pods'], verbs: ['get'] }, { apiGroup: '', resource: 'pods', verbs: 'any' }),
      false,
    );
  });

  it('counts any verb when asked for any', () => {
    assert.equal(ruleGrants(readPods, { apiGroup: '', resource: 'pods', verbs: 'any' }), true);
    assert.equal(ruleGrants({ ...readPods, verbs: [] }, { apiGroup: '', resource: 'pods', verbs: 'any' }), false);
  });
});

describe('ruleGrantsAny and listsVerb', () => {
  it('is true when one of several resources is granted', () => {
    assert.equal(ruleGrantsAny(readPods, '', ['secrets', 'pods'], ['list']), true);
    assert.equal(ruleGrantsAny(readPods, '', ['secrets', 'nodes'], ['list']), false);
  });

  it('tells a named verb from one reached through *', () => {
    assert.equal(listsVerb({ verbs: ['bind'] }, 'bind'), true);
    assert.equal(listsVerb({ verbs: ['*'] }, 'bind'), false);
  });
});
