/**
 * Typed readers for SQL result rows and decoders for JSON columns. A value of the wrong type means the row was
 * not written by this build (hand edit, other version): it raises StoreCorrupt naming table, column and key,
 * instead of letting a malformed value travel into the domain. Engine-neutral: a row is a plain record.
 */
import type {
  Approval,
  Ceiling,
  DeclaredRisk,
  EngagementStatus,
  PersonRole,
  PersonStatus,
  PolicyRule,
  VisaState,
} from '../domain/model.ts';
import { StoreCorrupt } from './errors.ts';
import type { AuditOutcome, JsonObject, JsonValue } from './store.ts';

/** One result row as a driver returns it (node:sqlite: null, number, bigint, string or bytes). */
export type Row = Readonly<Record<string, unknown>>;

/** Where a value was read from, for error messages: `visas.approvals_json`. */
type Where = string;

function corrupt(where: Where, expected: string, value: unknown): StoreCorrupt {
  const shown = value === null ? 'null' : typeof value;
  return new StoreCorrupt(`stored value ${where} is ${shown}, expected ${expected}`, { details: { where } });
}

export function text(row: Row, table: string, column: string): string {
  const value = row[column];
  if (typeof value !== 'string') throw corrupt(`${table}.${column}`, 'text', value);
  return value;
}

export function optionalText(row: Row, table: string, column: string): string | undefined {
  const value = row[column];
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string') throw corrupt(`${table}.${column}`, 'text or null', value);
  return value;
}

/** Integers (instants in ms, seconds, counters) are far below 2^53, so a JS number holds them exactly. */
export function integer(row: Row, table: string, column: string): number {
  const value = row[column];
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw corrupt(`${table}.${column}`, 'integer', value);
  return value;
}

export function optionalInteger(row: Row, table: string, column: string): number | undefined {
  const value = row[column];
  if (value === null || value === undefined) return undefined;
  return integer(row, table, column);
}

export function oneOf<T extends string>(row: Row, table: string, column: string, allowed: readonly T[]): T {
  const value = text(row, table, column);
  const found = allowed.find((candidate) => candidate === value);
  if (found === undefined) throw corrupt(`${table}.${column}`, `one of ${allowed.join(', ')}`, value);
  return found;
}

export const PERSON_STATUSES: readonly PersonStatus[] = ['active', 'suspended', 'deprovisioned'];
export const PERSON_ROLES: readonly PersonRole[] = ['admin', 'approver', 'auditor'];
export const ENGAGEMENT_STATUSES: readonly EngagementStatus[] = ['active', 'ended'];
export const VISA_STATES: readonly VisaState[] = [
  'requested',
  'approved',
  'active',
  'expired',
  'revoked',
  'denied',
  'cancelled',
];
export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['ok', 'refused', 'error'];

/** Parses a JSON text column and hands the value to a decoder that checks its shape. */
export function json<T>(row: Row, table: string, column: string, decode: (value: unknown, where: Where) => T): T {
  const where = `${table}.${column}`;
  const raw = text(row, table, column);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw new StoreCorrupt(`stored value ${where} is not valid JSON`, { details: { where }, cause: error });
  }
  return decode(parsed, where);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads an optional string property, refusing any other type. */
function optionalStringField(value: Record<string, unknown>, key: string, where: Where): string | undefined {
  const field = value[key];
  if (field === undefined) return undefined;
  if (typeof field !== 'string') throw corrupt(`${where}.${key}`, 'string', field);
  return field;
}

function stringField(value: Record<string, unknown>, key: string, where: Where): string {
  const field = value[key];
  if (typeof field !== 'string') throw corrupt(`${where}.${key}`, 'string', field);
  return field;
}

function numberField(value: Record<string, unknown>, key: string, where: Where): number {
  const field = value[key];
  if (typeof field !== 'number') throw corrupt(`${where}.${key}`, 'number', field);
  return field;
}

export function decodeStringArray(value: unknown, where: Where): string[] {
  if (!Array.isArray(value)) throw corrupt(where, 'array of strings', value);
  return value.map((item: unknown, index) => {
    if (typeof item !== 'string') throw corrupt(`${where}[${index}]`, 'string', item);
    return item;
  });
}

