/**
 * kubevisa's error base. Every refusal is a typed error with a stable machine `code` (callers branch on the
 * code, never on the message) and a message written for the person who has to fix the input.
 * `status` is the HTTP status the API answers with; `details` carries structured facts (allowed values,
 * limits) for the problem+json body and for `-o json` output.
 */
export class KubevisaError extends Error {
  static code = 'ERR_KUBEVISA';
  readonly code: string;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(message: string, options: { status?: number; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = (new.target as typeof KubevisaError).code;
    this.status = options.status ?? 400;
    this.details = options.details;
  }
}

/** Input that does not have the required shape or range (a missing field, a bad date, a bad name). */
export class InvalidInput extends KubevisaError {
  static override code = 'ERR_INVALID_INPUT';
}
/** The thing named does not exist (unknown visa, engagement, profile, person, cluster). */
export class NotFound extends KubevisaError {
  static override code = 'ERR_NOT_FOUND';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 404 });
  }
}
/** The caller is authenticated but not allowed to do this. */
export class Forbidden extends KubevisaError {
  static override code = 'ERR_FORBIDDEN';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 403 });
  }
}
/** The caller is not authenticated (no, expired or invalid session). */
export class Unauthenticated extends KubevisaError {
  static override code = 'ERR_UNAUTHENTICATED';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 401 });
  }
}
/** The action conflicts with the current state (approving a revoked visa, ending an ended engagement). */
export class Conflict extends KubevisaError {
  static override code = 'ERR_CONFLICT';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 409 });
  }
}

// Refusals of the visa lifecycle. Each subclass extends the generic error of the same meaning, so a caller
// that only knows `Forbidden` or `Conflict` still answers with the right status.

/** A person tried to approve (or deny) their own request. */
export class SelfApproval extends Forbidden {
  static override code = 'ERR_SELF_APPROVAL';
}
/** The caller may not decide on requests under this engagement (not sponsor, admin or approver). */
export class NotAnApprover extends Forbidden {
  static override code = 'ERR_NOT_AN_APPROVER';
}
/** What admins and auditors may read (the audit trail, exposure scans, usage, receipts) was asked by someone else. */
export class NotAnAuditor extends Forbidden {
  static override code = 'ERR_NOT_AN_AUDITOR';
}
/** The person is suspended or deprovisioned: nothing may be requested or granted for them. */
export class PersonNotActive extends Forbidden {
  static override code = 'ERR_PERSON_NOT_ACTIVE';
}
/** An approver tried to grant more than was asked for (another namespace, a longer window). */
export class WidenedApproval extends InvalidInput {
  static override code = 'ERR_WIDENED_APPROVAL';
}
/** The request names a cluster, namespace or profile the engagement's ceiling does not allow. */
export class OutsideCeiling extends InvalidInput {
  static override code = 'ERR_OUTSIDE_CEILING';
}
/** The requested length exceeds the engagement's, the profile's or the policy's maximum. */
export class VisaTooLong extends InvalidInput {
  static override code = 'ERR_VISA_TOO_LONG';
}
/** The requested start falls outside the policy's working hours. */
export class OutsideWorkingHours extends InvalidInput {
  static override code = 'ERR_OUTSIDE_WORKING_HOURS';
}
/** A profile carries a risky rule it does not declare (see rbac/lint.ts). */
export class RiskyProfile extends InvalidInput {
  static override code = 'ERR_RISKY_PROFILE';
}
/** The engagement has ended, has not started yet, or ends before the visa would start. */
export class EngagementNotActive extends Conflict {
  static override code = 'ERR_ENGAGEMENT_NOT_ACTIVE';
}
/** The visa (or engagement) is not in a state that allows this step (approving a revoked visa). */
export class InvalidTransition extends Conflict {
  static override code = 'ERR_INVALID_TRANSITION';
}
/**
 * The namespace is protected (the cluster's system namespaces, kubevisa's own, or one an admin protected): no visa
 * may grant it, whatever an engagement's ceiling says.
 */
export class ProtectedNamespace extends Forbidden {
  static override code = 'ERR_PROTECTED_NAMESPACE';
}
