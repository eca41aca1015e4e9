/**
 * A whole kubevisa environment for end-to-end tests: the real control plane, the real OIDC provider
 * (oidc-provider, in-process), kubevisa installed into the cluster with its least-privilege credential, and
 * the server — in this process, or as a separate process that a test can kill -9.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LocalCa } from '../../src/dev/ca.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { completeLoginWithHttp, startDevIdp, type DevIdp, type DevIdpAccount } from '../../src/dev/idp.ts';
import { installIntoDataDir, localServerConfig } from '../../src/dev/local-setup.ts';
import { freePorts, startControlPlane, type ControlPlane } from '../../src/dev/cluster/control-plane.ts';
import type { Profile } from '../../src/domain/model.ts';
import { parseServerConfig, type ServerConfig } from '../../src/server/config.ts';
import { startServer, type RunningServer } from '../../src/server/main.ts';
import { createTestDatabase, type TestDatabase } from '../../src/store/postgres/test-database.ts';
import { kubectl, kubectlOk } from './kubectl.ts';

export const CLUSTER = 'test';
const context = (server: RunningServer) => server.context;
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const cliPath = join(repoRoot, 'bin', 'kubevisa');

export interface TestPerson {
  sub: string;
  email: string;
  password: string;
  groups: string[];
}

export const people = {
  cora: { sub: 'cora', email: 'cora@vendor.example', password: 'cora-pw', groups: ['vendor-acme'] },
  carl: { sub: 'carl', email: 'carl@vendor.example', password: 'carl-pw', groups: ['vendor-acme'] },
  sam: { sub: 'sam', email: 'sam@corp.example', password: 'sam-pw', groups: ['kubevisa-admins'] },
  ann: { sub: 'ann', email: 'ann@corp.example', password: 'ann-pw', groups: ['kubevisa-approvers'] },
  eve: { sub: 'eve', email: 'eve@corp.example', password: 'eve-pw', groups: [] },
} satisfies Record<string, TestPerson>;

export interface KubevisaEnv {
  dir: string;
  /** The control plane of cluster `CLUSTER`. */
  cp: ControlPlane;
  /** Every cluster the server manages, `CLUSTER` and the `extraClusters`, each its own control plane. */
  clusters: Map<string, ControlPlane>;
  idp: DevIdp;
  serverPort: number;
  serverUrl: string;
  configFile: string;
  config: ServerConfig;
  /** The store engine the server runs on. */
  store: 'sqlite' | 'postgres';
  /**
   * The PostgreSQL database of a `store: 'postgres'` environment: pass it as `postgresUrl` to run more servers on
   * the same database.
   */
  postgresUrl: string | undefined;
  /** The server in this process (undefined while a test runs it as a child process). */
  server: RunningServer | undefined;
  startInProcess(): Promise<RunningServer>;
  /**
   * A kubeconfig that reaches a cluster (default `CLUSTER`) through the kubevisa gateway with a kubevisa access token
   * (TLS environments).
   */
  writeGatewayKubeconfig(accessToken: string, name: string, cluster?: string): Promise<string>;
  stop(): Promise<void>;
  k(args: string[], kubeconfig?: string): ReturnType<typeof kubectl>;
  kOk(args: string[], input?: string): Promise<string>;
}

