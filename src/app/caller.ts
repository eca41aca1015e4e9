/**
 * Who an operation of the application layer acts for. A person comes with the session and client the request came
 * from (for the audit trail); kubevisa's own actors (expiry, monitoring, identity) are a `systemActor` alone.
 */
import type { Actor } from '../domain/model.ts';
import { systemActor } from '../domain/permissions.ts';
import type { AuditSource } from '../store/store.ts';

export interface Caller {
  actor: Actor;
  /** The kubevisa session of a person calling through the API. */
  sessionId?: string;
  /** The client address and user agent, for the audit trail. */
  source?: AuditSource;
}

/** kubevisa acting on its own, recorded as `system:<name>` (e.g. `system:monitoring`). */
export function systemCaller(name: string): Caller {
  return { actor: systemActor(name) };
}
