import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { rawHeader, upstreamHeaders } from './headers.ts';

test('rawHeader finds the first value of a header whatever its case, and nothing for a missing one', () => {
  const raw = ['Content-Type', 'application/json', '__proto__', 'x', 'content-type', 'text/plain'];
  assert.equal(rawHeader(raw, 'content-type'), 'application/json');
  assert.equal(rawHeader(raw, '__proto__'), 'x');
  assert.equal(rawHeader(raw, 'content-encoding'), undefined);
});

test('upstream headers have no prototype, drop a header named __proto__ and forward constructor as sent', () => {
  const out = upstreamHeaders(
    ['__proto__', '{"role":"admin"}', 'Constructor', 'c', 'Accept', 'a'],
    {
      bearerToken: 't',
      impersonateUser: 'system:serviceaccount:kubevisa-visas:x',
    },
    'upstream:6443',
  );
  assert.equal(Object.getPrototypeOf(out), null);
  assert.equal(Object.hasOwn(out, '__proto__'), false);
  assert.equal(out.constructor, 'c');
  assert.equal(out.accept, 'a');
});

test('the gateway reads upstream answers from rawHeaders only, never through IncomingMessage.headers', async () => {
  // Under --disable-proto=throw, `.headers` of an answer carrying a `__proto__` header throws in an event handler,
  // which would stop the server: a pod can put any header in what kube-apiserver relays from it.
  const source = await readFile(new URL('./gateway.ts', import.meta.url), 'utf8');
  assert.doesNotMatch(source, /(upstreamRes|answer|response)\.headers\b/);
});

test('a Cookie header (the console’s session secret, sent by a browser) never goes upstream', () => {
  const out = upstreamHeaders(
    ['Cookie', '__Host-kubevisa-console=secret', 'cookie', 'other=1', 'Accept', 'a'],
    { bearerToken: 't', impersonateUser: 'system:serviceaccount:kubevisa-visas:x' },
    'upstream:6443',
  );
  assert.equal(Object.hasOwn(out, 'cookie'), false);
  assert.equal(JSON.stringify(out).includes('secret'), false);
  assert.equal(out.accept, 'a');
});
