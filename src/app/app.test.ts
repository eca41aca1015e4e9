// The application layer on a real SQLite store in memory: for each operation, who may do it (each role allowed or
// refused, with the code that says why, and nothing changed by a refusal), and the same operation run as kubevisa's
// own actors (monitoring, the identity lifecycle), which hold no role and pass no check.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { aPolicy, DAY, HOUR, NOW } from '../domain/testing/fixtures.ts';
import type { Actor, PersonRole } from '../domain/model.ts';
import { formatInstant } from '../domain/time.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { systemCaller, type Caller } from './caller.ts';
import { EngagementService } from './engagements.ts';
import { AppEvents } from './events.ts';
import { PeopleService } from './people.ts';
import { VisaService } from './visas.ts';

const CLUSTER = 'prod';
const iso = (ms: number) => new Date(ms).toISOString();

let store: Store;
let events: AppEvents;
let told: string[];
let visas: VisaService;
let engagements: EngagementService;
let people: PeopleService;
/** Callers by name: ada (admin), aud (auditor), abe (approver), sam (the sponsor), carol (the contractor), eve. */
const callers: Record<string, Caller> = {};

async function person(name: string, email: string, roles: PersonRole[]): Promise<Caller> {
  const saved = await store.transaction(async (tx) => {
    const p = await tx.upsertPersonFromLogin({
      issuer: 'https://idp.example',
      subject: name,
      email,
      displayName: name,
      groups: [],
      now: NOW - DAY,
    });
    return tx.setPersonRoles(p.id, roles, NOW - DAY);
  });
  const actor: Actor = { personId: saved.id, email: saved.email, roles: saved.roles, groups: saved.groups };
  return { actor, sessionId: `s_${name}` };
}

beforeEach(async () => {
  store = await openSqliteStore({ path: ':memory:' });
  await store.transaction(async (tx) => {
    for (const profile of SHIPPED_PROFILES) await tx.upsertProfile(profile);
  });
  events = new AppEvents();
  told = [];
  events.on('clusters-changed', (names) => told.push(`clusters-changed ${names.join(',')}`));
  events.on('visas-ended', (ended, reason) => told.push(`visas-ended ${ended.map((v) => v.id).join(',')} ${reason}`));
  events.on('person-deprovisioned', (p) => told.push(`person-deprovisioned ${p.email}`));
  const ports = {
    store,
    policy: aPolicy({ approverGroups: [] }),
    clusterNames: () => [CLUSTER],
    events,
    now: () => NOW,
  };
  visas = new VisaService(ports);
  engagements = new EngagementService(ports);
  people = new PeopleService(ports);
  callers.ada = await person('ada', 'ada@corp.example', ['admin']);
  callers.aud = await person('aud', 'aud@corp.example', ['auditor']);
  callers.abe = await person('abe', 'abe@corp.example', ['approver']);
  callers.sam = await person('sam', 'sam@corp.example', []);
  callers.carol = await person('carol', 'carol@vendor.example', []);
  callers.eve = await person('eve', 'eve@elsewhere.example', []);
});
afterEach(() => store.close());

const engagementBody = {
  name: 'acme',
  vendor: 'Acme',
  contractors: ['carol@vendor.example'],
  sponsor: 'sam@corp.example',
  endsAt: iso(NOW + 30 * DAY),
  ceiling: { clusters: [CLUSTER], namespacePatterns: ['payments'], profiles: ['viewer'] },
  maxVisaDuration: '3d',
};

let engagementCount = 0;

/** A fresh engagement (a name of its own) for carol, sponsored by sam. */
async function anEngagement() {
  return engagements.create(callers.ada!, { ...engagementBody, name: `acme-${engagementCount++}` });
}

async function aVisa(state: 'requested' | 'approved' = 'approved') {
  const engagement = await anEngagement();
  const visa = await visas.request(callers.carol!, {
    engagement: engagement.name,
    cluster: CLUSTER,
    namespaces: ['payments'],
    profile: 'viewer',
    duration: '2h',
    reason: 'JIRA-1',
  });
  return state === 'requested' ? visa : visas.approve(callers.abe!, visa.id, {});
}

/** Runs `attempt` as each caller: the names in `allowed` succeed, every other is refused with `code`. */
async function onlyThese(
  allowed: string[],
  refusals: Record<string, string>,
  attempt: (caller: Caller) => Promise<unknown>,
  among: string[] = Object.keys(callers),
): Promise<void> {
  for (const name of among) {
    const caller = callers[name]!;
    const audit = (await store.listAudit({})).length;
    if (allowed.includes(name)) {
      await attempt(caller);
      continue;
    }
    const code = refusals[name] ?? refusals['*'];
    await assert.rejects(attempt(caller), (error: { code?: string }) => {
      assert.equal(error.code, code, `${name} is refused with ${code}`);
      return true;
    });
    assert.equal((await store.listAudit({})).length, audit, `${name}'s refusal wrote nothing`);
  }
}

