/**
 * The identity lifecycle's API routes (kubevisa bearer authentication, JSON schemas, problem+json errors like
 * the rest of /api/v1):
 *
 * - SCIM tokens, per identity provider: create (shown once), list, rotate (old one kept for a grace period),
 *   revoke;
 * - offboarding with a receipt: start it for a person, read a receipt, list receipts;
 * - the group mappings in force, and a directory sync on demand;
 * - which SCIM identity providers may act on whom: list, link (an admin's decision), unlink.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { couldPassForAnother, emailAddressProblem, parseEmailAddress } from '../domain/email.ts';
import { Conflict, InvalidInput, NotFound } from '../domain/errors.ts';
import { own } from '../domain/own.ts';
import { parseDuration } from '../domain/time.ts';
import { requireReason } from '../domain/validate.ts';
import type { Caller } from '../app/caller.ts';
import { personByIdOrEmail } from '../app/people.ts';
import type { ServerContext } from '../server/context.ts';
import type { ScimLinkRecord, ScimTokenRecord } from '../store/identity-records.ts';
import { generateScimToken, isLive, isValidIdpName } from '../scim/tokens.ts';
import type { GroupMapping } from './config.ts';
import type { DirectorySync } from './directory.ts';
import type { OffboardingOrchestrator } from './offboarding.ts';
import type { Receipt } from './receipt.ts';

export interface AdminRoutesOptions {
  offboarding: OffboardingOrchestrator;
  mappings: GroupMapping[];
  sync?: DirectorySync;
  /** How long POST …/offboarding waits for the receipt to complete, in ms. */
  waitMs: number;
  /** Called after a token change so the SCIM endpoint stops accepting a revoked token at once. */
  onTokensChanged: () => void;
  /** Called after a link to `email` was made or removed (the groups that count for them may have changed). */
  onLinksChanged?: (email: string, by: string) => Promise<void>;
  now?: () => number;
}

type Schema = Record<string, unknown>;
const str = (maxLength = 500) => ({ type: 'string', minLength: 1, maxLength });
const obj = (properties: Record<string, Schema>, required: string[] = []) => ({
  type: 'object',
  additionalProperties: false,
  required,
  properties,
});

export interface ScimTokenView {
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

/** A token record as the API shows it: never its hash. */
export function tokenView(record: ScimTokenRecord, now: number): ScimTokenView {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    id: record.id,
    idp: record.idp,
    state: record.revokedAt !== undefined ? 'revoked' : isLive(record, now) ? 'live' : 'expired',
    createdAt: iso(record.createdAt),
    createdBy: record.createdBy,
    ...(record.expiresAt !== undefined ? { expiresAt: iso(record.expiresAt) } : {}),
    ...(record.lastUsedAt !== undefined ? { lastUsedAt: iso(record.lastUsedAt) } : {}),
    ...(record.revokedAt !== undefined ? { revokedAt: iso(record.revokedAt) } : {}),
    ...(record.revokedBy !== undefined ? { revokedBy: record.revokedBy } : {}),
  };
}

export interface ScimLinkView {
  email: string;
  idp: string;
  how: ScimLinkRecord['how'];
  by: string;
  reason?: string;
  createdAt: string;
}

export function linkView(link: ScimLinkRecord): ScimLinkView {
  return {
    email: link.email,
    idp: link.idp,
    how: link.how,
    by: link.by,
    ...(link.reason !== undefined ? { reason: link.reason } : {}),
    createdAt: new Date(link.createdAt).toISOString(),
  };
}

