import { useEffect, useState } from 'react';
import { get, post, setCsrfToken, type Session } from './api.ts';
import { startLive } from './live.ts';
import { messageOf } from './hooks.ts';
import { MyAccess } from './screens/MyAccess.tsx';
import { Queue } from './screens/Queue.tsx';
import { Admin } from './screens/Admin.tsx';
import { WhoHasAccess } from './screens/WhoHasAccess.tsx';
import { AuditTimeline } from './screens/AuditTimeline.tsx';

interface Screen {
  path: string;
  title: string;
  allowed: (s: Session) => boolean;
}

const has = (s: Session, ...roles: string[]) => s.person.roles.some((r) => roles.includes(r));
const SCREENS: Screen[] = [
  { path: '/access', title: 'My access', allowed: () => true },
  { path: '/queue', title: 'Approvals', allowed: (s) => has(s, 'approver', 'admin') },
  { path: '/admin', title: 'Admin', allowed: (s) => has(s, 'admin') },
  { path: '/who', title: 'Who has access', allowed: (s) => has(s, 'admin', 'auditor', 'approver') },
  { path: '/audit', title: 'Audit', allowed: (s) => has(s, 'admin', 'auditor') },
];

export function navigate(path: string): void {
  if (path === location.pathname + location.search) return;
  history.pushState(null, '', path);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const changed = () => setPath(location.pathname);
    window.addEventListener('popstate', changed);
    return () => window.removeEventListener('popstate', changed);
  }, []);
  return path;
}

export function App() {
  const [session, setSession] = useState<Session | null>();
  const [failure, setFailure] = useState<string>();
  const path = usePath();

  useEffect(() => {
    get<Session | { signedIn: false }>('/api/v1/console/session').then(
      (s) => {
        if (!s.signedIn) return setSession(null);
        setCsrfToken(s.csrfToken);
        setSession(s);
      },
      (e: unknown) => setFailure(messageOf(e)),
    );
  }, []);
  useEffect(() => {
    if (!session) return;
    return startLive(() => setSession(null));
  }, [session]);

  if (failure) {
    return (
      <main className="signin">
        <h1>kubevisa</h1>
        <p role="alert">The console could not reach the server: {failure}</p>
      </main>
    );
  }
  if (session === undefined) return <main className="signin" aria-busy="true" />;
  if (session === null) return <SignIn />;

  const screens = SCREENS.filter((s) => s.allowed(session));
  const current = SCREENS.find((s) => path === s.path || path.startsWith(`${s.path}/`)) ?? SCREENS[0]!;
  const allowed = current.allowed(session);
  return (
    <>
      <header className="top">
        <a className="brand" href="/access" onClick={link('/access')}>
          kubevisa
        </a>
        <nav aria-label="Main">
          <ul>
            {screens.map((s) => (
              <li key={s.path}>
                <a href={s.path} onClick={link(s.path)} aria-current={s.path === current.path ? 'page' : undefined}>
                  {s.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span title={session.person.roles.join(', ') || 'contractor'}>{session.person.email}</span>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              void post('/api/v1/console/logout').finally(() => {
                setSession(null);
                history.replaceState(null, '', '/');
              });
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main id="main">
        {!allowed ? (
          <section>
            <h1>Not available</h1>
            <p role="alert">
              {current.title} is for {current.path === '/admin' ? 'admins' : 'approvers, admins and auditors'}; you are
              signed in as {session.person.email}.
            </p>
          </section>
        ) : current.path === '/queue' ? (
          <Queue session={session} />
        ) : current.path === '/admin' ? (
          <Admin session={session} section={path.split('/')[2] ?? 'visas'} />
        ) : current.path === '/who' ? (
          <WhoHasAccess />
        ) : current.path === '/audit' ? (
          <AuditTimeline />
        ) : (
          <MyAccess session={session} />
        )}
      </main>
    </>
  );
}

/** A click handler for in-console links: no page load (the live stream stays open). */
export function link(path: string) {
  return (event: React.MouseEvent) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(path);
  };
}

function SignIn() {
  const next = location.pathname === '/' || location.pathname === '/signed-out' ? '/access' : location.pathname;
  return (
    <main className="signin">
      <h1>kubevisa</h1>
      <p>Scoped, time-limited, approved access to Kubernetes.</p>
      <a className="button" href={`/api/v1/console/login?next=${encodeURIComponent(next)}`}>
        Sign in with your identity provider
      </a>
    </main>
  );
}
