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
