/**
 * Revocation across replicas at scale: three `kubevisa server` processes on one PostgreSQL and the real control plane,
 * V visas (default 1,000) held by two contractors over V/2 namespaces, S open watches (default 10,000) spread evenly
 * over the three replicas' gateways. One call on replica A ends the engagement, which revokes every visa at once;
 * A cuts its own streams, B and C hear of it through PostgreSQL NOTIFY (src/replicas/fanout.ts).
 *
 * First, single revokes (default 30 trials): one visa, a watch held through each of B and C, revoked on A; the time
 * from the call until each watch is cut (the issue's goal: 100 ms p99).
 *
 * Then the mass revoke, measured from the moment the call is sent: when each stream ended (p50/p99/max, per replica), when the last stream
 * ended, and when the last visa RoleBinding was gone (a watch of RoleBindings with the admin credential: DELETED
 * events). Also the approval throughput with concurrent clients while setting up, and each replica's CPU and memory
 * with every stream open. A stream still open 60 s after the call, or a binding left after 120 s, fails the run.
 *
 * Run: node bench/replica-revocation.ts [--visas 1000] [--streams 10000] [--clients 16] [--trials 30] [--json FILE]
 * Needs a file-descriptor limit above 2 × streams (`ulimit -n 65536`): each replica holds a client and an upstream
 * connection per stream.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { VISA_ROLE_BINDING_SELECTOR } from '../src/cluster/objects.ts';
import { api, CLUSTER, inDays, loginAs, people, type KubevisaEnv } from '../test/support/kubevisa-env.ts';
import {
  createNamespaces,
  log,
  openWatch,
  pool,
  positiveOption,
  round,
  startReplicaSet,
  summary,
  usage,
  type ReplicaSet,
  type Stream,
} from './support/replica-set.ts';

const { values } = parseArgs({
  options: {
    visas: { type: 'string', default: '1000' },
    streams: { type: 'string', default: '10000' },
    clients: { type: 'string', default: '16' },
    trials: { type: 'string', default: '30' },
    json: { type: 'string' },
  },
});
const VISAS = positiveOption(values, 'visas');
const STREAMS = positiveOption(values, 'streams');
const CLIENTS = positiveOption(values, 'clients');
const TRIALS = positiveOption(values, 'trials');
/** The namespace of the single-revoke trials: no visa of the mass revoke names it, so none keeps a trial's stream. */
const TRIAL_NAMESPACE = 'rv-single';
if (VISAS % 2 !== 0) throw new Error(`--visas must be even (two contractors share the namespaces), got ${VISAS}`);
const NAMESPACES = VISAS / 2;

/** A watch of visa RoleBindings with the admin credential, from `resourceVersion`: when each was DELETED. */
function watchBindingDeletions(env: KubevisaEnv, resourceVersion: string) {
  const deletedAt: number[] = [];
  const selector = encodeURIComponent(VISA_ROLE_BINDING_SELECTOR);
  const request = httpsRequest(
    `${env.cp.apiServerUrl}/apis/rbac.authorization.k8s.io/v1/rolebindings?watch=1&labelSelector=${selector}&resourceVersion=${resourceVersion}&allowWatchBookmarks=false&timeoutSeconds=600`,
    {
      ca: readFileSync(env.cp.caCertFile),
      cert: readFileSync(env.cp.adminCert.certFile),
      key: readFileSync(env.cp.adminCert.keyFile),
      agent: new Agent({ keepAlive: false }),
    },
    (response) => {
      let buffered = '';
      response.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim() === '') continue;
          if ((JSON.parse(line) as { type: string }).type === 'DELETED') deletedAt.push(performance.now());
        }
      });
    },
  );
  request.end();
  return { deletedAt, stop: () => request.destroy() };
}

