/**
 * The JSON shapes of docs/api.md as the CLI receives them: the domain's types with every instant as an
 * RFC 3339 UTC string instead of epoch milliseconds. Types only: nothing here runs.
 */
import type { profileView } from '../app/views.ts';
import type { Approval, Ceiling, Engagement, Person, Visa } from '../domain/model.ts';
import type { Receipt } from '../identity/receipt.ts';

/** An RFC 3339 timestamp, `Z` on output from the server. */
export type Rfc3339 = string;

export type PersonJson = Omit<Person, 'createdAt' | 'updatedAt'> & { createdAt: Rfc3339; updatedAt: Rfc3339 };

export type ApprovalJson = Omit<Approval, 'at'> & { at: Rfc3339 };

export type VisaJson = Omit<
  Visa,
  'requestedAt' | 'requestedSeconds' | 'notBefore' | 'notAfter' | 'decidedAt' | 'endedAt' | 'approvals'
> & {
  requestedAt: Rfc3339;
  /** The length asked for, e.g. `8h` or `1h30m`. */
  requestedDuration: string;
  /** Fixed at approval; while requested, present only when the request asked for a later start. */
  notBefore?: Rfc3339;
  /** Fixed at approval; absent while requested. */
  notAfter?: Rfc3339;
  decidedAt?: Rfc3339;
  endedAt?: Rfc3339;
  approvals: ApprovalJson[];
};

export type EngagementJson = Omit<Engagement, 'startsAt' | 'endsAt' | 'endedAt' | 'createdAt'> & {
  startsAt: Rfc3339;
  endsAt: Rfc3339;
  endedAt?: Rfc3339;
  createdAt: Rfc3339;
};

/** The server's own view (src/app/views.ts): `maxVisaDuration` as the server writes it, e.g. `4h`. */
export type ProfileJson = ReturnType<typeof profileView>;

export interface Items<T> {
  items: T[];
}

/** `GET /api/v1/clusters` item. `caData` (base64 PEM, as in a kubeconfig) is present for direct-mode clusters. */
export interface ClusterJson {
  name: string;
  server: string;
  caData?: string;
  /** Whether the cluster allows direct mode (`kubevisa kubeconfig --direct`); absent from older servers. */
  directMode?: boolean;
}

/** A *session* answer (device poll, browser exchange). */
export interface SessionJson {
  sessionSecret: string;
  accessToken: string;
  accessTokenExpiresAt: Rfc3339;
  sessionExpiresAt: Rfc3339;
  person: PersonJson;
}

export interface AccessTokenJson {
  accessToken: string;
  expiresAt: Rfc3339;
}

export interface DeviceLoginJson {
  loginId: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string;
  intervalSeconds: number;
  expiresAt: Rfc3339;
}

export interface BrowserLoginJson {
  authorizationUrl: string;
}

/** `POST /api/v1/clusters/{name}/credential` (direct mode). */
export interface ClusterCredentialJson {
  token: string;
  expirationTimestamp: Rfc3339;
}

/** The offboarding receipt (`POST /api/v1/persons/{id}/offboard`, `GET /api/v1/offboardings/{id}`). */
export type OffboardReceiptJson = Receipt;

export interface NewEngagementJson {
  name: string;
  vendor: string;
  contractors: string[];
  sponsor: string;
  startsAt?: Rfc3339;
  endsAt: Rfc3339;
  ceiling: Ceiling;
  maxVisaDuration: string;
}

export interface NewVisaJson {
  engagement?: string;
  cluster: string;
  namespaces: string[];
  profile: string;
  duration: string;
  startsAt?: Rfc3339;
  reason: string;
}
