/**
 * Several kubevisa servers on one store: what one of them announces on its event bus after a commit that ends or
 * changes access (visas ended or changed, sessions ended, a person deprovisioned, clusters to converge) is sent to
 * the others through the store's change feed, and what the others sent is announced on this bus, so the gateway
 * here cuts streams and drops cached tokens for a revoke, logout or offboarding handled anywhere.
 *
 * Only ids travel; the receiver re-reads each visa and person from the store and announces only what the store says
 * has ended, so a forged or stale notification cannot end anyone's access. Delivery is best effort: the gateway's
 * periodic re-read of the store (gateway/wire.ts) bounds what a lost notification can keep alive, and a broken feed
 * connection is reported as `changes-missed` so caches are re-read at once.
 */
import type { AppEvents } from '../app/events.ts';
import type { Person, Visa } from '../domain/model.ts';
import type { AccessChange, ChangeFeed, Store } from '../store/store.ts';

/** Visa states that no longer grant anything: the only ones a received `visas-ended` may announce. */
const ENDED_STATES: ReadonlySet<Visa['state']> = new Set(['revoked', 'expired', 'cancelled', 'denied']);
/** Ids read from the store per query (SQLite limits bound parameters). */
const READ_CHUNK = 500;
/**
 * Received changes read from the store at once, and how many may wait: anyone able to NOTIFY on the database could
 * send thousands a second. Past the bound nothing more is read one by one: `changes-missed` makes this process
 * re-read its caches from the store once instead, which ends whatever ended among what was dropped.
 */
const MAX_READING = 4;
const MAX_WAITING = 256;
/** Most visa ids one merged `visas-ended` may hold (see the receiver): more start another change. */
const MAX_MERGED_IDS = 10_000;

export interface FanoutOptions {
  events: AppEvents;
  feed: ChangeFeed;
  store: Pick<Store, 'listVisas' | 'getPerson' | 'getSession'>;
  /**
   * Ignore what other processes send (fault injection: proves that the periodic re-check alone ends access when
   * every notification is lost). Default false.
   */
  deaf?: boolean;
  /** Told what failed (a publish, a re-read); default stderr. Messages carry ids, never secrets. */
  onError?: (message: string) => void;
  /** The clock sessions' ends are judged by, epoch ms (the database's, src/leader/). Default Date.now. */
  now?: () => number;
}

export interface Fanout {
  /** Sends what is still queued, then stops (the feed is closed by its owner). */
  stop(): Promise<void>;
}

