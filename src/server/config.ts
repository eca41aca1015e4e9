/**
 * The server's configuration: one JSON or YAML file (or an object, for the demo and tests), validated up
 * front with messages that name the field and what is allowed. Paths are resolved against the file's folder.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseEmailAddress } from '../domain/email.ts';
import { InvalidInput } from '../domain/errors.ts';
import type { Policy } from '../domain/model.ts';
import { validateProtectedNamespaces } from '../domain/protected-namespaces.ts';
import { defaultPolicy } from '../domain/policy.ts';
import { parseDuration } from '../domain/time.ts';
import { findForbiddenKey, ownData } from '../domain/own.ts';
import { parseStoreConfig, type StoreConfig } from '../store/config.ts';

export interface ClusterConfig {
  name: string;
  /**
   * kubevisa's own credential for the cluster (written by `kubevisa install`). For an in-cluster cluster, the file
   * kubevisa writes from the pod's ServiceAccount: `<dataDir>/clusters/<name>.in-cluster.kubeconfig`.
   */
  kubeconfig: string;
  /**
   * The cluster kubevisa runs in, reached with the pod's ServiceAccount (token renewed by the kubelet) rather than a
   * kubeconfig: `inCluster: true` in the file (src/cluster/in-cluster.ts). `serviceAccountDir` is where the token and
   * CA are mounted (default /var/run/secrets/kubernetes.io/serviceaccount).
   */
  inCluster?: { serviceAccountDir?: string };
  /**
   * Whether people may take direct tokens for this cluster (kubectl straight to kube-apiserver, bypassing the
   * gateway's per-request audit, recording and stream cutting), for profiles that allow it. Absent means false.
   */
  directMode?: boolean;
}

export interface ServerConfig {
  /** Where the server listens; default 127.0.0.1:8443 (port 0 picks a free one). */
  listen: { host: string; port: number };
  /** The URL people and kubectl use to reach the server (default: from `listen`). */
  publicUrl?: string;
  /** TLS certificate and key (PEM files); without them the server speaks plain HTTP (loopback development only). */
  tls?: { certFile: string; keyFile: string; caFile?: string };
  /** Keys (and the SQLite database, locked by one server at a time) live here (created 0700). */
  dataDir: string;
  /** Which store engine and how to reach it (src/store/config.ts); default SQLite in `dataDir`. */
  store: StoreConfig;
  oidc: {
    issuer: string;
    clientId: string;
    clientSecret?: string;
    scopes?: string;
    emailClaim?: string;
    groupsClaim?: string;
    /** Allow an `http://` issuer on loopback (the demo IdP). */
    allowInsecureHttp?: boolean;
    /**
     * The IdP only issues email addresses it controls, so a login without `email_verified` is accepted (default
     * false: `email_verified: true` is required). Per IdP: docs/identity.md.
     */
    emailsVerifiedByIdp?: boolean;
  };
  /** Emails and IdP groups that hold kubevisa roles. */
  roles: { admins: string[]; adminGroups: string[]; auditors: string[]; auditorGroups: string[] };
  policy: Policy;
  clusters: ClusterConfig[];
  /** How long a kubevisa login lasts before a new one is needed, in seconds (default 12 h). */
  sessionSeconds: number;
  /** Lifetime of kubevisa access tokens, in seconds (default 600, at most 900). */
  accessTokenSeconds: number;
  /** Full reconcile of every cluster at least this often, in milliseconds (default 30000). */
  resyncIntervalMs: number;
  /**
   * Leader election among replicas sharing a PostgreSQL store (`leaderElection: { leaseDuration, renewInterval }`):
   * a term lasts `leaseMs` by the database's clock (default 8 s) and is renewed every `renewEveryMs` (default 2 s, at
   * most half the lease). On SQLite the one server always leads and these do nothing.
   */
  leader: { leaseMs: number; renewEveryMs: number };
  /**
   * Sections owned by pluggable capabilities (`scim`, `identity`, `audit`, `monitoring`, `alerts`, `gateway`),
   * passed through unparsed: each capability validates its own section.
   */
  extensions: Record<string, unknown>;
}

/** Top-level sections that belong to a capability rather than to the core configuration. */
export const EXTENSION_SECTIONS = ['scim', 'identity', 'audit', 'monitoring', 'alerts', 'gateway'] as const;

type Raw = Record<string, unknown>;

function isObject(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(raw: Raw, field: string, path: string, required = true): string | undefined {
  const value = raw[field];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidInput(`config: '${path}${field}' must be a non-empty string`);
  }
  return value;
}

