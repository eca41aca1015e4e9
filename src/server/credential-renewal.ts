/**
 * kubevisa's own credential for each cluster is a TokenRequest token (24 h from `kubevisa install`). Before half
 * of its life has passed, kubevisa asks for a new one with the rights `install` gave it for exactly that
 * (`serviceaccounts/token` on its own ServiceAccount), writes the kubeconfig file anew (0600, atomically), and
 * switches its clients to it; the gateway re-reads the file. A cluster registered at run time keeps its kubeconfig
 * sealed in the store instead of a file: the renewed one is sealed and stored the same way. Without this a server would lose every cluster a
 * day after install.
 */
import { rename, readFile, writeFile } from 'node:fs/promises';
import type { ClusterClient } from '../cluster/client.ts';
import { renewOwnToken } from '../cluster/install.ts';
import type { Store } from '../store/store.ts';

const MIN_SECONDS = 600;
const DEFAULT_SECONDS = 86_400;
/** kube-apiserver may extend a token asked for exactly 3607 s to a year: never ask for it. */
const EXTENDED_SECONDS = 3607;

export interface CredentialRenewal {
  /** Renews every credential past half its life at `now`; returns the clusters renewed. */
  renewDue(now?: number): Promise<string[]>;
  stop(): void;
}

export function startCredentialRenewal(options: {
  clusters: Map<string, ClusterClient>;
  kubeconfigFiles: Map<string, string>;
  /** Clusters registered at run time, whose kubeconfig the store keeps (sealed) instead of a file. */
  registered?: {
    kubeconfigOf(name: string): string | undefined;
    save(name: string, kubeconfigYaml: string): Promise<void>;
  };
  store: Store;
  /** How often to check, in ms (default 10 minutes). */
  intervalMs?: number;
  onError?: (cluster: string, error: Error) => void;
}): CredentialRenewal {
  const renewDue = async (now = Date.now()) => {
    const renewed: string[] = [];
    for (const [name, client] of options.clusters) {
      const file = options.kubeconfigFiles.get(name);
      const registered = file === undefined ? options.registered?.kubeconfigOf(name) : undefined;
      if (file === undefined && registered === undefined) continue;
      try {
        const life = tokenLife(file !== undefined ? await readFile(file, 'utf8') : registered!);
        if (!life || now < life.issuedAt + (life.expiresAt - life.issuedAt) / 2) continue;
        let seconds = Math.max(
          MIN_SECONDS,
          Math.min(DEFAULT_SECONDS, Math.round((life.expiresAt - life.issuedAt) / 1000)),
        );
        if (seconds === EXTENDED_SECONDS) seconds -= 1;
        const fresh = await renewOwnToken(client, seconds);
        if (file !== undefined) {
          const temporary = `${file}.renew`;
          await writeFile(temporary, fresh.kubeconfigYaml, { mode: 0o600 });
          await rename(temporary, file);
        } else {
          await options.registered!.save(name, fresh.kubeconfigYaml);
        }
        const token = tokenLife(fresh.kubeconfigYaml)?.token;
        if (token) client.useToken(token);
        await options.store.transaction((tx) =>
          tx.appendAudit({
            at: Date.now(),
            actor: 'system',
            action: 'cluster.credential-renewed',
            cluster: name,
            outcome: 'ok',
            details: { expirationTimestamp: fresh.expirationTimestamp, lifetimeSeconds: seconds },
          }),
        );
        renewed.push(name);
      } catch (error) {
        options.onError?.(name, error as Error);
      }
    }
    return renewed;
  };
  const timer = setInterval(() => void renewDue(), options.intervalMs ?? 10 * 60_000);
  timer.unref();
  return { renewDue, stop: () => clearInterval(timer) };
}

/** The bearer token of a kubeconfig and its JWT `iat`/`exp`, in epoch ms; undefined for a token that is not a JWT. */
export function tokenLife(kubeconfigYaml: string): { token: string; issuedAt: number; expiresAt: number } | undefined {
  const token = /token: *"?([A-Za-z0-9._-]+)"?/.exec(kubeconfigYaml)?.[1];
  const payload = token?.split('.')[1];
  if (!token || !payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iat?: number; exp?: number };
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number') return undefined;
    return { token, issuedAt: claims.iat * 1000, expiresAt: claims.exp * 1000 };
  } catch {
    return undefined;
  }
}