export function startFanout(options: FanoutOptions): Fanout {
  const { events, feed, store } = options;
  const report = options.onError ?? ((message: string) => process.stderr.write(`kubevisa: ${message}\n`));
  /** True while announcing what another process sent: it must not be sent back out. */
  let relaying = false;
  let queued: AccessChange[] = [];
  let flushing: Promise<void> | undefined;
  /** Ended visas were sent during this turn of the event loop. */
  let endedThisTurn = false;
  /** Ended visas being sent (stop waits for them). */
  const sendingEnds = new Set<Promise<void>>();

  // ---- out: ended visas at once, the rest batched per turn of the event loop ----

  const publish = async (item: AccessChange) => {
    try {
      await feed.publish(item);
    } catch (error) {
      report(
        `telling the other kubevisa processes of '${item.kind}' failed; they see it at their next re-check: ${messageOf(error)}`,
      );
    }
  };
  const send = (change: AccessChange) => {
    if (relaying) return;
    if (change.kind === 'visas-ended') {
      // Each announcement of ended visas is already one commit's batch: it leaves before this turn's other work
      // (this process's own gateway cutting thousands of streams) rather than after it.
      endedThisTurn = true;
      const sending = publish(change).finally(() => sendingEnds.delete(sending));
      sendingEnds.add(sending);
    } else queued.push(change);
    flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const batch = coalesce(queued);
      // Ended visas make every receiver re-read the store anyway: a `visas-changed` beside them would only race
      // them (and cut the same streams under a vaguer reason).
      const ends = endedThisTurn;
      queued = [];
      flushing = undefined;
      endedThisTurn = false;
      for (const item of batch) {
        if (ends && item.kind === 'visas-changed') continue;
        await publish(item);
      }
    });
  };
  const onEnded = (visas: Visa[], reason: string) =>
    send({ kind: 'visas-ended', visaIds: visas.map((v) => v.id), reason });
  const onChanged = () => send({ kind: 'visas-changed' });
  const onSession = (sessionId: string) => send({ kind: 'sessions-ended', sessionIds: [sessionId] });
  const onPerson = (person: Person, reason: string) =>
    send({ kind: 'person-deprovisioned', personId: person.id, reason });
  const onClusters = (clusters: string[], visaIds?: string[]) =>
    send({ kind: 'clusters-changed', clusters, ...(visaIds !== undefined ? { visaIds } : {}) });
  const onRegistry = () => send({ kind: 'cluster-registry-changed' });
  events.on('visas-ended', onEnded);
  events.on('visas-changed', onChanged);
  events.on('session-ended', onSession);
  events.on('person-deprovisioned', onPerson);
  events.on('clusters-changed', onClusters);
  events.on('cluster-registry-changed', onRegistry);

  // ---- in: what the others sent, re-read from the store and announced here ----

  const announce = (emit: () => void) => {
    relaying = true;
    try {
      emit();
    } finally {
      relaying = false;
    }
  };
  const receive = async (change: AccessChange): Promise<void> => {
    switch (change.kind) {
      case 'visas-ended': {
        const ended: Visa[] = [];
        for (let i = 0; i < change.visaIds.length; i += READ_CHUNK) {
          const visas = await store.listVisas({ ids: change.visaIds.slice(i, i + READ_CHUNK) });
          ended.push(...visas.filter((visa) => ENDED_STATES.has(visa.state)));
        }
        if (ended.length > 0) announce(() => events.emit('visas-ended', ended, change.reason));
        return;
      }
      case 'visas-changed':
        announce(() => events.emit('visas-changed'));
        return;
      case 'sessions-ended': {
        // Only sessions the store shows ended: a forged notification must not sign consoles out.
        const ended: string[] = [];
        const now = (options.now ?? Date.now)();
        for (const id of change.sessionIds) {
          const session = await store.getSession(id);
          if (session !== undefined && (session.revokedAt !== undefined || session.expiresAt <= now)) ended.push(id);
        }
        if (ended.length > 0) announce(() => ended.forEach((id) => events.emit('session-ended', id)));
        return;
      }
      case 'person-deprovisioned': {
        const person = await store.getPerson(change.personId);
        if (person && person.status !== 'active')
          announce(() => events.emit('person-deprovisioned', person, change.reason));
        return;
      }
      case 'clusters-changed':
        // The ids name what to converge; the reconciler reads those visas from the store, whoever sent them.
        announce(() =>
          change.visaIds === undefined
            ? events.emit('clusters-changed', change.clusters)
            : events.emit('clusters-changed', change.clusters, change.visaIds),
        );
        return;
      case 'cluster-registry-changed':
        announce(() => events.emit('cluster-registry-changed'));
        return;
    }
  };
  const waiting: AccessChange[] = [];
  /** The `visas-ended` of each reason that is waiting, not yet being read: later parts join it. */
  const mergeable = new Map<string, Extract<AccessChange, { kind: 'visas-ended' }>>();
  let drainScheduled = false;
  let reading = 0;
  /** Set when a change was dropped (too many waiting), until the queue has drained. */
  let overflowed = false;
  const drain = () => {
    drainScheduled = false;
    while (reading < MAX_READING && waiting.length > 0) {
      const change = waiting.shift()!;
      if (change.kind === 'visas-ended' && mergeable.get(change.reason) === change) mergeable.delete(change.reason);
      reading++;
      receive(change)
        .catch((error: unknown) =>
          // The periodic re-check (gateway/wire.ts) still picks the change up from the store.
          report(`reading '${change.kind}' sent by another kubevisa process failed: ${messageOf(error)}`),
        )
        .finally(() => {
          reading--;
          drain();
        });
    }
    if (overflowed && waiting.length === 0 && reading === 0) overflowed = false;
  };
  feed.subscribe({
    change(change) {
      if (options.deaf === true) return;
      if (waiting.length >= MAX_WAITING) {
        if (!overflowed) {
          overflowed = true;
          report(
            `more than ${MAX_WAITING} changes from other kubevisa processes are waiting: re-reading from the store`,
          );
          announce(() => events.emit('changes-missed'));
        }
        return;
      }
      if (change.kind !== 'visas-ended') {
        waiting.push(change);
        drain();
        return;
      }
      // A sender's thousand ended visas come as a few notifications, read from the socket together: merged (until
      // the next turn), they are read in one go and this process's streams are cut in one pass, not in one pass per
      // part, each part's read waiting behind the previous part's cutting.
      const merging = mergeable.get(change.reason);
      if (merging !== undefined && merging.visaIds.length + change.visaIds.length <= MAX_MERGED_IDS) {
        merging.visaIds.push(...change.visaIds);
        return;
      }
      const own = { ...change, visaIds: [...change.visaIds] };
      mergeable.set(own.reason, own);
      waiting.push(own);
      if (!drainScheduled) {
        drainScheduled = true;
        setImmediate(drain);
      }
    },
    missed() {
      if (options.deaf === true) return;
      announce(() => events.emit('changes-missed'));
    },
  });

  return {
    async stop() {
      events.off('visas-ended', onEnded);
      events.off('visas-changed', onChanged);
      events.off('session-ended', onSession);
      events.off('person-deprovisioned', onPerson);
      events.off('clusters-changed', onClusters);
      events.off('cluster-registry-changed', onRegistry);
      await flushing;
      await Promise.all(sendingEnds);
    },
  };
}

