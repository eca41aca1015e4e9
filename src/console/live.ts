/**
 * Live updates for open consoles over Server-Sent Events (`GET /api/v1/console/events`). An event only says *what
 * kind* of thing changed (`visas`, `audit`); the page then reads what changed through the API with its own
 * authorization, so an event can never show someone what they may not read. `audit` is sent only to admins and
 * auditors, who may read the trail; to anyone else its rhythm would tell when others act.
 *
 * Two sources: the server's own events (a revoke, an approval, an ended engagement: sent at once), and the audit
 * trail's head, read every half second while anyone listens. Every decision kubevisa takes is audited, so the head
 * also catches what raises no server event (a new request, a denial) and what another replica did.
 */
import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import { KubevisaError } from '../domain/errors.ts';
import type { Caller } from '../app/caller.ts';
import { isAuditReader } from '../domain/permissions.ts';
import type { ServerContext } from '../server/context.ts';

/** How often the audit head is read while at least one console listens, in milliseconds. */
const AUDIT_POLL_MS = 500;
/** A comment line this often keeps proxies from closing an idle stream, in milliseconds. */
const HEARTBEAT_MS = 15_000;
/** A stream ends after this long, in milliseconds; the browser reconnects and is authenticated again. */
const STREAM_LIFETIME_MS = 10 * 60_000;
const MAX_STREAMS_PER_PERSON = 10;
const MAX_STREAMS = 2000;

class TooManyStreams extends KubevisaError {
  static override code = 'ERR_RATE_LIMITED';
  constructor(message: string) {
    super(message, { status: 429 });
  }
}

type LiveKind = 'visas' | 'audit' | 'signed-out';

interface Listener {
  caller: Caller;
  send(kind: LiveKind): void;
  close(): void;
}

export class LiveEvents {
  private readonly context: ServerContext;
  private readonly listeners = new Set<Listener>();
  private poll: NodeJS.Timeout | undefined;
  private auditSeq: number | undefined;

  constructor(context: ServerContext) {
    this.context = context;
    const visas = () => this.broadcast('visas');
    context.events.on('visas-changed', visas);
    context.events.on('visas-ended', visas);
    const endSession = (sessionId: string) => {
      for (const l of this.listeners) {
        if (l.caller.sessionId !== sessionId) continue;
        l.send('signed-out');
        l.close();
      }
    };
    context.events.on('session-ended', endSession);
    const endPerson = (person: { id: string }) => {
      for (const l of this.listeners) {
        if (l.caller.actor.personId !== person.id) continue;
        l.send('signed-out');
        l.close();
      }
    };
    context.events.on('person-deprovisioned', endPerson);
    context.onStop(() => {
      context.events.off('visas-changed', visas);
      context.events.off('visas-ended', visas);
      context.events.off('session-ended', endSession);
      context.events.off('person-deprovisioned', endPerson);
      for (const l of this.listeners) l.close();
      this.stopPolling();
    });
  }

  get size(): number {
    return this.listeners.size;
  }

  /** The SSE route's handler, for an authenticated caller. */
  async serve(caller: Caller, reply: FastifyReply): Promise<void> {
    if (this.listeners.size >= MAX_STREAMS) throw new TooManyStreams('too many consoles are listening: retry later');
    let mine = 0;
    for (const l of this.listeners) if (l.caller.actor.personId === caller.actor.personId) mine++;
    if (mine >= MAX_STREAMS_PER_PERSON) {
      throw new TooManyStreams(`you have ${mine} consoles open already: close one and retry`);
    }
    reply.hijack();
    const raw: ServerResponse = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
    });
    raw.write('retry: 1000\n\n');
    const heartbeat = setInterval(() => raw.write(': ping\n\n'), HEARTBEAT_MS);
    const lifetime = setTimeout(() => listener.close(), STREAM_LIFETIME_MS);
    const listener: Listener = {
      caller,
      send: (kind) => raw.write(`event: ${kind}\ndata: {}\n\n`),
      close: () => {
        if (!this.listeners.delete(listener)) return;
        clearInterval(heartbeat);
        clearTimeout(lifetime);
        if (this.listeners.size === 0) this.stopPolling();
        raw.end();
      },
    };
    raw.on('close', () => listener.close());
    this.listeners.add(listener);
    this.startPolling();
  }

  /**
   * Tells every listener `for` admits (a session that ends is told `signed-out` alone, before its stream closes).
   * `audit` goes only to those who may read the trail: when it moves is itself a fact about who does what.
   */
  private broadcast(kind: LiveKind, to: (caller: Caller) => boolean = () => true): void {
    for (const l of this.listeners) if (to(l.caller)) l.send(kind);
  }

  private startPolling(): void {
    if (this.poll) return;
    this.poll = setInterval(() => void this.readAuditHead(), AUDIT_POLL_MS);
    this.poll.unref();
  }

  private stopPolling(): void {
    clearInterval(this.poll);
    this.poll = undefined;
  }

  private async readAuditHead(): Promise<void> {
    try {
      const head = await this.context.store.getAuditHead();
      const seq = head?.seq ?? 0;
      const before = this.auditSeq;
      this.auditSeq = seq;
      if (before === undefined || seq <= before) return;
      const added = await this.context.store.listAudit({ afterSeq: before, limit: 1000 });
      this.broadcast('audit', (caller) => isAuditReader(caller.actor));
      // Gateway requests are audited one by one; only decisions change what a console shows besides the trail.
      if (added.length >= 1000 || added.some((e) => !e.action.startsWith('gateway.'))) this.broadcast('visas');
    } catch (error) {
      process.stderr.write(
        `kubevisa console: reading the audit head for live updates failed (retried in ${AUDIT_POLL_MS} ms): ${error instanceof Error ? error.message : String(error)}\n`,
      );
    }
  }
}
