/**
 * A directory entry whose address holds a character that lower-cases into ASCII (the Kelvin sign), or an invisible
 * one (a zero-width space, a bidirectional override), is ignored and alerted: it would pass for another person's
 * address and keep them in (or change their groups).
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
import type { OffboardingOrchestrator } from './offboarding.ts';

const lookAlikes: [string, string][] = [
  ['\u212Aate@vendor.example', 'Kelvin sign'],
  ['kate\u200B@vendor.example', 'zero-width space'],
  ['kate@vendor.exa\u202Emple', 'right-to-left override'],
];
for (const [listed, character] of lookAlikes) {
  test(`a directory that lists only ${JSON.stringify(listed)} (${character}) does not keep kate@… in: she is offboarded as unlisted, and the entry is audited and alerted`, async () => {
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
      const report = await lifecycle.applyDirectory(
        [{ id: 'u1', email: listed, active: true, groups: ['vendor-acme'] }],
        'dev-idp',
      );
      assert.deepEqual(report.offboarded, ['kate@vendor.example']);
      assert.deepEqual(started, [{ personId: kate.id, reason: 'no longer listed by dev-idp' }]);
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
