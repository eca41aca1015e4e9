// The offboarding orchestrator's retry loop, with a cluster that becomes unreachable right after the commit: the
// receipt goes unproven (with an alert and an audit event per unproven step), is retried with backoff, and ends
// proven (with a second alert) once the cluster answers again. The cluster is a fake ClusterClient plus a real
// HTTP server answering the two kube-apiserver calls the proofs make; the store, AccessService and token
// issuer are the real ones.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { createTokenIssuer } from '../auth/access-tokens.ts';
import type { ClusterClient } from '../cluster/client.ts';
import { ClusterUnreachable } from '../cluster/errors.ts';
import type { RoleBinding, ServiceAccount } from '../cluster/objects.ts';
import { Unauthenticated } from '../domain/errors.ts';
import { serviceAccountName } from '../domain/names.ts';
import { AppEvents } from '../app/events.ts';
import { PeopleService } from '../app/people.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { OffboardingOrchestrator, type OffboardingAlert } from './offboarding.ts';

const EMAIL = 'cora@vendor.example';
let store: Store;
let apiServer: Server;
let port: number;
const validTokens = new Set<string>();
let reachable = true;
let accounts: ServiceAccount[] = [];

before(async () => {
  store = await openSqliteStore({ path: ':memory:' });
  // The two calls proofs make with another credential than kubevisa's: token checks and rules reviews.
  apiServer = createServer((request, response) => {
    const token = (request.headers.authorization ?? '').replace(/^Bearer /, '');
    request.resume();
    request.on('end', () => {
      if (!reachable) {
        response.writeHead(503).end();
        return;
      }
      if (request.url === '/apis/authentication.k8s.io/v1/selfsubjectreviews') {
        response.writeHead(validTokens.has(token) ? 201 : 401, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      response.writeHead(201, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          status: {
            resourceRules: [
              { verbs: ['create'], apiGroups: ['authorization.k8s.io'], resources: ['selfsubjectrulesreviews'] },
            ],
            nonResourceRules: [{ verbs: ['get'], nonResourceURLs: ['/api', '/version'] }],
            incomplete: false,
          },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => apiServer.listen(0, '127.0.0.1', resolve));
  port = (apiServer.address() as AddressInfo).port;
});
after(async () => {
  await store.close();
  await new Promise((resolve) => apiServer.close(resolve));
});

/**
 * Only the calls offboarding makes are implemented; any other ClusterClient call fails loudly (a Proxy, so the
 * fake keeps compiling as the interface grows).
 */
function fakeCluster(): ClusterClient {
  const check = () => {
    if (!reachable) throw new ClusterUnreachable("cluster 'prod' is unreachable (test)");
  };
  const connection = { server: `http://127.0.0.1:${port}`, insecureSkipTlsVerify: false };
  const implemented: Partial<ClusterClient> = {
    name: 'prod',
    connection,
    server: connection.server,
    caData: undefined,
    async listManagedServiceAccounts() {
      check();
      return accounts;
    },
    async listManagedRoleBindings(): Promise<RoleBinding[]> {
      check();
      return [];
    },
    async createServiceAccountToken(name) {
      check();
      const token = `canary-${name}-${validTokens.size}`;
      validTokens.add(token);
      return { token, expirationTimestamp: Date.now() + 600_000 };
    },
    async createOwnToken() {
      check();
      validTokens.add('kubevisa-own');
      return { token: 'kubevisa-own', expirationTimestamp: Date.now() + 600_000 };
    },
  };
  return new Proxy(implemented, {
    get(target, property) {
      if (property in target) return target[property as keyof ClusterClient];
      if (property === 'then') return undefined;
      return () => {
        throw new Error(`the fake cluster does not implement ${String(property)}: offboarding should not call it`);
      };
    },
  }) as ClusterClient;
}

test('an unreachable cluster leaves the receipt unproven with an alert; it is retried until proven', async () => {
  const person = await store.transaction((tx) =>
    tx.upsertPersonFromLogin({
      issuer: 'https://idp',
      subject: 'cora',
      email: EMAIL,
      displayName: 'Cora',
      groups: [],
      now: Date.now(),
    }),
  );
  accounts = [
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: serviceAccountName(EMAIL), namespace: 'kubevisa-visas', labels: {}, annotations: {} },
    },
  ];
  const people = new PeopleService({ store, clusterNames: () => ['prod'], events: new AppEvents() });
  const { privateKey } = generateKeyPairSync('ed25519');
  const tokens = createTokenIssuer({
    issuer: 'https://kv.test',
    audience: 'kubevisa',
    signingKey: privateKey,
    keyId: 'k1',
  });
  const alerts: OffboardingAlert[] = [];
  const reconciles: string[] = [];
  const offboarding = new OffboardingOrchestrator({
    store,
    people,
    sessions: {
      async authenticate() {
        throw new Unauthenticated('access ended for this person');
      },
    },
    tokens,
    clusters: new Map([['prod', fakeCluster()]]),
    reconciler: {
      async reconcileNow(name) {
        reconciles.push(name);
        if (!reachable)
          return {
            cluster: name,
            startedAt: 0,
            finishedAt: 0,
            created: [],
            deleted: [],
            repaired: [],
            missingNamespaces: [],
            error: 'unreachable',
          };
        // The reconciler deletes the ServiceAccount of a person with no visa: every token it had dies.
        accounts = [];
        for (const token of [...validTokens]) if (token.startsWith('canary-')) validTokens.delete(token);
        return {
          cluster: name,
          startedAt: 0,
          finishedAt: 0,
          created: [],
          deleted: ['serviceaccount'],
          repaired: [],
          missingNamespaces: [],
        };
      },
    },
    config: { waitMs: 5000, retryMs: 100, maxRetryMs: 400, tokenProofTimeoutMs: 11_000 },
    alert: async (alert) => {
      alerts.push(alert);
    },
    report: () => {},
  });
  // The gateway's registry, holding no stream of hers (offboarding-streams.test.ts covers streams).
  offboarding.attachStreams({ openOf: () => [], closeOf: () => 0 });
  try {
    // The canary is minted while the cluster answers; then it goes away.
    const started = await offboarding.start({
      personId: person.id,
      status: 'deprovisioned',
      trigger: { kind: 'admin', by: 'sam@corp.example' },
      reason: 'contract ended',
      caller: { actor: { personId: 'p_sam', email: 'sam@corp.example', roles: ['admin'], groups: [] } },
    });
    reachable = false;
    assert.equal(started.status, 'proving');
    assert.equal((await store.getPerson(person.id))?.status, 'deprovisioned', 'committed before start() resolved');

    const unproven = await offboarding.waitFor(started.id, 5000);
    assert.equal(unproven.status, 'unproven', unproven.summary);
    const open = unproven.steps.filter((s) => s.status !== 'proven').map((s) => s.id);
    assert.deepEqual(open.sort(), [
      'cluster/prod/permissions',
      'cluster/prod/rolebindings',
      'cluster/prod/serviceaccount',
      'cluster/prod/token',
    ]);
    assert.match(unproven.summary, /NOT proven yet/);
    assert.deepEqual(
      alerts.map((a) => a.kind),
      ['unproven'],
    );
    const stepEvents = await store.listAudit({ action: 'offboarding.step-unproven' });
    assert.equal(stepEvents.length, 4, 'one audit event per unproven step');

    await new Promise((resolve) => setTimeout(resolve, 300));
    reachable = true;
    let final = unproven;
    for (let i = 0; i < 100 && final.status !== 'proven'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      final = (await offboarding.get(started.id))!;
    }
    assert.equal(final.status, 'proven', final.summary);
    assert.ok(reconciles.length >= 3, `retried (${reconciles.length} reconcile passes)`);
    const token = final.steps.find((s) => s.id === 'cluster/prod/token')!;
    assert.match(token.detail, /answered 401 to a token it had accepted before the offboarding/);
    assert.ok(token.attempts >= 2);
    assert.deepEqual(
      alerts.map((a) => a.kind),
      ['unproven', 'proven-after-retry'],
    );
    assert.equal((await store.listAudit({ action: 'offboarding.proven' })).length, 1);
    assert.equal((await store.listAudit({ action: 'offboarding.step-proven' })).length, final.steps.length);
  } finally {
    await offboarding.stop();
  }
});
