/**
 * The demo: a local control plane (or a cluster the user already has, `kubevisa demo --kubeconfig`), a local
 * identity provider with a contractor and a sponsor, kubevisa installed into the cluster with its least-privilege
 * credential, the server on SQLite (serving SCIM, so an identity provider's provisioning and offboarding can be tried
 * too), and an engagement created through the API by the sponsor — everything a newcomer needs to walk the whole
 * journey. In an existing cluster, stopping the demo removes everything it put there (`uninstallKubevisa` and the
 * demo namespaces it created), and leaves what was there before alone.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { uninstallKubevisa } from '../cluster/install.ts';
import { loadKubeConfig } from '../cluster/kubeconfig.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, kubernetesStatusOf, makeApis, type Apis } from '../cluster/transport.ts';
import { request as httpsRequest } from 'node:https';
import { LocalCa } from './ca.ts';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { startControlPlane, type ControlPlane } from './cluster/control-plane.ts';
import { startDevIdp, completeLoginWithHttp, type DevIdp } from './idp.ts';
import { installIntoDataDir, localServerConfig } from './local-setup.ts';
import { parseServerConfig, type ServerConfig } from '../server/config.ts';
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
  /** kube-apiserver's URL. */
  apiServerUrl: string;
  /** The folder of the demo's own kubectl (a local control plane), undefined in an existing cluster (yours is used). */
  kubectlDir: string | undefined;
  /** The cluster-admin kubeconfig: the local control plane's, or the one given. kubevisa uses it only to install. */
  adminKubeconfig: string;
  /** The server's config file the demo wrote (`kubevisa server --config` accepts it), and the config it runs with. */
  configFile: string;
  config: ServerConfig;
  contractor: DemoPerson;
  sponsor: DemoPerson;
  /** The CA that signs the server's certificate: kubectl and the CLI trust it for the demo. */
  caFile: string;
  engagementId: string;
  /** The local control plane, undefined in an existing cluster. */
  controlPlane: ControlPlane | undefined;
  idp: DevIdp;
  server: RunningServer;
  stop(): Promise<void>;
}

export const DEMO_CLUSTER = 'demo';
/** The name the demo's identity provider goes by in SCIM tokens and the audit trail (`scim:demo-idp`). */
export const DEMO_SCIM_IDP = 'demo-idp';

/** Labels the namespaces the demo creates, so it removes exactly those (never one that was there before). */
export const DEMO_NAMESPACE_LABEL = 'kubevisa.io/demo';
/** The demo's namespaces: the contractor may reach payments and staging-*, never finance. */
export const DEMO_NAMESPACES = ['payments', 'staging-web', 'finance'] as const;

