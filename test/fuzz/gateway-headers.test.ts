// Properties of the headers that cross the gateway (src/gateway/headers.ts). Whatever headers a client sends (every
// casing of Authorization, Impersonate-*, X-Remote-*, X-Forwarded-*, look-alikes, Connection lists naming them), the
// request that leaves for kube-apiserver carries exactly one Authorization, kubevisa's, and exactly one
// Impersonate-User, the one the gateway chose, and nothing else that could choose an identity. Checked on the pure
// function and again on the wire: raw bytes through Node's HTTP parser (with the server's limits) and Node's HTTP
// client to a loopback upstream that records what it received.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import {
  allowedUpgrade,
  downstreamRawHeaders,
  hasBearerSubprotocol,
  isDroppedHeader,
  upstreamHeaders,
} from '../../src/gateway/headers.ts';
import { MAX_HEADER_BYTES, MAX_HEADER_COUNT } from '../../src/server/http.ts';
import { check, checkAsync } from './fuzz.ts';
import { ProtoSafeIncomingMessage } from '../../src/server/safe-incoming.ts';

const IDENTITY = {
  bearerToken: 'kubevisa-cluster-credential',
  impersonateUser: 'system:serviceaccount:kubevisa-visas:cora-0123456789',
};
const UPSTREAM_HOST = '127.0.0.1:6443';

/** Names of headers that could choose an identity or a route upstream, and the gateway's own. */
const SENSITIVE = [
  'Authorization',
  'Proxy-Authorization',
  'Impersonate-User',
  'Impersonate-Group',
  'Impersonate-Uid',
  'Impersonate-Extra-Scopes',
  'Impersonate-Extra-authentication.kubernetes.io%2fcredential-id',
  'X-Remote-User',
  'X-Remote-Group',
  'X-Remote-Extra-Scopes',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Proto',
  'Forwarded',
  'X-Real-IP',
  'X-Client-IP',
  'Host',
  'Connection',
  'Keep-Alive',
  'Proxy-Connection',
  'TE',
  'Trailer',
  'Upgrade',
];
/** Names that only look like the sensitive ones: forwarded as they are, harmless to kube-apiserver. */
const LOOK_ALIKES = ['Impersonate_User', 'ImpersonateUser', 'X-Impersonate-User', 'Authorization2', 'X-Remote_User'];
const ORDINARY = ['Accept', 'Accept-Encoding', 'User-Agent', 'X-Kept', 'Sec-WebSocket-Protocol', 'Content-Type'];
/** Names that are keys of Object.prototype: they must be plain header names, never reach a prototype. */
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];
const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** Every casing a client might use: as written, lower, upper, or alternating. */
const casing = (name: string) =>
  fc
    .constantFrom<'as-is' | 'lower' | 'upper' | 'mixed'>('as-is', 'lower', 'upper', 'mixed')
    .map((how) =>
      how === 'lower'
        ? name.toLowerCase()
        : how === 'upper'
          ? name.toUpperCase()
          : how === 'mixed'
            ? [...name].map((c, i) => (i % 2 ? c.toUpperCase() : c.toLowerCase())).join('')
            : name,
    );
const randomToken = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 24 });
const headerName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...SENSITIVE).chain(casing) },
  { weight: 2, arbitrary: fc.constantFrom(...LOOK_ALIKES, ...ORDINARY).chain(casing) },
  { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_KEYS).chain(casing) },
  { weight: 1, arbitrary: randomToken },
);
/** A Connection value: names (any casing, with the white space HTTP allows around commas). */
const connectionValue = fc
  .array(fc.tuple(fc.oneof(headerName, fc.constantFrom('close', 'keep-alive')), fc.constantFrom('', ' ', '\t', '  ')), {
    minLength: 1,
    maxLength: 5,
  })
  .map((names) => names.map(([name, space]) => `${space}${name}${space}`).join(','));
