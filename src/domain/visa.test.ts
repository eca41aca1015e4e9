import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemActor } from './permissions.ts';
import { endEngagement } from './engagement.ts';
import {
  Conflict,
  EngagementNotActive,
  Forbidden,
  InvalidInput,
  InvalidTransition,
  NotAnApprover,
  OutsideCeiling,
  OutsideWorkingHours,
  PersonNotActive,
  SelfApproval,
  VisaTooLong,
  WidenedApproval,
} from './errors.ts';
import type { AutoApprovalRule, Policy, Visa } from './model.ts';
import {
  admin,
  anActor,
  anEngagement,
  aPerson,
  aPolicy,
  aProfile,
  aRequestedVisa,
  aRequestInput,
  DAY,
  deepFreeze,
  holder,
  HOUR,
  MINUTE,
  NOW,
  sponsor,
} from './testing/fixtures.ts';
import {
  approveVisa,
  cancelVisa,
  closeVisasOfEngagement,
  denyVisa,
  effectiveState,
  endVisa,
  expireVisa,
  extendVisa,
  extensionsOf,
  isGranting,
  requestVisa,
  revokeVisa,
  type VisaRequestContext,
  type VisaRequestInput,
} from './visa.ts';

const EIGHT_HOURS = 8 * 3600;
const stagingViewer: AutoApprovalRule = {
  name: 'staging-viewer',
  profiles: ['viewer'],
  clusters: ['staging'],
  namespacePatterns: ['staging-*'],
  maxSeconds: 4 * 3600,
};

function requestContext(overrides: Partial<VisaRequestContext> = {}): VisaRequestContext {
  return {
    person: aPerson(),
    engagement: anEngagement(),
    profile: aProfile(),
    policy: aPolicy(),
    now: NOW,
    ...overrides,
  };
}

function request(overrides: Partial<VisaRequestInput> = {}, ctx: Partial<VisaRequestContext> = {}): Visa {
  return requestVisa(aRequestInput(overrides), requestContext(ctx));
}

function approvalContext(overrides: { now?: number; policy?: Policy } = {}) {
  return { engagement: anEngagement(), policy: aPolicy(), now: NOW + MINUTE, ...overrides };
}

/** A visa approved by the sponsor one minute after it was requested at NOW: active [NOW+1m, NOW+8h+1m). */
function anApprovedVisa(overrides: Partial<VisaRequestInput> = {}): Visa {
  return approveVisa(deepFreeze(aRequestedVisa(overrides)), sponsor, approvalContext());
}

function withCode(code: string, status: number, pattern: RegExp = /./) {
  return (error: unknown): boolean =>
    error instanceof Error &&
    (error as { code?: unknown }).code === code &&
    (error as { status?: unknown }).status === status &&
    pattern.test(error.message);
}

