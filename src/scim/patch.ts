/**
 * SCIM PATCH (RFC 7644 §3.5.2), applied with scim-patch after smoothing over what real identity providers send:
 *
 * - Okta: `{"op":"replace","value":{"active":false}}` (no path, an object of attributes), and group membership
 *   as `{"op":"remove","path":"members[value eq \"ID\"]"}`.
 * - Microsoft Entra ID: capitalised ops (`"Replace"`, `"Add"`, `"Remove"`), booleans as strings
 *   (`{"op":"Replace","path":"active","value":"False"}`), and member removal as
 *   `{"op":"Remove","path":"members","value":[{"value":"ID"}]}`.
 *
 * The patched resource is then read again like a PUT body (resources.ts), so a PATCH can never store what a PUT
 * would refuse.
 */
import { patchBodyValidation, scimPatch, type ScimPatchOperation, type ScimResource } from 'scim-patch';
import type { JsonObject, JsonValue } from '../store/store.ts';
import { badRequest, ScimError, type ScimType } from './errors.ts';
import { PATCH_OP_SCHEMA } from './schema.ts';

/** Most operations one PATCH may carry. */
export const MAX_PATCH_OPERATIONS = 1000;

interface Operation {
  op: 'add' | 'replace' | 'remove';
  path?: string;
  value?: JsonValue;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks a PatchOp body and returns its operations with lower-case ops.
 * @throws ScimError 400 `invalidSyntax` / `invalidValue` / `noTarget`.
 */
export function readPatch(body: unknown): Operation[] {
  if (!isObject(body)) throw badRequest('invalidSyntax', 'the body must be a JSON object (a SCIM PatchOp)');
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.includes(PATCH_OP_SCHEMA)) {
    throw badRequest('invalidSyntax', `a PATCH body must list '${PATCH_OP_SCHEMA}' in 'schemas'`);
  }
  const operations = body.Operations ?? body.operations;
  if (!Array.isArray(operations) || operations.length === 0) {
    throw badRequest('invalidSyntax', "a PATCH body needs 'Operations': a non-empty list of { op, path, value }");
  }
  if (operations.length > MAX_PATCH_OPERATIONS) {
    throw badRequest('invalidValue', `a PATCH may carry at most ${MAX_PATCH_OPERATIONS} operations`);
  }
  const normalised = operations.map((raw, index): Operation => {
    if (!isObject(raw)) throw badRequest('invalidSyntax', `Operations[${index}] must be an object { op, path, value }`);
    const op = typeof raw.op === 'string' ? raw.op.toLowerCase() : '';
    if (op !== 'add' && op !== 'replace' && op !== 'remove') {
      throw badRequest(
        'invalidSyntax',
        `Operations[${index}].op must be add, replace or remove, not ${JSON.stringify(raw.op)}`,
      );
    }
    if (raw.path !== undefined && (typeof raw.path !== 'string' || raw.path.trim() === '')) {
      throw badRequest('invalidPath', `Operations[${index}].path must be a non-empty string`);
    }
    if (op === 'remove' && raw.path === undefined) {
      throw badRequest('noTarget', `Operations[${index}] is a remove without a path: say what to remove`);
    }
    if (op !== 'remove' && !('value' in raw)) {
      throw badRequest('invalidValue', `Operations[${index}] is an ${op} without a value`);
    }
    return {
      op,
      ...(raw.path !== undefined ? { path: raw.path as string } : {}),
      ...('value' in raw ? { value: raw.value } : {}),
    };
  });
  // Run the library's own validation too, so a body it would refuse is refused here, with our message.
  try {
    patchBodyValidation({ schemas: [PATCH_OP_SCHEMA], Operations: normalised as ScimPatchOperation[] });
  } catch (error) {
    throw fromLibrary(error);
  }
  return normalised;
}

/** A member removal by value lists, compared by id alone (IdPs add `display` to some and not to others). */
function smoothMembers(operation: Operation): Operation[] {
  if (operation.op !== 'remove' || operation.path?.toLowerCase() !== 'members' || operation.value === undefined) {
    return [operation];
  }
  const values = Array.isArray(operation.value) ? operation.value : [operation.value];
  return values.map((item) => {
    const id = isObject(item) ? item.value : item;
    if (typeof id !== 'string') throw badRequest('invalidValue', 'a member to remove must be { "value": USER_ID }');
    return { op: 'remove', path: `members[value eq ${JSON.stringify(id)}]` };
  });
}

function fromLibrary(error: unknown): ScimError {
  if (error instanceof ScimError) return error;
  const scimCode = (error as { scimCode?: string }).scimCode;
  const known: ScimType[] = ['invalidSyntax', 'invalidPath', 'noTarget', 'invalidValue', 'invalidFilter'];
  const scimType = known.find((t) => t === scimCode) ?? 'invalidSyntax';
  return badRequest(scimType, `${(error as Error).message}; check the operation's path and value`);
}

/**
 * Applies the operations to `resource` (not mutated) and returns the result. `active` given as a string is
 * turned into a boolean here, so every reader downstream sees a boolean.
 */
export function applyPatch(resource: JsonObject, operations: Operation[]): JsonObject {
  const document = { ...structuredClone(resource), meta: { created: new Date(0), lastModified: new Date(0) } };
  let patched: ScimResource;
  try {
    patched = scimPatch(
      document as unknown as ScimResource,
      operations.flatMap(smoothMembers) as ScimPatchOperation[],
      { mutateDocument: true, treatMissingAsAdd: true },
    );
  } catch (error) {
    throw fromLibrary(error);
  }
  const { meta: _meta, ...result } = patched as unknown as JsonObject & { meta: unknown };
  return result;
}
