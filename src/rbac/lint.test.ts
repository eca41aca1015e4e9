import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { RiskyProfile } from '../domain/errors.ts';
import type { DeclaredRisk, PolicyRule, Profile } from '../domain/model.ts';
import { formatDuration } from '../domain/time.ts';
import {
  assertProfileIsSafe,
  INVALID_RULE,
  lintProfileDocument,
  lintRules,
  RISK_IDS,
  SCHEMA,
  YAML_SYNTAX,
} from './lint.ts';
import { SHIPPED_PROFILES } from './profiles.ts';

function risksOf(rule: PolicyRule, declared: DeclaredRisk[] = []): string[] {
  return lintRules([rule], declared).map((finding) => finding.risk);
}

function testdata(name: string): string {
  return readFileSync(new URL(`./testdata/${name}`, import.meta.url), 'utf8');
}

const core = (resources: string[], verbs: string[]): PolicyRule => ({ apiGroups: [''], resources, verbs });

describe('lintRules', () => {
  it('finds nothing in a plain read-only rule', () => {
    assert.deepEqual(risksOf(core(['pods', 'services', 'configmaps'], ['get', 'list', 'watch'])), []);
  });

  describe('wildcards', () => {
    it('refuses * in verbs', () => {
      assert.ok(risksOf(core(['pods'], ['*'])).includes('wildcard'));
    });

    it('refuses * in resources and the secrets read it implies', () => {
      assert.deepEqual(risksOf(core(['*'], ['get'])), [
        'wildcard',
        'secrets-read',
        'nodes-proxy',
        'proxy-subresource',
        'pods-exec',
        'pods-attach',
        'pods-portforward',
        'pods-ephemeralcontainers',
      ]);
    });

    it('refuses * in apiGroups', () => {
      assert.deepEqual(risksOf({ apiGroups: ['*'], resources: ['deployments'], verbs: ['get'] }), ['wildcard']);
    });

    it('refuses a subresource wildcard such as */scale', () => {
      assert.deepEqual(risksOf({ apiGroups: ['apps'], resources: ['*/scale'], verbs: ['patch'] }), ['wildcard']);
    });

    it('reports every risk a full wildcard implies, so declaring wildcard alone is not enough', () => {
      const everything: PolicyRule = { apiGroups: ['*'], resources: ['*'], verbs: ['*'] };
      const risks = risksOf(everything, [{ risk: 'wildcard', justification: 'break-glass' }]);
      assert.deepEqual(
        risks,
        RISK_IDS.filter((id) => id !== 'wildcard' && id !== 'non-resource-url'),
      );
    });
  });

  describe('privilege escalation', () => {
    it('refuses escalate and bind on roles', () => {
      const rbac = { apiGroups: ['rbac.authorization.k8s.io'], resources: ['roles', 'clusterroles'] };
      assert.deepEqual(risksOf({ ...rbac, verbs: ['escalate'] }), ['escalate']);
      assert.deepEqual(risksOf({ ...rbac, verbs: ['bind'] }), ['bind']);
    });

    it('refuses escalate and bind reached through verb *', () => {
      const risks = risksOf({ apiGroups: ['rbac.authorization.k8s.io'], resources: ['clusterroles'], verbs: ['*'] });
      assert.ok(risks.includes('escalate') && risks.includes('bind'), risks.join());
    });

    it('refuses a named escalate, bind or impersonate verb whatever the resource', () => {
      assert.deepEqual(risksOf(core(['configmaps'], ['escalate', 'bind', 'impersonate'])), [
        'escalate',
        'bind',
        'impersonate',
      ]);
    });

    it('refuses impersonating users, groups and service accounts', () => {
      for (const resource of ['users', 'groups', 'serviceaccounts']) {
        assert.deepEqual(risksOf(core([resource], ['impersonate'])), ['impersonate'], resource);
      }
    });

    it('refuses impersonation reached through verb * on serviceaccounts', () => {
      assert.ok(risksOf(core(['serviceaccounts'], ['*'])).includes('impersonate'));
    });
  });

  describe('credentials', () => {
    for (const verb of ['get', 'list', 'watch']) {
      it(`refuses ${verb} on secrets`, () => {
        assert.deepEqual(risksOf(core(['secrets'], [verb])), ['secrets-read']);
      });
    }

    it('allows writing secrets without reading them', () => {
      assert.deepEqual(risksOf(core(['secrets'], ['create', 'delete'])), []);
    });

    it('does not mistake secrets in another API group for core Secrets', () => {
      assert.deepEqual(risksOf({ apiGroups: ['example.com'], resources: ['secrets'], verbs: ['get'] }), []);
    });

    it('refuses creating service account tokens', () => {
      assert.deepEqual(risksOf(core(['serviceaccounts/token'], ['create'])), ['serviceaccount-token']);
      assert.deepEqual(risksOf(core(['serviceaccounts'], ['create'])), []);
    });

    it('refuses approving certificate signing requests', () => {
      const group = { apiGroups: ['certificates.k8s.io'] };
      assert.deepEqual(risksOf({ ...group, resources: ['certificatesigningrequests/approval'], verbs: ['update'] }), [
        'csr-approval',
      ]);
      assert.deepEqual(
        risksOf({
          ...group,
          resources: ['signers'],
          verbs: ['approve'],
          resourceNames: ['kubernetes.io/kube-apiserver-client'],
        }),
        ['csr-approval'],
      );
      assert.deepEqual(risksOf({ ...group, resources: ['certificatesigningrequests'], verbs: ['create', 'get'] }), []);
    });
  });

  describe('cluster control', () => {
    it('refuses writing admission webhook configurations but not reading them', () => {
      const webhooks = { apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'] };
      assert.deepEqual(risksOf({ ...webhooks, verbs: ['patch'] }), ['admission-webhooks']);
      assert.deepEqual(risksOf({ ...webhooks, verbs: ['get', 'list'] }), []);
    });

    it('refuses nodes/proxy with any verb', () => {
      assert.deepEqual(risksOf(core(['nodes/proxy'], ['get'])), ['nodes-proxy']);
    });

    it('refuses other proxy subresources, also in other groups', () => {
      assert.deepEqual(risksOf(core(['services/proxy'], ['get'])), ['proxy-subresource']);
      assert.deepEqual(risksOf({ apiGroups: ['example.com'], resources: ['widgets/proxy'], verbs: ['get'] }), [
        'proxy-subresource',
      ]);
    });

    it('refuses writing namespaces but not reading them', () => {
      assert.deepEqual(risksOf(core(['namespaces'], ['delete'])), ['namespace-write']);
      assert.deepEqual(risksOf(core(['namespaces'], ['get', 'list', 'watch'])), []);
    });

    it('refuses nonResourceURLs', () => {
      assert.deepEqual(risksOf({ nonResourceURLs: ['/metrics'], verbs: ['get'] }), ['non-resource-url']);
    });
  });

  describe('pod access', () => {
    for (const [subresource, risk] of [
      ['exec', 'pods-exec'],
      ['attach', 'pods-attach'],
      ['portforward', 'pods-portforward'],
      ['ephemeralcontainers', 'pods-ephemeralcontainers'],
    ] as const) {
      it(`refuses pods/${subresource} with get as well as create`, () => {
        assert.deepEqual(risksOf(core([`pods/${subresource}`], ['get'])), [risk]);
        assert.deepEqual(risksOf(core([`pods/${subresource}`], ['create'])), [risk]);
      });
    }

    it('allows reading logs', () => {
      assert.deepEqual(risksOf(core(['pods/log'], ['get'])), []);
    });
  });

  describe('pod creation', () => {
    const makers = [
      ['', 'pods'],
      ['', 'replicationcontrollers'],
      ['apps', 'deployments'],
      ['apps', 'replicasets'],
      ['apps', 'statefulsets'],
      ['apps', 'daemonsets'],
      ['batch', 'jobs'],
      ['batch', 'cronjobs'],
    ] as const;
    for (const [group, resource] of makers) {
      it(`refuses create, update and patch of ${resource}: the pod can run as any ServiceAccount of its namespace`, () => {
        for (const verb of ['create', 'update', 'patch']) {
          assert.deepEqual(risksOf({ apiGroups: [group], resources: [resource], verbs: [verb] }), ['pods-create']);
        }
      });
    }

    it('refuses pod creation reached through wildcards too', () => {
      assert.ok(risksOf(core(['pods'], ['*'])).includes('pods-create'));
      assert.ok(risksOf({ apiGroups: ['apps'], resources: ['*'], verbs: ['create'] }).includes('pods-create'));
      assert.ok(risksOf({ apiGroups: ['*'], resources: ['jobs'], verbs: ['patch'] }).includes('pods-create'));
    });

    it('allows reading, deleting and scaling what makes pods', () => {
      assert.deepEqual(risksOf({ apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'delete'] }), []);
      assert.deepEqual(risksOf({ apiGroups: ['apps'], resources: ['deployments/scale'], verbs: ['patch'] }), []);
    });

    it('is silenced by a declaration, which the shipped developer and deployer profiles carry', () => {
      const create = core(['pods'], ['create']);
      assert.deepEqual(risksOf(create, [{ risk: 'pods-create', justification: 'runs workloads' }]), []);
      for (const name of ['developer', 'deployer']) {
        const profile = SHIPPED_PROFILES.find((p) => p.name === name)!;
        const undeclared = new Set(lintRules(profile.rules, []).map((finding) => finding.risk));
        assert.deepEqual([...undeclared], ['pods-create'], `${name} creates pods and carries no other risk`);
        assert.ok(profile.declaredRisks.some((d) => d.risk === 'pods-create' && d.justification.trim() !== ''));
      }
    });
  });

  describe('declared risks', () => {
    const exec = core(['pods/exec'], ['create']);

    it('silences a risk declared with a justification', () => {
      assert.deepEqual(risksOf(exec, [{ risk: 'pods-exec', justification: 'debugging' }]), []);
    });

    it('does not silence a risk declared with a blank justification', () => {
      assert.deepEqual(risksOf(exec, [{ risk: 'pods-exec', justification: '   ' }]), ['pods-exec']);
    });

    it('silences only the declared risk', () => {
      const both = core(['pods/exec', 'pods/attach'], ['create']);
      assert.deepEqual(risksOf(both, [{ risk: 'pods-exec', justification: 'debugging' }]), ['pods-attach']);
    });
  });

  it('reports the index of each offending rule and says how to accept the risk', () => {
    const findings = lintRules([core(['pods'], ['get']), core(['secrets'], ['list'])], []);
    assert.deepEqual(findings, [
      {
        risk: 'secrets-read',
        ruleIndex: 1,
        message:
          "rules[1] lets the holder read Secrets (get, list or watch), which hold credentials; declare risk 'secrets-read' with a justification if this is intended",
      },
    ]);
  });

  describe('invalid rules', () => {
    it('reports a rule without verbs, resources or apiGroups as invalid, and it cannot be declared away', () => {
      const invalid: PolicyRule[] = [
        { apiGroups: [''], resources: ['pods'], verbs: [] },
        { apiGroups: [''], verbs: ['get'] },
        { resources: ['pods'], verbs: ['get'] },
        { apiGroups: [''], resources: ['pods'], nonResourceURLs: ['/healthz'], verbs: ['get'] },
      ];
      const findings = lintRules(invalid, [{ risk: INVALID_RULE, justification: 'please' }]);
      assert.deepEqual(
        findings.map((finding) => [finding.risk, finding.ruleIndex]),
        [
          [INVALID_RULE, 0],
          [INVALID_RULE, 1],
          [INVALID_RULE, 2],
          [INVALID_RULE, 3],
        ],
      );
      assert.match(findings[2]?.message ?? '', /use \[""\] for the core group/);
    });
  });
});

