/**
 * The direct-credential use case on plain fakes of its ports: who gets a direct token, for how long, and what
 * a refusal says.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KubevisaError } from '../domain/errors.ts';
import type { Profile, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { aProfile, holder, HOUR, MINUTE, NOW } from '../domain/testing/fixtures.ts';
import type { NewAuditEvent } from '../store/store.ts';
import {
  CredentialService,
  DIRECT_TOKEN_MARGIN_MS,
  DIRECT_TOKEN_SECONDS,
  DirectModeDenied,
  NoActiveVisa,
  VisaEnded,
} from './credentials.ts';

const viewer = aProfile({ name: 'viewer', directMode: 'allowed' });
const debuggerProfile = aProfile({
  name: 'debugger',
  rules: [
    { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
    { apiGroups: [''], resources: ['pods/exec', 'pods/attach'], verbs: ['get', 'create'] },
  ],
  recordSessions: true,
  directMode: 'denied',
});

/** What the cluster port throws for a ServiceAccount that is gone or was made again. */
class MadeAgain extends KubevisaError {
  static override code = 'ERR_OBJECT_MISSING';
}

function aVisa(overrides: Partial<Visa> = {}): Visa {
  return {
    id: 'v_view',
    engagementId: 'e_acme',
    personId: holder.personId,
    personEmail: holder.email,
    cluster: 'prod',
    namespaces: ['payments'],
    profile: 'viewer',
    reason: 'JIRA-1',
    requestedAt: NOW - HOUR,
    requestedSeconds: 4 * 3600,
    notBefore: NOW - HOUR,
    notAfter: NOW + 3 * HOUR,
    state: 'active',
    approvals: [{ by: 'sam@corp.example', at: NOW - HOUR }],
    requiredApprovals: 1,
    ...overrides,
  };
}

interface World {
  visas?: Visa[];
  profiles?: Profile[];
  directCluster?: boolean;
  sessionExpiresAt?: number;
  /** Person id on the ServiceAccount before and after a reconcile pass. */
  holderBefore?: string | undefined;
  holderAfter?: string | undefined;
  /** What kube-apiserver answers as the token's expiry; default now + the seconds asked. */
  tokenExpiresAt?: number;
  /** The ServiceAccount is made again (another uid) right after this many records of direct tokens. */
  remadeAfterRecords?: number;
  /** Visas approved while the first record is being written (a pass binding them may be running). */
  approvedDuringRecord?: Visa[];
}

function setUp(world: World = {}) {
  const audit: NewAuditEvent[] = [];
  const minted: { sa: string; seconds: number }[] = [];
  const passes: string[] = [];
  /** Everything the service did at the cluster, in order. */
  const steps: string[] = [];
  let uid = 'uid-1';
  let visas = world.visas ?? [aVisa()];
  let holderNow = 'holderBefore' in world ? world.holderBefore : holder.personId;
  const service = new CredentialService({
    now: () => NOW,
    store: {
      listVisas: async ({ personId, cluster }) => visas.filter((v) => v.personId === personId && v.cluster === cluster),
      getProfile: async (name) => (world.profiles ?? [viewer, debuggerProfile]).find((p) => p.name === name),
      getSession: async (id) => (id === 's_1' ? { expiresAt: world.sessionExpiresAt ?? NOW + 12 * HOUR } : undefined),
      appendAudit: async (event) => {
        audit.push(event);
      },
    },
    cluster: (name) =>
      name === 'prod'
        ? {
            allowsDirectMode: world.directCluster ?? true,
            serviceAccount: async () => ({ holder: holderNow, uid }),
            recordDirectTokens: async (_sa, expectedUid, until) => {
              if (expectedUid !== uid) throw new MadeAgain('the ServiceAccount was made again');
              steps.push(`record until ${until - NOW}`);
              if (steps.filter((step) => step.startsWith('record')).length === world.remadeAfterRecords) uid = 'uid-2';
              if (world.approvedDuringRecord) visas = [...visas, ...world.approvedDuringRecord];
            },
            mintToken: async (sa, seconds) => {
              steps.push('mint');
              minted.push({ sa, seconds });
              return { token: 'sa-token', expirationTimestamp: world.tokenExpiresAt ?? NOW + seconds * 1000 };
            },
          }
        : undefined,
    reconciler: {
      whenSettled: async () => {
        steps.push('settled');
      },
      reconcileNow: async (cluster) => {
        passes.push(cluster);
        if ('holderAfter' in world) holderNow = world.holderAfter;
      },
    },
  });
  const caller = { actor: holder, sessionId: 's_1', source: { address: '192.0.2.1' } };
  return { service, caller, audit, minted, passes, steps };
}

