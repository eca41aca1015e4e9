/**
 * Direct-mode credentials: a TokenRequest token for the person's ServiceAccount, so kubectl talks to
 * kube-apiserver without the gateway. That path has no per-request audit, no session recording and no stream
 * cutting (Kubernetes never re-authorizes an open exec or port-forward), so it is policy, decided here once:
 *
 * - the cluster's configuration must allow it (`clusters[].directMode`, default off), and
 * - every visa the person holds on the cluster during the token's life must have a profile that allows it
 *   (`directMode: allowed`, and no recording, no pods/exec, pods/attach or pods/portforward). A token carries
 *   the ServiceAccount, and with it every RoleBinding of every visa the person holds there: one gateway-only
 *   visa among them rules the token out.
 *
 * Lifetime. A token must not outlive the visas that allow it, the person's kubevisa session, or 10 minutes.
 * kube-apiserver refuses a TokenRequest shorter than 600 s, so the token always asks for exactly 600 s, and when
 * the visas or the session end sooner (with a margin for the request and clock differences) no token is minted:
 * the person is told to use the gateway, which stops at the exact instant. The alternative, a token that
 * outlives its visa, would be harmless for RBAC once the RoleBindings are gone, but it would break the promise
 * that a credential never outlives the access it stands for, and it would still authenticate as the person.
 *
 * Later visas. A token carries the ServiceAccount by name, so a binding added after it was issued would reach it
 * too. Before the token is handed out, the ServiceAccount records until when its direct tokens may live
 * (`kubevisa.io/direct-tokens-until`); the reconciler never adds a binding direct mode must not carry to a
 * ServiceAccount whose tokens may still live, but makes it again first (a new uid ends every old token), and it does
 * the same when the person's session ends.
 *
 * When the person holds no visa there any more, the refusal carries the words of the most recent one that ended
 * (who revoked it, when and why), so `kubevisa credential --direct` can tell kubectl's user what happened.
 */
import { Forbidden, NotFound, Conflict, KubevisaError } from '../domain/errors.ts';
import type { Instant, Profile, Visa } from '../domain/model.ts';
import { serviceAccountName } from '../domain/names.ts';
import { formatDuration, formatInstant } from '../domain/time.ts';
import { effectiveState, isGranting } from '../domain/visa.ts';
import { describeBlockers, directModeBlockers } from '../rbac/direct-mode.ts';
import type { NewAuditEvent } from '../store/store.ts';
import type { Caller } from './caller.ts';

/** The lifetime every direct token asks for: TokenRequest's minimum, and the 10-minute ceiling. */
export const DIRECT_TOKEN_SECONDS = 600;
/**
 * Time kept between the token's expiry and the end of the visas or session that allow it: the TokenRequest's
 * round trip and the difference between kubevisa's and kube-apiserver's clocks (milliseconds).
 */
export const DIRECT_TOKEN_MARGIN_MS = 30_000;

/** Direct mode is not allowed here (cluster setting, a visa's profile, or too little time left). */
export class DirectModeDenied extends Forbidden {
  static override code = 'ERR_DIRECT_MODE_DENIED';
}
/** The person's access to the cluster ended (revoked or expired); the message says how and by whom. */
export class VisaEnded extends Forbidden {
  static override code = 'ERR_VISA_ENDED';
}
/** The person holds no visa on the cluster and never held one that ended. */
export class NoActiveVisa extends Forbidden {
  static override code = 'ERR_NO_ACTIVE_VISA';
}

/** The store reads the use case needs, and one durable audit append. */
export interface CredentialStore {
  /** Every visa of the person on the cluster, in any state. */
  listVisas(filter: { personId: string; cluster: string }): Promise<Visa[]>;
  getProfile(name: string): Promise<Profile | undefined>;
  getSession(id: string): Promise<{ expiresAt: Instant; revokedAt?: Instant } | undefined>;
  /** Appends one event in its own transaction; resolves once it is durable. */
  appendAudit(event: NewAuditEvent): Promise<void>;
}

