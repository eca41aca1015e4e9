/**
 * SCIM's own error shape (RFC 7644 §3.12): identity providers read `status` (a string) and `scimType`, not
 * kubevisa's problem+json. Every refusal on /scim/v2 leaves as one of these; the message says what was wrong
 * and what the IdP (or the admin configuring it) should send instead.
 */
import { KubevisaError } from '../domain/errors.ts';

export const SCIM_ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
export const SCIM_CONTENT_TYPE = 'application/scim+json';

/** The `scimType` values of RFC 7644 §3.12 table 9 that kubevisa answers with. */
export type ScimType =
  | 'invalidFilter'
  | 'tooMany'
  | 'uniqueness'
  | 'mutability'
  | 'invalidSyntax'
  | 'invalidPath'
  | 'noTarget'
  | 'invalidValue'
  | 'invalidVers';

export class ScimError extends KubevisaError {
  static override code = 'ERR_SCIM';
  readonly scimType: ScimType | undefined;

  constructor(status: number, message: string, scimType?: ScimType) {
    super(message, { status });
    this.scimType = scimType;
  }
}

/** 400 with a scimType: the request was understood but its content is wrong. */
export function badRequest(scimType: ScimType, message: string): ScimError {
  return new ScimError(400, message, scimType);
}

export interface ScimErrorBody {
  schemas: [typeof SCIM_ERROR_SCHEMA];
  /** The HTTP status as a string, as RFC 7644 requires. */
  status: string;
  scimType?: ScimType;
  detail: string;
}

export function scimErrorBody(status: number, detail: string, scimType?: ScimType): ScimErrorBody {
  return { schemas: [SCIM_ERROR_SCHEMA], status: String(status), ...(scimType ? { scimType } : {}), detail };
}

/**
 * 409 `uniqueness`: an identity provider sent a user whose email belongs to a person it may not act on (another
 * identity provider's, or someone who exists and is linked to none; see identity/ownership.ts). The message is
 * for the identity provider and names no other identity provider or user; `facts` are for the audit trail.
 */
export class ScimEmailTaken extends ScimError {
  static override code = 'ERR_SCIM_EMAIL_TAKEN';
  readonly email: string;
  readonly facts: Readonly<Record<string, string | string[]>>;

  constructor(email: string, idp: string, facts: Record<string, string | string[]>) {
    super(
      409,
      `a person with the email ${email} is already provisioned by another identity provider, or exists in kubevisa ` +
        `without a link to '${idp}': kubevisa does not merge people across identity providers. If '${idp}' should ` +
        `manage them, a kubevisa admin links them first: kubevisa identity link ${email} --idp ${idp}`,
      'uniqueness',
    );
    this.email = email;
    this.facts = facts;
  }
}
