import { useState } from 'react';
import {
  get,
  post,
  api,
  type Engagement,
  type Person,
  type Profile,
  type Rule,
  type Session,
  type Visa,
} from '../api.ts';
import { link } from '../App.tsx';
import { Alert, Countdown, Empty, Scope, StateBadge } from '../components.tsx';
import { useAction, useLoad } from '../hooks.ts';
import { useLive } from '../live.ts';
import { when } from '../time.ts';

const SECTIONS = [
  ['visas', 'Visas'],
  ['engagements', 'Engagements'],
  ['profiles', 'Profiles'],
  ['people', 'People'],
  ['clusters', 'Clusters'],
  ['scim', 'SCIM tokens'],
  ['status', 'Alerts & status'],
] as const;

export function Admin({ session, section }: { session: Session; section: string }) {
  const current = SECTIONS.find(([key]) => key === section)?.[0] ?? 'visas';
  return (
    <section aria-labelledby="admin-heading">
      <h1 id="admin-heading">Admin</h1>
      <nav aria-label="Admin sections" className="tabs">
        <ul>
          {SECTIONS.map(([key, title]) => (
            <li key={key}>
              <a
                href={`/admin/${key}`}
                onClick={link(`/admin/${key}`)}
                aria-current={key === current ? 'page' : undefined}
              >
                {title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {current === 'visas' && <Visas />}
      {current === 'engagements' && <Engagements session={session} />}
      {current === 'profiles' && <Profiles />}
      {current === 'people' && <People />}
      {current === 'clusters' && <Clusters />}
      {current === 'scim' && <ScimTokens />}
      {current === 'status' && <Status />}
    </section>
  );
}

function Visas() {
  const live = useLive('visas');
  const visas = useLoad(() => get<{ items: Visa[] }>('/api/v1/visas'), [live]);
  const granting = (visas.data?.items ?? []).filter((v) => v.state === 'active' || v.state === 'approved');
  return (
    <>
      <h2>Granting visas ({granting.length})</h2>
      <Alert kind="error">{visas.error}</Alert>
      {granting.length === 0 ? (
        <Empty>No visa grants anything right now.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Who</th>
                <th scope="col">Scope</th>
                <th scope="col">State</th>
                <th scope="col">Left</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {granting.map((v) => (
                <tr key={v.id} data-visa-id={v.id}>
                  <td>{v.personEmail}</td>
                  <td>
                    <Scope visa={v} />
                  </td>
                  <td>
                    <StateBadge state={v.state} />
                  </td>
                  <td>
                    <Countdown until={v.notAfter} />
                  </td>
                  <td>
                    <Revoke visa={v} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function Revoke({ visa }: { visa: Visa }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState('');
  const action = useAction();
  if (!open) {
    return (
      <button type="button" className="danger" onClick={() => setOpen(true)}>
        Revoke…
      </button>
    );
  }
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(() => post(`/api/v1/visas/${visa.id}/revoke`, { reason }));
      }}
    >
      <label>
        Reason
        <input value={reason} onChange={(e) => setReason(e.target.value)} required maxLength={500} />
      </label>
      <button type="submit" className="danger" disabled={action.busy}>
        Revoke now
      </button>
      <button type="button" className="secondary" onClick={() => setOpen(false)}>
        Cancel
      </button>
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

function Engagements({ session }: { session: Session }) {
  const live = useLive('visas');
  const list = useLoad(() => get<{ items: Engagement[] }>('/api/v1/engagements'), [live]);
  const [creating, setCreating] = useState(false);
  return (
    <>
      <h2>Engagements</h2>
      <Alert kind="error">{list.error}</Alert>
      <button type="button" onClick={() => setCreating(!creating)}>
        {creating ? 'Close the form' : 'New engagement'}
      </button>
      {creating && <NewEngagement session={session} done={() => setCreating(false)} />}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Vendor</th>
              <th scope="col">Contractors</th>
              <th scope="col">Ceiling</th>
              <th scope="col">Ends</th>
              <th scope="col">Status</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {(list.data?.items ?? []).map((e) => (
              <tr key={e.id} data-engagement={e.name}>
                <td>{e.name}</td>
                <td>{e.vendor}</td>
                <td>{e.contractors.join(', ')}</td>
                <td>
                  {e.ceiling.profiles.join(', ')} on {e.ceiling.clusters.join(', ')} /{' '}
                  {e.ceiling.namespacePatterns.join(', ')} · ≤ {e.maxVisaDuration}
                </td>
                <td>{when(e.endsAt)}</td>
                <td>{e.status}</td>
                <td>
                  {e.status === 'active' && (
                    <div className="actions">
                      <ChangeEnd engagement={e} />
                      <EndEngagement engagement={e} />
                    </div>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/**
 * Moves the end date. An earlier end ends or shortens the visas past it (said before and after); a later one changes
 * no visa: longer access is a new request.
 */
function ChangeEnd({ engagement }: { engagement: Engagement }) {
  const [open, setOpen] = useState(false);
  const [date, setDate] = useState(engagement.endsAt.slice(0, 10));
  const [time, setTime] = useState(engagement.endsAt.slice(11, 16));
  const [reason, setReason] = useState('');
  const [outcome, setOutcome] = useState<string>();
  const action = useAction();
  if (!open) {
    return (
      <>
        <button type="button" className="secondary" onClick={() => setOpen(true)}>
          Change end date…
        </button>
        {outcome && (
          <p className="alert notice" role="status">
            {outcome}
          </p>
        )}
      </>
    );
  }
  const endsAt = `${date}T${time || '00:00'}:00Z`;
  const earlier = Date.parse(endsAt) < Date.parse(engagement.endsAt);
  return (
    <form
      className="inline-form"
      aria-label={`Change the end date of ${engagement.name}`}
      onSubmit={(e) => {
        e.preventDefault();
        void action
          .run(async () => {
            const changed = await post<Engagement & { visasEnded: string[]; visasShortened: string[] }>(
              `/api/v1/engagements/${engagement.id}/end-date`,
              { endsAt, reason },
            );
            setOutcome(
              `Now ends ${when(changed.endsAt)}: ${changed.visasShortened.length} visa(s) shortened, ${changed.visasEnded.length} ended.`,
            );
          })
          .then((ok) => ok && setOpen(false));
      }}
    >
      <label>
        New end (UTC)
        <input type="date" name="endsOn" value={date} onChange={(e) => setDate(e.target.value)} required />
      </label>
      <label>
        Time (UTC)
        <input type="time" name="endsTime" value={time} onChange={(e) => setTime(e.target.value)} />
      </label>
      <label>
        Reason
        <input name="reason" value={reason} onChange={(e) => setReason(e.target.value)} required maxLength={500} />
      </label>
      <p className="muted">
        {earlier
          ? 'Earlier: visas running past the new end are shortened to it, and those that would start after it are ended.'
          : 'Later: no visa is lengthened; longer access needs a new request.'}
      </p>
      <button type="submit" className={earlier ? 'danger' : undefined} disabled={action.busy}>
        Move the end date
      </button>
      <button type="button" className="secondary" onClick={() => setOpen(false)}>
        Cancel
      </button>
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

function EndEngagement({ engagement }: { engagement: Engagement }) {
  const [reason, setReason] = useState('');
  const [open, setOpen] = useState(false);
  const action = useAction();
  if (!open) {
    return (
      <button type="button" className="danger" onClick={() => setOpen(true)}>
        End now…
      </button>
    );
  }
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(() => post(`/api/v1/engagements/${engagement.id}/end`, { reason }));
      }}
    >
      <label>
        Reason
        <input value={reason} onChange={(e) => setReason(e.target.value)} required maxLength={500} />
      </label>
      <button type="submit" className="danger" disabled={action.busy}>
        End and revoke its visas
      </button>
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

function NewEngagement({ session, done }: { session: Session; done: () => void }) {
  const [form, setForm] = useState({
    name: '',
    vendor: '',
    contractors: '',
    sponsor: session.person.email,
    endsAt: new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10),
    clusters: '',
    namespacePatterns: '',
    profiles: 'viewer',
    maxVisaDuration: '8h',
  });
  const action = useAction();
  const list = (text: string) =>
    text
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
  const field = (key: keyof typeof form, label: string, help?: string) => (
    <label>
      {label}
      <input
        name={key}
        value={form[key]}
        required
        type={key === 'endsAt' ? 'date' : 'text'}
        onChange={(e) => setForm({ ...form, [key]: e.target.value })}
        title={help}
      />
    </label>
  );
  return (
    <form
      className="form"
      aria-label="New engagement"
      onSubmit={(e) => {
        e.preventDefault();
        void action
          .run(() =>
            post('/api/v1/engagements', {
              name: form.name,
              vendor: form.vendor,
              contractors: list(form.contractors),
              sponsor: form.sponsor,
              endsAt: new Date(`${form.endsAt}T23:59:59Z`).toISOString(),
              ceiling: {
                clusters: list(form.clusters),
                namespacePatterns: list(form.namespacePatterns),
                profiles: list(form.profiles),
              },
              maxVisaDuration: form.maxVisaDuration,
            }),
          )
          .then((ok) => ok && done());
      }}
    >
      {field('name', 'Name')}
      {field('vendor', 'Vendor')}
      {field('contractors', 'Contractors (emails)')}
      {field('sponsor', 'Sponsor (email)')}
      {field('endsAt', 'Ends on')}
      {field('clusters', 'Clusters')}
      {field('namespacePatterns', 'Namespace patterns', 'e.g. payments, staging-*')}
      {field('profiles', 'Profiles')}
      {field('maxVisaDuration', 'Longest visa')}
      <button type="submit" disabled={action.busy}>
        Create engagement
      </button>
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

function Profiles() {
  const profiles = useLoad(() => get<{ items: Profile[] }>('/api/v1/profiles'), []);
  return (
    <>
      <h2>Profiles</h2>
      <Alert kind="error">{profiles.error}</Alert>
      <ul className="cards">
        {(profiles.data?.items ?? []).map((p) => (
          <li key={p.name} className="card">
            <div className="card-head">
              <strong>{p.name}</strong>
              <span>
                ≤ {p.maxVisaDuration}
                {p.recordSessions ? ' · sessions recorded' : ''}
              </span>
            </div>
            <p>{p.description}</p>
            {p.declaredRisks.length > 0 && (
              <p>
                Declared risks:{' '}
                {p.declaredRisks.map((r) => (
                  <span key={r.risk} className="badge risk" title={r.justification}>
                    {r.risk}
                  </span>
                ))}
              </p>
            )}
            <ul className="rules">
              {p.rules.map((rule, i) => (
                <li key={i}>{describeRule(rule)}</li>
              ))}
            </ul>
          </li>
        ))}
      </ul>
    </>
  );
}

/** "get, list, watch pods, pods/log (core)" */
export function describeRule(rule: Rule): string {
  const verbs = rule.verbs.join(', ');
  if (rule.nonResourceURLs?.length) return `${verbs} on URLs ${rule.nonResourceURLs.join(', ')}`;
  const groups = (rule.apiGroups ?? ['']).map((g) => (g === '' ? 'core' : g)).join(', ');
  const names = rule.resourceNames?.length ? ` named ${rule.resourceNames.join(', ')}` : '';
  return `${verbs} ${(rule.resources ?? []).join(', ')}${names} (${groups})`;
}

interface Step {
  id: string;
  step: string;
  status: string;
  ok: boolean;
  detail: string;
  proof: string;
}
interface Receipt {
  id: string;
  status: string;
  summary: string;
  steps: Step[];
}

interface PersonSession {
  id: string;
  createdAt: string;
  lastUsedAt?: string;
  expiresAt: string;
  revokedAt?: string;
  revokeReason?: string;
  state: 'open' | 'expired' | 'ended';
}

interface PersonOverview extends Person {
  issuer: string;
  identityProviders: { idp: string; active: boolean; linked: boolean; userName: string; updatedAt: string }[];
  sessions: PersonSession[];
}

/** What the identity providers say: each SCIM record's provider and state, or that only sign-ins know the person. */
function idpStatus(p: PersonOverview): string {
  if (p.identityProviders.length === 0) return `no SCIM record (signs in through ${p.issuer})`;
  return p.identityProviders
    .map(
      (r) =>
        `${r.idp}: ${r.active ? 'active' : 'deactivated'} (as ${r.userName}, ${when(r.updatedAt)}${r.linked ? '' : '; not linked, so it does not act on them'})`,
    )
    .join('; ');
}

function People() {
  const live = useLive('visas');
  const people = useLoad(() => get<{ items: PersonOverview[] }>('/api/v1/console/people'), [live]);
  const [offboarding, setOffboarding] = useState<Person>();
  const [shown, setShown] = useState<string>();
  return (
    <>
      <h2>People</h2>
      <Alert kind="error">{people.error}</Alert>
      {offboarding && <Offboard person={offboarding} close={() => setOffboarding(undefined)} />}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Name</th>
              <th scope="col">Roles</th>
              <th scope="col">Groups</th>
              <th scope="col">Status</th>
              <th scope="col">Identity provider</th>
              <th scope="col">Sessions</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {(people.data?.items ?? []).map((p) => (
              <tr key={p.id} data-person={p.email}>
                <td>{p.email}</td>
                <td>{p.displayName}</td>
                <td>{p.roles.join(', ') || '—'}</td>
                <td>{p.groups.join(', ') || '—'}</td>
                <td>{p.status}</td>
                <td data-idp-status>{idpStatus(p)}</td>
                <td>
                  <button
                    type="button"
                    className="secondary"
                    aria-expanded={shown === p.id}
                    onClick={() => setShown(shown === p.id ? undefined : p.id)}
                  >
                    {p.sessions.filter((s) => s.state === 'open').length} open of {p.sessions.length}
                  </button>
                  {shown === p.id && <Sessions sessions={p.sessions} />}
                </td>
                <td>
                  {p.status === 'active' && (
                    <button type="button" className="danger" onClick={() => setOffboarding(p)}>
                      Offboard…
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function Sessions({ sessions }: { sessions: PersonSession[] }) {
  if (sessions.length === 0) return <p className="muted">never signed in</p>;
  return (
    <ul className="sessions" aria-label="Sessions">
      {sessions.map((s) => (
        <li key={s.id} data-session={s.state}>
          <code>{s.id}</code> {s.state}: from {when(s.createdAt)}, last used {when(s.lastUsedAt)},{' '}
          {s.revokedAt ? `ended ${when(s.revokedAt)} (${s.revokeReason ?? ''})` : `ends ${when(s.expiresAt)}`}
        </li>
      ))}
    </ul>
  );
}

/** Offboards and shows the receipt step by step as each proof arrives. */
function Offboard({ person, close }: { person: Person; close: () => void }) {
  const [reason, setReason] = useState('');
  const [receipt, setReceipt] = useState<Receipt>();
  const action = useAction();
  const follow = async (started: Receipt) => {
    setReceipt(started);
    for (let i = 0; i < 120 && started.status !== 'proven'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const next = await get<Receipt>(`/api/v1/offboardings/${started.id}`);
      setReceipt(next);
      if (next.steps.every((s) => s.ok) || next.status === 'proven' || next.status === 'failed') break;
    }
  };
  return (
    <div className="card" role="region" aria-label={`Offboard ${person.email}`}>
      <h3>Offboard {person.email}</h3>
      {receipt === undefined ? (
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(async () =>
              follow(await api<Receipt>('POST', `/api/v1/persons/${person.id}/offboarding`, { reason, wait: false })),
            );
          }}
        >
          <label>
            Reason
            <input value={reason} onChange={(e) => setReason(e.target.value)} required maxLength={500} />
          </label>
          <button type="submit" className="danger" disabled={action.busy}>
            Offboard now
          </button>
          <button type="button" className="secondary" onClick={close}>
            Cancel
          </button>
        </form>
      ) : (
        <>
          <p role="status">
            {receipt.status}: {receipt.summary}
          </p>
          <ol className="receipt">
            {receipt.steps.map((s) => (
              <li key={s.id} className={s.ok ? 'ok' : 'pending'}>
                <strong>{s.ok ? '✓' : '…'}</strong> {s.step} — <span className="muted">{s.detail}</span>
              </li>
            ))}
          </ol>
          <button type="button" className="secondary" onClick={close}>
            Close
          </button>
        </>
      )}
      <Alert kind="error">{action.error}</Alert>
    </div>
  );
}

function Clusters() {
  const clusters = useLoad(
    () => get<{ items: { name: string; server: string; directMode?: boolean }[] }>('/api/v1/clusters'),
    [],
  );
  return (
    <>
      <h2>Clusters</h2>
      <Alert kind="error">{clusters.error}</Alert>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">API server</th>
              <th scope="col">Mode</th>
            </tr>
          </thead>
          <tbody>
            {(clusters.data?.items ?? []).map((c) => (
              <tr key={c.name}>
                <td>{c.name}</td>
                <td>
                  <code>{c.server}</code>
                </td>
                <td>{c.directMode ? 'gateway and direct' : 'gateway only'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

interface ScimToken {
  id: string;
  idp: string;
  state: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt?: string;
}

function ScimTokens() {
  const tokens = useLoad(() => get<{ items: ScimToken[] }>('/api/v1/scim/tokens'), []);
  const [idp, setIdp] = useState('');
  const [secret, setSecret] = useState<{ token: string; scimUrl: string }>();
  const action = useAction();
  return (
    <>
      <h2>SCIM tokens</h2>
      <Alert kind="error">{tokens.error}</Alert>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            setSecret(await post<{ token: string; scimUrl: string }>('/api/v1/scim/tokens', { idp }));
            tokens.reload();
          });
        }}
      >
        <label>
          Identity provider
          <input value={idp} onChange={(e) => setIdp(e.target.value)} required placeholder="okta" maxLength={63} />
        </label>
        <button type="submit" disabled={action.busy}>
          Create token
        </button>
      </form>
      <Alert kind="error">{action.error}</Alert>
      {secret && (
        <div className="card secret" role="status">
          <p>
            <strong>Copy this token now: it is shown only once.</strong> Give it to your identity provider with the SCIM
            URL <code>{secret.scimUrl}</code>.
          </p>
          <code className="token" data-secret>
            {secret.token}
          </code>
          <button type="button" className="secondary" onClick={() => setSecret(undefined)}>
            I have copied it
          </button>
        </div>
      )}
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">Provider</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
            </tr>
          </thead>
          <tbody>
            {(tokens.data?.items ?? []).map((t) => (
              <tr key={t.id}>
                <td>
                  <code>{t.id}</code>
                </td>
                <td>{t.idp}</td>
                <td>{t.state}</td>
                <td>
                  {when(t.createdAt)} by {t.createdBy}
                </td>
                <td>{when(t.lastUsedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

interface ConsoleStatus {
  alerts: {
    sinks: { name: string; type: string; events: string[] | 'all' }[];
    expiryNoticeSeconds: number;
    metricsProtected: boolean;
    staleAfterDays: number;
    revokeStale: boolean;
    scanIntervalSeconds: number;
  };
}

function Status() {
  const status = useLoad(() => get<ConsoleStatus>('/api/v1/console/status'), []);
  const alerts = status.data?.alerts;
  return (
    <>
      <h2>Alerts & status</h2>
      <Alert kind="error">{status.error}</Alert>
      {alerts && (
        <dl className="facts">
          <dt>Alert sinks</dt>
          <dd>
            {alerts.sinks.length === 0
              ? 'none configured: alerts only reach /metrics and the audit trail'
              : alerts.sinks
                  .map((s) => `${s.name} (${s.type}, ${s.events === 'all' ? 'every event' : s.events.join(', ')})`)
                  .join('; ')}
          </dd>
          <dt>Expiry notice</dt>
          <dd>{Math.round(alerts.expiryNoticeSeconds / 60)} min before a visa ends</dd>
          <dt>Stale access</dt>
          <dd>
            after {alerts.staleAfterDays} day(s) unused, {alerts.revokeStale ? 'revoked' : 'alerted'}
          </dd>
          <dt>Exposure scans</dt>
          <dd>
            {alerts.scanIntervalSeconds > 0 ? `every ${Math.round(alerts.scanIntervalSeconds / 60)} min` : 'on demand'}
          </dd>
          <dt>/metrics</dt>
          <dd>{alerts.metricsProtected ? 'needs a bearer token' : 'open'}</dd>
        </dl>
      )}
    </>
  );
}
