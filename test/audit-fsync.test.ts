// Each acknowledged audit write was fsynced before it was acknowledged. A SIGKILL test cannot show this (the page
// cache survives the process), and no loop device or dm-flakey can be relied on here, so the proof is in the
// order of system calls: an LD_PRELOAD shim (test/durability/fsync-log.c, compiled by this test with gcc) logs every
// write to the database's files and every fsync/fdatasync of them, and the store's process appends a line for each
// acknowledgement to the same O_APPEND file. Between two acknowledgements of one writer there must be a write
// to the database, and after the last such write an fsync of it, before the acknowledgement. The store is driven
// through its public API only (a transaction with an audit event, and the audit appender the gateway uses).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

let dir: string;
let shim: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-fsync-'));
  shim = join(dir, 'fsync-log.so');
  const source = fileURLToPath(new URL('./durability/fsync-log.c', import.meta.url));
  execFileSync('gcc', ['-shared', '-fPIC', '-O1', '-o', shim, source, '-ldl']);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ROUNDS = 15;

async function runWriter(): Promise<string[]> {
  const db = join(dir, 'kubevisa.db');
  const log = join(dir, 'calls.log');
  const sqlite = new URL('../src/store/sqlite.ts', import.meta.url).href;
  const script = join(dir, 'writer.ts');
  await writeFile(
    script,
    `import { appendFileSync } from 'node:fs';
import { openSqliteStore } from ${JSON.stringify(sqlite)};
const log = process.env.KUBEVISA_FSYNC_LOG;
const event = (action) => ({ at: Date.now(), actor: 'system', action, outcome: 'ok', details: {} });
const store = await openSqliteStore({ path: ${JSON.stringify(db)} });
appendFileSync(log, 'A opened\\n');
for (let i = 0; i < ${ROUNDS}; i++) {
  await store.transaction((tx) => tx.appendAudit(event('test.transaction')));
  appendFileSync(log, 'A transaction ' + i + '\\n');
}
const appender = store.openAuditAppender();
for (let i = 0; i < ${ROUNDS}; i++) {
  await appender.write([event('test.appender'), event('test.appender')]);
  appendFileSync(log, 'A appender ' + i + '\\n');
}
await appender.close();
await store.close();
`,
  );
  const { NODE_TEST_CONTEXT: _marker, ...inherited } = process.env;
  const child = spawn(process.execPath, ['--disable-proto=throw', '--disable-warning=ExperimentalWarning', script], {
    env: { ...inherited, LD_PRELOAD: shim, KUBEVISA_FSYNC_WATCH: db, KUBEVISA_FSYNC_LOG: log },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, output);
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
}

test('every acknowledged audit write (a transaction, the gateway’s appender) was fsynced before its acknowledgement', async () => {
  const lines = await runWriter();
  const acks = lines.flatMap((line, index) => (line.startsWith('A ') ? [index] : []));
  assert.equal(acks.length, 1 + 2 * ROUNDS, 'every acknowledgement is in the log');
  const syncs = lines.filter((line) => line.startsWith('S '));
  assert.ok(syncs.length >= 2 * ROUNDS, `the shim saw the store's fsyncs (${syncs.length})`);
  for (let k = 1; k < acks.length; k++) {
    const between = lines.slice(acks[k - 1]! + 1, acks[k]!);
    const name = lines[acks[k]!];
    const lastWrite = between.findLastIndex((line) => line.startsWith('W '));
    assert.ok(lastWrite >= 0, `${name}: no write to the database before it was acknowledged`);
    const syncedAfter = between.slice(lastWrite + 1).some((line) => line.startsWith('S '));
    assert.ok(
      syncedAfter,
      `${name}: acknowledged without an fsync after its last write:\n${between.slice(lastWrite).join('\n')}`,
    );
  }
});
