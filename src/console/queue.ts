/**
 * The approval queue as an approver needs it: each pending request the caller may see, with the policy's verdict
 * on approving it now (the application layer's dry run of `approve`) and the profile linter's findings on what the
 * profile grants. An installed profile passed the linter only because its risks were declared, so its findings are
 * listed with each declaration's justification: the approver reads what the holder could do, and why it was allowed.
 */
import type { Caller } from '../app/caller.ts';
import { visaView } from '../app/views.ts';
import { lintRules } from '../rbac/lint.ts';
import type { ServerContext } from '../server/context.ts';

export interface QueueFinding {
  risk: string;
  message: string;
  /** The profile's justification for accepting the risk; absent when the risk was never declared. */
  justification?: string;
}

export async function approvalQueue(context: ServerContext, caller: Caller) {
  const reviewed = await context.visas.reviewRequests(caller);
  const profiles = new Map((await context.store.listProfiles()).map((p) => [p.name, p]));
  const findingsOf = new Map<string, QueueFinding[]>();
  for (const name of new Set(reviewed.map((r) => r.visa.profile))) {
    const profile = profiles.get(name);
    if (!profile) continue;
    const declared = new Map(profile.declaredRisks.map((d) => [d.risk, d.justification]));
    findingsOf.set(
      name,
      lintRules(profile.rules, []).map((f) => ({
        risk: f.risk,
        message: f.message.replace(/; declare risk .*$/, ''),
        ...(declared.has(f.risk) ? { justification: declared.get(f.risk)! } : {}),
      })),
    );
  }
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    items: reviewed.map(({ visa, verdict }) => ({
      ...visaView(visa),
      verdict:
        verdict.kind === 'grants'
          ? { ...verdict, notBefore: iso(verdict.notBefore), notAfter: iso(verdict.notAfter) }
          : verdict,
      findings: findingsOf.get(visa.profile) ?? [],
    })),
  };
}
