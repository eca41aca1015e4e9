import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { auditContentHash, auditContentText, computeAuditHash, GENESIS_HASH } from '../store/audit-chain.ts';
import { exportLine, parseRecordLine, redactedLine } from './jsonl.ts';
import { sampleEvent } from './testing.ts';

function record(i: number) {
  const event = { ...sampleEvent(i), seq: i + 1, prevHash: GENESIS_HASH, details: sampleEvent(i).details ?? {} };
  return {
    event,
    record: {
      seq: event.seq,
      prevHash: event.prevHash,
      hash: computeAuditHash(event),
      contentText: auditContentText(event),
    },
  };
}

describe('the export format', () => {
  test('a record is one flat JSON object: links first, then the content exactly as hashed', () => {
    const { event, record: r } = record(30);
    const line = exportLine(r);
    assert.ok(line.endsWith('}\n'));
    const parsed = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual(Object.keys(parsed).slice(0, 3), ['seq', 'prevHash', 'hash']);
    assert.equal(parsed.actor, event.actor);
    assert.equal(parsed.reason, event.reason, 'quotes, backslashes and non-ASCII text survive');
    assert.deepEqual(parsed.details, event.details);
    const bytes = Buffer.from(line.trimEnd());
    const link = parseRecordLine(bytes, 0, bytes.length);
    assert.deepEqual(link, {
      ok: true,
      redacted: false,
      link: { seq: r.seq, prevHash: r.prevHash, hash: r.hash, contentHash: auditContentHash(r.contentText) },
    });
    assert.equal(bytes.toString(), line.trimEnd(), 'reading a record leaves its bytes as they were');
  });

  test('a redacted record keeps only what links it, and reads back as the same link', () => {
    const { record: r } = record(4);
    const line = redactedLine(r);
    assert.deepEqual(Object.keys(JSON.parse(line) as object), ['seq', 'prevHash', 'hash', 'contentHash', 'redacted']);
    const bytes = Buffer.from(line.trimEnd());
    assert.deepEqual(parseRecordLine(bytes, 0, bytes.length), {
      ok: true,
      redacted: true,
      link: { seq: r.seq, prevHash: r.prevHash, hash: r.hash, contentHash: auditContentHash(r.contentText) },
    });
  });

  test('says what is wrong with a line that is not a record', () => {
    const cases: [string, RegExp][] = [
      ['{"seq":0,"prevHash":"', /whole number >= 1/],
      ['{"sequence":1}', /does not start with/],
      [`{"seq":1,"hash":"${'0'.repeat(64)}"}`, /'prevHash' does not follow 'seq'/],
      [`{"seq":1,"prevHash":"${'0'.repeat(64)}","hash":"${'0'.repeat(64)}","action":"x"`, /does not end with \}/],
      [
        `{"seq":1,"prevHash":"${'0'.repeat(64)}","hash":"${'0'.repeat(64)}","contentHash":"${'0'.repeat(64)}"}`,
        /redacted record/,
      ],
    ];
    for (const [line, message] of cases) {
      const bytes = Buffer.from(line);
      const parsed = parseRecordLine(bytes, 0, bytes.length);
      assert.equal(parsed.ok, false, line);
      assert.match(parsed.ok ? '' : parsed.message, message, line);
    }
  });
});
