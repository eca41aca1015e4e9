/**
 * The behaviour every store engine must show, as node:test tests. An engine's test file calls
 * `storeConformanceSuite('sqlite', openFresh)`; the PostgreSQL engine runs the very same suite. Each test opens a
 * fresh, empty store and closes it. Only the Store interface is used here, never engine internals.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Conflict, NotFound } from '../domain/errors.ts';
import type { Engagement, Person, Profile, Visa } from '../domain/model.ts';
import { GENESIS_HASH, computeAuditHash, verifyChain } from './audit-chain.ts';
import { auditConformanceSuite } from './conformance-audit.ts';
import { identityConformanceSuite } from './conformance-identity.ts';
import type { AuditEvent, NewAuditEvent, Store, StoreTx } from './store.ts';

export interface ConformanceOptions {
  /**
   * Opens a second store on the same data as `previous`, as a restarted process would (without closing
   * `previous`: a crashed process never closes). Tests that need it are skipped, visibly, when absent.
   */
  reopen?: (previous: Store) => Promise<Store>;
}

const T0 = Date.UTC(2030, 0, 15, 9, 0, 0);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A NotFound or Conflict, matched by stable code (what callers branch on), not by class identity or message. */
function hasCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof Error, 'expected an Error');
    assert.equal((error as Error & { code?: unknown }).code, code);
    return true;
  };
}
const isNotFound = hasCode(NotFound.code);
const isConflict = hasCode(Conflict.code);

function login(email: string, subject = email.split('@')[0] ?? email, now = T0) {
  return { issuer: 'https://idp.example', subject, email, displayName: `Name of ${subject}`, groups: ['staff'], now };
}

