/**
 * Editing a kubeconfig file in place: add or replace one cluster, one user and one context by name and
 * leave every other entry, comment and setting as it was (yaml's Document keeps them). Pure text in, text
 * out; the command does the file I/O.
 */
import { Document, isMap, isSeq, parseDocument } from 'yaml';
import { BadKubeconfig } from './errors.ts';

/** The exec plugin entry kubectl runs for a token (client.authentication.k8s.io/v1). */
export interface ExecPlugin {
  apiVersion: 'client.authentication.k8s.io/v1';
  command: string;
  args: string[];
  interactiveMode: 'Never';
  provideClusterInfo: false;
  installHint: string;
}

export interface KubevisaContext {
  /** Name used for the context, its cluster entry and its user entry. */
  name: string;
  server: string;
  /** Base64 of the PEM CA bundle, as in `certificate-authority-data`; omitted to use the system's roots. */
  caData?: string;
  exec: ExecPlugin;
  namespace?: string;
  /** Make it the current context. */
  use: boolean;
}

/**
 * Returns `existing` (or an empty kubeconfig) with the context, cluster and user named `context.name`
 * added or replaced. `file` is only used in error messages.
 * @throws BadKubeconfig when `existing` is not YAML or not a kubeconfig.
 */
export function upsertContext(existing: string | undefined, context: KubevisaContext, file: string): string {
  const doc = existing && existing.trim() !== '' ? parseExisting(existing, file) : emptyKubeconfig();

  const cluster: Record<string, unknown> = { server: context.server };
  if (context.caData) cluster['certificate-authority-data'] = context.caData;
  const contextBody: Record<string, unknown> = { cluster: context.name, user: context.name };
  if (context.namespace) contextBody.namespace = context.namespace;

  upsertNamed(doc, 'clusters', { name: context.name, cluster }, file);
  upsertNamed(doc, 'users', { name: context.name, user: { exec: context.exec } }, file);
  upsertNamed(doc, 'contexts', { name: context.name, context: contextBody }, file);
  if (context.use) doc.set('current-context', context.name);
  return doc.toString();
}

function emptyKubeconfig(): Document {
  return new Document({
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    clusters: [],
    users: [],
    contexts: [],
    'current-context': '',
  });
}

function parseExisting(text: string, file: string): Document {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new BadKubeconfig(
      `${file} is not valid YAML (${doc.errors[0]?.message.split('\n')[0]}); fix it, or pass --kubeconfig with another file`,
    );
  }
  if (!isMap(doc.contents)) {
    throw new BadKubeconfig(
      `${file} is not a kubeconfig (no mapping at the top); fix it, or pass --kubeconfig with another file`,
    );
  }
  const kind = doc.get('kind');
  if (kind !== undefined && kind !== 'Config') {
    throw new BadKubeconfig(`${file} has kind '${String(kind)}', not Config; pass --kubeconfig with a kubeconfig file`);
  }
  return doc;
}

function upsertNamed(
  doc: Document,
  listName: string,
  entry: { name: string } & Record<string, unknown>,
  file: string,
): void {
  const current = doc.get(listName, true);
  if (current === undefined || current === null || (!isSeq(current) && doc.get(listName) === null)) {
    doc.set(listName, doc.createNode([entry]));
    return;
  }
  if (!isSeq(current)) {
    throw new BadKubeconfig(`${file}: '${listName}' is not a list; fix it, or pass --kubeconfig with another file`);
  }
  // `clusters: []` is written in flow style; entries added to it should read like kubectl's own output.
  if (current.items.length === 0) current.flow = false;
  const index = current.items.findIndex((item) => isMap(item) && item.get('name') === entry.name);
  if (index >= 0) current.items[index] = doc.createNode(entry);
  else current.items.push(doc.createNode(entry));
}
