// The core journey with the server's state in PostgreSQL: a real `kubevisa server` process configured with
// `store: {engine: postgres}` on a database of its own, the real control plane, the real OIDC provider and kubectl
// through the kubevisa gateway. Request → approve → kubectl works → revoke → kubectl refused and the RoleBinding
// gone; a second visa ends at notAfter; the audit chain verifies; and the state is in PostgreSQL, not in a file.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { eventually, kubectl } from './support/kubectl.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  startServerProcess,
  waitForExit,
  type KubevisaEnv,
} from './support/kubevisa-env.ts';

let env: KubevisaEnv;
let server: ChildProcess | undefined;
let admin: string;
let approver: string;
let cora: { token: string; personId: string };

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });
const gk = (args: string[], kubeconfig: string) => kubectl(env.cp.binaries.kubectl, args, { kubeconfig });
const rbExists = async (namespace: string, visaId: string) =>
  (await env.k(['get', 'rolebinding', `kubevisa-${visaId}`, '-n', namespace])).code === 0;

async function grant(namespace: string, duration: string): Promise<Record<string, unknown>> {
  const requested = await call('POST', '/api/v1/visas', cora.token, {
    profile: 'developer',
    cluster: CLUSTER,
    namespaces: [namespace],
    duration,
    reason: 'postgres journey',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  assert.equal(requested.body.state, 'requested');
  const approved = await call('POST', `/api/v1/visas/${String(requested.body.id)}/approve`, approver, {});
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return approved.body;
}

/** One query on the server's database, as the test's administrative role. */
async function database<T extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: env.postgresUrl });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

before(async () => {
  env = await startKubevisaEnv({ tls: true, autoApproval: false, store: 'postgres' });
  for (const ns of ['pg-work', 'pg-expiry', 'pg-other']) await env.kOk(['create', 'namespace', ns]);
  server = await startServerProcess(env);
  admin = (await loginAs(env.serverUrl, people.sam)).token;
  approver = (await loginAs(env.serverUrl, people.ann)).token;
  cora = await loginAs(env.serverUrl, people.cora);
  const created = await call('POST', '/api/v1/engagements', admin, {
    name: 'postgres',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(5),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['pg-*'], profiles: ['developer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
});

after(async () => {
  if (server !== undefined) {
    server.kill('SIGTERM');
    await waitForExit(server);
  }
  await env?.stop();
});

test('request, approve, kubectl through the gateway, revoke: refused and the RoleBinding gone', async () => {
  const visa = await grant('pg-work', '1h');
  const id = String(visa.id);
  assert.equal(visa.state, 'active');
  await eventually('RoleBinding created', 10_000, () => rbExists('pg-work', id));
  const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora');
  const created = await gk(['create', 'configmap', 'through-the-gateway', '-n', 'pg-work'], kubeconfig);
  assert.equal(created.code, 0, created.stderr);
  const listed = await gk(['get', 'configmaps', '-n', 'pg-work', '-o', 'name'], kubeconfig);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /configmap\/through-the-gateway/);
  const outside = await gk(['get', 'pods', '-n', 'pg-other'], kubeconfig);
  assert.notEqual(outside.code, 0, 'a namespace the visa does not cover is refused');

  // The visa and its events are rows of the server's PostgreSQL database.
  const [row] = await database<{ state: string }>('SELECT state FROM visas WHERE id = $1', [id]);
  assert.equal(row?.state, 'active');
  await eventually('the gateway recorded its requests in PostgreSQL', 10_000, async () => {
    const [counted] = await database<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_events WHERE visa_id = $1 AND action = 'gateway.request'",
      [id],
    );
    return (counted?.n ?? 0) >= 2;
  });

  const revoked = await call('POST', `/api/v1/visas/${id}/revoke`, admin, { reason: 'work done' });
  assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
  assert.equal(revoked.body.state, 'revoked');
  await eventually('RoleBinding removed', 10_000, async () => !(await rbExists('pg-work', id)));
  const refused = await gk(['get', 'configmaps', '-n', 'pg-work'], kubeconfig);
  assert.notEqual(refused.code, 0, 'kubectl through the gateway is refused after revoke');
  const [after] = await database<{ state: string }>('SELECT state FROM visas WHERE id = $1', [id]);
  assert.equal(after?.state, 'revoked');
});

test('a visa ends at notAfter: the RoleBinding goes and kubectl is refused', async () => {
  const visa = await grant('pg-expiry', '8s');
  const id = String(visa.id);
  const notAfter = Date.parse(String(visa.notAfter));
  await eventually('RoleBinding created', 10_000, () => rbExists('pg-expiry', id));
  const kubeconfig = await env.writeGatewayKubeconfig(cora.token, 'cora-expiry');
  const before = await gk(['get', 'configmaps', '-n', 'pg-expiry'], kubeconfig);
  assert.equal(before.code, 0, before.stderr);
  await eventually('RoleBinding gone after notAfter', 30_000, async () => !(await rbExists('pg-expiry', id)));
  assert.ok(Date.now() >= notAfter, 'the RoleBinding was not removed before notAfter');
  const deleted = await call('GET', `/api/v1/audit/events?visa=${id}&action=cluster.rolebinding.delete`, admin);
  assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  const deletedAt = (deleted.body.items as { at: string | number }[]).map((event) => new Date(event.at).getTime());
  assert.equal(deletedAt.length, 1, JSON.stringify(deleted.body.items));
  assert.ok(deletedAt[0]! >= notAfter, `deleted ${deletedAt[0]! - notAfter} ms after notAfter`);
  const refused = await gk(['get', 'configmaps', '-n', 'pg-expiry'], kubeconfig);
  assert.notEqual(refused.code, 0, 'kubectl through the gateway is refused after expiry');
  const stored = await call('GET', `/api/v1/visas/${id}`, cora.token);
  assert.equal(stored.body.state, 'expired');
});

test('the audit chain in PostgreSQL verifies, and no SQLite file was made', async () => {
  const verdict = await call('POST', '/api/v1/audit/verify', admin, {});
  assert.equal(verdict.status, 200, JSON.stringify(verdict.body));
  assert.equal(verdict.body.ok, true, String(verdict.body.summary));
  const [head] = await database<{ seq: number; n: number }>(
    'SELECT max(seq)::int AS seq, count(*)::int AS n FROM audit_events',
  );
  assert.ok((head?.n ?? 0) > 10, 'the trail is in PostgreSQL');
  assert.equal(head?.seq, head?.n, 'one chain without gaps');
  assert.equal(existsSync(join(env.config.dataDir, 'kubevisa.db')), false);
});
