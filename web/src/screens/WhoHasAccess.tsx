import { useEffect, useRef, useState } from 'react';
import { get, query } from '../api.ts';
import { Alert, Countdown, Empty } from '../components.tsx';
import { messageOf, useLoad } from '../hooks.ts';
import { useLive } from '../live.ts';
import { when } from '../time.ts';

interface Cell {
  namespace: string;
  roles: string[];
  visaIds: string[];
  notAfter?: string;
  risks: string[];
}
interface Row {
  subject: string;
  kind: 'person' | 'user' | 'group' | 'serviceaccount';
  person?: string;
  managed: boolean;
  severity?: string;
  findings: string[];
  cells: Cell[];
}
interface Page {
  cluster: string;
  analysedAt: string;
  counts: { bindings: number; subjects: number };
  total: number;
  offset: number;
  rows: Row[];
  /** The page's namespace columns ('' is cluster scope), `columnTotal` in all from `columnOffset`. */
  columns: string[];
  columnTotal: number;
  columnOffset: number;
}
interface CellDetail {
  grants: { binding: string; managed: boolean; visaId?: string; role: string; risks: string[] }[];
  permissions: { resources: { apiGroup: string; resource: string; verbs: string[]; resourceNames: string[] }[] };
  findings: { id: string; severity: string; summary: string }[];
}
interface AuditEvent {
  seq: number;
  time: string;
  action: string;
  actor: string;
  outcome: string;
}

const ROW_HEIGHT = 44;
const PAGE = 200;
const VIEW_HEIGHT = 560;
/** Namespace columns per page of the grid. */
const COLUMNS = 30;

/**
 * Subjects × namespaces: a grid whose rows (subjects) and columns (namespaces) are both paged by the server; only
 * the rows in view are rendered, the columns come COLUMNS at a time.
 */
