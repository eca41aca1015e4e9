import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultPolicy } from '../domain/policy.ts';
import { rulesBeyondDiscovery } from './cluster-probe.ts';
import { parseIdentityConfig, parseScimConfig } from './config.ts';
import { configuredRoles, inGroup } from '../domain/roles.ts';
import { engagementsFor, rolesFor, validateMappings } from './mapping.ts';
import { overallStatus, pendingStep, summarize, type Receipt } from './receipt.ts';

const NOW = Date.UTC(2030, 0, 15, 9);
const acme = {
  group: 'vendor-acme',
  engagement: {
    name: 'acme',
    vendor: 'Acme',
    sponsor: 'sam@corp.example',
    endsAt: '2030-06-30T18:00:00Z',
    ceiling: { clusters: ['prod'], namespacePatterns: ['payments', 'staging-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  },
};

function refused(pattern: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof Error);
    assert.equal((error as Error & { code?: string }).code, 'ERR_INVALID_INPUT');
    assert.match(error.message, pattern);
    return true;
  };
}

describe('identity configuration', () => {
  test('defaults: SCIM off without its section, receipts waited for 30 s, refused refresh suspends', () => {
    assert.deepEqual(parseScimConfig(undefined), { enabled: false, maxResults: 200 });
    assert.deepEqual(parseScimConfig({}), { enabled: true, maxResults: 200 });
    const config = parseIdentityConfig(undefined, '/');
    assert.equal(config.groupSource, 'auto');
    assert.equal(config.onRefreshFailure, 'suspend');
    assert.equal(config.requireProvisioned, false);
    assert.deepEqual(config.offboarding, {
      waitMs: 30_000,
      retryMs: 5000,
      maxRetryMs: 300_000,
      tokenProofTimeoutMs: 30_000,
    });
  });

  test('every mistake names the field and what is allowed', () => {
    assert.throws(
      () => parseScimConfig({ maxResult: 10 }),
      refused(/'scim\.maxResult' is not a known field; known fields: enabled, maxResults/),
    );
    assert.throws(
      () => parseScimConfig({ maxResults: 0 }),
      refused(/'scim\.maxResults' must be a whole number from 1 to 1000/),
    );
    assert.throws(
      () => parseIdentityConfig({ groupSource: 'ldap' }, '/'),
      refused(/groupSource' must be one of auto, scim, directory, login/),
    );
    assert.throws(
      () => parseIdentityConfig({ groupMappings: [{ group: 'g' }] }, '/'),
      refused(/groupMappings\[0\]' must have exactly one of 'engagement'.*or 'role'/),
    );
    assert.throws(
      () => parseIdentityConfig({ groupMappings: [{ group: 'g', role: 'root' }] }, '/'),
      refused(/groupMappings\[0\]\.role' must be one of admin, approver, auditor/),
    );
    assert.throws(
      () => parseIdentityConfig({ groupMappings: [acme, { ...acme, group: 'other' }] }, '/'),
      refused(/groupMappings\[1\]\.engagement\.name' repeats 'acme'/),
    );
    assert.throws(
      () =>
        parseIdentityConfig(
          { groupMappings: [{ group: 'g', engagement: { ...acme.engagement, ceiling: { clusters: ['prod'] } } }] },
          '/',
        ),
      refused(/engagement\.ceiling\.namespacePatterns' must be a non-empty list of strings/),
    );
    assert.throws(
      () => parseIdentityConfig({ sync: { url: 'http://x' } }, '/'),
      refused(/identity\.sync\.provider' is required/),
    );
    assert.throws(
      () => parseIdentityConfig({ sync: { provider: 'dev-idp', url: 'http://x', tokenFile: '/no/such/file' } }, '/'),
      refused(/tokenFile' cannot be read/),
    );
    assert.throws(
      () => parseIdentityConfig({ offboarding: { tokenProofTimeout: '5s' } }, '/'),
      refused(/must be at least 11s: kube-apiserver caches/),
    );
    assert.throws(
      () => parseIdentityConfig({ offboarding: { alertWebhook: 'ftp://x' } }, '/'),
      refused(/must be an http\(s\) URL/),
    );
  });

  test('mappings are checked against the clusters, profiles and namespace rules the server has', () => {
    const known = { clusters: ['prod'], profiles: ['viewer', 'developer'], now: NOW };
    const config = (engagement: Record<string, unknown>) =>
      parseIdentityConfig({ groupMappings: [{ group: 'g', engagement }] }, '/').groupMappings;
    validateMappings(config(acme.engagement), known);
    const ceiling = acme.engagement.ceiling;
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, ceiling: { ...ceiling, clusters: ['staging'] } }), known),
      refused(/names unknown cluster 'staging': the server manages prod/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, ceiling: { ...ceiling, profiles: ['root'] } }), known),
      refused(/unknown profile 'root': known profiles are viewer, developer/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, ceiling: { ...ceiling, namespacePatterns: ['*'] } }), known),
      refused(/a bare '\*' is refused/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, endsAt: '2029-01-01T00:00:00Z' }), known),
      refused(/is in the past/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, sponsor: 'sam' }), known),
      refused(/sponsor' must be the sponsor's email/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, sponsor: 'sam\u200D@corp.example' }), known),
      refused(/sponsor' must be the sponsor's email: .* holds U\+200D, an invisible character/),
    );
    // Lower-cased before the check, the Kelvin sign would have named kate@corp.example the sponsor.
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, sponsor: '\u212Aate@corp.example' }), known),
      refused(/sponsor' must be the sponsor's email: .* holds U\+212A/),
    );
    assert.throws(
      () => validateMappings(config({ ...acme.engagement, maxVisaDuration: 'forever' }), known),
      /maxVisaDuration/,
    );
  });
});

