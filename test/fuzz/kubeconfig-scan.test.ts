// Properties of the kubeconfig scanner (src/monitor/kubeconfig-scan.ts), which reads files found on laptops and CI
// machines: any text, YAML or not, kubeconfig-shaped or not, with any token or certificate in it, gives a report or
// the scanner's readable refusal (an Error naming the file), never another exception; a report never shows a secret
// it read, and never touches a prototype whatever keys the YAML holds.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { CREDENTIAL_RISKS, scanKubeconfig, type ContextReport } from '../../src/monitor/kubeconfig-scan.ts';
import { check, PROTOTYPE_KEYS, prototypeChangesDuring } from './fuzz.ts';
import { jsonText } from './json-text.ts';

const FILE = '/home/dev/.kube/config';
const NOW = Date.UTC(2026, 2, 2, 10);
const SECRET_MARK = 'S3CRET';

/** A JWT-shaped token (never verified by the scanner, only read) with the given header and claims. */
const jwt = (header: string, claims: string, signature: string) =>
  `${Buffer.from(header).toString('base64url')}.${Buffer.from(claims).toString('base64url')}.${signature}`;

// `exp` claims reach far past JavaScript's Date range (|exp| > 8.64e12 s), and the tricky YAML includes unresolved
// aliases and a document with more alias expansions than yaml allows: each must still be a report or a refusal that
// names the file.
const DATE_RANGE_SECONDS = 8.64e12;
const BEYOND_DATES = fc.constantFrom(String(DATE_RANGE_SECONDS + 1), '-1e300', '1e308', '9007199254740993');
const claimValue = fc.oneof(
  fc.integer({ min: -DATE_RANGE_SECONDS, max: DATE_RANGE_SECONDS }).map(String),
  BEYOND_DATES,
  fc.constantFrom('"2026"', 'null', 'true', '{}', '[]', '1.5e9', '-0'),
  jsonText,
);
const claims = fc
  .tuple(
    fc.option(claimValue, { nil: undefined, freq: 2 }),
    fc.option(fc.constantFrom('"kubernetes/serviceaccount"', '"https://kubernetes.default.svc"', '5'), {
      nil: undefined,
    }),
    fc.array(
      fc.tuple(
        fc.constantFrom(
          'sub',
          'email',
          'kubernetes.io',
          'kubernetes.io/serviceaccount/namespace',
          'kubernetes.io/serviceaccount/service-account.name',
          ...PROTOTYPE_KEYS,
        ),
        fc.oneof(claimValue, fc.constant('{"namespace":"ci","serviceaccount":{"name":"x"}}')),
      ),
      { maxLength: 3 },
    ),
  )
  .map(([exp, iss, others]) => {
    const entries: [string, string][] = [...others];
    if (exp !== undefined) entries.push(['exp', exp]);
    if (iss !== undefined) entries.push(['iss', iss]);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
  });
