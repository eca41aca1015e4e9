/**
 * The `scim` and `identity` sections of the server configuration, validated here (the core config passes them
 * through unparsed). Every message names the field, says what is wrong and what is allowed; nothing starts with
 * a configuration that would be read differently from what the admin meant.
 *
 * ```yaml
 * scim:
 *   maxResults: 200                # largest SCIM page (1–1000)
 * identity:
 *   groupSource: auto              # auto | scim | directory | login
 *   requireProvisioned: false      # refuse logins of people the IdP did not provision (SCIM or sync)
 *   claimExistingPeople: [okta]    # SCIM IdPs that may take charge of people who exist and are linked to none
 *   onRefreshFailure: suspend      # suspend | end-session
 *   groupMappings:
 *     - group: vendor-acme
 *       engagement: { name: acme, vendor: Acme, sponsor: sam@corp.example, endsAt: 2026-12-31T18:00:00Z,
 *                     ceiling: { clusters: [prod], namespacePatterns: [payments], profiles: [viewer] },
 *                     maxVisaDuration: 8h }
 *     - group: kubevisa-approvers
 *       idp: okta                  # only Okta's SCIM group of this name counts
 *       role: approver
 *   sync: { provider: okta, url: https://acme.okta.com, tokenFile: ./okta.token, interval: 5m }   # or entra,
 *                                  # google, keycloak, dev-idp: docs/identity-providers/
 *   offboarding: { wait: 30s, retryInterval: 5s, maxRetryInterval: 5m, tokenProofTimeout: 30s,
 *                  alertWebhook: https://hooks.slack.com/services/… }
 * ```
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { emailAddressProblem } from '../domain/email.ts';
import { InvalidInput } from '../domain/errors.ts';
import { findForbiddenKey, ownData } from '../domain/own.ts';
import type { PersonRole } from '../domain/model.ts';
import { parseDuration } from '../domain/time.ts';
import { isValidIdpName } from '../scim/tokens.ts';

export interface ScimConfig {
  /** Serve /scim/v2 (default true when the `scim` section is present, false when it is absent). */
  enabled: boolean;
  /** Largest page a SCIM list returns (default 200, 1–1000). */
  maxResults: number;
}

export interface EngagementMappingSpec {
  name: string;
  vendor: string;
  sponsor: string;
  /** RFC 3339 with offset; default: when the engagement is first created. */
  startsAt?: string;
  /** RFC 3339 with offset. */
  endsAt: string;
  ceiling: { clusters: string[]; namespacePatterns: string[]; profiles: string[] };
  /** e.g. `8h`. */
  maxVisaDuration: string;
}

/** One IdP group and what membership gives: contractor of an engagement, or a kubevisa role. */
export interface GroupMapping {
  /** The group's name at the IdP (SCIM displayName or the `groups` claim value), compared case-insensitively. */
  group: string;
  /**
   * The SCIM identity provider (the name its SCIM token was created for) whose group this is. When set, a group of
   * that name provisioned over SCIM by any other identity provider does not count, so a second, less trusted SCIM
   * client cannot make itself or anyone else an admin or a contractor. Groups from the directory sync or the login
   * claim come from the server's own configured IdP and are not affected.
   */
  idp?: string;
  engagement?: EngagementMappingSpec;
  role?: PersonRole;
}

export type GroupSource = 'auto' | 'scim' | 'directory' | 'login';

/** The directory implementations `identity.sync.provider` names (src/identity/directories/). */
export const DIRECTORY_PROVIDERS = ['okta', 'entra', 'google', 'keycloak', 'dev-idp'] as const;
export type DirectoryProvider = (typeof DIRECTORY_PROVIDERS)[number];

/**
 * Where a directory is and the credential that reads it. Secrets are named by file (absolute paths, resolved
 * against the config's folder): each is read again whenever a new access token is needed, so a rotated secret
 * takes effect without a restart. See docs/identity-providers/.
 */
