import { strict as assert } from 'node:assert';
import { createHmac, createPublicKey, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { SignJWT, exportJWK } from 'jose';

import { InvalidInput, Unauthenticated } from '../domain/errors.ts';
import { ACCESS_TOKEN_TYPE, createTokenIssuer, type TokenIssuer } from './access-tokens.ts';

const ISSUER = 'https://kubevisa.test';
const AUDIENCE = 'kubevisa';
const KEY_ID = 'key-1';
const NOW = Date.UTC(2030, 0, 15, 9, 0, 0);
/**
 * The longest and the default access token lifetimes, as docs/security.md states it ("10 minutes by default, never more than 15"): written
 * here from the documentation, not imported from the code, so a change of the code's constant fails this test.
 */
const DOCUMENTED_MAX_SECONDS = 900;
const DOCUMENTED_DEFAULT_SECONDS = 600;
const PERSON = { personId: 'p_alice', email: 'alice@vendor.example', sessionId: 's_123' };

const b64u = (value: string | Buffer): string => Buffer.from(value).toString('base64url');
const b64json = (value: unknown): string => b64u(JSON.stringify(value));

/** Claims a genuine token would carry, for hand-crafted forgeries. */
function genuineClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = Math.floor(NOW / 1000);
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: PERSON.personId,
    email: PERSON.email,
    sid: PERSON.sessionId,
    jti: 'forged',
    iat,
    nbf: iat,
    exp: iat + 600,
    ...overrides,
  };
}

