/**
 * Helpers for the identity-lifecycle tests: a kubevisa server with the real OIDC provider and no cluster (for
 * SCIM contract tests that need no Kubernetes), and a small SCIM client that speaks like an identity provider.
 */
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevIdp, type DevIdp, type DevIdpAccount } from '../../src/dev/idp.ts';
import { freePorts } from '../../src/dev/cluster/control-plane.ts';
import { parseServerConfig, type ServerConfig } from '../../src/server/config.ts';
import { startServer, type RunningServer } from '../../src/server/main.ts';
import { api, loginAs, people, type ApiAnswer } from './kubevisa-env.ts';

export interface LightEnv {
  dir: string;
  idp: DevIdp;
  server: RunningServer;
  serverUrl: string;
  config: ServerConfig;
  /** An admin's kubevisa access token. */
  admin: string;
  stop(): Promise<void>;
}

/**
 * Puts the `scim` and `identity` sections into an environment's parsed config before its server starts: the
 * sync section needs the URL of a directory that can only start once the environment's IdP runs.
 */
export function withIdentitySections(config: ServerConfig, sections: { scim?: unknown; identity?: unknown }): void {
  if (sections.scim !== undefined) config.extensions.scim = sections.scim;
  if (sections.identity !== undefined) config.extensions.identity = sections.identity;
}

/**
 * The real server and OIDC provider, no cluster: enough for SCIM, tokens and login gating. `options.accounts` are
 * IdP accounts beside `people`; `options.oidc` adds fields to the server's `oidc` section.
 */
export async function startLightEnv(
  sections: { scim?: unknown; identity?: unknown } = { scim: {} },
  options: { accounts?: DevIdpAccount[]; oidc?: Record<string, unknown> } = {},
): Promise<LightEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-scim-'));
  const [port] = await freePorts(1);
  const serverUrl = `http://127.0.0.1:${port}`;
  const clientSecret = 'scim-client-secret';
  const idp = await startDevIdp({
    accounts: [...Object.values(people).map((p) => ({ ...p, name: p.sub })), ...(options.accounts ?? [])],
    clients: [{ clientId: 'kubevisa', clientSecret, redirectUris: [`${serverUrl}/api/v1/login/callback`] }],
  });
  const dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const config = parseServerConfig(
    {
      listen: { host: '127.0.0.1', port },
      dataDir,
      oidc: {
        issuer: idp.issuer,
        clientId: 'kubevisa',
        clientSecret,
        scopes: 'openid email profile offline_access groups',
        allowInsecureHttp: true,
        ...options.oidc,
      },
      roles: { adminGroups: ['kubevisa-admins'] },
      clusters: [],
      ...sections,
    },
    dir,
  );
  const server = await startServer(config);
  const admin = (await loginAs(serverUrl, people.sam)).token;
  return {
    dir,
    idp,
    server,
    serverUrl,
    config,
    admin,
    async stop() {
      await server.stop();
      await idp.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a SCIM token for `idp` through the admin API and returns the token. */
export async function createScimToken(
  serverUrl: string,
  adminToken: string,
  idp: string,
): Promise<{ id: string; token: string }> {
  const created = await api(serverUrl, 'POST', '/api/v1/scim/tokens', { token: adminToken, body: { idp } });
  if (created.status !== 201) throw new Error(`SCIM token not created: ${JSON.stringify(created.body)}`);
  return { id: String(created.body.id), token: String(created.body.token) };
}

export interface ScimAnswer {
  status: number;
  contentType: string;
  body: Record<string, unknown> & { Resources?: Record<string, unknown>[] };
  headers: Headers;
}

/** The CA a TLS test environment's server certificate chains to (`config.tls.caFile`). */
let scimCa: Buffer | undefined;
export function trustScimCa(ca: Buffer): void {
  scimCa = ca;
}

/** One SCIM request as an IdP sends it (`application/scim+json`). `body` may be a string to send raw bytes. */
export function scim(
  serverUrl: string,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ScimAnswer> {
  const url = new URL(`${serverUrl}/scim/v2${path}`);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const requestHeaders: Record<string, string> = {
    accept: 'application/scim+json',
    ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
    ...(payload !== undefined
      ? { 'content-type': 'application/scim+json; charset=utf-8', 'content-length': String(Buffer.byteLength(payload)) }
      : {}),
    ...headers,
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const request = send(
      url,
      {
        method,
        headers: requestHeaders,
        timeout: 20_000,
        ...(url.protocol === 'https:' && scimCa ? { ca: scimCa } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: ScimAnswer['body'] = {};
          if (text !== '') {
            try {
              parsed = JSON.parse(text) as ScimAnswer['body'];
            } catch {
              parsed = { raw: text };
            }
          }
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            if (typeof value === 'string') responseHeaders.set(name, value);
          }
          resolve({
            status: response.statusCode ?? 0,
            contentType: String(response.headers['content-type'] ?? ''),
            body: parsed,
            headers: responseHeaders,
          });
        });
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${method} ${path} timed out`)));
    request.on('error', reject);
    request.end(payload);
  });
}

export type { ApiAnswer };
