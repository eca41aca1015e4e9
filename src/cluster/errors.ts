/**
 * Errors raised when kubevisa talks to a Kubernetes cluster. Each has a stable `code` (callers branch on it, never
 * on the message) and a message that names the cluster and says what to check. `details` always carries
 * `cluster` (kubevisa's name for it) and, when the API answered, `kubernetesStatus` (the HTTP status) and
 * `kubernetesReason` (the Status `reason`, e.g. `Forbidden`, `AlreadyExists`).
 *
 * `status` is what kubevisa's own API answers with. A cluster refusing or failing *kubevisa's* request is a
 * fault between kubevisa and the cluster (502/503), not a refusal of the person calling kubevisa, so
 * ClusterForbidden answers 502: a 403 would tell the caller they lack a right they may well hold.
 */
import { KubevisaError } from '../domain/errors.ts';

type ClusterErrorOptions = { details?: Record<string, unknown>; cause?: unknown };

/** Base of every cluster error: the API answered with a failure kubevisa has no narrower meaning for. */
export class ClusterRequestFailed extends KubevisaError {
  static override code = 'ERR_CLUSTER_REQUEST_FAILED';
  constructor(message: string, options: ClusterErrorOptions & { status?: number } = {}) {
    super(message, { ...options, status: options.status ?? 502 });
  }
}

/** No answer: connection refused or reset, DNS failure, TLS failure, or no reply within the request timeout. */
export class ClusterUnreachable extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_UNREACHABLE';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 503 });
  }
}

/** The cluster did not accept kubevisa's credential (401): expired or revoked token, wrong CA for a certificate. */
export class ClusterUnauthorized extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_UNAUTHORIZED';
}

/** The cluster's authorization refused kubevisa's request (403); the message quotes the API's own explanation. */
export class ClusterForbidden extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_FORBIDDEN';
}

/** A RoleBinding was to be created in a namespace that does not exist (or is being deleted). */
export class NamespaceMissing extends ClusterRequestFailed {
  static override code = 'ERR_NAMESPACE_MISSING';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 409 });
  }
}

/** An object with that name already exists (409 `AlreadyExists`). */
export class AlreadyExists extends ClusterRequestFailed {
  static override code = 'ERR_ALREADY_EXISTS';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 409 });
  }
}

/** An update carried a stale `resourceVersion` (409 `Conflict`): someone changed the object meanwhile; re-read it. */
export class ResourceVersionConflict extends ClusterRequestFailed {
  static override code = 'ERR_RESOURCE_VERSION_CONFLICT';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 409 });
  }
}

/** The object named does not exist in the cluster (e.g. a TokenRequest for a deleted ServiceAccount). */
export class ObjectMissing extends ClusterRequestFailed {
  static override code = 'ERR_OBJECT_MISSING';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 404 });
  }
}

/**
 * kube-apiserver issued a token that lives longer than asked (e.g. its 3607 s compatibility extension to a year).
 * The token is withheld: handing it out would outlive the visa it was meant for.
 */
export class UnexpectedTokenExpiry extends ClusterRequestFailed {
  static override code = 'ERR_UNEXPECTED_TOKEN_EXPIRY';
}
