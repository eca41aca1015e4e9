/**
 * What an API caller is told about an error, and what only the server log keeps. A contractor calling the API
 * must learn what happened and what to do, never where kubevisa's upstreams live (kube-apiserver's host:port,
 * the identity provider's internal address), its file paths (data folder, kubeconfigs, the database) or raw
 * Node / client-node error text (`connect ECONNREFUSED 10.0.0.7:6443`).
 *
 * - Cluster errors say it in their own words (`publicMessage`, `publicDetails`, src/cluster/errors.ts).
 * - Any other server-side failure (5xx) is passed through `withoutInternals`, which withholds addresses, paths and
 *   network error codes and keeps the sentence around them.
 * - Refusals of the caller's own input (4xx) are written for them and pass unchanged.
 */
import { ClusterRequestFailed } from '../cluster/errors.ts';
import type { KubevisaError } from '../domain/errors.ts';

export interface PublicProblem {
  message: string;
  details: Record<string, unknown>;
  /** Something was withheld from the caller: the server log should keep the full error. */
  withheld: boolean;
}

export function publicProblem(error: KubevisaError): PublicProblem {
  const details = { ...(error.details ?? {}) };
  if (error instanceof ClusterRequestFailed) {
    const message = withoutInternals(error.publicMessage);
    return { message, details: error.publicDetails, withheld: message !== error.message };
  }
  if (error.status < 500) return { message: error.message, details, withheld: false };
  const message = withoutInternals(error.message);
  let withheld = message !== error.message;
  for (const [key, value] of Object.entries(details)) {
    if (typeof value !== 'string') continue;
    details[key] = withoutInternals(value);
    withheld ||= details[key] !== value;
  }
  return { message, details, withheld };
}

const WITHHELD_ADDRESS = '(address withheld)';
const WITHHELD_PATH = '(path withheld)';

/** Patterns for what never leaves the server in an error message, in the order they are replaced. */
const INTERNALS: readonly [RegExp, string][] = [
  // URLs with any scheme: https://10.0.0.7:6443/api, unix:///run/…
  [/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>()[\]{},]+/gi, WITHHELD_ADDRESS],
  // IPv6 with port: [fd00::1]:6443
  [/\[[0-9a-f:.]+\](?::\d{1,5})?/gi, WITHHELD_ADDRESS],
  // IPv4, with or without port: 10.0.0.7:6443, 127.0.0.1
  [/\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g, WITHHELD_ADDRESS],
  // host:port: localhost:6443, api.internal.example:6443
  [/\b(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+):\d{2,5}\b/gi, WITHHELD_ADDRESS],
  // Absolute file paths (two segments or more): /tmp/kubevisa-e2e-x/data/kubevisa.db, /var/lib/kubevisa/…
  [/(?<![\w.~-])(?:\/[\w.@+-]+){2,}\/?/g, WITHHELD_PATH],
  // Node's and undici's error codes, and the syscall words Node puts before them (connect ECONNREFUSED).
  [/\b(?:(?:connect|read|write|getaddrinfo|open|spawn)\s+)?(?:E[A-Z]{3,}|UND_ERR_[A-Z_]+)\b/g, 'network error'],
];

/** `text` with upstream addresses, file paths and raw network error codes replaced by a word saying so. */
export function withoutInternals(text: string): string {
  let out = text;
  for (const [pattern, replacement] of INTERNALS) out = out.replace(pattern, replacement);
  return out;
}
