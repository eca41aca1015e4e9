/**
 * Which facts become alerts, and their words. Visa lifecycle alerts and drift repairs are read from the audit trail
 * — the one durable record of every decision and every cluster change, written in the same transaction as the
 * change — so an alert is never raised for something that did not commit, and none is lost to a restart (the
 * follower keeps its place in the trail). Expiry notices, staleness and scan findings are computed from state.
 * Pure.
 */
import type { Instant, Visa } from '../domain/model.ts';
import type { AuditEvent, JsonObject } from '../store/store.ts';
import type { Alert, AlertEvent, AlertSeverity } from './alerts.ts';
import type { Finding } from './findings.ts';
import type { StalePerson, StaleVisa } from './staleness.ts';

/** Audit actions that raise an alert, and which. */
export const ALERTING_ACTIONS: ReadonlyMap<string, AlertEvent> = new Map([
  ['visa.requested', 'visa-requested'],
  ['visa.extension-requested', 'visa-requested'],
  ['visa.approved', 'visa-approved'],
  ['visa.revoked', 'visa-revoked'],
  ['visa.expired', 'visa-expired'],
  ['cluster.rolebinding.repair-delete', 'drift-repaired'],
  // Only when it re-creates a binding someone deleted (the service tells, see VisaContext.recreated).
  ['cluster.rolebinding.create', 'drift-repaired'],
  // A profile ClusterRole edited by hand and put back by the reconciler, or one it could not put back.
  ['cluster.drift.repaired', 'drift-repaired'],
  ['cluster.drift.repair-failed', 'drift-detected'],
  // kubevisa's own RBAC changed in a way it does not write back (a binding, a narrowed role).
  ['cluster.drift.detected', 'drift-detected'],
  // A SCIM identity provider sent a user for someone it may not act on (identity/ownership.ts).
  ['scim.user.refused', 'scim-user-refused'],
]);

/** What the alert needs besides the audit event: the visa it is about and its engagement's sponsor. */
export interface VisaContext {
  visa?: Visa;
  sponsor?: string;
  /**
   * For `cluster.rolebinding.create`: the binding had been created before and nothing kubevisa did removed it, so
   * someone deleted it and kubevisa put it back. Any other create raises no alert.
   */
  recreated?: boolean;
}

const iso = (at: Instant) => new Date(at).toISOString();

function visaWords(visa: Visa): string {
  return `${visa.profile} on ${visa.cluster}/${visa.namespaces.join(',')} for ${visa.personEmail}`;
}

function recipientsOf(context: VisaContext): string[] {
  return [...new Set([context.visa?.personEmail, context.sponsor].filter((e): e is string => e !== undefined))];
}

function visaFields(context: VisaContext): Pick<Alert, 'visaId' | 'cluster' | 'personEmail'> {
  const { visa } = context;
  if (visa === undefined) return {};
  return { visaId: visa.id, cluster: visa.cluster, personEmail: visa.personEmail };
}

