import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AppEvents } from '../app/events.ts';
import { EngagementService } from '../app/engagements.ts';
import { VisaService } from '../app/visas.ts';
import type { PersonRole, Visa } from '../domain/model.ts';
import { aPolicy } from '../domain/testing/fixtures.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { loadOrCreateSecretBox, type SecretBox } from '../auth/secret-box.ts';
import type { ClusterClient, OwnRbac } from '../cluster/client.ts';
import { ClusterUnreachable } from '../cluster/errors.ts';
import { tokenKubeconfigYaml } from '../cluster/kubeconfig.ts';
import { kubevisaControllerRbac } from '../cluster/objects.ts';
import { Reconciler } from '../reconciler/reconciler.ts';
import { FakeCluster } from '../reconciler/testing/fake-cluster.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store, StoreTx } from '../store/store.ts';
import { openPostgresStore, type PostgresStore } from '../store/postgres/store.ts';
import { createTestDatabase, type TestDatabase } from '../store/postgres/test-database.ts';
import { ClusterRegistry } from './cluster-registry.ts';

const NOW = Date.parse('2026-12-03T12:00:00Z');
const admin = { actor: { email: 'ada@corp.example', roles: ['admin'] } } as never;

/** A kubeconfig whose token is a JWT living a day from NOW (the life renewal and `list` read). */
function kubeconfig(server = 'https://127.0.0.1:6443', clusterName = 'x'): { yaml: string; token: string } {
  const claims = { iat: NOW / 1000, exp: NOW / 1000 + 86_400, sub: 'system:serviceaccount:kubevisa-system:kubevisa' };
  const token = ['eyJhbGciOiJSUzI1NiJ9', Buffer.from(JSON.stringify(claims)).toString('base64url'), 'c2ln'].join('.');
  return {
    yaml: tokenKubeconfigYaml({ clusterName, connection: { server, insecureSkipTlsVerify: false }, token }),
    token,
  };
}

function installedRbac(): OwnRbac {
  const rbac = kubevisaControllerRbac(['viewer']);
  return {
    clusterRole: rbac.clusterRole,
    clusterRoleBinding: rbac.clusterRoleBinding,
    visasRole: rbac.visasRole,
    visasRoleBinding: rbac.visasRoleBinding,
    selfTokenRole: rbac.selfTokenRole,
    selfTokenRoleBinding: rbac.selfTokenRoleBinding,
  };
}

/** What the fake clusters answer, by server address. */
const behaviour = new Map<string, { answers: boolean; rbac: OwnRbac }>();

function fakeClient(name: string, kubeconfigYaml: string): ClusterClient {
  const server = /server: (\S+)/.exec(kubeconfigYaml)![1]!;
  const answer = () => behaviour.get(server) ?? { answers: true, rbac: installedRbac() };
  return {
    name,
    server,
    caData: undefined,
    connection: { server, insecureSkipTlsVerify: false },
    async whoAmI() {
      if (!answer().answers) throw new ClusterUnreachable(`cluster '${name}' did not answer at ${server}`);
      return { username: 'system:serviceaccount:kubevisa-system:kubevisa', groups: [] };
    },
    async readOwnRbac() {
      return answer().rbac;
    },
  } as unknown as ClusterClient;
}

function fakeReconciler() {
  const managed = new Set<string>();
  return {
    managed,
    reconciler: {
      addCluster: (name: string) => managed.add(name),
      removeCluster: (name: string) => managed.delete(name),
      status: () => [],
      reconcileNow: async (name: string) => ({ cluster: name }),
    } as unknown as Reconciler,
  };
}

let dir: string;
let store: Store;
let secretBox: SecretBox;

