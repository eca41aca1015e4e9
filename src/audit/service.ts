/**
 * The audit capability's operations on the store: signing checkpoints, verifying the trail in the database
 * against them, streaming exports (whole, filtered, or redacted to one engagement for an evidence pack), and the
 * start-up check that the database was not rolled back to an older copy.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { GENESIS_HASH, auditContentHash, linkAuditHash, verifyChain, type AuditLink } from '../store/audit-chain.ts';
import type { AuditCheckpoint, AuditFilter, AuditRecord, Store } from '../store/store.ts';
import { checkpointSignatureValid, signCheckpoint, type CheckpointKey, type CheckpointRecord } from './checkpoints.ts';
import { AuditTrailRolledBack } from './errors.ts';
import { exportLine, redactedLine } from './jsonl.ts';
import { readLatestCheckpoint, writeLatestCheckpoint } from './latest-file.ts';
import { judgeCheckpoints, trailVerification, type TrailFault, type TrailVerification } from './verdict.ts';

/** Events read per page when verifying or exporting (each page is one read; the event loop turns between them). */
const PAGE = 5000;
/** Events looked at past a fault to tell a reorder from an insertion. */
const DIAGNOSIS_LOOKAHEAD = 20_000;

export interface AuditServiceOptions {
  store: Store;
  key: CheckpointKey;
  /** The file that also keeps the newest checkpoint (latest-file.ts). */
  latestCheckpointFile: string;
  /** Clock in epoch milliseconds; default Date.now. */
  now?: () => number;
  /** Told about every failed verification (the monitoring capability alerts on it). */
  onVerificationFailed?: (failure: { at: number; message: string; seq?: number }) => void;
}

/** Which records of a window an evidence pack shows in full; the others are redacted. */
export interface EvidenceScope {
  engagementId: string;
  visaIds: ReadonlySet<string>;
  /** The engagement's contractors: their events that name no engagement (logins, offboarding) are shown. */
  personIds: ReadonlySet<string>;
}

export interface ServerVerification extends TrailVerification {
  /** When the verification ran, and how long it took (ms). */
  at: number;
  durationMs: number;
}

/** How many times a checkpoint is tried again after other servers' checkpoints got in first. */
const CHECKPOINT_ATTEMPTS = 10;

export class AuditService {
  readonly key: CheckpointKey;
  private readonly store: Store;
  private readonly options: AuditServiceOptions;
  private readonly now: () => number;

  constructor(options: AuditServiceOptions) {
    this.options = options;
    this.store = options.store;
    this.key = options.key;
    this.now = options.now ?? Date.now;
  }

  /**
   * Signs the trail's head now and records the checkpoint: in the database (in the same commit as the events
   * it covers, so it never names an event that was not kept) and then in the checkpoint file.
   */
  async createCheckpoint(): Promise<AuditCheckpoint> {
    return this.afterOtherCheckpoints(() => this.writeCheckpoint());
  }

  private async writeCheckpoint(): Promise<AuditCheckpoint> {
    const checkpoint = await this.store.transaction(async (tx) => {
      const head = (await tx.getAuditHead()) ?? { seq: 0, hash: GENESIS_HASH };
      return tx.appendAuditCheckpoint(signCheckpoint(this.key, head, this.now()));
    });
    await writeLatestCheckpoint(this.options.latestCheckpointFile, checkpoint);
    return checkpoint;
  }

  /** A checkpoint if the trail grew since the newest one (what start-up, stop and the periodic timer call). */
  async checkpointIfMoved(): Promise<AuditCheckpoint | undefined> {
    return this.afterOtherCheckpoints(async () => {
      const [latest] = await this.store.listAuditCheckpoints({ newestFirst: true, limit: 1 });
      const head = await this.store.getAuditHead();
      if (latest !== undefined && latest.seq === (head?.seq ?? 0)) return undefined;
      return this.writeCheckpoint();
    });
  }

  /**
   * Runs `write` again when it failed because another server wrote a checkpoint meanwhile. Checkpoints are one
   * sequence, and the database refuses one that does not follow the last (replicas on one store all checkpoint as
   * they start and stop, and anyone may through the API): the loser reads the trail again rather than fail. Any
   * other failure, or one that keeps coming back, is thrown.
   */
  private async afterOtherCheckpoints<T>(write: () => Promise<T>): Promise<T> {
    const newestId = async () => (await this.store.listAuditCheckpoints({ newestFirst: true, limit: 1 }))[0]?.id ?? 0;
    for (let attempt = 1; ; attempt++) {
      const before = await newestId();
      try {
        return await write();
      } catch (error) {
        if (attempt >= CHECKPOINT_ATTEMPTS || (await newestId()) === before) throw error;
      }
    }
  }

