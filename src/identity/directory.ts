/**
 * Directory sync, for identity providers without SCIM: a small provider interface (list the users with their
 * status and groups) and a loop that hands each snapshot to the identity lifecycle, which offboards the people
 * the directory no longer lists as active and re-applies group mappings.
 *
 * Implemented: `okta`, `entra` (Microsoft Graph), `google` (Admin SDK Directory) and `keycloak` (Admin REST) in
 * directories/, each reading its API's documented REST shapes, and `dev-idp` (src/dev/idp-directory.ts) for the demo
 * and tests. docs/identity-providers/ has one page per provider.
 */
import { KubevisaError } from '../domain/errors.ts';

export interface DirectoryUser {
  /** The directory's own id for the user. */
  id: string;
  /** Lower-cased login email: what links the entry to a kubevisa person. */
  email: string;
  /** false when the account is disabled, suspended or deprovisioned at the IdP. */
  active: boolean;
  /**
   * true when the IdP lists the account as deprovisioned or deleted (Okta `DEPROVISIONED`, Entra's and Google's
   * deleted users still in their recycle bins), not merely suspended: the person is deprovisioned, as if missing.
   */
  deprovisioned?: boolean;
  /** Group names, as group mappings name them. */
  groups: string[];
}

export interface IdentityDirectory {
  /** `dev-idp`, `okta`, …: named in audit events. */
  readonly name: string;
  /**
   * Every user the directory knows, active or not. Must throw (never return a partial list) when any page
   * fails: a missing user is offboarded.
   */
  listUsers(signal: AbortSignal): Promise<DirectoryUser[]>;
  /**
   * A cheap proof that the directory can be read with the configured credential (a token, the first page of
   * users), run at server start so a mistake stops the start instead of every sync failing quietly. Without it,
   * the start-up check reads the whole list.
   */
  check?(signal: AbortSignal): Promise<void>;
}

/** The directory could not be read; nothing is offboarded on a failed read. */
export class DirectoryUnavailable extends KubevisaError {
  static override code = 'ERR_DIRECTORY_UNAVAILABLE';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { status: 503, ...options });
  }
}

export interface SyncReport {
  startedAt: number;
  finishedAt: number;
  users: number;
  offboarded: string[];
  reactivated: string[];
  /** Set when the sync refused to act (too many offboardings) or could not read the directory. */
  refused?: string;
}

export interface DirectorySyncOptions {
  directory: IdentityDirectory;
  /** How often the directory is read, in ms. */
  intervalMs: number;
  /** Applies one snapshot (the identity lifecycle). */
  apply: (users: DirectoryUser[], directory: string) => Promise<SyncReport>;
  /** Failures nobody waits for (an unreadable directory). */
  report: (message: string, error: unknown) => void;
  /** Each read gives up after this long, in ms (default 30 s). */
  timeoutMs?: number;
  /** Whether the periodic reads run in this replica (default always; the leader's only among replicas). */
  runsHere?: () => boolean;
}

export class DirectorySync {
  private readonly options: DirectorySyncOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SyncReport | undefined> | undefined;
  private stopped = false;
  private last: SyncReport | undefined;

  constructor(options: DirectorySyncOptions) {
    this.options = options;
  }

  start(): void {
    const runsHere = this.options.runsHere ?? (() => true);
    const periodic = () => (runsHere() ? this.runOnce() : Promise.resolve(undefined));
    const tick = () => {
      this.timer = setTimeout(() => {
        void periodic().finally(() => {
          if (!this.stopped) tick();
        });
      }, this.options.intervalMs);
      this.timer.unref();
    };
    void periodic().finally(() => {
      if (!this.stopped) tick();
    });
  }

  /** Reads the directory and applies it now (one run at a time; a second call joins the running one). */
  runOnce(): Promise<SyncReport | undefined> {
    if (this.running) return this.running;
    this.running = this.read()
      .then((report) => {
        this.last = report;
        return report;
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  lastReport(): SyncReport | undefined {
    return this.last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async read(): Promise<SyncReport | undefined> {
    const startedAt = Date.now();
    let users: DirectoryUser[];
    try {
      users = await this.options.directory.listUsers(AbortSignal.timeout(this.options.timeoutMs ?? 30_000));
    } catch (error) {
      this.options.report(`directory '${this.options.directory.name}' could not be read; nobody was offboarded`, error);
      return {
        startedAt,
        finishedAt: Date.now(),
        users: 0,
        offboarded: [],
        reactivated: [],
        refused: (error as Error).message,
      };
    }
    try {
      return await this.options.apply(users, this.options.directory.name);
    } catch (error) {
      this.options.report(`applying directory '${this.options.directory.name}' failed`, error);
      return undefined;
    }
  }
}