export function registerAdminRoutes(context: ServerContext, options: AdminRoutesOptions): void {
  const { route, store } = context;
  const now = options.now ?? Date.now;
  const params = (request: FastifyRequest) => request.params as Record<string, string>;

  const mintToken = async (caller: Caller, idp: string, expiresAt?: number) => {
    const { token, secretHash } = generateScimToken();
    const at = now();
    const record = await store.transaction(async (tx) => {
      const saved = await tx.insertScimToken({
        id: `st_${randomBytes(9).toString('base64url')}`,
        idp,
        secretHash,
        createdAt: at,
        createdBy: caller.actor.email,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      await tx.appendAudit({
        at,
        actor: caller.actor.email,
        ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
        action: 'scim.token.created',
        outcome: 'ok',
        details: { tokenId: saved.id, idp },
        ...(caller.source ? { source: caller.source } : {}),
      });
      return saved;
    });
    options.onTokensChanged();
    return { ...tokenView(record, at), token, scimUrl: `${context.url}/scim/v2` };
  };

  route({
    method: 'POST',
    url: '/api/v1/scim/tokens',
    summary: 'Create a SCIM token for an identity provider (shown once)',
    auth: 'admin',
    refusal: 'create SCIM tokens',
    body: obj({ idp: str(63) }, ['idp']),
    handler: async (request, reply, caller) => {
      const { idp } = request.body as { idp: string };
      if (!isValidIdpName(idp)) {
        throw new InvalidInput(
          `idp '${idp}' is not a valid name: use 1–63 lower-case letters, digits or '-' (e.g. okta, entra)`,
        );
      }
      reply.code(201);
      return mintToken(caller, idp);
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/scim/tokens',
    summary: 'SCIM tokens (never their secrets)',
    auth: 'auditor',
    refusal: 'list SCIM tokens',
    handler: async () => {
      const at = now();
      return { items: (await store.listScimTokens()).map((t) => tokenView(t, at)) };
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/scim/tokens/:id/rotate',
    summary: 'Rotate a SCIM token (the old one is kept for a grace period)',
    auth: 'admin',
    refusal: 'rotate SCIM tokens',
    body: obj({ grace: str(32) }),
    handler: async (request, reply, caller) => {
      const old = await store.getScimToken(params(request).id!);
      if (!old) throw new NotFound(`no SCIM token '${params(request).id}': 'kubevisa scim token list' shows them`);
      if (!isLive(old, now()))
        throw new InvalidInput(`SCIM token ${old.id} is no longer live: create a new one instead`);
      const grace = (request.body as { grace?: string } | undefined)?.grace ?? '1h';
      const graceSeconds = grace === '0s' || grace === '0' ? 0 : parseDuration(grace, 'grace');
      if (graceSeconds > 7 * 86_400) throw new InvalidInput('grace must be at most 7d: the old token must not linger');
      const created = await mintToken(caller, old.idp);
      const at = now();
      const retired = await store.transaction(async (tx) => {
        const updated =
          graceSeconds === 0
            ? await tx.updateScimToken(old.id, { revokedAt: at, revokedBy: caller.actor.email })
            : await tx.updateScimToken(old.id, { expiresAt: at + graceSeconds * 1000 });
        await tx.appendAudit({
          at,
          actor: caller.actor.email,
          action: 'scim.token.rotated',
          outcome: 'ok',
          details: { tokenId: old.id, replacedBy: created.id, graceSeconds },
        });
        return updated;
      });
      options.onTokensChanged();
      reply.code(201);
      return { ...created, previous: tokenView(retired, at) };
    },
  });

  route({
    method: 'DELETE',
    url: '/api/v1/scim/tokens/:id',
    summary: 'Revoke a SCIM token',
    auth: 'admin',
    refusal: 'revoke SCIM tokens',
    handler: async (request, _reply, caller) => {
      const at = now();
      const id = params(request).id!;
      const revoked = await store.transaction(async (tx) => {
        if (!(await tx.getScimToken(id)))
          throw new NotFound(`no SCIM token '${id}': 'kubevisa scim token list' shows them`);
        const updated = await tx.updateScimToken(id, { revokedAt: at, revokedBy: caller.actor.email });
        await tx.appendAudit({
          at,
          actor: caller.actor.email,
          action: 'scim.token.revoked',
          outcome: 'ok',
          details: { tokenId: id, idp: updated.idp },
        });
        return updated;
      });
      options.onTokensChanged();
      return tokenView(revoked, at);
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/persons/:id/offboarding',
    summary: 'Offboard a person and answer with the receipt (or at once with wait=false)',
    auth: 'admin',
    refusal: 'offboard a person',
    body: obj({ reason: str(500), wait: { type: 'boolean' } }, ['reason']),
    handler: async (request, reply, caller) => {
      const body = request.body as { reason: string; wait?: boolean };
      const idOrEmail = params(request).id!;
      const person = await personByIdOrEmail(store, idOrEmail);
      if (!person) throw new NotFound(`no person '${idOrEmail}': they have never logged in to kubevisa`);
      const started = await options.offboarding.start({
        personId: person.id,
        status: 'deprovisioned',
        trigger: { kind: 'admin', by: caller.actor.email },
        reason: body.reason,
        caller,
      });
      const receipt: Receipt =
        body.wait === false ? started : await options.offboarding.waitFor(started.id, options.waitMs);
      reply.code(201).header('location', `/api/v1/offboardings/${receipt.id}`);
      return receipt;
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/offboardings/:id',
    summary: 'One offboarding receipt',
    auth: 'auditor',
    refusal: 'read offboarding receipts',
    handler: async (request) => {
      const receipt = await options.offboarding.get(params(request).id!);
      if (!receipt) throw new NotFound(`no offboarding '${params(request).id}'`);
      return receipt;
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/offboardings',
    summary: 'Offboarding receipts',
    auth: 'auditor',
    refusal: 'read offboarding receipts',
    querystring: obj({ person: str(254) }),
    handler: async (request) => {
      const filter = (request.query as { person?: string }).person;
      let personId: string | undefined;
      if (filter !== undefined) {
        const person = await personByIdOrEmail(store, filter);
        if (!person) return { items: [] };
        personId = person.id;
      }
      return { items: await options.offboarding.list(personId) };
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/identity/mappings',
    summary: 'The group mappings in force',
    auth: 'auditor',
    refusal: 'read group mappings',
    handler: async () => {
      const engagements = await store.listEngagements();
      return {
        items: options.mappings.map((m) => {
          const spec = own(m, 'engagement');
          const role = own(m, 'role');
          const engagement = spec && engagements.filter((e) => e.name === spec.name).at(-1);
          return {
            group: m.group,
            // Which SCIM identity provider's group counts: any, unless the mapping names one.
            scimIdp: own(m, 'idp') ?? 'any',
            ...(role ? { role } : {}),
            ...(spec
              ? {
                  engagement: spec.name,
                  engagementId: engagement?.id ?? null,
                  engagementStatus: engagement?.status ?? 'not created yet (no member so far)',
                  contractors: engagement?.contractors ?? [],
                }
              : {}),
          };
        }),
      };
    },
  });

  /** A person by id or email; someone who has not logged in yet is named by email. */
  const personOf = async (idOrEmail: string): Promise<{ email: string; personId?: string }> => {
    const person = await personByIdOrEmail(store, idOrEmail);
    if (person) return { email: person.email, personId: person.id };
    // Someone not known yet: what is recorded for them must be an address kubevisa would accept for a login.
    const address = idOrEmail.trim();
    if (couldPassForAnother(address)) return { email: parseEmailAddress(address, 'person') };
    if (emailAddressProblem(address) !== undefined) {
      throw new NotFound(`no person '${idOrEmail}': name them by email (someone who has not logged in yet too)`);
    }
    return { email: address.toLowerCase() };
  };

  route({
    method: 'GET',
    url: '/api/v1/identity/links',
    summary: 'Which SCIM identity providers may act on whom',
    auth: 'auditor',
    refusal: 'read which identity providers act on whom',
    querystring: obj({ person: str(254), idp: str(63) }),
    handler: async (request) => {
      const query = request.query as { person?: string; idp?: string };
      const email = query.person === undefined ? undefined : (await personOf(query.person)).email;
      const links = await store.listScimLinks({
        ...(email !== undefined ? { email } : {}),
        ...(query.idp !== undefined ? { idp: query.idp } : {}),
      });
      return { items: links.map(linkView) };
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/identity/links',
    summary: 'Link a person to a SCIM identity provider',
    auth: 'admin',
    refusal: 'link a person to an identity provider',
    body: obj({ person: str(254), idp: str(63), reason: str(500) }, ['person', 'idp', 'reason']),
    handler: async (request, reply, caller) => {
      const body = request.body as { person: string; idp: string; reason: string };
      requireReason(body.reason);
      if (!isValidIdpName(body.idp)) {
        throw new InvalidInput(
          `idp '${body.idp}' is not a valid name: use the name its SCIM token was created for (e.g. okta, entra)`,
        );
      }
      const { email, personId } = await personOf(body.person);
      const at = now();
      const link = await store.transaction(async (tx) => {
        if ((await tx.listScimLinks({ email })).some((l) => l.idp === body.idp)) {
          throw new Conflict(`${email} is already linked to identity provider '${body.idp}'`, {
            details: { email, idp: body.idp },
          });
        }
        const created = await tx.insertScimLink({
          email,
          idp: body.idp,
          how: 'linked',
          by: caller.actor.email,
          reason: body.reason,
          createdAt: at,
        });
        await tx.appendAudit({
          at,
          actor: caller.actor.email,
          ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
          action: 'identity.link.created',
          ...(personId !== undefined ? { personId } : {}),
          outcome: 'ok',
          reason: body.reason,
          details: { email, idp: body.idp, how: 'linked' },
          ...(caller.source ? { source: caller.source } : {}),
        });
        return created;
      });
      await options.onLinksChanged?.(email, caller.actor.email);
      reply.code(201);
      return linkView(link);
    },
  });

  route({
    method: 'DELETE',
    url: '/api/v1/identity/links/:idp/:person',
    summary: 'Unlink a person from a SCIM identity provider',
    auth: 'admin',
    refusal: 'unlink a person from an identity provider',
    handler: async (request, _reply, caller) => {
      const { idp, person } = params(request) as { idp: string; person: string };
      const { email, personId } = await personOf(person);
      const at = now();
      const removed = await store.transaction(async (tx) => {
        const link = (await tx.listScimLinks({ email })).find((l) => l.idp === idp);
        if (!link) {
          throw new NotFound(
            `${email} is not linked to identity provider '${idp}': GET /api/v1/identity/links lists links`,
          );
        }
        await tx.deleteScimLink(email, idp);
        await tx.appendAudit({
          at,
          actor: caller.actor.email,
          ...(caller.sessionId ? { sessionId: caller.sessionId } : {}),
          action: 'identity.link.deleted',
          ...(personId !== undefined ? { personId } : {}),
          outcome: 'ok',
          reason: `'${idp}' no longer acts on ${email}`,
          details: { email, idp, how: link.how },
          ...(caller.source ? { source: caller.source } : {}),
        });
        return link;
      });
      await options.onLinksChanged?.(email, caller.actor.email);
      return linkView(removed);
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/identity/sync',
    summary: 'Run a directory sync now',
    auth: 'admin',
    refusal: 'run a directory sync',
    handler: async () => {
      if (!options.sync)
        throw new InvalidInput("no directory sync is configured: add 'identity.sync' to the server config");
      const report = await options.sync.runOnce();
      if (!report) throw new InvalidInput('the sync failed: the server log says why');
      return report;
    },
  });
}