function strings(raw: Raw, field: string, path: string): string[] {
  const value = raw[field];
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidInput(`config: '${path}${field}' must be a list of strings`);
  }
  return value as string[];
}

function flag(raw: Raw, field: string, path: string): boolean {
  const value = raw[field];
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidInput(`config: '${path}${field}' must be true or false`);
  }
  return value === true;
}

/** Validates a parsed configuration object; relative paths resolve against `baseDir`. */
export function parseServerConfig(parsed: unknown, baseDir: string): ServerConfig {
  // A key such as `__proto__` or `constructor` anywhere in the file is refused, and every field is then read from a
  // prototype-less copy: a field the file leaves out reads as undefined even if something polluted Object.prototype.
  const forbidden = findForbiddenKey(parsed, 'config');
  if (forbidden !== undefined) {
    throw new InvalidInput(`config: '${forbidden}' is not a field kubevisa knows, and such names are never allowed`);
  }
  const input = ownData(parsed);
  if (!isObject(input)) throw new InvalidInput('config: the file must hold an object');
  const known = [
    'listen',
    'publicUrl',
    'tls',
    'dataDir',
    'store',
    'oidc',
    'roles',
    'policy',
    'clusters',
    'sessionDuration',
    'accessTokenDuration',
    'resyncInterval',
    'leaderElection',
    'protectedNamespaces',
    ...EXTENSION_SECTIONS,
  ];
  for (const key of Object.keys(input)) {
    if (!known.includes(key))
      throw new InvalidInput(`config: unknown field '${key}'; known fields: ${known.join(', ')}`);
  }
  const at = (p: string) => resolve(baseDir, p);
  const listenRaw = isObject(input.listen) ? input.listen : {};
  const port = listenRaw.port ?? 8443;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidInput(`config: 'listen.port' must be a port number 0–65535`);
  }
  const host = listenRaw.host === undefined ? '127.0.0.1' : text(listenRaw, 'host', 'listen.')!;
  const oidcRaw = input.oidc;
  if (!isObject(oidcRaw)) throw new InvalidInput(`config: 'oidc' is required: { issuer, clientId, clientSecret }`);
  const rolesRaw = isObject(input.roles) ? input.roles : {};
  // Role lists name people by email: an entry that is no address (a typo, an invisible character) would match nobody.
  const emails = (field: 'admins' | 'auditors') =>
    strings(rolesRaw, field, 'roles.').map((entry, index) =>
      parseEmailAddress(entry, `config: 'roles.${field}[${index}]'`),
    );
  const clustersRaw = input.clusters ?? [];
  if (!Array.isArray(clustersRaw)) throw new InvalidInput(`config: 'clusters' must be a list of { name, kubeconfig }`);
  const dataDir = at(text(input, 'dataDir', '')!);
  const clusters = clustersRaw.map((c, i): ClusterConfig => {
    if (!isObject(c)) throw new InvalidInput(`config: 'clusters[${i}]' must be { name, kubeconfig }`);
    const directMode = c.directMode ?? false;
    if (typeof directMode !== 'boolean') {
      throw new InvalidInput(`config: 'clusters[${i}].directMode' must be true or false (default false)`);
    }
    const name = text(c, 'name', `clusters[${i}].`)!;
    if (c.inCluster !== undefined && c.inCluster !== false) {
      if (c.inCluster !== true) throw new InvalidInput(`config: 'clusters[${i}].inCluster' must be true or false`);
      if (c.kubeconfig !== undefined) {
        throw new InvalidInput(
          `config: 'clusters[${i}]' has both 'inCluster' and 'kubeconfig'; an in-cluster cluster uses the pod's ServiceAccount, so remove one`,
        );
      }
      const serviceAccountDir = text(c, 'serviceAccountDir', `clusters[${i}].`, false);
      // The name becomes a file name: only a DNS label, never a path.
      if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) {
        throw new InvalidInput(
          `config: 'clusters[${i}].name' must be a DNS label (such as local) for an in-cluster cluster`,
        );
      }
      return {
        name,
        kubeconfig: join(dataDir, 'clusters', `${name}.in-cluster.kubeconfig`),
        directMode,
        inCluster: serviceAccountDir === undefined ? {} : { serviceAccountDir: at(serviceAccountDir) },
      };
    }
    return { name, kubeconfig: at(text(c, 'kubeconfig', `clusters[${i}].`)!), directMode };
  });
  const tlsRaw = input.tls;
  let tls: ServerConfig['tls'];
  if (tlsRaw !== undefined) {
    if (!isObject(tlsRaw)) throw new InvalidInput(`config: 'tls' must be { certFile, keyFile }`);
    const caFile = text(tlsRaw, 'caFile', 'tls.', false);
    tls = {
      certFile: at(text(tlsRaw, 'certFile', 'tls.')!),
      keyFile: at(text(tlsRaw, 'keyFile', 'tls.')!),
      ...(caFile ? { caFile: at(caFile) } : {}),
    };
  }
  // Top level rather than under `policy`: a boundary no policy rule can open, carried with the policy to every check.
  const policy: Policy = {
    ...parsePolicy(input.policy),
    protectedNamespaces: validateProtectedNamespaces(input.protectedNamespaces, 'config: protectedNamespaces'),
  };
  const duration = (field: string, fallback: number) =>
    input[field] === undefined ? fallback : parseDuration(input[field], `config ${field}`);
  const accessTokenSeconds = duration('accessTokenDuration', 600);
  if (accessTokenSeconds > 900) throw new InvalidInput(`config: 'accessTokenDuration' must be at most 15m`);
  const store = parseStoreConfig(input.store, at);
  const leader = parseLeaderElection(input.leaderElection);
  return {
    listen: { host, port },
    ...(input.publicUrl !== undefined ? { publicUrl: text(input, 'publicUrl', '')! } : {}),
    ...(tls ? { tls } : {}),
    dataDir,
    store,
    oidc: {
      issuer: text(oidcRaw, 'issuer', 'oidc.')!,
      clientId: text(oidcRaw, 'clientId', 'oidc.')!,
      ...(oidcRaw.clientSecret !== undefined ? { clientSecret: text(oidcRaw, 'clientSecret', 'oidc.')! } : {}),
      ...(oidcRaw.scopes !== undefined ? { scopes: text(oidcRaw, 'scopes', 'oidc.')! } : {}),
      ...(oidcRaw.emailClaim !== undefined ? { emailClaim: text(oidcRaw, 'emailClaim', 'oidc.')! } : {}),
      ...(oidcRaw.groupsClaim !== undefined ? { groupsClaim: text(oidcRaw, 'groupsClaim', 'oidc.')! } : {}),
      allowInsecureHttp: oidcRaw.allowInsecureHttp === true,
      emailsVerifiedByIdp: flag(oidcRaw, 'emailsVerifiedByIdp', 'oidc.'),
    },
    roles: {
      admins: emails('admins'),
      adminGroups: strings(rolesRaw, 'adminGroups', 'roles.'),
      auditors: emails('auditors'),
      auditorGroups: strings(rolesRaw, 'auditorGroups', 'roles.'),
    },
    policy,
    clusters,
    sessionSeconds: duration('sessionDuration', 12 * 3600),
    accessTokenSeconds,
    resyncIntervalMs: duration('resyncInterval', 30) * 1000,
    leader,
    extensions: Object.fromEntries(EXTENSION_SECTIONS.filter((k) => input[k] !== undefined).map((k) => [k, input[k]])),
  };
}

