import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type Server } from 'node:tls';

import { LocalCa, type CertificateFiles } from '../dev/ca.ts';
import { readTlsPair, reloadTlsOnChange } from './tls-reload.ts';

let dir: string;
let first: CertificateFiles;
let second: CertificateFiles;

/** The SHA-256 fingerprint of the certificate a real TLS server presents now. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

const fingerprintOf = async (certFile: string) => new X509Certificate(await readFile(certFile)).fingerprint256;

/** Replaces `file` at once, as the kubelet swaps a Secret's files, with `mode` set after the umask. */
async function replaceFile(file: string, content: Buffer, mode: number) {
  await writeFile(`${file}.new`, content);
  await chmod(`${file}.new`, mode);
  await rename(`${file}.new`, file);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-tls-reload-'));
  const ca = await LocalCa.create(dir, 'kubevisa-test-ca');
  const leaf = { commonName: 'kubevisa', ipAddresses: ['127.0.0.1'], usage: 'server' as const };
  first = await ca.issue({ name: 'first', ...leaf });
  second = await ca.issue({ name: 'second', ...leaf });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the serving key file', () => {
  it(
    'is refused, naming the folder, when it lies in a folder others may write, or a symbolic link leads it through one',
    { skip: process.platform === 'win32' && 'POSIX modes only' },
    async () => {
      // What an attacker did: tls.keyFile sat in /srv/exp/tlsw (777). Another user put there a symbolic link to
      // kubevisa's access-token signing key (its user's, 0600, so accepted) and a certificate they issued for its
      // public half (published as JWKS): readTlsPair and createSecureContext took the pair.
      const open = join(dir, 'open-tls');
      await mkdir(open);
      await copyFile(first.keyFile, join(open, 'tls.key'));
      await chmod(join(open, 'tls.key'), 0o600);
      await chmod(open, 0o777);
      await assert.rejects(readTlsPair({ certFile: first.certFile, keyFile: join(open, 'tls.key') }), {
        code: 'ERR_INVALID_INPUT',
        message: new RegExp(
          `^the TLS private key \\(tls\\.keyFile\\) ${join(open, 'tls.key')} lies inside ${open}, which can be ` +
            'written by .*others .*: run chmod go-w on it',
        ),
      });
      const safe = join(dir, 'safe-tls');
      await mkdir(safe, { mode: 0o700 });
      await symlink(join(open, 'tls.key'), join(safe, 'tls.key'));
      await assert.rejects(readTlsPair({ certFile: first.certFile, keyFile: join(safe, 'tls.key') }), {
        message: new RegExp(`lies inside ${open}, which can be written`),
      });
      await chmod(open, 0o755);
      const pair = await readTlsPair({ certFile: first.certFile, keyFile: join(safe, 'tls.key') });
      assert.deepEqual(pair.key, await readFile(first.keyFile));
    },
  );

  it("is read through a symlink, as a Secret volume presents it (tls.key -> ..data/tls.key, the kubelet's 0400)", async () => {
    const volume = join(dir, 'volume');
    await mkdir(join(volume, '..data'), { recursive: true });
    await copyFile(first.keyFile, join(volume, '..data', 'tls.key'));
    await chmod(join(volume, '..data', 'tls.key'), 0o400);
    await symlink(join('..data', 'tls.key'), join(volume, 'tls.key'));
    const pair = await readTlsPair({ certFile: first.certFile, keyFile: join(volume, 'tls.key') });
    assert.deepEqual(pair.key, await readFile(first.keyFile));
    assert.deepEqual(pair.cert, await readFile(first.certFile));
  });

  it('is refused when others can read it, naming the file, its mode and the command to run', async () => {
    const keyFile = join(dir, 'world-readable.key');
    await copyFile(first.keyFile, keyFile);
    await chmod(keyFile, 0o644);
    await assert.rejects(readTlsPair({ certFile: first.certFile, keyFile }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_INVALID_INPUT');
      assert.equal(
        error.message,
        `the TLS private key (tls.keyFile) ${keyFile} can be read by group or others (mode 644): run chmod 600 on it ` +
          "(640 at most for a file owned by root in kubevisa's group); replace the key and its certificate if anyone else may have read it",
      );
      return true;
    });
  });

  it('is refused when it is no regular file', async () => {
    await assert.rejects(readTlsPair({ certFile: first.certFile, keyFile: dir }), {
      code: 'ERR_INVALID_INPUT',
      message: `the TLS private key (tls.keyFile) ${dir} is not a regular file; replace the key and its certificate if anyone else may have read it`,
    });
  });
});

describe('reloading the serving certificate', () => {
  let server: Server;
  let port: number;
  let secret: string;

  before(async () => {
    secret = join(dir, 'secret');
    await mkdir(secret);
    await replaceFile(join(secret, 'tls.crt'), await readFile(first.certFile), 0o644);
    await replaceFile(join(secret, 'tls.key'), await readFile(first.keyFile), 0o600);
    server = createServer(await readTlsPair({ certFile: first.certFile, keyFile: first.keyFile }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('keeps serving the old certificate while the new key can be read by others, and installs it once fixed', async () => {
    const files = { certFile: join(secret, 'tls.crt'), keyFile: join(secret, 'tls.key') };
    const errors: Error[] = [];
    const reload = reloadTlsOnChange({
      server,
      ...files,
      initial: await readTlsPair(files),
      checkIntervalMs: 20,
      onError: (error) => errors.push(error),
    });
    try {
      const [firstPrint, secondPrint] = [await fingerprintOf(first.certFile), await fingerprintOf(second.certFile)];
      assert.equal(await servedFingerprint(port), firstPrint);

      // The renewed pair arrives with a key anyone may read: it is never served, and every check says why.
      await replaceFile(files.keyFile, await readFile(second.keyFile), 0o644);
      await replaceFile(files.certFile, await readFile(second.certFile), 0o644);
      await assert.rejects(reload.check(), { code: 'ERR_INVALID_INPUT', message: /\(mode 644\): run chmod 600 on it/ });
      while (errors.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.match(errors[0]!.message, new RegExp(`${files.keyFile} can be read by group or others`));
      assert.equal(await servedFingerprint(port), firstPrint, 'the old certificate is still served');

      await chmod(files.keyFile, 0o600);
      // The timer may install it first; either way the next check finds nothing new and the new pair is served.
      await reload.check();
      assert.equal(await servedFingerprint(port), secondPrint);
      assert.equal(await reload.check(), false, 'installed once');

      // The same key turned world-readable in place (its content unchanged) is reported, not silently kept.
      await chmod(files.keyFile, 0o604);
      await assert.rejects(reload.check(), { code: 'ERR_INVALID_INPUT', message: /\(mode 604\)/ });
      assert.equal(await servedFingerprint(port), secondPrint);
    } finally {
      reload.stop();
    }
  });
});