describe('requestVisa', () => {
  it('returns a requested visa with a provisional window starting now', () => {
    const visa = request();
    assert.equal(visa.state, 'requested');
    assert.equal(visa.notBefore, NOW);
    assert.equal(visa.notAfter, NOW + 8 * HOUR);
    assert.equal(visa.requestedSeconds, EIGHT_HOURS);
    assert.equal(visa.requiredApprovals, 1);
    assert.deepEqual(visa.approvals, []);
    assert.equal(visa.personId, 'p_carol');
    assert.equal(visa.personEmail, 'carol@vendor.example');
    assert.equal(visa.engagementId, 'e_acme');
    assert.equal(visa.requestedAt, NOW);
  });

  it('does not change its input or context', () => {
    const input = deepFreeze(aRequestInput());
    const ctx = deepFreeze(requestContext());
    const visa = requestVisa(input, ctx);
    assert.notEqual(visa.namespaces, input.namespaces, 'the visa must own its namespace list');
  });

  it('trims the reason', () => {
    assert.equal(request({ reason: '  JIRA-9  ' }).reason, 'JIRA-9');
  });

  it('takes the number of approvals from the policy, but never fewer than one', () => {
    assert.equal(request({}, { policy: aPolicy({ requiredApprovals: 2 }) }).requiredApprovals, 2);
    assert.equal(request({}, { policy: aPolicy({ requiredApprovals: 0 }) }).requiredApprovals, 1);
  });

  it('refuses a suspended person', () => {
    assert.throws(
      () => request({}, { person: aPerson({ status: 'suspended' }) }),
      withCode('ERR_PERSON_NOT_ACTIVE', 403, /suspended/),
    );
  });

  it('refuses a deprovisioned person', () => {
    assert.throws(() => request({}, { person: aPerson({ status: 'deprovisioned' }) }), PersonNotActive);
  });

  it('refuses a person who is not a contractor of the engagement', () => {
    assert.throws(
      () => request({}, { person: aPerson({ email: 'mallory@vendor.example' }) }),
      (error: unknown) =>
        error instanceof Forbidden && /not a contractor of engagement 'acme-2026'/.test(error.message),
    );
  });

  it('refuses a request under an ended engagement', () => {
    const ended = endEngagement(anEngagement(), sponsor, NOW - HOUR, 'terminated');
    assert.throws(() => request({}, { engagement: ended }), withCode('ERR_ENGAGEMENT_NOT_ACTIVE', 409, /was ended/));
  });

  it('refuses a request once the engagement end date has passed', () => {
    assert.throws(() => request({}, { engagement: anEngagement({ endsAt: NOW }) }), EngagementNotActive);
  });

  it('refuses a request before the engagement starts', () => {
    assert.throws(
      () => request({}, { engagement: anEngagement({ startsAt: NOW + 1 }) }),
      (error: unknown) => error instanceof EngagementNotActive && /starts at/.test(error.message),
    );
  });

  it('starts at a requested future time', () => {
    const visa = request({ startsAt: NOW + DAY });
    assert.equal(visa.notBefore, NOW + DAY);
    assert.equal(visa.notAfter, NOW + DAY + 8 * HOUR);
  });

  it('tolerates a start up to 60 s in the past for clock skew', () => {
    assert.equal(request({ startsAt: NOW - 60_000 }).notBefore, NOW - 60_000);
  });

  it('refuses a start more than 60 s in the past', () => {
    assert.throws(
      () => request({ startsAt: NOW - 61_000 }),
      (error: unknown) => error instanceof InvalidInput && /startsAt: .* is in the past/.test(error.message),
    );
  });

  it('refuses a start at or after the engagement end', () => {
    assert.throws(() => request({ startsAt: NOW + 30 * DAY }), EngagementNotActive);
  });

  it('ends the window at the engagement end when the duration would run past it', () => {
    const visa = request({}, { engagement: anEngagement({ endsAt: NOW + 2 * HOUR }) });
    assert.equal(visa.notAfter, NOW + 2 * HOUR);
  });

  it('refuses a cluster outside the ceiling, listing the allowed clusters', () => {
    assert.throws(
      () => request({ cluster: 'qa' }),
      withCode(
        'ERR_OUTSIDE_CEILING',
        400,
        /cluster 'qa' is outside engagement 'acme-2026': allowed clusters are prod, staging/,
      ),
    );
  });

  it('refuses a namespace outside the ceiling, saying which patterns are allowed', () => {
    assert.throws(
      () => request({ namespaces: ['payments', 'prod'] }),
      (error: unknown) =>
        error instanceof OutsideCeiling &&
        error.message ===
          "namespace 'prod' is outside engagement 'acme-2026': allowed patterns are payments, staging-*",
    );
  });

  it('accepts namespaces matching a wildcard pattern', () => {
    assert.deepEqual(request({ namespaces: ['staging-eu', 'payments'] }).namespaces, ['staging-eu', 'payments']);
  });

  it('refuses a namespace name that is not a DNS label', () => {
    assert.throws(
      () => request({ namespaces: ['Payments'] }),
      /namespaces\[0\]: 'Payments' is not a valid namespace name/,
    );
  });

  it('refuses a namespace listed twice', () => {
    assert.throws(() => request({ namespaces: ['payments', 'payments'] }), /'payments' is listed twice/);
  });

  it('refuses no namespaces and more than 50', () => {
    assert.throws(() => request({ namespaces: [] }), /1 to 50/);
    const many = Array.from({ length: 51 }, (_, index) => `staging-${index}`);
    assert.throws(() => request({ namespaces: many }), /has 51 entries; 1 to 50 are allowed/);
  });

  it('refuses a profile outside the ceiling', () => {
    const developer = aProfile({ name: 'developer' });
    assert.throws(
      () => request({ profile: 'developer' }, { profile: developer }),
      (error: unknown) =>
        error instanceof OutsideCeiling && /allowed profiles are viewer, debugger/.test(error.message),
    );
  });

  it('refuses a context whose profile is not the one requested', () => {
    assert.throws(() => request({ profile: 'debugger' }), InvalidInput);
  });

  it('refuses an empty reason and one over 500 characters', () => {
    assert.throws(() => request({ reason: '   ' }), /reason: must not be empty/);
    assert.throws(() => request({ reason: 'x'.repeat(501) }), /at most 500/);
    assert.equal(request({ reason: 'x'.repeat(500) }).reason.length, 500);
  });

  it('refuses a duration over the profile maximum, saying the maximum and who sets it', () => {
    assert.throws(
      () => request({}, { profile: aProfile({ maxVisaSeconds: 4 * 3600 }) }),
      withCode('ERR_VISA_TOO_LONG', 400, /the most allowed here is 4h \(set by profile 'viewer'\)/),
    );
  });

  it('refuses a duration over the engagement maximum', () => {
    assert.throws(
      () => request({ durationSeconds: 3 * 86_400 + 1 }),
      (error: unknown) => error instanceof VisaTooLong && /3d \(set by engagement 'acme-2026'\)/.test(error.message),
    );
  });

  it('refuses a duration over the policy maximum', () => {
    assert.throws(() => request({}, { policy: aPolicy({ maxVisaSeconds: 3600 }) }), /set by the policy/);
  });

  it('accepts a duration equal to the maximum', () => {
    assert.equal(request({ durationSeconds: 3 * 86_400 }).requestedSeconds, 3 * 86_400);
  });

  it('refuses a duration that is not a positive whole number of seconds', () => {
    for (const durationSeconds of [0, -60, 1.5, Number.NaN]) {
      assert.throws(() => request({ durationSeconds }), InvalidInput, String(durationSeconds));
    }
  });

  it('refuses a visa id that cannot be used in labels', () => {
    assert.throws(() => request({ id: 'v/1' }), /id: a visa id must be/);
  });

  describe('working hours', () => {
    const office = aPolicy({
      workingHours: { timeZone: 'Europe/Berlin', days: [1, 2, 3, 4, 5], fromHour: 9, toHour: 18 },
    });
    const saturdayNoonUtc = Date.UTC(2026, 2, 7, 12, 0);

    it('accepts a start within working hours', () => {
      assert.equal(request({}, { policy: office }).state, 'requested');
    });

    it('refuses a start outside working hours, saying the hours and the local time', () => {
      assert.throws(
        () => request({}, { policy: office, now: saturdayNoonUtc }),
        (error: unknown) =>
          error instanceof OutsideWorkingHours &&
          error.code === 'ERR_OUTSIDE_WORKING_HOURS' &&
          error.message.includes('Monday, Tuesday, Wednesday, Thursday, Friday 09:00–18:00 Europe/Berlin') &&
          error.message.includes('is Saturday 13:00 there'),
      );
    });

    it('checks the requested start, not the time of the request', () => {
      const mondayMorningUtc = Date.UTC(2026, 2, 9, 8, 0); // 09:00 in Berlin
      const visa = request({ startsAt: mondayMorningUtc }, { policy: office, now: saturdayNoonUtc });
      assert.equal(visa.notBefore, mondayMorningUtc);
    });
  });

  describe('auto-approval', () => {
    const policy = aPolicy({ autoApproval: [stagingViewer] });
    const staging = { cluster: 'staging', namespaces: ['staging-eu'], durationSeconds: 4 * 3600 };

    it('approves a request a rule covers, recording the rule as the approver', () => {
      const visa = request(staging, { policy });
      assert.equal(visa.state, 'approved');
      assert.deepEqual(visa.approvals, [{ by: 'policy:staging-viewer', at: NOW, automatic: true }]);
      assert.equal(visa.decidedBy, 'policy:staging-viewer');
      assert.equal(visa.decidedAt, NOW);
      assert.equal(visa.notAfter, NOW + 4 * HOUR);
      assert.equal(isGranting(visa, NOW), true);
    });

    it('leaves a request for longer than the rule allows to a human', () => {
      assert.equal(request({ ...staging, durationSeconds: 4 * 3600 + 60 }, { policy }).state, 'requested');
    });

    it('leaves a request with one namespace outside the rule to a human', () => {
      assert.equal(request({ ...staging, namespaces: ['staging-eu', 'payments'] }, { policy }).state, 'requested');
    });

    it('still applies every other check to a covered request', () => {
      assert.throws(() => request(staging, { policy, person: aPerson({ status: 'suspended' }) }), PersonNotActive);
    });
  });
});

