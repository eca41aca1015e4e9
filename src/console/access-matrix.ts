/**
 * "Who has access" for the console: per cluster, one row per subject bound anywhere (the people kubevisa grants
 * through visas, and every unmanaged user, group and ServiceAccount), one cell per namespace it is bound in ('' for
 * cluster scope) with the roles or profile there and, for a visa, its end. Rows carry the exposure scan's findings
 * (shadow access, broad groups, risky permissions) so the page can highlight them.
 *
 * The analysis is the monitor's own (listing RBAC and `analyzeExposure`, pure); this module only reshapes it into
 * rows and pages through them, so 20,000 bindings are analysed once per refresh and the browser receives one page.
 */
import type { Visa } from '../domain/model.ts';
import type { ExposureAnalysis } from '../monitor/exposure.ts';
import type { Finding } from '../monitor/findings.ts';
import type { Grant } from '../rbac/rbac-index.ts';
import { permissionsOfGrants, type Permissions } from '../rbac/matrix.ts';

export interface AccessCell {
  /** '' for cluster scope. */
  namespace: string;
  /** Role names (`ClusterRole view`, `Role payments/debug`) or, for a visa's binding, `profile viewer`. */
  roles: string[];
  /** Visas behind the cell (managed bindings). */
  visaIds: string[];
  /** The earliest end among those visas, RFC 3339. */
  notAfter?: string;
  risks: string[];
}

export interface AccessRow {
  subject: string;
  kind: 'person' | 'user' | 'group' | 'serviceaccount';
  /** The person's email for a visa identity. */
  person?: string;
  managed: boolean;
  system: boolean;
  /** Highest severity among the subject's findings, and their kinds. */
  severity?: string;
  findings: string[];
  cells: AccessCell[];
}

export interface AccessQuery {
  /** Substring of the subject or person, case-insensitive. */
  q?: string;
  /** Only rows with a cell in this namespace (exact). */
  namespace?: string;
  /** `findings`: rows with a finding; `people`: visa identities; `unmanaged`: everything else. */
  only?: 'findings' | 'people' | 'unmanaged';
  /** Include Kubernetes' own identities (`system:`), default false. */
  system?: boolean;
  offset: number;
  limit: number;
  /** The first namespace column of the page (default 0) and how many (default {@link DEFAULT_COLUMNS}). */
  columnOffset?: number;
  columnLimit?: number;
}

/** Namespace columns one page shows unless asked otherwise. */
export const DEFAULT_COLUMNS = 30;

const SEVERITY_ORDER = ['critical', 'high', 'medium', 'low', 'info'];

/** Every row of the analysis, people first, then by subject. */
export function accessRows(analysis: ExposureAnalysis, visas: readonly Visa[]): AccessRow[] {
  const visaById = new Map(visas.map((v) => [v.id, v]));
  const findingsBySubject = new Map<string, Finding[]>();
  for (const finding of analysis.findings) {
    if (finding.subject === undefined) continue;
    const list = findingsBySubject.get(finding.subject);
    if (list === undefined) findingsBySubject.set(finding.subject, [finding]);
    else list.push(finding);
  }
  const rows: AccessRow[] = [];
  for (const subject of analysis.index.subjects.values()) {
    const grants = analysis.index.grantsOf(subject.key);
    if (grants.length === 0) continue;
    const cells = new Map<string, AccessCell>();
    let person: string | undefined;
    let managed = false;
    for (const grant of grants) {
      const cell = cells.get(grant.namespace) ?? {
        namespace: grant.namespace,
        roles: [],
        visaIds: [],
        risks: [],
      };
      cells.set(grant.namespace, cell);
      const visa = grant.binding.visaId === undefined ? undefined : visaById.get(grant.binding.visaId);
      const role = visa ? `profile ${visa.profile}` : roleName(grant);
      if (!cell.roles.includes(role)) cell.roles.push(role);
      for (const risk of grant.role.risks) if (!cell.risks.includes(risk)) cell.risks.push(risk);
      if (grant.binding.managed) managed = true;
      if (visa) {
        person = visa.personEmail;
        if (!cell.visaIds.includes(visa.id)) cell.visaIds.push(visa.id);
        const end = visa.notAfter === undefined ? undefined : new Date(visa.notAfter).toISOString();
        if (end !== undefined && (cell.notAfter === undefined || end < cell.notAfter)) cell.notAfter = end;
      }
    }
    const findings = findingsBySubject.get(subject.key) ?? [];
    const severity = findings
      .map((f) => f.severity as string)
      .sort((a, b) => SEVERITY_ORDER.indexOf(a) - SEVERITY_ORDER.indexOf(b))[0];
    rows.push({
      subject: subject.key,
      kind:
        person !== undefined
          ? 'person'
          : subject.kind === 'ServiceAccount'
            ? 'serviceaccount'
            : subject.kind === 'Group'
              ? 'group'
              : 'user',
      ...(person !== undefined ? { person } : {}),
      managed,
      system: subject.system,
      ...(severity !== undefined ? { severity } : {}),
      findings: [...new Set(findings.filter((f) => !f.managed).map((f) => f.kind as string))],
      cells: [...cells.values()].sort((a, b) => a.namespace.localeCompare(b.namespace)),
    });
  }
  return rows.sort(
    (a, b) =>
      Number(b.kind === 'person') - Number(a.kind === 'person') ||
      (a.person ?? a.subject).localeCompare(b.person ?? b.subject),
  );
}