const headerValue = fc.oneof(
  fc.constantFrom('system:masters', 'system:admin', 'Bearer stolen', 'base64url.bearer.authorization.k8s.io.eA', ''),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
);
/** A raw header list as Node's parser gives it: [name, value, name, value, …], values trimmed. */
const rawHeaders = fc
  .array(
    fc.oneof(
      { weight: 5, arbitrary: fc.tuple(headerName, headerValue) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('Connection', 'connection', 'CONNECTION'), connectionValue) },
    ),
    { maxLength: 24 },
  )
  .map((pairs) => pairs.flatMap(([name, value]) => [name, value.trim()]));

/** What must hold of the headers sent upstream, as a list of what is wrong (empty when all is well). */
function identityProblems(names: string[], valuesOf: (name: string) => string[], upgrade?: string): string[] {
  const problems: string[] = [];
  const authorization = valuesOf('authorization');
  if (authorization.length !== 1 || authorization[0] !== `Bearer ${IDENTITY.bearerToken}`)
    problems.push(`Authorization upstream is ${JSON.stringify(authorization)}`);
  const impersonateUser = valuesOf('impersonate-user');
  if (impersonateUser.length !== 1 || impersonateUser[0] !== IDENTITY.impersonateUser)
    problems.push(`Impersonate-User upstream is ${JSON.stringify(impersonateUser)}`);
  const hosts = valuesOf('host');
  if (hosts.length !== 1 || hosts[0] !== UPSTREAM_HOST) problems.push(`Host upstream is ${JSON.stringify(hosts)}`);
  for (const name of names) {
    const lower = name.toLowerCase();
    if (lower.startsWith('impersonate-') && lower !== 'impersonate-user') problems.push(`${name} went upstream`);
    if (lower.startsWith('x-remote-') || lower.startsWith('x-forwarded-')) problems.push(`${name} went upstream`);
    if (['forwarded', 'x-real-ip', 'x-client-ip', 'proxy-authorization', 'keep-alive', 'te', 'trailer'].includes(lower))
      problems.push(`${name} went upstream`);
    if ((lower === 'upgrade' || lower === 'connection') && upgrade === undefined)
      problems.push(`${name} went upstream`);
  }
  return problems;
}

// Header names that are keys of Object.prototype (`__proto__`, `constructor`, …) are generated too: the headers are
// collected in an object without a prototype, so `constructor` is forwarded as sent and `__proto__` is dropped.

