/**
 * Serves the console's built front end (`web/dist`, made by scripts/setup.d/40-console.sh) at `/`, with a strict
 * Content Security Policy: scripts and styles only from kubevisa's own origin, no inline script, no eval, no
 * framing. When the front end was never built, every console page says how to build it instead.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply } from 'fastify';

export const DEFAULT_ASSETS_DIR = fileURLToPath(new URL('../../web/dist/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every console page and asset. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};

/** The console's pages (client-side routes): each answers with the same index.html. */
export const CONSOLE_PAGES = ['/', '/access', '/queue', '/admin', '/admin/:section', '/who', '/audit', '/signed-out'];

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};
const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}$/;

export function serveConsoleAssets(app: FastifyInstance, assetsDir: string = DEFAULT_ASSETS_DIR): void {
  const secure = (reply: FastifyReply) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
    return reply;
  };
  // index.html is read on each page load (it is small and names the hashed assets of the current build), so a
  // rebuild is served without a restart.
  const page = async (_request: unknown, reply: FastifyReply) => {
    const html = await readFile(join(assetsDir, 'index.html'), 'utf8').catch(() => undefined);
    secure(reply).header('cache-control', 'no-store').type('text/html; charset=utf-8');
    if (html === undefined) return reply.code(503).send(notBuiltPage(assetsDir));
    return reply.send(html);
  };
  for (const url of CONSOLE_PAGES) app.get(url, page);
  // Hashed asset names never change content, so each is compressed once (the script is ~250 KB, ~75 KB gzipped).
  const gzipped = new Map<string, Buffer>();
  app.get('/assets/:name', async (request, reply) => {
    const name = (request.params as { name: string }).name;
    const type = TYPES[extname(name)];
    const file = join(assetsDir, 'assets', name);
    if (!ASSET_NAME.test(name) || name.includes('..') || type === undefined || !(await isFile(file))) {
      return secure(reply)
        .code(404)
        .type('application/problem+json')
        .send({
          type: 'https://kubevisa.dev/errors/ERR_NOT_FOUND',
          title: 'Not Found',
          status: 404,
          code: 'ERR_NOT_FOUND',
          detail: `no console asset '${name}': reload the console (a newer build may have replaced it)`,
        });
    }
    // Built asset names carry a hash of their content: they never change, so browsers may keep them.
    secure(reply).header('cache-control', 'public, max-age=31536000, immutable').header('vary', 'accept-encoding');
    const content = await readFile(file);
    if (!/\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) return reply.type(type).send(content);
    let compressed = gzipped.get(file);
    if (compressed === undefined) {
      compressed = gzipSync(content);
      if (gzipped.size < 200) gzipped.set(file, compressed);
    }
    return reply.type(type).header('content-encoding', 'gzip').send(compressed);
  });
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true;
}

function notBuiltPage(assetsDir: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kubevisa console not built</title></head>
<body><main><h1>The kubevisa console is not built</h1>
<p>This server has no console assets in <code>${assetsDir.replace(/[&<>"']/g, '')}</code>.</p>
<p>Build them once with <code>scripts/setup.d/40-console.sh</code> (or <code>npx vite build web</code>) and reload this page.
The API, the gateway and the CLI work without them.</p></main></body></html>`;
}
