/**
 * The console's read-only views that the API did not have: the who-has-access matrix by page, what stands behind
 * one of its cells, a recorded exec session for replay, and the alerting configuration's status.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { Forbidden, NotFound } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { analyzeExposure, buildDirectory, type ExposureAnalysis } from '../monitor/exposure.ts';
import { parseAlertsConfig, parseMonitoringConfig } from '../monitor/config.ts';
import { accessRows, cellDetail, pageOfRows, type AccessQuery, type AccessRow } from './access-matrix.ts';

/** An analysis is reused this long, in milliseconds, unless a visa changes first. */
const ANALYSIS_TTL_MS = 15_000;
/** A refresh asked for sooner than this after the last analysis began is answered from that analysis. */
export const MIN_REFRESH_MS = 5_000;
/** Largest recording the console replays, in bytes. */
const MAX_RECORDING_BYTES = 20 * 1024 * 1024;

interface Analysed {
  at: number;
  analysis: ExposureAnalysis;
  rows: AccessRow[];
}

/** One cluster's analysis: running (`done` unset) or finished. */
interface Entry {
  work: Promise<Analysed>;
  done?: Analysed;
}

export class AccessMatrices {
  private readonly context: ServerContext;
  private readonly cache = new Map<string, Entry>();

  constructor(context: ServerContext) {
    this.context = context;
    const forget = () => this.cache.clear();
    context.events.on('visas-changed', forget);
    context.events.on('visas-ended', forget);
    context.onStop(() => {
      context.events.off('visas-changed', forget);
      context.events.off('visas-ended', forget);
    });
  }

  async page(cluster: string, query: AccessQuery, refresh = false) {
    const analysed = await this.analysed(cluster, refresh);
    return {
      cluster,
      analysedAt: new Date(analysed.at).toISOString(),
      counts: analysed.analysis.counts,
      offset: query.offset,
      ...pageOfRows(analysed.rows, query),
    };
  }

  async cell(cluster: string, subject: string, namespace: string) {
    const analysed = await this.analysed(cluster, false);
    const detail = cellDetail(analysed.analysis, subject, namespace);
    if (detail.grants.length === 0) {
      throw new NotFound(`'${subject}' holds nothing in ${namespace === '' ? 'cluster scope' : `'${namespace}'`}`);
    }
    const findings = analysed.analysis.findings.filter(
      (f) => f.subject === subject && (f.namespace === undefined || f.namespace === namespace),
    );
    return { cluster, subject, namespace, ...detail, findings };
  }

  private analysed(cluster: string, refresh: boolean): Promise<Analysed> {
    const cached = this.cache.get(cluster);
    // One analysis at a time per cluster: whoever asks while it runs shares it, a refresh included, and a refresh
    // soon after one is answered from it. Each analysis lists every RBAC object of the cluster, so refreshes
    // repeated by one approver must not load kubevisa and kube-apiserver (found by attack: 40 at once took 4 s).
    if (cached) {
      if (cached.done === undefined) return cached.work;
      if (Date.now() - cached.done.at < (refresh ? MIN_REFRESH_MS : ANALYSIS_TTL_MS)) return cached.work;
    }
    const entry: Entry = { work: this.analyse(cluster) };
    this.cache.set(cluster, entry);
    entry.work.then(
      (analysed) => {
        entry.done = analysed;
      },
      () => {
        if (this.cache.get(cluster) === entry) this.cache.delete(cluster);
      },
    );
    return entry.work;
  }

  private async analyse(name: string): Promise<Analysed> {
    const client = this.context.clusters.get(name);
    if (!client) {
      throw new NotFound(
        `no cluster '${name}': known clusters are ${[...this.context.clusters.keys()].join(', ') || '(none)'}`,
      );
    }
    const at = Date.now();
    const [roles, clusterRoles, roleBindings, clusterRoleBindings, engagements, persons, visas] = await Promise.all([
      client.listRoles(),
      client.listClusterRoles(),
      client.listRoleBindings(),
      client.listClusterRoleBindings(),
      this.context.store.listEngagements(),
      this.context.store.listPersons(),
      this.context.store.listVisas({ cluster: name }),
    ]);
    const monitoring = parseMonitoringConfig(this.context.config.extensions['monitoring'], {
      baseDir: this.context.config.dataDir,
      clusterNames: [...this.context.clusters.keys()],
    });
    const analysis = analyzeExposure({
      cluster: name,
      objects: { roles, clusterRoles, roleBindings, clusterRoleBindings },
      // The matrix shows bindings; legacy token Secrets are the monitor's scan's business (kubevisa may not list them).
      tokenSecrets: undefined,
      legacyTokenUses: [],
      directory: buildDirectory({ engagements, persons, contractorDomains: monitoring.contractorDomains }),
    });
    return { at, analysis, rows: accessRows(analysis, visas) };
  }
}

/**
 * A recorded exec session named by the audit event that ended it (`details.recording`): read only from the gateway's
 * recordings folder, and only if its SHA-256 is still the one the audit trail holds (a changed file is refused).
 */
export async function readRecording(context: ServerContext, seq: number): Promise<string> {
  const event = await context.store.getAuditEvent(seq);
  const details = (event?.details ?? {}) as Record<string, unknown>;
  const recording = Object.hasOwn(details, 'recording') ? details['recording'] : undefined;
  const file =
    typeof recording === 'object' && recording !== null && Object.hasOwn(recording, 'file')
      ? (recording as { file: unknown }).file
      : undefined;
  const sha256 =
    typeof recording === 'object' && recording !== null && Object.hasOwn(recording, 'sha256')
      ? (recording as { sha256: unknown }).sha256
      : undefined;
  if (typeof file !== 'string') throw new NotFound(`audit event ${seq} names no recorded session`);
  const folder = resolve(join(context.config.dataDir, 'recordings'));
  const path = resolve(file);
  if (!path.startsWith(folder + sep))
    throw new NotFound(`audit event ${seq} names a recording outside kubevisa's folder`);
  const content = await readFile(path).catch(() => undefined);
  if (content === undefined) throw new NotFound(`the recording of audit event ${seq} is no longer on this server`);
  if (content.length > MAX_RECORDING_BYTES) {
    throw new NotFound(`the recording of audit event ${seq} is larger than the console replays: use the file ${path}`);
  }
  if (typeof sha256 === 'string' && createHash('sha256').update(content).digest('hex') !== sha256) {
    throw new Forbidden(`the recording of audit event ${seq} changed since it was audited: it is not shown`);
  }
  return content.toString('utf8');
}

/** Whether alerts go anywhere, for the admin's status page (names and types only: sink URLs may hold secrets). */
export function alertsStatus(context: ServerContext) {
  const alerts = parseAlertsConfig(context.config.extensions['alerts'], {
    baseDir: context.config.dataDir,
    defaultExpiryNoticeMs: context.config.policy.expiryNoticeSeconds * 1000,
  });
  const monitoring = parseMonitoringConfig(context.config.extensions['monitoring'], {
    baseDir: context.config.dataDir,
    clusterNames: [...context.clusters.keys()],
  });
  return {
    sinks: alerts.sinks.map((s) => ({ name: s.name, type: s.type, events: s.events ? [...s.events] : 'all' })),
    expiryNoticeSeconds: Math.round(alerts.expiryNoticeMs / 1000),
    metricsProtected: monitoring.metricsToken !== undefined,
    staleAfterDays: Math.round(monitoring.staleAfterMs / 86_400_000),
    revokeStale: monitoring.revokeStale,
    scanIntervalSeconds: Math.round(monitoring.scanIntervalMs / 1000),
  };
}