/** Signs header.payload with an Ed25519 key by hand, so any header can be produced. */
function signEd25519(header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64json(header)}.${b64json(claims)}`;
  return `${input}.${b64u(nodeSign(null, Buffer.from(input), key))}`;
}

async function expectRefused(issuer: TokenIssuer, token: unknown, reason: string, now = NOW): Promise<void> {
  await assert.rejects(issuer.verify(token, now), (error: unknown) => {
    assert.ok(error instanceof Unauthenticated, `expected Unauthenticated, got ${String(error)}`);
    assert.equal(error.code, 'ERR_UNAUTHENTICATED');
    assert.equal(error.status, 401);
    assert.equal(error.details?.reason, reason, error.message);
    return true;
  });
}

describe('access tokens', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const attacker = generateKeyPairSync('ed25519');
  const issuer = createTokenIssuer({ issuer: ISSUER, audience: AUDIENCE, signingKey: privateKey, keyId: KEY_ID });

  // Counts requests, to prove that no header URL is ever fetched.
  let keyServer: Server;
  let keyServerUrl = '';
  let keyServerHits = 0;
  before(async () => {
    keyServer = createServer((_req, res) => {
      keyServerHits += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"keys":[]}');
    });
    await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
    keyServerUrl = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}/jwks`;
  });
  after(async () => {
    await new Promise<void>((resolve, reject) => keyServer.close((error) => (error ? reject(error) : resolve())));
  });

  describe('issue and verify', () => {
    it('issues a token that verifies back to the same person, session and times', async () => {
      const issued = await issuer.issue({ ...PERSON, now: NOW + 123 });
      assert.equal(issued.issuedAt, NOW);
      assert.equal(issued.expiresAt, NOW + DOCUMENTED_DEFAULT_SECONDS * 1000);
      const verified = await issuer.verify(issued.token, NOW + 1000);
      assert.deepEqual(verified, {
        ...PERSON,
        tokenId: issued.tokenId,
        issuedAt: issued.issuedAt,
        expiresAt: issued.expiresAt,
      });
    });

    it('writes the pinned header: EdDSA, kubevisa-access+jwt, configured kid', async () => {
      const { token } = await issuer.issue({ ...PERSON, now: NOW });
      const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as unknown;
      assert.deepEqual(header, { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID });
    });

    it('gives each token its own jti', async () => {
      const a = await issuer.issue({ ...PERSON, now: NOW });
      const b = await issuer.issue({ ...PERSON, now: NOW });
      assert.notEqual(a.tokenId, b.tokenId);
    });

    it('refuses lifetimes above 900 seconds, below 1 second or fractional', async () => {
      for (const expiresInSeconds of [DOCUMENTED_MAX_SECONDS + 1, 0, -5, 1.5, Number.NaN]) {
        await assert.rejects(issuer.issue({ ...PERSON, now: NOW, expiresInSeconds }), InvalidInput);
      }
      const longest = await issuer.issue({ ...PERSON, now: NOW, expiresInSeconds: DOCUMENTED_MAX_SECONDS });
      assert.equal(longest.expiresAt - longest.issuedAt, DOCUMENTED_MAX_SECONDS * 1000);
    });

    it('refuses to issue without a person, email or session', async () => {
      await assert.rejects(issuer.issue({ ...PERSON, personId: '', now: NOW }), InvalidInput);
      await assert.rejects(issuer.issue({ ...PERSON, email: ' ', now: NOW }), InvalidInput);
      await assert.rejects(issuer.issue({ ...PERSON, sessionId: '', now: NOW }), InvalidInput);
    });

    it('publishes only public key material in its JWK Set', () => {
      const { keys } = issuer.jwks();
      assert.equal(keys.length, 1);
      assert.equal(keys[0]?.kid, KEY_ID);
      assert.equal(keys[0]?.alg, 'EdDSA');
      assert.ok(!('d' in (keys[0] ?? {})));
      assert.equal(keys[0]?.x, publicKey.export({ format: 'jwk' }).x);
    });

    it('accepts an extractable WebCrypto CryptoKey as the signing key and refuses a non-extractable one', async () => {
      const locked = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
      assert.throws(
        () => createTokenIssuer({ issuer: ISSUER, audience: AUDIENCE, signingKey: locked.privateKey, keyId: 'web' }),
        InvalidInput,
      );
      const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
      const webIssuer = createTokenIssuer({
        issuer: ISSUER,
        audience: AUDIENCE,
        signingKey: pair.privateKey,
        keyId: 'web',
      });
      const { token } = await webIssuer.issue({ ...PERSON, now: NOW });
      assert.equal((await webIssuer.verify(token, NOW)).personId, PERSON.personId);
    });
  });

  describe('configuration', () => {
    it('refuses a signing key that is not an Ed25519 private key', () => {
      const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      assert.throws(
        () => createTokenIssuer({ issuer: ISSUER, audience: AUDIENCE, signingKey: p256.privateKey, keyId: KEY_ID }),
        InvalidInput,
      );
      assert.throws(
        () => createTokenIssuer({ issuer: ISSUER, audience: AUDIENCE, signingKey: publicKey, keyId: KEY_ID }),
        InvalidInput,
      );
    });

    it('refuses a clock tolerance above 60 seconds', () => {
      assert.throws(
        () =>
          createTokenIssuer({
            issuer: ISSUER,
            audience: AUDIENCE,
            signingKey: privateKey,
            keyId: KEY_ID,
            clockToleranceSeconds: 61,
          }),
        InvalidInput,
      );
    });

    it('refuses an empty issuer, audience or key id', () => {
      assert.throws(
        () => createTokenIssuer({ issuer: '', audience: AUDIENCE, signingKey: privateKey, keyId: KEY_ID }),
        InvalidInput,
      );
      assert.throws(
        () => createTokenIssuer({ issuer: ISSUER, audience: '', signingKey: privateKey, keyId: KEY_ID }),
        InvalidInput,
      );
      assert.throws(
        () => createTokenIssuer({ issuer: ISSUER, audience: AUDIENCE, signingKey: privateKey, keyId: '' }),
        InvalidInput,
      );
    });
  });

  describe('time', () => {
    it('refuses a token past exp plus the 60 s tolerance and accepts it within the tolerance', async () => {
      const { token, expiresAt } = await issuer.issue({ ...PERSON, now: NOW });
      assert.equal((await issuer.verify(token, expiresAt + 59_000)).personId, PERSON.personId);
      await expectRefused(issuer, token, 'expired', expiresAt + 61_000);
    });

    it('honours a smaller configured tolerance', async () => {
      const strict = createTokenIssuer({
        issuer: ISSUER,
        audience: AUDIENCE,
        signingKey: privateKey,
        keyId: KEY_ID,
        clockToleranceSeconds: 5,
      });
      const { token, expiresAt } = await strict.issue({ ...PERSON, now: NOW });
      await expectRefused(strict, token, 'expired', expiresAt + 6_000);
    });

    it('refuses a token used before nbf minus the tolerance and accepts it within the tolerance', async () => {
      const { token } = await issuer.issue({ ...PERSON, now: NOW });
      assert.equal((await issuer.verify(token, NOW - 59_000)).personId, PERSON.personId);
      await expectRefused(issuer, token, 'not_yet_valid', NOW - 61_000);
    });

    it('refuses a token signed with the real key that claims to live longer than 900 seconds', async () => {
      const iat = Math.floor(NOW / 1000);
      const token = await new SignJWT({ email: PERSON.email, sid: PERSON.sessionId })
        .setProtectedHeader({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(PERSON.personId)
        .setJti('long')
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + 86_400)
        .sign(privateKey);
      await expectRefused(issuer, token, 'claims', NOW + 1000);
      // And a day later the iat check alone refuses it.
      await expectRefused(issuer, token, 'expired', NOW + 3_600_000);
    });
  });

  describe('claims', () => {
    it('refuses a token from another issuer even when signed with the same key', async () => {
      const other = createTokenIssuer({
        issuer: 'https://evil.test',
        audience: AUDIENCE,
        signingKey: privateKey,
        keyId: KEY_ID,
      });
      const { token } = await other.issue({ ...PERSON, now: NOW });
      await expectRefused(issuer, token, 'claims');
    });

    it('refuses a token for another audience even when signed with the same key', async () => {
      const other = createTokenIssuer({
        issuer: ISSUER,
        audience: 'kubernetes',
        signingKey: privateKey,
        keyId: KEY_ID,
      });
      const { token } = await other.issue({ ...PERSON, now: NOW });
      await expectRefused(issuer, token, 'claims');
    });

    it('refuses an audience array, even one that contains kubevisa: the audience must be exactly ours', async () => {
      for (const aud of [['kubernetes'], [AUDIENCE, 'kubernetes'], [AUDIENCE]]) {
        const token = signEd25519(
          { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID },
          genuineClaims({ aud }),
          privateKey,
        );
        await expectRefused(issuer, token, 'claims');
      }
    });

    it('refuses a token signed with the real key but missing the session claim', async () => {
      const claims = genuineClaims();
      delete claims.sid;
      const token = signEd25519({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID }, claims, privateKey);
      await expectRefused(issuer, token, 'claims');
    });

    it('refuses a token whose claims have the wrong types', async () => {
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID },
        genuineClaims({ email: ['a@b'] }),
        privateKey,
      );
      await expectRefused(issuer, token, 'claims');
    });
  });

  describe('attacks', () => {
    it('refuses alg "none" (unsigned token)', async () => {
      const token = `${b64json({ alg: 'none', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })}.${b64json(genuineClaims())}.`;
      await expectRefused(issuer, token, 'algorithm');
      const noneUpper = `${b64json({ alg: 'NONE', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })}.${b64json(genuineClaims())}.`;
      await expectRefused(issuer, noneUpper, 'algorithm');
    });

    it('refuses HS256 signed with the public key bytes (algorithm confusion)', async () => {
      const header = b64json({ alg: 'HS256', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID });
      const input = `${header}.${b64json(genuineClaims())}`;
      const spkiPem = publicKey.export({ format: 'pem', type: 'spki' });
      const spkiDer = publicKey.export({ format: 'der', type: 'spki' });
      const raw = Buffer.from(String(publicKey.export({ format: 'jwk' }).x), 'base64url');
      const jwkJson = JSON.stringify(issuer.jwks().keys[0]);
      for (const secret of [spkiPem, spkiDer, raw, jwkJson]) {
        const token = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
        await expectRefused(issuer, token, 'algorithm');
      }
    });

    it('refuses a token that embeds its own key in a jwk header', async () => {
      const attackerJwk = await exportJWK(attacker.publicKey);
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID, jwk: attackerJwk },
        genuineClaims(),
        attacker.privateKey,
      );
      await expectRefused(issuer, token, 'key_in_header');
      // Even with the genuine signature, a jwk header is refused: the header itself is the attack.
      const genuineJwk = await exportJWK(publicKey);
      const withGenuine = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID, jwk: genuineJwk },
        genuineClaims(),
        privateKey,
      );
      await expectRefused(issuer, withGenuine, 'key_in_header');
    });

    it('refuses jku and x5u headers without fetching the URL', async () => {
      for (const name of ['jku', 'x5u']) {
        const token = signEd25519(
          { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID, [name]: keyServerUrl },
          genuineClaims(),
          attacker.privateKey,
        );
        await expectRefused(issuer, token, 'key_in_header');
      }
      assert.equal(keyServerHits, 0, 'a key URL from a token header was fetched');
    });

    it('refuses an x5c certificate chain header', async () => {
      const attackerSpki = attacker.publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID, x5c: [attackerSpki] },
        genuineClaims(),
        attacker.privateKey,
      );
      await expectRefused(issuer, token, 'key_in_header');
    });

    it('refuses a token signed by another Ed25519 key under our kid', async () => {
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID },
        genuineClaims(),
        attacker.privateKey,
      );
      await expectRefused(issuer, token, 'signature');
    });

    it('refuses a token with an unknown or missing kid', async () => {
      await expectRefused(
        issuer,
        signEd25519({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: 'attacker' }, genuineClaims(), attacker.privateKey),
        'unknown_key',
      );
      await expectRefused(
        issuer,
        signEd25519({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE }, genuineClaims(), privateKey),
        'unknown_key',
      );
    });

    it('refuses a genuine token whose payload was edited', async () => {
      const { token } = await issuer.issue({ ...PERSON, now: NOW });
      const [header, , signature] = token.split('.');
      const forged = `${header}.${b64json(genuineClaims({ sub: 'p_admin', jti: 'x' }))}.${signature}`;
      await expectRefused(issuer, forged, 'signature');
    });

    it('refuses other algorithms, including the fully specified Ed25519 identifier', async () => {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const rs256 = await new SignJWT(genuineClaims())
        .setProtectedHeader({ alg: 'RS256', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })
        .sign(rsa.privateKey);
      await expectRefused(issuer, rs256, 'algorithm');
      const ed25519 = signEd25519({ alg: 'Ed25519', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID }, genuineClaims(), privateKey);
      await expectRefused(issuer, ed25519, 'algorithm');
    });

    it('refuses a token without the kubevisa typ, even when signed with the real key', async () => {
      await expectRefused(
        issuer,
        signEd25519({ alg: 'EdDSA', typ: 'JWT', kid: KEY_ID }, genuineClaims(), privateKey),
        'type',
      );
      await expectRefused(issuer, signEd25519({ alg: 'EdDSA', kid: KEY_ID }, genuineClaims(), privateKey), 'type');
      await expectRefused(
        issuer,
        signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: KEY_ID }, genuineClaims(), privateKey),
        'type',
      );
    });

    it('refuses an unknown critical header', async () => {
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID, crit: ['x-kubevisa'], 'x-kubevisa': 1 },
        genuineClaims(),
        privateKey,
      );
      await assert.rejects(issuer.verify(token, NOW), Unauthenticated);
    });

    it('answers garbage with Unauthenticated and nothing else', async () => {
      const { token } = await issuer.issue({ ...PERSON, now: NOW });
      const garbage: unknown[] = [
        undefined,
        null,
        42,
        {},
        '',
        'abc',
        'a.b.c',
        '..',
        `${token}.extra`,
        token.replace('.', '..'),
        `Bearer ${token}`,
        'x'.repeat(5000),
        `${b64u('{')}.${b64json(genuineClaims())}.sig`,
        `${b64json({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })}.${b64u('not json')}.${b64u('sig')}`,
        `${b64json({ alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID })}.${b64json([1, 2])}.${b64u('sig')}`,
      ];
      for (let i = 0; i < 200; i += 1) {
        garbage.push(
          Buffer.from(Array.from({ length: 1 + (i % 60) }, (_, j) => (i * 31 + j * 17) % 256)).toString('latin1'),
        );
      }
      for (const value of garbage) {
        await assert.rejects(issuer.verify(value, NOW), Unauthenticated);
      }
      await assert.rejects(issuer.verify(token, Number.NaN), Unauthenticated);
    });

    it('never puts the token into the error message', async () => {
      const token = signEd25519(
        { alg: 'EdDSA', typ: ACCESS_TOKEN_TYPE, kid: KEY_ID },
        genuineClaims(),
        attacker.privateKey,
      );
      await assert.rejects(issuer.verify(token, NOW), (error: Error) => {
        for (const part of token.split('.')) assert.ok(!error.message.includes(part));
        return true;
      });
    });
  });

  describe('key rotation', () => {
    it('accepts tokens from a previous key only when it is configured', async () => {
      const next = generateKeyPairSync('ed25519');
      const { token } = await issuer.issue({ ...PERSON, now: NOW });
      const rotated = createTokenIssuer({
        issuer: ISSUER,
        audience: AUDIENCE,
        signingKey: next.privateKey,
        keyId: 'key-2',
        previousKeys: [{ keyId: KEY_ID, publicKey: createPublicKey(privateKey) }],
      });
      assert.equal((await rotated.verify(token, NOW)).personId, PERSON.personId);
      assert.deepEqual(
        rotated.jwks().keys.map((key) => key.kid),
        ['key-2', KEY_ID],
      );
      const withoutPrevious = createTokenIssuer({
        issuer: ISSUER,
        audience: AUDIENCE,
        signingKey: next.privateKey,
        keyId: 'key-2',
      });
      await expectRefused(withoutPrevious, token, 'unknown_key');
    });

    it('refuses a configuration that uses one key id twice', () => {
      assert.throws(
        () =>
          createTokenIssuer({
            issuer: ISSUER,
            audience: AUDIENCE,
            signingKey: privateKey,
            keyId: KEY_ID,
            previousKeys: [{ keyId: KEY_ID, publicKey: attacker.publicKey }],
          }),
        InvalidInput,
      );
    });
  });
});
