/**
 * `kubevisa logout`: ends the session on the server (DELETE /api/v1/sessions/current), then removes
 * session.json and every cached cluster token. The local copies go even when the server cannot be reached,
 * and the command then exits 1 and says until when the server-side session stays valid.
 */
import { connect } from '../api-client.ts';
import { configDir, removeCredentials, removeSession, readSession } from '../config.ts';
import { ApiError, NotLoggedIn } from '../errors.ts';
import type { CommandRun } from '../framework.ts';
import { noPositionals } from '../options.ts';

export const run: CommandRun = async ({ positionals, io }) => {
  noPositionals(positionals, 'logout');
  const dir = configDir();
  const session = await readSession(dir);
  if (!session) {
    await removeCredentials(dir);
    io.out('You were not logged in; nothing to do.\n');
    return 0;
  }
  let failure: Error | undefined;
  try {
    const client = await connect({ configDir: dir, server: session.server });
    await client.call('DELETE', '/api/v1/sessions/current');
  } catch (error) {
    // An already-ended session is the outcome logout wants; anything else is reported after the local
    // copies are gone (they must go either way).
    const ended = error instanceof NotLoggedIn || (error instanceof ApiError && error.status === 401);
    if (!ended) failure = error instanceof Error ? error : new Error(String(error));
  }
  await removeSession(dir);
  await removeCredentials(dir);
  if (failure) {
    const code = (failure as { code?: unknown }).code;
    io.err(
      `kubevisa: removed your session and cached tokens from this machine, but could not end the session on ${session.server}: ${failure.message}${typeof code === 'string' ? ` [${code}]` : ''}. The server keeps it until ${session.sessionExpiresAt}; ask an admin to end it sooner if the secret may have been copied.\n`,
    );
    return 1;
  }
  io.out(`Logged out of ${session.server} (${session.person.email}).\n`);
  return 0;
};
