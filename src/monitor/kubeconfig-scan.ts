/**
 * Lingering kubeconfigs: what kind of credential each context of a kubeconfig holds, and how risky it is to leave on
 * a laptop — a legacy ServiceAccount token never expires, an embedded client certificate lives until its notAfter
 * and cannot be revoked, a static token or a password is a secret on disk, an exec plugin fetches short-lived
 * credentials on demand. Pure: the text and any referenced files come in through arguments; the clock too.
 * Nothing secret ever leaves this module: a token is described by its claims and a short fingerprint, never shown.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { isMap, isSeq, parseDocument } from 'yaml';

export type CredentialKind =
  | 'legacy-serviceaccount-token'
  | 'serviceaccount-token'
  | 'bearer-token'
  | 'static-token'
  | 'client-certificate'
  | 'basic-auth'
  | 'exec-plugin'
  | 'auth-provider'
  | 'none';

export type CredentialRisk = 'critical' | 'high' | 'medium' | 'low' | 'none';
export const CREDENTIAL_RISKS: readonly CredentialRisk[] = ['critical', 'high', 'medium', 'low', 'none'];

export interface CredentialFinding {
  kind: CredentialKind;
  risk: CredentialRisk;
  /** One sentence for a person; never contains the secret. */
  description: string;
  /** Who the credential says it is (certificate subject, token subject). */
  identity?: string;
  /** RFC 3339, for credentials that expire. */
  expiresAt?: string;
  expired?: boolean;
  /** First 12 hex characters of the SHA-256 of the secret: tells two copies apart without showing either. */
  fingerprint?: string;
}

export interface ContextReport {
  file: string;
  context: string;
  current: boolean;
  cluster: string;
  server: string;
  user: string;
  namespace?: string;
  insecureSkipTlsVerify: boolean;
  credentials: CredentialFinding[];
  /** The worst of its credentials'. */
  risk: CredentialRisk;
  /** Problems reading the context (missing user or cluster entry, unreadable files). */
  problems: string[];
}

export interface ScanKubeconfigInput {
  file: string;
  text: string;
  /** Reads a file a kubeconfig refers to (relative paths already resolved by the caller); undefined when absent. */
  readFile: (path: string) => Buffer | undefined;
  /** Resolves a path in the kubeconfig against the kubeconfig's folder. */
  resolvePath: (path: string) => string;
  now: number;
}

const DAY_MS = 86_400_000;
/** The largest distance from 1970 a JavaScript Date can represent, in milliseconds. */
const MAX_DATE_MS = 8.64e15;