function parseLeaderElection(raw: unknown): ServerConfig['leader'] {
  if (raw === undefined) return { leaseMs: 8000, renewEveryMs: 2000 };
  if (!isObject(raw)) {
    throw new InvalidInput(
      `config: 'leaderElection' must be { leaseDuration, renewInterval }, e.g. { "leaseDuration": "8s", "renewInterval": "2s" }`,
    );
  }
  for (const key of Object.keys(raw)) {
    if (key !== 'leaseDuration' && key !== 'renewInterval') {
      throw new InvalidInput(
        `config: unknown field 'leaderElection.${key}'; known fields: leaseDuration, renewInterval`,
      );
    }
  }
  const leaseMs =
    raw.leaseDuration === undefined
      ? 8000
      : parseDuration(raw.leaseDuration, 'config leaderElection.leaseDuration') * 1000;
  const renewEveryMs =
    raw.renewInterval === undefined
      ? 2000
      : parseDuration(raw.renewInterval, 'config leaderElection.renewInterval') * 1000;
  if (renewEveryMs * 2 > leaseMs) {
    throw new InvalidInput(
      `config: 'leaderElection.renewInterval' (${renewEveryMs / 1000}s) must be at most half of 'leaderElection.leaseDuration' (${leaseMs / 1000}s), so a leader renews well before its term ends`,
    );
  }
  return { leaseMs, renewEveryMs };
}

