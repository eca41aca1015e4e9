/**
 * A writer process for test/postgres-durability.test.ts: opens the PostgreSQL store at argv[2] and, until told
 * to stop (SIGTERM) or `count` writes are acknowledged, writes in a loop, each write one transaction that inserts
 * an approved visa and appends its audit event (or, in `appender` mode, a batch through the group-commit
 * appender). After each acknowledged write it prints one line `ack <kind> <key> <seq>` on stdout (seq 0 for a
 * transaction's write: its event is placed in the chain at commit, and found by its visa): what the test requires
 * to survive. A refused write (the database restarting) prints `refused <message>` and is retried later.
 */
import { openPostgresStore } from '../../src/store/postgres/store.ts';

const [url, name, mode = 'transaction', countText = '0'] = process.argv.slice(2);
if (url === undefined || name === undefined) throw new Error('usage: postgres-writer.ts URL NAME [mode] [count]');
const count = Number(countText);
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});

const store = await openPostgresStore({ url, connectTimeoutMs: 2000, applicationName: `kv-test-${name}` });
const appender = store.openAuditAppender();
const person = await store.getPersonByEmail('alice@vendor.example');
if (person === undefined) throw new Error('the test seeds alice@vendor.example and engagement e_durability first');
console.log('ready');
let written = 0;
for (let i = 0; !stopping && (count === 0 || written < count); i++) {
  const key = `v_${name}_${i}`;
  try {
    if (mode === 'appender') {
      const events = await appender.append([
        { at: Date.now(), actor: 'system', action: 'gateway.request', outcome: 'ok', details: { key } },
      ]);
      console.log(`ack event ${key} ${events[0]?.seq ?? -1}`);
    } else {
      const now = Date.now();
      await store.transaction(async (tx) => {
        await tx.insertVisa({
          id: key,
          engagementId: 'e_durability',
          personId: person.id,
          personEmail: person.email,
          cluster: 'prod',
          namespaces: ['payments'],
          profile: 'viewer',
          reason: 'durability test',
          requestedAt: now,
          requestedSeconds: 3600,
          notBefore: now,
          notAfter: now + 3_600_000,
          state: 'approved',
          approvals: [{ by: 'sam@corp.example', at: now }],
          requiredApprovals: 1,
        });
        await tx.appendAudit({
          at: now,
          actor: 'sam@corp.example',
          action: 'visa.approved',
          visaId: key,
          outcome: 'ok',
        });
      });
      // A transaction's events get their seq at commit, unseen by the caller: the test finds it by its visa.
      console.log(`ack change ${key} 0`);
    }
    written++;
  } catch (error) {
    console.log(`refused ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
await appender.close();
await store.close();
console.log('done');