/**
 * One change per kind where changes merge (ended visas per reason, sessions, clusters; `visas-changed` once), in
 * the order kinds first appeared; each deprovisioning on its own.
 */
export function coalesce(changes: readonly AccessChange[]): AccessChange[] {
  const out: AccessChange[] = [];
  const endedByReason = new Map<string, Extract<AccessChange, { kind: 'visas-ended' }>>();
  let sessions: Extract<AccessChange, { kind: 'sessions-ended' }> | undefined;
  let clusters: Extract<AccessChange, { kind: 'clusters-changed' }> | undefined;
  let changed = false;
  let registry = false;
  for (const change of changes) {
    switch (change.kind) {
      case 'visas-ended': {
        const known = endedByReason.get(change.reason);
        if (known) known.visaIds.push(...change.visaIds);
        else {
          const fresh = { ...change, visaIds: [...change.visaIds] };
          endedByReason.set(change.reason, fresh);
          out.push(fresh);
        }
        break;
      }
      case 'sessions-ended':
        if (sessions) sessions.sessionIds.push(...change.sessionIds);
        else out.push((sessions = { ...change, sessionIds: [...change.sessionIds] }));
        break;
      case 'clusters-changed':
        if (clusters) {
          clusters.clusters.push(...change.clusters.filter((c) => !clusters!.clusters.includes(c)));
          // Named visas only while every merged change named its own: one that did not asks for full passes.
          if (clusters.visaIds !== undefined && change.visaIds !== undefined)
            clusters.visaIds = [...new Set([...clusters.visaIds, ...change.visaIds])];
          else delete clusters.visaIds;
        } else
          out.push(
            (clusters = {
              ...change,
              clusters: [...new Set(change.clusters)],
              ...(change.visaIds !== undefined ? { visaIds: [...new Set(change.visaIds)] } : {}),
            }),
          );
        break;
      case 'visas-changed':
        if (!changed) out.push(change);
        changed = true;
        break;
      case 'cluster-registry-changed':
        if (!registry) out.push(change);
        registry = true;
        break;
      case 'person-deprovisioned':
        out.push(change);
        break;
    }
  }
  return out;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
