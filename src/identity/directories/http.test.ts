// The paging and waiting rules every directory provider shares.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryAfterMs, walkPages } from './http.ts';
import { nextLink } from './okta.ts';
import { isGoogleThrottle } from './google.ts';

test('Retry-After in seconds or as an HTTP date', () => {
  const now = Date.parse('2026-12-03T10:00:00Z');
  assert.equal(retryAfterMs(new Headers({ 'retry-after': '7' }), now), 7000);
  assert.equal(retryAfterMs(new Headers({ 'retry-after': 'Thu, 03 Dec 2026 10:00:30 GMT' }), now), 30_000);
  assert.equal(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now), undefined);
  assert.equal(retryAfterMs(new Headers(), now), undefined);
});

test('a next-page link that comes back to a page already read fails the read instead of looping', async () => {
  const pages: Record<string, { items: number[]; next: string | undefined }> = {
    'https://x/1': { items: [1], next: 'https://x/2' },
    'https://x/2': { items: [2], next: 'https://x/1' },
  };
  await assert.rejects(
    walkPages('okta', 'https://x/1', (url) => Promise.resolve(pages[url]!)),
    /okta: the next-page link repeats a page already read/,
  );
  assert.deepEqual(
    await walkPages('okta', 'https://x/1', (url) =>
      Promise.resolve({ ...pages[url]!, next: url === 'https://x/1' ? 'https://x/2' : undefined }),
    ),
    [1, 2],
  );
});

test('Okta Link headers: rel="next" among others, quoted or not', () => {
  assert.equal(nextLink('<https://a/x?after=1>; rel=next'), 'https://a/x?after=1');
  assert.equal(nextLink('<https://a/x?a=1,b>; rel="self", <https://a/x?after=2>; rel="next"'), 'https://a/x?after=2');
  assert.equal(nextLink('<https://a/x?after=2>; rel="nextish"'), undefined);
});

test('Google throttling: usage-limit reasons on 403 or 429, and nothing else', () => {
  const reason = (r: string) => ({ error: { code: 403, errors: [{ domain: 'usageLimits', reason: r }] } });
  assert.equal(isGoogleThrottle(403, reason('rateLimitExceeded')), true);
  assert.equal(isGoogleThrottle(403, reason('userRateLimitExceeded')), true);
  assert.equal(isGoogleThrottle(429, { error: { code: 429, status: 'RESOURCE_EXHAUSTED' } }), true);
  assert.equal(
    isGoogleThrottle(403, { error: { code: 403, errors: [{ domain: 'global', reason: 'forbidden' }] } }),
    false,
  );
  assert.equal(isGoogleThrottle(500, reason('rateLimitExceeded')), false);
});
