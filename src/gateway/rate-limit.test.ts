import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AddressLimiter, clientKey, WorkCeiling } from './rate-limit.ts';

describe('per-address limits', () => {
  test('an address that keeps causing refusals is answered with a wait, and may try again as its budget refills', () => {
    const limiter = new AddressLimiter({ refusalsPerSecond: 10, refusalBurst: 20 });
    const now = 1_000_000;
    for (let i = 0; i < 20; i++) {
      assert.equal(limiter.take('a', now), 0);
      limiter.settle('a', now, true);
    }
    assert.equal(limiter.take('a', now), 1, 'refused at once, told to retry in a second');
    assert.equal(limiter.take('b', now), 0, 'another address is not affected');
    assert.equal(limiter.take('a', now + 100), 0, 'a tenth of a second later one more refusal is allowed');
  });

  test('requests that are not refused only use the general budget', () => {
    const limiter = new AddressLimiter({ ratePerSecond: 100, burst: 200, refusalBurst: 10 });
    const now = 1_000_000;
    for (let i = 0; i < 200; i++) {
      assert.equal(limiter.take('a', now), 0);
      limiter.settle('a', now, false);
    }
    assert.equal(limiter.take('a', now), 1);
    assert.equal(limiter.take('a', now + 10), 0);
  });

  test('requests being checked at once hold the refusal budget, so together they cannot overdraw it', () => {
    const limiter = new AddressLimiter({ refusalsPerSecond: 1, refusalBurst: 5 });
    const now = 1_000_000;
    for (let i = 0; i < 5; i++) assert.equal(limiter.take('a', now), 0);
    assert.ok(limiter.take('a', now) > 0, 'a sixth concurrent check waits');
    limiter.settle('a', now, false);
    assert.equal(limiter.take('a', now), 0, 'an authenticated one gives its unit back');
  });

  test('with the map of addresses full, a new address gets its own full budget: the least recently used one makes room', () => {
    const limiter = new AddressLimiter({ maxAddresses: 1000, refusalsPerSecond: 1, refusalBurst: 2 });
    const now = 1_000_000;
    // A flood from many addresses, each spending its whole refusal budget, all within a second.
    for (let i = 0; i < 5000; i++) {
      for (let n = 0; n < 2; n++) {
        assert.equal(limiter.take(`flood-${i}`, now), 0);
        limiter.settle(`flood-${i}`, now, true);
      }
    }
    assert.equal(limiter.size, 1000, 'the map stays bounded');
    for (let n = 0; n < 2; n++) assert.equal(limiter.take('contractor', now), 0, 'a fresh address is not locked out');
  });

  test('eviction follows last use: an address in use keeps its spent budget while idle ones are evicted', () => {
    const limiter = new AddressLimiter({ maxAddresses: 3, refusalsPerSecond: 1, refusalBurst: 1 });
    const now = 1_000_000;
    for (const a of ['busy', 'b', 'c']) {
      limiter.take(a, now);
      limiter.settle(a, now, true);
    }
    assert.ok(limiter.take('busy', now) > 0, 'busy spent its budget; this use makes it the most recent');
    limiter.take('d', now);
    assert.ok(limiter.take('busy', now) > 0, 'b, used least recently, was evicted for d, not busy');
    assert.equal(limiter.take('b', now), 0, 'b comes back with a fresh budget (evicting c)');
    assert.equal(limiter.size, 3);
  });

  test('IPv6 addresses are limited by their /64, IPv4-mapped ones as IPv4', () => {
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(clientKey('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(clientKey('192.0.2.1'), '192.0.2.1');
    assert.equal(clientKey(undefined), 'unknown');
  });
});

describe('the ceiling on unauthenticated work', () => {
  test('past its burst, checks wait; units come back with time and from requests that were authenticated', () => {
    const ceiling = new WorkCeiling({ perSecond: 100, burst: 10 });
    const now = 1_000_000;
    for (let i = 0; i < 10; i++) assert.equal(ceiling.take(now), 0);
    assert.equal(ceiling.take(now), 1, 'the eleventh check at once is told to wait a second');
    ceiling.giveBack(now);
    assert.equal(ceiling.take(now), 0, 'a request that turned out authenticated gave its unit back');
    assert.ok(ceiling.take(now) > 0);
    assert.equal(ceiling.take(now + 10), 0, 'a hundredth of a second later, one more');
    for (let i = 0; i < 1000; i++) ceiling.giveBack(now + 20);
    let allowed = 0;
    while (ceiling.take(now + 20) === 0) allowed++;
    assert.equal(allowed, 10, 'never more than the burst at once');
  });
});
