/**
 * The gateway: `https://<kubevisa>/clusters/<name>/…` → kube-apiserver, as the person's ServiceAccount.
 * Per request: refuse non-canonical paths, authenticate the kubevisa access token (cached after the first
 * signature check, session re-checked every few seconds), rate-limit per person, check the visa from the
 * in-memory index, then relay with kubevisa's own credential and `Impersonate-User`, streaming both ways with
 * no per-chunk work. Upgrades (exec, attach, port-forward) are spliced only after upstream answers 101.
 * Every open request is registered so that ending a visa closes it at once.
 */
import { request as httpsRequest, type Agent } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import type { NewAuditEvent, Store } from '../store/store.ts';
import { AuditBatcher, storeSink, type AuditSink } from './audit-writer.ts';
import type { GrantIndex, PersonEntry } from './grants.ts';
import { allowedUpgrade, downstreamRawHeaders, rawHeader, hasBearerSubprotocol, upstreamHeaders } from './headers.ts';
import {
  AddressLimiter,
  clientKey,
  RateLimiter,
  WorkCeiling,
  type AddressLimits,
  type WorkCeilingLimits,
} from './rate-limit.ts';
import { RefusalSampler } from './refusals.ts';
import {
  auditedQuery,
  NonCanonicalPath,
  queryFlag,
  requestInfo,
  splitGatewayUrl,
  type RequestInfo,
} from './request-info.ts';
import { StreamRegistry, type EndNotice, type OpenStream } from './streams.ts';
import { CLOSE_FRAME, channelFrame, FrameBoundary, startRecording, type Recording } from './recording.ts';
import { randomUUID } from 'node:crypto';
import { Unauthenticated } from '../domain/errors.ts';
import { clipText } from '../domain/validate.ts';
import type { Visa } from '../domain/model.ts';
import { join } from 'node:path';

export interface UpstreamCluster {
  name: string;
  hostname: string;
  port: number;
  /** Value of the Host header upstream. */
  host: string;
  ca?: Buffer;
  servername?: string;
  rejectUnauthorized: boolean;
  agent: Agent;
  /** For long-running requests (watch, logs -f): one connection each, closed when they end. */
  streamAgent: Agent;
  /** kubevisa's own bearer token for this cluster (re-read when it is renewed). */
  token(): string;
}

export interface GatewayOptions {
  store: Store;
  tokens: TokenIssuer;
  index: GrantIndex;
  clusters: Map<string, UpstreamCluster>;
  /** Per person; default 50 requests/s sustained, bursts of 100. */
  rateLimit?: { ratePerSecond: number; burst: number };
  /** Per client address, checked before any other work (see AddressLimits for the defaults). */
  addressLimits?: Partial<AddressLimits>;
  /** Across all addresses, for requests without a token the gateway already verified (see WorkCeilingLimits). */
  unauthenticatedCeiling?: Partial<WorkCeilingLimits>;
  /** Audit events waiting to be written at most before new requests are refused with 503 (default 20 000). */
  maxQueuedAuditEvents?: number;
  /** How often counted refusals are written as one summary per source, in ms (default 60 000). */
  refusalSummaryIntervalMs?: number;
  /** Largest request body relayed, in bytes (default 8 MiB). */
  maxBodyBytes?: number;
  /** How long a verified token is trusted before its session is checked again, in ms (default 5000). */
  sessionRecheckMs?: number;
  now?: () => number;
  onAuditError?: (error: Error) => void;
  /** Told about failures of the gateway itself (default: a line on stderr); clients only hear that it failed. */
  onFailure?: (error: Error) => void;
  /** Where request events are written; default the store, in this thread. */
  auditSink?: AuditSink;
  /** Where exec/attach recordings (asciicast v2) are written, for profiles that ask for recording. */
  recordingsDir?: string;
  /** Told about every relayed request when it ends (last use, metrics). */
  onRequest?: (request: { personId: string; visaId: string; cluster: string; status: number; at: number }) => void;
  /** Told about every refusal of a request for a configured cluster (metrics; not a use of any visa). */
  onRefusal?: (refusal: { cluster: string; status: number }) => void;
  /** Told about every stream the gateway closed because access ended. */
  onStreamCut?: (cut: { cluster: string; visaId: string; reason: string }) => void;
}

interface Authenticated {
  personId: string;
  email: string;
  sessionId: string;
}

interface CachedToken extends Authenticated {
  expiresAt: number;
  checkedAt: number;
}

const MAX_CACHED_TOKENS = 10_000;

/** A request the gateway answers itself, with a refusal. */
interface Refused {
  ok: false;
  status: number;
  reason: string;
  message: string;
  retryAfter?: number;
  auth?: Authenticated;
  cluster?: string;
  info?: RequestInfo;
  /**
   * Anyone can cause it without a valid token (a bad path, an unknown cluster, no token, a refused upgrade): it counts
   * against the client address's refusal budget.
   */
  anonymous?: boolean;
  /** It can come in floods (429, 503): counted and sampled per source rather than written one by one. */
  sampled?: boolean;
  /**
   * The address's budget is already settled: refused by the address check itself (nothing was taken), or after
   * admission (what was taken has been given back).
   */
  settled?: boolean;
}

export class Gateway {
  readonly streams = new StreamRegistry((s) => {
    const allowed = this.stillAdmits(s, this.now());
    if (!allowed) this.options.onStreamCut?.({ cluster: s.cluster, visaId: s.visaId, reason: 'access ended' });
    return allowed;
  });
  private readonly options: GatewayOptions;
  private readonly now: () => number;
  private readonly tokenCache = new Map<string, CachedToken>();
  private readonly limiter: RateLimiter;
  private readonly addresses: AddressLimiter;
  private readonly ceiling: WorkCeiling;
  /** Requests being checked that hold a unit of the ceiling on unauthenticated work. */
  private readonly holdingCeiling = new WeakSet<IncomingMessage>();
  private readonly audit: AuditBatcher;
  private readonly refusals: RefusalSampler;
  private readonly summaryTimer: NodeJS.Timeout;
  private readonly maxBodyBytes: number;
  /** Relayed requests and streams whose audit event is not yet queued (shutdown waits for them). */
  private unrecorded = 0;
  private stopping = false;

