import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LOCK_FILE, StoreLocked, lockDataFolder } from './sqlite-lock.ts';

const lockModule = fileURLToPath(new URL('./sqlite-lock.ts', import.meta.url));
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-lock-'));
  dirs.push(dir);
  return dir;
}

/** A process's start time as /proc gives it (what the lock records to tell a PID's holders apart). */
function procStartOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

/** The PID of a process that has exited (a crashed server's, as its lock file still names it). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  return child.pid!;
}

function lockContent(pid: number, host = hostname(), extra: { started?: string } = {}): string {
  return `${JSON.stringify({ pid, host, nonce: 'n-' + pid, since: '2030-01-15T09:00:00.000Z', ...extra })}\n`;
}

function isLocked(pattern: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof StoreLocked, `expected StoreLocked, got ${String(error)}`);
    assert.equal(error.code, 'ERR_STORE_LOCKED');
    assert.match(error.message, pattern);
    return true;
  };
}

/** Node processes that each try to take the lock of `folder` at the same moment, and report what they got. */
async function race(folder: string, count: number): Promise<string[]> {
  const script = `
    import { lockDataFolder } from ${JSON.stringify(lockModule)};
    // Start together: each waits for the go file to appear, so none has a head start of a process start-up.
    const { existsSync } = await import('node:fs');
    process.stdout.write('ready;');
    while (!existsSync(process.argv[1])) await new Promise((r) => setTimeout(r, 2));
    try {
      await lockDataFolder(process.argv[2]);
      process.stdout.write('locked');
      await new Promise((r) => setTimeout(r, 1500));
    } catch (error) {
      process.stdout.write(error.code ?? String(error));
    }`;
  const go = join(folder, '..', `go-${Math.random()}`);
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, ['--input-type=module', '-e', script, go, folder], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let ready = 0;
  let allReady: () => void = () => {};
  const everyoneWaits = new Promise<void>((resolve) => (allReady = resolve));
  const outputs = children.map(async (child) => {
    let out = '';
    let counted = false;
    const count1 = () => {
      if (counted) return;
      counted = true;
      if (++ready === count) allReady();
    };
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.startsWith('ready;')) count1();
    });
    // A child that dies before it is ready must not leave the race waiting: its output tells what happened.
    child.once('exit', count1);
    await once(child, 'exit');
    return out.replace('ready;', '');
  });
  // Every child is running and polling for the go file before the race starts.
  await everyoneWaits;
  await writeFile(go, '');
  return Promise.all(outputs);
}

describe("the SQLite engine's data-folder lock", () => {
  test('a second lock on a held folder is refused, naming the holder; after release it can be taken again', async () => {
    const folder = await freshDir();
    const first = await lockDataFolder(folder);
    const held = JSON.parse(await readFile(join(folder, LOCK_FILE), 'utf8')) as { pid: number; host: string };
    assert.equal(held.pid, process.pid);
    assert.equal(held.host, hostname());
    assert.equal(((await stat(join(folder, LOCK_FILE))).mode & 0o777).toString(8), '600');
    await assert.rejects(lockDataFolder(folder), isLocked(new RegExp(`this same process.*PID ${process.pid}`)));
    await first.release();
    await assert.rejects(stat(join(folder, LOCK_FILE)), /ENOENT/);
    const second = await lockDataFolder(folder);
    await second.release();
  });

  test('a lock held by another live process is refused with its PID, and left as it is', async () => {
    const folder = await freshDir();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
    try {
      const content = lockContent(holder.pid!, hostname(), { started: procStartOf(holder.pid!) });
      await writeFile(join(folder, LOCK_FILE), content);
      await assert.rejects(
        lockDataFolder(folder),
        isLocked(new RegExp(`in use by another kubevisa server \\(PID ${holder.pid}\\).*Stop PID ${holder.pid} first`)),
      );
      assert.equal(await readFile(join(folder, LOCK_FILE), 'utf8'), content);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('a stale lock (its process is gone) is taken over, and the caller is told', async () => {
    const folder = await freshDir();
    const dead = await deadPid();
    await writeFile(join(folder, LOCK_FILE), lockContent(dead));
    const notices: string[] = [];
    const lock = await lockDataFolder(folder, { onNotice: (message) => notices.push(message) });
    assert.equal(notices.length, 1);
    assert.match(
      notices[0]!,
      new RegExp(`took over the lock of the data folder .* from PID ${dead}, which no longer runs`),
    );
    const now = JSON.parse(await readFile(join(folder, LOCK_FILE), 'utf8')) as { pid: number };
    assert.equal(now.pid, process.pid);
    await lock.release();
  });

  test('a lock naming a live PID that a later process was given (another start time) is stale', async () => {
    const folder = await freshDir();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
    try {
      await writeFile(join(folder, LOCK_FILE), lockContent(holder.pid!, hostname(), { started: '1' }));
      const notices: string[] = [];
      const lock = await lockDataFolder(folder, { onNotice: (message) => notices.push(message) });
      assert.match(notices[0] ?? '', new RegExp(`from PID ${holder.pid}, which no longer runs`));
      await lock.release();
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('a lock from another host, or one kubevisa did not write, is refused with what to do', async () => {
    const folder = await freshDir();
    await writeFile(join(folder, LOCK_FILE), lockContent(1, 'other-host.example'));
    await assert.rejects(
      lockDataFolder(folder),
      isLocked(/locked by a kubevisa server on host other-host\.example \(PID 1,.*if it is gone, remove/),
    );
    await writeFile(join(folder, LOCK_FILE), 'garbage');
    await assert.rejects(lockDataFolder(folder), isLocked(/kubevisa did not write .* remove it/));
  });

  test('release removes only its own lock: not the one a later holder took over', async () => {
    const folder = await freshDir();
    const mine = await lockDataFolder(folder);
    // Another holder replaced the file (as a takeover after this process was thought dead would).
    const other = lockContent(await deadPid());
    await writeFile(join(folder, LOCK_FILE), other);
    await mine.release();
    assert.equal(await readFile(join(folder, LOCK_FILE), 'utf8'), other);
  });

  test('processes racing for a free folder: exactly one gets it', async () => {
    const folder = await freshDir();
    const results = await race(folder, 4);
    assert.deepEqual(
      [...results].sort(),
      ['ERR_STORE_LOCKED', 'ERR_STORE_LOCKED', 'ERR_STORE_LOCKED', 'locked'],
      JSON.stringify(results),
    );
  });

  test('processes racing to take over the same stale lock: exactly one gets it', async () => {
    const folder = await freshDir();
    await writeFile(join(folder, LOCK_FILE), lockContent(await deadPid()));
    const results = await race(folder, 4);
    assert.deepEqual(
      [...results].sort(),
      ['ERR_STORE_LOCKED', 'ERR_STORE_LOCKED', 'ERR_STORE_LOCKED', 'locked'],
      JSON.stringify(results),
    );
  });
});
