/**
 * Refusals that anyone can cause in bulk — requests with no valid token, non-canonical paths, unknown clusters, a
 * person hammering past their rate — are counted and sampled, not chained one by one: otherwise whoever can reach
 * the gateway decides how fast the audit trail grows, and fills the disk until kubevisa fails closed for everyone.
 * Per source (a client address, or a person for their own 429s) the first refusal is written in full; the ones
 * after it are counted, with a few samples and the user agents seen, and written as one `gateway.refused.summary`
 * event per interval. Summaries are what gives way when the audit queue is full: they are kept (merged, bounded)
 * and offered again at the next interval, never at the expense of events of requests that were relayed.
 */
import type { JsonObject, NewAuditEvent } from '../store/store.ts';

export interface Refusal {
  /** Whom the refusals are counted against: a client address (`addr:…`) or a person (`person:…`). */
  key: string;
  at: number;
  status: number;
  /** What the client was told. */
  message: string;
  /** The request path without its query (never stored whole: it is the client's choice). */
  path: string;
  address: string;
  userAgent?: string;
  actor: string;
  personId?: string;
  cluster?: string;
}

export interface RefusalSamplerOptions {
  /** Takes an event if the audit queue has room; false when it is full (then the sampler keeps counting). */
  offer(event: NewAuditEvent): boolean;
  /** How often summaries are written, in ms (default 60 000). */
  intervalMs?: number;
  /**
   * Most sources tracked at once (default 1000); beyond that, refusals are counted under one overflow source. With
   * the interval, it bounds what a flood from many addresses can write: at most one full event and one summary per
   * tracked source and interval, and one overflow summary.
   */
  maxSources?: number;
}

/** Samples and user agents kept per source and interval: enough to see what was tried, bounded whatever is sent. */
const MAX_SAMPLES = 3;
const MAX_USER_AGENTS = 5;
const USER_AGENT_CHARS = 100;
const PATH_CHARS = 100;
const MESSAGE_CHARS = 200;
const OVERFLOW = 'overflow';

interface Bucket {
  actor: string;
  personId?: string;
  address: string;
  count: number;
  firstAt: number;
  lastAt: number;
  statuses: Map<number, number>;
  samples: { status: number; reason: string; path: string }[];
  userAgents: Map<string, number>;
  otherUserAgents: number;
  /** Start of the interval in which this source was last refused (a quiet source is forgotten after one more). */
  lastActiveInterval: number;
}

export class RefusalSampler {
  private readonly sources = new Map<string, Bucket>();
  private readonly offer: (event: NewAuditEvent) => boolean;
  readonly intervalMs: number;
  private readonly maxSources: number;
  private interval = 0;

  constructor(options: RefusalSamplerOptions) {
    this.offer = options.offer;
    this.intervalMs = options.intervalMs ?? 60_000;
    this.maxSources = options.maxSources ?? 1000;
  }

  /** Counts one refusal; the first from a source is written in full (`full()` builds that event only then). */
  refused(refusal: Refusal, full: () => NewAuditEvent): void {
    let key = refusal.key;
    let bucket = this.sources.get(key);
    if (bucket === undefined) {
      if (this.sources.size >= this.maxSources) {
        key = OVERFLOW;
        bucket = this.sources.get(key);
      }
      if (bucket === undefined) {
        bucket = {
          actor: key === OVERFLOW ? 'anonymous' : refusal.actor,
          ...(key !== OVERFLOW && refusal.personId ? { personId: refusal.personId } : {}),
          address: key === OVERFLOW ? 'many' : refusal.address,
          count: 0,
          firstAt: refusal.at,
          lastAt: refusal.at,
          statuses: new Map(),
          samples: [],
          userAgents: new Map(),
          otherUserAgents: 0,
          lastActiveInterval: this.interval,
        };
        this.sources.set(key, bucket);
        if (key !== OVERFLOW && this.offer(full())) return;
      }
    }
    this.count(bucket, refusal);
  }

  private count(bucket: Bucket, refusal: Refusal): void {
    if (bucket.count === 0) bucket.firstAt = refusal.at;
    bucket.count++;
    bucket.lastAt = refusal.at;
    bucket.lastActiveInterval = this.interval;
    bucket.statuses.set(refusal.status, (bucket.statuses.get(refusal.status) ?? 0) + 1);
    const path = refusal.path.slice(0, PATH_CHARS);
    const reason = refusal.message.slice(0, MESSAGE_CHARS);
    if (
      bucket.samples.length < MAX_SAMPLES &&
      !bucket.samples.some((s) => s.status === refusal.status && s.reason === reason && s.path === path)
    )
      bucket.samples.push({ status: refusal.status, reason, path });
    const userAgent = (refusal.userAgent ?? '').slice(0, USER_AGENT_CHARS);
    const seen = bucket.userAgents.get(userAgent);
    if (seen !== undefined) bucket.userAgents.set(userAgent, seen + 1);
    else if (bucket.userAgents.size < MAX_USER_AGENTS) bucket.userAgents.set(userAgent, 1);
    else bucket.otherUserAgents++;
  }

  /** Sources being tracked now (bounded by `maxSources` + 1). */
  get size(): number {
    return this.sources.size;
  }

  /**
   * Writes one summary per source refused since the last flush, and forgets sources quiet for a whole interval. A
   * summary the audit queue cannot take now stays, and keeps counting, until the next flush.
   */
  flush(now: number): void {
    const interval = this.interval;
    this.interval++;
    for (const [key, bucket] of this.sources) {
      if (bucket.count === 0) {
        if (bucket.lastActiveInterval < interval) this.sources.delete(key);
        continue;
      }
      if (!this.offer(summaryEvent(bucket, now, this.intervalMs))) continue;
      bucket.count = 0;
      bucket.statuses.clear();
      bucket.samples = [];
      bucket.userAgents.clear();
      bucket.otherUserAgents = 0;
    }
  }
}

function summaryEvent(bucket: Bucket, now: number, intervalMs: number): NewAuditEvent {
  const statuses: JsonObject = {};
  for (const [status, n] of bucket.statuses) statuses[String(status)] = n;
  // A list, not an object keyed by user agent: the client chooses that text, `__proto__` included.
  const userAgents = [...bucket.userAgents].map(([userAgent, count]) => ({ userAgent, count }));
  return {
    at: now,
    actor: bucket.actor,
    action: 'gateway.refused.summary',
    ...(bucket.personId ? { personId: bucket.personId } : {}),
    outcome: 'refused',
    reason: `${bucket.count} request(s) refused from ${bucket.address} between ${new Date(bucket.firstAt).toISOString()} and ${new Date(bucket.lastAt).toISOString()}`,
    details: {
      count: bucket.count,
      firstAt: bucket.firstAt,
      lastAt: bucket.lastAt,
      intervalMs,
      statuses,
      samples: bucket.samples.map((s) => ({ ...s })),
      userAgents,
      otherUserAgents: bucket.otherUserAgents,
    },
    source: { address: bucket.address },
  };
}
