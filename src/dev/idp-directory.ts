/**
 * The directory of the development identity provider (src/auth/dev-idp.ts), for the sync (`provider: dev-idp`).
 *
 * Two halves: `serveDevIdpDirectory` runs beside a DevIdp (tests, the demo) and answers `GET /users` with its
 * accounts, their status and groups; disabling an account through it disables it at the IdP too (logins and
 * refresh tokens fail), as an admin console would. `createDevIdpDirectory` is the server's client for that API.
 *
 * The wire format, `{ "users": [{ "id", "email", "active", "groups" }] }`, is the smallest that carries what the
 * sync needs; docs/identity.md maps Okta, Entra ID and Keycloak answers onto it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { DevIdp, DevIdpAccount } from './idp.ts';
import { constantTimeEqual } from '../auth/session-secrets.ts';
import { DirectoryUnavailable, type DirectoryUser, type IdentityDirectory } from '../identity/directory.ts';
import { ProtoSafeIncomingMessage } from '../server/safe-incoming.ts';

export interface DevIdpDirectoryServer {
  url: string;
  /** The bearer token the API wants (a test value). */
  token: string;
  /** Disables the account at the IdP and lists it as inactive. */
  disableAccount(sub: string): void;
  /** Changes an account's groups in the directory (the IdP's `groups` claim is fixed at start-up). */
  setGroups(sub: string, groups: string[]): void;
  /** Leaves the account out of the directory, as if it had been deleted. */
  removeAccount(sub: string): void;
  stop(): Promise<void>;
}

export async function serveDevIdpDirectory(options: {
  idp: DevIdp;
  accounts: Pick<DevIdpAccount, 'sub' | 'email' | 'groups'>[];
  token?: string;
}): Promise<DevIdpDirectoryServer> {
  const token = options.token ?? randomBytes(24).toString('base64url');
  const entries = new Map(
    options.accounts.map((a) => [
      a.sub,
      { id: a.sub, email: a.email.toLowerCase(), active: true, groups: [...a.groups] },
    ]),
  );
  const server = createServer(
    { IncomingMessage: ProtoSafeIncomingMessage },
    (request: IncomingMessage, response: ServerResponse) => {
      const send = (status: number, body: unknown) => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(body));
      };
      const presented = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '';
      if (!constantTimeEqual(presented, token)) return send(401, { error: 'a valid bearer token is required' });
      if (request.method !== 'GET' || new URL(request.url ?? '/', 'http://x').pathname !== '/users') {
        return send(404, { error: 'only GET /users is served' });
      }
      return send(200, { users: [...entries.values()] });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const entry = (sub: string) => {
    const found = entries.get(sub);
    if (!found) throw new Error(`no account ${sub} in the dev IdP directory`);
    return found;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    disableAccount(sub) {
      entry(sub).active = false;
      options.idp.disableAccount(sub);
    },
    setGroups(sub, groups) {
      entry(sub).groups = [...groups];
    },
    removeAccount(sub) {
      entry(sub);
      entries.delete(sub);
      options.idp.disableAccount(sub);
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads the dev IdP's directory API. */
export function createDevIdpDirectory(options: { url: string; token?: string }): IdentityDirectory {
  return {
    name: 'dev-idp',
    async listUsers(signal) {
      let response: Response;
      try {
        response = await fetch(`${options.url}/users`, {
          headers: {
            accept: 'application/json',
            ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          },
          signal,
        });
      } catch (error) {
        throw new DirectoryUnavailable(
          `cannot reach the dev IdP directory at ${options.url}: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
      if (!response.ok) {
        throw new DirectoryUnavailable(
          `the dev IdP directory answered HTTP ${response.status}${response.status === 401 ? ': check identity.sync.token' : ''}`,
        );
      }
      const body: unknown = await response.json();
      const users = isRecord(body) ? body.users : undefined;
      if (!Array.isArray(users)) throw new DirectoryUnavailable('the dev IdP directory answered without a users list');
      return users.map((user: unknown, index): DirectoryUser => {
        if (
          !isRecord(user) ||
          typeof user.id !== 'string' ||
          typeof user.email !== 'string' ||
          typeof user.active !== 'boolean' ||
          !Array.isArray(user.groups) ||
          user.groups.some((g) => typeof g !== 'string')
        ) {
          throw new DirectoryUnavailable(
            `the dev IdP directory's users[${index}] is not { id, email, active, groups }`,
          );
        }
        return { id: user.id, email: user.email.toLowerCase(), active: user.active, groups: user.groups as string[] };
      });
    },
  };
}
