import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { channelFrame, CLOSE_FRAME, FrameBoundary, WebSocketReader } from './recording.ts';

/** A server-to-client frame (unmasked) with the given first byte (FIN + opcode). */
function frame(first: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head =
    n < 126 ? Buffer.from([first, n]) : n < 65_536 ? Buffer.from([first, 126, n >> 8, n & 0xff]) : Buffer.alloc(0);
  return Buffer.concat([head, payload]);
}

describe('WebSocket frame boundaries', () => {
  test('follows frames split anywhere, long ones included, and knows when one may be put between them', () => {
    const stream = Buffer.concat([
      frame(0x82, Buffer.from('\x01hello')),
      frame(0x82, Buffer.alloc(300, 7)),
      frame(0x89, Buffer.from('ping')),
    ]);
    for (let cut = 1; cut < stream.length; cut += 7) {
      const boundary = new FrameBoundary();
      boundary.push(stream.subarray(0, cut));
      const atFrameEdge = [0, 8, 8 + 304, stream.length].includes(cut);
      assert.equal(boundary.atBoundary, atFrameEdge, `cut at ${cut}`);
      boundary.push(stream.subarray(cut));
      assert.equal(boundary.atBoundary, true);
    }
  });

  test('is not at a boundary between the fragments of a message, even after a control frame', () => {
    const boundary = new FrameBoundary();
    boundary.push(frame(0x02, Buffer.from('\x01par')));
    assert.equal(boundary.atBoundary, false);
    boundary.push(frame(0x89, Buffer.from('ping')));
    assert.equal(boundary.atBoundary, false);
    boundary.push(frame(0x80, Buffer.from('tial')));
    assert.equal(boundary.atBoundary, true);
  });

  test("the gateway's error-channel message and close frame read back as one message on channel 3", () => {
    const messages: Buffer[] = [];
    const reader = new WebSocketReader((m) => messages.push(m));
    const status = Buffer.from(JSON.stringify({ kind: 'Status', message: 'x'.repeat(200) }));
    reader.push(Buffer.concat([channelFrame(3, status), CLOSE_FRAME]));
    assert.equal(messages.length, 1);
    assert.equal(messages[0]![0], 3);
    assert.deepEqual(messages[0]!.subarray(1), status);
  });
});
