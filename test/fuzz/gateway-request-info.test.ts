// Properties of the gateway's reading of request targets (src/gateway/request-info.ts): whatever a client sends, the
// gateway either refuses it as non-canonical or reads exactly the request kube-apiserver will run, so the namespace
// its grant check sees is the namespace Kubernetes authorizes. The reference is an independent model of
// kube-apiserver: Go's net/url decoding of the request URI, then RequestInfoFactory.NewRequestInfo
// (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { auditedQuery, NonCanonicalPath, requestInfo, splitGatewayUrl } from '../../src/gateway/request-info.ts';
import { check } from './fuzz.ts';

// ---------------------------------------------------------------------------------------------------------------
// kube-apiserver's reading, modelled independently.

/** Go's url.PathUnescape as used for URL.Path: every `%` needs two hex digits; anything else is copied as it is. */
function goUnescape(raw: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c !== 0x25) {
      bytes.push(c);
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** apimachinery's Convert_Slice_string_To_bool: only an absent value, "0" or "false" (any case) is false. */
function goQueryBool(query: string, key: string): boolean {
  const values: string[] = [];
  for (const pair of query.split('&')) {
    if (pair === '' || pair.includes(';')) continue;
    const at = pair.indexOf('=');
    const name = goUnescape((at === -1 ? pair : pair.slice(0, at)).replaceAll('+', ' '));
    if (name === key) values.push(goUnescape((at === -1 ? '' : pair.slice(at + 1)).replaceAll('+', ' ')) ?? '');
  }
  if (values.length === 0) return false;
  return !(values[0] === '0' || values[0]!.toLowerCase() === 'false');
}

interface KubeInfo {
  isResourceRequest: boolean;
  verb: string;
  namespace: string;
  resource: string;
  name: string;
  subresource: string;
}

const SPECIAL_VERBS = new Set(['proxy', 'watch']);
const SPECIAL_VERBS_NO_SUBRESOURCES = new Set(['proxy']);
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

/** NewRequestInfo for a decoded path; undefined where kube-apiserver answers with an error instead. */
function kubeRequestInfo(method: string, path: string, query: string): KubeInfo | undefined {
  const info: KubeInfo = {
    isResourceRequest: false,
    verb: method.toLowerCase(),
    namespace: '',
    resource: '',
    name: '',
    subresource: '',
  };
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  let parts = trimmed === '' ? [] : trimmed.split('/');
  if (parts.length < 3) return info;
  if (parts[0] !== 'api' && parts[0] !== 'apis') return info;
  const prefix = parts[0];
  parts = parts.slice(1);
  if (prefix !== 'api') {
    if (parts.length < 3) return info;
    parts = parts.slice(1);
  }
  info.isResourceRequest = true;
  parts = parts.slice(1);
  if (SPECIAL_VERBS.has(parts[0]!)) {
    if (parts.length < 2) return undefined;
    info.verb = parts[0]!;
    parts = parts.slice(1);
  } else {
    info.verb =
      { POST: 'create', GET: 'get', HEAD: 'get', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[method] ?? '';
  }
  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      info.namespace = parts[1]!;
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2]!)) parts = parts.slice(2);
    }
  }
  if (parts.length >= 3 && !SPECIAL_VERBS_NO_SUBRESOURCES.has(info.verb)) info.subresource = parts[2]!;
  if (parts.length >= 2) info.name = parts[1]!;
  if (parts.length >= 1) info.resource = parts[0]!;
  if (info.name === '' && info.verb === 'get') info.verb = goQueryBool(query, 'watch') ? 'watch' : 'list';
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';
  return info;
}

// ---------------------------------------------------------------------------------------------------------------
// Request targets: what Node's HTTP parser hands the gateway is printable ASCII (it answers 400 to anything else),
// built here from the pieces path attacks are made of.

