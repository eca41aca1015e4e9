/**
 * The environment the attack table (test/support/attacks.ts) runs in, and the tools its rows attack with: the real
 * control plane, the real OIDC provider and the real kubevisa server (TLS, SCIM on), kubectl, raw TLS sockets for
 * requests whose exact bytes matter, kube-apiserver's own audit log to prove what reached Kubernetes, and a decoy
 * cluster (a small HTTPS server registered as a second cluster) that records what the gateway sent upstream, header
 * by header, and answers redirects on demand. A third cluster, `gone`, has nothing listening.
 */
import assert from 'node:assert/strict';
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect } from 'node:tls';
import { loadOrCreateSigningKey } from '../../src/auth/signing-key.ts';
import { loadKubeConfig } from '../../src/cluster/kubeconfig.ts';
import { freePorts } from '../../src/dev/cluster/control-plane.ts';
import { serviceAccountName } from '../../src/domain/names.ts';
import { LocalCa } from '../../src/dev/ca.ts';
import { createScimToken, scim, trustScimCa, type ScimAnswer } from './identity.ts';
import { eventually, kubectl, type KubectlResult } from './kubectl.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type ApiAnswer,
  type KubevisaEnv,
} from './kubevisa-env.ts';

export { CLUSTER };
export const DECOY = 'decoy';
export const GONE = 'gone';
/** The namespace the contractor's visas grant, and one they do not (where a stray binding would let RBAC allow). */
export const GRANTED = 'atk-a';
export const OUTSIDE = 'atk-out';
/** Every raw request sent by the table carries this User-Agent. */
export const UA = 'kubevisa-attack-table';
export const KUBEVISA_SA = 'system:serviceaccount:kubevisa-system:kubevisa';
/** An identity provider account whose ID token carries no `email_verified` claim (the server does not trust it). */
/** An account whose verified email is the admin's address spelt with the Kelvin sign (U+212A) for its `s`… `k`. */
export const KELVIN = {
  sub: 'kelvin',
  email: '\u212Aelvin-sam@corp.example',
  password: 'kelvin-pw',
  groups: ['\u212Aubevisa-admins'],
  name: 'Kelvin',
};

/** An account whose verified email is the admin's with a zero-width space (U+200B) after `sam`: it reads as sam's. */
export const HIDDEN_SAM = {
  sub: 'hidden-sam',
  email: 'sam\u200B@corp.example',
  password: 'hidden-pw',
  groups: [],
  name: 'Sam',
};

export const NOVA = {
  sub: 'nova',
  email: 'nova@vendor.example',
  password: 'nova-pw',
  groups: ['vendor-acme'],
  name: 'Nova',
  emailVerified: 'absent' as const,
};

export interface Login {
  token: string;
  sessionSecret: string;
  personId: string;
}

export interface Answer {
  status: number;
  headers: [string, string][];
  body: string;
  /** Everything received on the connection, for pipelining checks. */
  raw: string;
  closed: boolean;
}

interface DecoyRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  upgrade: boolean;
  closed: boolean;
  trailingBytes: number;
}

interface KubeAuditEvent {
  stage: string;
  requestURI: string;
  user: { username: string };
  impersonatedUser?: { username: string; groups?: string[]; uid?: string; extra?: Record<string, string[]> };
}

export interface AttackEnv {
  env: KubevisaEnv;
  admin: Login;
  approver: Login;
  /** A contractor with a recorded debugger visa and a weaker viewer visa on GRANTED. */
  cora: Login;
  /** A contractor with viewer visas on GRANTED in the decoy cluster and in `gone`. */
  carl: Login;
  /** The ServiceAccount kubevisa impersonates for each contractor. */
  coraSa: string;
  carlSa: string;
  /** kubevisa's own credential for the real cluster, and for the decoy. */
  upstreamToken: string;
  decoyToken: string;
  /** SCIM tokens of two identity providers. */
  scimOkta: string;
  scimEntra: string;
  /** kubevisa's token signing key (to forge tokens that differ from real ones in exactly one way). */
  signingKey: { privateKey: KeyObject; keyId: string };
  /** A gateway kubeconfig for Cora (kubectl through kubevisa with her access token). */
  coraKubeconfig: string;
  stop(): Promise<void>;
}

