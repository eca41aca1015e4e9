/**
 * Level-triggered reconciliation of every cluster: desired = what the store's granting visas call for, actual
 * = the objects labelled as kubevisa's; converge by deleting first (access is removed before anything is
 * added), each cluster change preceded by a durable intent and followed by an audit event. It runs on a
 * deadline timer (activations at notBefore, expiries at notAfter), on a kick after every committed change, on
 * a watch of managed RoleBindings (drift), and on a periodic full resync — any one of them is enough to
 * converge, so a missed event or a crash at any step is repaired by the next pass.
 *
 * Expiries take a shorter way (a deadline pass): when notAfter deadlines fall due, only the visas that ended are read,
 * their RoleBindings deleted by name and the visas recorded expired, under the same intents, fence and audit as a full
 * pass. Its cost follows the number of deadlines due, not the number of live bindings; full passes remain the safety
 * net. A deadline pass does not wait for a full pass to finish: it runs while the full pass reads (which at thousands
 * of bindings is most of it), and only the passes' binding and ServiceAccount writes take turns (`exclusively`). A
 * full pass that read before a deadline pass deleted therefore plans from an older picture, which is harmless: the
 * bindings it makes are judged again on the visas' rows at write time, a binding already gone when it deletes is
 * nothing to do (and nothing to record), and it records expiries only once their bindings are gone.
 *
 * Commits that grant or end access take another short way (a visa pass): the commit names its visas, and only those
 * are read and converged — bindings of the ended ones deleted, the person's ServiceAccount and the bindings of the
 * granting ones made — from the watch's picture of the cluster instead of a listing, so an approval costs the same at
 * ten bindings as at ten thousand. What it cannot judge alone (a binding that drifted or already exists, someone
 * else's ServiceAccount, direct tokens, a ServiceAccount an ended visa may leave unneeded, profiles not yet judged by a
 * full pass) it leaves to a full pass it asks for. Its creations are known as its own: their watch echo starts no full
 * pass, and a full pass that read the visas before them does not delete them as unwanted.
 *
 * Direct-mode tokens (see direct-tokens.ts) are ended by making the person's ServiceAccount again before a binding
 * they must not carry is added, and when the person's session ends; such bindings then wait out kube-apiserver's
 * token cache.
 */
import { effectiveState, expireVisa, isGranting } from '../domain/visa.ts';
import type { VisaState } from '../domain/model.ts';
import type { Instant, Person, Profile, Visa } from '../domain/model.ts';
import { KubevisaError } from '../domain/errors.ts';
import { isProtectedNamespace } from '../domain/protected-namespaces.ts';
import type { Store, StoredVisa, StoreTx } from '../store/store.ts';
import type { ManagedRoleBinding, ManagedServiceAccount, ReconcilerCluster, RoleBindingEvent } from './cluster-port.ts';
import { desiredRoleBinding, desiredServiceAccount, ownerOf, roleBindingDrifted } from './desired.ts';
import { kubevisaControllerRbac, PROFILE_LABEL } from '../cluster/objects.ts';
import { ownRbacDrift } from './own-rbac.ts';
import { profileDrift, rulesSummary } from './profiles.ts';
import {
  directModeMayCarry,
  directTokensUntil,
  hasLiveDirectTokens,
  heldUntil,
  rotatedAt,
  rotatedServiceAccount,
} from './direct-tokens.ts';
import { formatInstant } from '../domain/time.ts';
import { PERSON_ANNOTATION } from '../cluster/objects.ts';

export interface ReconcilerOptions {
  store: Store;
  clusters: Map<string, ReconcilerCluster>;
  /** Full resync of every cluster at least this often, in milliseconds (default 30000). */
  resyncIntervalMs?: number;
  now?: () => number;
  /** Fault injection for crash tests: SIGKILL this process right after the first intent is durable. */
  crashAfterIntent?: boolean;
  /**
   * Fault injection for fencing tests: called once a phase's intents are durable, just before its cluster writes (a
   * test stops the process there, as a pause between a leader's checks and its writes would).
   */
  beforeWrites?: () => void;
  /** Told about every pass (for metrics, alerts and tests). */
  onPass?: (report: PassReport) => void;
  /**
   * Namespaces protected besides those always protected (the policy's `protectedNamespaces`): no binding is ever
   * written there, whatever a visa row says (one written before an upgrade, or by hand into the database).
   */
  protectedNamespaces?: readonly string[];
  /**
   * Whether the cluster's configuration allows direct mode (`clusters[].directMode`); default: none does. Where it
   * does not, no binding is added to a ServiceAccount whose direct tokens may still live (issued before a change of
   * configuration) without ending them first.
   */
  allowsDirectMode?: (cluster: string) => boolean;
  /**
   * Leadership among replicas sharing the store (src/leader/). Absent: this process always reconciles. Present: a
   * pass runs only while `isLeader()`, and when `fenceEpoch` is given each cluster's fence is raised to it before
   * the first cluster write of each term (src/cluster/fencing.ts), so a deposed leader's late writes are refused.
   */
  leadership?: { isLeader(): boolean; fenceEpoch?: () => number; onFenced?: (error: Error) => void };
}