/**
 * One page of the matrix: the rows that pass the query (`total` of them), and the namespace columns of the grid
 * (`columns`, '' for cluster scope first, then by name; `columnTotal` of them among the passing rows, or only the
 * namespace asked for). Both axes are paged, so a cluster of thousands of namespaces still sends one screenful;
 * each row keeps only its cells in the page's columns.
 */
export function pageOfRows(
  rows: readonly AccessRow[],
  query: AccessQuery,
): { total: number; rows: AccessRow[]; columns: string[]; columnTotal: number; columnOffset: number } {
  const q = query.q?.toLowerCase();
  const passing = rows.filter(
    (row) =>
      (query.system === true || !row.system) &&
      (q === undefined || row.subject.toLowerCase().includes(q) || (row.person ?? '').toLowerCase().includes(q)) &&
      (query.namespace === undefined || row.cells.some((c) => c.namespace === query.namespace)) &&
      (query.only === undefined ||
        (query.only === 'findings' && row.findings.length > 0) ||
        (query.only === 'people' && row.kind === 'person') ||
        (query.only === 'unmanaged' && !row.managed)),
  );
  let namespaces: string[];
  if (query.namespace !== undefined) {
    namespaces = [query.namespace];
  } else {
    const seen = new Set<string>();
    for (const row of passing) for (const cell of row.cells) seen.add(cell.namespace);
    namespaces = [...seen].sort((a, b) => a.localeCompare(b));
  }
  const columnOffset = Math.min(query.columnOffset ?? 0, Math.max(0, namespaces.length - 1));
  const columns = namespaces.slice(columnOffset, columnOffset + (query.columnLimit ?? DEFAULT_COLUMNS));
  const shown = new Set(columns);
  return {
    total: passing.length,
    rows: passing
      .slice(query.offset, query.offset + query.limit)
      .map((row) => ({ ...row, cells: row.cells.filter((cell) => shown.has(cell.namespace)) })),
    columns,
    columnTotal: namespaces.length,
    columnOffset,
  };
}

/** What stands behind one cell: every grant (binding, role, rules) and the visas. */
export function cellDetail(
  analysis: ExposureAnalysis,
  subjectKey: string,
  namespace: string,
): {
  grants: { binding: string; managed: boolean; visaId?: string; role: string; risks: string[] }[];
  permissions: Permissions;
} {
  const grants: Grant[] = analysis.index.grantsOf(subjectKey).filter((g) => g.namespace === namespace);
  return {
    grants: grants.map((g) => ({
      binding: `${g.binding.kind} ${g.binding.namespace ? `${g.binding.namespace}/` : ''}${g.binding.name}`,
      managed: g.binding.managed,
      ...(g.binding.visaId !== undefined ? { visaId: g.binding.visaId } : {}),
      role: roleName(g),
      risks: [...g.role.risks],
    })),
    permissions: permissionsOfGrants(grants),
  };
}

function roleName(grant: Grant): string {
  const role = grant.role;
  return `${role.kind} ${role.namespace ? `${role.namespace}/` : ''}${role.name}${role.exists ? '' : ' (missing)'}`;
}
