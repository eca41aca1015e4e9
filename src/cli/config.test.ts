import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  checkClusterName,
  configDir,
  readConfig,
  readCredential,
  readSession,
  writeConfig,
  writeSession,
  type StoredSession,
} from './config.ts';
import { CAROL } from './testing/fake-api.ts';

let root: string;
let dir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kubevisa-config-test-'));
  dir = join(root, 'state');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const session: StoredSession = {
  server: 'https://kubevisa.example',
  sessionSecret: 'kvs_secret',
  sessionExpiresAt: '2026-03-02T22:00:00Z',
  person: CAROL,
};

describe('the state folder', () => {
  test('is $KUBEVISA_CONFIG_DIR, else $XDG_CONFIG_HOME/kubevisa, else ~/.config/kubevisa', () => {
    assert.equal(configDir({ KUBEVISA_CONFIG_DIR: '/a', XDG_CONFIG_HOME: '/b' }), '/a');
    assert.equal(configDir({ XDG_CONFIG_HOME: '/b' }), '/b/kubevisa');
    assert.match(configDir({}), /\/\.config\/kubevisa$/);
  });

  test('a missing config.json is an empty configuration, and what is written reads back', async () => {
    assert.deepEqual(await readConfig(dir), {});
    await writeConfig(dir, { server: 'https://kubevisa.example', caFile: '/etc/kubevisa/ca.pem' });
    assert.deepEqual(await readConfig(dir), { server: 'https://kubevisa.example', caFile: '/etc/kubevisa/ca.pem' });
  });
});

describe('the session file', () => {
  test('is written 0600 in a folder created 0700, with no temporary file left behind', async () => {
    await writeSession(dir, session);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, 'session.json'))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['session.json']);
    assert.deepEqual(await readSession(dir), session);
  });

  test('concurrent writers never leave a half-written file', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        writeSession(dir, { ...session, accessToken: `at-${i}`, accessTokenExpiresAt: '2026-03-02T10:10:00Z' }),
      ),
    );
    const read = await readSession(dir);
    assert.match(read?.accessToken ?? '', /^at-\d+$/);
    assert.deepEqual(await readdir(dir), ['session.json']);
  });

  test('is refused when group or others can read it, with the chmod that fixes it', async () => {
    await writeSession(dir, session);
    const file = join(dir, 'session.json');
    await chmod(file, 0o644);
    await assert.rejects(readSession(dir), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_INSECURE_FILE');
      assert.match(
        error.message,
        new RegExp(`its mode is 0644, so other users can read the secret in it\\. Fix it with 'chmod 600 ${file}'`),
      );
      return true;
    });
    await chmod(file, 0o600);
    assert.equal((await readSession(dir))?.sessionSecret, 'kvs_secret');
  });

  test('that is not JSON, or lacks the secret, is reported with what to do', async () => {
    await writeSession(dir, session);
    const file = join(dir, 'session.json');
    await writeFile(file, '{"server":', { mode: 0o600 });
    await assert.rejects(readSession(dir), {
      code: 'ERR_BAD_STATE_FILE',
      message: /is not valid JSON .* run 'kubevisa login' again/,
    });
    await writeFile(file, JSON.stringify({ server: 'https://x' }), { mode: 0o600 });
    await assert.rejects(readSession(dir), { code: 'ERR_BAD_STATE_FILE', message: /'sessionSecret' is missing/ });
    assert.equal(await readFile(file, 'utf8'), JSON.stringify({ server: 'https://x' }), 'reading never rewrites');
  });

  test('a missing session or credential file reads as undefined', async () => {
    assert.equal(await readSession(dir), undefined);
    assert.equal(await readCredential(dir, 'prod'), undefined);
  });
});

describe('cluster names', () => {
  test('accept what Kubernetes label values allow', () => {
    for (const name of ['prod', 'edge-7', 'eu.west_1', 'A1']) assert.equal(checkClusterName(name), name);
  });

  test('refuse anything that could name another file', () => {
    for (const name of ['../session', 'a/b', '.hidden', '', 'x'.repeat(64), 'prod/']) {
      assert.throws(() => checkClusterName(name), { code: 'ERR_USAGE' }, name);
    }
  });
});
