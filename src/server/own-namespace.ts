/**
 * The namespace the kubevisa server itself runs in, when it runs as a pod: whoever may start pods there can run as
 * the server's ServiceAccount and mount its Secrets (database, signing key), so no visa may grant it.
 */
import { readFileSync } from 'node:fs';
import type { Policy } from '../domain/model.ts';

/** Where Kubernetes tells a pod its namespace (the projected ServiceAccount volume). */
export const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The policy with the server's own namespace added to its protected namespaces (unchanged outside a pod). */
export function protectOwnNamespace(policy: Policy, file: string = POD_NAMESPACE_FILE): Policy {
  let namespace: string;
  try {
    namespace = readFileSync(file, 'utf8').trim();
  } catch {
    // Not running in a pod (no such file): nothing to add.
    return policy;
  }
  if (namespace === '') return policy;
  return { ...policy, protectedNamespaces: [...new Set([...(policy.protectedNamespaces ?? []), namespace])] };
}
