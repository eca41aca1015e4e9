import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { InvalidInput } from '../domain/errors.ts';
import { connectionOf, loadKubeConfig, tokenKubeconfigYaml } from './kubeconfig.ts';

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-kubeconfig-'));
  await writeFile(join(dir, 'ca.crt'), CA_PEM);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function adminKubeconfig(cluster: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'dev', cluster }],
    users: [{ name: 'admin', user: { 'client-certificate-data': 'Y2VydA==', 'client-key-data': 'a2V5' } }],
    contexts: [{ name: 'dev', context: { cluster: 'dev', user: 'admin' } }],
    'current-context': 'dev',
  });
}

describe('connectionOf', () => {
  it('embeds a CA given as a file (relative to the kubeconfig) and drops a trailing slash', async () => {
    const file = join(dir, 'admin.kubeconfig');
    await writeFile(file, adminKubeconfig({ server: 'https://10.0.0.1:6443/', 'certificate-authority': 'ca.crt' }));
    const connection = connectionOf(loadKubeConfig({ kubeconfigPath: file }, 'prod'), 'prod');
    assert.deepEqual(connection, {
      server: 'https://10.0.0.1:6443',
      certificateAuthorityData: Buffer.from(CA_PEM).toString('base64'),
      insecureSkipTlsVerify: false,
    });
  });

  it('keeps certificate-authority-data, tls-server-name and insecure-skip-tls-verify as given', () => {
    const yaml = adminKubeconfig({
      server: 'https://api.example:6443',
      'certificate-authority-data': 'Q0E=',
      'tls-server-name': 'kubernetes',
    });
    assert.deepEqual(connectionOf(loadKubeConfig({ kubeconfigYaml: yaml }, 'prod'), 'prod'), {
      server: 'https://api.example:6443',
      certificateAuthorityData: 'Q0E=',
      tlsServerName: 'kubernetes',
      insecureSkipTlsVerify: false,
    });
  });
});

describe('tokenKubeconfigYaml', () => {
  it('writes a self-contained kubeconfig with the token and no client certificate, which loads back', () => {
    const yaml = tokenKubeconfigYaml({
      clusterName: 'prod',
      connection: {
        server: 'https://10.0.0.1:6443',
        certificateAuthorityData: 'Q0E=',
        tlsServerName: 'kubernetes',
        insecureSkipTlsVerify: false,
      },
      token: 'the-token',
    });
    assert.deepEqual(parse(yaml), {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'prod',
          cluster: {
            server: 'https://10.0.0.1:6443',
            'certificate-authority-data': 'Q0E=',
            'tls-server-name': 'kubernetes',
          },
        },
      ],
      users: [{ name: 'prod-kubevisa', user: { token: 'the-token' } }],
      contexts: [{ name: 'prod', context: { cluster: 'prod', user: 'prod-kubevisa' } }],
      'current-context': 'prod',
    });
    const loaded = loadKubeConfig({ kubeconfigYaml: yaml }, 'prod');
    assert.equal(loaded.getCurrentUser()?.token, 'the-token');
    assert.equal(loaded.getCurrentCluster()?.server, 'https://10.0.0.1:6443');
  });

  it('keeps certificate verification off only when the source had it off', () => {
    const yaml = tokenKubeconfigYaml({
      clusterName: 'lab',
      connection: { server: 'https://lab:6443', insecureSkipTlsVerify: true },
      token: 't',
    });
    assert.equal(parse(yaml).clusters[0].cluster['insecure-skip-tls-verify'], true);
  });
});

describe('loadKubeConfig', () => {
  it('refuses a missing file with InvalidInput naming the cluster and the file', () => {
    assert.throws(
      () => loadKubeConfig({ kubeconfigPath: join(dir, 'missing.kubeconfig') }, 'prod'),
      (error: unknown) =>
        error instanceof InvalidInput &&
        /cluster 'prod': cannot load kubeconfig .*missing\.kubeconfig/.test(error.message),
    );
  });

  it('refuses a kubeconfig without a current context', () => {
    const yaml = JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] });
    assert.throws(
      () => loadKubeConfig({ kubeconfigYaml: yaml }, 'prod'),
      (error: unknown) => error instanceof InvalidInput && /no current context/.test(error.message),
    );
  });
});
