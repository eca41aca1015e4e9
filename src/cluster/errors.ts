/**
 * Errors raised when kubevisa talks to a Kubernetes cluster. Each has a stable `code` (callers branch on it, never
 * on the message) and a message that names the cluster and says what to check. `details` always carries
 * `cluster` (kubevisa's name for it) and, when the API answered, `kubernetesStatus` (the HTTP status) and
 * `kubernetesReason` (the Status `reason`, e.g. `Forbidden`, `AlreadyExists`).
 *
 * `status` is what kubevisa's own API answers with. A cluster refusing or failing *kubevisa's* request is a
 * fault between kubevisa and the cluster (502/503), not a refusal of the person calling kubevisa, so
 * ClusterForbidden answers 502: a 403 would tell the caller they lack a right they may well hold.
 *
 * `message` is for the server log and admins' tools: it names the API server's address and the network error.
 * `publicMessage` and `publicDetails` are what an API caller (a contractor) is told: what happened and what to do,
 * naming the cluster only by kubevisa's name for it, never its host:port, a file path or raw client-node text.
 */
import { KubevisaError } from '../domain/errors.ts';

type ClusterErrorOptions = { details?: Record<string, unknown>; cause?: unknown };

/** What every public message ends with when the fault is between kubevisa and the cluster. */
const NOT_YOURS = 'this is not about your access';
const LOGGED = 'the kubevisa server log has the details';

/** Base of every cluster error: the API answered with a failure kubevisa has no narrower meaning for. */
export class ClusterRequestFailed extends KubevisaError {
  static override code = 'ERR_CLUSTER_REQUEST_FAILED';
  constructor(message: string, options: ClusterErrorOptions & { status?: number } = {}) {
    super(message, { ...options, status: options.status ?? 502 });
  }

  /** kubevisa's name for the cluster (never its address). */
  get cluster(): string {
    const name = this.details?.['cluster'];
    return typeof name === 'string' ? name : 'unknown';
  }

  /**
   * What an API caller is told: the cluster's name, what happened, what to do. A 4xx is about an object kubevisa
   * named (a missing namespace, a conflict) and its message is written to be acted on, so it is told as it is.
   */
  get publicMessage(): string {
    if (this.status < 500) return this.message;
    const status = this.details?.['kubernetesStatus'];
    const reason = this.details?.['kubernetesReason'];
    const answered =
      typeof status === 'number'
        ? ` (it answered ${status}${typeof reason === 'string' && reason ? ` ${reason}` : ''})`
        : '';
    return `cluster '${this.cluster}' failed a request kubevisa made for you${answered}; ${NOT_YOURS}. Try again in a minute; if it keeps failing, tell a kubevisa admin (${LOGGED})`;
  }

  /** The facts an API caller may see: the cluster's name and the Kubernetes status, never the server's address. */
  get publicDetails(): Record<string, unknown> {
    const details: Record<string, unknown> = { cluster: this.cluster };
    for (const key of ['kubernetesStatus', 'kubernetesReason']) {
      if (this.details !== undefined && Object.hasOwn(this.details, key)) details[key] = this.details[key];
    }
    return details;
  }
}

/** No answer: connection refused or reset, DNS failure, TLS failure, or no reply within the request timeout. */
export class ClusterUnreachable extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_UNREACHABLE';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 503 });
  }

  override get publicMessage(): string {
    return `kubevisa cannot reach cluster '${this.cluster}' right now; ${NOT_YOURS}. Try again in a minute; if it keeps failing, tell a kubevisa admin (${LOGGED})`;
  }
}

/** The cluster did not accept kubevisa's credential (401): expired or revoked token, wrong CA for a certificate. */
export class ClusterUnauthorized extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_UNAUTHORIZED';

  override get publicMessage(): string {
    return `cluster '${this.cluster}' does not accept kubevisa's own credential; ${NOT_YOURS}. A kubevisa admin must renew kubevisa's credential for the cluster (${LOGGED})`;
  }
}

/** The cluster's authorization refused kubevisa's request (403); the message quotes the API's own explanation. */
export class ClusterForbidden extends ClusterRequestFailed {
  static override code = 'ERR_CLUSTER_FORBIDDEN';

  override get publicMessage(): string {
    return `cluster '${this.cluster}' refused a request kubevisa itself made; ${NOT_YOURS}. A kubevisa admin must check kubevisa's own permissions there ('kubevisa install' restores them; ${LOGGED})`;
  }
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

  override get publicMessage(): string {
    return `cluster '${this.cluster}' issued a token that would outlive your visa, so kubevisa withheld it; use the kubevisa gateway, and tell a kubevisa admin (${LOGGED})`;
  }
}

/** `kubevisa uninstall` on an installation a Helm release owns: Helm must remove it, or its release record lies. */
export class InstalledByHelm extends ClusterRequestFailed {
  static override code = 'ERR_INSTALLED_BY_HELM';
}

/**
 * kube-apiserver refused a write because a newer kubevisa leader raised the fence above this process's epoch
 * (fencing.ts): this process no longer leads and must not write. Also thrown by `raiseFence` when the fence is
 * already above the epoch to raise it to.
 */
export class Fenced extends ClusterRequestFailed {
  static override code = 'ERR_FENCED';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 503 });
  }
}

/**
 * The fence was raised but kube-apiserver does not refuse a write below it: ValidatingAdmissionPolicy
 * `kubevisa-fencing` or its binding is missing (an installation older than fencing). A leader on a shared store
 * does not write without it.
 */
export class FenceNotEnforced extends ClusterRequestFailed {
  static override code = 'ERR_FENCE_NOT_ENFORCED';
  constructor(message: string, options: ClusterErrorOptions = {}) {
    super(message, { ...options, status: 503 });
  }
}
