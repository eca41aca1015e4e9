/** The console's own API routes under `/api/v1/console/` (everything else it shows comes from the ordinary API). */
import { Forbidden, InvalidInput, KubevisaError, Unauthenticated } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { personView } from '../app/views.ts';
import { SECURITY_HEADERS } from './assets.ts';
import type { LiveEvents } from './live.ts';
import { CALLBACK_PATH, type ConsoleSessions } from './session.ts';
import { AccessMatrices, alertsStatus, readRecording, requireAuditReader, requireStaff } from './insight.ts';
import type { AccessQuery } from './access-matrix.ts';

const text = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength });
const query = (properties: Record<string, unknown>) => ({
  querystring: { type: 'object', additionalProperties: false, properties },
});
/** Rows one matrix page may hold. */
const MAX_PAGE_ROWS = 500;

export interface ConsoleRouteOptions {
  consoleSessions: ConsoleSessions;
  live: LiveEvents;
}

export function registerConsoleRoutes(context: ServerContext, options: ConsoleRouteOptions): void {
  const { app } = context;
  const { consoleSessions, live } = options;

  app.get(
    '/api/v1/console/login',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { next: { type: 'string', maxLength: 200 } },
        },
      },
    },
    (request, reply) => consoleSessions.startSignIn(request, reply),
  );

  app.get(CALLBACK_PATH, async (request, reply) => {
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
  });

  // Not signed in is an ordinary answer here (200, signedIn false), not a 401: the page asks before anyone signs in,
  // and a refused request would be an error in the browser's console.
  app.get('/api/v1/console/session', async (request) => {
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
  });

  app.post('/api/v1/console/logout', async (request, reply) => {
    let caller;
    try {
      caller = await context.authenticate(request);
    } catch (error) {
      if (!(error instanceof Unauthenticated)) throw error;
    }
    if (caller?.sessionId !== undefined) await context.sessions.logout(caller);
    consoleSessions.signOut(request, reply);
    return reply.code(204).send();
  });

  app.get('/api/v1/console/events', (request, reply) => live.serve(request, reply));

  const matrices = new AccessMatrices(context);
  app.get(
    '/api/v1/console/access/:cluster',
    {
      schema: query({
        q: text(320),
        namespace: text(253),
        only: { type: 'string', enum: ['findings', 'people', 'unmanaged'] },
        system: { type: 'string', enum: ['true', 'false'] },
        refresh: { type: 'string', enum: ['true', 'false'] },
        offset: { type: 'string', pattern: '^[0-9]{1,7}$' },
        limit: { type: 'string', pattern: '^[0-9]{1,3}$' },
      }),
    },
    async (request) => {
      requireStaff(await context.authenticate(request), 'see who has access');
      const q = request.query as Record<string, string | undefined>;
      const accessQuery: AccessQuery = {
        offset: Number(q['offset'] ?? 0),
        limit: Math.min(MAX_PAGE_ROWS, Math.max(1, Number(q['limit'] ?? 100))),
        ...(q['q'] ? { q: q['q'] } : {}),
        ...(q['namespace'] ? { namespace: q['namespace'] } : {}),
        ...(q['only'] ? { only: q['only'] as AccessQuery['only'] } : {}),
        ...(q['system'] === 'true' ? { system: true } : {}),
      };
      const { cluster } = request.params as { cluster: string };
      return matrices.page(cluster, accessQuery, q['refresh'] === 'true');
    },
  );
  app.get(
    '/api/v1/console/access/:cluster/cell',
    { schema: query({ subject: text(400), namespace: { type: 'string', maxLength: 253 } }) },
    async (request) => {
      requireStaff(await context.authenticate(request), 'see who has access');
      const q = request.query as { subject?: string; namespace?: string };
      if (!q.subject) throw new InvalidInput('say whose access to show: ?subject=User:alice@example.com&namespace=…');
      const { cluster } = request.params as { cluster: string };
      return matrices.cell(cluster, q.subject, q.namespace ?? '');
    },
  );

  app.get('/api/v1/console/recordings/:seq', async (request, reply) => {
    requireAuditReader(await context.authenticate(request), 'replay recorded sessions');
    const { seq } = request.params as { seq: string };
    if (!/^[0-9]{1,15}$/.test(seq)) throw new InvalidInput('a recording is named by the seq of its audit event');
    const cast = await readRecording(context, Number(seq));
    return reply.type('application/x-asciicast; charset=utf-8').header('cache-control', 'no-store').send(cast);
  });

  app.get('/api/v1/console/status', async (request) => {
    const caller = await context.authenticate(request);
    if (!caller.actor.roles.includes('admin')) throw new Forbidden('only admins may see the alerting configuration');
    return { alerts: alertsStatus(context) };
  });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