export async function startKubevisaEnv(
  options: {
    autoApproval?: boolean;
    tls?: boolean;
    extraConfig?: Record<string, unknown>;
    extraProfiles?: Profile[];
    /**
     * The test cluster's `directMode` setting. Default true (unlike a real server's default, false): most end-to-end
     * tests read what kube-apiserver itself allows through a direct token.
     */
    directMode?: boolean;
    /** Identity provider accounts beside `people`. */
    accounts?: DevIdpAccount[];
    /**
     * Have kube-apiserver send its audit events to the server's audit webhook
     * (`/api/v1/monitoring/audit-events/<cluster>`) with this bearer token. The server's port is chosen before the
     * control plane starts for this; the test still configures `monitoring.auditWebhook` with the same token.
     */
    auditWebhookToken?: string;
    /** More clusters, each a control plane of its own with kubevisa installed, beside `CLUSTER`. */
    extraClusters?: string[];
    /**
     * The server's store: 'sqlite' (default, a file in the data folder) or 'postgres', a database of its own on the
     * test PostgreSQL (test-database.ts), created here and dropped by stop().
     */
    store?: 'sqlite' | 'postgres';
    /**
     * With `store: 'postgres'`: an existing database to run on instead (e.g. another environment's `postgresUrl`,
     * for several servers on one database). The environment neither migrates ahead of the server nor drops it.
     */
    postgresUrl?: string;
  } = {},
): Promise<KubevisaEnv> {
  const engine = options.store ?? 'sqlite';
  if (options.postgresUrl !== undefined && engine !== 'postgres') {
    throw new Error("startKubevisaEnv: postgresUrl is for store: 'postgres'");
  }
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-e2e-'));
  // A database of its own unless one was given: tests in parallel never share state.
  const database: TestDatabase | undefined =
    engine === 'postgres' && options.postgresUrl === undefined ? await createTestDatabase('kv_e2e') : undefined;
  const postgresUrl = engine === 'postgres' ? (options.postgresUrl ?? database?.url) : undefined;
  // The server binds its port seconds after it is chosen; taking it from below the kernel's ephemeral range
  // (where every port-0 bind of a parallel test lands) keeps anyone else from grabbing it in between.
  const serverPort = await freePortBelowEphemeralRange();
  const serverUrl = `${options.tls ? 'https' : 'http'}://127.0.0.1:${serverPort}`;
  let tls: { certFile: string; keyFile: string; caFile: string } | undefined;
  if (options.tls) {
    const pki = join(dir, 'pki');
    await mkdir(pki, { recursive: true });
    const ca = await LocalCa.create(pki, 'kubevisa-test-ca');
    const serving = await ca.issue({
      name: 'server',
      commonName: 'kubevisa',
      ipAddresses: ['127.0.0.1'],
      dnsNames: ['localhost'],
      usage: 'server',
    });
    tls = { ...serving, caFile: ca.certFile };
    trustedCa = await readFile(ca.certFile);
  }
  // kube-apiserver reads its audit webhook's address once, at start: the server's address is known by now.
  const cp = await startControlPlane(
    options.auditWebhookToken === undefined
      ? {}
      : {
          auditWebhook: {
            url: `${serverUrl}/api/v1/monitoring/audit-events/${CLUSTER}`,
            bearerToken: options.auditWebhookToken,
            ...(tls ? { caFile: tls.caFile } : {}),
          },
        },
  );
  const clientSecret = 'e2e-client-secret';
  const idp = await startDevIdp({
    accounts: [...Object.values(people).map((p) => ({ ...p, name: p.sub })), ...(options.accounts ?? [])],
    clients: [{ clientId: 'kubevisa', clientSecret, redirectUris: [`${serverUrl}/api/v1/login/callback`] }],
  });
  const clusters = new Map<string, ControlPlane>([[CLUSTER, cp]]);
  for (const name of options.extraClusters ?? []) clusters.set(name, await startControlPlane());
  const dataDir = join(dir, 'data');
  const credentials = new Map<string, string>();
  for (const [name, plane] of clusters) {
    credentials.set(
      name,
      await installIntoDataDir({
        adminKubeconfig: plane.adminKubeconfig,
        clusterName: name,
        dataDir,
        ...(options.extraProfiles ? { extraProfiles: options.extraProfiles } : {}),
      }),
    );
  }
  const credential = credentials.get(CLUSTER)!;
  const localConfig = localServerConfig({
    port: serverPort,
    dataDir,
    issuer: idp.issuer,
    clientSecret,
    clusterName: CLUSTER,
    credential,
    resyncInterval: '5s',
    ...(options.autoApproval === false ? { autoApproval: false } : {}),
    ...(tls ? { tls } : {}),
  });
  const rawConfig = {
    ...localConfig,
    clusters: [...credentials].map(([name, kubeconfig]) => ({
      ...(localConfig.clusters as Record<string, unknown>[])[0],
      name,
      kubeconfig,
      directMode: options.directMode ?? true,
    })),
    ...(postgresUrl === undefined ? {} : { store: { engine: 'postgres', url: postgresUrl } }),
    ...options.extraConfig,
  };
  const configFile = join(dir, 'server.json');
  await writeFile(configFile, JSON.stringify(rawConfig), { mode: 0o600 });
  const config = parseServerConfig(rawConfig, dir);
  const env: KubevisaEnv = {
    dir,
    cp,
    clusters,
    idp,
    serverPort,
    serverUrl,
    configFile,
    config,
    store: engine,
    postgresUrl,
    server: undefined,
    async startInProcess() {
      env.server = await startServer(config);
      const extra = options.extraProfiles ?? [];
      if (extra.length > 0) {
        await env.server.store.transaction(async (tx) => {
          for (const profile of extra) await tx.upsertProfile(profile);
        });
        context(env.server).events.emit('visas-changed');
      }
      return env.server;
    },
    async stop() {
      await env.server?.stop();
      await idp.stop();
      for (const plane of clusters.values()) await plane.stop();
      await database?.drop();
      await rm(dir, { recursive: true, force: true });
    },
    async writeGatewayKubeconfig(accessToken, name, cluster = CLUSTER) {
      if (!tls) throw new Error('the gateway needs a TLS environment: startKubevisaEnv({ tls: true })');
      const file = join(dir, `${name}.kubeconfig`);
      await writeFile(
        file,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [
            {
              name: cluster,
              cluster: { server: `${serverUrl}/clusters/${cluster}`, 'certificate-authority': tls.caFile },
            },
          ],
          users: [{ name, user: { token: accessToken } }],
          contexts: [{ name: cluster, context: { cluster, user: name } }],
          'current-context': cluster,
        }),
        { mode: 0o600 },
      );
      return file;
    },
    k: (args, kubeconfig = cp.adminKubeconfig) => kubectl(cp.binaries.kubectl, args, { kubeconfig }),
    kOk: (args, input) =>
      kubectlOk(cp.binaries.kubectl, args, {
        kubeconfig: cp.adminKubeconfig,
        ...(input !== undefined ? { input } : {}),
      }),
  };
  return env;
}

