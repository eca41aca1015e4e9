/**
 * Builds what the npm package ships (run by `npm pack` / `npm publish` through `prepack`): the TypeScript sources
 * compiled to JavaScript in dist/ (Node refuses to strip types under node_modules), laid out like the repository so
 * every path a module computes from its own URL still holds (dist/src/…, dist/bin/kubevisa, dist/scripts/…):
 * - dist/src: src/ without tests and test helpers, imports rewritten from .ts to .js by tsc
 *   (rewriteRelativeImportExtensions), worker URLs (`new URL('./x.ts', import.meta.url)`) rewritten here;
 * - dist/bin/kubevisa: the launcher (bin/kubevisa.js), which keeps --disable-proto=throw;
 * - dist/scripts/k8s-binaries.sh and dist/test/k8s/go.{mod,sum}: `kubevisa demo` without --kubeconfig builds the
 *   pinned Kubernetes binaries from them (needs Go);
 * - dist/web/dist: the console's built assets, when web/dist exists (its own build makes them).
 *
 * Usage: node scripts/build-package.ts
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const log = (message: string) => process.stderr.write(`[build-package] ${message}\n`);

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
const tsconfig = join(dist, 'tsconfig.build.json');
writeFileSync(
  tsconfig,
  JSON.stringify({
    extends: '../tsconfig.json',
    include: ['../src/**/*.ts'],
    exclude: ['../src/**/*.test.ts', '../src/**/testing/**', '../src/**/testing.ts'],
    compilerOptions: {
      noEmit: false,
      outDir: '.',
      rootDir: '..',
      rewriteRelativeImportExtensions: true,
      declaration: false,
      sourceMap: false,
      removeComments: false,
      newLine: 'lf',
    },
  }),
);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
log('compiling src/ to dist/src/ (tsc)');
execFileSync(process.execPath, [tsc, '-p', tsconfig], { stdio: 'inherit' });
rmSync(tsconfig);

// tsc rewrites import specifiers only; a worker's module URL is a string it leaves alone.
const workerUrl = /new URL\((['"])(\.{1,2}\/[^'"]+)\.ts\1, import\.meta\.url\)/g;
let rewritten = 0;
for (const file of walk(join(dist, 'src'))) {
  if (!file.endsWith('.js')) continue;
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(workerUrl, (_match, quote: string, path: string) => {
    rewritten++;
    return `new URL(${quote}${path}.js${quote}, import.meta.url)`;
  });
  // Anything still naming a .ts module would fail at run time under node_modules: refuse to ship it.
  const left = /(?:from\s+|import\(\s*|new URL\(\s*)(['"])\.{1,2}\/[^'"]+\.ts\1/.exec(fixed);
  if (left) throw new Error(`${relative(root, file)} still refers to a TypeScript module: ${left[0]}`);
  if (fixed !== text) writeFileSync(file, fixed);
}
log(`rewrote ${rewritten} worker URL(s) to .js`);

mkdirSync(join(dist, 'bin'));
cpSync(join(root, 'bin', 'kubevisa.js'), join(dist, 'bin', 'kubevisa'));
chmodSync(join(dist, 'bin', 'kubevisa'), 0o755);
mkdirSync(join(dist, 'scripts'));
cpSync(join(root, 'scripts', 'k8s-binaries.sh'), join(dist, 'scripts', 'k8s-binaries.sh'));
for (const name of ['go.mod', 'go.sum']) {
  mkdirSync(join(dist, 'test', 'k8s'), { recursive: true });
  cpSync(join(root, 'test', 'k8s', name), join(dist, 'test', 'k8s', name));
}
const consoleAssets = join(root, 'web', 'dist');
if (existsSync(consoleAssets)) {
  cpSync(consoleAssets, join(dist, 'web', 'dist'), { recursive: true });
  log('included the console (web/dist)');
} else {
  log('no web/dist: the package has no console assets (build the console first to include them)');
}
const files = [...walk(dist)];
const bytes = files.reduce((sum, file) => sum + statSync(file).size, 0);
log(`dist/: ${files.length} files, ${(bytes / 1024).toFixed(0)} KiB`);

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}