export function WhoHasAccess() {
  const clusters = useLoad(() => get<{ items: { name: string }[] }>('/api/v1/clusters'), []);
  const [cluster, setCluster] = useState('');
  const [filters, setFilters] = useState({ q: '', namespace: '', only: '' });
  const [applied, setApplied] = useState(filters);
  const [pages, setPages] = useState<Map<number, Row[]>>(new Map());
  const [total, setTotal] = useState<number>();
  const [meta, setMeta] = useState<Page>();
  const [error, setError] = useState<string>();
  const [scrollTop, setScrollTop] = useState(0);
  const [selected, setSelected] = useState<{ row: Row; cell: Cell }>();
  const [columnOffset, setColumnOffset] = useState(0);
  const loading = useRef(new Set<number>());
  const live = useLive('visas');
  const chosen = cluster || clusters.data?.items[0]?.name || '';

  const load = (pageIndex: number, reset: boolean) => {
    if (!chosen || (!reset && loading.current.has(pageIndex))) return;
    loading.current.add(pageIndex);
    get<Page>(
      `/api/v1/console/access/${encodeURIComponent(chosen)}${query({
        offset: pageIndex * PAGE,
        limit: PAGE,
        columnOffset,
        columnLimit: COLUMNS,
        q: applied.q,
        namespace: applied.namespace,
        only: applied.only,
      })}`,
    ).then(
      (page) => {
        setError(undefined);
        setMeta(page);
        setTotal(page.total);
        setPages((old) => new Map(reset ? [] : old).set(pageIndex, page.rows));
      },
      (e: unknown) => {
        loading.current.delete(pageIndex);
        setError(messageOf(e));
      },
    );
  };
  useEffect(() => {
    loading.current = new Set();
    load(0, true);
    // `load` reads the current filters; it is not itself a reason to reload.
  }, [chosen, applied, live, columnOffset]);

  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - 5);
  const count = Math.ceil(VIEW_HEIGHT / ROW_HEIGHT) + 10;
  const visible: { index: number; row: Row | undefined }[] = [];
  for (let i = first; i < Math.min(total ?? 0, first + count); i++) {
    visible.push({ index: i, row: pages.get(Math.floor(i / PAGE))?.[i % PAGE] });
  }
  useEffect(() => {
    for (const { index, row } of visible) if (row === undefined) load(Math.floor(index / PAGE), false);
  });

  return (
    <section aria-labelledby="who-heading">
      <h1 id="who-heading">Who has access</h1>
      <form
        className="inline-form"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setColumnOffset(0);
          setApplied(filters);
        }}
      >
        <label>
          Cluster
          <select value={chosen} onChange={(e) => setCluster(e.target.value)}>
            {(clusters.data?.items ?? []).map((c) => (
              <option key={c.name}>{c.name}</option>
            ))}
          </select>
        </label>
        <label>
          Person or subject
          <input name="q" value={filters.q} onChange={(e) => setFilters({ ...filters, q: e.target.value })} />
        </label>
        <label>
          Namespace
          <input
            name="namespace"
            value={filters.namespace}
            onChange={(e) => setFilters({ ...filters, namespace: e.target.value })}
          />
        </label>
        <label>
          Show
          <select name="only" value={filters.only} onChange={(e) => setFilters({ ...filters, only: e.target.value })}>
            <option value="">everyone</option>
            <option value="people">people with visas</option>
            <option value="unmanaged">unmanaged subjects</option>
            <option value="findings">with findings</option>
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <Alert kind="error">{error ?? clusters.error}</Alert>
      {meta && (
        <div className="matrix-status">
          <p className="muted" role="status">
            {total} subject(s) · {meta.counts.bindings} bindings in {meta.cluster} · analysed {when(meta.analysedAt)}
          </p>
          {meta.columnTotal > meta.columns.length && (
            <p className="column-pages">
              <button
                type="button"
                className="secondary"
                disabled={meta.columnOffset === 0}
                onClick={() => setColumnOffset(Math.max(0, meta.columnOffset - COLUMNS))}
              >
                ← Earlier namespaces
              </button>{' '}
              <span aria-live="polite">
                namespaces {meta.columnOffset + 1}–{meta.columnOffset + meta.columns.length} of {meta.columnTotal}
              </span>{' '}
              <button
                type="button"
                className="secondary"
                disabled={meta.columnOffset + meta.columns.length >= meta.columnTotal}
                onClick={() => setColumnOffset(meta.columnOffset + COLUMNS)}
              >
                Later namespaces →
              </button>
            </p>
          )}
        </div>
      )}
      {total === 0 ? (
        <Empty>Nobody matches.</Empty>
      ) : (
        <div
          className="matrix"
          role="table"
          aria-label={`Who has access to ${chosen}`}
          aria-rowcount={(total ?? 0) + 1}
          aria-colcount={(meta?.columnTotal ?? 0) + 1}
          tabIndex={0}
          onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
          ref={(el) => el?.style.setProperty('--columns', String(Math.max(1, meta?.columns.length ?? 1)))}
        >
          <div className="matrix-row matrix-head" role="row" aria-rowindex={1}>
            <span role="columnheader" className="subject">
              Subject
            </span>
            {(meta?.columns ?? []).map((ns, i) => (
              <span key={ns} role="columnheader" aria-colindex={(meta?.columnOffset ?? 0) + i + 2} title={ns}>
                {ns || 'cluster scope'}
              </span>
            ))}
          </div>
          <div className="matrix-inner" ref={(el) => el?.style.setProperty('height', `${(total ?? 0) * ROW_HEIGHT}px`)}>
            {visible.map(({ index, row }) => (
              <MatrixRow
                key={index}
                index={index}
                row={row}
                columns={meta?.columns ?? []}
                columnOffset={meta?.columnOffset ?? 0}
                onSelect={(cell) => row && setSelected({ row, cell })}
              />
            ))}
          </div>
        </div>
      )}
      {selected && chosen && (
        <CellDrillDown cluster={chosen} row={selected.row} cell={selected.cell} close={() => setSelected(undefined)} />
      )}
    </section>
  );
}

