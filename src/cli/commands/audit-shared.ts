/**
 * What the `kubevisa audit …` commands share: the filter options as API query parameters, the table of events,
 * and a streaming GET for exports (the API client reads whole answers into memory, with a size limit; an export
 * of the trail can be gigabytes and must go to its file as it arrives, with backpressure).
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readFile } from 'node:fs/promises';
import { KubevisaError } from '../../domain/errors.ts';
import { formatInstant, parseDuration, parseInstant } from '../../domain/time.ts';
import type { ApiClient } from '../api-client.ts';
import { ApiError, NotLoggedIn, ServerUnreachable, UnexpectedResponse } from '../errors.ts';
import { UsageError, type ParsedValues } from '../framework.ts';
import { optionalString } from '../options.ts';

/** An audit event as the API returns it. */
export interface AuditEventJson {
  seq: number;
  at: number;
  time: string;
  actor: string;
  action: string;
  sessionId?: string;
  visaId?: string;
  engagementId?: string;
  personId?: string;
  cluster?: string;
  namespace?: string;
  outcome: string;
  reason?: string;
  details: Record<string, unknown>;
  source?: { address: string; userAgent?: string };
  prevHash: string;
  hash: string;
}

export interface AuditPage {
  items: AuditEventJson[];
  next?: { after?: number; before?: number };
}

/** A checkpoint as the API returns it (`time` is for people; it is not part of what was signed). */
export interface CheckpointJson {
  id: number;
  seq: number;
  hash: string;
  at: number;
  time: string;
  keyId: string;
  signature: string;
}

/** The options every filtering command takes; each is the API query parameter of the same name. */
const FILTERS = ['person', 'visa', 'engagement', 'cluster', 'namespace', 'action'];

/**
 * `--since`/`--until` take an RFC 3339 time or a duration meaning "that long ago" (`--since 24h`). Both are
 * checked here, before anything is sent.
 */
function timeOption(values: ParsedValues, name: string, now: number): string | undefined {
  const text = optionalString(values, name);
  if (text === undefined) return undefined;
  try {
    if (/^[0-9]+[dhms]/.test(text) && !text.includes('T'))
      return formatInstant(now - parseDuration(text, `--${name}`) * 1000);
    return formatInstant(parseInstant(text, `--${name}`));
  } catch (error) {
    if (error instanceof KubevisaError) {
      throw new UsageError(
        `--${name} '${text}': give an RFC 3339 time (2026-03-02T09:00:00Z) or how long ago (24h, 7d)`,
        {
          cause: error,
        },
      );
    }
    throw error;
  }
}

/** The API query for the filter options given. */
export function filterQuery(values: ParsedValues, now = Date.now()): Record<string, string | undefined> {
  const query: Record<string, string | undefined> = {};
  for (const name of FILTERS) query[name] = optionalString(values, name);
  query.since = timeOption(values, 'since', now);
  query.until = timeOption(values, 'until', now);
  return query;
}

/** A whole number option within bounds (`-n 20`, `--limit 500`). */
export function countOption(values: ParsedValues, name: string, fallback: number, max: number): number {
  const text = optionalString(values, name);
  if (text === undefined) return fallback;
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`--${name} must be a whole number from 1 to ${max}; got '${text}'`);
  }
  return Number(text);
}

export function eventTable(events: AuditEventJson[]): { columns: string[]; rows: string[][] } {
  return {
    columns: ['SEQ', 'TIME', 'ACTOR', 'ACTION', 'OUTCOME', 'WHERE', 'VISA', 'REASON'],
    rows: events.map((event) => [
      String(event.seq),
      event.time,
      event.actor,
      event.action,
      event.outcome,
      [event.cluster, event.namespace].filter((part) => part !== undefined).join('/'),
      event.visaId ?? '',
      (event.reason ?? '').slice(0, 60),
    ]),
  };
}

/**
 * GETs `path` and pipes the answer's body into `sink` as it arrives. Errors as the API client's: problem+json
 * answers become ApiError, 401 NotLoggedIn, transport failures ServerUnreachable. A connection that breaks
 * mid-body rejects, leaving what arrived in `sink` (an export cut short: verification reports it as torn).
 */
export async function streamGet(
  client: ApiClient,
  path: string,
  query: Record<string, string | undefined>,
  sink: Writable,
): Promise<void> {
  const url = new URL(client.server + path);
  for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, value);
  const token = await client.accessToken();
  const headers = {
    accept: 'application/x-ndjson, application/problem+json',
    'user-agent': 'kubevisa-cli',
    authorization: `Bearer ${token.token}`,
  };
  const ca = client.caFile === undefined ? undefined : await readFile(client.caFile, 'utf8');
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const outgoing = request(url, { method: 'GET', headers, agent: false, ...(ca === undefined ? {} : { ca }) });
  outgoing.end();
  let response: IncomingMessage;
  try {
    [response] = (await once(outgoing, 'response')) as [IncomingMessage];
  } catch (error) {
    throw new ServerUnreachable(`cannot reach the kubevisa server at ${client.server}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const status = response.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    let problem: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(body);
      if (typeof parsed === 'object' && parsed !== null) problem = parsed as Record<string, unknown>;
    } catch (error) {
      throw new UnexpectedResponse(
        `the server at ${client.server} answered GET ${url.pathname} with HTTP ${status} and no problem+json error (${(error as Error).message})`,
      );
    }
    const detail = typeof problem?.detail === 'string' ? problem.detail : `HTTP ${status}`;
    if (status === 401)
      throw new NotLoggedIn(
        `the server at ${client.server} no longer accepts your login (${detail}); run 'kubevisa login'`,
      );
    throw new ApiError(detail, {
      status,
      code: typeof problem?.code === 'string' ? problem.code : `ERR_HTTP_${status}`,
      problem: problem ?? {},
    });
  }
  await pipeline(response, sink, { end: false });
}
