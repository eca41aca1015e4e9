/** What the `kubevisa scim token …` commands share: the API's token shapes and how they print. */
import { relativeTime } from '../present.ts';

/** A SCIM token as GET /api/v1/scim/tokens lists it (never its secret or hash). */
export interface ScimTokenJson {
  id: string;
  idp: string;
  state: 'live' | 'expired' | 'revoked';
  createdAt: string;
  createdBy: string;
  expiresAt?: string;
  lastUsedAt?: string;
  revokedAt?: string;
  revokedBy?: string;
}

/** A token just created: the only answer that carries the secret. */
export interface NewScimTokenJson extends ScimTokenJson {
  token: string;
  scimUrl: string;
  previous?: ScimTokenJson;
}

export function tokenTable(tokens: ScimTokenJson[], nowMs: number): { columns: string[]; rows: string[][] } {
  return {
    columns: ['ID', 'IDP', 'STATE', 'CREATED', 'LAST USED', 'EXPIRES'],
    rows: tokens.map((t) => [
      t.id,
      t.idp,
      t.state,
      relativeTime(t.createdAt, nowMs),
      t.lastUsedAt ? relativeTime(t.lastUsedAt, nowMs) : 'never',
      t.revokedAt
        ? `revoked ${relativeTime(t.revokedAt, nowMs)}`
        : t.expiresAt
          ? relativeTime(t.expiresAt, nowMs)
          : '-',
    ]),
  };
}

/** The once-only display of a new token, with what to do with it. */
export function newTokenText(created: NewScimTokenJson): string {
  return [
    `SCIM token ${created.id} for ${created.idp} (shown once; kubevisa keeps only its hash):`,
    '',
    `  ${created.token}`,
    '',
    `Configure ${created.idp}'s SCIM provisioning with:`,
    `  SCIM base URL:  ${created.scimUrl}`,
    `  Authentication: HTTP header, Bearer token (the token above)`,
    '',
  ].join('\n');
}
