// The matrix's two paged axes: rows (subjects) and columns (namespaces), and what each page's rows keep.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pageOfRows, type AccessRow } from './access-matrix.ts';

function row(subject: string, namespaces: string[]): AccessRow {
  return {
    subject,
    kind: 'user',
    managed: false,
    system: false,
    findings: [],
    cells: namespaces.map((namespace) => ({ namespace, roles: ['ClusterRole view'], visaIds: [], risks: [] })),
  };
}

const rows = [row('User:a', ['', 'ns-1', 'ns-2']), row('User:b', ['ns-2', 'ns-3']), row('User:c', ['ns-4'])];

test('the columns are the namespaces of the passing rows, cluster scope first, paged like the rows', () => {
  const first = pageOfRows(rows, { offset: 0, limit: 2, columnLimit: 3 });
  assert.equal(first.total, 3);
  assert.equal(first.columnTotal, 5);
  assert.deepEqual(first.columns, ['', 'ns-1', 'ns-2']);
  assert.deepEqual(
    first.rows.map((r) => [r.subject, r.cells.map((c) => c.namespace)]),
    [
      ['User:a', ['', 'ns-1', 'ns-2']],
      ['User:b', ['ns-2']],
    ],
    "each row keeps only its cells in the page's columns",
  );
  const next = pageOfRows(rows, { offset: 0, limit: 10, columnOffset: 3, columnLimit: 3 });
  assert.deepEqual(next.columns, ['ns-3', 'ns-4']);
  assert.deepEqual(next.rows.find((r) => r.subject === 'User:a')?.cells, []);
});

test('a namespace filter makes that namespace the only column; a filter by name narrows the columns too', () => {
  const page = pageOfRows(rows, { offset: 0, limit: 10, namespace: 'ns-2' });
  assert.deepEqual(page.columns, ['ns-2']);
  assert.deepEqual(
    page.rows.map((r) => r.subject),
    ['User:a', 'User:b'],
  );
  assert.deepEqual(pageOfRows(rows, { offset: 0, limit: 10, q: 'c' }).columns, ['ns-4']);
});

test('a column offset past the end shows the last column rather than none', () => {
  assert.deepEqual(pageOfRows(rows, { offset: 0, limit: 10, columnOffset: 99, columnLimit: 2 }).columns, ['ns-4']);
});
