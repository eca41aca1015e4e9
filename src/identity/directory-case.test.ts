/**
 * A directory entry whose address holds a character that lower-cases into ASCII (the Kelvin sign), or an invisible
 * one (a zero-width space, a bidirectional override), is ignored and alerted: it would pass for another person's
 * address and keep them in (or change their groups). Both as the sync is handed the entries and as every real
 * provider (Okta, Entra, Google, Keycloak) hands them, through assembleSnapshot, which must not normalise the address
 * into the one it passes for before the sync can see it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultPolicy } from '../domain/policy.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { parseIdentityConfig } from './config.ts';
import { IdentityLifecycle } from './lifecycle.ts';
import { assembleSnapshot } from './directories/snapshot.ts';
import type { OffboardingOrchestrator } from './offboarding.ts';

const lookAlikes: [string, string][] = [
  ['\u212Aate@vendor.example', 'Kelvin sign'],
  ['kate\u200B@vendor.example', 'zero-width space'],
  ['kate@vendor.exa\u202Emple', 'right-to-left override'],
];
const viaProvider = (listed: string) =>
  assembleSnapshot(
    {
      users: [{ id: 'u1', email: listed, active: true }],
      // Her own account deleted at the provider: only the look-alike would keep her in.
      deleted: [{ id: 'kate', email: 'kate@vendor.example', active: false }],
      members: new Map([['vendor-acme', new Set(['u1'])]]),
    },
    'dev-idp',
  ).users;
const handed = (listed: string) => [{ id: 'u1', email: listed, active: true, groups: ['vendor-acme'] }];
for (const [listed, character] of [
  ...lookAlikes,
  ['\uFEFFkate@vendor.example', 'byte order mark, which trimming would remove'] as [string, string],
]) {
  for (const [path, entries, reason] of [
    ['handed to the sync', handed, 'no longer listed by dev-idp'],
    [
      "read by a provider (assembleSnapshot), kate's own account deleted",
      viaProvider,
      'deprovisioned or deleted in dev-idp',
    ],
  ] as const) {
    test(`a directory that lists only ${JSON.stringify(listed)} (${character}), ${path}, does not keep kate@… in: she is offboarded, and the entry is audited and alerted`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kubevisa-directory-case-'));
      const store = await openSqliteStore({ path: join(dir, 'kubevisa.db') });
      try {
        const kate = await store.transaction((tx) =>
          tx.upsertPersonFromLogin({
            issuer: 'https://idp.example',
            subject: 'kate',
            email: 'kate@vendor.example',
            displayName: 'Kate',
            groups: [],
            now: Date.now(),
          }),
        );
        const started: { personId: string; reason: string }[] = [];
        const alerts: string[] = [];
        const lifecycle = new IdentityLifecycle({
          store,
          people: { reactivateAs: () => assert.fail('nobody is reactivated here') },
          engagements: {
            createAs: () => assert.fail('no engagement is created here'),
            setContractorAs: () => assert.fail('no contractor changes here'),
          },
          offboarding: {
            start: async (input: { personId: string; reason: string }) => {
              started.push({ personId: input.personId, reason: input.reason });
            },
          } as unknown as OffboardingOrchestrator,
          config: parseIdentityConfig({}, dir),
          serverConfig: {
            roles: { admins: [], adminGroups: [], auditors: [], auditorGroups: [] },
            policy: defaultPolicy,
          },
          report: () => {},
          alert: async (message) => {
            alerts.push(message);
          },
        });
        const report = await lifecycle.applyDirectory(entries(listed), 'dev-idp');
        assert.deepEqual(report.offboarded, ['kate@vendor.example']);
        assert.deepEqual(started, [{ personId: kate.id, reason }]);
        assert.equal(alerts.length, 1);
        assert.match(alerts[0]!, /changes case into a plain letter \(such as the Kelvin sign\) or an invisible one/);
        const ignored = await store.listAudit({ action: 'identity.sync-entries-ignored' });
        assert.deepEqual(ignored[0]?.details.emails, [listed]);
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
}
