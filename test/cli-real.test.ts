// The real `bin/kubevisa`, spawned, against a real server, control plane and OIDC provider: each command's effect is
// read back from the server's API (or the cluster through the gateway), not only from its exit code. Each person has
// a CLI state folder holding the session a real device-flow login gave them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../src/cli/testing/run-cli.ts';
import { writeConfig, writeSession } from '../src/cli/config.ts';
import type { PersonJson } from '../src/cli/api-types.ts';
import {
  api,
  CLUSTER,
  inDays,
  loginAs,
  people,
  startKubevisaEnv,
  type KubevisaEnv,
  type TestPerson,
} from './support/kubevisa-env.ts';
import { eventually } from './support/kubectl.ts';

let env: KubevisaEnv;
let root: string;
const tokens = new Map<string, string>();
const folders = new Map<string, string>();

const call = (method: string, path: string, token: string, body?: unknown) =>
  api(env.serverUrl, method, path, { token, ...(body !== undefined ? { body } : {}) });

/** Logs `person` in through the real device flow and writes their CLI state folder (config and session). */
async function loggedIn(person: TestPerson): Promise<void> {
  const session = await loginAs(env.serverUrl, person);
  const dir = join(root, person.sub);
  await writeConfig(dir, { server: env.serverUrl, caFile: env.config.tls!.caFile! });
  await writeSession(dir, {
    server: env.serverUrl,
    sessionSecret: session.sessionSecret,
    sessionExpiresAt: inDays(1),
    person: (await call('GET', '/api/v1/me', session.token)).body as unknown as PersonJson,
  });
  tokens.set(person.sub, session.token);
  folders.set(person.sub, dir);
}

