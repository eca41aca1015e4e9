/**
 * The attack table of docs/security.md, made from the cases the end-to-end suite runs (test/support/attacks.ts, run
 * by test/attacks.test.ts), so the document cannot claim an attack is covered that no test tries.
 *
 *   node scripts/attack-table.ts           prints the table as markdown
 *   node scripts/attack-table.ts --write   puts it into docs/security.md, between its two marker comments
 *
 * test/attack-table.test.ts fails when docs/security.md and the cases differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ATTACKS } from '../test/support/attacks.ts';

export const SECURITY_DOC = fileURLToPath(new URL('../docs/security.md', import.meta.url));
export const TABLE_START =
  '<!-- attack-table:start (made by scripts/attack-table.ts; edit test/support/attacks.ts) -->';
export const TABLE_END = '<!-- attack-table:end -->';

/** A table cell: pipes escaped, on one line. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** The attack table as markdown: one row per case, in the suite's order. */
export function attackTable(cases: readonly { id: string; attack: string; expect: string }[] = ATTACKS): string {
  return [
    '| Id | Attack | Expected refusal |',
    '| --- | --- | --- |',
    ...cases.map((c) => `| ${c.id} | ${cell(c.attack)} | ${cell(c.expect)} |`),
  ].join('\n');
}

/** The table docs/security.md holds between its markers. @throws Error when a marker is missing. */
export function tableInDocument(document: string): string {
  const start = document.indexOf(TABLE_START);
  const end = document.indexOf(TABLE_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`${SECURITY_DOC} must hold the markers ${TABLE_START} and ${TABLE_END}, in that order`);
  }
  return document.slice(start + TABLE_START.length, end).trim();
}

/** The document with the table between its markers replaced by `table`. */
export function withTable(document: string, table: string): string {
  tableInDocument(document);
  const start = document.indexOf(TABLE_START) + TABLE_START.length;
  return `${document.slice(0, start)}\n\n${table}\n\n${document.slice(document.indexOf(TABLE_END))}`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--write')) {
    writeFileSync(SECURITY_DOC, withTable(readFileSync(SECURITY_DOC, 'utf8'), attackTable()));
    process.stdout.write(`wrote the attack table (${ATTACKS.length} attacks) into ${SECURITY_DOC}\n`);
  } else {
    process.stdout.write(`${attackTable()}\n`);
  }
}
