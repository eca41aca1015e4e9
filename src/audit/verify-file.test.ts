import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { auditContentHash, auditContentText, linkAuditHash } from '../store/audit-chain.ts';
import type { AuditCheckpoint } from '../store/store.ts';
import { checkpointKeyId, signCheckpoint, type CheckpointKey } from './checkpoints.ts';
import { exportLine } from './jsonl.ts';
import { auditFixture, sampleEvent, type AuditFixture } from './testing.ts';
import type { TrailVerification } from './verdict.ts';
import { verifyExportFile, type VerifyFileOptions } from './verify-file.ts';

const EVENTS = 60;
let fixture: AuditFixture;
let intact: string;
let lines: string[];
let checkpoints: AuditCheckpoint[];
let fileCounter = 0;

before(async () => {
  fixture = await auditFixture({ events: 20 });
  const early = await fixture.service.createCheckpoint();
  await fixture.store.transaction(async (tx) => {
    for (let i = 20; i < EVENTS; i++) await tx.appendAudit(sampleEvent(i));
  });
  const last = await fixture.service.createCheckpoint();
  checkpoints = [early, last];
  intact = await fixture.exportTo('intact.jsonl');
  lines = (await readFile(intact, 'utf8')).split('\n').slice(0, -1);
  assert.equal(lines.length, EVENTS);
});
after(() => fixture.close());

/** Modes every tampering case runs in: one thread, and worker threads with chunks of a few records. */
const MODES: [string, VerifyFileOptions][] = [
  ['on one thread', { workers: 0 }],
  ['on 2 worker threads, chunks of about 3 records', { workers: 2, chunkBytes: 1500 }],
];

async function verifyText(text: string | Buffer, options: VerifyFileOptions = {}): Promise<TrailVerification> {
  const path = join(fixture.dir, `case-${fileCounter++}.jsonl`);
  await writeFile(path, text);
  return verifyExportFile(path, { checkpoints, publicKey: fixture.service.key.publicKey, ...options });
}

function faultOf(verdict: TrailVerification) {
  assert.equal(verdict.ok, false, verdict.summary);
  assert.ok(verdict.fault, verdict.summary);
  return { index: verdict.fault.index, line: verdict.fault.line, kind: verdict.fault.kind };
}

/** A record that hashes correctly (anyone can compute hashes: the chain has no key). */
function forgedLine(seq: number, prevHash: string, actor: string): string {
  const event = { ...sampleEvent(seq - 1), seq, prevHash };
  const contentText = auditContentText({ ...event, actor, details: event.details ?? {} });
  const hash = linkAuditHash(seq, prevHash, auditContentHash(contentText));
  return exportLine({ seq, prevHash, hash, contentText }).trimEnd();
}

const hashOf = (line: string) => (JSON.parse(line) as { hash: string }).hash;
const joined = (list: string[]) => `${list.join('\n')}\n`;