const WORDS = [
  'api',
  'apis',
  'v1',
  'apps',
  'namespaces',
  'watch',
  'proxy',
  'pods',
  'configmaps',
  'secrets',
  'exec',
  'status',
  'finalize',
  'sec-a',
  'sec-out',
  'kube-system',
  'x',
];
const TRICKS = [
  '.',
  '..',
  '...',
  '.a',
  '%2e',
  '%2E',
  '.%2e',
  '%2e%2e',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '%00',
  '%25',
  '%252e',
  '%zz',
  '%',
  '%4',
  '%C0%AE',
  '%C3%A9',
  '%E2%80%AE',
  '%FF',
  '%20',
  '%3F',
  '%23',
  '%3B',
  '%61',
  '%6E',
  '%2D',
  '%7E',
  ';',
  '\\',
  '#',
  '&',
  '=',
  '+',
  ':',
  '@',
  '*',
  ',',
  '~',
];
/** Pieces kube-apiserver decodes to something other than themselves but that are not path syntax. */
const ENCODED = ['%20', '%3F', '%23', '%3B', '%C3%A9', '%E2%80%AE', '%2B', '%40'];
const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)) });
const piece = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 2, arbitrary: fc.constantFrom(...ENCODED) },
  { weight: 2, arbitrary: fc.constantFrom(...TRICKS) },
  { weight: 1, arbitrary: printable.filter((s) => !s.includes('?') && !s.includes('/')) },
);
const segment = fc.oneof(
  { weight: 30, arbitrary: fc.array(piece, { minLength: 1, maxLength: 2 }).map((p) => p.join('')) },
  { weight: 1, arbitrary: fc.constant('') },
);
/** Segments shaped like API paths (prefix, group, version, special verb, namespace, resource…), then tampered with. */
const apiSegments = fc
  .tuple(
    fc.constantFrom(['api', 'v1'], ['apis', 'apps', 'v1'], ['apis', 'apps'], ['api'], ['apis'], []),
    fc.option(fc.constantFrom('watch', 'proxy'), { nil: undefined }),
    fc.option(fc.tuple(fc.constant('namespaces'), segment), { nil: undefined }),
    fc.array(segment, { maxLength: 4 }),
    fc.array(fc.tuple(fc.nat(), segment), { maxLength: 2 }),
  )
  .map(([prefix, verb, namespace, rest, tampering]) => {
    const segments = [...prefix, ...(verb ? [verb] : []), ...(namespace ?? []), ...rest];
    for (const [at, replacement] of tampering) if (segments.length > 0) segments[at % segments.length] = replacement;
    return segments;
  });
const clusterPart = fc.oneof(
  { weight: 12, arbitrary: fc.constant('test') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('prod', 'a', 'TEST', '', '.', '..', 'te%73t', 'test;x', '-x', 'x'.repeat(64)),
  },
  { weight: 1, arbitrary: printable.filter((s) => !s.includes('?') && !s.includes('/')) },
);
const queryPart = fc.oneof(
  fc.constant(''),
  fc
    .array(
      fc.tuple(
        fc.constantFrom('watch', 'follow', 'labelSelector', 'command', 'ports', 'limit', 'wat%63h', 'x'),
        fc.constantFrom('true', '1', 'false', '0', 'yes', '', 'True', '%74rue', 'a&b'),
      ),
      { maxLength: 4 },
    )
    .map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&')),
  printable,
);
/** `/clusters/<cluster>/<segments>[/][?query]`, mostly, and occasionally a target that is not even that. */
const gatewayTarget = fc
  .tuple(
    fc.oneof(
      { weight: 12, arbitrary: fc.constant('/clusters/') },
      { weight: 1, arbitrary: fc.constantFrom('/Clusters/', '/clusters', '//clusters/', '/api/', '/') },
    ),
    clusterPart,
    fc.oneof({ weight: 3, arbitrary: apiSegments }, { weight: 1, arbitrary: fc.array(segment, { maxLength: 8 }) }),
    fc.boolean(),
    fc.option(queryPart, { nil: undefined }),
  )
  .map(
    ([start, cluster, segments, trailing, query]) =>
      `${start}${cluster}/${segments.join('/')}${trailing ? '/' : ''}${query === undefined ? '' : `?${query}`}`,
  );
const anyTarget = fc.oneof(
  { weight: 6, arbitrary: gatewayTarget },
  { weight: 1, arbitrary: printable },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
);
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** splitGatewayUrl's answer: the parts, or the refusal's message; anything else it throws fails the property. */
function split(target: string): ReturnType<typeof splitGatewayUrl> | { refused: string } {
  try {
    return splitGatewayUrl(target);
  } catch (error) {
    assert.ok(error instanceof NonCanonicalPath, `${JSON.stringify(target)} threw ${String(error)}`);
    assert.ok(error.message.length > 10, 'the refusal says what is wrong');
    return { refused: error.message };
  }
}