export interface PassReport {
  cluster: string;
  /**
   * `deadlines` for a deadline pass: only the bindings of visas that had ended were deleted; `visas` for a visa pass:
   * only the named visas were converged (see the module comment); absent for a full pass.
   */
  kind?: 'deadlines' | 'visas';
  startedAt: number;
  finishedAt: number;
  created: string[];
  deleted: string[];
  repaired: string[];
  missingNamespaces: string[];
  /** Protected namespaces a granting visa named, where no binding was written (absent when none). */
  protectedNamespaces?: string[];
  /** Person ServiceAccounts made again to end their direct tokens (absent when none). */
  rotated?: string[];
  /** Bindings waiting for kube-apiserver's token cache to forget a ServiceAccount made again (absent when none). */
  held?: string[];
  error?: string;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * How long the watch events of a binding a deadline pass deleted (the fence's stamp, then the deletion) are known as
 * its own, in milliseconds: they need no full pass.
 */
const OWN_DELETION_ECHO_MS = 60_000;

type PassKind = 'full' | 'deadlines' | 'visas';
/** Visas one visa pass converges; more wait for the next, so deadline passes take their turn in between. */
const VISA_PASS_BATCH = 500;
/**
 * Visas waiting for a visa pass, per cluster, beyond which they are dropped for one full pass: a flood of change
 * notifications (anyone able to connect to the database can send them) costs one pass, not unbounded memory.
 */
const MAX_PENDING_VISAS = 5000;
/**
 * A visa pass deletes the bindings of an ended visa that its watch has not seen only when the visa ended this
 * recently (a binding made a moment ago may not have come back on the watch yet); older ones are the full pass's, so a
 * stream of ids of long-ended visas costs no cluster writes.
 */
const RECENT_END_MS = 10 * 60_000;
const ENDED_STATES: ReadonlySet<VisaState> = new Set(['expired', 'revoked', 'cancelled']);
/**
 * Cluster writes in flight at once during a pass, per cluster: a thousand revocations are a thousand deletes, each
 * waiting mostly on kube-apiserver's admission and etcd; well inside its default of 200 mutating requests in flight.
 */
const WRITE_CONCURRENCY = 32;
/** Visas read by id in one query (well inside every engine's limit on parameters). */
const VISA_READ_BATCH = 500;

/** One planned cluster change: what to record, how to make it, what to note when it is done. */
interface Change {
  kind: string;
  payload: Record<string, string | undefined>;
  visa?: Visa;
  /** The person concerned, when no visa names them. */
  personId?: string;
  write: () => Promise<unknown>;
  done: () => void;
  /** Handles an expected failure (returns true) so the pass goes on; anything else fails the pass. */
  failed?: (error: unknown) => Promise<boolean>;
  /**
   * Set for a delete: when `write` resolves `false` (nothing was there), the intent is completed and this called
   * instead of `done`, with no audit event, since someone else (another pass, a person) made the change.
   */
  gone?: () => void;
}
const MAX_BACKOFF_MS = 30_000;
const UNREACHABLE_RETRY_MS = 1000;
/** The intent and audit kind (`cluster.serviceaccount.rotated`) of a person ServiceAccount made again. */
const ROTATION_KIND = 'serviceaccount.rotated';

export class Reconciler {
  private readonly store: Store;
  private readonly clusters: Map<string, ReconcilerCluster>;
  private readonly now: () => number;
  private readonly options: ReconcilerOptions;
  /** Per kind, per cluster: the pass running. A cluster runs at most one pass of each kind at a time. */
  private readonly running = new Map<PassKind, Map<string, Promise<PassReport>>>([
    ['full', new Map()],
    ['deadlines', new Map()],
    ['visas', new Map()],
  ]);
  /** Per kind, per cluster: the pass waiting for the running one of its kind (all asks coalesced), and who waits. */
  private readonly queued = new Map<PassKind, Map<string, PromiseWithResolvers<PassReport>>>([
    ['full', new Map()],
    ['deadlines', new Map()],
    ['visas', new Map()],
  ]);
  /** Per cluster: the visas a commit named, waiting for a visa pass to converge them. */
  private readonly pendingVisas = new Map<string, Set<string>>();
  /**
   * Per cluster: the profiles whose ClusterRole the last full pass found wider than reviewed and could not restore. A
   * visa pass binds no visa of these; until a full pass has looked (and after it failed to), it binds nothing.
   */
  private readonly untrustedProfiles = new Map<string, ReadonlySet<string>>();
  /**
   * Bumped by stop() and removeCluster(): a full pass begun before records no judgement of the profiles (its picture of
   * the ClusterRoles may predate the clear, or be another cluster object's).
   */
  private trustGeneration = 0;
  /**
   * Per cluster: objects a visa pass made (`rolebinding namespace/name`, `serviceaccount name`), with the number of
   * the store read it judged them from (`reads`) and until when its watch echo is its own. A full pass that read
   * before that does not delete them as unwanted: its picture of the visas is older than theirs.
   */
  private readonly ownCreations = new Map<string, Map<string, { read: number; until: Instant; echoed: boolean }>>();
  /** Counts the passes' reads of the visas, in the order they start (see `ownCreations`). */
  private reads = 0;
  /** Counts full passes begun, so a visa pass knows whether one ran alongside it. */
  private fullPassesBegun = 0;
  /** Per cluster: the end of the line of write sections (`exclusively`). */
  private readonly writing = new Map<string, Promise<void>>();
  private readonly backoff = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly reportedMissing = new Set<string>();
  private readonly reportedProtected = new Set<string>();
  private readonly reportedRepairFailures = new Set<string>();
  /** Per cluster: how to stop its watches. */
  private readonly stopWatches = new Map<string, (() => void)[]>();
  private readonly lastReport = new Map<string, PassReport>();
  /** Per cluster: people whose direct tokens must end (person id → why), until a pass has done it. */
  private readonly endRequests = new Map<string, Map<string, string>>();
  /** Per cluster: the pass that creates held bindings once the token cache has forgotten the old tokens. */
  private readonly holdTimers = new Map<string, { at: Instant; timer: NodeJS.Timeout }>();
  /**
   * Per cluster: person ServiceAccounts deleted while their direct tokens might still live (name → when), so one made
   * again under the same name within kube-apiserver's token cache is made as a rotated one and its bindings wait.
   */
  private readonly deletedWithDirectTokens = new Map<string, Map<string, Instant>>();
  /** Per cluster: the epoch its fence was last raised to by this process. */
  private readonly fencedAt = new Map<string, number>();
  /**
   * Per cluster: bindings a deadline pass deleted (`namespace/name` → until when), whose watch events are its own
   * writes coming back rather than drift.
   */
  private readonly ownDeletions = new Map<string, Map<string, Instant>>();
  /**
   * Per cluster: each managed RoleBinding as its watch last reported it (`namespace/name` → binding). A deadline pass
   * deletes one at the version seen, in one request when it carries this term's epoch (ClusterClient.deleteRoleBinding);
   * an entry that is out of date costs only the usual read and stamp.
   */
  private readonly seenRoleBindings = new Map<string, Map<string, ManagedRoleBinding>>();
  /** Every visa deadline up to this instant has been handed to a pass (the deadline timer looks beyond it). */
  private deadlinesUntil: Instant | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private started = false;

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.store = options.store;
    this.clusters = options.clusters;
    // Never backwards, even when a new sample of the database's clock is a few ms behind the last: a pass must not
    // judge a visa granting that another pass already judged ended.
    const clock = options.now ?? Date.now;
    let latest = -Infinity;
    this.now = () => (latest = Math.max(latest, clock()));
  }

  /** Repairs whatever an earlier process left half-done, then keeps every cluster converged. */
  async start(): Promise<void> {
    // A new term after an earlier stop (src/leader/): everything is compared again from scratch.
    this.stopped = false;
    this.deadlinesUntil = this.now();
    await Promise.all([...this.clusters.keys()].map((name) => this.reconcileNow(name)));
    this.started = true;
    for (const [name, cluster] of this.clusters) this.watch(name, cluster);
    const interval = this.options.resyncIntervalMs ?? 30_000;
    this.resyncTimer = setInterval(() => this.kick([...this.clusters.keys()]), interval);
    this.resyncTimer.unref();
  }

  /**
   * Manages one more cluster from now on (registered at run time): watched, and converged at once once started. A
   * cluster that does not answer only fails its own passes (retried with backoff); the others go on.
   */
  addCluster(name: string, cluster: ReconcilerCluster): void {
    this.removeCluster(name);
    this.clusters.set(name, cluster);
    if (!this.started || this.stopped) return;
    this.watch(name, cluster);
    this.kick([name]);
  }

  /** Stops managing a cluster: its watches and timers end and no pass starts for it (one under way finishes). */
  removeCluster(name: string): void {
    this.clusters.delete(name);
    for (const stop of this.stopWatches.get(name) ?? []) stop();
    this.stopWatches.delete(name);
    clearTimeout(this.retryTimers.get(name));
    this.retryTimers.delete(name);
    clearTimeout(this.holdTimers.get(name)?.timer);
    this.holdTimers.delete(name);
    // A cluster added again under this name may be another cluster, or the same one whose fence was lost: its fence
    // is raised again before this term's first write there.
    this.fencedAt.delete(name);
    this.ownDeletions.delete(name);
    this.ownCreations.delete(name);
    this.seenRoleBindings.delete(name);
    this.pendingVisas.delete(name);
    this.trustGeneration++;
    this.untrustedProfiles.delete(name);
    this.backoff.delete(name);
    this.lastReport.delete(name);
  }

  private watch(name: string, cluster: ReconcilerCluster): void {
    this.stopWatches.set(name, [
      cluster.watchManagedRoleBindings(
        (event) => {
          this.noteSeen(name, event);
          if (!this.isOwnWrite(name, event)) this.kick([name]);
        },
        () => this.kick([name]),
      ),
      // A profile widened by hand widens every visa that uses it: restored as fast as a binding.
      cluster.watchProfileClusterRoles(
        () => this.kick([name]),
        () => this.kick([name]),
      ),
      cluster.watchOwnRbac(
        () => this.kick([name]),
        () => this.kick([name]),
      ),
    ]);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.deadlineTimer);
    clearInterval(this.resyncTimer);
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    for (const { timer } of this.holdTimers.values()) clearTimeout(timer);
    this.holdTimers.clear();
    for (const stops of this.stopWatches.values()) for (const stop of stops) stop();
    this.stopWatches.clear();
    // A later term looks at the profiles again before any visa pass binds (see `untrustedProfiles`).
    this.trustGeneration++;
    this.untrustedProfiles.clear();
    this.pendingVisas.clear();
  }

  /**
   * Schedules a pass for these clusters (coalesced: one running pass plus at most one queued): a visa pass for
   * `visaIds` when given (the visas a commit changed), else a full pass.
   */
  kick(clusters: string[], visaIds?: readonly string[]): void {
    if (this.options.leadership?.isLeader() === false) return;
    for (const name of clusters) {
      if (!this.clusters.has(name) || this.stopped) continue;
      const pass =
        visaIds !== undefined && visaIds.length > 0 ? this.convergeVisasSoon(name, visaIds) : this.reconcileNow(name);
      void pass.catch(() => {
        // A pass records its own failures and schedules a retry; nothing more to do here.
      });
    }
  }

  /**
   * Runs a visa pass for these visas now (or after the running visa pass, with whatever else is waiting): their
   * bindings are converged without listing the cluster. Too many waiting become one full pass.
   */
  convergeVisasSoon(name: string, visaIds: readonly string[]): Promise<PassReport> {
    const pending = this.pendingVisas.get(name) ?? new Set<string>();
    for (const id of visaIds) pending.add(id);
    if (pending.size > MAX_PENDING_VISAS) {
      this.pendingVisas.delete(name);
      return this.reconcileNow(name);
    }
    this.pendingVisas.set(name, pending);
    return this.enqueue(name, 'visas');
  }

  /**
   * Resolves once no pass for this cluster is running or queued, i.e. the cluster reflects every change
   * committed before the call (a direct-mode token must not be minted for a ServiceAccount a stale pass is
   * about to delete).
   */
  async whenSettled(name: string): Promise<void> {
    const runningPass = () =>
      this.running.get('full')!.get(name) ??
      this.running.get('deadlines')!.get(name) ??
      this.running.get('visas')!.get(name);
    for (let current = runningPass(); current; current = runningPass()) {
      await current.catch(() => undefined);
      // The `finally` of a pass starts the queued one synchronously, so the loop sees it.
      await Promise.resolve();
    }
  }

  /**
   * Ends every direct-mode token the person may still hold, on every cluster: each ServiceAccount of theirs whose
   * direct tokens may still live is made again (audited as `cluster.serviceaccount.rotated` with `reason`). Their
   * bindings stay. Resolves when the passes that do it are over; a pass that fails keeps the request for its retry.
   */
  async endDirectTokens(personId: string, reason: string): Promise<void> {
    for (const name of this.clusters.keys()) {
      const requests = this.endRequests.get(name) ?? new Map<string, string>();
      requests.set(personId, reason);
      this.endRequests.set(name, requests);
    }
    await Promise.all([...this.clusters.keys()].map((name) => this.reconcileNow(name).catch(() => undefined)));
  }

