import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canApprove,
  canChangeEngagementEnd,
  canEndEngagement,
  canRevoke,
  canSeeVisa,
  isHolder,
  systemActor,
} from './permissions.ts';
import {
  admin,
  anActor,
  anEngagement,
  aPolicy,
  aRequestedVisa,
  CONTRACTOR_EMAIL,
  holder,
  sponsor,
} from './testing/fixtures.ts';

const engagement = anEngagement();
const policy = aPolicy({ approverGroups: ['platform-approvers'] });
const visa = aRequestedVisa();
const stranger = anActor({ personId: 'p_eve', email: 'eve@corp.example' });
const groupMember = anActor({ personId: 'p_gil', email: 'gil@corp.example', groups: ['platform-approvers'] });
const approverRole = anActor({ personId: 'p_abe', email: 'abe@corp.example', roles: ['approver'] });
const auditor = anActor({ personId: 'p_aud', email: 'aud@corp.example', roles: ['auditor'] });

describe('canApprove', () => {
  it('allows the sponsor, admins, approvers and members of approver groups', () => {
    for (const actor of [sponsor, admin, approverRole, groupMember]) {
      assert.equal(canApprove(actor, engagement, policy), true, actor.email);
    }
  });

  it('matches the sponsor email without regard to case', () => {
    assert.equal(canApprove(anActor({ email: 'SAM@corp.example' }), engagement, policy), true);
  });

  it('refuses anyone else, including auditors', () => {
    assert.equal(canApprove(stranger, engagement, policy), false);
    assert.equal(canApprove(auditor, engagement, policy), false);
  });

  it('refuses a contractor of the engagement even with the admin role and an approver group', () => {
    const contractorAdmin = anActor({
      email: 'chris@vendor.example',
      roles: ['admin'],
      groups: ['platform-approvers'],
    });
    assert.equal(canApprove(contractorAdmin, engagement, policy), false);
  });

  it('refuses the system actor', () => {
    assert.equal(canApprove(systemActor('expiry'), engagement, policy), false);
  });
});

describe('visa visibility and revocation', () => {
  it('recognises the holder by person id or by email in any case', () => {
    assert.equal(isHolder(holder, visa), true);
    assert.equal(isHolder(anActor({ personId: 'p_other', email: CONTRACTOR_EMAIL.toUpperCase() }), visa), true);
    assert.equal(isHolder(stranger, visa), false);
  });

  it('lets the holder and approvers revoke, not strangers or auditors', () => {
    assert.equal(canRevoke(holder, visa, engagement, policy), true);
    assert.equal(canRevoke(sponsor, visa, engagement, policy), true);
    assert.equal(canRevoke(stranger, visa, engagement, policy), false);
    assert.equal(canRevoke(auditor, visa, engagement, policy), false);
  });

  it('shows a visa to its holder, approvers and auditors only', () => {
    assert.equal(canSeeVisa(holder, visa, engagement, policy), true);
    assert.equal(canSeeVisa(groupMember, visa, engagement, policy), true);
    assert.equal(canSeeVisa(auditor, visa, engagement, policy), true);
    assert.equal(canSeeVisa(stranger, visa, engagement, policy), false);
    assert.equal(
      canSeeVisa(anActor({ personId: 'p_chris', email: 'chris@vendor.example' }), visa, engagement, policy),
      false,
    );
  });

  it('lets only admins and the sponsor end an engagement', () => {
    assert.equal(canEndEngagement(admin, engagement), true);
    assert.equal(canEndEngagement(sponsor, engagement), true);
    assert.equal(canEndEngagement(groupMember, engagement), false);
    assert.equal(canEndEngagement(holder, engagement), false);
  });

  it('lets admins move the end date either way and the sponsor only earlier', () => {
    const earlier = engagement.endsAt - 1;
    const later = engagement.endsAt + 1;
    assert.equal(canChangeEngagementEnd(admin, engagement, later), true);
    assert.equal(canChangeEngagementEnd(admin, engagement, earlier), true);
    assert.equal(canChangeEngagementEnd(sponsor, engagement, earlier), true);
    assert.equal(canChangeEngagementEnd(sponsor, engagement, later), false);
    assert.equal(canChangeEngagementEnd(approverRole, engagement, earlier), false);
    assert.equal(canChangeEngagementEnd(holder, engagement, earlier), false);
  });
});
