/**
 * `kubevisa demo`: the whole system on this machine, with the exact commands to walk the journey, as a contractor,
 * a sponsor and an identity provider (SCIM).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandRun } from '../framework.ts';
import { DEMO_SCIM_IDP, startDemo } from '../../dev/demo.ts';

export const run: CommandRun = async ({ values, io }) => {
  const dir = typeof values.dir === 'string' ? resolve(values.dir) : await mkdtemp(join(tmpdir(), 'kubevisa-demo-'));
  const started = Date.now();
  io.err('Starting the kubevisa demo: a local Kubernetes v1.37.2 control plane, an identity provider, the server.\n');
  io.err(
    'The first run builds the Kubernetes binaries from Go modules (about 8 minutes on 2 cores); later runs take ~15 s.\n',
  );
  const demo = await startDemo({ dir, onProgress: (m) => io.err(`  ${m}\n`) });
  const cli = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), '..', 'bin', 'kubevisa');
  const kv = resolve(cli);
  const c = demo.contractor;
  const s = demo.sponsor;
  io.out(
    [
      '',
      `kubevisa demo ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `  server:     ${demo.serverUrl}`,
      `  cluster:    ${demo.clusterName} (kube-apiserver ${demo.controlPlane.apiServerUrl}); namespaces payments, staging-web, finance`,
      `  engagement: acme-2026 (${demo.engagementId}): ${c.email} may reach payments and staging-* until the contract ends`,
      `  people:     contractor ${c.email} (password '${c.password}'), sponsor and admin ${s.email} (password '${s.password}')`,
      `  files:      ${demo.dir}`,
      '',
      '1. As the contractor, in a new terminal:',
      `   export KUBEVISA_CONFIG_DIR=${c.configDir} KUBECONFIG=${c.kubeconfig} PATH=${demo.controlPlane.binaries.dir}:$PATH`,
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
  io.err('stopped: every process ended.\n');
  return 0;
};
