import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';

import { InvalidInput } from '../domain/errors.ts';
import {
  ensureKeyFolder,
  folderAboveAdvice,
  isFolderAboveKeysMode,
  isKeyFolderMode,
  isMountPoint,
  isPrivateKeyFileMode,
  keyFolderAdvice,
  MAX_KEY_FILE_BYTES,
  privateKeyFileAdvice,
  processGroups,
  readPrivateKeyFile,
  readPrivateKeyFileIfPresent,
  unopenableFile,
  writePrivateKeyOnce,
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

describe('the folders on the way to a key file', { skip: process.platform === 'win32' && 'POSIX modes only' }, () => {
  const key = { name: 'the test key', ifExposed: 'replace it' };
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubevisa-key-way-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a key in a folder others may write, and one a symbolic link leads through such a folder', async () => {
    const open = join(dir, 'open');
    await mkdir(open);
    await writeFile(join(open, 'key.pem'), 'KEY', { mode: 0o600 });
    await chmod(open, 0o777);
    await assert.rejects(readPrivateKeyFile(join(open, 'key.pem'), key), {
      code: 'ERR_INVALID_INPUT',
      message: new RegExp(`^the test key ${join(open, 'key.pem')} lies inside ${open}, which can be written by`),
    });
    await symlink(join(open, 'key.pem'), join(dir, 'link.pem'));
    await assert.rejects(readPrivateKeyFile(join(dir, 'link.pem'), key), { message: /lies inside .*open, which/ });
    // Not there yet (a key made on first start): still refused, not taken as absent.
    await assert.rejects(readPrivateKeyFileIfPresent(join(open, 'later.pem'), key), { message: /lies inside/ });
    await chmod(open, 0o755);
    assert.equal(await readPrivateKeyFile(join(dir, 'link.pem'), key), 'KEY');
    assert.equal(await readPrivateKeyFileIfPresent(join(open, 'later.pem'), key), undefined);
  });
});

describe('a key path that leads to something larger than any key', () => {
  const key = { name: 'the test key', ifExposed: 'replace it' };
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubevisa-key-size-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is refused by name before it is read whole (a 600 MiB file failed with a bare "Invalid string length")', async () => {
    const big = join(dir, 'big.pem');
    await writeFile(big, '', { mode: 0o600 });
    await truncate(big, 600 * 1024 * 1024); // sparse: no disk used
    await assert.rejects(readPrivateKeyFile(big, key), {
      code: 'ERR_INVALID_INPUT',
      message:
        `the test key ${big} holds more than ${MAX_KEY_FILE_BYTES} bytes, far more than any private key: name the key ` +
        'file itself',
    });
    const justOver = join(dir, 'just-over.pem');
    await writeFile(justOver, 'x'.repeat(MAX_KEY_FILE_BYTES + 1), { mode: 0o600 });
    await assert.rejects(readPrivateKeyFile(justOver, key), { message: /holds more than 65536 bytes/ });
  });

  it('reads a key up to the limit whole, in several reads when it comes in pieces', async () => {
    const atLimit = join(dir, 'at-limit.pem');
    await writeFile(atLimit, 'k'.repeat(MAX_KEY_FILE_BYTES), { mode: 0o600 });
    assert.equal((await readPrivateKeyFile(atLimit, key)).length, MAX_KEY_FILE_BYTES);
    if (process.platform === 'linux') {
      // /proc files say size 0 and still hold bytes: not cut short by a size that lies.
      const environ = await readPrivateKeyFile('/proc/self/environ', key);
      assert.ok(environ.length > 0);
    }
  });
});