export type DirectorySource =
  | {
      /** The development IdP's directory (src/dev/idp-directory.ts): demo and tests. */
      provider: 'dev-idp';
      url: string;
      /** Bearer token (from `token` or `tokenFile`). A credential: never logged. */
      token?: string;
    }
  | {
      provider: 'okta';
      /** The org URL, e.g. https://acme.okta.com. */
      url: string;
      /** File holding an Okta API token (`SSWS`). */
      tokenFile: string;
    }
  | {
      provider: 'entra';
      /** Directory (tenant) id or verified domain. */
      tenant: string;
      clientId: string;
      clientSecretFile: string;
      /** Which user attribute is the person's email: userPrincipalName (default; what `oidc.emailClaim: upn` logs in with) or mail. */
      emailAttribute: 'userPrincipalName' | 'mail';
      /** Microsoft Graph's base URL (default https://graph.microsoft.com). */
      graphUrl: string;
      /** Default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token. */
      tokenUrl: string;
    }
  | {
      provider: 'google';
      /** The service account's JSON key file. */
      keyFile: string;
      /** The admin the service account acts as (domain-wide delegation). */
      subject: string;
      /** Default my_customer. */
      customer: string;
      /** The Admin SDK's base URL (default https://admin.googleapis.com). */
      url: string;
    }
  | {
      provider: 'keycloak';
      /** The Keycloak server's base URL (with `/auth` for versions before 17). */
      url: string;
      realm: string;
      clientId: string;
      clientSecretFile: string;
    };

/** One provider's fields, without the `provider` tag. */
export type DirectorySourceOf<P extends DirectoryProvider> = Omit<
  Extract<DirectorySource, { provider: P }>,
  'provider'
>;

export type SyncConfig = DirectorySource & {
  /** How often the directory is read, in ms (default 5 min, at least 1 s). */
  intervalMs: number;
  /** How long one read (every page, every mapped group) may take, in ms (default 2 min). */
  timeoutMs: number;
  /** What happens to a kubevisa person the directory no longer lists (default offboard). */
  missingUsers: 'offboard' | 'ignore';
  /**
   * Most people one sync may offboard (default 10). A directory answering with an empty or truncated list must
   * not offboard everybody: beyond this the sync refuses, alerts, and offboards nobody.
   */
  maxOffboardsPerRun: number;
};

export interface OffboardingConfig {
  /** How long the API waits for the receipt to be complete before answering with it as it is, in ms (30 s). */
  waitMs: number;
  /** First retry of an unproven step, in ms (5 s); doubling up to `maxRetryMs` (5 min). */
  retryMs: number;
  maxRetryMs: number;
  /** How long the proof that an old token is refused may take, in ms (30 s; kube-apiserver caches for 10 s). */
  tokenProofTimeoutMs: number;
  /** Slack-compatible webhook told when a step cannot be proven (and when it finally is). */
  alertWebhook?: string;
}

export interface IdentityConfig {
  groupMappings: GroupMapping[];
  /**
   * Which source says what groups a person is in: `scim` (provisioned groups), `directory` (the sync), `login`
   * (the groups claim at the last login), or `auto` (default): SCIM for people provisioned by SCIM, else the
   * directory for people it lists, else the login claim.
   */
  groupSource: GroupSource;
  /** Refuse logins of people no SCIM user (or directory entry) describes (default false). */
  requireProvisioned: boolean;
  /**
   * SCIM identity providers that may take charge of a person who already exists in kubevisa (logged in through
   * OIDC) and is linked to no identity provider (default none: an admin links each). See identity/ownership.ts.
   */
  claimExistingPeople: string[];
  /** When the IdP refuses to refresh a login: end that session only, or also suspend the person (default). */
  onRefreshFailure: 'end-session' | 'suspend';
  sync?: SyncConfig;
  offboarding: OffboardingConfig;
}

type Raw = Record<string, unknown>;
const ROLES: readonly PersonRole[] = ['admin', 'approver', 'auditor'];