/** The alert for one audit event, or undefined when the action raises none. */
export function alertFromAudit(event: AuditEvent, context: VisaContext): Alert | undefined {
  const kind = ALERTING_ACTIONS.get(event.action);
  if (kind === undefined) return undefined;
  if (event.action === 'cluster.rolebinding.create' && context.recreated !== true) return undefined;
  const { visa } = context;
  const subject = visa === undefined ? `visa ${event.visaId ?? '?'}` : `visa ${visa.id} (${visaWords(visa)})`;
  const base = {
    id: `${kind}:${event.seq}`,
    event: kind,
    at: iso(event.at),
    recipients: recipientsOf(context),
    ...visaFields(context),
    ...(event.cluster !== undefined ? { cluster: event.cluster } : {}),
    ...(event.visaId !== undefined ? { visaId: event.visaId } : {}),
    details: { auditSeq: event.seq, action: event.action, actor: event.actor } as JsonObject,
  };
  if (event.action.startsWith('cluster.drift.')) return rbacDriftAlert(event, base);
  if (kind === 'scim-user-refused') {
    const email = String(event.details['email'] ?? '?');
    const idp = String(event.details['idp'] ?? '?');
    return {
      ...base,
      severity: 'warning',
      title: `SCIM user refused: ${idp} sent ${email}`,
      text: `${event.reason ?? `${idp} sent a user for ${email}, which it may not act on`}. If ${idp} should manage this person, link them with 'kubevisa identity link ${email} --idp ${idp}'; otherwise check who holds ${idp}'s SCIM token.`,
      personEmail: email,
      details: { ...base.details, idp, email, linkedTo: event.details['linkedTo'] ?? [] },
    };
  }
  switch (kind) {
    case 'visa-requested':
      return {
        ...base,
        severity: 'info',
        title: `Visa ${event.visaId ?? ''} requested`,
        text: `${event.actor} requested ${subject}${visa ? ` for ${Math.round(visa.requestedSeconds / 60)} min` : ''}: ${event.reason ?? visa?.reason ?? ''}. Approve or deny with 'kubevisa approve|deny ${event.visaId ?? ''}'.`,
      };
    case 'visa-approved':
      return {
        ...base,
        severity: 'info',
        title: `Visa ${event.visaId ?? ''} approved`,
        text: `${event.actor} approved ${subject}${visa ? `, until ${iso(visa.notAfter)}` : ''}.`,
      };
    case 'visa-revoked':
      return {
        ...base,
        severity: 'warning',
        title: `Visa ${event.visaId ?? ''} revoked`,
        text: `${event.actor} revoked ${subject}${event.reason ? `: ${event.reason}` : ''}. Its RoleBindings are removed and open streams closed.`,
      };
    case 'visa-expired':
      return {
        ...base,
        severity: 'info',
        title: `Visa ${event.visaId ?? ''} expired`,
        text: `${subject} reached its end${visa ? ` at ${iso(visa.notAfter)}` : ''}; access is removed.`,
      };
    case 'drift-repaired': {
      const where = `${String(event.details['namespace'] ?? event.namespace ?? '?')}/${String(event.details['name'] ?? '?')}`;
      const deleted = event.action === 'cluster.rolebinding.create';
      return {
        ...base,
        severity: 'warning',
        title: `Drift repaired: RoleBinding ${where}`,
        text: deleted
          ? `Someone deleted ${visa ? `${subject}'s` : 'a visa'} RoleBinding ${where} in cluster ${event.cluster ?? '?'}; kubevisa created it again, as granted. Check the cluster's audit log for who deleted it.`
          : `Someone changed ${visa ? `${subject}'s` : 'a visa'} RoleBinding ${where} in cluster ${event.cluster ?? '?'}; kubevisa deleted it and restores it as granted. Check the cluster's audit log for who edited it.`,
      };
    }
    default:
      return undefined;
  }
}

/**
 * A profile ClusterRole or one of kubevisa's own RBAC objects edited by hand: put back by the reconciler, or
 * (critical) not put back.
 */
function rbacDriftAlert(event: AuditEvent, base: Omit<Alert, 'severity' | 'title' | 'text'>): Alert {
  const object = String(event.details['object'] ?? '?');
  const cluster = event.cluster ?? '?';
  const added = String(event.details['added'] ?? '');
  if (event.action !== 'cluster.drift.repaired') {
    return {
      ...base,
      severity: 'critical',
      title: `Drift not repaired: ${object}`,
      text: `${object} in cluster ${cluster} differs from what kubevisa installed and was not put back: ${event.reason ?? ''}. Check the cluster's audit log for who edited it.`,
    };
  }
  return {
    ...base,
    severity: 'warning',
    title: `Drift repaired: ${object}`,
    text: `Someone changed ${object} in cluster ${cluster}${added === '' ? '' : `, adding ${added}`}; kubevisa restored the reviewed rules. Check the cluster's audit log for who edited it.`,
  };
}

/** The notice before a visa ends, to its holder and sponsor. */
export function expiryNotice(visa: Visa, sponsor: string | undefined, now: Instant): Alert {
  const minutes = Math.max(0, Math.round((visa.notAfter - now) / 60_000));
  return {
    id: `visa-expiring:${visa.id}`,
    event: 'visa-expiring',
    severity: 'info',
    at: iso(now),
    title: `Visa ${visa.id} ends in ${minutes} min`,
    text: `Visa ${visa.id} (${visaWords(visa)}) ends at ${iso(visa.notAfter)}. To keep working, ask for more time with 'kubevisa extend ${visa.id} --for DURATION --reason TEXT' (it needs a new approval).`,
    ...visaFields({ visa }),
    recipients: recipientsOf({ visa, ...(sponsor !== undefined ? { sponsor } : {}) }),
    details: { notAfter: iso(visa.notAfter) },
  };
}

