/**
 * A small local certificate authority for the development control plane, the demo and tests: keys are
 * generated with node:crypto (EC P-256), certificates are signed with the system's `openssl` (Node has no
 * X.509 writer). Everything lives in files under a folder the caller owns; private keys get mode 0600.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

export interface LeafOptions {
  /** Base file name in the CA's folder: `<name>.crt` and `<name>.key`. */
  name: string;
  commonName: string;
  /** Subject organisations; for Kubernetes client certificates these become groups. */
  organizations?: string[];
  /** Subject alternative names: IP addresses and DNS names. */
  ipAddresses?: string[];
  dnsNames?: string[];
  usage: 'server' | 'client' | 'server+client';
  /** Validity in days; default 365. */
  days?: number;
}

export class LocalCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.certFile = join(dir, 'ca.crt');
    this.keyFile = join(dir, 'ca.key');
  }

  /** The CA that `create` made in `dir` earlier (its ca.crt and ca.key), to issue more certificates. */
  static open(dir: string): LocalCa {
    return new LocalCa(dir);
  }

  /** Creates a new CA (ten years) in `dir`, which must exist. */
  static async create(dir: string, commonName: string): Promise<LocalCa> {
    const ca = new LocalCa(dir);
    await writePrivateKey(ca.keyFile);
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      ca.keyFile,
      '-subj',
      `/CN=${escapeSubject(commonName)}`,
      '-days',
      '3650',
      '-sha256',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      '-out',
      ca.certFile,
    ]);
    return ca;
  }

  /** Issues a leaf certificate signed by this CA. */
  async issue(options: LeafOptions): Promise<CertificateFiles> {
    const keyFile = join(this.dir, `${options.name}.key`);
    const certFile = join(this.dir, `${options.name}.crt`);
    const csrFile = join(this.dir, `${options.name}.csr`);
    const extFile = join(this.dir, `${options.name}.ext`);
    await writePrivateKey(keyFile);
    const subject =
      (options.organizations ?? []).map((o) => `/O=${escapeSubject(o)}`).join('') +
      `/CN=${escapeSubject(options.commonName)}`;
    await openssl(['req', '-new', '-key', keyFile, '-subj', subject, '-out', csrFile]);
    const sans = [
      ...(options.ipAddresses ?? []).map((ip) => `IP:${ip}`),
      ...(options.dnsNames ?? []).map((dns) => `DNS:${dns}`),
    ];
    const extendedUsage = { server: 'serverAuth', client: 'clientAuth', 'server+client': 'serverAuth,clientAuth' }[
      options.usage
    ];
    const extensions = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${extendedUsage}`,
      ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
    ];
    await writeFile(extFile, extensions.join('\n') + '\n');
    await openssl([
      'x509',
      '-req',
      '-in',
      csrFile,
      '-CA',
      this.certFile,
      '-CAkey',
      this.keyFile,
      '-CAcreateserial',
      '-days',
      String(options.days ?? 365),
      '-sha256',
      '-extfile',
      extFile,
      '-out',
      certFile,
    ]);
    return { certFile, keyFile };
  }
}

async function writePrivateKey(file: string): Promise<void> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

/** Subject values are passed to openssl as `/K=V` strings, where `/` and `=` must be escaped. */
function escapeSubject(value: string): string {
  return value.replace(/[\\/=+]/g, (c) => `\\${c}`);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new Error('openssl is not installed: install it (Debian: apt-get install openssl) and try again', {
        cause: error,
      });
    }
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}
