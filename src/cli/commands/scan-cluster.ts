/**
 * `kubevisa scan cluster`: the exposure scan of a whole cluster, run by the server with kubevisa's own credential
 * (POST /api/v1/monitoring/scans/{cluster}; admins and auditors). Without filters: the findings — shadow access,
 * bindings to broad groups, risky permissions, legacy tokens, drift. With --subject, --namespace, --verb or
 * --resource (or --matrix): who can do what where. Exits 1 when a shown finding is critical or high.
 */
import { resourceLabel } from '../../rbac/matrix.ts';
import type { CallOptions } from '../api-client.ts';
import { render, UsageError, type CommandRun } from '../framework.ts';
import { clientFrom, positionalOrOption, optionalString, outputFormat } from '../options.ts';
import { oneLine } from '../present.ts';

interface FindingJson {
  id: string;
  kind: string;
  severity: string;
  reason: string;
  summary: string;
  managed: boolean;
  builtin: boolean;
}
interface RowJson {
  subject: string;
  namespace: string;
  via: string[];
  resources: { apiGroup: string; resource: string; resourceNames: string[]; verbs: string[] }[];
  nonResourceURLs: { url: string; verbs: string[] }[];
}
interface ScanJson {
  cluster: string;
  scannedAt: string;
  durations: { listMs: number; analyzeMs: number };
  counts: Record<string, number>;
  coverage: Record<string, string>;
  findings: FindingJson[];
  changes: { added: string[]; resolved: string[] };
  matrix?: RowJson[];
  matrixTruncated?: boolean;
}

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);

  const minimum = optionalString(values, 'min-severity') ?? 'low';
  if (!SEVERITIES.includes(minimum))
    throw new UsageError(`unknown --min-severity '${minimum}': use ${SEVERITIES.join(', ')}`);
  const client = await clientFrom(values);
  let cluster = positionalOrOption(values, positionals, 'cluster', 'scan cluster');
  if (cluster === undefined) {
    const known = (await client.get<{ items?: { name: string }[] }>('/api/v1/clusters')).items ?? [];
    if (known.length !== 1) {
      throw new UsageError(
        `name the cluster with --cluster: the server manages ${known.map((c) => c.name).join(', ') || 'none'}`,
      );
    }
    cluster = known[0]!.name;
  }
  const filter = {
    subject: optionalString(values, 'subject'),
    namespace: optionalString(values, 'namespace'),
    verb: optionalString(values, 'verb'),
    resource: optionalString(values, 'resource'),
  };
  const wantMatrix = values.matrix === true || Object.values(filter).some((v) => v !== undefined);
  const call: CallOptions = { body: {}, query: { ...filter, ...(wantMatrix ? { matrix: 'true' } : {}) } };
  const scan = (await client.call<ScanJson>('POST', `/api/v1/monitoring/scans/${encodeURIComponent(cluster)}`, call))
    .body;

  if (wantMatrix) {
    const rows = (scan.matrix ?? []).flatMap((row) =>
      row.resources
        .filter((p) => filter.verb === undefined || p.verbs.includes('*') || p.verbs.includes(filter.verb))
        .filter(
          (p) =>
            filter.resource === undefined ||
            [filter.resource, '*'].includes(p.resource) ||
            p.resource === `*/${filter.resource.split('/')[1] ?? ''}`,
        )
        .map((p) => [
          row.subject,
          row.namespace === '' ? '*' : row.namespace,
          `${resourceLabel(p)}${p.resourceNames.length > 0 ? ` [${p.resourceNames.join(',')}]` : ''}`,
          p.verbs.join(','),
        ]),
    );
    await render(
      io,
      format,
      { cluster: scan.cluster, scannedAt: scan.scannedAt, matrix: scan.matrix ?? [] },
      {
        columns: ['SUBJECT', 'NAMESPACE', 'RESOURCE', 'VERBS'],
        rows,
      },
    );
    if (scan.matrixTruncated === true) io.err('kubevisa: only the first rows are shown: narrow the filters.\n');
    return 0;
  }

  const rank = (severity: string) => SEVERITIES.indexOf(severity);
  const shown = scan.findings.filter(
    (f) =>
      (values.all === true || (!f.builtin && !(f.managed && f.kind === 'risky-permission'))) &&
      rank(f.severity) <= rank(minimum),
  );
  const added = new Set(scan.changes.added);
  const forPeople = format === undefined || format === 'table';
  // With nothing to list, the summary below says so: a table's "No resources found." would only stand before it.
  if (!forPeople || shown.length > 0) {
    await render(
      io,
      format,
      { ...scan, findings: shown },
      {
        columns: ['SEVERITY', 'KIND', 'REASON', 'NEW', 'FINDING'],
        rows: shown.map((f) => [f.severity, f.kind, f.reason, added.has(f.id) ? 'new' : '', oneLine(f.summary, 200)]),
      },
    );
  }
  if (forPeople) {
    const hidden = scan.findings.length - shown.length;
    io.err(
      `Cluster ${scan.cluster}: ${scan.counts['bindings'] ?? 0} bindings, ${scan.counts['subjects'] ?? 0} subjects, scanned in ${scan.durations.listMs + scan.durations.analyzeMs} ms; ${shown.length === 0 ? 'no finding' : `${shown.length} finding(s)`} shown${hidden > 0 ? `, ${hidden} hidden (Kubernetes defaults, visas by design, or below --min-severity: --all shows them)` : ''}.\n` +
        Object.entries(scan.coverage)
          .filter(([, state]) => state !== 'listed' && state !== 'audit log')
          .map(([what, state]) => `  ${what}: ${state}\n`)
          .join(''),
    );
  }
  return shown.some((f) => f.severity === 'critical' || f.severity === 'high') ? 1 : 0;
};