function isObject(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refuse(path: string, problem: string): InvalidInput {
  return new InvalidInput(`config: '${path}' ${problem}`, { details: { field: path } });
}

function onlyKnown(raw: Raw, path: string, known: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw refuse(`${path}${key}`, `is not a known field; known fields: ${known.join(', ')}`);
  }
}

function text(raw: Raw, key: string, path: string): string {
  const value = raw[key];
  if (typeof value !== 'string' || value.trim() === '') throw refuse(`${path}${key}`, 'must be a non-empty string');
  return value.trim();
}

function optionalText(raw: Raw, key: string, path: string): string | undefined {
  return raw[key] === undefined ? undefined : text(raw, key, path);
}

function strings(raw: Raw, key: string, path: string): string[] {
  const value = raw[key];
  if (!Array.isArray(value) || value.length === 0 || value.some((v) => typeof v !== 'string' || v.trim() === '')) {
    throw refuse(`${path}${key}`, 'must be a non-empty list of strings');
  }
  return value.map((v: string) => v.trim());
}

function oneOf<T extends string>(raw: Raw, key: string, path: string, allowed: readonly T[], fallback: T): T {
  const value = raw[key];
  if (value === undefined) return fallback;
  const found = allowed.find((a) => a === value);
  if (found === undefined)
    throw refuse(`${path}${key}`, `must be one of ${allowed.join(', ')}; got ${JSON.stringify(value)}`);
  return found;
}

function durationMs(raw: Raw, key: string, path: string, fallbackMs: number, minimumMs = 1000): number {
  if (raw[key] === undefined) return fallbackMs;
  const ms = parseDuration(raw[key], `config ${path}${key}`) * 1000;
  if (ms < minimumMs) throw refuse(`${path}${key}`, `must be at least ${minimumMs / 1000}s`);
  return ms;
}

