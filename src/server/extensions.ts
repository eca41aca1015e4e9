/**
 * The capabilities that plug into the server, wired in this order. Each wire function returns its handle, and the
 * composition root passes a handle explicitly to whoever needs it (the gateway gets identity's offboarding): a
 * capability wired without what it needs fails to start instead of silently losing a duty.
 */
import { wireAudit, type AuditHandle } from '../audit/wire.ts';
import { wireConsole } from '../console/wire.ts';
import { wireGateway, type GatewayHandle } from '../gateway/wire.ts';
import { wireIdentity, type IdentityHandle } from '../identity/wire.ts';
import { wireMonitoring, type MonitoringHandle } from '../monitor/wire.ts';
import type { ServerContext } from './context.ts';

/** The handles of the wired capabilities (tests and benchmarks reach the capabilities through them). */
export interface Capabilities {
  identity: IdentityHandle;
  audit: AuditHandle;
  monitoring: MonitoringHandle;
  gateway: GatewayHandle;
}

/** A further capability (a web console…): wired after the core ones, with their handles. */
export type Extension = (context: ServerContext, capabilities: Capabilities) => Promise<unknown>;

/** Further capabilities, wired in this order after the core ones. */
export const extensions: Extension[] = [wireConsole];

export async function wireCapabilities(context: ServerContext): Promise<Capabilities> {
  const identity = await wireIdentity(context);
  const audit = await wireAudit(context);
  const monitoring = await wireMonitoring(context);
  const gateway = await wireGateway(context, { offboarding: identity.offboarding });
  const capabilities = { identity, audit, monitoring, gateway };
  for (const wire of extensions) await wire(context, capabilities);
  return capabilities;
}
