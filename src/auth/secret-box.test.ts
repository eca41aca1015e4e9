import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { loadOrCreateSecretBox } from './secret-box.ts';

const posix = process.platform !== 'win32';
const root = posix && process.getuid?.() === 0;

describe('the secret box key on disk', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubevisa-secret-box-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a 32-byte base64 key (0600) on first start and opens what it sealed after a restart', async () => {
    const dataDir = await mkdtemp(join(dir, 'fresh-'));
    const first = await loadOrCreateSecretBox(dataDir);
    const file = join(dataDir, 'session-encryption.key');
    if (posix) assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64').length, 32);
    const again = await loadOrCreateSecretBox(dataDir);
    assert.equal(again.keyId, first.keyId);
    assert.equal(again.open(first.seal('refresh-token')), 'refresh-token');
  });

  it('gives servers starting at once on one folder the same key: one writes it, the others read it', async () => {
    // Before, the loser's exclusive create failed with EEXIST, or it read the winner's file before a byte was in it.
    for (let round = 0; round < 10; round += 1) {
      const dataDir = await mkdtemp(join(dir, 'race-'));
      const boxes = await Promise.all([loadOrCreateSecretBox(dataDir), loadOrCreateSecretBox(dataDir)]);
      assert.equal(boxes[0].keyId, boxes[1].keyId);
      assert.equal(boxes[1].open(boxes[0].seal('refresh-token')), 'refresh-token');
      assert.deepEqual(await readdir(dataDir), ['session-encryption.key']);
    }
  });

  it('derives the same key for a purpose wherever the key is shared, another for another purpose or key', async () => {
    const shared = await mkdtemp(join(dir, 'derive-'));
    const [one, two] = await Promise.all([loadOrCreateSecretBox(shared), loadOrCreateSecretBox(shared)]);
    const other = await loadOrCreateSecretBox(await mkdtemp(join(dir, 'derive-other-')));
    assert.deepEqual(one.deriveKey('change feed'), two.deriveKey('change feed'));
    assert.equal(one.deriveKey('change feed').length, 32);
    assert.notDeepEqual(one.deriveKey('change feed'), one.deriveKey('something else'));
    assert.notDeepEqual(one.deriveKey('change feed'), other.deriveKey('change feed'));
  });

  it('uses a key given as base64 without a newline (as Helm writes `randBytes 32` into a Secret)', async () => {
    const [a, b] = [await mkdtemp(join(dir, 'a-')), await mkdtemp(join(dir, 'b-'))];
    const key = randomBytes(32).toString('base64');
    for (const dataDir of [a, b]) await writeFile(join(dataDir, 'session-encryption.key'), key, { mode: 0o600 });
    const [boxA, boxB] = [await loadOrCreateSecretBox(a), await loadOrCreateSecretBox(b)];
    assert.equal(boxA.keyId, boxB.keyId);
    assert.equal(boxB.open(boxA.seal('shared')), 'shared');
  });

  it('refuses a key that is not 32 bytes', async () => {
    const dataDir = await mkdtemp(join(dir, 'short-'));
    await writeFile(join(dataDir, 'session-encryption.key'), randomBytes(16).toString('base64'), { mode: 0o600 });
    await assert.rejects(loadOrCreateSecretBox(dataDir), {
      code: 'ERR_INVALID_INPUT',
      message: new RegExp(
        `^the session encryption key ${join(dataDir, 'session-encryption.key')} does not hold a 32-byte key in base64 ` +
          '\\(it decodes to 16 bytes\\): put the key every server shares there',
      ),
    });
    // Cut short, as a crash left it when the key was written in place; the error shows no byte of it.
    const text = randomBytes(32).toString('base64');
    await writeFile(join(dataDir, 'session-encryption.key'), text.slice(0, 30), { mode: 0o600 });
    const error = await loadOrCreateSecretBox(dataDir).catch((caught: unknown) => caught);
    assert.ok(error instanceof Error && /decodes to 22 bytes/.test(error.message), String(error));
    assert.ok(!error.message.includes(text.slice(0, 8)), 'no key bytes in the message');
  });

  it('refuses a key file others can read', { skip: !posix && 'file modes are POSIX only' }, async () => {
    const dataDir = await mkdtemp(join(dir, 'loose-'));
    await loadOrCreateSecretBox(dataDir);
    await chmod(join(dataDir, 'session-encryption.key'), 0o644);
    await assert.rejects(loadOrCreateSecretBox(dataDir), /chmod 600/);
  });

  it(
    "accepts a key mounted from a Kubernetes Secret as root:<the server's group> 0440, not for another group or owner",
    { skip: !root && 'only root can give a file to root' },
    async () => {
      const dataDir = await mkdtemp(join(dir, 'mounted-'));
      const file = join(dataDir, 'session-encryption.key');
      await writeFile(file, randomBytes(32).toString('base64'), { mode: 0o600 });
      await chown(file, 0, process.getgid!());
      await chmod(file, 0o440);
      await loadOrCreateSecretBox(dataDir);
      await chown(file, 0, 65532);
      await assert.rejects(loadOrCreateSecretBox(dataDir), /readable by group 65532 .*which this process is not in/);
      await chown(file, 65532, process.getgid!());
      await assert.rejects(loadOrCreateSecretBox(dataDir), /owned by user 65532, who could read or replace it/);
    },
  );

  it(
    'refuses a key path that is a FIFO, a directory or a device, promptly (a FIFO used to block the start for good)',
    { skip: !posix && 'FIFOs are POSIX only' },
    async () => {
      const fifoDir = await mkdtemp(join(dir, 'fifo-'));
      execFileSync('mkfifo', ['-m', '600', join(fifoDir, 'session-encryption.key')]);
      const directoryDir = await mkdtemp(join(dir, 'directory-'));
      await mkdir(join(directoryDir, 'session-encryption.key'), { mode: 0o700 });
      const deviceDir = await mkdtemp(join(dir, 'device-'));
      await symlink('/dev/zero', join(deviceDir, 'session-encryption.key'));
      for (const dataDir of [fifoDir, directoryDir, deviceDir]) {
        const outcome = await Promise.race([
          loadOrCreateSecretBox(dataDir).then(
            () => 'accepted',
            (error: unknown) => (error as Error).message,
          ),
          new Promise<string>((resolve) => setTimeout(resolve, 2000, 'still waiting after 2 s').unref()),
        ]);
        assert.match(outcome, /session-encryption\.key (is not a regular file|can be read by group or others)/);
      }
    },
  );
});
