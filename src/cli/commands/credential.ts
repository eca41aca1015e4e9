/**
 * `kubevisa credential --cluster NAME [--direct]`: kubectl's exec credential plugin. It prints an
 * ExecCredential (client.authentication.k8s.io/v1) with a token that lives minutes.
 *
 * kubectl runs this for every command (and again after a 401), so the common path is one small file read:
 *   - gateway mode (default): the kubevisa access token cached in session.json, which the gateway accepts;
 *   - direct mode: the TokenRequest token cached in credentials/<cluster>.json.
 * A cached token is used while it stays valid for at least another minute; otherwise a new one is fetched
 * (the API client is imported only then). This module's static imports must stay Node built-ins and the
 * CLI's own small modules: the import-graph test fails if yaml, @kubernetes/client-node or any other
 * package becomes reachable.
 *
 * Direct mode and a revoke. A revoke deletes the RoleBindings, not the ServiceAccount, so a cached direct token
 * still authenticates and kubectl only shows a raw RBAC refusal; kubectl tells the plugin nothing about why it
 * runs (KUBERNETES_EXEC_INFO carries only `interactive` and the cluster). What it does is run the plugin again at
 * once after a 401, and a person runs the refused command again. So a direct call that comes within
 * RECHECK_WITHIN_MS of the previous one for the same cluster (remembered in credentials/<cluster>.last-call,
 * which holds no secret) asks the server instead of the cache: the server then either issues a fresh token or
 * refuses in the visa's own words (who revoked it, when, why, how to ask again). On a refusal nothing is printed
 * on stdout, the cached token is removed and the exit status is 1.
 *
 * Errors go to stderr and exit 1; kubectl shows that text to the person.
 */
import type { ClusterCredentialJson } from '../api-types.ts';
import {
  checkClusterName,
  configDir,
  readCredential,
  readLastCall,
  readSession,
  removeCredential,
  writeCredential,
  writeLastCall,
} from '../config.ts';
import { ApiError, NotLoggedIn, ServerTimeout, ServerUnreachable, UnexpectedResponse } from '../errors.ts';
import { UsageError, type CommandRun, type Io } from '../framework.ts';

/** A cached token is handed out only while it stays valid for at least this long (milliseconds). */
const MIN_REMAINING_MS = 60_000;
/** kubectl waits for the plugin; a stuck server should not hang it for long (milliseconds). */
const FETCH_TIMEOUT_MS = 20_000;
/**
 * A direct call this soon after the previous one for the same cluster asks the server rather than the cache
 * (milliseconds): kubectl's own re-run after a 401 comes within a second, a person's retry of a refused command
 * within seconds. In a burst of kubectl commands each one asks the server, which the audit trail then shows.
 */
export const RECHECK_WITHIN_MS = 30_000;

export const run: CommandRun = async ({ values, positionals, io }) => {
  // Options only through options.ts would load the API client on kubectl's every call: the same rule, inline.
  const given = typeof values.cluster === 'string' ? values.cluster : undefined;
  if (positionals.length > 1 || (positionals[0] !== undefined && given !== undefined && positionals[0] !== given)) {
    throw new UsageError(
      `unexpected argument '${positionals.at(-1)}': use kubevisa credential NAME (or --cluster NAME), the cluster once`,
    );
  }
  const named = positionals[0] ?? given;
  const cluster = named !== undefined ? checkClusterName(named) : undefined;
  if (cluster === undefined) {
    throw new UsageError('missing --cluster NAME: the cluster kubectl wants a token for (see kubevisa kubeconfig)');
  }
  const dir = configDir();
  const now = Date.now();
  const credential = values.direct === true ? await directToken(dir, cluster, now, io) : await gatewayToken(dir, now);
  io.out(
    JSON.stringify({
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: { token: credential.token, expirationTimestamp: credential.expirationTimestamp },
    }) + '\n',
  );
  return 0;
};

interface Token {
  token: string;
  /** RFC 3339. */
  expirationTimestamp: string;
}

function stillValid(expirationTimestamp: string | undefined, now: number): boolean {
  return expirationTimestamp !== undefined && Date.parse(expirationTimestamp) - now >= MIN_REMAINING_MS;
}

/** The kubevisa access token: the gateway verifies it and impersonates the person's ServiceAccount. */
async function gatewayToken(dir: string, now: number): Promise<Token> {
  const session = await readSession(dir);
  if (!session) throw notLoggedIn();
  if (session.accessToken && stillValid(session.accessTokenExpiresAt, now)) {
    return { token: session.accessToken, expirationTimestamp: session.accessTokenExpiresAt as string };
  }
  const { connect } = await import('../api-client.ts');
  const client = await connect({ configDir: dir, server: session.server, timeoutMs: FETCH_TIMEOUT_MS });
  const fresh = await client.accessToken();
  return { token: fresh.token, expirationTimestamp: rfc3339(fresh.expiresAtMs) };
}

/** A TokenRequest token for the person's ServiceAccount in the cluster, from the cache or the server. */
async function directToken(dir: string, cluster: string, now: number, io: Io): Promise<Token> {
  const cached = await readCredential(dir, cluster);
  const previousCall = await readLastCall(dir, cluster);
  await writeLastCall(dir, cluster, now);
  // A previous call dated after now means the clock moved back: ask the server rather than guess.
  const repeated = previousCall !== undefined && previousCall > now - RECHECK_WITHIN_MS;
  const usable = cached !== undefined && stillValid(cached.expirationTimestamp, now) ? cached : undefined;
  if (usable && !repeated) return usable;

  const session = await readSession(dir);
  if (!session) {
    await removeCredential(dir, cluster);
    throw notLoggedIn();
  }
  const { connect } = await import('../api-client.ts');
  let answer: ClusterCredentialJson | undefined;
  let server: string;
  try {
    const client = await connect({ configDir: dir, server: session.server, timeoutMs: FETCH_TIMEOUT_MS });
    server = client.server;
    answer = await client.post<ClusterCredentialJson>(`/api/v1/clusters/${encodeURIComponent(cluster)}/credential`);
  } catch (error) {
    if (error instanceof NotLoggedIn || (error instanceof ApiError && error.status >= 400 && error.status < 500)) {
      // The server refused: the cached token must not be handed out again, by this call or the next.
      await removeCredential(dir, cluster);
      throw error;
    }
    if (usable && (error instanceof ServerUnreachable || error instanceof ServerTimeout)) {
      io.err(
        `kubevisa: could not ask the kubevisa server about cluster '${cluster}' (${error.message}); using the cached token, valid until ${usable.expirationTimestamp}\n`,
      );
      return usable;
    }
    throw error;
  }
  if (
    typeof answer?.token !== 'string' ||
    answer.token === '' ||
    typeof answer.expirationTimestamp !== 'string' ||
    !Number.isFinite(Date.parse(answer.expirationTimestamp))
  ) {
    throw new UnexpectedResponse(
      `the server at ${server} answered POST /api/v1/clusters/${cluster}/credential without a token and an RFC 3339 expirationTimestamp; is it a kubevisa server of the same version as this CLI?`,
    );
  }
  await writeCredential(dir, {
    server,
    cluster,
    token: answer.token,
    expirationTimestamp: answer.expirationTimestamp,
  });
  return { token: answer.token, expirationTimestamp: answer.expirationTimestamp };
}

function notLoggedIn(): NotLoggedIn {
  return new NotLoggedIn("you are not logged in to kubevisa: run 'kubevisa login', then try kubectl again");
}

/** RFC 3339 in UTC without milliseconds, the form Kubernetes writes. */
function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
