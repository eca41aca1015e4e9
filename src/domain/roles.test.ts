import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canApprove } from './permissions.ts';
import { configuredRoles, inAnyGroup, inGroup, sameGroup, type RoleConfig } from './roles.ts';
import type { Actor, Engagement, Policy } from './model.ts';

const config: RoleConfig = {
  roles: {
    admins: ['root@corp.example'],
    adminGroups: ['kubevisa-admins'],
    auditors: ['audit@corp.example'],
    auditorGroups: ['Auditors'],
  },
  policy: { approverGroups: ['platform-approvers'] },
};

describe('one role rule', () => {
  test('group names compare case-insensitively, and only whole names', () => {
    assert.equal(sameGroup('KubeVisa-Admins', 'kubevisa-admins'), true);
    assert.equal(inGroup(['VENDOR-ACME'], 'vendor-acme'), true);
    assert.equal(inGroup(['vendor-acme-2'], 'vendor-acme'), false);
    assert.equal(inAnyGroup(['x', 'Platform-Approvers'], ['platform-approvers']), true);
    assert.equal(inAnyGroup([], ['platform-approvers']), false);
  });

  test('roles come from the email lists and the groups, whatever case the IdP sends, in a stable order', () => {
    assert.deepEqual(configuredRoles('Root@Corp.example', [], config), ['admin']);
    assert.deepEqual(configuredRoles('x@corp.example', ['KUBEVISA-ADMINS', 'auditors', 'Platform-Approvers'], config), [
      'admin',
      'approver',
      'auditor',
    ]);
    assert.deepEqual(configuredRoles('audit@corp.example', ['other'], config), ['auditor']);
    assert.deepEqual(configuredRoles('x@corp.example', ['kubevisa-admins-old'], config), []);
  });

  test('approving by group membership follows the same rule', () => {
    const policy: Policy = {
      requiredApprovals: 1,
      approverGroups: ['platform-approvers'],
      autoApproval: [],
      maxVisaSeconds: 3600,
      expiryNoticeSeconds: 600,
    };
    const engagement = { sponsor: 'sam@corp.example', contractors: ['cora@vendor.example'] } as unknown as Engagement;
    const actor = (groups: string[]): Actor => ({ personId: 'p1', email: 'ann@corp.example', roles: [], groups });
    assert.equal(canApprove(actor(['Platform-Approvers']), engagement, policy), true);
    assert.equal(canApprove(actor(['platform-approvers-x']), engagement, policy), false);
  });
});
