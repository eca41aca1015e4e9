/**
 * `kubevisa store migrate --from sqlite:PATH --to postgres:URL`: moves an installation's state from its SQLite file
 * into an empty PostgreSQL database, audit trail included and verified before and after
 * (src/store/postgres/import-sqlite.ts). An offline administration step, run with the server stopped: the SQLite
 * data folder is locked while it runs, so a server still using it is refused with its PID.
 */
import { dirname, resolve } from 'node:path';
import { readStorePassword, parseStoreConfig } from '../../store/config.ts';
import { noPositionals, render, UsageError, type CommandRun } from '../framework.ts';
import { optionalString, outputFormat } from '../options.ts';

function parseFrom(value: string | undefined): string {
  if (value === undefined || !value.startsWith('sqlite:') || value.length === 'sqlite:'.length) {
    throw new UsageError(
      `--from must name the SQLite database as sqlite:PATH (e.g. --from sqlite:/var/lib/kubevisa/kubevisa.db)`,
    );
  }
  return resolve(value.slice('sqlite:'.length));
}

function parseTo(value: string | undefined): string {
  const url = value?.startsWith('postgres:') === true ? value.slice('postgres:'.length) : '';
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UsageError(
      '--to must name the PostgreSQL database as postgres:URL (e.g. --to postgres:postgres://kubevisa@db:5432/kubevisa)',
    );
  }
  return url;
}

export const run: CommandRun = async ({ values, positionals, io }) => {
  noPositionals(positionals, 'store migrate');
  const format = outputFormat(values);
  const sqlitePath = parseFrom(optionalString(values, 'from'));
  const url = parseTo(optionalString(values, 'to'));
  const passwordFile = optionalString(values, 'password-file');
  const passwordEnv = optionalString(values, 'password-env');
  // The same rules as the server's configuration: no password inside the URL, one source for it at most.
  const config = parseStoreConfig(
    {
      engine: 'postgres',
      url,
      ...(passwordFile === undefined ? {} : { passwordFile }),
      ...(passwordEnv === undefined ? {} : { passwordEnv }),
    },
    (path) => resolve(path),
  );
  if (config.engine !== 'postgres') throw new UsageError('--to must name a PostgreSQL database');
  const password = await readStorePassword(config, process.env);
  const { copySqliteToPostgres } = await import('../../store/postgres/import-sqlite.ts');
  const { describeUrl } = await import('../../store/postgres/store.ts');
  io.err(`Copying ${sqlitePath} into ${describeUrl(url)}\n`);
  let lastTable = '';
  const report = await copySqliteToPostgres(
    sqlitePath,
    dirname(sqlitePath),
    { url, ...(password === undefined ? {} : { password }) },
    (update) => {
      if (update.step === 'verify-source') io.err('verifying the audit trail in SQLite…\n');
      if (update.step === 'verify-target') io.err('verifying the audit trail in PostgreSQL…\n');
      if (
        update.step === 'copy' &&
        update.table !== undefined &&
        (update.copied === update.total || update.table !== lastTable)
      ) {
        if (update.copied === update.total) io.err(`  ${update.table}: ${update.copied ?? 0} rows\n`);
        lastTable = update.table;
      }
    },
  );
  const summary = {
    from: `sqlite:${sqlitePath}`,
    to: `postgres:${describeUrl(url)}`,
    tables: report.tables,
    audit: { ...report.audit, verified: true },
  };
  await render(io, format, summary, {
    columns: ['TABLE', 'ROWS'],
    rows: Object.entries(report.tables).map(([table, rows]) => [table, String(rows)]),
  });
  if (format === undefined || format === 'table') {
    io.out(
      `\nAudit trail: ${report.audit.events} events, verified before and after` +
        (report.audit.head === undefined ? '' : `; head seq ${report.audit.head.seq} ${report.audit.head.hash}`) +
        '\nNext: set store: {engine: postgres, url: …, passwordFile: …} in the server configuration and start it.\n',
    );
  }
  return 0;
};
