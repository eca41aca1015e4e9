// The store seam as a running server sees it, with real server processes (`bin/kubevisa server`) and a real OIDC
// provider, no cluster needed:
// - one kubevisa server per SQLite data folder: a second server on the same folder refuses at once, naming the
//   first one's PID, before it touches the identity provider (its issuer here is a tripwire that counts
//   connections); after the first is killed with SIGKILL, the next server takes the stale lock over, says so, and
//   starts;
// - the engine's integrity check at start: an append-only trigger dropped while no server ran is recreated and
//   the audit trail records it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDevIdp, type DevIdp } from '../src/dev/idp.ts';
import { openStore } from '../src/store/open.ts';

const cliPath = fileURLToPath(new URL('../bin/kubevisa', import.meta.url));
const LOCK_FILE = 'kubevisa.lock';

let dir: string;
let idp: DevIdp;
const children: ChildProcess[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-store-lock-'));
  idp = await startDevIdp({
    accounts: [],
    clients: [{ clientId: 'kubevisa', clientSecret: 'lock-test-secret', redirectUris: ['http://127.0.0.1/cb'] }],
  });
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await idp?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, dataDir: string, issuer: string): Promise<string> {
  const file = join(dir, name);
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    oidc: { issuer, clientId: 'kubevisa', clientSecret: 'lock-test-secret', allowInsecureHttp: true },
    clusters: [],
  };
  await writeFile(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startServer(configFile: string): Started {
  const child = spawn(cliPath, ['server', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, output: () => output, exited };
}

/** Bounded: the server prints its ready line, or exits (then the test fails with what it said). */
async function ready(server: Started): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (server.output().includes('kubevisa server ready')) return;
    if (server.child.exitCode !== null) assert.fail(`the server exited: ${server.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`the server was not ready within 60 s: ${server.output()}`);
}

/** Bounded: how the process ended, or a failure if it still runs after `ms`. */
async function exitWithin(server: Started, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms: ${server.output()}`)), ms);
  });
  try {
    return await Promise.race([server.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test('a second server on the same data folder refuses at once, naming the first one, before contacting the IdP', async () => {
  const dataDir = join(dir, 'data');
  const first = startServer(await writeConfig('first.json', dataDir, idp.issuer));
  await ready(first);
  assert.match(first.output(), new RegExp(`opening the store: sqlite ${join(dataDir, 'kubevisa.db')}`));

  // The second server's IdP is a tripwire: any connection to it means the server went on past the lock.
  let connections = 0;
  const tripwire = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  tripwire.listen(0, '127.0.0.1');
  await once(tripwire, 'listening');
  const tripwireUrl = `http://127.0.0.1:${(tripwire.address() as AddressInfo).port}`;
  try {
    const second = startServer(await writeConfig('second.json', dataDir, tripwireUrl));
    const code = await exitWithin(second, 30_000);
    assert.notEqual(code, 0, 'the second server must fail');
    assert.match(second.output(), new RegExp(`in use by another kubevisa server \\(PID ${first.child.pid}\\)`));
    assert.match(second.output(), new RegExp(`Stop PID ${first.child.pid} first`));
    assert.doesNotMatch(second.output(), /kubevisa server ready/);
    assert.equal(connections, 0, 'the second server contacted its identity provider');
  } finally {
    tripwire.close();
  }
  assert.equal(first.child.exitCode, null, 'the first server still runs');

  // The first one dies without releasing anything; the next server takes the stale lock over and says so.
  first.child.kill('SIGKILL');
  await first.exited;
  await stat(join(dataDir, LOCK_FILE));
  const third = startServer(join(dir, 'first.json'));
  await ready(third);
  assert.match(
    third.output(),
    new RegExp(`took over the lock of the data folder ${dataDir} from PID ${first.child.pid}, which no longer runs`),
  );

  // A clean stop releases the folder.
  third.child.kill('SIGTERM');
  assert.equal(await exitWithin(third, 30_000), 0, third.output());
  await assert.rejects(stat(join(dataDir, LOCK_FILE)), /ENOENT/);
});

test('an append-only trigger dropped while no server ran is recreated at start and recorded in the trail', async () => {
  const dataDir = join(dir, 'tampered');
  const configFile = await writeConfig('tampered.json', dataDir, idp.issuer);
  const first = startServer(configFile);
  await ready(first);
  first.child.kill('SIGTERM');
  assert.equal(await exitWithin(first, 30_000), 0, first.output());

  // Someone with the file (not kubevisa) drops a guard of the trail.
  const raw = new DatabaseSync(join(dataDir, 'kubevisa.db'));
  raw.exec('DROP TRIGGER audit_events_no_delete');
  raw.close();

  const second = startServer(configFile);
  await ready(second);
  second.child.kill('SIGTERM');
  assert.equal(await exitWithin(second, 30_000), 0, second.output());
  assert.match(second.output(), /append-only triggers of the audit trail were removed outside kubevisa/);

  const store = await openStore({ engine: 'sqlite' }, { dataDir });
  try {
    const recorded = await store.listAudit({ action: 'audit.guards-restored' });
    assert.equal(recorded.length, 1, JSON.stringify(recorded));
    assert.deepEqual(recorded[0]!.details.triggers, ['audit_events_no_delete']);
    assert.equal(recorded[0]!.outcome, 'error');
    assert.deepEqual(await store.checkIntegrity(), [], 'the trigger is back');
  } finally {
    await store.close();
  }
});
