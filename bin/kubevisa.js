#!/usr/bin/env -S node --disable-warning=ExperimentalWarning --disable-proto=throw
// kubevisa's command line as the npm package runs it (`npx kubevisa`, and kubectl's credential plugin): the
// compiled JavaScript in dist/, since Node does not strip types under node_modules. In a git clone without a build it
// runs the TypeScript sources directly. scripts/build-package.ts copies this file to dist/bin/kubevisa.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `kubevisa: Node.js 24 or newer is needed, this is ${process.version}. Install Node.js 24 (https://nodejs.org) and run it again.\n`,
  );
  process.exit(1);
}
// --disable-proto=throw: a `__proto__` access anywhere (a dependency included) fails loudly instead of reaching
// Object.prototype; worker threads inherit it. The shebang passes it; when started another way (`node kubevisa`,
// a shim that drops the shebang's options) kubevisa runs itself again with it, never without it.
if (!process.execArgv.includes('--disable-proto=throw')) {
  const result = spawnSync(
    process.execPath,
    [
      '--disable-warning=ExperimentalWarning',
      '--disable-proto=throw',
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit' },
  );
  if (result.error) {
    process.stderr.write(`kubevisa: cannot start ${process.execPath}: ${result.error.message}\n`);
    process.exit(1);
  }
  if (result.signal) process.kill(process.pid, result.signal);
  process.exit(result.status ?? 1);
}
const compiled = new URL('../src/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