function optionalStringArrayField(value: Record<string, unknown>, key: string, where: Where): string[] | undefined {
  const field = value[key];
  if (field === undefined) return undefined;
  return decodeStringArray(field, `${where}.${key}`);
}

export function decodeRoles(value: unknown, where: Where): PersonRole[] {
  return decodeStringArray(value, where).map((role, index) => {
    const found = PERSON_ROLES.find((candidate) => candidate === role);
    if (found === undefined) throw corrupt(`${where}[${index}]`, `one of ${PERSON_ROLES.join(', ')}`, role);
    return found;
  });
}

export function decodeApprovals(value: unknown, where: Where): Approval[] {
  if (!Array.isArray(value)) throw corrupt(where, 'array of approvals', value);
  return value.map((item: unknown, index) => {
    const at = `${where}[${index}]`;
    if (!isRecord(item)) throw corrupt(at, 'approval object', item);
    const approval: Approval = { by: stringField(item, 'by', at), at: numberField(item, 'at', at) };
    const comment = optionalStringField(item, 'comment', at);
    if (comment !== undefined) approval.comment = comment;
    if (item.automatic !== undefined) {
      if (typeof item.automatic !== 'boolean') throw corrupt(`${at}.automatic`, 'boolean', item.automatic);
      approval.automatic = item.automatic;
    }
    return approval;
  });
}

export function decodeCeiling(value: unknown, where: Where): Ceiling {
  if (!isRecord(value)) throw corrupt(where, 'ceiling object', value);
  return {
    clusters: decodeStringArray(value.clusters, `${where}.clusters`),
    namespacePatterns: decodeStringArray(value.namespacePatterns, `${where}.namespacePatterns`),
    profiles: decodeStringArray(value.profiles, `${where}.profiles`),
  };
}

export function decodePolicyRules(value: unknown, where: Where): PolicyRule[] {
  if (!Array.isArray(value)) throw corrupt(where, 'array of rules', value);
  return value.map((item: unknown, index) => {
    const at = `${where}[${index}]`;
    if (!isRecord(item)) throw corrupt(at, 'rule object', item);
    const rule: PolicyRule = { verbs: decodeStringArray(item.verbs, `${at}.verbs`) };
    const apiGroups = optionalStringArrayField(item, 'apiGroups', at);
    if (apiGroups !== undefined) rule.apiGroups = apiGroups;
    const resources = optionalStringArrayField(item, 'resources', at);
    if (resources !== undefined) rule.resources = resources;
    const resourceNames = optionalStringArrayField(item, 'resourceNames', at);
    if (resourceNames !== undefined) rule.resourceNames = resourceNames;
    const nonResourceURLs = optionalStringArrayField(item, 'nonResourceURLs', at);
    if (nonResourceURLs !== undefined) rule.nonResourceURLs = nonResourceURLs;
    return rule;
  });
}

export function decodeDeclaredRisks(value: unknown, where: Where): DeclaredRisk[] {
  if (!Array.isArray(value)) throw corrupt(where, 'array of declared risks', value);
  return value.map((item: unknown, index) => {
    const at = `${where}[${index}]`;
    if (!isRecord(item)) throw corrupt(at, 'declared risk object', item);
    return { risk: stringField(item, 'risk', at), justification: stringField(item, 'justification', at) };
  });
}

/**
 * JSON.parse only ever produces JSON values, so once the top level is known to be an object the whole value is
 * a JsonObject; the narrowing below states that fact to the compiler.
 */
export function decodeJsonObject(value: unknown, where: Where): JsonObject {
  if (!isRecord(value)) throw corrupt(where, 'JSON object', value);
  return value as JsonObject;
}

/** Any JSON value (JSON.parse produces nothing else). */
export function decodeJsonValue(value: unknown): JsonValue {
  return value as JsonValue;
}

/**
 * Copies the properties whose value is defined: optional fields are left out of a mapped row rather than set
 * to `undefined`, so a stored value reads back deep-equal to what was written.
 */
export function definedOnly<T extends Record<string, unknown>>(
  fields: T,
): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: { [K in keyof T]?: Exclude<T[K], undefined> } = {};
  for (const key of Object.keys(fields) as (keyof T)[]) {
    const value = fields[key];
    if (value !== undefined) out[key] = value as Exclude<T[typeof key], undefined>;
  }
  return out;
}