function registry(configured: Map<string, string> = new Map(), visas: VisaService = {} as VisaService) {
  const clusters = new Map<string, ClusterClient>();
  const { managed, reconciler } = fakeReconciler();
  const events = new AppEvents();
  const told: string[] = [];
  events.on('cluster-added', (name) => told.push(`+${name}`));
  events.on('cluster-removed', (name) => told.push(`-${name}`));
  const made = new ClusterRegistry({
    store,
    secretBox,
    clusters,
    configured,
    directMode: new Set(),
    reconciler,
    events,
    visas,
    createClient: fakeClient,
    now: () => NOW,
  });
  return { registry: made, clusters, managed, told };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-registry-'));
  store = await openSqliteStore({ path: ':memory:' });
  secretBox = await loadOrCreateSecretBox(dir);
});

after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('cluster registry', () => {
  test('an add that fails a check says which and stores nothing', async () => {
    const { registry: r, clusters, told } = registry(new Map([['prod', '/etc/kubevisa/prod.kubeconfig']]));
    const good = kubeconfig().yaml;
    behaviour.set('https://127.0.0.1:1', { answers: false, rbac: {} });
    behaviour.set('https://127.0.0.1:2', { answers: true, rbac: { ...installedRbac(), selfTokenRole: undefined } });
    const refusals: [Parameters<ClusterRegistry['add']>[1], RegExp][] = [
      [{ name: 'Edge_1', kubeconfig: good }, /is not allowed: use a DNS label/],
      [{ name: 'prod', kubeconfig: good }, /start-up configuration/],
      [{ name: 'edge-1', kubeconfig: 'clusters: [ {' }, /cannot load the kubeconfig given/],
      [
        { name: 'edge-1', kubeconfig: good.replace(/token: .*/, 'username: someone') },
        /has no bearer token|no current context|user has username/,
      ],
      [{ name: 'edge-1', kubeconfig: kubeconfig('https://127.0.0.1:1').yaml }, /does not answer with the kubeconfig/],
      [
        { name: 'edge-1', kubeconfig: kubeconfig('https://127.0.0.1:2').yaml },
        /kubevisa is not installed .*Role kubevisa-system\/kubevisa:self-token missing/,
      ],
    ];
    // What a kubeconfig may carry besides a token would run commands or read files on every kubevisa server.
    const withUser = (extra: string) => good.replace(/( +)token: (.*)/, `$1token: $2\n$1${extra}`);
    const marker = join(dir, 'ran');
    refusals.push(
      [
        {
          name: 'edge-1',
          kubeconfig: withUser(
            `exec: { apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, "touch ${marker}"] }`,
          ),
        },
        /user has exec \(not allowed\)/,
      ],
      [{ name: 'edge-1', kubeconfig: withUser('client-key: /etc/shadow') }, /user has keyFile \(not allowed\)/],
      [
        { name: 'edge-1', kubeconfig: withUser('auth-provider: { name: oidc, config: { cmd-path: /bin/sh } }') },
        /user has authProvider \(not allowed\)/,
      ],
      [
        { name: 'edge-1', kubeconfig: kubeconfig('http://127.0.0.1:7001').yaml },
        /server http:\/\/127\.0\.0\.1:7001 is not https/,
      ],
      [
        { name: 'edge-1', kubeconfig: good.replace(/server: /, 'certificate-authority: /etc/shadow\n      server: ') },
        /cluster has caFile \(not allowed\)/,
      ],
      [
        { name: 'edge-1', kubeconfig: good.replace(/server: /, 'insecure-skip-tls-verify: true\n      server: ') },
        /skips TLS verification/,
      ],
    );
    const secretYaml = 'users:\n- name: u\n  user: {token: s3cret-token-value\n';
    await assert.rejects(r.add(admin, { name: 'edge-1', kubeconfig: secretYaml }), (error: Error) => {
      assert.match(error.message, /not valid YAML \(line \d+, column \d+\)/);
      assert.equal(error.message.includes('s3cret'), false, 'the parse error quotes none of the file');
      return true;
    });
    for (const [input, message] of refusals) {
      await assert.rejects(r.add(admin, input), (error: Error) => message.test(error.message), String(message));
    }
    assert.deepEqual(await store.listRegisteredClusters(), []);
    assert.equal(clusters.size, 0);
    assert.deepEqual(told, []);
    assert.equal(existsSync(marker), false, 'no command of a kubeconfig ran');
  });

  test('an added cluster is served at once and stored sealed; a second of that name is refused', async () => {
    const { registry: r, clusters, managed, told } = registry();
    const { yaml, token } = kubeconfig('https://127.0.0.1:7001');
    const added = await r.add(admin, { name: 'edge-1', kubeconfig: yaml, directMode: true });
    assert.equal(added.source, 'registered');
    assert.equal(added.reachable, true);
    assert.equal(added.credentialExpiresAt, new Date(NOW + 86_400_000).toISOString());
    assert.equal(JSON.stringify(added).includes(token), false);
    assert.ok(clusters.has('edge-1') && managed.has('edge-1'));
    assert.deepEqual(told, ['+edge-1']);
    const [record] = await store.listRegisteredClusters();
    assert.equal(record!.sealedKubeconfig.includes(token), false);
    assert.equal(
      secretBox.open(record!.sealedKubeconfig),
      tokenKubeconfigYaml({
        clusterName: 'edge-1',
        connection: { server: 'https://127.0.0.1:7001', insecureSkipTlsVerify: false },
        token,
      }),
      'kept as rebuilt from its server, CA and token only',
    );
    const [event] = await store.listAudit({ action: 'cluster.registered' });
    assert.equal(event!.actor, 'ada@corp.example');
    assert.equal(JSON.stringify(event).includes(token), false);
    await assert.rejects(r.add(admin, { name: 'edge-1', kubeconfig: yaml }), /registered already/);
  });

  test('another server on the same store serves what was registered, and drops what was removed', async () => {
    const first = registry();
    const second = registry();
    await first.registry.add(admin, { name: 'edge-2', kubeconfig: kubeconfig('https://127.0.0.1:7002').yaml });
    await second.registry.sync();
    assert.ok(second.clusters.has('edge-1') && second.clusters.has('edge-2'));
    assert.deepEqual(second.registry.kubeconfigSource('edge-2'), {
      kubeconfigYaml: kubeconfig('https://127.0.0.1:7002', 'edge-2').yaml,
    });
    const removed = await first.registry.remove(admin, 'edge-2');
    assert.deepEqual(removed, { name: 'edge-2', revoked: [], denied: [], bindingsRemoved: true });
    await second.registry.sync();
    assert.equal(second.clusters.has('edge-2'), false);
    assert.equal(second.managed.has('edge-2'), false);
    assert.deepEqual(second.told, ['+edge-1', '+edge-2', '-edge-2']);
    assert.equal(await store.getCluster('edge-2'), undefined);
  });

  test('remove refuses a configured cluster and one that is not registered', async () => {
    const { registry: r } = registry(new Map([['prod', '/etc/kubevisa/prod.kubeconfig']]));
    await assert.rejects(r.remove(admin, 'prod'), /start-up configuration: remove it there/);
    await assert.rejects(r.remove(admin, 'nowhere'), /no registered cluster 'nowhere'/);
  });

  test('a renewed credential is sealed, stored and served', async () => {
    const { registry: r } = registry();
    await r.sync();
    const renewed = kubeconfig('https://127.0.0.1:7001').yaml.replace('c2ln', 'bmV3');
    await r.saveRenewedKubeconfig('edge-1', renewed);
    assert.equal(r.registeredKubeconfig('edge-1'), renewed);
    assert.equal(secretBox.open((await store.getRegisteredCluster('edge-1'))!.sealedKubeconfig), renewed);
  });
});

