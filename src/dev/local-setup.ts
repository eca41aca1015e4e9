/**
 * The local set-up the demo and the end-to-end tests share: kubevisa installed into a cluster with an admin
 * kubeconfig (its own credential written into the server's data folder), and a server configuration for a
 * local identity provider with the usual roles and policy.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { installKubevisa } from '../cluster/install.ts';
import type { Profile } from '../domain/model.ts';
import { SHIPPED_PROFILES } from '../rbac/profiles.ts';

/** Installs kubevisa with `adminKubeconfig` and returns the path of kubevisa's own credential in `dataDir`. */
export async function installIntoDataDir(options: {
  adminKubeconfig: string;
  clusterName: string;
  dataDir: string;
  extraProfiles?: Profile[];
  onProgress?: (message: string) => void;
}): Promise<string> {
  const installed = await installKubevisa({
    adminKubeconfigPath: options.adminKubeconfig,
    clusterName: options.clusterName,
    profiles: [...SHIPPED_PROFILES, ...(options.extraProfiles ?? [])],
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  await mkdir(join(options.dataDir, 'clusters'), { recursive: true, mode: 0o700 });
  const credential = join(options.dataDir, 'clusters', `${options.clusterName}.kubeconfig`);
  await writeFile(credential, installed.kubeconfigYaml, { mode: 0o600 });
  return credential;
}

/**
 * A server configuration (unparsed, as in a config file) for a local IdP: group `kubevisa-admins` holds admin,
 * `kubevisa-approvers` approves, one approval is needed, and `viewer` on `staging-*` up to 4 h is auto-approved
 * unless `autoApproval` is false. `scim` serves SCIM 2.0 at `/scim/v2` for identity providers (default off).
 */
export function localServerConfig(options: {
  port: number;
  dataDir: string;
  issuer: string;
  clientSecret: string;
  clusterName: string;
  credential: string;
  autoApproval?: boolean;
  tls?: { certFile: string; keyFile: string; caFile: string };
  resyncInterval?: string;
  scim?: boolean;
}): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: options.port },
    dataDir: options.dataDir,
    oidc: {
      issuer: options.issuer,
      clientId: 'kubevisa',
      clientSecret: options.clientSecret,
      scopes: 'openid email profile offline_access groups',
      allowInsecureHttp: true,
    },
    roles: { adminGroups: ['kubevisa-admins'] },
    policy: {
      requiredApprovals: 1,
      approverGroups: ['kubevisa-approvers'],
      autoApproval:
        options.autoApproval === false
          ? []
          : [
              {
                name: 'staging-viewer',
                profiles: ['viewer'],
                clusters: [options.clusterName],
                namespacePatterns: ['staging-*'],
                maxDuration: '4h',
              },
            ],
      maxVisaDuration: '7d',
    },
    clusters: [{ name: options.clusterName, kubeconfig: options.credential }],
    resyncInterval: options.resyncInterval ?? '10s',
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.scim === true ? { scim: {} } : {}),
  };
}
