/**
 * The live calls an offboarding receipt rests on, made against kube-apiserver itself:
 *
 * - a canary TokenRequest token for the person's ServiceAccount, minted and used once BEFORE the offboarding (so
 *   kube-apiserver has it in its 10 s token cache, like a contractor's token in use), then presented again
 *   until kube-apiserver answers 401;
 * - SelfSubjectRulesReview as the person's identity (kubevisa impersonates ServiceAccounts of kubevisa-visas,
 *   the one impersonation its Role allows): what `kubectl auth can-i --list --as=…` shows;
 * - fresh lists of the labelled ServiceAccounts and RoleBindings.
 *
 * The ClusterClient covers the lists and the TokenRequest; the two calls made with another credential than
 * kubevisa's own (the canary, and kubevisa's token with Impersonate-User) go over a plain HTTPS request here,
 * with the same server and CA.
 */
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { ClusterClient } from '../cluster/client.ts';
import { VISAS_NAMESPACE } from '../cluster/objects.ts';
import { KubevisaError } from '../domain/errors.ts';
import { personHash, serviceAccountName } from '../domain/names.ts';

/** A token the person could have held: only its holder (this process, in memory) ever sees it. */
export interface CanaryToken {
  /** The bearer token. A credential: never logged, never stored, dropped once the proof is made. */
  token: string;
  /** When kube-apiserver last accepted it (before the offboarding), epoch ms. */
  acceptedAt: number;
}

export interface ResourceRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}
export interface NonResourceRule {
  verbs: string[];
  nonResourceURLs?: string[];
}
export interface RulesReview {
  resourceRules: ResourceRule[];
  nonResourceRules: NonResourceRule[];
  incomplete: boolean;
  evaluationError?: string;
}

export interface Leftovers {
  serviceAccounts: string[];
  /** `namespace/name`. */
  roleBindings: string[];
}

/** A probe failed in a way that proves nothing (unreachable, timeout, an unexpected answer). */
export class ProbeFailed extends KubevisaError {
  static override code = 'ERR_PROBE_FAILED';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { status: 503, ...options });
  }
}

/** Each live call gives up after this long, in ms. */
const PROBE_TIMEOUT_MS = 5000;
/** kubevisa's own token for impersonated reviews is renewed when it has less than this left, in ms. */
const OWN_TOKEN_MARGIN_MS = 120_000;
/** TokenRequest's floor (and what the canary and kubevisa's review token ask for), in seconds. */
const TOKEN_SECONDS = 600;

interface Answer {
  status: number;
  body: unknown;
}

export interface ClusterProbeOptions {
  cluster: ClusterClient;
  now?: () => number;
}

export class ClusterProbe {
  readonly name: string;
  private readonly cluster: ClusterClient;
  private readonly now: () => number;
  private ownToken: { token: string; expiresAt: number } | undefined;

  constructor(options: ClusterProbeOptions) {
    this.cluster = options.cluster;
    this.name = options.cluster.name;
    this.now = options.now ?? Date.now;
  }

  /**
   * Mints a canary token for the person's ServiceAccount and has kube-apiserver accept it once.
   * @returns undefined when the person has no ServiceAccount in this cluster (no token of theirs can exist).
   * @throws ProbeFailed when the cluster cannot be asked, or refuses a token it has just issued.
   */
  async mintCanary(email: string): Promise<CanaryToken | undefined> {
    const name = serviceAccountName(email);
    const accounts = await this.cluster.listManagedServiceAccounts();
    if (!accounts.some((sa) => sa.metadata.name === name)) return undefined;
    let issued;
    try {
      issued = await this.cluster.createServiceAccountToken(name, TOKEN_SECONDS);
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_OBJECT_MISSING') return undefined;
      throw error;
    }
    if (await this.tokenRefused(issued.token)) {
      throw new ProbeFailed(`cluster '${this.name}' refused a token it had just issued for ${VISAS_NAMESPACE}/${name}`);
    }
    return { token: issued.token, acceptedAt: this.now() };
  }