function wholeNumber(raw: Raw, key: string, path: string, fallback: number, min: number, max: number): number {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw refuse(`${path}${key}`, `must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function httpUrl(raw: Raw, key: string, path: string): string {
  const value = text(raw, key, path);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw refuse(`${path}${key}`, `is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw refuse(`${path}${key}`, 'must be an http(s) URL');
  return value.replace(/\/+$/, '');
}

/**
 * The section as prototype-less objects, so every `raw.field` below reads an own property or nothing; keys such
 * as `__proto__` are refused with their path.
 */
function section(raw: unknown, name: string): unknown {
  const forbidden = findForbiddenKey(raw, name);
  if (forbidden !== undefined) throw refuse(forbidden, 'is not a configuration field (it names an object prototype)');
  return ownData(raw);
}

export function parseScimConfig(input: unknown): ScimConfig {
  const raw = section(input, 'scim');
  if (raw === undefined) return { enabled: false, maxResults: 200 };
  if (raw === true) return { enabled: true, maxResults: 200 };
  if (!isObject(raw)) throw refuse('scim', 'must be an object such as { maxResults: 200 }, or true');
  onlyKnown(raw, 'scim.', ['enabled', 'maxResults']);
  if (raw.enabled !== undefined && typeof raw.enabled !== 'boolean')
    throw refuse('scim.enabled', 'must be true or false');
  return {
    enabled: raw.enabled !== false,
    maxResults: wholeNumber(raw, 'maxResults', 'scim.', 200, 1, 1000),
  };
}

function parseEngagement(raw: unknown, path: string): EngagementMappingSpec {
  if (!isObject(raw)) {
    throw refuse(
      path,
      'must be { name, vendor, sponsor, endsAt, ceiling: { clusters, namespacePatterns, profiles }, maxVisaDuration }',
    );
  }
  const at = `${path}.`;
  onlyKnown(raw, at, ['name', 'vendor', 'sponsor', 'startsAt', 'endsAt', 'ceiling', 'maxVisaDuration']);
  const ceiling = raw.ceiling;
  if (!isObject(ceiling)) throw refuse(`${at}ceiling`, 'must be { clusters, namespacePatterns, profiles }');
  onlyKnown(ceiling, `${at}ceiling.`, ['clusters', 'namespacePatterns', 'profiles']);
  const startsAt = optionalText(raw, 'startsAt', at);
  // Checked as written: lower-cased first, `\u212Aate@…` (the Kelvin sign) would name kate@… as sponsor.
  const sponsor = text(raw, 'sponsor', at);
  const sponsorProblem = emailAddressProblem(sponsor);
  if (sponsorProblem !== undefined) throw refuse(`${at}sponsor`, `must be the sponsor's email: ${sponsorProblem}`);
  return {
    name: text(raw, 'name', at),
    vendor: text(raw, 'vendor', at),
    sponsor: sponsor.toLowerCase(),
    ...(startsAt !== undefined ? { startsAt } : {}),
    endsAt: raw.endsAt instanceof Date ? raw.endsAt.toISOString() : text(raw, 'endsAt', at),
    ceiling: {
      clusters: strings(ceiling, 'clusters', `${at}ceiling.`),
      namespacePatterns: strings(ceiling, 'namespacePatterns', `${at}ceiling.`),
      profiles: strings(ceiling, 'profiles', `${at}ceiling.`),
    },
    maxVisaDuration: text(raw, 'maxVisaDuration', at),
  };
}

function parseMappings(raw: unknown): GroupMapping[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw))
    throw refuse('identity.groupMappings', 'must be a list of { group, engagement } or { group, role }');
  const names = new Set<string>();
  return raw.map((item: unknown, index) => {
    const path = `identity.groupMappings[${index}]`;
    if (!isObject(item)) throw refuse(path, 'must be { group, engagement } or { group, role }');
    onlyKnown(item, `${path}.`, ['group', 'idp', 'engagement', 'role']);
    const group = text(item, 'group', `${path}.`);
    const idp = item.idp === undefined ? {} : { idp: parseIdp(item.idp, `${path}.idp`) };
    if ((item.engagement === undefined) === (item.role === undefined)) {
      throw refuse(
        path,
        "must have exactly one of 'engagement' (contractors of a contract) or 'role' (admin, approver, auditor)",
      );
    }
    if (item.role !== undefined) return { group, ...idp, role: oneOf(item, 'role', `${path}.`, ROLES, 'approver') };
    const engagement = parseEngagement(item.engagement, `${path}.engagement`);
    if (names.has(engagement.name)) {
      throw refuse(
        `${path}.engagement.name`,
        `repeats '${engagement.name}': each mapped engagement needs its own name`,
      );
    }
    names.add(engagement.name);
    return { group, ...idp, engagement };
  });
}