  /** Every checkpoint in the database, oldest first. */
  async listCheckpoints(filter: { throughSeq?: number } = {}): Promise<AuditCheckpoint[]> {
    const all: AuditCheckpoint[] = [];
    for (;;) {
      const page = await this.store.listAuditCheckpoints({ ...filter, limit: 10_000 });
      // Checkpoint ids run 1, 2, 3… so a page after the first is found by position.
      const fresh = page.filter((checkpoint) => checkpoint.id > (all.at(-1)?.id ?? 0));
      all.push(...fresh);
      if (page.length < 10_000 || fresh.length === 0) return all;
    }
  }

  /**
   * Refuses to go on when the database holds less of the trail than the checkpoint file says it had, or another
   * event where the file's checkpoint points (see latest-file.ts).
   */
  async assertNotRolledBack(): Promise<void> {
    const latest = await readLatestCheckpoint(this.options.latestCheckpointFile);
    if (latest === undefined) return;
    const file = this.options.latestCheckpointFile;
    if (!checkpointSignatureValid(latest, this.key.publicKey)) {
      throw new AuditTrailRolledBack(
        `the audit checkpoint in ${file} is not signed by this server's checkpoint key ${this.key.keyId}: the key ` +
          'or the file was replaced. Find out which before starting; if the key was replaced on purpose, move the ' +
          'file aside.',
        { details: { file } },
      );
    }
    const head = (await this.store.getAuditHead()) ?? { seq: 0, hash: GENESIS_HASH };
    const remedy =
      `If the database was restored from a backup on purpose, verify what was lost ('kubevisa audit verify'), ` +
      `then move ${file} aside and start again; the gap stays visible to anyone holding a later checkpoint.`;
    if (latest.seq > head.seq) {
      throw new AuditTrailRolledBack(
        `the audit trail in the database ends at seq ${head.seq}, but the checkpoint signed at ` +
          `${new Date(latest.at).toISOString()} covers it up to seq ${latest.seq}: the database was rolled back ` +
          `to an older copy, losing events ${head.seq + 1}..${latest.seq} (and possibly revocations). ${remedy}`,
        { details: { headSeq: head.seq, checkpointSeq: latest.seq } },
      );
    }
    const actual = latest.seq === 0 ? GENESIS_HASH : (await this.store.getAuditEvent(latest.seq))?.hash;
    if (actual !== latest.hash) {
      throw new AuditTrailRolledBack(
        `the audit trail in the database holds another event at seq ${latest.seq} than the checkpoint signed at ` +
          `${new Date(latest.at).toISOString()}: the trail was rewritten or replaced by another copy. ${remedy}`,
        { details: { checkpointSeq: latest.seq } },
      );
    }
  }

