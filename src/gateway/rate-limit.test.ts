import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AddressLimiter, clientKey } from './rate-limit.ts';

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

  test('the map of addresses is bounded: idle ones are forgotten, and past the bound new ones share one budget', () => {
    const limiter = new AddressLimiter({ maxAddresses: 3, refusalsPerSecond: 1, refusalBurst: 2 });
    const now = 1_000_000;
    for (const a of ['a', 'b', 'c']) limiter.take(a, now);
    for (const a of ['d', 'e']) {
      limiter.take(a, now);
      limiter.settle(a, now, true);
    }
    assert.equal(limiter.size, 4, 'three addresses and the shared budget');
    assert.ok(limiter.take('f', now) > 0, 'd and e used up the shared refusal budget, which f shares');
    assert.equal(limiter.take('g', now + 60_000), 0, 'once an old address is idle, a new one takes its place');
    assert.ok(limiter.size <= 4);
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
