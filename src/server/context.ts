/**
 * What the composition root hands to each capability that plugs into the server (SCIM, audit, monitoring,
 * the gateway): the shared services, typed events, a way to register API routes (with kubevisa's bearer
 * authentication) and raw routes that bypass the API framework for speed (the gateway).
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import type { ClusterClient } from '../cluster/client.ts';
import type { Person, Visa } from '../domain/model.ts';
import type { Reconciler } from '../reconciler/reconciler.ts';
import type { Store } from '../store/store.ts';
import type { AccessService, Caller } from './access-service.ts';
import type { ServerConfig } from './config.ts';
import type { SessionService } from './session-service.ts';

export interface ServerEventMap {
  /** Visas stopped granting (revoked, cancelled, ended with their engagement). */
  'visas-ended': [visas: Visa[], reason: string];
  /** Something changed that the reconciler must converge in these clusters. */
  'clusters-changed': [clusters: string[]];
  /** A person was deprovisioned (offboarded by an admin or by the identity provider). */
  'person-deprovisioned': [person: Person, reason: string];
  /** Any visa was created or changed state (for indexes such as the gateway's). */
  'visas-changed': [];
  /** A kubevisa session ended (logout): its access tokens must stop working everywhere at once. */
  'session-ended': [sessionId: string];
  /**
   * The gateway answered a request (emit once per request, after the answer): monitoring records the person's and
   * visa's last use (staleness) and counts requests by status. `at` in epoch ms; `visaId` when one visa covered it.
   */
  'gateway-request': [request: { personId: string; visaId?: string; cluster: string; status: number; at: number }];
  /** The gateway closed an open stream because its visa ended (expired, revoked, offboarded): counted in metrics. */
  'stream-cut': [cut: { cluster: string; visaId: string; reason: string }];
  /** The audit trail failed verification (wrong hash, gap, rollback): monitoring raises an alert. */
  'audit-verification-failed': [failure: { at: number; message: string; seq?: number }];
}

export class ServerEvents extends EventEmitter<ServerEventMap> {}

export interface RawRoute {
  /** Path prefix the route owns, e.g. `/clusters/`. */
  prefix: string;
  handle(request: IncomingMessage, response: ServerResponse): void;
  upgrade?(request: IncomingMessage, socket: Duplex, head: Buffer): void;
}

export interface ServerContext {
  config: ServerConfig;
  /** The server's public URL. */
  url: string;
  store: Store;
  clusters: Map<string, ClusterClient>;
  /** Namespaces beyond the always-protected ones that no visa may grant (the config's, and the server's own). */
  protectedNamespaces: readonly string[];
  reconciler: Reconciler;
  access: AccessService;
  sessions: SessionService;
  tokens: TokenIssuer;
  events: ServerEvents;
  app: FastifyInstance;
  /** kubevisa bearer authentication for extension routes; throws Unauthenticated. */
  authenticate(request: FastifyRequest): Promise<Caller>;
  addRawRoute(route: RawRoute): void;
  /** Runs when the server stops, in reverse order of registration. */
  onStop(stop: () => Promise<void> | void): void;
}

/** A capability that plugs into the server: it registers routes and listeners, and its own stop hooks. */
export type Extension = (context: ServerContext) => Promise<void>;