  status(): PassReport[] {
    return [...this.lastReport.values()];
  }

  /** Runs a full pass now (or after the running one) and resolves with its report. */
  reconcileNow(name: string): Promise<PassReport> {
    return this.enqueue(name, 'full');
  }

  /**
   * Runs a deadline pass now (or after the running deadline pass; a running full pass does not hold it up): the
   * bindings of the cluster's visas whose notAfter has passed are deleted and the visas recorded expired, without
   * reading anything else. Resolves with its report.
   */
  expireDueNow(name: string): Promise<PassReport> {
    return this.enqueue(name, 'deadlines');
  }

  /**
   * One pass of each kind per cluster at a time: a pass asked for while one of its kind runs waits, coalesced with
   * any of its kind already waiting (it starts after the running one, so it sees every change committed before it
   * was asked for).
   */
  private enqueue(name: string, kind: PassKind): Promise<PassReport> {
    if (!this.running.get(kind)!.has(name)) return this.begin(name, kind);
    const queued = this.queued.get(kind)!;
    let waiting = queued.get(name);
    if (waiting === undefined) {
      waiting = Promise.withResolvers<PassReport>();
      queued.set(name, waiting);
    }
    return waiting.promise;
  }

  private begin(name: string, kind: PassKind): Promise<PassReport> {
    const running = this.running.get(kind)!;
    if (kind === 'full') this.fullPassesBegun++;
    const pass = this.pass(name, kind).finally(() => {
      running.delete(name);
      const queued = this.queued.get(kind)!;
      const waiting = queued.get(name);
      if (waiting === undefined) return;
      queued.delete(name);
      this.begin(name, kind).then(waiting.resolve, waiting.reject);
    });
    running.set(name, pass);
    return pass;
  }

  /**
   * Runs `section` once no other pass of the cluster is in one, and keeps the others out until it ends: a deadline
   * pass holds it throughout, a full pass for its binding and ServiceAccount writes but not its reads (its profile
   * ClusterRole and own-RBAC repairs, which no deadline pass touches, run before). So a full pass's picture of the
   * cluster may predate a deadline pass's deletions, but their binding writes never interleave.
   */
  private async exclusively<T>(name: string, section: () => Promise<T>): Promise<T> {
    const before = this.writing.get(name) ?? Promise.resolve();
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    const line = before.then(() => released);
    this.writing.set(name, line);
    await before;
    try {
      return await section();
    } finally {
      release();
      if (this.writing.get(name) === line) this.writing.delete(name);
    }
  }

  private async pass(name: string, kind: PassKind): Promise<PassReport> {
    const cluster = this.clusters.get(name);
    const report: PassReport = {
      cluster: name,
      ...(kind !== 'full' ? { kind } : {}),
      startedAt: this.now(),
      finishedAt: 0,
      created: [],
      deleted: [],
      repaired: [],
      missingNamespaces: [],
    };
    if (!cluster) throw new Error(`unknown cluster ${name}`);
    const leadership = this.options.leadership;
    if (leadership !== undefined && !leadership.isLeader()) {
      // Another replica reconciles; nothing is retried here (this one starts over if it is elected).
      report.error = 'this replica does not lead: another one reconciles';
      report.finishedAt = this.now();
      return report;
    }
    try {
      if (kind === 'deadlines') {
        await this.exclusively(name, () => {
          this.assertLeads();
          return this.expireDue(cluster, report);
        });
      } else if (kind === 'visas') {
        await this.visaPass(cluster, report);
      } else {
        // Activations only: an expiry is recorded once the visa's bindings are gone (convergeWrites, expireDue).
        const live = await this.store.listVisas({ cluster: name, states: ['approved', 'active'] });
        await this.exclusively(name, async () => {
          this.assertLeads();
          await this.settleStates(live, { only: 'activations' });
          await this.fence(cluster);
        });
        await this.converge(cluster, report);
        this.backoff.delete(name);
      }
    } catch (error) {
      report.error = error instanceof Error ? error.message : String(error);
      // kube-apiserver refused a write of this term: a newer leader exists, whatever this process believed.
      if (error instanceof KubevisaError && error.code === 'ERR_FENCED') leadership?.onFenced?.(error);
      // A failed deadline pass is retried as a full pass: it settles and deletes whatever is still due.
      this.scheduleRetry(name, error instanceof KubevisaError && error.code === 'ERR_CLUSTER_UNREACHABLE');
    } finally {
      report.finishedAt = this.now();
      // What a cluster's last full comparison found (status, metrics); a deadline pass looks at too little to say.
      if (kind === 'full') this.lastReport.set(name, report);
      await this.armDeadlineTimer().catch(() => this.scheduleRetry(name));
      this.options.onPass?.(report);
    }
    return report;
  }

  /** Raises the cluster's fence to this term's epoch before the term's first write there (src/cluster/fencing.ts). */
  private async fence(cluster: ReconcilerCluster): Promise<void> {
    const epoch = this.options.leadership?.fenceEpoch?.();
    if (epoch !== undefined && this.fencedAt.get(cluster.name) !== epoch) {
      await cluster.raiseFence(epoch);
      this.fencedAt.set(cluster.name, epoch);
    }
  }

  /**
   * A visa pass over the visas waiting for one (at most VISA_PASS_BATCH; the rest in the next), in turn with the other
   * passes' writes. Whatever it cannot judge alone is left to a full pass, asked for at its end; so is a second look
   * when a full pass ran alongside and it made something (the full pass may have read before it made it, and judged a
   * profile untrusted meanwhile).
   */
  private async visaPass(cluster: ReconcilerCluster, report: PassReport): Promise<void> {
    const name = cluster.name;
    const pending = this.pendingVisas.get(name) ?? new Set<string>();
    const ids = [...pending].slice(0, VISA_PASS_BATCH);
    for (const id of ids) pending.delete(id);
    if (pending.size === 0) this.pendingVisas.delete(name);
    // Queued behind this one (which is running), so a deadline pass may write in between.
    else void this.enqueue(name, 'visas').catch(() => undefined);
    const fullPasses = this.fullPassesBegun;
    const fullAlongside = () => this.running.get('full')!.has(name) || this.fullPassesBegun !== fullPasses;
    const alongsideAtStart = fullAlongside();
    const needsFullPass = await this.exclusively(name, () => {
      this.assertLeads();
      return this.convergeVisas(cluster, report, ids);
    });
    if (needsFullPass || (report.created.length > 0 && (alongsideAtStart || fullAlongside()))) this.kick([name]);
  }