/** A visa unused for too long. `revoked` when kubevisa revoked it because of that. */
export function staleAlert(
  stale: StaleVisa,
  sponsor: string | undefined,
  staleAfterMs: number,
  revoked: boolean,
): Alert {
  const { visa } = stale;
  const days = (stale.idleMs / 86_400_000).toFixed(1);
  const never = stale.lastUsedAt === undefined;
  return {
    id: `stale-access:${visa.id}:${stale.idleSince}`,
    event: 'stale-access',
    severity: 'warning',
    at: iso(stale.idleSince + stale.idleMs),
    title: `Visa ${visa.id} unused for ${days} days${revoked ? ': revoked' : ''}`,
    text: `Visa ${visa.id} (${visaWords(visa)}) has ${never ? 'never been used' : `not been used since ${iso(stale.lastUsedAt ?? 0)}`} (the limit is ${(staleAfterMs / 86_400_000).toFixed(1)} days). ${revoked ? 'kubevisa revoked it.' : `Revoke it if it is no longer needed: 'kubevisa revoke ${visa.id} --reason unused'.`}`,
    ...visaFields({ visa }),
    recipients: recipientsOf({ visa, ...(sponsor !== undefined ? { sponsor } : {}) }),
    details: {
      idleSince: iso(stale.idleSince),
      lastUsedAt: stale.lastUsedAt === undefined ? null : iso(stale.lastUsedAt),
      revoked,
    },
  };
}

/** A person who has not used any of their visas (their ServiceAccount, the gateway) for too long. */
export function stalePersonAlert(person: StalePerson, staleAfterMs: number): Alert {
  const never = person.lastUsedAt === undefined;
  return {
    id: `stale-access:person:${person.personId}:${person.idleSince}`,
    event: 'stale-access',
    severity: 'warning',
    at: iso(person.idleSince + person.idleMs),
    title: `${person.email} has not used their access for ${(person.idleMs / 86_400_000).toFixed(1)} days`,
    text: `${person.email} holds ${person.visaIds.length} visa(s) (${person.visaIds.join(', ')}) and has ${never ? 'never used any' : `not used any since ${iso(person.lastUsedAt ?? 0)}`} (the limit is ${(staleAfterMs / 86_400_000).toFixed(1)} days). Their ServiceAccount stays in the cluster while a visa grants; revoke what is not needed.`,
    personEmail: person.email,
    recipients: [person.email],
    details: { personId: person.personId, visaIds: person.visaIds, idleSince: iso(person.idleSince) },
  };
}

const FINDING_EVENT: Readonly<Record<Finding['kind'], AlertEvent>> = {
  'shadow-access': 'shadow-access',
  'broad-group': 'shadow-access',
  'legacy-token': 'shadow-access',
  'dangling-binding': 'risky-permission',
  'risky-permission': 'risky-permission',
  drift: 'drift-detected',
};

/** A finding that appeared since the previous scan of the cluster. */
export function findingAlert(cluster: string, finding: Finding, at: Instant): Alert {
  const severity: AlertSeverity =
    finding.severity === 'critical' || finding.severity === 'high'
      ? 'critical'
      : finding.severity === 'medium'
        ? 'warning'
        : 'info';
  const details: JsonObject = { findingId: finding.id, kind: finding.kind, reason: finding.reason };
  if (finding.subject !== undefined) details.subject = finding.subject;
  if (finding.binding !== undefined) details.binding = finding.binding;
  if (finding.role !== undefined) details.role = finding.role;
  if (finding.risks !== undefined) details.risks = [...finding.risks];
  return {
    id: `${FINDING_EVENT[finding.kind]}:${cluster}:${finding.id}`,
    event: FINDING_EVENT[finding.kind],
    severity,
    at: iso(at),
    title: `${finding.kind === 'drift' ? 'Drift' : finding.kind === 'risky-permission' ? 'New risky permission' : 'Shadow access'} in cluster ${cluster}`,
    text: finding.summary,
    cluster,
    recipients: [],
    details,
  };
}

/** Raised when the audit trail fails verification (see src/audit). */
export function auditFailureAlert(input: { at: Instant; message: string; seq?: number }): Alert {
  return {
    id: `audit-verification-failed:${input.at}`,
    event: 'audit-verification-failed',
    severity: 'critical',
    at: iso(input.at),
    title: 'Audit trail verification failed',
    text: `${input.message}. The trail may have been tampered with: keep a copy of the database and the latest checkpoint, and run 'kubevisa audit verify'.`,
    recipients: [],
    details: input.seq === undefined ? {} : { seq: input.seq },
  };
}