describe('fuzzing the gateway request target (src/gateway/request-info.ts)', () => {
  test('splitGatewayUrl refuses only with NonCanonicalPath, and what it accepts is canonical and is what it forwards', () => {
    check(
      'request-info: canonical or refused',
      3000,
      fc.property(anyTarget, (target) => {
        const result = split(target);
        if ('refused' in result) return;
        const rawPath = target.split('?')[0]!;
        assert.ok(!rawPath.includes('//'), `accepted an empty segment: ${target}`);
        assert.ok(!/[\\;]/.test(rawPath), `accepted a backslash or ';': ${target}`);
        assert.ok(
          !/%(2f|2e|5c|00|25)/i.test(rawPath),
          `accepted an encoded slash, dot, backslash, NUL or %: ${target}`,
        );
        const rawSegments = rawPath.split('/');
        for (const raw of rawSegments) {
          assert.ok(raw !== '.' && raw !== '..', `accepted a dot segment: ${target}`);
          const decoded = decodeURIComponent(raw);
          assert.ok(!decoded.includes('/'), `a segment decodes to a slash: ${target}`);
          assert.ok(decoded !== '.' && decoded !== '..', `a segment decodes to a dot segment: ${target}`);
          assert.equal(goUnescape(raw), decoded, `Go and the gateway decode ${raw} alike`);
        }
        assert.match(result.cluster, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
        // What is checked is what is forwarded: the same bytes, at most without a trailing slash.
        const rebuilt = `/clusters/${result.cluster}${result.path === '/' ? '' : result.path}`;
        assert.ok(rawPath === rebuilt || rawPath === `${rebuilt}/`, `${rawPath} forwarded as ${result.path}`);
        assert.equal(result.query, target.includes('?') ? target.slice(target.indexOf('?') + 1) : '');
      }),
    );
  });

  test('for every accepted target, the namespace, resource and name the gateway reads are those kube-apiserver reads', () => {
    check(
      'request-info: kube-apiserver oracle',
      3000,
      fc.property(gatewayTarget, fc.constantFrom(...METHODS), (target, method) => {
        const result = split(target);
        if ('refused' in result) return;
        const info = requestInfo(method, result.path, result.query);
        assert.equal(info.path, result.path);
        const decoded = goUnescape(result.path);
        assert.ok(decoded !== undefined, `Go refuses a path the gateway accepted: ${result.path}`);
        const kube = kubeRequestInfo(method, decoded, result.query);
        // kube-apiserver answers such a request with an error: it reaches nothing, whatever the gateway read.
        if (kube === undefined) return;
        const where = `${method} ${target}`;
        assert.equal(info.namespace ?? '', kube.namespace, `namespace of ${where}`);
        assert.equal(info.isResourceRequest, kube.isResourceRequest, `resource request? ${where}`);
        if (!kube.isResourceRequest) return;
        assert.equal(info.resource ?? '', kube.resource, `resource of ${where}`);
        assert.equal(info.name ?? '', kube.name, `name of ${where}`);
        if (kube.verb !== 'proxy') assert.equal(info.subresource ?? '', kube.subresource, `subresource of ${where}`);
        assert.equal(info.verb, kube.verb, `verb of ${where}`);
      }),
    );
  });

  test('a namespace the grant check sees is never one Kubernetes does not (the cases that matter, spelled out)', () => {
    // Deterministic companions of the property above: the known ways of making a gateway and an API server disagree.
    const cases: [string, string | undefined][] = [
      ['/clusters/test/api/v1/namespaces/sec-a/configmaps', 'sec-a'],
      ['/clusters/test/api/v1/watch/namespaces/sec-out/configmaps', 'sec-out'],
      ['/clusters/test/api/v1/proxy/namespaces/sec-out/pods/app', 'sec-out'],
      ['/clusters/test/apis/apps/v1/namespaces/sec-out/deployments', 'sec-out'],
      ['/clusters/test/api/v1/namespaces/sec-out', 'sec-out'],
      ['/clusters/test/api/v1/namespaces/sec-out/status', 'sec-out'],
      ['/clusters/test/api/v1/namespaces', undefined],
      ['/clusters/test/api/v1/nodes', undefined],
    ];
    for (const [target, namespace] of cases) {
      const result = split(target);
      assert.ok(!('refused' in result), target);
      assert.equal(requestInfo('GET', result.path, result.query).namespace, namespace, target);
      assert.equal(kubeRequestInfo('GET', goUnescape(result.path)!, result.query)?.namespace ?? '', namespace ?? '');
    }
  });

  test('auditedQuery never throws and keeps only the listed parameters, as values the query holds', () => {
    const listed = new Set([
      'labelSelector',
      'fieldSelector',
      'watch',
      'dryRun',
      'container',
      'follow',
      'fieldManager',
      'propagationPolicy',
      'command',
      'ports',
    ]);
    check(
      'request-info: audited query',
      2000,
      fc.property(fc.oneof(queryPart, fc.string({ unit: 'binary', maxLength: 300 })), (query) => {
        const kept = auditedQuery(query);
        const params = new URLSearchParams(query);
        for (const [key, value] of Object.entries(kept)) {
          assert.ok(listed.has(key), `kept ${key}`);
          const sent = params.getAll(key);
          for (const one of [value].flat()) {
            assert.ok(
              sent.some((s) => s.startsWith(one)),
              `${key}=${one} is (a prefix of) a value sent`,
            );
            if (key !== 'ports') assert.ok(one.length <= 500, `${key} is cut to 500 characters`);
          }
        }
        assert.equal(Object.getPrototypeOf(kept), Object.prototype);
      }),
    );
  });
});