  constructor(options: GatewayOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.limiter = new RateLimiter(options.rateLimit ?? { ratePerSecond: 50, burst: 100 });
    this.maxBodyBytes = options.maxBodyBytes ?? 8 * 1024 * 1024;
    this.addresses = new AddressLimiter(options.addressLimits);
    this.ceiling = new WorkCeiling(options.unauthenticatedCeiling);
    this.audit = new AuditBatcher({
      sink: options.auditSink ?? storeSink(options.store),
      ...(options.maxQueuedAuditEvents !== undefined ? { maxQueued: options.maxQueuedAuditEvents } : {}),
      onError:
        options.onAuditError ?? ((e) => process.stderr.write(`kubevisa gateway: audit write failed: ${e.message}\n`)),
    });
    this.refusals = new RefusalSampler({
      offer: (event) => this.audit.offer(event),
      ...(options.refusalSummaryIntervalMs !== undefined ? { intervalMs: options.refusalSummaryIntervalMs } : {}),
    });
    this.summaryTimer = setInterval(() => this.refusals.flush(this.now()), this.refusals.intervalMs);
    this.summaryTimer.unref();
  }

  // ---- plain requests ----

  handle(req: IncomingMessage, res: ServerResponse): void {
    void this.handleAsync(req, res).catch((error: Error) => {
      this.reportFailure(error);
      if (!res.headersSent)
        sendStatus(res, 500, 'InternalError', 'the gateway failed to relay this request: try again in a moment');
      else res.destroy();
    });
  }

