/**
 * Serving certificates that change under a running server: cert-manager (or OpenShift's service CA) renews the
 * Secret mounted as `tls.crt` / `tls.key`, and the kubelet swaps the files in place. The server picks the new pair
 * up without a restart; connections already open keep the certificate they were made with.
 */
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { readPrivateKeyFile, unopenableFile } from './key-files.ts';

/**
 * Reads the serving key (`tls.keyFile`) under the same rule as kubevisa's other private keys (readPrivateKeyFile:
 * a regular file, owned by kubevisa's user or root, readable by no one else), so a key others could read is refused
 * with what to run rather than served. Used at start and on every reload.
 */
export async function readTlsKeyFile(path: string): Promise<Buffer> {
  const pem = await readPrivateKeyFile(path, {
    name: 'the TLS private key (tls.keyFile)',
    ifExposed: 'replace the key and its certificate if anyone else may have read it',
  });
  return Buffer.from(pem, 'utf8');
}

/**
 * The serving certificate and key as the server starts with them (the key checked by readTlsKeyFile). A file that
 * cannot be opened is an InvalidInput naming the config field and the path.
 */
export async function readTlsPair(tls: { certFile: string; keyFile: string }): Promise<{ cert: Buffer; key: Buffer }> {
  const readCert = readFile(tls.certFile).catch((error: unknown) => {
    throw unopenableFile('the TLS certificate (tls.certFile)', tls.certFile, error);
  });
  const [cert, key] = await Promise.all([readCert, readTlsKeyFile(tls.keyFile)]);
  return { cert, key };
}

/** Something whose serving certificate can be replaced (node:https and node:tls servers). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

/** How often the files are compared, in milliseconds (default 10 s). */
export const DEFAULT_TLS_CHECK_MS = 10_000;

/**
 * Re-reads `certFile` and `keyFile` every `checkIntervalMs` and, when either changed and the pair makes a valid
 * context (a certificate matching its key), installs it. A half-written or mismatched pair (the certificate already
 * renewed, the key not yet) is skipped and tried again at the next check, never installed; so is a key file that
 * readTlsKeyFile refuses (others could read it), even one whose content did not change: the server keeps the pair
 * it has and onError says why, at every check until the file is fixed.
 * @returns check() to compare now (true when a new pair was installed) and stop().
 */
export function reloadTlsOnChange(options: {
  server: SecureContextTarget;
  certFile: string;
  keyFile: string;
  /** The pair the server started with, so only a change installs anything. */
  initial: { cert: Buffer; key: Buffer };
  checkIntervalMs?: number;
  onReloaded?: () => void;
  onError?: (error: Error) => void;
}): { check(): Promise<boolean>; stop(): void } {
  let current = options.initial;
  const check = async () => {
    const { cert, key } = await readTlsPair(options);
    if (cert.equals(current.cert) && key.equals(current.key)) return false;
    // Throws for a key that does not match the certificate, before the server is touched.
    createSecureContext({ cert, key });
    options.server.setSecureContext({ cert, key });
    current = { cert, key };
    options.onReloaded?.();
    return true;
  };
  const timer = setInterval(() => {
    check().catch((error: unknown) => options.onError?.(error instanceof Error ? error : new Error(String(error))));
  }, options.checkIntervalMs ?? DEFAULT_TLS_CHECK_MS);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}
