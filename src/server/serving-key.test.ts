/** The server refuses to start with a TLS private key that others could read (pki/tls-reload.ts readTlsKeyFile). */
import { strict as assert } from 'node:assert';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { LocalCa, type CertificateFiles } from '../dev/ca.ts';
import { parseServerConfig } from './config.ts';
import { startServer } from './main.ts';

let dir: string;
let serving: CertificateFiles;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-serving-key-'));
  const ca = await LocalCa.create(dir, 'kubevisa-test-ca');
  serving = await ca.issue({ name: 'server', commonName: 'kubevisa', ipAddresses: ['127.0.0.1'], usage: 'server' });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('refuses to start with a world-readable TLS key, naming the file, its mode and what to run, before creating anything', async () => {
  await chmod(serving.keyFile, 0o644);
  const dataDir = join(dir, 'data');
  const config = parseServerConfig(
    {
      dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' },
      tls: { certFile: serving.certFile, keyFile: serving.keyFile },
    },
    dir,
  );
  await assert.rejects(startServer(config), {
    code: 'ERR_INVALID_INPUT',
    message: `the TLS private key (tls.keyFile) ${serving.keyFile} can be read by group or others (mode 644): run chmod 600 on it (640 at most for a file owned by root in kubevisa's group); replace the key and its certificate if anyone else may have read it`,
  });
  assert.equal(existsSync(dataDir), false, 'the data folder is not made');
});
