/**
 * What the conformance suites share: fixtures, a fixed clock, and matchers by stable error code. Only the Store
 * interface is used here, never engine internals.
 */
import assert from 'node:assert/strict';
import { Conflict, NotFound } from '../domain/errors.ts';
import type { Engagement, Person, Profile, Visa } from '../domain/model.ts';
import type { NewAuditEvent, Store, StoreTx } from './store.ts';

/** Opens a new, empty store of the engine under test (the suites close every store they open). */
export type OpenFresh = () => Promise<Store>;

/** Runs `body` against a fresh store from `openFresh` and always closes it. */
export function withFreshStore(openFresh: OpenFresh): (body: (store: Store) => Promise<void>) => Promise<void> {
  return async (body) => {
    const store = await openFresh();
    try {
      await body(store);
    } finally {
      await store.close();
    }
  };
}

export const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** A NotFound or Conflict, matched by stable code (what callers branch on), not by class identity or message. */
export function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof Error, 'expected an Error');
    assert.equal((error as Error & { code?: unknown }).code, code);
    return true;
  };
}
export const isNotFound = hasCode(NotFound.code);
export const isConflict = hasCode(Conflict.code);

export function login(email: string, subject = email.split('@')[0] ?? email, now = T0) {
  return { issuer: 'https://idp.example', subject, email, displayName: `Name of ${subject}`, groups: ['staff'], now };
}

export function engagementFixture(id: string, overrides: Partial<Engagement> = {}): Engagement {
  return {
    id,
    name: `Engagement ${id}`,
    vendor: 'Vendor Ltd',
    contractors: ['alice@vendor.example'],
    sponsor: 'sam@corp.example',
    startsAt: T0,
    endsAt: T0 + 90 * DAY,
    ceiling: { clusters: ['prod', 'staging'], namespacePatterns: ['payments', 'staging-*'], profiles: ['viewer'] },
    maxVisaSeconds: 8 * 3600,
    status: 'active',
    createdAt: T0 - DAY,
    createdBy: 'admin@corp.example',
    ...overrides,
  };
}

export function visaFixture(id: string, person: Person, engagementId: string, overrides: Partial<Visa> = {}): Visa {
  return {
    id,
    engagementId,
    personId: person.id,
    personEmail: person.email,
    cluster: 'prod',
    namespaces: ['payments', 'billing'],
    profile: 'viewer',
    reason: 'JIRA-123',
    requestedAt: T0,
    requestedSeconds: 8 * 3600,
    notBefore: T0,
    notAfter: T0 + 8 * HOUR,
    state: 'requested',
    approvals: [],
    requiredApprovals: 1,
    ...overrides,
  };
}

export function profileFixture(name: string, overrides: Partial<Profile> = {}): Profile {
  return {
    name,
    description: `${name} profile`,
    rules: [
      { apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['web'], verbs: ['get'] },
      { nonResourceURLs: ['/healthz'], verbs: ['get'] },
    ],
    declaredRisks: [{ risk: 'pods-exec', justification: 'debugging payments incidents' }],
    maxVisaSeconds: 4 * 3600,
    recordSessions: true,
    ...overrides,
  };
}

export function auditFixture(action: string, overrides: Partial<NewAuditEvent> = {}): NewAuditEvent {
  return { at: T0, actor: 'alice@vendor.example', action, outcome: 'ok', details: {}, ...overrides };
}

/** A person and an active engagement covering them: what most visa tests need. */
export async function seed(tx: StoreTx): Promise<{ alice: Person; bob: Person; engagement: Engagement }> {
  const alice = await tx.upsertPersonFromLogin(login('alice@vendor.example'));
  const bob = await tx.upsertPersonFromLogin(login('bob@vendor.example'));
  const engagement = await tx.insertEngagement(
    engagementFixture('eng-1', { contractors: ['alice@vendor.example', 'bob@vendor.example'] }),
  );
  return { alice, bob, engagement };
}
