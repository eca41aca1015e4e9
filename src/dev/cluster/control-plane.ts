/**
 * A real, local Kubernetes control plane for tests, the demo and `kubevisa dev cluster`: etcd,
 * kube-apiserver (RBAC, ServiceAccount tokens, audit log), kube-controller-manager, kube-scheduler and a
 * kwok node that answers exec, logs, attach and port-forward — all on free loopback ports in a temporary
 * folder, the way controller-runtime's envtest runs them, plus the pieces envtest leaves out.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { stringify } from 'yaml';
import { LocalCa } from '../ca.ts';
import { kubernetesBinaries, type KubernetesBinaries } from './binaries.ts';
import { criLogLine, kwokConfigYaml } from './kwok-config.ts';
import { logTail, startProcess, startReaper, type ManagedProcess } from './processes.ts';

export interface ControlPlaneOptions {
  /** Binaries to run; default: built or reused by scripts/k8s-binaries.sh. */
  binaries?: KubernetesBinaries;
  /** Progress messages for people (default: none). */
  onProgress?: (message: string) => void;
  /** Give up waiting for readiness after this many milliseconds (default 60000). */
  readyTimeoutMs?: number;
  /**
   * Also send kube-apiserver's audit events to this webhook (its audit webhook backend, in batch mode with small
   * batches so events arrive within about a second), beside the audit log file. The URL is fixed before
   * kube-apiserver starts, so the receiver's address must be chosen up front (it need not answer yet: the
   * backend retries a batch a few times, then drops it).
   */
  auditWebhook?: AuditWebhookTarget;
}

export interface AuditWebhookTarget {
  /** Where kube-apiserver POSTs each `EventList`, e.g. `http://127.0.0.1:20123/api/v1/monitoring/audit-events/test`. */
  url: string;
  /** Sent as `Authorization: Bearer <token>`. */
  bearerToken: string;
  /** The CA that signed the receiver's certificate (https URLs). */
  caFile?: string;
}

export interface ControlPlane {
  /** The temporary folder holding certificates, logs, etcd data; removed by stop(). */
  readonly workDir: string;
  readonly binaries: KubernetesBinaries;
  /** `https://127.0.0.1:<port>` */
  readonly apiServerUrl: string;
  /** Kubeconfig with a cluster-admin client certificate (group system:masters). */
  readonly adminKubeconfig: string;
  readonly caCertFile: string;
  readonly adminCert: { certFile: string; keyFile: string };
  /** kube-apiserver's audit log (JSON lines, level Metadata). */
  readonly auditLogFile: string;
  /** The ServiceAccount token issuer kube-apiserver uses. */
  readonly serviceAccountIssuer: string;
  /** Name of the kwok node that runs every pod. */
  readonly nodeName: string;
  /** The local TCP port every pod port forwards to (answers `hello from <pod-port-forward>\n`). */
  readonly portForwardTargetPort: number;
  /** Writes a kubeconfig for this cluster that authenticates with `token` (and no client certificate). */
  writeTokenKubeconfig(token: string, name?: string): Promise<string>;
  /** Appends a line to the log every pod on the kwok node shows (`kubectl logs`, `attach`). */
  appendPodLog(line: string): Promise<void>;
  /** Ends every process (SIGTERM, then SIGKILL after 5 s) and removes the folder. Safe to call twice. */
  stop(): Promise<void>;
  /** Process ids of everything started, for checks that nothing outlives stop(). */
  readonly pids: number[];
  /** The process id of one component (`etcd`, `kube-apiserver`, `kwok`, …), e.g. to freeze it in a test. */
  pidOf(name: string): number | undefined;
  /**
   * Stops kube-apiserver alone (SIGTERM; etcd and the rest keep running): the cluster is unreachable until
   * startApiServer(). Connections to its port are refused meanwhile.
   */
  stopApiServer(): Promise<void>;
  /** Starts kube-apiserver again on the same port with the same flags and waits until it is ready. */
  startApiServer(): Promise<void>;
  /**
   * Starts one more kube-apiserver on this control plane's etcd, under a key prefix of its own: a separate cluster
   * (its own objects, RBAC and ServiceAccount signing key) for the price of one process. It has no controllers,
   * scheduler or node: enough for RBAC, ServiceAccounts and TokenRequest, which is what kubevisa writes. stop() of
   * the control plane ends it too.
   */
  addApiServer(name: string): Promise<ExtraApiServer>;
}

