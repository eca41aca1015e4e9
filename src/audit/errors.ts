/** Refusals of the audit capability, with stable codes (see src/domain/errors.ts). */
import { KubevisaError } from '../domain/errors.ts';

/**
 * The database holds less of the audit trail than a signed checkpoint says it had, or another event where the
 * checkpoint points: it was restored from an older copy or rewritten. The server will not run on it, since an
 * older copy may also bring back access that was revoked since.
 */
export class AuditTrailRolledBack extends KubevisaError {
  static override code = 'ERR_AUDIT_ROLLED_BACK';
  constructor(message: string, options: { details?: Record<string, unknown> } = {}) {
    super(message, { ...options, status: 500 });
  }
}