const token = fc.oneof(
  fc
    .tuple(
      fc.oneof(
        { weight: 6, arbitrary: fc.constant('{"alg":"RS256","kid":"k"}') },
        { weight: 1, arbitrary: fc.constantFrom('{"alg":5}', '{}', 'null', '[]') },
        { weight: 1, arbitrary: jsonText },
      ),
      claims,
      fc.constant(SECRET_MARK),
    )
    .map(([header, payload, signature]) => jwt(header, payload, signature)),
  fc.string({ maxLength: 30 }).map((s) => `${SECRET_MARK}${s}`),
  fc.constantFrom(`${SECRET_MARK}.a.b`, `a.${SECRET_MARK}.b`, `${SECRET_MARK}..`, '..'),
);
const userEntry = fc.record(
  {
    token,
    tokenFile: fc.constantFrom('token', '/nonexistent', '', '../token'),
    'client-certificate-data': fc.oneof(
      fc.base64String({ maxLength: 80 }),
      fc.constant('LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t'),
    ),
    'client-certificate': fc.constantFrom('cert.pem', '/nonexistent.pem'),
    'client-key-data': fc.constant(`${SECRET_MARK}-key`),
    username: fc.string({ maxLength: 10 }),
    password: fc.string({ maxLength: 10 }).map((s) => `${SECRET_MARK}${s}`),
    exec: fc.record(
      {
        command: fc.constantFrom('kubevisa', '/usr/local/bin/kubevisa', 'aws', '', 'a/b/'),
        env: fc.oneof(
          fc.array(fc.record({ name: fc.string({ maxLength: 8 }), value: fc.constant(SECRET_MARK) })),
          fc.constant('x'),
        ),
        args: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    'auth-provider': fc.record(
      {
        name: fc.constantFrom('oidc', 'gcp', ''),
        config: fc.record(
          {
            'refresh-token': fc.constant(SECRET_MARK),
            'id-token': fc.constant(SECRET_MARK),
            'client-secret': fc.constant(SECRET_MARK),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);
const name = fc.oneof(fc.constantFrom('dev', 'prod', 'ci', '', ...PROTOTYPE_KEYS), fc.string({ maxLength: 6 }));
/** A kubeconfig as kubectl writes it, with any of its parts missing, mistyped or doubled. */
const kubeconfigShaped = fc
  .record(
    {
      apiVersion: fc.constantFrom('v1', 'v2'),
      kind: fc.constantFrom('Config', 'Secret'),
      clusters: fc.array(
        fc.record(
          {
            name,
            cluster: fc.record(
              {
                server: fc.constantFrom('https://127.0.0.1:6443', '', 'x'),
                'insecure-skip-tls-verify': fc.constantFrom(true, false, 'true'),
              },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        ),
        { maxLength: 3 },
      ),
      users: fc.array(fc.record({ name, user: userEntry }, { requiredKeys: [] }), { maxLength: 3 }),
      contexts: fc.array(
        fc.record(
          { name, context: fc.record({ cluster: name, user: name, namespace: name }, { requiredKeys: [] }) },
          { requiredKeys: [] },
        ),
        { maxLength: 3 },
      ),
      'current-context': name,
    },
    { requiredKeys: [] },
  )
  .map((config) => stringify(config));
/** YAML that is not what it seems: aliases, merge keys, tags, prototype keys, documents, broken syntax. */
const trickyYaml = fc.constantFrom(
  '__proto__: {role: admin}\ncontexts: []',
  'contexts:\n- name: x\n  context: {__proto__: {cluster: c}}',
  'a: &a [x]\nb: &b [*a, *a]\nc: [*b, *b]\ncontexts: []',
  'contexts: !!binary aGVsbG8=',
  '<<: {contexts: 5}',
  '--- {}\n--- {}',
  'contexts: [',
  '\t- x',
  'contexts:\n  - name: dev\n    context: !!set {a, b}',
  'users: [{name: u, user: {token: !!int 5}}]\ncontexts: [{name: c, context: {user: u}}]',
  '"\\ud800": x',
  'contexts: [{name: 1, context: 2}]',
  'contexts: *missing',
  'contexts:\n- name: x\n  context: *nowhere',
  [
    'a: &a [x, x, x, x, x, x, x, x, x, x]',
    ...'bcdefghi'.split('').map((n, i) => `${n}: &${n} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
    'contexts: []',
  ].join('\n'),
);
const anyText = fc.oneof(
  { weight: 6, arbitrary: kubeconfigShaped },
  { weight: 2, arbitrary: trickyYaml },
  { weight: 1, arbitrary: jsonText },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc.string({
      unit: fc.constantFrom('-', ':', ' ', '\n', '[', ']', '{', '}', '&', '!', 'a', '#', '|', '>', '"', "'"),
      maxLength: 60,
    }),
  },
);

describe('fuzzing the kubeconfig scanner (src/monitor/kubeconfig-scan.ts)', () => {
  test('any text gives a report or an Error naming the file, never shows a secret, and touches no prototype', () => {
    check(
      'kubeconfig scan',
      1500,
      fc.property(anyText, (text) => {
        let reports: ContextReport[] | undefined;
        const { changes, thrown } = prototypeChangesDuring(() => {
          reports = scanKubeconfig({
            file: FILE,
            text,
            readFile: (path) => (path.endsWith('token') ? Buffer.from(`${SECRET_MARK}-from-file`) : undefined),
            resolvePath: (path) => (path.startsWith('/') ? path : `/home/dev/.kube/${path}`),
            now: NOW,
          });
        });
        assert.deepEqual(changes, [], text);
        if (thrown !== undefined) {
          assert.ok(thrown instanceof Error, `threw ${String(thrown)}`);
          assert.ok(
            thrown.message.startsWith(`${FILE} is not`),
            `an unreadable refusal for ${JSON.stringify(text)}: ${thrown.stack}`,
          );
          return;
        }
        for (const report of reports!) {
          assert.equal(report.file, FILE);
          assert.ok(CREDENTIAL_RISKS.includes(report.risk));
          assert.ok(report.credentials.length > 0);
          for (const credential of report.credentials) {
            assert.ok(CREDENTIAL_RISKS.includes(credential.risk));
            if (credential.expiresAt !== undefined) assert.ok(!Number.isNaN(Date.parse(credential.expiresAt)));
          }
          const shown = JSON.stringify(report);
          assert.ok(!shown.includes(SECRET_MARK), `the report shows a secret: ${shown}`);
        }
      }),
    );
  });
});
