/**
 * Row → value mapping of the audit tables beyond mappers.ts: checkpoints, and events as chain records (engine-
 * neutral column names, as mappers.ts).
 */
import { auditContentTextWith } from './audit-chain.ts';
import { AUDIT_OUTCOMES, definedOnly, integer, oneOf, optionalText, text, type Row } from './rows.ts';
import type { AuditCheckpoint, AuditRecord } from './store.ts';

export const AUDIT_CHECKPOINT_COLUMNS = 'id, created_at, seq, hash, key_id, signature';

export function mapAuditCheckpoint(row: Row): AuditCheckpoint {
  const t = 'audit_checkpoints';
  return {
    id: integer(row, t, 'id'),
    at: integer(row, t, 'created_at'),
    seq: integer(row, t, 'seq'),
    hash: text(row, t, 'hash'),
    keyId: text(row, t, 'key_id'),
    signature: text(row, t, 'signature'),
  };
}

/**
 * An audit_events row (AUDIT_COLUMNS) as a chain record. `details_json` is used as stored: the store writes it
 * in canonical form, so it is part of the hashed text as it is; if it was edited in the database, the record's
 * hash no longer matches, which is what verification must find.
 */
export function mapAuditRecord(row: Row): AuditRecord {
  const t = 'audit_events';
  const address = optionalText(row, t, 'source_address');
  const userAgent = optionalText(row, t, 'source_user_agent');
  const about = definedOnly({
    engagementId: optionalText(row, t, 'engagement_id'),
    visaId: optionalText(row, t, 'visa_id'),
    personId: optionalText(row, t, 'person_id'),
  });
  const contentText = auditContentTextWith(
    {
      at: integer(row, t, 'at'),
      actor: text(row, t, 'actor'),
      action: text(row, t, 'action'),
      ...about,
      ...definedOnly({
        sessionId: optionalText(row, t, 'session_id'),
        cluster: optionalText(row, t, 'cluster'),
        namespace: optionalText(row, t, 'namespace'),
        reason: optionalText(row, t, 'reason'),
        source: address === undefined ? undefined : { address, ...definedOnly({ userAgent }) },
      }),
      outcome: oneOf(row, t, 'outcome', AUDIT_OUTCOMES),
    },
    text(row, t, 'details_json'),
  );
  return {
    seq: integer(row, t, 'seq'),
    prevHash: text(row, t, 'prev_hash'),
    hash: text(row, t, 'hash'),
    contentText,
    ...about,
  };
}
