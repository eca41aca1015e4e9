/**
 * The `monitoring` and `alerts` sections of the server configuration, validated with messages that name the field
 * and what is allowed. Secrets (webhook signing keys, audit webhook tokens, the metrics token) may be given inline,
 * from a file (`…File`) or from an environment variable (`…Env`); they are kept only in memory and never logged.
 * Relative file paths resolve against the server's data folder.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import { parseDuration } from '../domain/time.ts';
import { ALERT_EVENTS, DEFAULT_RETRY, type AlertEvent, type RetryPolicy } from './alerts.ts';

export interface MonitoringConfig {
  /** A granting visa (or a person holding access) unused this long is stale, in ms (default 14 days). */
  staleAfterMs: number;
  /** Revoke stale visas, not only alert (default false). */
  revokeStale: boolean;
  /** How often expiry notices, staleness and the audit trail are checked, in ms (default 60 s). */
  checkIntervalMs: number;
  /** How often every cluster gets an exposure scan, in ms (default 10 min); 0: only on demand. */
  scanIntervalMs: number;
  /** Domains whose users count as contractors, besides those derived from engagements. */
  contractorDomains: string[];
  /** kube-apiserver audit log files to follow, per cluster. */
  auditLogs: { cluster: string; file: string }[];
  /** Bearer tokens kube-apiserver's audit webhook backend sends, per cluster. */
  auditWebhookTokens: Map<string, string>;
  /** When set, GET /metrics requires `Authorization: Bearer <token>`. */
  metricsToken?: string;
}

export interface SinkConfig {
  name: string;
  type: 'webhook' | 'slack';
  url: string;
  secret?: string;
  /** undefined: every event. */
  events?: Set<AlertEvent>;
}

export interface AlertsConfig {
  sinks: SinkConfig[];
  retry: RetryPolicy;
  /** Time limit of one delivery attempt, in ms (default 10 s). */
  attemptTimeoutMs: number;
  /** Lead time of the notice before a visa ends, in ms (default: the policy's expiryNotice). */
  expiryNoticeMs: number;
}

type Raw = Record<string, unknown>;
const isObject = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);

function refuse(path: string, message: string): InvalidInput {
  return new InvalidInput(`config: '${path}' ${message}`, { details: { field: path } });
}

function checkKeys(raw: Raw, known: readonly string[], path: string): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      throw refuse(
        `${path}${key}`,
        `is not a known field; known fields of '${path.slice(0, -1) || 'the section'}' are ${known.join(', ')}`,
      );
    }
  }
}

function durationMs(raw: Raw, field: string, path: string, fallbackMs: number): number {
  const value = raw[field];
  return value === undefined ? fallbackMs : parseDuration(value, `config ${path}${field}`) * 1000;
}

function stringList(raw: Raw, field: string, path: string): string[] {
  const value = raw[field];
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== 'string' || entry === '')) {
    throw refuse(`${path}${field}`, 'must be a list of non-empty strings');
  }
  return value as string[];
}

function text(raw: Raw, field: string, path: string): string {
  const value = raw[field];
  if (typeof value !== 'string' || value.trim() === '') throw refuse(`${path}${field}`, 'must be a non-empty string');
  return value;
}

/** A secret given as `<field>`, `<field>File` or `<field>Env`; undefined when none is given. */
function secretOf(raw: Raw, field: string, path: string, baseDir: string, env: NodeJS.ProcessEnv): string | undefined {
  const given = [field, `${field}File`, `${field}Env`].filter((key) => raw[key] !== undefined);
  if (given.length > 1) throw refuse(`${path}${field}`, `is given more than once (${given.join(', ')}); give one`);
  if (raw[field] !== undefined) return text(raw, field, path);
  if (raw[`${field}File`] !== undefined) {
    const file = resolvePath(text(raw, `${field}File`, path), baseDir);
    let content: string;
    try {
      content = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw refuse(
        `${path}${field}File`,
        `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}): ${file}`,
      );
    }
    if (content === '') throw refuse(`${path}${field}File`, `names an empty file: ${file}`);
    return content;
  }
  if (raw[`${field}Env`] !== undefined) {
    const name = text(raw, `${field}Env`, path);
    const value = env[name];
    if (value === undefined || value === '') throw refuse(`${path}${field}Env`, `names ${name}, which is not set`);
    return value;
  }
  return undefined;
}

