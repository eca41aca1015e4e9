/**
 * The plainest audit appender: each batch is one `store.transaction` in the caller's thread. Any engine can
 * offer it; SQLite uses it for `:memory:` databases (which a second connection cannot reach), and the gateway
 * falls back to it when it is given no appender.
 */
import { StoreUnavailable } from './errors.ts';
import type { AuditAppender, Store } from './store.ts';

export function transactionAppender(store: Pick<Store, 'transaction'>): AuditAppender {
  let closed = false;
  return {
    write: async (events) => {
      if (closed) throw new StoreUnavailable('the audit appender is closed');
      await store.transaction(async (tx) => {
        for (const event of events) await tx.appendAudit(event);
      });
    },
    close: async () => {
      closed = true;
    },
  };
}
