/**
 * The one place that knows @kubernetes/client-node: building its API clients with a per-request timeout, turning
 * its failures into kubevisa's typed cluster errors, and reading its objects into kubevisa's own narrow shapes.
 * An upgrade of the library touches this file (and client.ts), nothing else.
 */
import {
  AdmissionregistrationV1Api,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  ServerConfiguration,
  createConfiguration,
  type KubeConfig,
  type Middleware,
  type RequestContext,
  type ResponseContext,
  type SecurityAuthentication,
} from '@kubernetes/client-node';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { KubevisaError } from '../domain/errors.ts';
import { FENCING_REFUSAL } from './fencing.ts';
import type { PolicyRule } from '../domain/model.ts';
import {
  AlreadyExists,
  ClusterForbidden,
  Fenced,
  ClusterRequestFailed,
  ClusterUnauthorized,
  ClusterUnreachable,
  ObjectMissing,
  ResourceVersionConflict,
} from './errors.ts';
import type {
  ClusterRole,
  ClusterRoleBinding,
  ObjectMeta,
  Role,
  RoleBinding,
  RoleRef,
  ServiceAccount,
  Subject,
} from './objects.ts';

/** The default limit on one API request, in milliseconds: connecting, sending and reading the whole answer. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** The generated API groups kubevisa uses. */
export interface Apis {
  core: CoreV1Api;
  admission: AdmissionregistrationV1Api;
  rbac: RbacAuthorizationV1Api;
  authorization: AuthorizationV1Api;
  authentication: AuthenticationV1Api;
}

/** client-node's connection pool (undici's), as its request context holds it. */
type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** How long one connection pool serves before a new one takes over (rotated certificate files are read again). */
const DISPATCHER_LIFETIME_MS = 5 * 60_000;

/**
 * The kubeconfig's authentication (headers: token, exec plugin, basic) with one connection pool kept across requests.
 * client-node builds a new undici Agent for every request, so every request opened a TLS connection of its own: a
 * handshake each for kubevisa and kube-apiserver, which was most of the CPU of a pass's thousand deletes. The pool is
 * replaced every few minutes (the old one finishes what it carries), so TLS material read from files is not kept
 * for ever.
 */
function reusingConnections(kubeConfig: KubeConfig): SecurityAuthentication {
  let pool: { dispatcher: Dispatcher; until: number } | undefined;
  return {
    getName: () => 'kubeconfig, with connections reused',
    async applySecurityAuthentication(context: RequestContext): Promise<void> {
      await kubeConfig.applySecurityAuthentication(context);
      const fresh = context.getDispatcher();
      if (fresh === undefined) return;
      const now = Date.now();
      if (pool !== undefined && now < pool.until) {
        context.setDispatcher(pool.dispatcher);
        // Never used: no connection to close.
        void fresh.close().catch(() => undefined);
        return;
      }
      const previous = pool?.dispatcher;
      pool = { dispatcher: fresh, until: now + DISPATCHER_LIFETIME_MS };
      void previous?.close().catch(() => undefined);
    },
  };
}

/**
 * API clients for the kubeconfig's current cluster and user. Every request is aborted after `requestTimeoutMs`
 * (client-node sets no timeout of its own, so a silent server would hang a caller forever) and says `kubevisa`
 * in its User-Agent, which kube-apiserver's audit log records.
 */
export function makeApis(kubeConfig: KubeConfig, requestTimeoutMs: number): Apis {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error('makeApis: the kubeconfig has no current cluster');
  const perRequest: Middleware = {
    async pre(context: RequestContext): Promise<RequestContext> {
      context.setHeaderParam('User-Agent', 'kubevisa');
      context.setSignal(AbortSignal.timeout(requestTimeoutMs));
      return context;
    },
    async post(context: ResponseContext): Promise<ResponseContext> {
      return context;
    },
  };
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: reusingConnections(kubeConfig) },
    promiseMiddleware: [perRequest],
  });
  return {
    core: new CoreV1Api(configuration),
    admission: new AdmissionregistrationV1Api(configuration),
    rbac: new RbacAuthorizationV1Api(configuration),
    authorization: new AuthorizationV1Api(configuration),
    authentication: new AuthenticationV1Api(configuration),
  };
}

/** A GET that returns the parsed JSON body, for answers client-node's models cannot express or would slow down. */
export type RawGet = (path: string, query: Record<string, string | undefined>, accept?: string) => Promise<unknown>;