/** A caller for a person stored in `on` with `roles` (the removal acts as them, the race approves as them). */
async function caller(name: string, roles: PersonRole[], on: Store = store) {
  const saved = await on.transaction(async (tx) => {
    const person = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: name,
      email: `${name}@corp.example`,
      displayName: name,
      groups: [],
      now: NOW - 3_600_000,
    });
    return tx.setPersonRoles(person.id, roles, NOW - 3_600_000);
  });
  return { actor: { personId: saved.id, email: saved.email, roles: saved.roles, groups: saved.groups } };
}

/**
 * A registered cluster `cluster` with an engagement on it and a real VisaService (in-memory SQLite): carl files
 * visas there with `ask`, ada approves. The registry judges time by `registryNow` (NOW unless given), and makes its
 * cluster client with `createClient` (`fakeClient` unless given).
 */
async function visasOn(
  cluster: string,
  options: {
    reconciler?: Reconciler;
    registryNow?: () => number;
    createClient?: (name: string, kubeconfigYaml: string) => ClusterClient;
  } = {},
) {
  const clusters = new Map<string, ClusterClient>();
  const ports = {
    store,
    policy: aPolicy({ approverGroups: [] }),
    clusterNames: () => [...clusters.keys()],
    events: new AppEvents(),
    now: () => NOW,
  };
  await store.transaction(async (tx) => {
    for (const profile of SHIPPED_PROFILES) if (!(await tx.getProfile(profile.name))) await tx.upsertProfile(profile);
  });
  const visas = new VisaService(ports);
  const ada = await caller('ada', ['admin']);
  const carl = await caller('carl', []);
  const made = new ClusterRegistry({
    store,
    secretBox,
    clusters,
    configured: new Map(),
    directMode: new Set(),
    reconciler: options.reconciler ?? fakeReconciler().reconciler,
    events: ports.events,
    visas,
    createClient: options.createClient ?? fakeClient,
    now: options.registryNow ?? (() => NOW),
  });
  await made.add(admin, { name: cluster, kubeconfig: kubeconfig(`https://127.0.0.1:${7000 + cluster.length}`).yaml });
  await new EngagementService(ports).create(ada, {
    name: cluster,
    vendor: 'Acme',
    contractors: ['carl@corp.example'],
    sponsor: 'ada@corp.example',
    endsAt: new Date(NOW + 30 * 86_400_000).toISOString(),
    ceiling: { clusters: [cluster], namespacePatterns: ['shop'], profiles: ['viewer'] },
    maxVisaDuration: '1d',
  });
  const ask = (reason: string) =>
    visas.request(carl, {
      engagement: cluster,
      cluster,
      namespaces: ['shop'],
      profile: 'viewer',
      duration: '2h',
      reason,
    });
  return { visas, registry: made, clusters, ada, ask };
}

