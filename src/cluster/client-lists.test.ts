// The whole-cluster RBAC lists of ClusterClient (exposure scans) against a real HTTP server playing kube-apiserver:
// paging, what is asked for (metadata only for Secrets), how answers are read, and how failures are typed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { stringify } from 'yaml';
import { createClusterClient, type ClusterClient } from './client.ts';
import { ClusterForbidden, ClusterUnreachable } from './errors.ts';

let server: Server;
let client: ClusterClient;
let slowClient: ClusterClient;
const requests: { url: URL; headers: IncomingMessage['headers'] }[] = [];
let handler: (url: URL, response: ServerResponse) => void = (_url, response) => response.writeHead(500).end();

before(async () => {
  server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    requests.push({ url, headers: request.headers });
    handler(url, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const kubeconfigYaml = stringify({
    apiVersion: 'v1',
    kind: 'Config',
    // client-node speaks plain HTTP only with verification explicitly off; fine for a loopback stand-in.
    clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'u', user: { token: 'scripted-token' } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'c',
  });
  client = createClusterClient({ name: 'scripted', kubeconfigYaml });
  slowClient = createClusterClient({ name: 'scripted', kubeconfigYaml, requestTimeoutMs: 200 });
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const json = (response: ServerResponse, status: number, body: unknown) =>
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

describe('listing the whole cluster’s RBAC', () => {
  test('RoleBindings: every page, following the continue token, with the credential', async () => {
    requests.length = 0;
    handler = (url, response) => {
      const page = url.searchParams.get('continue') === null ? 1 : 2;
      json(response, 200, {
        kind: 'RoleBindingList',
        metadata: page === 1 ? { continue: 'next-page' } : {},
        items: [
          {
            metadata: { name: `rb-${page}`, namespace: 'payments', labels: { team: 'a' } },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
            subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: 'cora@vendor.example' }],
          },
        ],
      });
    };
    const bindings = await client.listRoleBindings();
    assert.deepEqual(
      bindings.map((rb) => `${rb.metadata.namespace}/${rb.metadata.name} ${rb.subjects[0]?.name}`),
      ['payments/rb-1 cora@vendor.example', 'payments/rb-2 cora@vendor.example'],
    );
    assert.equal(requests.length, 2);
    assert.equal(requests[0]?.url.pathname, '/apis/rbac.authorization.k8s.io/v1/rolebindings');
    assert.equal(requests[0]?.url.searchParams.get('limit'), '2000');
    assert.equal(requests[1]?.url.searchParams.get('continue'), 'next-page');
    assert.equal(requests[0]?.headers.authorization, 'Bearer scripted-token');
    assert.equal(requests[0]?.headers['user-agent'], 'kubevisa');
  });

  test('ClusterRoles keep their aggregation rule; rules are read field by field', async () => {
    handler = (_url, response) =>
      json(response, 200, {
        items: [
          {
            metadata: { name: 'monitoring' },
            aggregationRule: {
              clusterRoleSelectors: [
                { matchLabels: { 'rbac.example/aggregate': 'true' } },
                { matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }] },
              ],
            },
            rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'], resourceNames: ['x'] }],
          },
        ],
      });
    const [role] = await client.listClusterRoles();
    assert.deepEqual(role?.aggregationRule, {
      clusterRoleSelectors: [
        { matchLabels: { 'rbac.example/aggregate': 'true' } },
        { matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }] },
      ],
    });
    assert.deepEqual(role.rules, [{ verbs: ['get'], apiGroups: [''], resources: ['pods'], resourceNames: ['x'] }]);
  });

  test('token Secrets are asked for as metadata only, filtered by type, and read without data', async () => {
    requests.length = 0;
    handler = (_url, response) =>
      json(response, 200, {
        kind: 'PartialObjectMetadataList',
        apiVersion: 'meta.k8s.io/v1',
        items: [
          {
            metadata: {
              name: 'deployer-token',
              namespace: 'ci',
              creationTimestamp: '2026-11-27T23:56:54Z',
              labels: { 'kubernetes.io/legacy-token-last-used': '2026-11-27' },
              annotations: { 'kubernetes.io/service-account.name': 'deployer' },
            },
          },
        ],
      });
    const secrets = await client.listServiceAccountTokenSecrets();
    assert.deepEqual(secrets, [
      {
        namespace: 'ci',
        name: 'deployer-token',
        serviceAccount: 'deployer',
        createdAt: '2026-11-27T23:56:54Z',
        lastUsed: '2026-11-27',
      },
    ]);
    assert.equal(requests[0]?.url.pathname, '/api/v1/secrets');
    assert.equal(requests[0]?.url.searchParams.get('fieldSelector'), 'type=kubernetes.io/service-account-token');
    assert.equal(requests[0]?.headers.accept, 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1');
  });

  test('a 403 is ClusterForbidden with the API’s own words (kubevisa may not list Secrets)', async () => {
    // As kube-apiserver answers kubevisa's credential.
    handler = (_url, response) =>
      json(response, 403, {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        message:
          'secrets is forbidden: User "system:serviceaccount:kubevisa-system:kubevisa" cannot list resource "secrets" in API group "" at the cluster scope',
        reason: 'Forbidden',
        details: { kind: 'secrets' },
        code: 403,
      });
    await assert.rejects(
      client.listServiceAccountTokenSecrets(),
      (error: unknown) =>
        error instanceof ClusterForbidden &&
        /cannot list ServiceAccount token Secrets.*cannot list resource "secrets"/.test(error.message),
    );
  });

  test('a server that never answers is ClusterUnreachable after the request timeout', async () => {
    handler = () => {
      // never answers
    };
    await assert.rejects(
      slowClient.listRoles(),
      (error: unknown) => error instanceof ClusterUnreachable && /no answer within 0.2 s/.test(error.message),
    );
  });

  test('an answer without an items list is refused, not read as empty', async () => {
    handler = (_url, response) => json(response, 200, { kind: 'Status' });
    await assert.rejects(client.listClusterRoleBindings(), /answered without an items list/);
  });
});
