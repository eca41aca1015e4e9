/**
 * Direct-mode tokens carry the person's ServiceAccount, and with it every RoleBinding that names the ServiceAccount,
 * including ones added after the token was issued. So before a binding that direct mode must not carry (a
 * gateway-only profile, or a cluster that does not allow direct mode) reaches a ServiceAccount whose direct tokens
 * may still live, the ServiceAccount is made again: a new uid invalidates every token of the old one. kube-apiserver
 * caches a token's authentication for 10 s, so such bindings wait until the new ServiceAccount is
 * `TOKEN_CACHE_HOLD_MS` old. Pure: no I/O.
 */
import type { Instant, Profile, Visa } from '../domain/model.ts';
import { DIRECT_TOKENS_UNTIL_ANNOTATION, ROTATED_AT_ANNOTATION, type ServiceAccount } from '../cluster/objects.ts';
import { formatInstant } from '../domain/time.ts';
import { profileAllowsDirectMode } from '../rbac/direct-mode.ts';

/**
 * How long after a ServiceAccount is made again its old tokens may still authenticate, in milliseconds:
 * kube-apiserver's token authentication cache (10 s) plus a second for clock steps and the delete's own latency.
 */
export const TOKEN_CACHE_HOLD_MS = 11_000;

/**
 * Until when direct tokens of this ServiceAccount may live (epoch ms); undefined when none was ever issued, and
 * Infinity for a value no one can read (edited by hand): then they are assumed to live.
 */
export function directTokensUntil(account: ServiceAccount): Instant | undefined {
  if (!Object.hasOwn(account.metadata.annotations, DIRECT_TOKENS_UNTIL_ANNOTATION)) return undefined;
  return instantAnnotation(account, DIRECT_TOKENS_UNTIL_ANNOTATION) ?? Infinity;
}

/** When this ServiceAccount was made again to end direct tokens (epoch ms); undefined when it never was. */
export function rotatedAt(account: ServiceAccount): Instant | undefined {
  return instantAnnotation(account, ROTATED_AT_ANNOTATION);
}

/** True when direct tokens issued for this ServiceAccount may still authenticate at `now`. */
export function hasLiveDirectTokens(account: ServiceAccount, now: Instant): boolean {
  const until = directTokensUntil(account);
  return until !== undefined && until > now;
}

/**
 * The ServiceAccount made again: the labels and annotations kubevisa sets (from `desired`), without the record of
 * direct tokens (they belonged to the old one), with the instant it was made again.
 */
export function rotatedServiceAccount(desired: ServiceAccount, at: Instant): ServiceAccount {
  const { [DIRECT_TOKENS_UNTIL_ANNOTATION]: _until, ...annotations } = desired.metadata.annotations;
  return {
    ...desired,
    metadata: { ...desired.metadata, annotations: { ...annotations, [ROTATED_AT_ANNOTATION]: formatInstant(at) } },
  };
}

/**
 * True when a direct token may carry a binding of this visa: the cluster allows direct mode and the visa's profile
 * does (the rule the credential service applies before issuing one).
 */
export function directModeMayCarry(visa: Pick<Visa, 'profile'>, profile: Profile | undefined, clusterAllows: boolean) {
  return clusterAllows && profile !== undefined && profileAllowsDirectMode(profile);
}

/**
 * The instant until which a new binding that direct mode must not carry waits for this ServiceAccount, or undefined
 * when it may be created now.
 */
export function heldUntil(rotated: Instant | undefined, now: Instant): Instant | undefined {
  if (rotated === undefined) return undefined;
  const until = rotated + TOKEN_CACHE_HOLD_MS;
  return until > now ? until : undefined;
}

function instantAnnotation(account: ServiceAccount, key: string): Instant | undefined {
  const value = Object.hasOwn(account.metadata.annotations, key) ? account.metadata.annotations[key] : undefined;
  if (value === undefined) return undefined;
  const at = Date.parse(value);
  return Number.isFinite(at) ? at : undefined;
}
