/**
 * Offboarding with a receipt. One entry point for every trigger (an admin, SCIM, the directory sync, a refused
 * IdP refresh):
 *
 * 1. before anything changes, a canary token is minted for the person's ServiceAccount in every cluster and
 *    used once, so kube-apiserver holds it in its token cache like a contractor's token in use;
 * 2. the person's open streams in the gateway are counted, and the offboarding is committed
 *    (AccessService.offboardPerson: status, visas, sessions, each audited), which also tells the gateway to cut
 *    those streams and the reconciler to delete RoleBindings and ServiceAccounts;
 * 3. every step is then proven by a live call made after it, and the receipt is stored as proofs come in:
 *    store reads for the person, visas and sessions; the access-token check the API and gateway run; a fresh
 *    read of the gateway's registry of open streams; and per cluster, fresh lists of labelled objects, a rules
 *    review as the person's identity, and the canary token presented until kube-apiserver answers 401 (after
 *    its 10 s cache).
 *
 * A step that cannot be proven (cluster unreachable, a token still accepted) is marked unproven, alerted, and
 * retried with backoff until it is proven; open receipts are resumed at start-up.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import type { ClusterClient } from '../cluster/client.ts';
import { NotFound, Unauthenticated } from '../domain/errors.ts';
import type { Person } from '../domain/model.ts';
import { effectiveState } from '../domain/visa.ts';
import type { Reconciler } from '../reconciler/reconciler.ts';
import type { Caller } from '../app/caller.ts';
import type { PeopleService } from '../app/people.ts';
import type { SessionService } from '../app/sessions.ts';
import { requireAdmin } from '../domain/permissions.ts';
import { requireReason } from '../domain/validate.ts';
import type { OffboardingRecord } from '../store/identity-records.ts';
import type { JsonObject, Store, StoreTx } from '../store/store.ts';
import { ClusterProbe, rulesBeyondDiscovery, type CanaryToken } from './cluster-probe.ts';
import type { OffboardingConfig } from './config.ts';
import { overallStatus, pendingStep, summarize, type Receipt, type ReceiptStep, type TriggerKind } from './receipt.ts';

/** kube-apiserver caches a token's authentication for 10 s; an inferred proof waits a little longer. */
const TOKEN_CACHE_MS = 10_000;
const INFERRED_TOKEN_WAIT_MS = TOKEN_CACHE_MS + 1000;
/** Time between proof rounds while a step is still pending (waiting out the token cache), in ms. */
const ROUND_INTERVAL_MS = 500;
/** A canary that cannot be minted within this long does not hold the offboarding up, in ms. */
const CANARY_TIMEOUT_MS = 3000;

export interface OffboardingStart {
  personId: string;
  /** `suspended` when the IdP deactivated the person (SCIM can reactivate), `deprovisioned` otherwise. */
  status: 'suspended' | 'deprovisioned';
  trigger: { kind: TriggerKind; by: string };
  reason: string;
  /** Who acts: the admin for `kubevisa offboard` (trigger `admin`: checked), a system actor for the IdP's triggers. */
  caller: Caller;
}

/** A further proof a capability contributes (the gateway: "it refuses the person"). */
export interface ExtraProof {
  id: string;
  step: string;
  proof: string;
  check(person: Person): Promise<{ proven: boolean; detail: string }>;
}

/** One open stream as the gateway's registry holds it: what the receipt names. */
export interface OpenStreamInfo {
  id: number;
  /** For people: `exec/attach`, `port-forward`, `watch`, `request` (e.g. logs -f). */
  kind: string;
  cluster: string;
  namespace: string | undefined;
}

/**
 * The gateway's registry of open streams as offboarding sees it. The gateway attaches it when both run in one
 * server; without it the `streams-closed` step stays unproven, since nothing else can show the streams ended.
 */
export interface OpenStreamRegistry {
  /** The person's streams open right now in this server's gateway. */
  openOf(personId: string): OpenStreamInfo[];
  /** Closes every open stream of the person; returns how many it closed. */
  closeOf(personId: string, reason: string): number;
}