describe('group mappings', () => {
  const mappings = parseIdentityConfig(
    {
      groupMappings: [acme, { group: 'Kubevisa-Auditors', role: 'auditor' }, { group: 'approvers', role: 'approver' }],
    },
    '/',
  ).groupMappings;

  const named = (...names: string[]) => names.map((name) => ({ name }));

  test('group names compare case-insensitively', () => {
    assert.equal(inGroup(['VENDOR-ACME'], 'vendor-acme'), true);
    assert.deepEqual([...engagementsFor(named('Vendor-Acme'), mappings)], ['acme']);
    assert.deepEqual([...engagementsFor(named('other'), mappings)], []);
  });

  test("a mapping that names an idp ignores another identity provider's SCIM group of the same name", () => {
    const trusted = parseIdentityConfig(
      {
        groupMappings: [
          { ...acme, idp: 'okta' },
          { group: 'kubevisa-admins', idp: 'okta', role: 'admin' },
        ],
      },
      '/',
    ).groupMappings;
    const fromEntra = [
      { name: 'vendor-acme', scimIdp: 'entra' },
      { name: 'kubevisa-admins', scimIdp: 'entra' },
    ];
    assert.deepEqual([...engagementsFor(fromEntra, trusted)], []);
    assert.deepEqual(rolesFor([], fromEntra, trusted), []);
    const fromOkta = [
      { name: 'Vendor-Acme', scimIdp: 'okta' },
      { name: 'kubevisa-admins', scimIdp: 'okta' },
    ];
    assert.deepEqual([...engagementsFor(fromOkta, trusted)], ['acme']);
    assert.deepEqual(rolesFor([], fromOkta, trusted), ['admin']);
    // The login claim and the directory sync are the server's own IdP: not SCIM, so not filtered.
    assert.deepEqual(rolesFor([], named('kubevisa-admins'), trusted), ['admin']);
    // Without an idp, any SCIM identity provider's group counts (one SCIM client, or all equally trusted).
    assert.deepEqual([...engagementsFor(fromEntra, mappings)], ['acme']);
  });

  test('an idp that is not a SCIM identity provider name is refused with the field', () => {
    assert.throws(
      () => parseIdentityConfig({ groupMappings: [{ ...acme, idp: 'Okta Prod' }] }, '/'),
      /identity\.groupMappings\[0\]\.idp.*must name a SCIM identity provider/,
    );
  });

  test('roles are the configured ones plus the mapped ones, in a stable order', () => {
    const base = configuredRoles('sam@corp.example', ['admins'], {
      roles: { admins: [], adminGroups: ['admins'], auditors: [], auditorGroups: [] },
      policy: { ...defaultPolicy, approverGroups: [] },
    });
    assert.deepEqual(base, ['admin']);
    assert.deepEqual(rolesFor(base, named('kubevisa-auditors', 'approvers'), mappings), [
      'admin',
      'approver',
      'auditor',
    ]);
    assert.deepEqual(rolesFor([], named('nothing'), mappings), []);
  });
});

