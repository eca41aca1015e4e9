import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiException } from '@kubernetes/client-node';
import { KubevisaError, NotFound } from '../domain/errors.ts';
import {
  AlreadyExists,
  ClusterForbidden,
  ClusterRequestFailed,
  ClusterUnauthorized,
  ClusterUnreachable,
  ObjectMissing,
  ResourceVersionConflict,
} from './errors.ts';
import { kubernetesStatusOf, toClusterError, toRoleBinding, toServiceAccount } from './transport.ts';

const context = {
  cluster: 'prod',
  server: 'https://10.0.0.1:6443',
  action: 'create RoleBinding payments/x',
  timeoutMs: 10_000,
};
const headers = { 'content-type': 'application/json', 'audit-id': '33b7a09e-1b2c-4263-a50e-7d5c56b3dd19' };

// Bodies exactly as kube-apiserver v1.37.2 sent them (client-node hands them over as JSON text).
const FORBIDDEN_BODY =
  '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"rolebindings.rbac.authorization.k8s.io is forbidden: User \\"system:serviceaccount:default:sa1\\" cannot create resource \\"rolebindings\\" in API group \\"rbac.authorization.k8s.io\\" in the namespace \\"default\\"","reason":"Forbidden","details":{"group":"rbac.authorization.k8s.io","kind":"rolebindings"},"code":403}';
const NAMESPACE_MISSING_BODY =
  '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"namespaces \\"nope\\" not found","reason":"NotFound","details":{"name":"nope","kind":"namespaces"},"code":404}';
const NAMESPACE_TERMINATING_BODY =
  '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"rolebindings.rbac.authorization.k8s.io \\"x\\" is forbidden: unable to create new content in namespace term because it is being terminated","reason":"Forbidden","details":{"name":"x","group":"rbac.authorization.k8s.io","kind":"rolebindings","causes":[{"reason":"NamespaceTerminating","message":"namespace term is being terminated","field":"metadata.namespace"}]},"code":403}';
const ALREADY_EXISTS_BODY =
  '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"rolebindings.rbac.authorization.k8s.io \\"x\\" already exists","reason":"AlreadyExists","details":{"name":"x","group":"rbac.authorization.k8s.io","kind":"rolebindings"},"code":409}';
const TOKEN_TOO_SHORT_BODY =
  '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"TokenRequest.authentication.k8s.io \\"\\" is invalid: spec.expirationSeconds: Invalid value: 100: may not specify a duration less than 10 minutes","reason":"Invalid","details":{"group":"authentication.k8s.io","kind":"TokenRequest","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 100: may not specify a duration less than 10 minutes","field":"spec.expirationSeconds"}]},"code":422}';

const apiError = (code: number, body: string | undefined) =>
  new ApiException<string | undefined>(code, 'Unknown API Status Code!', body, headers);

