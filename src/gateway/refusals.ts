/**
 * Refusals that anyone can cause in bulk — requests with no valid token, non-canonical paths, unknown clusters, a
 * person hammering past their rate — are counted and sampled, not chained one by one: otherwise whoever can reach
 * the gateway decides how fast the audit trail grows, and fills the disk until kubevisa fails closed for everyone.
 *
 * How much the trail grows is bounded per interval whatever the number of sources. Refusals of unauthenticated
 * requests (counted against the client address) are written in full only for the first refusal of a new address,
 * and only `maxFullPerInterval` times per interval across all addresses; those addresses (at most `maxAddresses`
 * at once) get a `gateway.refused.summary` of their own for each interval in which they are refused again. Every
 * unauthenticated refusal, whichever of these it also went to, is counted in one `gateway.refused.overall` event per
 * interval: how many requests from how many addresses, the top addresses by count, statuses, samples and user
 * agents (truncated). A person's own refusals (their 429s and 503s) are bounded by the people there are: their first
 * is written in full, the rest in one summary per person and interval.
 *
 * Summaries are what gives way when the audit queue is full: they are kept (merged, bounded) and offered again at
 * the next interval, never at the expense of events of requests that were relayed.
 */
import type { JsonObject, NewAuditEvent } from '../store/store.ts';
import { clipText } from '../domain/validate.ts';

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
  /** Refusals of unauthenticated requests written in full per interval, across all addresses (default 20). */
  maxFullPerInterval?: number;
  /** Addresses with a summary of their own at once (default 20); the others are in the overall summary only. */
  maxAddresses?: number;
  /** People tracked at once (default 1000); beyond that, their refusals are counted in the overall summary. */
  maxPeople?: number;
  /** Distinct addresses counted exactly per interval (default 65 536); beyond that the count says "at least". */
  maxCountedSources?: number;
}

/** Samples and user agents kept per source and interval: enough to see what was tried, bounded whatever is sent. */
const MAX_SAMPLES = 3;
const MAX_USER_AGENTS = 5;
const USER_AGENT_CHARS = 100;
const PATH_CHARS = 100;
const MESSAGE_CHARS = 200;
/** Addresses whose counts the overall summary keeps (space-saving: exact unless more addresses than this). */
const TOP_TRACKED = 100;
/** Addresses the overall summary names. */
const TOP_NAMED = 10;

/** What was refused, counted, with a few samples and user agents. */
interface Tally {
  count: number;
  firstAt: number;
  lastAt: number;
  statuses: Map<number, number>;
  samples: { status: number; reason: string; path: string }[];
  userAgents: Map<string, number>;
  otherUserAgents: number;
}

interface Bucket extends Tally {
  actor: string;
  personId?: string;
  address: string;
  /** Interval in which this source was last refused (a quiet source is forgotten after one more). */
  lastActiveInterval: number;
}

interface Overall extends Tally {
  writtenInFull: number;
  sources: Set<string>;
  sourcesCapped: boolean;
  /** Space-saving counters: `count` may overstate a source's refusals by at most `error`. */
  top: Map<string, { count: number; error: number }>;
}

function emptyTally(): Tally {
  return {
    count: 0,
    firstAt: 0,
    lastAt: 0,
    statuses: new Map(),
    samples: [],
    userAgents: new Map(),
    otherUserAgents: 0,
  };
}

function emptyOverall(): Overall {
  return { ...emptyTally(), writtenInFull: 0, sources: new Set(), sourcesCapped: false, top: new Map() };
}

export class RefusalSampler {
  private readonly addresses = new Map<string, Bucket>();
  private readonly people = new Map<string, Bucket>();
  private overall = emptyOverall();
  private readonly offer: (event: NewAuditEvent) => boolean;
  readonly intervalMs: number;
  private readonly maxFullPerInterval: number;
  private readonly maxAddresses: number;
  private readonly maxPeople: number;
  private readonly maxCountedSources: number;
  private interval = 0;
  private fullThisInterval = 0;

