import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import { parseAlertsConfig, parseMonitoringConfig } from './config.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'kubevisa-monitor-config-'));
const monitoring = (raw: unknown, env: NodeJS.ProcessEnv = {}) =>
  parseMonitoringConfig(raw, { baseDir: dataDir, clusterNames: ['prod'], env });
const alerts = (raw: unknown, env: NodeJS.ProcessEnv = {}) =>
  parseAlertsConfig(raw, { baseDir: dataDir, defaultExpiryNoticeMs: 3_600_000, env });
const refused = (pattern: RegExp) => (error: unknown) => error instanceof InvalidInput && pattern.test(error.message);

describe('monitoring config', () => {
  test('defaults: 14 days to stale, no revoking, checks every minute, scans every 10 minutes', () => {
    const config = monitoring(undefined);
    assert.equal(config.staleAfterMs, 14 * 86_400_000);
    assert.equal(config.revokeStale, false);
    assert.equal(config.checkIntervalMs, 60_000);
    assert.equal(config.scanIntervalMs, 600_000);
    assert.equal(config.metricsToken, undefined);
  });

  test('audit logs resolve against the data folder and must name a configured cluster', () => {
    const config = monitoring({ auditLogs: [{ cluster: 'prod', file: 'audit/prod.log' }], scanInterval: 0 });
    assert.deepEqual(config.auditLogs, [{ cluster: 'prod', file: join(dataDir, 'audit/prod.log') }]);
    assert.equal(config.scanIntervalMs, 0);
    assert.throws(
      () => monitoring({ auditLogs: [{ cluster: 'staging', file: '/x' }] }),
      refused(/names cluster 'staging', which is not configured; clusters are prod/),
    );
  });

  test('secrets come inline, from a file or from the environment, exactly one way', () => {
    const file = join(dataDir, 'token');
    writeFileSync(file, 'from-file\n');
    assert.equal(monitoring({ metrics: { bearerTokenFile: file } }).metricsToken, 'from-file');
    assert.equal(
      monitoring(
        { auditWebhook: [{ cluster: 'prod', tokenEnv: 'AUDIT_TOKEN' }] },
        { AUDIT_TOKEN: 't' },
      ).auditWebhookTokens.get('prod'),
      't',
    );
    assert.throws(
      () => monitoring({ metrics: { bearerToken: 'a', bearerTokenFile: file } }),
      refused(/given more than once/),
    );
    assert.throws(
      () => monitoring({ metrics: { bearerTokenEnv: 'UNSET_VAR' } }),
      refused(/UNSET_VAR, which is not set/),
    );
  });

  test('unknown fields and bad durations are refused with the field named', () => {
    assert.throws(() => monitoring({ staleAfer: '1d' }), refused(/'monitoring.staleAfer' is not a known field/));
    assert.throws(() => monitoring({ staleAfter: 'soon' }), refused(/monitoring.staleAfter/));
    assert.throws(() => monitoring({ revokeStale: 'yes' }), refused(/must be true or false/));
  });
});

describe('alerts config', () => {
  test('sinks: https or loopback http, unique names, known events; the URL is never repeated in errors', () => {
    const config = alerts({
      sinks: [
        { type: 'webhook', url: 'http://127.0.0.1:9/hook', secret: 's', events: ['stale-access', 'shadow-access'] },
        { type: 'slack', url: 'https://hooks.slack.example/services/T0/B0/XYZ' },
      ],
      retry: { maxAttempts: 3, initialDelay: '2s' },
    });
    assert.deepEqual(
      config.sinks.map((sink) => [sink.name, sink.type, sink.events ? [...sink.events] : 'all']),
      [
        ['webhook-1', 'webhook', ['stale-access', 'shadow-access']],
        ['slack-2', 'slack', 'all'],
      ],
    );
    assert.equal(config.retry.maxAttempts, 3);
    assert.equal(config.retry.initialDelayMs, 2000);
    assert.equal(config.expiryNoticeMs, 3_600_000, 'the policy’s lead time by default');
    assert.throws(
      () => alerts({ sinks: [{ type: 'webhook', url: 'http://hooks.example/x' }] }),
      refused(/must be https/),
    );
    assert.throws(
      () => alerts({ sinks: [{ type: 'webhook', url: 'https://x.example/SECRET-PATH', events: ['visa-exploded'] }] }),
      (error: unknown) =>
        error instanceof InvalidInput &&
        /unknown events visa-exploded/.test(error.message) &&
        !error.message.includes('SECRET'),
    );
    assert.throws(
      () => alerts({ sinks: [{ type: 'email', url: 'https://x.example' }] }),
      refused(/'webhook' or 'slack'/),
    );
  });
});