  /**
   * Presents `token` to kube-apiserver (SelfSubjectReview, which every authenticated identity may create).
   * @returns true for 401 (refused), false when it authenticated.
   * @throws ProbeFailed for any other outcome.
   */
  async tokenRefused(token: string): Promise<boolean> {
    const answer = await this.call('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', token, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    });
    if (answer.status === 401) return true;
    if (answer.status === 201 || answer.status === 200 || answer.status === 403) return false;
    throw new ProbeFailed(`cluster '${this.name}' answered a token check with HTTP ${answer.status}`);
  }

  /** What the person's identity may do in `namespace` (`kubectl auth can-i --list --as=… -n namespace`). */
  async rulesAs(email: string, namespace: string): Promise<RulesReview> {
    const user = `system:serviceaccount:${VISAS_NAMESPACE}:${serviceAccountName(email)}`;
    const answer = await this.call(
      'POST',
      '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
      await this.reviewToken(),
      { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } },
      { 'impersonate-user': user },
    );
    if (answer.status !== 201 && answer.status !== 200) {
      throw new ProbeFailed(
        `cluster '${this.name}' answered the rules review as ${user} with HTTP ${answer.status}: ${statusMessage(answer.body)}`,
      );
    }
    const status = (answer.body as { status?: Partial<RulesReview> }).status ?? {};
    return {
      resourceRules: status.resourceRules ?? [],
      nonResourceRules: status.nonResourceRules ?? [],
      incomplete: status.incomplete === true,
      ...(status.evaluationError ? { evaluationError: status.evaluationError } : {}),
    };
  }

  /** The person's labelled ServiceAccount and RoleBindings still in the cluster (also any binding to their identity). */
  async leftovers(email: string): Promise<Leftovers> {
    const name = serviceAccountName(email);
    const hash = personHash(email);
    const [accounts, bindings] = await Promise.all([
      this.cluster.listManagedServiceAccounts(),
      this.cluster.listManagedRoleBindings(),
    ]);
    return {
      serviceAccounts: accounts
        .filter((sa) => sa.metadata.name === name || sa.metadata.labels['kubevisa.io/person'] === hash)
        .map((sa) => sa.metadata.name),
      roleBindings: bindings
        .filter(
          (rb) =>
            rb.metadata.labels['kubevisa.io/person'] === hash ||
            rb.subjects.some((s) => s.kind === 'ServiceAccount' && s.name === name && s.namespace === VISAS_NAMESPACE),
        )
        .map((rb) => `${rb.metadata.namespace}/${rb.metadata.name}`),
    };
  }

  private async reviewToken(): Promise<string> {
    if (this.ownToken && this.ownToken.expiresAt - this.now() > OWN_TOKEN_MARGIN_MS) return this.ownToken.token;
    const issued = await this.cluster.createOwnToken(TOKEN_SECONDS);
    this.ownToken = { token: issued.token, expiresAt: issued.expirationTimestamp };
    return issued.token;
  }

  private call(
    method: string,
    path: string,
    token: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer> {
    const { server, certificateAuthorityData, tlsServerName, insecureSkipTlsVerify } = this.cluster.connection;
    const url = new URL(path, `${server}/`);
    const payload = Buffer.from(JSON.stringify(body));
    const secure = url.protocol === 'https:';
    const send = secure ? httpsRequest : httpRequest;
    return new Promise<Answer>((resolve, reject) => {
      const request = send(
        url,
        {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json',
            'content-length': String(payload.length),
            'user-agent': 'kubevisa-offboarding-proof',
            ...headers,
          },
          timeout: PROBE_TIMEOUT_MS,
          ...(secure
            ? {
                ...(certificateAuthorityData ? { ca: Buffer.from(certificateAuthorityData, 'base64') } : {}),
                ...(tlsServerName ? { servername: tlsServerName } : {}),
                rejectUnauthorized: !insecureSkipTlsVerify,
              }
            : {}),
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              // Not JSON (a proxy's HTML page): keep the text, the caller reports the status.
              parsed = text.slice(0, 200);
            }
            resolve({ status: response.statusCode ?? 0, body: parsed });
          });
          response.on('error', (error) =>
            reject(new ProbeFailed(`cluster '${this.name}': ${error.message}`, { cause: error })),
          );
        },
      );
      request.on('timeout', () => request.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
      request.on('error', (error) =>
        reject(
          new ProbeFailed(`cluster '${this.name}' (${server}) could not be asked: ${error.message}`, { cause: error }),
        ),
      );
      request.end(payload);
    });
  }
}

