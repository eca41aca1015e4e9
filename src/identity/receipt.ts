/**
 * The offboarding receipt: one entry per step, each with the live call that proves it, and a readable summary.
 * Pure values and functions; offboarding.ts fills it in as proofs come back.
 *
 * `step`, `ok` and `detail` keep the shape `kubevisa offboard` already prints; `status`, `proof`, `provenAt` and
 * `attempts` say how each step was proven (or why not yet).
 */
import type { PersonStatus } from '../domain/model.ts';
import type { OffboardingStatus } from '../store/identity-records.ts';

export type StepStatus = 'pending' | 'proven' | 'unproven';

export interface ReceiptStep {
  /** Stable key: `person-status`, `cluster/prod/serviceaccount`, … */
  id: string;
  /** What was done, for people. */
  step: string;
  cluster?: string;
  status: StepStatus;
  /** status === 'proven' (what the CLI's RESULT column reads). */
  ok: boolean;
  /** What the last live call showed. */
  detail: string;
  /** Which live call proves (or is meant to prove) the step. */
  proof: string;
  /** RFC 3339, when the step was proven. */
  provenAt?: string;
  /** How many times the proof was attempted. */
  attempts: number;
}

export type TriggerKind = 'admin' | 'scim' | 'sync' | 'refresh';

export interface Receipt {
  id: string;
  person: { id: string; email: string; status: PersonStatus };
  trigger: { kind: TriggerKind; by: string; reason: string };
  status: OffboardingStatus;
  /** RFC 3339: when the offboarding was committed (sessions and visas ended). */
  startedAt: string;
  /** RFC 3339: when the last step was proven. */
  completedAt?: string;
  steps: ReceiptStep[];
  /** Milliseconds from the commit until each milestone, for the record and the benchmark. */
  timings: { [milestone: string]: number };
  summary: string;
}

export function pendingStep(id: string, step: string, proof: string, cluster?: string): ReceiptStep {
  return {
    id,
    step,
    ...(cluster !== undefined ? { cluster } : {}),
    status: 'pending',
    ok: false,
    detail: 'not proven yet',
    proof,
    attempts: 0,
  };
}

/** The receipt's overall status from its steps: proving while any is pending, unproven when any failed. */
export function overallStatus(steps: readonly ReceiptStep[]): OffboardingStatus {
  if (steps.some((s) => s.status === 'unproven')) return 'unproven';
  if (steps.some((s) => s.status === 'pending')) return 'proving';
  return 'proven';
}

const TRIGGERS: Record<TriggerKind, string> = {
  admin: 'offboarded by an admin',
  scim: 'deactivated by the identity provider (SCIM)',
  sync: 'no longer active in the directory (sync)',
  refresh: 'the identity provider refused to refresh a login',
};

export function summarize(receipt: Omit<Receipt, 'summary'>): string {
  const proven = receipt.steps.filter((s) => s.status === 'proven').length;
  const total = receipt.steps.length;
  const head = `${receipt.person.email} ${receipt.person.status}: ${TRIGGERS[receipt.trigger.kind]} (${receipt.trigger.by}).`;
  if (receipt.status === 'proven') {
    const took = receipt.timings.complete !== undefined ? ` in ${(receipt.timings.complete / 1000).toFixed(1)} s` : '';
    return `${head} All ${total} steps proven by live calls${took}.`;
  }
  const open = receipt.steps.filter((s) => s.status !== 'proven');
  const listed = open.map((s) => `${s.step} (${s.status}: ${s.detail})`).join('; ');
  if (receipt.status === 'unproven') {
    return `${head} ${proven} of ${total} steps proven; NOT proven yet: ${listed}. kubevisa retries them and alerts until they are.`;
  }
  return `${head} ${proven} of ${total} steps proven so far; still proving: ${open.map((s) => s.step).join('; ')}.`;
}