describe('approveVisa', () => {
  it('approves with one required approval and fixes the window from the approval time', () => {
    const visa = anApprovedVisa();
    assert.equal(visa.state, 'approved');
    assert.equal(visa.notBefore, NOW + MINUTE);
    assert.equal(visa.notAfter, NOW + MINUTE + 8 * HOUR);
    assert.equal(visa.decidedAt, NOW + MINUTE);
    assert.equal(visa.decidedBy, sponsor.email);
    assert.deepEqual(visa.approvals, [{ by: sponsor.email, at: NOW + MINUTE }]);
  });

  it('does not change the visa it was given', () => {
    const requested = deepFreeze(aRequestedVisa());
    const approved = approveVisa(requested, sponsor, approvalContext());
    assert.equal(requested.state, 'requested');
    assert.notEqual(approved, requested);
  });

  it('keeps a requested future start', () => {
    const visa = approveVisa(aRequestedVisa({ startsAt: NOW + DAY }), sponsor, approvalContext());
    assert.equal(visa.notBefore, NOW + DAY);
    assert.equal(visa.notAfter, NOW + DAY + 8 * HOUR);
  });

  it('never lets the window run past the engagement end', () => {
    const engagement = anEngagement({ endsAt: NOW + 2 * HOUR });
    const visa = approveVisa(aRequestedVisa(), sponsor, { engagement, policy: aPolicy(), now: NOW + HOUR });
    assert.equal(visa.notAfter, NOW + 2 * HOUR);
  });

  it('caps the window at a policy maximum tightened since the request', () => {
    const visa = approveVisa(aRequestedVisa(), sponsor, approvalContext({ policy: aPolicy({ maxVisaSeconds: 3600 }) }));
    assert.equal(visa.notAfter - visa.notBefore, HOUR);
  });

  it('records the comment', () => {
    const visa = approveVisa(aRequestedVisa(), sponsor, approvalContext(), { comment: 'ok for JIRA-123' });
    assert.equal(visa.approvals[0]?.comment, 'ok for JIRA-123');
  });

  it('refuses the holder approving their own request', () => {
    assert.throws(
      () => approveVisa(aRequestedVisa(), holder, approvalContext()),
      withCode('ERR_SELF_APPROVAL', 403, /cannot decide on their own request/),
    );
  });

  it('refuses self-approval through another account with the same email in other case', () => {
    const sameEmail = anActor({ personId: 'p_carol2', email: 'Carol@Vendor.Example', roles: ['admin'] });
    assert.throws(() => approveVisa(aRequestedVisa(), sameEmail, approvalContext()), SelfApproval);
  });

  it('refuses self-approval even when the holder is an admin', () => {
    assert.throws(
      () => approveVisa(aRequestedVisa(), { ...holder, roles: ['admin'] }, approvalContext()),
      SelfApproval,
    );
  });

  it('refuses someone who is not an approver, saying who may approve', () => {
    const stranger = anActor({ personId: 'p_eve', email: 'eve@corp.example' });
    assert.throws(
      () => approveVisa(aRequestedVisa(), stranger, approvalContext()),
      (error: unknown) =>
        error instanceof NotAnApprover &&
        error.status === 403 &&
        error.message.includes(
          'its sponsor (sam@corp.example), admins and approvers, or members of platform-approvers',
        ),
    );
  });

  it('refuses another contractor of the same engagement', () => {
    const colleague = anActor({ personId: 'p_chris', email: 'chris@vendor.example', groups: ['platform-approvers'] });
    assert.throws(() => approveVisa(aRequestedVisa(), colleague, approvalContext()), NotAnApprover);
  });

  it('lets an admin approve', () => {
    assert.equal(approveVisa(aRequestedVisa(), admin, approvalContext()).state, 'approved');
  });

  describe('with two required approvals', () => {
    const twoApprovals = aPolicy({ requiredApprovals: 2 });
    const requested = deepFreeze(aRequestedVisa({}, twoApprovals));

    it('stays requested after the first approval, with the approval recorded', () => {
      const once = approveVisa(requested, sponsor, approvalContext());
      assert.equal(once.state, 'requested');
      assert.equal(once.approvals.length, 1);
      assert.equal(once.decidedAt, undefined);
    });

    it('refuses the same approver twice', () => {
      const once = approveVisa(requested, sponsor, approvalContext());
      assert.throws(
        () => approveVisa(once, anActor({ email: 'SAM@corp.example' }), approvalContext()),
        (error: unknown) => error instanceof Conflict && /already approved/.test(error.message),
      );
    });

    it('is approved by a second, different approver', () => {
      const once = approveVisa(requested, sponsor, approvalContext());
      const twice = approveVisa(once, admin, approvalContext({ now: NOW + 2 * MINUTE }));
      assert.equal(twice.state, 'approved');
      assert.deepEqual(
        twice.approvals.map((approval) => approval.by),
        [sponsor.email, admin.email],
      );
      assert.equal(twice.decidedBy, admin.email);
      assert.equal(twice.notBefore, NOW + 2 * MINUTE);
    });
  });

  describe('narrowing', () => {
    const twoNamespaces = { namespaces: ['payments', 'staging-eu'] };

    it('may remove namespaces', () => {
      const visa = approveVisa(aRequestedVisa(twoNamespaces), sponsor, approvalContext(), { namespaces: ['payments'] });
      assert.deepEqual(visa.namespaces, ['payments']);
    });

    it('may shorten the duration', () => {
      const visa = approveVisa(aRequestedVisa(), sponsor, approvalContext(), { durationSeconds: 3600 });
      assert.equal(visa.notAfter, NOW + MINUTE + HOUR);
      assert.equal(visa.requestedSeconds, 3600);
    });

    it('refuses adding a namespace', () => {
      assert.throws(
        () => approveVisa(aRequestedVisa(), sponsor, approvalContext(), { namespaces: ['payments', 'staging-eu'] }),
        withCode('ERR_WIDENED_APPROVAL', 400, /staging-eu was not requested; requested: payments/),
      );
    });

    it('refuses lengthening the duration', () => {
      assert.throws(
        () => approveVisa(aRequestedVisa(), sponsor, approvalContext(), { durationSeconds: EIGHT_HOURS + 1 }),
        (error: unknown) => error instanceof WidenedApproval && /longer than the requested 8h/.test(error.message),
      );
    });

    it('refuses narrowing to no namespaces', () => {
      assert.throws(() => approveVisa(aRequestedVisa(), sponsor, approvalContext(), { namespaces: [] }), InvalidInput);
    });
  });

  it('refuses approval under an ended engagement', () => {
    const ended = endEngagement(anEngagement(), admin, NOW, 'terminated');
    assert.throws(
      () => approveVisa(aRequestedVisa(), sponsor, { engagement: ended, policy: aPolicy(), now: NOW + MINUTE }),
      EngagementNotActive,
    );
  });

  it('refuses approval once the engagement end date has passed', () => {
    const engagement = anEngagement({ endsAt: NOW + MINUTE });
    assert.throws(
      () => approveVisa(aRequestedVisa(), sponsor, { engagement, policy: aPolicy(), now: NOW + MINUTE }),
      EngagementNotActive,
    );
  });

  it('refuses approving a visa that is not requested', () => {
    assert.throws(
      () => approveVisa(anApprovedVisa(), admin, approvalContext()),
      withCode('ERR_INVALID_TRANSITION', 409, /is approved; only a requested visa can be approved/),
    );
  });

  it('refuses an engagement that is not the visa’s', () => {
    assert.throws(
      () =>
        approveVisa(aRequestedVisa(), sponsor, { ...approvalContext(), engagement: anEngagement({ id: 'e_other' }) }),
      InvalidInput,
    );
  });
});

