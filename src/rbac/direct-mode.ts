/**
 * Whether a profile may be used in direct mode. A direct token is a TokenRequest token for the person's
 * ServiceAccount: kubectl then talks to kube-apiserver without the gateway, so nothing records sessions, nothing
 * audits each request, and nothing closes an open exec, attach or port-forward stream when the visa is revoked
 * (Kubernetes never re-authorizes an open stream). A profile that records sessions, or that opens such streams,
 * therefore can never be used in direct mode, whatever it declares. Pure: no I/O.
 */
import { InvalidInput } from '../domain/errors.ts';
import type { Profile } from '../domain/model.ts';
import { CORE_GROUP, ruleGrantsAny } from './rules.ts';

/** The pod subresources that open streams only the gateway can record and cut. */
export const STREAM_SUBRESOURCES: readonly string[] = ['pods/exec', 'pods/attach', 'pods/portforward'];

/** Finding id of a profile that declares `directMode: allowed` although it records sessions or opens streams. */
export const DIRECT_MODE_FINDING = 'direct-mode';

/** What keeps a profile out of direct mode whatever it declares; both empty when nothing does. */
export interface DirectModeBlockers {
  recordsSessions: boolean;
  /** Subresources of STREAM_SUBRESOURCES the rules grant (any verb: a WebSocket upgrade is a `get`). */
  streams: string[];
}

export function directModeBlockers(profile: Pick<Profile, 'rules' | 'recordSessions'>): DirectModeBlockers {
  return {
    recordsSessions: profile.recordSessions,
    streams: STREAM_SUBRESOURCES.filter((subresource) =>
      profile.rules.some((rule) => ruleGrantsAny(rule, CORE_GROUP, [subresource], 'any')),
    ),
  };
}

/** The blockers as a phrase ("it records sessions and grants pods/exec"), or undefined when there are none. */
export function describeBlockers(blockers: DirectModeBlockers): string | undefined {
  const parts = [
    ...(blockers.recordsSessions ? ['records sessions'] : []),
    ...(blockers.streams.length > 0 ? [`grants ${blockers.streams.join(', ')}`] : []),
  ];
  return parts.length === 0 ? undefined : `it ${parts.join(' and ')}`;
}

/**
 * True when holders of the profile may use direct mode: the profile says `directMode: allowed` (absent means
 * denied) and neither records sessions nor grants a stream subresource.
 */
export function profileAllowsDirectMode(profile: Profile): boolean {
  return profile.directMode === 'allowed' && describeBlockers(directModeBlockers(profile)) === undefined;
}

/**
 * The contradiction in a profile that declares `directMode: allowed` but records sessions or opens streams, as a
 * message; undefined when the declaration is consistent.
 */
export function directModeProblem(profile: Profile): string | undefined {
  if (profile.directMode !== 'allowed') return undefined;
  const blockers = describeBlockers(directModeBlockers(profile));
  if (blockers === undefined) return undefined;
  return `directMode: 'allowed' is refused because ${blockers}: direct tokens bypass the gateway, so such sessions would go unrecorded and outlive a revoke. Remove directMode (or set it to 'denied'); holders use the gateway`;
}

/**
 * Refuses a profile whose direct-mode declaration contradicts its rules or recording.
 * @throws InvalidInput naming the field `directMode`.
 */
export function assertDirectModeFits(profile: Profile): void {
  const problem = directModeProblem(profile);
  if (problem !== undefined) {
    throw new InvalidInput(`profile '${profile.name}': ${problem}`, {
      details: { field: 'directMode', finding: DIRECT_MODE_FINDING },
    });
  }
}