  constructor(options: RefusalSamplerOptions) {
    this.offer = options.offer;
    this.intervalMs = options.intervalMs ?? 60_000;
    this.maxFullPerInterval = options.maxFullPerInterval ?? 20;
    this.maxAddresses = options.maxAddresses ?? 20;
    this.maxPeople = options.maxPeople ?? 1000;
    this.maxCountedSources = options.maxCountedSources ?? 65_536;
  }

  /**
   * Counts one refusal; the first of a person, or of a new address while this interval's budget lasts, is written in
   * full (`full()` builds that event only then).
   */
  refused(refusal: Refusal, full: () => NewAuditEvent): void {
    if (refusal.personId !== undefined) {
      let bucket = this.people.get(refusal.key);
      if (bucket === undefined && this.people.size < this.maxPeople) {
        bucket = this.newBucket(refusal);
        this.people.set(refusal.key, bucket);
        if (this.offer(full())) return;
      }
      if (bucket !== undefined) this.count(bucket, refusal);
      else this.countOverall(refusal, false);
      return;
    }
    let bucket = this.addresses.get(refusal.key);
    let inFull = false;
    if (bucket === undefined && this.fullThisInterval < this.maxFullPerInterval && this.roomForAddress()) {
      bucket = this.newBucket(refusal);
      this.addresses.set(refusal.key, bucket);
      inFull = this.offer(full());
      if (inFull) this.fullThisInterval++;
    }
    if (bucket !== undefined && !inFull) this.count(bucket, refusal);
    this.countOverall(refusal, inFull);
  }

  /**
   * Is there a slot for one more address with a summary of its own? One whose refusals since the last summary are all
   * written already (none counted) gives its slot up: that keeps the slots for the sources still being refused.
   */
  private roomForAddress(): boolean {
    if (this.addresses.size < this.maxAddresses) return true;
    for (const [key, bucket] of this.addresses)
      if (bucket.count === 0) {
        this.addresses.delete(key);
        return true;
      }
    return false;
  }

  private newBucket(refusal: Refusal): Bucket {
    return {
      ...emptyTally(),
      actor: refusal.actor,
      ...(refusal.personId ? { personId: refusal.personId } : {}),
      address: refusal.address,
      lastActiveInterval: this.interval,
    };
  }

  private count(bucket: Bucket, refusal: Refusal): void {
    bucket.lastActiveInterval = this.interval;
    tally(bucket, refusal);
  }

  private countOverall(refusal: Refusal, inFull: boolean): void {
    const overall = this.overall;
    tally(overall, refusal);
    if (inFull) overall.writtenInFull++;
    if (!overall.sources.has(refusal.key)) {
      if (overall.sources.size < this.maxCountedSources) overall.sources.add(refusal.key);
      else overall.sourcesCapped = true;
    }
    const counter = overall.top.get(refusal.address);
    if (counter !== undefined) counter.count++;
    else if (overall.top.size < TOP_TRACKED) overall.top.set(refusal.address, { count: 1, error: 0 });
    else {
      // Space-saving: the newcomer takes the place of the smallest counter and inherits its count as possible error,
      // so a source refused more than count/TOP_TRACKED times is always among those kept.
      let smallest: [string, { count: number; error: number }] | undefined;
      for (const entry of overall.top)
        if (smallest === undefined || entry[1].count < smallest[1].count) smallest = entry;
      overall.top.delete(smallest![0]);
      overall.top.set(refusal.address, { count: smallest![1].count + 1, error: smallest![1].count });
    }
  }

  /** Sources being tracked now, addresses and people (bounded by `maxAddresses` + `maxPeople`). */
  get size(): number {
    return this.addresses.size + this.people.size;
  }

