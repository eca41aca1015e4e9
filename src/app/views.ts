/** How domain values look over the API: instants become RFC 3339 UTC strings, nothing secret is included. */
import type { Engagement, Person, Profile, Visa } from '../domain/model.ts';
import { formatDuration, formatInstant } from '../domain/time.ts';

const iso = (ms: number | undefined) => (ms === undefined ? undefined : formatInstant(ms));

export function visaView(visa: Visa) {
  return {
    id: visa.id,
    engagementId: visa.engagementId,
    personId: visa.personId,
    personEmail: visa.personEmail,
    cluster: visa.cluster,
    namespaces: visa.namespaces,
    profile: visa.profile,
    reason: visa.reason,
    state: visa.state,
    requestedAt: iso(visa.requestedAt),
    requestedDuration: formatDuration(visa.requestedSeconds),
    // Until approval the window is not fixed (it starts at approval, or at a later start the request asked for):
    // a requested visa shows the duration asked and that start, never an end counted from the request.
    ...(visa.state !== 'requested'
      ? { notBefore: iso(visa.notBefore), notAfter: iso(visa.notAfter) }
      : visa.notBefore > visa.requestedAt
        ? { notBefore: iso(visa.notBefore) }
        : {}),
    approvals: visa.approvals.map((a) => ({ ...a, at: iso(a.at) })),
    requiredApprovals: visa.requiredApprovals,
    ...(visa.extends ? { extends: visa.extends } : {}),
    ...(visa.decidedAt !== undefined ? { decidedAt: iso(visa.decidedAt), decidedBy: visa.decidedBy } : {}),
    ...(visa.endedAt !== undefined
      ? { endedAt: iso(visa.endedAt), endedBy: visa.endedBy, endReason: visa.endReason }
      : {}),
  };
}

export function engagementView(e: Engagement) {
  return {
    id: e.id,
    name: e.name,
    vendor: e.vendor,
    contractors: e.contractors,
    sponsor: e.sponsor,
    startsAt: iso(e.startsAt),
    endsAt: iso(e.endsAt),
    ceiling: e.ceiling,
    maxVisaDuration: formatDuration(e.maxVisaSeconds),
    status: e.status,
    ...(e.endedAt !== undefined ? { endedAt: iso(e.endedAt), endedBy: e.endedBy, endReason: e.endReason } : {}),
    createdAt: iso(e.createdAt),
    createdBy: e.createdBy,
  };
}

export function personView(p: Person) {
  return {
    id: p.id,
    email: p.email,
    displayName: p.displayName,
    groups: p.groups,
    roles: p.roles,
    status: p.status,
    createdAt: iso(p.createdAt),
    updatedAt: iso(p.updatedAt),
  };
}

export function profileView(p: Profile) {
  return {
    name: p.name,
    description: p.description,
    rules: p.rules,
    declaredRisks: p.declaredRisks,
    maxVisaDuration: formatDuration(p.maxVisaSeconds),
    recordSessions: p.recordSessions,
  };
}