  /**
   * Verifies the whole trail in the database: every event's hash and link, and every checkpoint (the
   * database's, the checkpoint file's, and `extraCheckpoints` someone kept) against it. The event loop turns
   * between pages, so the server keeps serving meanwhile.
   */
  async verifyTrail(extraCheckpoints: readonly CheckpointRecord[] = []): Promise<ServerVerification> {
    const started = this.now();
    const startedMs = performance.now();
    const checkpoints = await this.checkpointsToJudge(extraCheckpoints);
    const wanted = new Set(checkpoints.map((checkpoint) => checkpoint.seq));
    const head = await this.store.getAuditHead();
    const hashes = new Map<number, string>([[0, GENESIS_HASH]]);
    // The last two links accepted (and the one before them): where a diagnosis window starts.
    const recent: AuditLink[] = [];
    let beforeRecent: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH };
    let previous: { seq: number; hash: string } = beforeRecent;
    let records = 0;
    let fault: DiagnosedFault | undefined;
    while (head !== undefined && previous.seq < head.seq && fault === undefined) {
      const page = await this.store.listAuditRecords({ afterSeq: previous.seq, throughSeq: head.seq, limit: PAGE });
      if (page.length === 0) break;
      for (let i = 0; i < page.length; i++) {
        const link = linkOf(page[i] as AuditRecord);
        const sound =
          linkAuditHash(link.seq, link.prevHash, link.contentHash) === link.hash &&
          link.seq === previous.seq + 1 &&
          link.prevHash === previous.hash;
        if (!sound) {
          fault = await this.diagnose(records, recent, beforeRecent, page.slice(i).map(linkOf), head.seq);
          break;
        }
        if (wanted.has(link.seq)) hashes.set(link.seq, link.hash);
        recent.push(link);
        if (recent.length > 2) beforeRecent = recent.shift() as AuditLink;
        previous = link;
        records++;
      }
      await nextTurn();
    }
    const verified = fault === undefined ? records : fault.index;
    const lastGood = verified === 0 ? undefined : (fault?.head ?? previous);
    const findings = judgeCheckpoints({
      checkpoints,
      publicKey: this.key.publicKey,
      firstSeq: 1,
      headSeq: lastGood?.seq ?? 0,
      broken: fault !== undefined,
      hashAt: (seq) => (seq <= (lastGood?.seq ?? 0) ? hashes.get(seq) : undefined),
    });
    const verdict = trailVerification({
      records: verified,
      redacted: 0,
      ...(verified > 0 ? { first: 1 } : {}),
      ...(lastGood === undefined ? {} : { head: lastGood }),
      ...(fault === undefined ? {} : { fault: withoutHead(fault) }),
      checkpoints: findings,
    });
    if (!verdict.ok) {
      this.options.onVerificationFailed?.({
        at: this.now(),
        message: verdict.summary,
        ...(verdict.fault?.seq === undefined ? {} : { seq: verdict.fault.seq }),
      });
    }
    return { ...verdict, at: started, durationMs: Math.round(performance.now() - startedMs) };
  }

  private async checkpointsToJudge(extra: readonly CheckpointRecord[]): Promise<CheckpointRecord[]> {
    const all: CheckpointRecord[] = [...(await this.listCheckpoints())];
    const latest = await readLatestCheckpoint(this.options.latestCheckpointFile);
    const seen = new Set(all.map((checkpoint) => checkpoint.signature));
    for (const checkpoint of [...(latest === undefined ? [] : [latest]), ...extra]) {
      if (!seen.has(checkpoint.signature)) {
        all.push(checkpoint);
        seen.add(checkpoint.signature);
      }
    }
    return all;
  }

  /**
   * Names the first fault exactly: verifyChain over the two links accepted last, the rest of the page and a
   * look-ahead, so a forged event just before the visible break, a reorder and an insertion are told apart.
   */
  private async diagnose(
    faultIndex: number,
    recent: AuditLink[],
    beforeRecent: { seq: number; hash: string },
    rest: AuditLink[],
    headSeq: number,
  ): Promise<DiagnosedFault> {
    const window: AuditLink[] = [...recent, ...rest];
    let after = window.at(-1)?.seq ?? 0;
    while (window.length < recent.length + DIAGNOSIS_LOOKAHEAD && after < headSeq) {
      const page = await this.store.listAuditRecords({ afterSeq: after, throughSeq: headSeq, limit: PAGE });
      if (page.length === 0) break;
      window.push(...page.map(linkOf));
      after = window.at(-1)?.seq ?? after;
    }
    const verdict = verifyChain(window, { previous: beforeRecent });
    const offset = faultIndex - recent.length;
    if (verdict.ok) {
      return { index: faultIndex, kind: 'broken-link', message: `event ${faultIndex + 1}: the chain breaks here` };
    }
    const index = offset + verdict.index;
    const previousLink = verdict.index > 0 ? window[verdict.index - 1] : undefined;
    return {
      index,
      seq: verdict.seq,
      kind: verdict.fault,
      message: `event at position ${index + 1} (seq ${verdict.seq}): ${verdict.detail}`,
      ...(previousLink === undefined
        ? index > 0
          ? { head: beforeRecent }
          : {}
        : { head: { seq: previousLink.seq, hash: previousLink.hash } }),
    };
  }

  /**
   * The export of every event matching `filter`, in seq order, as JSON lines (jsonl.ts), up to the head at the
   * time the export started (so it has a defined end). With `scope`, records outside it are redacted.
   */
  async *exportLines(filter: AuditFilter, scope?: EvidenceScope): AsyncGenerator<string> {
    const head = await this.store.getAuditHead();
    const through = Math.min(filter.throughSeq ?? Number.MAX_SAFE_INTEGER, head?.seq ?? 0);
    let after = filter.afterSeq ?? 0;
    while (after < through) {
      const page = await this.store.listAuditRecords({
        ...filter,
        afterSeq: after,
        throughSeq: through,
        newestFirst: false,
        limit: PAGE,
      });
      if (page.length === 0) return;
      let text = '';
      for (const record of page) {
        text += scope === undefined || inScope(record, scope) ? exportLine(record) : redactedLine(record);
      }
      yield text;
      after = page.at(-1)?.seq ?? through;
    }
  }
}

/** A fault with the last event that verified before it (a diagnosis may move the fault earlier). */
type DiagnosedFault = TrailFault & { head?: { seq: number; hash: string } };

function withoutHead(fault: DiagnosedFault): TrailFault {
  const { head: _head, ...rest } = fault;
  return rest;
}

function linkOf(record: AuditRecord): AuditLink {
  return {
    seq: record.seq,
    prevHash: record.prevHash,
    hash: record.hash,
    contentHash: auditContentHash(record.contentText),
  };
}

function inScope(record: AuditRecord, scope: EvidenceScope): boolean {
  if (record.engagementId !== undefined) return record.engagementId === scope.engagementId;
  if (record.visaId !== undefined && scope.visaIds.has(record.visaId)) return true;
  return record.personId !== undefined && scope.personIds.has(record.personId);
}
