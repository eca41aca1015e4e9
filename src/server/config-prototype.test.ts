/** The server configuration and object prototypes: such keys are refused, and fields are read by own property only. */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadServerConfig, parseServerConfig } from './config.ts';

const base = { dataDir: 'data', oidc: { issuer: 'https://idp.example', clientId: 'kubevisa' } };

describe('server configuration and prototypes', () => {
  test('a config file with a __proto__ key (YAML makes it an own key) is refused, naming where', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubevisa-config-'));
    const file = join(dir, 'server.yaml');
    await writeFile(
      file,
      'dataDir: data\noidc: {issuer: "https://idp.example", clientId: kubevisa}\npolicy:\n  __proto__: {requiredApprovals: 0}\n',
    );
    await assert.rejects(loadServerConfig(file), {
      code: 'ERR_INVALID_INPUT',
      message: /config: 'config\.policy\["?__proto__"?\]'|config\.policy\.__proto__/,
    });
  });

  test('constructor and prototype keys are refused anywhere in the file', () => {
    for (const raw of [
      { ...base, constructor: { prototype: { tls: 1 } } },
      { ...base, roles: { admins: [], prototype: {} } },
      { ...base, clusters: [{ name: 'a', kubeconfig: 'k', toString: 'x' }] },
    ]) {
      assert.throws(() => parseServerConfig(raw, '/etc/kubevisa'), { code: 'ERR_INVALID_INPUT' }, JSON.stringify(raw));
    }
  });

  test('a field the file leaves out reads as absent even when Object.prototype has gained it', () => {
    // What a prototype pollution elsewhere in the process would do: every plain object now "has" these fields.
    const planted = {
      tls: { certFile: '/attacker/cert', keyFile: '/attacker/key' },
      publicUrl: 'https://evil.example',
    };
    for (const [name, value] of Object.entries(planted)) {
      Object.defineProperty(Object.prototype, name, { value, configurable: true, writable: true });
    }
    try {
      const config = parseServerConfig({ ...base }, '/etc/kubevisa');
      // Read by own property: what the parser built holds nothing of what was planted (JSON shows own fields only).
      assert.equal(Object.hasOwn(config, 'tls'), false);
      assert.equal(Object.hasOwn(config, 'publicUrl'), false);
      assert.doesNotMatch(JSON.stringify(config), /attacker|evil/);
    } finally {
      for (const name of Object.keys(planted)) delete (Object.prototype as Record<string, unknown>)[name];
    }
  });
});
