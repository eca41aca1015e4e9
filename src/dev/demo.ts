/**
 * The demo: a local control plane, a local identity provider with a contractor and a sponsor, kubevisa
 * installed into the cluster with its least-privilege credential, the server on SQLite (serving SCIM, so an
 * identity provider's provisioning and offboarding can be tried too), and an engagement created through the API
 * by the sponsor — everything a newcomer needs to walk the whole journey.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { LocalCa } from './ca.ts';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { startControlPlane, type ControlPlane } from './cluster/control-plane.ts';
import { startDevIdp, completeLoginWithHttp, type DevIdp } from './idp.ts';
import { installIntoDataDir, localServerConfig } from './local-setup.ts';
import { parseServerConfig } from '../server/config.ts';
import { startServer, type RunningServer } from '../server/main.ts';
import { SCIM_PREFIX } from '../scim/routes.ts';

export interface DemoPerson {
  email: string;
  password: string;
  name: string;
  configDir: string;
  kubeconfig: string;
}

export interface Demo {
  dir: string;
  serverUrl: string;
  /** SCIM 2.0 base URL for an identity provider's provisioning (a token from `kubevisa scim token create`). */
  scimUrl: string;
  clusterName: string;
  kubectl: string;
  adminKubeconfig: string;
  contractor: DemoPerson;
  sponsor: DemoPerson;
  /** The CA that signs the server's certificate: kubectl and the CLI trust it for the demo. */
  caFile: string;
  engagementId: string;
  controlPlane: ControlPlane;
  idp: DevIdp;
  server: RunningServer;
  stop(): Promise<void>;
}

export const DEMO_CLUSTER = 'demo';
/** The name the demo's identity provider goes by in SCIM tokens and the audit trail (`scim:demo-idp`). */
export const DEMO_SCIM_IDP = 'demo-idp';

export async function startDemo(options: { dir: string; onProgress?: (message: string) => void }): Promise<Demo> {
  const progress = options.onProgress ?? (() => {});
  const dir = options.dir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
  };
  try {
    const controlPlane = await startControlPlane({ onProgress: progress });
    stops.push(() => controlPlane.stop());
    progress('creating demo namespaces and workloads');
    await seedCluster(controlPlane);

    const serverPort = await freePort();
    // kubectl sends no credential over plain HTTP, so the gateway needs TLS even on loopback: a demo CA signs it.
    const serverUrl = `https://127.0.0.1:${serverPort}`;
    const pki = join(dir, 'pki');
    await mkdir(pki, { recursive: true, mode: 0o700 });
    const ca = await LocalCa.create(pki, 'kubevisa-demo-ca');
    const serving = await ca.issue({
      name: 'server',
      commonName: 'kubevisa-demo',
      ipAddresses: ['127.0.0.1'],
      dnsNames: ['localhost'],
      usage: 'server',
    });
    const caPem = await readFile(ca.certFile);
    const person = (email: string, password: string, name: string): DemoPerson => {
      const home = join(dir, email.split('@')[0]!);
      return { email, password, name, configDir: home, kubeconfig: join(home, 'kubeconfig') };
    };
    const contractor = person('cora@vendor.example', 'cora', 'Cora Contractor');
    const sponsor = person('sam@corp.example', 'sam', 'Sam Sponsor');
    for (const p of [contractor, sponsor]) await mkdir(p.configDir, { recursive: true, mode: 0o700 });

    progress('starting the demo identity provider');
    const clientSecret = `demo-${Math.random().toString(36).slice(2)}`;
    const idp = await startDevIdp({
      accounts: [
        {
          sub: 'cora',
          email: contractor.email,
          name: contractor.name,
          password: contractor.password,
          groups: ['vendor-acme'],
        },
        {
          sub: 'sam',
          email: sponsor.email,
          name: sponsor.name,
          password: sponsor.password,
          groups: ['kubevisa-admins', 'kubevisa-approvers'],
        },
      ],
      clients: [{ clientId: 'kubevisa', clientSecret, redirectUris: [`${serverUrl}/api/v1/login/callback`] }],
    });
    stops.push(() => idp.stop());

    progress(`installing kubevisa into cluster '${DEMO_CLUSTER}' (admin credential used once)`);
    const dataDir = join(dir, 'server');
    const credential = await installIntoDataDir({
      adminKubeconfig: controlPlane.adminKubeconfig,
      clusterName: DEMO_CLUSTER,
      dataDir,
      onProgress: (m: string) => progress(`  ${m}`),
    });
    const config = parseServerConfig(
      {
        ...localServerConfig({
          port: serverPort,
          dataDir,
          issuer: idp.issuer,
          clientSecret,
          clusterName: DEMO_CLUSTER,
          credential,
          tls: { certFile: serving.certFile, keyFile: serving.keyFile, caFile: ca.certFile },
          scim: true,
        }),
        // The demo's identity provider holds everyone, the people who logged in before it provisioned them too.
        identity: { claimExistingPeople: [DEMO_SCIM_IDP] },
      },
      dir,
    );
    await writeFile(
      join(dir, 'server.yaml'),
      JSON.stringify({ ...config, oidc: { ...config.oidc, clientSecret: '(demo secret, not written)' } }, null, 2),
    );
    progress('starting the kubevisa server');
    const server = await startServer(config, { onProgress: (m) => progress(`  ${m}`) });
    stops.push(() => server.stop());

    progress(`creating engagement 'acme-2026' through the API, as the sponsor`);
    const engagementId = await createDemoEngagement(serverUrl, caPem, sponsor, contractor);
    return {
      dir,
      serverUrl,
      scimUrl: `${serverUrl}${SCIM_PREFIX}`,
      clusterName: DEMO_CLUSTER,
      kubectl: controlPlane.binaries.kubectl,
      adminKubeconfig: controlPlane.adminKubeconfig,
      contractor,
      sponsor,
      caFile: ca.certFile,
      engagementId,
      controlPlane,
      idp,
      server,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function seedCluster(cp: ControlPlane) {
  const run = async (args: string[], input?: string) => {
    const { spawn } = await import('node:child_process');
    await new Promise<void>((resolve, reject) => {
      const child = spawn(cp.binaries.kubectl, args, {
        env: { ...process.env, KUBECONFIG: cp.adminKubeconfig },
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`kubectl ${args.join(' ')}: ${err.trim()}`)),
      );
      child.stdin.end(input ?? '');
    });
  };
  const manifests = [
    ...['payments', 'staging-web', 'finance'].map((name) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name },
    })),
  ];
  await run(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }));
  const pods = [
    ['payments', 'payments-api'],
    ['staging-web', 'web'],
    ['finance', 'ledger'],
  ];
  for (const [namespace] of pods) await waitForDefaultServiceAccount(run, namespace!);
  await run(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: pods.map(([namespace, name]) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'registry.example/app:1', ports: [{ containerPort: 8080 }] }] },
      })),
    }),
  );
}

