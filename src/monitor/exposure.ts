/**
 * The exposure scan of a whole cluster: every binding resolved into grants (rbac-index.ts), then judged for
 *  - shadow access: bindings kubevisa does not manage whose subjects look like contractors (an engagement's
 *    contractor email or domain, a user the identity provider does not know or has deprovisioned, a visa holder's
 *    own ServiceAccount, a ServiceAccount with a legacy long-lived token);
 *  - broad groups: bindings to `system:authenticated`, `system:serviceaccounts`,
 *    `system:serviceaccounts:kubevisa-visas` (and `system:unauthenticated`), which reach every visa holder because
 *    impersonating or authenticating as a visa ServiceAccount adds those groups;
 *  - risky permissions: the profile linter's risks (rbac/lint.ts), per grant, where they can really be used;
 *  - legacy token Secrets, and bindings to roles that do not exist.
 * Pure: the adapter lists the objects and builds the directory; the clock is an argument.
 */
import type { Instant, PersonStatus } from '../domain/model.ts';
import { couldPassForAnother } from '../domain/email.ts';
import { type Finding, type FindingDetail, type Severity, severityRank, sortFindings } from './findings.ts';
import { permissionMatrix, type MatrixRow } from '../rbac/matrix.ts';
import {
  AUTHENTICATED_GROUP,
  buildRbacIndex,
  effectiveRisks,
  SERVICE_ACCOUNTS_GROUP,
  UNAUTHENTICATED_GROUP,
  type Grant,
  type RbacIndex,
  type RbacObjects,
  type SubjectInfo,
} from '../rbac/rbac-index.ts';

/** The namespace of the visa holders' ServiceAccounts (cluster/objects.ts VISAS_NAMESPACE). */
export const VISAS_NAMESPACE = 'kubevisa-visas';

/** Who reaches what through each broad group, for the finding's sentence. */
export const BROAD_GROUPS: ReadonlyMap<string, string> = new Map([
  [UNAUTHENTICATED_GROUP, 'anyone, even without a credential'],
  [AUTHENTICATED_GROUP, 'every authenticated user, so every visa holder'],
  [SERVICE_ACCOUNTS_GROUP, 'every ServiceAccount, so every visa holder'],
  [`${SERVICE_ACCOUNTS_GROUP}:${VISAS_NAMESPACE}`, 'every visa holder'],
]);

/** A `kubernetes.io/service-account-token` Secret: a token that never expires. Its data is never read. */
export interface LegacyTokenSecret {
  namespace: string;
  name: string;
  /** The `kubernetes.io/service-account.name` annotation. */
  serviceAccount: string;
  /** RFC 3339, from metadata.creationTimestamp. */
  createdAt?: string;
  /** Label `kubernetes.io/legacy-token-last-used` (a date) that kube-apiserver ≥ 1.29 keeps. */
  lastUsed?: string;
  /** Label `kubernetes.io/legacy-token-invalid-since`: the cleaner has invalidated it. */
  invalidSince?: string;
}

/** A ServiceAccount seen authenticating with a legacy token (kube-apiserver audit annotation). */
export interface LegacyTokenUse {
  /** `ns/name`. */
  serviceAccount: string;
  lastSeen: Instant;
}

/** What kubevisa knows about people, to tell a contractor from an employee. Emails and domains lower-cased. */
export interface ContractorDirectory {
  /** Every contractor of every engagement, with whether one of their engagements is still active. */
  contractors: ReadonlyMap<string, { engagements: readonly string[]; active: boolean }>;
  /** Domains whose users count as contractors (configured, or of engagement contractors but not of staff). */
  contractorDomains: ReadonlySet<string>;
  /** People the identity provider has given kubevisa. */
  persons: ReadonlyMap<string, { id: string; status: PersonStatus }>;
}

export interface ExposureInput {
  cluster: string;
  objects: RbacObjects;
  /** undefined when they could not be listed (kubevisa's own credential may not list Secrets). */
  tokenSecrets: readonly LegacyTokenSecret[] | undefined;
  /** From the kube-apiserver audit log, when ingested. */
  legacyTokenUses: readonly LegacyTokenUse[];
  directory: ContractorDirectory;
}

export interface ExposureAnalysis {
  index: RbacIndex;
  findings: Finding[];
  /** Built only when asked: it is the expensive part. */
  matrix?: MatrixRow[];
  counts: { bindings: number; roles: number; clusterRoles: number; subjects: number; grants: number };
}