let ca: Buffer;
let decoyRequests: DecoyRequest[] = [];
let auditFile = '';
let auditOffset = 0;
let auditPartial = '';
const auditEvents: KubeAuditEvent[] = [];
let current: AttackEnv | undefined;

// ---------------------------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TLS to the kubevisa server.

/** Writes `parts` on one TLS connection (`gapMs` apart) and collects everything until the server closes it. */
export function exchange(
  parts: string | (string | Buffer)[],
  options: { waitMs?: number; gapMs?: number; localAddress?: string } = {},
): Promise<Answer> {
  const port = current!.env.serverPort;
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    let text = '';
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...parseAnswer(text), closed });
    };
    const timer = setTimeout(() => {
      finish(false);
      socket.destroy();
    }, options.waitMs ?? 10_000);
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => finish(true));
    socket.on('secureConnect', () => {
      void (async () => {
        for (const part of Array.isArray(parts) ? parts : [parts]) {
          if (socket.destroyed) return;
          socket.write(part);
          if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
        }
      })();
    });
  });
}

function parseAnswer(text: string): Omit<Answer, 'closed'> {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = lines.map((l) => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon), l.slice(colon + 1).trim()] as [string, string];
  });
  return { status, headers, body: end === -1 ? '' : text.slice(end + 4), raw: text };
}

/** A request as bytes: request line, Host, User-Agent, the given header lines, `Connection: close` unless given. */
export function rawRequest(method: string, target: string, headerLines: string[] = [], body = ''): string {
  const connection = headerLines.some((l) => /^connection\s*:/i.test(l)) ? [] : ['Connection: close'];
  return [
    `${method} ${target} HTTP/1.1`,
    'Host: localhost',
    `User-Agent: ${UA}`,
    ...headerLines,
    ...connection,
    '',
    body,
  ].join('\r\n');
}

/** An upgrade request (WebSocket unless `upgrade` says otherwise), as kubectl exec sends it. */
export function upgradeRequest(target: string, headerLines: string[], upgrade = 'websocket'): string {
  return [
    `GET ${target} HTTP/1.1`,
    'Host: localhost',
    `User-Agent: ${UA}`,
    'Connection: Upgrade',
    `Upgrade: ${upgrade}`,
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Protocol: v5.channel.k8s.io',
    ...headerLines,
    '',
    '',
  ].join('\r\n');
}

export const bearer = (token: string) => `Authorization: Bearer ${token}`;

/** GET through the gateway, below `/clusters/<cluster>`. */
export function gatewayGet(
  pathBelowCluster: string,
  token: string | undefined,
  cluster = CLUSTER,
  headerLines: string[] = [],
) {
  return exchange(
    rawRequest('GET', `/clusters/${cluster}${pathBelowCluster}`, [...(token ? [bearer(token)] : []), ...headerLines]),
  );
}

/** The `message` of a Kubernetes Status body (what kubectl prints), or the body itself. */
export function messageOf(answer: Answer): string {
  try {
    return String((JSON.parse(answer.body) as { message?: unknown }).message ?? '');
  } catch {
    return answer.body;
  }
}

export function header(answer: Answer, name: string): string[] {
  return answer.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

/** Every status line on a connection: a refused upgrade must leave exactly one. */
export function statusLines(answer: Answer): string[] {
  return answer.raw.match(/HTTP\/1\.1 \d{3}/g) ?? [];
}

/** Asserts a refusal: its status and a fragment of what it says (a Status message, or a problem's detail and code). */
export function assertRefused(answer: { status: number; text: string }, status: number, fragment: RegExp): void {
  assert.equal(answer.status, status, answer.text.slice(0, 400));
  assert.match(answer.text, fragment);
}

export const gatewayRefusal = (answer: Answer) => ({
  status: answer.status,
  text: `${messageOf(answer)} ${answer.body}`,
});
export const apiRefusal = (answer: ApiAnswer) => ({ status: answer.status, text: JSON.stringify(answer.body) });
export const scimRefusal = (answer: ScimAnswer) => ({ status: answer.status, text: JSON.stringify(answer.body) });

// ---------------------------------------------------------------------------------------------------------------
// What reached upstream.

/** A unique marker for a request's query, so its trace (or its absence) can be found upstream. */
export function mark(label: string): string {
  return `atk-${label}-${randomBytes(5).toString('hex')}`;
}

function refreshAudit(): KubeAuditEvent[] {
  const fd = openSync(auditFile, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, auditOffset);
      if (read === 0) break;
      auditOffset += read;
      const lines = (auditPartial + buffer.subarray(0, read).toString('utf8')).split('\n');
      auditPartial = lines.pop()!;
      for (const line of lines) if (line.trim() !== '') auditEvents.push(JSON.parse(line) as KubeAuditEvent);
    }
  } finally {
    closeSync(fd);
  }
  return auditEvents;
}