describe('fuzzing the gateway headers (src/gateway/headers.ts)', () => {
  test('upstream headers hold exactly kubevisa’s Authorization and the chosen Impersonate-User, nothing else identity-like', () => {
    check(
      'headers: upstream identity',
      3000,
      fc.property(
        rawHeaders,
        fc.option(fc.constantFrom('websocket', 'SPDY/3.1'), { nil: undefined }),
        (raw, upgrade) => {
          const out = upstreamHeaders(raw, IDENTITY, UPSTREAM_HOST, upgrade);
          assert.equal(Object.getPrototypeOf(out), null, 'collected without a prototype');
          assert.equal(Object.hasOwn(out, '__proto__'), false, 'a header named __proto__ is dropped');
          const names = Object.keys(out);
          for (const name of names) assert.equal(name, name.toLowerCase(), 'names are lower-cased, so none is doubled');
          const valuesOf = (name: string) => (out[name] === undefined ? [] : [out[name]!].flat());
          assert.deepEqual(identityProblems(names, valuesOf, upgrade), []);
          if (upgrade !== undefined) {
            assert.equal(out.connection, 'Upgrade');
            assert.equal(out.upgrade, upgrade);
          }
          // Nothing the client names in Connection survives, except what the gateway itself sets afterwards.
          const listed = new Set<string>();
          for (let i = 0; i < raw.length; i += 2)
            if (raw[i]!.toLowerCase() === 'connection')
              for (const token of raw[i + 1]!.split(',')) listed.add(token.trim().toLowerCase());
          const own = new Set(['host', 'authorization', 'impersonate-user', 'connection', 'upgrade']);
          for (const name of names) assert.ok(own.has(name) || !listed.has(name), `${name} is named in Connection`);
          // Everything else the client sent goes through, each value in order: the gateway filters, it never rewrites.
          for (let i = 0; i < raw.length; i += 2) {
            const name = raw[i]!.toLowerCase();
            if (isDroppedHeader(name) || listed.has(name) || own.has(name)) continue;
            const sent = raw.filter((_, j) => j % 2 === 1 && raw[j - 1]!.toLowerCase() === name);
            assert.deepEqual(valuesOf(name), sent, `${name} is forwarded as sent`);
          }
        },
      ),
    );
  });

  test('downstream headers keep every name with its own value, minus hop-by-hop ones', () => {
    const hopByHop = new Set([
      'connection',
      'keep-alive',
      'transfer-encoding',
      'proxy-connection',
      'upgrade',
      'trailer',
    ]);
    check(
      'headers: downstream',
      2000,
      fc.property(rawHeaders, (raw) => {
        const out = downstreamRawHeaders(raw);
        const kept: string[] = [];
        for (let i = 0; i < raw.length; i += 2)
          if (!hopByHop.has(raw[i]!.toLowerCase())) kept.push(raw[i]!, raw[i + 1]!);
        assert.deepEqual(out, kept);
      }),
    );
  });

  test('allowedUpgrade answers websocket, SPDY/3.1 or nothing, for any Upgrade value', () => {
    check(
      'headers: upgrade',
      2000,
      fc.property(
        fc.option(
          fc.oneof(
            fc.constantFrom('websocket', 'WebSocket', ' websocket ', 'spdy/3.1', 'SPDY/3.1', 'h2c', 'websocket, h2c'),
            fc.string({ maxLength: 30 }),
          ),
          { nil: undefined },
        ),
        (value) => {
          const answer = allowedUpgrade(value);
          const normalized = value?.trim().toLowerCase();
          const expected =
            normalized === 'websocket' ? 'websocket' : normalized === 'spdy/3.1' ? 'SPDY/3.1' : undefined;
          assert.equal(answer, expected);
        },
      ),
    );
  });

  test('hasBearerSubprotocol finds a bearer subprotocol in any casing, list position or repeated header', () => {
    const protocol = fc.oneof(
      fc.constantFrom('v5.channel.k8s.io', 'v4.channel.k8s.io', 'channel.k8s.io', 'base64.binary.k8s.io'),
      fc
        .tuple(casing('base64url.bearer.authorization.k8s.io.'), fc.base64String({ maxLength: 40 }))
        .map(([prefix, token]) => prefix + token.replaceAll('=', '')),
      fc.string({ maxLength: 20 }),
    );
    const headers = fc.array(
      fc.oneof(
        fc.tuple(
          casing('Sec-WebSocket-Protocol'),
          fc.array(protocol, { minLength: 1, maxLength: 4 }).map((p) => p.join(', ')),
        ),
        fc.tuple(headerName, headerValue),
      ),
      { maxLength: 6 },
    );
    check(
      'headers: bearer subprotocol',
      2000,
      fc.property(headers, (pairs) => {
        const raw = pairs.flat();
        const expected = pairs.some(
          ([name, value]) =>
            name.toLowerCase() === 'sec-websocket-protocol' &&
            value.toLowerCase().includes('base64url.bearer.authorization.k8s.io'),
        );
        assert.equal(hasBearerSubprotocol(raw), expected);
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// On the wire: raw bytes → Node's parser (kubevisa's limits) → upstreamHeaders → Node's client → upstream.

let front: Server;
let upstream: Server;
const received = new Map<string, string[]>();

/** A header line as a client could write it, with the white space variants HTTP forbids or allows. */
const headerLine = fc
  .tuple(
    fc.oneof(
      { weight: 5, arbitrary: fc.tuple(headerName, headerValue) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('Connection', 'connection'), connectionValue) },
    ),
    fc.oneof(
      // Forms HTTP allows…
      {
        weight: 12,
        arbitrary: fc.constantFrom(
          (n: string, v: string) => `${n}: ${v}`,
          (n: string, v: string) => `${n}:${v}`,
          (n: string, v: string) => `${n}:\t${v}\t`,
        ),
      },
      // …and forms it forbids (white space before the colon, folded lines), which Node must refuse outright.
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          (n: string, v: string) => `${n} : ${v}`,
          (n: string, v: string) => `${n}\t: ${v}`,
          (n: string, v: string) => ` ${n}: ${v}`,
          (n: string, v: string) => `\t${n}: ${v}`,
        ),
      },
    ),
  )
  .map(([[name, value], write]) => write(name, value));

/** Sends one request as raw bytes; resolves with the status line's code (0 when the connection just closed). */
function sendRaw(id: string, lines: string[]): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect((front.address() as { port: number }).port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    // Written, not ended: the server answers and closes (Connection: close); a half-closed client may get nothing.
    socket.write(
      Buffer.from(
        [`GET /probe/${id} HTTP/1.1`, 'Host: kubevisa', ...lines, 'Connection: close', '', ''].join('\r\n'),
        'latin1',
      ),
    );
  });
}

before(async () => {
  upstream = createServer({ IncomingMessage: ProtoSafeIncomingMessage }, (req, res) => {
    received.set(req.url ?? '', req.rawHeaders);
    res.end('ok');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve()));
  const upstreamPort = (upstream.address() as { port: number }).port;
  // As the server builds its own (src/server/http.ts): a `__proto__` header must not stop the process.
  front = createServer(
    { IncomingMessage: ProtoSafeIncomingMessage, maxHeaderSize: MAX_HEADER_BYTES },
    (req: IncomingMessage, res) => {
      let headers;
      try {
        headers = upstreamHeaders(req.rawHeaders, IDENTITY, UPSTREAM_HOST);
        // Node's client refuses (throws on) a header it cannot send: the gateway would answer 500.
        const out = request({ host: '127.0.0.1', port: upstreamPort, path: req.url, headers }, (answer) => {
          answer.resume();
          answer.on('end', () => res.end('relayed'));
        });
        out.on('error', () => res.writeHead(502).end());
        out.end();
      } catch (error) {
        res.writeHead(599).end(String(error));
      }
    },
  );
  front.maxHeadersCount = MAX_HEADER_COUNT;
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', () => resolve()));
});

after(async () => {
  await new Promise((resolve) => front.close(resolve));
  await new Promise((resolve) => upstream.close(resolve));
});

describe('fuzzing the gateway headers on the wire (Node parser → upstreamHeaders → Node client)', () => {
  test('a request Node accepts reaches upstream with exactly one Authorization and one Impersonate-User, the gateway’s', async () => {
    let counter = 0;
    await checkAsync(
      'headers: on the wire',
      400,
      fc.asyncProperty(fc.array(headerLine, { maxLength: 16 }), async (lines) => {
        const id = `r${counter++}`;
        const status = await sendRaw(id, lines);
        const upstreamSaw = received.get(`/probe/${id}`);
        const malformed = lines.some((line) => /^\s|\s$/.test(line.slice(0, line.indexOf(':'))));
        if (malformed)
          assert.equal(status, 400, `white space around a header name is refused: ${JSON.stringify(lines)}`);
        if (status === 400) {
          assert.equal(upstreamSaw, undefined, 'a request Node refused is not relayed');
          return;
        }
        assert.equal(status, 200, `Node accepted the request and the gateway could relay it: ${JSON.stringify(lines)}`);
        assert.ok(upstreamSaw, 'upstream received the request');
        const names = upstreamSaw.filter((_, i) => i % 2 === 0);
        const valuesOf = (name: string) =>
          upstreamSaw.filter((_, i) => i % 2 === 1 && upstreamSaw[i - 1]!.toLowerCase() === name);
        // Node's client frames the upstream connection itself with one Connection header of its own.
        assert.ok(['close', 'keep-alive'].includes(valuesOf('connection').join()), 'Connection is Node’s own');
        const others = names.filter((name) => name.toLowerCase() !== 'connection');
        assert.deepEqual(identityProblems(others, valuesOf), [], JSON.stringify(lines));
      }),
    );
  });
});