function statusMessage(body: unknown): string {
  if (typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string') {
    return (body as { message: string }).message;
  }
  return typeof body === 'string' ? body : 'no message';
}

/**
 * What every authenticated identity may do without any grant: discovery, health and version endpoints, the
 * service-account issuer documents, asking about itself, and reading public trust bundles. A rules review
 * showing anything else means the identity can still act (including through a binding to a group every visa
 * holder is in, such as system:serviceaccounts:kubevisa-visas: that is access too).
 */
const DISCOVERY_URL_PREFIXES = [
  '/api',
  '/apis',
  '/healthz',
  '/livez',
  '/readyz',
  '/version',
  '/openapi',
  '/.well-known/openid-configuration',
  '/openid/v1/jwks',
];
const SELF_REVIEWS = new Set([
  'authorization.k8s.io/selfsubjectaccessreviews',
  'authorization.k8s.io/selfsubjectrulesreviews',
  'authentication.k8s.io/selfsubjectreviews',
]);
/**
 * Public information Kubernetes lets every authenticated identity read: ClusterTrustBundles hold public CA
 * certificates and are readable by `system:authenticated` by default (since v1.33's defaults), on purpose.
 */
const PUBLIC_READS = new Set(['certificates.k8s.io/clustertrustbundles']);
const READ_VERBS = new Set(['get', 'list', 'watch']);

/**
 * The rules of a review that go beyond discovery, as short readable lines (empty when there are none).
 * A wildcard anywhere is always beyond.
 */
export function rulesBeyondDiscovery(review: RulesReview): string[] {
  const beyond: string[] = [];
  for (const rule of review.resourceRules) {
    const groups = rule.apiGroups ?? [''];
    const resources = rule.resources ?? [];
    const onlySelfReviews =
      rule.verbs.every((verb) => verb === 'create') &&
      resources.length > 0 &&
      groups.every((group) => resources.every((resource) => SELF_REVIEWS.has(`${group}/${resource}`)));
    const onlyPublicReads =
      rule.verbs.every((verb) => READ_VERBS.has(verb)) &&
      resources.length > 0 &&
      groups.every((group) => resources.every((resource) => PUBLIC_READS.has(`${group}/${resource}`)));
    if (!onlySelfReviews && !onlyPublicReads) {
      beyond.push(
        `${rule.verbs.join(',')} ${groups.map((g) => g || 'core').join(',')}/${resources.join(',') || '(none)'}${rule.resourceNames ? ` (${rule.resourceNames.join(',')})` : ''}`,
      );
    }
  }
  for (const rule of review.nonResourceRules) {
    const urls = rule.nonResourceURLs ?? [];
    const readOnly = rule.verbs.every((verb) => verb === 'get' || verb === 'head');
    const discovery = urls.every((url) =>
      DISCOVERY_URL_PREFIXES.some((prefix) => url === prefix || url === `${prefix}/` || url.startsWith(`${prefix}/`)),
    );
    if (!readOnly || !discovery || urls.length === 0)
      beyond.push(`${rule.verbs.join(',')} ${urls.join(',') || '(none)'}`);
  }
  return beyond;
}