/**
 * What kube-apiserver recorded for requests carrying `marker`. A barrier request sent through the gateway afterwards
 * must be recorded first, so a probe that did reach kube-apiserver has been recorded too.
 */
export async function apiserverSaw(marker: string): Promise<KubeAuditEvent[]> {
  const barrier = mark('barrier');
  const answer = await gatewayGet(
    `/api/v1/namespaces/${GRANTED}/configmaps?limit=1&probe=${barrier}`,
    current!.cora.token,
  );
  assert.equal(answer.status, 200, `the barrier request passes: ${answer.raw.slice(0, 300)}`);
  await eventually('the barrier request in the audit log', 10_000, async () =>
    refreshAudit().some((e) => e.requestURI.includes(barrier) && e.stage === 'ResponseComplete'),
  );
  return auditEvents.filter((e) => e.requestURI.includes(marker) && e.stage === 'ResponseComplete');
}

export async function assertApiserverSawNothing(marker: string): Promise<void> {
  const events = await apiserverSaw(marker);
  assert.deepEqual(
    events.map((e) => `${e.requestURI} as ${e.user.username}`),
    [],
    'nothing reached kube-apiserver',
  );
}

/** What the decoy cluster received for `marker`, after a barrier request through the gateway arrived there. */
export async function decoySaw(marker: string): Promise<DecoyRequest[]> {
  const barrier = mark('decoy-barrier');
  const answer = await gatewayGet(
    `/api/v1/namespaces/${GRANTED}/configmaps?probe=${barrier}`,
    current!.carl.token,
    DECOY,
  );
  assert.equal(answer.status, 200, `the decoy barrier passes: ${answer.raw.slice(0, 300)}`);
  return decoyRequests.filter((r) => r.url.includes(marker));
}

export function headerValues(rawHeaders: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!);
  return values;
}

export function headerNames(rawHeaders: string[]): string[] {
  return rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

// ---------------------------------------------------------------------------------------------------------------
// Forged tokens: a real token's claims, changed in exactly one way.

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function decodeSegment(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Cora's real claims with a fresh id and lifetime, `changes` applied. */
export function claims(changes: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    ...decodeSegment(current!.cora.token, 1),
    jti: randomBytes(12).toString('base64url'),
    iat: now,
    nbf: now,
    exp: now + 300,
    ...changes,
  };
}

/** The real header (kubevisa's algorithm, type and key id), `changes` applied. */
export function tokenHeader(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...decodeSegment(current!.cora.token, 0), ...changes };
}

