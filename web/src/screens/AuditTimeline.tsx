import { useEffect, useRef, useState } from 'react';
import { get, post, query, type Engagement } from '../api.ts';
import { Alert, Empty } from '../components.tsx';
import { useAction, useLoad } from '../hooks.ts';
import { useLive } from '../live.ts';
import { when } from '../time.ts';

interface AuditEvent {
  seq: number;
  time: string;
  actor: string;
  action: string;
  outcome: string;
  visaId?: string;
  engagementId?: string;
  cluster?: string;
  namespace?: string;
  details?: Record<string, unknown>;
}
interface Checkpoint {
  seq: number;
  time: string;
  keyId: string;
}
interface Verdict {
  ok: boolean;
  checked?: number;
  message?: string;
  [key: string]: unknown;
}

const FILTERS = ['person', 'visa', 'engagement', 'cluster', 'namespace', 'action', 'since', 'until'] as const;
type Filters = Record<(typeof FILTERS)[number], string>;
const EMPTY: Filters = {
  person: '',
  visa: '',
  engagement: '',
  cluster: '',
  namespace: '',
  action: '',
  since: '',
  until: '',
};

export function AuditTimeline() {
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [applied, setApplied] = useState<Filters>(EMPTY);
  const [tail, setTail] = useState(true);
  const [older, setOlder] = useState<AuditEvent[]>([]);
  const [replay, setReplay] = useState<AuditEvent>();
  const live = useLive('audit');
  const newest = useLoad(
    () =>
      get<{ items: AuditEvent[]; next?: { before: number } }>(
        `/api/v1/audit/events${query({ ...applied, order: 'desc', limit: 100 })}`,
      ),
    [applied, tail ? live : 0],
  );
  useEffect(() => setOlder([]), [applied]);
  const items = [...(newest.data?.items ?? []), ...older];
  const last = items.at(-1);
  const more = useAction();

  return (
    <section aria-labelledby="audit-heading">
      <h1 id="audit-heading">Audit</h1>
      <ChainStatus />
      <form
        className="inline-form"
        role="search"
        aria-label="Filter the audit trail"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(filters);
        }}
      >
        {FILTERS.map((key) => (
          <label key={key}>
            {key}
            <input
              name={key}
              value={filters[key]}
              placeholder={key === 'since' || key === 'until' ? '2026-01-31T00:00:00Z' : undefined}
              onChange={(e) => setFilters({ ...filters, [key]: e.target.value })}
            />
          </label>
        ))}
        <button type="submit">Filter</button>
        <label className="check">
          <input type="checkbox" checked={tail} onChange={(e) => setTail(e.target.checked)} /> Live tail
        </label>
        <a
          className="button secondary-link"
          href={`/api/v1/audit/export${query({ ...applied })}`}
          download="kubevisa-audit.jsonl"
        >
          Export (JSON lines)
        </a>
      </form>
      <EvidencePack />
      <Alert kind="error">{newest.error ?? more.error}</Alert>
      {items.length === 0 ? (
        <Empty>No event matches.</Empty>
      ) : (
        <div className="table-wrap">
          <table aria-label="Audit events, newest first">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col">Where</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.seq} data-seq={e.seq}>
                  <td>{e.seq}</td>
                  <td>{when(e.time)}</td>
                  <td>{e.actor}</td>
                  <td>
                    {e.action}
                    {e.visaId ? ` · ${e.visaId}` : ''}
                    {recordingOf(e) && (
                      <>
                        {' '}
                        <button type="button" className="secondary" onClick={() => setReplay(e)}>
                          Replay session
                        </button>
                      </>
                    )}
                  </td>
                  <td>{[e.cluster, e.namespace].filter(Boolean).join(' / ') || '—'}</td>
                  <td>{e.outcome}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {last && items.length >= 100 && (
        <button
          type="button"
          className="secondary"
          disabled={more.busy}
          onClick={() =>
            void more.run(async () => {
              const page = await get<{ items: AuditEvent[] }>(
                `/api/v1/audit/events${query({ ...applied, order: 'desc', limit: 100, before: last.seq })}`,
              );
              setOlder((o) => [...o, ...page.items]);
            })
          }
        >
          Older events
        </button>
      )}
      {replay && <Replay event={replay} close={() => setReplay(undefined)} />}
    </section>
  );
}