/** Answers larger than this are refused (bytes): one page of a list is far below it. */
const MAX_RAW_BODY_BYTES = 256 * 1024 * 1024;

/**
 * Plain GETs with the kubeconfig's credential (client-node applies the certificate, token or exec plugin) and the
 * same timeout and User-Agent as `makeApis`. Used for bulk lists, where client-node's model conversion of tens of
 * thousands of objects costs more than the request, and for metadata-only lists (`Accept:
 * ...;as=PartialObjectMetadataList`), which its models cannot ask for. Failures are shaped like client-node's, so
 * `toClusterError` reads them: `{ statusCode, body }` for an answer, the socket error otherwise.
 */
export function makeRawGet(kubeConfig: KubeConfig, requestTimeoutMs: number): RawGet {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error('makeRawGet: the kubeconfig has no current cluster');
  const base = cluster.server.replace(/\/+$/, '');
  return async (path, query, accept = 'application/json') => {
    const url = new URL(base + path);
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, value);
    const options: RequestOptions & { headers: Record<string, string> } = {
      method: 'GET',
      headers: { Accept: accept, 'User-Agent': 'kubevisa' },
    };
    await kubeConfig.applyToHTTPSOptions(options);
    const plain = url.protocol === 'http:';
    // client-node builds an https agent; a plain-http server (a loopback test stand-in) needs none.
    if (plain) delete options.agent;
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      const finish = (error: unknown, value?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error === undefined) resolve(value);
        else reject(error);
      };
      const onResponse = (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RAW_BODY_BYTES) {
            outgoing.destroy();
            finish({ statusCode: 502, body: `the answer to GET ${url.pathname} exceeded ${MAX_RAW_BODY_BYTES} bytes` });
            return;
          }
          chunks.push(chunk);
        });
        response.on('error', (error) => finish(error));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = response.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            finish({ statusCode: status, body: text });
            return;
          }
          try {
            finish(undefined, JSON.parse(text));
          } catch (error) {
            finish(error);
          }
        });
      };
      const outgoing = (plain ? httpRequest : httpsRequest)(url, options, onResponse);
      // Shaped like AbortSignal.timeout's reason, which toClusterError reports as "no answer within …".
      const timer = setTimeout(() => {
        outgoing.destroy();
        finish(new DOMException(`no answer within ${requestTimeoutMs} ms`, 'TimeoutError'));
      }, requestTimeoutMs);
      outgoing.on('error', (error) => finish(error));
      outgoing.end();
    });
  };
}

/** What a failed request said, when the API answered. */
export interface KubernetesStatus {
  /** HTTP status. */
  code: number;
  /** Status `reason` (`Forbidden`, `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`…), '' when not given. */
  reason: string;
  /** The API's own message, or the HTTP status text when the body carried none. */
  message: string;
  /** Status `details`: the kind and name concerned and the causes (e.g. `NamespaceTerminating`). */
  details: { kind?: string; name?: string; causes: { reason?: string; message?: string; field?: string }[] };
}

/**
 * The Kubernetes Status of a failed client-node call (an ApiException, or the error Watch reports for a non-200
 * answer), or undefined when no answer came back (connection failure, timeout).
 */
export function kubernetesStatusOf(error: unknown): KubernetesStatus | undefined {
  if (!isRecord(error)) return undefined;
  // ApiException carries `code`, `body` and `headers`; Watch's own error carries `statusCode` and only the status
  // text. A bare numeric `code` is not enough: DOMException has one too (23 for TimeoutError).
  const isApiException = typeof error['code'] === 'number' && isRecord(error['headers']);
  const code = isApiException ? error['code'] : error['statusCode'];
  if (typeof code !== 'number') return undefined;
  const body = parseBody(error['body']);
  const rawDetails = isRecord(body?.['details']) ? body['details'] : {};
  const causes = Array.isArray(rawDetails['causes']) ? rawDetails['causes'].filter(isRecord) : [];
  const details: KubernetesStatus['details'] = {
    causes: causes.map((cause) => ({
      ...optionalString('reason', cause['reason']),
      ...optionalString('message', cause['message']),
      ...optionalString('field', cause['field']),
    })),
    ...optionalString('kind', rawDetails['kind']),
    ...optionalString('name', rawDetails['name']),
  };
  const fallback =
    code === 401
      ? 'Unauthorized'
      : error instanceof Error && !error.message.startsWith('HTTP-Code')
        ? error.message
        : `HTTP ${code}`;
  return {
    code,
    reason: typeof body?.['reason'] === 'string' ? body['reason'] : '',
    message: typeof body?.['message'] === 'string' ? body['message'] : fallback,
    details,
  };
}