describe('engagements', () => {
  test('only admins create one', async () => {
    let n = 0;
    await onlyThese(['ada'], { '*': 'ERR_FORBIDDEN' }, (caller) =>
      engagements.create(caller, { ...engagementBody, name: `new-${n++}` }),
    );
    assert.equal((await store.listEngagements()).length, 1);
  });

  test('the identity lifecycle creates one as itself, holding no role', async () => {
    const created = await engagements.createAs(systemCaller('identity'), engagementBody);
    assert.equal(created.createdBy, 'system:identity');
    const [event] = await store.listAudit({ action: 'engagement.created' });
    assert.equal(event?.actor, 'system:identity');
  });

  test('staff, the sponsor and its contractors see it; anyone else is told it does not exist', async () => {
    const engagement = await anEngagement();
    await onlyThese(['ada', 'aud', 'abe', 'sam', 'carol'], { eve: 'ERR_NOT_FOUND' }, (caller) =>
      engagements.get(caller, engagement.id),
    );
    assert.deepEqual(await engagements.list(callers.eve!), []);
  });

  test('admins and the sponsor end it, with its visas; approvers, auditors and contractors may not', async () => {
    for (const name of ['ada', 'sam']) {
      const visa = await aVisa();
      const ended = await engagements.end(callers[name]!, visa.engagementId, 'contract over');
      assert.equal(ended.status, 'ended');
      assert.equal((await store.getVisa(visa.id))?.state, 'revoked');
    }
    const engagement = await anEngagement();
    await onlyThese(
      [],
      { aud: 'ERR_FORBIDDEN', abe: 'ERR_FORBIDDEN', carol: 'ERR_FORBIDDEN', eve: 'ERR_NOT_FOUND' },
      (caller) => engagements.end(caller, engagement.id, 'no'),
      ['aud', 'abe', 'carol', 'eve'],
    );
    assert.equal((await store.getEngagement(engagement.id))?.status, 'active');
  });

  test('admins move the end date either way, the sponsor only earlier; nobody else, and a refusal changes nothing', async () => {
    const engagement = await anEngagement();
    const later = iso(NOW + 60 * DAY);
    await onlyThese(
      ['ada'],
      {
        sam: 'ERR_FORBIDDEN',
        aud: 'ERR_FORBIDDEN',
        abe: 'ERR_FORBIDDEN',
        carol: 'ERR_FORBIDDEN',
        eve: 'ERR_NOT_FOUND',
      },
      (caller) => engagements.changeEnd(caller, engagement.id, later, 'renewed'),
    );
    assert.equal((await store.getEngagement(engagement.id))?.endsAt, NOW + 60 * DAY);
    const earlier = await engagements.changeEnd(callers.sam!, engagement.name, iso(NOW + 10 * DAY), 'scope cut');
    assert.equal(earlier.engagement.endsAt, NOW + 10 * DAY);
    const [event] = await store.listAudit({ action: 'engagement.end-changed', engagementId: engagement.id });
    assert.ok(event, 'the change is audited');
  });

  test("a sponsor's earlier end is judged again inside the transaction: it never lengthens a cut made meanwhile", async () => {
    const engagement = (await store.getEngagement((await aVisa()).engagementId))!;
    const original = engagement.endsAt;
    const get = engagements.get.bind(engagements);
    // The admin's cut lands between the sponsor's read and the sponsor's transaction.
    engagements.get = async (caller, id) => {
      const read = await get(caller, id);
      engagements.get = get;
      await engagements.changeEnd(callers.ada!, engagement.id, iso(NOW + 2 * DAY), 'cut');
      return read;
    };
    try {
      await assert.rejects(
        engagements.changeEnd(callers.sam!, engagement.id, iso(original - DAY), 'a little earlier'),
        { code: 'ERR_FORBIDDEN' },
      );
    } finally {
      engagements.get = get;
    }
    assert.equal((await store.getEngagement(engagement.id))?.endsAt, NOW + 2 * DAY, "the admin's cut stands");
  });

  test('an earlier end shortens the visas running past it and ends those that would start after it, audited', async () => {
    const running = await aVisa();
    const engagement = (await store.getEngagement(running.engagementId))!;
    const request = (startsAt: number, duration: string) =>
      visas.request(callers.carol!, {
        engagement: engagement.name,
        cluster: CLUSTER,
        namespaces: ['payments'],
        profile: 'viewer',
        duration,
        startsAt: iso(startsAt),
        reason: 'JIRA-2',
      });
    const later = await visas.approve(callers.abe!, (await request(NOW + 3 * HOUR, '2h')).id, {});
    const pending = await request(NOW + 4 * HOUR, '1h');
    const short = await visas.approve(callers.abe!, (await request(NOW, '30m')).id, {});
    told = [];

    const changed = await engagements.changeEnd(callers.ada!, engagement.id, iso(NOW + HOUR), 'contract cut short');

    assert.deepEqual(
      changed.visasShortened.map((v) => v.id),
      [running.id],
    );
    assert.deepEqual(changed.visasEnded.map((v) => v.id).sort(), [later.id, pending.id].sort());
    assert.equal((await store.getVisa(running.id))?.notAfter, NOW + HOUR, 'the running visa ends with the engagement');
    assert.equal((await store.getVisa(running.id))?.state, 'approved', 'and keeps working until then');
    assert.equal((await store.getVisa(later.id))?.state, 'revoked');
    assert.equal((await store.getVisa(pending.id))?.state, 'cancelled');
    assert.equal((await store.getVisa(short.id))?.notAfter, short.notAfter, 'a visa ending in time is left alone');
    const [shortened] = await store.listAudit({ action: 'visa.shortened' });
    assert.equal(shortened?.visaId, running.id);
    assert.deepEqual(shortened?.details, { from: formatInstant(running.notAfter), to: formatInstant(NOW + HOUR) });
    assert.ok(told.includes(`clusters-changed ${CLUSTER}`), 'the reconciler and the gateway are told');
  });

  test('a later end never lengthens a visa', async () => {
    const visa = await aVisa();
    const changed = await engagements.changeEnd(callers.ada!, visa.engagementId, iso(NOW + 90 * DAY), 'renewed');
    assert.deepEqual(changed.visasShortened, []);
    assert.deepEqual(changed.visasEnded, []);
    assert.equal((await store.getVisa(visa.id))?.notAfter, visa.notAfter);
    assert.deepEqual(await store.listAudit({ action: 'visa.shortened' }), []);
  });

  test('a date in the past, the same date, no reason or an ended engagement is refused and changes nothing', async () => {
    const engagement = await anEngagement();
    const attempts: [string, string, string][] = [
      [iso(NOW - HOUR), 'late', 'ERR_INVALID_INPUT'],
      [iso(NOW + 30 * DAY), 'same', 'ERR_INVALID_INPUT'],
      ['next tuesday', 'vague', 'ERR_INVALID_INPUT'],
      [iso(NOW + 2 * DAY), '', 'ERR_INVALID_INPUT'],
    ];
    for (const [endsAt, reason, code] of attempts) {
      await assert.rejects(engagements.changeEnd(callers.ada!, engagement.id, endsAt, reason), { code });
    }
    assert.equal((await store.getEngagement(engagement.id))?.endsAt, NOW + 30 * DAY);
    await engagements.end(callers.ada!, engagement.id, 'over');
    await assert.rejects(engagements.changeEnd(callers.ada!, engagement.id, iso(NOW + DAY), 'revive'), {
      code: 'ERR_INVALID_TRANSITION',
    });
    assert.deepEqual(await store.listAudit({ action: 'engagement.end-changed' }), []);
  });

  test('a contractor leaving through the identity lifecycle loses their visas under it, as kubevisa itself', async () => {
    const visa = await aVisa();
    const engagement = (await store.getEngagement(visa.engagementId))!;
    await assert.rejects(
      engagements.setContractor(callers.sam!, engagement.id, 'carol@vendor.example', false, 'left'),
      { code: 'ERR_FORBIDDEN' },
    );
    const outcome = await engagements.setContractorAs(
      systemCaller('sync'),
      engagement.id,
      'carol@vendor.example',
      false,
      'left the group',
    );
    assert.equal(outcome.changed, true);
    assert.deepEqual(
      outcome.visasEnded.map((v) => v.id),
      [visa.id],
    );
    assert.equal((await store.getVisa(visa.id))?.endedBy, 'system:sync');
    assert.ok(told.includes(`clusters-changed ${CLUSTER}`));
  });

  test('a contractor named by an address that would pass for another person’s is neither added nor taken for hers', async () => {
    const visa = await aVisa();
    const engagement = (await store.getEngagement(visa.engagementId))!;
    const state = (await store.getVisa(visa.id))?.state;
    // `\u212A` (the Kelvin sign) lower-cases to k; carol's address spelt with a look-alike must not touch carol.
    for (const [email, member] of [
      ['\u212Aate@vendor.example', true],
      ['carol@vendor.example\u200B', false],
    ] as const) {
      await assert.rejects(engagements.setContractorAs(systemCaller('sync'), engagement.id, email, member, 'x'), {
        code: 'ERR_INVALID_INPUT',
      });
    }
    assert.deepEqual((await store.getEngagement(engagement.id))!.contractors, engagement.contractors);
    assert.equal((await store.getVisa(visa.id))?.state, state, 'carol keeps her visa');
  });
});