/** Runs the scan. `withMatrix` also computes every subject's effective permissions in every namespace. */
export function analyzeExposure(input: ExposureInput, options: { withMatrix?: boolean } = {}): ExposureAnalysis {
  const index = buildRbacIndex(input.objects);
  const findings: Finding[] = [];
  const legacySecretsBySa = new Map<string, LegacyTokenSecret[]>();
  for (const secret of input.tokenSecrets ?? []) {
    const key = `${secret.namespace}/${secret.serviceAccount}`;
    const list = legacySecretsBySa.get(key);
    if (list === undefined) legacySecretsBySa.set(key, [secret]);
    else list.push(secret);
  }
  const legacyUses = new Map(input.legacyTokenUses.map((use) => [use.serviceAccount, use.lastSeen]));
  const danglingSeen = new Set<string>();

  for (const grant of index.grants) {
    const risks = effectiveRisks(grant);
    const builtin = grant.binding.builtin || grant.subject.system;
    if (risks.length > 0) findings.push(riskyFinding(grant, risks, builtin));
    if (!grant.role.exists) {
      const id = `dangling-binding:${bindingLabel(grant)}`;
      if (!danglingSeen.has(id)) {
        danglingSeen.add(id);
        findings.push({
          id,
          kind: 'dangling-binding',
          severity: 'low',
          reason: 'role-missing',
          summary: `${bindingLabel(grant)} refers to ${roleLabel(grant)}, which does not exist: whoever creates it grants it to the binding's subjects`,
          namespace: grant.namespace,
          binding: bindingLabel(grant),
          role: roleLabel(grant),
          managed: grant.binding.managed,
          builtin: grant.binding.builtin,
          details: {},
        });
      }
    }
    const broad = grant.subject.kind === 'Group' ? BROAD_GROUPS.get(grant.subject.name) : undefined;
    if (broad !== undefined && grant.role.rules.length > 0) findings.push(broadFinding(grant, broad, risks));
    if (!grant.binding.managed) {
      const shadow = shadowReasons(grant.subject, input.directory, legacySecretsBySa, legacyUses);
      if (shadow.length > 0) findings.push(shadowFinding(grant, shadow, risks));
    }
  }
  for (const secret of input.tokenSecrets ?? []) findings.push(legacyTokenFinding(secret, index));

  const result: ExposureAnalysis = {
    index,
    findings: sortFindings(findings),
    counts: {
      bindings: input.objects.roleBindings.length + input.objects.clusterRoleBindings.length,
      roles: input.objects.roles.length,
      clusterRoles: input.objects.clusterRoles.length,
      subjects: index.subjects.size,
      grants: index.grants.length,
    },
  };
  if (options.withMatrix === true) result.matrix = permissionMatrix(index);
  return result;
}

interface ShadowReason {
  reason: string;
  severity: Severity;
  because: string;
  details: Record<string, FindingDetail>;
}

function shadowReasons(
  subject: SubjectInfo,
  directory: ContractorDirectory,
  legacySecretsBySa: ReadonlyMap<string, readonly LegacyTokenSecret[]>,
  legacyUses: ReadonlyMap<string, Instant>,
): ShadowReason[] {
  const reasons: ShadowReason[] = [];
  if (subject.kind === 'User' && !subject.system && couldPassForAnother(subject.name)) {
    // Kubernetes matches subjects exactly: `\u212Aim@…` (the Kelvin sign) is another identity than kim@…, which
    // lower-casing would take it for — a client certificate or a look-alike account at the cluster's authenticator.
    reasons.push({
      reason: 'look-alike-user',
      severity: 'high',
      because: `${JSON.stringify(subject.name)} holds a character that is invisible or changes case into a plain letter: it looks like another person's name but is another identity to Kubernetes`,
      details: {},
    });
  } else if (subject.kind === 'User' && !subject.system) {
    const name = subject.name.toLowerCase();
    const contractor = directory.contractors.get(name);
    const person = directory.persons.get(name);
    const domain = name.includes('@') ? name.slice(name.lastIndexOf('@') + 1) : undefined;
    if (contractor !== undefined) {
      reasons.push({
        reason: 'contractor-email',
        severity: contractor.active ? 'high' : 'critical',
        because: `${subject.name} is a contractor of ${contractor.engagements.join(', ')}${contractor.active ? '' : ' (every engagement has ended)'}`,
        details: { engagements: contractor.engagements, engagementActive: contractor.active },
      });
    }
    if (person !== undefined && person.status !== 'active') {
      reasons.push({
        reason: 'deprovisioned-user',
        severity: 'critical',
        because: `${subject.name} is ${person.status} at the identity provider`,
        details: { personId: person.id, status: person.status },
      });
    }
    if (contractor === undefined && domain !== undefined && directory.contractorDomains.has(domain)) {
      reasons.push({
        reason: 'contractor-domain',
        severity: 'high',
        because: `${subject.name} is in the contractor domain ${domain}`,
        details: { domain },
      });
    }
    if (person === undefined && contractor === undefined) {
      reasons.push({
        reason: 'unknown-user',
        severity: 'medium',
        because: `${subject.name} is not known to the identity provider (a certificate, a static token or a left-over)`,
        details: {},
      });
    }
  }
  if (subject.kind === 'ServiceAccount') {
    const key = `${subject.namespace}/${subject.name}`;
    if (subject.namespace === VISAS_NAMESPACE) {
      reasons.push({
        reason: 'visa-identity',
        severity: 'critical',
        because: `${key} is a visa holder's identity: a binding kubevisa does not manage outlives every visa`,
        details: {},
      });
    }
    const secrets = legacySecretsBySa.get(key);
    if (secrets !== undefined) {
      reasons.push({
        reason: 'legacy-token',
        severity: 'high',
        because: `${key} has long-lived token Secret(s) ${secrets.map((s) => s.name).join(', ')} that never expire`,
        details: { secrets: secrets.map((s) => `${s.namespace}/${s.name}`) },
      });
    }
    const lastSeen = legacyUses.get(key);
    if (lastSeen !== undefined) {
      reasons.push({
        reason: 'legacy-token-in-use',
        severity: 'high',
        because: `${key} authenticated with a legacy token (kube-apiserver audit log, last ${new Date(lastSeen).toISOString()})`,
        details: { lastSeen: new Date(lastSeen).toISOString() },
      });
    }
  }
  return reasons.sort((a, b) => severityRank(a.severity) - severityRank(b.severity));
}

