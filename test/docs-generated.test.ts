// The generated references in docs/ say what the code says: docs/cli.md is every command's own `--help`
// (src/cli/commands.ts), and docs/api-reference.md is the OpenAPI document a real server serves. Each is made again
// in memory and compared; a difference fails with the command that brings the page up to date. The index,
// docs/README.md, links every page.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { commands } from '../src/cli/commands.ts';
import { helpText } from '../src/cli/framework.ts';
import { CLI_DOC, CLI_REFRESH, cliReference } from '../scripts/docs-cli.ts';
import { API_DOC, API_REFRESH, apiReference, servedOpenApiDocument } from '../scripts/docs-api.ts';

test('docs/cli.md is the help of every command, as the command table renders it now', () => {
  const reference = cliReference();
  // Not an empty page that trivially matches itself: every command's help, verbatim.
  for (const spec of commands) assert.ok(reference.includes(helpText(spec).trimEnd()), spec.path.join(' '));
  assert.equal(readFileSync(CLI_DOC, 'utf8'), reference, `docs/cli.md is out of date: run ${CLI_REFRESH}`);
});

test('docs/api-reference.md is the OpenAPI document the server serves, route by route', async () => {
  const doc = await servedOpenApiDocument();
  const reference = apiReference(doc);
  const routes = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => `### ${method.toUpperCase()} ${path}`),
  );
  assert.ok(routes.length > 40, `routes in the document: ${routes.length}`);
  for (const heading of ['### POST /api/v1/visas', '### POST /api/v1/persons/{id}/offboard', '### GET /scim/v2/Users'])
    assert.ok(routes.includes(heading), `${heading} is served`);
  for (const heading of routes) assert.ok(reference.includes(`${heading}\n`), `${heading} is in the reference`);
  assert.equal(readFileSync(API_DOC, 'utf8'), reference, `docs/api-reference.md is out of date: run ${API_REFRESH}`);
});

test('docs/README.md links every page in docs/, and every relative link in it and in concepts.md resolves', () => {
  const docs = fileURLToPath(new URL('../docs/', import.meta.url));
  const pages = (readdirSync(docs, { recursive: true }) as string[]).filter(
    (f) => f.endsWith('.md') && f !== 'README.md',
  );
  assert.ok(pages.length >= 15, `pages: ${pages.length}`);
  const index = readFileSync(join(docs, 'README.md'), 'utf8');
  for (const page of pages) assert.ok(index.includes(`](${page})`), `docs/README.md does not link ${page}: add a line`);
  for (const file of ['README.md', 'concepts.md']) {
    const text = readFileSync(join(docs, file), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)) {
      assert.ok(existsSync(join(dirname(join(docs, file)), target!)), `docs/${file} links ${target}, which is missing`);
    }
  }
});
