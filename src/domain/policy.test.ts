import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidInput } from './errors.ts';
import type { WorkingHours } from './model.ts';
import {
  describeWorkingHours,
  findAutoApprovalRule,
  isWithinWorkingHours,
  localTime,
  visaLengthLimit,
} from './policy.ts';
import { aPolicy, aProfile, anEngagement } from './testing/fixtures.ts';

const stagingViewer = {
  name: 'staging-viewer',
  profiles: ['viewer'],
  clusters: ['staging'],
  namespacePatterns: ['staging-*'],
  maxSeconds: 4 * 3600,
};
const policy = aPolicy({ autoApproval: [stagingViewer] });
const covered = {
  cluster: 'staging',
  namespaces: ['staging-eu', 'staging-us'],
  profile: 'viewer',
  durationSeconds: 4 * 3600,
};

describe('findAutoApprovalRule', () => {
  it('finds the rule that covers profile, cluster, every namespace and the duration', () => {
    assert.equal(findAutoApprovalRule(policy, covered)?.name, 'staging-viewer');
  });

  it('does not cover a longer duration than the rule allows', () => {
    assert.equal(findAutoApprovalRule(policy, { ...covered, durationSeconds: 4 * 3600 + 1 }), undefined);
  });

  it('does not cover a request when one namespace is outside the patterns', () => {
    assert.equal(findAutoApprovalRule(policy, { ...covered, namespaces: ['staging-eu', 'payments'] }), undefined);
  });

  it('does not cover another profile or cluster', () => {
    assert.equal(findAutoApprovalRule(policy, { ...covered, profile: 'debugger' }), undefined);
    assert.equal(findAutoApprovalRule(policy, { ...covered, cluster: 'prod' }), undefined);
  });

  it('does not cover a request without namespaces', () => {
    assert.equal(findAutoApprovalRule(policy, { ...covered, namespaces: [] }), undefined);
  });
});

describe('visaLengthLimit', () => {
  it('is the least of engagement, profile and policy, naming which one sets it', () => {
    const limit = visaLengthLimit(
      anEngagement({ maxVisaSeconds: 86_400 }),
      aProfile({ maxVisaSeconds: 28_800 }),
      aPolicy({ maxVisaSeconds: 604_800 }),
    );
    assert.deepEqual(limit, { maxSeconds: 28_800, setBy: 'profile' });
  });

  it('names the engagement when it is the strictest', () => {
    const limit = visaLengthLimit(anEngagement({ maxVisaSeconds: 3600 }), aProfile(), aPolicy());
    assert.deepEqual(limit, { maxSeconds: 3600, setBy: 'engagement' });
  });
});

const berlinOffice: WorkingHours = { timeZone: 'Europe/Berlin', days: [1, 2, 3, 4, 5], fromHour: 9, toHour: 18 };

describe('working hours', () => {
  it('reads the local weekday and time in the given time zone', () => {
    // 23:30 UTC on Sunday is already Monday 08:30 in Tokyo.
    assert.deepEqual(localTime(Date.UTC(2026, 2, 1, 23, 30), 'Asia/Tokyo'), { weekday: 1, hour: 8, minute: 30 });
  });

  it('accepts a start inside the hours in the local zone', () => {
    // 08:00 UTC in March is 09:00 in Berlin (CET, UTC+1).
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 2, 2, 8, 0)), true);
  });

  it('refuses a start before the first hour in the local zone even when UTC says otherwise', () => {
    // 07:59 UTC is 08:59 in Berlin.
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 2, 2, 7, 59)), false);
  });

  it('excludes the closing hour itself', () => {
    // 17:00 UTC is 18:00 in Berlin.
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 2, 2, 17, 0)), false);
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 2, 2, 16, 59)), true);
  });

  it('follows daylight saving time', () => {
    // In July Berlin is UTC+2: 07:00 UTC is 09:00 local.
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 6, 6, 7, 0)), true);
  });

  it('refuses a day that is not listed', () => {
    // Saturday 2026-03-07 at noon.
    assert.equal(isWithinWorkingHours(berlinOffice, Date.UTC(2026, 2, 7, 11, 0)), false);
  });

  it('refuses an unknown time zone with InvalidInput', () => {
    assert.throws(() => localTime(0, 'Mars/Olympus_Mons'), InvalidInput);
  });

  it('describes the hours for people', () => {
    assert.equal(
      describeWorkingHours(berlinOffice),
      'Monday, Tuesday, Wednesday, Thursday, Friday 09:00–18:00 Europe/Berlin',
    );
  });
});
