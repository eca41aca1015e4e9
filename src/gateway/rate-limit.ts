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