  private async handleAsync(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = this.now();
    const address = clientKey(req.socket.remoteAddress);
    const admitted = this.screen(req, address, startedAt) ?? (await this.admit(req));
    if (!admitted.ok) {
      if (admitted.retryAfter !== undefined) res.setHeader('retry-after', String(admitted.retryAfter));
      sendStatus(res, admitted.status, admitted.reason, admitted.message);
      this.recordRefusal(req, address, admitted, startedAt);
      return;
    }
    const { upstream, info, person, visaId, visas, query } = admitted;
    this.settle(req, address, this.now(), false);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.maxBodyBytes) {
      const refusal: Refused = {
        ok: false,
        status: 413,
        reason: 'RequestEntityTooLarge',
        message: `the request body is larger than ${this.maxBodyBytes} bytes`,
        auth: admitted.auth,
        cluster: upstream.name,
        info,
        settled: true,
      };
      sendStatus(res, refusal.status, refusal.reason, refusal.message);
      this.recordRefusal(req, address, refusal, startedAt);
      return;
    }
    const socketIn = req.socket.bytesRead;
    const socketOut = req.socket.bytesWritten;
    const streaming = info.verb === 'watch' || queryFlag(query, 'follow');
    // Ties a stream's start event to its end event.
    const streamId = streaming ? randomUUID() : undefined;
    // The body goes upstream framed by the gateway exactly as Node's parser framed it here: with its Content-Length,
    // or chunked; a body that is not forwarded is not announced. Copying the client's framing would let a chunked
    // DELETE (Node sends DELETE bodies unframed), `Connection: Content-Length` or a GET with a Content-Length
    // desynchronise the pooled upstream connection, so that one person's bytes are read as, or glued onto, the next
    // request on it: someone else's, sent with kubevisa's credential and their Impersonate-User.
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const forwardsBody = req.method !== 'GET' && req.method !== 'HEAD' && (declared > 0 || chunked);
    const headers = upstreamHeaders(
      req.rawHeaders,
      { bearerToken: upstream.token(), impersonateUser: person.impersonate },
      upstream.host,
    );
    if (forwardsBody) {
      if (chunked) headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = String(declared);
    }
    // A watch that access ends gets a last event saying why (see close below), which plain JSON can only be appended
    // to if the stream is not compressed: watches are asked for uncompressed. kube-apiserver never compresses them
    // anyway (each event is flushed as it happens); another server that does gets its watches closed without it.
    if (info.verb === 'watch') delete headers['accept-encoding'];
    let closeReason: string | undefined;
    let upstreamError: string | undefined;
    /** The watch's response while the gateway may still append a JSON event to it. */
    let appendableWatch: IncomingMessage | undefined;
    /** The last byte relayed ended an event: an event appended now cannot be torn into one being relayed. */
    let betweenEvents = true;
    const upstreamReq = httpsRequest({
      // Watches and followed logs hold their connection for as long as they run: they get their own, so they can
      // never use up the pool that ordinary requests share.
      agent: streaming ? upstream.streamAgent : upstream.agent,
      ...target(upstream),
      method: req.method,
      path: info.path + (query ? `?${query}` : ''),
      headers,
    });
    const stream = this.register({
      personId: person.id,
      email: person.email,
      sessionId: admitted.auth.sessionId,
      cluster: upstream.name,
      namespace: info.namespace,
      visaId,
      visas,
      kind: streaming ? 'watch' : 'request',
      session: false,
      recorded: false,
      startedAt,
      close: (reason, notice) => {
        closeReason = reason;
        if (notice && req.method === 'GET' && !res.headersSent && !res.destroyed) {
          // The cluster has not answered yet (a watch just sent, kube-apiserver slow): the notice is the answer, as
          // kube-apiserver's own refusal would be, so kubectl prints why rather than retrying into a bare refusal.
          // Only for reads: a create, update or delete already sent may have been carried out, and a 403 or 410 would
          // tell the client, and write in the trail, that it was refused (a contractor could time a slow delete to
          // land on their visa's expiry); it is reset, as before, and the trail says it was cut.
          upstreamReq.destroy();
          sendStatus(res, notice.code, notice.reason, notice.message);
          return;
        }
        if (notice && appendableWatch && betweenEvents && !res.destroyed && !res.writableEnded) {
          // As kube-apiserver ends a watch it must stop: a last ERROR event with a Status, which kubectl prints.
          appendableWatch.unpipe(res);
          upstreamReq.destroy();
          res.end(watchErrorEvent(notice));
          // A client that does not read its last event does not keep the stream open.
          setTimeout(() => res.destroy(), 5000).unref();
          return;
        }
        upstreamReq.destroy();
        res.destroy();
      },
    });
    upstreamReq.on('response', (upstreamRes) => {
      const status = upstreamRes.statusCode ?? 502;
      // 304 Not Modified answers a conditional GET (kubectl's discovery cache) and is not a redirect.
      if (status >= 300 && status < 400 && status !== 304) {
        // Never follow or relay a redirect: the client would carry its kubevisa token elsewhere.
        upstreamRes.resume();
        sendStatus(res, 502, 'BadGateway', 'the cluster answered with a redirect, which the gateway does not follow');
        return;
      }
      res.writeHead(status, downstreamRawHeaders(upstreamRes.rawHeaders));
      // Watches and followed logs must reach kubectl as they happen, headers first.
      if (streaming) res.flushHeaders();
      // A watch or `logs -f` can run for days: its start is in the trail as it opens, not only when it ends.
      if (streamId !== undefined && status >= 200 && status < 300) {
        this.audit.add(
          this.startedEvent(req, { person, visaId, visas, cluster: upstream.name, info, query, streamId }),
        );
      }
      if (
        info.verb === 'watch' &&
        status === 200 &&
        /^application\/json\s*(;|$)/i.test(rawHeader(upstreamRes.rawHeaders, 'content-type') ?? '') &&
        (rawHeader(upstreamRes.rawHeaders, 'content-encoding') ?? 'identity') === 'identity'
      ) {
        appendableWatch = upstreamRes;
        // Events are JSON objects each followed by a newline, and JSON text never holds a raw newline.
        upstreamRes.on('data', (chunk: Buffer) => (betweenEvents = chunk[chunk.length - 1] === 0x0a));
      }
      upstreamRes.pipe(res);
    });
    upstreamReq.on('error', (error) => {
      // What went wrong (an address, a port, a certificate) is for kubevisa's operators: it goes to the audit trail.
      if (!closeReason) upstreamError ??= describeUpstreamError(error);
      // Already answered in full (a cut that told the client why destroyed the request): nothing more to say.
      if (res.writableEnded) return;
      if (!res.headersSent && !res.destroyed) sendStatus(res, 502, 'BadGateway', unreachable(upstream.name));
      else res.destroy();
    });
    res.on('close', () => {
      this.streams.remove(stream);
      if (!res.writableFinished) upstreamReq.destroy();
      this.record(req, {
        person,
        visaId,
        visas,
        cluster: upstream.name,
        info,
        query,
        status: res.statusCode,
        startedAt,
        bytesIn: req.socket.bytesRead - socketIn,
        bytesOut: req.socket.bytesWritten - socketOut,
        ...(closeReason ? { closeReason } : !res.writableFinished ? { closeReason: 'client went away' } : {}),
        ...(upstreamError ? { upstreamError } : {}),
        ...(streamId ? { streamId } : {}),
      });
    });
    if (!forwardsBody) {
      upstreamReq.end();
      req.resume();
    } else {
      let received = 0;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > this.maxBodyBytes) {
          upstreamReq.destroy();
          if (!res.headersSent)
            sendStatus(res, 413, 'RequestEntityTooLarge', `the request body is larger than ${this.maxBodyBytes} bytes`);
          req.destroy();
        }
      });
      req.pipe(upstreamReq);
    }
  }

  // ---- upgrades: exec, attach, port-forward ----

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    void this.upgradeAsync(req, socket, head).catch((error: Error) => {
      this.reportFailure(error);
      socket.destroy();
    });
  }

  private async upgradeAsync(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const startedAt = this.now();
    const address = clientKey(req.socket.remoteAddress);
    const refuse = (refusal: Refused) => {
      this.recordRefusal(req, address, refusal, startedAt);
      rawStatus(socket, refusal.status, refusal.reason, refusal.message, refusal.retryAfter);
    };
    const screened = this.screen(req, address, startedAt);
    if (screened) return refuse(screened);
    const protocol = allowedUpgrade(req.headers.upgrade);
    if (protocol === undefined)
      return refuse({
        ok: false,
        status: 400,
        reason: 'BadRequest',
        message: 'only WebSocket and SPDY/3.1 upgrades are relayed',
        anonymous: true,
      });
    if (hasBearerSubprotocol(req.rawHeaders)) {
      return refuse({
        ok: false,
        status: 400,
        reason: 'BadRequest',
        message: 'bearer tokens in WebSocket subprotocols are not accepted: authenticate with the Authorization header',
        anonymous: true,
      });
    }
    const admitted = await this.admit(req);
    if (!admitted.ok) return refuse(admitted);
    const { upstream, info, person, visaId, visas, query } = admitted;
    this.settle(req, address, this.now(), false);
    const session = info.subresource === 'exec' || info.subresource === 'attach';
    const recorded = admitted.recordSessions && session;
    if (recorded && protocol !== 'websocket') {
      return refuse({
        ok: false,
        status: 400,
        reason: 'BadRequest',
        message:
          "this visa's profile records exec and attach sessions, which needs the WebSocket protocol: kubectl 1.30 and later use it unless KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false",
        auth: admitted.auth,
        cluster: upstream.name,
        info,
        settled: true,
      });
    }
    const streamId = randomUUID();
    let recording: Recording | undefined;
    if (recorded && this.options.recordingsDir) {
      const day = new Date(startedAt).toISOString().slice(0, 10);
      recording = await startRecording(
        join(this.options.recordingsDir, day, `${visaId}-${startedAt}-${randomUUID().slice(0, 8)}.cast`),
        {
          title: `${person.email} ${info.subresource} ${upstream.name}/${info.namespace ?? ''}/${info.name ?? ''}`,
          startedAt,
          ...(auditedQuery(query).command
            ? { command: ([] as string[]).concat(auditedQuery(query).command!).join(' ') }
            : {}),
        },
      );
    }
    const started = () =>
      this.startedEvent(req, {
        person,
        visaId,
        visas,
        cluster: upstream.name,
        info,
        query,
        streamId,
        protocol,
        ...(recording ? { recording: recording.file } : {}),
      });
    if (recorded) {
      // A recorded session is in the trail, durably, before a single byte of it flows: a crash cannot lose it.
      try {
        await this.audit.durable(started());
      } catch {
        await recording?.close().catch(() => undefined);
        return refuse({
          ok: false,
          status: 503,
          reason: 'ServiceUnavailable',
          message:
            'the audit trail cannot be written right now, so kubevisa opens no recorded session: try again shortly',
          retryAfter: 5,
          auth: admitted.auth,
          cluster: upstream.name,
          info,
          sampled: true,
          settled: true,
        });
      }
    }
    let closeReason: string | undefined;
    let upstreamError: string | undefined;
    let upstreamSocket: Duplex | undefined;
    /** Frame boundaries of what upstream sends, for sessions that speak the channel protocol over WebSocket. */
    let frames: FrameBoundary | undefined;
    /** The client is being told why the session ends: its socket ends once that is written, not at once. */
    let telling = false;
    let bytesIn = 0;
    let bytesOut = 0;
    const upstreamReq = httpsRequest({
      agent: false,
      ...target(upstream),
      method: req.method,
      path: info.path + (query ? `?${query}` : ''),
      headers: upstreamHeaders(
        req.rawHeaders,
        { bearerToken: upstream.token(), impersonateUser: person.impersonate },
        upstream.host,
        protocol,
      ),
    });
    const stream = this.register({
      personId: person.id,
      email: person.email,
      sessionId: admitted.auth.sessionId,
      cluster: upstream.name,
      namespace: info.namespace,
      visaId,
      visas,
      kind: 'upgrade',
      session,
      recorded,
      startedAt,
      close: (reason, notice) => {
        closeReason = reason;
        if (notice && frames?.atBoundary && upstreamSocket && !socket.destroyed) {
          // kubectl prints a Status on the error channel as the session's error: it then says why it ended.
          telling = true;
          upstreamSocket.unpipe(socket);
          upstreamReq.destroy();
          upstreamSocket.destroy();
          const status = Buffer.from(JSON.stringify(statusObject(notice.code, notice.reason, notice.message)));
          socket.end(Buffer.concat([channelFrame(3, status), CLOSE_FRAME]));
          setTimeout(() => socket.destroy(), 5000).unref();
          return;
        }
        upstreamReq.destroy();
        upstreamSocket?.destroy();
        socket.destroy();
      },
    });
    let finished = false;
    const finish = (status: number) => {
      if (finished) return;
      finished = true;
      this.streams.remove(stream);
      void (recording ? recording.close() : Promise.resolve(undefined)).then((saved) =>
        this.record(req, {
          person,
          visaId,
          visas,
          cluster: upstream.name,
          info,
          query,
          status,
          startedAt,
          bytesIn,
          bytesOut,
          upgrade: protocol,
          streamId,
          ...(closeReason ? { closeReason } : {}),
          ...(upstreamError ? { upstreamError } : {}),
          ...(recording && saved
            ? { recording: { file: recording.file, bytes: saved.bytes, sha256: saved.sha256 } }
            : {}),
        }),
      );
    };
    upstreamReq.on('upgrade', (upstreamRes, upSocket, upHead) => {
      upstreamSocket = upSocket;
      if (!recorded) this.audit.add(started());
      // Spliced only now that upstream has said 101 (CVE-2018-1002105).
      const lines = [`HTTP/1.1 101 ${upstreamRes.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i < upstreamRes.rawHeaders.length; i += 2)
        lines.push(`${upstreamRes.rawHeaders[i]}: ${upstreamRes.rawHeaders[i + 1]}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      if (recording) {
        if (upHead.length > 0) recording.output(upHead);
        if (head.length > 0) recording.input(head);
      }
      const negotiated = rawHeader(upstreamRes.rawHeaders, 'sec-websocket-protocol') ?? '';
      if (protocol === 'websocket' && /^v[45]\.channel\.k8s\.io$/.test(negotiated)) {
        frames = new FrameBoundary();
        if (upHead.length > 0) frames.push(upHead);
      }
      upSocket.on('data', (c: Buffer) => {
        bytesOut += c.length;
        recording?.output(c);
        frames?.push(c);
      });
      socket.on('data', (c: Buffer) => {
        bytesIn += c.length;
        recording?.input(c);
      });
      socket.pipe(upSocket);
      upSocket.pipe(socket);
      const end = () => {
        if (!telling) socket.destroy();
        upSocket.destroy();
        finish(101);
      };
      upSocket.on('close', end);
      socket.on('close', end);
      upSocket.on('error', end);
    });
    upstreamReq.on('response', (upstreamRes) => {
      // Not upgraded: relay the answer, then close both sides so nothing can be smuggled on either connection.
      const status = upstreamRes.statusCode ?? 502;
      if (status >= 300 && status < 400 && status !== 304) {
        // As for plain requests: a redirect is never relayed, so its Location never reaches the client.
        upstreamRes.resume();
        upstreamReq.destroy();
        rawStatus(socket, 502, 'BadGateway', 'the cluster answered with a redirect, which the gateway does not follow');
        finish(502);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      upstreamRes.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 65_536) chunks.push(c);
      });
      upstreamRes.on('end', () => {
        const body = Buffer.concat(chunks);
        // Filtered by (name, value) pair: Content-Length is replaced below to match the (possibly cut) body.
        const headers = downstreamRawHeaders(upstreamRes.rawHeaders);
        const lines = [`HTTP/1.1 ${status} ${upstreamRes.statusMessage ?? ''}`];
        for (let i = 0; i < headers.length; i += 2) {
          if (!/^content-length$/i.test(headers[i]!)) lines.push(`${headers[i]}: ${headers[i + 1]}`);
        }
        lines.push(`Content-Length: ${body.length}`, 'Connection: close');
        socket.end(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), body]));
        upstreamReq.destroy();
        finish(status);
      });
    });
    upstreamReq.on('error', (error) => {
      if (!closeReason) upstreamError ??= describeUpstreamError(error);
      if (!upstreamSocket) rawStatus(socket, 502, 'BadGateway', unreachable(upstream.name));
      finish(502);
    });
    socket.on('close', () => {
      if (!upstreamSocket) {
        upstreamReq.destroy();
        finish(499);
      }
    });
    upstreamReq.end();
  }

  // ---- shared checks ----

  /**
   * The check made before any other work on a request, token verification included: the client address's budget.
   * An address that keeps causing refusals without a valid token is answered 429 at once until it slows down.
   */
  private screen(req: IncomingMessage, address: string, now: number): Refused | undefined {
    const wait = this.addresses.take(address, now);
    if (wait > 0)
      return {
        ok: false,
        status: 429,
        reason: 'TooManyRequests',
        message: `too many requests from your address: retry in ${wait} s`,
        retryAfter: wait,
        sampled: true,
        settled: true,
      };
    if (this.knownToken(req, now)) return undefined;
    const overall = this.ceiling.take(now);
    if (overall === 0) {
      this.holdingCeiling.add(req);
      return undefined;
    }
    // Refused before any work, as an unauthenticated refusal of this address too.
    this.addresses.settle(address, now, true);
    return {
      ok: false,
      status: 503,
      reason: 'ServiceUnavailable',
      message: `the gateway is refusing requests without a verified kubevisa token for a moment (too many from many addresses): retry in ${overall} s`,
      retryAfter: overall,
      sampled: true,
      settled: true,
    };
  }

  /**
   * Does the request carry the one bearer token the gateway verified recently (a map lookup, no verification)?
   * Such requests are never held back by the ceiling on unauthenticated work, so a contractor is served through a
   * flood from any number of addresses; the token is still checked in full as usual.
   */
  private knownToken(req: IncomingMessage, now: number): boolean {
    let token: string | undefined;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() !== 'authorization') continue;
      if (token !== undefined) return false;
      token = req.rawHeaders[i + 1]!;
    }
    if (token === undefined || !token.startsWith('Bearer ')) return false;
    const cached = this.tokenCache.get(token.slice('Bearer '.length));
    return cached !== undefined && now < cached.expiresAt;
  }

  /** Ends the check of a request `screen` let through: what it held is spent if it was refused unauthenticated. */
  private settle(req: IncomingMessage, address: string, now: number, refusedUnauthenticated: boolean): void {
    this.addresses.settle(address, now, refusedUnauthenticated);
    if (this.holdingCeiling.delete(req) && !refusedUnauthenticated) this.ceiling.giveBack(now);
  }

  private async admit(req: IncomingMessage): Promise<
    | {
        ok: true;
        upstream: UpstreamCluster;
        info: RequestInfo;
        person: PersonEntry;
        /** The strictest covering visa (see GrantIndex.decide). */
        visaId: string;
        /** Every visa that allows the request. */
        visas: { id: string; notAfter: number }[];
        /** Some covering visa's profile asks for exec/attach sessions to be recorded. */
        recordSessions: boolean;
        query: string;
        auth: Authenticated;
      }
    | Refused
  > {
    let split;
    try {
      split = splitGatewayUrl(req.url ?? '');
    } catch (error) {
      if (error instanceof NonCanonicalPath)
        return { ok: false, status: 400, reason: 'BadRequest', message: `refused: ${error.message}`, anonymous: true };
      throw error;
    }
    const upstream = this.options.clusters.get(split.cluster);
    if (!upstream)
      return {
        ok: false,
        status: 404,
        reason: 'NotFound',
        message: `kubevisa manages no cluster named '${split.cluster}'`,
        anonymous: true,
      };
    if (this.stopping) {
      return {
        ok: false,
        status: 503,
        reason: 'ServiceUnavailable',
        message: 'the kubevisa server is stopping: retry in a moment',
        retryAfter: 1,
        sampled: true,
      };
    }
    if (!this.audit.healthy) {
      return {
        ok: false,
        status: 503,
        reason: 'ServiceUnavailable',
        message: 'the audit trail cannot be written right now, so kubevisa relays nothing: try again shortly',
        retryAfter: 5,
        sampled: true,
      };
    }
    if (!this.audit.hasRoom) {
      // Back-pressure: the events of requests already relayed are never dropped, so new ones wait instead.
      return {
        ok: false,
        status: 503,
        reason: 'ServiceUnavailable',
        message: 'kubevisa is writing a backlog of audit events and relays nothing new until it has: retry in a moment',
        retryAfter: 1,
        sampled: true,
      };
    }
    const info = requestInfo(req.method ?? 'GET', split.path, split.query);
    const auth = await this.authenticate(req);
    if ('error' in auth)
      return {
        ok: false,
        status: 401,
        reason: 'Unauthorized',
        message: auth.error,
        cluster: split.cluster,
        info,
        anonymous: true,
      };
    const now = this.now();
    const wait = this.limiter.take(auth.personId, now);
    if (wait > 0) {
      return {
        ok: false,
        status: 429,
        reason: 'TooManyRequests',
        message: `too many requests: retry in ${wait} s`,
        retryAfter: wait,
        auth,
        cluster: split.cluster,
        info,
        sampled: true,
      };
    }
    const decision = this.options.index.decide(auth.personId, split.cluster, info.namespace, now);
    if (!decision.ok)
      return {
        ok: false,
        status: 403,
        reason: 'Forbidden',
        message: decision.reason,
        auth,
        cluster: split.cluster,
        info,
      };
    return {
      ok: true,
      upstream,
      info,
      person: decision.person,
      visaId: decision.grant.visaId,
      visas: decision.grants.map((g) => ({ id: g.visaId, notAfter: g.notAfter })),
      recordSessions: decision.recordSessions,
      query: split.query,
      auth,
    };
  }

  private async authenticate(req: IncomingMessage): Promise<Authenticated | { error: string }> {
    const values: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      if (req.rawHeaders[i]!.toLowerCase() === 'authorization') values.push(req.rawHeaders[i + 1]!);
    if (values.length !== 1)
      return {
        error:
          values.length === 0
            ? 'a kubevisa access token is required: run kubevisa login and use a kubevisa kubeconfig'
            : 'exactly one Authorization header is allowed',
      };
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(values[0]!);
    if (!match) return { error: 'the Authorization header must be a kubevisa bearer token' };
    return this.authenticateToken(match[1]!);
  }

  /**
   * Would the gateway relay anything for this token right now (on any cluster)? Used to prove an offboarding:
   * the answer goes through the same token check and visa index as every request.
   */
  async admits(token: string): Promise<{ admitted: boolean; reason: string }> {
    const auth = await this.authenticateToken(token);
    if ('error' in auth) return { admitted: false, reason: auth.error };
    const now = this.now();
    for (const cluster of this.options.clusters.keys()) {
      const decision = this.options.index.decide(auth.personId, cluster, undefined, now);
      if (decision.ok) return { admitted: true, reason: `admitted on cluster '${cluster}'` };
    }
    return { admitted: false, reason: 'no active visa on any cluster' };
  }

  private async authenticateToken(token: string): Promise<Authenticated | { error: string }> {
    const now = this.now();
    const cached = this.tokenCache.get(token);
    if (cached && now < cached.expiresAt && now - cached.checkedAt < (this.options.sessionRecheckMs ?? 5000))
      return cached;
    let verified;
    try {
      verified = await this.options.tokens.verify(token, now);
    } catch (error) {
      this.tokenCache.delete(token);
      // Only the token check's own refusals are told to the client; anything else is the server's failure.
      if (error instanceof Unauthenticated) return { error: `the kubevisa access token was refused: ${error.message}` };
      throw error;
    }
    const session = await this.options.store.getSession(verified.sessionId);
    if (!session || session.revokedAt !== undefined || session.expiresAt <= now) {
      this.tokenCache.delete(token);
      return { error: 'your kubevisa session has ended: run kubevisa login' };
    }
    const entry: CachedToken = {
      personId: verified.personId,
      email: verified.email,
      sessionId: verified.sessionId,
      expiresAt: verified.expiresAt,
      checkedAt: now,
    };
    if (this.tokenCache.size >= MAX_CACHED_TOKENS) this.tokenCache.delete(this.tokenCache.keys().next().value!);
    this.tokenCache.set(token, entry);
    return entry;
  }

  /** A failure of the gateway itself: its detail is for the server's operators, never for the client. */
  private reportFailure(error: Error): void {
    (this.options.onFailure ?? ((e) => process.stderr.write(`kubevisa gateway: relaying failed: ${e.message}\n`)))(
      error,
    );
  }

  /** Drops cached tokens of a person (deprovisioned, logged out) so the next request re-checks at once. */
  forgetPerson(personId: string): void {
    for (const [token, entry] of this.tokenCache) if (entry.personId === personId) this.tokenCache.delete(token);
  }

  /** Drops every cached token (changes may have been missed): each is checked against the store at its next use. */
  forgetAllTokens(): void {
    this.tokenCache.clear();
  }

  /**
   * A session ended (logout, or ended by an admin or by the identity provider): its cached tokens are dropped, so its
   * next request is refused, and the streams its tokens opened are closed, telling each why. Kubernetes would let
   * them run on; the person's visas may well still be valid, but no one is signed in to use them.
   */
  forgetSession(sessionId: string, reason = 'session ended'): number {
    for (const [token, entry] of this.tokenCache) if (entry.sessionId === sessionId) this.tokenCache.delete(token);
    return this.streams.closeWhere((s) => {
      if (s.sessionId !== sessionId) return false;
      this.options.onStreamCut?.({ cluster: s.cluster, visaId: s.visaId, reason });
      return {
        message: 'your kubevisa session has ended (logged out, or ended by an administrator): run kubevisa login',
        reason: 'Forbidden',
        code: 403,
      };
    }, reason);
  }

  /** The sessions whose tokens opened the streams open now (each once). */
  sessionsOfOpenStreams(): string[] {
    return [...new Set(this.streams.all().map((s) => s.sessionId))];
  }

  private stillAdmits(s: OpenStream, now: number): boolean {
    return this.mustStop(s, now) === undefined;
  }

  /**
   * Why the stream may not go on, or undefined when it would be admitted, as it runs, if it were opened now: some
   * visa must still cover it, and an exec or attach session that is not recorded may not go on once a visa that
   * requires recording covers its namespace (a recorded one stays recorded whichever visas cover it later).
   */
  private mustStop(
    s: OpenStream,
    now: number,
    ended: ReadonlyMap<string, EndedVisa> = new Map(),
  ): EndNotice | undefined {
    const decision = this.options.index.decide(s.personId, s.cluster, s.namespace, now);
    if (!decision.ok) return endNotice(s, ended, now);
    if (s.session && decision.recordSessions && !s.recorded) {
      return {
        message: `kubevisa closed this session: a visa that records sessions now covers namespace '${s.namespace}' and this session is not recorded; open it again with kubectl 1.30 or later (WebSocket), which can be recorded`,
        reason: 'Forbidden',
        code: 403,
      };
    }
    return undefined;
  }

  /**
   * Closes every open stream the index no longer allows, recording `reason`. `ended` holds what is known of visas
   * that just ended (from the event that ended them, or the store): each stream is told which of its visas ended and
   * why, in the words of that visa's end (who revoked it, their reason; or when it expired).
   */
  recheckStreams(reason: string, ended: ReadonlyMap<string, EndedVisa> = new Map()): number {
    const now = this.now();
    return this.streams.closeWhere((s) => {
      const notice = this.mustStop(s, now, ended);
      if (notice === undefined) return false;
      this.options.onStreamCut?.({ cluster: s.cluster, visaId: s.visaId, reason });
      return notice;
    }, reason);
  }

  /** Closes every open stream, telling each why (kubevisa can no longer confirm anyone's access). */
  closeAll(reason: string, message: string): number {
    return this.streams.closeWhere((s) => {
      this.options.onStreamCut?.({ cluster: s.cluster, visaId: s.visaId, reason });
      return { message, reason: 'ServiceUnavailable', code: 503 };
    }, reason);
  }

  /** Closes every open stream of a person (offboarded), telling each why. */
  closePerson(personId: string, reason: string): number {
    return this.streams.closeWhere((s) => {
      if (s.personId !== personId) return false;
      this.options.onStreamCut?.({ cluster: s.cluster, visaId: s.visaId, reason });
      return { message: `your access through kubevisa was ended: ${reason}`, reason: 'Forbidden', code: 403 };
    }, reason);
  }

  /** Writes the refusal summaries and everything queued (tests and shutdown; timers do it otherwise). */
  async flushAudit(): Promise<void> {
    // What is queued first, so that the summaries find room.
    await this.audit.flush();
    this.refusals.flush(this.now());
    await this.audit.flush();
  }

  /**
   * Server shutdown: refuses new requests, closes every open one, waits (at most `waitMs`) until each has been
   * recorded, then writes the trail and stops its writer, so that no relayed request goes unrecorded.
   */
  async stop(waitMs = 5000): Promise<void> {
    this.stopping = true;
    this.streams.closeWhere(() => true, 'server stopping');
    const deadline = Date.now() + waitMs;
    while (this.unrecorded > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    clearInterval(this.summaryTimer);
    await this.audit.flush();
    this.refusals.flush(this.now());
    await this.audit.close();
  }

  // ---- audit ----

  /** Registers a relayed request or stream; each one registered is recorded exactly once, in `record`. */
  private register(stream: Omit<OpenStream, 'id'>): OpenStream {
    this.unrecorded++;
    return this.streams.add(stream);
  }

  private record(
    req: IncomingMessage,
    r: {
      person: PersonEntry;
      visaId: string;
      visas: readonly { id: string }[];
      cluster: string;
      info: RequestInfo;
      query: string;
      status: number;
      startedAt: number;
      bytesIn: number;
      bytesOut: number;
      closeReason?: string;
      /** Why the cluster could not be reached (an address, a port, a TLS error): kept here, never sent to the client. */
      upstreamError?: string;
      /** A stream's id, also in its `gateway.stream.started` event. */
      streamId?: string;
      upgrade?: string;
      recording?: { file: string; bytes: number; sha256: string };
    },
  ): void {
    this.unrecorded--;
    this.options.onRequest?.({
      personId: r.person.id,
      visaId: r.visaId,
      cluster: r.cluster,
      status: r.status,
      at: this.now(),
    });
    const event: NewAuditEvent = {
      at: this.now(),
      actor: r.person.email,
      action: r.upgrade ? 'gateway.stream' : 'gateway.request',
      personId: r.person.id,
      visaId: r.visaId,
      cluster: r.cluster,
      ...(r.info.namespace ? { namespace: r.info.namespace } : {}),
      outcome: r.status < 400 ? 'ok' : 'refused',
      ...(r.closeReason ? { reason: r.closeReason } : {}),
      details: {
        verb: r.info.verb,
        ...(r.info.apiGroup ? { apiGroup: r.info.apiGroup } : {}),
        ...(r.info.resource ? { resource: r.info.resource } : {}),
        ...(r.info.name ? { name: r.info.name } : {}),
        ...(r.info.subresource ? { subresource: r.info.subresource } : {}),
        ...(r.info.isResourceRequest ? {} : { path: r.info.path.slice(0, 200) }),
        status: r.status,
        visaIds: r.visas.map((v) => v.id),
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        durationMs: this.now() - r.startedAt,
        ...(r.upgrade ? { protocol: r.upgrade } : {}),
        ...(r.recording ? { recording: r.recording } : {}),
        ...(r.upstreamError ? { upstreamError: r.upstreamError } : {}),
        ...(r.streamId ? { streamId: r.streamId } : {}),
        query: auditedQuery(r.query),
      },
      source: sourceOf(req),
    };
    this.audit.add(event);
  }

  /** A stream (watch, `logs -f`, exec, attach, port-forward) has opened: its end is recorded when it closes. */
  private startedEvent(
    req: IncomingMessage,
    r: {
      person: PersonEntry;
      visaId: string;
      visas: readonly { id: string }[];
      cluster: string;
      info: RequestInfo;
      query: string;
      streamId: string;
      protocol?: string;
      recording?: string;
    },
  ): NewAuditEvent {
    return {
      at: this.now(),
      actor: r.person.email,
      action: 'gateway.stream.started',
      personId: r.person.id,
      visaId: r.visaId,
      cluster: r.cluster,
      ...(r.info.namespace ? { namespace: r.info.namespace } : {}),
      outcome: 'ok',
      details: {
        streamId: r.streamId,
        verb: r.info.verb,
        ...(r.info.apiGroup ? { apiGroup: r.info.apiGroup } : {}),
        ...(r.info.resource ? { resource: r.info.resource } : {}),
        ...(r.info.name ? { name: r.info.name } : {}),
        ...(r.info.subresource ? { subresource: r.info.subresource } : {}),
        visaIds: r.visas.map((v) => v.id),
        ...(r.protocol ? { protocol: r.protocol } : {}),
        ...(r.recording ? { recording: r.recording } : {}),
        query: auditedQuery(r.query),
      },
      source: sourceOf(req),
    };
  }

  /**
   * Refusals of authenticated requests are written one by one (a person's rate limit bounds them); those anyone can
   * cause, and 429s and 503s, are counted and sampled per source (see refusals.ts).
   */
  private recordRefusal(req: IncomingMessage, address: string, refusal: Refused, startedAt: number): void {
    const now = this.now();
    if (!refusal.settled) this.settle(req, address, now, refusal.anonymous === true);
    // Only named clusters are configured ones (an unknown name is refused without one), so labels stay bounded.
    if (refusal.cluster) this.options.onRefusal?.({ cluster: refusal.cluster, status: refusal.status });
    if (refusal.auth && !refusal.sampled) {
      this.audit.add(this.refusalEvent(req, refusal, startedAt, now));
      return;
    }
    const userAgent = req.headers['user-agent'];
    this.refusals.refused(
      {
        key: refusal.auth ? `person:${refusal.auth.personId}` : `addr:${address}`,
        at: now,
        status: refusal.status,
        message: refusal.message,
        path: (req.url ?? '').split('?')[0]!,
        address,
        ...(typeof userAgent === 'string' ? { userAgent } : {}),
        actor: refusal.auth?.email ?? 'anonymous',
        ...(refusal.auth ? { personId: refusal.auth.personId } : {}),
        ...(refusal.cluster ? { cluster: refusal.cluster } : {}),
      },
      () => this.refusalEvent(req, refusal, startedAt, now),
    );
  }

  private refusalEvent(req: IncomingMessage, refusal: Refused, startedAt: number, now: number): NewAuditEvent {
    return {
      at: now,
      actor: refusal.auth?.email ?? 'anonymous',
      action: 'gateway.refused',
      ...(refusal.auth ? { personId: refusal.auth.personId } : {}),
      ...(refusal.cluster ? { cluster: refusal.cluster } : {}),
      ...(refusal.info?.namespace ? { namespace: refusal.info.namespace } : {}),
      outcome: 'refused',
      reason: clipText(refusal.message, 300),
      details: {
        status: refusal.status,
        durationMs: now - startedAt,
        ...(refusal.info
          ? { verb: refusal.info.verb, ...(refusal.info.resource ? { resource: refusal.info.resource } : {}) }
          : {}),
      },
      source: sourceOf(req),
    };
  }
}

