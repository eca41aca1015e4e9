/**
 * Loaded with `node --import` (through NODE_OPTIONS) by the credential tests: appends the URL of every module
 * the process resolves to the file named by KUBEVISA_TRACE_IMPORTS, so a test can see exactly which modules
 * `kubevisa credential` loads (static and dynamic imports alike).
 */
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const log = process.env.KUBEVISA_TRACE_IMPORTS;
if (log) {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const result = nextResolve(specifier, context);
      appendFileSync(log, `${result.url}\n`);
      return result;
    },
  });
}
