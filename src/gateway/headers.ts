/**
 * The headers that cross the gateway. Everything a client could use to choose an identity upstream is
 * dropped (its own Authorization, every Impersonate-*, X-Remote-*, X-Forwarded-*, Forwarded), as are
 * hop-by-hop headers and any header a client names in Connection; the gateway's own Authorization and
 * Impersonate-User are added afterwards, so no Connection trick can remove them.
 */

const ALWAYS_DROPPED = new Set([
  'authorization',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  // Body framing is set by the gateway from what it actually forwards (gateway.ts), never copied from the client.
  'content-length',
  'upgrade',
  'host',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  // A browser holding the console's session cookie (Path=/) sends it here too: a kubevisa secret never goes upstream.
  'cookie',
  // Not a header anyone sends; refused as a name so it can never address an object's prototype.
  '__proto__',
]);
const DROPPED_PREFIXES = ['impersonate-', 'x-remote-', 'x-forwarded-'];

export function isDroppedHeader(lowerName: string): boolean {
  return ALWAYS_DROPPED.has(lowerName) || DROPPED_PREFIXES.some((p) => lowerName.startsWith(p));
}

/** Names listed in the client's Connection header(s), lower-cased. */
function connectionListed(rawHeaders: string[]): Set<string> {
  const listed = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const token of rawHeaders[i + 1]!.split(',')) listed.add(token.trim().toLowerCase());
    }
  }
  return listed;
}

/**
 * Headers for the upstream request: the client's (repeated ones kept as sent, in order) minus the dropped ones,
 * then the gateway's identity. `upgrade` is the validated protocol for upgrade requests.
 */
export function upstreamHeaders(
  rawHeaders: string[],
  identity: { bearerToken: string; impersonateUser: string },
  upstreamHost: string,
  upgrade?: string,
): Record<string, string | string[]> {
  const listed = connectionListed(rawHeaders);
  // No prototype: a client's header called `constructor` or `toString` must not find a function already there.
  const out = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (isDroppedHeader(name) || listed.has(name)) continue;
    const value = rawHeaders[i + 1]!;
    const existing = out[name];
    if (existing === undefined) out[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else out[name] = [existing, value];
  }
  out.host = upstreamHost;
  out.authorization = `Bearer ${identity.bearerToken}`;
  out['impersonate-user'] = identity.impersonateUser;
  if (upgrade !== undefined) {
    out.connection = 'Upgrade';
    out.upgrade = upgrade;
  }
  return out;
}

const RESPONSE_DROPPED = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'upgrade',
  'trailer',
]);

/**
 * The first value of header `lowerName` in a raw list. Answers from upstream are read this way, never through
 * `IncomingMessage.headers`: Node builds that object by assignment, which throws for a header named `__proto__`
 * under `--disable-proto=throw`, and what a pod answers through kube-apiserver must not stop the server.
 */
export function rawHeader(rawHeaders: string[], lowerName: string): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i]!.toLowerCase() === lowerName) return rawHeaders[i + 1];
  return undefined;
}

/** Upstream response headers for the client, as a flat raw list, minus hop-by-hop ones. */
export function downstreamRawHeaders(rawHeaders: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!RESPONSE_DROPPED.has(rawHeaders[i]!.toLowerCase())) out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return out;
}

/** The upgrade protocols the gateway splices: WebSocket and SPDY/3.1 (what kubectl speaks), nothing else. */
export function allowedUpgrade(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const normalized = value.trim().toLowerCase();
  if (normalized === 'websocket') return 'websocket';
  if (normalized === 'spdy/3.1') return 'SPDY/3.1';
  return undefined;
}

/** Browsers put a bearer token in a WebSocket subprotocol; through the gateway that would be a second identity. */
export function hasBearerSubprotocol(rawHeaders: string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (
      rawHeaders[i]!.toLowerCase() === 'sec-websocket-protocol' &&
      /base64url\.bearer\.authorization\.k8s\.io/i.test(rawHeaders[i + 1]!)
    ) {
      return true;
    }
  }
  return false;
}
