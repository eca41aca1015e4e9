/**
 * The access matrix's analysis is shared: refreshes asked for at once, or soon after one, do not list the
 * cluster's RBAC again. The cluster here is a counting stand-in for the four list calls the analysis makes; the
 * matrix against a real control plane is test/console-insight.test.ts.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { AccessMatrices, MIN_REFRESH_MS } from './insight.ts';
import type { ServerContext } from '../server/context.ts';

function matrices() {
  let lists = 0;
  const listed = async () => {
    lists += 1;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return [];
  };
  const context = {
    config: { extensions: {}, dataDir: '/nonexistent' },
    clusters: new Map([
      [
        'prod',
        { listRoles: listed, listClusterRoles: listed, listRoleBindings: listed, listClusterRoleBindings: listed },
      ],
    ]),
    store: { listEngagements: async () => [], listPersons: async () => [], listVisas: async () => [] },
    events: new EventEmitter(),
    onStop: () => {},
  } as unknown as ServerContext;
  return { matrices: new AccessMatrices(context), analyses: () => lists / 4, context };
}

const query = { offset: 0, limit: 10 };

test('forty refreshes at once make one analysis, and a refresh right after it makes none', async () => {
  const { matrices: m, analyses } = matrices();
  const pages = await Promise.all(Array.from({ length: 40 }, () => m.page('prod', query, true)));
  assert.equal(analyses(), 1);
  assert.equal(new Set(pages.map((p) => p.analysedAt)).size, 1);
  await m.page('prod', query, true);
  assert.equal(analyses(), 1, `a refresh within ${MIN_REFRESH_MS} ms of the last analysis reuses it`);
});

test('a changed visa still makes the next page analyse again', async () => {
  const { matrices: m, analyses, context } = matrices();
  await m.page('prod', query);
  context.events.emit('visas-changed');
  await m.page('prod', query);
  assert.equal(analyses(), 2);
});