describe('denyVisa', () => {
  it('denies a request with who, when and why', () => {
    const visa = denyVisa(deepFreeze(aRequestedVisa()), sponsor, approvalContext(), 'not needed for JIRA-123');
    assert.equal(visa.state, 'denied');
    assert.equal(visa.decidedBy, sponsor.email);
    assert.equal(visa.decidedAt, NOW + MINUTE);
    assert.equal(visa.endReason, 'not needed for JIRA-123');
    assert.equal(isGranting(visa, NOW + 2 * MINUTE), false);
  });

  it('refuses the holder and non-approvers', () => {
    assert.throws(() => denyVisa(aRequestedVisa(), holder, approvalContext(), 'no'), SelfApproval);
    assert.throws(
      () => denyVisa(aRequestedVisa(), anActor({ personId: 'p_x', email: 'x@corp.example' }), approvalContext(), 'no'),
      NotAnApprover,
    );
  });

  it('refuses denying an approved visa (revoke it instead)', () => {
    assert.throws(() => denyVisa(anApprovedVisa(), sponsor, approvalContext(), 'no'), InvalidTransition);
  });

  it('requires a reason', () => {
    assert.throws(() => denyVisa(aRequestedVisa(), sponsor, approvalContext(), ''), InvalidInput);
  });
});