export interface OffboardingAlert {
  kind: 'unproven' | 'proven-after-retry';
  receipt: Receipt;
  /** The steps concerned (the unproven ones, or those finally proven). */
  steps: ReceiptStep[];
}

export interface OffboardingOptions {
  store: Store;
  people: Pick<PeopleService, 'offboardAs'>;
  sessions: Pick<SessionService, 'authenticate'>;
  tokens: TokenIssuer;
  clusters: Map<string, ClusterClient>;
  reconciler: Pick<Reconciler, 'reconcileNow'>;
  config: OffboardingConfig;
  /** Told when a receipt cannot be completed, and when it finally is. */
  alert: (alert: OffboardingAlert) => Promise<void>;
  /** Failures no caller is waiting for (a background proof round that threw). */
  report: (message: string, error: unknown) => void;
  now?: () => number;
}

type CanaryState =
  | { kind: 'token'; canary: CanaryToken }
  /** The person had no ServiceAccount there when the offboarding began. */
  | { kind: 'none' }
  /** Could not be minted (unreachable cluster) or was lost in a restart: the proof is inferred. */
  | { kind: 'unknown'; why: string };

export class OffboardingOrchestrator {
  private readonly options: OffboardingOptions;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly probes = new Map<string, ClusterProbe>();
  private readonly extraProofs: ExtraProof[] = [];
  private streams: OpenStreamRegistry | undefined;
  /**
   * Per offboarding: the person's streams open just before the commit, how many of them the commit closed, and
   * how many a proof round had to close after it.
   */
  private readonly streamsAtCommit = new Map<string, { open: OpenStreamInfo[]; closed: number; closedLater: number }>();
  /** Per offboarding: per cluster, the canary minted before it began (memory only: a credential). */
  private readonly canaries = new Map<string, Map<string, CanaryState>>();
  /** Per offboarding: per cluster, when the ServiceAccount was first seen gone. */
  private readonly goneSince = new Map<string, Map<string, number>>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly retryDelay = new Map<string, number>();
  private readonly personLocks = new Map<string, Promise<unknown>>();
  private stopped = false;

  constructor(options: OffboardingOptions) {
    this.options = options;
    this.store = options.store;
    this.now = options.now ?? Date.now;
  }

  /** A probe per managed cluster, read on every use: clusters registered or removed at run time count too. */
  private currentProbes(): Map<string, ClusterProbe> {
    for (const name of this.probes.keys()) if (!this.options.clusters.has(name)) this.probes.delete(name);
    for (const [name, cluster] of this.options.clusters) {
      if (!this.probes.has(name)) this.probes.set(name, new ClusterProbe({ cluster, now: this.now }));
    }
    return this.probes;
  }

  addProof(proof: ExtraProof): void {
    this.extraProofs.push(proof);
  }

  /** The gateway's registry of open streams, which the `streams-closed` step reads. */
  attachStreams(registry: OpenStreamRegistry): void {
    this.streams = registry;
  }

