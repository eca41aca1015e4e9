/**
 * The `audit` section of the server configuration (all optional):
 *
 *     audit:
 *       checkpointInterval: 5m     # sign a checkpoint this often when the trail has grown (default 5m)
 *       verifyInterval: 1h         # also verify the whole trail this often (default: only on demand)
 *       keyFile: audit-key.pem     # checkpoint signing key (default <dataDir>/audit-checkpoint-key.pem)
 */
import { isAbsolute, join } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import { parseDuration } from '../domain/time.ts';
import { CHECKPOINT_KEY_FILE } from './checkpoints.ts';

export interface AuditConfig {
  /** How often a checkpoint is signed when the trail grew, in milliseconds; default 300000 (5 minutes). */
  checkpointIntervalMs: number;
  /** How often the whole trail is verified in the background, in milliseconds; undefined (default): on demand only. */
  verifyIntervalMs?: number;
  /** Absolute path of the checkpoint signing key (a relative one is taken from the data folder). */
  keyFile: string;
}

const KNOWN = ['checkpointInterval', 'verifyInterval', 'keyFile'];

export function parseAuditConfig(raw: unknown, dataDir: string): AuditConfig {
  const section = raw ?? {};
  if (typeof section !== 'object' || section === null || Array.isArray(section)) {
    throw new InvalidInput(`config: 'audit' must be an object with any of ${KNOWN.join(', ')}`);
  }
  const fields = section as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!KNOWN.includes(key)) {
      throw new InvalidInput(`config: unknown field 'audit.${key}'; known fields: ${KNOWN.join(', ')}`);
    }
  }
  const keyFile = fields.keyFile ?? CHECKPOINT_KEY_FILE;
  if (typeof keyFile !== 'string' || keyFile.trim() === '') {
    throw new InvalidInput(`config: 'audit.keyFile' must be a file path`);
  }
  const milliseconds = (field: string) => parseDuration(fields[field], `config audit.${field}`) * 1000;
  return {
    checkpointIntervalMs: fields.checkpointInterval === undefined ? 300_000 : milliseconds('checkpointInterval'),
    ...(fields.verifyInterval === undefined ? {} : { verifyIntervalMs: milliseconds('verifyInterval') }),
    keyFile: isAbsolute(keyFile) ? keyFile : join(dataDir, keyFile),
  };
}
