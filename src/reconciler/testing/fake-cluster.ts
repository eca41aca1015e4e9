/**
 * An in-memory cluster behind the reconciler's narrow port (cluster-port.ts), for unit tests of the reconciler: it
 * keeps the objects the reconciler manages, refuses a RoleBinding in a namespace that does not exist as
 * kube-apiserver does, tells watchers of every change, and logs each write in order so a test can check that
 * access is removed before anything is added. Integration tests run the real ClusterClient against kube-apiserver.
 */
import type { OwnRbac } from '../../cluster/client.ts';
import { AlreadyExists, NamespaceMissing } from '../../cluster/errors.ts';
import {
  kubevisaControllerRbac,
  profileClusterRole,
  type ClusterRole,
  type Role,
  type RoleBinding,
  type ServiceAccount,
} from '../../cluster/objects.ts';
import type { Profile } from '../../domain/model.ts';
import type { ReconcilerCluster, RoleBindingEvent } from '../cluster-port.ts';

export class FakeCluster implements ReconcilerCluster {
  readonly name: string;
  /** Namespaces that exist (a RoleBinding anywhere else is refused with NamespaceMissing). */
  readonly namespaces: Set<string>;
  /** Managed RoleBindings by `namespace/name`. */
  readonly roleBindings = new Map<string, RoleBinding>();
  /** Person ServiceAccounts by name. */
  readonly serviceAccounts = new Map<string, ServiceAccount>();
  readonly profileRoles = new Map<string, ClusterRole>();
  ownRbac: OwnRbac;
  /** Every write, in order: `create rolebinding payments/kubevisa-v_1`, `delete serviceaccount x`… */
  readonly writes: string[] = [];
  /** How many times each read was called: `listManagedRoleBindings`… (a deadline pass must not list). */
  readonly reads = new Map<string, number>();
  private readonly watchers = new Set<() => void>();
  private readonly bindingWatchers = new Set<(event: RoleBindingEvent) => void>();
  private version = 1;

  constructor(options: { name: string; namespaces: string[]; profiles: readonly Profile[] }) {
    this.name = options.name;
    this.namespaces = new Set(options.namespaces);
    for (const profile of options.profiles) {
      const role = profileClusterRole(profile);
      this.profileRoles.set(role.metadata.name, this.stamp(role));
    }
    this.ownRbac = kubevisaControllerRbac(options.profiles.map((p) => p.name));
  }

  private stamp<T extends { metadata: object }>(object: T): T {
    return { ...object, metadata: { ...object.metadata, resourceVersion: String(this.version++) } };
  }

  private changed(event: RoleBindingEvent): void {
    for (const watcher of this.bindingWatchers) watcher(event);
  }

  private read(name: string): void {
    this.reads.set(name, (this.reads.get(name) ?? 0) + 1);
  }

  private watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  /** The highest epoch the fence was raised to (0: never). */
  fence = 0;

  async raiseFence(epoch: number): Promise<void> {
    if (epoch < this.fence) throw new Error(`the fence is at ${this.fence}, above ${epoch}`);
    this.fence = epoch;
    this.writes.push(`raise fence ${epoch}`);
  }

  async listManagedRoleBindings(): Promise<RoleBinding[]> {
    this.read('listManagedRoleBindings');
    const listed = structuredClone([...this.roleBindings.values()]);
    const held = this.heldList;
    if (held !== undefined) {
      this.heldList = undefined;
      held.listed.resolve();
      await held.released.promise;
    }
    return listed;
  }

  private heldList: { listed: PromiseWithResolvers<void>; released: PromiseWithResolvers<void> } | undefined;

  /**
   * The next listManagedRoleBindings reads the bindings, then waits until `release` is called before it answers: a
   * pass held in its reads (as at thousands of bindings), with a picture of the cluster that ages meanwhile.
   */
  holdNextRoleBindingList(): { listed: Promise<void>; release: () => void } {
    const held = { listed: Promise.withResolvers<void>(), released: Promise.withResolvers<void>() };
    this.heldList = held;
    return { listed: held.listed.promise, release: () => held.released.resolve() };
  }

