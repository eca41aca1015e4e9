/** The capabilities that plug into the server, in the order they are wired. */
import type { Extension } from './context.ts';
import { wireAudit } from '../audit/wire.ts';
import { wireIdentity } from '../identity/wire.ts';
import { wireGateway } from '../gateway/wire.ts';
import { wireMonitoring } from '../monitor/wire.ts';

export const extensions: Extension[] = [wireIdentity, wireAudit, wireMonitoring, wireGateway];
