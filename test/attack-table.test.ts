// docs/security.md shows the attack table the end-to-end suite runs, and nothing else: a line added to the suite
// without the document (or to the document without a test behind it) fails here. `node scripts/attack-table.ts
// --write` brings the document up to date.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { attackTable, SECURITY_DOC, tableInDocument } from '../scripts/attack-table.ts';
import { ATTACKS } from './support/attacks.ts';

test('docs/security.md holds exactly the attack table that test/attacks.test.ts runs', () => {
  assert.equal(
    tableInDocument(readFileSync(SECURITY_DOC, 'utf8')),
    attackTable(),
    'docs/security.md is out of date: run node scripts/attack-table.ts --write',
  );
});

test('every attack has a unique id of the form AREA-NNN, an attack and an expected refusal', () => {
  const ids = ATTACKS.map((a) => a.id);
  assert.deepEqual(
    ids.filter((id, i) => ids.indexOf(id) !== i),
    [],
    'duplicate ids',
  );
  for (const attack of ATTACKS) {
    assert.match(attack.id, /^[A-Z]+-\d{3}$/);
    assert.ok(attack.attack.length > 10 && attack.expect.length > 5, attack.id);
  }
});
