import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterUnauthorized, ObjectMissing } from '../cluster/errors.ts';
import { toClusterError } from '../cluster/transport.ts';
import { Forbidden, InvalidInput } from '../domain/errors.ts';
import { StoreUnavailable } from '../store/errors.ts';
import { IdentityProviderUnavailable } from '../auth/errors.ts';
import { publicProblem, withoutInternals } from './public-errors.ts';

const INTERNAL = /10\.0\.0\.7|6443|\/var\/lib|\/tmp\/|ECONNREFUSED|ENOTFOUND|https?:\/\/|fetch failed/;

test('an unreachable cluster is told by name with what to do; its address and the network error stay in the log', () => {
  // What client-node throws when kube-apiserver is down: fetch's TypeError around the socket error.
  const socket = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:6443'), { code: 'ECONNREFUSED' });
  const error = toClusterError(new TypeError('fetch failed', { cause: socket }), {
    cluster: 'prod',
    server: 'https://10.0.0.7:6443',
    action: 'list ServiceAccounts in kubevisa-visas',
    timeoutMs: 10_000,
  });
  assert.match(error.message, /10\.0\.0\.7:6443.*ECONNREFUSED/, 'the log keeps the detail');
  const shown = publicProblem(error);
  assert.equal(error.status, 503);
  assert.doesNotMatch(shown.message, INTERNAL);
  assert.doesNotMatch(JSON.stringify(shown.details), INTERNAL);
  assert.equal(
    shown.message,
    "kubevisa cannot reach cluster 'prod' right now; this is not about your access. Try again in a minute; if it keeps failing, tell a kubevisa admin (the kubevisa server log has the details)",
  );
  assert.deepEqual(shown.details, { cluster: 'prod' });
  assert.equal(shown.withheld, true);
});

test("a cluster refusing kubevisa's credential or failing says whose fault it is, with the Kubernetes status only", () => {
  const unauthorized = new ClusterUnauthorized(
    "cannot list RoleBindings: cluster 'prod' did not accept kubevisa's credential (401 Unauthorized); check /etc/kubevisa/prod.kubeconfig",
    {
      details: {
        cluster: 'prod',
        kubernetesStatus: 401,
        kubernetesReason: 'Unauthorized',
        server: 'https://10.0.0.7:6443',
      },
    },
  );
  const shown = publicProblem(unauthorized);
  assert.match(
    shown.message,
    /^cluster 'prod' does not accept kubevisa's own credential; this is not about your access/,
  );
  assert.deepEqual(shown.details, { cluster: 'prod', kubernetesStatus: 401, kubernetesReason: 'Unauthorized' });
  const failed = toClusterError(
    Object.assign(new Error('HTTP-Code: 500'), {
      code: 500,
      headers: {},
      body: { kind: 'Status', reason: 'InternalError', message: 'etcdserver: request timed out (10.0.0.8:2379)' },
    }),
    { cluster: 'prod', server: 'https://10.0.0.7:6443', action: 'create RoleBinding payments/x', timeoutMs: 10_000 },
  );
  const told = publicProblem(failed);
  assert.match(
    told.message,
    /^cluster 'prod' failed a request kubevisa made for you \(it answered 500 InternalError\)/,
  );
  assert.doesNotMatch(told.message, /etcd|10\.0\.0\.8/);
});

test('a 4xx about an object kubevisa named is told as it is; a refusal of the caller passes unchanged', () => {
  const missing = new ObjectMissing(
    'cannot create a token for ServiceAccount kubevisa-visas/kv-cora-1a2b: cluster \'prod\' answered 404: serviceaccounts "kv-cora-1a2b" not found',
    { details: { cluster: 'prod', kubernetesStatus: 404, kubernetesReason: 'NotFound' } },
  );
  assert.equal(publicProblem(missing).message, missing.message);
  assert.equal(publicProblem(missing).withheld, false);
  const refused = new Forbidden("cora@vendor.example has no active visa on cluster 'prod'");
  assert.deepEqual(publicProblem(refused), { message: refused.message, details: {}, withheld: false });
  const invalid = new InvalidInput("'duration' must be like 8h", { details: { field: 'duration' } });
  assert.deepEqual(publicProblem(invalid).details, { field: 'duration' });
});

test('any other server-side failure keeps its sentence but not the paths, addresses or Node error text in it', () => {
  const store = new StoreUnavailable(
    'cannot open the database /var/lib/kubevisa/data/kubevisa.db: Error: SQLITE_CANTOPEN',
    { details: { path: '/var/lib/kubevisa/data/kubevisa.db' } },
  );
  const shown = publicProblem(store);
  assert.equal(shown.message, 'cannot open the database (path withheld): Error: SQLITE_CANTOPEN');
  assert.deepEqual(shown.details, { path: '(path withheld)' });
  assert.equal(shown.withheld, true);
  const idp = new IdentityProviderUnavailable(
    'could not discover the identity provider: fetch failed (getaddrinfo ENOTFOUND idp.internal.example)',
  );
  assert.equal(
    publicProblem(idp).message,
    'could not discover the identity provider: fetch failed (network error idp.internal.example)',
  );
});

test('withoutInternals withholds URLs, host:port, IPs and absolute paths, and leaves ordinary words alone', () => {
  assert.equal(
    withoutInternals('cluster at https://10.0.0.7:6443/api is unreachable: connect ECONNREFUSED 10.0.0.7:6443'),
    'cluster at (address withheld) is unreachable: network error (address withheld)',
  );
  assert.equal(
    withoutInternals('dial [fd00::7]:6443 and api.internal.example:6443'),
    'dial (address withheld) and (address withheld)',
  );
  assert.equal(withoutInternals('read /tmp/kubevisa-e2e-x/data/clusters/test.kubeconfig'), 'read (path withheld)');
  assert.equal(
    withoutInternals('kubeconfig /etc/kubevisa/prod.kubeconfig has no token'),
    'kubeconfig (path withheld) has no token',
  );
  const plain = "visa v_1 on kubevisa-visas/kv-cora: pods/exec read/write, 8h, ERR_CLUSTER_UNREACHABLE, cluster 'prod'";
  assert.equal(withoutInternals(plain), plain);
});
