/**
 * The directory the configuration names, behind the one IdentityDirectory interface, and the start-up check that
 * refuses to start with a directory kubevisa cannot read.
 */
import type { SyncConfig } from '../config.ts';
import { DirectoryUnavailable, type IdentityDirectory } from '../directory.ts';
import { createDevIdpDirectory } from '../../dev/idp-directory.ts';
import { createEntraDirectory } from './entra.ts';
import { createGoogleDirectory } from './google.ts';
import { createKeycloakDirectory } from './keycloak.ts';
import { createOktaDirectory } from './okta.ts';
import type { ProviderWiring } from './snapshot.ts';

/**
 * The directory `identity.sync` names. `wiring.groups` are the group names the group mappings use: only these
 * groups' members are read.
 */
export function createDirectory(sync: SyncConfig, wiring: ProviderWiring): IdentityDirectory {
  switch (sync.provider) {
    case 'dev-idp':
      return createDevIdpDirectory({ url: sync.url, ...(sync.token ? { token: sync.token } : {}) });
    case 'okta':
      return createOktaDirectory({ ...sync, ...wiring });
    case 'entra':
      return createEntraDirectory({ ...sync, ...wiring });
    case 'google':
      return createGoogleDirectory({ ...sync, ...wiring });
    case 'keycloak':
      return createKeycloakDirectory({ ...sync, ...wiring });
  }
}

/** How long the start-up check may take, in ms. */
export const STARTUP_CHECK_TIMEOUT_MS = 15_000;

/**
 * Proves at start-up that the directory answers with the configured credential. A directory that cannot be read
 * would make every sync fail and nobody be offboarded by it: better a server that does not start and says why.
 */
export async function checkDirectoryAtStart(
  directory: IdentityDirectory,
  timeoutMs = STARTUP_CHECK_TIMEOUT_MS,
): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    if (directory.check) await directory.check(signal);
    else await directory.listUsers(signal);
  } catch (error) {
    const why = signal.aborted
      ? `no answer within ${timeoutMs / 1000} s`
      : error instanceof Error
        ? error.message
        : String(error);
    throw new DirectoryUnavailable(
      `config: 'identity.sync' names the ${directory.name} directory, which kubevisa cannot read: ${why}. The server does not start with a directory it cannot read: fix identity.sync (${directory.name === 'dev-idp' ? 'docs/identity.md' : `docs/identity-providers/${directory.name}.md`}), or remove it.`,
      { cause: error },
    );
  }
}