export type { OpenStream };

/** Where and how to reach a cluster's kube-apiserver (address and TLS trust), for every upstream request. */
function target(upstream: UpstreamCluster) {
  return {
    hostname: upstream.hostname,
    port: upstream.port,
    ...(upstream.ca ? { ca: upstream.ca } : {}),
    ...(upstream.servername ? { servername: upstream.servername } : {}),
    rejectUnauthorized: upstream.rejectUnauthorized,
  };
}

/**
 * What a client is told when the cluster cannot be reached: what happened and what to do, never the address, port or
 * error text of the connection, which describe kubevisa's network rather than the person's request.
 */
function unreachable(cluster: string): string {
  return `kubevisa could not reach the API server of cluster '${cluster}' just now: try again in a moment, and tell your kubevisa administrator if it keeps failing`;
}

/** The connection failure in words for the audit trail (operators read it there). */
function describeUpstreamError(error: Error & { code?: string }): string {
  return clipText(error.code ? `${error.code}: ${error.message}` : error.message, 300);
}

function sourceOf(req: IncomingMessage) {
  const userAgent = req.headers['user-agent'];
  return {
    address: req.socket.remoteAddress ?? 'unknown',
    ...(typeof userAgent === 'string' ? { userAgent: clipText(userAgent, 200) } : {}),
  };
}

