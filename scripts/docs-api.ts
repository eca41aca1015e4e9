/**
 * docs/api-reference.md, made from the OpenAPI document the server serves at /api/v1/openapi.json: the document is
 * produced from the route declarations when the capabilities are wired (src/server/routes.ts), so this starts the real
 * server (the in-process OIDC provider, SQLite in a temporary folder, no cluster, SCIM enabled so its tree is listed),
 * fetches the document over HTTP as a client would, and renders it.
 *
 *   node scripts/docs-api.ts           prints the reference
 *   node scripts/docs-api.ts --write   writes it to docs/api-reference.md
 *
 * test/docs-generated.test.ts fails when docs/api-reference.md and the served document differ.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../src/dev/cluster/control-plane.ts';
import { startDevIdp } from '../src/dev/idp.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/main.ts';

export const API_DOC = fileURLToPath(new URL('../docs/api-reference.md', import.meta.url));
export const API_REFRESH = 'node scripts/docs-api.ts --write';

type Json = Record<string, unknown>;
interface Parameter {
  name: string;
  in: string;
  required: boolean;
  schema: Json;
}
interface Operation {
  summary: string;
  'x-kubevisa-auth': string;
  'x-kubevisa-roles'?: string[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: Json }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Json }> }>;
}
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
}

/** The document as a running server serves it; the server and its identity provider are stopped afterwards. */
export async function servedOpenApiDocument(): Promise<OpenApiDocument> {
  const dir = await mkdtemp(join(tmpdir(), 'kubevisa-docs-api-'));
  const [port] = await freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  const clientSecret = 'docs-client-secret';
  const idp = await startDevIdp({
    accounts: [],
    clients: [{ clientId: 'kubevisa', clientSecret, redirectUris: [`${url}/api/v1/login/callback`] }],
  });
  try {
    const dataDir = join(dir, 'data');
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const config = parseServerConfig(
      {
        listen: { host: '127.0.0.1', port },
        dataDir,
        oidc: { issuer: idp.issuer, clientId: 'kubevisa', clientSecret, allowInsecureHttp: true },
        roles: { adminGroups: ['kubevisa-admins'] },
        clusters: [],
        scim: {},
      },
      dir,
    );
    const server = await startServer(config);
    try {
      const answer = await fetch(`${url}/api/v1/openapi.json`, { signal: AbortSignal.timeout(30_000) });
      if (!answer.ok) throw new Error(`GET /api/v1/openapi.json answered ${answer.status}`);
      return (await answer.json()) as OpenApiDocument;
    } finally {
      await server.stop();
    }
  } finally {
    await idp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const AUTH_TEXT: Record<string, string> = {
  none: 'none (anyone)',
  token: "the route's own bearer token (see the summary)",
  session: 'a kubevisa session (any person; the operation decides what they may see or do)',
};

/** Who may call: the roles the document lists for a role route, else what its `x-kubevisa-auth` means. */
function authText(operation: Operation): string {
  const roles = operation['x-kubevisa-roles'];
  if (roles && roles.length > 0) return `a kubevisa session holding the role ${roles.join(' or ')}`;
  return AUTH_TEXT[operation['x-kubevisa-auth']] ?? operation['x-kubevisa-auth'];
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** A schema in a few words: its type and the constraints a caller must meet. */
export function schemaSummary(schema: Json): string {
  if (Array.isArray(schema.enum)) return `one of ${schema.enum.map((v) => `\`${String(v)}\``).join(', ')}`;
  if ('const' in schema) return `\`${String(schema.const)}\``;
  if (Array.isArray(schema.oneOf ?? schema.anyOf)) {
    return ((schema.oneOf ?? schema.anyOf) as Json[]).map(schemaSummary).join(' or ');
  }
  const type = Array.isArray(schema.type) ? schema.type.join(' or ') : String(schema.type ?? 'any');
  const notes: string[] = [];
  if (type === 'array' && schema.items) notes.push(`of (${schemaSummary(schema.items as Json)})`);
  if (type === 'object' && schema.properties) {
    const required = new Set((schema.required as string[] | undefined) ?? []);
    const fields = Object.keys(schema.properties as Json).map((k) => (required.has(k) ? `${k}*` : k));
    notes.push(`{ ${fields.join(', ')} }`);
  }
  const bounds: [string, string][] = [
    ['minLength', 'length ≥'],
    ['maxLength', 'length ≤'],
    ['minimum', '≥'],
    ['maximum', '≤'],
    ['minItems', 'items ≥'],
    ['maxItems', 'items ≤'],
    ['format', 'format'],
    ['pattern', 'pattern'],
  ];
  for (const [key, text] of bounds) {
    if (schema[key] !== undefined)
      notes.push(key === 'pattern' ? `${text} \`${String(schema[key])}\`` : `${text} ${String(schema[key])}`);
  }
  return [type, ...notes].join(', ');
}

function fieldsTable(schema: Json): string[] {
  const properties = schema.properties as Record<string, Json> | undefined;
  if (schema.type !== 'object' || !properties) return [`Body: ${cell(schemaSummary(schema))}`];
  const required = new Set((schema.required as string[] | undefined) ?? []);
  const lines = [
    `Body (JSON${schema.additionalProperties === false ? '; other fields are refused' : ''}):`,
    '',
    '| Field | Required | Schema |',
    '| --- | --- | --- |',
  ];
  for (const [name, field] of Object.entries(properties)) {
    lines.push(`| \`${name}\` | ${required.has(name) ? 'yes' : 'no'} | ${cell(schemaSummary(field))} |`);
  }
  return lines;
}

/** The reference as markdown: one section per route, grouped by the path's first segment after the version. */
export function apiReference(doc: OpenApiDocument): string {
  const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method: method.toUpperCase(), operation })),
  );
  const group = (path: string) =>
    path
      .split('/')
      .slice(path.startsWith('/api/') ? 3 : 1, path.startsWith('/api/') ? 4 : 3)
      .join('/');
  const groups = [...new Set(operations.map((o) => group(o.path)))];
  const lines = [
    '# API reference',
    '',
    `<!-- Made by scripts/docs-api.ts from the OpenAPI document the server serves; do not edit by hand: run ${API_REFRESH}. -->`,
    '',
    `Every route the server declares, as its OpenAPI ${doc.openapi} document (\`GET /api/v1/openapi.json\`) states it. ` +
      'How to authenticate, the error format and worked examples are in [api.md](api.md); roles are explained in ' +
      '[concepts.md](concepts.md). Routes under `/api/` answer an error as `application/problem+json` (`type`, ' +
      '`title`, `status`, `code`, `detail`); request bodies and query strings are validated strictly (a wrong type or ' +
      'an unknown field is refused, never coerced or dropped). In a schema summary, a field marked `*` is required. ' +
      'The SCIM tree (`/scim/v2`, its own errors as RFC 7644 says) is served when the `scim` section is configured.',
    '',
  ];
  for (const name of groups) {
    lines.push(`## ${name}`, '');
    for (const { path, method, operation } of operations.filter((o) => group(o.path) === name)) {
      lines.push(`### ${method} ${path}`, '', cell(operation.summary), '');
      lines.push(`- Auth: ${authText(operation)}`);
      const responses = Object.entries(operation.responses).map(([code, r]) => {
        const types = Object.keys(r.content ?? {});
        return `${code}: ${r.description}${types.length > 0 ? ` (${types.join(', ')})` : ''}`;
      });
      lines.push(`- Responses: ${responses.join('; ')}`);
      if (operation.parameters?.length) {
        lines.push('', '| Parameter | In | Required | Schema |', '| --- | --- | --- | --- |');
        for (const p of operation.parameters) {
          lines.push(`| \`${p.name}\` | ${p.in} | ${p.required ? 'yes' : 'no'} | ${cell(schemaSummary(p.schema))} |`);
        }
      }
      const body = operation.requestBody?.content['application/json']?.schema;
      if (body) lines.push('', ...fieldsTable(body));
      lines.push('');
    }
  }
  return lines.join('\n').trimEnd() + '\n';
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const reference = apiReference(await servedOpenApiDocument());
  if (process.argv.includes('--write')) {
    await writeFile(API_DOC, reference);
    process.stdout.write(`wrote the API reference to ${API_DOC}\n`);
  } else {
    process.stdout.write(reference);
  }
}
