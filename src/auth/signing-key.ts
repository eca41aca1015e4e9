/**
 * Persistence of the Ed25519 key that signs kubevisa access tokens. Kept apart from access-tokens.ts because
 * this is the only part of token handling that touches the file system.
 *
 * The key is a PKCS#8 PEM file readable by its owner only (0600), like an SSH private key; a key file that
 * group or others can read is refused rather than silently used, since anyone who reads it can mint tokens. The one
 * exception is a root-owned file its group may read (a Kubernetes Secret mounted with an fsGroup; see
 * isPrivateKeyFileMode). Replicas read the same key from such a mount (the Helm chart's Secret).
 * The key id is the RFC 7638 JWK thumbprint of the public key, so it is stable across restarts and replicas
 * without being stored.
 */
import { KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';

import { calculateJwkThumbprint } from 'jose';

import { InvalidInput } from '../domain/errors.ts';
import {
  ensureKeyFolder,
  readPrivateKeyFile,
  readPrivateKeyFileIfPresent,
  writePrivateKeyOnce,
} from '../pki/key-files.ts';

/** File name of the signing key inside the data directory. */
export const SIGNING_KEY_FILE = 'access-token-signing-key.pem';

export interface SigningKey {
  /** Ed25519 private key: signs access tokens. Never log or export it. */
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** RFC 7638 thumbprint (SHA-256, base64url) of the public JWK; use as `kid`. */
  keyId: string;
  /** Absolute or data-dir-relative path of the key file. */
  path: string;
  /** True when this call generated the key (first start). */
  created: boolean;
}

const SIGNING_KEY = {
  name: 'the access-token signing key',
  ifExposed: 'replace the key if anyone else may have read it',
};

async function keyIdOf(publicKey: KeyObject): Promise<string> {
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.crv !== 'string' || typeof jwk.x !== 'string') {
    throw new InvalidInput('the signing key has no Ed25519 public component');
  }
  return calculateJwkThumbprint({ kty: 'OKP', crv: jwk.crv, x: jwk.x }, 'sha256');
}

async function parseKey(path: string, pem: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new InvalidInput(`the access-token signing key ${path} is not a readable PEM private key`, {
      details: { path },
      cause,
    });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new InvalidInput(
      `the access-token signing key ${path} is a ${privateKey.asymmetricKeyType ?? 'unknown'} key; kubevisa signs with Ed25519 only`,
      { details: { path } },
    );
  }
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: await keyIdOf(publicKey), path, created: false };
}

/**
 * Loads the access-token signing key from `dataDir`, or generates and stores one on first start.
 *
 * Creating is crash- and race-safe: the key is written and fsynced to a private temporary file, then
 * hard-linked to its final name. `link` never overwrites, so when two processes start at once exactly one key
 * wins and both end up using it, and a crash can never leave a half-written key under the final name.
 * `dataDir` is created (mode 0700) if missing, and refused if others could write it (ensureKeyFolder).
 */
export async function loadOrCreateSigningKey(dataDir: string): Promise<SigningKey> {
  if (typeof dataDir !== 'string' || dataDir === '') {
    throw new InvalidInput('dataDir must be a directory path');
  }
  await ensureKeyFolder(dataDir);
  const path = join(dataDir, SIGNING_KEY_FILE);
  const existing = await readPrivateKeyFileIfPresent(path, SIGNING_KEY);
  if (existing !== undefined) return await parseKey(path, existing);

  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  // Another process may have created the key first: then use theirs, so every replica signs with the same key.
  if ((await writePrivateKeyOnce(path, pem)) === 'exists') {
    return await parseKey(path, await readPrivateKeyFile(path, SIGNING_KEY));
  }
  return { privateKey, publicKey, keyId: await keyIdOf(publicKey), path, created: true };
}
