// What the gateway records and says when access is shared by several visas, refused, flooded or ended: against the
// real gateway in front of the real kube-apiserver, with the real kubectl.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import { api, CLUSTER, inDays, loginAs, people, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { debuggerProfile } from '../src/rbac/profiles.ts';
import type { AuditEvent } from '../src/store/store.ts';
import { eventually, kubectl } from './support/kubectl.ts';
import { floodFromMany, loopbackAddresses, startFlood } from './support/gateway-flood.ts';

let env: KubevisaEnv;
let admin: string;
let approver: string;
let cora: { token: string; personId: string };
let kubeconfig: string;
/** Client addresses the gateway tracks (smaller than the default, so that a test can fill the table). */
const ADDRESS_TABLE_SIZE = 1000;
/** A cluster kubevisa manages whose API server cannot be reached: nothing listens on its port. */
const GONE = 'gone';
let gonePort: number;

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

async function grant(profile: string, namespaces: string[], duration = '1h', cluster = CLUSTER): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile,
    cluster,
    namespaces,
    duration,
    reason: 'gateway audit test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  for (const namespace of cluster === CLUSTER ? namespaces : []) {
    await eventually(
      `RoleBinding of ${id} in ${namespace}`,
      15_000,
      async () => (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', namespace])).code === 0,
    );
  }
  return id;
}

async function runningPod(namespace: string, name = 'app') {
  await eventually(
    `default ServiceAccount in ${namespace}`,
    20_000,
    async () => (await env.k(['get', 'sa', 'default', '-n', namespace])).code === 0,
  );
  await env.kOk(['run', name, '-n', namespace, '--image=registry.example/app:1']);
  await eventually(
    `pod ${name} Running in ${namespace}`,
    30_000,
    async () => (await env.kOk(['get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.status.phase}'])) === 'Running',
  );
}

const gk = (args: string[], extraEnv: Record<string, string> = {}, input?: string) =>
  kubectl(env.cp.binaries.kubectl, args, { kubeconfig, env: extraEnv, ...(input !== undefined ? { input } : {}) });

/** A kubectl whose stdin stays open, so a test can type into an exec session while it runs. */
function interactive(args: string[], extraEnv: Record<string, string> = {}) {
  const child: ChildProcessWithoutNullStreams = spawn(env.cp.binaries.kubectl, args, {
    env: { ...process.env, KUBECONFIG: kubeconfig, ...extraEnv },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const hardStop = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(hardStop);
      resolve(code);
    }),
  );
  return {
    child,
    exited,
    ended: () => child.exitCode !== null || child.signalCode !== null,
    stdout: () => stdout,
    stderr: () => stderr,
    type: (line: string) => child.stdin.write(`${line}\n`),
  };
}

/**
 * Sends raw HTTP/1.1 over TLS from a loopback address of its own (one per case, so each is the first refusal its
 * source ever had) and returns the status lines of the answers.
 */
function rawFrom(from: string, text: string): Promise<string[]> {
  return new Promise((resolve) => {
    const tcp = connectTcp({ host: '127.0.0.1', port: env.serverPort, localAddress: from });
    const socket = connectTls({
      socket: tcp,
      ca: readFileSync(join(env.dir, 'pki', 'ca.crt')),
      servername: 'localhost',
    });
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received.match(/HTTP\/1\.1 \d{3}/g) ?? []);
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', done);
    socket.on('close', done);
    socket.on('secureConnect', () => socket.write(text));
  });
}

function gateway() {
  return env.server!.capabilities.gateway.gateway;
}

/** The person's gateway events of `action`, after writing out whatever the gateway has queued. */
async function trail(action: string, filter: { visaId?: string } = {}): Promise<AuditEvent[]> {
  await gateway().flushAudit();
  return env.server!.store.listAudit({ action, personId: cora.personId, ...filter, limit: 10_000 });
}