/** A free loopback port in [20000, 32000): outside Linux's default ephemeral range (32768–60999). */
async function freePortBelowEphemeralRange(): Promise<number> {
  const { createServer } = await import('node:net');
  for (let tries = 0; tries < 50; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  const [port] = await freePorts(1);
  return port!;
}

/** Runs `kubevisa server` as a child process (so a test can kill -9 it) and waits until it answers. */
export async function startServerProcess(
  env: KubevisaEnv,
  extraEnv: Record<string, string> = {},
): Promise<ChildProcess> {
  const child = spawn(cliPath, ['server', '--config', env.configFile], {
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`kubevisa server exited early: ${output}`);
    if (output.includes('kubevisa server ready')) return child;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`kubevisa server did not become ready in 30 s: ${output}`);
}

export function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown> & { items?: Record<string, unknown>[] };
  contentType: string;
  /** The Location header of a redirect (redirects are never followed). */
  location?: string;
}

/** The test CA the kubevisa server's certificate chains to (set by a TLS environment). */
let trustedCa: Buffer | undefined;

/** One API call; `body` may be a string to send it raw (malformed JSON tests). */
export function api(
  serverUrl: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; contentType?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const url = new URL(path, serverUrl);
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string'
        ? options.body
        : JSON.stringify(options.body);
  if (payload !== undefined) {
    headers['content-type'] = options.contentType ?? 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      { method, headers, timeout: 20_000, ...(url.protocol === 'https:' && trustedCa ? { ca: trustedCa } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: ApiAnswer['body'] = {};
          try {
            body = text ? (JSON.parse(text) as ApiAnswer['body']) : {};
          } catch {
            body = { raw: text };
          }
          resolve({
            status: res.statusCode ?? 0,
            body,
            contentType: String(res.headers['content-type'] ?? ''),
            ...(res.headers.location ? { location: res.headers.location } : {}),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Logs a person in through the real device flow at the real OIDC provider; returns their access token. */
export async function loginAs(
  serverUrl: string,
  person: TestPerson,
): Promise<{ token: string; sessionSecret: string; personId: string }> {
  const started = await api(serverUrl, 'POST', '/api/v1/login/device');
  if (started.status !== 201) throw new Error(`device login did not start: ${JSON.stringify(started.body)}`);
  await completeLoginWithHttp({
    url: String(started.body.verificationUriComplete),
    login: person.email,
    password: person.password,
  });
  for (let i = 0; i < 100; i++) {
    const polled = await api(serverUrl, 'POST', `/api/v1/login/device/${String(started.body.loginId)}/poll`);
    if (polled.status === 200) {
      return {
        token: String(polled.body.accessToken),
        sessionSecret: String(polled.body.sessionSecret),
        personId: String((polled.body.person as { id: string }).id),
      };
    }
    if (polled.status !== 202) throw new Error(`login failed: ${JSON.stringify(polled.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('login did not complete');
}

export function inDays(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString();
}