function resolvePath(file: string, baseDir: string): string {
  return isAbsolute(file) ? file : resolve(baseDir, file);
}

/** Parses `monitoring` (may be absent: every default applies). */
export function parseMonitoringConfig(
  raw: unknown,
  options: { baseDir: string; clusterNames: readonly string[]; env?: NodeJS.ProcessEnv },
): MonitoringConfig {
  const env = options.env ?? process.env;
  if (raw === undefined) raw = {};
  if (!isObject(raw)) throw refuse('monitoring', 'must be an object');
  const path = 'monitoring.';
  checkKeys(
    raw,
    [
      'staleAfter',
      'revokeStale',
      'checkInterval',
      'scanInterval',
      'contractorDomains',
      'auditLogs',
      'auditWebhook',
      'metrics',
    ],
    path,
  );
  const knownCluster = (name: string, at: string) => {
    if (!options.clusterNames.includes(name)) {
      throw refuse(
        at,
        `names cluster '${name}', which is not configured; clusters are ${options.clusterNames.join(', ') || '(none)'}`,
      );
    }
    return name;
  };
  if (raw['revokeStale'] !== undefined && typeof raw['revokeStale'] !== 'boolean') {
    throw refuse(`${path}revokeStale`, 'must be true or false');
  }
  const logsRaw = raw['auditLogs'] ?? [];
  if (!Array.isArray(logsRaw)) throw refuse(`${path}auditLogs`, 'must be a list of { cluster, file }');
  const auditLogs = logsRaw.map((entry, i) => {
    const at = `${path}auditLogs[${i}].`;
    if (!isObject(entry)) throw refuse(at.slice(0, -1), 'must be { cluster, file }');
    checkKeys(entry, ['cluster', 'file'], at);
    return {
      cluster: knownCluster(text(entry, 'cluster', at), `${at}cluster`),
      file: resolvePath(text(entry, 'file', at), options.baseDir),
    };
  });
  const webhookRaw = raw['auditWebhook'] ?? [];
  if (!Array.isArray(webhookRaw))
    throw refuse(`${path}auditWebhook`, 'must be a list of { cluster, token | tokenFile | tokenEnv }');
  const auditWebhookTokens = new Map<string, string>();
  webhookRaw.forEach((entry, i) => {
    const at = `${path}auditWebhook[${i}].`;
    if (!isObject(entry)) throw refuse(at.slice(0, -1), 'must be { cluster, token | tokenFile | tokenEnv }');
    checkKeys(entry, ['cluster', 'token', 'tokenFile', 'tokenEnv'], at);
    const cluster = knownCluster(text(entry, 'cluster', at), `${at}cluster`);
    const token = secretOf(entry, 'token', at, options.baseDir, env);
    if (token === undefined) throw refuse(`${at}token`, 'is required (token, tokenFile or tokenEnv)');
    auditWebhookTokens.set(cluster, token);
  });
  const metricsRaw = raw['metrics'] ?? {};
  if (!isObject(metricsRaw))
    throw refuse(`${path}metrics`, 'must be { bearerToken | bearerTokenFile | bearerTokenEnv }');
  checkKeys(metricsRaw, ['bearerToken', 'bearerTokenFile', 'bearerTokenEnv'], `${path}metrics.`);
  const metricsToken = secretOf(metricsRaw, 'bearerToken', `${path}metrics.`, options.baseDir, env);
  const scanIntervalMs =
    raw['scanInterval'] === 0 || raw['scanInterval'] === '0' ? 0 : durationMs(raw, 'scanInterval', path, 10 * 60_000);
  return {
    staleAfterMs: durationMs(raw, 'staleAfter', path, 14 * 86_400_000),
    revokeStale: raw['revokeStale'] === true,
    checkIntervalMs: durationMs(raw, 'checkInterval', path, 60_000),
    scanIntervalMs,
    contractorDomains: stringList(raw, 'contractorDomains', path).map((d) => d.toLowerCase()),
    auditLogs,
    auditWebhookTokens,
    ...(metricsToken === undefined ? {} : { metricsToken }),
  };
}

