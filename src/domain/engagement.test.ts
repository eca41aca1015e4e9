import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEngagement, endEngagement, type EngagementInput, isEngagementActive } from './engagement.ts';
import { InvalidInput, InvalidTransition } from './errors.ts';
import { admin, anEngagement, DAY, NOW, sponsor } from './testing/fixtures.ts';

const ctx = { now: NOW, actor: admin, knownProfiles: ['viewer', 'developer'], knownClusters: ['prod', 'staging'] };

function anInput(overrides: Partial<EngagementInput> = {}): EngagementInput {
  return {
    id: 'e_acme',
    name: 'acme-2026',
    vendor: 'Acme Consulting',
    contractors: ['Carol@Vendor.Example', 'chris@vendor.example'],
    sponsor: 'Sam@Corp.Example',
    endsAt: NOW + 90 * DAY,
    ceiling: { clusters: ['prod'], namespacePatterns: ['payments', 'staging-*'], profiles: ['viewer'] },
    maxVisaSeconds: 86_400,
    ...overrides,
  };
}

function refusal(field: string, pattern: RegExp) {
  return (error: unknown): boolean =>
    error instanceof InvalidInput && error.details?.['field'] === field && pattern.test(error.message);
}

describe('createEngagement', () => {
  it('creates an active engagement with lower-cased emails, starting now by default', () => {
    const engagement = createEngagement(anInput(), ctx);
    assert.deepEqual(engagement.contractors, ['carol@vendor.example', 'chris@vendor.example']);
    assert.equal(engagement.sponsor, 'sam@corp.example');
    assert.equal(engagement.startsAt, NOW);
    assert.equal(engagement.status, 'active');
    assert.equal(engagement.createdBy, admin.email);
    assert.equal(engagement.createdAt, NOW);
  });

  it('accepts a start in the past (a contract already running)', () => {
    assert.equal(createEngagement(anInput({ startsAt: NOW - 5 * DAY }), ctx).startsAt, NOW - 5 * DAY);
  });

  it('does not change its input', () => {
    const input = anInput();
    const copy = structuredClone(input);
    createEngagement(input, ctx);
    assert.deepEqual(input, copy);
  });

  it('refuses a name that is not a DNS label', () => {
    assert.throws(() => createEngagement(anInput({ name: 'Acme 2026' }), ctx), refusal('name', /e\.g\. acme-2026/));
  });

  it('refuses an end that is not in the future', () => {
    assert.throws(() => createEngagement(anInput({ endsAt: NOW }), ctx), refusal('endsAt', /not in the future/));
  });

  it('refuses an end before the start', () => {
    assert.throws(
      () => createEngagement(anInput({ startsAt: NOW + 10 * DAY, endsAt: NOW + 5 * DAY }), ctx),
      refusal('endsAt', /not after startsAt/),
    );
  });

  it('refuses an invalid contractor email, naming its position', () => {
    assert.throws(
      () => createEngagement(anInput({ contractors: ['carol@vendor.example', 'not-an-email'] }), ctx),
      refusal('contractors[1]', /'not-an-email' is not an email address/),
    );
  });

  it('refuses a contractor or sponsor address holding an invisible character, naming it', () => {
    assert.throws(
      () => createEngagement(anInput({ contractors: ['carol@vendor.example', 'carol\u200B@vendor.example'] }), ctx),
      refusal('contractors[1]', /holds U\+200B, an invisible character that changes how text is shown/),
    );
    assert.throws(
      () => createEngagement(anInput({ sponsor: 'sam@corp.exa\u202Emple' }), ctx),
      refusal('sponsor', /holds U\+202E/),
    );
  });

  it('refuses a contractor listed twice in different case', () => {
    assert.throws(
      () => createEngagement(anInput({ contractors: ['carol@vendor.example', 'CAROL@vendor.example'] }), ctx),
      refusal('contractors', /listed twice/),
    );
  });

  it('refuses an engagement without contractors', () => {
    assert.throws(() => createEngagement(anInput({ contractors: [] }), ctx), refusal('contractors', /1 to 500/));
  });

  it('refuses a sponsor who is also a contractor', () => {
    assert.throws(
      () => createEngagement(anInput({ sponsor: 'CAROL@vendor.example' }), ctx),
      refusal('sponsor', /also listed as a contractor/),
    );
  });

  it('refuses an empty ceiling list', () => {
    const input = anInput({ ceiling: { clusters: [], namespacePatterns: ['payments'], profiles: ['viewer'] } });
    assert.throws(() => createEngagement(input, ctx), refusal('ceiling.clusters', /has 0 entries/));
  });

  it('refuses an unknown cluster, listing the known ones', () => {
    const input = anInput({ ceiling: { clusters: ['qa'], namespacePatterns: ['payments'], profiles: ['viewer'] } });
    assert.throws(
      () => createEngagement(input, ctx),
      refusal('ceiling.clusters', /unknown clusters qa; known clusters are prod, staging/),
    );
  });

  it('refuses an unknown profile', () => {
    const input = anInput({ ceiling: { clusters: ['prod'], namespacePatterns: ['payments'], profiles: ['admin'] } });
    assert.throws(() => createEngagement(input, ctx), refusal('ceiling.profiles', /unknown profiles admin/));
  });

  it('refuses a bare * namespace pattern', () => {
    const input = anInput({ ceiling: { clusters: ['prod'], namespacePatterns: ['*'], profiles: ['viewer'] } });
    assert.throws(() => createEngagement(input, ctx), refusal('ceiling.namespacePatterns', /a bare \* is not allowed/));
  });

  it('refuses a ceiling that is missing', () => {
    const input = { ...anInput(), ceiling: null } as unknown as EngagementInput;
    assert.throws(() => createEngagement(input, ctx), refusal('ceiling', /required/));
  });

  it('refuses a maximum visa length of zero or over 366 days', () => {
    assert.throws(() => createEngagement(anInput({ maxVisaSeconds: 0 }), ctx), refusal('maxVisaSeconds', /1 to/));
    assert.throws(
      () => createEngagement(anInput({ maxVisaSeconds: 367 * 86_400 }), ctx),
      refusal('maxVisaSeconds', /1 to/),
    );
  });

  it('refuses a blank vendor', () => {
    assert.throws(() => createEngagement(anInput({ vendor: '  ' }), ctx), refusal('vendor', /must not be empty/));
  });
});

