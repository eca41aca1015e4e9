/** The server configuration's role lists: people named by email, each entry checked as an address. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServerConfig } from './config.ts';

const base = { dataDir: 'data', oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' } };

test('admins and auditors are read in lower case; an entry that is no address, or holds an invisible character, is refused naming it', () => {
  const config = parseServerConfig(
    { ...base, roles: { admins: ['Root@Corp.Example'], auditors: ['audit@corp.example'] } },
    '/etc/kubevisa',
  );
  assert.deepEqual(config.roles.admins, ['root@corp.example']);
  assert.deepEqual(config.roles.auditors, ['audit@corp.example']);
  for (const [roles, message] of [
    [{ admins: ['root'] }, /^config: 'roles\.admins\[0\]': 'root' is not an email address/],
    [
      { auditors: ['audit@corp.example', 'root\u202E@corp.example'] },
      /^config: 'roles\.auditors\[1\]': .* holds U\+202E, an invisible character/,
    ],
    [
      { admins: ['\u212Aate@corp.example'] },
      /^config: 'roles\.admins\[0\]': .* holds U\+212A .*changes case into a plain letter/,
    ],
  ] as const) {
    assert.throws(() => parseServerConfig({ ...base, roles }, '/etc/kubevisa'), { code: 'ERR_INVALID_INPUT', message });
  }
});