function recordingOf(e: AuditEvent): boolean {
  const recording = e.details?.['recording'];
  return typeof recording === 'object' && recording !== null && 'file' in recording;
}

function ChainStatus() {
  const checkpoints = useLoad(() => get<{ items: Checkpoint[] }>('/api/v1/audit/checkpoints'), []);
  const [verdict, setVerdict] = useState<Verdict>();
  const action = useAction();
  const lastCheckpoint = checkpoints.data?.items.at(-1);
  return (
    <div className="card" role="region" aria-label="Chain verification">
      <div className="card-head">
        <span>
          Last signed checkpoint:{' '}
          {lastCheckpoint
            ? `#${lastCheckpoint.seq} at ${when(lastCheckpoint.time)} (key ${lastCheckpoint.keyId})`
            : 'none yet'}
        </span>
        <button
          type="button"
          className="secondary"
          disabled={action.busy}
          onClick={() => void action.run(async () => setVerdict(await post<Verdict>('/api/v1/audit/verify', {})))}
        >
          Verify the chain
        </button>
      </div>
      {verdict && (
        <p className={verdict.ok ? 'ok-text' : 'alert error'} role="status" data-verdict={verdict.ok ? 'ok' : 'broken'}>
          {verdict.ok ? 'The chain verifies' : 'The chain does not verify'}
          {verdict.message ? `: ${verdict.message}` : ''}
        </p>
      )}
      <Alert kind="error">{action.error ?? checkpoints.error}</Alert>
    </div>
  );
}

interface EvidenceManifest {
  engagement: Engagement;
  generatedAt: string;
  window: { afterSeq: number; throughSeq: number };
  checkpoints: unknown[];
  publicKey: { algorithm: string; keyId: string; publicKeyPem: string };
}

/**
 * An engagement's evidence pack as the CLI writes it (`kubevisa audit evidence`): the events of a window closed by a
 * checkpoint signed now (other engagements' events redacted to their hashes), the signed checkpoints, the public
 * key and the engagement, each a file the auditor downloads and verifies offline with `kubevisa audit verify`.
 */