/** Parses `alerts` (may be absent: no sinks). */
export function parseAlertsConfig(
  raw: unknown,
  options: { baseDir: string; defaultExpiryNoticeMs: number; env?: NodeJS.ProcessEnv },
): AlertsConfig {
  const env = options.env ?? process.env;
  if (raw === undefined) raw = {};
  if (!isObject(raw)) throw refuse('alerts', 'must be an object');
  const path = 'alerts.';
  checkKeys(raw, ['sinks', 'retry', 'attemptTimeout', 'expiryNotice'], path);
  const sinksRaw = raw['sinks'] ?? [];
  if (!Array.isArray(sinksRaw)) throw refuse(`${path}sinks`, 'must be a list of { type, url, … }');
  const names = new Set<string>();
  const sinks = sinksRaw.map((entry, i): SinkConfig => {
    const at = `${path}sinks[${i}].`;
    if (!isObject(entry)) throw refuse(at.slice(0, -1), 'must be { type, url, secret?, events? }');
    checkKeys(entry, ['name', 'type', 'url', 'secret', 'secretFile', 'secretEnv', 'events'], at);
    const type = entry['type'];
    if (type !== 'webhook' && type !== 'slack') throw refuse(`${at}type`, "must be 'webhook' or 'slack'");
    const url = text(entry, 'url', at);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      // The URL itself may hold a secret (Slack's do): never repeat it in the message.
      throw refuse(`${at}url`, 'is not a valid URL');
    }
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
      throw refuse(`${at}url`, 'must be https (plain http only to a loopback address)');
    }
    const name = entry['name'] === undefined ? `${type}-${i + 1}` : text(entry, 'name', at);
    if (names.has(name)) throw refuse(`${at}name`, `'${name}' is used by another sink`);
    names.add(name);
    const events = stringList(entry, 'events', at);
    const unknown = events.filter((event) => !(ALERT_EVENTS as readonly string[]).includes(event));
    if (unknown.length > 0)
      throw refuse(`${at}events`, `has unknown events ${unknown.join(', ')}; known: ${ALERT_EVENTS.join(', ')}`);
    const secret = secretOf(entry, 'secret', at, options.baseDir, env);
    return {
      name,
      type,
      url,
      ...(secret === undefined ? {} : { secret }),
      ...(entry['events'] === undefined ? {} : { events: new Set(events as AlertEvent[]) }),
    };
  });
  const retryRaw = raw['retry'] ?? {};
  if (!isObject(retryRaw)) throw refuse(`${path}retry`, 'must be { maxAttempts, initialDelay, maxDelay }');
  checkKeys(retryRaw, ['maxAttempts', 'initialDelay', 'maxDelay'], `${path}retry.`);
  const maxAttempts = retryRaw['maxAttempts'] ?? DEFAULT_RETRY.maxAttempts;
  if (typeof maxAttempts !== 'number' || !Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100) {
    throw refuse(`${path}retry.maxAttempts`, 'must be a whole number from 1 to 100');
  }
  return {
    sinks,
    retry: {
      maxAttempts,
      initialDelayMs: durationMs(retryRaw, 'initialDelay', `${path}retry.`, DEFAULT_RETRY.initialDelayMs),
      maxDelayMs: durationMs(retryRaw, 'maxDelay', `${path}retry.`, DEFAULT_RETRY.maxDelayMs),
    },
    attemptTimeoutMs: durationMs(raw, 'attemptTimeout', path, 10_000),
    expiryNoticeMs: durationMs(raw, 'expiryNotice', path, options.defaultExpiryNoticeMs),
  };
}
