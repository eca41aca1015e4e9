/** The console's own API routes under `/api/v1/console/` (everything else it shows comes from the ordinary API). */
import { KubevisaError, Unauthenticated } from '../domain/errors.ts';
import type { ServerContext } from '../server/context.ts';
import { personView } from '../server/views.ts';
import { SECURITY_HEADERS } from './assets.ts';
import type { LiveEvents } from './live.ts';
import { CALLBACK_PATH, type ConsoleSessions } from './session.ts';

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
    const me = await context.access.me(caller);
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
    if (caller?.sessionId !== undefined) await context.sessions.logout(caller.sessionId, caller.actor);
    consoleSessions.signOut(request, reply);
    return reply.code(204).send();
  });

  app.get('/api/v1/console/events', (request, reply) => live.serve(request, reply));
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
