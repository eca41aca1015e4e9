import { useState } from 'react';
import { get, post, query, type Profile, type Session, type Visa } from '../api.ts';
import { Alert, Countdown, Empty, Scope, StateBadge } from '../components.tsx';
import { useAction, useLoad, useNow } from '../hooks.ts';
import { useLive } from '../live.ts';
import { ago, when } from '../time.ts';

/** What approving a request as asked would do now, as the server's policy sees it. */
type Verdict =
  | { kind: 'grants'; notBefore: string; notAfter: string; shortened?: string }
  | { kind: 'needs-more'; missing: number }
  | { kind: 'refused'; code: string; message: string };

/** A pending request with the policy's verdict and the profile linter's findings. */
interface Reviewed extends Visa {
  verdict: Verdict;
  findings: { risk: string; message: string; justification?: string }[];
}

/** What approvers decide: pending requests and extensions, and the visas about to end. */
export function Queue({ session }: { session: Session }) {
  const live = useLive('visas');
  const pending = useLoad(() => get<{ items: Reviewed[] }>('/api/v1/console/queue'), [live]);
  const active = useLoad(() => get<{ items: Visa[] }>(`/api/v1/visas${query({ state: 'active' })}`), [live]);
  const profiles = useLoad(() => get<{ items: Profile[] }>('/api/v1/profiles'), []);
  const now = useNow(30_000);
  const byName = new Map((profiles.data?.items ?? []).map((p) => [p.name, p]));
  const requests = pending.data?.items ?? [];
  const soon = (active.data?.items ?? [])
    .filter((v) => v.notAfter !== undefined && Date.parse(v.notAfter) - now < session.expiryNoticeSeconds * 1000)
    .sort((a, b) => (a.notAfter ?? '').localeCompare(b.notAfter ?? ''));
  return (
    <section aria-labelledby="queue-heading">
      <h1 id="queue-heading">Approvals</h1>
      <Alert kind="error">{pending.error ?? active.error}</Alert>
      <h2>Waiting for a decision ({requests.length})</h2>
      {requests.length === 0 ? (
        <Empty>Nothing waits for you.</Empty>
      ) : (
        <ul className="cards">
          {requests.map((v) => (
            <Request key={v.id} visa={v} profile={byName.get(v.profile)} session={session} now={now} />
          ))}
        </ul>
      )}
      <h2>Ending soon</h2>
      {soon.length === 0 ? (
        <Empty>No visa ends within the notice period.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Who</th>
                <th scope="col">Scope</th>
                <th scope="col">Left</th>
              </tr>
            </thead>
            <tbody>
              {soon.map((v) => (
                <tr key={v.id}>
                  <td>{v.personEmail}</td>
                  <td>
                    <Scope visa={v} />
                  </td>
                  <td>
                    <Countdown until={v.notAfter} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function VerdictText({ verdict }: { verdict: Verdict }) {
  if (verdict.kind === 'refused') {
    return (
      <span className="verdict refused">
        approving would be refused: {verdict.message} ({verdict.code})
      </span>
    );
  }
  if (verdict.kind === 'needs-more') {
    return <span className="verdict">your approval counts; {verdict.missing} more approval(s) needed after it</span>;
  }
  return (
    <span className="verdict ok">
      approving grants it from {when(verdict.notBefore)} to {when(verdict.notAfter)}
      {verdict.shortened ? ` (shorter than asked: ${verdict.shortened})` : ''}
    </span>
  );
}

function Request({
  visa,
  profile,
  session,
  now,
}: {
  visa: Reviewed;
  profile: Profile | undefined;
  session: Session;
  now: number;
}) {
  const [mode, setMode] = useState<'idle' | 'narrow' | 'deny'>('idle');
  const [namespaces, setNamespaces] = useState<string[]>(visa.namespaces);
  const [duration, setDuration] = useState(visa.requestedDuration);
  const [comment, setComment] = useState('');
  const action = useAction();
  const own = visa.personId === session.person.id;
  return (
    <li className="card" data-visa-id={visa.id} aria-label={`Request by ${visa.personEmail}`}>
      <div className="card-head">
        <span>
          <strong>{visa.personEmail}</strong> asks for <Scope visa={visa} />
        </span>
        <StateBadge state={visa.state} />
      </div>
      <dl className="facts">
        <dt>For</dt>
        <dd>
          {visa.requestedDuration}
          {visa.notBefore ? ` from ${when(visa.notBefore)}` : ' from approval'}
        </dd>
        <dt>Reason</dt>
        <dd>{visa.reason}</dd>
        <dt>Asked</dt>
        <dd>{ago(visa.requestedAt, now)}</dd>
        <dt>Policy</dt>
        <dd>
          {visa.approvals.length} of {visa.requiredApprovals} approval(s)
          {visa.extends ? ` · extension of ${visa.extends}` : ''}
        </dd>
        <dt>Verdict</dt>
        <dd data-verdict={visa.verdict.kind}>
          <VerdictText verdict={visa.verdict} />
        </dd>
        <dt>Risks</dt>
        <dd>
          {profile === undefined
            ? '—'
            : profile.declaredRisks.length === 0
              ? 'none declared'
              : profile.declaredRisks.map((r) => (
                  <span key={r.risk} className="badge risk" title={r.justification}>
                    {r.risk}: {r.justification}
                  </span>
                ))}
        </dd>
        <dt>Linter</dt>
        <dd data-findings>
          {visa.findings.length === 0 ? (
            `no finding on ${visa.profile}'s rules`
          ) : (
            <ul className="findings">
              {visa.findings.map((f) => (
                <li key={`${f.risk} ${f.message}`}>
                  <span className="badge risk">{f.risk}</span> {f.message}
                  {f.justification === undefined ? (
                    <strong> — not declared</strong>
                  ) : (
                    <span className="muted"> — declared: {f.justification}</span>
                  )}
                </li>
              ))}
            </ul>
          )}
        </dd>
      </dl>
      {own ? (
        <p className="muted">This is your own request: someone else must decide it.</p>
      ) : mode === 'idle' ? (
        <div className="actions">
          <button
            type="button"
            disabled={action.busy}
            onClick={() => void action.run(() => post(`/api/v1/visas/${visa.id}/approve`, {}))}
          >
            Approve
          </button>
          <button type="button" className="secondary" onClick={() => setMode('narrow')}>
            Approve narrower…
          </button>
          <button type="button" className="danger" onClick={() => setMode('deny')}>
            Deny…
          </button>
        </div>
      ) : mode === 'narrow' ? (
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(() =>
              post(`/api/v1/visas/${visa.id}/approve`, {
                namespaces,
                duration,
                ...(comment ? { comment } : {}),
              }),
            );
          }}
        >
          <fieldset>
            <legend>Namespaces to grant</legend>
            {visa.namespaces.map((ns) => (
              <label key={ns} className="check">
                <input
                  type="checkbox"
                  checked={namespaces.includes(ns)}
                  onChange={(e) =>
                    setNamespaces(e.target.checked ? [...namespaces, ns] : namespaces.filter((n) => n !== ns))
                  }
                />
                {ns}
              </label>
            ))}
          </fieldset>
          <label>
            For (at most {visa.requestedDuration})
            <input value={duration} onChange={(e) => setDuration(e.target.value)} required maxLength={32} />
          </label>
          <label>
            Comment
            <input value={comment} onChange={(e) => setComment(e.target.value)} maxLength={500} />
          </label>
          <button type="submit" disabled={action.busy || namespaces.length === 0}>
            Approve these
          </button>
          <button type="button" className="secondary" onClick={() => setMode('idle')}>
            Back
          </button>
        </form>
      ) : (
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(() => post(`/api/v1/visas/${visa.id}/deny`, { reason: comment }));
          }}
        >
          <label>
            Why (the requester reads this)
            <input value={comment} onChange={(e) => setComment(e.target.value)} required maxLength={500} />
          </label>
          <button type="submit" className="danger" disabled={action.busy}>
            Deny
          </button>
          <button type="button" className="secondary" onClick={() => setMode('idle')}>
            Back
          </button>
        </form>
      )}
      <Alert kind="error">{action.error}</Alert>
    </li>
  );
}
