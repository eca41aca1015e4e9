// The attack table (test/support/attacks.ts), one test per line, run end to end against the real server, control
// plane, OIDC provider and kubectl. docs/security.md lists the same lines; `node scripts/attack-table.ts` prints them.
import { after, before, describe, test } from 'node:test';
import { ATTACKS } from './support/attacks.ts';
import { startAttackEnv, type AttackEnv } from './support/attack-env.ts';

let t: AttackEnv;

before(async () => {
  t = await startAttackEnv();
});

after(async () => {
  await t?.stop();
});

describe('the attack table: every attack is refused as its line says', () => {
  for (const attack of ATTACKS) {
    test(`${attack.id} ${attack.attack} → ${attack.expect}`, () => attack.run(t));
  }
});