describe('endEngagement', () => {
  it('ends an active engagement with who, when and why', () => {
    const ended = endEngagement(anEngagement(), sponsor, NOW, 'contract terminated');
    assert.equal(ended.status, 'ended');
    assert.equal(ended.endedAt, NOW);
    assert.equal(ended.endedBy, sponsor.email);
    assert.equal(ended.endReason, 'contract terminated');
  });

  it('does not change the engagement it was given', () => {
    const engagement = anEngagement();
    endEngagement(engagement, sponsor, NOW, 'done');
    assert.equal(engagement.status, 'active');
    assert.equal(engagement.endedAt, undefined);
  });

  it('refuses to end an engagement twice', () => {
    const ended = endEngagement(anEngagement(), sponsor, NOW, 'done');
    assert.throws(() => endEngagement(ended, sponsor, NOW + 1, 'again'), InvalidTransition);
  });

  it('requires a reason', () => {
    assert.throws(() => endEngagement(anEngagement(), sponsor, NOW, ' '), InvalidInput);
  });
});

describe('isEngagementActive', () => {
  const engagement = anEngagement({ startsAt: NOW, endsAt: NOW + DAY });

  it('is active from its start up to, not including, its end', () => {
    assert.equal(isEngagementActive(engagement, NOW), true);
    assert.equal(isEngagementActive(engagement, NOW + DAY - 1), true);
    assert.equal(isEngagementActive(engagement, NOW + DAY), false);
    assert.equal(isEngagementActive(engagement, NOW - 1), false);
  });

  it('is not active once ended, even before its end date', () => {
    assert.equal(isEngagementActive(endEngagement(engagement, sponsor, NOW, 'done'), NOW + 1), false);
  });
});