function shadowFinding(grant: Grant, reasons: readonly ShadowReason[], risks: readonly string[]): Finding {
  const first = reasons[0]!;
  const details: Record<string, FindingDetail> = { reasons: reasons.map((r) => r.reason) };
  for (const reason of reasons) Object.assign(details, reason.details);
  return {
    id: `shadow-access:${bindingLabel(grant)}:${grant.subject.key}`,
    kind: 'shadow-access',
    severity: first.severity,
    reason: first.reason,
    summary: `${bindingLabel(grant)} gives ${roleLabel(grant)} ${where(grant)} to ${subjectLabel(grant.subject)}, which kubevisa does not manage: ${reasons.map((r) => r.because).join('; ')}`,
    subject: grant.subject.key,
    namespace: grant.namespace,
    binding: bindingLabel(grant),
    role: roleLabel(grant),
    risks,
    managed: false,
    builtin: grant.binding.builtin,
    details,
  };
}

function broadFinding(grant: Grant, reach: string, risks: readonly string[]): Finding {
  const builtin = grant.binding.builtin;
  const severity: Severity = builtin ? 'info' : risks.length > 0 ? 'critical' : 'medium';
  return {
    id: `broad-group:${bindingLabel(grant)}:${grant.subject.name}`,
    kind: 'broad-group',
    severity,
    reason: grant.subject.name,
    summary: `${bindingLabel(grant)} gives ${roleLabel(grant)} ${where(grant)} to group ${grant.subject.name}: that is ${reach}${risks.length > 0 ? `, with risks ${risks.join(', ')}` : ''}`,
    subject: grant.subject.key,
    namespace: grant.namespace,
    binding: bindingLabel(grant),
    role: roleLabel(grant),
    risks,
    managed: grant.binding.managed,
    builtin,
    details: { reaches: reach },
  };
}

const RISK_SEVERITY: Readonly<Record<string, Severity>> = {
  escalate: 'critical',
  bind: 'critical',
  impersonate: 'critical',
  'nodes-proxy': 'critical',
  'csr-approval': 'critical',
  'admission-webhooks': 'critical',
  wildcard: 'high',
  'secrets-read': 'high',
  'serviceaccount-token': 'high',
  'pods-exec': 'high',
  'pods-attach': 'high',
  'pods-ephemeralcontainers': 'high',
  'proxy-subresource': 'high',
  'namespace-write': 'high',
  'pods-portforward': 'medium',
  'non-resource-url': 'low',
};