  async createRoleBinding(binding: RoleBinding): Promise<unknown> {
    const { namespace, name } = binding.metadata;
    if (!this.namespaces.has(namespace)) {
      throw new NamespaceMissing(`namespace '${namespace}' does not exist`, { details: { cluster: this.name } });
    }
    if (this.roleBindings.has(`${namespace}/${name}`)) {
      throw new AlreadyExists(`rolebindings "${name}" already exists`, { details: { cluster: this.name } });
    }
    this.writes.push(`create rolebinding ${namespace}/${name}`);
    const created = this.stamp(structuredClone(binding));
    this.roleBindings.set(`${namespace}/${name}`, created);
    this.changed({ type: 'ADDED', roleBinding: structuredClone(created) });
    return binding;
  }

  /** Each RoleBinding deletion's `seen` argument: the resourceVersion it named (undefined: deleted by name only). */
  readonly deletedAsSeen: { key: string; resourceVersion: string | undefined }[] = [];

  async deleteRoleBinding(namespace: string, name: string, seen?: RoleBinding): Promise<unknown> {
    this.writes.push(`delete rolebinding ${namespace}/${name}`);
    this.deletedAsSeen.push({ key: `${namespace}/${name}`, resourceVersion: seen?.metadata.resourceVersion });
    const existing = this.roleBindings.get(`${namespace}/${name}`);
    // Like kube-apiserver: a binding already gone is a 404, which the client reports as false, not as an error.
    if (existing === undefined) return false;
    this.roleBindings.delete(`${namespace}/${name}`);
    this.changed({ type: 'DELETED', roleBinding: existing });
    return true;
  }

  async listManagedServiceAccounts(): Promise<ServiceAccount[]> {
    this.read('listManagedServiceAccounts');
    return structuredClone([...this.serviceAccounts.values()]);
  }

  async getServiceAccount(name: string): Promise<ServiceAccount | undefined> {
    this.read('getServiceAccount');
    const account = this.serviceAccounts.get(name);
    return account === undefined ? undefined : structuredClone(account);
  }

  async createServiceAccount(account: ServiceAccount): Promise<unknown> {
    if (this.serviceAccounts.has(account.metadata.name)) {
      throw new AlreadyExists(`serviceaccounts "${account.metadata.name}" already exists`, {
        details: { cluster: this.name },
      });
    }
    this.writes.push(`create serviceaccount ${account.metadata.name}`);
    const uid = `uid-${this.version}`;
    this.serviceAccounts.set(
      account.metadata.name,
      this.stamp({ ...structuredClone(account), metadata: { ...account.metadata, uid } }),
    );
    return account;
  }

  async deleteServiceAccount(name: string): Promise<unknown> {
    this.writes.push(`delete serviceaccount ${name}`);
    return this.serviceAccounts.delete(name);
  }

  /** Reports every binding as ADDED to the watchers, as a real watch's first list does (this one starts empty). */
  replayBindings(): void {
    for (const binding of this.roleBindings.values())
      this.changed({ type: 'ADDED', roleBinding: structuredClone(binding) });
  }

  watchManagedRoleBindings(onEvent: (event: RoleBindingEvent) => void): () => void {
    this.bindingWatchers.add(onEvent);
    return () => this.bindingWatchers.delete(onEvent);
  }

  async listProfileClusterRoles(): Promise<ClusterRole[]> {
    this.read('listProfileClusterRoles');
    return structuredClone([...this.profileRoles.values()]);
  }

  async replaceProfileClusterRole(role: ClusterRole): Promise<unknown> {
    this.writes.push(`replace clusterrole ${role.metadata.name}`);
    this.profileRoles.set(role.metadata.name, this.stamp(structuredClone(role)));
    return role;
  }

  watchProfileClusterRoles(onChange: () => void): () => void {
    return this.watch(onChange);
  }

  async readOwnRbac(): Promise<OwnRbac> {
    return structuredClone(this.ownRbac);
  }

  async replaceOwnRole(role: ClusterRole | Role): Promise<unknown> {
    this.writes.push(`replace own role ${role.metadata.name}`);
    return role;
  }

  watchOwnRbac(onChange: () => void): () => void {
    return this.watch(onChange);
  }
}