/** A kube-apiserver sharing a control plane's etcd (see `ControlPlane.addApiServer`). */
export interface ExtraApiServer {
  readonly name: string;
  /** `https://127.0.0.1:<port>` */
  readonly apiServerUrl: string;
  /** Kubeconfig with a cluster-admin client certificate (group system:masters). */
  readonly adminKubeconfig: string;
  /** Stops this kube-apiserver alone: connections to its port are refused until start(). */
  stop(): Promise<void>;
  /** Starts it again on the same port and waits until it is ready. */
  start(): Promise<void>;
}

const nodeName = 'kwok-node-0';

/**
 * Ports are picked free and released before the components bind them, so another process on the machine (a
 * parallel test file starting its own control plane) can take one in between. Such a start is retried from
 * scratch with new ports, a few times, instead of failing the caller. So is a start during which kwok died: kwok
 * v0.8.0 now and then crashes while it builds its first CEL environments (easycel v0.6.0 caches types in a global
 * map without a lock, and two of kwok's controllers can fill it at once), before the node is ever Ready.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binaries = options.binaries ?? (await kubernetesBinaries({ onProgress: options.onProgress ?? (() => {}) }));
  for (let attempt = 1; ; attempt++) {
    try {
      return await startControlPlaneOnce({ ...options, binaries });
    } catch (error) {
      const message = (error as Error).message;
      const portTaken = /address already in use/i.test(message);
      const kwokCrashed = /^kwok exited while waiting for /.test(message);
      if (!(portTaken || kwokCrashed) || attempt >= 3) throw error;
      options.onProgress?.(
        portTaken
          ? `a port was taken by another process while starting; retrying with new ports (${attempt}/2)`
          : `kwok crashed while starting (a known kwok v0.8.0 race); starting again (${attempt}/2)`,
      );
    }
  }
}

async function startControlPlaneOnce(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const started = Date.now();
  const progress = options.onProgress ?? (() => {});
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const binaries = options.binaries ?? (await kubernetesBinaries({ onProgress: progress }));
  const workDir = await mkdtemp(join(tmpdir(), 'kubevisa-cp-'));
  const pidFile = join(workDir, 'pids');
  await writeFile(pidFile, '');
  const reaper = startReaper(process.pid, pidFile, workDir);
  const processes: ManagedProcess[] = [];
  let portForwardServer: Server | undefined;
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    // Dependents first, etcd last, so nothing logs a storm of connection errors on the way down.
    for (const p of [...processes].reverse()) await p.stop();
    portForwardServer?.close();
    stopReaper(reaper);
    await rm(workDir, { recursive: true, force: true });
  };
  // If the owner exits without awaiting stop(), kill synchronously; the reaper covers SIGKILL of the owner.
  const killOnExit = () => {
    for (const p of processes) {
      if (!p.hasExited()) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        }
      }
    }
  };
  process.on('exit', killOnExit);

  try {
    const [etcdPort, etcdPeerPort, apiPort, kwokPort, kcmPort, schedulerPort] = await freePorts(6);
    const pki = join(workDir, 'pki');
    await mkdir(pki);
    progress('generating certificates');
    const ca = await LocalCa.create(pki, 'kubevisa-dev-cluster-ca');
    const serving = await ca.issue({
      name: 'apiserver',
      commonName: 'kube-apiserver',
      ipAddresses: ['127.0.0.1', '10.0.0.1'],
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      usage: 'server',
    });
    const admin = await ca.issue({
      name: 'admin',
      commonName: 'kubevisa-dev-admin',
      organizations: ['system:masters'],
      usage: 'client',
    });
    const kwokServing = await ca.issue({
      name: 'kwok',
      commonName: nodeName,
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saKey = join(pki, 'sa.key');
    const saPub = join(pki, 'sa.pub');
    await writeFile(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(saPub, publicKey.export({ type: 'spki', format: 'pem' }));

    const apiServerUrl = `https://127.0.0.1:${apiPort}`;
    const adminKubeconfig = join(workDir, 'admin.kubeconfig');
    await writeFile(
      adminKubeconfig,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'kubevisa-dev', cluster: { server: apiServerUrl, 'certificate-authority': ca.certFile } }],
        users: [{ name: 'admin', user: { 'client-certificate': admin.certFile, 'client-key': admin.keyFile } }],
        contexts: [{ name: 'kubevisa-dev', context: { cluster: 'kubevisa-dev', user: 'admin', namespace: 'default' } }],
        'current-context': 'kubevisa-dev',
      }),
      { mode: 0o600 },
    );
    const auditPolicy = join(workDir, 'audit-policy.yaml');
    await writeFile(
      auditPolicy,
      stringify({
        apiVersion: 'audit.k8s.io/v1',
        kind: 'Policy',
        omitStages: ['RequestReceived'],
        rules: [{ level: 'Metadata' }],
      }),
    );
    const auditLogFile = join(workDir, 'audit.log');
    const serviceAccountIssuer = 'https://kubernetes.default.svc.cluster.local';

    progress('starting etcd');
    const etcd = startProcess({
      name: 'etcd',
      command: binaries.etcd,
      pidFile,
      workDir,
      args: [
        `--data-dir=${join(workDir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        // A throwaway test store: durability of etcd itself is not what these tests prove.
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
    });
    processes.push(etcd);

    let auditWebhookArgs: string[] = [];
    if (options.auditWebhook) {
      if (!options.auditWebhook.url.startsWith('https://')) {
        throw new Error(
          `auditWebhook.url must be https (got ${options.auditWebhook.url}): kube-apiserver's webhook client sends ` +
            'its bearer token only over TLS, so every batch would be refused; start the receiver with TLS',
        );
      }
      const webhookKubeconfig = join(workDir, 'audit-webhook.kubeconfig');
      await writeFile(webhookKubeconfig, auditWebhookKubeconfig(options.auditWebhook), { mode: 0o600 });
      auditWebhookArgs = [
        `--audit-webhook-config-file=${webhookKubeconfig}`,
        '--audit-webhook-mode=batch',
        // Small, quick batches: a test waits for events in about a second, not the default 30 s / 400 events.
        '--audit-webhook-batch-max-wait=500ms',
        '--audit-webhook-batch-max-size=100',
        '--audit-webhook-initial-backoff=200ms',
      ];
    }
    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      // The endpoint reconciler refuses loopback addresses; nothing here needs the kubernetes Service endpoints.
      '--endpoint-reconciler-type=none',
      `--cert-dir=${join(workDir, 'apiserver-certs')}`,
      `--tls-cert-file=${serving.certFile}`,
      `--tls-private-key-file=${serving.keyFile}`,
      `--client-ca-file=${ca.certFile}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=${serviceAccountIssuer}`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      // Tokens must end when they say they end; extension would hide expiry bugs.
      '--service-account-extend-token-expiration=false',
      '--service-cluster-ip-range=10.0.0.0/24',
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLogFile}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      ...auditWebhookArgs,
      '--kubelet-preferred-address-types=InternalIP',
      `--kubelet-client-certificate=${admin.certFile}`,
      `--kubelet-client-key=${admin.keyFile}`,
      '--allow-privileged=true',
      '--v=1',
    ];
    const launchApiServer = () =>
      startProcess({ name: 'kube-apiserver', command: binaries.kubeApiserver, pidFile, workDir, args: apiserverArgs });
    const apiServerReady = () =>
      waitFor('kube-apiserver /readyz', readyTimeoutMs, [etcd, currentApiServer()], async () => {
        const { status } = await adminGet(apiServerUrl, '/readyz', ca.certFile, admin);
        return status === 200;
      });
    const currentApiServer = () => processes.find((p) => p.name === 'kube-apiserver')!;

    progress('starting kube-apiserver');
    processes.push(launchApiServer());
    await apiServerReady();
    progress(`kube-apiserver ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const kubeconfigArgs = [`--kubeconfig=${adminKubeconfig}`];
    processes.push(
      startProcess({
        name: 'kube-controller-manager',
        command: binaries.kubeControllerManager,
        pidFile,
        workDir,
        args: [
          ...kubeconfigArgs,
          '--leader-elect=false',
          `--secure-port=${kcmPort}`,
          '--bind-address=127.0.0.1',
          `--cert-dir=${join(workDir, 'kcm-certs')}`,
          [
            '--controllers=namespace-controller',
            'garbage-collector-controller',
            'serviceaccount-controller',
            'serviceaccount-token-controller',
            'root-ca-certificate-publisher-controller',
            'clusterrole-aggregation-controller',
            'deployment-controller',
            'replicaset-controller',
            'node-lifecycle-controller',
          ].join(','),
          `--service-account-private-key-file=${saKey}`,
          `--root-ca-file=${ca.certFile}`,
          '--use-service-account-credentials=false',
          '--v=1',
        ],
      }),
    );
    processes.push(
      startProcess({
        name: 'kube-scheduler',
        command: binaries.kubeScheduler,
        pidFile,
        workDir,
        args: [
          ...kubeconfigArgs,
          '--leader-elect=false',
          `--secure-port=${schedulerPort}`,
          '--bind-address=127.0.0.1',
          `--cert-dir=${join(workDir, 'scheduler-certs')}`,
          '--v=1',
        ],
      }),
    );

    portForwardServer = await startPortForwardTarget();
    const portForwardTargetPort = (portForwardServer.address() as { port: number }).port;
    const podLogFile = join(workDir, 'pod.log');
    await writeFile(podLogFile, criLogLine('kwok pod started'));
    const execWorkDir = join(workDir, 'exec');
    await mkdir(execWorkDir);
    const kwokConfig = join(workDir, 'kwok.yaml');
    await writeFile(
      kwokConfig,
      kwokConfigYaml({
        execWorkDir,
        podLogFile,
        portForwardTarget: { address: '127.0.0.1', port: portForwardTargetPort },
      }),
    );
    processes.push(
      startProcess({
        name: 'kwok',
        command: binaries.kwok,
        pidFile,
        workDir,
        args: [
          ...kubeconfigArgs,
          `--config=${kwokConfig}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          '--node-ip=127.0.0.1',
          `--node-port=${kwokPort}`,
          `--server-address=127.0.0.1:${kwokPort}`,
          `--tls-cert-file=${kwokServing.certFile}`,
          `--tls-private-key-file=${kwokServing.keyFile}`,
          '--cidr=10.244.0.0/16',
        ],
      }),
    );

    progress('registering the kwok node');
    await waitFor('namespace default', readyTimeoutMs, processes, async () => {
      const { status } = await adminGet(apiServerUrl, '/api/v1/namespaces/default', ca.certFile, admin);
      return status === 200;
    });
    await adminRequest(apiServerUrl, 'POST', '/api/v1/nodes', ca.certFile, admin, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: nodeName,
        annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
        labels: { 'kubernetes.io/hostname': nodeName, 'kubernetes.io/os': 'linux', type: 'kwok' },
      },
    });
    await waitFor('a Ready node', readyTimeoutMs, processes, async () => {
      const { status, body } = await adminGet(apiServerUrl, `/api/v1/nodes/${nodeName}`, ca.certFile, admin);
      if (status !== 200) return false;
      const node = JSON.parse(body) as {
        spec?: { taints?: { key: string }[] };
        status?: { conditions?: { type: string; status: string }[] };
      };
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      // The node-lifecycle controller removes its not-ready taint a moment after Ready; until then nothing schedules.
      const tainted = node.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/')) ?? false;
      return ready && !tainted;
    });
    progress(`control plane ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);

    return {
      workDir,
      binaries,
      apiServerUrl,
      adminKubeconfig,
      caCertFile: ca.certFile,
      adminCert: admin,
      auditLogFile,
      serviceAccountIssuer,
      nodeName,
      portForwardTargetPort,
      appendPodLog: (line) => appendFile(podLogFile, criLogLine(line)),
      async writeTokenKubeconfig(token, name = `token-${randomUUID()}`) {
        const file = join(workDir, `${name}.kubeconfig`);
        await writeFile(file, tokenKubeconfig(apiServerUrl, ca.certFile, token), { mode: 0o600 });
        return file;
      },
      stop,
      get pids() {
        return processes.map((p) => p.pid);
      },
      pidOf: (name) => processes.find((p) => p.name === name)?.pid,
      async stopApiServer() {
        await currentApiServer().stop();
      },
      async startApiServer() {
        if (stopped) throw new Error('the control plane was stopped');
        if (!currentApiServer().hasExited()) return;
        // Same place in the list, so stop() still ends it before etcd.
        processes[processes.indexOf(currentApiServer())] = launchApiServer();
        await apiServerReady();
      },
      async addApiServer(name) {
        if (stopped) throw new Error('the control plane was stopped');
        if (!/^[a-z0-9-]{1,40}$/.test(name)) throw new Error(`extra API server name '${name}' must be a DNS label`);
        const dir = join(workDir, `apiserver-${name}`);
        await mkdir(dir);
        const [port] = await freePorts(1);
        const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
        const key = join(dir, 'sa.key');
        const pub = join(dir, 'sa.pub');
        await writeFile(key, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
        await writeFile(pub, keys.publicKey.export({ type: 'spki', format: 'pem' }));
        const url = `https://127.0.0.1:${port}`;
        const kubeconfig = join(dir, 'admin.kubeconfig');
        await writeFile(
          kubeconfig,
          stringify({
            apiVersion: 'v1',
            kind: 'Config',
            clusters: [{ name, cluster: { server: url, 'certificate-authority': ca.certFile } }],
            users: [{ name: 'admin', user: { 'client-certificate': admin.certFile, 'client-key': admin.keyFile } }],
            contexts: [{ name, context: { cluster: name, user: 'admin', namespace: 'default' } }],
            'current-context': name,
          }),
          { mode: 0o600 },
        );
        const replaced: Record<string, string> = {
          '--secure-port': String(port),
          '--cert-dir': join(dir, 'certs'),
          '--service-account-key-file': pub,
          '--service-account-signing-key-file': key,
          '--audit-log-path': join(dir, 'audit.log'),
        };
        const args = [
          ...apiserverArgs
            .filter((arg) => !arg.startsWith('--audit-webhook-'))
            .map((arg) => {
              const flag = arg.split('=')[0]!;
              return flag in replaced ? `${flag}=${replaced[flag]}` : arg;
            }),
          // Its own key space in the shared etcd: a cluster of its own.
          `--etcd-prefix=/registry-${name}`,
        ];
        const processName = `kube-apiserver-${name}`;
        const launch = () =>
          startProcess({ name: processName, command: binaries.kubeApiserver, pidFile, workDir, args });
        const current = () => processes.find((p) => p.name === processName)!;
        const ready = () =>
          waitFor(`${processName} /readyz`, readyTimeoutMs, [etcd, current()], async () => {
            const { status } = await adminGet(url, '/readyz', ca.certFile, admin);
            return status === 200;
          });
        // Before etcd in the list, so stop() ends it first.
        processes.splice(processes.indexOf(etcd) + 1, 0, launch());
        await ready();
        return {
          name,
          apiServerUrl: url,
          adminKubeconfig: kubeconfig,
          stop: () => current().stop(),
          async start() {
            if (stopped) throw new Error('the control plane was stopped');
            if (!current().hasExited()) return;
            processes[processes.indexOf(current())] = launch();
            await ready();
          },
        };
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The kubeconfig kube-apiserver's audit webhook backend reads: the receiver as its cluster, a bearer token. */
function auditWebhookKubeconfig(target: AuditWebhookTarget): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'audit-receiver',
        cluster: { server: target.url, ...(target.caFile ? { 'certificate-authority': target.caFile } : {}) },
      },
    ],
    users: [{ name: 'kube-apiserver', user: { token: target.bearerToken } }],
    contexts: [{ name: 'audit', context: { cluster: 'audit-receiver', user: 'kube-apiserver' } }],
    'current-context': 'audit',
  });
}