  /**
   * Converges the named visas of this cluster, reading nothing else: the bindings of those that ended are deleted
   * (those the watch has seen, or of a visa that ended moments ago), then for those that grant, the person's
   * ServiceAccount and the bindings are made, judged again on the visas' rows just before. Returns whether a full
   * pass is needed: after an ended visa (its ServiceAccount may be unneeded now, its direct tokens live), and wherever
   * what the cluster holds is not what this pass expects (a binding that drifted or already exists, a ServiceAccount
   * of someone else, direct tokens that may live).
   */
  private async convergeVisas(
    cluster: ReconcilerCluster,
    report: PassReport,
    ids: readonly string[],
  ): Promise<boolean> {
    const untrusted = this.untrustedProfiles.get(cluster.name);
    if (untrusted === undefined || ids.length === 0) return ids.length > 0;
    const read = ++this.reads;
    const now = this.now();
    const visas: StoredVisa[] = [];
    for (let start = 0; start < ids.length; start += VISA_READ_BATCH) {
      const batch = await this.store.listVisas({ ids: ids.slice(start, start + VISA_READ_BATCH) });
      visas.push(...batch.filter((visa) => visa.cluster === cluster.name));
    }
    const seen = this.seenRoleBindings.get(cluster.name);
    const ended = visas.filter((visa) => ENDED_STATES.has(effectiveState(visa, now)));
    const granting = visas.filter((visa) => isGranting(visa, now) && !untrusted.has(visa.profile));
    await this.settleStates(granting, { only: 'activations' });
    await this.fence(cluster);
    let needsFullPass = ended.length > 0;

    // 1. Access that ended goes before anything is added.
    const endedRecently = (visa: Visa) => now - Math.min(visa.endedAt ?? visa.notAfter, now) < RECENT_END_MS;
    const { deletions } = this.bindingDeletionsOf(
      cluster,
      report,
      ended,
      (key, visa) => seen?.has(key) === true || endedRecently(visa),
    );
    await this.changeAll(cluster.name, deletions);

    // 2. Identities, then bindings, for the visas that grant to people who are active.
    const people = new Map<string, Person | undefined>();
    for (const visa of granting) {
      if (!people.has(visa.personId)) people.set(visa.personId, await this.store.getPerson(visa.personId));
    }
    const active = granting.filter((visa) => people.get(visa.personId)?.status === 'active');
    if (active.length === 0) return needsFullPass;
    // Direct tokens may ride on the person's ServiceAccount here: whether a binding may be added (or must wait for
    // the token cache) is the full pass's judgement.
    if (this.options.allowsDirectMode?.(cluster.name) === true) return true;
    const rotating = await this.unfinishedRotations(cluster.name);
    const accounts: ManagedServiceAccount[] = [];
    const ready = new Set<string>();
    // Only people with a binding to make have their ServiceAccount read (ids of visas whose bindings the watch shows,
    // forged or repeated, cost no request), and those reads go a few at a time, not one after the other: this runs
    // in the write section, where a deadline pass may be waiting.
    const missing = (visa: StoredVisa) =>
      visa.namespaces.some(
        (namespace) =>
          !isProtectedNamespace(namespace, this.options.protectedNamespaces) &&
          seen?.get(`${namespace}/${desiredRoleBinding(visa, namespace).metadata.name}`) === undefined,
      );
    const toBind = [...new Set(active.filter(missing).map((visa) => people.get(visa.personId)!))];
    for (let start = 0; start < toBind.length; start += WRITE_CONCURRENCY) {
      const batch = toBind.slice(start, start + WRITE_CONCURRENCY);
      const states = await Promise.all(
        batch.map((person) =>
          this.accountState(cluster, desiredServiceAccount(person.email, person.id), now, rotating),
        ),
      );
      batch.forEach((person, index) => {
        const state = states[index]!;
        if (state === 'full') needsFullPass = true;
        else ready.add(person.id);
        if (state === 'create') accounts.push(desiredServiceAccount(person.email, person.id));
      });
    }
    const planned: [string, { rb: ManagedRoleBinding; visa: StoredVisa }][] = [];
    for (const requested of active) {
      if (!ready.has(requested.personId) && missing(requested)) continue;
      // The person's email now, as a full pass binds it (see converge).
      const visa = { ...requested, personEmail: people.get(requested.personId)!.email };
      for (const namespace of visa.namespaces) {
        const skipped = this.skipProtectedNamespace(cluster.name, report, visa, namespace);
        if (skipped !== undefined) {
          await skipped;
          continue;
        }
        const rb = desiredRoleBinding(visa, namespace);
        const key = `${namespace}/${rb.metadata.name}`;
        const have = seen?.get(key);
        if (have === undefined) planned.push([key, { rb, visa }]);
        else if (roleBindingDrifted(have, rb)) needsFullPass = true;
      }
    }
    const found = () => {
      needsFullPass = true;
    };
    await this.changeAll(
      cluster.name,
      accounts.map((account) => this.serviceAccountCreation(cluster, report, account, { read, found })),
    );
    // Judged again on the rows as they are now: a visa revoked while this pass wrote gets no binding.
    const bindings = await this.stillGranting(planned, this.now());
    // A ServiceAccount found ready and bound to is relied on like one made: a full pass that read the visas before this
    // pass did must not delete it as unwanted (see madeAfter).
    const made =
      this.ownCreations.get(cluster.name) ?? new Map<string, { read: number; until: Instant; echoed: boolean }>();
    this.ownCreations.set(cluster.name, made);
    for (const [, { rb }] of bindings) {
      const key = `serviceaccount ${rb.subjects[0]?.name ?? ''}`;
      const known = made.get(key);
      if (known === undefined || known.read < read)
        made.set(key, { read, until: this.now() + OWN_DELETION_ECHO_MS, echoed: true });
    }
    await this.changeAll(
      cluster.name,
      bindings.map(([key, { rb, visa }]) => this.roleBindingCreation(cluster, report, key, rb, visa, { read, found })),
    );
    return needsFullPass;
  }

  /**
   * Whether a visa pass may bind to the person's ServiceAccount as it is (`ready`), must make it (`create`), or must
   * leave it to a full pass (`full`): it belongs to someone else, direct tokens may live on it, or it is being (or was
   * lately) made again to end them.
   */
  private async accountState(
    cluster: ReconcilerCluster,
    desired: ManagedServiceAccount,
    now: Instant,
    rotating: ReadonlySet<string>,
  ): Promise<'ready' | 'create' | 'full'> {
    const name = desired.metadata.name;
    if (rotating.has(name) || this.deletedWithDirectTokens.get(cluster.name)?.has(name) === true) return 'full';
    const account = await cluster.getServiceAccount(name);
    if (account === undefined) return 'create';
    if (ownerOf(account) !== ownerOf(desired)) return 'full';
    if (hasLiveDirectTokens(account, now) || heldUntil(rotatedAt(account), now) !== undefined) return 'full';
    return 'ready';
  }

  /**
   * The names of the ServiceAccounts whose rotation (made again to end direct-mode tokens) has not finished: its intent
   * is still pending.
   */
  private async unfinishedRotations(cluster: string): Promise<Set<string>> {
    return new Set(
      (await this.store.listPendingIntents({ cluster }))
        .filter((intent) => intent.kind === ROTATION_KIND)
        .map((intent) => String(intent.payload['name'] ?? '')),
    );
  }

  /**
   * Makes an object, known as a visa pass's own from read number `read` (see `ownCreations`) before the request is
   * sent, since its watch event may come back before the request's answer; forgotten again if it is not made (one
   * already there is someone else's, for a full pass to judge). Without `read` (a full pass), just makes it.
   */
  private async creating(cluster: string, key: string, read: number | undefined, create: () => Promise<unknown>) {
    if (read === undefined) return create();
    const made = this.ownCreations.get(cluster) ?? new Map<string, { read: number; until: Instant; echoed: boolean }>();
    this.ownCreations.set(cluster, made);
    const now = this.now();
    for (const [known, { until }] of made) if (until <= now) made.delete(known);
    const entry = { read, until: now + OWN_DELETION_ECHO_MS, echoed: false };
    made.set(key, entry);
    try {
      return await create();
    } catch (error) {
      if (made.get(key) === entry) made.delete(key);
      throw error;
    }
  }

  /** True when a visa pass of this process made this object lately (after checking whose it is). */
  private madeByVisaPass(cluster: string, key: string): boolean {
    const made = this.ownCreations.get(cluster)?.get(key);
    return made !== undefined && made.until > this.now();
  }

  /** True when a visa pass made this object from a read later than `read` (a full pass's, which must not delete it). */
  private madeAfter(cluster: string, key: string, read: number): boolean {
    const made = this.ownCreations.get(cluster)?.get(key);
    return made !== undefined && made.read > read && made.until > this.now();
  }

  /** A person ServiceAccount made (a full pass's and a visa pass's alike); `found` handles one already there. */
  private serviceAccountCreation(
    cluster: ReconcilerCluster,
    report: PassReport,
    account: ManagedServiceAccount,
    options: { read?: number; found?: () => void; rotating?: Instant; madeByVisaPass?: () => boolean },
  ): Change {
    const name = account.metadata.name;
    const tolerated = () => options.madeByVisaPass?.() ?? true;
    return {
      kind: 'serviceaccount.create',
      payload: { name, person: account.metadata.annotations[PERSON_ANNOTATION] },
      write: () =>
        this.creating(cluster.name, `serviceaccount ${name}`, options.read, () =>
          cluster.createServiceAccount(account),
        ),
      done: () => report.created.push(`serviceaccount/${name}`),
      ...(options.found
        ? { failed: async (error: unknown) => alreadyExists(error) && tolerated() && (options.found!(), true) }
        : {}),
    };
  }

  /**
   * A visa's RoleBinding made (a full pass's and a visa pass's alike): one in a namespace that does not exist is
   * reported and skipped; `found` handles one already there.
   */
  private roleBindingCreation(
    cluster: ReconcilerCluster,
    report: PassReport,
    key: string,
    rb: ManagedRoleBinding,
    visa: Visa,
    options: { read?: number; found?: () => void; madeByVisaPass?: () => boolean } = {},
  ): Change {
    return {
      kind: 'rolebinding.create',
      payload: { namespace: rb.metadata.namespace, name: rb.metadata.name, visaId: visa.id },
      visa,
      write: () => this.creating(cluster.name, `rolebinding ${key}`, options.read, () => cluster.createRoleBinding(rb)),
      done: () => {
        report.created.push(key);
        this.reportedMissing.delete(`${cluster.name}/${key}`);
      },
      failed: async (error) => {
        if (options.found !== undefined && alreadyExists(error) && (options.madeByVisaPass?.() ?? true)) {
          options.found();
          return true;
        }
        if (!(error instanceof KubevisaError) || error.code !== 'ERR_NAMESPACE_MISSING') return false;
        report.missingNamespaces.push(rb.metadata.namespace);
        await this.reportMissingNamespace(cluster.name, key, visa, rb.metadata.namespace);
        return true;
      },
    };
  }

  /**
   * The deletions of these visas' RoleBindings by name (those `keep` accepts), each known as this process's own write
   * when its watch events come back; never in a protected namespace, where none is written (see converge).
   */
  private bindingDeletionsOf(
    cluster: ReconcilerCluster,
    report: PassReport,
    visas: readonly StoredVisa[],
    keep: (key: string, visa: StoredVisa) => boolean = () => true,
  ): { deletions: Change[]; deletionsOf: Map<string, Change[]> } {
    const now = this.now();
    const echoes = this.ownDeletions.get(cluster.name) ?? new Map<string, Instant>();
    this.ownDeletions.set(cluster.name, echoes);
    for (const [key, until] of echoes) if (until <= now) echoes.delete(key);
    const deletions: Change[] = [];
    const deletionsOf = new Map<string, Change[]>();
    for (const visa of visas) {
      const ofVisa: Change[] = [];
      deletionsOf.set(visa.id, ofVisa);
      for (const namespace of visa.namespaces) {
        if (isProtectedNamespace(namespace, this.options.protectedNamespaces)) continue;
        const { name } = desiredRoleBinding(visa, namespace).metadata;
        const key = `${namespace}/${name}`;
        if (!keep(key, visa)) continue;
        echoes.set(key, now + OWN_DELETION_ECHO_MS);
        const deletion = this.roleBindingDeletion(
          cluster,
          { namespace, name, visaId: visa.id },
          'rolebinding.delete',
          visa,
          { seen: this.seenRoleBindings.get(cluster.name)?.get(key) },
          () => report.deleted.push(key),
        );
        deletions.push(deletion);
        ofVisa.push(deletion);
      }
    }
    return { deletions, deletionsOf };
  }