function parseIdp(raw: unknown, path: string): string {
  if (typeof raw !== 'string' || !isValidIdpName(raw)) {
    throw refuse(
      path,
      `must name a SCIM identity provider as its token was created (e.g. okta: lowercase letters, digits, '-'), not ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

function parseIdpList(raw: unknown, path: string): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw refuse(path, 'must be a list of SCIM identity provider names, such as [okta]');
  return raw.map((item: unknown, index) => parseIdp(item, `${path}[${index}]`));
}

/** Fields every provider takes, beside its own. */
const SYNC_COMMON = ['provider', 'interval', 'timeout', 'missingUsers', 'maxOffboardsPerRun'] as const;
const SYNC_FIELDS: Record<DirectoryProvider, readonly string[]> = {
  'dev-idp': ['url', 'token', 'tokenFile'],
  okta: ['url', 'tokenFile'],
  entra: ['tenant', 'clientId', 'clientSecretFile', 'emailAttribute', 'graphUrl', 'tokenUrl'],
  google: ['keyFile', 'subject', 'customer', 'url'],
  keycloak: ['url', 'realm', 'clientId', 'clientSecretFile'],
};

/**
 * A directory API URL: https, or http only on a loopback address (a credential never crosses a network in clear
 * text; tests and a local proxy use loopback).
 */
function directoryUrl(raw: Raw, key: string, path: string, fallback?: string): string {
  if (raw[key] === undefined && fallback !== undefined) return fallback;
  const value = httpUrl(raw, key, path);
  const url = new URL(value);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || url.hostname.startsWith('127.');
  if (url.protocol === 'http:' && !loopback) {
    throw refuse(
      `${path}${key}`,
      `must be an https URL (the directory credential would travel in clear text): ${value}`,
    );
  }
  if (url.search !== '' || url.hash !== '') throw refuse(`${path}${key}`, 'must not carry a query or a fragment');
  return value;
}

/** A secret file's absolute path, after checking that it can be read and is not empty. */
function secretFile(raw: Raw, key: string, path: string, baseDir: string, holds: string): string {
  const file = resolve(baseDir, text(raw, key, path));
  let content: string;
  try {
    content = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw refuse(
      `${path}${key}`,
      `cannot be read (${(error as Error).message}): give the path of a file holding ${holds}`,
    );
  }
  if (content === '') throw refuse(`${path}${key}`, `is empty: it must hold ${holds}`);
  return file;
}

function parseSource(raw: Raw, provider: DirectoryProvider, at: string, baseDir: string): DirectorySource {
  switch (provider) {
    case 'dev-idp': {
      if (raw.token !== undefined && raw.tokenFile !== undefined)
        throw refuse(at.slice(0, -1), "takes 'token' or 'tokenFile', not both");
      let token = optionalText(raw, 'token', at);
      if (raw.tokenFile !== undefined) {
        token = readFileSync(secretFile(raw, 'tokenFile', at, baseDir, 'the directory token'), 'utf8').trim();
      }
      return { provider, url: httpUrl(raw, 'url', at), ...(token !== undefined ? { token } : {}) };
    }
    case 'okta':
      return {
        provider,
        url: directoryUrl(raw, 'url', at),
        tokenFile: secretFile(raw, 'tokenFile', at, baseDir, 'an Okta API token'),
      };
    case 'entra': {
      const tenant = text(raw, 'tenant', at);
      if (!/^[A-Za-z0-9.-]+$/.test(tenant)) {
        throw refuse(`${at}tenant`, 'must be the directory (tenant) id or a verified domain, such as corp.example');
      }
      return {
        provider,
        tenant,
        clientId: text(raw, 'clientId', at),
        clientSecretFile: secretFile(raw, 'clientSecretFile', at, baseDir, "the app registration's client secret"),
        emailAttribute: oneOf(raw, 'emailAttribute', at, ['userPrincipalName', 'mail'] as const, 'userPrincipalName'),
        graphUrl: directoryUrl(raw, 'graphUrl', at, 'https://graph.microsoft.com'),
        tokenUrl: directoryUrl(
          raw,
          'tokenUrl',
          at,
          `https://login.microsoftonline.com/${encodeURIComponent(tenant)}/oauth2/v2.0/token`,
        ),
      };
    }
    case 'google': {
      const subject = text(raw, 'subject', at);
      if (!/^[^@\s]+@[^@\s]+$/.test(subject)) {
        throw refuse(`${at}subject`, 'must be the email of the admin the service account acts as');
      }
      return {
        provider,
        keyFile: secretFile(raw, 'keyFile', at, baseDir, "the service account's JSON key"),
        subject,
        customer: optionalText(raw, 'customer', at) ?? 'my_customer',
        url: directoryUrl(raw, 'url', at, 'https://admin.googleapis.com'),
      };
    }
    case 'keycloak':
      return {
        provider,
        url: directoryUrl(raw, 'url', at),
        realm: text(raw, 'realm', at),
        clientId: text(raw, 'clientId', at),
        clientSecretFile: secretFile(raw, 'clientSecretFile', at, baseDir, "the client's secret"),
      };
  }
}