describe('kubernetesStatusOf', () => {
  it('reads the Status of an ApiException, causes included', () => {
    assert.deepEqual(kubernetesStatusOf(apiError(403, NAMESPACE_TERMINATING_BODY)), {
      code: 403,
      reason: 'Forbidden',
      message:
        'rolebindings.rbac.authorization.k8s.io "x" is forbidden: unable to create new content in namespace term because it is being terminated',
      details: {
        kind: 'rolebindings',
        name: 'x',
        causes: [
          {
            reason: 'NamespaceTerminating',
            message: 'namespace term is being terminated',
            field: 'metadata.namespace',
          },
        ],
      },
    });
  });

  it('reads a 401, for which client-node keeps no body', () => {
    const status = kubernetesStatusOf(new ApiException<undefined>(401, 'Unauthorized', undefined, headers));
    assert.deepEqual(status, { code: 401, reason: '', message: 'Unauthorized', details: { causes: [] } });
  });

  it('reads the error client-node’s Watch raises for a non-200 answer', () => {
    const error = Object.assign(new Error('Forbidden'), { statusCode: 403 });
    assert.deepEqual(kubernetesStatusOf(error), {
      code: 403,
      reason: '',
      message: 'Forbidden',
      details: { causes: [] },
    });
  });

  it('reads a body that is not JSON (a proxy’s HTML page) as its HTTP status', () => {
    assert.equal(kubernetesStatusOf(apiError(502, '<html>Bad Gateway</html>'))?.message, 'HTTP 502');
  });

  it('finds no Status when no answer came: a DOMException’s numeric code is not an HTTP status', () => {
    assert.equal(
      kubernetesStatusOf(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      undefined,
    );
    assert.equal(kubernetesStatusOf(new TypeError('fetch failed')), undefined);
    assert.equal(kubernetesStatusOf('a string'), undefined);
  });
});

describe('toClusterError', () => {
  it('turns a 403 into ClusterForbidden quoting the API', () => {
    const error = toClusterError(apiError(403, FORBIDDEN_BODY), context);
    assert.ok(error instanceof ClusterForbidden);
    assert.equal(error.code, 'ERR_CLUSTER_FORBIDDEN');
    assert.equal(error.status, 502);
    assert.equal(
      error.message,
      `cannot create RoleBinding payments/x: cluster 'prod' answered 403: rolebindings.rbac.authorization.k8s.io is forbidden: User "system:serviceaccount:default:sa1" cannot create resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "default"`,
    );
    assert.deepEqual(error.details, { cluster: 'prod', kubernetesStatus: 403, kubernetesReason: 'Forbidden' });
    assert.ok(error.cause instanceof ApiException);
  });

  it('maps 401, 404, 409 AlreadyExists, 409 Conflict and others to their own errors', () => {
    const cases: [unknown, typeof KubevisaError, string][] = [
      [
        new ApiException<undefined>(401, 'Unauthorized', undefined, headers),
        ClusterUnauthorized,
        'ERR_CLUSTER_UNAUTHORIZED',
      ],
      [apiError(404, NAMESPACE_MISSING_BODY), ObjectMissing, 'ERR_OBJECT_MISSING'],
      [apiError(409, ALREADY_EXISTS_BODY), AlreadyExists, 'ERR_ALREADY_EXISTS'],
      [
        apiError(409, '{"kind":"Status","reason":"Conflict","message":"the object has been modified","code":409}'),
        ResourceVersionConflict,
        'ERR_RESOURCE_VERSION_CONFLICT',
      ],
      [apiError(422, TOKEN_TOO_SHORT_BODY), ClusterRequestFailed, 'ERR_CLUSTER_REQUEST_FAILED'],
      [apiError(500, undefined), ClusterRequestFailed, 'ERR_CLUSTER_REQUEST_FAILED'],
    ];
    for (const [thrown, type, code] of cases) {
      const error = toClusterError(thrown, context);
      assert.ok(error instanceof type, `${code}: ${String(error)}`);
      assert.equal(error.code, code);
      assert.ok(error instanceof ClusterRequestFailed, 'every cluster error shares one base');
    }
    assert.match(
      toClusterError(apiError(422, TOKEN_TOO_SHORT_BODY), context).message,
      /may not specify a duration less than 10 minutes/,
    );
  });

  it('says “connection refused” for what undici’s fetch throws when nothing listens', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:6443'), { code: 'ECONNREFUSED' });
    const error = toClusterError(new TypeError('fetch failed', { cause: refused }), context);
    assert.ok(error instanceof ClusterUnreachable);
    assert.equal(error.status, 503);
    assert.equal(
      error.message,
      "cannot create RoleBinding payments/x: cluster 'prod' at https://10.0.0.1:6443 is unreachable: connection refused (nothing listens on that port) (ECONNREFUSED)",
    );
  });

  it('looks inside an AggregateError (several addresses tried)', () => {
    const aggregate = new AggregateError([Object.assign(new Error('x'), { code: 'EHOSTUNREACH' })], 'all failed');
    const error = toClusterError(new TypeError('fetch failed', { cause: aggregate }), context);
    assert.match(error.message, /host unreachable \(EHOSTUNREACH\)$/);
  });

  it('names a TLS failure', () => {
    const tls = Object.assign(new Error('unable to verify the first certificate'), {
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    const error = toClusterError(new TypeError('fetch failed', { cause: tls }), context);
    assert.ok(error instanceof ClusterUnreachable);
    assert.match(error.message, /TLS: the server's certificate is not signed by the kubeconfig's CA/);
  });

  it('says how long it waited when the request timed out', () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    const error = toClusterError(timeout, { ...context, timeoutMs: 2500 });
    assert.ok(error instanceof ClusterUnreachable);
    assert.match(error.message, /is unreachable: no answer within 2\.5 s$/);
  });

  it('passes a kubevisa error through unchanged', () => {
    const original = new NotFound('no such visa');
    assert.equal(toClusterError(original, context), original);
  });
});

describe('reading objects', () => {
  // A watch event's object, as kube-apiserver sends it (raw JSON, not client-node's model).
  const watched: unknown = JSON.parse(
    '{"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"kubevisa-v_1","namespace":"payments","uid":"570dbd58-bf59-4ac5-a263-d28b8194fbb6","resourceVersion":"230","creationTimestamp":"2026-11-27T23:31:15Z","labels":{"app.kubernetes.io/managed-by":"kubevisa","kubevisa.io/visa":"v_1"},"annotations":{"kubevisa.io/not-after":"2026-11-28T07:31:15Z"},"managedFields":[{"manager":"kubevisa","operation":"Update","apiVersion":"rbac.authorization.k8s.io/v1","time":"2026-11-27T23:31:15Z","fieldsType":"FieldsV1","fieldsV1":{"f:roleRef":{},"f:subjects":{}}}]},"subjects":[{"kind":"ServiceAccount","name":"carol-0123456789","namespace":"kubevisa-visas"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kubevisa:profile:viewer"}}',
  );

  it('reads a RoleBinding from a watch event into kubevisa’s shape', () => {
    assert.deepEqual(toRoleBinding(watched, 'prod'), {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: {
        name: 'kubevisa-v_1',
        namespace: 'payments',
        uid: '570dbd58-bf59-4ac5-a263-d28b8194fbb6',
        resourceVersion: '230',
        labels: { 'app.kubernetes.io/managed-by': 'kubevisa', 'kubevisa.io/visa': 'v_1' },
        annotations: { 'kubevisa.io/not-after': '2026-11-28T07:31:15Z' },
      },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kubevisa:profile:viewer' },
      subjects: [{ kind: 'ServiceAccount', name: 'carol-0123456789', namespace: 'kubevisa-visas' }],
    });
  });

  it('reads a binding without subjects, labels or annotations', () => {
    const bare = toRoleBinding(
      {
        metadata: { name: 'b', namespace: 'n' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' },
      },
      'prod',
    );
    assert.deepEqual(bare.subjects, []);
    assert.deepEqual(bare.metadata.labels, {});
  });

  it('refuses something that is not a RoleBinding', () => {
    assert.throws(
      () => toRoleBinding({ metadata: { name: 'b' }, roleRef: {} }, 'prod'),
      /metadata\.namespace is missing/,
    );
    assert.throws(() => toRoleBinding({ code: 410, kind: 'Status' }, 'prod'), ClusterRequestFailed);
    assert.throws(() => toServiceAccount(null, 'prod'), ClusterRequestFailed);
  });
});