function riskyFinding(grant: Grant, risks: readonly string[], builtin: boolean): Finding {
  let severity: Severity = 'low';
  for (const risk of risks) {
    const candidate = RISK_SEVERITY[risk] ?? 'medium';
    if (severityRank(candidate) < severityRank(severity)) severity = candidate;
  }
  // A wildcard across the whole cluster is cluster-admin in all but name.
  if (grant.namespace === '' && risks.includes('wildcard')) severity = 'critical';
  return {
    id: `risky-permission:${bindingLabel(grant)}:${grant.subject.key}`,
    kind: 'risky-permission',
    severity,
    reason: risks[0] ?? '',
    summary: `${subjectLabel(grant.subject)} can ${risks.join(', ')} ${where(grant)} through ${bindingLabel(grant)} (${roleLabel(grant)})${grant.binding.visaId ? ` — visa ${grant.binding.visaId}` : ''}`,
    subject: grant.subject.key,
    namespace: grant.namespace,
    binding: bindingLabel(grant),
    role: roleLabel(grant),
    risks,
    managed: grant.binding.managed,
    builtin,
    details: grant.binding.visaId ? { visaId: grant.binding.visaId } : {},
  };
}

function legacyTokenFinding(secret: LegacyTokenSecret, index: RbacIndex): Finding {
  const key = `ServiceAccount:${secret.namespace}/${secret.serviceAccount}`;
  const bound = index.grantsOf(key).filter((grant) => grant.role.rules.length > 0);
  const details: Record<string, FindingDetail> = {
    serviceAccount: `${secret.namespace}/${secret.serviceAccount}`,
    bindings: [...new Set(bound.map(bindingLabel))],
  };
  if (secret.createdAt !== undefined) details.createdAt = secret.createdAt;
  if (secret.lastUsed !== undefined) details.lastUsed = secret.lastUsed;
  if (secret.invalidSince !== undefined) details.invalidSince = secret.invalidSince;
  const invalid = secret.invalidSince !== undefined;
  return {
    id: `legacy-token:${secret.namespace}/${secret.name}`,
    kind: 'legacy-token',
    severity: invalid ? 'low' : bound.length > 0 ? 'high' : 'medium',
    reason: invalid ? 'invalidated' : 'never-expires',
    summary: `Secret ${secret.namespace}/${secret.name} holds a token for ServiceAccount ${secret.serviceAccount} that never expires${invalid ? ` (invalidated since ${secret.invalidSince})` : ''}${bound.length > 0 ? `; the account is bound by ${details.bindings}` : ''}${secret.lastUsed ? `; last used ${secret.lastUsed}` : ''}`,
    subject: key,
    namespace: secret.namespace,
    managed: false,
    builtin: false,
    details,
  };
}

export function bindingLabel(grant: Pick<Grant, 'binding'>): string {
  const { binding } = grant;
  return binding.kind === 'RoleBinding'
    ? `RoleBinding ${binding.namespace}/${binding.name}`
    : `ClusterRoleBinding ${binding.name}`;
}

export function roleLabel(grant: Pick<Grant, 'role'>): string {
  const { role } = grant;
  return role.kind === 'Role' ? `Role ${role.namespace}/${role.name}` : `ClusterRole ${role.name}`;
}

export function subjectLabel(subject: SubjectInfo): string {
  return subject.kind === 'ServiceAccount'
    ? `ServiceAccount ${subject.namespace}/${subject.name}`
    : `${subject.kind} ${subject.name}`;
}

function where(grant: Grant): string {
  return grant.namespace === '' ? 'cluster-wide' : `in namespace ${grant.namespace}`;
}

/**
 * The directory from kubevisa's records. Contractor domains: the configured ones, plus the domains of engagement
 * contractors that no sponsor or staff member shares (so a contractor with a company address does not make every
 * employee look like one).
 */
export function buildDirectory(input: {
  engagements: readonly { name: string; contractors: readonly string[]; sponsor: string; status: string }[];
  persons: readonly { id: string; email: string; status: PersonStatus; roles: readonly string[] }[];
  contractorDomains?: readonly string[];
}): ContractorDirectory {
  const contractors = new Map<string, { engagements: string[]; active: boolean }>();
  const staffDomains = new Set<string>();
  const domainOf = (email: string) => email.slice(email.lastIndexOf('@') + 1).toLowerCase();
  for (const engagement of input.engagements) {
    staffDomains.add(domainOf(engagement.sponsor));
    for (const raw of engagement.contractors) {
      const email = raw.toLowerCase();
      const entry = contractors.get(email) ?? { engagements: [], active: false };
      entry.engagements.push(engagement.name);
      entry.active ||= engagement.status === 'active';
      contractors.set(email, entry);
    }
  }
  for (const person of input.persons) if (person.roles.length > 0) staffDomains.add(domainOf(person.email));
  const domains = new Set((input.contractorDomains ?? []).map((d) => d.toLowerCase()));
  for (const email of contractors.keys()) {
    const domain = domainOf(email);
    if (!staffDomains.has(domain)) domains.add(domain);
  }
  return {
    contractors,
    contractorDomains: domains,
    persons: new Map(input.persons.map((p) => [p.email.toLowerCase(), { id: p.id, status: p.status }])),
  };
}
