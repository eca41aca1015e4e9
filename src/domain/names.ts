/**
 * Names kubevisa checks or derives: namespace names and patterns, the per-person ServiceAccount name, the
 * names of the RoleBindings and ClusterRoles it manages. Pure computation (hashing included), no I/O.
 */
import { createHash } from 'node:crypto';
import { InvalidInput } from './errors.ts';

/** Kubernetes' limit for an RFC 1123 label (namespace and ServiceAccount names, label values). */
export const DNS_LABEL_MAX_LENGTH = 63;
/** Hex characters of SHA-256 in `serviceAccountName`: 40 bits, so a collision among thousands is negligible. */
export const SERVICE_ACCOUNT_HASH_LENGTH = 10;
/** Hex characters of SHA-256 in `personHash` (64 bits): it is the `kubevisa.io/person` label value. */
export const PERSON_HASH_LENGTH = 16;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Kubernetes label values: alphanumeric ends, `-`, `_`, `.` inside, at most 63 characters.
const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_LABEL_RULE = "1–63 lower-case letters, digits or '-', starting and ending with a letter or digit";

/** True for an RFC 1123 label: the shape of a namespace or ServiceAccount name. */
export function isDnsLabel(name: string): boolean {
  return name.length <= DNS_LABEL_MAX_LENGTH && DNS_LABEL.test(name);
}

/**
 * Returns `value` when it is a valid namespace name.
 * @param field the input's name, used in the error message.
 * @throws InvalidInput saying what a namespace name may contain.
 */
export function validateNamespaceName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !isDnsLabel(value)) {
    const shown = typeof value === 'string' ? `'${value}'` : String(value);
    throw new InvalidInput(`${field}: ${shown} is not a valid namespace name: use ${DNS_LABEL_RULE}`, {
      details: { field, value },
    });
  }
  return value;
}

/**
 * True for a namespace pattern an engagement's ceiling may hold: an exact namespace name, or a prefix that
 * could start a namespace name followed by one trailing `*` (`staging-*`). A bare `*` is refused on purpose:
 * a contract must say which namespaces it covers, or kube-system would be in reach.
 */
export function isNamespacePattern(pattern: string): boolean {
  if (!pattern.endsWith('*')) return isDnsLabel(pattern);
  const prefix = pattern.slice(0, -1);
  return prefix.length > 0 && prefix.length < DNS_LABEL_MAX_LENGTH && /^[a-z0-9][-a-z0-9]*$/.test(prefix);
}

/**
 * True when `namespace` matches `pattern`: equal to it, or, for a pattern ending in `*`, starting with the part
 * before the `*` (`staging-*` matches `staging-eu`, not `staging` or `prod-staging-eu`). A `*` anywhere else is
 * an ordinary character, so such a pattern matches no valid namespace.
 */
export function matchesPattern(namespace: string, pattern: string): boolean {
  if (pattern.endsWith('*')) return namespace.startsWith(pattern.slice(0, -1));
  return namespace === pattern;
}

/** True when `namespace` matches at least one of `patterns`. */
export function matchesAnyPattern(namespace: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => matchesPattern(namespace, pattern));
}

/**
 * A short, stable hash of the exact email string (first 16 hex characters of its SHA-256). The input is not
 * normalised: `Alice@x` and `alice@x` hash differently, so look-alikes can never share an identity.
 */
export function personHash(email: string): string {
  return sha256Hex(email).slice(0, PERSON_HASH_LENGTH);
}

/**
 * The person's ServiceAccount name in `kubevisa-visas`: a readable slug of the email (ASCII letters lower-cased,
 * digits kept, everything else `-`, runs collapsed, truncated) + `-` + the first 10 hex characters of the
 * SHA-256 of the exact email. Always a valid DNS label (≤ 63 characters). The slug is for humans only; the
 * hash keeps apart emails that differ in case or by Unicode look-alikes (Cyrillic `а`, fullwidth `ａ`).
 */
export function serviceAccountName(email: string): string {
  const hash = sha256Hex(email).slice(0, SERVICE_ACCOUNT_HASH_LENGTH);
  const slugMaxLength = DNS_LABEL_MAX_LENGTH - 1 - SERVICE_ACCOUNT_HASH_LENGTH;
  const slug = trimDashes(asciiSlug(email).slice(0, slugMaxLength));
  return `${slug === '' ? 'person' : slug}-${hash}`;
}

/**
 * True for a visa id kubevisa can put in a label value (`kubevisa.io/visa=<id>`) and in object names: 1–63
 * ASCII letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit.
 */
export function isVisaId(id: string): boolean {
  return id.length <= DNS_LABEL_MAX_LENGTH && LABEL_VALUE.test(id);
}

/**
 * The RoleBinding name for a visa: `kubevisa-<visaId>`. A visa gets one RoleBinding per namespace, all with this
 * name; RoleBindings are namespaced, so the namespace need not be part of the name. RBAC object names only need
 * to be valid path segments, which every id accepted by `isVisaId` is.
 * @throws InvalidInput when the id is not a valid visa id.
 */
export function roleBindingName(visaId: string): string {
  if (!isVisaId(visaId)) {
    throw new InvalidInput(
      `visa id '${visaId}' cannot name a RoleBinding: use 1–63 ASCII letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
      { details: { field: 'visaId', value: visaId } },
    );
  }
  return `kubevisa-${visaId}`;
}

/**
 * The ClusterRole a profile is installed as: `kubevisa:profile:<name>`.
 * @throws InvalidInput when the profile name is not a DNS label.
 */
export function profileClusterRoleName(profile: string): string {
  if (!isDnsLabel(profile)) {
    throw new InvalidInput(`profile name '${profile}' is not valid: use ${DNS_LABEL_RULE}`, {
      details: { field: 'profile', value: profile },
    });
  }
  return `kubevisa:profile:${profile}`;
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

// Only ASCII A–Z is lower-cased by hand: String#toLowerCase would fold some non-ASCII characters into ASCII
// (the Kelvin sign U+212A becomes 'k'), making a look-alike's slug identical to the real one.
function asciiSlug(text: string): string {
  let slug = '';
  for (const char of text) {
    if (char >= 'a' && char <= 'z') slug += char;
    else if (char >= '0' && char <= '9') slug += char;
    else if (char >= 'A' && char <= 'Z') slug += String.fromCharCode(char.charCodeAt(0) + 32);
    else if (!slug.endsWith('-')) slug += '-';
  }
  return trimDashes(slug);
}

function trimDashes(text: string): string {
  return text.replace(/^-+|-+$/g, '');
}