export function signToken(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

export function unsignedToken(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${b64url(header)}.${b64url(payload)}.`;
}

// ---------------------------------------------------------------------------------------------------------------
// API helpers.

export const call = (
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
  headers?: Record<string, string>,
) =>
  api(current!.env.serverUrl, method, path, {
    ...(token !== undefined ? { token } : {}),
    ...(body !== undefined ? { body } : {}),
    ...(headers !== undefined ? { headers } : {}),
  });

export const scimCall = (token: string | undefined, method: string, path: string, body?: unknown) =>
  scim(current!.env.serverUrl, token, method, path, body);

/** Writes the gateway's queued audit events, so a test reads the trail as it stands. */
export async function flushGatewayAudit(): Promise<void> {
  await current!.env.server!.capabilities.gateway.gateway.flushAudit();
}

/** The CA the server's certificate chains to (for clients of the attack table's own). */
export function serverCa(): Buffer {
  return ca;
}

/** kubectl through the gateway as Cora. */
export function kubectlAsCora(args: string[]): Promise<KubectlResult> {
  return kubectl(current!.env.cp.binaries.kubectl, args, { kubeconfig: current!.coraKubeconfig });
}

/** Cora requests a visa on GRANTED; returns its id (not approved). */
export async function coraRequests(body: Record<string, unknown> = {}): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', current!.cora.token, {
    engagement: 'attacks',
    profile: 'viewer',
    cluster: CLUSTER,
    namespaces: [GRANTED],
    duration: '1h',
    reason: 'attack table',
    ...body,
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  return String(requested.body.id);
}

// ---------------------------------------------------------------------------------------------------------------
// Setting up.

async function startDecoy(dir: string): Promise<{ server: Server; kubeconfig: string; token: string }> {
  const pki = join(dir, 'decoy-pki');
  await mkdir(pki, { recursive: true });
  const decoyCa = await LocalCa.create(pki, 'decoy-ca');
  const leaf = await decoyCa.issue({ name: 'decoy', commonName: 'decoy', ipAddresses: ['127.0.0.1'], usage: 'server' });
  const record = (req: IncomingMessage, upgrade: boolean): DecoyRequest => {
    const entry = {
      method: req.method ?? '',
      url: req.url ?? '',
      rawHeaders: req.rawHeaders,
      upgrade,
      closed: false,
      trailingBytes: 0,
    };
    decoyRequests.push(entry);
    return entry;
  };
  const server = createHttpsServer(
    { cert: await readFile(leaf.certFile), key: await readFile(leaf.keyFile) },
    (req, res) => {
      const entry = record(req, false);
      req.on('close', () => (entry.closed = true));
      req.resume();
      req.on('end', () => {
        const redirect = /redirect-to-(\d{3})/.exec(entry.url);
        if (redirect) {
          res.writeHead(Number(redirect[1]), { location: 'https://evil.example/steal', 'content-type': 'text/html' });
          res.end('<a href="https://evil.example/steal">moved</a>');
        } else if (req.headers['impersonate-user'] === undefined) {
          // kubevisa's own reconciler and scans: not what the table attacks; they retry later.
          res.writeHead(503).end();
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success' }));
        }
      });
    },
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    const entry = record(req, true);
    socket.on('data', (c: Buffer) => (entry.trailingBytes += c.length));
    socket.on('close', () => (entry.closed = true));
    socket.on('error', () => socket.destroy());
    if (entry.url.includes('redirect-to-'))
      socket.end('HTTP/1.1 302 Found\r\nLocation: https://evil.example/upgrade\r\nContent-Length: 0\r\n\r\n');
    else socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  const token = `decoy-${randomBytes(16).toString('hex')}`;
  const kubeconfig = await writeKubeconfig(
    dir,
    DECOY,
    `https://127.0.0.1:${port}`,
    token,
    await readFile(decoyCa.certFile),
  );
  return { server, kubeconfig, token };
}

async function writeKubeconfig(
  dir: string,
  name: string,
  server: string,
  token: string,
  caPem?: Buffer,
): Promise<string> {
  const file = join(dir, `${name}.kubeconfig`);
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name, cluster: { server, ...(caPem ? { 'certificate-authority-data': caPem.toString('base64') } : {}) } },
      ],
      users: [{ name: 'kubevisa', user: { token } }],
      contexts: [{ name, context: { cluster: name, user: 'kubevisa' } }],
      'current-context': name,
    }),
    { mode: 0o600 },
  );
  return file;
}

