/**
 * What the reconciler needs from a cluster: the narrow slice of ClusterClient it calls, so tests and future
 * engines (another client library, a fake for unit tests) plug in here.
 */
import type { RoleBinding, ServiceAccount } from '../cluster/objects.ts';

export type ManagedRoleBinding = RoleBinding;
export type ManagedServiceAccount = ServiceAccount;

export interface ReconcilerCluster {
  readonly name: string;
  listManagedRoleBindings(): Promise<RoleBinding[]>;
  createRoleBinding(binding: RoleBinding): Promise<unknown>;
  deleteRoleBinding(namespace: string, name: string): Promise<unknown>;
  listManagedServiceAccounts(): Promise<ServiceAccount[]>;
  createServiceAccount(account: ServiceAccount): Promise<unknown>;
  deleteServiceAccount(name: string): Promise<unknown>;
  /** Calls `onChange` on every change to a managed RoleBinding; returns a function that stops watching. */
  watchManagedRoleBindings(onChange: () => void, onError: (error: Error) => void): () => void;
}
