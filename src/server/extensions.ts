/** The capabilities that plug into the server, in the order they are wired. */
import type { Extension } from './context.ts';
import { wireGateway } from '../gateway/wire.ts';

export const extensions: Extension[] = [
  // issue 7 (identity lifecycle: SCIM, IdP sync, offboarding receipts) adds its wire function here
  // issue 6 (audit trail: checkpoints, verify, export, evidence) adds its wire function here
  // issue 6 (monitoring: staleness, exposure scan, alerts, metrics) adds its wire function here
  wireGateway,
];