async function main() {
  const started = performance.now();
  const set: ReplicaSet = await startReplicaSet();
  const { env, replicas, ca } = set;
  const streams: Stream[] = [];
  let bindingWatch: ReturnType<typeof watchBindingDeletions> | undefined;
  const failures: string[] = [];
  try {
    const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `rv-${String(i).padStart(4, '0')}`);
    log(`creating ${NAMESPACES + 1} namespaces`);
    await createNamespaces(env, [...namespaces, TRIAL_NAMESPACE]);
    const sam = (await loginAs(replicas[0]!.url, people.sam)).token;
    const ann = (await loginAs(replicas[1]!.url, people.ann)).token;
    const engagement = await api(replicas[2]!.url, 'POST', '/api/v1/engagements', {
      token: sam,
      body: {
        name: 'revocation-bench',
        vendor: 'Acme',
        contractors: [people.cora.email, people.carl.email],
        sponsor: people.sam.email,
        endsAt: inDays(5),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['rv-*'], profiles: ['viewer'] },
        maxVisaDuration: '8h',
      },
    });
    if (engagement.status !== 201) throw new Error(`the engagement was refused: ${JSON.stringify(engagement.body)}`);

    // Single revokes first: one visa, a watch through each of B and C, revoked on A; the time until each is cut.
    const cora = (await loginAs(replicas[0]!.url, people.cora)).token;
    const trialCuts: { B: number[]; C: number[] } = { B: [], C: [] };
    log(`${TRIALS} single revokes on A, each cutting a watch on B and one on C`);
    for (let trial = 0; trial < TRIALS; trial++) {
      const requested = await api(replicas[1]!.url, 'POST', '/api/v1/visas', {
        token: cora,
        body: { profile: 'viewer', cluster: CLUSTER, namespaces: [TRIAL_NAMESPACE], duration: '1h', reason: 'RV-0' },
      });
      const id = String(requested.body.id);
      const approved = await api(replicas[2]!.url, 'POST', `/api/v1/visas/${id}/approve`, { token: ann, body: {} });
      if (approved.status !== 200) throw new Error(`approval refused: ${JSON.stringify(approved.body)}`);
      for (
        let waited = 0;
        (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', TRIAL_NAMESPACE])).code !== 0;
        waited++
      ) {
        if (waited > 100) throw new Error(`the RoleBinding of visa ${id} did not appear`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const held = [replicas[1]!, replicas[2]!].map((replica) =>
        openWatch(replica, `/clusters/${CLUSTER}/api/v1/namespaces/${TRIAL_NAMESPACE}/pods?watch=1`, cora, ca),
      );
      if (!(await Promise.all(held.map((stream) => stream.opened))).every(Boolean)) {
        held.forEach((stream) => stream.destroy());
        throw new Error(`trial ${trial}: a watch was refused before the revoke`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      const sentAt = performance.now();
      const revoked = await api(replicas[0]!.url, 'POST', `/api/v1/visas/${id}/revoke`, {
        token: sam,
        body: { reason: 'trial' },
      });
      if (revoked.status !== 200) throw new Error(`revoke refused: ${JSON.stringify(revoked.body)}`);
      const cuts = await Promise.all(
        held.map((stream) =>
          Promise.race([stream.closed, new Promise<number>((r) => setTimeout(() => r(NaN), 30_000))]),
        ),
      );
      held.forEach((stream) => stream.destroy());
      if (cuts.some(Number.isNaN)) failures.push(`trial ${trial}: a stream outlived its revoke by 30 s`);
      trialCuts.B.push(cuts[0]! - sentAt);
      trialCuts.C.push(cuts[1]! - sentAt);
    }

    // Visas: requested and approved by CLIENTS concurrent clients, spread over the replicas.
    const contractors = [people.cora, people.carl];
    let tokens = await Promise.all(contractors.map(async (person) => (await loginAs(replicas[0]!.url, person)).token));
    const wanted = namespaces.flatMap((namespace) => contractors.map((_, who) => ({ namespace, who })));
    const approvalLatencies: number[] = [];
    log(`requesting and approving ${VISAS} visas with ${CLIENTS} concurrent clients`);
    const grantStarted = performance.now();
    await pool(wanted, CLIENTS, async ({ namespace, who }, index) => {
      const via = replicas[index % replicas.length]!;
      const requested = await api(via.url, 'POST', '/api/v1/visas', {
        token: tokens[who]!,
        body: { profile: 'viewer', cluster: CLUSTER, namespaces: [namespace], duration: '4h', reason: 'RV-1' },
      });
      if (requested.status !== 201) throw new Error(`visa request refused: ${JSON.stringify(requested.body)}`);
      const approveStarted = performance.now();
      const approved = await api(via.url, 'POST', `/api/v1/visas/${String(requested.body.id)}/approve`, {
        token: ann,
        body: {},
      });
      if (approved.status !== 200) throw new Error(`approval refused: ${JSON.stringify(approved.body)}`);
      approvalLatencies.push(performance.now() - approveStarted);
      if ((index + 1) % 200 === 0) log(`  ${index + 1}/${VISAS} visas approved`);
    });
    const grantSeconds = (performance.now() - grantStarted) / 1000;
    log(`waiting for ${VISAS} RoleBindings`);
    let resourceVersion = '';
    for (let waited = 0; ; waited++) {
      const list = JSON.parse(
        await env.kOk(['get', 'rolebindings', '-A', '-l', VISA_ROLE_BINDING_SELECTOR, '-o', 'json']),
      ) as { items: unknown[]; metadata: { resourceVersion: string } };
      if (list.items.length === VISAS) {
        resourceVersion = list.metadata.resourceVersion;
        break;
      }
      if (waited > 300) throw new Error(`only ${list.items.length} of ${VISAS} RoleBindings after 5 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const bindingsSeconds = (performance.now() - grantStarted) / 1000;

    // Fresh tokens: the streams must outlive the setup, and a token's own end must not be what cuts them.
    tokens = await Promise.all(contractors.map(async (person) => (await loginAs(replicas[0]!.url, person)).token));
    log(`opening ${STREAMS} watches over the three gateways`);
    const openStarted = performance.now();
    const indexes = Array.from({ length: STREAMS }, (_, i) => i);
    let refused = 0;
    await pool(indexes, 200, async (i) => {
      const replica = replicas[i % replicas.length]!;
      const namespace = namespaces[Math.floor(i / replicas.length) % NAMESPACES]!;
      const who = Math.floor(i / (replicas.length * NAMESPACES)) % contractors.length;
      const stream = openWatch(
        replica,
        `/clusters/${CLUSTER}/api/v1/namespaces/${namespace}/pods?watch=1`,
        tokens[who]!,
        ca,
      );
      streams.push(stream);
      if (!(await stream.opened)) refused++;
      if ((i + 1) % 2000 === 0) log(`  ${i + 1}/${STREAMS} watches open`);
    });
    const openSeconds = (performance.now() - openStarted) / 1000;
    if (refused > 0) failures.push(`${refused} of ${STREAMS} watches were not opened (not 200)`);
    // Streams that ended before the revoke (they must not count as cut by it).
    const endedEarly = new Set<Stream>();
    for (const stream of streams) void stream.closed.then(() => endedEarly.add(stream));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const earlyCount = endedEarly.size;
    if (earlyCount > 0) failures.push(`${earlyCount} watches ended before the revoke`);
    const withStreamsOpen = replicas.map((replica) => ({ replica: replica.name, ...usage(replica.child.pid!) }));
    bindingWatch = watchBindingDeletions(env, resourceVersion);
    await new Promise((resolve) => setTimeout(resolve, 500));

    // Taken before the call: replica A cuts its own streams before it answers.
    const live = streams.filter((stream) => !endedEarly.has(stream));
    log(`ending the engagement on replica A: every visa is revoked at once`);
    const revokeSentAt = performance.now();
    const ended = await api(replicas[0]!.url, 'POST', `/api/v1/engagements/${String(engagement.body.id)}/end`, {
      token: sam,
      body: { reason: 'revocation bench' },
    });
    const answeredMs = performance.now() - revokeSentAt;
    if (ended.status !== 200) throw new Error(`ending the engagement failed: ${JSON.stringify(ended.body)}`);
    const cutAt = await Promise.all(
      live.map((stream) =>
        Promise.race([stream.closed, new Promise<number>((resolve) => setTimeout(() => resolve(NaN), 60_000))]),
      ),
    );
    const survivors = cutAt.filter((at) => Number.isNaN(at)).length;
    if (survivors > 0) failures.push(`${survivors} streams were still open 60 s after the revoke`);
    const bindingDeadline = performance.now() + 120_000;
    while (bindingWatch.deletedAt.length < VISAS && performance.now() < bindingDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const bindingsLeft = VISAS - bindingWatch.deletedAt.length;
    if (bindingsLeft > 0) failures.push(`${bindingsLeft} RoleBindings were left 120 s after the revoke`);

    const cutMs = cutAt.map((at) => at - revokeSentAt).filter((ms) => !Number.isNaN(ms));
    const perReplica = Object.fromEntries(
      replicas.map((replica) => [
        replica.name,
        summary(
          live
            .map((stream, i) => ({ stream, ms: cutAt[i]! - revokeSentAt }))
            .filter(({ stream, ms }) => stream.replica === replica.name && !Number.isNaN(ms))
            .map(({ ms }) => ms),
        ),
      ]),
    );
    const bindingMs = bindingWatch.deletedAt.map((at) => at - revokeSentAt);
    const results = {
      machine: '2 cores, 24 GiB; the control plane, PostgreSQL, three replicas and this load generator share it',
      visas: VISAS,
      namespaces: NAMESPACES,
      streams: STREAMS,
      setup: {
        approvalClients: CLIENTS,
        visasPerSecond: round(VISAS / grantSeconds),
        approvalLatencyMs: summary(approvalLatencies),
        allBindingsAfterSeconds: round(bindingsSeconds),
        openStreamsSeconds: round(openSeconds),
      },
      withStreamsOpen,
      singleRevoke: {
        trials: TRIALS,
        cutOnBMs: summary(trialCuts.B.filter((ms) => !Number.isNaN(ms))),
        cutOnCMs: summary(trialCuts.C.filter((ms) => !Number.isNaN(ms))),
        cutOnOtherReplicasMs: summary([...trialCuts.B, ...trialCuts.C].filter((ms) => !Number.isNaN(ms))),
      },
      revoke: {
        engagementEndAnsweredMs: round(answeredMs),
        streamCutMs: summary(cutMs),
        streamCutMsByReplica: perReplica,
        lastStreamCutMs: round(Math.max(...cutMs)),
        lastRoleBindingGoneMs: round(Math.max(...bindingMs)),
        roleBindingGoneMs: summary(bindingMs),
      },
      failures,
      totalSeconds: round((performance.now() - started) / 1000),
    };
    console.log(JSON.stringify(results, null, 2));
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2));
    console.log(
      `\none revoke on A: a watch on B or C cut after p50 ${results.singleRevoke.cutOnOtherReplicasMs.p50} ms, ` +
        `p99 ${results.singleRevoke.cutOnOtherReplicasMs.p99} ms (${TRIALS} trials)`,
    );
    console.log(
      `revoke ${VISAS} visas with ${STREAMS} streams open over 3 replicas: last stream cut ${results.revoke.lastStreamCutMs} ms ` +
        `after the call (p50 ${results.revoke.streamCutMs.p50}, p99 ${results.revoke.streamCutMs.p99}); ` +
        `last RoleBinding gone ${results.revoke.lastRoleBindingGoneMs} ms`,
    );
    if (failures.length > 0) {
      console.error(`FAILED: ${failures.join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    bindingWatch?.stop();
    for (const stream of streams) stream.destroy();
    await set.stop();
  }
}

await main();