describe('shipped profiles', () => {
  for (const profile of SHIPPED_PROFILES) {
    it(`${profile.name} lints clean`, () => {
      assert.deepEqual(lintRules(profile.rules, profile.declaredRisks), []);
      assert.doesNotThrow(() => assertProfileIsSafe(profile));
    });

    it(`${profile.name} survives a round trip through a profile document`, () => {
      const result = lintProfileDocument(toDocument(profile));
      assert.deepEqual(result.findings, []);
      assert.deepEqual(result.profile, profile);
    });
  }
});

describe('assertProfileIsSafe', () => {
  const risky: Profile = {
    name: 'risky',
    description: 'reads secrets',
    rules: [core(['secrets'], ['get'])],
    declaredRisks: [],
    maxVisaSeconds: 3600,
    recordSessions: false,
  };

  it('refuses a profile with undeclared risks, listing the findings', () => {
    assert.throws(
      () => assertProfileIsSafe(risky),
      (error: unknown) =>
        error instanceof RiskyProfile &&
        error.code === 'ERR_RISKY_PROFILE' &&
        /secrets-read/.test(error.message) &&
        Array.isArray(error.details?.['findings']),
    );
  });

  it('refuses a profile whose name is not a DNS label', () => {
    assert.throws(() => assertProfileIsSafe({ ...risky, rules: [], name: 'Risky' }), /not a DNS label/);
  });
});