  /**
   * Commits the offboarding and starts proving it. Resolves once the commit is durable (sessions, visas and
   * status ended), with the receipt as it stands; the proofs continue in the background (see `waitFor`).
   * @throws NotFound for an unknown person; Forbidden when the caller is not an admin.
   */
  async start(input: OffboardingStart): Promise<Receipt> {
    // An admin's offboarding is a person's act and needs the role; the IdP's triggers are kubevisa's own.
    if (input.trigger.kind === 'admin') requireAdmin(input.caller.actor, 'offboard a person');
    // Checked before anything is done, naming the field: the audit trail would refuse it later, in its own words.
    requireReason(input.reason);
    const person = await this.store.getPerson(input.personId);
    if (!person) throw new NotFound(`no person '${input.personId}'`);
    return this.exclusive(person.id, async () => {
      // The IdP's signals can arrive together (a SCIM deactivation and a sync): the first offboards, the
      // others find the person already offboarded and get its receipt. An admin may always offboard again.
      if (input.trigger.kind !== 'admin') {
        const current = await this.store.getPerson(person.id);
        const latest = (await this.store.listOffboardings({ personId: person.id })).at(-1);
        if (current?.status !== 'active' && latest !== undefined) return receiptOf(latest);
      }
      const canaries = await this.mintCanaries(person.email);
      const openBefore = this.streams?.openOf(person.id) ?? [];
      const result = await this.options.people.offboardAs(input.caller, person.id, input.reason, {
        status: input.status,
      });
      const committedAt = this.now();
      // The commit tells the gateway synchronously: what is no longer registered now, the commit closed.
      const openAfter = new Set((this.streams?.openOf(person.id) ?? []).map((s) => s.id));
      const streams = {
        open: openBefore,
        closed: openBefore.filter((s) => !openAfter.has(s.id)).length,
        closedLater: 0,
      };
      const id = `o_${randomBytes(16).toString('base64url')}`;
      const steps = this.initialSteps();
      const base: Omit<Receipt, 'summary'> = {
        id,
        person: { id: person.id, email: person.email, status: input.status },
        trigger: { kind: input.trigger.kind, by: input.trigger.by, reason: input.reason },
        status: 'proving',
        startedAt: new Date(committedAt).toISOString(),
        steps,
        timings: { committed: 0 },
      };
      const receipt: Receipt = { ...base, summary: summarize(base) };
      await this.store.transaction(async (tx) => {
        await tx.insertOffboarding({
          id,
          personId: person.id,
          status: 'proving',
          trigger: input.trigger.kind,
          receipt: toJson(receipt),
          createdAt: committedAt,
          updatedAt: committedAt,
        });
        await tx.appendAudit({
          at: committedAt,
          actor: input.caller.actor.email,
          ...(input.caller.sessionId ? { sessionId: input.caller.sessionId } : {}),
          action: 'offboarding.started',
          personId: person.id,
          outcome: 'ok',
          reason: input.reason,
          details: {
            offboardingId: id,
            trigger: input.trigger.kind,
            by: input.trigger.by,
            status: input.status,
            visasEnded: result.visasEnded.length,
            sessionsEnded: result.sessionsEnded,
            canaries: Object.fromEntries([...canaries].map(([cluster, state]) => [cluster, state.kind])),
            ...(this.streams ? { streamsOpen: streams.open.length, streamsClosed: streams.closed } : {}),
          },
          ...(input.caller.source ? { source: input.caller.source } : {}),
        });
      });
      this.canaries.set(id, canaries);
      this.streamsAtCommit.set(id, streams);
      this.launch(id);
      return receipt;
    });
  }

  async get(id: string): Promise<Receipt | undefined> {
    const record = await this.store.getOffboarding(id);
    return record === undefined ? undefined : receiptOf(record);
  }

  async list(personId?: string): Promise<Receipt[]> {
    return (await this.store.listOffboardings(personId === undefined ? {} : { personId })).map(receiptOf);
  }

  /** The receipt once it is no longer `proving` (proven, or unproven and retrying), or as it is at the deadline. */
  async waitFor(id: string, timeoutMs: number): Promise<Receipt> {
    const deadline = this.now() + timeoutMs;
    for (;;) {
      const receipt = await this.get(id);
      if (!receipt) throw new NotFound(`no offboarding '${id}'`);
      if (receipt.status !== 'proving' || this.now() >= deadline) return receipt;
      await sleep(Math.min(100, Math.max(1, deadline - this.now())));
    }
  }