async function refusal<T extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but it succeeded`);
}

describe('direct credentials', () => {
  test('mints a 600 s token for the holder of a viewer visa on a cluster that allows direct mode, and audits it', async () => {
    const { service, caller, audit, minted } = setUp();
    const issued = await service.issueDirect(caller, 'prod');
    assert.deepEqual(issued, { token: 'sa-token', expirationTimestamp: NOW + 600_000 });
    assert.deepEqual(minted, [{ sa: serviceAccountName(holder.email), seconds: 600 }]);
    assert.equal(DIRECT_TOKEN_SECONDS, 600);
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.action, 'credential.issued');
    assert.equal(audit[0]!.outcome, 'ok');
    assert.deepEqual(audit[0]!.details?.visas, ['v_view']);
    assert.equal(JSON.stringify(audit).includes('sa-token'), false, 'the token never reaches the trail');
  });

  test('refuses on a cluster whose configuration does not allow direct mode, naming the setting and the gateway', async () => {
    const { service, caller, audit, minted } = setUp({ directCluster: false });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.code, 'ERR_DIRECT_MODE_DENIED');
    assert.equal(error.status, 403);
    assert.equal(error.details?.reason, 'cluster');
    assert.match(error.message, /cluster 'prod' does not allow direct mode \(its 'directMode' setting/);
    assert.match(error.message, /'kubevisa kubeconfig --cluster prod' \(without --direct\)/);
    assert.deepEqual(minted, []);
    assert.equal(audit[0]?.action, 'credential.refused');
    assert.equal(audit[0]?.outcome, 'refused');
  });

  test('refuses a profile that records sessions, even when it claims directMode allowed', async () => {
    const recorded = aProfile({ name: 'recorded', recordSessions: true, directMode: 'allowed' });
    const { service, caller, minted } = setUp({
      visas: [aVisa({ profile: 'recorded' })],
      profiles: [recorded],
    });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.reason, 'profile-gateway-only');
    assert.match(
      error.message,
      /visa v_view \(profile 'recorded'\) cannot be used in direct mode: it records sessions/,
    );
    assert.deepEqual(minted, []);
  });

  for (const subresource of ['pods/exec', 'pods/attach', 'pods/portforward']) {
    test(`refuses a profile that grants ${subresource}, even when it claims directMode allowed`, async () => {
      const streams = aProfile({
        name: 'streams',
        rules: [{ apiGroups: [''], resources: [subresource], verbs: ['create'] }],
        directMode: 'allowed',
      });
      const { service, caller } = setUp({ visas: [aVisa({ profile: 'streams' })], profiles: [streams] });
      const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
      assert.match(error.message, new RegExp(`grants ${subresource}`));
    });
  }

  test('refuses a profile that does not say directMode allowed (absent means denied)', async () => {
    const silent = aProfile({ name: 'silent' });
    const { service, caller } = setUp({ visas: [aVisa({ profile: 'silent' })], profiles: [silent] });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.reason, 'profile-denied');
    assert.match(error.message, /does not set directMode: 'allowed'/);
  });

  test('refuses when any other visa on the cluster is gateway-only, since the token carries all of them', async () => {
    const { service, caller } = setUp({
      visas: [aVisa(), aVisa({ id: 'v_debug', profile: 'debugger', namespaces: ['ops'] })],
    });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.visa, 'v_debug');
    assert.match(error.message, /carries every visa you hold on cluster 'prod'/);
  });

  test('a gateway-only visa starting within the token’s life rules it out; one starting after it does not', async () => {
    const soon = aVisa({ id: 'v_soon', profile: 'debugger', state: 'approved', notBefore: NOW + 5 * MINUTE });
    const refused = setUp({ visas: [aVisa(), soon] });
    const error = await refusal(refused.service.issueDirect(refused.caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.visa, 'v_soon');
    assert.match(error.message, /from 2026-03-02T10:05:00Z/);

    const later = { ...soon, notBefore: NOW + DIRECT_TOKEN_SECONDS * 1000 + DIRECT_TOKEN_MARGIN_MS };
    const allowed = setUp({ visas: [aVisa(), later] });
    assert.equal((await allowed.service.issueDirect(allowed.caller, 'prod')).token, 'sa-token');
  });

  test('visas on other clusters and visas that ended do not count', async () => {
    const { service, caller } = setUp({
      visas: [
        aVisa(),
        aVisa({ id: 'v_other', cluster: 'staging', profile: 'debugger' }),
        aVisa({ id: 'v_gone', profile: 'debugger', state: 'revoked', endedAt: NOW - MINUTE }),
      ],
    });
    assert.equal((await service.issueDirect(caller, 'prod')).token, 'sa-token');
  });

  test('refuses when the visas end before a 10-minute token would (plus the margin), and says to use the gateway', async () => {
    const needed = DIRECT_TOKEN_SECONDS * 1000 + DIRECT_TOKEN_MARGIN_MS;
    const { service, caller, minted } = setUp({ visas: [aVisa({ notAfter: NOW + needed - 1 })] });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.reason, 'visa-ends-soon');
    assert.match(error.message, /ends at 2026-03-02T10:10:29\.999Z \(in 10m29s\), and a direct token lives 10 minutes/);
    assert.match(error.message, /kubevisa kubeconfig --cluster prod/);
    assert.deepEqual(minted, []);

    const justEnough = setUp({ visas: [aVisa({ notAfter: NOW + needed })] });
    assert.equal((await justEnough.service.issueDirect(justEnough.caller, 'prod')).expirationTimestamp, NOW + 600_000);
  });

  test('the latest end among the allowing visas is what counts', async () => {
    const { service, caller } = setUp({
      visas: [aVisa({ id: 'v_short', notAfter: NOW + MINUTE }), aVisa({ id: 'v_long', notAfter: NOW + 2 * HOUR })],
    });
    assert.equal((await service.issueDirect(caller, 'prod')).token, 'sa-token');
  });

  test('refuses when the kubevisa session ends within the token’s life', async () => {
    const { service, caller } = setUp({ sessionExpiresAt: NOW + 5 * MINUTE });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.reason, 'session-ends-soon');
    assert.match(
      error.message,
      /your kubevisa session ends at 2026-03-02T10:05:00Z \(in 5m; 'kubevisa login' starts a new one\)/,
    );
  });

  test('withholds a token kube-apiserver issued past the end of the access', async () => {
    const { service, caller, audit } = setUp({
      visas: [aVisa({ notAfter: NOW + 11 * MINUTE })],
      tokenExpiresAt: NOW + 11 * MINUTE + 1,
    });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.equal(error.details?.reason, 'token-outlives-access');
    assert.doesNotMatch(error.message, /sa-token/);
    assert.deepEqual(
      audit.map((e) => e.action),
      ['credential.refused'],
    );
  });

  test("after a revoke, the refusal carries the visa's own words: id, who, when, why, and how to ask again", async () => {
    const { service, caller, audit } = setUp({
      visas: [
        aVisa({ id: 'v_old', state: 'expired', notAfter: NOW - 2 * HOUR, endedAt: NOW - 2 * HOUR }),
        aVisa({
          id: 'v_cut',
          state: 'revoked',
          endedAt: NOW - MINUTE,
          endedBy: 'sam@corp.example',
          endReason: 'work done',
          namespaces: ['payments', 'refunds'],
        }),
      ],
    });
    const error = await refusal(service.issueDirect(caller, 'prod'), VisaEnded);
    assert.equal(error.code, 'ERR_VISA_ENDED');
    assert.equal(
      error.message,
      "visa v_cut (viewer on payments, refunds in cluster 'prod') was revoked by sam@corp.example at 2026-03-02T09:59:00Z: work done; request a new one with 'kubevisa request --cluster prod --ns payments,refunds --profile viewer --for DURATION --reason TEXT'",
    );
    assert.equal(audit[0]?.action, 'credential.refused');
    assert.equal(audit[0]?.details?.visa, 'v_cut');
  });

  test('an expired visa, including one not yet marked expired, is reported as expired', async () => {
    const { service, caller } = setUp({ visas: [aVisa({ id: 'v_lapsed', notAfter: NOW - MINUTE })] });
    const error = await refusal(service.issueDirect(caller, 'prod'), VisaEnded);
    assert.match(error.message, /^visa v_lapsed .* expired at 2026-03-02T09:59:00Z; request a new one with/);
  });

  test('with no visa ever on the cluster it says so, and names an approved visa that has not started', async () => {
    const none = setUp({ visas: [] });
    const error = await refusal(none.service.issueDirect(none.caller, 'prod'), NoActiveVisa);
    assert.match(error.message, /has no active visa on cluster 'prod'/);

    const upcoming = setUp({ visas: [aVisa({ id: 'v_later', state: 'approved', notBefore: NOW + HOUR })] });
    const later = await refusal(upcoming.service.issueDirect(upcoming.caller, 'prod'), NoActiveVisa);
    assert.match(later.message, /Visa v_later starts at 2026-03-02T11:00:00Z/);
  });

  test('an unknown cluster is NotFound and nothing is audited', async () => {
    const { service, caller, audit } = setUp();
    await assert.rejects(service.issueDirect(caller, 'nope'), { code: 'ERR_NOT_FOUND', status: 404 });
    assert.deepEqual(audit, []);
  });

  test('records until when the token may live on the ServiceAccount before minting it, then covers its real expiry', async () => {
    const { service, caller, steps } = setUp({ tokenExpiresAt: NOW + 605_000 });
    await service.issueDirect(caller, 'prod');
    const margin = DIRECT_TOKEN_MARGIN_MS;
    assert.deepEqual(steps, [
      'settled',
      `record until ${600_000 + margin}`,
      'settled',
      'mint',
      `record until ${605_000 + margin}`,
    ]);
  });

  test('decides again after the record: a gateway-only visa approved meanwhile rules the token out', async () => {
    const later = aVisa({ id: 'v_debug', profile: 'debugger', state: 'approved' });
    const { service, caller, minted, audit } = setUp({ approvedDuringRecord: [later] });
    const error = await refusal(service.issueDirect(caller, 'prod'), DirectModeDenied);
    assert.match(error.message, /v_debug/);
    assert.deepEqual(minted, []);
    assert.equal(audit.at(-1)!.action, 'credential.refused');
  });

  test('withholds a token minted while the ServiceAccount was made again, since that one carries no record', async () => {
    const { service, caller, minted, audit } = setUp({ remadeAfterRecords: 1 });
    await assert.rejects(service.issueDirect(caller, 'prod'), { code: 'ERR_CONFLICT', message: /retry/ });
    assert.equal(minted.length, 1, 'a token was minted');
    assert.equal(
      audit.some((event) => event.action === 'credential.issued'),
      false,
      'and never handed out',
    );
  });

  test('a ServiceAccount made for someone else is re-made by a reconcile pass first, or the request is refused', async () => {
    const remade = setUp({ holderBefore: 'p_other', holderAfter: holder.personId });
    assert.equal((await remade.service.issueDirect(remade.caller, 'prod')).token, 'sa-token');
    assert.deepEqual(remade.passes, ['prod']);

    const stuck = setUp({ holderBefore: 'p_other', holderAfter: 'p_other' });
    await assert.rejects(stuck.service.issueDirect(stuck.caller, 'prod'), { code: 'ERR_CONFLICT' });
    assert.deepEqual(stuck.minted, []);
  });
});
