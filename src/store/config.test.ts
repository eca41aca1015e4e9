import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseServerConfig } from '../server/config.ts';
import { describeStore, parseStoreConfig, readStorePassword } from './config.ts';
import { openStore } from './open.ts';
import { StoreLocked } from './sqlite-lock.ts';

const at = (path: string) => join('/etc/kubevisa', path);
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-store-config-'));
  dirs.push(dir);
  return dir;
}

/** An InvalidInput whose message matches `pattern` and (when given) does not contain `secret`. */
function invalid(pattern: RegExp, secret?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.equal((error as { code?: string }).code, 'ERR_INVALID_INPUT');
    assert.match((error as Error).message, pattern);
    if (secret !== undefined) assert.ok(!(error as Error).message.includes(secret), 'the message repeats the secret');
    return true;
  };
}

describe('the store section of the configuration', () => {
  test('absent means SQLite in the data folder; a relative path resolves against the config folder', () => {
    assert.deepEqual(parseStoreConfig(undefined, at), { engine: 'sqlite' });
    assert.deepEqual(parseStoreConfig({ engine: 'sqlite', path: 'state/kv.db' }, at), {
      engine: 'sqlite',
      path: '/etc/kubevisa/state/kv.db',
    });
  });

  test('postgres stays postgres, with where the password comes from but never the password', () => {
    assert.deepEqual(
      parseStoreConfig({ engine: 'postgres', url: 'postgres://kubevisa@db:5432/kv', passwordFile: 'pg.pass' }, at),
      { engine: 'postgres', url: 'postgres://kubevisa@db:5432/kv', passwordFile: '/etc/kubevisa/pg.pass' },
    );
    assert.deepEqual(
      parseStoreConfig({ engine: 'postgres', url: 'postgresql://db/kv', passwordEnv: 'KV_DB_PASSWORD' }, at),
      { engine: 'postgres', url: 'postgresql://db/kv', passwordEnv: 'KV_DB_PASSWORD' },
    );
  });

  test('the server config no longer turns engine postgres into SQLite', () => {
    const config = parseServerConfig(
      {
        dataDir: '/var/lib/kubevisa',
        oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' },
        store: { engine: 'postgres', url: 'postgres://kubevisa@db/kv', passwordEnv: 'PGPASSWORD' },
      },
      '/etc/kubevisa',
    );
    assert.deepEqual(config.store, { engine: 'postgres', url: 'postgres://kubevisa@db/kv', passwordEnv: 'PGPASSWORD' });
  });

  test('refuses an unknown engine, naming the engines it knows', () => {
    assert.throws(
      () => parseStoreConfig({ engine: 'mysql' }, at),
      invalid(/"mysql" is not an engine.*sqlite, postgres/),
    );
    assert.throws(() => parseStoreConfig({ path: 'x.db' }, at), invalid(/'store.engine' is required/));
    assert.throws(() => parseStoreConfig('sqlite', at), invalid(/'store' must be an object/));
  });

  test("refuses a field the engine does not take, naming the engine's fields", () => {
    assert.throws(
      () => parseStoreConfig({ engine: 'sqlite', url: 'postgres://db/kv' }, at),
      invalid(/'store.url' is not a field of the sqlite engine; its fields: engine, path/),
    );
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'postgres://db/kv', path: 'x.db' }, at),
      invalid(/'store.path' is not a field of the postgres engine/),
    );
  });

  test('postgres needs a postgres URL without a password, and one password source at most', () => {
    assert.throws(() => parseStoreConfig({ engine: 'postgres' }, at), invalid(/'store.url' is required/));
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'mysql://db/kv' }, at),
      invalid(/must start with postgres:\/\//),
    );
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'postgres://kubevisa:s3cret-pw@db/kv' }, at),
      invalid(/must not contain the password/, 's3cret-pw'),
    );
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'postgres://db/kv?password=s3cret-pw' }, at),
      invalid(/must not contain the password/, 's3cret-pw'),
    );
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'postgres://db/kv', passwordFile: 'a', passwordEnv: 'B' }, at),
      invalid(/not both/),
    );
    assert.throws(
      () => parseStoreConfig({ engine: 'postgres', url: 'postgres://db/kv', passwordEnv: 's3cret pw!' }, at),
      invalid(/name of an environment variable/, 's3cret pw!'),
    );
  });

  test('describing the store shows where it is and where the password comes from, never the password', () => {
    assert.equal(describeStore({ engine: 'sqlite' }, '/d/kubevisa.db'), 'sqlite /d/kubevisa.db');
    assert.equal(
      describeStore({ engine: 'postgres', url: 'postgres://kv@db:5432/kv', passwordEnv: 'KV_PW' }, '/d/kubevisa.db'),
      'postgres postgres://kv@db:5432/kv, password from $KV_PW',
    );
  });

  test('the password is read from its file (one trailing newline dropped) or its variable', async () => {
    const dir = await freshDir();
    const file = join(dir, 'pg.pass');
    await writeFile(file, 'pa ss\n', { mode: 0o600 });
    const url = 'postgres://db/kv';
    assert.equal(await readStorePassword({ engine: 'postgres', url, passwordFile: file }, {}), 'pa ss');
    assert.equal(await readStorePassword({ engine: 'postgres', url, passwordEnv: 'KV_PW' }, { KV_PW: 'x' }), 'x');
    assert.equal(await readStorePassword({ engine: 'postgres', url }, {}), undefined);
    await assert.rejects(
      readStorePassword({ engine: 'postgres', url, passwordEnv: 'KV_PW' }, {}),
      invalid(/KV_PW named by 'store.passwordEnv' is not set/),
    );
    await assert.rejects(
      readStorePassword({ engine: 'postgres', url, passwordFile: join(dir, 'missing') }, {}),
      invalid(/cannot read the store password file .*ENOENT/),
    );
  });
});

describe('openStore', () => {
  test('opens SQLite in the data folder and holds the folder until closed', async () => {
    const dataDir = await freshDir();
    const store = await openStore({ engine: 'sqlite' }, { dataDir });
    try {
      await store.transaction((tx) => tx.putSetting('k', 1, 0));
      await assert.rejects(openStore({ engine: 'sqlite' }, { dataDir }), (error: unknown) => {
        assert.ok(error instanceof StoreLocked);
        assert.match(error.message, new RegExp(`in use by this same process.*PID ${process.pid}`));
        return true;
      });
    } finally {
      await store.close();
    }
    const again = await openStore({ engine: 'sqlite' }, { dataDir });
    assert.equal(await again.getSetting('k'), 1, 'the same database, in the data folder');
    await again.close();
  });

  test('opens engine postgres (an unreachable one fails closed), and refuses unknown engines and fields', async () => {
    const dataDir = await freshDir();
    await assert.rejects(
      openStore({ engine: 'postgres', url: 'postgres://kv@127.0.0.1:1/kv' }, { dataDir }),
      (error: Error & { code?: string }) => error.code === 'ERR_STORE_UNAVAILABLE',
    );
    await assert.rejects(
      openStore({ engine: 'oracle' } as never, { dataDir }),
      invalid(/"oracle" is not an engine kubevisa knows/),
    );
    await assert.rejects(
      openStore({ engine: 'sqlite', url: 'x' } as never, { dataDir }),
      invalid(/'store.url' is not a field of the sqlite engine/),
    );
  });
});
