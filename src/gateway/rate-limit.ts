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
  /**
   * Addresses tracked at once (default 10 000). Past that, a new address takes the place of the one used least
   * recently, which starts afresh if it comes back: so no address, however many others are active, ever waits for a
   * slot. Evicting lets a source with more addresses than the table reset its own budgets, but such a source gets a
   * fresh budget with each new address anyway: per-address limits bound one source, and the ceiling on
   * unauthenticated work (`WorkCeiling`) bounds them all together.
   */
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

/**
 * Two token buckets per client address, checked before anything else is done with a request: one for all requests,
 * one for the refusals of unauthenticated ones. The map is bounded and kept in order of last use (a use moves an
 * address to the end), so when it is full the address evicted is the one idle longest, in constant time.
 */
export class AddressLimiter {
  private readonly buckets = new Map<string, AddressBucket>();
  private readonly limits: AddressLimits;

  constructor(limits: Partial<AddressLimits> = {}) {
    this.limits = { ...DEFAULT_ADDRESS_LIMITS, ...limits };
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
      // A shared bucket for the addresses that find no room would let a flood from many addresses lock out anyone
      // arriving from a new one: the least recently used address makes room instead.
      if (this.buckets.size >= this.limits.maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: this.limits.burst, refusals: this.limits.refusalBurst, at: now };
    }
    const seconds = Math.max(0, now - bucket.at) / 1000;
    bucket.tokens = Math.min(this.limits.burst, bucket.tokens + seconds * this.limits.ratePerSecond);
    bucket.refusals = Math.min(this.limits.refusalBurst, bucket.refusals + seconds * this.limits.refusalsPerSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    return bucket;
  }
}

export interface WorkCeilingLimits {
  /**
   * Requests without a token the gateway already knows that may be checked per second across all addresses
   * (default 1000), and at once (default 2000). A check's unit is given back when the request turns out to be
   * authenticated, so what the ceiling counts is refusals of unauthenticated requests, and checks in flight.
   */
  perSecond: number;
  burst: number;
}

export const DEFAULT_WORK_CEILING: WorkCeilingLimits = { perSecond: 1000, burst: 2000 };

/**
 * One budget for the unauthenticated work of all client addresses together. Per-address limits stop one source; a
 * source with many addresses (an IPv6 /48 holds 65 536 /64s) gets a fresh budget with each, and could make the
 * gateway verify tokens and write refusals as fast as it can send. Past this ceiling, requests without a token the
 * gateway already verified are answered at once, before any work; those with such a token are never held back by it.
 */
export class WorkCeiling {
  private readonly limits: WorkCeilingLimits;
  private units: number;
  private at: number | undefined;

  constructor(limits: Partial<WorkCeilingLimits> = {}) {
    this.limits = { ...DEFAULT_WORK_CEILING, ...limits };
    this.units = this.limits.burst;
  }

  /** 0 when the check of an unauthenticated request may go on (it holds one unit); otherwise the seconds to wait. */
  take(now: number): number {
    this.refill(now);
    if (this.units < 1) return Math.ceil((1 - this.units) / this.limits.perSecond);
    this.units -= 1;
    return 0;
  }

  /** Gives back the unit a request held, because it was not refused as unauthenticated. */
  giveBack(now: number): void {
    this.refill(now);
    this.units = Math.min(this.limits.burst, this.units + 1);
  }

  private refill(now: number): void {
    if (this.at !== undefined)
      this.units = Math.min(
        this.limits.burst,
        this.units + (Math.max(0, now - this.at) / 1000) * this.limits.perSecond,
      );
    this.at = now;
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
