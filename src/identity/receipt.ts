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
  /** For a step that counts what it ended (`streams-closed`: the open streams closed), that number. */
  count?: number;
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

/**
 * What happened to the person, in the words of what was done: a SCIM DELETE deprovisions, `active=false`
 * suspends, an admin offboards. `trigger.by` names the actor (`scim:okta`, `sync:dev-idp`, an admin's email).
 */
export function whatHappened(receipt: Pick<Receipt, 'person' | 'trigger'>): string {
  const { email, status } = receipt.person;
  const { kind, by } = receipt.trigger;
  const source = by.replace(/^(scim|sync):/, '');
  switch (kind) {
    case 'admin':
      return `${email} offboarded by ${by}`;
    case 'scim':
      return status === 'suspended'
        ? `${email} suspended (deactivated at ${source})`
        : `${email} deprovisioned (deleted at ${source})`;
    case 'sync':
      return status === 'suspended'
        ? `${email} suspended (disabled in ${source})`
        : `${email} deprovisioned (no longer listed by ${source})`;
    case 'refresh':
      return `${email} suspended (the identity provider refused to renew a login)`;
  }
}

export function summarize(receipt: Omit<Receipt, 'summary'>): string {
  const proven = receipt.steps.filter((s) => s.status === 'proven').length;
  const total = receipt.steps.length;
  // An admin's reason is news; an identity provider's only repeats what whatHappened says.
  const why = receipt.trigger.kind === 'admin' ? `: ${receipt.trigger.reason}` : '';
  const head = `${whatHappened(receipt)}${why}.`;
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
