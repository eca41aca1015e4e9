/** Errors only the store raises; the shared ones (NotFound, Conflict) come from src/domain/errors.ts. */
import { KubevisaError } from '../domain/errors.ts';

/** The store cannot serve the call (closed, or its database refused to open). Fail closed: nothing changed. */
export class StoreUnavailable extends KubevisaError {
  static override code = 'ERR_STORE_UNAVAILABLE';
  constructor(message: string, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, { ...options, status: 503 });
  }
}

/**
 * A stored row does not have the shape this build writes (a bad JSON column, an unknown state): the database
 * was edited by hand or by a different build. Never "repaired" silently.
 */
export class StoreCorrupt extends KubevisaError {
  static override code = 'ERR_STORE_CORRUPT';
  constructor(message: string, options: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, { ...options, status: 500 });
  }
}