function parseSync(raw: unknown, baseDir: string): SyncConfig | undefined {
  if (raw === undefined) return undefined;
  const at = 'identity.sync.';
  if (!isObject(raw))
    throw refuse('identity.sync', `must be { provider, … }; providers: ${DIRECTORY_PROVIDERS.join(', ')}`);
  if (raw.provider === undefined) {
    throw refuse(
      `${at}provider`,
      `is required: one of ${DIRECTORY_PROVIDERS.join(', ')} (docs/identity-providers/ has a page for each)`,
    );
  }
  const provider = oneOf(raw, 'provider', at, DIRECTORY_PROVIDERS, 'okta');
  onlyKnown(raw, at, [...SYNC_COMMON, ...SYNC_FIELDS[provider]]);
  return {
    ...parseSource(raw, provider, at, baseDir),
    intervalMs: durationMs(raw, 'interval', at, 5 * 60_000),
    timeoutMs: durationMs(raw, 'timeout', at, 2 * 60_000),
    missingUsers: oneOf(raw, 'missingUsers', at, ['offboard', 'ignore'] as const, 'offboard'),
    maxOffboardsPerRun: wholeNumber(raw, 'maxOffboardsPerRun', at, 10, 1, 100_000),
  };
}

function parseOffboarding(raw: unknown): OffboardingConfig {
  const value = raw === undefined ? {} : raw;
  if (!isObject(value))
    throw refuse(
      'identity.offboarding',
      'must be { wait, retryInterval, maxRetryInterval, tokenProofTimeout, alertWebhook }',
    );
  const at = 'identity.offboarding.';
  onlyKnown(value, at, ['wait', 'retryInterval', 'maxRetryInterval', 'tokenProofTimeout', 'alertWebhook']);
  const retryMs = durationMs(value, 'retryInterval', at, 5000);
  const maxRetryMs = durationMs(value, 'maxRetryInterval', at, 5 * 60_000);
  if (maxRetryMs < retryMs) throw refuse(`${at}maxRetryInterval`, 'must not be shorter than retryInterval');
  const tokenProofTimeoutMs = durationMs(value, 'tokenProofTimeout', at, 30_000);
  if (tokenProofTimeoutMs < 11_000) {
    throw refuse(`${at}tokenProofTimeout`, "must be at least 11s: kube-apiserver caches a token's validity for 10 s");
  }
  return {
    waitMs: value.wait === undefined ? 30_000 : durationMs(value, 'wait', at, 30_000, 0),
    retryMs,
    maxRetryMs,
    tokenProofTimeoutMs,
    ...(value.alertWebhook !== undefined ? { alertWebhook: httpUrl(value, 'alertWebhook', at) } : {}),
  };
}

/** @param baseDir the config file's folder: relative `tokenFile` paths resolve against it. */
export function parseIdentityConfig(input: unknown, baseDir: string): IdentityConfig {
  const raw = section(input, 'identity');
  const value = raw === undefined ? {} : raw;
  if (!isObject(value)) throw refuse('identity', 'must be an object (see docs/identity.md)');
  onlyKnown(value, 'identity.', [
    'groupMappings',
    'groupSource',
    'requireProvisioned',
    'claimExistingPeople',
    'onRefreshFailure',
    'sync',
    'offboarding',
  ]);
  if (value.requireProvisioned !== undefined && typeof value.requireProvisioned !== 'boolean') {
    throw refuse('identity.requireProvisioned', 'must be true or false');
  }
  const sync = parseSync(value.sync, baseDir);
  return {
    groupMappings: parseMappings(value.groupMappings),
    groupSource: oneOf(value, 'groupSource', 'identity.', ['auto', 'scim', 'directory', 'login'] as const, 'auto'),
    requireProvisioned: value.requireProvisioned === true,
    claimExistingPeople: parseIdpList(value.claimExistingPeople, 'identity.claimExistingPeople'),
    onRefreshFailure: oneOf(value, 'onRefreshFailure', 'identity.', ['suspend', 'end-session'] as const, 'suspend'),
    ...(sync !== undefined ? { sync } : {}),
    offboarding: parseOffboarding(value.offboarding),
  };
}
