/**
 * The CLI's own refusals. Each carries a stable `code` (main.ts prints it in brackets and exits 1) and a
 * message that says what went wrong and what to do about it.
 */
import { KubevisaError } from '../domain/errors.ts';

/** A session or credential file that someone besides its owner could read (or that another user owns). */
export class InsecureFile extends KubevisaError {
  static override code = 'ERR_INSECURE_FILE';
}
/** A file in the CLI's state folder that is not the JSON the CLI wrote there. */
export class BadStateFile extends KubevisaError {
  static override code = 'ERR_BAD_STATE_FILE';
}
/** No usable session for the server in question: never logged in, logged out, or the session ended. */
export class NotLoggedIn extends KubevisaError {
  static override code = 'ERR_NOT_LOGGED_IN';
}
/** The server could not be reached at all (refused, unknown host, TLS failure, reset). */
export class ServerUnreachable extends KubevisaError {
  static override code = 'ERR_SERVER_UNREACHABLE';
}
/** The server did not answer in time. */
export class ServerTimeout extends KubevisaError {
  static override code = 'ERR_SERVER_TIMEOUT';
}
/** The server answered with something that is neither the documented JSON nor a problem+json error. */
export class UnexpectedResponse extends KubevisaError {
  static override code = 'ERR_UNEXPECTED_RESPONSE';
}
/** A login flow that did not complete: expired code, state mismatch, denied in the browser, timed out. */
export class LoginFailed extends KubevisaError {
  static override code = 'ERR_LOGIN_FAILED';
}
/** A kubeconfig file that cannot be read or updated safely. */
export class BadKubeconfig extends KubevisaError {
  static override code = 'ERR_BAD_KUBECONFIG';
}

/**
 * An `application/problem+json` answer from the server. Its `code` is the server's stable code (e.g.
 * `ERR_SELF_APPROVAL`), so scripts branch on the same codes the API documents.
 */
export class ApiError extends KubevisaError {
  static override code = 'ERR_API';
  override readonly code: string;
  /** The problem document as sent (type, title, status, code, detail and any extra facts). */
  readonly problem: Readonly<Record<string, unknown>>;

  constructor(message: string, options: { status: number; code: string; problem: Record<string, unknown> }) {
    super(message, { status: options.status, details: options.problem });
    this.code = options.code;
    this.problem = options.problem;
  }
}