describe('cancelVisa', () => {
  it('lets the holder cancel a pending request', () => {
    const visa = cancelVisa(deepFreeze(aRequestedVisa()), holder, NOW + MINUTE);
    assert.equal(visa.state, 'cancelled');
    assert.equal(visa.endedBy, holder.email);
    assert.equal(visa.endedAt, NOW + MINUTE);
  });

  it('lets the holder cancel an approved visa that has not started', () => {
    const approved = approveVisa(aRequestedVisa({ startsAt: NOW + DAY }), sponsor, approvalContext());
    assert.equal(cancelVisa(approved, holder, NOW + HOUR).state, 'cancelled');
  });

  it('refuses cancelling a visa already in force, pointing to revoke', () => {
    assert.throws(() => cancelVisa(anApprovedVisa(), holder, NOW + HOUR), /is active; .* revoke it instead/);
  });

  it('refuses anyone but the holder', () => {
    assert.throws(() => cancelVisa(aRequestedVisa(), sponsor, NOW + MINUTE), Forbidden);
  });
});

describe('revokeVisa', () => {
  it('revokes an active visa, recording who, when and why, and stops it granting', () => {
    const visa = revokeVisa(deepFreeze(anApprovedVisa()), sponsor, 'contract paused', NOW + HOUR);
    assert.equal(visa.state, 'revoked');
    assert.equal(visa.endedAt, NOW + HOUR);
    assert.equal(visa.endedBy, sponsor.email);
    assert.equal(visa.endReason, 'contract paused');
    assert.equal(isGranting(visa, NOW + HOUR), false);
  });

  it('revokes an approved visa that has not started yet', () => {
    const approved = approveVisa(aRequestedVisa({ startsAt: NOW + DAY }), sponsor, approvalContext());
    assert.equal(revokeVisa(approved, admin, 'not needed', NOW + HOUR).state, 'revoked');
  });

  it('refuses revoking a request, an expired visa or a revoked one', () => {
    assert.throws(() => revokeVisa(aRequestedVisa(), admin, 'x', NOW), InvalidTransition);
    assert.throws(() => revokeVisa(anApprovedVisa(), admin, 'x', NOW + DAY), /is expired/);
    const revoked = revokeVisa(anApprovedVisa(), admin, 'x', NOW + HOUR);
    assert.throws(() => revokeVisa(revoked, admin, 'x', NOW + HOUR), /is revoked/);
  });

  it('requires a reason', () => {
    assert.throws(() => revokeVisa(anApprovedVisa(), admin, '', NOW + HOUR), InvalidInput);
  });
});

