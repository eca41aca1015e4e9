/**
 * Live updates: one EventSource per page on `/api/v1/console/events`. An event only names what kind of thing
 * changed; screens re-read it through the API. `useLive('visas')` is a number that grows with each change.
 */
import { useEffect, useState } from 'react';

type Kind = 'visas' | 'audit';
const counts: Record<Kind, number> = { visas: 0, audit: 0 };
const subscribers = new Set<() => void>();
let source: EventSource | undefined;
let onSignedOut: (() => void) | undefined;

/** Opens the stream (once signed in); `signedOut` runs when the server ends the session. */
export function startLive(signedOut: () => void): () => void {
  onSignedOut = signedOut;
  source?.close();
  const events = new EventSource('/api/v1/console/events');
  source = events;
  const bump = (kind: Kind) => () => {
    counts[kind] += 1;
    for (const notify of subscribers) notify();
  };
  events.addEventListener('visas', bump('visas'));
  events.addEventListener('audit', bump('audit'));
  events.addEventListener('signed-out', () => {
    events.close();
    onSignedOut?.();
  });
  return () => events.close();
}

export function useLive(kind: Kind): number {
  const [count, setCount] = useState(counts[kind]);
  useEffect(() => {
    const notify = () => setCount(counts[kind]);
    subscribers.add(notify);
    return () => {
      subscribers.delete(notify);
    };
  }, [kind]);
  return count;
}
