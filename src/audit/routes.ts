/**
 * The audit endpoints (admins and auditors only):
 *
 *   GET  /api/v1/audit/events                        search: filters as filters.ts, paged by seq
 *   GET  /api/v1/audit/export                        every matching event as JSON lines (streamed)
 *   POST /api/v1/audit/checkpoints                   sign a checkpoint of the head now
 *   GET  /api/v1/audit/checkpoints                   every checkpoint
 *   GET  /api/v1/audit/public-key                    the key checkpoints are signed with
 *   POST /api/v1/audit/verify                        verify the trail (optionally against checkpoints kept)
 *   POST /api/v1/audit/evidence                      start an evidence pack: a fresh checkpoint and the window
 *   GET  /api/v1/audit/evidence/:engagement/events   the window as JSON lines, other engagements redacted
 *
 * Pulling events out of the trail is itself recorded in it (`audit.exported`, `audit.evidence-exported`), before
 * anything is sent: if that record cannot be made durable, nothing is exported.
 */
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { InvalidInput } from '../domain/errors.ts';
import { formatInstant } from '../domain/time.ts';
import type { Caller } from '../app/caller.ts';
import { engagementView } from '../app/views.ts';
import type { ServerContext } from '../server/context.ts';
import type { AuditCheckpoint, AuditEvent, JsonObject } from '../store/store.ts';
import { parseCheckpoint, type CheckpointRecord } from './checkpoints.ts';
import { AUDIT_QUERY_SCHEMA, auditFilterOf, type AuditQuery } from './filters.ts';
import type { AuditService, EvidenceScope } from './service.ts';

const NDJSON = 'application/x-ndjson; charset=utf-8';
const MAX_CHECKPOINTS_IN_REQUEST = 1000;

/** An event over the API: as stored, plus `time` (RFC 3339) for people and SIEMs that want one. */
export function eventView(event: AuditEvent) {
  return { ...event, time: formatInstant(event.at) };
}

export function checkpointView(checkpoint: AuditCheckpoint) {
  return { ...checkpoint, time: formatInstant(checkpoint.at) };
}