function EvidencePack() {
  const engagements = useLoad(() => get<{ items: Engagement[] }>('/api/v1/engagements'), []);
  const [engagement, setEngagement] = useState('');
  const [pack, setPack] = useState<{ name: string; files: [string, string][] }>();
  const action = useAction();
  const chosen = engagement || engagements.data?.items[0]?.id || '';
  useEffect(() => () => pack?.files.forEach(([, url]) => URL.revokeObjectURL(url)), [pack]);
  const file = (text: string, type: string) => URL.createObjectURL(new Blob([text], { type }));
  return (
    <form
      className="inline-form"
      aria-label="Evidence pack"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(async () => {
          const manifest = await post<EvidenceManifest>('/api/v1/audit/evidence', { engagement: chosen });
          const response = await fetch(
            `/api/v1/audit/evidence/${encodeURIComponent(manifest.engagement.id)}/events${query({
              after: manifest.window.afterSeq,
              through: manifest.window.throughSeq,
            })}`,
            { credentials: 'same-origin' },
          );
          if (!response.ok) throw new Error(`the pack's events could not be read (HTTP ${response.status})`);
          setPack({
            name: manifest.engagement.name,
            files: [
              ['events.jsonl', file(await response.text(), 'application/x-ndjson')],
              ['checkpoints.json', file(`${JSON.stringify(manifest.checkpoints, null, 2)}\n`, 'application/json')],
              ['public-key.pem', file(manifest.publicKey.publicKeyPem, 'application/x-pem-file')],
              ['engagement.json', file(`${JSON.stringify(manifest.engagement, null, 2)}\n`, 'application/json')],
            ],
          });
        });
      }}
    >
      <label>
        Evidence pack for
        <select value={chosen} onChange={(e) => setEngagement(e.target.value)}>
          {(engagements.data?.items ?? []).map((e) => (
            <option key={e.id} value={e.id}>
              {e.name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" className="secondary" disabled={!chosen || action.busy}>
        Make the pack
      </button>
      {pack && (
        <div role="region" aria-label={`Evidence pack of ${pack.name}`}>
          <p>
            Download each file:{' '}
            {pack.files.map(([name, url]) => (
              <a key={name} href={url} download={name} className="file-link">
                {name}
              </a>
            ))}
          </p>
          <p className="muted">
            Check it offline:{' '}
            <code>
              kubevisa audit verify --from events.jsonl --checkpoint checkpoints.json --public-key public-key.pem
            </code>
          </p>
        </div>
      )}
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

/** Plays an asciicast v2 recording: output frames at their recorded times (escape sequences dropped). */
function Replay({ event, close }: { event: AuditEvent; close: () => void }) {
  const cast = useLoad(async () => {
    const response = await fetch(`/api/v1/console/recordings/${event.seq}`, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(((await response.json()) as { detail?: string }).detail ?? 'no recording');
    return response.text();
  }, [event.seq]);
  const [shown, setShown] = useState('');
  const [playing, setPlaying] = useState(false);
  const timers = useRef<number[]>([]);
  const frames = parseCast(cast.data ?? '');
  const play = () => {
    for (const t of timers.current) clearTimeout(t);
    setShown('');
    setPlaying(true);
    let text = '';
    timers.current = frames.map(([at, data], i) =>
      window.setTimeout(
        () => {
          text = applyOutput(text, data);
          setShown(text);
          if (i === frames.length - 1) setPlaying(false);
        },
        Math.min(at, 600) * 1000,
      ),
    );
  };
  useEffect(() => () => timers.current.forEach((t) => clearTimeout(t)), []);
  return (
    <div className="card" role="region" aria-label="Session replay">
      <div className="card-head">
        <h2>Recorded session #{event.seq}</h2>
        <span>
          <button type="button" onClick={play} disabled={!cast.data || playing}>
            {playing ? 'Playing…' : 'Play'}
          </button>{' '}
          <button
            type="button"
            className="secondary"
            onClick={() => setShown(frames.reduce((t, [, d]) => applyOutput(t, d), ''))}
          >
            Show all
          </button>{' '}
          <button type="button" className="secondary" onClick={close}>
            Close
          </button>
        </span>
      </div>
      <Alert kind="error">{cast.error}</Alert>
      <pre className="terminal" aria-live="polite" data-replay>
        {shown}
      </pre>
    </div>
  );
}

function parseCast(text: string): [number, string][] {
  const frames: [number, string][] = [];
  for (const line of text.split('\n').slice(1)) {
    if (!line.trim()) continue;
    try {
      const frame = JSON.parse(line) as [number, string, string];
      if (frame[1] === 'o') frames.push([frame[0], frame[2]]);
    } catch {
      frames.push([frames.at(-1)?.[0] ?? 0, '\n[unreadable frame]\n']);
    }
  }
  return frames;
}

function applyOutput(text: string, data: string): string {
  // eslint-disable-next-line no-control-regex
  const plain = data.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007]*\u0007|\u001b[()][A-Z0-9]/g, '');
  let out = text;
  for (const ch of plain) {
    if (ch === '\r') continue;
    if (ch === '\b') out = out.slice(0, -1);
    else out += ch;
  }
  return out.length > 200_000 ? out.slice(-200_000) : out;
}