describe('visas', () => {
  test('holder, staff and the sponsor see a visa; a stranger is told it does not exist', async () => {
    const visa = await aVisa();
    await onlyThese(['ada', 'aud', 'abe', 'sam', 'carol'], { eve: 'ERR_NOT_FOUND' }, (caller) =>
      visas.get(caller, visa.id),
    );
    assert.deepEqual(await visas.list(callers.eve!, {}), []);
  });

  test('approvers, admins and the sponsor approve; the holder (self-approval), auditors and strangers may not', async () => {
    for (const name of ['ada', 'abe', 'sam']) {
      const visa = await aVisa('requested');
      assert.equal((await visas.approve(callers[name]!, visa.id, {})).state, 'active', name);
    }
    const visa = await aVisa('requested');
    await onlyThese(
      [],
      { carol: 'ERR_SELF_APPROVAL', aud: 'ERR_NOT_AN_APPROVER', eve: 'ERR_NOT_FOUND' },
      (caller) => visas.approve(caller, visa.id, {}),
      ['carol', 'aud', 'eve'],
    );
    assert.equal((await store.getVisa(visa.id))?.state, 'requested');
  });

  test('the holder, approvers, admins and the sponsor revoke; an auditor may see but not revoke', async () => {
    for (const name of ['carol', 'ada', 'abe', 'sam']) {
      const visa = await aVisa();
      assert.equal((await visas.revoke(callers[name]!, visa.id, 'done')).state, 'revoked', name);
    }
    const visa = await aVisa();
    await onlyThese(
      [],
      { aud: 'ERR_FORBIDDEN', eve: 'ERR_NOT_FOUND' },
      (caller) => visas.revoke(caller, visa.id, 'no'),
      ['aud', 'eve'],
    );
    assert.equal((await visas.get(callers.ada!, visa.id)).state, 'active');
  });

  test("the queue's verdict is what approving would do now, changing nothing", async () => {
    const visa = await aVisa('requested');
    const [forAbe] = await visas.reviewRequests(callers.abe!);
    assert.equal(forAbe?.visa.id, visa.id);
    assert.deepEqual(forAbe?.verdict, { kind: 'grants', notBefore: NOW, notAfter: NOW + 2 * HOUR });
    const [forCarol] = await visas.reviewRequests(callers.carol!);
    assert.equal(forCarol?.verdict.kind, 'refused');
    assert.equal(forCarol?.verdict.kind === 'refused' && forCarol.verdict.code, 'ERR_SELF_APPROVAL');
    await engagements.changeEnd(callers.ada!, visa.engagementId, iso(NOW + HOUR), 'cut');
    const [shortened] = await visas.reviewRequests(callers.abe!);
    assert.equal(shortened?.verdict.kind === 'grants' && shortened.verdict.notAfter, NOW + HOUR);
    assert.match(String(shortened?.verdict.kind === 'grants' && shortened.verdict.shortened), /engagement ends/);
    assert.deepEqual(await visas.reviewRequests(callers.eve!), []);
    assert.equal((await store.getVisa(visa.id))?.state, 'requested', 'the review approved nothing');
  });

  test('only the holder cancels a request or asks to extend a visa', async () => {
    const request = await aVisa('requested');
    await onlyThese(['carol'], { '*': 'ERR_FORBIDDEN', eve: 'ERR_NOT_FOUND', aud: 'ERR_FORBIDDEN' }, (caller) =>
      visas.cancel(caller, request.id),
    );
    assert.equal((await store.getVisa(request.id))?.state, 'cancelled');
    const visa = await aVisa();
    await onlyThese(['carol'], { '*': 'ERR_FORBIDDEN', eve: 'ERR_NOT_FOUND' }, (caller) =>
      visas.extend(caller, visa.id, { duration: '1h', reason: 'more' }),
    );
  });

  test('monitoring revokes as system:monitoring through the same path, extensions included, and tells everyone', async () => {
    const visa = await aVisa();
    const extension = await visas.extend(callers.carol!, visa.id, { duration: '1h', reason: 'more' });
    told = [];
    const revoked = await visas.revokeAs(systemCaller('monitoring'), visa.id, 'unused for 30 days');
    assert.equal(revoked?.state, 'revoked');
    assert.equal(revoked.endedBy, 'system:monitoring');
    assert.equal((await store.getVisa(extension.id))?.state, 'cancelled');
    const audit = await store.listAudit({ visaId: visa.id, action: 'visa.revoked' });
    assert.equal(audit[0]?.actor, 'system:monitoring');
    assert.deepEqual(told, [
      `clusters-changed ${CLUSTER}`,
      `visas-ended ${visa.id},${extension.id} unused for 30 days`,
    ]);
    assert.equal(await visas.revokeAs(systemCaller('monitoring'), 'v_nope', 'x'), undefined);
  });
});

