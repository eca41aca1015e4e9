/**
 * A flood of anonymous requests at the gateway, as cheap to send as HTTP gets: raw HTTP/1.1 pipelined on a few
 * keep-alive TLS connections from a loopback address of its own (so per-address limits tell it apart from the
 * contractor being measured), bounded in flight, ending by itself.
 */
import { connect as connectTcp } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';

export interface FloodOptions {
  port: number;
  ca: Buffer;
  /** Path below the gateway, e.g. `/clusters/test/api/v1/namespaces/x/pods`. */
  path: string;
  /** Requests in all, or until `stop()` when undefined. */
  requests?: number;
  connections?: number;
  /** Local address to send from (any 127.x.y.z works on Linux loopback); default 127.0.0.2. */
  from?: string;
  /**
   * Requests written at once on a connection, the next batch only once all are answered (default 24). Node's HTTP
   * server pauses a connection whose pipelined answers pile up, and over TLS it then drops it (HPE_PAUSED): a batch
   * must fit its 16 KiB high-water mark.
   */
  batch?: number;
  /** Give up (and reject) after this long, in ms (default 120 000). */
  timeoutMs?: number;
}

export interface FloodResult {
  sent: number;
  answered: number;
  statuses: Record<number, number>;
  ms: number;
}

/** Starts the flood; `done` resolves when every request sent has been answered (after `requests`, or `stop()`). */
export function startFlood(options: FloodOptions): { done: Promise<FloodResult>; stop: () => void } {
  const connections = options.connections ?? 8;
  const batch = options.batch ?? 24;
  const total = options.requests;
  const statuses: Record<number, number> = {};
  let sent = 0;
  let answered = 0;
  let stopped = false;
  const started = performance.now();
  const sockets: TLSSocket[] = [];
  const request = (i: number) =>
    `GET ${options.path}?n=${i} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: flood/${i % 1000}\r\n` +
    (i % 3 === 0 ? 'Authorization: Bearer not-a-token\r\n' : '') +
    '\r\n';
  let settleIfDone = () => {};
  const done = new Promise<FloodResult>((resolve, reject) => {
    let finished = false;
    const finish = (error?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      if (error) reject(error);
      else resolve({ sent, answered, statuses, ms: performance.now() - started });
    };
    const timer = setTimeout(
      () => finish(new Error(`the flood did not end within ${options.timeoutMs ?? 120_000} ms (${answered}/${sent})`)),
      options.timeoutMs ?? 120_000,
    );
    const allAnswered = () => (stopped || (total !== undefined && sent >= total)) && answered >= sent;
    settleIfDone = () => {
      if (allAnswered()) finish();
    };
    for (let c = 0; c < connections; c++) {
      const tcp = connectTcp({ host: '127.0.0.1', port: options.port, localAddress: options.from ?? '127.0.0.2' });
      const socket = connect({ socket: tcp, ca: options.ca, servername: 'localhost' });
      sockets.push(socket);
      let inFlight = 0;
      let tail = '';
      const refill = () => {
        if (stopped || inFlight > 0) return;
        const n = Math.min(batch, total === undefined ? batch : total - sent);
        if (n <= 0) return;
        let text = '';
        for (let i = 0; i < n; i++) text += request(sent + i);
        sent += n;
        inFlight += n;
        socket.write(text);
      };
      socket.on('secureConnect', refill);
      socket.on('data', (chunk: Buffer) => {
        // Status lines, also when one is split across two reads (the JSON bodies never contain "HTTP/1.1 ").
        const text = tail + chunk.toString('latin1');
        let last = 0;
        for (const match of text.matchAll(/HTTP\/1\.1 (\d{3})/g)) {
          const status = Number(match[1]);
          statuses[status] = (statuses[status] ?? 0) + 1;
          answered++;
          inFlight--;
          last = match.index + match[0].length;
        }
        tail = text.slice(Math.max(last, text.length - 12));
        if (allAnswered()) finish();
        else refill();
      });
      socket.on('error', (error) => finish(error));
      socket.on('close', () => {
        if (!allAnswered()) finish(new Error(`a flood connection closed early (${answered}/${sent} answered)`));
      });
    }
  });
  return {
    done,
    stop: () => {
      stopped = true;
      settleIfDone();
    },
  };
}

export interface ManyAddressFloodOptions {
  port: number;
  ca: Buffer;
  /** Path below the gateway, e.g. `/clusters/test/api/v1/namespaces/x/pods`. */
  path: string;
  /** Local addresses to send from, one request each, on a connection of its own (loopback 127.0.0.0/8 on Linux). */
  addresses: string[];
  /** Connections open at once (default 32). */
  concurrency?: number;
  /** Give up (and reject) after this long, in ms (default 120 000). */
  timeoutMs?: number;
}

/** `count` loopback addresses, none of them 127.0.0.x (which the tests use one by one): 127.(1+i/62500).x.y. */
export function loopbackAddresses(count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const block = Math.floor(i / 62_500);
    const n = i % 62_500;
    return `127.${1 + block}.${Math.floor(n / 250)}.${(n % 250) + 1}`;
  });
}

/**
 * One anonymous request from each of many addresses (the way a source holding a whole IPv6 /48 would send them):
 * resolves with the count of each status once every one has been answered.
 */
export async function floodFromMany(options: ManyAddressFloodOptions): Promise<FloodResult> {
  const statuses: Record<number, number> = {};
  const started = performance.now();
  let next = 0;
  let answered = 0;
  // Resumed TLS sessions: a full handshake per address would make the flood measure TLS, not the gateway.
  let session: Buffer | undefined;
  const one = (from: string, i: number) =>
    new Promise<void>((resolve, reject) => {
      const tcp = connectTcp({ host: '127.0.0.1', port: options.port, localAddress: from });
      const socket = connect({
        socket: tcp,
        ca: options.ca,
        servername: 'localhost',
        ...(session ? { session } : {}),
      });
      socket.on('session', (s: Buffer) => (session ??= s));
      let received = '';
      socket.on('secureConnect', () =>
        socket.write(
          `GET ${options.path}?n=${i} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: many/${i % 50}/${'x'.repeat(180)}\r\n` +
            (i % 2 === 0 ? 'Authorization: Bearer not-a-token\r\n' : '') +
            'Connection: close\r\n\r\n',
        ),
      );
      socket.on('data', (c: Buffer) => {
        received += c.toString('latin1');
        const status = /^HTTP\/1\.1 (\d{3})/.exec(received);
        if (status) {
          statuses[Number(status[1])] = (statuses[Number(status[1])] ?? 0) + 1;
          answered++;
          socket.destroy();
          resolve();
        }
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`the connection from ${from} closed unanswered`)));
    });
  const worker = async () => {
    while (next < options.addresses.length) {
      const i = next++;
      await one(options.addresses[i]!, i);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the flood did not end within ${options.timeoutMs ?? 120_000} ms (${answered} answered)`)),
      options.timeoutMs ?? 120_000,
    );
  });
  try {
    // The first connection alone, so that the others can resume its session.
    if (options.addresses.length > 0) await Promise.race([one(options.addresses[next++]!, 0), timeout]);
    await Promise.race([Promise.all(Array.from({ length: options.concurrency ?? 32 }, worker)), timeout]);
  } finally {
    clearTimeout(timer);
  }
  return { sent: options.addresses.length, answered, statuses, ms: performance.now() - started };
}
