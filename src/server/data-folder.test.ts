/** The server refuses a data folder someone else could write, before it makes anything in it (pki/key-files.ts). */
import { strict as assert } from 'node:assert';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { parseServerConfig } from './config.ts';
import { startServer } from './main.ts';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-data-folder-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test(
  'refuses to start on a data folder group or others may write, naming it, its owner and mode and what to run',
  { skip: process.platform === 'win32' && 'POSIX modes only' },
  async () => {
    const dataDir = join(dir, 'data');
    await mkdir(dataDir);
    await chmod(dataDir, 0o777);
    const config = parseServerConfig(
      {
        dataDir,
        listen: { host: '127.0.0.1', port: 0 },
        oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' },
      },
      dir,
    );
    const { uid, gid } = await stat(dataDir);
    await assert.rejects(startServer(config), {
      code: 'ERR_INVALID_INPUT',
      message: new RegExp(
        `^the data folder \\(dataDir\\) ${dataDir} can be written by group ${gid} and others \\(owner ${uid}, group ${gid}, ` +
          'mode 777\\), who could swap a key in it for another: run (chmod 700|chown \\d+ on it and chmod 700)',
      ),
    });
    assert.deepEqual(await readdir(dataDir), [], 'nothing was made in it (no database, no lock, no key)');
  },
);

test(
  'refuses to start on a data folder inside a folder others may write (they could swap it), and makes nothing there',
  { skip: process.platform === 'win32' && 'POSIX modes only' },
  async () => {
    const open = join(dir, 'open');
    const dataDir = join(open, 'data');
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await chmod(open, 0o777);
    const config = parseServerConfig(
      {
        dataDir,
        listen: { host: '127.0.0.1', port: 0 },
        oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' },
      },
      dir,
    );
    await assert.rejects(startServer(config), {
      code: 'ERR_INVALID_INPUT',
      message: new RegExp(
        `^the data folder \\(dataDir\\) ${dataDir} lies inside ${open}, which can be written by .*others`,
      ),
    });
    assert.deepEqual(await readdir(dataDir), [], 'nothing was made in it (no database, no lock, no key)');
  },
);