function tokenKubeconfig(server: string, caFile: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kubevisa-dev', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: 'token', user: { token } }],
    contexts: [{ name: 'kubevisa-dev', context: { cluster: 'kubevisa-dev', user: 'token', namespace: 'default' } }],
    'current-context': 'kubevisa-dev',
  });
}

function stopReaper(reaper: ChildProcess): void {
  try {
    reaper.kill('SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Distinct free loopback ports (bound, read, released: a tiny race that loopback tests accept). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(server);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

async function startPortForwardTarget(): Promise<Server> {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end('hello from the kwok pod port-forward target\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return server;
}

async function waitFor(
  what: string,
  timeoutMs: number,
  watched: ManagedProcess[],
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    const dead = watched.find((p) => p.hasExited());
    if (dead) {
      throw new Error(
        `${dead.name} exited while waiting for ${what}. Its log (${dead.logFile}):\n${logTail(dead.logFile)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const logs = watched.map((p) => `--- ${p.name} (${p.logFile})\n${logTail(p.logFile, 10)}`).join('\n');
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}\n${logs}`,
  );
}

function adminGet(base: string, path: string, caFile: string, cert: { certFile: string; keyFile: string }) {
  return adminRequest(base, 'GET', path, caFile, cert);
}

function adminRequest(
  base: string,
  method: string,
  path: string,
  caFile: string,
  cert: { certFile: string; keyFile: string },
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, base),
      {
        method,
        ca: readFileSync(caFile),
        cert: readFileSync(cert.certFile),
        key: readFileSync(cert.keyFile),
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        timeout: 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
