/**
 * Leader election over the store's lease (store.ts `LeaderLeases`): one reconciler at a time among the replicas
 * sharing a database. The lease's expiry is judged by the database's clock alone; this process judges its own
 * tenure with its monotonic clock, counted from when it *sent* each successful claim, so a term is believed over
 * here no later than the database ends it, whatever the wall clock says. It renews well inside the lease
 * (default every 2 s of an 8 s lease) and steps down at once when a renewal fails or comes back too late.
 *
 * A process also shows the store it is alive (`holdPresence`), and followers ask every `watchEveryMs` whether the
 * lease can be taken (`takeable`): a leader that died (kill -9, a crash) is replaced within that interval rather
 * than when its lease runs out, while one that is only paused or cut off keeps its term until the lease ends.
 *
 * Believing it leads is not enough to write safely (the process can pause between the check and the write): the
 * epoch of each term goes into every cluster write, and kube-apiserver refuses writes of an older term once a
 * newer leader raised the fence (src/cluster/fencing.ts).
 */
import { performance } from 'node:perf_hooks';
import type { LeaderLeases, LeaseTerm, Presence } from '../store/store.ts';

export type Role = 'leader' | 'follower';

export interface LeaderStatus {
  role: Role;
  /** The epoch of the term this process leads, or the latest term it saw another hold (0: none seen yet). */
  epoch: number;
  /** Who holds the lease, as last seen ('' when unknown). */
  holder: string;
  /** This process's holder id. */
  self: string;
}

/** What the rest of the server sees of the election: whether this replica leads, and the term. */
export interface Leadership {
  /** True while this replica's term surely lasts: run leader-only work only then. */
  isLeader(): boolean;
  status(): LeaderStatus;
}

export interface LeaderElectionOptions {
  leases: LeaderLeases;
  /** Unique per process (host, pid and a random part). */
  holder: string;
  /** The lease's name (default `reconciler`). */
  name?: string;
  /** How long a term lasts after each claim, by the database's clock, in ms (default 8000). */
  leaseMs?: number;
  /** How often the holder renews and a follower tries to take over, in ms (default 2000; < leaseMs / 2). */
  renewEveryMs?: number;
  /**
   * How often a follower asks whether the lease can be taken (its holder gone or its term over), in ms (default a
   * quarter of renewEveryMs, at least 100): how long a dead leader's work waits for the next one.
   */
  watchEveryMs?: number;
  /** Monotonic clock in ms (default `performance.now`); never the wall clock. */
  monotonicNow?: () => number;
  /** This process's wall clock, epoch ms (default `Date.now`); only its offset from the database's is used. */
  wallNow?: () => number;
  /** A term of this process began: raise the fence, then start the leader-only work. */
  onElected: (epoch: number) => void;
  /** This process's term `epoch` ended (`why` says how): stop the leader-only work at once. */
  onDeposed: (epoch: number, why: string) => void;
  /** A claim failed (the store is unreachable…). */
  onError?: (error: Error) => void;
}

export const DEFAULT_LEASE_MS = 8000;
/**
 * A clock reading whose round trip took longer than this (ms) is used only when no better one was had: its error is
 * up to half its round trip (a slow answer, a wait for a pool connection), which would move every deadline this
 * replica judges by that much.
 */
export const MAX_CLOCK_SAMPLE_RTT_MS = 500;
export const DEFAULT_RENEW_EVERY_MS = 2000;

export class LeaderElection implements Leadership {
  private readonly options: LeaderElectionOptions;
  private readonly name: string;
  private readonly leaseMs: number;
  private readonly renewEveryMs: number;
  private readonly watchEveryMs: number;
  private readonly now: () => number;
  private role: Role = 'follower';
  /** The latest term seen, this process's or another's (for status). */
  private epoch = 0;
  /** The epoch of the latest term this process itself held: what its cluster writes are stamped with. */
  private termEpoch = 0;
  private holder = '';
  /** Monotonic instant until which this process's term surely lasts (leader only). */
  private validUntil = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  /** This process's presence in the store, while the store sees it (undefined: not shown, or lost). */
  private presence: Presence | undefined;
  private showingPresence: Promise<void> | undefined;
  private presenceFailing = false;
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private ticking: Promise<void> | undefined;
  /** The database's clock minus this process's, in ms, from the best recent reading (half its round trip of error). */
  private clockOffsetMs = 0;
  /** The round trip of the reading `clockOffsetMs` came from (Infinity: none yet). */
  private clockSampleRttMs = Infinity;

