/**
 * `kubevisa kubeconfig --cluster NAME [--direct]`: adds (or updates) a kubectl context whose user is an
 * exec plugin running `kubevisa credential`, so kubectl fetches a token that lives minutes whenever it needs
 * one and nothing secret is ever written into the kubeconfig.
 *
 * Gateway mode (default): the context's server is `<kubevisa server>/clusters/<name>`, trusted with the
 * kubevisa server's CA. Direct mode: server and CA are the cluster's own, from `GET /api/v1/clusters`; refused at
 * once for a cluster that says it does not allow direct mode (the server refuses its tokens anyway).
 */
import { access, constants, readFile, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Forbidden, NotFound } from '../../domain/errors.ts';
import { isDnsLabel } from '../../domain/names.ts';
import type { ClusterJson, Items } from '../api-types.ts';
import { checkClusterName, isErrno, writeFileAtomically } from '../config.ts';
import { BadKubeconfig, UnexpectedResponse } from '../errors.ts';
import { UsageError, type CommandRun } from '../framework.ts';
import { upsertContext, type ExecPlugin } from '../kubeconfig-file.ts';
import { clientFrom, positionalOrOption, optionalString, requiredString } from '../options.ts';

const command = 'kubeconfig';

/** The same refusal, and code, as the server's for a direct token on such a cluster. */
class DirectModeDenied extends Forbidden {
  static override code = 'ERR_DIRECT_MODE_DENIED';
}

export const run: CommandRun = async ({ values, positionals, io }) => {
  const cluster = checkClusterName(
    requiredString(
      { cluster: positionalOrOption(values, positionals, 'cluster', command) },
      'cluster',
      command,
      'the cluster to add a context for',
    ),
  );
  const direct = values.direct === true;
  const contextName = optionalString(values, 'context-name') ?? `kubevisa-${cluster}${direct ? '-direct' : ''}`;
  const namespace = optionalString(values, 'namespace');
  if (namespace !== undefined && !isDnsLabel(namespace)) {
    throw new UsageError(`--namespace '${namespace}' is not a namespace name (lower-case letters, digits and '-')`);
  }
  const file = await kubeconfigPath(optionalString(values, 'kubeconfig'));
  const plugin = await execPlugin(cluster, direct);

  const client = await clientFrom(values);
  const { items } = await client.get<Items<ClusterJson>>('/api/v1/clusters');
  const known = (items ?? []).find((c) => c.name === cluster);
  if (!known) {
    const names = (items ?? []).map((c) => c.name);
    throw new NotFound(
      `the server at ${client.server} knows no cluster '${cluster}'; ${names.length ? `known clusters: ${names.join(', ')}` : 'it has no clusters yet (an admin adds them with kubevisa install)'}`,
    );
  }

  let server: string;
  let caData: string | undefined;
  if (direct && known.directMode === false) {
    throw new DirectModeDenied(
      `cluster '${cluster}' does not allow direct mode (its 'directMode' setting on the kubevisa server is off): direct tokens bypass the gateway's per-request audit, session recording and stream cutting. Use the gateway instead: 'kubevisa kubeconfig --cluster ${cluster}' (without --direct).`,
    );
  }
  if (direct) {
    if (typeof known.server !== 'string' || known.server === '') {
      throw new UnexpectedResponse(
        `the server at ${client.server} lists cluster '${cluster}' without its API server URL; direct mode needs it`,
      );
    }
    server = known.server;
    caData = known.caData ? normalizeCaData(known.caData, cluster, client.server) : undefined;
    if (caData === undefined) {
      io.err(
        `warning: the server sent no CA for cluster '${cluster}'; kubectl will trust ${server} only if its certificate is signed by a system CA.\n`,
      );
    }
  } else {
    server = `${client.server}/clusters/${encodeURIComponent(cluster)}`;
    // kubectl does not read NODE_EXTRA_CA_CERTS, so the CA the CLI trusts for the server goes into the file.
    const caFile = client.caFile ?? process.env.NODE_EXTRA_CA_CERTS;
    if (caFile && server.startsWith('https:')) caData = Buffer.from(await readFile(caFile, 'utf8')).toString('base64');
  }

  if (server.startsWith('http:')) {
    io.err(
      `warning: ${server} is plain http, and kubectl never sends credentials over plain http (kubernetes/kubectl#744): its requests will be refused. Serve ${direct ? 'the cluster' : 'kubevisa'} over https.\n`,
    );
  }

  let existing: string | undefined;
  try {
    existing = await readFile(file, 'utf8');
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) {
      throw new BadKubeconfig(
        `cannot read ${file} (${(error as Error).message}); fix its permissions or pass --kubeconfig FILE`,
      );
    }
  }
  const text = upsertContext(
    existing,
    {
      name: contextName,
      server,
      ...(caData ? { caData } : {}),
      exec: plugin,
      ...(namespace ? { namespace } : {}),
      use: true,
    },
    file,
  );
  await writeFileAtomically(file, text);

  io.out(
    [
      `Context '${contextName}' in ${file} now reaches cluster ${cluster} ${direct ? `directly at ${server}` : `through the kubevisa gateway at ${server}`}; it is the current context.`,
      `kubectl asks '${plugin.command} credential' for a token that lives minutes; no secret is stored in the file.`,
      `Try: kubectl ${namespace ? '' : '-n NAMESPACE '}get pods`,
    ].join('\n') + '\n',
  );
};

/** `--kubeconfig`, else the first file in $KUBECONFIG, else ~/.kube/config; symlinks resolved so the link survives. */
async function kubeconfigPath(option: string | undefined): Promise<string> {
  const first = process.env.KUBECONFIG?.split(delimiter).find((entry) => entry !== '');
  const chosen = resolve(option ?? first ?? join(homedir(), '.kube', 'config'));
  try {
    return await realpath(chosen);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return chosen;
    throw error;
  }
}

/** The exec entry: this repository's bin/kubevisa by absolute path, so kubectl finds it without PATH. */
async function execPlugin(cluster: string, direct: boolean): Promise<ExecPlugin> {
  const binary = fileURLToPath(new URL('../../../bin/kubevisa', import.meta.url));
  try {
    await access(binary, constants.X_OK);
  } catch (error) {
    throw new UsageError(
      `cannot use ${binary} as kubectl's credential plugin (${(error as Error).message}); reinstall kubevisa or make it executable (chmod +x)`,
    );
  }
  return {
    apiVersion: 'client.authentication.k8s.io/v1',
    command: binary,
    args: ['credential', '--cluster', cluster, ...(direct ? ['--direct'] : [])],
    interactiveMode: 'Never',
    provideClusterInfo: false,
    installHint: `kubectl runs ${binary} for a kubevisa token. If it is missing, reinstall kubevisa and run 'kubevisa kubeconfig --cluster ${cluster}' again.`,
  };
}

/** The cluster's CA as `certificate-authority-data`: accepts base64 of PEM (as in a kubeconfig) or PEM itself. */
function normalizeCaData(caData: string, cluster: string, server: string): string {
  if (caData.includes('-----BEGIN CERTIFICATE-----')) return Buffer.from(caData).toString('base64');
  const decoded = Buffer.from(caData, 'base64').toString('utf8');
  if (decoded.includes('-----BEGIN CERTIFICATE-----')) return caData;
  throw new UnexpectedResponse(
    `the server at ${server} sent a caData for cluster '${cluster}' that is neither PEM nor base64 of PEM; ask an admin to check the cluster's registration`,
  );
}
