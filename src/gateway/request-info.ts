/**
 * What a Kubernetes API request is about, read from its path and query the way kube-apiserver's RequestInfo
 * does — for the gateway's namespace check and its audit record — plus the refusal of non-canonical paths:
 * a path is refused, never "fixed", so the gateway and kube-apiserver can never disagree on what it names.
 */

export interface RequestInfo {
  /** Path below `/clusters/<name>`, e.g. `/api/v1/namespaces/payments/pods`. */
  path: string;
  isResourceRequest: boolean;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection, or the HTTP method for non-resource paths. */
  verb: string;
  apiGroup: string;
  apiVersion: string;
  namespace?: string;
  resource?: string;
  subresource?: string;
  name?: string;
}

export class NonCanonicalPath extends Error {}

// Encoded slashes, dots, backslashes, NULs and percent signs could decode differently upstream.
const FORBIDDEN_ENCODINGS = /%(2f|2e|5c|00|25)/i;

/** Splits `/clusters/<name>/<rest>?<query>`; throws NonCanonicalPath for anything but a canonical path. */
export function splitGatewayUrl(rawUrl: string): { cluster: string; path: string; query: string } {
  const queryAt = rawUrl.indexOf('?');
  const rawPath = queryAt === -1 ? rawUrl : rawUrl.slice(0, queryAt);
  const query = queryAt === -1 ? '' : rawUrl.slice(queryAt + 1);
  if (!rawPath.startsWith('/clusters/')) throw new NonCanonicalPath('the path must start with /clusters/<name>/');
  if (rawPath.includes('//')) throw new NonCanonicalPath('empty path segments (//) are not allowed');
  if (rawPath.includes('\\')) throw new NonCanonicalPath('backslashes are not allowed in the path');
  if (rawPath.includes(';')) throw new NonCanonicalPath('path parameters (;) are not allowed');
  if (FORBIDDEN_ENCODINGS.test(rawPath))
    throw new NonCanonicalPath('encoded slashes, dots, backslashes or percent signs are not allowed in the path');
  if (/%(?![0-9a-fA-F]{2})/.test(rawPath)) throw new NonCanonicalPath('malformed percent-encoding in the path');
  // kube-apiserver decodes the path before reading it, so `%61pi`, `%6Eamespaces` or `%77atch` mean `api`,
  // `namespaces` and `watch` there but not here: the namespace check would read a different request than the one
  // Kubernetes runs. Canonical URLs (RFC 3986 §6.2.2.2; what kubectl sends) never encode these characters.
  for (const [, hex] of rawPath.matchAll(/%([0-9a-fA-F]{2})/g)) {
    if (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(parseInt(hex!, 16))))
      throw new NonCanonicalPath(
        'percent-encoded letters, digits or -._~ are not allowed in the path: send them as they are',
      );
  }
  try {
    decodeURIComponent(rawPath);
  } catch {
    throw new NonCanonicalPath('the percent-encoding in the path is not valid UTF-8');
  }
  const segments = rawPath.split('/');
  if (segments.some((s) => s === '.' || s === '..'))
    throw new NonCanonicalPath('dot segments (. and ..) are not allowed in the path');
  const cluster = segments[2] ?? '';
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cluster))
    throw new NonCanonicalPath('the cluster name in the path is not valid');
  const path = '/' + segments.slice(3).join('/');
  return { cluster, path: path === '/' ? '/' : path.replace(/\/$/, '') || '/', query };
}

/**
 * A boolean query parameter read as kube-apiserver reads it (Go's `url.ParseQuery`, then its string-to-bool
 * conversion): the first value of the parameter whose decoded name is `key` counts, and any value but "0" or
 * "false" (in any case) is true, an empty one included; a pair Go cannot parse (a ';', a bad escape) is skipped.
 * Reading it any other way would let `?watch=yes` or `?w%61tch=1` be a watch upstream and a list here.
 */
