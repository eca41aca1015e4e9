/** A token bucket per person: `ratePerSecond` sustained, `burst` at once; refusals say when to retry. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly ratePerSecond: number;
  private readonly burst: number;

  constructor(options: { ratePerSecond: number; burst: number }) {
    this.ratePerSecond = options.ratePerSecond;
    this.burst = options.burst;
  }

  /** 0 when allowed; otherwise the seconds to wait before the next request would be. */
  take(key: string, now: number): number {
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.ratePerSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.ratePerSecond);
  }
}

export interface AddressLimits {
  /** Requests per second sustained from one client address (default 500), and at once (`burst`, default 1000). */
  ratePerSecond: number;
  burst: number;
  /**
   * Refusals of unauthenticated requests (no or a bad token, a non-canonical path, an unknown cluster, a refused
   * upgrade) one address may cause per second (default 20), and at once (default 200). Past that, every request from
   * the address is answered 429 before any work is done on it, token verification included.
   */
  refusalsPerSecond: number;
  refusalBurst: number;
  /** Addresses tracked at once (default 10 000); past that, new addresses share one bucket until old ones go idle. */
  maxAddresses: number;
}

export const DEFAULT_ADDRESS_LIMITS: AddressLimits = {
  ratePerSecond: 500,
  burst: 1000,
  refusalsPerSecond: 20,
  refusalBurst: 200,
  maxAddresses: 10_000,
};

interface AddressBucket {
  tokens: number;
  refusals: number;
  at: number;
}

const SHARED = 'shared';

/**
 * Two token buckets per client address, checked before anything else is done with a request: one for all requests,
 * one for the refusals of unauthenticated ones. The map is bounded and kept in order of last use, so the address
 * evicted first is the one idle longest, and only once its buckets would be full again anyway.
 */
export class AddressLimiter {
  private readonly buckets = new Map<string, AddressBucket>();
  private readonly limits: AddressLimits;
  /** After this long without requests, an address's buckets are full again and it can be forgotten. */
  private readonly idleMs: number;

  constructor(limits: Partial<AddressLimits> = {}) {
    this.limits = { ...DEFAULT_ADDRESS_LIMITS, ...limits };
    const l = this.limits;
    this.idleMs = Math.ceil(Math.max(l.burst / l.ratePerSecond, l.refusalBurst / l.refusalsPerSecond) * 1000);
  }

  /**
   * 0 when a request from `key` may go on; otherwise the seconds to wait. A request that goes on takes one unit of
   * each budget: the refusal unit is held while the request is checked (its token verified, say), so that requests
   * in flight at once cannot together overdraw it, and given back by `settle` unless the request is refused.
   */
  take(key: string, now: number): number {
    const bucket = this.bucket(key, now);
    if (bucket.refusals < 1) return Math.ceil((1 - bucket.refusals) / this.limits.refusalsPerSecond);
    if (bucket.tokens < 1) return Math.ceil((1 - bucket.tokens) / this.limits.ratePerSecond);
    bucket.tokens -= 1;
    bucket.refusals -= 1;
    return 0;
  }

  /** Ends the check of a request `take` let through: its refusal unit is spent if it was refused unauthenticated. */
  settle(key: string, now: number, refusedUnauthenticated: boolean): void {
    if (refusedUnauthenticated) return;
    const bucket = this.bucket(key, now);
    bucket.refusals = Math.min(this.limits.refusalBurst, bucket.refusals + 1);
  }

  get size(): number {
    return this.buckets.size;
  }

  private bucket(key: string, now: number): AddressBucket {
    let bucket = this.buckets.get(key);
    if (bucket !== undefined) {
      // Most recently used last: the first entry is always the one idle longest.
      this.buckets.delete(key);
    } else {
      if (this.buckets.size >= this.limits.maxAddresses) {
        const [oldestKey, oldest] = this.buckets.entries().next().value!;
        if (now - oldest.at >= this.idleMs) this.buckets.delete(oldestKey);
        else {
          key = SHARED;
          bucket = this.buckets.get(SHARED);
          if (bucket !== undefined) this.buckets.delete(SHARED);
        }
      }
      bucket ??= { tokens: this.limits.burst, refusals: this.limits.refusalBurst, at: now };
    }
    const seconds = Math.max(0, now - bucket.at) / 1000;
    bucket.tokens = Math.min(this.limits.burst, bucket.tokens + seconds * this.limits.ratePerSecond);
    bucket.refusals = Math.min(this.limits.refusalBurst, bucket.refusals + seconds * this.limits.refusalsPerSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    return bucket;
  }
}

/**
 * The key an address is limited under: IPv4 as is (also when mapped into IPv6), IPv6 by its /64, since one
 * subscriber usually holds a whole /64 and could otherwise take a new address for every request.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  if (!address.includes(':')) return address;
  const lower = address.toLowerCase().replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = lower.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}
