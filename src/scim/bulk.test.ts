/**
 * The order in which /Bulk runs operations that refer to each other by bulkId: a chain listed backwards, a failed
 * creation failing what depends on it, a cycle, and failOnErrors stopping the run. The service is a recording fake:
 * what the HTTP layer and the real service do with each operation is proven in test/scim-conformance-rfc7644.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBulk } from './bulk.ts';
import type { BulkOptions } from './bulk.ts';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';

function recordingService(refuse: (displayName: string) => boolean = () => false) {
  const calls: { displayName: string; ref?: unknown }[] = [];
  const service = {
    baseUrl: 'https://kubevisa.test/scim/v2',
    createGroup: async (_caller: unknown, data: { displayName: string; ref?: unknown }) => {
      calls.push({ displayName: data.displayName, ref: data.ref });
      if (refuse(data.displayName)) {
        const { ScimError } = await import('./errors.ts');
        throw new ScimError(400, `refused ${data.displayName}`, 'invalidValue');
      }
      return { id: `id-${data.displayName}`, meta: { location: `/Groups/id-${data.displayName}` } };
    },
  };
  const options = { service, onInternalError: () => {} } as unknown as BulkOptions;
  return { options, calls };
}

/** POST /Groups `g<i>` for each i, each referring to the next one's bulkId when `chained`. */
function groups(count: number, chained: boolean, extra: (i: number) => object = () => ({})) {
  return Array.from({ length: count }, (_, i) => ({
    method: 'POST',
    path: '/Groups',
    bulkId: `g${i}`,
    data: {
      schemas: [GROUP],
      displayName: `g${i}`,
      ...(chained && i + 1 < count ? { ref: `bulkId:g${i + 1}` } : {}),
      ...extra(i),
    },
  }));
}

test('a thousand creations chained backwards all run, each after the one it names, with its id filled in', async () => {
  const { options, calls } = recordingService();
  const response = await runBulk(options, {} as never, { schemas: [BULK], Operations: groups(1000, true) });
  assert.equal(response.Operations.length, 1000);
  assert.deepEqual(
    response.Operations.map((o) => o.status),
    Array.from({ length: 1000 }, () => '201'),
  );
  assert.deepEqual(
    calls.map((c) => c.displayName),
    Array.from({ length: 1000 }, (_, i) => `g${999 - i}`),
  );
  assert.equal(calls.find((c) => c.displayName === 'g0')?.ref, 'id-g1');
  assert.equal(response.Operations[0]?.bulkId, 'g0', 'results are in the request’s order');
});

test('a failed creation fails what refers to it, and what refers to that, with 409; the rest runs', async () => {
  const { options, calls } = recordingService((name) => name === 'g2');
  const response = await runBulk(options, {} as never, { schemas: [BULK], Operations: groups(5, true) });
  assert.deepEqual(
    response.Operations.map((o) => [o.bulkId, o.status]),
    [
      ['g0', '409'],
      ['g1', '409'],
      ['g2', '400'],
      ['g3', '201'],
      ['g4', '201'],
    ],
  );
  assert.deepEqual(calls.map((c) => c.displayName).sort(), ['g2', 'g3', 'g4']);
});

test('operations referring to each other in a cycle are 409 and none runs; an unknown bulkId is 409 at once', async () => {
  const { options, calls } = recordingService();
  const operations = [
    ...groups(3, true).map((o, i) => (i === 2 ? { ...o, data: { ...o.data, ref: 'bulkId:g0' } } : o)),
    {
      method: 'POST',
      path: '/Groups',
      bulkId: 'lone',
      data: { schemas: [GROUP], displayName: 'lone', ref: 'bulkId:nobody' },
    },
    { method: 'POST', path: '/Groups', bulkId: 'fine', data: { schemas: [GROUP], displayName: 'fine' } },
  ];
  const response = await runBulk(options, {} as never, { schemas: [BULK], Operations: operations });
  assert.deepEqual(
    response.Operations.map((o) => o.status),
    ['409', '409', '409', '409', '201'],
  );
  assert.match(JSON.stringify(response.Operations[0]), /form a cycle/);
  assert.match(JSON.stringify(response.Operations[3]), /bulkId 'nobody' names no operation/);
  assert.deepEqual(
    calls.map((c) => c.displayName),
    ['fine'],
  );
});

test('failOnErrors stops the run after that many failures, leaving the rest out of the response', async () => {
  const { options, calls } = recordingService((name) => name === 'g1' || name === 'g2');
  const response = await runBulk(options, {} as never, {
    schemas: [BULK],
    failOnErrors: 2,
    Operations: groups(5, false),
  });
  assert.deepEqual(
    response.Operations.map((o) => [o.bulkId, o.status]),
    [
      ['g0', '201'],
      ['g1', '400'],
      ['g2', '400'],
    ],
  );
  assert.equal(calls.length, 3);
});