export function registerAuditRoutes(context: ServerContext, service: AuditService): void {
  const { store, route } = context;
  /** Records who pulled what out of the trail; throws (and so refuses the export) if it cannot be kept. */
  const recordExport = (caller: Caller, action: string, details: JsonObject, engagementId?: string) =>
    store.transaction((tx) =>
      tx.appendAudit({
        at: context.now(),
        actor: caller.actor.email,
        ...(caller.sessionId === undefined ? {} : { sessionId: caller.sessionId }),
        action,
        personId: caller.actor.personId,
        ...(engagementId === undefined ? {} : { engagementId }),
        outcome: 'ok',
        details,
        ...(caller.source === undefined ? {} : { source: caller.source }),
      }),
    );
  const stream = (reply: FastifyReply, lines: AsyncGenerator<string>) =>
    reply.type(NDJSON).header('cache-control', 'no-store').send(Readable.from(lines));

  route({
    method: 'GET',
    url: '/api/v1/audit/events',
    summary: 'Search the audit trail (paged by seq)',
    auth: 'auditor',
    refusal: 'read the audit trail',
    querystring: AUDIT_QUERY_SCHEMA,
    handler: async (request) => {
      const query = request.query as AuditQuery;
      const filter = await auditFilterOf(query, store);
      const items = await store.listAudit(filter);
      const limit = filter.limit ?? 1000;
      const last = items.at(-1);
      // A full page may have more behind it: say where the next one starts.
      const next =
        last === undefined || items.length < limit
          ? undefined
          : filter.newestFirst === true
            ? { before: last.seq }
            : { after: last.seq };
      return { items: items.map(eventView), ...(next === undefined ? {} : { next }) };
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/audit/export',
    summary: 'Every matching audit event as JSON lines (streamed; recorded in the trail)',
    auth: 'auditor',
    refusal: 'read the audit trail',
    querystring: AUDIT_QUERY_SCHEMA,
    handler: async (request, reply, caller) => {
      const query = request.query as AuditQuery;
      if (query.order === 'desc' || query.limit !== undefined || query.before !== undefined) {
        throw new InvalidInput('an export runs oldest first over every match: leave out order, limit and before');
      }
      const filter = await auditFilterOf(query, store);
      await recordExport(caller, 'audit.exported', { query: { ...query } as JsonObject });
      return stream(reply, service.exportLines(filter));
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/audit/checkpoints',
    summary: "Sign a checkpoint of the trail's head now",
    auth: 'auditor',
    refusal: 'read the audit trail',
    handler: async (_request, reply) => {
      reply.code(201);
      return checkpointView(await service.createCheckpoint());
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/audit/checkpoints',
    summary: 'Every signed checkpoint',
    auth: 'auditor',
    refusal: 'read the audit trail',
    handler: async () => {
      return { items: (await service.listCheckpoints()).map(checkpointView) };
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/audit/public-key',
    summary: 'The key checkpoints are signed with',
    auth: 'auditor',
    refusal: 'read the audit trail',
    handler: async () => {
      return { algorithm: 'Ed25519', keyId: service.key.keyId, publicKeyPem: service.key.publicKeyPem };
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/audit/verify',
    summary: 'Verify the trail (optionally against checkpoints kept elsewhere)',
    auth: 'auditor',
    refusal: 'read the audit trail',
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        checkpoints: { type: 'array', maxItems: MAX_CHECKPOINTS_IN_REQUEST, items: { type: 'object' } },
      },
    },
    handler: async (request) => {
      const body = (request.body ?? {}) as { checkpoints?: unknown[] };
      const kept: CheckpointRecord[] = (body.checkpoints ?? []).map((value, index) =>
        parseCheckpoint(value, `checkpoints[${index}]`),
      );
      return service.verifyTrail(kept);
    },
  });

  route({
    method: 'POST',
    url: '/api/v1/audit/evidence',
    summary: "Start an engagement's evidence pack: a fresh checkpoint and the window",
    auth: 'auditor',
    refusal: 'read the audit trail',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['engagement'],
      properties: { engagement: { type: 'string', minLength: 1, maxLength: 64 } },
    },
    handler: async (request, _reply, caller) => {
      const engagement = await context.engagements.get(caller, (request.body as { engagement: string }).engagement);
      const end = await service.createCheckpoint();
      const [first] = await store.listAudit({ engagementId: engagement.id, limit: 1 });
      // The window starts at the newest checkpoint before the engagement's first event, so the pack's first
      // record is anchored in a signed statement (or at the genesis).
      const [anchor] =
        first === undefined
          ? [end]
          : await store.listAuditCheckpoints({ throughSeq: first.seq - 1, newestFirst: true, limit: 1 });
      const afterSeq = anchor?.seq ?? 0;
      const checkpoints = (await service.listCheckpoints({ throughSeq: end.seq })).filter((c) => c.seq >= afterSeq);
      return {
        engagement: engagementView(engagement),
        generatedAt: formatInstant(context.now()),
        window: { afterSeq, throughSeq: end.seq },
        ...(anchor === undefined ? {} : { anchor: checkpointView(anchor) }),
        end: checkpointView(end),
        checkpoints: checkpoints.map(checkpointView),
        publicKey: { algorithm: 'Ed25519', keyId: service.key.keyId, publicKeyPem: service.key.publicKeyPem },
      };
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/audit/evidence/:engagement/events',
    summary: "An evidence pack's events as JSON lines, other engagements redacted",
    auth: 'auditor',
    refusal: 'read the audit trail',
    querystring: {
      type: 'object',
      additionalProperties: false,
      required: ['after', 'through'],
      properties: { after: AUDIT_QUERY_SCHEMA.properties.after, through: AUDIT_QUERY_SCHEMA.properties.through },
    },
    handler: async (request, reply, caller) => {
      const idOrName = (request.params as { engagement: string }).engagement;
      const engagement = await context.engagements.get(caller, idOrName);
      const { after, through } = request.query as { after: string; through: string };
      const scope: EvidenceScope = {
        engagementId: engagement.id,
        visaIds: new Set((await store.listVisas({ engagementId: engagement.id })).map((visa) => visa.id)),
        personIds: new Set(
          (
            await Promise.all(engagement.contractors.map((email) => store.getPersonByEmail(email.toLowerCase())))
          ).flatMap((person) => (person === undefined ? [] : [person.id])),
        ),
      };
      await recordExport(
        caller,
        'audit.evidence-exported',
        { afterSeq: Number(after), throughSeq: Number(through) },
        engagement.id,
      );
      return stream(reply, service.exportLines({ afterSeq: Number(after), throughSeq: Number(through) }, scope));
    },
  });
}
