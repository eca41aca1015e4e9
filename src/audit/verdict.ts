/**
 * The outcome of verifying an audit trail, the same whether the server checked its database or an auditor
 * checked an exported file: where the chain first breaks (if it does), and what each signed checkpoint says about
 * the trail (a checkpoint beyond the trail's end, or naming another event at its seq, means the trail was cut
 * short or rolled back to an older copy).
 */
import type { KeyObject } from 'node:crypto';
import { GENESIS_HASH, type ChainFault } from '../store/audit-chain.ts';
import { checkpointKeyId, checkpointSignatureValid, type CheckpointRecord } from './checkpoints.ts';

/** Chain faults, plus what only a file can have: a line that is not a record, or a last record cut short. */
export type TrailFaultKind = ChainFault | 'malformed' | 'torn';

export interface TrailFault {
  /** 0-based position of the record in the trail (or file). */
  index: number;
  /** 1-based line number, for a file. */
  line?: number;
  seq?: number;
  kind: TrailFaultKind;
  message: string;
}

/**
 * - `matches`: the trail holds exactly the event the checkpoint signed.
 * - `beyond-trail`: the checkpoint covers more events than the trail has: cut short, or rolled back.
 * - `differs`: the trail holds another event at the checkpoint's seq: history was rewritten.
 * - `bad-signature`: not signed by the given key (forged or altered).
 * - `unknown-key`: signed by another key than the given one; cannot be checked.
 * - `not-authenticated`: no public key was given, so the signature was not checked (the rest was).
 * - `before-trail`: covers a seq before the records given (an evidence pack's window); cannot be checked.
 * - `after-fault`: covers a seq past where the chain breaks; cannot be checked.
 */
export type CheckpointStatus =
  | 'matches'
  | 'beyond-trail'
  | 'differs'
  | 'bad-signature'
  | 'unknown-key'
  | 'not-authenticated'
  | 'before-trail'
  | 'after-fault';

/** Statuses that make a verification fail. */
const FAILING: ReadonlySet<CheckpointStatus> = new Set(['beyond-trail', 'differs', 'bad-signature', 'unknown-key']);

export interface CheckpointFinding {
  checkpoint: CheckpointRecord;
  status: CheckpointStatus;
  message: string;
}

export interface TrailVerification {
  ok: boolean;
  /** Records checked (up to the fault, if any), redacted ones included. */
  records: number;
  redacted: number;
  /** Seq of the first record, and the last one that verified. */
  first?: number;
  head?: { seq: number; hash: string };
  fault?: TrailFault;
  checkpoints: CheckpointFinding[];
  /** Set when a checkpoint proves the trail was cut short or rolled back. */
  rollback?: string;
  /** One paragraph for people. */
  summary: string;
}

export interface JudgeInput {
  checkpoints: readonly CheckpointRecord[];
  /** The key they must be signed with; without it signatures are not checked. */
  publicKey?: KeyObject;
  /** Seq of the first record checked (1 for a whole trail) and the last one that verified (0: none). */
  firstSeq: number;
  headSeq: number;
  /** Whether the chain broke after `headSeq` (then later checkpoints cannot be checked). */
  broken: boolean;
  /** The hash of the verified record at `seq`, for seq in [firstSeq - 1, headSeq] (firstSeq - 1: the anchor). */
  hashAt: (seq: number) => string | undefined;
}

function when(at: number): string {
  return new Date(at).toISOString();
}

/** What each checkpoint says about the trail. */
export function judgeCheckpoints(input: JudgeInput): CheckpointFinding[] {
  const expectedKeyId = input.publicKey === undefined ? undefined : checkpointKeyId(input.publicKey);
  return input.checkpoints.map((checkpoint) => {
    const name = `checkpoint${checkpoint.id === undefined ? '' : ` ${checkpoint.id}`} (seq ${checkpoint.seq}, signed ${when(checkpoint.at)})`;
    const finding = (status: CheckpointStatus, message: string): CheckpointFinding => ({
      checkpoint,
      status,
      message: `${name}: ${message}`,
    });
    if (input.publicKey !== undefined) {
      if (checkpoint.keyId !== expectedKeyId) {
        return finding('unknown-key', `signed by key ${checkpoint.keyId}, not by the given key ${expectedKeyId}`);
      }
      if (!checkpointSignatureValid(checkpoint, input.publicKey)) {
        return finding('bad-signature', 'the signature does not verify: the checkpoint was forged or altered');
      }
    }
    const unauthenticated = input.publicKey === undefined ? ' (signature not checked: no public key given)' : '';
    if (checkpoint.seq > input.headSeq) {
      if (input.broken) return finding('after-fault', 'covers events past where the chain breaks; not checked');
      return finding(
        'beyond-trail',
        `covers the trail up to seq ${checkpoint.seq}, but the trail ends at seq ${input.headSeq}: events ` +
          `${input.headSeq + 1}..${checkpoint.seq} are missing, so the trail was cut short or rolled back to an ` +
          `older copy${unauthenticated}`,
      );
    }
    if (checkpoint.seq < input.firstSeq - 1) {
      return finding('before-trail', `covers seq ${checkpoint.seq}, before the records given; not checked`);
    }
    const actual = checkpoint.seq === 0 ? GENESIS_HASH : input.hashAt(checkpoint.seq);
    if (actual !== checkpoint.hash) {
      return finding(
        'differs',
        `the trail holds another event at seq ${checkpoint.seq} than the one this checkpoint signed: history ` +
          `from there on was rewritten${unauthenticated}`,
      );
    }
    if (input.publicKey === undefined) {
      return finding('not-authenticated', 'matches the trail, but its signature was not checked (no public key)');
    }
    return finding('matches', 'matches the trail');
  });
}

/** Assembles the verdict and its summary. */
export function trailVerification(parts: {
  records: number;
  redacted: number;
  first?: number;
  head?: { seq: number; hash: string };
  fault?: TrailFault;
  checkpoints: CheckpointFinding[];
}): TrailVerification {
  const failing = parts.checkpoints.filter((finding) => FAILING.has(finding.status));
  const rollback = parts.checkpoints.find(
    (finding) => finding.status === 'beyond-trail' || finding.status === 'differs',
  );
  const ok = parts.fault === undefined && failing.length === 0;
  const lines: string[] = [];
  const range =
    parts.first === undefined || parts.head === undefined ? 'no records' : `seq ${parts.first}..${parts.head.seq}`;
  if (parts.fault !== undefined) {
    lines.push(`FAILED: ${parts.fault.message}`);
    lines.push(`The ${parts.records} record(s) before it (${range}) verify.`);
  } else {
    lines.push(
      `${parts.records} record(s) verify (${range}${parts.redacted > 0 ? `, ${parts.redacted} redacted` : ''}).`,
    );
  }
  for (const finding of failing) lines.push(`FAILED: ${finding.message}`);
  const matched = parts.checkpoints.filter((finding) => finding.status === 'matches').length;
  if (parts.checkpoints.length === 0) {
    lines.push('No checkpoint was checked: a trail cut short or rolled back cannot be told from a complete one.');
  } else {
    lines.push(`${matched} of ${parts.checkpoints.length} checkpoint(s) signed and matching.`);
  }
  return {
    ok,
    records: parts.records,
    redacted: parts.redacted,
    ...(parts.first === undefined ? {} : { first: parts.first }),
    ...(parts.head === undefined ? {} : { head: parts.head }),
    ...(parts.fault === undefined ? {} : { fault: parts.fault }),
    checkpoints: parts.checkpoints,
    ...(rollback === undefined ? {} : { rollback: rollback.message }),
    summary: lines.join('\n'),
  };
}
