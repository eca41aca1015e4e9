/** `kubevisa profile lint` as a reviewer runs it: the real bin/kubevisa on profile files. */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { makeSandbox, type Sandbox } from '../cli/testing/run-cli.ts';

let sandbox: Sandbox;
const testdata = (name: string) => new URL(`./testdata/${name}`, import.meta.url).pathname;

before(async () => {
  sandbox = await makeSandbox();
});
after(async () => {
  await sandbox.remove();
});

test('profile lint flags rules that create or change pods and pod controllers, on their lines, until declared', async () => {
  const undeclared = await sandbox.run(['profile', 'lint', testdata('undeclared-pods.yaml')]);
  assert.equal(undeclared.code, 1, undeclared.stderr);
  const findings = undeclared.stdout.split('\n').filter((line) => line.includes('pods-create'));
  assert.equal(findings.length, 2, undeclared.stdout);
  assert.match(findings[0]!, /undeclared-pods\.yaml:9 .*any ServiceAccount of its namespace/);
  assert.match(findings[1]!, /undeclared-pods\.yaml:12 /);
  assert.match(undeclared.stderr, /declare the risk/);

  const declared = join(sandbox.root, 'declared.yaml');
  await writeFile(
    declared,
    `${await readFile(testdata('undeclared-pods.yaml'), 'utf8')}declaredRisks:\n  - risk: pods-create\n    justification: releases change pod templates\n`,
  );
  const clean = await sandbox.run(['profile', 'lint', declared]);
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.match(clean.stdout, /profile 'releaser' is clean/);
});
