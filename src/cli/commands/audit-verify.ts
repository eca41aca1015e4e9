/**
 * `kubevisa audit verify`: is the audit trail intact, complete and not rolled back?
 *
 * Without --from, the server verifies its database (POST /api/v1/audit/verify) against its own checkpoints,
 * those given with --checkpoint, and the newest one this CLI saw from that server on an earlier run (kept in the
 * CLI's state folder): a server whose whole data folder was restored from a backup cannot hide it from someone
 * who checked it before.
 *
 * With --from FILE, nothing is asked of any server: the exported file is checked on this machine against the
 * checkpoints given, whose signatures are checked with --public-key.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  parseCheckpoint,
  parseCheckpointPublicKey,
  checkpointKeyId,
  type CheckpointRecord,
} from '../../audit/checkpoints.ts';
import type { TrailVerification } from '../../audit/verdict.ts';
import { verifyExportFile } from '../../audit/verify-file.ts';
import { KubevisaError } from '../../domain/errors.ts';
import { connect } from '../api-client.ts';
import { configDir } from '../config.ts';
import { render, UsageError, type CommandRun, type Io } from '../framework.ts';
import { positionalOrOption, optionalString, outputFormat, stringList } from '../options.ts';

/** A whole trail may take a while to verify on the server (hundreds of thousands of events a second). */
const VERIFY_TIMEOUT_MS = 15 * 60_000;
const REMEMBERED_FILE = 'audit-checkpoints.json';

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);

  const checkpoints = (await Promise.all(stringList(values, 'checkpoint').map(readCheckpoints))).flat();
  const from = positionalOrOption(values, positionals, 'from', 'audit verify');
  const keyFile = optionalString(values, 'public-key');
  if (from === undefined && keyFile !== undefined) {
    throw new UsageError('--public-key goes with --from: the server checks signatures with its own key');
  }
  const verdict =
    from === undefined
      ? await verifyOnServer(values.server, values['ca-file'], checkpoints)
      : await verifyFile(resolve(from), checkpoints, keyFile, forScripts(format) ? undefined : io);
  await show(io, format, verdict);
  return verdict.ok ? 0 : 1;
};

async function verifyFile(
  file: string,
  checkpoints: CheckpointRecord[],
  keyFile: string | undefined,
  people: Io | undefined,
): Promise<TrailVerification> {
  let publicKey;
  if (keyFile !== undefined) {
    publicKey = parseCheckpointPublicKey(await readText(keyFile, 'the public key'), keyFile);
    people?.out(
      `Checking signatures with key ${checkpointKeyId(publicKey)}: make sure it is the one your kubevisa ` +
        'administrator published, not only the one that came with the file.\n',
    );
  } else if (checkpoints.length > 0) {
    people?.out(
      'No --public-key given: the checkpoints are compared with the trail, but their signatures are not checked.\n',
    );
  }
  return verifyExportFile(file, { checkpoints, ...(publicKey === undefined ? {} : { publicKey }) });
}

async function verifyOnServer(server: unknown, caFile: unknown, given: CheckpointRecord[]): Promise<TrailVerification> {
  const dir = configDir();
  const client = await connect({
    configDir: dir,
    ...(typeof server === 'string' ? { server } : {}),
    ...(typeof caFile === 'string' ? { caFile: resolve(caFile) } : {}),
    timeoutMs: VERIFY_TIMEOUT_MS,
  });
  const remembered = await readRemembered(dir);
  const mine = remembered[client.server];
  const verdict = await client.post<TrailVerification>('/api/v1/audit/verify', {
    checkpoints: [...given, ...(mine === undefined ? [] : [mine])],
  });
  if (verdict.ok) {
    // Remember the newest checkpoint that verified, to hold the server to it next time.
    const newest = verdict.checkpoints
      .filter((finding) => finding.status === 'matches')
      .map((finding) => finding.checkpoint)
      .reduce<CheckpointRecord | undefined>((best, c) => (best === undefined || c.seq > best.seq ? c : best), mine);
    if (newest !== undefined && newest !== mine) {
      await writeRemembered(dir, { ...remembered, [client.server]: parseCheckpoint(newest, 'checkpoint') });
    }
  }
  return verdict;
}

async function show(io: Io, format: string | undefined, verdict: TrailVerification): Promise<void> {
  if (forScripts(format)) {
    await render(io, format, verdict, { columns: [], rows: [] });
    return;
  }
  io.out(`${verdict.ok ? 'OK' : 'FAILED'}: ${verdict.summary}\n`);
}

/** JSON or YAML for scripts; anything else (the default, `-o table`) is the summary written for people. */
function forScripts(format: string | undefined): format is 'json' | 'yaml' {
  return format === 'json' || format === 'yaml';
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${what} ${file}: ${(error as Error).message}`);
  }
}

/** A checkpoint file: one checkpoint, a JSON array of them (an evidence pack's), or JSON lines. */
async function readCheckpoints(file: string): Promise<CheckpointRecord[]> {
  const text = (await readText(file, 'the checkpoint file')).trim();
  let values: unknown[];
  try {
    values = parseJsonOrLines(text);
  } catch (error) {
    throw new UsageError(
      `${file} is not JSON: give a checkpoint, a JSON array of them, or JSON lines (${(error as Error).message})`,
    );
  }
  try {
    return values.map((value, index) => parseCheckpoint(value, `${file}[${index}]`));
  } catch (error) {
    if (error instanceof KubevisaError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
}

/** One JSON document (an object or an array of them), or else one document per line. */
function parseJsonOrLines(text: string): unknown[] {
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch (error) {
    if (!text.includes('\n')) throw error;
    return text.split('\n').map((line) => JSON.parse(line) as unknown);
  }
  return Array.isArray(whole) ? whole : [whole];
}

type Remembered = Record<string, CheckpointRecord>;

async function readRemembered(dir: string): Promise<Remembered> {
  let text: string;
  try {
    text = await readFile(join(dir, REMEMBERED_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  const out: Remembered = {};
  for (const [server, value] of Object.entries(parsed))
    out[server] = parseCheckpoint(value, `${REMEMBERED_FILE} ${server}`);
  return out;
}

async function writeRemembered(dir: string, remembered: Remembered): Promise<void> {
  const file = join(dir, REMEMBERED_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, `${JSON.stringify(remembered, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}
