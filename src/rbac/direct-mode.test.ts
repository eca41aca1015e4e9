/**
 * Direct mode as profile policy: computed from the rules and recording, and a declaration that contradicts them is
 * refused by profile validation and reported by the profile linter.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { aProfile } from '../domain/testing/fixtures.ts';
import { directModeBlockers, profileAllowsDirectMode } from './direct-mode.ts';
import { assertProfileIsSafe, lintProfileDocument } from './lint.ts';
import { debuggerProfile, deployerProfile, developerProfile, viewerProfile } from './profiles.ts';

describe('direct mode of a profile', () => {
  test('the shipped viewer, developer and deployer allow it; debugger, which records and execs, does not', () => {
    assert.deepEqual([viewerProfile, developerProfile, deployerProfile, debuggerProfile].map(profileAllowsDirectMode), [
      true,
      true,
      true,
      false,
    ]);
    assert.deepEqual(directModeBlockers(debuggerProfile), {
      recordsSessions: true,
      streams: ['pods/exec', 'pods/attach', 'pods/portforward'],
    });
  });

  test('stream subresources are found through wildcards too', () => {
    const wide = aProfile({ rules: [{ apiGroups: ['*'], resources: ['*/portforward'], verbs: ['*'] }] });
    assert.deepEqual(directModeBlockers(wide).streams, ['pods/portforward']);
  });

  test('absent directMode means denied', () => {
    assert.equal(profileAllowsDirectMode(aProfile()), false);
    assert.equal(profileAllowsDirectMode(aProfile({ directMode: 'allowed' })), true);
  });

  test('profile validation refuses directMode allowed together with recording or exec, and accepts denied', () => {
    assert.throws(() => assertProfileIsSafe({ ...debuggerProfile, directMode: 'allowed' }), {
      code: 'ERR_INVALID_INPUT',
      message: /profile 'debugger': directMode: 'allowed' is refused because it records sessions and grants pods\/exec/,
    });
    assert.throws(() => assertProfileIsSafe(aProfile({ recordSessions: true, directMode: 'allowed' })), {
      details: { field: 'directMode', finding: 'direct-mode' },
    });
    assert.doesNotThrow(() => assertProfileIsSafe(debuggerProfile));
    assert.doesNotThrow(() => assertProfileIsSafe(viewerProfile));
  });
});

describe('directMode in a profile document', () => {
  const document = (extra: string) =>
    [
      'name: shell',
      'description: a shell in pods',
      'maxVisaDuration: 4h',
      'rules:',
      '  - apiGroups: [""]',
      '    resources: [pods/exec]',
      '    verbs: [create]',
      'declaredRisks:',
      '  - risk: pods-exec',
      '    justification: debugging',
      extra,
    ].join('\n');

  test('the linter reports directMode allowed on a profile that grants exec, on its line', () => {
    const { profile, findings } = lintProfileDocument(document('directMode: allowed\n'));
    assert.equal(profile?.directMode, 'allowed');
    assert.deepEqual(
      findings.map((f) => [f.risk, f.line]),
      [['direct-mode', 11]],
    );
    assert.match(findings[0]!.message, /grants pods\/exec/);
  });

  test('denied or absent is clean, and any other value is a schema finding', () => {
    assert.deepEqual(lintProfileDocument(document('directMode: denied\n')).findings, []);
    assert.equal(lintProfileDocument(document('directMode: denied\n')).profile?.directMode, 'denied');
    assert.equal(lintProfileDocument(document('')).profile?.directMode, undefined);
    const { findings } = lintProfileDocument(document('directMode: yes\n'));
    assert.deepEqual(
      findings.map((f) => [f.risk, f.line, f.message]),
      [['schema', 11, "directMode: must be 'allowed' or 'denied' (default 'denied')"]],
    );
  });
});
