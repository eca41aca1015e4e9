/**
 * Kubeconfigs in and out: loading the one kubevisa is given (a file or YAML text), and writing the self-contained
 * one that authenticates as kubevisa's own ServiceAccount with a token. The output embeds the CA (base64), so it
 * can be stored and moved without the files the admin's kubeconfig pointed at.
 */
import { readFileSync } from 'node:fs';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { InvalidInput } from '../domain/errors.ts';

/** Where a cluster's kubeconfig comes from: a file path, or the YAML text itself. */
export type KubeconfigSource = { kubeconfigPath: string } | { kubeconfigYaml: string };

/** How to reach a cluster's API server, without any credential: safe to log and to show. */
export interface ClusterConnection {
  /** `https://host:port` (no trailing slash). */
  server: string;
  /** The CA bundle that signs the server's certificate, PEM encoded in base64; absent means the system's CAs. */
  certificateAuthorityData?: string;
  /** Name to verify the server's certificate against, when it differs from the host in `server`. */
  tlsServerName?: string;
  /** True when the kubeconfig turned certificate verification off (then kubevisa's output keeps it off). */
  insecureSkipTlsVerify: boolean;
}

/**
 * Loads a kubeconfig and checks it names a current context with a cluster.
 * @param clusterName kubevisa's name for the cluster, used in error messages.
 * @throws InvalidInput when the file cannot be read or parsed, or has no usable current context.
 */
export function loadKubeConfig(source: KubeconfigSource, clusterName: string): KubeConfig {
  const kubeConfig = new KubeConfig();
  const origin = 'kubeconfigPath' in source ? `kubeconfig ${source.kubeconfigPath}` : 'the kubeconfig given';
  try {
    if ('kubeconfigPath' in source) kubeConfig.loadFromFile(source.kubeconfigPath);
    else kubeConfig.loadFromString(source.kubeconfigYaml);
  } catch (error) {
    // A YAML error quotes the lines around the fault, which can hold the token: name only where it is.
    const mark = (error as { mark?: { line?: number; column?: number } }).mark;
    const reason =
      mark?.line !== undefined
        ? `it is not valid YAML (line ${mark.line + 1}, column ${(mark.column ?? 0) + 1})`
        : (error as Error).message.split('\n')[0];
    throw new InvalidInput(`cluster '${clusterName}': cannot load ${origin}: ${reason}`, {
      details: { cluster: clusterName },
      cause: error,
    });
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null || kubeConfig.getCurrentUser() === null) {
    throw new InvalidInput(
      `cluster '${clusterName}': ${origin} has no current context naming both a cluster and a user`,
      { details: { cluster: clusterName } },
    );
  }
  return kubeConfig;
}

/**
 * The server, CA and TLS settings of the kubeconfig's current cluster. A CA given as a file is read and embedded.
 * @throws InvalidInput when there is no current cluster or its CA file cannot be read.
 */
export function connectionOf(kubeConfig: KubeConfig, clusterName: string): ClusterConnection {
  const cluster: Cluster | null = kubeConfig.getCurrentCluster();
  if (cluster === null) {
    throw new InvalidInput(`cluster '${clusterName}': the kubeconfig has no current cluster`, {
      details: { cluster: clusterName },
    });
  }
  let certificateAuthorityData = cluster.caData;
  if (certificateAuthorityData === undefined && cluster.caFile !== undefined) {
    try {
      certificateAuthorityData = readFileSync(cluster.caFile).toString('base64');
    } catch (error) {
      throw new InvalidInput(
        `cluster '${clusterName}': cannot read certificate-authority ${cluster.caFile}: ${(error as Error).message}`,
        { details: { cluster: clusterName }, cause: error },
      );
    }
  }
  const connection: ClusterConnection = {
    server: cluster.server.replace(/\/+$/, ''),
    insecureSkipTlsVerify: cluster.skipTLSVerify,
  };
  if (certificateAuthorityData !== undefined) connection.certificateAuthorityData = certificateAuthorityData;
  if (cluster.tlsServerName !== undefined) connection.tlsServerName = cluster.tlsServerName;
  return connection;
}

/**
 * A kubeconfig (YAML) for `connection` that authenticates with a bearer token. It holds a credential: store it
 * as a secret and never log it.
 * @param clusterName names the cluster, user (`<clusterName>-kubevisa`) and context inside the file.
 */
export function tokenKubeconfigYaml(input: {
  clusterName: string;
  connection: ClusterConnection;
  token: string;
}): string {
  const { clusterName, connection, token } = input;
  const cluster: Record<string, unknown> = { server: connection.server };
  if (connection.certificateAuthorityData !== undefined) {
    cluster['certificate-authority-data'] = connection.certificateAuthorityData;
  }
  if (connection.tlsServerName !== undefined) cluster['tls-server-name'] = connection.tlsServerName;
  if (connection.insecureSkipTlsVerify) cluster['insecure-skip-tls-verify'] = true;
  const user = `${clusterName}-kubevisa`;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: clusterName, cluster }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: clusterName, context: { cluster: clusterName, user } }],
    'current-context': clusterName,
  });
}
