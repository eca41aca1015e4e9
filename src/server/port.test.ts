// A port in use: `kubevisa server` says so before anything else starts, naming the process that holds it. The
// holder is a real second process, and the server is the real CLI.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { assertPortFree, portHolder, PortUnavailable } from './port.ts';

const KUBEVISA = fileURLToPath(new URL('../../bin/kubevisa', import.meta.url));

let holder: ChildProcess;
let port: number;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-port-'));
  // Another process holds a port, as a first kubevisa server (or anything else) would.
  holder = spawn(
    process.execPath,
    [
      '-e',
      "require('node:net').createServer().listen(0, '127.0.0.1', function () { console.log(this.address().port) })",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
  port = Number(line.toString().trim());
  assert.ok(port > 0, `the holder listens: ${line.toString()}`);
});

after(async () => {
  holder.kill();
  await rm(dir, { recursive: true, force: true });
});

describe('a port in use', () => {
  test('is found with the process that holds it', async () => {
    const found = await portHolder(port);
    assert.equal(found?.pid, holder.pid);
    assert.match(found?.command ?? '', /^node -e require\('node:net'\)/);
    await assert.rejects(assertPortFree('127.0.0.1', port), (error: unknown) => {
      assert.ok(error instanceof PortUnavailable);
      assert.equal(error.code, 'ERR_PORT_IN_USE');
      assert.equal(
        error.message.startsWith(`port ${port} is in use (by PID ${holder.pid}, node -e `),
        true,
        error.message,
      );
      assert.equal(error.details?.pid, holder.pid);
      return true;
    });
  });

  test('a free port passes, and is free again afterwards', async () => {
    const probe = spawn(
      process.execPath,
      [
        '-e',
        "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [line] = (await once(probe.stdout!, 'data')) as [Buffer];
    await once(probe, 'exit');
    const free = Number(line.toString().trim());
    await assertPortFree('127.0.0.1', free);
    await assertPortFree('127.0.0.1', free);
    assert.equal(await portHolder(free), undefined);
  });

  test('kubevisa server reports it before it connects to the IdP, opens the store or reconciles', async () => {
    const dataDir = join(dir, 'data');
    const config = join(dir, 'kubevisa.yaml');
    // An IdP that does not answer: the server must never get as far as asking it.
    await writeFile(
      config,
      JSON.stringify({
        listen: { host: '127.0.0.1', port },
        dataDir,
        oidc: { issuer: 'http://127.0.0.1:9/idp', clientId: 'kubevisa', allowInsecureHttp: true },
        clusters: [],
      }),
    );
    const server = spawn(KUBEVISA, ['server', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(server, 'exit')) as [number];
    assert.notEqual(code, 0);
    assert.match(stderr, new RegExp(`port ${port} is in use \\(by PID ${holder.pid}, node -e `));
    assert.match(stderr, /ERR_PORT_IN_USE/);
    assert.doesNotMatch(stderr, /connecting to the identity provider/);
    assert.equal(existsSync(dataDir), false, 'the data folder (and so the store) was never made');
  });
});
