import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAuditConfig } from './config.ts';

describe('the audit configuration section', () => {
  test('defaults: a checkpoint every 5 minutes, verification on demand, the key in the data folder', () => {
    assert.deepEqual(parseAuditConfig(undefined, '/var/lib/kubevisa'), {
      checkpointIntervalMs: 300_000,
      keyFile: '/var/lib/kubevisa/audit-checkpoint-key.pem',
    });
  });

  test('reads intervals as durations and a relative key file from the data folder', () => {
    assert.deepEqual(
      parseAuditConfig({ checkpointInterval: '30s', verifyInterval: '1h', keyFile: 'keys/audit.pem' }, '/data'),
      { checkpointIntervalMs: 30_000, verifyIntervalMs: 3_600_000, keyFile: '/data/keys/audit.pem' },
    );
    assert.equal(parseAuditConfig({ keyFile: '/etc/kubevisa/audit.pem' }, '/data').keyFile, '/etc/kubevisa/audit.pem');
  });

  test('refuses unknown fields, bad durations and a section that is not an object, saying what is allowed', () => {
    assert.throws(
      () => parseAuditConfig({ checkpointEvery: '5m' }, '/d'),
      /unknown field 'audit.checkpointEvery'.*checkpointInterval/,
    );
    assert.throws(() => parseAuditConfig({ checkpointInterval: '0s' }, '/d'), /audit.checkpointInterval.*zero/);
    assert.throws(() => parseAuditConfig({ verifyInterval: 60 }, '/d'), /audit.verifyInterval.*expected a string/);
    assert.throws(() => parseAuditConfig(['x'], '/d'), /'audit' must be an object/);
    assert.throws(() => parseAuditConfig({ keyFile: '' }, '/d'), /audit.keyFile/);
  });
});