  /**
   * The deadline pass: each RoleBinding of the cluster's visas whose notAfter has passed (and only those) is deleted
   * by its name (one already gone is no error), with durable intents and audit events as in a full pass, in one batch;
   * the transaction that completes the deletes records those visas expired, each once all its bindings are gone (one
   * whose delete failed stays due, for the next deadline pass or the full pass that retries). What it leaves — a ServiceAccount nobody needs any more, a binding in a
   * namespace the visa no longer names — is the next full pass's; on a cluster that allows direct mode that pass is
   * asked for at once, since the person's ServiceAccount may carry live direct tokens (direct-tokens.ts) and only a
   * full pass knows whether it is still needed.
   */
  private async expireDue(cluster: ReconcilerCluster, report: PassReport): Promise<void> {
    const now = this.now();
    const due = await this.store.listVisasEndingBefore(now, { cluster: cluster.name });
    if (due.length === 0) return;
    const { deletions, deletionsOf } = this.bindingDeletionsOf(cluster, report, due);
    await this.fence(cluster);
    await this.changeAll(cluster.name, deletions, async (tx, succeeded) => {
      // An earlier pass's intent to delete one of these bindings (it failed, or its process died) is done too.
      const deleted = new Set(
        [...succeeded].map((deletion) => `${deletion.payload.namespace}/${deletion.payload.name}`),
      );
      const earlier = (await tx.listPendingIntents({ cluster: cluster.name })).filter(
        (intent) =>
          intent.kind === 'rolebinding.delete' &&
          deleted.has(`${String(intent.payload['namespace'])}/${String(intent.payload['name'])}`),
      );
      await tx.completeIntents(
        earlier.map((intent) => intent.id),
        this.now(),
      );
      await this.settleStates(
        due.filter((visa) => deletionsOf.get(visa.id)!.every((deletion) => succeeded.has(deletion))),
        { tx },
      );
    });
    if (this.options.allowsDirectMode?.(cluster.name) === true) this.kick([cluster.name]);
  }

  /** One RoleBinding deleted by name, recorded as `kind` (a full pass's and a deadline pass's deletions alike). */
  private roleBindingDeletion(
    cluster: ReconcilerCluster,
    target: { namespace: string; name: string; visaId: string | undefined },
    kind: string,
    visa: Visa | undefined,
    /** `seen`: the binding as last listed or watched, which lets the client delete it in one request. */
    options: { gone?: () => void; seen?: ManagedRoleBinding | undefined },
    done: () => void,
  ): Change {
    return {
      kind,
      payload: target,
      ...(visa ? { visa } : {}),
      // The cluster client resolves `false` for a binding that was not there (a 404): see `Change.gone`.
      write: () => cluster.deleteRoleBinding(target.namespace, target.name, options.seen),
      gone: options.gone ?? (() => undefined),
      done: () => {
        this.ownCreations.get(cluster.name)?.delete(`rolebinding ${target.namespace}/${target.name}`);
        done();
      },
    };
  }

  /** Keeps `seenRoleBindings` as the watch reports the cluster (a resync starts it over). */
  private noteSeen(cluster: string, event: RoleBindingEvent): void {
    let seen = this.seenRoleBindings.get(cluster);
    if (seen === undefined) this.seenRoleBindings.set(cluster, (seen = new Map()));
    if (event.type === 'RESYNC') {
      seen.clear();
      return;
    }
    const key = `${event.roleBinding.metadata.namespace}/${event.roleBinding.metadata.name}`;
    if (event.type === 'DELETED') {
      seen.delete(key);
      this.ownCreations.get(cluster)?.delete(`rolebinding ${key}`);
    } else seen.set(key, event.roleBinding);
  }

  /**
   * A watch event caused by a pass's own targeted write — a deadline or visa pass's delete (the fence's stamp, then
   * the deletion itself), a visa pass's create (its first ADDED): the cluster already is as that pass left it, so no
   * full pass is needed. A binding made again under a deleted one's name is not.
   */
  private isOwnWrite(cluster: string, event: RoleBindingEvent): boolean {
    if (event.type === 'RESYNC') return false;
    const key = `${event.roleBinding.metadata.namespace}/${event.roleBinding.metadata.name}`;
    const made = this.ownCreations.get(cluster)?.get(`rolebinding ${key}`);
    if (event.type === 'ADDED' && made !== undefined && !made.echoed && made.until > this.now()) {
      made.echoed = true;
      return true;
    }
    const echoes = this.ownDeletions.get(cluster);
    const until = echoes?.get(key);
    if (echoes === undefined || until === undefined) return false;
    if (event.type !== 'MODIFIED') echoes.delete(key);
    return event.type !== 'ADDED' && until > this.now();
  }

  /**
   * Records the activations and expiries among `visas` that are due (only the activations with `only`), each with its
   * audit event, in `tx` when given. Each visa is judged as the store has it in the transaction: one revoked since it
   * was read stays revoked. Call it for expiries only once the visas' bindings are gone.
   */
  private async settleStates(
    visas: readonly StoredVisa[],
    options: { tx?: StoreTx; only?: 'activations' } = {},
  ): Promise<void> {
    const now = this.now();
    const settles = (visa: Visa) => {
      const state = effectiveState(visa, now);
      return state !== visa.state && (options.only !== 'activations' || state === 'active');
    };
    const due = visas.filter(settles);
    if (due.length === 0) return;
    const settle = async (tx: StoreTx) => {
      for (const read of due) {
        const visa = await tx.getVisa(read.id);
        if (visa === undefined || !settles(visa)) continue;
        const state = effectiveState(visa, now);
        const next: Visa = state === 'expired' ? expireVisa(visa, now) : { ...visa, state };
        await tx.updateVisa(next, visa.version);
        await tx.appendAudit({
          at: now,
          actor: 'system',
          action: state === 'expired' ? 'visa.expired' : 'visa.activated',
          visaId: visa.id,
          personId: visa.personId,
          engagementId: visa.engagementId,
          cluster: visa.cluster,
          outcome: 'ok',
          details: {
            notBefore: visa.notBefore,
            notAfter: visa.notAfter,
            latenessMs: now - (state === 'expired' ? visa.notAfter : visa.notBefore),
          },
        });
      }
    };
    await (options.tx === undefined ? this.store.transaction(settle) : settle(options.tx));
  }

  private async converge(cluster: ReconcilerCluster, report: PassReport): Promise<void> {
    const generation = this.trustGeneration;
    // 0. The profiles and kubevisa's own RBAC first: a binding is only as narrow as the ClusterRole it points to.
    let profileState: Awaited<ReturnType<Reconciler['convergeProfiles']>>;
    try {
      profileState = await this.convergeProfiles(cluster, report);
    } catch (error) {
      // Which profiles may be bound is unknown until a full pass looks again: visa passes wait for it.
      this.untrustedProfiles.delete(cluster.name);
      throw error;
    }
    const { untrusted, installed, profiles } = profileState;
    // Only a judgement of this term and of the cluster object now registered under the name is one visa passes trust.
    if (generation === this.trustGeneration && this.clusters.get(cluster.name) === cluster)
      this.untrustedProfiles.set(cluster.name, untrusted);
    await this.convergeOwnRbac(cluster, report, installed);
    // The intents this pass answers for at its end: those pending before it read (a deadline pass's, made after, are
    // not covered by what it read).
    const pendingAtRead = (await this.store.listPendingIntents({ cluster: cluster.name })).map((intent) => intent.id);
    const now = this.now();
    const visasRead = ++this.reads;
    const granting = (await this.store.listVisasGrantingAt(now)).filter(
      (v) => v.cluster === cluster.name && !untrusted.has(v.profile),
    );
    const persons = new Map<string, Person>();
    for (const visa of granting) {
      if (!persons.has(visa.personId)) {
        const person = await this.store.getPerson(visa.personId);
        if (person) persons.set(person.id, person);
      }
    }
    const grantingForActive = granting.filter((v) => persons.get(v.personId)?.status === 'active');

    const wantSas = new Map<string, ManagedServiceAccount>();
    const wantRbs = new Map<string, { rb: ManagedRoleBinding; visa: StoredVisa }>();
    for (const requested of grantingForActive) {
      // The person's email now, not when the visa was requested: if the IdP renamed them, their identity follows,
      // and the old name (which the IdP may give someone else) is no longer theirs.
      const visa = { ...requested, personEmail: persons.get(requested.personId)!.email };
      const sa = desiredServiceAccount(visa.personEmail, visa.personId);
      wantSas.set(sa.metadata.name, sa);
      for (const namespace of visa.namespaces) {
        // Defence in depth: requests and approvals refuse these, but a row can predate that or be written by hand.
        const skipped = this.skipProtectedNamespace(cluster.name, report, visa, namespace);
        if (skipped !== undefined) {
          await skipped;
          continue;
        }
        const rb = desiredRoleBinding(visa, namespace);
        wantRbs.set(`${namespace}/${rb.metadata.name}`, { rb, visa });
      }
    }
    const [haveRbs, haveSas] = await Promise.all([
      cluster.listManagedRoleBindings(),
      cluster.listManagedServiceAccounts(),
    ]);
    const haveRbByKey = new Map(haveRbs.map((rb) => [`${rb.metadata.namespace}/${rb.metadata.name}`, rb]));
    const haveSaNames = new Set(haveSas.map((sa) => sa.metadata.name));
    // The reads are done: what follows writes, in turn with any deadline pass (see `exclusively`).
    await this.exclusively(cluster.name, () =>
      this.convergeWrites(cluster, report, {
        now,
        visasRead,
        pendingAtRead,
        profiles,
        wantSas,
        wantRbs,
        haveRbByKey,
        haveSas,
        haveSaNames,
      }),
    );
  }

