/**
 * The console's API client: same-origin fetches that carry the session cookie (sent by the browser, unreadable
 * here) and, on every state-changing call, the session's CSRF token. Errors are the API's problem documents, shown
 * as they are: the console says exactly what the CLI would.
 */

export interface Person {
  id: string;
  email: string;
  displayName: string;
  groups: string[];
  roles: ('admin' | 'approver' | 'auditor')[];
  status: string;
}

export interface Session {
  signedIn: true;
  person: Person;
  csrfToken: string;
  serverUrl: string;
  /** How long before its end a visa's holder is told it ends (the policy's pre-expiry notice). */
  expiryNoticeSeconds: number;
  commands: { login: string; kubeconfig: string };
}

export interface Visa {
  id: string;
  engagementId: string;
  personId: string;
  personEmail: string;
  cluster: string;
  namespaces: string[];
  profile: string;
  reason: string;
  state: 'requested' | 'approved' | 'active' | 'expired' | 'revoked' | 'denied' | 'cancelled';
  requestedAt: string;
  requestedDuration: string;
  notBefore?: string;
  notAfter?: string;
  approvals: { by: string; at: string; comment?: string }[];
  requiredApprovals: number;
  extends?: string;
  decidedAt?: string;
  decidedBy?: string;
  endedAt?: string;
  endedBy?: string;
  endReason?: string;
}

export interface Engagement {
  id: string;
  name: string;
  vendor: string;
  contractors: string[];
  sponsor: string;
  startsAt: string;
  endsAt: string;
  ceiling: { clusters: string[]; namespacePatterns: string[]; profiles: string[] };
  maxVisaDuration: string;
  status: string;
  endedAt?: string;
  endReason?: string;
}

export interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface Profile {
  name: string;
  description: string;
  rules: Rule[];
  declaredRisks: { risk: string; justification: string }[];
  maxVisaDuration: string;
  recordSessions: boolean;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let csrfToken = '';

export function setCsrfToken(token: string): void {
  csrfToken = token;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const problem = (parsed ?? {}) as { code?: string; detail?: string };
    throw new ApiError(
      response.status,
      problem.code ?? 'ERR_HTTP',
      problem.detail ?? `${method} ${path} answered ${response.status}`,
    );
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body);

/** A query string from the defined, non-empty values. */
export function query(values: Record<string, string | number | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}
