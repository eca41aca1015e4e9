/**
 * `kubevisa cluster add|list|remove`: clusters registered at run time (POST, GET …/status, DELETE /api/v1/clusters).
 * The kubeconfig is read here and sent once; the server checks it, keeps it sealed and never sends it back.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { render, UsageError, type CommandRun } from '../framework.ts';
import { clientFrom, emit, noPositionals, outputFormat, requiredString, singlePositional } from '../options.ts';
import { relativeTime } from '../present.ts';
import type { Items } from '../api-types.ts';

/** A cluster as GET /api/v1/clusters/status shows it (never a credential). */
export interface ClusterStatusJson {
  name: string;
  source: 'config' | 'registered';
  server: string;
  directMode: boolean;
  reachable: boolean;
  unreachableReason?: string;
  lastPass?: { finishedAt: string; error?: string };
  credentialExpiresAt?: string;
  registeredBy?: string;
  registeredAt?: string;
}

/** Registering a cluster waits for its checks (the cluster must answer): longer than the default call. */
const ADD_TIMEOUT_MS = 60_000;

export const add: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const name = singlePositional(positionals, 'cluster name', 'cluster add');
  const file = requiredString(values, 'kubeconfig', 'cluster add', "the kubeconfig 'kubevisa install' wrote");
  let kubeconfig: string;
  try {
    kubeconfig = await readFile(resolve(file), 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --kubeconfig ${file}: ${(error as Error).message}`);
  }
  const client = await clientFrom(values, { timeoutMs: ADD_TIMEOUT_MS });
  const added = await client.post<ClusterStatusJson>('/api/v1/clusters', {
    name,
    kubeconfig,
    ...(values['direct-mode'] === true ? { directMode: true } : {}),
  });
  await emit(
    io,
    format,
    added,
    `Cluster ${added.name} (${added.server}) is registered${added.directMode ? ', with direct mode' : ''}: ` +
      `visas for it can be requested now, and kubectl reaches it through kubevisa.`,
  );
};

export const list: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'cluster list');
  const client = await clientFrom(values);
  const answer = await client.get<Items<ClusterStatusJson>>('/api/v1/clusters/status');
  const items = answer.items ?? [];
  const now = Date.now();
  await render(
    io,
    format,
    { items },
    {
      columns: ['NAME', 'SOURCE', 'REACHABLE', 'LAST PASS', 'CREDENTIAL EXPIRES', 'SERVER'],
      rows: items.map((c) => [
        c.name,
        c.source,
        c.reachable ? 'yes' : 'no',
        c.lastPass ? `${relativeTime(c.lastPass.finishedAt, now)}${c.lastPass.error ? ' (failed)' : ''}` : 'none yet',
        c.credentialExpiresAt ? relativeTime(c.credentialExpiresAt, now) : '-',
        c.server,
      ]),
    },
  );
};

export const remove: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const name = singlePositional(positionals, 'cluster name', 'cluster remove');
  const client = await clientFrom(values, { timeoutMs: ADD_TIMEOUT_MS });
  const answer = await client.call<{ name: string; revoked: string[]; denied: string[]; bindingsRemoved: boolean }>(
    'DELETE',
    `/api/v1/clusters/${encodeURIComponent(name)}`,
    values.force === true ? { query: { force: 'true' } } : {},
  );
  const removed = answer.body;
  const revoked =
    removed.revoked.length === 0
      ? ''
      : ` ${removed.revoked.length} visa(s) revoked first (${removed.revoked.join(', ')})` +
        (removed.bindingsRemoved ? ', their RoleBindings deleted.' : '.');
  const left = removed.bindingsRemoved
    ? ''
    : " kubevisa could not confirm that what it made there is gone (the cluster did not answer, a delete failed, or this server does not lead the reconciler): delete what is labelled app.kubernetes.io/managed-by=kubevisa there by hand, or run 'kubevisa uninstall' against it.";
  const denied = removed.denied.length === 0 ? '' : ` Pending request(s) denied: ${removed.denied.join(', ')}.`;
  await emit(
    io,
    format,
    removed,
    `Cluster ${removed.name} is no longer managed by kubevisa.${revoked}${denied}${left}`,
  );
};