describe('people', () => {
  test('admins, approvers and auditors list people; others may not', async () => {
    await onlyThese(['ada', 'aud', 'abe'], { '*': 'ERR_FORBIDDEN' }, (caller) => people.list(caller));
  });

  test('a person is found by id or by address in any case, never by a look-alike of their address', async () => {
    const kate = await store.transaction((tx) =>
      tx.upsertPersonFromLogin({
        issuer: 'https://idp.example',
        subject: 'kate',
        email: 'kate@corp.example',
        displayName: 'Kate',
        groups: [],
        now: NOW,
      }),
    );
    assert.equal((await people.find('Kate@Corp.Example')).id, kate.id);
    assert.equal((await people.find(kate.id)).email, 'kate@corp.example');
    // U+212A, the Kelvin sign, lower-cases to k; U+200B is invisible. Neither names kate.
    for (const lookAlike of ['\u212Aate@corp.example', 'kate\u200B@corp.example']) {
      await assert.rejects(people.find(lookAlike), { code: 'ERR_NOT_FOUND' }, JSON.stringify(lookAlike));
    }
  });

  test('only admins offboard or reactivate a person', async () => {
    await aVisa();
    await onlyThese(['ada'], { '*': 'ERR_FORBIDDEN' }, async (caller) => {
      const done = await people.offboard(caller, 'carol@vendor.example', 'contract ended');
      assert.equal(done.person.status, 'deprovisioned');
    });
    await onlyThese(['ada'], { '*': 'ERR_FORBIDDEN', carol: 'ERR_FORBIDDEN' }, async (caller) => {
      await people.reactivate(caller, callers.carol!.actor.personId, 'back');
    });
  });

  test('the identity provider offboards as kubevisa itself: visas, sessions and status end, everyone is told', async () => {
    const visa = await aVisa();
    await store.transaction((tx) =>
      tx.insertSession({
        personId: callers.carol!.actor.personId,
        secretHash: 'h'.repeat(64),
        createdAt: NOW,
        expiresAt: NOW + HOUR,
      }),
    );
    told = [];
    const outcome = await people.offboardAs(systemCaller('scim:okta'), 'carol@vendor.example', 'deactivated', {
      status: 'suspended',
    });
    assert.equal(outcome.person.status, 'suspended');
    assert.equal(outcome.sessionsEnded, 1);
    assert.deepEqual(
      outcome.visasEnded.map((v) => v.id),
      [visa.id],
    );
    assert.equal((await store.getVisa(visa.id))?.endedBy, 'system:scim:okta');
    assert.ok(told.includes('person-deprovisioned carol@vendor.example'));
    const back = await people.reactivateAs(systemCaller('scim:okta'), outcome.person.id, 'active again');
    assert.equal(back.status, 'active');
    assert.equal((await store.getVisa(visa.id))?.state, 'revoked', 'reactivation restores no access');
  });

  test('a commit names the visas it changed to the reconciler; an offboarding, which may leave more, names none', async () => {
    const named: (string[] | undefined)[] = [];
    events.on('clusters-changed', (_names, visaIds) => named.push(visaIds));
    const visa = await aVisa();
    assert.deepEqual(named, [[visa.id]], 'the approval names its visa');
    const extension = await visas.extend(callers.carol!, visa.id, { duration: '1h', reason: 'more' });
    await visas.approve(callers.abe!, extension.id, {});
    named.length = 0;
    await visas.revoke(callers.abe!, visa.id, 'done');
    assert.deepEqual(named, [[visa.id, extension.id]], 'the revoke names the visa and its extension');
    await aVisa();
    named.length = 0;
    await people.offboardAs(systemCaller('scim:okta'), 'carol@vendor.example', 'deactivated', { status: 'suspended' });
    assert.deepEqual(named, [undefined], 'every cluster in full: the person may have ServiceAccounts anywhere');
  });
});
