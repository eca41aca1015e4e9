/**
 * What the composition root hands to each capability that plugs into the server (SCIM, audit, monitoring,
 * the gateway): the application services (src/app/), the event bus, a way to register API routes (with kubevisa's bearer
 * authentication) and raw routes that bypass the API framework for speed (the gateway).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TokenIssuer } from '../auth/access-tokens.ts';
import type { ClusterClient } from '../cluster/client.ts';
import type { Leadership } from '../leader/election.ts';
import type { Reconciler } from '../reconciler/reconciler.ts';
import type { Store } from '../store/store.ts';
import type { Caller } from '../app/caller.ts';
import type { CredentialService } from '../app/credentials.ts';
import type { EngagementService } from '../app/engagements.ts';
import type { AppEvents } from '../app/events.ts';
import type { PeopleService } from '../app/people.ts';
import type { SessionService } from '../app/sessions.ts';
import type { VisaService } from '../app/visas.ts';
import type { ClusterRegistry } from './cluster-registry.ts';
import type { ServerConfig } from './config.ts';
import type { PrefixDeclaration, RouteSpec } from './routes.ts';

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
  /**
   * The clock every decision about access is made by, epoch ms: the database's (src/leader/), so replicas whose wall
   * clocks disagree agree on when a visa starts and ends. Durations measured inside this process use its own clock.
   */
  now: () => number;
  store: Store;
  clusters: Map<string, ClusterClient>;
  /** Namespaces beyond the always-protected ones that no visa may grant (the config's, and the server's own). */
  protectedNamespaces: readonly string[];
  reconciler: Reconciler;
  /** Clusters registered at run time, and where each managed cluster's kubeconfig is read from. */
  clusterRegistry: ClusterRegistry;
  /**
   * Whether this replica leads (src/leader/): work that must run once among replicas sharing the store (scans,
   * alerts, identity repair and sync, audit checkpoints) runs only while `isLeader()`.
   */
  leadership: Leadership;
  visas: VisaService;
  engagements: EngagementService;
  people: PeopleService;
  sessions: SessionService;
  credentials: CredentialService;
  tokens: TokenIssuer;
  events: AppEvents;
  app: FastifyInstance;
  /** Declares and serves an API route (see routes.ts): the one way to add one. */
  route(spec: RouteSpec): void;
  /** Declares a tree served under a protocol of its own (SCIM), so the OpenAPI document lists it. */
  declarePrefix(declaration: PrefixDeclaration): void;
  /** kubevisa bearer authentication, for handlers that need the caller outside route(); throws Unauthenticated. */
  authenticate(request: FastifyRequest): Promise<Caller>;
  addRawRoute(route: RawRoute): void;
  /** Runs when the server stops, in reverse order of registration. */
  onStop(stop: () => Promise<void> | void): void;
}
