/**
 * What the reconciler needs from a cluster: the narrow slice of ClusterClient it calls, and all it calls. The real
 * ClusterClient fits it; so does the in-memory fake the reconciler's unit tests run on (testing/fake-cluster.ts).
 */
import type { OwnRbac, RoleBindingEvent } from '../cluster/client.ts';
import type { ClusterRole, Role, RoleBinding, ServiceAccount } from '../cluster/objects.ts';

export type ManagedRoleBinding = RoleBinding;
export type ManagedServiceAccount = ServiceAccount;
export type { RoleBindingEvent };

export interface ReconcilerCluster {
  readonly name: string;
  listManagedRoleBindings(): Promise<RoleBinding[]>;
  createRoleBinding(binding: RoleBinding): Promise<unknown>;
  /** `seen`: the binding as last listed or watched (the client may delete it at that version, in one request). */
  deleteRoleBinding(namespace: string, name: string, seen?: RoleBinding): Promise<unknown>;
  listManagedServiceAccounts(): Promise<ServiceAccount[]>;
  createServiceAccount(account: ServiceAccount): Promise<unknown>;
  /** One person ServiceAccount by name, or undefined when there is none (a visa pass reads only the one it binds). */
  getServiceAccount(name: string): Promise<ServiceAccount | undefined>;
  deleteServiceAccount(name: string): Promise<unknown>;
  /**
   * Calls `onEvent` on every change to a managed RoleBinding (what changed, so the reconciler can tell its own deletes
   * coming back); returns a function that stops watching.
   */
  watchManagedRoleBindings(onEvent: (event: RoleBindingEvent) => void, onError: (error: Error) => void): () => void;
  /** The profile ClusterRoles installed in the cluster. */
  listProfileClusterRoles(): Promise<ClusterRole[]>;
  /** Puts a profile ClusterRole's rules back, at the resourceVersion read. */
  replaceProfileClusterRole(role: ClusterRole): Promise<unknown>;
  /** Calls `onChange` on every change to a profile ClusterRole; returns a function that stops watching. */
  watchProfileClusterRoles(onChange: () => void, onError: (error: Error) => void): () => void;
  /** kubevisa's own RBAC objects as they are. */
  readOwnRbac(): Promise<OwnRbac>;
  /** Puts back one of kubevisa's own roles, at the resourceVersion read. */
  replaceOwnRole(role: ClusterRole | Role): Promise<unknown>;
  /** Calls `onChange` on every change to kubevisa's own RBAC objects; returns a function that stops watching. */
  watchOwnRbac(onChange: () => void, onError: (error: Error) => void): () => void;
  /** Raises the cluster's fence to `epoch` and waits until kube-apiserver enforces it (src/cluster/fencing.ts). */
  raiseFence(epoch: number): Promise<void>;
}
