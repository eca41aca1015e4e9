import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmod,
  chown,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { InvalidInput } from '../domain/errors.ts';
import { createTokenIssuer } from './access-tokens.ts';
import { SIGNING_KEY_FILE, loadOrCreateSigningKey } from './signing-key.ts';

const posix = process.platform !== 'win32';

describe('access-token signing key on disk', () => {
  let root = '';
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kubevisa-signing-key-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates an Ed25519 PKCS#8 PEM key readable by its owner only, in a new data directory', async () => {
    const dataDir = join(root, 'fresh', 'data');
    const key = await loadOrCreateSigningKey(dataDir);
    assert.equal(key.created, true);
    assert.equal(key.privateKey.asymmetricKeyType, 'ed25519');
    assert.equal(key.path, join(dataDir, SIGNING_KEY_FILE));
    const pem = await readFile(key.path, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    if (posix) {
      assert.equal((await stat(key.path)).mode & 0o777, 0o600);
      assert.equal((await stat(dataDir)).mode & 0o077, 0);
    }
    assert.deepEqual(await readdir(dataDir), [SIGNING_KEY_FILE], 'a temporary file was left behind');
  });

  it('loads the same key, with the same key id, on the next start', async () => {
    const dataDir = join(root, 'restart');
    const first = await loadOrCreateSigningKey(dataDir);
    const second = await loadOrCreateSigningKey(dataDir);
    assert.equal(second.created, false);
    assert.equal(second.keyId, first.keyId);
    assert.match(second.keyId, /^[A-Za-z0-9_-]{43}$/);
    // A token signed before the restart verifies after it.
    const before = createTokenIssuer({
      issuer: 'https://kv',
      audience: 'kv',
      signingKey: first.privateKey,
      keyId: first.keyId,
    });
    const afterRestart = createTokenIssuer({
      issuer: 'https://kv',
      audience: 'kv',
      signingKey: second.privateKey,
      keyId: second.keyId,
    });
    const now = Date.now();
    const { token } = await before.issue({ personId: 'p', email: 'e@x', sessionId: 's', now });
    assert.equal((await afterRestart.verify(token, now)).personId, 'p');
  });

  it('ends with one key when several processes start at once', async () => {
    const dataDir = join(root, 'race');
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSigningKey(dataDir)));
    assert.equal(new Set(keys.map((key) => key.keyId)).size, 1);
    assert.equal(keys.filter((key) => key.created).length, 1);
    assert.deepEqual(await readdir(dataDir), [SIGNING_KEY_FILE]);
  });

  it(
    'refuses a data folder others may write, before writing a key into it',
    { skip: !posix && 'file modes are POSIX only' },
    async () => {
      const dataDir = join(root, 'writable');
      await mkdir(dataDir);
      await chmod(dataDir, 0o777);
      await assert.rejects(loadOrCreateSigningKey(dataDir), {
        code: 'ERR_INVALID_INPUT',
        message: /^the data folder .*writable can be written by group \d+ and others .*who could swap a key in it/,
      });
      assert.deepEqual(await readdir(dataDir), []);
    },
  );

  it('refuses a key file that group or others can read', { skip: !posix && 'file modes are POSIX only' }, async () => {
    const dataDir = join(root, 'loose');
    const key = await loadOrCreateSigningKey(dataDir);
    await chmod(key.path, 0o644);
    await assert.rejects(loadOrCreateSigningKey(dataDir), (error: unknown) => {
      assert.ok(error instanceof InvalidInput);
      assert.match(error.message, /chmod 600/);
      return true;
    });
  });

  it(
    "accepts a key mounted from a Kubernetes Secret as root:<the server's group> 0440, not for another group or owner",
    { skip: (!posix || process.getuid?.() !== 0) && 'only root can give a file to root' },
    async () => {
      const dataDir = join(root, 'mounted');
      const key = await loadOrCreateSigningKey(dataDir);
      // In the chart's pod the server runs in the fsGroup the kubelet gives the file; here it runs as root.
      await chown(key.path, 0, process.getgid!());
      await chmod(key.path, 0o440);
      assert.equal((await loadOrCreateSigningKey(dataDir)).keyId, key.keyId);
      await chown(key.path, 0, 65532);
      await assert.rejects(
        loadOrCreateSigningKey(dataDir),
        /is readable by group 65532 \(mode 440\), which this process is not in: run chmod 600 on it/,
      );
      await chown(key.path, 65532, process.getgid!());
      await assert.rejects(loadOrCreateSigningKey(dataDir), /owned by user 65532, who could read or replace it/);
    },
  );

  it(
    'refuses an owner-only key that belongs to another user when the server runs as root (that user could read or replace it)',
    { skip: (!posix || process.getuid?.() !== 0) && 'only root can read a file that belongs to someone else' },
    async () => {
      const dataDir = join(root, 'someone-else');
      const key = await loadOrCreateSigningKey(dataDir);
      await chown(key.path, 65534, 65534);
      await assert.rejects(loadOrCreateSigningKey(dataDir), (error: unknown) => {
        assert.ok(error instanceof InvalidInput);
        assert.match(error.message, /is owned by user 65534, who could read or replace it: run chown 0 on it/);
        return true;
      });
    },
  );

  it(
    'never uses a key others can read swapped in behind a symlink between the check and the read',
    { skip: !posix && 'file modes are POSIX only' },
    async () => {
      // Someone who can write the key's directory flips the key's name between the server's own 0600 key and a
      // 0644 key of theirs. A check on the path and a read of the path can see different files; a check on the
      // descriptor that is then read cannot. Before the fix, about one load in a thousand returned the 0644 key.
      const dataDir = join(root, 'swap');
      await loadOrCreateSigningKey(dataDir);
      const keyPath = join(dataDir, SIGNING_KEY_FILE);
      await rename(keyPath, join(dataDir, 'own.pem'));
      const theirs = await loadOrCreateSigningKey(join(root, 'theirs'));
      await copyFile(theirs.path, join(dataDir, 'theirs.pem'));
      await chmod(join(dataDir, 'theirs.pem'), 0o644);
      const flipper = spawn(
        'sh',
        [
          '-c',
          `cd '${dataDir}' && while :; do ln -sfn own.pem a && mv -T a '${SIGNING_KEY_FILE}'; ln -sfn theirs.pem b && mv -T b '${SIGNING_KEY_FILE}'; done`,
        ],
        { stdio: 'ignore' },
      );
      // Bounded by a count, not a time: a busy machine (CI runs everything at once) manages only a few hundred
      // loads a second, and the race needs both of the flipper's files to have been met many times.
      let loads = 0;
      let usedTheirs = 0;
      let usedOwn = 0;
      let refused = 0;
      try {
        const until = Date.now() + 60_000;
        while (loads < 3000 && Date.now() < until) {
          loads += 1;
          try {
            if ((await loadOrCreateSigningKey(dataDir)).keyId === theirs.keyId) usedTheirs += 1;
            else usedOwn += 1;
          } catch (error) {
            // Refused (their key was checked) or gone for an instant between `mv`s: both are fine here.
            if (error instanceof InvalidInput) refused += 1;
            else if (!(error as NodeJS.ErrnoException).code) throw error;
          }
        }
      } finally {
        flipper.kill();
      }
      assert.ok(
        usedOwn > 10 && refused > 10,
        `the race was not exercised: ${usedOwn} loads of the own key and ${refused} refusals of theirs in ${loads}`,
      );
      assert.equal(usedTheirs, 0, `the 0644 key was used ${usedTheirs} times in ${loads} loads`);
    },
  );

  it(
    'refuses a key name that leads nowhere (a dangling or looping symlink) as invalid input naming it, never a raw errno error',
    { skip: !posix && 'symlinks are POSIX only' },
    async () => {
      // A Secret volume whose ..data link was removed leaves such a name behind. The dangling link reads as no key,
      // but the first-start write cannot replace it, so the read after it used to fail with a bare ENOENT.
      const dangling = join(root, 'dangling');
      await mkdir(dangling, { mode: 0o700 });
      await symlink(join('..data', SIGNING_KEY_FILE), join(dangling, SIGNING_KEY_FILE));
      await assert.rejects(loadOrCreateSigningKey(dangling), (error: unknown) => {
        assert.ok(error instanceof InvalidInput);
        assert.equal(
          error.message,
          `the access-token signing key ${join(dangling, SIGNING_KEY_FILE)} cannot be opened: it does not exist, or is a ` +
            'symbolic link to nothing (ENOENT); check the path, and that the file is there',
        );
        return true;
      });
      const looping = join(root, 'looping');
      await mkdir(looping, { mode: 0o700 });
      await symlink(SIGNING_KEY_FILE, join(looping, SIGNING_KEY_FILE));
      await assert.rejects(loadOrCreateSigningKey(looping), { code: 'ERR_INVALID_INPUT', message: /\(ELOOP\)/ });
      assert.deepEqual(await readdir(dangling), [SIGNING_KEY_FILE], 'a temporary file was left behind');
    },
  );

  it('refuses a key file that is not Ed25519', async () => {
    const dataDir = join(root, 'rsa');
    await loadOrCreateSigningKey(dataDir);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(join(dataDir, SIGNING_KEY_FILE), rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      mode: 0o600,
    });
    await assert.rejects(loadOrCreateSigningKey(dataDir), InvalidInput);
  });

  it('refuses a key file that is not a PEM private key', async () => {
    const dataDir = join(root, 'garbage');
    await loadOrCreateSigningKey(dataDir);
    await writeFile(join(dataDir, SIGNING_KEY_FILE), 'not a key', { mode: 0o600 });
    await assert.rejects(loadOrCreateSigningKey(dataDir), InvalidInput);
  });
});