async function waitForDefaultServiceAccount(run: (args: string[]) => Promise<void>, namespace: string) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await run(['get', 'serviceaccount', 'default', '-n', namespace]);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** Logs the sponsor in with the device flow (scripted against the demo IdP's form) and creates the engagement. */
async function createDemoEngagement(
  serverUrl: string,
  ca: Buffer,
  sponsor: DemoPerson,
  contractor: DemoPerson,
): Promise<string> {
  const post = (path: string, body?: unknown, token?: string) =>
    new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        new URL(path, serverUrl),
        {
          method: 'POST',
          ca,
          timeout: 15_000,
          headers: {
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>,
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`demo: ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  const started = await post('/api/v1/login/device');
  if (started.status !== 201) throw new Error(`demo: could not start a login: ${JSON.stringify(started.body)}`);
  await completeLoginWithHttp({
    url: String(started.body.verificationUriComplete ?? started.body.verificationUri),
    login: sponsor.email,
    password: sponsor.password,
    ...(started.body.verificationUriComplete ? {} : { userCode: String(started.body.userCode) }),
  });
  let session: Record<string, unknown> | undefined;
  for (let i = 0; i < 50 && !session; i++) {
    const polled = await post(`/api/v1/login/device/${String(started.body.loginId)}/poll`);
    if (polled.status === 200) session = polled.body;
    else if (polled.status !== 202) throw new Error(`demo: login failed: ${JSON.stringify(polled.body)}`);
    else await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (!session) throw new Error('demo: the sponsor login did not complete');
  const created = await post(
    '/api/v1/engagements',
    {
      name: 'acme-2026',
      vendor: 'Acme Consulting',
      contractors: [contractor.email],
      sponsor: sponsor.email,
      endsAt: new Date(Date.now() + 30 * 86_400_000).toISOString(),
      ceiling: {
        clusters: [DEMO_CLUSTER],
        namespacePatterns: ['payments', 'staging-*'],
        profiles: ['viewer', 'developer', 'debugger'],
      },
      maxVisaDuration: '8h',
    },
    String(session.accessToken),
  );
  if (created.status !== 201) throw new Error(`demo: could not create the engagement: ${JSON.stringify(created.body)}`);
  return String(created.body.id);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