describe('the discovery baseline of a rules review', () => {
  test('discovery, self reviews and public trust bundles are nothing; anything else is something', () => {
    const discovery = {
      resourceRules: [
        {
          verbs: ['create'],
          apiGroups: ['authorization.k8s.io'],
          resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'],
        },
        { verbs: ['create'], apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'] },
        { verbs: ['get', 'list', 'watch'], apiGroups: ['certificates.k8s.io'], resources: ['clustertrustbundles'] },
      ],
      nonResourceRules: [
        {
          verbs: ['get'],
          nonResourceURLs: [
            '/api',
            '/api/*',
            '/apis',
            '/apis/*',
            '/healthz',
            '/livez',
            '/readyz',
            '/version',
            '/version/',
          ],
        },
        { verbs: ['get'], nonResourceURLs: ['/.well-known/openid-configuration', '/openid/v1/jwks'] },
      ],
      incomplete: false,
    };
    assert.deepEqual(rulesBeyondDiscovery(discovery), []);
    const more = {
      ...discovery,
      resourceRules: [...discovery.resourceRules, { verbs: ['get', 'list'], apiGroups: [''], resources: ['pods'] }],
      nonResourceRules: [...discovery.nonResourceRules, { verbs: ['*'], nonResourceURLs: ['*'] }],
    };
    assert.deepEqual(rulesBeyondDiscovery(more), ['get,list core/pods', '* *']);
    assert.deepEqual(
      rulesBeyondDiscovery({
        ...discovery,
        resourceRules: [{ verbs: ['delete'], apiGroups: ['certificates.k8s.io'], resources: ['clustertrustbundles'] }],
      }),
      ['delete certificates.k8s.io/clustertrustbundles'],
    );
  });
});

describe('receipts', () => {
  const base = {
    id: 'o_1',
    person: { id: 'p_1', email: 'cora@vendor.example', status: 'suspended' as const },
    trigger: { kind: 'scim' as const, by: 'scim:okta', reason: 'deactivated' },
    startedAt: '2030-01-15T09:00:00.000Z',
    timings: { committed: 0 },
  };

  test('is proving while a step is pending, unproven when one failed, proven when all are', () => {
    const proven = { ...pendingStep('a', 'A', 'read'), status: 'proven' as const, ok: true };
    const pending = pendingStep('b', 'B', 'read');
    const unproven = { ...pendingStep('c', 'C', 'read'), status: 'unproven' as const, detail: 'cluster unreachable' };
    assert.equal(overallStatus([proven, pending]), 'proving');
    assert.equal(overallStatus([proven, pending, unproven]), 'unproven');
    assert.equal(overallStatus([proven]), 'proven');
  });

  test('the summary says who, why, and what is not proven', () => {
    const receipt: Omit<Receipt, 'summary'> = {
      ...base,
      status: 'unproven',
      steps: [
        { ...pendingStep('a', 'sessions ended', 'read'), status: 'proven', ok: true },
        {
          ...pendingStep('b', 'cluster prod: ServiceAccount deleted', 'list'),
          status: 'unproven',
          detail: 'prod unreachable',
        },
      ],
    };
    assert.equal(
      summarize(receipt),
      'cora@vendor.example suspended (deactivated at okta). 1 of 2 steps proven; NOT proven yet: cluster prod: ServiceAccount deleted (unproven: prod unreachable). kubevisa retries them and alerts until they are.',
    );
    assert.match(
      summarize({
        ...receipt,
        status: 'proven',
        steps: [receipt.steps[0]!],
        timings: { committed: 0, complete: 10_400 },
      }),
      /All 1 steps proven by live calls in 10\.4 s\./,
    );
  });
});