before(async () => {
  // debugger's rights without its recording: a visa with it is the weaker of two on one namespace.
  const plain = {
    ...debuggerProfile,
    name: 'debugger-plain',
    recordSessions: false,
    description: 'debugger without recording (tests)',
  };
  env = await startKubevisaEnv({ tls: true, autoApproval: false, extraProfiles: [plain] });
  for (const ns of ['ga-both', 'ga-late', 'ga-flood', 'ga-many', 'ga-watch', 'ga-expire', 'ga-cut'])
    await env.kOk(['create', 'namespace', ns]);
  [gonePort] = (await freePorts(1)) as [number];
  const goneKubeconfig = join(env.dir, 'gone.kubeconfig');
  await writeFile(
    goneKubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: GONE, cluster: { server: `https://127.0.0.1:${gonePort}`, 'insecure-skip-tls-verify': true } },
      ],
      users: [{ name: 'kubevisa', user: { token: 'no-cluster-answers' } }],
      contexts: [{ name: GONE, context: { cluster: GONE, user: 'kubevisa' } }],
      'current-context': GONE,
    }),
    { mode: 0o600 },
  );
  env.config.clusters.push({ name: GONE, kubeconfig: goneKubeconfig });
  env.config.extensions.gateway = {
    ...(env.config.extensions.gateway as Record<string, unknown> | undefined),
    addressTableSize: ADDRESS_TABLE_SIZE,
  };
  await env.startInProcess();
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'gateway-audit',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: {
      clusters: [CLUSTER, GONE],
      namespacePatterns: ['ga-*'],
      profiles: ['viewer', 'debugger', 'debugger-plain'],
    },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await runningPod('ga-both');
  await runningPod('ga-late');
  await runningPod('ga-cut');
  kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora');
});
after(async () => {
  await env?.stop();
});