/** Runs the real CLI as `person` and fails with its output on a non-zero exit. */
async function cliOk(person: TestPerson, args: string[]): Promise<string> {
  const result = await runCli(args, { configDir: folders.get(person.sub)!, timeoutMs: 60_000 });
  assert.equal(result.code, 0, `kubevisa ${args.join(' ')}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result.stdout;
}

const token = (person: TestPerson) => tokens.get(person.sub)!;

async function visa(id: string): Promise<Record<string, unknown>> {
  const answer = await call('GET', `/api/v1/visas/${id}`, token(people.sam));
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body;
}

/** Cora asks for a viewer visa on `namespace` through the API; approved by Ann when `approve`. */
async function requestVisa(namespace: string, approve: boolean): Promise<string> {
  const requested = await call('POST', '/api/v1/visas', token(people.cora), {
    cluster: CLUSTER,
    namespaces: [namespace],
    profile: 'viewer',
    duration: '1h',
    reason: 'cli test',
  });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = String(requested.body.id);
  if (approve) {
    const approved = await call('POST', `/api/v1/visas/${id}/approve`, token(people.ann), {});
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
  }
  return id;
}

before(async () => {
  env = await startKubevisaEnv({ tls: true, autoApproval: false });
  for (const ns of ['cli-a', 'cli-b']) await env.kOk(['create', 'namespace', ns]);
  await env.startInProcess();
  root = await mkdtemp(join(tmpdir(), 'kubevisa-cli-real-'));
  for (const person of [people.sam, people.ann, people.cora]) await loggedIn(person);
  const engagement = await call('POST', '/api/v1/engagements', token(people.sam), {
    name: 'cora-cli',
    vendor: 'Acme',
    contractors: [people.cora.email],
    sponsor: people.sam.email,
    endsAt: inDays(10),
    ceiling: { clusters: [CLUSTER], namespacePatterns: ['cli-*'], profiles: ['viewer'] },
    maxVisaDuration: '8h',
  });
  assert.equal(engagement.status, 201, JSON.stringify(engagement.body));
});
after(async () => {
  await env?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the real CLI against the real server', () => {
  test('whoami prints the logged-in person the server knows, with their roles', async () => {
    const me = JSON.parse(await cliOk(people.ann, ['whoami', '-o', 'json'])) as PersonJson;
    const server = (await call('GET', '/api/v1/me', token(people.ann))).body;
    assert.equal(me.email, people.ann.email);
    assert.equal(me.id, server.id);
    assert.match(await cliOk(people.ann, ['whoami']), /ann@corp\.example/);
    assert.match(JSON.stringify(me), /approver/);
  });

  test('engagement create, list and end: the server holds it, lists it, and ends it with the reason', async () => {
    const created = JSON.parse(
      await cliOk(people.sam, [
        'engagement',
        'create',
        '--name',
        'cli-real',
        '--vendor',
        'Acme',
        '--contractor',
        people.carl.email,
        '--sponsor',
        people.sam.email,
        '--ends',
        inDays(10),
        '--cluster',
        CLUSTER,
        '--ns-pattern',
        'cli-*',
        '--profile',
        'viewer',
        '--max-visa',
        '4h',
        '-o',
        'json',
      ]),
    ) as { id: string };
    const stored = await call('GET', `/api/v1/engagements/${created.id}`, token(people.sam));
    assert.equal(stored.status, 200, JSON.stringify(stored.body));
    assert.equal(stored.body.name, 'cli-real');
    assert.equal(stored.body.status, 'active');
    assert.deepEqual((stored.body.ceiling as { namespacePatterns: string[] }).namespacePatterns, ['cli-*']);

    const listed = JSON.parse(await cliOk(people.sam, ['engagement', 'list', '-o', 'json'])) as {
      items: { id: string; name: string }[];
    };
    assert.ok(
      listed.items.some((e) => e.id === created.id && e.name === 'cli-real'),
      JSON.stringify(listed),
    );
    assert.match(await cliOk(people.sam, ['engagement', 'list']), /cli-real/);

    await cliOk(people.sam, ['engagement', 'end', created.id, '--reason', 'contract ended early']);
    const ended = await call('GET', `/api/v1/engagements/${created.id}`, token(people.sam));
    assert.equal(ended.body.status, 'ended', JSON.stringify(ended.body));
    assert.match(JSON.stringify(ended.body), /contract ended early/);
  });

  test('extend asks the server for a new request that extends the visa', async () => {
    const id = await requestVisa('cli-a', true);
    const out = JSON.parse(
      await cliOk(people.cora, ['extend', id, '--for', '2h', '--reason', 'migration still running', '-o', 'json']),
    ) as { id: string };
    assert.notEqual(out.id, id);
    const extension = await visa(out.id);
    assert.equal(extension.state, 'requested');
    assert.equal(extension.extends, id);
    assert.equal((await visa(id)).state, 'active');
  });

  test('deny by an approver: the request is denied with the reason', async () => {
    const id = await requestVisa('cli-b', false);
    await cliOk(people.ann, ['deny', id, '--reason', 'use staging for this']);
    const denied = await visa(id);
    assert.equal(denied.state, 'denied');
    assert.match(JSON.stringify(denied), /use staging for this/);
  });

  test('deny by the contractor is refused and changes nothing', async () => {
    const id = await requestVisa('cli-b', false);
    const result = await runCli(['deny', id, '--reason', 'self'], {
      configDir: folders.get('cora')!,
      timeoutMs: 60_000,
    });
    assert.notEqual(result.code, 0, result.stdout);
    assert.match(result.stderr, /\[ERR_[A-Z_]+\]/);
    assert.equal((await visa(id)).state, 'requested');
  });

  test('cancel by the holder: the request is cancelled', async () => {
    const id = await requestVisa('cli-b', false);
    await cliOk(people.cora, ['cancel', id]);
    assert.equal((await visa(id)).state, 'cancelled');
  });

  test('credential (gateway mode) prints an ExecCredential whose token reads the cluster through the gateway', async () => {
    // Cora's visa on cli-a, approved in the extend test, is active.
    const printed = JSON.parse(await cliOk(people.cora, ['credential', CLUSTER])) as {
      kind: string;
      status: { token: string; expirationTimestamp: string };
    };
    assert.equal(printed.kind, 'ExecCredential');
    assert.ok(Date.parse(printed.status.expirationTimestamp) > Date.now());
    const kubeconfig = await env.writeGatewayKubeconfig(printed.status.token, 'cora-cli');
    await eventually('cora reads pods in cli-a through the gateway', 30_000, async () => {
      return (await env.k(['get', 'pods', '-n', 'cli-a'], kubeconfig)).code === 0;
    });
    const outside = await env.k(['get', 'pods', '-n', 'default'], kubeconfig);
    assert.notEqual(outside.code, 0);
    assert.match(outside.stderr, /Forbidden|forbidden/);
  });

  test('logout ends the session on the server: the old token is refused and the next command says logged out', async () => {
    await cliOk(people.cora, ['logout']);
    const me = await call('GET', '/api/v1/me', token(people.cora));
    assert.equal(me.status, 401, JSON.stringify(me.body));
    const after = await runCli(['whoami'], { configDir: folders.get('cora')!, timeoutMs: 60_000 });
    assert.notEqual(after.code, 0, after.stdout);
    assert.match(after.stderr, /not logged in/);
    assert.match(after.stderr, /ERR_NOT_LOGGED_IN/);
  });
});
