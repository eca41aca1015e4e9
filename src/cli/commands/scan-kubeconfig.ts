/**
 * `kubevisa scan kubeconfig [FILES…] [--check]`: the credentials kubeconfig files hold, per context, with a risk
 * rating; with --check, whether each still authenticates (one SelfSubjectReview per context, with that context's
 * own credential). Local: it talks to no kubevisa server. It never prints a secret (tokens are described by their
 * claims and a short fingerprint). Exits 1 when a context holds a critical or high-risk credential.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { isMap, isSeq, parseDocument } from 'yaml';
import { KubevisaError } from '../../domain/errors.ts';
import { scanKubeconfig, type ContextReport } from '../../monitor/kubeconfig-scan.ts';
import { render, UsageError, type CommandRun } from '../framework.ts';
import { outputFormat } from '../options.ts';
import { oneLine } from '../present.ts';

/** Time limit of one --check request, in ms. */
const CHECK_TIMEOUT_MS = 5000;

interface Checked extends ContextReport {
  check?: { ok: boolean; result: string; username?: string };
}

export const run: CommandRun = async ({ values, positionals, io }) => {
  const format = outputFormat(values);
  const files = positionals.length > 0 ? positionals.map((f) => resolve(f)) : defaultFiles();
  const now = Date.now();
  const reports: Checked[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    try {
      reports.push(
        ...scanKubeconfig({
          file,
          text,
          readFile: (path) => readOptional(path),
          resolvePath: (path) => (isAbsolute(path) ? path : resolve(dirname(file), path)),
          now,
        }),
      );
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    if (values.check === true) {
      const checks = await Promise.all(
        reports
          .filter((r) => r.file === file)
          .map(async (report) => ({ report, check: await check(text, file, report) })),
      );
      for (const { report, check: result } of checks) report.check = result;
    }
  }
  const columns = [
    'FILE:CONTEXT',
    'CREDENTIAL',
    'RISK',
    'IDENTITY',
    'EXPIRES',
    ...(values.check === true ? ['CHECK'] : []),
    'DETAIL',
  ];
  const rows = reports.flatMap((report) =>
    report.credentials.map((credential) => [
      `${shortFile(report.file)}:${report.context}${report.current ? '*' : ''}`,
      credential.kind,
      credential.risk,
      credential.identity ?? '',
      credential.expiresAt === undefined
        ? ''
        : `${credential.expiresAt.slice(0, 10)}${credential.expired ? ' (expired)' : ''}`,
      ...(values.check === true ? [report.check?.result ?? ''] : []),
      oneLine(
        [credential.description, ...report.problems, report.insecureSkipTlsVerify ? 'TLS verification is off' : '']
          .filter((t) => t !== '')
          .join('; '),
        160,
      ),
    ]),
  );
  await render(io, format, { contexts: reports }, { columns, rows });
  const risky = reports.filter((r) => r.risk === 'critical' || r.risk === 'high');
  if (format === undefined || format === 'table') {
    io.err(
      risky.length === 0
        ? `${reports.length} context(s) in ${files.length} file(s): no long-lived credential found.\n`
        : `${risky.length} of ${reports.length} context(s) hold a long-lived credential (critical or high). Replace them with short-lived ones ('kubevisa kubeconfig'), delete the token Secret or ServiceAccount behind a legacy token, and remove the entries.\n`,
    );
  }
  return risky.length > 0 ? 1 : 0;
};

/** $KUBECONFIG's files, else ~/.kube/config: where kubectl looks. */
function defaultFiles(): string[] {
  const fromEnv = (process.env['KUBECONFIG'] ?? '').split(delimiter).filter((f) => f !== '');
  return fromEnv.length > 0 ? fromEnv.map((f) => resolve(f)) : [join(homedir(), '.kube', 'config')];
}

function readOptional(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    // A file the kubeconfig names but that is gone is reported as a problem of that context, not a failure.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') return undefined;
    throw error;
  }
}

function shortFile(file: string): string {
  const home = homedir();
  return file.startsWith(`${home}/`) ? `~${file.slice(home.length)}` : file;
}

/** One SelfSubjectReview with the context's own credential. */
async function check(text: string, file: string, report: ContextReport): Promise<Checked['check']> {
  if (report.server === '') return { ok: false, result: 'not checked: no server' };
  const { createClusterClient } = await import('../../cluster/client.ts');
  try {
    const client = createClusterClient({
      name: report.context,
      kubeconfigYaml: kubeconfigForContext(text, report.context, dirname(file)),
      requestTimeoutMs: CHECK_TIMEOUT_MS,
    });
    const who = await client.whoAmI();
    return { ok: true, result: `works: authenticates as ${who.username}`, username: who.username };
  } catch (error) {
    if (!(error instanceof KubevisaError)) throw error;
    switch (error.code) {
      case 'ERR_CLUSTER_UNAUTHORIZED':
        return { ok: false, result: 'rejected (401): the credential no longer works' };
      case 'ERR_CLUSTER_FORBIDDEN':
        return { ok: true, result: 'works: authenticates (SelfSubjectReview forbidden)' };
      case 'ERR_CLUSTER_UNREACHABLE':
        return { ok: false, result: `unknown: ${oneLine(error.message.replace(/^cannot [^:]+: /, ''), 80)}` };
      default:
        return { ok: false, result: `unknown: ${oneLine(error.message, 80)}` };
    }
  }
}

/**
 * The kubeconfig with `context` made current and every file path made absolute (they are relative to the file's
 * folder, and the client reads the text without knowing where it came from). Stays in memory.
 */
export function kubeconfigForContext(text: string, context: string, baseDir: string): string {
  const document = parseDocument(text);
  document.set('current-context', context);
  const absolute = (value: unknown) =>
    typeof value === 'string' && value !== '' && !isAbsolute(value) ? resolve(baseDir, value) : value;
  for (const [list, inner, fields] of [
    ['clusters', 'cluster', ['certificate-authority']],
    ['users', 'user', ['client-certificate', 'client-key', 'tokenFile']],
  ] as const) {
    const entries = document.get(list);
    if (!isSeq(entries)) continue;
    for (const entry of entries.items) {
      const body = isMap(entry) ? entry.get(inner) : undefined;
      if (!isMap(body)) continue;
      for (const field of fields) if (body.has(field)) body.set(field, absolute(body.get(field)));
    }
  }
  return document.toString();
}