export async function startDemo(options: {
  dir: string;
  /** A cluster-admin kubeconfig of an existing cluster: the demo runs there instead of starting a control plane. */
  adminKubeconfig?: string;
  onProgress?: (message: string) => void;
}): Promise<Demo> {
  const progress = options.onProgress ?? (() => {});
  const dir = options.dir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
  };
  try {
    let controlPlane: ControlPlane | undefined;
    let adminKubeconfig: string;
    if (options.adminKubeconfig === undefined) {
      const started = await startControlPlane({ onProgress: progress });
      controlPlane = started;
      stops.push(() => started.stop());
      adminKubeconfig = started.adminKubeconfig;
    } else {
      adminKubeconfig = options.adminKubeconfig;
      const admin = adminKubeconfig;
      // Registered before anything is created, so a failure half-way still cleans up.
      stops.push(async () => {
        progress(`removing kubevisa from the cluster (${admin})`);
        await uninstallKubevisa({
          adminKubeconfigPath: admin,
          clusterName: DEMO_CLUSTER,
          onProgress: (m) => progress(`  ${m}`),
        });
      });
    }
    const apis = clusterApis(adminKubeconfig);
    const apiServerUrl = loadKubeConfig({ kubeconfigPath: adminKubeconfig }, DEMO_CLUSTER).getCurrentCluster()!.server;
    progress('creating demo namespaces and workloads');
    const created: string[] = [];
    if (controlPlane === undefined) stops.push(() => removeDemoNamespaces(apis, created, progress));
    await seedCluster(apis, created);

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
      adminKubeconfig,
      clusterName: DEMO_CLUSTER,
      dataDir,
      onProgress: (m: string) => progress(`  ${m}`),
    });
    const rawConfig: Record<string, unknown> = {
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
    };
    const config = parseServerConfig(rawConfig, dir);
    // The config file as a person writes one (what `kubevisa server --config` reads, through the same parser), so
    // it can be the start of a real one. The demo IdP's client secret is not written.
    const configFile = join(dir, 'server.yaml');
    const oidc = rawConfig.oidc as Record<string, unknown>;
    await writeFile(
      configFile,
      [
        "# The kubevisa demo's server config: `kubevisa server --config server.yaml` reads this file.",
        "# oidc.clientSecret: the demo identity provider's secret is not written; put your identity provider's here.",
        stringify({ ...rawConfig, oidc: { ...oidc, clientSecret: 'REPLACE-WITH-YOUR-CLIENT-SECRET' } }),
      ].join('\n'),
      { mode: 0o600 },
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
      apiServerUrl,
      kubectlDir: controlPlane?.binaries.dir,
      adminKubeconfig,
      configFile,
      config,
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

function clusterApis(adminKubeconfig: string): Apis {
  return makeApis(loadKubeConfig({ kubeconfigPath: adminKubeconfig }, DEMO_CLUSTER), DEFAULT_REQUEST_TIMEOUT_MS);
}

/**
 * The demo namespaces with one pod each, through the API (no kubectl needed). A namespace that already exists is
 * used as it is, never written to and never removed; `created` collects the ones the demo made. The pods run the pause image, which
 * every node already holds (it is the pods' sandbox image), so nothing is pulled from the internet.
 */
async function seedCluster(apis: Apis, created: string[]): Promise<void> {
  const pods: Record<(typeof DEMO_NAMESPACES)[number], string> = {
    payments: 'payments-api',
    'staging-web': 'web',
    finance: 'ledger',
  };
  for (const namespace of DEMO_NAMESPACES) {
    try {
      await apis.core.createNamespace({
        body: { metadata: { name: namespace, labels: { [DEMO_NAMESPACE_LABEL]: 'true' } } },
      });
      created.push(namespace);
    } catch (error) {
      if (kubernetesStatusOf(error)?.reason !== 'AlreadyExists') throw error;
    }
  }
  // Pods only where the demo made the namespace: one that was there before is never written to.
  for (const namespace of DEMO_NAMESPACES.filter((name) => created.includes(name))) {
    await waitForDefaultServiceAccount(apis, namespace);
    const name = pods[namespace];
    try {
      await apis.core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name, namespace, labels: { app: name, [DEMO_NAMESPACE_LABEL]: 'true' } },
          spec: {
            containers: [
              {
                name: 'app',
                image: 'registry.k8s.io/pause:3.10',
                imagePullPolicy: 'IfNotPresent',
                ports: [{ containerPort: 8080 }],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  runAsNonRoot: true,
                  runAsUser: 65535,
                  capabilities: { drop: ['ALL'] },
                  seccompProfile: { type: 'RuntimeDefault' },
                },
              },
            ],
          },
        },
      });
    } catch (error) {
      if (kubernetesStatusOf(error)?.reason !== 'AlreadyExists') throw error;
    }
  }
}

// kube-controller-manager makes a namespace's default ServiceAccount; a pod created before it exists is refused.
async function waitForDefaultServiceAccount(apis: Apis, namespace: string) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await apis.core.readNamespacedServiceAccount({ namespace, name: 'default' });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function removeDemoNamespaces(apis: Apis, created: readonly string[], progress: (message: string) => void) {
  for (const name of created) {
    try {
      await apis.core.deleteNamespace({ name });
      progress(`  Namespace ${name} deleted (the demo created it)`);
    } catch (error) {
      if (kubernetesStatusOf(error)?.code !== 404) throw error;
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
