/**
 * Signed checkpoints of the audit trail. The hash chain shows that no event was altered, removed or moved; it
 * cannot show that the trail was cut short or swapped for an older copy (a restored backup ends in a perfectly
 * valid chain). A checkpoint is an Ed25519 signature over "the trail ended at seq N with hash H at time T": any
 * copy of the trail that ends before N, or holds another event at N, contradicts a checkpoint someone kept.
 *
 * The signing key is a PKCS#8 PEM file readable by its owner only (0600) in the server's data folder; a key
 * file that group or others can read is refused (except a root-owned one its group may read: a Kubernetes Secret
 * mounted with an fsGroup, see isPrivateKeyFileMode). Replicas on one store must share it: each verifies the
 * checkpoints the others signed, and a checkpoint under an unknown key fails verification. Its id is the SHA-256 (base64url) of the public key's SPKI
 * DER, so a person can compare it with what the server shows.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, hash, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { dirname } from 'node:path';
import { InvalidInput } from '../domain/errors.ts';
import {
  ensureKeyFolder,
  readPrivateKeyFile,
  readPrivateKeyFileIfPresent,
  writePrivateKeyOnce,
} from '../pki/key-files.ts';
import { canonicalJson } from '../store/audit-chain.ts';
import type { AuditCheckpoint, NewAuditCheckpoint } from '../store/store.ts';

/** File names inside the server's data folder. */
export const CHECKPOINT_KEY_FILE = 'audit-checkpoint-key.pem';

/** What every checkpoint signature starts with, so a signature over anything else can never pass as one. */
const STATEMENT_PREFIX = 'kubevisa audit checkpoint v1\n';

export interface CheckpointKey {
  /** Signs checkpoints. Never log or export it. */
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SPKI PEM of the public key: what an auditor verifies checkpoints with. */
  publicKeyPem: string;
  keyId: string;
  path: string;
  /** True when this call generated the key (first start). */
  created: boolean;
}

const CHECKPOINT_KEY = {
  name: 'the audit checkpoint key',
  ifExposed: 'replace the key if anyone else may have read it',
};

/** base64url SHA-256 of the public key's SPKI DER. */
export function checkpointKeyId(publicKey: KeyObject): string {
  return hash('sha256', publicKey.export({ format: 'der', type: 'spki' }), 'base64url');
}

function fromPrivateKey(privateKey: KeyObject, path: string, created: boolean): CheckpointKey {
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    keyId: checkpointKeyId(publicKey),
    path,
    created,
  };
}

function parseKey(path: string, pem: string): CheckpointKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new InvalidInput(`the audit checkpoint key ${path} is not a readable PEM private key`, {
      details: { path },
      cause,
    });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new InvalidInput(
      `the audit checkpoint key ${path} is a ${privateKey.asymmetricKeyType ?? 'unknown'} key; checkpoints are signed with Ed25519 only`,
      { details: { path } },
    );
  }
  return fromPrivateKey(privateKey, path, false);
}

/**
 * Loads the checkpoint key at `path`, or generates it on first start. Crash- and race-safe as the access-token
 * key (src/auth/signing-key.ts): written and fsynced to a private temporary file, then hard-linked to its name,
 * which never overwrites, so two servers starting at once end up with the same key. Its folder is made (0700) if
 * missing and refused if others could write it (ensureKeyFolder).
 */
export async function loadOrCreateCheckpointKey(path: string): Promise<CheckpointKey> {
  await ensureKeyFolder(dirname(path), 'the folder of the audit checkpoint key (audit.keyFile)');
  const existing = await readPrivateKeyFileIfPresent(path, CHECKPOINT_KEY);
  if (existing !== undefined) return parseKey(path, existing);
  const { privateKey } = generateKeyPairSync('ed25519');
  const written = await writePrivateKeyOnce(path, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  if (written === 'exists') return parseKey(path, await readPrivateKeyFile(path, CHECKPOINT_KEY));
  return fromPrivateKey(privateKey, path, true);
}

/** Reads an Ed25519 public key (SPKI PEM), as an auditor is given it. */
export function parseCheckpointPublicKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new InvalidInput(`${where} is not a PEM public key`, { cause });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new InvalidInput(`${where} is a ${key.asymmetricKeyType ?? 'unknown'} key; checkpoints use Ed25519`);
  }
  return key;
}

/** The exact text a checkpoint's signature covers. */
export function checkpointStatement(checkpoint: Pick<AuditCheckpoint, 'seq' | 'hash' | 'at' | 'keyId'>): string {
  return (
    STATEMENT_PREFIX +
    canonicalJson({ at: checkpoint.at, hash: checkpoint.hash, keyId: checkpoint.keyId, seq: checkpoint.seq })
  );
}

/** Signs "the trail ended at `head` at `at`". */
export function signCheckpoint(
  key: CheckpointKey,
  head: { seq: number; hash: string },
  at: number,
): NewAuditCheckpoint {
  const unsigned = { seq: head.seq, hash: head.hash, at, keyId: key.keyId };
  const signature = sign(null, Buffer.from(checkpointStatement(unsigned), 'utf8'), key.privateKey).toString(
    'base64url',
  );
  return { ...unsigned, signature };
}

/** Whether `checkpoint` was signed by `publicKey` (and names that key). */
export function checkpointSignatureValid(
  checkpoint: Pick<AuditCheckpoint, 'seq' | 'hash' | 'at' | 'keyId' | 'signature'>,
  publicKey: KeyObject,
): boolean {
  if (checkpoint.keyId !== checkpointKeyId(publicKey)) return false;
  return verify(
    null,
    Buffer.from(checkpointStatement(checkpoint), 'utf8'),
    publicKey,
    Buffer.from(checkpoint.signature, 'base64url'),
  );
}

/** A checkpoint as exported or kept by an auditor; `id` is only known for one read from a server. */
export type CheckpointRecord = NewAuditCheckpoint & { id?: number };

const HEX64 = /^[0-9a-f]{64}$/;

/** Checks the shape of a checkpoint read from JSON (a file an auditor kept, a request body). */
export function parseCheckpoint(value: unknown, where: string): CheckpointRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInput(`${where} is not a checkpoint object: { seq, hash, at, keyId, signature }`);
  }
  const record = value as Record<string, unknown>;
  // `time` is how the API shows `at` to people: accepted so a checkpoint saved from the API reads back, but it
  // is not part of what was signed and is dropped.
  const allowed = ['id', 'seq', 'hash', 'at', 'keyId', 'signature', 'time'];
  for (const key of Object.keys(record)) {
    if (!allowed.includes(key)) throw new InvalidInput(`${where} has an unknown field '${key}'`);
  }
  const wholeNumber = (key: string, min: number): number => {
    const field = record[key];
    if (typeof field !== 'number' || !Number.isSafeInteger(field) || field < min) {
      throw new InvalidInput(`${where}.${key} must be a whole number >= ${min}`);
    }
    return field;
  };
  const textField = (key: string, pattern?: RegExp): string => {
    const field = record[key];
    if (typeof field !== 'string' || field === '' || (pattern !== undefined && !pattern.test(field))) {
      throw new InvalidInput(
        `${where}.${key} must be ${pattern === undefined ? 'a non-empty string' : 'a hex SHA-256'}`,
      );
    }
    return field;
  };
  return {
    ...(record.id === undefined ? {} : { id: wholeNumber('id', 1) }),
    seq: wholeNumber('seq', 0),
    hash: textField('hash', HEX64),
    at: wholeNumber('at', 0),
    keyId: textField('keyId'),
    signature: textField('signature'),
  };
}