function engagementFixture(id: string, overrides: Partial<Engagement> = {}): Engagement {
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

function visaFixture(id: string, person: Person, engagementId: string, overrides: Partial<Visa> = {}): Visa {
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

function profileFixture(name: string, overrides: Partial<Profile> = {}): Profile {
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

function auditFixture(action: string, overrides: Partial<NewAuditEvent> = {}): NewAuditEvent {
  return { at: T0, actor: 'alice@vendor.example', action, outcome: 'ok', details: {}, ...overrides };
}

/** A person and an active engagement covering them: what most visa tests need. */
async function seed(tx: StoreTx): Promise<{ alice: Person; bob: Person; engagement: Engagement }> {
  const alice = await tx.upsertPersonFromLogin(login('alice@vendor.example'));
  const bob = await tx.upsertPersonFromLogin(login('bob@vendor.example'));
  const engagement = await tx.insertEngagement(
    engagementFixture('eng-1', { contractors: ['alice@vendor.example', 'bob@vendor.example'] }),
  );
  return { alice, bob, engagement };
}

export function storeConformanceSuite(
  name: string,
  openFresh: () => Promise<Store>,
  options: ConformanceOptions = {},
): void {
  /** Runs `body` against a fresh store and always closes it. */
  async function withStore(body: (store: Store) => Promise<void>): Promise<void> {
    const store = await openFresh();
    try {
      await body(store);
    } finally {
      await store.close();
    }
  }

  describe(`store conformance: ${name}`, () => {
    describe('persons', () => {
      test('creates a person from a first login with a p_ id, status active and no roles', () =>
        withStore(async (store) => {
          const person = await store.transaction((tx) => tx.upsertPersonFromLogin(login('Alice@Vendor.example')));
          assert.match(person.id, /^p_[a-z2-7]{26}$/);
          assert.deepEqual(person, {
            id: person.id,
            issuer: 'https://idp.example',
            subject: 'Alice',
            email: 'alice@vendor.example',
            displayName: 'Name of Alice',
            groups: ['staff'],
            roles: [],
            status: 'active',
            createdAt: T0,
            updatedAt: T0,
          });
          assert.deepEqual(await store.getPerson(person.id), person);
        }));

      test('a later login refreshes email, name and groups but keeps id, status, roles and createdAt', () =>
        withStore(async (store) => {
          const first = await store.transaction(async (tx) => {
            const p = await tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-1'));
            await tx.setPersonRoles(p.id, ['approver'], T0 + 1);
            return tx.setPersonStatus(p.id, 'suspended', T0 + 2);
          });
          const again = await store.transaction((tx) =>
            tx.upsertPersonFromLogin({
              issuer: 'https://idp.example',
              subject: 'sub-1',
              email: 'alice.new@vendor.example',
              displayName: 'Alice N.',
              groups: ['staff', 'oncall'],
              now: T0 + HOUR,
            }),
          );
          assert.deepEqual(again, {
            ...first,
            email: 'alice.new@vendor.example',
            displayName: 'Alice N.',
            groups: ['staff', 'oncall'],
            updatedAt: T0 + HOUR,
          });
          assert.equal(again.status, 'suspended');
          assert.deepEqual(again.roles, ['approver']);
          assert.equal((await store.listPersons()).length, 1);
        }));

      test('finds a person by email (any case) and by issuer and subject; unknown ones are undefined', () =>
        withStore(async (store) => {
          const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
          assert.deepEqual(await store.getPersonByEmail('ALICE@vendor.example'), alice);
          assert.deepEqual(await store.getPersonBySubject('https://idp.example', 'alice'), alice);
          assert.equal(await store.getPersonBySubject('https://other-idp.example', 'alice'), undefined);
          assert.equal(await store.getPersonByEmail('nobody@vendor.example'), undefined);
          assert.equal(await store.getPerson('p_unknown'), undefined);
        }));

      test('refuses a login whose email already belongs to another identity', () =>
        withStore(async (store) => {
          await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-1')));
          await assert.rejects(
            store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example', 'sub-2'))),
            isConflict,
          );
          assert.equal((await store.listPersons()).length, 1);
        }));

      test('sets status and roles, and refuses an unknown person with NotFound', () =>
        withStore(async (store) => {
          const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
          const updated = await store.transaction(async (tx) => {
            await tx.setPersonStatus(alice.id, 'deprovisioned', T0 + MINUTE);
            return tx.setPersonRoles(alice.id, ['admin', 'auditor'], T0 + 2 * MINUTE);
          });
          assert.equal(updated.status, 'deprovisioned');
          assert.deepEqual(updated.roles, ['admin', 'auditor']);
          assert.equal(updated.updatedAt, T0 + 2 * MINUTE);
          await assert.rejects(
            store.transaction((tx) => tx.setPersonStatus('p_nobody', 'active', T0)),
            isNotFound,
          );
          await assert.rejects(
            store.transaction((tx) => tx.setPersonRoles('p_nobody', [], T0)),
            isNotFound,
          );
        }));

      test('lists persons ordered by email', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            await tx.upsertPersonFromLogin(login('carol@vendor.example'));
            await tx.upsertPersonFromLogin(login('alice@vendor.example'));
            await tx.upsertPersonFromLogin(login('bob@vendor.example'));
          });
          assert.deepEqual(
            (await store.listPersons()).map((p) => p.email),
            ['alice@vendor.example', 'bob@vendor.example', 'carol@vendor.example'],
          );
        }));
    });

    describe('engagements', () => {
      test('an engagement reads back exactly as inserted, optional fields included', () =>
        withStore(async (store) => {
          const ended = engagementFixture('eng-ended', {
            status: 'ended',
            endedAt: T0 + DAY,
            endedBy: 'admin@corp.example',
            endReason: 'contract terminated early',
          });
          const open = engagementFixture('eng-open');
          await store.transaction(async (tx) => {
            assert.deepEqual(await tx.insertEngagement(ended), ended);
            await tx.insertEngagement(open);
          });
          assert.deepEqual(await store.getEngagement('eng-ended'), ended);
          assert.deepEqual(await store.getEngagement('eng-open'), open);
          assert.equal(await store.getEngagement('eng-none'), undefined);
        }));

      test('refuses a second engagement with the same id', () =>
        withStore(async (store) => {
          await store.transaction((tx) => tx.insertEngagement(engagementFixture('eng-1')));
          await assert.rejects(
            store.transaction((tx) => tx.insertEngagement(engagementFixture('eng-1', { name: 'other' }))),
            isConflict,
          );
          assert.equal((await store.getEngagement('eng-1'))?.name, 'Engagement eng-1');
        }));

      test('filters engagements by status and by contractor', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            await tx.insertEngagement(engagementFixture('e1', { contractors: ['alice@vendor.example'] }));
            await tx.insertEngagement(
              engagementFixture('e2', {
                startsAt: T0 + DAY,
                contractors: ['alice@vendor.example', 'bob@vendor.example'],
                status: 'ended',
                endedAt: T0 + 2 * DAY,
                endedBy: 'admin@corp.example',
              }),
            );
            await tx.insertEngagement(
              engagementFixture('e3', { startsAt: T0 + 2 * DAY, contractors: ['bob@vendor.example'] }),
            );
          });
          const ids = (list: Engagement[]) => list.map((e) => e.id);
          assert.deepEqual(ids(await store.listEngagements()), ['e1', 'e2', 'e3']);
          assert.deepEqual(ids(await store.listEngagements({ status: 'active' })), ['e1', 'e3']);
          assert.deepEqual(ids(await store.listEngagements({ contractor: 'alice@vendor.example' })), ['e1', 'e2']);
          assert.deepEqual(ids(await store.listEngagements({ contractor: 'BOB@vendor.example', status: 'active' })), [
            'e3',
          ]);
          assert.deepEqual(ids(await store.listEngagements({ contractor: 'carol@vendor.example' })), []);
        }));

      test('an update replaces the engagement, its contractor index included; an unknown id is NotFound', () =>
        withStore(async (store) => {
          await store.transaction((tx) => tx.insertEngagement(engagementFixture('e1')));
          const changed = engagementFixture('e1', {
            contractors: ['bob@vendor.example'],
            ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['viewer', 'debugger'] },
            status: 'ended',
            endedAt: T0 + DAY,
            endedBy: 'sam@corp.example',
            endReason: 'scope changed',
          });
          assert.deepEqual(await store.transaction((tx) => tx.updateEngagement(changed)), changed);
          assert.deepEqual(await store.getEngagement('e1'), changed);
          assert.deepEqual(await store.listEngagements({ contractor: 'alice@vendor.example' }), []);
          assert.deepEqual(
            (await store.listEngagements({ contractor: 'bob@vendor.example' })).map((e) => e.id),
            ['e1'],
          );
          await assert.rejects(
            store.transaction((tx) => tx.updateEngagement(engagementFixture('e9'))),
            isNotFound,
          );
        }));
    });

    describe('visas', () => {
      test('a visa reads back exactly as inserted, with version 1', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          const visa = visaFixture('v1', alice, 'eng-1', {
            state: 'active',
            approvals: [
              { by: 'sam@corp.example', at: T0 + MINUTE, comment: 'ok for the incident' },
              { by: 'auto:staging-viewer', at: T0 + MINUTE, automatic: true },
            ],
            requiredApprovals: 2,
            extends: 'v0',
            decidedAt: T0 + MINUTE,
            decidedBy: 'sam@corp.example',
          });
          const stored = await store.transaction((tx) => tx.insertVisa(visa));
          assert.deepEqual(stored, { ...visa, version: 1 });
          assert.deepEqual(await store.getVisa('v1'), { ...visa, version: 1 });
          assert.equal(await store.getVisa('v-none'), undefined);
        }));

      test('refuses a visa with a taken id (Conflict) or an unknown engagement or person (NotFound)', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          await store.transaction((tx) => tx.insertVisa(visaFixture('v1', alice, 'eng-1')));
          await assert.rejects(
            store.transaction((tx) => tx.insertVisa(visaFixture('v1', alice, 'eng-1'))),
            isConflict,
          );
          await assert.rejects(
            store.transaction((tx) => tx.insertVisa(visaFixture('v2', alice, 'eng-x'))),
            isNotFound,
          );
          const ghost: Person = { ...alice, id: 'p_ghost' };
          await assert.rejects(
            store.transaction((tx) => tx.insertVisa(visaFixture('v3', ghost, 'eng-1'))),
            isNotFound,
          );
          assert.deepEqual(
            (await store.listVisas()).map((v) => v.id),
            ['v1'],
          );
        }));

      test('an update replaces the visa and increments its version', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          const visa = visaFixture('v1', alice, 'eng-1');
          await store.transaction((tx) => tx.insertVisa(visa));
          const approved: Visa = {
            ...visa,
            state: 'approved',
            approvals: [{ by: 'sam@corp.example', at: T0 + MINUTE }],
            decidedAt: T0 + MINUTE,
            decidedBy: 'sam@corp.example',
          };
          assert.deepEqual(await store.transaction((tx) => tx.updateVisa(approved, 1)), { ...approved, version: 2 });
          const revoked: Visa = {
            ...approved,
            state: 'revoked',
            endedAt: T0 + HOUR,
            endedBy: 'sam@corp.example',
            endReason: 'contract ended',
          };
          assert.deepEqual(await store.transaction((tx) => tx.updateVisa(revoked)), { ...revoked, version: 3 });
          assert.deepEqual(await store.getVisa('v1'), { ...revoked, version: 3 });
        }));

      test('an update from a stale version is refused with Conflict and changes nothing', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          const visa = visaFixture('v1', alice, 'eng-1');
          await store.transaction((tx) => tx.insertVisa(visa));
          await store.transaction((tx) => tx.updateVisa({ ...visa, state: 'approved' }, 1));
          await assert.rejects(
            store.transaction((tx) => tx.updateVisa({ ...visa, state: 'denied' }, 1)),
            (error: unknown) => {
              isConflict(error);
              assert.deepEqual((error as Conflict).details, { visaId: 'v1', expectedVersion: 1, currentVersion: 2 });
              return true;
            },
          );
          const stored = await store.getVisa('v1');
          assert.equal(stored?.state, 'approved');
          assert.equal(stored?.version, 2);
        }));

      test('of two concurrent updates from the same version exactly one wins', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          const visa = visaFixture('v1', alice, 'eng-1');
          await store.transaction((tx) => tx.insertVisa(visa));
          const results = await Promise.allSettled([
            store.transaction(async (tx) => {
              await sleep(5);
              return tx.updateVisa({ ...visa, state: 'approved' }, 1);
            }),
            store.transaction(async (tx) => {
              await sleep(5);
              return tx.updateVisa({ ...visa, state: 'denied' }, 1);
            }),
          ]);
          const fulfilled = results.filter((r) => r.status === 'fulfilled');
          const rejected = results.filter((r) => r.status === 'rejected');
          assert.equal(fulfilled.length, 1);
          assert.equal(rejected.length, 1);
          assert.ok(rejected[0] !== undefined && isConflict(rejected[0].reason));
          assert.equal((await store.getVisa('v1'))?.version, 2);
        }));

      test('updating an unknown visa is NotFound', () =>
        withStore(async (store) => {
          const { alice } = await store.transaction(seed);
          await assert.rejects(
            store.transaction((tx) => tx.updateVisa(visaFixture('v9', alice, 'eng-1'))),
            isNotFound,
          );
          await assert.rejects(
            store.transaction((tx) => tx.updateVisa(visaFixture('v9', alice, 'eng-1'), 1)),
            isNotFound,
          );
        }));

      test('filters visas by state, states, person, engagement and cluster, combined with AND', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            const { alice, bob } = await seed(tx);
            await tx.insertEngagement(engagementFixture('eng-2'));
            await tx.insertVisa(visaFixture('v1', alice, 'eng-1', { state: 'active', requestedAt: T0 + 1 }));
            await tx.insertVisa(
              visaFixture('v2', alice, 'eng-2', { state: 'requested', requestedAt: T0 + 2, cluster: 'staging' }),
            );
            await tx.insertVisa(
              visaFixture('v3', bob, 'eng-1', { state: 'active', requestedAt: T0 + 3, cluster: 'staging' }),
            );
            await tx.insertVisa(visaFixture('v4', bob, 'eng-1', { state: 'revoked', requestedAt: T0 + 4 }));
          });
          const alice = await store.getPersonByEmail('alice@vendor.example');
          assert.ok(alice);
          const ids = async (filter: Parameters<Store['listVisas']>[0]) =>
            (await store.listVisas(filter)).map((v) => v.id);
          assert.deepEqual(await ids({}), ['v1', 'v2', 'v3', 'v4']);
          assert.deepEqual(await ids({ state: 'active' }), ['v1', 'v3']);
          assert.deepEqual(await ids({ states: ['requested', 'revoked'] }), ['v2', 'v4']);
          assert.deepEqual(await ids({ states: [] }), []);
          assert.deepEqual(await ids({ personId: alice.id }), ['v1', 'v2']);
          assert.deepEqual(await ids({ engagementId: 'eng-2' }), ['v2']);
          assert.deepEqual(await ids({ cluster: 'staging' }), ['v2', 'v3']);
          assert.deepEqual(await ids({ cluster: 'staging', state: 'active' }), ['v3']);
          assert.deepEqual(await ids({ personId: alice.id, states: ['active', 'revoked'], cluster: 'prod' }), ['v1']);
        }));

      test('lists the visas granting at an instant: approved or active and notBefore <= now < notAfter', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            const { alice } = await seed(tx);
            const window = { notBefore: T0, notAfter: T0 + HOUR };
            await tx.insertVisa(visaFixture('active', alice, 'eng-1', { ...window, state: 'active' }));
            await tx.insertVisa(
              visaFixture('approved', alice, 'eng-1', { ...window, state: 'approved', notAfter: T0 + 2 * HOUR }),
            );
            await tx.insertVisa(visaFixture('requested', alice, 'eng-1', { ...window, state: 'requested' }));
            await tx.insertVisa(visaFixture('revoked', alice, 'eng-1', { ...window, state: 'revoked' }));
            await tx.insertVisa(
              visaFixture('later', alice, 'eng-1', {
                state: 'approved',
                notBefore: T0 + HOUR,
                notAfter: T0 + 3 * HOUR,
              }),
            );
          });
          const ids = async (now: number) => (await store.listVisasGrantingAt(now)).map((v) => v.id);
          assert.deepEqual(await ids(T0 - 1), []);
          assert.deepEqual(await ids(T0), ['active', 'approved']);
          assert.deepEqual(await ids(T0 + HOUR - 1), ['active', 'approved']);
          // notAfter is exclusive and notBefore inclusive: at T0 + 1 h one visa ends and another begins.
          assert.deepEqual(await ids(T0 + HOUR), ['approved', 'later']);
          assert.deepEqual(await ids(T0 + 3 * HOUR), []);
        }));

      test('lists visas in given states and those ending by a deadline, soonest first', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            const { alice } = await seed(tx);
            await tx.insertVisa(visaFixture('a3', alice, 'eng-1', { state: 'active', notAfter: T0 + 3 * HOUR }));
            await tx.insertVisa(visaFixture('a1', alice, 'eng-1', { state: 'active', notAfter: T0 + 1 * HOUR }));
            await tx.insertVisa(visaFixture('p2', alice, 'eng-1', { state: 'approved', notAfter: T0 + 2 * HOUR }));
            await tx.insertVisa(visaFixture('x0', alice, 'eng-1', { state: 'expired', notAfter: T0 }));
          });
          const ids = (list: { id: string }[]) => list.map((v) => v.id);
          assert.deepEqual(ids(await store.listVisasInStates(['approved', 'active'])), ['a1', 'p2', 'a3']);
          assert.deepEqual(ids(await store.listVisasInStates(['expired'])), ['x0']);
          assert.deepEqual(ids(await store.listVisasInStates([])), []);
          assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + HOUR - 1)), []);
          assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR)), ['a1', 'p2']);
          assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + 2 * HOUR, ['active'])), ['a1']);
          assert.deepEqual(ids(await store.listVisasEndingBefore(T0 + DAY, ['expired', 'active'])), ['x0', 'a1', 'a3']);
        }));
    });

    describe('transactions', () => {
      test('commits when the callback resolves and returns its value', () =>
        withStore(async (store) => {
          const value = await store.transaction(async (tx) => {
            await tx.upsertPersonFromLogin(login('alice@vendor.example'));
            return 42;
          });
          assert.equal(value, 42);
          assert.ok(await store.getPersonByEmail('alice@vendor.example'));
        }));

      test('rolls back everything, audit event included, when the callback throws, and rethrows the same error', () =>
        withStore(async (store) => {
          const boom = new Error('decided to give up');
          await assert.rejects(
            store.transaction(async (tx) => {
              const { alice } = await seed(tx);
              await tx.insertVisa(visaFixture('v1', alice, 'eng-1'));
              await tx.appendAudit(auditFixture('visa.requested', { visaId: 'v1' }));
              await tx.insertIntent({ kind: 'rolebinding.create', cluster: 'prod', payload: {}, createdAt: T0 });
              await tx.putSetting('k', 1, T0);
              throw boom;
            }),
            (error: unknown) => error === boom,
          );
          assert.deepEqual(await store.listPersons(), []);
          assert.deepEqual(await store.listEngagements(), []);
          assert.deepEqual(await store.listVisas(), []);
          assert.deepEqual(await store.listAudit(), []);
          assert.equal(await store.getAuditHead(), undefined);
          assert.deepEqual(await store.listPendingIntents(), []);
          assert.equal(await store.getSetting('k'), undefined);
          // The rolled-back event left no hole: the next one is seq 1 and links to the genesis.
          const next = await store.transaction((tx) => tx.appendAudit(auditFixture('visa.requested')));
          assert.equal(next.seq, 1);
          assert.equal(next.prevHash, GENESIS_HASH);
        }));

      test('a read outside a transaction never sees a write that is later rolled back', () =>
        withStore(async (store) => {
          let written!: () => void;
          const writtenSignal = new Promise<void>((resolve) => (written = resolve));
          const failing = store.transaction(async (tx) => {
            await tx.upsertPersonFromLogin(login('ghost@vendor.example'));
            written();
            await sleep(20);
            throw new Error('abort');
          });
          await writtenSignal;
          const seen = await store.getPersonByEmail('ghost@vendor.example');
          await assert.rejects(failing, /abort/);
          assert.equal(seen, undefined);
          assert.equal(await store.getPersonByEmail('ghost@vendor.example'), undefined);
        }));

      test('refuses use of a tx after its transaction has ended', () =>
        withStore(async (store) => {
          let leaked: StoreTx | undefined;
          await store.transaction(async (tx) => {
            leaked = tx;
          });
          assert.ok(leaked);
          const tx = leaked;
          await assert.rejects(tx.upsertPersonFromLogin(login('late@vendor.example')), /ended/);
          await assert.rejects(tx.listPersons(), /ended/);
          assert.deepEqual(await store.listPersons(), []);
        }));

      test('after close every call is refused', async () => {
        const store = await openFresh();
        await store.close();
        await assert.rejects(store.listPersons(), hasCode('ERR_STORE_UNAVAILABLE'));
        await assert.rejects(
          store.transaction(async () => 1),
          hasCode('ERR_STORE_UNAVAILABLE'),
        );
        await store.close();
      });
    });

    describe('intents', () => {
      test('an intent is pending until completed; completing is idempotent and keeps the first time', () =>
        withStore(async (store) => {
          const [first, second] = await store.transaction(async (tx) => [
            await tx.insertIntent({
              kind: 'rolebinding.create',
              cluster: 'prod',
              visaId: 'v1',
              personId: 'p_x',
              payload: {
                namespace: 'payments',
                name: 'kubevisa-v1',
                labels: { 'kubevisa.io/visa': 'v1' },
                n: [1, true, null],
              },
              createdAt: T0,
            }),
            await tx.insertIntent({
              id: 'i_chosen',
              kind: 'serviceaccount.delete',
              cluster: 'staging',
              payload: {},
              createdAt: T0 + 1,
            }),
          ]);
          assert.ok(first && second);
          assert.match(first.id, /^i_[a-z2-7]{26}$/);
          assert.equal(second.id, 'i_chosen');
          assert.deepEqual(await store.getIntent(first.id), first);
          assert.equal(first.completedAt, undefined);
          assert.deepEqual(
            (await store.listPendingIntents()).map((i) => i.id),
            [first.id, 'i_chosen'],
          );
          assert.deepEqual(
            (await store.listPendingIntents({ cluster: 'staging' })).map((i) => i.id),
            ['i_chosen'],
          );

          const done = await store.transaction((tx) => tx.completeIntent(first.id, T0 + MINUTE));
          assert.deepEqual(done, { ...first, completedAt: T0 + MINUTE });
          const again = await store.transaction((tx) => tx.completeIntent(first.id, T0 + HOUR));
          assert.equal(again.completedAt, T0 + MINUTE);
          assert.deepEqual(
            (await store.listPendingIntents()).map((i) => i.id),
            ['i_chosen'],
          );
        }));

      test('refuses a duplicate intent id and completing an unknown intent', () =>
        withStore(async (store) => {
          const intent = { id: 'i_1', kind: 'rolebinding.delete', cluster: 'prod', payload: {}, createdAt: T0 };
          await store.transaction((tx) => tx.insertIntent(intent));
          await assert.rejects(
            store.transaction((tx) => tx.insertIntent(intent)),
            isConflict,
          );
          await assert.rejects(
            store.transaction((tx) => tx.completeIntent('i_none', T0)),
            isNotFound,
          );
        }));

      test('pending intents are still pending after a crash-like reopen', async (t) => {
        const reopen = options.reopen;
        if (reopen === undefined) {
          t.skip('this engine harness cannot reopen a store');
          return;
        }
        const store = await openFresh();
        let second: Store | undefined;
        try {
          const intent = await store.transaction((tx) =>
            tx.insertIntent({
              kind: 'rolebinding.create',
              cluster: 'prod',
              payload: { ns: 'payments' },
              createdAt: T0,
            }),
          );
          const done = await store.transaction((tx) =>
            tx.insertIntent({ kind: 'rolebinding.delete', cluster: 'prod', payload: {}, createdAt: T0 + 1 }),
          );
          await store.transaction((tx) => tx.completeIntent(done.id, T0 + 2));
          second = await reopen(store);
          assert.deepEqual(await second.listPendingIntents(), [intent]);
        } finally {
          await second?.close();
          await store.close();
        }
      });
    });

    describe('sessions', () => {
      test('a session reads back by id and by secret hash; a patch changes, keeps or clears fields', () =>
        withStore(async (store) => {
          const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
          const session = await store.transaction((tx) =>
            tx.insertSession({
              personId: alice.id,
              secretHash: 'hash-1',
              createdAt: T0,
              expiresAt: T0 + 12 * HOUR,
              idpRefreshTokenCiphertext: 'ciphertext',
              idpTokenExpiresAt: T0 + HOUR,
            }),
          );
          assert.match(session.id, /^s_[a-z2-7]{26}$/);
          assert.deepEqual(session, {
            id: session.id,
            personId: alice.id,
            secretHash: 'hash-1',
            createdAt: T0,
            expiresAt: T0 + 12 * HOUR,
            idpRefreshTokenCiphertext: 'ciphertext',
            idpTokenExpiresAt: T0 + HOUR,
          });
          assert.deepEqual(await store.getSession(session.id), session);
          assert.deepEqual(await store.getSessionBySecretHash('hash-1'), session);
          assert.equal(await store.getSessionBySecretHash('hash-2'), undefined);

          const touched = await store.transaction((tx) =>
            tx.updateSession(session.id, { lastUsedAt: T0 + MINUTE, idpTokenExpiresAt: T0 + 2 * HOUR }),
          );
          assert.deepEqual(touched, { ...session, lastUsedAt: T0 + MINUTE, idpTokenExpiresAt: T0 + 2 * HOUR });
          const cleared = await store.transaction((tx) =>
            tx.updateSession(session.id, { idpRefreshTokenCiphertext: null, idpTokenExpiresAt: null }),
          );
          assert.equal('idpRefreshTokenCiphertext' in cleared, false);
          assert.equal('idpTokenExpiresAt' in cleared, false);
          assert.equal(cleared.lastUsedAt, T0 + MINUTE);
          await assert.rejects(
            store.transaction((tx) => tx.updateSession('s_none', { lastUsedAt: T0 })),
            isNotFound,
          );
        }));

      test('refuses a session for an unknown person, or with a taken id or secret hash', () =>
        withStore(async (store) => {
          const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
          const base = { personId: alice.id, secretHash: 'h1', createdAt: T0, expiresAt: T0 + HOUR };
          await store.transaction((tx) => tx.insertSession({ ...base, id: 's_1' }));
          await assert.rejects(
            store.transaction((tx) => tx.insertSession({ ...base, id: 's_1', secretHash: 'h2' })),
            isConflict,
          );
          await assert.rejects(
            store.transaction((tx) => tx.insertSession({ ...base, id: 's_2' })),
            isConflict,
          );
          await assert.rejects(
            store.transaction((tx) => tx.insertSession({ ...base, secretHash: 'h3', personId: 'p_ghost' })),
            isNotFound,
          );
        }));

      test('revoking a session records the first time and reason and drops the IdP refresh token', () =>
        withStore(async (store) => {
          const alice = await store.transaction((tx) => tx.upsertPersonFromLogin(login('alice@vendor.example')));
          const session = await store.transaction((tx) =>
            tx.insertSession({
              personId: alice.id,
              secretHash: 'h1',
              createdAt: T0,
              expiresAt: T0 + HOUR,
              idpRefreshTokenCiphertext: 'secret-ciphertext',
              idpTokenExpiresAt: T0 + HOUR,
            }),
          );
          const revoked = await store.transaction((tx) => tx.revokeSession(session.id, T0 + MINUTE, 'logout'));
          assert.deepEqual(revoked, {
            id: session.id,
            personId: alice.id,
            secretHash: 'h1',
            createdAt: T0,
            expiresAt: T0 + HOUR,
            revokedAt: T0 + MINUTE,
            revokeReason: 'logout',
          });
          const again = await store.transaction((tx) => tx.revokeSession(session.id, T0 + HOUR, 'offboarded'));
          assert.equal(again.revokedAt, T0 + MINUTE);
          assert.equal(again.revokeReason, 'logout');
          assert.deepEqual(await store.getSessionBySecretHash('h1'), revoked);
          await assert.rejects(
            store.transaction((tx) => tx.revokeSession('s_none', T0, 'x')),
            isNotFound,
          );
        }));

      test("revoking a person's sessions revokes only that person's live ones and counts them", () =>
        withStore(async (store) => {
          const { alice, bob } = await store.transaction(seed);
          await store.transaction(async (tx) => {
            await tx.insertSession({
              id: 's_a1',
              personId: alice.id,
              secretHash: 'a1',
              createdAt: T0,
              expiresAt: T0 + HOUR,
            });
            await tx.insertSession({
              id: 's_a2',
              personId: alice.id,
              secretHash: 'a2',
              createdAt: T0 + 1,
              expiresAt: T0 + HOUR,
            });
            await tx.insertSession({
              id: 's_a3',
              personId: alice.id,
              secretHash: 'a3',
              createdAt: T0 + 2,
              expiresAt: T0 + HOUR,
            });
            await tx.insertSession({
              id: 's_b1',
              personId: bob.id,
              secretHash: 'b1',
              createdAt: T0,
              expiresAt: T0 + HOUR,
            });
            await tx.revokeSession('s_a3', T0 + 5, 'logout');
          });
          const count = await store.transaction((tx) => tx.revokeSessionsOfPerson(alice.id, T0 + MINUTE, 'offboarded'));
          assert.equal(count, 2);
          const sessions = await store.listSessionsOfPerson(alice.id);
          assert.deepEqual(
            sessions.map((s) => [s.id, s.revokedAt, s.revokeReason]),
            [
              ['s_a1', T0 + MINUTE, 'offboarded'],
              ['s_a2', T0 + MINUTE, 'offboarded'],
              ['s_a3', T0 + 5, 'logout'],
            ],
          );
          assert.equal((await store.getSession('s_b1'))?.revokedAt, undefined);
          assert.equal(await store.transaction((tx) => tx.revokeSessionsOfPerson(alice.id, T0 + HOUR, 'again')), 0);
        }));
    });

    describe('pending logins', () => {
      test('a pending login round-trips, is found by lookup key, updated, deleted and expired', () =>
        withStore(async (store) => {
          const device = {
            id: 'device-code-hash',
            kind: 'device',
            lookupKey: 'WDJB-MJHT',
            payload: { codeVerifier: 'v', scope: ['openid', 'email'], approved: false },
            createdAt: T0,
            expiresAt: T0 + 10 * MINUTE,
          };
          const browser = { id: 'browser-1', kind: 'browser', payload: {}, createdAt: T0, expiresAt: T0 + 2 * MINUTE };
          await store.transaction(async (tx) => {
            assert.deepEqual(await tx.insertLogin(device), device);
            await tx.insertLogin(browser);
          });
          assert.deepEqual(await store.getLogin('device-code-hash'), device);
          assert.deepEqual(await store.getLoginByLookupKey('WDJB-MJHT'), device);
          assert.equal(await store.getLoginByLookupKey('XXXX-XXXX'), undefined);

          const updated = await store.transaction((tx) =>
            tx.updateLogin('device-code-hash', {
              payload: { ...device.payload, approved: true },
              expiresAt: T0 + 5 * MINUTE,
            }),
          );
          assert.deepEqual(updated, {
            ...device,
            payload: { ...device.payload, approved: true },
            expiresAt: T0 + 5 * MINUTE,
          });
          await assert.rejects(
            store.transaction((tx) => tx.updateLogin('none', { expiresAt: T0 })),
            isNotFound,
          );
          await assert.rejects(
            store.transaction((tx) => tx.insertLogin(device)),
            isConflict,
          );
          await assert.rejects(
            store.transaction((tx) => tx.insertLogin({ ...device, id: 'other' })),
            isConflict,
          );

          assert.equal(await store.transaction((tx) => tx.deleteExpiredLogins(T0 + 2 * MINUTE)), 1);
          assert.equal(await store.getLogin('browser-1'), undefined);
          assert.equal(await store.transaction((tx) => tx.deleteLogin('device-code-hash')), true);
          assert.equal(await store.transaction((tx) => tx.deleteLogin('device-code-hash')), false);
          assert.equal(await store.getLogin('device-code-hash'), undefined);
        }));
    });

    describe('audit', () => {
      test('assigns seq 1..n, links each event to the previous hash and hashes what it stores', () =>
        withStore(async (store) => {
          const appended = await store.transaction(async (tx) => [
            await tx.appendAudit(
              auditFixture('visa.requested', {
                sessionId: 's_1',
                visaId: 'v1',
                engagementId: 'eng-1',
                personId: 'p_1',
                cluster: 'prod',
                namespace: 'payments',
                reason: 'JIRA-123',
                details: { profile: 'viewer', seconds: 28800, nested: { b: 2, a: [1, 'x', null, false] } },
                source: { address: '192.0.2.7:51544', userAgent: 'kubevisa/0.1' },
              }),
            ),
            await tx.appendAudit(
              auditFixture('visa.approved', { actor: 'sam@corp.example', source: { address: '192.0.2.8' } }),
            ),
            await tx.appendAudit(auditFixture('visa.refused', { outcome: 'refused', reason: 'self-approval' })),
          ]);
          assert.deepEqual(
            appended.map((e) => e.seq),
            [1, 2, 3],
          );
          assert.equal(appended[0]?.prevHash, GENESIS_HASH);
          assert.equal(appended[1]?.prevHash, appended[0]?.hash);
          assert.equal(appended[2]?.prevHash, appended[1]?.hash);
          for (const event of appended) {
            assert.match(event.hash, /^[0-9a-f]{64}$/);
            assert.equal(computeAuditHash(event), event.hash);
          }
          const listed = await store.listAudit();
          assert.deepEqual(listed, appended);
          assert.deepEqual(verifyChain(listed), { ok: true, count: 3, head: { seq: 3, hash: appended[2]?.hash } });
          assert.deepEqual(await store.getAuditHead(), { seq: 3, hash: appended[2]?.hash });
        }));

      test('an event without details stores an empty object', () =>
        withStore(async (store) => {
          const { details: _omitted, ...withoutDetails } = auditFixture('session.created');
          const event = await store.transaction((tx) => tx.appendAudit(withoutDetails));
          assert.deepEqual(event.details, {});
          assert.deepEqual((await store.listAudit())[0], event);
        }));

      test('filters and pages the audit trail', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            for (let i = 1; i <= 10; i++) {
              await tx.appendAudit(
                auditFixture(i % 2 === 0 ? 'visa.approved' : 'visa.requested', {
                  visaId: `v${i % 3}`,
                  personId: i <= 5 ? 'p_a' : 'p_b',
                  engagementId: i <= 3 ? 'eng-1' : 'eng-2',
                }),
              );
            }
          });
          const seqs = async (filter: Parameters<Store['listAudit']>[0]) =>
            (await store.listAudit(filter)).map((e) => e.seq);
          assert.deepEqual(await seqs({}), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
          assert.deepEqual(await seqs({ afterSeq: 7 }), [8, 9, 10]);
          assert.deepEqual(await seqs({ limit: 3 }), [1, 2, 3]);
          assert.deepEqual(await seqs({ afterSeq: 3, limit: 2 }), [4, 5]);
          assert.deepEqual(await seqs({ visaId: 'v1' }), [1, 4, 7, 10]);
          assert.deepEqual(await seqs({ personId: 'p_b', action: 'visa.approved' }), [6, 8, 10]);
          assert.deepEqual(await seqs({ engagementId: 'eng-1' }), [1, 2, 3]);
          await assert.rejects(store.listAudit({ limit: 0 }), hasCode('ERR_INVALID_INPUT'));
        }));

      test('keeps one unbroken chain across many concurrent transactions', () =>
        withStore(async (store) => {
          const writers = 30;
          await Promise.all(
            Array.from({ length: writers }, (_, i) =>
              store.transaction(async (tx) => {
                await tx.appendAudit(auditFixture('visa.requested', { visaId: `v${i}`, at: T0 + i }));
                // Yield between the two appends so that, if transactions could interleave, they would.
                await sleep(1);
                await tx.appendAudit(auditFixture('cluster.rolebinding.created', { visaId: `v${i}`, at: T0 + i }));
              }),
            ),
          );
          const events = await store.listAudit({ limit: 1000 });
          assert.equal(events.length, 2 * writers);
          assert.deepEqual(
            events.map((e) => e.seq),
            Array.from({ length: 2 * writers }, (_, i) => i + 1),
          );
          assert.equal(verifyChain(events).ok, true);
          // Each transaction's two events are adjacent: appends of one transaction are not interleaved.
          for (let i = 0; i < events.length; i += 2) assert.equal(events[i]?.visaId, events[i + 1]?.visaId);
        }));

      test('verifyChain pinpoints a flipped byte, a deleted, an inserted and a reordered event', () =>
        withStore(async (store) => {
          await store.transaction(async (tx) => {
            for (let i = 0; i < 6; i++) {
              await tx.appendAudit(auditFixture('visa.requested', { visaId: `v${i}`, details: { i } }));
            }
          });
          const events = await store.listAudit();
          assert.equal(verifyChain(events).ok, true);
          const at = (list: AuditEvent[]) => {
            const verdict = verifyChain(list);
            assert.equal(verdict.ok, false);
            return verdict.ok ? undefined : { index: verdict.index, fault: verdict.fault };
          };
          const e = (i: number): AuditEvent => {
            const event = events[i];
            assert.ok(event);
            return event;
          };

          const flipped = events.map((event, i) => (i === 3 ? { ...event, actor: 'alicf@vendor.example' } : event));
          assert.deepEqual(at(flipped), { index: 3, fault: 'hash-mismatch' });
          const flippedHash = events.map((event, i) =>
            i === 2
              ? {
                  ...event,
                  hash: `${event.hash.slice(0, 10)}${event.hash[10] === '0' ? '1' : '0'}${event.hash.slice(11)}`,
                }
              : event,
          );
          assert.deepEqual(at(flippedHash), { index: 2, fault: 'hash-mismatch' });
          const flippedDetails = events.map((event, i) => (i === 4 ? { ...event, details: { i: 5 } } : event));
          assert.deepEqual(at(flippedDetails), { index: 4, fault: 'hash-mismatch' });

          const deleted = events.filter((_, i) => i !== 2);
          assert.deepEqual(at(deleted), { index: 2, fault: 'gap' });
          assert.deepEqual(at(events.slice(1)), { index: 0, fault: 'gap' });

          // A forger can compute a valid hash (the chain has no key) and link to a genuine predecessor.
          const forgedBody = { ...e(1), seq: e(2).seq, prevHash: e(1).hash, action: 'visa.approved', visaId: 'forged' };
          const forged = { ...forgedBody, hash: computeAuditHash(forgedBody) };
          assert.deepEqual(at([...events.slice(0, 2), forged, ...events.slice(2)]), { index: 2, fault: 'inserted' });

          const reordered = [e(0), e(1), e(2), e(4), e(3), e(5)];
          assert.deepEqual(at(reordered), { index: 3, fault: 'reorder' });
        }));
    });

    describe('clusters, profiles and settings', () => {
      test('a cluster upsert creates, then replaces the connection facts but keeps createdAt', () =>
        withStore(async (store) => {
          const created = await store.transaction((tx) =>
            tx.upsertCluster({
              name: 'prod',
              server: 'https://prod.example:6443',
              caData: 'LS0tLS1CRUdJTi...',
              credentialRef: '/etc/kubevisa/clusters/prod.kubeconfig',
              now: T0,
            }),
          );
          assert.deepEqual(created, {
            name: 'prod',
            server: 'https://prod.example:6443',
            caData: 'LS0tLS1CRUdJTi...',
            credentialRef: '/etc/kubevisa/clusters/prod.kubeconfig',
            createdAt: T0,
            updatedAt: T0,
          });
          const replaced = await store.transaction((tx) =>
            tx.upsertCluster({ name: 'prod', server: 'https://prod2.example:6443', now: T0 + DAY }),
          );
          assert.deepEqual(replaced, {
            name: 'prod',
            server: 'https://prod2.example:6443',
            createdAt: T0,
            updatedAt: T0 + DAY,
          });
          await store.transaction((tx) =>
            tx.upsertCluster({ name: 'dev', server: 'https://dev.example:6443', now: T0 }),
          );
          assert.deepEqual(
            (await store.listClusters()).map((c) => c.name),
            ['dev', 'prod'],
          );
          assert.deepEqual(await store.getCluster('prod'), replaced);
          assert.equal(await store.getCluster('none'), undefined);
          assert.equal(await store.transaction((tx) => tx.deleteCluster('dev')), true);
          assert.equal(await store.transaction((tx) => tx.deleteCluster('dev')), false);
          assert.deepEqual(
            (await store.listClusters()).map((c) => c.name),
            ['prod'],
          );
        }));

      test('a profile round-trips its rules and declared risks; an upsert replaces it', () =>
        withStore(async (store) => {
          const debuggerProfile = profileFixture('debugger');
          const viewer = profileFixture('viewer', {
            declaredRisks: [],
            recordSessions: false,
            rules: [{ verbs: ['get'] }],
          });
          await store.transaction(async (tx) => {
            assert.deepEqual(await tx.upsertProfile(debuggerProfile), debuggerProfile);
            await tx.upsertProfile(viewer);
          });
          assert.deepEqual(await store.getProfile('debugger'), debuggerProfile);
          assert.deepEqual(await store.listProfiles(), [debuggerProfile, viewer]);
          const narrowed = { ...debuggerProfile, description: 'narrowed', maxVisaSeconds: 3600, recordSessions: false };
          await store.transaction((tx) => tx.upsertProfile(narrowed));
          assert.deepEqual(await store.getProfile('debugger'), narrowed);
          assert.equal(await store.getProfile('none'), undefined);
          assert.equal(await store.transaction((tx) => tx.deleteProfile('viewer')), true);
          assert.deepEqual(await store.listProfiles(), [narrowed]);
        }));

      test('settings hold any JSON value and are replaced on put', () =>
        withStore(async (store) => {
          assert.equal(await store.getSetting('reconciler.fence'), undefined);
          await store.transaction(async (tx) => {
            await tx.putSetting('reconciler.fence', 7, T0);
            await tx.putSetting('checkpoint', { seq: 10, hash: 'abc', signed: true, list: [null] }, T0);
          });
          assert.equal(await store.getSetting('reconciler.fence'), 7);
          assert.deepEqual(await store.getSetting('checkpoint'), { seq: 10, hash: 'abc', signed: true, list: [null] });
          await store.transaction((tx) => tx.putSetting('reconciler.fence', 8, T0 + 1));
          assert.equal(await store.getSetting('reconciler.fence'), 8);
        }));
    });

    identityConformanceSuite(openFresh);
    auditConformanceSuite(openFresh);
  });
}