describe('which folders may hold private keys', () => {
  const folder = (mode: number) => 0o40000 | mode;

  it('accepts a folder only its owner may write, owned by the process or by root, whatever its group', () => {
    for (const uid of [0, 65532]) {
      for (const mode of [0o700, 0o750, 0o755, 0o2750]) {
        assert.equal(isKeyFolderMode({ mode: folder(mode), uid, gid: 4 }, GROUPS, 65532), true, mode.toString(8));
      }
    }
  });

  it("refuses a folder the process's own user lets group or others write, sticky or setgid or not", () => {
    for (const mode of [0o770, 0o775, 0o777, 0o757, 0o1777, 0o2770, 0o3777]) {
      assert.equal(
        isKeyFolderMode({ mode: folder(mode), uid: 65532, gid: 65532 }, GROUPS, 65532),
        false,
        mode.toString(8),
      );
    }
    assert.equal(
      keyFolderAdvice('/var/lib/kubevisa', { mode: folder(0o775), uid: 65532, gid: 65532 }, 65532),
      '/var/lib/kubevisa can be written by group 65532 (owner 65532, group 65532, mode 775), who could swap a key in ' +
        'it for another: run chmod 700 on it',
    );
  });

  it('refuses a folder that belongs to another user, even one only its owner may write', () => {
    assert.equal(isKeyFolderMode({ mode: folder(0o700), uid: 1000, gid: 1000 }, GROUPS, 65532), false);
    assert.equal(isKeyFolderMode({ mode: folder(0o700), uid: 1000, gid: 1000 }, GROUPS, 0), false);
    assert.equal(
      keyFolderAdvice('/data', { mode: folder(0o700), uid: 1000, gid: 1000 }, 0),
      '/data belongs to user 1000 (owner 1000, group 1000, mode 700), who could replace the keys in it: run chown 0 on ' +
        'it (or chown root)',
    );
  });

  it("accepts a root-owned folder others may write when it is setgid in the process's group (the kubelet's emptyDir with an fsGroup is root:<fsGroup> 2777)", () => {
    for (const mode of [0o2775, 0o2770]) {
      assert.equal(isKeyFolderMode({ mode: folder(mode), uid: 0, gid: 65532 }, GROUPS, 65532), true, mode.toString(8));
      assert.equal(isKeyFolderMode({ mode: folder(mode), uid: 0, gid: 1000 }, GROUPS, 0), true, mode.toString(8));
    }
    // Others may write it too: only at the root of a volume (the emptyDir), not a folder on a host.
    for (const mode of [0o2777, 0o3777, 0o2757]) {
      const emptyDir = { mode: folder(mode), uid: 0, gid: 65532, volumeRoot: true };
      assert.equal(isKeyFolderMode(emptyDir, GROUPS, 65532), true, mode.toString(8));
      assert.equal(isKeyFolderMode({ ...emptyDir, gid: 1000 }, GROUPS, 0), true, mode.toString(8));
    }
  });

  it("refuses a root-owned setgid folder in the process's group that others may write, unless it is a volume's root", () => {
    // What an attacker did: in /srv/exp/sg (root:kv, 2777) a user outside group kv moved kubevisa.db aside, read it
    // (0644), and put a copy of their own (0666) in its place; kubevisa, as kv, started on it.
    for (const mode of [0o2777, 0o3777, 0o2757]) {
      const hostFolder = { mode: folder(mode), uid: 0, gid: 65532 };
      assert.equal(isKeyFolderMode(hostFolder, GROUPS, 65532), false, mode.toString(8));
      assert.equal(isKeyFolderMode({ ...hostFolder, volumeRoot: false }, GROUPS, 0), false, mode.toString(8));
    }
    assert.equal(
      keyFolderAdvice('/srv/kv', { mode: folder(0o2777), uid: 0, gid: 65532 }, 65532, GROUPS),
      '/srv/kv can be written by group 65532 and others (owner 0, group 65532, mode 2777), who could swap a key in it ' +
        "for another: run chmod o-w on it (others may write such a folder only at the root of a volume, as the kubelet's " +
        'emptyDir, which this is not)',
    );
  });

  it('accepts a folder on a read-only mount whatever its mode (a Secret volume without an fsGroup is root 1777)', () => {
    const secretVolume = { mode: folder(0o1777), uid: 0, gid: 0 };
    assert.equal(isKeyFolderMode(secretVolume, GROUPS, 65532), false);
    assert.equal(isKeyFolderMode({ ...secretVolume, readOnly: true }, GROUPS, 65532), true);
    assert.equal(isKeyFolderMode({ mode: folder(0o777), uid: 1000, gid: 0, readOnly: true }, GROUPS, 65532), false);
  });

  it("tells a volume's root from the mount table, as the kernel writes it (octal escapes)", async () => {
    const table = join(tmpdir(), `kubevisa-mountinfo-${process.pid}`);
    // Lines from /proc/self/mountinfo, the second with a space in its mount point.
    await writeFile(
      table,
      '45 27 0:40 / /tmp/exp/mnt rw,relatime - tmpfs tmpfs rw,mode=2777\n' +
        '46 27 0:41 / /var/lib/kube\\040visa rw,relatime - tmpfs tmpfs rw\n',
    );
    try {
      assert.equal(await isMountPoint('/tmp/exp/mnt', table), true);
      assert.equal(await isMountPoint('/var/lib/kube visa', table), true);
      assert.equal(await isMountPoint('/tmp/exp', table), false);
      assert.equal(await isMountPoint('/tmp/exp/mnt', `${table}-none`), false, 'no mount table: nothing known');
    } finally {
      await rm(table);
    }
  });

  it('refuses a root-owned folder others may write that is not setgid in one of its groups, sticky (as /tmp) or not', () => {
    // In a sticky folder anyone may still add the names kubevisa has yet to make: its database, its journal, a key.
    for (const mode of [0o777, 0o775, 0o770, 0o757, 0o1777, 0o1770, 0o1757]) {
      assert.equal(isKeyFolderMode({ mode: folder(mode), uid: 0, gid: 65532 }, GROUPS, 65532), false, mode.toString(8));
      assert.equal(isKeyFolderMode({ mode: folder(mode), uid: 0, gid: 4 }, GROUPS, 65532), false, mode.toString(8));
    }
    assert.equal(isKeyFolderMode({ mode: folder(0o3777), uid: 0, gid: 4 }, GROUPS, 65532), false);
    assert.equal(isKeyFolderMode({ mode: folder(0o2775), uid: 0, gid: 4 }, GROUPS, 65532), false);
    assert.equal(
      keyFolderAdvice('/data', { mode: folder(0o2777), uid: 0, gid: 4 }, 65532),
      '/data can be written by group 4 and others (owner 0, group 4, mode 2777), who could swap a key in it for ' +
        'another: run chown 65532 on it and chmod 700 (a root-owned folder others may write is accepted only setgid ' +
        "with a group kubevisa runs in, as the kubelet makes a pod's volume; the sticky bit is not enough: anyone could " +
        'still make the files kubevisa has yet to make)',
    );
    assert.match(
      keyFolderAdvice('/data', { mode: folder(0o757), uid: 0, gid: 0 }, 0),
      /^\/data can be written by others \(owner 0, group 0, mode 757\), .*: run chmod 700 on it$/,
    );
  });
});