/** One report per context of the file. @throws Error with a readable message when the text is not a kubeconfig. */
export function scanKubeconfig(input: ScanKubeconfigInput): ContextReport[] {
  const document = parseDocument(input.text);
  if (document.errors.length > 0) {
    throw new Error(`${input.file} is not valid YAML: ${document.errors[0]?.message.split('\n')[0] ?? ''}`);
  }
  let root: unknown;
  try {
    root = document.toJS();
  } catch (error) {
    // yaml resolves aliases here: an alias to no anchor, or more alias expansions than it allows (a document built
    // to blow up in memory), is a refusal of this file like any other YAML error.
    throw new Error(`${input.file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (!isRecord(root)) throw new Error(`${input.file} is not a kubeconfig (no mapping at the top)`);
  if (!isMap(document.contents) || (document.get('contexts') !== undefined && !isSeq(document.get('contexts')))) {
    throw new Error(`${input.file} is not a kubeconfig ('contexts' is not a list)`);
  }
  const named = (field: string, inner: string) => {
    const map = new Map<string, Record<string, unknown>>();
    const list = root[field];
    if (Array.isArray(list)) {
      for (const entry of list) {
        if (isRecord(entry) && typeof entry['name'] === 'string') {
          map.set(entry['name'], isRecord(entry[inner]) ? entry[inner] : {});
        }
      }
    }
    return map;
  };
  const clusters = named('clusters', 'cluster');
  const users = named('users', 'user');
  const contexts = named('contexts', 'context');
  const currentContext = typeof root['current-context'] === 'string' ? root['current-context'] : '';

  return [...contexts].map(([name, context]) => {
    const problems: string[] = [];
    const clusterName = stringOf(context['cluster']);
    const userName = stringOf(context['user']);
    const cluster = clusters.get(clusterName);
    const user = users.get(userName);
    if (cluster === undefined) problems.push(`cluster '${clusterName}' is not defined in the file`);
    if (user === undefined && userName !== '') problems.push(`user '${userName}' is not defined in the file`);
    const credentials = user === undefined ? [] : credentialsOf(user, input, problems);
    if (credentials.length === 0) {
      credentials.push({ kind: 'none', risk: 'none', description: 'no credential (anonymous, or given elsewhere)' });
    }
    const report: ContextReport = {
      file: input.file,
      context: name,
      current: name === currentContext,
      cluster: clusterName,
      server: stringOf(cluster?.['server']),
      user: userName,
      insecureSkipTlsVerify: cluster?.['insecure-skip-tls-verify'] === true,
      credentials,
      risk: worst(credentials.map((c) => c.risk)),
      problems,
    };
    const namespace = stringOf(context['namespace']);
    if (namespace !== '') report.namespace = namespace;
    return report;
  });
}

function credentialsOf(
  user: Record<string, unknown>,
  input: ScanKubeconfigInput,
  problems: string[],
): CredentialFinding[] {
  const found: CredentialFinding[] = [];
  const token = stringOf(user['token']);
  if (token !== '') found.push(describeToken(token, 'embedded', input.now));
  const tokenFile = stringOf(user['tokenFile']);
  if (tokenFile !== '') {
    const content = input.readFile(input.resolvePath(tokenFile))?.toString('utf8').trim();
    if (content === undefined || content === '') problems.push(`tokenFile ${tokenFile} cannot be read`);
    else found.push(describeToken(content, `in file ${tokenFile}`, input.now));
  }
  const certData = stringOf(user['client-certificate-data']);
  const certFile = stringOf(user['client-certificate']);
  if (certData !== '' || certFile !== '') {
    const pem = certData !== '' ? Buffer.from(certData, 'base64') : input.readFile(input.resolvePath(certFile));
    const keyEmbedded = stringOf(user['client-key-data']) !== '';
    if (pem === undefined) problems.push(`client-certificate ${certFile} cannot be read`);
    else
      found.push(
        describeCertificate(
          pem,
          certData !== '' ? 'embedded' : `in file ${certFile}`,
          keyEmbedded,
          input.now,
          problems,
        ),
      );
  }
  if (stringOf(user['username']) !== '' || stringOf(user['password']) !== '') {
    found.push({
      kind: 'basic-auth',
      risk: 'high',
      identity: stringOf(user['username']),
      description:
        'a username and password in the file (basic auth; Kubernetes ≥ 1.19 no longer accepts it, but the password may work elsewhere)',
      fingerprint: fingerprint(stringOf(user['password'])),
    });
  }
  if (isRecord(user['exec'])) found.push(describeExec(user['exec']));
  if (isRecord(user['auth-provider'])) found.push(describeAuthProvider(user['auth-provider']));
  return found;
}

/** A bearer token, judged by its claims when it is a JWT (never verified: only read). */
export function describeToken(token: string, where: string, now: number): CredentialFinding {
  const claims = jwtClaims(token);
  const print = fingerprint(token);
  if (claims === undefined) {
    return {
      kind: 'static-token',
      risk: 'high',
      description: `a static bearer token (${where}) that is not a JWT: it lives until someone removes it on the server`,
      fingerprint: print,
    };
  }
  const expClaim = claims['exp'];
  // An `exp` past what a date can hold (±8.64e15 ms) is, in effect, no expiry at all.
  const expBeyondDates = typeof expClaim === 'number' && !(Math.abs(expClaim * 1000) <= MAX_DATE_MS);
  const exp = typeof expClaim === 'number' && !expBeyondDates ? expClaim * 1000 : undefined;
  const legacyAccount =
    claims['iss'] === 'kubernetes/serviceaccount'
      ? `${stringOf(claims['kubernetes.io/serviceaccount/namespace'])}/${stringOf(claims['kubernetes.io/serviceaccount/service-account.name'])}`
      : undefined;
  if (legacyAccount !== undefined && exp === undefined) {
    return {
      kind: 'legacy-serviceaccount-token',
      risk: 'critical',
      identity: `ServiceAccount ${legacyAccount}`,
      description: `a legacy ServiceAccount token (${where}) from a token Secret: it never expires and works until the Secret or the account is deleted`,
      fingerprint: print,
    };
  }
  const kubernetes = isRecord(claims['kubernetes.io']) ? claims['kubernetes.io'] : undefined;
  const account =
    kubernetes !== undefined && isRecord(kubernetes['serviceaccount'])
      ? `${stringOf(kubernetes['namespace'])}/${stringOf(kubernetes['serviceaccount']['name'])}`
      : legacyAccount;
  const identity =
    account !== undefined ? `ServiceAccount ${account}` : stringOf(claims['email']) || stringOf(claims['sub']);
  if (exp === undefined) {
    return {
      kind: account !== undefined ? 'serviceaccount-token' : 'bearer-token',
      risk: 'critical',
      ...(identity ? { identity } : {}),
      description: `a JWT (${where}) ${expBeyondDates ? 'whose expiry lies past any real date' : 'without an expiry'}: it works until its signing key changes`,
      fingerprint: print,
    };
  }
  const remaining = exp - now;
  const expired = remaining <= 0;
  return {
    kind: account !== undefined ? 'serviceaccount-token' : 'bearer-token',
    risk: expired ? 'low' : remaining > 7 * DAY_MS ? 'high' : remaining > DAY_MS ? 'medium' : 'low',
    ...(identity ? { identity } : {}),
    description: `a ${account !== undefined ? 'ServiceAccount token' : 'bearer JWT'} (${where}) that ${expired ? 'has expired' : `expires in ${humanDuration(remaining)}`}`,
    expiresAt: new Date(exp).toISOString(),
    expired,
    fingerprint: print,
  };
}

function describeCertificate(
  pem: Buffer,
  where: string,
  keyEmbedded: boolean,
  now: number,
  problems: string[],
): CredentialFinding {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch (error) {
    problems.push(
      `client certificate (${where}) cannot be read: ${error instanceof Error ? error.message : String(error)}`,
    );
    return {
      kind: 'client-certificate',
      risk: 'high',
      description: `a client certificate (${where}) that cannot be parsed`,
    };
  }
  const subject = parseDistinguishedName(certificate.subject);
  const groups = subject.get('O') ?? [];
  const expiresAt = Date.parse(certificate.validTo);
  const remaining = expiresAt - now;
  const expired = remaining <= 0;
  const masters = groups.includes('system:masters');
  const risk: CredentialRisk = expired ? 'low' : masters ? 'critical' : remaining > 30 * DAY_MS ? 'high' : 'medium';
  const who = `${(subject.get('CN') ?? ['?']).join(',')}${groups.length > 0 ? ` (groups ${groups.join(', ')})` : ''}`;
  return {
    kind: 'client-certificate',
    risk,
    identity: who,
    description: `a client certificate (${where}${keyEmbedded ? ', private key embedded' : ''}) for ${who} that ${expired ? 'has expired' : `expires in ${humanDuration(remaining)}`}; Kubernetes cannot revoke it${masters ? ', and system:masters bypasses RBAC entirely' : ''}`,
    expiresAt: new Date(expiresAt).toISOString(),
    expired,
    fingerprint: createHash('sha256').update(certificate.raw).digest('hex').slice(0, 12),
  };
}

function describeExec(exec: Record<string, unknown>): CredentialFinding {
  const command = stringOf(exec['command']);
  const base = command.split('/').pop() ?? command;
  const envNames = Array.isArray(exec['env'])
    ? exec['env']
        .filter(isRecord)
        .map((entry) => stringOf(entry['name']))
        .filter((n) => n !== '')
    : [];
  const kubevisa = base === 'kubevisa';
  return {
    kind: 'exec-plugin',
    risk: envNames.length > 0 ? 'medium' : kubevisa ? 'none' : 'low',
    description: `an exec plugin (${base || 'no command'}) that fetches ${kubevisa ? 'a kubevisa token living minutes; nothing secret on disk' : 'credentials when kubectl runs'}${envNames.length > 0 ? `; it is given environment values (${envNames.join(', ')}) that may be secrets` : ''}`,
  };
}

function describeAuthProvider(provider: Record<string, unknown>): CredentialFinding {
  const name = stringOf(provider['name']);
  const config = isRecord(provider['config']) ? provider['config'] : {};
  const stored = ['refresh-token', 'id-token', 'access-token', 'client-secret'].filter(
    (key) => stringOf(config[key]) !== '',
  );
  return {
    kind: 'auth-provider',
    risk:
      stored.includes('refresh-token') || stored.includes('client-secret')
        ? 'high'
        : stored.length > 0
          ? 'medium'
          : 'low',
    description: `the deprecated auth-provider '${name}'${stored.length > 0 ? `, with ${stored.join(', ')} stored in the file` : ''}`,
    ...(stored.length > 0 ? { fingerprint: fingerprint(stored.map((key) => stringOf(config[key])).join('\n')) } : {}),
  };
}

/** The payload of a JWT-shaped token, or undefined for anything else. Never verified: only read. */
function jwtClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((part) => !/^[A-Za-z0-9_-]*$/.test(part))) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return isRecord(header) && typeof header['alg'] === 'string' && isRecord(payload) ? payload : undefined;
  } catch (error) {
    // Three base64url parts that are not JSON: an opaque token that happens to contain two dots.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/** `CN=alice\nO=dev\nO=ops` (node's X509Certificate.subject) → CN: [alice], O: [dev, ops]. */
function parseDistinguishedName(text: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    fields.set(key, [...(fields.get(key) ?? []), line.slice(eq + 1)]);
  }
  return fields;
}

function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 12);
}

function worst(risks: readonly CredentialRisk[]): CredentialRisk {
  return CREDENTIAL_RISKS.find((risk) => risks.includes(risk)) ?? 'none';
}

function humanDuration(ms: number): string {
  const days = Math.floor(ms / DAY_MS);
  if (days >= 365) return `${(days / 365).toFixed(1)} years`;
  if (days >= 1) return `${days} day${days === 1 ? '' : 's'}`;
  const hours = Math.floor(ms / 3_600_000);
  return hours >= 1 ? `${hours} h` : `${Math.max(1, Math.floor(ms / 60_000))} min`;
}

function stringOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