function MatrixRow({
  index,
  row,
  columns,
  columnOffset,
  onSelect,
}: {
  index: number;
  row: Row | undefined;
  columns: string[];
  columnOffset: number;
  onSelect: (cell: Cell) => void;
}) {
  const place = (el: HTMLDivElement | null) =>
    el?.style.setProperty('transform', `translateY(${index * ROW_HEIGHT}px)`);
  if (!row) {
    return (
      <div className="matrix-row" role="row" aria-rowindex={index + 2} ref={place}>
        <span role="rowheader" className="muted">
          loading…
        </span>
      </div>
    );
  }
  const byNamespace = new Map(row.cells.map((cell) => [cell.namespace, cell]));
  return (
    <div
      className={`matrix-row${row.findings.length > 0 ? ' flagged' : ''}`}
      role="row"
      aria-rowindex={index + 2}
      ref={place}
      data-subject={row.subject}
    >
      <span role="rowheader" className="subject" title={row.subject}>
        {row.person ?? row.subject}
        <small>
          {row.kind === 'person' ? ' visa' : row.managed ? ' managed' : ` ${row.kind}`}
          {row.findings.map((f) => (
            <span key={f} className={`badge finding sev-${row.severity ?? 'low'}`}>
              {f}
            </span>
          ))}
        </small>
      </span>
      {columns.map((namespace, i) => {
        const cell = byNamespace.get(namespace);
        return (
          <span role="cell" key={namespace} aria-colindex={columnOffset + i + 2}>
            {cell && (
              <button
                type="button"
                className={`cell${cell.risks.length > 0 ? ' risky' : ''}`}
                onClick={() => onSelect(cell)}
                title={cell.risks.length > 0 ? `risks: ${cell.risks.join(', ')}` : undefined}
              >
                <span className="sr-only">{cell.namespace || 'cluster scope'} </span>
                {cell.roles.join(', ')}
                {cell.notAfter && (
                  <>
                    {' · '}
                    <Countdown until={cell.notAfter} />
                  </>
                )}
              </button>
            )}
          </span>
        );
      })}
    </div>
  );
}

function CellDrillDown({ cluster, row, cell, close }: { cluster: string; row: Row; cell: Cell; close: () => void }) {
  const detail = useLoad(
    () =>
      get<CellDetail>(
        `/api/v1/console/access/${encodeURIComponent(cluster)}/cell${query({ subject: row.subject, namespace: cell.namespace })}`,
      ),
    [cluster, row.subject, cell.namespace],
  );
  const visaId = cell.visaIds[0];
  const events = useLoad(
    () =>
      visaId
        ? get<{ items: AuditEvent[] }>(`/api/v1/audit/events${query({ visa: visaId, order: 'desc', limit: 20 })}`)
        : Promise.resolve({ items: [] as AuditEvent[] }),
    [visaId],
  );
  return (
    <div className="card drill" role="region" aria-label="What stands behind this access">
      <div className="card-head">
        <h2>
          {row.person ?? row.subject} in {cell.namespace || 'cluster scope'}
        </h2>
        <button type="button" className="secondary" onClick={close}>
          Close
        </button>
      </div>
      <Alert kind="error">{detail.error}</Alert>
      {detail.data && (
        <>
          <h3>Bindings</h3>
          <ul>
            {detail.data.grants.map((g) => (
              <li key={g.binding + g.role}>
                {g.binding} → {g.role}
                {g.visaId ? ` (visa ${g.visaId})` : g.managed ? ' (kubevisa)' : ' (not managed by kubevisa)'}
                {g.risks.map((r) => (
                  <span key={r} className="badge risk">
                    {r}
                  </span>
                ))}
              </li>
            ))}
          </ul>
          <h3>Permissions</h3>
          <ul className="rules">
            {detail.data.permissions.resources.map((p, i) => (
              <li key={i}>
                {p.verbs.join(', ')} {p.resource}
                {p.apiGroup ? `.${p.apiGroup}` : ''}
                {p.resourceNames.length > 0 ? ` named ${p.resourceNames.join(', ')}` : ''}
              </li>
            ))}
          </ul>
          {detail.data.findings.length > 0 && (
            <>
              <h3>Findings</h3>
              <ul>
                {detail.data.findings.map((f) => (
                  <li key={f.id}>
                    <span className={`badge finding sev-${f.severity}`}>{f.severity}</span> {f.summary}
                  </li>
                ))}
              </ul>
            </>
          )}
        </>
      )}
      {visaId && (
        <>
          <h3>Audit events of visa {visaId}</h3>
          <Alert kind="error">{events.error}</Alert>
          <ul>
            {(events.data?.items ?? []).map((e) => (
              <li key={e.seq}>
                {when(e.time)} · {e.action} by {e.actor} ({e.outcome})
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
