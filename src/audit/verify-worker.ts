/**
 * A worker thread of the offline verifier (verify-file.ts): checks the chunks it is sent and answers with their
 * summaries. Hashing dominates verification, and chunks are independent, so several of these run at once.
 */
import { parentPort } from 'node:worker_threads';
import { verifyChunk } from './chunk.ts';

export interface ChunkTask {
  id: number;
  bytes: Uint8Array;
  last: boolean;
  wantSeqs: number[];
}

const port = parentPort;
if (port === null) throw new Error('verify-worker.ts runs only as a worker thread');
port.on('message', (task: ChunkTask) => {
  const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
  port.postMessage({ id: task.id, summary: verifyChunk(bytes, task.last, new Set(task.wantSeqs)) });
});
