/**
 * Reading kube-apiserver audit events (audit.k8s.io/v1 `Event`, one JSON object per line in a log file, or an
 * `EventList` from the audit webhook backend) into the facts usage tracking needs: who really made the request
 * (the impersonated user when there is one: that is how the gateway reaches the cluster), when, in which
 * namespace, and whether a legacy never-expiring token authenticated it. Pure.
 *
 * What kube-apiserver writes, quoted from v1.37 (test control plane, Metadata level):
 *   "user":{"username":"system:serviceaccount:ci:deployer",…},
 *   "impersonatedUser":{"username":"system:serviceaccount:ci:deployer",…},
 *   "objectRef":{"resource":"pods","namespace":"ci","apiVersion":"v1"},
 *   "stageTimestamp":"2026-11-27T23:56:54.770146Z",
 *   "annotations":{"authentication.k8s.io/legacy-token":"system:serviceaccount:ci:deployer",
 *                  "authentication.k8s.io/legacy-token-manual-secret":"deployer-token",…}
 * and for a TokenRequest (bound) token, `user.extra["authentication.kubernetes.io/credential-id"]: ["JTI=…"]`.
 */
import type { Instant } from '../domain/model.ts';
import { SERVICE_ACCOUNT_PREFIX } from '../rbac/rbac-index.ts';

export interface AuditUse {
  at: Instant;
  /** The identity the request acted as: `impersonatedUser.username`, else `user.username`. */
  username: string;
  /** The ServiceAccount behind `username`, when it is one. */
  serviceAccount?: { namespace: string; name: string };
  /** objectRef.namespace, when the request was namespaced. */
  namespace?: string;
  /** The request authenticated with a legacy ServiceAccount token Secret. */
  legacyToken: boolean;
  /** `user.extra["authentication.kubernetes.io/credential-id"]` (e.g. `JTI=…`): which token, never the token. */
  credentialId?: string;
  /** HTTP status of the answer, when the stage has one. */
  code?: number;
}

/** Reads one audit log line. Lines that are not audit events (blank, truncated, other JSON) give undefined. */
export function parseAuditLine(line: string): AuditUse | undefined {
  const trimmed = line.trim();
  if (trimmed === '' || trimmed[0] !== '{') return undefined;
  let event: unknown;
  try {
    event = JSON.parse(trimmed);
  } catch (error) {
    // A line cut short by rotation or a crash of kube-apiserver; the next complete line is read normally.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
  return auditUseOf(event);
}

/**
 * Reads an audit webhook body (`EventList`) or a single `Event`. kube-apiserver's webhook backend sends the items
 * of an EventList without their own `kind` (a list carries the type once, as Kubernetes lists do), so an item is
 * read as an Event unless it names another kind.
 */
export function parseAuditPayload(body: unknown): AuditUse[] {
  if (isRecord(body) && Array.isArray(body['items'])) {
    return body['items']
      .map((item) => (isRecord(item) && item['kind'] === undefined ? { ...item, kind: 'Event' } : item))
      .map(auditUseOf)
      .filter((use): use is AuditUse => use !== undefined);
  }
  const single = auditUseOf(body);
  return single === undefined ? [] : [single];
}

/** One audit `Event` object; undefined for anything else. */
export function auditUseOf(event: unknown): AuditUse | undefined {
  if (!isRecord(event) || event['kind'] !== 'Event') return undefined;
  // Only one stage per request, so a long watch does not count at both ends: ResponseComplete, or Panic.
  const stage = event['stage'];
  if (stage !== 'ResponseComplete' && stage !== 'Panic') return undefined;
  const user = isRecord(event['user']) ? event['user'] : undefined;
  const impersonated = isRecord(event['impersonatedUser']) ? event['impersonatedUser'] : undefined;
  const username = stringField(impersonated, 'username') ?? stringField(user, 'username');
  const timestamp = stringField(event, 'stageTimestamp') ?? stringField(event, 'requestReceivedTimestamp');
  const at = timestamp === undefined ? Number.NaN : Date.parse(timestamp);
  if (username === undefined || !Number.isFinite(at)) return undefined;
  const annotations = isRecord(event['annotations']) ? event['annotations'] : {};
  const objectRef = isRecord(event['objectRef']) ? event['objectRef'] : undefined;
  const extra = impersonated === undefined && user !== undefined && isRecord(user['extra']) ? user['extra'] : undefined;
  const credentialIds = extra?.['authentication.kubernetes.io/credential-id'];
  const status = isRecord(event['responseStatus']) ? event['responseStatus']['code'] : undefined;
  const use: AuditUse = {
    at,
    username,
    // The annotation names the account whose legacy token authenticated, which is `user`, not an impersonated one.
    legacyToken: typeof annotations['authentication.k8s.io/legacy-token'] === 'string' && impersonated === undefined,
  };
  const serviceAccount = serviceAccountOf(username);
  if (serviceAccount !== undefined) use.serviceAccount = serviceAccount;
  const namespace = stringField(objectRef, 'namespace');
  if (namespace !== undefined && namespace !== '') use.namespace = namespace;
  if (Array.isArray(credentialIds) && typeof credentialIds[0] === 'string') use.credentialId = credentialIds[0];
  if (typeof status === 'number') use.code = status;
  return use;
}

/** `system:serviceaccount:<ns>:<name>` → its namespace and name. */
export function serviceAccountOf(username: string): { namespace: string; name: string } | undefined {
  if (!username.startsWith(SERVICE_ACCOUNT_PREFIX)) return undefined;
  const rest = username.slice(SERVICE_ACCOUNT_PREFIX.length);
  const colon = rest.indexOf(':');
  if (colon <= 0 || colon === rest.length - 1) return undefined;
  return { namespace: rest.slice(0, colon), name: rest.slice(colon + 1) };
}

function stringField(record: Record<string, unknown> | undefined, field: string): string | undefined {
  const value = record?.[field];
  return typeof value === 'string' ? value : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
