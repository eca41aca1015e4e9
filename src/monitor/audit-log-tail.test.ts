// Following a real file the way kube-apiserver writes and rotates its audit log.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailFile, type Tail, type TailPosition } from './audit-log-tail.ts';

let dir: string;
let file: string;
let lines: string[];
let errors: string[];
let tail: Tail | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-tail-'));
  file = join(dir, 'audit.log');
  lines = [];
  errors = [];
});
afterEach(async () => {
  await tail?.stop();
  tail = undefined;
  await rm(dir, { recursive: true, force: true });
});

const follow = (start?: TailPosition) =>
  (tail = tailFile({
    file,
    ...(start === undefined ? {} : { start }),
    intervalMs: 60_000,
    onLines: (batch) => lines.push(...batch),
    onError: (error) => errors.push(error.message),
  }));

describe('tailFile', () => {
  test('reads appended lines and keeps a half-written line until its end arrives', async () => {
    await writeFile(file, 'one\ntw');
    const t = follow();
    await t.poll();
    assert.deepEqual(lines, ['one']);
    await appendFile(file, 'o\nthree\n');
    await t.poll();
    assert.deepEqual(lines, ['one', 'two', 'three']);
  });

  test('waits for a file that does not exist yet, saying so once', async () => {
    const t = follow();
    await t.poll();
    await t.poll();
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /does not exist/);
    await writeFile(file, 'first\n');
    await t.poll();
    assert.deepEqual(lines, ['first']);
  });

  test('after rotation, reads the rest of the old file, then the new one from its start', async () => {
    await writeFile(file, 'a\n');
    const t = follow();
    await t.poll();
    await appendFile(file, 'b\n');
    await rename(file, `${file}.1`);
    await writeFile(file, 'c\n');
    await t.poll();
    await t.poll();
    assert.deepEqual(lines, ['a', 'b', 'c']);
  });

  test('after truncation in place, reads from the start again', async () => {
    await writeFile(file, 'long line one\n');
    const t = follow();
    await t.poll();
    await truncate(file, 0);
    await appendFile(file, 'x\n');
    await t.poll();
    assert.deepEqual(lines, ['long line one', 'x']);
  });

  test('resumes at a saved position of the same file, without reading what was read', async () => {
    await writeFile(file, 'old\n');
    const first = follow();
    await first.poll();
    const position = await first.position();
    await first.stop();
    await appendFile(file, 'new\n');
    lines = [];
    const second = follow(position);
    await second.poll();
    assert.deepEqual(lines, ['new']);
    await second.stop();
    // Another file (another inode) at that path starts from its beginning.
    await rm(file);
    await writeFile(file, 'other\n');
    lines = [];
    await follow(position).poll();
    assert.deepEqual(lines, ['other']);
  });
});