/** What kubevisa was doing, for error messages: `create RoleBinding payments/kubevisa-v1`. */
export interface RequestContextInfo {
  cluster: string;
  server: string;
  action: string;
  /** The request timeout in force, in milliseconds (for the "did not answer within" message). */
  timeoutMs: number;
}

/**
 * Turns whatever a client-node call threw into kubevisa's cluster errors, keeping the original as `cause`. A
 * KubevisaError passes through unchanged. Callers handle meanings specific to one call (a 404 on delete is
 * success, a 404 on create means the namespace is missing) before calling this.
 */
export function toClusterError(error: unknown, context: RequestContextInfo): KubevisaError {
  if (error instanceof KubevisaError) return error;
  const status = kubernetesStatusOf(error);
  const base = { cluster: context.cluster };
  if (status === undefined) {
    const why = unreachableReason(error, context.timeoutMs);
    return new ClusterUnreachable(
      `cannot ${context.action}: cluster '${context.cluster}' at ${context.server} is unreachable: ${why}`,
      { details: { ...base, server: context.server }, cause: error },
    );
  }
  const options = {
    details: { ...base, kubernetesStatus: status.code, kubernetesReason: status.reason },
    cause: error,
  };
  const said = `cluster '${context.cluster}' answered ${status.code}: ${status.message}`;
  switch (status.code) {
    case 401:
      return new ClusterUnauthorized(
        `cannot ${context.action}: cluster '${context.cluster}' did not accept kubevisa's credential (401 Unauthorized); renew its token or check the kubeconfig`,
        options,
      );
    case 403:
      // The fencing policy's own refusal (fencing.ts): a newer leader holds the lease.
      if (status.message.includes(FENCING_REFUSAL)) return new Fenced(`cannot ${context.action}: ${said}`, options);
      return new ClusterForbidden(`cannot ${context.action}: ${said}`, options);
    case 404:
      return new ObjectMissing(`cannot ${context.action}: ${said}`, options);
    case 409:
      if (status.reason === 'AlreadyExists') return new AlreadyExists(`cannot ${context.action}: ${said}`, options);
      return new ResourceVersionConflict(`cannot ${context.action}: ${said}`, options);
    default:
      return new ClusterRequestFailed(`cannot ${context.action}: ${said}`, options);
  }
}

// Codes Node and undici put on connection failures, in words a person can act on.
const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (nothing listens on that port)',
  ECONNRESET: 'connection reset by the server',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'host name lookup failed temporarily (DNS)',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'the connection was closed unexpectedly',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'the response body stalled',
  DEPTH_ZERO_SELF_SIGNED_CERT: "TLS: the server's certificate is self-signed and not trusted by the kubeconfig's CA",
  SELF_SIGNED_CERT_IN_CHAIN: "TLS: the server's certificate chain is not trusted by the kubeconfig's CA",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS: the server's certificate is not signed by the kubeconfig's CA",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "TLS: the server's certificate is not signed by the kubeconfig's CA",
  CERT_HAS_EXPIRED: "TLS: the server's certificate has expired",
  ERR_TLS_CERT_ALTNAME_INVALID: "TLS: the server's certificate does not name this host",
};

