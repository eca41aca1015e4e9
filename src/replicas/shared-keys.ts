/**
 * Every server on one store must sign access tokens with the same key, under the same issuer (its public URL), and
 * seal secrets with the same key: a token one of them issued is verified by whichever one the next request reaches,
 * and a refresh token one sealed is opened by another. The keys are files in each server's data folder (mounted from
 * one Secret); this check records what the first server used, by id only, and refuses to start a server whose
 * files or URL differ, instead of letting it issue tokens the others reject.
 */
import { KubevisaError } from '../domain/errors.ts';
import type { JsonValue, Store } from '../store/store.ts';

/** The setting that holds what every server must share. */
export const SHARED_KEYS_SETTING = 'replicas.shared-keys';

/** Ids of the keys a server uses (never the keys), and the issuer its tokens name. */
export interface SharedKeyFacts {
  /** The access-token signing key's id (its JWK thumbprint). */
  signingKeyId: string;
  /** The secret box's key id (an HMAC under the key, secret-box.ts). */
  secretBoxKeyId: string;
  /**
   * The `iss` of its access tokens when the server has a configured publicUrl, else '' (a lone server without one
   * may move between addresses; servers behind one load balancer must all set it, docs/operations.md).
   */
  issuer: string;
}

/** This server's keys or public URL differ from those the other servers on the store use. */
export class ReplicaKeysDiffer extends KubevisaError {
  static override code = 'ERR_REPLICA_KEYS_DIFFER';
  constructor(message: string, details: Record<string, unknown>) {
    super(message, { status: 500, details });
  }
}

const LABELS: Record<keyof SharedKeyFacts, string> = {
  signingKeyId: 'access-token signing key (access-token-signing-key.pem)',
  secretBoxKeyId: 'secret key (session-encryption.key)',
  issuer: 'public URL (publicUrl)',
};

/**
 * Records `facts` when the store has none yet (or when `adopt`), else throws ReplicaKeysDiffer naming what differs.
 * Returns what it did.
 */
export async function checkSharedKeys(
  store: Pick<Store, 'transaction'>,
  facts: SharedKeyFacts,
  options: { now: number; adopt?: boolean },
): Promise<'recorded' | 'matches' | 'adopted'> {
  return store.transaction(async (tx) => {
    const recorded = asFacts(await tx.getSetting(SHARED_KEYS_SETTING));
    const mine = { ...facts } satisfies Record<string, JsonValue>;
    if (recorded === undefined) {
      await tx.putSetting(SHARED_KEYS_SETTING, mine, options.now);
      return 'recorded';
    }
    const differ = (Object.keys(LABELS) as (keyof SharedKeyFacts)[]).filter(
      (key) => recorded[key] !== facts[key] && !(key === 'issuer' && (recorded.issuer === '' || facts.issuer === '')),
    );
    if (differ.length === 0) {
      // A URL configured since the record was made is recorded now, so that the next server is checked against it.
      if (recorded.issuer === '' && facts.issuer !== '') await tx.putSetting(SHARED_KEYS_SETTING, mine, options.now);
      return 'matches';
    }
    if (options.adopt === true) {
      await tx.putSetting(SHARED_KEYS_SETTING, mine, options.now);
      await tx.appendAudit({
        at: options.now,
        actor: 'system',
        action: 'server.keys-adopted',
        outcome: 'ok',
        reason: `this server's ${differ.map((key) => LABELS[key]).join(', ')} replaced the recorded one(s) (--adopt-keys)`,
        details: { replaced: differ },
      });
      return 'adopted';
    }
    throw new ReplicaKeysDiffer(
      `this server's ${differ.map((key) => LABELS[key]).join(' and ')} ${differ.length === 1 ? 'differs' : 'differ'} from what the other kubevisa servers on this store use` +
        (differ.includes('issuer') ? ` (recorded ${recorded.issuer}, this server ${facts.issuer})` : '') +
        ': tokens it issued would be refused by them, and secrets they sealed would not open here. Give every server the same key files ' +
        '(mount them from one Secret) and the same publicUrl. If you replaced the keys or the URL on purpose, stop every server and start ' +
        'one with --adopt-keys (every session then logs in again).',
      { differ },
    );
  });
}

function asFacts(value: JsonValue | undefined): SharedKeyFacts | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const text = (key: string) => {
    const field = Object.hasOwn(value, key) ? value[key] : undefined;
    return typeof field === 'string' ? field : '';
  };
  return { signingKeyId: text('signingKeyId'), secretBoxKeyId: text('secretBoxKeyId'), issuer: text('issuer') };
}
