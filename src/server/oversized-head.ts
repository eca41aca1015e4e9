/**
 * Requests whose head (request line and headers) is larger than the server accepts. Node's parser refuses them
 * itself with a bare 431 before anything knows which endpoint was asked (under TLS the chunk that overflows may not
 * even hold the request line), so an identity provider calling /scim/v2 would get an answer that is not SCIM's. The
 * parser's own limit is therefore set above the one kubevisa enforces, and this check refuses what lies between,
 * in the shape of the endpoint asked: SCIM's error on /scim/v2, problem+json everywhere else. Heads above the
 * parser's limit still get Node's 431.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SCIM_CONTENT_TYPE, scimErrorBody } from '../scim/errors.ts';

/** The largest request head Node's parser reads, in bytes: a backstop well above the limit checked here. */
export const PARSER_HEADER_BYTES = 64 * 1024;

/** What Node's parser counts against its limit: the request target and every header name and value. */
export function headBytes(request: IncomingMessage): number {
  let bytes = request.url?.length ?? 0;
  const raw = request.rawHeaders;
  for (let i = 0; i < raw.length; i++) bytes += raw[i]!.length;
  return bytes;
}

/** Answers 431 and closes the connection (its remaining bytes are not read). */
export function refuseOversizedHead(request: IncomingMessage, response: ServerResponse, limitBytes: number): void {
  const url = request.url ?? '';
  const scim = url === '/scim/v2' || url.startsWith('/scim/v2/') || url.startsWith('/scim/v2?');
  const detail =
    `the request line and headers together are larger than ${limitBytes / 1024} KiB: send a shorter request` +
    (scim ? ' (a long filter goes in the body of POST /Users/.search or /Groups/.search instead)' : '');
  const body = scim
    ? JSON.stringify(scimErrorBody(431, detail))
    : JSON.stringify({
        type: 'https://kubevisa.dev/errors/ERR_HEADERS_TOO_LARGE',
        title: 'Request Header Fields Too Large',
        status: 431,
        code: 'ERR_HEADERS_TOO_LARGE',
        detail,
      });
  response.shouldKeepAlive = false;
  response.writeHead(431, {
    'content-type': scim ? `${SCIM_CONTENT_TYPE}; charset=utf-8` : 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  response.end(body);
}