describe('expireVisa', () => {
  it('marks a visa past its window expired, ending at notAfter rather than when it runs', () => {
    const approved = deepFreeze(anApprovedVisa());
    const visa = expireVisa(approved, approved.notAfter + HOUR);
    assert.equal(visa.state, 'expired');
    assert.equal(visa.endedAt, approved.notAfter);
    assert.equal(visa.endedBy, 'system:expiry');
  });

  it('refuses a visa still in force', () => {
    const approved = anApprovedVisa();
    assert.throws(() => expireVisa(approved, approved.notAfter - 1), InvalidTransition);
  });

  it('refuses a visa already marked expired', () => {
    const approved = anApprovedVisa();
    const expired = expireVisa(approved, approved.notAfter);
    assert.throws(() => expireVisa(expired, approved.notAfter + 1), InvalidTransition);
  });
});

describe('effectiveState and isGranting', () => {
  const approved = anApprovedVisa({ startsAt: NOW + HOUR });

  it('is approved before the window, active inside it, expired from notAfter on', () => {
    assert.equal(effectiveState(approved, approved.notBefore - 1), 'approved');
    assert.equal(effectiveState(approved, approved.notBefore), 'active');
    assert.equal(effectiveState(approved, approved.notAfter - 1), 'active');
    assert.equal(effectiveState(approved, approved.notAfter), 'expired');
  });

  it('grants only inside the window', () => {
    assert.equal(isGranting(approved, approved.notBefore - 1), false);
    assert.equal(isGranting(approved, approved.notBefore), true);
    assert.equal(isGranting(approved, approved.notAfter), false);
  });

  it('treats a stored active visa past its window as expired', () => {
    assert.equal(effectiveState({ ...approved, state: 'active' }, approved.notAfter), 'expired');
  });

  it('never grants a request, even inside its provisional window', () => {
    const requested = aRequestedVisa();
    assert.equal(effectiveState(requested, NOW + HOUR), 'requested');
    assert.equal(isGranting(requested, NOW + HOUR), false);
  });
});

