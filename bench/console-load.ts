/**
 * Web console figures, one run: the built bundle's size (raw and gzip), the first load of "My access" in Debian's
 * Chromium against a real server and the dev identity provider (cold: a fresh browser profile; warm: assets cached),
 * and the who-has-access matrix's server-side work at the exposure benchmark's scale (20,000 RoleBindings, 2,000
 * Roles, 400 namespaces): building the rows once, then serving one page of 100.
 *
 * Run (after scripts/setup.d/40-console.sh built web/dist): node --disable-proto=throw bench/console-load.ts [--loads 5]
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalCa } from '../src/dev/ca.ts';
import { startDevIdp } from '../src/dev/idp.ts';
import { parseServerConfig } from '../src/server/config.ts';
import { startServer } from '../src/server/main.ts';
import { analyzeExposure, buildDirectory } from '../src/monitor/exposure.ts';
import type { BindingLike, RoleLike } from '../src/rbac/rbac-index.ts';
import { accessRows, pageOfRows } from '../src/console/access-matrix.ts';
import { DEFAULT_ASSETS_DIR } from '../src/console/assets.ts';
import { openBrowser, signIn } from '../test/support/browser.ts';
import { people } from '../test/support/kubevisa-env.ts';

const { values } = parseArgs({ options: { loads: { type: 'string', default: '5' } } });
const LOADS = Number(values.loads);
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ——— Bundle ———
const assets = join(DEFAULT_ASSETS_DIR, 'assets');
let raw = 0;
let gzip = 0;
for (const name of await readdir(assets)) {
  const content = await readFile(join(assets, name));
  raw += (await stat(join(assets, name))).size;
  gzip += gzipSync(content).length;
  log(`asset ${name}: ${content.length} B, ${gzipSync(content).length} B gzip`);
}
console.log(`bundle: ${(raw / 1024).toFixed(1)} KiB raw, ${(gzip / 1024).toFixed(1)} KiB gzip (JS + CSS)`);

// ——— First load ———
const dir = await mkdtemp(join(tmpdir(), 'kubevisa-console-bench-'));
const pki = join(dir, 'pki');
await mkdir(pki);
const ca = await LocalCa.create(pki, 'bench-ca');
const serving = await ca.issue({
  name: 'server',
  commonName: 'kubevisa',
  ipAddresses: ['127.0.0.1'],
  dnsNames: ['localhost'],
  usage: 'server',
});
const port = 20_000 + Math.floor(Math.random() * 10_000);
const url = `https://127.0.0.1:${port}`;
const idp = await startDevIdp({
  accounts: Object.values(people).map((p) => ({ ...p, name: p.sub })),
  clients: [{ clientId: 'kubevisa', clientSecret: 'bench', redirectUris: [`${url}/api/v1/login/callback`] }],
});
const server = await startServer(
  parseServerConfig(
    {
      listen: { host: '127.0.0.1', port },
      dataDir: join(dir, 'data'),
      oidc: {
        issuer: idp.issuer,
        clientId: 'kubevisa',
        clientSecret: 'bench',
        scopes: 'openid email profile offline_access groups',
        allowInsecureHttp: true,
      },
      roles: { adminGroups: ['kubevisa-admins'] },
      policy: { requiredApprovals: 1, approverGroups: ['kubevisa-approvers'] },
      clusters: [],
      tls: { ...serving, caFile: ca.certFile },
    },
    dir,
  ),
);
const browser = await openBrowser();
try {
  await signIn(browser, url, people.cora, '/access');
  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < LOADS; i++) {
    // Cold: the browser's cache emptied (a first visit); warm: hashed assets come from the cache.
    const cdp = await browser.context.newCDPSession(browser.page);
    await cdp.send('Network.clearBrowserCache');
    await cdp.detach();
    for (const into of [cold, warm]) {
      const started = performance.now();
      await browser.page.goto(`${url}/access`);
      await browser.page.getByRole('heading', { name: 'Use it with kubectl' }).waitFor();
      into.push(performance.now() - started);
    }
  }
  console.log(
    `first load of My access (navigation until its content is shown), ${LOADS} loads: cold median ${median(cold).toFixed(0)} ms (max ${Math.max(...cold).toFixed(0)}), warm median ${median(warm).toFixed(0)} ms`,
  );
  if (browser.errorsOn(url).length > 0) console.log(`browser errors: ${browser.errorsOn(url).join('; ')}`);
} finally {
  await browser.close();
  await server.stop();
  await idp.stop();
  await rm(dir, { recursive: true, force: true });
}

// ——— Matrix at 20,000 bindings ———
const meta = (name: string, namespace?: string) => ({
  name,
  ...(namespace ? { namespace } : {}),
  labels: {},
  annotations: {},
});
const roles: RoleLike[] = [];
const roleBindings: BindingLike[] = [];
for (let r = 0; r < 2000; r++) {
  roles.push({
    metadata: meta(`role-${r}`, `ns-${r % 400}`),
    rules: [
      {
        apiGroups: [''],
        resources: r % 5 === 0 ? ['pods/exec', 'pods'] : ['pods', 'configmaps'],
        verbs: ['get', 'list', r % 5 === 0 ? 'create' : 'watch'],
      },
    ],
  });
}
for (let b = 0; b < 20_000; b++) {
  const namespace = `ns-${b % 400}`;
  roleBindings.push({
    metadata: meta(`rb-${b}`, namespace),
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `role-${(b % 5) * 400 + (b % 400)}` },
    subjects: [
      b % 20 === 0
        ? { kind: 'Group', name: `team-${b % 50}`, apiGroup: 'rbac.authorization.k8s.io' }
        : {
            kind: 'User',
            name: `user-${b % 6000}@${b % 9 === 0 ? 'vendor' : 'corp'}.example`,
            apiGroup: 'rbac.authorization.k8s.io',
          },
    ],
  });
}
const started = performance.now();
const analysis = analyzeExposure({
  cluster: 'bench',
  objects: { roles, clusterRoles: [], roleBindings, clusterRoleBindings: [] },
  tokenSecrets: undefined,
  legacyTokenUses: [],
  directory: buildDirectory({ engagements: [], persons: [], contractorDomains: ['vendor.example'] }),
});
const analysed = performance.now();
const rows = accessRows(analysis, []);
const built = performance.now();
const pageTimes: number[] = [];
for (let i = 0; i < 20; i++) {
  const t = performance.now();
  const page = pageOfRows(rows, { offset: i * 100, limit: 100, q: i % 2 === 0 ? 'vendor' : undefined });
  pageTimes.push(performance.now() - t);
  if (i === 0) log(`page 0 with q=vendor: ${page.total} matching, ${JSON.stringify(page.rows).length} B of JSON`);
}
console.log(
  `matrix at 20,000 bindings: exposure analysis ${(analysed - started).toFixed(0)} ms, rows for ${rows.length} subjects ${(built - analysed).toFixed(0)} ms, one page of 100 (filtered) median ${median(pageTimes).toFixed(1)} ms`,
);
