/**
 * Store conformance of clusters, profiles and settings.
 * The same on every engine: conformance.ts runs it; it uses only the Store interface.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { T0, DAY, profileFixture, withFreshStore, type OpenFresh } from './conformance-support.ts';

export function catalogConformanceSuite(openFresh: OpenFresh): void {
  const withStore = withFreshStore(openFresh);

  describe('clusters, profiles and settings', () => {
    test('a cluster upsert creates, then replaces the connection facts but keeps createdAt', () =>
      withStore(async (store) => {
        const created = await store.transaction((tx) =>
          tx.upsertCluster({
            name: 'prod',
            server: 'https://prod.example:6443',
            caData: 'LS0tLS1CRUdJTi...',
            credentialRef: '/etc/kubevisa/clusters/prod.kubeconfig',
            now: T0,
          }),
        );
        assert.deepEqual(created, {
          name: 'prod',
          server: 'https://prod.example:6443',
          caData: 'LS0tLS1CRUdJTi...',
          credentialRef: '/etc/kubevisa/clusters/prod.kubeconfig',
          createdAt: T0,
          updatedAt: T0,
        });
        const replaced = await store.transaction((tx) =>
          tx.upsertCluster({ name: 'prod', server: 'https://prod2.example:6443', now: T0 + DAY }),
        );
        assert.deepEqual(replaced, {
          name: 'prod',
          server: 'https://prod2.example:6443',
          createdAt: T0,
          updatedAt: T0 + DAY,
        });
        await store.transaction((tx) => tx.upsertCluster({ name: 'dev', server: 'https://dev.example:6443', now: T0 }));
        assert.deepEqual(
          (await store.listClusters()).map((c) => c.name),
          ['dev', 'prod'],
        );
        assert.deepEqual(await store.getCluster('prod'), replaced);
        assert.equal(await store.getCluster('none'), undefined);
        assert.equal(await store.transaction((tx) => tx.deleteCluster('dev')), true);
        assert.equal(await store.transaction((tx) => tx.deleteCluster('dev')), false);
        assert.deepEqual(
          (await store.listClusters()).map((c) => c.name),
          ['prod'],
        );
      }));

    test('a registered cluster round-trips, refuses a second of the same name, renews its credential, goes', () =>
      withStore(async (store) => {
        const edge = {
          name: 'edge-1',
          sealedKubeconfig: 'v1.iv.sealed-kubeconfig.tag',
          directMode: true,
          registeredBy: 'ada@corp.example',
          registeredAt: T0,
          credentialExpiresAt: T0 + DAY,
          updatedAt: T0,
        };
        assert.deepEqual(await store.transaction((tx) => tx.insertRegisteredCluster(edge)), edge);
        const plain = { ...edge, name: 'edge-0', directMode: false, credentialExpiresAt: undefined };
        delete plain.credentialExpiresAt;
        await store.transaction((tx) => tx.insertRegisteredCluster(plain));
        await assert.rejects(
          store.transaction((tx) => tx.insertRegisteredCluster({ ...edge, sealedKubeconfig: 'other' })),
          (error: Error & { code?: string }) => error.code === 'ERR_CONFLICT',
        );
        assert.deepEqual(await store.getRegisteredCluster('edge-1'), edge);
        assert.deepEqual(await store.listRegisteredClusters(), [plain, edge]);
        const renewed = await store.transaction((tx) =>
          tx.updateRegisteredClusterCredential('edge-1', {
            sealedKubeconfig: 'v1.iv.renewed.tag',
            credentialExpiresAt: T0 + 2 * DAY,
            now: T0 + DAY / 2,
          }),
        );
        assert.deepEqual(renewed, {
          ...edge,
          sealedKubeconfig: 'v1.iv.renewed.tag',
          credentialExpiresAt: T0 + 2 * DAY,
          updatedAt: T0 + DAY / 2,
        });
        await assert.rejects(
          store.transaction((tx) =>
            tx.updateRegisteredClusterCredential('none', { sealedKubeconfig: 'x', now: T0 + DAY }),
          ),
          (error: Error & { code?: string }) => error.code === 'ERR_NOT_FOUND',
        );
        assert.equal(await store.transaction((tx) => tx.deleteRegisteredCluster('edge-1')), true);
        assert.equal(await store.transaction((tx) => tx.deleteRegisteredCluster('edge-1')), false);
        assert.equal(await store.getRegisteredCluster('edge-1'), undefined);
        assert.deepEqual(
          (await store.listRegisteredClusters()).map((c) => c.name),
          ['edge-0'],
        );
      }));

    test('a profile round-trips its rules and declared risks; an upsert replaces it', () =>
      withStore(async (store) => {
        const debuggerProfile = profileFixture('debugger');
        const viewer = profileFixture('viewer', {
          declaredRisks: [],
          recordSessions: false,
          rules: [{ verbs: ['get'] }],
        });
        await store.transaction(async (tx) => {
          assert.deepEqual(await tx.upsertProfile(debuggerProfile), debuggerProfile);
          await tx.upsertProfile(viewer);
        });
        assert.deepEqual(await store.getProfile('debugger'), debuggerProfile);
        assert.deepEqual(await store.listProfiles(), [debuggerProfile, viewer]);
        const narrowed = { ...debuggerProfile, description: 'narrowed', maxVisaSeconds: 3600, recordSessions: false };
        await store.transaction((tx) => tx.upsertProfile(narrowed));
        assert.deepEqual(await store.getProfile('debugger'), narrowed);
        assert.equal(await store.getProfile('none'), undefined);
        assert.equal(await store.transaction((tx) => tx.deleteProfile('viewer')), true);
        assert.deepEqual(await store.listProfiles(), [narrowed]);
      }));

    test('settings hold any JSON value and are replaced on put', () =>
      withStore(async (store) => {
        assert.equal(await store.getSetting('reconciler.fence'), undefined);
        await store.transaction(async (tx) => {
          await tx.putSetting('reconciler.fence', 7, T0);
          await tx.putSetting('checkpoint', { seq: 10, hash: 'abc', signed: true, list: [null] }, T0);
        });
        assert.equal(await store.getSetting('reconciler.fence'), 7);
        assert.deepEqual(await store.getSetting('checkpoint'), { seq: 10, hash: 'abc', signed: true, list: [null] });
        await store.transaction((tx) => tx.putSetting('reconciler.fence', 8, T0 + 1));
        assert.equal(await store.getSetting('reconciler.fence'), 8);
      }));
  });
}