/** One cluster, as far as direct tokens go. */
export interface DirectCluster {
  /** The cluster's `directMode` setting. */
  allowsDirectMode: boolean;
  /**
   * The ServiceAccount of that name in `kubevisa-visas`: the person id it was made for and its uid; undefined when
   * there is none.
   */
  serviceAccount(name: string): Promise<{ holder: string | undefined; uid: string } | undefined>;
  /**
   * Records on the ServiceAccount with that uid that its direct tokens may live until `until` (a later instant
   * already recorded is kept).
   * @throws ObjectMissing (code ERR_OBJECT_MISSING) when it is gone or was made again meanwhile.
   */
  recordDirectTokens(name: string, uid: string, until: Instant): Promise<void>;
  /** A TokenRequest token; `expirationTimestamp` as kube-apiserver answered it. */
  mintToken(
    serviceAccountName: string,
    expirationSeconds: number,
  ): Promise<{ token: string; expirationTimestamp: Instant }>;
}

/** The reconciler, as far as making a person's ServiceAccount goes. */
export interface Settle {
  /** Resolves when no reconcile pass of the cluster is running. */
  whenSettled(cluster: string): Promise<void>;
  /** Runs a pass of the cluster now (after the running one, if any). */
  reconcileNow(cluster: string): Promise<unknown>;
}

export interface CredentialServiceOptions {
  store: CredentialStore;
  /** The cluster of that name; undefined when kubevisa manages none. */
  cluster(name: string): DirectCluster | undefined;
  reconciler: Settle;
  /** Default `Date.now`. */
  now?: () => Instant;
}

export interface DirectCredential {
  token: string;
  expirationTimestamp: Instant;
}

export class CredentialService {
  readonly #options: CredentialServiceOptions;
  readonly #now: () => Instant;

