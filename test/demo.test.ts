// The README's first command, driven from a script the way a newcomer would walk it: `kubevisa demo`, then
// the contractor and the sponsor log in with the device flow (completed at the demo IdP from a terminal),
// request, approve, use plain kubectl through the exec plugin, revoke; then, as the identity provider, the
// printed SCIM commands provision and delete the contractor — and Ctrl-C stops everything.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath } from './support/kubevisa-env.ts';
import { login, run } from './support/demo-journey.ts';
import { eventually, kubectl, kubectlBackground } from './support/kubectl.ts';

let dir: string;
let demo: ReturnType<typeof kubectlBackground> & { child: ChildProcess };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubevisa-demo-test-'));
});
after(async () => {
  if (demo && demo.child.exitCode === null) demo.child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

test('the demo journey: login, request, approve, kubectl, revoke, SCIM provisioning and deletion, Ctrl-C', async () => {
  demo = kubectlBackground(cliPath, ['demo', '--dir', dir], { kubeconfig: '', timeoutMs: 300_000 });
  await demo.waitFor(/Press Ctrl-C to stop everything/, 180_000);
  const out = demo.output();
  const serverUrl = /server:\s+(https\S+)/.exec(out)![1]!;
  const caFile = /--ca-file (\S+)/.exec(out)![1]!;
  const apiServerPort = Number(/kube-apiserver https:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const kubectlDir = /PATH=([^:\s]+):\$PATH/.exec(out)![1]!;
  const cora = { KUBEVISA_CONFIG_DIR: join(dir, 'cora'), KUBECONFIG: join(dir, 'cora', 'kubeconfig') };
  const sam = { KUBEVISA_CONFIG_DIR: join(dir, 'sam') };

  await login(serverUrl, caFile, cora.KUBEVISA_CONFIG_DIR, 'cora@vendor.example', 'cora');
  await login(serverUrl, caFile, sam.KUBEVISA_CONFIG_DIR, 'sam@corp.example', 'sam');

  const requested = await run(
    [
      'request',
      '--cluster',
      'demo',
      '--ns',
      'payments',
      '--profile',
      'developer',
      '--for',
      '1h',
      '--reason',
      'JIRA-123',
      '-o',
      'json',
    ],
    cora,
  );
  assert.equal(requested.code, 0, requested.stderr);
  const visa = JSON.parse(requested.stdout) as { id: string; state: string };
  assert.equal(visa.state, 'requested');

  const selfApproval = await run(['approve', visa.id], cora);
  assert.equal(selfApproval.code, 1);
  assert.match(selfApproval.stderr, /ERR_SELF_APPROVAL|ERR_NOT_AN_APPROVER|may not|cannot/i);

  const pendingList = await run(['visas', '--state', 'requested'], sam);
  assert.match(pendingList.stdout, new RegExp(visa.id));
  const approved = await run(['approve', visa.id], sam);
  assert.equal(approved.code, 0, approved.stderr);

  // Gateway mode (the default): the kubeconfig points at kubevisa, never at the cluster.
  const kubeconfig = await run(['kubeconfig', '--cluster', 'demo'], cora);
  assert.equal(kubeconfig.code, 0, kubeconfig.stderr);
  const kubectlBin = join(kubectlDir, 'kubectl');
  await eventually('kubectl get pods -n payments works', 10_000, async () => {
    const r = await kubectl(kubectlBin, ['get', 'pods', '-n', 'payments'], { kubeconfig: cora.KUBECONFIG, env: cora });
    if (r.code !== 0) throw new Error(r.stderr);
    return true;
  });
  const pods = await kubectl(kubectlBin, ['get', 'pods', '-n', 'payments'], { kubeconfig: cora.KUBECONFIG, env: cora });
  assert.match(pods.stdout, /payments-api/);
  const finance = await kubectl(kubectlBin, ['get', 'pods', '-n', 'finance'], {
    kubeconfig: cora.KUBECONFIG,
    env: cora,
  });
  assert.notEqual(finance.code, 0);
  assert.match(finance.stderr, /forbidden/i);

  const watch = kubectlBackground(kubectlBin, ['get', 'pods', '-n', 'payments', '-w'], {
    kubeconfig: cora.KUBECONFIG,
    env: cora,
  });
  await watch.waitFor(/payments-api/);
  const revoked = await run(['revoke', visa.id, '--reason', 'done'], sam);
  assert.equal(revoked.code, 0, revoked.stderr);
  await eventually(
    'the open watch is closed by the revoke',
    5000,
    async () => watch.child.exitCode !== null || watch.child.signalCode !== null,
  );
  await eventually(
    'kubectl is refused after the revoke',
    5000,
    async () =>
      (await kubectl(kubectlBin, ['get', 'pods', '-n', 'payments'], { kubeconfig: cora.KUBECONFIG, env: cora }))
        .code !== 0,
  );

  // As the identity provider, with what the demo printed: the SCIM URL answers, the printed command makes a token
  // that works, and the printed curl commands provision the contractor and delete her, which ends her session.
  const scimUrl = /SCIM base URL:\s+(https\S+)/.exec(out)?.[1];
  assert.equal(scimUrl, `${serverUrl}/scim/v2`, out);
  const tokenCommand = /^\s+(\S+) (scim token create --idp \S+)$/m.exec(out);
  assert.ok(tokenCommand, `the demo prints the command that makes a SCIM token:\n${out}`);
  assert.equal(tokenCommand[1], cliPath);
  const created = await run(tokenCommand[2]!.split(' '), sam);
  assert.equal(created.code, 0, created.stderr);
  const scimToken = /shown once[^\n]*\n\n\s+(\S+)\n/.exec(created.stdout)?.[1];
  assert.ok(scimToken, created.stdout);
  assert.ok(created.stdout.includes(scimUrl), created.stdout);
  const shell = (line: string) => run(['-c', line], { SCIM_TOKEN: scimToken }, 30_000, 'bash');
  const config = /^\s+(curl .*\/ServiceProviderConfig)$/m.exec(out)?.[1];
  assert.ok(config, out);
  const answered = await shell(config);
  assert.equal(answered.code, 0, answered.stderr);
  const spc = JSON.parse(answered.stdout) as { schemas?: string[] };
  assert.deepEqual(spc.schemas, ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'], answered.stdout);
  const refused = await shell(config.replace('$SCIM_TOKEN', 'not-a-token') + " -o /dev/null -w '%{http_code}'");
  assert.equal(refused.stdout, '401', 'the URL needs the token: it is not answering anyone');
  const provision = /^\s+(curl .*\\\n\s+-d .*\/Users)$/m.exec(out)?.[1];
  assert.ok(provision, out);
  const provisioned = await shell(provision);
  const user = JSON.parse(provisioned.stdout) as { id?: string; userName?: string; active?: boolean };
  assert.equal(user.userName, 'cora@vendor.example', provisioned.stdout);
  const remove = /^\s+(curl .* -X DELETE \S+\/Users\/)ID$/m.exec(out)?.[1];
  assert.ok(remove, out);
  const deleted = await shell(`${remove}${user.id} -w '%{http_code}'`);
  assert.equal(deleted.stdout, '204', deleted.stderr);
  const loggedOut = await run(['visas'], cora);
  assert.notEqual(loggedOut.code, 0, 'the contractor deleted at the identity provider is logged out');
  assert.match(loggedOut.stderr, /session|log in|deprovisioned/i);

  demo.child.kill('SIGINT');
  await new Promise((resolve) => demo.child.once('exit', resolve));
  assert.equal(demo.child.exitCode, 0, demo.output().slice(-2000));
  const apiServerGone = await new Promise<boolean>((resolve) => {
    const socket = connect(apiServerPort, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
  assert.ok(apiServerGone, 'kube-apiserver stopped with the demo');
});
