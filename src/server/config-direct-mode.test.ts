/** `clusters[].directMode` in the server configuration: off unless a cluster says true, and nothing else accepted. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseServerConfig } from './config.ts';

const withClusters = (clusters: unknown[]) =>
  parseServerConfig(
    { dataDir: 'data', oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' }, clusters },
    '/etc/kubevisa',
  );

describe('cluster directMode setting', () => {
  test('defaults to false and keeps an explicit true', () => {
    const config = withClusters([
      { name: 'prod', kubeconfig: 'prod.kubeconfig' },
      { name: 'edge', kubeconfig: 'edge.kubeconfig', directMode: true },
    ]);
    assert.deepEqual(
      config.clusters.map((c) => [c.name, c.directMode]),
      [
        ['prod', false],
        ['edge', true],
      ],
    );
  });

  test('refuses anything but true or false, naming the field', () => {
    assert.throws(() => withClusters([{ name: 'prod', kubeconfig: 'k', directMode: 'yes' }]), {
      code: 'ERR_INVALID_INPUT',
      message: "config: 'clusters[0].directMode' must be true or false (default false)",
    });
  });
});
