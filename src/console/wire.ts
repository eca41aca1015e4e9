/**
 * The web console as a capability: its sign-in (cookie sessions over kubevisa's own sessions), its live updates,
 * the console-only API routes, and the built front end at `/`.
 */
import type { ServerContext } from '../server/context.ts';
import { serveConsoleAssets } from './assets.ts';
import { LiveEvents } from './live.ts';
import { ConsoleSessions } from './session.ts';
import { registerConsoleRoutes } from './routes.ts';

export async function wireConsole(context: ServerContext): Promise<void> {
  const consoleSessions = new ConsoleSessions({ sessions: context.sessions, url: context.url, now: context.now });
  context.app.addHook('onRequest', consoleSessions.bridge);
  const live = new LiveEvents(context);
  registerConsoleRoutes(context, { consoleSessions, live });
  serveConsoleAssets(context.app);
}
