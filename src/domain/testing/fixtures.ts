/**
 * Plain values for the domain's unit tests: one engagement with one contractor and one sponsor, a policy, two
 * profiles and the actors around them. Each builder takes overrides so a test states only what it is about.
 */
import type { Actor, Engagement, Person, Policy, Profile, Visa } from '../model.ts';
import { requestVisa, type VisaRequestInput } from '../visa.ts';

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** Monday 2026-03-02 10:00 UTC (11:00 in Berlin): inside the fixture's working hours. */
export const MONDAY_10_UTC = Date.UTC(2026, 2, 2, 10, 0, 0);
export const NOW = MONDAY_10_UTC;

export const CONTRACTOR_EMAIL = 'carol@vendor.example';
export const SPONSOR_EMAIL = 'sam@corp.example';

export function aPerson(overrides: Partial<Person> = {}): Person {
  return {
    id: 'p_carol',
    issuer: 'https://idp.example',
    subject: 'carol',
    email: CONTRACTOR_EMAIL,
    displayName: 'Carol Contractor',
    groups: [],
    roles: [],
    status: 'active',
    createdAt: NOW - 30 * DAY,
    updatedAt: NOW - 30 * DAY,
    ...overrides,
  };
}

export function anEngagement(overrides: Partial<Engagement> = {}): Engagement {
  return {
    id: 'e_acme',
    name: 'acme-2026',
    vendor: 'Acme Consulting',
    contractors: [CONTRACTOR_EMAIL, 'chris@vendor.example'],
    sponsor: SPONSOR_EMAIL,
    startsAt: NOW - 10 * DAY,
    endsAt: NOW + 30 * DAY,
    ceiling: {
      clusters: ['prod', 'staging'],
      namespacePatterns: ['payments', 'staging-*'],
      profiles: ['viewer', 'debugger'],
    },
    maxVisaSeconds: 3 * 24 * 3600,
    status: 'active',
    createdAt: NOW - 10 * DAY,
    createdBy: 'admin@corp.example',
    ...overrides,
  };
}

export function aPolicy(overrides: Partial<Policy> = {}): Policy {
  return {
    requiredApprovals: 1,
    approverGroups: ['platform-approvers'],
    autoApproval: [],
    maxVisaSeconds: 7 * 24 * 3600,
    expiryNoticeSeconds: 15 * 60,
    ...overrides,
  };
}

export function aProfile(overrides: Partial<Profile> = {}): Profile {
  return {
    name: 'viewer',
    description: 'read-only',
    rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
    declaredRisks: [],
    maxVisaSeconds: 7 * 24 * 3600,
    recordSessions: false,
    ...overrides,
  };
}

export function anActor(overrides: Partial<Actor> = {}): Actor {
  return { personId: 'p_sam', email: SPONSOR_EMAIL, roles: [], groups: [], ...overrides };
}

/** The sponsor of the fixture engagement. */
export const sponsor: Actor = anActor();
/** An admin unrelated to the engagement. */
export const admin: Actor = anActor({ personId: 'p_ada', email: 'ada@corp.example', roles: ['admin'] });
/** The holder of visas requested with `aRequest` (the fixture contractor). */
export const holder: Actor = anActor({ personId: 'p_carol', email: CONTRACTOR_EMAIL });

export function aRequestInput(overrides: Partial<VisaRequestInput> = {}): VisaRequestInput {
  return {
    id: 'v_one',
    cluster: 'prod',
    namespaces: ['payments'],
    profile: 'viewer',
    durationSeconds: 8 * 3600,
    reason: 'JIRA-123 investigate failed payouts',
    ...overrides,
  };
}

/** A visa requested by the fixture contractor at `NOW` with the fixture engagement, profile and policy. */
export function aRequestedVisa(overrides: Partial<VisaRequestInput> = {}, policy: Policy = aPolicy()): Visa {
  return requestVisa(aRequestInput(overrides), {
    person: aPerson(),
    engagement: anEngagement(),
    profile: aProfile(),
    policy,
    now: NOW,
  });
}

/**
 * Freezes a value and everything inside it, so a lifecycle function that tried to change its argument would
 * throw (modules run in strict mode) instead of silently passing a test.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