  /**
   * Writes one summary per tracked source refused since the last flush and the overall summary, forgets sources quiet
   * for a whole interval, and opens the next interval's budget of full events. A summary the audit queue cannot take
   * now stays, and keeps counting, until the next flush.
   */
  flush(now: number): void {
    const interval = this.interval;
    this.interval++;
    this.fullThisInterval = 0;
    for (const sources of [this.addresses, this.people]) {
      for (const [key, bucket] of sources) {
        if (bucket.count === 0) {
          if (bucket.lastActiveInterval < interval) sources.delete(key);
          continue;
        }
        if (!this.offer(summaryEvent(bucket, now, this.intervalMs))) continue;
        Object.assign(bucket, emptyTally());
      }
    }
    if (this.overall.count > 0 && this.offer(overallEvent(this.overall, now, this.intervalMs)))
      this.overall = emptyOverall();
  }
}

function tally(t: Tally, refusal: Refusal): void {
  if (t.count === 0) t.firstAt = refusal.at;
  t.count++;
  t.lastAt = refusal.at;
  t.statuses.set(refusal.status, (t.statuses.get(refusal.status) ?? 0) + 1);
  const path = refusal.path.slice(0, PATH_CHARS);
  const reason = clipText(refusal.message, MESSAGE_CHARS);
  if (
    t.samples.length < MAX_SAMPLES &&
    !t.samples.some((s) => s.status === refusal.status && s.reason === reason && s.path === path)
  )
    t.samples.push({ status: refusal.status, reason, path });
  const userAgent = (refusal.userAgent ?? '').slice(0, USER_AGENT_CHARS);
  const seen = t.userAgents.get(userAgent);
  if (seen !== undefined) t.userAgents.set(userAgent, seen + 1);
  else if (t.userAgents.size < MAX_USER_AGENTS) t.userAgents.set(userAgent, 1);
  else t.otherUserAgents++;
}

function tallyDetails(t: Tally, intervalMs: number): JsonObject {
  const statuses: JsonObject = {};
  for (const [status, n] of t.statuses) statuses[String(status)] = n;
  return {
    count: t.count,
    firstAt: t.firstAt,
    lastAt: t.lastAt,
    intervalMs,
    statuses,
    samples: t.samples.map((s) => ({ ...s })),
    // A list, not an object keyed by user agent: the client chooses that text, `__proto__` included.
    userAgents: [...t.userAgents].map(([userAgent, count]) => ({ userAgent, count })),
    otherUserAgents: t.otherUserAgents,
  };
}

const iso = (at: number) => new Date(at).toISOString();

function summaryEvent(bucket: Bucket, now: number, intervalMs: number): NewAuditEvent {
  return {
    at: now,
    actor: bucket.actor,
    action: 'gateway.refused.summary',
    ...(bucket.personId ? { personId: bucket.personId } : {}),
    outcome: 'refused',
    reason: `${bucket.count} request(s) refused from ${bucket.address} between ${iso(bucket.firstAt)} and ${iso(bucket.lastAt)}`,
    details: tallyDetails(bucket, intervalMs),
    source: { address: bucket.address },
  };
}

function overallEvent(overall: Overall, now: number, intervalMs: number): NewAuditEvent {
  const sources = `${overall.sourcesCapped ? 'at least ' : ''}${overall.sources.size}`;
  const top = [...overall.top]
    .sort((a, b) => b[1].count - a[1].count)
    .slice(0, TOP_NAMED)
    .map(([address, c]) => ({ address, count: c.count, ...(c.error > 0 ? { maxOvercount: c.error } : {}) }));
  return {
    at: now,
    actor: 'anonymous',
    action: 'gateway.refused.overall',
    outcome: 'refused',
    reason: `${overall.count} request(s) without a verified token refused from ${sources} address(es) between ${iso(overall.firstAt)} and ${iso(overall.lastAt)}`,
    details: {
      ...tallyDetails(overall, intervalMs),
      sources: overall.sources.size,
      sourcesCapped: overall.sourcesCapped,
      writtenInFull: overall.writtenInFull,
      topSources: top,
    },
    source: { address: 'many' },
  };
}
