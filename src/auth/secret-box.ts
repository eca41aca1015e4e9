/**
 * Encrypts secrets kubevisa must keep but never show (the IdP refresh token of a session) with AES-256-GCM
 * under a key in the data folder (mode 0600), so a copy of the database alone reveals none of them. The file holds
 * the 32-byte key in base64 (a trailing newline is fine); replicas share it (the Helm chart mounts it from a Secret,
 * root-owned 0440 there, which isPrivateKeyFileMode accepts).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';

import { InvalidInput } from '../domain/errors.ts';
import {
  ensureKeyFolder,
  readPrivateKeyFile,
  readPrivateKeyFileIfPresent,
  writePrivateKeyOnce,
} from '../pki/key-files.ts';

export interface SecretBox {
  /**
   * Names the key without revealing it (an HMAC of a fixed label under the key): servers sharing one store compare
   * it to make sure they all open what the others sealed.
   */
  readonly keyId: string;
  /**
   * A key for `purpose` derived from this one (HMAC-SHA256 of the purpose under it): what the replicas share for other
   * uses (signing change notifications) without using the encryption key itself for them.
   */
  deriveKey(purpose: string): Buffer;
  seal(plaintext: string): string;
  open(sealed: string): string;
}

const SESSION_KEY = {
  name: 'the session encryption key',
  ifExposed: 'replace the key if anyone else may have read it (docs/operations.md: rotating the shared keys)',
};

/**
 * Loads the key from `dataDir`, or makes one on first start (durably, and once when several servers start at once on
 * the same folder: see writePrivateKeyOnce).
 */
export async function loadOrCreateSecretBox(dataDir: string): Promise<SecretBox> {
  await ensureKeyFolder(dataDir);
  const file = join(dataDir, 'session-encryption.key');
  let text = await readPrivateKeyFileIfPresent(file, SESSION_KEY);
  if (text === undefined) {
    const created = randomBytes(32).toString('base64') + '\n';
    // Another server starting on the same folder may write its key first: then this one uses it too.
    text =
      (await writePrivateKeyOnce(file, created)) === 'created' ? created : await readPrivateKeyFile(file, SESSION_KEY);
  }
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) {
    // A file cut short by a crash of an older kubevisa (which wrote it in place), or one copied wrong.
    throw new InvalidInput(
      `the session encryption key ${file} does not hold a 32-byte key in base64 (it decodes to ${key.length} ` +
        "bytes): put the key every server shares there (the Secret's session-encryption.key), or, for a single " +
        'server, remove the file to have a new one made at start (every session then logs in again)',
      { details: { path: file, bytes: key.length } },
    );
  }
  return {
    keyId: createHmac('sha256', key).update('kubevisa secret-box key id v1').digest('base64url').slice(0, 22),
    deriveKey(purpose) {
      return createHmac('sha256', key).update(`kubevisa derived key v1: ${purpose}`).digest();
    },
    seal(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [
        'v1',
        iv.toString('base64url'),
        body.toString('base64url'),
        cipher.getAuthTag().toString('base64url'),
      ].join('.');
    },
    open(sealed) {
      const [version, iv, body, tag] = sealed.split('.');
      if (version !== 'v1' || !iv || !body || !tag) throw new Error('sealed value has an unknown format');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}