describe('which folders may hold a key folder (the folders above it)', () => {
  const folder = (mode: number) => 0o40000 | mode;

  it('accepts what a key folder may be, and a root-owned sticky folder (as /tmp), where others cannot move its entries', () => {
    for (const mode of [0o755, 0o700, 0o1777, 0o1757]) {
      assert.equal(
        isFolderAboveKeysMode({ mode: folder(mode), uid: 0, gid: 0 }, GROUPS, 65532),
        true,
        mode.toString(8),
      );
    }
    assert.equal(
      isFolderAboveKeysMode({ mode: folder(0o2777), uid: 0, gid: 65532, volumeRoot: true }, GROUPS, 65532),
      true,
    );
    assert.equal(isFolderAboveKeysMode({ mode: folder(0o755), uid: 65532, gid: 65532 }, GROUPS, 65532), true);
  });

  it("refuses one others may write without the sticky bit, one sticky but not root's, and one of another user", () => {
    for (const mode of [0o777, 0o775, 0o757]) {
      assert.equal(
        isFolderAboveKeysMode({ mode: folder(mode), uid: 0, gid: 0 }, GROUPS, 65532),
        false,
        mode.toString(8),
      );
    }
    assert.equal(isFolderAboveKeysMode({ mode: folder(0o1777), uid: 65532, gid: 65532 }, GROUPS, 65532), false);
    assert.equal(isFolderAboveKeysMode({ mode: folder(0o755), uid: 1000, gid: 1000 }, GROUPS, 65532), false);
    assert.equal(
      folderAboveAdvice({ mode: folder(0o777), uid: 0, gid: 0 }, 65532),
      'can be written by group 0 and others (owner 0, group 0, mode 777), who could move what is in it and put ' +
        'something of their own in its place: run chmod go-w on it (or, for a root-owned folder others must keep ' +
        'writing, ' +
        'chmod +t as /tmp), or name a folder elsewhere',
    );
    assert.equal(
      folderAboveAdvice({ mode: folder(0o755), uid: 1000, gid: 1000 }, 65532),
      'belongs to user 1000 (owner 1000, group 1000, mode 755), who could move what is in it and put something of ' +
        'their own in its place: run chown root on it (or chown 65532), or name a folder elsewhere',
    );
  });
});

