import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';

import {
  SESSION_SECRET_PREFIX,
  constantTimeEqual,
  generateSessionSecret,
  hashSessionSecret,
  isWellFormedSessionSecret,
  verifySessionSecret,
} from './session-secrets.ts';

describe('session secrets', () => {
  it('generates kvs_-prefixed secrets carrying 32 random bytes as base64url', () => {
    const secret = generateSessionSecret();
    assert.ok(secret.startsWith(SESSION_SECRET_PREFIX));
    const body = secret.slice(SESSION_SECRET_PREFIX.length);
    assert.match(body, /^[A-Za-z0-9_-]+$/);
    assert.equal(Buffer.from(body, 'base64url').length, 32);
    assert.ok(isWellFormedSessionSecret(secret));
  });

  it('never generates the same secret twice in a thousand draws', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i += 1) seen.add(generateSessionSecret());
    assert.equal(seen.size, 1000);
  });

  it('refuses values that do not have the shape of a session secret', () => {
    const good = generateSessionSecret();
    for (const bad of [
      undefined,
      null,
      42,
      '',
      'kvs_',
      good.slice(0, -1),
      `${good}A`,
      `kvx_${good.slice(4)}`,
      good.replace(/.$/, '='),
    ]) {
      assert.equal(isWellFormedSessionSecret(bad), false, `accepted ${String(bad)}`);
    }
  });

  it('stores a SHA-256 hex digest, never the secret itself', () => {
    const secret = generateSessionSecret();
    const hash = hashSessionSecret(secret);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.ok(!hash.includes(secret.slice(4)));
    // The FIPS 180-2 test vector, so a change of algorithm or encoding cannot slip through unnoticed.
    assert.equal(hashSessionSecret('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('verifies a secret against its stored hash and refuses any other secret', () => {
    const secret = generateSessionSecret();
    const stored = hashSessionSecret(secret);
    assert.equal(verifySessionSecret(secret, stored), true);
    assert.equal(verifySessionSecret(generateSessionSecret(), stored), false);
    assert.equal(verifySessionSecret(secret, stored.toUpperCase()), false);
    assert.equal(verifySessionSecret('', stored), false);
  });

  it('compares strings of any length without throwing', () => {
    assert.equal(constantTimeEqual('same', 'same'), true);
    assert.equal(constantTimeEqual('same', 'Same'), false);
    assert.equal(constantTimeEqual('short', 'a much longer value'), false);
    assert.equal(constantTimeEqual('', ''), true);
    assert.equal(constantTimeEqual('', 'x'), false);
  });
});