export function queryFlag(query: string, key: string): boolean {
  for (const pair of query.split('&')) {
    if (pair === '' || pair.includes(';')) continue;
    const at = pair.indexOf('=');
    const name = goUnescape(at === -1 ? pair : pair.slice(0, at));
    const value = goUnescape(at === -1 ? '' : pair.slice(at + 1));
    if (name !== key || value === undefined) continue;
    return !(value === '0' || value.toLowerCase() === 'false');
  }
  return false;
}

/** Go's `url.QueryUnescape`: '+' is a space; undefined where an escape is malformed. */
function goUnescape(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}
/** Path segments kube-apiserver's RequestInfo reads as the verb (k8s.io/apiserver/pkg/endpoints/request). */
const SPECIAL_VERBS = new Set(['watch', 'proxy']);
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

/** Reads the request's attributes (pure; the path is already canonical). */
export function requestInfo(method: string, path: string, query: string): RequestInfo {
  const parts = path.split('/').filter((p) => p !== '');
  const base = { path, apiGroup: '', apiVersion: '' };
  let rest: string[];
  let apiGroup = '';
  let apiVersion = '';
  if (parts[0] === 'api' && parts.length >= 2) {
    apiVersion = parts[1]!;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    apiGroup = parts[1]!;
    apiVersion = parts[2]!;
    rest = parts.slice(3);
  } else {
    return { ...base, isResourceRequest: false, verb: method.toLowerCase() };
  }
  if (rest.length === 0) return { ...base, apiGroup, apiVersion, isResourceRequest: false, verb: method.toLowerCase() };
  // kube-apiserver still serves the deprecated /watch/… and /proxy/… forms (`/api/v1/watch/namespaces/<ns>/pods`)
  // and reads the namespace after them; so must the gateway, or its namespace check is walked around.
  let specialVerb: string | undefined;
  if (SPECIAL_VERBS.has(rest[0]!) && rest.length >= 2) {
    specialVerb = rest[0];
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  // /namespaces/<ns>/<resource>… is namespaced; /namespaces/<ns> alone (or with status/finalize) is the namespace
  // object itself.
  if (rest[0] === 'namespaces' && rest.length >= 2) {
    namespace = decodeURIComponent(rest[1]!);
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest.map((p) => decodeURIComponent(p));
  const verb = specialVerb ?? verbOf(method, name, queryFlag(query, 'watch'));
  return {
    ...base,
    apiGroup,
    apiVersion,
    isResourceRequest: true,
    verb,
    ...(namespace !== undefined ? { namespace } : {}),
    ...(resource !== undefined ? { resource } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(subresource !== undefined ? { subresource } : {}),
  };
}

function verbOf(method: string, name: string | undefined, watching: boolean): string {
  switch (method) {
    case 'GET':
    case 'HEAD':
      // As kube-apiserver: `watch` turns a list into a watch; a GET of one named object stays a get.
      return name !== undefined ? 'get' : watching ? 'watch' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return name === undefined ? 'deletecollection' : 'delete';
    default:
      return method.toLowerCase();
  }
}

/** The query parameters worth recording, as fields; the raw query string (which may hold anything) is never kept. */
export function auditedQuery(query: string): Record<string, string | string[]> {
  if (query === '') return {};
  const params = new URLSearchParams(query);
  const kept: Record<string, string | string[]> = {};
  for (const key of [
    'labelSelector',
    'fieldSelector',
    'watch',
    'dryRun',
    'container',
    'follow',
    'fieldManager',
    'propagationPolicy',
  ]) {
    const value = params.get(key);
    if (value !== null) kept[key] = value.slice(0, 500);
  }
  const command = params.getAll('command');
  if (command.length > 0) kept.command = command.map((c) => c.slice(0, 200));
  const ports = params.getAll('ports');
  // A port is at most a few digits; anything longer is cut like every other value a client writes into the trail.
  if (ports.length > 0) kept.ports = ports.map((p) => p.slice(0, 20));
  return kept;
}
