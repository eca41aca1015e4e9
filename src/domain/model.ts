/**
 * The domain's data: plain, serialisable values shared by every layer. Times are instants in epoch
 * milliseconds (UTC); input with any UTC offset is converted to an instant at the edge (see time.ts),
 * so every comparison here is between absolute deadlines.
 */

/** Epoch milliseconds (UTC). */
export type Instant = number;

export type PersonStatus = 'active' | 'suspended' | 'deprovisioned';
/** Roles an employee can hold in kubevisa. A person with no role is a contractor (a requester). */
export type PersonRole = 'admin' | 'approver' | 'auditor';

export interface Person {
  /** kubevisa's own id (`p_` + random). */
  id: string;
  /** OIDC issuer and subject: the identity that never changes. */
  issuer: string;
  subject: string;
  /** Lower-cased email from the IdP; used for engagements, sponsorship and in-cluster annotations. */
  email: string;
  displayName: string;
  groups: string[];
  roles: PersonRole[];
  status: PersonStatus;
  createdAt: Instant;
  updatedAt: Instant;
}

/** The most an engagement allows; every visa under it must fit inside. */
export interface Ceiling {
  /** Cluster names (exact). */
  clusters: string[];
  /** Namespace patterns: exact names or a trailing `*` wildcard (`payments`, `staging-*`). */
  namespacePatterns: string[];
  /** Profile names. */
  profiles: string[];
}

export type EngagementStatus = 'active' | 'ended';

/** The contract: no engagement, no access. When it ends, every visa under it is revoked. */
export interface Engagement {
  id: string;
  name: string;
  vendor: string;
  /** Lower-cased emails of the contractors covered by the contract. */
  contractors: string[];
  /** Lower-cased email of the employee who answers for the contract; approves by default. */
  sponsor: string;
  startsAt: Instant;
  endsAt: Instant;
  ceiling: Ceiling;
  /** Longest single visa under this engagement, in seconds. */
  maxVisaSeconds: number;
  status: EngagementStatus;
  endedAt?: Instant;
  endedBy?: string;
  /** Why the engagement was ended (set by `endEngagement`, manually or when its end date passed). */
  endReason?: string;
  createdAt: Instant;
  createdBy: string;
}

/** One Kubernetes RBAC rule, as in a ClusterRole. */
export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
  nonResourceURLs?: string[];
}

/** A risk a profile accepts on purpose; the linter only lets a risky rule through when it is declared. */
export interface DeclaredRisk {
  /** A linter rule id, e.g. `pods-exec`, `secrets-read`. */
  risk: string;
  justification: string;
}

/** A named, reviewed set of RBAC rules, installed as ClusterRole `kubevisa:profile:<name>`. */
export interface Profile {
  name: string;
  description: string;
  rules: PolicyRule[];
  declaredRisks: DeclaredRisk[];
  /** Longest visa with this profile, in seconds. */
  maxVisaSeconds: number;
  /** Record exec/attach sessions (asciicast v2) when used through the gateway. */
  recordSessions: boolean;
  /**
   * Whether holders may take a direct token (kubectl straight to kube-apiserver, no gateway) on clusters that
   * allow direct mode. Absent means `denied`. Never effective for a profile that records sessions or grants
   * pods/exec, pods/attach or pods/portforward (see rbac/direct-mode.ts).
   */
  directMode?: 'allowed' | 'denied';
}

export type VisaState = 'requested' | 'approved' | 'active' | 'expired' | 'revoked' | 'denied' | 'cancelled';

export interface Approval {
  /** Email of the approver. */
  by: string;
  at: Instant;
  comment?: string;
  /** True when a policy rule approved the request, with `by` naming the rule. */
  automatic?: boolean;
}

/** engagement × profile × cluster × namespaces × window [notBefore, notAfter] × reason. */
export interface Visa {
  id: string;
  engagementId: string;
  personId: string;
  /** Lower-cased email of the holder (denormalised: it is what the cluster annotations show). */
  personEmail: string;
  cluster: string;
  namespaces: string[];
  profile: string;
  reason: string;
  requestedAt: Instant;
  /** Length asked for, in seconds; the window is fixed at approval. */
  requestedSeconds: number;
  notBefore: Instant;
  notAfter: Instant;
  state: VisaState;
  approvals: Approval[];
  /** Approvals needed before the visa is granted (policy at request time). */
  requiredApprovals: number;
  /** The visa this one extends (an extension is a new visa that needs a new approval). */
  extends?: string;
  decidedAt?: Instant;
  decidedBy?: string;
  endedAt?: Instant;
  endedBy?: string;
  endReason?: string;
}

/** Automatic approval: e.g. `viewer` on `staging-*` up to 4 h. */
export interface AutoApprovalRule {
  name: string;
  profiles: string[];
  clusters: string[];
  namespacePatterns: string[];
  maxSeconds: number;
}

/** Days 0 (Sunday) … 6 (Saturday), hours in the given IANA time zone, [fromHour, toHour). */
export interface WorkingHours {
  timeZone: string;
  days: number[];
  fromHour: number;
  toHour: number;
}

export interface Policy {
  /** Approvals needed for a request that no auto-approval rule covers. */
  requiredApprovals: number;
  /** Groups whose members may approve (besides the engagement's sponsor and admins). */
  approverGroups: string[];
  autoApproval: AutoApprovalRule[];
  /** When set, visas may only be requested to start within these hours. */
  workingHours?: WorkingHours;
  /** Longest visa anywhere, in seconds. */
  maxVisaSeconds: number;
  /** How long before expiry the holder and sponsor are told, in seconds. */
  expiryNoticeSeconds: number;
  /**
   * Namespaces no visa may grant besides those kubevisa always protects (see protected-namespaces.ts): names or
   * `prefix*` patterns. Default: none added.
   */
  protectedNamespaces?: string[];
}

/** Who is acting: the authenticated caller of an API call. */
export interface Actor {
  personId: string;
  email: string;
  roles: PersonRole[];
  groups: string[];
}