describe('extendVisa', () => {
  const active = deepFreeze(anApprovedVisa());
  const extension = { id: 'v_two', durationSeconds: 4 * 3600, reason: 'JIRA-123 needs more time' };

  it('creates a new request starting at the old notAfter and pointing at the old visa', () => {
    const visa = extendVisa(active, extension, requestContext({ now: NOW + 7 * HOUR }));
    assert.equal(visa.id, 'v_two');
    assert.equal(visa.extends, active.id);
    assert.equal(visa.state, 'requested');
    assert.equal(visa.notBefore, active.notAfter);
    assert.equal(visa.notAfter, active.notAfter + 4 * HOUR);
    assert.deepEqual(
      [visa.cluster, visa.namespaces, visa.profile],
      [active.cluster, active.namespaces, active.profile],
    );
  });

  it('is approved at once when an auto-approval rule covers it', () => {
    const stagingVisa = approveVisa(
      aRequestedVisa({ cluster: 'staging', namespaces: ['staging-eu'], durationSeconds: 2 * 3600 }),
      sponsor,
      approvalContext(),
    );
    const ctx = requestContext({ now: NOW + HOUR, policy: aPolicy({ autoApproval: [stagingViewer] }) });
    assert.equal(extendVisa(stagingVisa, extension, ctx).state, 'approved');
  });

  it('refuses anyone but the holder', () => {
    const ctx = requestContext({ person: aPerson({ id: 'p_chris', email: 'chris@vendor.example' }) });
    assert.throws(() => extendVisa(active, extension, ctx), Forbidden);
  });

  it('refuses an expired or revoked visa', () => {
    assert.throws(() => extendVisa(active, extension, requestContext({ now: active.notAfter })), /is expired/);
    const revoked = revokeVisa(active, admin, 'x', NOW + HOUR);
    assert.throws(() => extendVisa(revoked, extension, requestContext({ now: NOW + 2 * HOUR })), InvalidTransition);
  });

  it('refuses when the engagement ends when the current visa does', () => {
    const engagement = anEngagement({ endsAt: active.notAfter });
    assert.throws(
      () => extendVisa(active, extension, requestContext({ engagement, now: NOW + HOUR })),
      EngagementNotActive,
    );
  });

  it('applies the length limits to the extension', () => {
    assert.throws(
      () => extendVisa(active, { ...extension, durationSeconds: 4 * 86_400 }, requestContext({ now: NOW + HOUR })),
      VisaTooLong,
    );
  });
});

