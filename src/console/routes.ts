/**
 * The console's own API routes under `/api/v1/console/`, declared like every API route (who may call each one is
 * part of its declaration); everything else the console shows comes from the ordinary API.
 */
import { InvalidInput, KubevisaError, Unauthenticated } from '../domain/errors.ts';
import type { Caller } from '../app/caller.ts';
import type { ServerContext } from '../server/context.ts';
import { personView } from '../app/views.ts';
import { SECURITY_HEADERS } from './assets.ts';
import type { LiveEvents } from './live.ts';
import { CALLBACK_PATH, type ConsoleSessions } from './session.ts';
import { AccessMatrices, alertsStatus, readRecording } from './insight.ts';
import type { AccessQuery } from './access-matrix.ts';
import { approvalQueue } from './queue.ts';
import { peopleOverview } from './people.ts';

const text = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength });
const queryOf = (properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, properties });
/** Rows one matrix page may hold. */
const MAX_PAGE_ROWS = 500;
/** Namespace columns one matrix page may hold. */
const MAX_PAGE_COLUMNS = 200;

export interface ConsoleRouteOptions {
  consoleSessions: ConsoleSessions;
  live: LiveEvents;
}

export function registerConsoleRoutes(context: ServerContext, options: ConsoleRouteOptions): void {
  const { consoleSessions, live } = options;

  context.route({
    method: 'GET',
    url: '/api/v1/console/login',
    summary: "Start the console's sign-in at the identity provider (a redirect)",
    auth: 'none',
    querystring: queryOf({ next: { type: 'string', maxLength: 200 } }),
    handler: (request, reply) => consoleSessions.startSignIn(request, reply),
  });

  context.route({
    method: 'GET',
    url: CALLBACK_PATH,
    summary: "Finish the console's sign-in: sets the session cookie",
    auth: 'none',
    querystring: queryOf({ code: text(200), state: text(200) }),
    handler: async (request, reply) => {
      try {
        return await consoleSessions.finishSignIn(request, reply);
      } catch (error) {
        const message = error instanceof KubevisaError && error.status < 500 ? error.message : 'the sign-in failed';
        for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
        return reply
          .code(error instanceof KubevisaError ? error.status : 500)
          .header('cache-control', 'no-store')
          .type('text/html; charset=utf-8')
          .send(
            `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kubevisa sign-in failed</title></head><body><main><h1>Sign-in failed</h1><p>${escapeHtml(message)}</p><p><a href="/api/v1/console/login">Sign in again</a></p></main></body></html>`,
          );
      }
    },
  });

  // Not signed in is an ordinary answer here (200, signedIn false), not a 401: the page asks before anyone signs in,
  // and a refused request would be an error in the browser's console.
  context.route({
    method: 'GET',
    url: '/api/v1/console/session',
    summary: "The console's session: the person, the CSRF token for changes, the CLI commands",
    auth: 'none',
    handler: async (request) => {
      const secret = consoleSessions.secretOf(request);
      if (secret === undefined) return { signedIn: false };
      const caller = await context.authenticate(request);
      const me = await context.people.me(caller);
      const serverUrl = context.url;
      return {
        signedIn: true,
        person: personView(me),
        csrfToken: consoleSessions.csrfToken(secret),
        serverUrl,
        expiryNoticeSeconds: context.config.policy.expiryNoticeSeconds,
        commands: {
          login: `kubevisa login --server ${serverUrl}`,
          kubeconfig: 'kubevisa kubeconfig',
        },
      };
    },
  });

  context.route({
    method: 'POST',
    url: '/api/v1/console/logout',
    summary: 'Sign out of the console: ends the kubevisa session and drops the cookie',
    auth: 'none',
    handler: async (request, reply) => {
      let caller: Caller | undefined;
      try {
        caller = await context.authenticate(request);
      } catch (error) {
        if (!(error instanceof Unauthenticated)) throw error;
      }
      if (caller?.sessionId !== undefined) await context.sessions.logout(caller);
      consoleSessions.signOut(request, reply);
      return reply.code(204).send();
    },
  });

  context.route({
    method: 'GET',
    url: '/api/v1/console/events',
    summary: 'Live updates (Server-Sent Events): which kind of thing changed',
    auth: 'session',
    handler: (request, reply, caller) => live.serve(caller, reply),
  });

  context.route({
    method: 'GET',
    url: '/api/v1/console/queue',
    summary:
      "Pending requests the caller may see, each with the policy's verdict on approving it and the profile's findings",
    auth: 'session',
    handler: (_request, _reply, caller) => approvalQueue(context, caller),
  });

  context.route({
    method: 'GET',
    url: '/api/v1/console/people',
    summary: 'Every person with what the identity providers say of them and their sessions (no secrets)',
    auth: 'auditor',
    refusal: "read people's sessions and identity provider status",
    handler: () => peopleOverview(context),
  });

  const matrices = new AccessMatrices(context);
  context.route({
    method: 'GET',
    url: '/api/v1/console/access/:cluster',
    summary: 'Who has access to a cluster: one page of the subjects × namespaces matrix (rows and columns paged)',
    auth: 'staff',
    refusal: 'see who has access',
    querystring: queryOf({
      q: text(320),
      namespace: text(253),
      only: { type: 'string', enum: ['findings', 'people', 'unmanaged'] },
      system: { type: 'string', enum: ['true', 'false'] },
      refresh: { type: 'string', enum: ['true', 'false'] },
      offset: { type: 'string', pattern: '^[0-9]{1,7}$' },
      limit: { type: 'string', pattern: '^[0-9]{1,3}$' },
      columnOffset: { type: 'string', pattern: '^[0-9]{1,6}$' },
      columnLimit: { type: 'string', pattern: '^[0-9]{1,3}$' },
    }),
    handler: async (request) => {
      const q = request.query as Record<string, string | undefined>;
      const accessQuery: AccessQuery = {
        offset: Number(q['offset'] ?? 0),
        limit: Math.min(MAX_PAGE_ROWS, Math.max(1, Number(q['limit'] ?? 100))),
        ...(q['q'] ? { q: q['q'] } : {}),
        ...(q['namespace'] ? { namespace: q['namespace'] } : {}),
        ...(q['only'] ? { only: q['only'] as AccessQuery['only'] } : {}),
        ...(q['system'] === 'true' ? { system: true } : {}),
        ...(q['columnOffset'] ? { columnOffset: Number(q['columnOffset']) } : {}),
        ...(q['columnLimit'] ? { columnLimit: Math.min(MAX_PAGE_COLUMNS, Math.max(1, Number(q['columnLimit']))) } : {}),
      };
      const { cluster } = request.params as { cluster: string };
      return matrices.page(cluster, accessQuery, q['refresh'] === 'true');
    },
  });
  context.route({
    method: 'GET',
    url: '/api/v1/console/access/:cluster/cell',
    summary: 'What stands behind one cell of the matrix: bindings, roles, permissions, findings',
    auth: 'staff',
    refusal: 'see who has access',
    querystring: queryOf({ subject: text(400), namespace: { type: 'string', maxLength: 253 } }),
    handler: async (request) => {
      const q = request.query as { subject?: string; namespace?: string };
      if (!q.subject) throw new InvalidInput('say whose access to show: ?subject=User:alice@example.com&namespace=…');
      const { cluster } = request.params as { cluster: string };
      return matrices.cell(cluster, q.subject, q.namespace ?? '');
    },
  });

  context.route({
    method: 'GET',
    url: '/api/v1/console/recordings/:seq',
    summary: 'A recorded exec session (asciicast v2) named by the audit event that ended it',
    auth: 'auditor',
    refusal: 'replay recorded sessions',
    params: { type: 'object', properties: { seq: { type: 'string', pattern: '^[0-9]{1,15}$' } } },
    handler: async (request, reply) => {
      const { seq } = request.params as { seq: string };
      const cast = await readRecording(context, Number(seq));
      return reply.type('application/x-asciicast; charset=utf-8').header('cache-control', 'no-store').send(cast);
    },
  });

  context.route({
    method: 'GET',
    url: '/api/v1/console/status',
    summary: 'Where alerts go and how monitoring is set up (no secrets)',
    auth: 'admin',
    refusal: 'see the alerting configuration',
    handler: async () => ({ alerts: alertsStatus(context) }),
  });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