/**
 * A real reconciler over in-memory clusters (FakeCluster, with the few ClusterClient members the registry's checks
 * read), for removals judged by what is really left in the cluster. `leads` false: a replica that does not lead.
 */
async function realReconciler(leads = true) {
  const fakes = new Map<string, FakeCluster>();
  const reconciler = new Reconciler({
    store,
    clusters: new Map(),
    now: () => NOW,
    resyncIntervalMs: 3_600_000,
    leadership: { isLeader: () => leads },
  });
  await reconciler.start();
  const createClient = (name: string, kubeconfigYaml: string): ClusterClient => {
    const server = /server: (\S+)/.exec(kubeconfigYaml)![1]!;
    const fake = new FakeCluster({ name, namespaces: ['shop'], profiles: SHIPPED_PROFILES });
    fakes.set(name, fake);
    return Object.assign(fake, {
      server,
      caData: undefined,
      connection: { server, insecureSkipTlsVerify: false },
      whoAmI: async () => ({ username: 'system:serviceaccount:kubevisa-system:kubevisa', groups: [] }),
    }) as unknown as ClusterClient;
  };
  return { reconciler, fakes, createClient };
}

describe('removing a cluster while its visas change', () => {
  test('a request approved while a forced removal runs is revoked too: nothing is left granting in a cluster no one manages', async () => {
    const { visas, registry: made, clusters, ada, ask } = await visasOn('edge-race');
    const granted = await visas.approve(ada, (await ask('granted before')).id, {});
    const pending = await ask('approved during the removal');
    // The approval lands after the removal listed the granting visas and before it denies the pending ones.
    const revoke = visas.revoke.bind(visas);
    let raced = false;
    visas.revoke = async (...args) => {
      if (!raced) {
        raced = true;
        await visas.approve(ada, pending.id, {});
      }
      return revoke(...args);
    };
    const removed = await made.remove(ada, 'edge-race', { force: true });
    assert.equal(raced, true);
    assert.deepEqual(removed.revoked.sort(), [granted.id, pending.id].sort());
    const left = await store.listVisas({ cluster: 'edge-race', states: ['requested', 'approved', 'active'] });
    assert.deepEqual(
      left.map((v) => v.id),
      [],
      'no visa grants or waits in the removed cluster',
    );
    assert.equal(await store.getRegisteredCluster('edge-race'), undefined);
    const [event] = (await store.listAudit({ action: 'cluster.removed' })).filter((e) => e.cluster === 'edge-race');
    assert.deepEqual((event!.details.revokedVisas as string[]).sort(), [granted.id, pending.id].sort());
    // And once it is gone, a request filed for it before cannot be approved there.
    clusters.set('edge-race', clusters.get('edge-race') ?? ({} as ClusterClient));
    const late = await ask('filed before the removal, approved after');
    clusters.delete('edge-race');
    await assert.rejects(
      visas.approve(ada, late.id, {}),
      /cluster 'edge-race' is no longer managed by kubevisa, so visa .* cannot be approved: deny it/,
    );
    assert.equal((await store.getVisa(late.id))?.state, 'requested');
  });

  test('a visa past its end whose expiry is not carried out yet gets a pass before the cluster stops being managed, and the removal says whether its binding went', async () => {
    for (const [cluster, passError] of [
      ['edge-ended', undefined],
      ['edge-ended-down', "cluster 'edge-ended-down' did not answer"],
    ] as const) {
      const passes: string[] = [];
      const reconciler = {
        ...fakeReconciler().reconciler,
        reconcileNow: async (name: string) => {
          passes.push(name);
          return { cluster: name, ...(passError !== undefined ? { error: passError } : {}) };
        },
      } as unknown as Reconciler;
      // The registry looks three hours on: the two-hour visa has ended, but nothing has expired it yet.
      const { visas, registry, ada, ask } = await visasOn(cluster, {
        reconciler,
        registryNow: () => NOW + 3 * 3_600_000,
      });
      const ended = await visas.approve(ada, (await ask('ended before the removal')).id, {});
      const removed = await registry.remove(ada, cluster);
      assert.deepEqual(passes, [cluster], 'a pass ran before the cluster was let go');
      assert.deepEqual(removed, { name: cluster, revoked: [], denied: [], bindingsRemoved: passError === undefined });
      assert.equal((await store.getVisa(ended.id))?.state, 'approved', 'not revoked: it ended by itself');
    }
  });

  test('what a revoke left behind while the cluster did not answer goes in the removal’s full pass, whatever the visa’s state', async () => {
    const { reconciler, fakes, createClient } = await realReconciler();
    try {
      const { visas, registry, ada, ask } = await visasOn('edge-left', { reconciler, createClient });
      const edge = fakes.get('edge-left')!;
      const visa = await visas.approve(ada, (await ask('revoked while the cluster was away')).id, {});
      assert.equal((await reconciler.reconcileNow('edge-left')).error, undefined);
      const binding = `shop/kubevisa-${visa.id}`;
      assert.ok(edge.roleBindings.has(binding), 'bound');
      // The revoke's pass meets a cluster that does not answer: the visa is revoked, its binding still there.
      const deleteRoleBinding = edge.deleteRoleBinding.bind(edge);
      edge.deleteRoleBinding = async () => {
        throw new ClusterUnreachable("cluster 'edge-left' did not answer");
      };
      await visas.revoke(ada, visa.id, 'contract over');
      assert.match((await reconciler.reconcileNow('edge-left')).error ?? '', /did not answer/);
      edge.deleteRoleBinding = deleteRoleBinding;
      // Nothing approved or active is left, so no --force is needed; the removal still looks in the cluster.
      const removed = await registry.remove(ada, 'edge-left');
      assert.equal(removed.bindingsRemoved, true);
      assert.equal(edge.roleBindings.has(binding), false, "the revoked visa's binding went with the removal");
      assert.equal(edge.serviceAccounts.size, 0, "and so did the person's ServiceAccount");
      assert.deepEqual(await store.listPendingIntents({ cluster: 'edge-left' }), []);
    } finally {
      reconciler.stop();
    }
  });

  test('a removal whose pass fails, or that a replica not leading serves, does not say what it cannot know is gone', async () => {
    const { reconciler, fakes, createClient } = await realReconciler();
    try {
      const { visas, registry, ada, ask } = await visasOn('edge-sa', { reconciler, createClient });
      const edge = fakes.get('edge-sa')!;
      const visa = await visas.approve(ada, (await ask('ends, its ServiceAccount not deletable')).id, {});
      assert.equal((await reconciler.reconcileNow('edge-sa')).error, undefined);
      assert.equal(edge.serviceAccounts.size, 1);
      // The visa is revoked and its binding goes; the ServiceAccount's delete fails, and keeps failing.
      edge.deleteServiceAccount = async () => {
        throw new ClusterUnreachable("cluster 'edge-sa' did not answer");
      };
      await visas.revoke(ada, visa.id, 'contract over');
      await reconciler.reconcileNow('edge-sa');
      assert.equal(edge.roleBindings.size, 0);
      const removed = await registry.remove(ada, 'edge-sa');
      assert.equal(removed.bindingsRemoved, false, 'the ServiceAccount is still there');
      assert.equal(edge.serviceAccounts.size, 1);
      const [event] = (await store.listAudit({ action: 'cluster.removed' })).filter((e) => e.cluster === 'edge-sa');
      assert.equal(event!.details.bindingsRemoved, false, 'the audit trail says so too');
    } finally {
      reconciler.stop();
    }
    const follower = await realReconciler(false);
    try {
      // A replica that does not lead runs no pass: it vouches only for a cluster where nothing was ever granted.
      const { visas, registry, ada, ask } = await visasOn('edge-follower', follower);
      await visas.deny(ada, (await ask('never granted')).id, 'no');
      assert.equal((await registry.remove(ada, 'edge-follower')).bindingsRemoved, true);
      const again = await visasOn('edge-follower-2', follower);
      const granted = await again.visas.approve(again.ada, (await again.ask('granted, then revoked')).id, {});
      await again.visas.revoke(again.ada, granted.id, 'contract over');
      assert.equal((await again.registry.remove(again.ada, 'edge-follower-2')).bindingsRemoved, false);
    } finally {
      follower.reconciler.stop();
    }
  });
});