  constructor(options: LeaderElectionOptions) {
    this.options = options;
    this.name = options.name ?? 'reconciler';
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.renewEveryMs = options.renewEveryMs ?? DEFAULT_RENEW_EVERY_MS;
    this.watchEveryMs = options.watchEveryMs ?? Math.max(100, this.renewEveryMs / 4);
    this.now = options.monotonicNow ?? (() => performance.now());
    if (!(this.watchEveryMs > 0))
      throw new RangeError(`leader lease: watchEveryMs (${this.watchEveryMs}) must be positive`);
    if (!(this.leaseMs > 0) || !(this.renewEveryMs > 0) || this.renewEveryMs * 2 > this.leaseMs) {
      throw new RangeError(
        `leader lease: renewEveryMs (${this.renewEveryMs}) must be positive and at most half of leaseMs (${this.leaseMs})`,
      );
    }
  }

  /** Makes the first claim (so the role is known when this resolves), then keeps claiming. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.showPresence();
    await this.tick();
  }

  /**
   * Shows the store this process is alive, if the store can tell (and it does not already). A failure is reported
   * and tried again at the next claim: meanwhile this process's terms can only be taken once they expire.
   */
  private showPresence(): Promise<void> {
    const leases = this.options.leases;
    if (leases.holdPresence === undefined || this.presence !== undefined || this.stopped) return Promise.resolve();
    this.showingPresence ??= (async () => {
      try {
        const presence = await leases.holdPresence!({
          holder: this.options.holder,
          onLost: (why) => {
            if (this.presence !== presence) return;
            this.presence = undefined;
            // Another replica may take the term from now on: stop the leader-only work rather than race it. The
            // next claim shows presence again, and resumes the term if no one took it.
            this.stepDown(`${why}: another replica may take over`);
          },
        });
        this.presenceFailing = false;
        if (this.stopped) await presence.close();
        else this.presence = presence;
      } catch (error) {
        // Said once per run of failures: behind a pooler that hides session locks it fails at every claim.
        if (!this.presenceFailing) {
          this.options.onError?.(
            new Error(`cannot show the store this replica is alive (retrying): ${(error as Error).message}`),
          );
        }
        this.presenceFailing = true;
      } finally {
        this.showingPresence = undefined;
      }
    })();
    return this.showingPresence;
  }

  /**
   * Measures the database clock's offset from this process's without claiming anything, so that `databaseNow` is
   * right before the first claim (a server decides visa windows and token times before it joins the election).
   */
  async syncClock(): Promise<void> {
    const wallNow = this.options.wallNow ?? Date.now;
    const sentAt = this.now();
    const wallSentAt = wallNow();
    const databaseNow = await this.options.leases.readClock();
    this.takeClockSample(databaseNow, wallSentAt, wallNow(), this.now() - sentAt);
  }

  /** Keeps a reading of the database's clock if its round trip was short, or shorter than the one in use. */
  private takeClockSample(databaseNow: number, wallSentAt: number, wallAnsweredAt: number, rttMs: number): void {
    if (rttMs > MAX_CLOCK_SAMPLE_RTT_MS && rttMs >= this.clockSampleRttMs) return;
    this.clockOffsetMs = databaseNow - (wallSentAt + wallAnsweredAt) / 2;
    this.clockSampleRttMs = rttMs;
  }

  /** Stops claiming; a leader ends its term in the store so another replica takes over without waiting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    clearTimeout(this.watchTimer);
    // A claim the database never answers must not hold the server's stop for longer than a term.
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([this.ticking, new Promise((resolve) => (waited = setTimeout(resolve, this.leaseMs)))]);
    clearTimeout(waited);
    if (this.role === 'leader') {
      const epoch = this.epoch;
      this.stepDown('the server is stopping');
      await this.options.leases.release({ name: this.name, holder: this.options.holder, epoch }).catch(() => undefined);
    }
    await this.showingPresence;
    const presence = this.presence;
    this.presence = undefined;
    await presence?.close();
  }

  /**
   * Ends this process's term at once (kube-apiserver refused one of its writes as fenced: a newer leader exists even
   * if no claim has said so yet). It follows until a claim elects it again.
   */
  stepDownNow(why: string): void {
    this.stepDown(why);
  }

  /** True while this process's term surely lasts, by its monotonic clock. */
  isLeader(): boolean {
    return this.role === 'leader' && (this.options.leases.exclusive || this.now() < this.validUntil);
  }

  /**
   * The database's clock, epoch ms: this process's wall clock corrected by the offset measured at every claim.
   * Deadlines (expiry, activation) are judged by it, so a replica whose clock is off expires nothing late or early.
   */
  databaseNow(): number {
    // Whole milliseconds: instants are integers everywhere (the store refuses fractions).
    return Math.round((this.options.wallNow ?? Date.now)() + this.clockOffsetMs);
  }

