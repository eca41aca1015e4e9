import { test } from 'node:test';
import assert from 'node:assert/strict';
import { installObjects } from './install.ts';
import { CONTROLLER_USERNAME, SYSTEM_NAMESPACE } from './objects.ts';
import {
  EPOCH_ANNOTATION,
  FENCE_CONFIG_MAP,
  epochOf,
  fenceConfigMap,
  fencingPolicy,
  fencingPolicyBinding,
  stamped,
} from './fencing.ts';

test('the fencing policy judges only kubevisa’s own writes, against the fence ConfigMap, failing closed', () => {
  const policy = fencingPolicy().spec as {
    failurePolicy: string;
    paramKind: unknown;
    matchConditions: { expression: string }[];
    validations: { expression: string; reason: string }[];
  };
  assert.equal(policy.failurePolicy, 'Fail');
  assert.deepEqual(policy.paramKind, { apiVersion: 'v1', kind: 'ConfigMap' });
  assert.deepEqual(
    policy.matchConditions.map((condition) => condition.expression),
    [`request.userInfo.username == '${CONTROLLER_USERNAME}'`],
  );
  assert.ok(policy.validations.every((validation) => validation.reason === 'Forbidden'));
  const binding = fencingPolicyBinding().spec;
  assert.deepEqual(binding['paramRef'], {
    name: FENCE_CONFIG_MAP,
    namespace: SYSTEM_NAMESPACE,
    parameterNotFoundAction: 'Allow',
  });
  assert.deepEqual(binding['validationActions'], ['Deny']);
});

test('install ships the policy and its binding after kubevisa’s RBAC', () => {
  const kinds = installObjects([]).map((object) => object.kind);
  assert.deepEqual(kinds.slice(-2), ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
});

test('an object’s epoch is its annotation, 0 when it has none or an unreadable one', () => {
  const object = { metadata: { annotations: { other: 'x' } } };
  assert.equal(epochOf(object), 0);
  const marked = stamped(object, 7);
  assert.equal(epochOf(marked), 7);
  assert.deepEqual(object.metadata.annotations, { other: 'x' }, 'the original is not changed');
  assert.equal(epochOf({ metadata: { annotations: { [EPOCH_ANNOTATION]: '-3' } } }), 0);
  assert.deepEqual(fenceConfigMap(4).data, { epoch: '4' });
  assert.equal(epochOf(fenceConfigMap(4)), 4);
});