describe('lintProfileDocument', () => {
  it('reads a clean profile file into a Profile', () => {
    const result = lintProfileDocument(testdata('clean.yaml'));
    assert.deepEqual(result.findings, []);
    assert.equal(result.profile?.name, 'support-viewer');
    assert.equal(result.profile?.maxVisaSeconds, 2 * 86_400);
    assert.equal(result.profile?.recordSessions, false);
    assert.deepEqual(result.profile?.rules[1], {
      apiGroups: ['apps'],
      resources: ['deployments'],
      verbs: ['get', 'list', 'watch'],
    });
  });

  it('accepts a declared risk with a justification', () => {
    const result = lintProfileDocument(testdata('declared-exec.yaml'));
    assert.deepEqual(result.findings, []);
    assert.equal(result.profile?.recordSessions, true);
    assert.equal(result.profile?.declaredRisks[0]?.risk, 'pods-exec');
  });

  it('reports undeclared exec and attach on the line where the rule starts', () => {
    const result = lintProfileDocument(testdata('undeclared-exec.yaml'));
    assert.deepEqual(
      result.findings.map((finding) => [finding.risk, finding.line]),
      [
        ['pods-exec', 10],
        ['pods-attach', 10],
      ],
    );
    assert.equal(result.profile?.name, 'sneaky-debugger', 'the profile is still returned for display');
  });

  it('reports a secrets read hidden among other resources and a service proxy, each on its line', () => {
    const result = lintProfileDocument(testdata('secrets.yaml'));
    assert.deepEqual(
      result.findings.map((finding) => [finding.risk, finding.line]),
      [
        ['secrets-read', 9],
        ['proxy-subresource', 12],
      ],
    );
  });

  it('reports the many risks of a full wildcard on its line', () => {
    const result = lintProfileDocument(testdata('wildcard.yaml'));
    assert.ok(result.findings.length >= 10, `${result.findings.length} findings`);
    assert.ok(result.findings.every((finding) => finding.line === 6));
    assert.equal(result.findings[0]?.risk, 'wildcard');
  });

  it('reports every schema problem with its line and returns no profile', () => {
    const result = lintProfileDocument(testdata('schema-errors.yaml'));
    assert.equal(result.profile, undefined);
    assert.ok(result.findings.every((finding) => finding.risk === SCHEMA));
    const byLine = new Map(result.findings.map((finding) => [finding.line, finding.message]));
    assert.match(byLine.get(2) ?? '', /name: 'Not_A_Label' is not valid/);
    assert.match(byLine.get(4) ?? '', /maxVisaDuration: '3 hours' is not a duration/);
    assert.match(byLine.get(5) ?? '', /unknown field 'owner'; allowed fields are name, description/);
    assert.match(byLine.get(6) ?? '', /recordSessions: must be true or false/);
    assert.match(byLine.get(10) ?? '', /rules\[0\]: unknown field 'verb'/);
    assert.match(byLine.get(8) ?? '', /rules\[0\]\.verbs: required/);
    assert.match(byLine.get(12) ?? '', /'pods-shell' is not a known risk; known risks are wildcard, escalate/);
    assert.equal(result.findings.length, 7);
  });

  it('reports missing required fields', () => {
    const messages = lintProfileDocument(testdata('missing-fields.yaml')).findings.map((finding) => finding.message);
    assert.deepEqual(messages, [
      'name: required',
      'rules: required, as a list of RBAC rules',
      'maxVisaDuration: required',
    ]);
  });

  it('reports a YAML syntax error with its line', () => {
    const result = lintProfileDocument('name: broken\nrules:\n  - verbs: [get\n');
    assert.equal(result.profile, undefined);
    assert.equal(result.findings[0]?.risk, YAML_SYNTAX);
    assert.ok((result.findings[0]?.line ?? 0) >= 3);
  });

  it('refuses a document that is not a mapping', () => {
    assert.deepEqual(
      lintProfileDocument('- just\n- a list\n').findings.map((finding) => [finding.risk, finding.line]),
      [[SCHEMA, 1]],
    );
    assert.equal(lintProfileDocument('').findings[0]?.risk, SCHEMA);
  });

  it('refuses a verb written as a number instead of converting it', () => {
    const text =
      'name: x\ndescription: d\nmaxVisaDuration: 1h\nrules:\n  - apiGroups: [""]\n    resources: [pods]\n    verbs: [get, 1]\n';
    const result = lintProfileDocument(text);
    assert.deepEqual(
      result.findings.map((finding) => [finding.line, finding.message]),
      [[7, 'rules[0].verbs: every entry must be text (quote it if needed)']],
    );
  });

  it('refuses a declared risk without a justification', () => {
    const text =
      'name: x\ndescription: d\nmaxVisaDuration: 1h\nrules:\n  - apiGroups: [""]\n    resources: [pods/exec]\n    verbs: [create]\ndeclaredRisks:\n  - risk: pods-exec\n    justification: ""\n';
    const result = lintProfileDocument(text);
    assert.deepEqual(
      result.findings.map((finding) => [finding.risk, finding.line]),
      [[SCHEMA, 10]],
    );
  });

  it('follows YAML aliases and reports an aliased risky rule on the line where it is used', () => {
    const text = [
      'name: shared-verbs',
      'description: d',
      'maxVisaDuration: 1h',
      'rules:',
      '  - &pods',
      '    apiGroups: [""]',
      '    resources: [pods]',
      '    verbs: &read [get, list]',
      '  - apiGroups: [""]',
      '    resources: [secrets]',
      '    verbs: *read',
      '  - *pods',
      '',
    ].join('\n');
    const result = lintProfileDocument(text);
    assert.deepEqual(result.profile?.rules[1]?.verbs, ['get', 'list']);
    assert.deepEqual(result.profile?.rules[2], result.profile?.rules[0]);
    assert.deepEqual(
      result.findings.map((finding) => [finding.risk, finding.line]),
      [['secrets-read', 9]],
    );
  });

  it('refuses duplicate keys as a YAML error', () => {
    const result = lintProfileDocument('name: a\nname: b\n');
    assert.deepEqual(
      result.findings.map((finding) => finding.risk),
      [YAML_SYNTAX],
    );
  });
});

/** A profile as the YAML document an admin would write. */
function toDocument(profile: Profile): string {
  return stringify({
    name: profile.name,
    description: profile.description,
    maxVisaDuration: formatDuration(profile.maxVisaSeconds),
    recordSessions: profile.recordSessions,
    ...(profile.directMode === undefined ? {} : { directMode: profile.directMode }),
    rules: profile.rules,
    declaredRisks: profile.declaredRisks,
  });
}