describe(
  'the folder kubevisa keeps keys in, on disk',
  { skip: process.platform === 'win32' && 'POSIX modes only' },
  () => {
    let dir = '';
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kubevisa-key-folder-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('is made owner-only when missing, and used as it is when only its owner may write it', async () => {
      const made = join(dir, 'made', 'data');
      await ensureKeyFolder(made);
      assert.equal((await stat(made)).mode & 0o7777, 0o700);
      await chmod(made, 0o755);
      await ensureKeyFolder(made);
    });

    it('is refused, by name with its owner and mode and what to run, when group or others may write it', async () => {
      const shared = join(dir, 'shared');
      await mkdir(shared);
      await chmod(shared, 0o770);
      const owner = process.geteuid!();
      const gid = (await stat(shared)).gid;
      await assert.rejects(ensureKeyFolder(shared), (error: unknown) => {
        assert.ok(error instanceof InvalidInput);
        assert.equal(error.code, 'ERR_INVALID_INPUT');
        assert.equal(
          error.message,
          `the data folder ${shared} can be written by group ${gid} (owner ${owner}, group ${gid}, mode 770), ` +
            'who could swap a key in it for another: run chmod 700 on it',
        );
        assert.deepEqual(error.details, { path: shared, mode: '770', uid: owner, gid });
        return true;
      });
    });

    it('is refused, naming the folder above it, when others may write a folder above it (they could swap it)', async () => {
      // What an attacker did: kubevisa's data folder was /srv/exp/ww/data (its own, 0700), in /srv/exp/ww (root, 777).
      // Another user swapped data, thousands of times a second (renameat2 RENAME_EXCHANGE), with a symbolic link to a
      // folder of theirs: kubevisa checked its own folder, then made its lock file and opened the store in theirs.
      const open = join(dir, 'open');
      const data = join(open, 'data');
      await mkdir(data, { recursive: true, mode: 0o700 });
      await chmod(open, 0o777);
      const { uid, gid } = await stat(open);
      await assert.rejects(ensureKeyFolder(data), (error: unknown) => {
        assert.ok(error instanceof InvalidInput);
        assert.equal(
          error.message,
          `the data folder ${data} lies inside ${open}, which can be written by group ${gid} and others (owner ` +
            `${uid}, group ${gid}, mode 777), who could move what is in it and put something of their own in its place: run ` +
            'chmod go-w on it (or, for a root-owned folder others must keep writing, chmod +t as /tmp), or name a ' +
            'folder elsewhere',
        );
        assert.deepEqual(error.details, { path: data, folder: open, mode: '777', uid, gid });
        return true;
      });
      // Also when the way there goes through a symbolic link to that folder, or `..` out of one.
      await symlink(open, join(dir, 'to-open'));
      await assert.rejects(ensureKeyFolder(join(dir, 'to-open', 'data')), {
        message: /lies inside .*open, which can be/,
      });
      await mkdir(join(open, 'sub'), { mode: 0o700 });
      await chmod(open, 0o755);
      await mkdir(join(dir, 'safe', 'data'), { recursive: true, mode: 0o700 });
      await symlink(join(open, 'sub'), join(dir, 'safe', 'link'));
      await chmod(open, 0o777);
      // safe/link/.. is open (where the link leads, then up), not safe: safe/data is fine, safe/link/../data is not.
      await ensureKeyFolder(join(dir, 'safe', 'data'));
      await assert.rejects(ensureKeyFolder(`${join(dir, 'safe', 'link')}/../data`), {
        message: /lies inside .*open, which can be/,
      });
      await chmod(open, 0o755);
      await ensureKeyFolder(data);
    });

    it(
      'is refused when reached through a symbolic link another user made in a root-owned sticky folder',
      { skip: process.geteuid?.() !== 0 && 'only root can give a symbolic link away' },
      async () => {
        // Where fs.protected_symlinks is 0 the kernel follows it, and its maker could point it at any folder.
        const shared = join(dir, 'shared-sticky');
        await mkdir(shared);
        await chmod(shared, 0o1777);
        const target = join(dir, 'link-target');
        await mkdir(target, { mode: 0o700 });
        const link = join(shared, 'data');
        await symlink(target, link);
        await ensureKeyFolder(link); // root's own link: fine
        await lchown(link, 65534, 65534);
        await assert.rejects(ensureKeyFolder(link), {
          code: 'ERR_INVALID_INPUT',
          message: new RegExp(
            `^the data folder ${link} is reached through the symbolic link ${link}, which belongs to user 65534 in a ` +
              `folder others may write \\(${shared}, mode 1777\\)`,
          ),
        });
      },
    );

    it('is refused when a file is in its place', async () => {
      const file = join(dir, 'a-file');
      await writeFile(file, '');
      await assert.rejects(ensureKeyFolder(file), {
        code: 'ERR_INVALID_INPUT',
        message: `the data folder ${file} is not a folder: move what is there, or name another folder`,
      });
    });

    it(
      "is refused when another user owns it; a root-owned one is accepted when setgid in the process's group, as the kubelet makes it",
      { skip: process.geteuid?.() !== 0 && 'only root can give a folder away' },
      async () => {
        const theirs = join(dir, 'theirs');
        await mkdir(theirs, { mode: 0o700 });
        await chown(theirs, 65534, 65534);
        await assert.rejects(ensureKeyFolder(theirs), { message: /belongs to user 65534 .*run chown 0 on it/ });
        const volume = join(dir, 'volume');
        await mkdir(volume);
        await chown(volume, 0, process.getgid!());
        await chmod(volume, 0o2770);
        await ensureKeyFolder(volume);
        // Others may write it too, and it is a plain folder, not a volume's root: any local user could swap a key.
        await chmod(volume, 0o2777);
        await assert.rejects(ensureKeyFolder(volume), {
          message: /can be written by group \d+ and others .*mode 2777.*: run chmod o-w on it/,
        });
        await chown(volume, 0, 65534);
        await chmod(volume, 0o2770); // chown clears setgid
        await assert.rejects(ensureKeyFolder(volume), { message: /can be written by group 65534 \(/ });
      },
    );

    it(
      "accepts a root-owned 2777 folder in the process's group at the root of a volume (the emptyDir), and any folder on a read-only mount",
      { skip: process.geteuid?.() !== 0 && 'only root can mount' },
      async (t) => {
        const volume = join(dir, 'mounted');
        await mkdir(volume);
        const mount = (options: string) =>
          execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', volume], { stdio: 'pipe' });
        try {
          mount(`mode=2777,gid=${process.getgid!()}`);
        } catch (error) {
          t.skip(`cannot mount a tmpfs here: ${(error as Error).message}`);
          return;
        }
        try {
          assert.equal((await stat(volume)).mode & 0o7777, 0o2777);
          await ensureKeyFolder(volume);
        } finally {
          execFileSync('umount', [volume], { stdio: 'pipe' });
        }
        mount('ro,mode=1777'); // a Secret volume without an fsGroup: read-only, root 1777
        try {
          assert.equal((await stat(volume)).mode & 0o7777, 0o1777);
          await ensureKeyFolder(volume);
        } finally {
          execFileSync('umount', [volume], { stdio: 'pipe' });
        }
      },
    );

    it(
      'is refused when root-owned and sticky (as /tmp), where another user could make the database before kubevisa does',
      { skip: process.geteuid?.() !== 0 && 'only root can make a folder root-owned and sticky for another user' },
      async () => {
        // What an attacker did: in /srv/kv (root, 1777) another user made kubevisa.db, mode 666, before the first
        // start; kubevisa (as 2000) accepted the folder and used that database, which its maker could still write.
        const sticky = join(dir, 'sticky');
        await mkdir(sticky);
        await chmod(sticky, 0o1777);
        await writeFile(join(sticky, 'kubevisa.db'), '', { mode: 0o666 });
        await chown(join(sticky, 'kubevisa.db'), 65534, 65534);
        for (const owner of [0, 65532]) {
          assert.equal(isKeyFolderMode(await stat(sticky), GROUPS, owner), false);
        }
        await assert.rejects(ensureKeyFolder(sticky), {
          code: 'ERR_INVALID_INPUT',
          message: new RegExp(`^the data folder ${sticky} can be written by group 0 and others .*mode 1777\\)`),
        });
      },
    );
  },
);

describe('writing a key for the first time', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubevisa-key-write-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    "syncs the key's content before it has its name, and its folder once it has it",
    { skip: process.platform === 'win32' && 'folders cannot be synced there' },
    async () => {
      const folder = await mkdtemp(join(dir, 'durable-'));
      const path = join(folder, 'key.pem');
      // Every fsync this write makes, seen from the descriptor synced: a file or the folder, and what the folder held.
      const probe = await open(join(folder, 'probe'), 'w');
      const fileHandle = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
      await probe.close();
      await rm(join(folder, 'probe'));
      const realSync = fileHandle.sync;
      const syncs: string[] = [];
      const spy = mock.method(
        fileHandle,
        'sync',
        async function (this: { stat(): Promise<{ isDirectory(): boolean }> }) {
          const what = (await this.stat()).isDirectory() ? 'folder' : 'file';
          syncs.push(`${what} [${readdirSync(folder).map((name) => (name.endsWith('.tmp') ? 'temporary' : name))}]`);
          return realSync.call(this);
        },
      );
      try {
        assert.equal(await writePrivateKeyOnce(path, 'KEY'), 'created');
      } finally {
        spy.mock.restore();
      }
      assert.deepEqual(syncs, ['file [temporary]', 'folder [key.pem]']);
      assert.equal(await readFile(path, 'utf8'), 'KEY');
    },
  );

  it('gives one key to two processes writing at once: one creates it, the other is told it exists', async () => {
    for (let round = 0; round < 20; round += 1) {
      const folder = await mkdtemp(join(dir, 'race-'));
      const path = join(folder, 'key.pem');
      const outcomes = await Promise.all([writePrivateKeyOnce(path, 'FIRST'), writePrivateKeyOnce(path, 'SECOND')]);
      assert.deepEqual([...outcomes].sort(), ['created', 'exists']);
      assert.equal(await readFile(path, 'utf8'), outcomes[0] === 'created' ? 'FIRST' : 'SECOND');
      assert.deepEqual(await readdir(folder), ['key.pem']);
    }
  });
});
