/**
 * `kubevisa audit evidence --engagement ID [--out DIR]`: an evidence pack for one engagement, a folder an
 * auditor can check on their own machine:
 *
 *   events.jsonl      the trail from the last checkpoint before the engagement began to a checkpoint signed
 *                     now; the engagement's events in full, every other event redacted to its hashes
 *   checkpoints.json  the signed checkpoints in that window (the first anchors it, the last closes it)
 *   public-key.pem    the key that signed them
 *   engagement.json   the engagement as kubevisa holds it
 *   manifest.json     what the pack holds, with the SHA-256 of each file
 *   README.md         how to verify it
 *
 * The pack is verified once written, so a pack that would not verify is never handed over silently.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { parseCheckpoint, parseCheckpointPublicKey } from '../../audit/checkpoints.ts';
import { verifyExportFile } from '../../audit/verify-file.ts';
import { UsageError, type CommandRun } from '../framework.ts';
import { clientFrom, emit, positionalOrOption, optionalString, outputFormat } from '../options.ts';
import { streamGet, type CheckpointJson } from './audit-shared.ts';

interface EvidenceManifest {
  engagement: { id: string; name: string; vendor: string; contractors: string[]; sponsor: string };
  generatedAt: string;
  window: { afterSeq: number; throughSeq: number };
  anchor?: CheckpointJson;
  end: CheckpointJson;
  checkpoints: CheckpointJson[];
  publicKey: { algorithm: string; keyId: string; publicKeyPem: string };
}

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const engagement = positionalOrOption(values, positionals, 'engagement', 'audit evidence');
  if (engagement === undefined || engagement.trim() === '') {
    throw new UsageError(
      "name the engagement (id or name) to collect: 'kubevisa audit evidence acme-2026'. Run 'kubevisa audit evidence --help'.",
    );
  }
  const client = await clientFrom(values);
  const manifest = await client.post<EvidenceManifest>('/api/v1/audit/evidence', { engagement });
  const day = manifest.generatedAt.slice(0, 10);
  const dir = resolve(optionalString(values, 'out') ?? `evidence-${manifest.engagement.name}-${day}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if ((await readdir(dir)).length > 0) {
    throw new UsageError(`${dir} is not empty: an evidence pack goes into a new folder (choose one with --out DIR)`);
  }

  const eventsFile = join(dir, 'events.jsonl');
  const events = createWriteStream(eventsFile, { flags: 'wx', mode: 0o600 });
  try {
    await streamGet(
      client,
      `/api/v1/audit/evidence/${encodeURIComponent(manifest.engagement.id)}/events`,
      { after: String(manifest.window.afterSeq), through: String(manifest.window.throughSeq) },
      events,
    );
  } finally {
    events.end();
    await finished(events);
  }
  const checkpoints = manifest.checkpoints.map((checkpoint) => parseCheckpoint(checkpoint, 'checkpoint'));
  const files: Record<string, string> = {
    'checkpoints.json': `${JSON.stringify(checkpoints, null, 2)}\n`,
    'public-key.pem': manifest.publicKey.publicKeyPem,
    'engagement.json': `${JSON.stringify(manifest.engagement, null, 2)}\n`,
    'README.md': readme(manifest),
  };
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), content, { flag: 'wx', mode: 0o600 });
  }
  const sha256 = async (name: string) =>
    createHash('sha256')
      .update(await readFile(join(dir, name)))
      .digest('hex');
  const manifestJson = {
    kind: 'kubevisa-evidence-pack',
    version: 1,
    server: client.server,
    engagement: { id: manifest.engagement.id, name: manifest.engagement.name },
    generatedAt: manifest.generatedAt,
    window: manifest.window,
    publicKeyId: manifest.publicKey.keyId,
    files: Object.fromEntries(
      await Promise.all(['events.jsonl', ...Object.keys(files)].map(async (name) => [name, await sha256(name)])),
    ),
  };
  await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifestJson, null, 2)}\n`, {
    flag: 'wx',
    mode: 0o600,
  });

  const verdict = await verifyExportFile(eventsFile, {
    checkpoints,
    publicKey: parseCheckpointPublicKey(manifest.publicKey.publicKeyPem, 'the server public key'),
  });
  await emit(
    io,
    format,
    { dir, manifest: manifestJson, verification: verdict },
    `Wrote the evidence pack for engagement '${manifest.engagement.name}' to ${dir}:\n` +
      `  seq ${manifest.window.afterSeq + 1}..${manifest.window.throughSeq}, ${verdict.records} record(s), ` +
      `${verdict.records - verdict.redacted} of them the engagement's, ${verdict.redacted} redacted\n` +
      `  checkpoints signed with key ${manifest.publicKey.keyId}\n` +
      `Verification: ${verdict.ok ? 'OK' : 'FAILED'}: ${verdict.summary.replaceAll('\n', '\n  ')}\n` +
      `The auditor checks it with: kubevisa audit verify --from events.jsonl --checkpoint checkpoints.json --public-key public-key.pem`,
  );
  return verdict.ok ? 0 : 1;
};

function readme(manifest: EvidenceManifest): string {
  const e = manifest.engagement;
  return `# Evidence pack: engagement ${e.name} (${e.id})

Vendor ${e.vendor}; contractors ${e.contractors.join(', ')}; sponsor ${e.sponsor}.
Generated ${manifest.generatedAt} by kubevisa. Audit trail window: seq ${manifest.window.afterSeq + 1} to ${manifest.window.throughSeq}.

## What is here

- \`events.jsonl\`: the audit trail over the window, one record per line, oldest first. Records of this
  engagement (its visas, its contractors' logins and sessions, the engagement itself) are in full; every other
  record is redacted to \`seq\`, \`prevHash\`, \`hash\` and \`contentHash\`, which still proves where it sits
  without showing it.
- \`checkpoints.json\`: checkpoints signed by the kubevisa server (Ed25519): "the trail ended at seq N with hash H
  at time T". The first one anchors the window (or the window starts at the trail's beginning), the last one
  was signed when this pack was made.
- \`public-key.pem\`: the public key the checkpoints are signed with. Its id is \`${manifest.publicKey.keyId}\`.
- \`engagement.json\`: the engagement as kubevisa held it when the pack was made.
- \`manifest.json\`: the SHA-256 of each file.

## How to verify it (offline, no server needed)

1. Confirm the key id above with your kubevisa administrator through another channel (the pack cannot vouch
   for its own key).
2. Run, in this folder:

       kubevisa audit verify --from events.jsonl --checkpoint checkpoints.json --public-key public-key.pem

   It checks that every record hashes to what it carries, that each links to the one before it, that the first
   follows the anchoring checkpoint and that every checkpoint is genuinely signed and matches the trail. It
   names the first line that fails: a changed byte, a deleted, inserted or reordered record, or a last record
   cut short. A checkpoint beyond the end of the records, or naming another record at its seq, means the trail
   was cut short or rewritten.
3. To check that the trail was not rolled back since, run the same command later against a newer export, adding
   the checkpoints you keep from this pack (\`--checkpoint\` may be repeated).

Each record's hash is SHA-256(seq + "\\n" + prevHash + "\\n" + contentHash); contentHash is the SHA-256 of the
record's content exactly as written on its line (from \`"action"\` to the closing brace, with \`{\` in front).
`;
}
