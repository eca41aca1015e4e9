/**
 * Refusals specific to logging in through the identity provider. They refine the shared errors in
 * domain/errors.ts so the API and the CLI can tell "ask the person to log in again" (Unauthenticated and its
 * subclasses) from "the IdP cannot be reached or is misconfigured" (IdentityProviderUnavailable), which must
 * not be mistaken for a deprovisioned person.
 */
import { KubevisaError, Unauthenticated } from '../domain/errors.ts';

/** The person (or the IdP on their behalf) declined the login, e.g. pressed "abort" on the device page. */
export class LoginDenied extends Unauthenticated {
  static override code = 'ERR_LOGIN_DENIED';
}

/** The device code (or authorization code) expired or was already used; start a new login. */
export class LoginExpired extends Unauthenticated {
  static override code = 'ERR_LOGIN_EXPIRED';
}

/**
 * The identity provider could not be reached, answered with a server error, or refused kubevisa's own
 * client credentials. Nothing is known about the person: no new token may be issued, but a session should
 * not be treated as revoked on this alone.
 */
export class IdentityProviderUnavailable extends KubevisaError {
  static override code = 'ERR_IDP_UNAVAILABLE';
  constructor(message: string, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, { ...options, status: 502 });
  }
}

/**
 * The identity provider does not offer the device authorization grant (RFC 8628): its discovery document has no
 * `device_authorization_endpoint` (Ory Hydra v2.3, for one). The browser login still works.
 */
export class DeviceLoginUnsupported extends KubevisaError {
  static override code = 'ERR_DEVICE_LOGIN_UNSUPPORTED';
  constructor(message: string) {
    super(message, { status: 501 });
  }
}