  /**
   * The planned bindings whose visa, as the store has it now, still grants at `at`, each made from that row. What a
   * full pass read may be seconds old: a visa cut short, revoked or ended since (whose binding a deadline pass may
   * have just deleted) gets none. Costs a read of the visas to bind, not of every live one.
   */
  private async stillGranting(
    planned: [string, { rb: ManagedRoleBinding; visa: StoredVisa }][],
    at: Instant,
  ): Promise<[string, { rb: ManagedRoleBinding; visa: StoredVisa }][]> {
    const ids = [...new Set(planned.map(([, { visa }]) => visa.id))];
    const rows = new Map<string, StoredVisa>();
    for (let start = 0; start < ids.length; start += VISA_READ_BATCH) {
      const batch = ids.slice(start, start + VISA_READ_BATCH);
      for (const row of await this.store.listVisas({ ids: batch, states: ['approved', 'active'] }))
        rows.set(row.id, row);
    }
    return planned.flatMap(([key, { rb, visa }]) => {
      const row = rows.get(visa.id);
      const namespace = rb.metadata.namespace;
      if (row === undefined || !isGranting(row, at) || !row.namespaces.includes(namespace)) return [];
      // The person's email as the pass read it (see converge), the rest as the store has it now.
      const current = { ...row, personEmail: visa.personEmail };
      return [[key, { rb: desiredRoleBinding(current, namespace), visa: current }]];
    });
  }

  /** Throws when this replica no longer leads: a pass must not go on writing for a term that is over. */
  private assertLeads(): void {
    if (this.options.leadership !== undefined && !this.options.leadership.isLeader()) {
      throw new Error('this replica no longer leads: another one reconciles');
    }
  }

  /** A full pass's writes, from what `converge` read: removals, direct-token ends, identities, then bindings. */
  private async convergeWrites(
    cluster: ReconcilerCluster,
    report: PassReport,
    read: {
      now: Instant;
      /** The number of this pass's read of the visas (see `ownCreations`). */
      visasRead: number;
      pendingAtRead: readonly string[];
      profiles: readonly Profile[];
      wantSas: Map<string, ManagedServiceAccount>;
      wantRbs: Map<string, { rb: ManagedRoleBinding; visa: StoredVisa }>;
      haveRbByKey: Map<string, ManagedRoleBinding>;
      haveSas: ManagedServiceAccount[];
      haveSaNames: Set<string>;
    },
  ): Promise<void> {
    const { now, profiles, wantSas, wantRbs, haveRbByKey, haveSas, haveSaNames } = read;
    // A deadline pass may have run since the reads, and been refused by a newer leader's fence.
    this.assertLeads();

    // 1. Remove access that is no longer granted (or was edited by someone else) before adding anything.
    const deletions: Change[] = [];
    for (const [key, rb] of haveRbByKey) {
      const want = wantRbs.get(key);
      if (want && !roleBindingDrifted(rb, want.rb)) continue;
      // Made by a visa pass from a newer read of the visas than this pass's: not this pass's to judge.
      if (!want && this.madeAfter(cluster.name, `rolebinding ${key}`, read.visasRead)) continue;
      deletions.push(
        this.roleBindingDeletion(
          cluster,
          {
            namespace: rb.metadata.namespace,
            name: rb.metadata.name,
            visaId: rb.metadata.labels?.['kubevisa.io/visa'],
          },
          want ? 'rolebinding.repair-delete' : 'rolebinding.delete',
          undefined,
          // Gone already (a deadline pass deleted it since this pass listed): nothing was deleted here, nothing to
          // record; a drifted one is then made again like any missing one, if its visa still grants.
          { gone: () => haveRbByKey.delete(key), seen: rb },
          () => {
            if (want) {
              report.repaired.push(key);
              haveRbByKey.delete(key);
            } else report.deleted.push(key);
          },
        ),
      );
    }
    const recentlyDeleted = this.deletedWithDirectTokens.get(cluster.name) ?? new Map<string, Instant>();
    this.deletedWithDirectTokens.set(cluster.name, recentlyDeleted);
    for (const [name, at] of recentlyDeleted) if (heldUntil(at, now) === undefined) recentlyDeleted.delete(name);
    for (const sa of haveSas) {
      const want = wantSas.get(sa.metadata.name);
      // A ServiceAccount of the wanted name that was made for someone else (an email that passed from one person to
      // another) is deleted and made again: every token issued for the old one dies with it.
      if (want && ownerOf(want) === ownerOf(sa)) continue;
      if (!want && this.madeAfter(cluster.name, `serviceaccount ${sa.metadata.name}`, read.visasRead)) continue;
      deletions.push({
        kind: want ? 'serviceaccount.repair-delete' : 'serviceaccount.delete',
        payload: { name: sa.metadata.name, person: sa.metadata.annotations?.['kubevisa.io/person'] ?? '' },
        write: async () => {
          await cluster.deleteServiceAccount(sa.metadata.name);
          // The old tokens' cache entries can be no younger than this; the name may be bound again in that time.
          if (hasLiveDirectTokens(sa, now)) recentlyDeleted.set(sa.metadata.name, this.now());
        },
        done: () => {
          haveSaNames.delete(sa.metadata.name);
          report.deleted.push(`serviceaccount/${sa.metadata.name}`);
        },
      });
    }
    await this.changeAll(cluster.name, deletions);
    // The visas that had ended when this pass read were not wanted, so their bindings are gone now: recorded expired.
    await this.settleStates(await this.store.listVisasEndingBefore(now, { cluster: cluster.name }));

    // 2. Direct tokens end before anything they must not carry is bound (see direct-tokens.ts).
    const profileByName = new Map(profiles.map((profile) => [profile.name, profile]));
    const clusterAllowsDirect = this.options.allowsDirectMode?.(cluster.name) ?? false;
    const mayCarry = (visa: Visa) => directModeMayCarry(visa, profileByName.get(visa.profile), clusterAllowsDirect);
    const newBindings = await this.stillGranting(
      [...wantRbs].filter(([key]) => !haveRbByKey.has(key)),
      this.now(),
    );
    const rotated = new Map<string, Instant>();
    for (const sa of haveSas) {
      const at = rotatedAt(sa);
      if (at !== undefined && haveSaNames.has(sa.metadata.name)) rotated.set(sa.metadata.name, at);
    }
    await this.endDirectTokensBeforeBinding(cluster, report, {
      kept: haveSas.filter((sa) => haveSaNames.has(sa.metadata.name)),
      wantSas,
      newBindings: newBindings.map(([, { rb, visa }]) => ({ saName: rb.subjects[0]?.name ?? '', visa })),
      mayCarry,
      rotated,
    });

    // 3. Identities, then the bindings that grant them access.
    // A ServiceAccount deleted by a rotation that did not finish (a crash, a failed create) may have live tokens in
    // kube-apiserver's cache: it is made as a rotated one.
    const unfinishedRotations = await this.unfinishedRotations(cluster.name);
    const identities: Change[] = [];
    for (const [name, desired] of wantSas) {
      if (haveSaNames.has(name)) continue;
      // Made again within the token cache of one deleted with live direct tokens: old tokens may still authenticate
      // by name, so it is made as a rotated one (stamped with the deletion) and what it must not carry waits.
      const deletedAt = recentlyDeleted.get(name);
      const rotating = unfinishedRotations.has(name) || deletedAt !== undefined;
      const at = deletedAt ?? this.now();
      const sa = rotating ? rotatedServiceAccount(desired, at) : desired;
      const creation = this.serviceAccountCreation(cluster, report, sa, {
        found: () => undefined,
        madeByVisaPass: () => this.madeByVisaPass(cluster.name, `serviceaccount ${name}`),
      });
      identities.push({
        ...creation,
        done: () => {
          creation.done();
          if (rotating) rotated.set(name, at);
        },
      });
    }
    await this.changeAll(cluster.name, identities);
    const bindings: Change[] = [];
    let wakeAt = Infinity;
    for (const [key, { rb, visa }] of newBindings) {
      const holdUntil = mayCarry(visa) ? undefined : heldUntil(rotated.get(rb.subjects[0]?.name ?? ''), this.now());
      if (holdUntil !== undefined) {
        // The old ServiceAccount's tokens may still authenticate (by name) from kube-apiserver's cache.
        (report.held ??= []).push(key);
        wakeAt = Math.min(wakeAt, holdUntil);
        continue;
      }
      bindings.push(
        this.roleBindingCreation(cluster, report, key, rb, visa, {
          found: () => undefined,
          madeByVisaPass: () => this.madeByVisaPass(cluster.name, `rolebinding ${key}`),
        }),
      );
    }
    await this.changeAll(cluster.name, bindings);
    if (wakeAt !== Infinity) this.wakeAt(cluster.name, wakeAt);
    // Every intent pending when this pass read is now either done or superseded by the converged state. One a deadline
    // pass made since (say, for a delete that failed) stays pending: what this pass read does not cover it.
    const answered = new Set(read.pendingAtRead);
    await this.store.transaction(async (tx) => {
      const pending = await tx.listPendingIntents({ cluster: cluster.name });
      await tx.completeIntents(
        pending.filter((intent) => answered.has(intent.id)).map((intent) => intent.id),
        this.now(),
      );
    });
  }

