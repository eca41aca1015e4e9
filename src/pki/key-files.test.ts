import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import { isPrivateKeyFileMode, privateKeyFileAdvice, processGroups } from './key-files.ts';

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
