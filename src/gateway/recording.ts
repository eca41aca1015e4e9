/**
 * Session recording for profiles that ask for it: exec and attach sessions relayed over WebSocket
 * (`v5.channel.k8s.io` and its predecessors: binary messages whose first byte is the channel — 0 stdin,
 * 1 stdout, 2 stderr, 3 error, 4 resize) are written as asciicast v2 files (one JSON header line, then one
 * `[seconds, code, data]` line per event). The frames are only observed, never changed.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Incremental RFC 6455 frame reader for one direction of a connection; yields whole messages. */
export class WebSocketReader {
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private readonly onMessage: (payload: Buffer) => void;

  constructor(onMessage: (payload: Buffer) => void) {
    this.onMessage = onMessage;
  }

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) return;
      const first = this.buffer[0]!;
      const second = this.buffer[1]!;
      const fin = (first & 0x80) !== 0;
      const opcode = first & 0x0f;
      const masked = (second & 0x80) !== 0;
      let length = second & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      const maskAt = offset;
      if (masked) offset += 4;
      if (this.buffer.length < offset + length) return;
      const payload = Buffer.from(this.buffer.subarray(offset, offset + length));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= this.buffer[maskAt + (i % 4)]!;
      this.buffer = this.buffer.subarray(offset + length);
      if (opcode >= 0x8) continue; // close, ping, pong: control frames carry no session data
      this.fragments.push(payload);
      if (fin) {
        const message = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments);
        this.fragments = [];
        this.onMessage(message);
      }
    }
  }
}

export interface Recording {
  /** Path of the .cast file. */
  file: string;
  input(chunk: Buffer): void;
  output(chunk: Buffer): void;
  /** Flushes and closes the file; resolves with its size and SHA-256 for the audit trail. */
  close(): Promise<{ bytes: number; sha256: string }>;
}

export async function startRecording(
  file: string,
  meta: { title: string; startedAt: number; command?: string },
): Promise<Recording> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const out: WriteStream = createWriteStream(file, { mode: 0o600, flags: 'wx' });
  const hash = createHash('sha256');
  let bytes = 0;
  const write = (line: string) => {
    const data = `${line}\n`;
    hash.update(data);
    bytes += Buffer.byteLength(data);
    out.write(data);
  };
  write(
    JSON.stringify({
      version: 2,
      width: 80,
      height: 24,
      timestamp: Math.floor(meta.startedAt / 1000),
      title: meta.title,
      ...(meta.command ? { command: meta.command } : {}),
    }),
  );
  const elapsed = () => Number(((Date.now() - meta.startedAt) / 1000).toFixed(6));
  const event = (code: string, data: string) => write(JSON.stringify([elapsed(), code, data]));
  const fromClient = new WebSocketReader((message) => {
    const channel = message[0];
    const data = message.subarray(1);
    if (channel === 0 && data.length > 0) event('i', data.toString('utf8'));
    else if (channel === 4 && data.length > 0) {
      try {
        const size = JSON.parse(data.toString('utf8')) as { Width?: number; Height?: number };
        if (size.Width && size.Height) event('r', `${size.Width}x${size.Height}`);
      } catch {
        event('r', 'unknown');
      }
    }
  });
  const fromServer = new WebSocketReader((message) => {
    const channel = message[0];
    const data = message.subarray(1);
    if ((channel === 1 || channel === 2) && data.length > 0) event('o', data.toString('utf8'));
  });
  return {
    file,
    input: (chunk) => fromClient.push(chunk),
    output: (chunk) => fromServer.push(chunk),
    close: () =>
      new Promise((resolve, reject) => {
        out.end(() => resolve({ bytes, sha256: hash.digest('hex') }));
        out.once('error', reject);
      }),
  };
}

/**
 * Where WebSocket frames begin in one direction of a connection, followed from their headers only (payloads are
 * skipped, never copied): so that the gateway can tell whether a frame of its own may be put on the wire now
 * without tearing one being relayed or splitting a fragmented message.
 */
export class FrameBoundary {
  private header: number[] = [];
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  /** A data message was begun by a frame without FIN: only its continuation may come next. */
  private midMessage = false;

  get atBoundary(): boolean {
    return this.remaining === 0 && this.header.length === 0 && !this.midMessage;
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const skipped = Math.min(this.remaining, chunk.length - i);
        this.remaining -= skipped;
        i += skipped;
        continue;
      }
      this.header.push(chunk[i++]!);
      const h = this.header;
      if (h.length < 2) continue;
      const length7 = h[1]! & 0x7f;
      const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0;
      if (h.length < 2 + extended + (h[1]! & 0x80 ? 4 : 0)) continue;
      let length = length7;
      if (extended > 0) {
        length = 0;
        for (let b = 0; b < extended; b++) length = length * 256 + h[2 + b]!;
      }
      const opcode = h[0]! & 0x0f;
      // Control frames (close, ping, pong) may come between the fragments of a message and end nothing.
      if (opcode < 0x8) this.midMessage = (h[0]! & 0x80) === 0;
      this.header = [];
      this.remaining = length;
    }
  }
}

/**
 * A server-to-client binary message on a channel of the Kubernetes streaming protocol (`v4`/`v5.channel.k8s.io`):
 * the first payload byte is the channel (3 is the error channel, which carries a Status).
 */
export function channelFrame(channel: number, data: Buffer): Buffer {
  const length = data.length + 1;
  const header =
    length < 126
      ? Buffer.from([0x82, length])
      : length < 65_536
        ? Buffer.from([0x82, 126, length >> 8, length & 0xff])
        : Buffer.concat([Buffer.from([0x82, 127]), bigEndian64(length)]);
  return Buffer.concat([header, Buffer.from([channel]), data]);
}

/** A close frame with status 1000 (normal closure). */
export const CLOSE_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xe8]);

function bigEndian64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}