describe('several visas on one namespace: the strictest decides', () => {
  let weak: string;
  let strict: string;
  before(async () => {
    // The weaker visa ends first, so the index meets it first.
    weak = await grant('debugger-plain', ['ga-both'], '1h');
    strict = await grant('debugger', ['ga-both'], '2h');
  });

  test('kubectl exec is recorded, SPDY is refused, and the audit names both visas', async () => {
    const spdy = await gk(['exec', '-n', 'ga-both', 'app', '--', 'true'], {
      KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false',
    });
    assert.notEqual(spdy.code, 0, 'SPDY, which cannot be recorded, is refused');
    assert.match(spdy.stderr, /records exec and attach sessions/);
    const exec = await gk(['exec', '-n', 'ga-both', 'app', '--', 'sh', '-c', 'echo both-visas-$((6*7))']);
    assert.equal(exec.code, 0, exec.stderr);
    assert.equal(exec.stdout, 'both-visas-42\n');
    const streams = await trail('gateway.stream');
    const event = streams.find((e) => JSON.stringify(e.details.query).includes('both-visas'));
    assert.ok(event, 'the exec is in the trail');
    const recording = event.details.recording as { file: string } | undefined;
    assert.ok(recording, 'the exec was recorded');
    assert.match(readFileSync(recording.file, 'utf8'), /both-visas-42/);
    assert.equal(event.visaId, strict, 'the event is filed under the visa whose rules it followed');
    assert.deepEqual([...(event.details.visaIds as string[])].sort(), [weak, strict].sort());
    const list = await gk(['get', 'pods', '-n', 'ga-both']);
    assert.equal(list.code, 0, list.stderr);
    const requests = await trail('gateway.request');
    const listed = requests.find((e) => e.namespace === 'ga-both' && e.details.verb === 'list');
    assert.ok(listed);
    assert.deepEqual([...(listed.details.visaIds as string[])].sort(), [weak, strict].sort());
  });

  test('ending the recorded visa while the weaker one still covers keeps the open exec, still recorded', async () => {
    const session = interactive([
      'exec',
      '-i',
      '-n',
      'ga-both',
      'app',
      '--',
      'sh',
      '-c',
      'while read line; do echo "echo:$line"; [ "$line" = end ] && exit 0; done',
    ]);
    try {
      session.type('before');
      await eventually('the first line comes back', 15_000, async () => session.stdout().includes('echo:before'));
      const revoked = await call('POST', `/api/v1/visas/${strict}/revoke`, admin, {
        reason: 'recording no longer needed',
      });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      session.type('after');
      await eventually('the session goes on', 15_000, async () => session.stdout().includes('echo:after'));
      assert.equal(session.ended(), false);
      session.type('end');
      assert.equal(await session.exited, 0, session.stderr());
    } finally {
      session.child.kill('SIGKILL');
    }
    let event: AuditEvent | undefined;
    await eventually('the session is in the trail', 10_000, async () => {
      event = (await trail('gateway.stream')).find((e) => JSON.stringify(e.details.query).includes('echo:'));
      return event !== undefined;
    });
    const recording = event!.details.recording as { file: string } | undefined;
    assert.ok(recording, 'still recorded');
    assert.match(readFileSync(recording.file, 'utf8'), /echo:after/, 'what came after the revoke is in the recording');
  });

  test('an unrecorded session is closed once a visa that requires recording covers its namespace', async () => {
    await grant('debugger-plain', ['ga-late']);
    const session = interactive(
      ['exec', '-i', '-n', 'ga-late', 'app', '--', 'sh', '-c', 'while read line; do echo "late:$line"; done'],
      { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' },
    );
    try {
      session.type('one');
      await eventually('the unrecorded session runs', 15_000, async () => session.stdout().includes('late:one'));
      await grant('debugger', ['ga-late']);
      await eventually('the unrecorded session is closed', 15_000, async () => session.ended());
    } finally {
      session.child.kill('SIGKILL');
    }
  });
});

describe('what the gateway tells a client', () => {
  test('an unreachable cluster is reported without its address, port or connection error; the trail keeps the detail', async () => {
    const visa = await grant('viewer', ['ga-gone'], '1h', GONE);
    const answer = await api(env.serverUrl, 'GET', `/clusters/${GONE}/api/v1/namespaces/ga-gone/pods`, {
      token: cora.token,
    });
    assert.equal(answer.status, 502);
    const text = JSON.stringify(answer.body);
    assert.match(String(answer.body.message), /could not reach the API server of cluster 'gone'.*try again/);
    for (const internal of ['127.0.0.1', String(gonePort), 'ECONNREFUSED', 'connect ', env.dir, 'kubeconfig'])
      assert.equal(text.includes(internal), false, `the answer does not contain ${internal}: ${text}`);
    const goneConfig = join(env.dir, 'cora-gone.kubeconfig');
    await writeFile(goneConfig, readFileSync(kubeconfig, 'utf8').replace(`/clusters/${CLUSTER}`, `/clusters/${GONE}`), {
      mode: 0o600,
    });
    const viaKubectl = await kubectl(env.cp.binaries.kubectl, ['get', 'pods', '-n', 'ga-gone'], {
      kubeconfig: goneConfig,
    });
    // kubectl reads its discovery answers raw, so it shows a 5xx from there as "unknown"; whatever it shows, it
    // must not be kubevisa's network either.
    assert.notEqual(viaKubectl.code, 0);
    assert.equal(viaKubectl.stderr.includes(String(gonePort)), false, viaKubectl.stderr);
    assert.equal(viaKubectl.stderr.includes('ECONNREFUSED'), false, viaKubectl.stderr);
    const events = await trail('gateway.request', { visaId: visa });
    assert.ok(events.length > 0, 'the failed requests are in the trail');
    assert.match(String(events[0]!.details.upstreamError), /ECONNREFUSED/, 'the detail is kept for operators');
  });
});

describe('a flood of anonymous requests', () => {
  test('100 000 anonymous requests grow the trail by a handful of events, every one counted, and a contractor is still served', async () => {
    await grant('viewer', ['ga-flood']);
    await gateway().flushAudit();
    const head = (await env.server!.store.getAuditHead())?.seq ?? 0;
    const flood = startFlood({
      port: env.serverPort,
      ca: readFileSync(join(env.dir, 'pki', 'ca.crt')),
      path: `/clusters/${CLUSTER}/api/v1/namespaces/ga-flood/pods`,
      requests: 100_000,
      connections: 4,
      from: '127.0.0.2',
    });
    const result = await flood.done;
    assert.equal(result.answered, 100_000);
    assert.equal((result.statuses[401] ?? 0) + (result.statuses[429] ?? 0), 100_000, JSON.stringify(result.statuses));
    assert.ok(
      (result.statuses[429] ?? 0) > 90_000,
      `most are refused before any work: ${JSON.stringify(result.statuses)}`,
    );
    await gateway().flushAudit();
    const grown = await env.server!.store.listAudit({ afterSeq: head, limit: 10_000 });
    const fromFlood = grown.filter((e) => e.source?.address === '127.0.0.2');
    assert.ok(
      fromFlood.length <= 5,
      `a handful of events for the flood: ${JSON.stringify(fromFlood.map((e) => [e.action, e.details.count]))}`,
    );
    assert.ok(grown.length <= 10, `the trail grew by ${grown.length}: ${JSON.stringify(grown.map((e) => e.action))}`);
    assert.equal(fromFlood.filter((e) => e.action === 'gateway.refused').length, 1, 'the first refusal in full');
    const summaries = fromFlood.filter((e) => e.action === 'gateway.refused.summary');
    assert.ok(summaries.length >= 1);
    assert.equal(
      summaries.reduce((sum, e) => sum + Number(e.details.count), 0),
      100_000 - 1,
      'every other refusal is counted in a summary',
    );
    const agents = summaries[0]!.details.userAgents as { userAgent: string; count: number }[];
    assert.ok(agents.length <= 5 && agents.every((a) => a.userAgent.startsWith('flood/')));
    const served = await gk(['get', 'pods', '-n', 'ga-flood']);
    assert.equal(served.code, 0, served.stderr);
  });
});

describe('a flood of anonymous requests from many addresses', () => {
  test('1500 addresses grow the trail by at most 20 events in full, 20 summaries and one overall summary a minute, which counts them all; a contractor from a new address is still served', async () => {
    await grant('viewer', ['ga-many']);
    // The contractor's token is one the gateway has verified: the ceiling on unauthenticated work never holds it back.
    const before = await gk(['get', 'pods', '-n', 'ga-many']);
    assert.equal(before.code, 0, before.stderr);
    await gateway().flushAudit();
    const head = (await env.server!.store.getAuditHead())?.seq ?? 0;
    const addresses = loopbackAddresses(1500);
    const result = await floodFromMany({
      port: env.serverPort,
      ca: readFileSync(join(env.dir, 'pki', 'ca.crt')),
      path: `/clusters/${CLUSTER}/api/v1/namespaces/ga-many/pods`,
      addresses,
    });
    assert.equal(result.answered, 1500);
    assert.equal((result.statuses[401] ?? 0) + (result.statuses[503] ?? 0), 1500, JSON.stringify(result.statuses));
    // More addresses than the gateway tracks have just been active: a new one still gets a budget of its own.
    const served = await rawFrom(
      '127.0.0.40',
      [
        `GET /clusters/${CLUSTER}/api/v1/namespaces/ga-many/pods HTTP/1.1`,
        'Host: localhost',
        `Authorization: Bearer ${cora.token}`,
        'Connection: close',
        '',
        '',
      ].join('\r\n'),
    );
    assert.deepEqual(served, ['HTTP/1.1 200'], 'the contractor from a new address is served');
    await gateway().flushAudit();
    const flooded = new Set(addresses);
    const grown = (await env.server!.store.listAudit({ afterSeq: head, limit: 10_000 })).filter(
      (e) => flooded.has(e.source?.address ?? '') || e.action === 'gateway.refused.overall',
    );
    const overall = grown.filter((e) => e.action === 'gateway.refused.overall');
    // One interval, or two if the minute's timer fired during the flood.
    assert.ok(overall.length >= 1 && overall.length <= 2, `${overall.length} overall summaries`);
    const inFull = grown.filter((e) => e.action === 'gateway.refused').length;
    assert.ok(inFull <= 20 * overall.length, `${inFull} written in full`);
    assert.ok(
      grown.length <= 41 * overall.length,
      `the trail grew by ${grown.length}: ${JSON.stringify(grown.map((e) => e.action))}`,
    );
    const sum = (field: string) => overall.reduce((n, e) => n + Number(e.details[field]), 0);
    assert.equal(sum('count'), 1500, 'the overall summary counts every request refused');
    assert.equal(sum('sources'), 1500, 'and every address');
    assert.equal(sum('writtenInFull'), inFull);
    const top = overall[0]!.details.topSources as { address: string; count: number }[];
    assert.ok(top.length > 0 && top.length <= 10 && top.every((t) => flooded.has(t.address)));
    const agents = overall[0]!.details.userAgents as { userAgent: string }[];
    assert.ok(
      agents.length <= 5 && agents.every((a) => a.userAgent.startsWith('many/') && a.userAgent.length <= 100),
      'a few user agents, truncated',
    );
  });
});

describe('every refusal and every stream reaches the audit trail', () => {
  before(async () => {
    // A recorded visa on ga-late, whatever the cases above left there.
    await grant('debugger', ['ga-late']);
  });

  test('a refusal of each class leaves a trace: full for authenticated ones, first-in-full or counted for the rest', async () => {
    const ns = (namespace: string) => `/clusters/${CLUSTER}/api/v1/namespaces/${namespace}`;
    const exec = `${ns('ga-late')}/pods/app/exec?command=true&stdout=true`;
    const token = `Authorization: Bearer ${cora.token}`;
    const plain = (path: string, headers: string[] = []) =>
      [
        `GET ${path} HTTP/1.1`,
        'Host: localhost',
        'User-Agent: refusal-classes',
        ...headers,
        'Connection: close',
        '',
        '',
      ].join('\r\n');
    const upgrade = (upgradeTo: string, headers: string[]) =>
      [
        `GET ${exec} HTTP/1.1`,
        'Host: localhost',
        'User-Agent: refusal-classes',
        'Connection: Upgrade',
        `Upgrade: ${upgradeTo}`,
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
        '',
        '',
      ].join('\r\n');
    const cases: { from: string; what: string; status: number; request: string }[] = [
      { from: '127.0.0.10', what: 'non-canonical path', status: 400, request: plain(`${ns('ga-late')}/%2e%2e/pods`) },
      { from: '127.0.0.11', what: 'unknown cluster', status: 404, request: plain('/clusters/nope/api/v1/pods') },
      { from: '127.0.0.12', what: 'no token', status: 401, request: plain(`${ns('ga-late')}/pods`) },
      {
        from: '127.0.0.13',
        what: 'namespace not covered',
        status: 403,
        request: plain(`${ns('ga-elsewhere')}/pods`, [token]),
      },
      {
        from: '127.0.0.14',
        what: 'body too large',
        status: 413,
        request: [
          `POST ${ns('ga-late')}/configmaps HTTP/1.1`,
          'Host: localhost',
          token,
          'Content-Type: application/json',
          'Content-Length: 9000000',
          'Connection: close',
          '',
          '',
        ].join('\r\n'),
      },
      {
        from: '127.0.0.16',
        what: 'SPDY for a recorded session',
        status: 400,
        request: upgrade('SPDY/3.1', [token, 'X-Stream-Protocol-Version: v4.channel.k8s.io']),
      },
      {
        from: '127.0.0.17',
        what: 'bearer token in a WebSocket subprotocol',
        status: 400,
        request: upgrade('websocket', [
          'Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.dG9rZW4, v5.channel.k8s.io',
        ]),
      },
      { from: '127.0.0.18', what: 'an upgrade to another protocol', status: 400, request: upgrade('h2c', [token]) },
    ];
    for (const c of cases) assert.deepEqual(await rawFrom(c.from, c.request), [`HTTP/1.1 ${c.status}`], c.what);
    // Past its refusal budget, an address is answered 429 before any work: counted, with its samples, in a summary.
    const flood = Array.from({ length: 24 }, () =>
      plain(`${ns('ga-late')}/pods`).replace('Connection: close', 'Connection: keep-alive'),
    );
    const answered: string[] = [];
    for (let round = 0; round < 15 && !answered.includes('HTTP/1.1 429'); round++)
      answered.push(...(await rawFrom('127.0.0.15', flood.join('') + plain(`${ns('ga-late')}/pods`))));
    assert.ok(answered.includes('HTTP/1.1 429'), 'the address is limited');
    await gateway().flushAudit();
    const refused = await env.server!.store.listAudit({ action: 'gateway.refused', limit: 10_000 });
    for (const c of cases) {
      const trace = refused.filter((e) => e.source?.address === c.from);
      assert.equal(trace.length, 1, `${c.what}: one event`);
      assert.equal(trace[0]!.details.status, c.status, c.what);
      if (c.status === 403 || c.status === 413 || c.what.startsWith('SPDY'))
        assert.equal(trace[0]!.personId, cora.personId, `${c.what}: the person is named`);
    }
    const summaries = await env.server!.store.listAudit({ action: 'gateway.refused.summary', limit: 10_000 });
    const limited = summaries.filter((e) => e.source?.address === '127.0.0.15');
    assert.ok(
      limited.some((e) => Number((e.details.statuses as Record<string, number>)['429']) > 0),
      `the 429s are counted: ${JSON.stringify(limited.map((e) => e.details.statuses))}`,
    );
  });

  test("an exec's start is in the trail while it runs, durably before its bytes flow; its end when it closes", async () => {
    const session = interactive([
      'exec',
      '-i',
      '-n',
      'ga-late',
      'app',
      '--',
      'sh',
      '-c',
      'while read line; do echo "open:$line"; [ "$line" = end ] && exit 0; done',
    ]);
    try {
      session.type('one');
      await eventually('the session runs', 15_000, async () => session.stdout().includes('open:one'));
      // No flush: a recorded session's start is written before the session is spliced.
      const started = (
        await env.server!.store.listAudit({ action: 'gateway.stream.started', personId: cora.personId, limit: 10_000 })
      ).find((e) => e.details.subresource === 'exec' && JSON.stringify(e.details.query).includes('open:'));
      assert.ok(started, 'the start is in the trail');
      assert.equal(started.namespace, 'ga-late');
      assert.ok(started.details.recording, 'it names the recording');
      assert.equal(session.ended(), false, 'while the exec is still open');
      const streamId = started.details.streamId;
      assert.equal((await trail('gateway.stream')).filter((e) => e.details.streamId === streamId).length, 0);
      session.type('end');
      assert.equal(await session.exited, 0, session.stderr());
      await eventually('the end is in the trail', 10_000, async () =>
        (await trail('gateway.stream')).some((e) => e.details.streamId === streamId),
      );
    } finally {
      session.child.kill('SIGKILL');
    }
  });

  test("a watch's start is in the trail while it runs", async () => {
    const watch = interactive(['get', 'pods', '-n', 'ga-late', '-w']);
    try {
      await eventually('the watch shows the pod', 15_000, async () => /app/.test(watch.stdout()));
      await eventually('the start of the watch is in the trail', 10_000, async () =>
        (await trail('gateway.stream.started')).some((e) => e.namespace === 'ga-late' && e.details.verb === 'watch'),
      );
      assert.equal(watch.ended(), false);
    } finally {
      watch.child.kill('SIGKILL');
    }
  });
});

describe('when access ends, an open stream says why', () => {
  /** `kubectl get configmaps -w` through the gateway, once it shows the namespace's first ConfigMap. */
  async function openWatch(namespace: string) {
    const watch = interactive(['get', 'configmaps', '-n', namespace, '-w']);
    await eventually(`the watch on ${namespace} shows its ConfigMap`, 15_000, async () =>
      watch.stdout().includes('kube-root-ca.crt'),
    );
    await eventually(`the watch on ${namespace} is open at the gateway`, 5000, async () =>
      gateway()
        .streams.all()
        .some((s) => s.namespace === namespace && s.kind === 'watch'),
    );
    return watch;
  }

  test('kubectl get -w, cut by a revoke, prints who revoked which visa and why', async () => {
    const visa = await grant('viewer', ['ga-watch']);
    const watch = await openWatch('ga-watch');
    try {
      const revoked = await call('POST', `/api/v1/visas/${visa}/revoke`, admin, { reason: 'contract paused' });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      await watch.exited;
      const output = watch.stdout() + watch.stderr();
      assert.match(output, new RegExp(`visa ${visa} was revoked by sam@corp\\.example: contract paused`), output);
      assert.match(output, /Forbidden/);
    } finally {
      watch.child.kill('SIGKILL');
    }
  });

  test('kubectl get -w, closed at expiry, prints which visa ended and when', async () => {
    const visa = await grant('viewer', ['ga-expire'], '8s');
    const watch = await openWatch('ga-expire');
    try {
      await watch.exited;
      const output = watch.stdout() + watch.stderr();
      assert.match(output, new RegExp(`visa ${visa} ended at \\d{4}-\\d{2}-\\d{2}T`), output);
      assert.match(output, /Expired/);
    } finally {
      watch.child.kill('SIGKILL');
    }
  });

  test('kubectl exec, cut by a revoke, prints which visa was revoked, by whom and why', async () => {
    const visa = await grant('debugger-plain', ['ga-cut']);
    const session = interactive([
      'exec',
      '-i',
      '-n',
      'ga-cut',
      'app',
      '--',
      'sh',
      '-c',
      'while read line; do echo "cut:$line"; done',
    ]);
    try {
      session.type('one');
      await eventually('the session runs', 15_000, async () => session.stdout().includes('cut:one'));
      const revoked = await call('POST', `/api/v1/visas/${visa}/revoke`, admin, { reason: 'engagement on hold' });
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      assert.notEqual(await session.exited, 0);
      assert.match(session.stderr(), new RegExp(`visa ${visa} was revoked by sam@corp\\.example: engagement on hold`));
    } finally {
      session.child.kill('SIGKILL');
    }
  });
});
