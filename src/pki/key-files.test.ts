import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import { isPrivateKeyFileMode } from './key-files.ts';

describe('which private key file modes are accepted', () => {
  it('accepts owner-only modes, whoever owns the file', () => {
    for (const uid of [0, 1000, 65532]) {
      for (const mode of [0o100600, 0o100400, 0o100700]) assert.equal(isPrivateKeyFileMode({ mode, uid }), true);
    }
  });

  it('accepts group read on a root-owned file: a Secret volume with an fsGroup gives root:<fsGroup> 0440', () => {
    assert.equal(isPrivateKeyFileMode({ mode: 0o100440, uid: 0 }), true);
    assert.equal(isPrivateKeyFileMode({ mode: 0o100640, uid: 0 }), true);
  });

  it('refuses group read on a file not owned by root, and anything more for root', () => {
    assert.equal(isPrivateKeyFileMode({ mode: 0o100440, uid: 65532 }), false);
    assert.equal(isPrivateKeyFileMode({ mode: 0o100640, uid: 1000 }), false);
    for (const mode of [0o100644, 0o100444, 0o100660, 0o100604, 0o100650, 0o100601]) {
      assert.equal(isPrivateKeyFileMode({ mode, uid: 0 }), false, mode.toString(8));
    }
  });
});
