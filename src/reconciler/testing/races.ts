// Shared set-up for the reconciler race tests: the same world as reconciler.test.ts (a real SQLite store in memory, the
// real VisaService and EngagementService, the FakeCluster), with a clock the test moves.
import { systemCaller, type Caller } from '../../app/caller.ts';
import { EngagementService } from '../../app/engagements.ts';
import { AppEvents } from '../../app/events.ts';
import { VisaService } from '../../app/visas.ts';
import type { Actor } from '../../domain/model.ts';
import { aPolicy, DAY, NOW } from '../../domain/testing/fixtures.ts';
import { SHIPPED_PROFILES } from '../../rbac/profiles.ts';
import { openSqliteStore } from '../../store/sqlite.ts';
import type { Store } from '../../store/store.ts';
import { FakeCluster } from './fake-cluster.ts';

export const EMAIL = 'carol@vendor.example';

export interface World {
  store: Store;
  clock: { now: number };
  cluster: FakeCluster;
  visas: VisaService;
  engagements: EngagementService;
  carol: Caller;
  approver: Caller;
  person: (subject: string, email: string, roles: Actor['roles']) => Promise<Caller>;
  grant: (namespaces: string[], duration?: string, who?: Caller) => ReturnType<VisaService['approve']>;
}

export async function world(contractors: string[] = [EMAIL]): Promise<World> {
  const clock = { now: NOW };
  const store = await openSqliteStore({ path: ':memory:' });
  await store.transaction(async (tx) => {
    for (const profile of SHIPPED_PROFILES) await tx.upsertProfile(profile);
  });
  const person = async (subject: string, email: string, roles: Actor['roles']): Promise<Caller> => {
    const saved = await store.transaction(async (tx) => {
      const p = await tx.upsertPersonFromLogin({
        issuer: 'https://idp.example',
        subject,
        email,
        displayName: subject,
        groups: [],
        now: NOW - DAY,
      });
      return tx.setPersonRoles(p.id, roles, NOW - DAY);
    });
    return { actor: { personId: saved.id, email: saved.email, roles: saved.roles, groups: [] } };
  };
  const carol = await person('carol', EMAIL, []);
  const approver = await person('abe', 'abe@corp.example', ['approver']);
  const ports = {
    store,
    policy: aPolicy({ approverGroups: [] }),
    clusterNames: () => ['prod'],
    events: new AppEvents(),
    now: () => clock.now,
  };
  const visas = new VisaService(ports);
  const engagements = new EngagementService(ports);
  await engagements.createAs(systemCaller('test'), {
    name: 'acme',
    vendor: 'Acme',
    contractors,
    sponsor: 'sam@corp.example',
    endsAt: new Date(NOW + 30 * DAY).toISOString(),
    ceiling: { clusters: ['prod'], namespacePatterns: ['payments', 'billing'], profiles: ['viewer'] },
    maxVisaDuration: '3d',
  });
  const cluster = new FakeCluster({ name: 'prod', namespaces: ['payments', 'billing'], profiles: SHIPPED_PROFILES });
  const grant = async (namespaces: string[], duration = '2h', who: Caller = carol) => {
    const requested = await visas.request(who, {
      cluster: 'prod',
      namespaces,
      profile: 'viewer',
      duration,
      reason: 'JIRA-1',
    });
    return visas.approve(approver, requested.id, {});
  };
  return { store, clock, cluster, visas, engagements, carol, approver, person, grant };
}

/** Holds `method` once: the call is made (it reads), then its answer waits until `release`. */
export function holdAfter<T extends object, K extends keyof T>(target: T, method: K) {
  const original = target[method] as (...args: unknown[]) => Promise<unknown>;
  const reached = Promise.withResolvers<void>();
  const released = Promise.withResolvers<void>();
  (target as Record<K, unknown>)[method] = async (...args: unknown[]) => {
    (target as Record<K, unknown>)[method] = original;
    const answer = await original.apply(target, args);
    reached.resolve();
    await released.promise;
    return answer;
  };
  return { reached: reached.promise, release: () => released.resolve() };
}

/** Holds `method` once before it is called, until `open`. */
export function gate<T extends object, K extends keyof T>(target: T, method: K) {
  const original = target[method] as (...args: unknown[]) => Promise<unknown>;
  const reached = Promise.withResolvers<void>();
  const opened = Promise.withResolvers<void>();
  (target as Record<K, unknown>)[method] = async (...args: unknown[]) => {
    (target as Record<K, unknown>)[method] = original;
    reached.resolve();
    await opened.promise;
    return original.apply(target, args);
  };
  return { reached: reached.promise, open: () => opened.resolve() };
}

export const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

/** Widens the viewer profile's ClusterRole by hand (secrets get) and makes kubevisa unable to put it back. */
export function widenViewerUnrestorably(cluster: FakeCluster): void {
  const role = cluster.profileRoles.get('kubevisa:profile:viewer')!;
  cluster.profileRoles.set('kubevisa:profile:viewer', {
    ...role,
    rules: [...role.rules, { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'] }],
    metadata: { ...role.metadata, resourceVersion: '9999' },
  });
  cluster.replaceProfileClusterRole = async () => {
    throw new Error('forbidden: kubevisa may not update clusterroles (test)');
  };
}