describe('offline verification of an exported trail', () => {
  test('an intact export verifies, with both checkpoints signed and matching', async () => {
    for (const [, options] of MODES) {
      const verdict = await verifyText(await readFile(intact), options);
      assert.equal(verdict.ok, true, verdict.summary);
      assert.equal(verdict.records, EVENTS);
      assert.deepEqual(verdict.head, { seq: EVENTS, hash: hashOf(lines.at(-1) as string) });
      assert.deepEqual(
        verdict.checkpoints.map((finding) => finding.status),
        ['matches', 'matches'],
      );
    }
  });

  for (const [mode, options] of MODES) {
    describe(mode, () => {
      test('a flipped bit anywhere in a record is reported at that record', async () => {
        const bytes = await readFile(intact);
        const lineStarts = [0];
        for (let i = 0; i < bytes.length - 1; i++) if (bytes[i] === 0x0a) lineStarts.push(i + 1);
        // Every 97th byte of the file (past the final newline): content, hashes, seq, braces and newlines alike.
        // Each verification starts its own worker threads, so that mode samples fewer bytes.
        const step = options.workers === 0 ? 97 : 1009;
        for (let offset = 0; offset < bytes.length - 1; offset += step) {
          const tampered = Buffer.from(bytes);
          tampered[offset] = (tampered[offset] as number) ^ 0x01;
          const line = lineStarts.findLastIndex((start) => start <= offset);
          const fault = faultOf(await verifyText(tampered, options));
          assert.equal(fault.index, line, `byte ${offset} is in record ${line}, reported ${JSON.stringify(fault)}`);
          assert.equal(fault.line, line + 1);
        }
      });

      test('a changed value is a hash mismatch at its record', async () => {
        const changed = [...lines];
        changed[17] = (changed[17] as string).replace('"outcome":"ok"', '"outcome":"no"');
        assert.notEqual(changed[17], lines[17]);
        assert.deepEqual(faultOf(await verifyText(joined(changed), options)), {
          index: 17,
          line: 18,
          kind: 'hash-mismatch',
        });
      });

      test('an equivalent re-spelling of a record (whitespace) is a change too', async () => {
        const changed = [...lines];
        changed[30] = (changed[30] as string).replace('"action":', '"action": ');
        assert.equal(faultOf(await verifyText(joined(changed), options)).index, 30);
      });

      test('a deleted record is a gap where it was', async () => {
        for (const gone of [0, 29, 58]) {
          assert.deepEqual(faultOf(await verifyText(joined(lines.filter((_, i) => i !== gone)), options)), {
            index: gone,
            line: gone + 1,
            kind: 'gap',
          });
        }
      });

      test('an inserted record, forged with a valid hash and linked to its predecessor, is reported at its line', async () => {
        const linked = forgedLine(26, hashOf(lines[24] as string), 'mallory@vendor.example');
        const inserted = [...lines.slice(0, 25), linked, ...lines.slice(25)];
        assert.deepEqual(faultOf(await verifyText(joined(inserted), options)), {
          index: 25,
          line: 26,
          kind: 'inserted',
        });
        const unlinked = forgedLine(99, 'a'.repeat(64), 'mallory@vendor.example');
        const elsewhere = [...lines.slice(0, 40), unlinked, ...lines.slice(40)];
        assert.deepEqual(faultOf(await verifyText(joined(elsewhere), options)), {
          index: 40,
          line: 41,
          kind: 'inserted',
        });
      });

      test('a duplicated record is reported at the copy', async () => {
        const copied = [...lines.slice(0, 11), lines[10] as string, ...lines.slice(11)];
        assert.deepEqual(faultOf(await verifyText(joined(copied), options)), { index: 11, line: 12, kind: 'inserted' });
      });

      test('two swapped records are a reorder at the first of them', async () => {
        for (const at of [0, 33, 58]) {
          const swapped = [...lines];
          swapped[at] = lines[at + 1] as string;
          swapped[at + 1] = lines[at] as string;
          assert.deepEqual(faultOf(await verifyText(joined(swapped), options)), {
            index: at,
            line: at + 1,
            kind: 'reorder',
          });
        }
      });

      test('a last record cut short is torn, and the records before it verify', async () => {
        const text = joined(lines);
        const verdict = await verifyText(text.slice(0, text.length - 40), options);
        assert.deepEqual(faultOf(verdict), { index: EVENTS - 1, line: EVENTS, kind: 'torn' });
        assert.equal(verdict.records, EVENTS - 1);
        assert.equal(verdict.head?.seq, EVENTS - 1);
      });

      test('a line that is not a record is malformed at its line', async () => {
        const broken = [...lines];
        broken[44] = 'this is not a record';
        assert.deepEqual(faultOf(await verifyText(joined(broken), options)), {
          index: 44,
          line: 45,
          kind: 'malformed',
        });
      });
    });
  }

  test('a trail cut short (or an older copy) is caught by the later checkpoint', async () => {
    const verdict = await verifyText(joined(lines.slice(0, 40)));
    assert.equal(verdict.fault, undefined, 'what is left is a valid chain');
    assert.equal(verdict.ok, false);
    assert.deepEqual(
      verdict.checkpoints.map((finding) => finding.status),
      ['matches', 'beyond-trail'],
    );
    assert.match(verdict.rollback ?? '', /ends at seq 40.*events 41\.\.60 are missing/);
  });

  test('history rewritten consistently from one record on is caught by the checkpoint after it', async () => {
    const rewritten = lines.slice(0, 35);
    let prevHash = hashOf(rewritten.at(-1) as string);
    for (let seq = 36; seq <= EVENTS; seq++) {
      const line = forgedLine(
        seq,
        prevHash,
        seq === 36 ? 'someone-else@vendor.example' : `person${seq % 5}@vendor.example`,
      );
      rewritten.push(line);
      prevHash = hashOf(line);
    }
    const verdict = await verifyText(joined(rewritten));
    assert.equal(verdict.fault, undefined);
    assert.equal(verdict.ok, false);
    assert.deepEqual(
      verdict.checkpoints.map((finding) => finding.status),
      ['matches', 'differs'],
    );
  });

  test('a checkpoint with a forged signature, or from another key, fails; without a key none is authenticated', async () => {
    const [early, last] = checkpoints as [AuditCheckpoint, AuditCheckpoint];
    const tampered = { ...last, seq: 40, hash: hashOf(lines[39] as string) };
    const { privateKey } = generateKeyPairSync('ed25519');
    const otherKey = { ...fixture.service.key, privateKey, keyId: 'other' } as CheckpointKey;
    const foreign = signCheckpoint(otherKey, { seq: 50, hash: hashOf(lines[49] as string) }, last.at);
    const verdict = await verifyText(await readFile(intact), { checkpoints: [early, tampered, foreign] });
    assert.deepEqual(
      verdict.checkpoints.map((finding) => finding.status),
      ['matches', 'bad-signature', 'unknown-key'],
    );
    assert.equal(verdict.ok, false);
    const unauthenticated = await verifyText(await readFile(intact), {
      checkpoints: [early, last],
      publicKey: undefined,
    });
    assert.equal(unauthenticated.ok, true);
    assert.deepEqual(
      unauthenticated.checkpoints.map((finding) => finding.status),
      ['not-authenticated', 'not-authenticated'],
    );
    assert.equal(checkpointKeyId(fixture.service.key.publicKey), fixture.service.key.keyId);
  });

  test('a window of the trail verifies from the checkpoint before it, and only from there', async () => {
    const [early] = checkpoints as [AuditCheckpoint];
    const window = await fixture.exportTo('window.jsonl', fixture.service.exportLines({ afterSeq: early.seq }));
    const anchored = await verifyExportFile(window, { checkpoints, publicKey: fixture.service.key.publicKey });
    assert.equal(anchored.ok, true, anchored.summary);
    assert.equal(anchored.first, early.seq + 1);
    const unanchored = await verifyExportFile(window, { publicKey: fixture.service.key.publicKey });
    assert.deepEqual(faultOf(unanchored), { index: 0, line: 1, kind: 'gap' });
  });

  test('an evidence window shows the engagement in full, redacts the rest, and still verifies', async () => {
    const [early] = checkpoints as [AuditCheckpoint];
    const scope = { engagementId: 'e_1', visaIds: new Set(['v_3']), personIds: new Set<string>() };
    const path = await fixture.exportTo('evidence.jsonl', fixture.service.exportLines({ afterSeq: early.seq }, scope));
    const text = await readFile(path, 'utf8');
    const records = text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const shown = records.filter((record) => record.redacted !== true);
    assert.ok(shown.length > 0 && shown.length < records.length);
    for (const record of shown) assert.ok(record.engagementId === 'e_1' || record.visaId === 'v_3');
    for (const record of records.filter((r) => r.redacted === true)) {
      assert.deepEqual(Object.keys(record), ['seq', 'prevHash', 'hash', 'contentHash', 'redacted']);
    }
    const verdict = await verifyExportFile(path, { checkpoints, publicKey: fixture.service.key.publicKey });
    assert.equal(verdict.ok, true, verdict.summary);
    assert.equal(verdict.redacted, records.length - shown.length);
    // A redacted record is still bound to its content: changing its content hash breaks it.
    const index = records.findIndex((record) => record.redacted === true);
    const tampered = text.split('\n');
    tampered[index] = (tampered[index] as string).replace(
      /"contentHash":"(.)/,
      (_m, c: string) => `"contentHash":"${c === 'a' ? 'b' : 'a'}`,
    );
    const broken = await verifyText(tampered.join('\n'), { checkpoints });
    assert.deepEqual(faultOf(broken), { index, line: index + 1, kind: 'hash-mismatch' });
  });
});