export async function startAttackEnv(): Promise<AttackEnv> {
  decoyRequests = [];
  auditEvents.length = 0;
  auditOffset = 0;
  auditPartial = '';
  const env = await startKubevisaEnv({
    tls: true,
    autoApproval: false,
    extraConfig: { scim: {} },
    accounts: [NOVA, KELVIN, HIDDEN_SAM],
  });
  try {
    ca = await readFile(join(env.dir, 'pki', 'ca.crt'));
    trustScimCa(ca);
    for (const ns of [GRANTED, OUTSIDE]) await env.kOk(['create', 'namespace', ns]);
    const decoy = await startDecoy(env.dir);
    const [gonePort] = await freePorts(1);
    env.config.clusters.push(
      { name: DECOY, kubeconfig: decoy.kubeconfig },
      { name: GONE, kubeconfig: await writeKubeconfig(env.dir, GONE, `https://127.0.0.1:${gonePort}`, 'gone-token') },
    );
    await env.startInProcess();
    const login = (who: (typeof people)[keyof typeof people]) => loginAs(env.serverUrl, who);
    const [admin, approver, cora, carl] = [
      await login(people.sam),
      await login(people.ann),
      await login(people.cora),
      await login(people.carl),
    ];
    const own = loadKubeConfig({ kubeconfigPath: env.config.clusters[0]!.kubeconfig }, CLUSTER).getCurrentUser();
    const signing = await loadOrCreateSigningKey(env.config.dataDir);
    const attackEnv: AttackEnv = {
      env,
      admin,
      approver,
      cora,
      carl,
      coraSa: `system:serviceaccount:kubevisa-visas:${serviceAccountName(people.cora.email)}`,
      carlSa: `system:serviceaccount:kubevisa-visas:${serviceAccountName(people.carl.email)}`,
      upstreamToken: own?.token ?? '',
      decoyToken: decoy.token,
      scimOkta: '',
      scimEntra: '',
      signingKey: { privateKey: signing.privateKey, keyId: signing.keyId },
      coraKubeconfig: await env.writeGatewayKubeconfig(cora.token, 'cora-attacks'),
      async stop() {
        await env.stop();
        const closed = new Promise<void>((resolve) => decoy.server.close(() => resolve()));
        decoy.server.closeAllConnections();
        await closed;
      },
    };
    current = attackEnv;
    auditFile = env.cp.auditLogFile;
    attackEnv.scimOkta = (await createScimToken(env.serverUrl, admin.token, 'okta')).token;
    attackEnv.scimEntra = (await createScimToken(env.serverUrl, admin.token, 'entra')).token;
    const engagement = await call('POST', '/api/v1/engagements', admin.token, {
      name: 'attacks',
      vendor: 'Acme',
      contractors: [people.cora.email, people.carl.email],
      sponsor: people.sam.email,
      endsAt: inDays(5),
      ceiling: {
        clusters: [CLUSTER, DECOY, GONE],
        namespacePatterns: ['atk-a', 'atk-b'],
        profiles: ['viewer', 'debugger'],
      },
      maxVisaDuration: '8h',
    });
    assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
    const grant = async (who: Login, cluster: string, profile: string, duration: string) => {
      const requested = await call('POST', '/api/v1/visas', who.token, {
        profile,
        cluster,
        namespaces: [GRANTED],
        duration,
        reason: 'attack table',
      });
      assert.equal(requested.status, 201, JSON.stringify(requested.body));
      const id = String(requested.body.id);
      const approved = await call('POST', `/api/v1/visas/${id}/approve`, approver.token, {});
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      return id;
    };
    // Cora's weaker visa ends first, so it is the one a first-match gateway would pick.
    const coraVisas = [await grant(cora, CLUSTER, 'debugger', '4h'), await grant(cora, CLUSTER, 'viewer', '1h')];
    await grant(carl, DECOY, 'viewer', '4h');
    await grant(carl, GONE, 'viewer', '4h');
    for (const id of coraVisas) {
      await eventually(
        `RoleBinding of visa ${id}`,
        20_000,
        async () => (await env.k(['get', 'rolebinding', `kubevisa-${id}`, '-n', GRANTED])).code === 0,
      );
    }
    // A binding kubevisa does not manage (a leftover, or a grant to a group every visa holder is in): Kubernetes RBAC
    // alone would let Cora read OUTSIDE, so only the gateway's own check stands between her and it.
    await env.kOk(['create', 'configmap', 'plans', '-n', OUTSIDE, '--from-literal=plan=confidential']);
    await env.kOk([
      'create',
      'rolebinding',
      'lingering',
      '-n',
      OUTSIDE,
      '--clusterrole=view',
      `--serviceaccount=kubevisa-visas:${serviceAccountName(people.cora.email)}`,
    ]);
    return attackEnv;
  } catch (error) {
    await env.stop();
    throw error;
  }
}