  /**
   * Makes again each kept person ServiceAccount whose direct tokens may still live when a binding they must not
   * carry is about to be added for it, when its person's direct tokens were asked to end, or when the person has no
   * live session left (a direct token never outlives the session). Each is audited as `cluster.serviceaccount.rotated`
   * with the reason; the bindings it already has are untouched.
   */
  private async endDirectTokensBeforeBinding(
    cluster: ReconcilerCluster,
    report: PassReport,
    input: {
      kept: ManagedServiceAccount[];
      wantSas: Map<string, ManagedServiceAccount>;
      newBindings: { saName: string; visa: Visa }[];
      mayCarry: (visa: Visa) => boolean;
      rotated: Map<string, Instant>;
    },
  ): Promise<void> {
    const now = this.now();
    const requests = this.endRequests.get(cluster.name) ?? new Map<string, string>();
    const rotations: Change[] = [];
    const handled = new Set<string>();
    for (const sa of input.kept) {
      const name = sa.metadata.name;
      const personId = ownerOf(sa);
      const desired = input.wantSas.get(name);
      if (personId === undefined || desired === undefined || !hasLiveDirectTokens(sa, now)) continue;
      handled.add(personId);
      const barred = input.newBindings.find((binding) => binding.saName === name && !input.mayCarry(binding.visa));
      let reason: string | undefined;
      if (barred !== undefined) {
        reason = `visa ${barred.visa.id} (profile '${barred.visa.profile}') is about to be bound and direct mode must not carry it`;
      } else if (requests.has(personId)) {
        reason = requests.get(personId);
      } else if (!(await this.hasLiveSession(personId, now))) {
        reason = 'the person has no live kubevisa session, and a direct token never outlives it';
      }
      if (reason === undefined) continue;
      const until = directTokensUntil(sa) ?? now;
      rotations.push({
        kind: ROTATION_KIND,
        payload: {
          name,
          person: sa.metadata.annotations[PERSON_ANNOTATION],
          reason,
          directTokensUntil: Number.isFinite(until) ? formatInstant(until) : 'unreadable',
          ...(barred ? { visaId: barred.visa.id } : {}),
        },
        personId,
        write: async () => {
          await cluster.deleteServiceAccount(name);
          // Stamped after the delete: the old tokens' cache entries can be no younger than this.
          const at = this.now();
          input.rotated.set(name, at);
          await cluster.createServiceAccount(rotatedServiceAccount(desired, at));
        },
        done: () => {
          (report.rotated ??= []).push(name);
          requests.delete(personId);
        },
      });
    }
    // A request for someone with no live direct token here has nothing left to do.
    for (const personId of requests.keys()) if (!handled.has(personId)) requests.delete(personId);
    await this.changeAll(cluster.name, rotations);
  }

  private async hasLiveSession(personId: string, now: Instant): Promise<boolean> {
    const sessions = await this.store.listSessionsOfPerson(personId);
    return sessions.some((session) => session.revokedAt === undefined && session.expiresAt > now);
  }

  /** Runs a pass of the cluster at `at` (or earlier, if one is already due sooner). */
  private wakeAt(name: string, at: Instant) {
    const current = this.holdTimers.get(name);
    if (this.stopped || (current !== undefined && current.at <= at)) return;
    if (current !== undefined) clearTimeout(current.timer);
    const timer = setTimeout(
      () => {
        this.holdTimers.delete(name);
        this.kick([name]);
      },
      Math.max(0, at - this.now()),
    );
    timer.unref();
    this.holdTimers.set(name, { at, timer });
  }

  /**
   * Puts back every installed profile ClusterRole whose rules differ from the profile in the store (someone edited
   * it by hand), each repair audited as `cluster.drift.repaired` with what was added and removed. A role kubevisa
   * cannot restore (its credential predates the right to, or the role changed again meanwhile) is audited as
   * `cluster.drift.repair-failed`; when it grants more than reviewed, its profile is returned so this pass
   * withdraws the bindings to it (fail closed) until a later pass restores it.
   */
  private async convergeProfiles(
    cluster: ReconcilerCluster,
    report: PassReport,
  ): Promise<{ untrusted: Set<string>; installed: string[]; profiles: Profile[] }> {
    const [profiles, installed] = await Promise.all([this.store.listProfiles(), cluster.listProfileClusterRoles()]);
    const untrusted = new Set<string>();
    const repairs: Change[] = [];
    for (const drift of profileDrift(profiles, installed)) {
      const { profile, desired, actual, added, removed } = drift;
      const name = desired.metadata.name;
      repairs.push({
        kind: 'drift.repaired',
        payload: {
          object: `ClusterRole ${name}`,
          name,
          profile,
          before: rulesSummary(actual.rules),
          after: rulesSummary(desired.rules),
          added: added.join('; '),
          removed: removed.join('; '),
        },
        write: () =>
          cluster.replaceProfileClusterRole({
            ...desired,
            metadata: { ...desired.metadata, resourceVersion: actual.metadata.resourceVersion ?? '' },
          }),
        done: () => report.repaired.push(`ClusterRole ${name}`),
        failed: async (error) => {
          if (added.length > 0) untrusted.add(profile);
          await this.reportRepairFailed(cluster.name, name, actual.metadata.resourceVersion ?? '', error, added);
          return true;
        },
      });
    }
    await this.changeAll(cluster.name, repairs);
    const names = installed.map((role) => role.metadata.labels[PROFILE_LABEL] ?? '').filter((name) => name !== '');
    return { untrusted, installed: names, profiles };
  }

  /**
   * Puts back kubevisa's own roles when someone widened them (`cluster.drift.repaired`), and reports what it cannot
   * or must not write back — a narrowed or missing role, any change to its bindings — as `cluster.drift.detected`,
   * once per version of the object.
   */
  private async convergeOwnRbac(cluster: ReconcilerCluster, report: PassReport, profiles: string[]): Promise<void> {
    const actual = await cluster.readOwnRbac();
    // Which profiles kubevisa may bind is install's choice (a leftover profile role is not in the list); drift is a
    // name in the list that is not an installed profile role.
    const listed = (actual.clusterRole?.rules ?? [])
      .filter((rule) => rule.verbs.includes('bind'))
      .flatMap((rule) => rule.resourceNames ?? [])
      .map((name) => name.replace(/^kubevisa:profile:/, ''));
    const drifts = ownRbacDrift(kubevisaControllerRbac(profiles.filter((profile) => listed.includes(profile))), actual);
    const repairs: Change[] = [];
    for (const drift of drifts) {
      const details = { object: drift.object, added: drift.added.join('; '), removed: drift.removed.join('; ') };
      const restore = drift.restore;
      if (restore === undefined) {
        await this.reportDrift(
          cluster.name,
          drift.object,
          drift.resourceVersion,
          details,
          'kubevisa does not write its own bindings back',
        );
        continue;
      }
      repairs.push({
        kind: 'drift.repaired',
        payload: { ...details, name: restore.metadata.name },
        write: () => cluster.replaceOwnRole(restore),
        done: () => report.repaired.push(drift.object),
        failed: async (error) => {
          const why = error instanceof Error ? error.message : String(error);
          await this.reportDrift(
            cluster.name,
            drift.object,
            drift.resourceVersion,
            details,
            `it could not be restored: ${why}`,
          );
          return true;
        },
      });
    }
    await this.changeAll(cluster.name, repairs);
  }

  private async reportDrift(
    cluster: string,
    object: string,
    resourceVersion: string,
    details: Record<string, string>,
    why: string,
  ) {
    const id = `${cluster}/${object}@${resourceVersion}`;
    if (this.reportedRepairFailures.has(id)) return;
    await this.store.transaction((tx) =>
      tx.appendAudit({
        at: this.now(),
        actor: 'system',
        action: 'cluster.drift.detected',
        cluster,
        outcome: 'error',
        reason: `kubevisa's own ${object} differs from what 'kubevisa install' made (${[
          details['added'] ? `added: ${details['added']}` : '',
          details['removed'] ? `missing: ${details['removed']}` : '',
        ]
          .filter((part) => part !== '')
          .join('; ')}); ${why}. Run 'kubevisa install' for this cluster`,
        details,
      }),
    );
    this.reportedRepairFailures.add(id);
  }

