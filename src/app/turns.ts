/**
 * A turn that one server process at a time may take, shared through the store so that it holds across every server
 * on it: a row among the pending logins, whose unique id lets exactly one of several concurrent takers insert it and
 * whose expiry frees it when its holder never gives it back (a crash). Used where the IdP must not be asked by two
 * servers at once: a device login's next poll (RFC 8628's interval) and a session's refresh (a rotated refresh token
 * used twice revokes the grant).
 */
import { Conflict } from '../domain/errors.ts';
import type { Store } from '../store/store.ts';

/**
 * Takes the turn `id` until `now + holdMs` unless someone holds it: true when taken. A turn past its expiry is taken
 * over; of two takers at once, only the one whose delete removed the old row (or whose insert won) has it.
 */
export async function takeTurn(
  store: Pick<Store, 'transaction'>,
  id: string,
  kind: string,
  now: number,
  holdMs: number,
): Promise<boolean> {
  try {
    return await store.transaction(async (tx) => {
      const held = await tx.getLogin(id);
      if (held !== undefined) {
        if (held.expiresAt > now) return false;
        if (!(await tx.deleteLogin(id))) return false;
      }
      await tx.insertLogin({ id, kind, payload: {}, createdAt: now, expiresAt: now + holdMs });
      return true;
    });
  } catch (error) {
    // Someone else inserted it first.
    if (error instanceof Conflict) return false;
    throw error;
  }
}

/** Holds the turn `id` (taken by the caller) until `until` instead. */
export async function extendTurn(store: Pick<Store, 'transaction'>, id: string, until: number): Promise<void> {
  await store.transaction(async (tx) => {
    if (await tx.getLogin(id)) await tx.updateLogin(id, { expiresAt: until });
  });
}

/** Gives the turn back (before its expiry, so the next taker need not wait). */
export async function releaseTurn(store: Pick<Store, 'transaction'>, id: string): Promise<void> {
  await store.transaction((tx) => tx.deleteLogin(id));
}