/** What the gateway knows of a visa that ended, to tell the streams it backed. */
export type EndedVisa = Pick<Visa, 'id' | 'state' | 'notAfter'> & Partial<Pick<Visa, 'endedBy' | 'endReason'>>;

/**
 * Why a stream's access ended, naming each of its visas and how it ended: revoked (by whom, why) is 403 Forbidden;
 * if every one simply expired, 410 Expired, as kube-apiserver answers a watch it ends.
 */
function endNotice(stream: OpenStream, ended: ReadonlyMap<string, EndedVisa>, now: number): EndNotice {
  let expiredOnly = true;
  const parts = stream.visas.map(({ id, notAfter }) => {
    const visa = ended.get(id);
    if (visa && (visa.state === 'revoked' || visa.state === 'cancelled')) {
      expiredOnly = false;
      const by = visa.endedBy ? ` by ${visa.endedBy}` : '';
      return `visa ${id} was ${visa.state}${by}${visa.endReason ? `: ${visa.endReason}` : ''}`;
    }
    const end = visa?.notAfter ?? notAfter;
    if (end <= now || visa?.state === 'expired') return `visa ${id} ended at ${new Date(end).toISOString()}`;
    expiredOnly = false;
    return `visa ${id} no longer grants access here`;
  });
  return {
    message: `${parts.join('; ')}. To go on, request a new visa with 'kubevisa request'`,
    reason: expiredOnly ? 'Expired' : 'Forbidden',
    code: expiredOnly ? 410 : 403,
  };
}

/** The last event of a watch that access ended: kubectl prints its Status, as for kube-apiserver's own. */
function watchErrorEvent(notice: EndNotice): string {
  return `${JSON.stringify({ type: 'ERROR', object: statusObject(notice.code, notice.reason, notice.message) })}\n`;
}

/** A Kubernetes-shaped Status, which kubectl prints as the error. */
function statusObject(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify(statusObject(code, reason, message));
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  const body = statusBody(code, reason, message);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function rawStatus(socket: Duplex, code: number, reason: string, message: string, retryAfter?: number): void {
  const body = statusBody(code, reason, message);
  socket.end(
    `HTTP/1.1 ${code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retryAfter !== undefined ? `Retry-After: ${retryAfter}\r\n` : ''}Connection: close\r\n\r\n${body}`,
  );
}
