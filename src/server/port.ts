/**
 * Whether the server's port is free, asked before anything else starts (the identity provider, the store, the
 * reconciler): a second `kubevisa server` on a taken port is told so at once, naming the process that holds it
 * when the system says (Linux: /proc), instead of dying with a bare EADDRINUSE after connecting to the IdP.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { KubevisaError } from '../domain/errors.ts';

/** The configured port is taken by another process (or may not be bound by this one). */
export class PortUnavailable extends KubevisaError {
  static override code = 'ERR_PORT_IN_USE';
}

/** Who holds a listening TCP port: the process id and its command line (at most 120 characters). */
export interface PortHolder {
  pid: number;
  command: string;
}

/**
 * Binds `host:port` for a moment and lets go: resolves when the server could listen there.
 * @throws PortUnavailable saying which port, which process holds it when that can be known, and what to do.
 */
export async function assertPortFree(host: string, port: number): Promise<void> {
  const probe = createServer();
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    probe.once('error', resolve);
    probe.listen({ host, port, exclusive: true }, () => resolve(undefined));
  });
  if (error === undefined) {
    await new Promise((resolve) => probe.close(resolve));
    return;
  }
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (error.code === 'EADDRINUSE') {
    const holder = await portHolder(port).catch(() => undefined);
    const by = holder ? ` (by PID ${holder.pid}, ${holder.command})` : ' (by another process)';
    throw new PortUnavailable(
      `port ${port} is in use${by}: kubevisa cannot listen on ${where}; stop that process or set another 'listen.port'`,
      { details: { host, port, ...(holder ? { pid: holder.pid, command: holder.command } : {}) } },
    );
  }
  if (error.code === 'EACCES') {
    throw new PortUnavailable(
      `port ${port} may not be bound by this user: choose a port above 1023 for 'listen.port' (or grant CAP_NET_BIND_SERVICE)`,
      { details: { host, port } },
    );
  }
  if (error.code === 'EADDRNOTAVAIL') {
    throw new PortUnavailable(`${host} is not an address of this machine: set 'listen.host' to one it has`, {
      details: { host, port },
    });
  }
  throw error;
}

/**
 * The process listening on TCP `port` (any address), from /proc/net/tcp{,6} and the processes' open sockets.
 * Undefined where /proc is missing (not Linux) or the holder is not visible to this user.
 */
export async function portHolder(port: number, proc = '/proc'): Promise<PortHolder | undefined> {
  const inodes = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`${proc}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [, local, , state] = fields;
      const inode = fields[9];
      // State 0A is LISTEN; the local address ends in the port, in hex.
      if (state !== '0A' || local === undefined || inode === undefined || inode === '0') continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(`socket:[${inode}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of await readdir(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    const fds = await readdir(`${proc}/${entry}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`${proc}/${entry}/fd/${fd}`).catch(() => '');
      if (!inodes.has(target)) continue;
      // The command line, not `comm`: Node names its main thread `MainThread` there.
      const argv = (await readFile(`${proc}/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
      const [program = '?', ...args] = argv;
      const line = [program.slice(program.lastIndexOf('/') + 1), ...args].join(' ');
      return { pid: Number(entry), command: line.length > 120 ? `${line.slice(0, 119)}…` : line };
    }
  }
  return undefined;
}