function parsePolicy(raw: unknown): Policy {
  if (raw === undefined) return defaultPolicy;
  if (!isObject(raw)) throw new InvalidInput(`config: 'policy' must be an object`);
  const required = raw.requiredApprovals ?? defaultPolicy.requiredApprovals;
  if (typeof required !== 'number' || !Number.isInteger(required) || required < 1 || required > 10) {
    throw new InvalidInput(`config: 'policy.requiredApprovals' must be a whole number from 1 to 10`);
  }
  const rulesRaw = raw.autoApproval ?? [];
  if (!Array.isArray(rulesRaw)) throw new InvalidInput(`config: 'policy.autoApproval' must be a list`);
  const autoApproval = rulesRaw.map((r, i) => {
    const path = `policy.autoApproval[${i}].`;
    if (!isObject(r)) throw new InvalidInput(`config: '${path}' must be an object`);
    return {
      name: text(r, 'name', path)!,
      profiles: strings(r, 'profiles', path),
      clusters: strings(r, 'clusters', path),
      namespacePatterns: strings(r, 'namespacePatterns', path),
      maxSeconds: parseDuration(r.maxDuration, `config ${path}maxDuration`),
    };
  });
  let workingHours: Policy['workingHours'];
  if (raw.workingHours !== undefined) {
    const w = raw.workingHours;
    if (!isObject(w))
      throw new InvalidInput(`config: 'policy.workingHours' must be { timeZone, days, fromHour, toHour }`);
    workingHours = {
      timeZone: text(w, 'timeZone', 'policy.workingHours.')!,
      days: (w.days as number[]) ?? [1, 2, 3, 4, 5],
      fromHour: Number(w.fromHour ?? 8),
      toHour: Number(w.toHour ?? 18),
    };
  }
  return {
    requiredApprovals: required,
    approverGroups: strings(raw, 'approverGroups', 'policy.'),
    autoApproval,
    ...(workingHours ? { workingHours } : {}),
    maxVisaSeconds:
      raw.maxVisaDuration === undefined
        ? defaultPolicy.maxVisaSeconds
        : parseDuration(raw.maxVisaDuration, 'config policy.maxVisaDuration'),
    expiryNoticeSeconds:
      raw.expiryNotice === undefined
        ? defaultPolicy.expiryNoticeSeconds
        : parseDuration(raw.expiryNotice, 'config policy.expiryNotice'),
  };
}

/**
 * Loads one config file, or several merged in order (`kubevisa server --config a.yaml --config b.yaml`): a later
 * file's fields replace an earlier one's, objects merged field by field and lists replaced whole. This keeps
 * secrets (a Kubernetes Secret mounted as a file) apart from the rest (a ConfigMap). Relative paths resolve against
 * the first file's folder.
 */
export async function loadServerConfig(files: string | readonly string[]): Promise<ServerConfig> {
  const list = typeof files === 'string' ? [files] : files;
  if (list.length === 0) throw new InvalidInput('at least one config file is needed');
  let merged: unknown;
  for (const file of list) {
    const parsed = await readConfigFile(file);
    // Refused before merging, which would otherwise walk the key.
    const forbidden = findForbiddenKey(parsed, 'config');
    if (forbidden !== undefined) {
      throw new InvalidInput(
        `config: '${forbidden}' (in ${file}) is not a field kubevisa knows, and such names are never allowed`,
      );
    }
    merged = merged === undefined ? parsed : mergeConfig(merged, parsed);
  }
  return parseServerConfig(merged, dirname(resolve(list[0]!)));
}

function mergeConfig(base: unknown, override: unknown): unknown {
  if (!isObject(base) || !isObject(override)) return override;
  const out: Raw = Object.create(null) as Raw;
  for (const [key, value] of Object.entries(base)) out[key] = value;
  for (const [key, value] of Object.entries(override)) out[key] = key in out ? mergeConfig(out[key], value) : value;
  return out;
}

async function readConfigFile(file: string): Promise<unknown> {
  let textContent: string;
  try {
    textContent = await readFile(file, 'utf8');
  } catch (error) {
    throw new InvalidInput(`cannot read the config file ${file}: ${(error as Error).message}`);
  }
  const { parse } = await import('yaml');
  let parsed: unknown;
  try {
    parsed = parse(textContent);
  } catch (error) {
    throw new InvalidInput(`config file ${file} is not valid YAML/JSON: ${(error as Error).message}`);
  }
  return parsed;
}
