import { useState } from 'react';
import { get, post, query, type Engagement, type Profile, type Session, type Visa } from '../api.ts';
import { Alert, CopyCommand, Countdown, Empty, Scope, StateBadge } from '../components.tsx';
import { useAction, useLoad, useNow } from '../hooks.ts';
import { useLive } from '../live.ts';
import { when } from '../time.ts';

const PAST: Visa['state'][] = ['expired', 'revoked', 'denied', 'cancelled'];

export function MyAccess({ session }: { session: Session }) {
  const live = useLive('visas');
  const visas = useLoad(() => get<{ items: Visa[] }>(`/api/v1/visas${query({ person: session.person.id })}`), [live]);
  const now = useNow(5000);
  const items = visas.data?.items ?? [];
  const active = items.filter((v) => v.state === 'active' || (v.state === 'approved' && isOpen(v, now)));
  const upcoming = items.filter((v) => v.state === 'requested' || (v.state === 'approved' && !isOpen(v, now)));
  const past = items
    .filter((v) => PAST.includes(v.state))
    .sort((a, b) => (b.endedAt ?? b.requestedAt).localeCompare(a.endedAt ?? a.requestedAt));

  return (
    <section aria-labelledby="my-access">
      <h1 id="my-access">My access</h1>
      <Alert kind="error">{visas.error}</Alert>
      <h2>Active</h2>
      {active.length === 0 ? (
        <Empty>No active visa. Ask for one below.</Empty>
      ) : (
        <ul className="cards">
          {active.map((v) => (
            <ActiveVisa key={v.id} visa={v} session={session} now={now} />
          ))}
        </ul>
      )}
      <h2>Waiting and upcoming</h2>
      {upcoming.length === 0 ? (
        <Empty>Nothing waiting for approval.</Empty>
      ) : (
        <ul className="cards">
          {upcoming.map((v) => (
            <li key={v.id} className="card" data-visa-id={v.id}>
              <div className="card-head">
                <Scope visa={v} /> <StateBadge state={v.state} />
              </div>
              <p>
                {v.state === 'requested'
                  ? `Waiting for ${v.requiredApprovals - v.approvals.length} approval(s) · ${v.requestedDuration} asked`
                  : `Starts ${when(v.notBefore)}`}
                {v.extends ? ` · extends ${v.extends}` : ''}
              </p>
              <p className="muted">{v.reason}</p>
              <CancelButton visa={v} />
            </li>
          ))}
        </ul>
      )}
      <RequestForm session={session} />
      <h2>Use it with kubectl</h2>
      <p>Log in once on your machine, then add kubevisa's contexts to your kubeconfig. No secret is written to disk.</p>
      <CopyCommand command={session.commands.login} label="kubevisa login command" />
      <CopyCommand command={session.commands.kubeconfig} label="kubevisa kubeconfig command" />
      <h2>Past</h2>
      {past.length === 0 ? (
        <Empty>No past visa.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Scope</th>
                <th scope="col">State</th>
                <th scope="col">Ended</th>
                <th scope="col">Why</th>
              </tr>
            </thead>
            <tbody>
              {past.map((v) => (
                <tr key={v.id} data-visa-id={v.id}>
                  <td>
                    <Scope visa={v} />
                  </td>
                  <td>
                    <StateBadge state={v.state} />
                  </td>
                  <td>{when(v.endedAt ?? v.decidedAt ?? v.notAfter)}</td>
                  <td>{v.endReason ?? v.reason}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function isOpen(v: Visa, now: number): boolean {
  return v.notBefore === undefined || Date.parse(v.notBefore) <= now;
}

function ActiveVisa({ visa, session, now }: { visa: Visa; session: Session; now: number }) {
  const [extending, setExtending] = useState(false);
  const ending = visa.notAfter !== undefined && Date.parse(visa.notAfter) - now < session.expiryNoticeSeconds * 1000;
  return (
    <li className="card active" data-visa-id={visa.id}>
      <div className="card-head">
        <Scope visa={visa} /> <StateBadge state={visa.state} />
      </div>
      <p className="big">
        <Countdown until={visa.notAfter} label="time left" />
      </p>
      <p className="muted">
        Until {when(visa.notAfter)} · approved by {visa.approvals.map((a) => a.by).join(', ') || '—'} · {visa.reason}
      </p>
      {ending && (
        <p className="alert notice" role="status">
          This visa ends soon. Ask for an extension if you still need it.
        </p>
      )}
      {extending ? (
        <ExtendForm visa={visa} done={() => setExtending(false)} />
      ) : (
        <button type="button" onClick={() => setExtending(true)}>
          Ask for an extension
        </button>
      )}
    </li>
  );
}

function ExtendForm({ visa, done }: { visa: Visa; done: () => void }) {
  const [duration, setDuration] = useState('4h');
  const [reason, setReason] = useState('');
  const action = useAction();
  return (
    <form
      className="inline-form"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(() => post(`/api/v1/visas/${visa.id}/extend`, { duration, reason })).then((ok) => ok && done());
      }}
    >
      <label>
        Extend by
        <select value={duration} onChange={(e) => setDuration(e.target.value)}>
          {['1h', '2h', '4h', '8h', '24h'].map((d) => (
            <option key={d}>{d}</option>
          ))}
        </select>
      </label>
      <label>
        Reason
        <input required value={reason} onChange={(e) => setReason(e.target.value)} maxLength={500} />
      </label>
      <button type="submit" disabled={action.busy}>
        Send extension request
      </button>
      <button type="button" className="secondary" onClick={done}>
        Cancel
      </button>
      <Alert kind="error">{action.error}</Alert>
    </form>
  );
}

function CancelButton({ visa }: { visa: Visa }) {
  const action = useAction();
  return (
    <>
      <button
        type="button"
        className="secondary"
        disabled={action.busy}
        onClick={() => void action.run(() => post(`/api/v1/visas/${visa.id}/cancel`))}
      >
        Cancel request
      </button>
      <Alert kind="error">{action.error}</Alert>
    </>
  );
}

/** Offers only what the engagement's ceiling allows; the server's answer (and its reason for a refusal) is shown. */
function RequestForm({ session }: { session: Session }) {
  const engagements = useLoad(() => get<{ items: Engagement[] }>('/api/v1/engagements'), []);
  const profiles = useLoad(() => get<{ items: Profile[] }>('/api/v1/profiles'), []);
  const mine = (engagements.data?.items ?? []).filter(
    (e) => e.status === 'active' && e.contractors.includes(session.person.email),
  );
  const [engagementId, setEngagementId] = useState('');
  const engagement = mine.find((e) => e.id === engagementId) ?? mine[0];
  const [cluster, setCluster] = useState('');
  const [profile, setProfile] = useState('');
  const [namespaces, setNamespaces] = useState('');
  const [duration, setDuration] = useState('8h');
  const [reason, setReason] = useState('');
  const action = useAction();
  if (engagements.error) return <Alert kind="error">{engagements.error}</Alert>;
  if (!engagement) {
    return (
      <>
        <h2>Ask for access</h2>
        <Empty>You are on no active engagement, so there is nothing you may ask for. Your sponsor can add you.</Empty>
      </>
    );
  }
  const clusters = engagement.ceiling.clusters;
  const profileNames = engagement.ceiling.profiles;
  const chosenCluster = clusters.includes(cluster) ? cluster : (clusters[0] ?? '');
  const chosenProfile = profileNames.includes(profile) ? profile : (profileNames[0] ?? '');
  const profileInfo = profiles.data?.items.find((p) => p.name === chosenProfile);
  return (
    <>
      <h2 id="request-heading">Ask for access</h2>
      <form
        className="form"
        aria-labelledby="request-heading"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(
            () =>
              post('/api/v1/visas', {
                engagement: engagement.id,
                cluster: chosenCluster,
                profile: chosenProfile,
                namespaces: namespaces
                  .split(/[\s,]+/)
                  .map((n) => n.trim())
                  .filter(Boolean),
                duration,
                reason,
              }),
            'Request sent: your approvers see it now.',
          );
        }}
      >
        {mine.length > 1 && (
          <label>
            Engagement
            <select value={engagement.id} onChange={(e) => setEngagementId(e.target.value)}>
              {mine.map((e) => (
                <option key={e.id} value={e.id}>
                  {e.name} ({e.vendor})
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          Cluster
          <select name="cluster" value={chosenCluster} onChange={(e) => setCluster(e.target.value)}>
            {clusters.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        </label>
        <label>
          Namespaces
          <input
            name="namespaces"
            required
            value={namespaces}
            placeholder={engagement.ceiling.namespacePatterns.join(', ')}
            onChange={(e) => setNamespaces(e.target.value)}
            aria-describedby="ns-help"
          />
        </label>
        <p id="ns-help" className="help">
          Allowed by the engagement: {engagement.ceiling.namespacePatterns.join(', ')}
        </p>
        <label>
          Profile
          <select name="profile" value={chosenProfile} onChange={(e) => setProfile(e.target.value)}>
            {profileNames.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        {profileInfo && (
          <p className="help">
            {profileInfo.description} Longest visa: {profileInfo.maxVisaDuration}
            {profileInfo.declaredRisks.length > 0
              ? ` · declared risks: ${profileInfo.declaredRisks.map((r) => r.risk).join(', ')}`
              : ''}
          </p>
        )}
        <label>
          For
          <select name="duration" value={duration} onChange={(e) => setDuration(e.target.value)}>
            {['1h', '2h', '4h', '8h', '24h', '72h'].map((d) => (
              <option key={d}>{d}</option>
            ))}
          </select>
        </label>
        <p className="help">
          At most {engagement.maxVisaDuration} on this engagement, until {when(engagement.endsAt)}.
        </p>
        <label>
          Reason (ticket)
          <input name="reason" required maxLength={500} value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
        <button type="submit" disabled={action.busy}>
          Ask for access
        </button>
        <Alert kind="error">{action.error}</Alert>
        <Alert kind="notice">{action.notice}</Alert>
      </form>
    </>
  );
}