describe('removing a cluster while another replica grants there (PostgreSQL, READ COMMITTED)', () => {
  let database: TestDatabase;
  let pgStore: PostgresStore;
  /** The same database as another replica sees it. */
  let otherStore: PostgresStore;
  before(async () => {
    database = await createTestDatabase('registry_race');
    pgStore = await openPostgresStore({ url: database.url });
    otherStore = await openPostgresStore({ url: database.url });
  });
  after(async () => {
    await otherStore.close();
    await pgStore.close();
    await database.drop();
  });

  test('a visa requested and approved on a replica whose cluster list is stale, while the deleting transaction is open, is refused: nothing is left granting in the removed cluster', async () => {
    const clusters = new Map<string, ClusterClient>();
    const policy = aPolicy({ approverGroups: [] });
    const configuredClusters: ReadonlySet<string> = new Set();
    const here = { store: pgStore, policy, clusterNames: () => [...clusters.keys()], configuredClusters };
    const ports = { ...here, events: new AppEvents(), now: () => NOW };
    // The other replica has not heard of the removal yet: it still lists the cluster.
    const stale = new VisaService({
      ...here,
      store: otherStore,
      clusterNames: () => ['edge-pg'],
      events: new AppEvents(),
      now: () => NOW,
    });
    await pgStore.transaction(async (tx) => {
      for (const profile of SHIPPED_PROFILES) await tx.upsertProfile(profile);
    });
    const ada = await caller('ada', ['admin'], pgStore);
    const carl = await caller('carl', [], pgStore);
    // The removal's own transaction, caught when it deletes the cluster: the other replica grants meanwhile.
    let race: Promise<unknown> | undefined;
    const grantElsewhere = async () => {
      const visa = await stale.request(carl, {
        engagement: 'race-pg',
        cluster: 'edge-pg',
        namespaces: ['shop'],
        profile: 'viewer',
        duration: '2h',
        reason: 'approved elsewhere during the removal',
      });
      return stale.approve(ada, visa.id, {});
    };
    const hooked = new Proxy(pgStore, {
      get(target, property) {
        if (property !== 'transaction') return Reflect.get(target, property, target) as unknown;
        return <T>(work: (tx: StoreTx) => Promise<T>) =>
          target.transaction((tx) =>
            work(
              new Proxy(tx, {
                get(t, p) {
                  const value = Reflect.get(t, p, t) as unknown;
                  if (p === 'deleteCluster' && race === undefined) {
                    return async (name: string) => {
                      const deleted = await t.deleteCluster(name);
                      race = grantElsewhere().catch((error: unknown) => error);
                      // Long enough for the other replica to commit, unless it waits for this transaction.
                      await Promise.race([race, new Promise((resolve) => setTimeout(resolve, 1500))]);
                      return deleted;
                    };
                  }
                  return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value;
                },
              }),
            ),
          );
      },
    });
    const made = new ClusterRegistry({
      store: hooked,
      secretBox,
      clusters,
      configured: new Map(),
      directMode: new Set(),
      reconciler: fakeReconciler().reconciler,
      events: ports.events,
      visas: new VisaService(ports),
      createClient: fakeClient,
      now: () => NOW,
    });
    await made.add(admin, { name: 'edge-pg', kubeconfig: kubeconfig('https://127.0.0.1:7010').yaml });
    await new EngagementService(ports).create(ada, {
      name: 'race-pg',
      vendor: 'Acme',
      contractors: ['carl@corp.example'],
      sponsor: 'ada@corp.example',
      endsAt: new Date(NOW + 30 * 86_400_000).toISOString(),
      ceiling: { clusters: ['edge-pg'], namespacePatterns: ['shop'], profiles: ['viewer'] },
      maxVisaDuration: '1d',
    });
    const removed = await made.remove(ada, 'edge-pg', { force: true });
    const raced = await race;
    const left = await pgStore.listVisas({ cluster: 'edge-pg', states: ['requested', 'approved', 'active'] });
    assert.deepEqual(
      left.map((v) => `${v.id} ${v.state}`),
      [],
      'no visa grants or waits in the removed cluster',
    );
    assert.equal(await pgStore.getRegisteredCluster('edge-pg'), undefined);
    assert.ok(race !== undefined, 'the other replica raced the deleting transaction');
    // Refused (it waited for the removal), or ended by another round of it (it committed first).
    if (raced instanceof Error) assert.match(raced.message, /edge-pg/);
    else assert.deepEqual(removed.revoked, [(raced as Visa).id]);
  });
});