  constructor(options: CredentialServiceOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * A direct token for the caller on `clusterName`, expiring no later than the visas that allow it, the caller's
   * session, and 10 minutes. Every refusal is audited (`credential.refused`), every token too (`credential.issued`).
   * @throws NotFound for an unknown cluster; VisaEnded / NoActiveVisa when no visa grants access now;
   *   DirectModeDenied when the cluster, a visa's profile or the time left rules direct mode out; Conflict when the
   *   person's ServiceAccount is not ready yet.
   */
  async issueDirect(caller: Caller, clusterName: string): Promise<DirectCredential> {
    const cluster = this.#options.cluster(clusterName);
    if (!cluster) {
      throw new NotFound(
        `this kubevisa server manages no cluster '${clusterName}'; 'kubevisa visas' shows your visas and their clusters`,
      );
    }
    const now = this.#now();
    try {
      // Refusals are decided before the cluster is touched, and again once the token's record is in place.
      await this.#decide(caller, clusterName, cluster, now);
      const { token, deadline, allowing } = await this.#mint(caller, clusterName, cluster);
      await this.#options.store.appendAudit({
        ...this.#event(caller, clusterName, now),
        action: 'credential.issued',
        outcome: 'ok',
        details: {
          mode: 'direct',
          expirationSeconds: DIRECT_TOKEN_SECONDS,
          expirationTimestamp: formatInstant(token.expirationTimestamp),
          notLaterThan: formatInstant(deadline),
          visas: allowing.map((visa) => visa.id),
        },
      });
      return token;
    } catch (error) {
      if (error instanceof DirectModeDenied || error instanceof VisaEnded || error instanceof NoActiveVisa) {
        await this.#options.store.appendAudit({
          ...this.#event(caller, clusterName, now),
          action: 'credential.refused',
          outcome: 'refused',
          reason: error.message,
          details: { mode: 'direct', code: error.code, ...jsonDetails(error.details) },
        });
      }
      throw error;
    }
  }

  /** Checks the policy; returns the instant the token must not outlive and the visas that allow it. */
  async #decide(
    caller: Caller,
    clusterName: string,
    cluster: DirectCluster,
    now: Instant,
  ): Promise<{ deadline: Instant; allowing: Visa[] }> {
    const visas = await this.#options.store.listVisas({ personId: caller.actor.personId, cluster: clusterName });
    const granting = visas.filter((visa) => isGranting(visa, now));
    if (granting.length === 0) throw noAccessError(caller.actor.email, clusterName, visas, now);

    const useGateway = `Use the gateway instead: 'kubevisa kubeconfig --cluster ${clusterName}' (without --direct), then run kubectl again.`;
    if (!cluster.allowsDirectMode) {
      throw new DirectModeDenied(
        `cluster '${clusterName}' does not allow direct mode (its 'directMode' setting in the kubevisa server configuration is off): direct tokens bypass the gateway's per-request audit, session recording and stream cutting. ${useGateway}`,
        { details: { reason: 'cluster', cluster: clusterName } },
      );
    }

    // Every visa that grants at any moment of the token's life lends it its RoleBindings.
    const horizon = now + DIRECT_TOKEN_SECONDS * 1000 + DIRECT_TOKEN_MARGIN_MS;
    const covering = visas.filter(
      (visa) =>
        (visa.state === 'approved' || visa.state === 'active') && visa.notBefore < horizon && visa.notAfter > now,
    );
    const profiles = new Map<string, Profile | undefined>();
    for (const visa of covering) {
      if (!profiles.has(visa.profile)) profiles.set(visa.profile, await this.#options.store.getProfile(visa.profile));
      const refusal = profileRefusal(visa, profiles.get(visa.profile), now);
      if (refusal !== undefined) {
        throw new DirectModeDenied(
          `${refusal.text}. A direct token carries every visa you hold on cluster '${clusterName}', so none of them may be gateway-only. ${useGateway}`,
          { details: { reason: refusal.reason, cluster: clusterName, visa: visa.id, profile: visa.profile } },
        );
      }
    }

    const session = caller.sessionId === undefined ? undefined : await this.#options.store.getSession(caller.sessionId);
    if (session === undefined || session.revokedAt !== undefined) {
      throw new DirectModeDenied(
        `a direct token needs a live kubevisa login session: run 'kubevisa login'. ${useGateway}`,
        {
          details: { reason: 'no-session', cluster: clusterName },
        },
      );
    }
    const visasEnd = Math.max(...granting.map((visa) => visa.notAfter));
    const deadline = Math.min(visasEnd, session.expiresAt);
    const needed = DIRECT_TOKEN_SECONDS * 1000 + DIRECT_TOKEN_MARGIN_MS;
    if (deadline - now < needed) {
      const what =
        session.expiresAt < visasEnd
          ? `your kubevisa session ends at ${formatInstant(session.expiresAt)} (in ${formatDuration((session.expiresAt - now) / 1000)}; 'kubevisa login' starts a new one)`
          : `your access to cluster '${clusterName}' ends at ${formatInstant(visasEnd)} (in ${formatDuration((visasEnd - now) / 1000)})`;
      throw new DirectModeDenied(
        `${what}, and a direct token lives ${DIRECT_TOKEN_SECONDS / 60} minutes (kube-apiserver issues none shorter) but must not outlive it. ${useGateway} The gateway stops at the exact end.`,
        {
          details: {
            reason: session.expiresAt < visasEnd ? 'session-ends-soon' : 'visa-ends-soon',
            cluster: clusterName,
            endsAt: formatInstant(deadline),
          },
        },
      );
    }
    return { deadline, allowing: granting };
  }

  async #mint(
    caller: Caller,
    clusterName: string,
    cluster: DirectCluster,
  ): Promise<{ token: DirectCredential; deadline: Instant; allowing: Visa[] }> {
    const saName = serviceAccountName(caller.actor.email);
    await this.#options.reconciler.whenSettled(clusterName);
    // The token is only minted for a ServiceAccount made for this person. One approved a moment ago may not exist
    // yet, and after an email changed hands one of this name may still be the previous holder's until the
    // reconciler re-makes it: converge once, then refuse rather than hand out someone else's identity.
    const owned = async () => {
      const account = await cluster.serviceAccount(saName);
      return account?.holder === caller.actor.personId ? account : undefined;
    };
    let account = await owned();
    if (account === undefined) {
      await this.#options.reconciler.reconcileNow(clusterName);
      account = await owned();
      if (account === undefined) throw notReady(clusterName);
    }
    // Recorded before the token exists: from here on the reconciler makes the ServiceAccount again before it binds
    // anything a direct token must not carry. A pass that read the ServiceAccount before the record may be binding a
    // visa approved meanwhile, so the policy is decided again once no such pass runs.
    const record = async (until: Instant) => {
      try {
        await cluster.recordDirectTokens(saName, account.uid, until);
      } catch (error) {
        if (error instanceof KubevisaError && error.code === 'ERR_OBJECT_MISSING') throw notReady(clusterName);
        throw error;
      }
    };
    await record(this.#now() + DIRECT_TOKEN_SECONDS * 1000 + DIRECT_TOKEN_MARGIN_MS);
    await this.#options.reconciler.whenSettled(clusterName);
    const { deadline, allowing } = await this.#decide(caller, clusterName, cluster, this.#now());
    const issued = await cluster.mintToken(saName, DIRECT_TOKEN_SECONDS);
    if (issued.expirationTimestamp > deadline) {
      // Only a clock far ahead on the cluster's side gets here; the token is withheld, never handed out.
      throw new DirectModeDenied(
        `cluster '${clusterName}' issued a token expiring at ${formatInstant(issued.expirationTimestamp)}, after your access or session ends at ${formatInstant(deadline)} (are the clocks of kubevisa and the cluster apart?); it was withheld. Use the gateway instead: 'kubevisa kubeconfig --cluster ${clusterName}' (without --direct).`,
        { details: { reason: 'token-outlives-access', cluster: clusterName, endsAt: formatInstant(deadline) } },
      );
    }
    // Covers the token's real expiry (the wait above may have been long), and proves it was minted for the
    // ServiceAccount that carries the record: one made again in between never got it, and its token is withheld.
    await record(issued.expirationTimestamp + DIRECT_TOKEN_MARGIN_MS);
    return { token: issued, deadline, allowing };
  }

  #event(caller: Caller, cluster: string, at: Instant) {
    return {
      at,
      actor: caller.actor.email,
      ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
      cluster,
      personId: caller.actor.personId,
      ...(caller.source ? { source: caller.source } : {}),
    };
  }
}