  /** Picks up receipts a previous process left open (their canaries are gone: token proofs are inferred). */
  async resume(): Promise<void> {
    for (const record of await this.store.listOffboardings({ statuses: ['proving', 'unproven'] })) {
      if (!this.running.has(record.id)) this.launch(record.id);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  /** One offboarding per person at a time: a replayed deactivation waits for the first and sees it done. */
  private async exclusive<T>(personId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.personLocks.get(personId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.personLocks.set(personId, settled);
    try {
      return await next;
    } finally {
      if (this.personLocks.get(personId) === settled) this.personLocks.delete(personId);
    }
  }

  private async mintCanaries(email: string): Promise<Map<string, CanaryState>> {
    const entries = await Promise.all(
      [...this.currentProbes()].map(async ([name, probe]): Promise<[string, CanaryState]> => {
        try {
          const canary = await withTimeout(
            probe.mintCanary(email),
            CANARY_TIMEOUT_MS,
            `cluster '${name}' took too long`,
          );
          return [name, canary === undefined ? { kind: 'none' } : { kind: 'token', canary }];
        } catch (error) {
          return [name, { kind: 'unknown', why: (error as Error).message }];
        }
      }),
    );
    return new Map(entries);
  }

  private initialSteps(): ReceiptStep[] {
    const steps = [
      pendingStep('person-status', 'person status changed in kubevisa', 'store read of the person after the commit'),
      pendingStep(
        'visas',
        'every visa revoked (or request cancelled)',
        'store read: no visa of the person is requested, approved or active',
      ),
      pendingStep(
        'sessions',
        'every kubevisa session ended',
        'store read: every session of the person is revoked or expired',
      ),
      pendingStep(
        'access-token',
        "the gateway refuses the person's kubevisa access token",
        'a token signed now for their latest session is refused by SessionService.authenticate, the check the API and the gateway run on every request',
      ),
      pendingStep(
        'streams-closed',
        'open streams closed (kubectl exec, attach, port-forward, watch, logs -f)',
        "the gateway's registry of open streams: the person's streams registered before the commit are gone, and a fresh read after it holds none of theirs",
      ),
      ...this.extraProofs.map((p) => pendingStep(`extra/${p.id}`, p.step, p.proof)),
    ];
    for (const name of this.currentProbes().keys()) {
      steps.push(
        pendingStep(
          `cluster/${name}/rolebindings`,
          `cluster ${name}: RoleBindings removed`,
          'fresh list of kubevisa RoleBindings: none labelled for the person or binding their ServiceAccount',
          name,
        ),
        pendingStep(
          `cluster/${name}/serviceaccount`,
          `cluster ${name}: ServiceAccount deleted`,
          'fresh list of ServiceAccounts in kubevisa-visas: the person’s is gone, so every token it was issued is void',
          name,
        ),
        pendingStep(
          `cluster/${name}/permissions`,
          `cluster ${name}: the person's identity can do nothing beyond discovery`,
          'SelfSubjectRulesReview impersonating the person’s ServiceAccount (kubectl auth can-i --list) in each namespace they had',
          name,
        ),
        pendingStep(
          `cluster/${name}/token`,
          `cluster ${name}: a token issued before offboarding is refused by kube-apiserver`,
          'a TokenRequest token minted and accepted before the offboarding, presented again until kube-apiserver answers 401',
          name,
        ),
      );
    }
    return steps;
  }

  private launch(id: string): void {
    if (this.stopped || this.running.has(id)) return;
    const run = this.proveUntilSettled(id)
      .catch((error: unknown) => {
        this.options.report(`offboarding ${id}: a proof round failed; retrying`, error);
        this.scheduleRetry(id);
      })
      .finally(() => this.running.delete(id));
    this.running.set(id, run);
  }

  private async proveUntilSettled(id: string): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const receipt = await this.round(id);
      if (receipt === undefined) return;
      if (receipt.status === 'proving') {
        await sleep(ROUND_INTERVAL_MS);
        continue;
      }
      if (receipt.status === 'unproven') this.scheduleRetry(id);
      else {
        this.retryDelay.delete(id);
        this.canaries.delete(id);
        this.goneSince.delete(id);
        this.streamsAtCommit.delete(id);
      }
      return;
    }
  }

  private scheduleRetry(id: string): void {
    if (this.stopped || this.retryTimers.has(id)) return;
    const previous = this.retryDelay.get(id);
    const delay =
      previous === undefined ? this.options.config.retryMs : Math.min(this.options.config.maxRetryMs, previous * 2);
    this.retryDelay.set(id, delay);
    const timer = setTimeout(() => {
      this.retryTimers.delete(id);
      this.launch(id);
    }, delay);
    timer.unref();
    this.retryTimers.set(id, timer);
  }

  /** Proves every step not proven yet, once; stores the receipt and audits each step that changed. */
  private async round(id: string): Promise<Receipt | undefined> {
    const record = await this.store.getOffboarding(id);
    if (!record) return undefined;
    const before = receiptOf(record);
    const person = await this.store.getPerson(record.personId);
    const started = Date.parse(before.startedAt);
    const steps = before.steps.map((s) => ({ ...s }));
    const timings = { ...before.timings };
    const open = (stepId: string) => steps.find((s) => s.id === stepId && s.status !== 'proven');

    const settle = (step: ReceiptStep, status: 'proven' | 'pending' | 'unproven', detail: string) => {
      step.attempts += 1;
      step.detail = detail;
      step.status = status;
      step.ok = status === 'proven';
      if (status === 'proven') {
        step.provenAt = new Date(this.now()).toISOString();
        timings[step.id] = this.now() - started;
      }
    };
    const attempt = async (step: ReceiptStep | undefined, check: () => Promise<[ReceiptStep['status'], string]>) => {
      if (!step) return;
      try {
        const [status, detail] = await check();
        settle(step, status, detail);
      } catch (error) {
        settle(step, 'unproven', `could not be checked: ${(error as Error).message}`);
      }
    };

    if (!person) {
      for (const step of steps.filter((s) => s.status !== 'proven')) {
        settle(step, 'unproven', `person ${record.personId} no longer exists in the store`);
      }
    } else {
      await this.proveStoreSteps(person, before, open, attempt);
      await this.proveStreamsClosed(id, person, open, attempt);
      await Promise.all(
        [...this.currentProbes()].map(([name, probe]) =>
          this.proveCluster(id, name, probe, person, started, open, attempt),
        ),
      );
    }

    const status = overallStatus(steps);
    const base: Omit<Receipt, 'summary'> = {
      ...before,
      status,
      steps,
      timings: status === 'proven' ? { ...timings, complete: this.now() - started } : timings,
      ...(status === 'proven' ? { completedAt: new Date(this.now()).toISOString() } : {}),
    };
    const receipt: Receipt = { ...base, summary: summarize(base) };
    await this.store.transaction(async (tx) => {
      await tx.updateOffboarding(id, { status, receipt: toJson(receipt), updatedAt: this.now() });
      await this.auditTransitions(tx, record, before, receipt);
    });
    if (status === 'unproven' && before.status !== 'unproven') {
      await this.options.alert({ kind: 'unproven', receipt, steps: steps.filter((s) => s.status === 'unproven') });
    }
    if (status === 'proven') {
      // Whoever was told it was unproven is told it is now proven. Not only when the round before was unproven: a
      // step can pass through pending on the way (waiting out kube-apiserver's token cache once the cluster is
      // back), and the process may have restarted in between; the trail says which steps were ever unproven.
      const once = await this.stepsOnceUnproven(record);
      const finallyProven = steps.filter((s) => once.has(s.id));
      if (finallyProven.length > 0)
        await this.options.alert({ kind: 'proven-after-retry', receipt, steps: finallyProven });
    }
    return receipt;
  }

  private async proveStoreSteps(
    person: Person,
    receipt: Receipt,
    open: (id: string) => ReceiptStep | undefined,
    attempt: (step: ReceiptStep | undefined, check: () => Promise<[ReceiptStep['status'], string]>) => Promise<void>,
  ): Promise<void> {
    await attempt(open('person-status'), async () => {
      const expected = receipt.person.status;
      return person.status === expected
        ? ['proven', `${person.email} is ${person.status}: no new login or token renewal is possible`]
        : ['unproven', `${person.email} is ${person.status}, expected ${expected}`];
    });
    await attempt(open('visas'), async () => {
      const now = this.now();
      const visas = await this.store.listVisas({ personId: person.id });
      const live = visas.filter((v) => ['requested', 'approved', 'active'].includes(effectiveState(v, now)));
      const ended = visas.filter((v) => v.endReason?.startsWith('offboarded')).length;
      return live.length === 0
        ? ['proven', `no live visa or pending request (${ended} ended by this or an earlier offboarding)`]
        : ['unproven', `${live.length} visa(s) still live: ${live.map((v) => v.id).join(', ')}`];
    });
    await attempt(open('sessions'), async () => {
      const now = this.now();
      const sessions = await this.store.listSessionsOfPerson(person.id);
      const live = sessions.filter((s) => s.revokedAt === undefined && s.expiresAt > now);
      return live.length === 0
        ? ['proven', `all ${sessions.length} session(s) are revoked or expired`]
        : ['unproven', `${live.length} session(s) still live`];
    });
    await attempt(open('access-token'), async () => {
      const sessions = await this.store.listSessionsOfPerson(person.id);
      const latest = sessions[sessions.length - 1];
      const issued = await this.options.tokens.issue({
        personId: person.id,
        email: person.email,
        sessionId: latest?.id ?? 's_none',
        now: this.now(),
        expiresInSeconds: 60,
      });
      try {
        await this.options.sessions.authenticate(issued.token);
      } catch (error) {
        if (error instanceof Unauthenticated) {
          return ['proven', `refused: ${error.message}${latest ? '' : ' (the person never had a kubevisa session)'}`];
        }
        throw error;
      }
      return ['unproven', 'a freshly signed access token for the person was ACCEPTED'];
    });
    for (const proof of this.extraProofs) {
      await attempt(open(`extra/${proof.id}`), async () => {
        const result = await proof.check(person);
        return [result.proven ? 'proven' : 'unproven', result.detail];
      });
    }
  }

  /**
   * Streams opened with a direct-mode token go straight to kube-apiserver, which never re-authorizes an open stream
   * and offers no way to cut one: the registry cannot see them, so the proof says so rather than claim them.
   */
  private async directModeCaveat(person: Person): Promise<string> {
    const issued = (
      await this.store.listAudit({ personId: person.id, action: 'credential.issued', newestFirst: true, limit: 1000 })
    ).filter((event) => event.details.mode === 'direct');
    if (issued.length === 0)
      return '; no direct-mode credential was ever issued to the person, so every stream of theirs went through the gateway';
    const last = new Date(issued[0]!.at).toISOString();
    return `; NOT covered: ${issued.length} direct-mode credential(s) were issued to the person (the last at ${last}), and a stream opened with one straight at kube-apiserver (a watch, logs -f) is outside the gateway: the ServiceAccount's deletion refuses every new request, but kube-apiserver lets such an open stream run until it ends`;
  }

  private async proveStreamsClosed(
    id: string,
    person: Person,
    open: (id: string) => ReceiptStep | undefined,
    attempt: (step: ReceiptStep | undefined, check: () => Promise<[ReceiptStep['status'], string]>) => Promise<void>,
  ): Promise<void> {
    const step = open('streams-closed');
    await attempt(step, async () => {
      if (!this.streams) {
        return [
          'unproven',
          "no gateway registry of open streams is attached to this server: nothing shows that the person's streams were closed",
        ];
      }
      const atCommit = this.streamsAtCommit.get(id);
      const left = this.streams.openOf(person.id);
      if (left.length > 0) {
        // The commit should have closed them; close them now and prove it in the next round.
        const closedNow = this.streams.closeOf(person.id, 'offboarded: still open after the offboarding');
        if (atCommit) atCommit.closedLater += closedNow;
        return [
          'unproven',
          `${left.length} stream(s) of the person were still open after the commit (${describeStreams(left)}); ${closedNow} closed now, checked again in the next round`,
        ];
      }
      const checked = `a fresh read of the gateway's registry at ${new Date(this.now()).toISOString()} holds none of the person's streams${await this.directModeCaveat(person)}`;
      if (atCommit === undefined) {
        return [
          'proven',
          `the server restarted since the offboarding began, which ended every stream it relayed; ${checked}`,
        ];
      }
      const closed = atCommit.closed + atCommit.closedLater;
      if (step) step.count = closed;
      if (atCommit.open.length === 0) {
        return ['proven', `the person had no open stream when the offboarding was committed; ${checked}`];
      }
      const later = atCommit.closedLater > 0 ? `, ${atCommit.closedLater} of them by a later proof round` : '';
      return [
        'proven',
        `${closed} stream(s) open at the commit closed${later} (${describeStreams(atCommit.open)}); ${checked}`,
      ];
    });
  }

  private async proveCluster(
    id: string,
    name: string,
    probe: ClusterProbe,
    person: Person,
    started: number,
    open: (id: string) => ReceiptStep | undefined,
    attempt: (step: ReceiptStep | undefined, check: () => Promise<[ReceiptStep['status'], string]>) => Promise<void>,
  ): Promise<void> {
    const rbStep = open(`cluster/${name}/rolebindings`);
    const saStep = open(`cluster/${name}/serviceaccount`);
    const permissionsStep = open(`cluster/${name}/permissions`);
    const tokenStep = open(`cluster/${name}/token`);
    if (!rbStep && !saStep && !permissionsStep && !tokenStep) return;

    let passError: string | undefined;
    if (rbStep || saStep) {
      // Converge now rather than wait for the kick: the proof comes right after the deletion.
      const report = await this.options.reconciler.reconcileNow(name).catch((error: unknown) => ({
        error: (error as Error).message,
      }));
      passError = report.error;
    }
    let leftovers: Awaited<ReturnType<ClusterProbe['leftovers']>> | undefined;
    let listError: string | undefined;
    if (rbStep || saStep || tokenStep) {
      try {
        leftovers = await probe.leftovers(person.email);
      } catch (error) {
        listError = (error as Error).message;
      }
    }
    const gone = this.goneSince.get(id) ?? new Map<string, number>();
    this.goneSince.set(id, gone);
    if (leftovers && leftovers.serviceAccounts.length === 0 && !gone.has(name)) gone.set(name, this.now());
    const why = passError ? ` (the reconciler reported: ${passError})` : '';

    await attempt(rbStep, async () => {
      if (!leftovers) throw new Error(listError ?? 'no list');
      return leftovers.roleBindings.length === 0
        ? ['proven', 'no RoleBinding labelled for the person, or binding their identity, remains']
        : ['unproven', `${leftovers.roleBindings.length} remain: ${leftovers.roleBindings.join(', ')}${why}`];
    });
    await attempt(saStep, async () => {
      if (!leftovers) throw new Error(listError ?? 'no list');
      return leftovers.serviceAccounts.length === 0
        ? ['proven', 'the person’s ServiceAccount in kubevisa-visas is gone: every token it was issued is void']
        : ['unproven', `still present: kubevisa-visas/${leftovers.serviceAccounts.join(', ')}${why}`];
    });
    await attempt(permissionsStep, async () => {
      const namespaces = new Set(['default']);
      for (const visa of await this.store.listVisas({ personId: person.id, cluster: name })) {
        for (const namespace of visa.namespaces) namespaces.add(namespace);
      }
      const findings: string[] = [];
      for (const namespace of [...namespaces].sort()) {
        const review = await probe.rulesAs(person.email, namespace);
        if (review.incomplete) {
          findings.push(
            `${namespace}: the review is incomplete (${review.evaluationError ?? 'an authorizer could not list rules'})`,
          );
        }
        for (const rule of rulesBeyondDiscovery(review)) findings.push(`${namespace}: ${rule}`);
      }
      return findings.length === 0
        ? ['proven', `nothing beyond discovery in ${[...namespaces].sort().join(', ')}`]
        : ['unproven', `the identity can still: ${findings.join('; ')}`];
    });
    await attempt(tokenStep, async () => {
      const state = this.canaries.get(id)?.get(name) ?? {
        kind: 'unknown' as const,
        why: 'the server restarted since the offboarding began',
      };
      if (state.kind === 'none') {
        return [
          'proven',
          'the person had no ServiceAccount here when offboarding began (listed live), so no token of theirs exists',
        ];
      }
      const goneAt = gone.get(name);
      if (goneAt === undefined) {
        return leftovers
          ? ['pending', 'waiting for the ServiceAccount to be deleted']
          : ['unproven', `cannot tell whether the ServiceAccount is gone: ${listError ?? 'no list'}`];
      }
      if (state.kind === 'unknown') {
        const waited = this.now() - goneAt;
        if (waited >= INFERRED_TOKEN_WAIT_MS) {
          return [
            'proven',
            `inferred, no canary token (${state.why}): the ServiceAccount has been gone for ${Math.round(waited / 1000)} s, longer than kube-apiserver's 10 s token cache`,
          ];
        }
        return ['pending', `no canary token (${state.why}); waiting out kube-apiserver's 10 s token cache`];
      }
      if (await probe.tokenRefused(state.canary.token)) {
        this.canaries.get(id)?.delete(name);
        return [
          'proven',
          `kube-apiserver answered 401 to a token it had accepted before the offboarding, ${((this.now() - started) / 1000).toFixed(1)} s after the offboarding was committed`,
        ];
      }
      const waited = this.now() - goneAt;
      return waited < this.options.config.tokenProofTimeoutMs
        ? [
            'pending',
            `kube-apiserver still accepts the old token ${(waited / 1000).toFixed(1)} s after the ServiceAccount was deleted (its cache holds it up to 10 s)`,
          ]
        : [
            'unproven',
            `kube-apiserver still ACCEPTS a token issued before offboarding ${Math.round(waited / 1000)} s after the ServiceAccount was deleted`,
          ];
    });
  }

  /** The ids of the steps of this offboarding that a round ever recorded as unproven (from the audit trail). */
  private async stepsOnceUnproven(record: OffboardingRecord): Promise<Set<string>> {
    const events = await this.store.listAudit({
      action: 'offboarding.step-unproven',
      personId: record.personId,
      limit: 10_000,
    });
    return new Set(events.filter((e) => e.details.offboardingId === record.id).map((e) => String(e.details.step)));
  }

  private async auditTransitions(
    tx: StoreTx,
    record: OffboardingRecord,
    before: Receipt,
    after: Receipt,
  ): Promise<void> {
    const at = this.now();
    for (const step of after.steps) {
      const previous = before.steps.find((s) => s.id === step.id);
      if (previous?.status === step.status) continue;
      if (step.status === 'pending') continue;
      await tx.appendAudit({
        at,
        actor: 'system',
        action: step.status === 'proven' ? 'offboarding.step-proven' : 'offboarding.step-unproven',
        personId: record.personId,
        ...(step.cluster !== undefined ? { cluster: step.cluster } : {}),
        outcome: step.status === 'proven' ? 'ok' : 'error',
        details: { offboardingId: record.id, step: step.id, detail: step.detail, proof: step.proof },
      });
    }
    if (after.status !== before.status && after.status !== 'proving') {
      await tx.appendAudit({
        at,
        actor: 'system',
        action: after.status === 'proven' ? 'offboarding.proven' : 'offboarding.unproven',
        personId: record.personId,
        outcome: after.status === 'proven' ? 'ok' : 'error',
        details: { offboardingId: record.id, summary: after.summary },
      });
    }
  }
}

/** The stored receipt. It is only ever written by this module, from a Receipt. */
function receiptOf(record: OffboardingRecord): Receipt {
  return record.receipt as unknown as Receipt;
}

function toJson(receipt: Receipt): JsonObject {
  return JSON.parse(JSON.stringify(receipt)) as JsonObject;
}

/** `exec on prod/payments, watch on prod/payments`. */
function describeStreams(streams: readonly OpenStreamInfo[]): string {
  return streams
    .map((s) => `${s.kind} on ${s.cluster}${s.namespace === undefined ? '' : `/${s.namespace}`}`)
    .join(', ');
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
