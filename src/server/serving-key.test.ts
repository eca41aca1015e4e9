/**
 * The server refuses to start with a TLS private key that others could read (pki/tls-reload.ts readTlsKeyFile), or
 * with TLS files it cannot open.
 */
import { strict as assert } from 'node:assert';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
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

/** The server config of these tests, with `tls` and the data folder `dataDir`. */
function configWith(tls: { certFile: string; keyFile: string }, dataDir: string) {
  return parseServerConfig(
    {
      dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' },
      tls,
    },
    dir,
  );
}

test('refuses to start with a world-readable TLS key, naming the file, its mode and what to run, before creating anything', async () => {
  await chmod(serving.keyFile, 0o644);
  const dataDir = join(dir, 'data');
  await assert.rejects(startServer(configWith({ certFile: serving.certFile, keyFile: serving.keyFile }, dataDir)), {
    code: 'ERR_INVALID_INPUT',
    message: `the TLS private key (tls.keyFile) ${serving.keyFile} can be read by group or others (mode 644): run chmod 600 on it (640 at most for a file owned by root in kubevisa's group); replace the key and its certificate if anyone else may have read it`,
  });
  assert.equal(existsSync(dataDir), false, 'the data folder is not made');
});

test('refuses to start without a TLS key or certificate file, naming the field, the path and what is wrong (not a raw ENOENT)', async () => {
  await chmod(serving.keyFile, 0o600);
  const dataDir = join(dir, 'data-missing');
  const missingKey = join(dir, 'nowhere', 'tls.key');
  await assert.rejects(startServer(configWith({ certFile: serving.certFile, keyFile: missingKey }, dataDir)), {
    code: 'ERR_INVALID_INPUT',
    message: `the TLS private key (tls.keyFile) ${missingKey} cannot be opened: it does not exist, or is a symbolic link to nothing (ENOENT); check the path, and that the file is there`,
  });
  const missingCert = join(dir, 'nowhere', 'tls.crt');
  await assert.rejects(startServer(configWith({ certFile: missingCert, keyFile: serving.keyFile }, dataDir)), {
    code: 'ERR_INVALID_INPUT',
    message: `the TLS certificate (tls.certFile) ${missingCert} cannot be opened: it does not exist, or is a symbolic link to nothing (ENOENT); check the path, and that the file is there`,
  });
  const folder = join(dir, 'a-folder.crt');
  await mkdir(folder);
  await assert.rejects(startServer(configWith({ certFile: folder, keyFile: serving.keyFile }, dataDir)), {
    code: 'ERR_INVALID_INPUT',
    message: `the TLS certificate (tls.certFile) ${folder} cannot be opened: it is a folder (EISDIR); name the file itself`,
  });
  assert.equal(existsSync(dataDir), false, 'the data folder is not made');
});
