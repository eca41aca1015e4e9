/**
 * How the CLI shows things to people: relative times ("in 3h", "5m ago"), visa tables and the sentence
 * that tells a person what happens next. Pure functions of the data and the clock.
 */
import type { EngagementJson, PersonJson, VisaJson } from './api-types.ts';

/** `in 3h`, `in 2h15m`, `5m ago`, `now`; empty when `iso` is not a time. Two units at most, rounded down. */
export function relativeTime(iso: string | undefined, nowMs: number): string {
  const at = iso === undefined ? Number.NaN : Date.parse(iso);
  if (!Number.isFinite(at)) return '';
  const seconds = Math.floor(Math.abs(at - nowMs) / 1000);
  if (seconds < 1) return 'now';
  const span = coarseDuration(seconds);
  return at > nowMs ? `in ${span}` : `${span} ago`;
}

/** 45s, 12m, 3h, 3h5m, 2d, 2d4h: the two largest units, rounded down. */
export function coarseDuration(totalSeconds: number): string {
  const seconds = Math.floor(totalSeconds);
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) {
    const minutes = Math.floor((seconds % 3600) / 60);
    return `${Math.floor(seconds / 3600)}h${minutes ? `${minutes}m` : ''}`;
  }
  const hours = Math.floor((seconds % 86_400) / 3600);
  return `${Math.floor(seconds / 86_400)}d${hours ? `${hours}h` : ''}`;
}

/** `2026-03-02T18:00:00Z (in 8h)`. */
export function timeWithRelative(iso: string | undefined, nowMs: number): string {
  if (iso === undefined) return '';
  const relative = relativeTime(iso, nowMs);
  return relative ? `${iso} (${relative})` : iso;
}

export function visaTable(visas: VisaJson[], nowMs: number): { columns: string[]; rows: string[][] } {
  return {
    columns: ['ID', 'PERSON', 'CLUSTER', 'NAMESPACES', 'PROFILE', 'STATE', 'NOT AFTER', 'REASON'],
    rows: visas.map((v) => [
      v.id,
      v.personEmail ?? '',
      v.cluster ?? '',
      (v.namespaces ?? []).join(','),
      v.profile ?? '',
      v.state ?? '',
      v.state === 'requested' ? pendingWindow(v) : timeWithRelative(v.notAfter, nowMs),
      oneLine(v.reason ?? '', 60),
    ]),
  };
}

/** The visa in a few lines for the person who just acted on it. */
export function describeVisa(visa: VisaJson, nowMs: number): string {
  const lines = [
    `Visa ${visa.id}: ${visa.state}`,
    `  who:     ${visa.personEmail}`,
    `  access:  profile ${visa.profile} on cluster ${visa.cluster}, namespace${visa.namespaces.length === 1 ? '' : 's'} ${visa.namespaces.join(', ')}`,
    visa.state === 'requested'
      ? `  window:  ${pendingWindow(visa)} (fixed when approved)`
      : `  window:  ${visa.notBefore} → ${visa.notAfter}${windowNote(visa, nowMs)}`,
    `  reason:  ${oneLine(visa.reason, 200)}`,
  ];
  if (visa.extends) lines.push(`  extends: ${visa.extends}`);
  if (visa.endReason)
    lines.push(`  ended:   ${oneLine(visa.endReason, 200)}${visa.endedBy ? ` (by ${visa.endedBy})` : ''}`);
  return lines.join('\n') + '\n';
}

/**
 * What a request asks for, as long as it waits: the duration, counted from approval or from the start it asked
 * for, whichever is later. Its end is not known before approval, so none is shown.
 */
export function pendingWindow(visa: VisaJson): string {
  return visa.notBefore === undefined
    ? `${visa.requestedDuration} from approval`
    : `${visa.requestedDuration} from ${visa.notBefore} (or approval, if later)`;
}

function windowNote(visa: VisaJson, nowMs: number): string {
  const start = Date.parse(visa.notBefore ?? '');
  const end = Date.parse(visa.notAfter ?? '');
  if (!Number.isFinite(start) || !Number.isFinite(end)) return '';
  if (nowMs < start) return ` (starts ${relativeTime(visa.notBefore, nowMs)})`;
  if (nowMs < end) return ` (ends ${relativeTime(visa.notAfter, nowMs)})`;
  return ` (ended ${relativeTime(visa.notAfter, nowMs)})`;
}

/** What the person should expect or do next, given the visa's state. */
export function nextStep(visa: VisaJson, nowMs: number): string {
  const kubeconfig = `kubevisa kubeconfig --cluster ${visa.cluster}`;
  switch (visa.state) {
    case 'requested': {
      const approvals = visa.approvals?.length ?? 0;
      const needed = Math.max(1, (visa.requiredApprovals ?? 1) - approvals);
      return `Next: ${needed} approval${needed === 1 ? '' : 's'} needed from the engagement's sponsor or an approver (${approvals} so far). Follow it with 'kubevisa visas'; once it is active, run '${kubeconfig}' and use kubectl.`;
    }
    case 'approved':
      return Date.parse(visa.notBefore ?? '') > nowMs
        ? `Next: approved; access starts ${relativeTime(visa.notBefore, nowMs)} (${visa.notBefore}). Run '${kubeconfig}' once, then use kubectl.`
        : `Next: approved; access is being set up in the cluster. Run '${kubeconfig}' once, then use kubectl.`;
    case 'active':
      return `Next: access is live until ${visa.notAfter} (${relativeTime(visa.notAfter, nowMs)}). Run '${kubeconfig}' once, then use kubectl.`;
    case 'denied':
      return `The request was denied${visa.endReason ? `: ${oneLine(visa.endReason, 200)}` : ''}.`;
    case 'revoked':
      return `Access was revoked; RoleBindings are removed and open kubectl streams close.`;
    case 'cancelled':
      return `The request was cancelled.`;
    case 'expired':
      return `The visa has expired; request a new one with 'kubevisa request' if you still need access.`;
    default:
      return '';
  }
}

export function engagementTable(engagements: EngagementJson[], nowMs: number): { columns: string[]; rows: string[][] } {
  return {
    columns: ['ID', 'NAME', 'VENDOR', 'CONTRACTORS', 'SPONSOR', 'CLUSTERS', 'PROFILES', 'ENDS', 'STATUS'],
    rows: engagements.map((e) => [
      e.id,
      e.name ?? '',
      e.vendor ?? '',
      (e.contractors ?? []).join(','),
      e.sponsor ?? '',
      (e.ceiling?.clusters ?? []).join(','),
      (e.ceiling?.profiles ?? []).join(','),
      timeWithRelative(e.endsAt, nowMs),
      e.status ?? '',
    ]),
  };
}

export function personLine(person: PersonJson): string {
  const name =
    person.displayName && person.displayName !== person.email
      ? `${person.displayName} <${person.email}>`
      : person.email;
  const roles = person.roles?.length ? person.roles.join(', ') : 'contractor (no roles)';
  return `${name}, ${roles}`;
}

/** Collapses whitespace and cuts long text for a table cell. */
export function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