describe('closeVisasOfEngagement', () => {
  it('revokes granting visas and cancels pending ones, leaving finished and foreign visas out', () => {
    const active = anApprovedVisa({ id: 'v_active' });
    const pending = aRequestedVisa({ id: 'v_pending' });
    const denied = denyVisa(aRequestedVisa({ id: 'v_denied' }), sponsor, approvalContext(), 'no');
    const foreign = { ...anApprovedVisa({ id: 'v_foreign' }), engagementId: 'e_other' };
    const actor = systemActor('engagement-end');

    const closed = closeVisasOfEngagement(
      deepFreeze([active, pending, denied, foreign]),
      anEngagement(),
      actor,
      NOW + HOUR,
    );

    assert.deepEqual(
      closed.map((visa) => [visa.id, visa.state, visa.endedBy, visa.endReason]),
      [
        ['v_active', 'revoked', 'system:engagement-end', "engagement 'acme-2026' ended"],
        ['v_pending', 'cancelled', 'system:engagement-end', "engagement 'acme-2026' ended"],
      ],
    );
  });
});

describe('endVisa', () => {
  const monitoring = systemActor('monitoring');

  it('revokes an approved or active visa and cancels a pending request, as any actor', () => {
    assert.equal(endVisa(anApprovedVisa(), monitoring, 'unused', NOW + HOUR)?.state, 'revoked');
    const cancelled = endVisa(aRequestedVisa(), monitoring, 'unused', NOW + HOUR);
    assert.deepEqual(
      [cancelled?.state, cancelled?.endedBy, cancelled?.endReason],
      ['cancelled', 'system:monitoring', 'unused'],
    );
  });

  it('leaves an ended visa alone and refuses an empty reason', () => {
    const expired = anApprovedVisa();
    assert.equal(endVisa(expired, monitoring, 'unused', expired.notAfter), undefined);
    assert.throws(() => endVisa(anApprovedVisa(), monitoring, ' ', NOW + HOUR), InvalidInput);
  });
});

describe('extensionsOf', () => {
  it('finds extensions of extensions, nearest first, and nothing else', () => {
    const parent = anApprovedVisa({ id: 'v_parent' });
    const first = { ...aRequestedVisa({ id: 'v_first' }), extends: 'v_parent' };
    const second = { ...aRequestedVisa({ id: 'v_second' }), extends: 'v_first' };
    const unrelated = { ...aRequestedVisa({ id: 'v_other' }), extends: 'v_elsewhere' };
    assert.deepEqual(
      extensionsOf('v_parent', deepFreeze([second, unrelated, parent, first])).map((visa) => visa.id),
      ['v_first', 'v_second'],
    );
  });
});