  private async reportRepairFailed(
    cluster: string,
    name: string,
    resourceVersion: string,
    error: unknown,
    added: readonly string[],
  ) {
    const id = `${cluster}/${name}@${resourceVersion}`;
    if (this.reportedRepairFailures.has(id)) return;
    const why = error instanceof Error ? error.message : String(error);
    await this.store.transaction((tx) =>
      tx.appendAudit({
        at: this.now(),
        actor: 'system',
        action: 'cluster.drift.repair-failed',
        cluster,
        outcome: 'error',
        reason: `ClusterRole ${name} differs from its reviewed profile and could not be restored: ${why}${added.length > 0 ? '; the bindings of visas with this profile are withdrawn until it is' : ''}. Run 'kubevisa install' for this cluster`,
        details: { object: `ClusterRole ${name}`, name, added: added.join('; ') },
      }),
    );
    this.reportedRepairFailures.add(id);
  }

  /**
   * Durable intents for every change of a phase in one transaction, the cluster writes (a few at a time),
   * then one transaction that completes the intents of the writes that succeeded, each with its audit event.
   * Two fsyncs per phase, not two per object: thousands of expiries stay on time.
   */
  private async changeAll(
    cluster: string,
    changes: Change[],
    /** More to write in the transaction that completes the intents, knowing which changes hold (made, or found made). */
    completing?: (tx: StoreTx, succeeded: ReadonlySet<Change>) => Promise<void>,
  ): Promise<void> {
    if (changes.length === 0) {
      if (completing !== undefined) await this.store.transaction((tx) => completing(tx, new Set()));
      return;
    }
    const now = this.now();
    const clean = (payload: Change['payload']) =>
      Object.fromEntries(Object.entries(payload).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const intents = await this.store.transaction((tx) =>
      tx.insertIntents(
        changes.map((change) => ({
          kind: change.kind,
          cluster,
          ...(change.visa ? { visaId: change.visa.id, personId: change.visa.personId } : {}),
          ...(!change.visa && change.personId ? { personId: change.personId } : {}),
          payload: clean(change.payload),
          createdAt: now,
        })),
      ),
    );
    if (this.options.crashAfterIntent) process.kill(process.pid, 'SIGKILL');
    this.options.beforeWrites?.();
    const outcomes: ('done' | 'gone' | 'skipped' | Error)[] = new Array(changes.length);
    let next = 0;
    const worker = async () => {
      for (let index = next++; index < changes.length; index = next++) {
        const change = changes[index]!;
        try {
          const result = await change.write();
          outcomes[index] = change.gone !== undefined && result === false ? 'gone' : 'done';
        } catch (error) {
          outcomes[index] = (await change.failed?.(error)) ? 'skipped' : (error as Error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITE_CONCURRENCY, changes.length) }, worker));
    const at = this.now();
    await this.store.transaction(async (tx) => {
      // Done, nothing was there to change, or an expected refusal was handled (and reported): nothing more will be
      // done. A failed write's intent stays pending for the next pass.
      await tx.completeIntents(
        intents.filter((_, index) => !(outcomes[index] instanceof Error)).map((intent) => intent.id),
        at,
      );
      for (let index = 0; index < changes.length; index++) {
        if (outcomes[index] !== 'done') continue;
        const change = changes[index]!;
        const payload = clean(change.payload);
        await tx.appendAudit({
          at,
          actor: 'system',
          action: `cluster.${change.kind}`,
          cluster,
          ...(payload.namespace ? { namespace: payload.namespace } : {}),
          ...(payload.visaId ? { visaId: payload.visaId } : {}),
          ...(change.visa ? { personId: change.visa.personId, engagementId: change.visa.engagementId } : {}),
          ...(!change.visa && change.personId ? { personId: change.personId } : {}),
          outcome: 'ok',
          details: payload,
        });
      }
      const made = new Set(changes.filter((_, index) => outcomes[index] === 'done' || outcomes[index] === 'gone'));
      await completing?.(tx, made);
    });
    changes.forEach((change, index) => {
      if (outcomes[index] === 'done') change.done();
      if (outcomes[index] === 'gone') change.gone?.();
    });
    const failure = outcomes.find((o): o is Error => o instanceof Error);
    if (failure) throw failure;
  }

  private async reportMissingNamespace(cluster: string, key: string, visa: Visa, namespace: string) {
    const id = `${cluster}/${key}`;
    if (this.reportedMissing.has(id)) return;
    this.reportedMissing.add(id);
    await this.store.transaction((tx) =>
      tx.appendAudit({
        at: this.now(),
        actor: 'system',
        action: 'cluster.namespace-missing',
        cluster,
        namespace,
        visaId: visa.id,
        personId: visa.personId,
        outcome: 'error',
        reason: `namespace '${namespace}' does not exist in cluster '${cluster}'; kubevisa does not create namespaces`,
      }),
    );
  }

  /**
   * Skips a binding into a protected namespace, reporting it in the pass's report and (once) in the audit log: returns
   * that audit write when `namespace` is protected, and undefined when it is not, so that a pass's loop awaits nothing
   * for the namespaces it binds.
   */
  private skipProtectedNamespace(
    cluster: string,
    report: PassReport,
    visa: Visa,
    namespace: string,
  ): Promise<void> | undefined {
    if (!isProtectedNamespace(namespace, this.options.protectedNamespaces)) return undefined;
    (report.protectedNamespaces ??= []).push(namespace);
    return this.reportProtectedNamespace(cluster, visa, namespace);
  }

  private async reportProtectedNamespace(cluster: string, visa: Visa, namespace: string) {
    const id = `${cluster}/${namespace}/${visa.id}`;
    if (this.reportedProtected.has(id)) return;
    await this.store.transaction((tx) =>
      tx.appendAudit({
        at: this.now(),
        actor: 'system',
        action: 'cluster.protected-namespace-refused',
        cluster,
        namespace,
        visaId: visa.id,
        personId: visa.personId,
        engagementId: visa.engagementId,
        outcome: 'refused',
        reason: `visa ${visa.id} names namespace '${namespace}', which is protected: kubevisa never writes a binding there`,
      }),
    );
    this.reportedProtected.add(id);
  }

  /**
   * Retries a failed pass with backoff (1 s doubling to 30 s). A cluster that does not answer at all is asked again
   * every second instead: the question costs nothing, and the deadlines that fell meanwhile are enforced the moment
   * it is back.
   */
  private scheduleRetry(name: string, unreachable = false) {
    if (this.stopped || this.retryTimers.has(name)) return;
    const delay = unreachable ? UNREACHABLE_RETRY_MS : Math.min(MAX_BACKOFF_MS, (this.backoff.get(name) ?? 500) * 2);
    this.backoff.set(name, delay);
    const timer = setTimeout(() => {
      this.retryTimers.delete(name);
      this.kick([name]);
    }, delay);
    timer.unref();
    this.retryTimers.set(name, timer);
  }

  /**
   * One timer for the next activation or expiry anywhere after the deadlines already handed out (a store query that
   * reads no visa but the next one). Armed after every pass, since a pass follows every change of a visa.
   */
  private async armDeadlineTimer(): Promise<void> {
    if (this.stopped) return;
    const next = await this.store.nextVisaDeadlineAfter(this.deadlinesUntil ?? this.now());
    clearTimeout(this.deadlineTimer);
    if (next === undefined || this.stopped) return;
    this.deadlineTimer = setTimeout(
      () => {
        void this.onDeadline().catch(() => {
          // The store did not answer: the periodic resync settles what is due, and re-arms this timer.
        });
      },
      Math.min(MAX_TIMER_MS, Math.max(0, next - this.now())),
    );
  }

  /**
   * Deadlines fell due: a deadline pass for each cluster with visas whose notAfter has passed (including any a failed
   * pass left due, whatever retry is pending), a visa pass for each with visas whose notBefore has, naming them.
   */
  private async onDeadline(): Promise<void> {
    if (this.stopped || this.options.leadership?.isLeader() === false) return;
    const at = this.now();
    const [ended, approved] = await Promise.all([
      this.store.listVisasEndingBefore(at),
      this.store.listVisasInStates(['approved']),
    ]);
    this.deadlinesUntil = at;
    for (const name of new Set(ended.map((visa) => visa.cluster))) {
      if (!this.clusters.has(name)) continue;
      void this.expireDueNow(name).catch(() => {
        // An unknown cluster (removed meanwhile); a failing pass records its own failure and is retried.
      });
    }
    // Activations are visa passes for the visas that opened.
    const opened = new Map<string, string[]>();
    for (const visa of approved) {
      if (visa.notBefore > at) continue;
      opened.set(visa.cluster, [...(opened.get(visa.cluster) ?? []), visa.id]);
    }
    for (const [name, ids] of opened) this.kick([name], ids);
    await this.armDeadlineTimer();
  }
}

function alreadyExists(error: unknown): boolean {
  return error instanceof KubevisaError && error.code === 'ERR_ALREADY_EXISTS';
}