function notReady(clusterName: string): Conflict {
  return new Conflict(
    `your ServiceAccount on cluster '${clusterName}' is not ready yet; retry in a few seconds (kubectl does on its own)`,
  );
}

/** Why a visa's profile rules direct mode out, or undefined when it allows it. */
function profileRefusal(
  visa: Visa,
  profile: Profile | undefined,
  now: Instant,
): { reason: string; text: string } | undefined {
  const which = `visa ${visa.id} (profile '${visa.profile}'${visa.notBefore > now ? `, from ${formatInstant(visa.notBefore)}` : ''})`;
  if (profile === undefined) {
    return { reason: 'profile-unknown', text: `${which} names a profile this server does not know` };
  }
  const blockers = describeBlockers(directModeBlockers(profile));
  if (blockers !== undefined) {
    return {
      reason: 'profile-gateway-only',
      text: `${which} cannot be used in direct mode: ${blockers}, which only the gateway records and cuts when access ends`,
    };
  }
  if (profile.directMode !== 'allowed') {
    return {
      reason: 'profile-denied',
      text: `${which} does not allow direct mode (the profile ${profile.directMode === 'denied' ? "sets directMode: 'denied'" : "does not set directMode: 'allowed'"})`,
    };
  }
  return undefined;
}

/** The refusal for a person with no granting visa: the words of the visa that ended last, if any. */
function noAccessError(email: string, cluster: string, visas: readonly Visa[], now: Instant): Forbidden {
  const ended = visas
    .filter((visa) => visa.state === 'revoked' || effectiveState(visa, now) === 'expired')
    .sort((a, b) => endOf(b) - endOf(a))[0];
  if (ended === undefined) {
    const upcoming = visas
      .filter((visa) => effectiveState(visa, now) === 'approved')
      .sort((a, b) => a.notBefore - b.notBefore)[0];
    const next = upcoming ? ` Visa ${upcoming.id} starts at ${formatInstant(upcoming.notBefore)}.` : '';
    return new NoActiveVisa(
      `${email} has no active visa on cluster '${cluster}': request one with 'kubevisa request --cluster ${cluster} …'.${next}`,
      { details: { cluster } },
    );
  }
  const what =
    ended.state === 'revoked'
      ? `was revoked by ${ended.endedBy ?? 'kubevisa'} at ${formatInstant(endOf(ended))}: ${ended.endReason ?? 'no reason recorded'}`
      : `expired at ${formatInstant(ended.notAfter)}`;
  const again = `kubevisa request --cluster ${cluster} --ns ${ended.namespaces.join(',')} --profile ${ended.profile} --for DURATION --reason TEXT`;
  return new VisaEnded(
    `visa ${ended.id} (${ended.profile} on ${ended.namespaces.join(', ')} in cluster '${cluster}') ${what}; request a new one with '${again}'`,
    { details: { cluster, visa: ended.id, state: ended.state === 'revoked' ? 'revoked' : 'expired' } },
  );
}

/** When a visa that ended did: its revoke or expiry as recorded, else (not yet marked expired) its notAfter. */
function endOf(visa: Visa): Instant {
  return visa.endedAt ?? visa.notAfter;
}

function jsonDetails(details: Readonly<Record<string, unknown>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(details ?? {})) if (typeof value === 'string') out[key] = value;
  return out;
}
