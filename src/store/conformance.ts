/**
 * The behaviour every store engine must show, as node:test tests, split by aggregate as the Store interface is
 * (store.ts). An engine's test file calls `storeConformanceSuite('sqlite', openFresh, { reopen })`; the
 * PostgreSQL engine runs the very same suites. Each suite takes only an `openFresh()` factory (a new, empty
 * store per test, closed by the suite) and uses only the Store interface, never engine internals; an engine
 * under development may also run one suite on its own (`visaConformanceSuite(openFresh)`).
 */
import { describe } from 'node:test';
import { auditChainConformanceSuite } from './conformance-audit-chain.ts';
import { auditConformanceSuite } from './conformance-audit.ts';
import { catalogConformanceSuite } from './conformance-catalog.ts';
import { engagementConformanceSuite } from './conformance-engagements.ts';
import { identityConformanceSuite } from './conformance-identity.ts';
import { intentConformanceSuite } from './conformance-intents.ts';
import { peopleConformanceSuite } from './conformance-people.ts';
import type { OpenFresh } from './conformance-support.ts';
import { transactionConformanceSuite } from './conformance-transactions.ts';
import { visaConformanceSuite } from './conformance-visas.ts';
import type { Store } from './store.ts';

export { auditChainConformanceSuite } from './conformance-audit-chain.ts';
export { auditConformanceSuite } from './conformance-audit.ts';
export { catalogConformanceSuite } from './conformance-catalog.ts';
export { engagementConformanceSuite } from './conformance-engagements.ts';
export { identityConformanceSuite } from './conformance-identity.ts';
export { intentConformanceSuite } from './conformance-intents.ts';
export { peopleConformanceSuite } from './conformance-people.ts';
export type { OpenFresh } from './conformance-support.ts';
export { transactionConformanceSuite } from './conformance-transactions.ts';
export { visaConformanceSuite } from './conformance-visas.ts';

export interface ConformanceOptions {
  /**
   * Opens a second store on the same data as `previous`, as a restarted process would (without closing
   * `previous`: a crashed process never closes). Required: recovery after a crash is part of the contract.
   */
  reopen: (previous: Store) => Promise<Store>;
}

/** Every suite, under one `store conformance: <name>` heading. */
export function storeConformanceSuite(name: string, openFresh: OpenFresh, options: ConformanceOptions): void {
  describe(`store conformance: ${name}`, () => {
    peopleConformanceSuite(openFresh);
    engagementConformanceSuite(openFresh);
    visaConformanceSuite(openFresh);
    intentConformanceSuite(openFresh, options);
    transactionConformanceSuite(openFresh);
    auditChainConformanceSuite(openFresh);
    auditConformanceSuite(openFresh);
    catalogConformanceSuite(openFresh);
    identityConformanceSuite(openFresh);
  });
}
