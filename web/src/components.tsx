import { useState, type ReactNode } from 'react';
import type { Visa } from './api.ts';
import { useNow } from './hooks.ts';
import { left } from './time.ts';

export function Countdown({ until, label }: { until: string | undefined; label?: string }) {
  const now = useNow(1000);
  if (!until) return <span>—</span>;
  const ms = Date.parse(until) - now;
  return (
    <span className={ms < 15 * 60_000 ? 'countdown soon' : 'countdown'} data-countdown aria-label={label}>
      {left(ms)}
      {ms > 0 ? ' left' : ''}
    </span>
  );
}

export function StateBadge({ state }: { state: Visa['state'] }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

export function Alert({ kind, children }: { kind: 'error' | 'notice'; children: ReactNode }) {
  if (!children) return null;
  return (
    <p className={`alert ${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      {children}
    </p>
  );
}

export function CopyCommand({ command, label }: { command: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="command">
      <code aria-label={label}>{command}</code>
      <button
        type="button"
        className="secondary"
        onClick={() => {
          void navigator.clipboard?.writeText(command).then(() => {
            setCopied(true);
            setTimeout(() => setCopied(false), 2000);
          });
        }}
      >
        {copied ? 'Copied' : 'Copy'}
      </button>
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function Scope({ visa }: { visa: Pick<Visa, 'cluster' | 'namespaces' | 'profile'> }) {
  return (
    <span>
      <strong>{visa.profile}</strong> on <strong>{visa.cluster}</strong> / {visa.namespaces.join(', ')}
    </span>
  );
}
