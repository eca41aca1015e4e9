/**
 * `kubevisa demo`: the whole system on this machine, with the exact commands to walk the journey, as a contractor,
 * a sponsor and an identity provider (SCIM). With `--kubeconfig`, in a cluster the user already has (kind, minikube,
 * k3d, a cloud test cluster) instead of a local control plane built from Go modules; Ctrl-C removes from it
 * everything the demo put there.
 */
import { access, constants, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, type CommandRun } from '../framework.ts';
import { DEMO_SCIM_IDP, startDemo } from '../../dev/demo.ts';

export const run: CommandRun = async ({ values, io }) => {
  const dir = typeof values.dir === 'string' ? resolve(values.dir) : await mkdtemp(join(tmpdir(), 'kubevisa-demo-'));
  const adminKubeconfig = typeof values.kubeconfig === 'string' ? resolve(values.kubeconfig) : undefined;
  if (adminKubeconfig !== undefined) {
    try {
      await access(adminKubeconfig, constants.R_OK);
    } catch (error) {
      throw new UsageError(
        `--kubeconfig ${adminKubeconfig} cannot be read (${(error as Error).message}): give a cluster-admin kubeconfig`,
      );
    }
  }
  const started = Date.now();
  if (adminKubeconfig === undefined) {
    io.err('Starting the kubevisa demo: a local Kubernetes v1.37.2 control plane, an identity provider, the server.\n');
    io.err(
      'The first run builds the Kubernetes binaries from Go modules (about 8 minutes on 2 cores); later runs take ~15 s.\n',
    );
  } else {
    io.err(
      `Starting the kubevisa demo in the cluster of ${adminKubeconfig}: an identity provider and the server here.\n`,
    );
    io.err('Ctrl-C removes from the cluster everything the demo put there.\n');
  }
  const demo = await startDemo({
    dir,
    ...(adminKubeconfig === undefined ? {} : { adminKubeconfig }),
    onProgress: (m) => io.err(`  ${m}\n`),
  });
  // This very command line, by absolute path (bin/kubevisa in a clone, the package's launcher when installed).
  const kv = fileURLToPath(new URL('../../../bin/kubevisa', import.meta.url));
  const kubectlPath = demo.kubectlDir === undefined ? '' : ` PATH=${demo.kubectlDir}:$PATH`;
  const c = demo.contractor;
  const s = demo.sponsor;
  io.out(
    [
      '',
      `kubevisa demo ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `  server:     ${demo.serverUrl}`,
      `  console:    ${demo.serverUrl}/ (sign in as either person below; the demo CA signs its certificate: ${demo.caFile})`,
      `  cluster:    ${demo.clusterName} (kube-apiserver ${demo.apiServerUrl}); namespaces payments, staging-web, finance`,
      `  admin:      ${demo.adminKubeconfig} (cluster-admin; see what kubevisa did: kubectl --kubeconfig ${demo.adminKubeconfig} get rolebindings -A -l app.kubernetes.io/managed-by=kubevisa)`,
      `  config:     ${demo.configFile} (the server's config: kubevisa server --config ${demo.configFile})`,
      `  engagement: acme-2026 (${demo.engagementId}): ${c.email} may reach payments and staging-* until the contract ends`,
      `  people:     contractor ${c.email} (password '${c.password}'), sponsor and admin ${s.email} (password '${s.password}')`,
      `  files:      ${demo.dir}`,
      '',
      '1. As the contractor, in a new terminal:',
      `   export KUBEVISA_CONFIG_DIR=${c.configDir} KUBECONFIG=${c.kubeconfig}${kubectlPath}`,
      `   ${kv} login --server ${demo.serverUrl} --ca-file ${demo.caFile} --device`,
      `   #  open the URL it prints and log in as ${c.email} / ${c.password}; without a browser, run:`,
      `   #  ${kv} demo idp-login 'URL' --login ${c.email} --password ${c.password}`,
      `   ${kv} request --cluster ${demo.clusterName} --ns payments --profile developer --for 1h --reason "JIRA-123 fix payments"`,
      '',
      '2. As the sponsor, in another terminal:',
      `   export KUBEVISA_CONFIG_DIR=${s.configDir}`,
      `   ${kv} login --server ${demo.serverUrl} --ca-file ${demo.caFile} --device     # log in as ${s.email} / ${s.password}`,
      `   ${kv} visas --state requested`,
      `   ${kv} approve VISA_ID`,
      '',
      '3. Back as the contractor: plain kubectl through the kubevisa gateway, no secret on disk',
      '   (kubectl asks kubevisa for a token that lives minutes; the cluster is never reached directly):',
      `   ${kv} kubeconfig --cluster ${demo.clusterName}`,
      '   kubectl get pods -n payments          # allowed',
      '   kubectl get pods -n finance           # refused: outside the visa',
      '   kubectl get pods -n payments -w       # leave it open ...',
      '',
      `4. As the sponsor: ${kv} revoke VISA_ID --reason "done"  — the open watch closes at once and kubectl is refused.`,
      '',
      '5. As the identity provider: SCIM 2.0 provisioning and offboarding, as Okta or Entra ID would send it.',
      `   SCIM base URL: ${demo.scimUrl}`,
      "   In the sponsor's terminal (an admin), make the identity provider's bearer token; it is shown once:",
      `   ${kv} scim token create --idp ${DEMO_SCIM_IDP}`,
      '   export SCIM_TOKEN=…the token it printed…',
      `   curl --cacert ${demo.caFile} -H "Authorization: Bearer $SCIM_TOKEN" ${demo.scimUrl}/ServiceProviderConfig`,
      `   #  provision the contractor (the answer carries her SCIM "id"), then delete her at the identity provider:`,
      `   curl --cacert ${demo.caFile} -H "Authorization: Bearer $SCIM_TOKEN" -H 'Content-Type: application/scim+json' \\`,
      `     -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"${c.email}","active":true}' ${demo.scimUrl}/Users`,
      `   curl --cacert ${demo.caFile} -H "Authorization: Bearer $SCIM_TOKEN" -X DELETE ${demo.scimUrl}/Users/ID`,
      `   #  her sessions, visas and open kubectl streams end at once; the receipt proving each step is at`,
      `   #  ${demo.serverUrl}/api/v1/offboardings?person=${c.email} (admins), and '${kv} offboard EMAIL --reason …' prints one.`,
      '',
      'Press Ctrl-C to stop everything.',
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });
  io.err('\nstopping the demo ...\n');
  await demo.stop();
  io.err(
    adminKubeconfig === undefined
      ? 'stopped: every process ended.\n'
      : 'stopped: every process ended, and everything the demo put in the cluster is removed.\n',
  );
  return 0;
};
