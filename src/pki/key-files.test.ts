import { strict as assert } from 'node:assert';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { InvalidInput } from '../domain/errors.ts';
import {
  isPrivateKeyFileMode,
  privateKeyFileAdvice,
  processGroups,
  readPrivateKeyFile,
  readPrivateKeyFileIfPresent,
  unopenableFile,
} from './key-files.ts';

// The process's groups in these cases: its own 65532 (the chart's fsGroup) and a supplementary 1000.
const GROUPS = [65532, 1000];

describe('which private key file modes are accepted', () => {
  it('accepts owner-only modes for a file owned by the process or by root, whatever its group', () => {
    for (const uid of [0, 65532]) {
      for (const mode of [0o100600, 0o100400, 0o100700]) {
        assert.equal(isPrivateKeyFileMode({ mode, uid, gid: 4 }, GROUPS, 65532), true);
      }
    }
  });

  it('refuses an owner-only file owned by another user: a server running as root reads it, and so can its owner', () => {
    for (const mode of [0o100600, 0o100400]) {
      assert.equal(isPrivateKeyFileMode({ mode, uid: 1000, gid: 1000 }, GROUPS, 0), false);
      assert.equal(isPrivateKeyFileMode({ mode, uid: 1000, gid: 65532 }, GROUPS, 65532), false);
    }
    assert.match(
      privateKeyFileAdvice('/keys/k', { mode: 0o100600, uid: 1000, gid: 1000 }, 0),
      /^\/keys\/k is owned by user 1000, who could read or replace it: run chown 0 on it/,
    );
  });

  it("accepts group read on a root-owned file in the process's group: a Secret volume with an fsGroup gives root:<fsGroup> 0440", () => {
    assert.equal(isPrivateKeyFileMode({ mode: 0o100440, uid: 0, gid: 65532 }, GROUPS, 65532), true);
    assert.equal(isPrivateKeyFileMode({ mode: 0o100640, uid: 0, gid: 1000 }, GROUPS, 65532), true);
  });

  it("refuses group read for a group the process is not in: that group's members could read the key", () => {
    assert.equal(isPrivateKeyFileMode({ mode: 0o100440, uid: 0, gid: 4 }, GROUPS), false);
    assert.equal(isPrivateKeyFileMode({ mode: 0o100640, uid: 0, gid: 0 }, GROUPS), false);
    assert.match(
      privateKeyFileAdvice('/keys/k', { mode: 0o100640, uid: 0, gid: 4 }),
      /^\/keys\/k is readable by group 4 \(mode 640\), which this process is not in: run chmod 600 on it/,
    );
  });

  it('refuses group read on a file not owned by root, and anything more for root', () => {
    assert.equal(isPrivateKeyFileMode({ mode: 0o100440, uid: 65532, gid: 65532 }, GROUPS, 65532), false);
    assert.equal(isPrivateKeyFileMode({ mode: 0o100640, uid: 1000, gid: 1000 }, GROUPS, 1000), false);
    for (const mode of [0o100644, 0o100444, 0o100660, 0o100604, 0o100650, 0o100601]) {
      assert.equal(isPrivateKeyFileMode({ mode, uid: 0, gid: 65532 }, GROUPS), false, mode.toString(8));
    }
    assert.match(
      privateKeyFileAdvice('/keys/k', { mode: 0o100644, uid: 0, gid: 65532 }),
      /can be read by group or others \(mode 644\): run chmod 600 on it/,
    );
  });

  it("knows this process's own group", { skip: process.getgid === undefined && 'no POSIX groups here' }, () => {
    assert.ok(processGroups().includes(process.getgid!()));
  });
});

describe('a key path that cannot be opened', () => {
  const key = { name: 'the test key', ifExposed: 'replace it' };
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubevisa-key-files-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Asserts `error` is kubevisa's invalid input for `path` that failed with `errno`, and returns its message. */
  function refusal(error: unknown, path: string, errno: string): string {
    assert.ok(error instanceof InvalidInput, `not InvalidInput: ${String(error)}`);
    assert.equal(error.code, 'ERR_INVALID_INPUT');
    assert.deepEqual(error.details, { path, errno });
    assert.equal((error.cause as NodeJS.ErrnoException).code, errno);
    return error.message;
  }

  it('is refused as invalid input that names the key, the path, what is wrong and what to do', async () => {
    const missing = join(dir, 'missing.pem');
    const error = await readPrivateKeyFile(missing, key).catch((caught: unknown) => caught);
    assert.equal(
      refusal(error, missing, 'ENOENT'),
      `the test key ${missing} cannot be opened: it does not exist, or is a symbolic link to nothing (ENOENT); ` +
        'check the path, and that the file is there',
    );
  });

  it(
    'says so for a symbolic link loop and for a path through a file',
    { skip: process.platform === 'win32' },
    async () => {
      const loop = join(dir, 'loop.pem');
      await symlink(loop, loop);
      const looped = await readPrivateKeyFile(loop, key).catch((caught: unknown) => caught);
      assert.match(
        refusal(looped, loop, 'ELOOP'),
        /cannot be opened: its symbolic links form a loop.*point the path at the file itself$/,
      );
      await writeFile(join(dir, 'plain'), 'not a folder', { mode: 0o600 });
      const through = join(dir, 'plain', 'key.pem');
      const notDir = await readPrivateKeyFile(through, key).catch((caught: unknown) => caught);
      assert.match(refusal(notDir, through, 'ENOTDIR'), /a part of the path before the file name is not a folder/);
    },
  );

  it('reads as absent only when nothing is there: every other failure is still refused', async () => {
    assert.equal(await readPrivateKeyFileIfPresent(join(dir, 'not-yet.pem'), key), undefined);
    const loop = join(dir, 'loop-again.pem');
    await symlink(loop, loop);
    await assert.rejects(readPrivateKeyFileIfPresent(loop, key), {
      code: 'ERR_INVALID_INPUT',
      details: { path: loop, errno: 'ELOOP' },
    });
  });

  it('tells a process that may not read the file which user it runs as and what to change', () => {
    const denied = Object.assign(new Error("EACCES: permission denied, open '/keys/k'"), {
      code: 'EACCES',
      errno: -13,
    });
    const user = process.geteuid?.();
    assert.equal(
      refusal(unopenableFile('the test key', '/keys/k', denied), '/keys/k', 'EACCES'),
      `the test key /keys/k cannot be opened: this process (user ${user}) may not read it, or may not enter a folder ` +
        `above it (EACCES); make it readable by user ${user}, and every folder above it searchable (x) by that user`,
    );
    const odd = Object.assign(new Error("ENXIO: no such device or address, open '/keys/k'"), {
      code: 'ENXIO',
      errno: -6,
    });
    assert.match(
      refusal(unopenableFile('the test key', '/keys/k', odd), '/keys/k', 'ENXIO'),
      /^the test key \/keys\/k cannot be opened: no such device or address \(ENXIO\); check the path and its permissions$/,
    );
    const notSystem = new TypeError('not a system error');
    assert.equal(unopenableFile('the test key', '/keys/k', notSystem), notSystem);
  });
});