  /**
   * The epoch this process's cluster writes carry: that of the latest term it held itself (0 if it never led). Never
   * the epoch of another replica's term: a deposed leader's late writes must carry the term they were decided in,
   * so that kube-apiserver refuses them once the fence has risen past it.
   */
  currentEpoch(): number {
    return this.termEpoch;
  }

  status(): LeaderStatus {
    return {
      role: this.isLeader() ? 'leader' : 'follower',
      epoch: this.epoch,
      holder: this.holder,
      self: this.options.holder,
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.tickTimer = setTimeout(() => void this.tick(), this.renewEveryMs);
    this.tickTimer.unref();
    if (this.role !== 'leader' && this.options.leases.takeable !== undefined) this.scheduleWatch();
  }

  private scheduleWatch(): void {
    clearTimeout(this.watchTimer);
    this.watchTimer = setTimeout(() => void this.watch(), this.watchEveryMs);
    this.watchTimer.unref();
  }

  /** True while this process follows with no claim under way: when a watch may run or act. */
  private idleFollower(): boolean {
    return !this.stopped && this.ticking === undefined && this.role !== 'leader';
  }

  /** A follower's cheap look at the lease between claims: claims at once when it can be taken. */
  private async watch(): Promise<void> {
    if (!this.idleFollower()) return;
    let takeable = false;
    try {
      takeable = await this.options.leases.takeable!({ name: this.name, holder: this.options.holder });
    } catch {
      // The store is unreachable: the next claim says so (onError), no need to say it at every watch.
    }
    if (!this.idleFollower()) return;
    if (!takeable) {
      this.scheduleWatch();
      return;
    }
    clearTimeout(this.tickTimer);
    await this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.watchTimer);
    // A presence lost (a database restart, a dropped connection) is shown again before a follower's claim, so that a
    // term it wins records it; a leader does not wait for it, so that a slow connection never delays a renewal.
    const run = (async () => {
      if (this.role === 'leader') void this.showPresence();
      else await this.showPresence();
      await this.claim();
    })();
    this.ticking = run;
    await run;
    this.ticking = undefined;
    this.schedule();
  }

  private async claim(): Promise<void> {
    const leading = this.role === 'leader';
    const sentAt = this.now();
    const wallNow = this.options.wallNow ?? Date.now;
    const wallSentAt = wallNow();
    let term: LeaseTerm;
    try {
      term = await this.options.leases.claim({
        name: this.name,
        holder: this.options.holder,
        durationMs: this.leaseMs,
        ...(leading ? { epoch: this.epoch } : {}),
      });
    } catch (error) {
      this.options.onError?.(new Error(`the lease could not be claimed or renewed: ${(error as Error).message}`));
      if (this.role === 'leader') this.stepDown(`renewing the lease failed: ${(error as Error).message}`);
      return;
    }
    const answeredAt = this.now();
    this.takeClockSample(term.databaseNow, wallSentAt, wallNow(), answeredAt - sentAt);
    this.holder = term.holder;
    const mine = term.holder === this.options.holder;
    if (this.role === 'leader') {
      if (mine && term.epoch === this.epoch && (this.options.leases.exclusive || answeredAt < this.validUntil)) {
        this.extend(sentAt, term);
        return;
      }
      this.stepDown(
        !mine || term.epoch !== this.epoch
          ? `the lease passed to ${term.holder} (epoch ${term.epoch})`
          : 'the renewal came back after the term had ended here',
      );
      return;
    }
    this.epoch = Math.max(this.epoch, term.epoch);
    // A term the store says is this process's (new, or one it stepped down from early while the store kept it):
    // leading it is safe for as long as the store's answer allows, since no one else held the lease meanwhile.
    if (!mine || this.stopped || !(term.remainingMs > 0)) return;
    this.role = 'leader';
    this.epoch = term.epoch;
    this.termEpoch = term.epoch;
    this.extend(sentAt, term);
    this.options.onElected(term.epoch);
  }

  /** The term lasts, here, until the claim's send time plus its length (the database started counting later). */
  private extend(sentAt: number, term: LeaseTerm): void {
    if (this.options.leases.exclusive) return;
    // A small margin for the two clocks' rates; the database's answer can only shorten the term, never lengthen it.
    const margin = Math.min(500, this.leaseMs / 10);
    this.validUntil = sentAt + Math.min(this.leaseMs, term.remainingMs) - margin;
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () => {
        if (this.role === 'leader' && this.now() >= this.validUntil) this.stepDown('no renewal within the lease');
      },
      Math.max(0, this.validUntil - this.now()),
    );
    this.watchdog.unref();
  }

  private stepDown(why: string): void {
    if (this.role !== 'leader') return;
    clearTimeout(this.watchdog);
    this.role = 'follower';
    this.validUntil = 0;
    this.options.onDeposed(this.epoch, why);
  }
}