function unreachableReason(error: unknown, timeoutMs: number): string {
  // The cause chain: fetch's TypeError('fetch failed') → the socket or TLS error (→ AggregateError's errors).
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 5; depth++) {
    if (!isRecord(current)) break;
    if (current['name'] === 'TimeoutError') return `no answer within ${formatSeconds(timeoutMs)}`;
    const code = current['code'];
    if (typeof code === 'string') return `${NETWORK_REASONS[code] ?? 'connection failed'} (${code})`;
    const errors = current['errors'];
    current = Array.isArray(errors) && errors.length > 0 ? errors[0] : current['cause'];
  }
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${message}${cause}`;
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function parseBody(body: unknown): Record<string, unknown> | undefined {
  if (isRecord(body) && !Buffer.isBuffer(body)) return body;
  const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
  if (text === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return isRecord(parsed) ? parsed : undefined;
  } catch (error) {
    // A proxy in front of the API server may answer with HTML or plain text: no Status to read, and the
    // caller falls back to the HTTP status.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

// ——— Reading objects into kubevisa's shapes (from client-node models and from raw watch JSON alike) ———

/**
 * A RoleBinding as kubevisa sees it. Accepts client-node's V1RoleBinding and the raw JSON of a watch event (the
 * fields used here have the same names in both).
 * @throws ClusterRequestFailed when the value does not have a RoleBinding's shape.
 */
export function toRoleBinding(value: unknown, cluster: string): RoleBinding {
  const object = expectRecord(value, 'RoleBinding', cluster);
  const metadata = toMeta(object['metadata'], 'RoleBinding', cluster);
  if (metadata.namespace === undefined) throw malformed('RoleBinding', 'metadata.namespace is missing', cluster);
  const roleRef = expectRecord(object['roleRef'], 'RoleBinding roleRef', cluster);
  const ref: RoleRef = {
    apiGroup: stringOr(roleRef['apiGroup'], ''),
    kind: stringOr(roleRef['kind'], ''),
    name: stringOr(roleRef['name'], ''),
  };
  const subjects = Array.isArray(object['subjects']) ? object['subjects'] : [];
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { ...metadata, namespace: metadata.namespace },
    roleRef: ref,
    subjects: subjects.map((subject) => toSubject(subject, cluster)),
  };
}

/** A ServiceAccount as kubevisa sees it. @throws ClusterRequestFailed for a value of another shape. */
export function toServiceAccount(value: unknown, cluster: string): ServiceAccount {
  const object = expectRecord(value, 'ServiceAccount', cluster);
  const metadata = toMeta(object['metadata'], 'ServiceAccount', cluster);
  if (metadata.namespace === undefined) throw malformed('ServiceAccount', 'metadata.namespace is missing', cluster);
  const account: ServiceAccount = {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { ...metadata, namespace: metadata.namespace },
  };
  if (typeof object['automountServiceAccountToken'] === 'boolean') {
    account.automountServiceAccountToken = object['automountServiceAccountToken'];
  }
  return account;
}

/** A ClusterRoleBinding as kubevisa sees it. @throws ClusterRequestFailed for a value of another shape. */
export function toClusterRoleBinding(value: unknown, cluster: string): ClusterRoleBinding {
  const object = expectRecord(value, 'ClusterRoleBinding', cluster);
  const roleRef = expectRecord(object['roleRef'], 'ClusterRoleBinding roleRef', cluster);
  const subjects = Array.isArray(object['subjects']) ? object['subjects'] : [];
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: toMeta(object['metadata'], 'ClusterRoleBinding', cluster),
    roleRef: {
      apiGroup: stringOr(roleRef['apiGroup'], ''),
      kind: stringOr(roleRef['kind'], ''),
      name: stringOr(roleRef['name'], ''),
    },
    subjects: subjects.map((subject) => toSubject(subject, cluster)),
  };
}

/** A Role as kubevisa sees it. @throws ClusterRequestFailed for a value of another shape. */
export function toRole(value: unknown, cluster: string): Role {
  const object = expectRecord(value, 'Role', cluster);
  const metadata = toMeta(object['metadata'], 'Role', cluster);
  if (metadata.namespace === undefined) throw malformed('Role', 'metadata.namespace is missing', cluster);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { ...metadata, namespace: metadata.namespace },
    rules: toRules(object['rules']),
  };
}

/** A label selector as written in an aggregation rule. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** A ClusterRole with its aggregation rule, when it has one (the reading side: kubevisa never writes one). */
export type ListedClusterRole = ClusterRole & { aggregationRule?: { clusterRoleSelectors: LabelSelector[] } };

/** A ClusterRole as kubevisa sees it. @throws ClusterRequestFailed for a value of another shape. */
export function toClusterRole(value: unknown, cluster: string): ListedClusterRole {
  const object = expectRecord(value, 'ClusterRole', cluster);
  const role: ListedClusterRole = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: toMeta(object['metadata'], 'ClusterRole', cluster),
    rules: toRules(object['rules']),
  };
  const aggregation = object['aggregationRule'];
  if (isRecord(aggregation) && Array.isArray(aggregation['clusterRoleSelectors'])) {
    role.aggregationRule = {
      clusterRoleSelectors: aggregation['clusterRoleSelectors'].filter(isRecord).map((selector) => {
        const result: LabelSelector = {};
        if (isRecord(selector['matchLabels'])) result.matchLabels = stringMap(selector['matchLabels']);
        if (Array.isArray(selector['matchExpressions'])) {
          result.matchExpressions = selector['matchExpressions'].filter(isRecord).map((expression) => ({
            key: stringOr(expression['key'], ''),
            operator: stringOr(expression['operator'], ''),
            ...(Array.isArray(expression['values']) ? { values: strings(expression['values']) } : {}),
          }));
        }
        return result;
      }),
    };
  }
  return role;
}

/**
 * A ServiceAccount token Secret, from its metadata only: which account it is for, when it was made, and the labels
 * kube-apiserver's legacy-token tracking keeps. The token itself is never read.
 */
export interface ServiceAccountTokenSecret {
  namespace: string;
  name: string;
  /** Annotation `kubernetes.io/service-account.name`. */
  serviceAccount: string;
  /** metadata.creationTimestamp (RFC 3339). */
  createdAt?: string;
  /** Label `kubernetes.io/legacy-token-last-used` (a date, YYYY-MM-DD). */
  lastUsed?: string;
  /** Label `kubernetes.io/legacy-token-invalid-since` (a date). */
  invalidSince?: string;
}

/** Reads one item of a PartialObjectMetadataList of token Secrets. @throws ClusterRequestFailed for another shape. */
export function toServiceAccountTokenSecret(value: unknown, cluster: string): ServiceAccountTokenSecret {
  const object = expectRecord(value, 'Secret metadata', cluster);
  const rawMeta = expectRecord(object['metadata'], 'Secret metadata', cluster);
  const metadata = toMeta(rawMeta, 'Secret', cluster);
  if (metadata.namespace === undefined) throw malformed('Secret', 'metadata.namespace is missing', cluster);
  const secret: ServiceAccountTokenSecret = {
    namespace: metadata.namespace,
    name: metadata.name,
    serviceAccount: metadata.annotations['kubernetes.io/service-account.name'] ?? '',
  };
  if (typeof rawMeta['creationTimestamp'] === 'string') secret.createdAt = rawMeta['creationTimestamp'];
  const lastUsed = metadata.labels['kubernetes.io/legacy-token-last-used'];
  if (lastUsed !== undefined) secret.lastUsed = lastUsed;
  const invalidSince = metadata.labels['kubernetes.io/legacy-token-invalid-since'];
  if (invalidSince !== undefined) secret.invalidSince = invalidSince;
  return secret;
}

function toRules(value: unknown): PolicyRule[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isRecord).map((raw) => {
    const rule: PolicyRule = { verbs: strings(raw['verbs']) };
    for (const field of ['apiGroups', 'resources', 'resourceNames', 'nonResourceURLs'] as const) {
      if (Array.isArray(raw[field])) rule[field] = strings(raw[field]);
    }
    return rule;
  });
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : [];
}

function toSubject(value: unknown, cluster: string): Subject {
  const subject = expectRecord(value, 'RoleBinding subject', cluster);
  const result: Subject = { kind: stringOr(subject['kind'], ''), name: stringOr(subject['name'], '') };
  if (typeof subject['namespace'] === 'string') result.namespace = subject['namespace'];
  if (typeof subject['apiGroup'] === 'string') result.apiGroup = subject['apiGroup'];
  return result;
}

function toMeta(value: unknown, what: string, cluster: string): ObjectMeta {
  const meta = expectRecord(value, `${what} metadata`, cluster);
  if (typeof meta['name'] !== 'string' || meta['name'] === '')
    throw malformed(what, 'metadata.name is missing', cluster);
  const result: ObjectMeta = {
    name: meta['name'],
    labels: stringMap(meta['labels']),
    annotations: stringMap(meta['annotations']),
  };
  if (typeof meta['namespace'] === 'string') result.namespace = meta['namespace'];
  if (typeof meta['resourceVersion'] === 'string') result.resourceVersion = meta['resourceVersion'];
  if (typeof meta['uid'] === 'string') result.uid = meta['uid'];
  return result;
}

function stringMap(value: unknown): Record<string, string> {
  const result: Record<string, string> = {};
  if (!isRecord(value)) return result;
  for (const [key, entry] of Object.entries(value)) if (typeof entry === 'string') result[key] = entry;
  return result;
}

function expectRecord(value: unknown, what: string, cluster: string): Record<string, unknown> {
  if (!isRecord(value)) throw malformed(what, 'not an object', cluster);
  return value;
}

function malformed(what: string, why: string, cluster: string): ClusterRequestFailed {
  return new ClusterRequestFailed(`cluster '${cluster}' sent a ${what} kubevisa cannot read: ${why}`, {
    details: { cluster },
  });
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

function optionalString<K extends string>(key: K, value: unknown): Partial<Record<K, string>> {
  return typeof value === 'string' ? ({ [key]: value } as Record<K, string>) : {};
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
