/** `kubevisa audit checkpoint` (POST /api/v1/audit/checkpoints): sign the trail's head now and print the checkpoint. */
import type { CommandRun } from '../framework.ts';
import { clientFrom, emit, noPositionals, outputFormat } from '../options.ts';
import type { CheckpointJson } from './audit-shared.ts';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  noPositionals(positionals, 'audit checkpoint');
  const client = await clientFrom(values);
  const checkpoint = await client.post<CheckpointJson>('/api/v1/audit/checkpoints');
  await emit(
    io,
    format,
    checkpoint,
    `checkpoint ${checkpoint.id}: the trail ends at seq ${checkpoint.seq} (hash ${checkpoint.hash}), ` +
      `signed ${checkpoint.time} with key ${checkpoint.keyId}.\n` +
      "Keep a copy ('-o json') somewhere else: 'kubevisa audit verify --checkpoint FILE' then proves the trail was " +
      'not cut short or rolled back since.',
  );
};
