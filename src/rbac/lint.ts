/**
 * The profile linter. A profile is a ClusterRole kubevisa hands to contractors, so rules that let a holder read
 * credentials, run code in other people's containers, or grant themselves more are refused by default. A profile
 * may accept such a risk on purpose by declaring its id with a justification; the declaration is what a reviewer
 * reads. Pure: `lintProfileDocument` parses text it is given and reads no file.
 */
import {
  type Document,
  isAlias,
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Node,
  type Pair,
} from 'yaml';
import { InvalidInput, RiskyProfile } from '../domain/errors.ts';
import type { DeclaredRisk, PolicyRule, Profile } from '../domain/model.ts';
import { isDnsLabel } from '../domain/names.ts';
import { MAX_DURATION_SECONDS, parseDuration } from '../domain/time.ts';
import { CORE_GROUP, listsVerb, RBAC_GROUP, ruleGrantsAny } from './rules.ts';
import { assertDirectModeFits, DIRECT_MODE_FINDING, directModeProblem } from './direct-mode.ts';

/** A risky rule found by `lintRules`. */
export interface RuleFinding {
  /** A risk id from `RISKS`, or `invalid-rule` for a rule Kubernetes would refuse (cannot be declared away). */
  risk: string;
  message: string;
  /** 0-based index of the rule in the profile's `rules`. */
  ruleIndex: number;
}

/** One risk the linter knows: a stable id, what it means, and how to tell a rule carries it. */
export interface RiskDefinition {
  id: string;
  /** Completes "rules[i] …": what the rule lets a holder do and why that matters. */
  summary: string;
  carriedBy(rule: PolicyRule): boolean;
}

const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];
const ROLES = ['roles', 'clusterroles'];
const ADMISSION_CONFIGURATIONS = [
  'mutatingwebhookconfigurations',
  'validatingwebhookconfigurations',
  'validatingadmissionpolicies',
  'validatingadmissionpolicybindings',
  'mutatingadmissionpolicies',
  'mutatingadmissionpolicybindings',
];

// Every kind whose create, update or patch decides a pod spec: the pod itself, or the template of one it makes.
const POD_MAKERS: readonly (readonly [group: string, resources: readonly string[]])[] = [
  [CORE_GROUP, ['pods', 'replicationcontrollers']],
  ['apps', ['deployments', 'replicasets', 'statefulsets', 'daemonsets']],
  ['batch', ['jobs', 'cronjobs']],
];

function podSubresource(id: string, subresource: string, summary: string): RiskDefinition {
  // Any verb counts: a WebSocket upgrade to pods/exec is authorized as `get` on many Kubernetes versions.
  return { id, summary, carriedBy: (rule) => ruleGrantsAny(rule, CORE_GROUP, [`pods/${subresource}`], 'any') };
}

/** Every risk the linter knows, in report order. Ids are stable: profiles declare them. */
export const RISKS: readonly RiskDefinition[] = [
  {
    id: 'wildcard',
    summary: 'uses * in verbs, resources or apiGroups, which grants everything matching, including APIs added later',
    carriedBy: (rule) =>
      [rule.verbs, rule.resources ?? [], rule.apiGroups ?? []].some((values) => values.some((v) => v.includes('*'))),
  },
  {
    id: 'escalate',
    summary: 'grants escalate, which lets the holder write roles with permissions they do not have',
    carriedBy: (rule) => listsVerb(rule, 'escalate') || ruleGrantsAny(rule, RBAC_GROUP, ROLES, ['escalate']),
  },
  {
    id: 'bind',
    summary: 'grants bind, which lets the holder bind roles with permissions they do not have',
    carriedBy: (rule) => listsVerb(rule, 'bind') || ruleGrantsAny(rule, RBAC_GROUP, ROLES, ['bind']),
  },
  {
    id: 'impersonate',
    summary: 'grants impersonate, which lets the holder act as other users, groups or service accounts',
    carriedBy: (rule) =>
      listsVerb(rule, 'impersonate') ||
      ruleGrantsAny(rule, CORE_GROUP, ['users', 'groups', 'serviceaccounts'], ['impersonate']) ||
      ruleGrantsAny(rule, 'authentication.k8s.io', ['uids', 'userextras/scopes'], ['impersonate']),
  },
  {
    id: 'secrets-read',
    summary: 'lets the holder read Secrets (get, list or watch), which hold credentials',
    carriedBy: (rule) => ruleGrantsAny(rule, CORE_GROUP, ['secrets'], ['get', 'list', 'watch']),
  },
  {
    id: 'serviceaccount-token',
    summary: 'lets the holder create tokens for service accounts (serviceaccounts/token), i.e. act as them',
    carriedBy: (rule) => ruleGrantsAny(rule, CORE_GROUP, ['serviceaccounts/token'], ['create']),
  },
  {
    id: 'csr-approval',
    summary: 'lets the holder approve certificate signing requests, i.e. mint client certificates',
    carriedBy: (rule) =>
      listsVerb(rule, 'approve') ||
      ruleGrantsAny(rule, 'certificates.k8s.io', ['certificatesigningrequests/approval'], ['update', 'patch']) ||
      ruleGrantsAny(rule, 'certificates.k8s.io', ['signers'], ['approve']),
  },
  {
    id: 'admission-webhooks',
    summary: 'lets the holder change admission webhooks or policies, which see and alter every request',
    carriedBy: (rule) => ruleGrantsAny(rule, 'admissionregistration.k8s.io', ADMISSION_CONFIGURATIONS, WRITE_VERBS),
  },
  {
    id: 'nodes-proxy',
    summary: 'reaches nodes/proxy, i.e. the kubelet API, which can run commands in any pod on the node',
    carriedBy: (rule) => ruleGrantsAny(rule, CORE_GROUP, ['nodes/proxy'], 'any'),
  },
  {
    id: 'proxy-subresource',
    summary: 'reaches a */proxy subresource, which forwards requests past Kubernetes authorization',
    carriedBy: (rule) =>
      (rule.resources ?? []).some((resource) => resource.endsWith('/proxy') && resource !== 'nodes/proxy') ||
      ruleGrantsAny(rule, CORE_GROUP, ['pods/proxy', 'services/proxy'], 'any'),
  },
  podSubresource('pods-exec', 'exec', 'lets the holder run commands in containers (pods/exec)'),
  podSubresource('pods-attach', 'attach', 'lets the holder attach to running containers (pods/attach)'),
  podSubresource(
    'pods-portforward',
    'portforward',
    'lets the holder open network tunnels into pods (pods/portforward)',
  ),
  podSubresource(
    'pods-ephemeralcontainers',
    'ephemeralcontainers',
    'lets the holder add containers to running pods (pods/ephemeralcontainers)',
  ),
  {
    id: 'pods-create',
    summary:
      'lets the holder create or change pods, or objects that make pods (deployments, replica sets, stateful sets, daemon sets, jobs, cron jobs, replication controllers); a pod can run as any ServiceAccount of its namespace and mount its Secrets, so the holder can act with those',
    carriedBy: (rule) =>
      POD_MAKERS.some(([group, resources]) => ruleGrantsAny(rule, group, resources, ['create', 'update', 'patch'])),
  },
  {
    id: 'namespace-write',
    summary: 'lets the holder create, change or delete namespaces',
    carriedBy: (rule) => ruleGrantsAny(rule, CORE_GROUP, ['namespaces'], WRITE_VERBS),
  },
  {
    id: 'non-resource-url',
    summary: 'grants nonResourceURLs (API paths outside resources), which a namespaced profile has no use for',
    carriedBy: (rule) => (rule.nonResourceURLs ?? []).length > 0,
  },
];

/** The ids a profile may declare. */
export const RISK_IDS: readonly string[] = RISKS.map((risk) => risk.id);
/** Finding id for a rule Kubernetes itself would refuse; it cannot be declared away. */
export const INVALID_RULE = 'invalid-rule';

/**
 * Lints RBAC rules: one finding per rule and risk, in rule order, except for risks declared with a non-empty
 * justification. Rules Kubernetes would refuse (no verbs, nothing to apply to) are reported as `invalid-rule`.
 */
export function lintRules(rules: readonly PolicyRule[], declaredRisks: readonly DeclaredRisk[]): RuleFinding[] {
  const accepted = new Set(
    declaredRisks.filter((declared) => declared.justification.trim() !== '').map((declared) => declared.risk),
  );
  return rules.flatMap((rule, ruleIndex) => {
    const problem = invalidRuleProblem(rule);
    if (problem !== undefined) return [{ risk: INVALID_RULE, message: `rules[${ruleIndex}] ${problem}`, ruleIndex }];
    return RISKS.filter((risk) => !accepted.has(risk.id) && risk.carriedBy(rule)).map((risk) => ({
      risk: risk.id,
      message: `rules[${ruleIndex}] ${risk.summary}; declare risk '${risk.id}' with a justification if this is intended`,
      ruleIndex,
    }));
  });
}

/**
 * Refuses a profile that carries undeclared risks or invalid rules, e.g. before installing it as a ClusterRole.
 * @throws RiskyProfile listing every finding (also in `details.findings`); InvalidInput for a bad name or length.
 */
export function assertProfileIsSafe(profile: Profile): void {
  if (!isDnsLabel(profile.name)) {
    throw new InvalidInput(`profile name '${profile.name}' is not a DNS label`, { details: { field: 'name' } });
  }
  if (
    !Number.isInteger(profile.maxVisaSeconds) ||
    profile.maxVisaSeconds < 1 ||
    profile.maxVisaSeconds > MAX_DURATION_SECONDS
  ) {
    throw new InvalidInput(`profile '${profile.name}': maxVisaSeconds must be from 1 to ${MAX_DURATION_SECONDS}`, {
      details: { field: 'maxVisaSeconds' },
    });
  }
  const findings = lintRules(profile.rules, profile.declaredRisks);
  if (findings.length > 0) {
    throw new RiskyProfile(
      `profile '${profile.name}' is refused: ${findings.map((finding) => finding.message).join('; ')}`,
      { details: { findings } },
    );
  }
  assertDirectModeFits(profile);
}

function invalidRuleProblem(rule: PolicyRule): string | undefined {
  const hasResources = (rule.resources ?? []).length > 0;
  const hasUrls = (rule.nonResourceURLs ?? []).length > 0;
  if (rule.verbs.length === 0) return 'has no verbs';
  if (!hasResources && !hasUrls) return 'names neither resources nor nonResourceURLs';
  if (hasResources && hasUrls) return 'mixes resources and nonResourceURLs; Kubernetes refuses that';
  if (hasResources && (rule.apiGroups ?? []).length === 0) {
    return `names resources without apiGroups; use [""] for the core group (pods, services…)`;
  }
  return undefined;
}

// ——— Profile documents ———

/** A problem in a profile document, with the 1-based line it is on. */
export interface DocumentFinding {
  /** A risk id, `invalid-rule`, `schema` (shape of the document) or `yaml` (syntax). */
  risk: string;
  message: string;
  line: number;
}

export interface ProfileDocumentResult {
  /** The profile, when the document has the right shape (it may still carry risk findings). */
  profile?: Profile;
  findings: DocumentFinding[];
}

export const SCHEMA = 'schema';
export const YAML_SYNTAX = 'yaml';

const PROFILE_FIELDS = [
  'name',
  'description',
  'rules',
  'declaredRisks',
  'maxVisaDuration',
  'recordSessions',
  'directMode',
];
const RULE_FIELDS = ['apiGroups', 'resources', 'resourceNames', 'verbs', 'nonResourceURLs'] as const;
const DECLARED_RISK_FIELDS = ['risk', 'justification'];
const EXAMPLE_NAME = 'e.g. read-only';

/**
 * Parses a profile file (YAML: `name`, `description`, `rules`, `declaredRisks`, `maxVisaDuration` such as `8h`,
 * `recordSessions`, default false, `directMode`: allowed or denied, default denied) and lints it. Every finding
 * carries the 1-based line it is about: for a risky rule the line where that rule starts. The profile is returned
 * whenever the document has the right shape.
 */
export function lintProfileDocument(yamlText: string): ProfileDocumentResult {
  const lineCounter = new LineCounter();
  const document = parseDocument(yamlText, { lineCounter, prettyErrors: true });
  const syntax = document.errors.map((error) => ({
    risk: YAML_SYNTAX,
    message: error.message.split('\n')[0] ?? error.message,
    line: error.linePos?.[0].line ?? 1,
  }));
  if (syntax.length > 0) return { findings: syntax };

  const reader = new DocumentReader(document, lineCounter);
  const parsed = reader.readProfile(document.contents);
  if (parsed === undefined || reader.findings.length > 0) return { findings: reader.findings };
  const ruleFindings = lintRules(parsed.profile.rules, parsed.profile.declaredRisks).map((finding) => ({
    risk: finding.risk,
    message: finding.message,
    line: parsed.ruleLines[finding.ruleIndex] ?? 1,
  }));
  const directMode = directModeProblem(parsed.profile);
  if (directMode !== undefined) {
    ruleFindings.push({ risk: DIRECT_MODE_FINDING, message: directMode, line: parsed.directModeLine ?? 1 });
  }
  return { profile: parsed.profile, findings: ruleFindings };
}

/**
 * Walks the YAML syntax tree, collecting schema findings with line numbers. Anchors and aliases are followed (an
 * admin may share a verbs list between rules), one level per step, so nothing is expanded beyond what is read.
 */
class DocumentReader {
  readonly findings: DocumentFinding[] = [];
  readonly #document: Document;
  readonly #lineCounter: LineCounter;

  constructor(document: Document, lineCounter: LineCounter) {
    this.#document = document;
    this.#lineCounter = lineCounter;
  }

  readProfile(root: unknown): { profile: Profile; ruleLines: number[]; directModeLine?: number } | undefined {
    if (!isMap(root)) {
      this.#report(root, `a profile must be a mapping with ${PROFILE_FIELDS.join(', ')}`);
      return undefined;
    }
    const fields = this.#fields(root.items, PROFILE_FIELDS, 'profile');
    const name = this.#requiredString(fields, 'name', root);
    if (name !== undefined && !isDnsLabel(name.value)) {
      this.#report(
        name.node,
        `name: '${name.value}' is not valid: use 1–63 lower-case letters, digits or '-', starting and ending with a letter or digit (${EXAMPLE_NAME})`,
      );
    }
    const description = this.#requiredString(fields, 'description', root);
    const rules = this.#rules(fields.get('rules'), root);
    const declaredRisks = this.#declaredRisks(fields.get('declaredRisks'));
    const maxVisaSeconds = this.#duration(fields, root);
    const recordSessions = this.#boolean(fields.get('recordSessions'), 'recordSessions') ?? false;
    const directMode = this.#directMode(fields.get('directMode'));
    if (name === undefined || description === undefined || rules === undefined || maxVisaSeconds === undefined) {
      return undefined;
    }
    return {
      profile: {
        name: name.value,
        description: description.value,
        rules: rules.map((rule) => rule.rule),
        declaredRisks,
        maxVisaSeconds,
        recordSessions,
        ...(directMode === undefined ? {} : { directMode }),
      },
      ruleLines: rules.map((rule) => rule.line),
      ...(fields.has('directMode') ? { directModeLine: this.#line(fields.get('directMode')) } : {}),
    };
  }

  #directMode(node: Node | undefined): Profile['directMode'] {
    if (node === undefined) return undefined;
    if (isScalar(node) && (node.value === 'allowed' || node.value === 'denied')) return node.value;
    this.#report(node, `directMode: must be 'allowed' or 'denied' (default 'denied')`);
    return undefined;
  }

  #rules(node: Node | undefined, parent: Node): { rule: PolicyRule; line: number }[] | undefined {
    if (node === undefined) {
      this.#report(parent, 'rules: required, as a list of RBAC rules');
      return undefined;
    }
    if (!isSeq(node) || node.items.length === 0) {
      this.#report(node, 'rules: must be a non-empty list of RBAC rules');
      return undefined;
    }
    // A rule's line is where it appears in the list, even when it is an alias of a rule defined elsewhere.
    const rules = node.items.map((item, index) => this.#rule(this.#deref(item), index, this.#line(item)));
    return rules.every((rule) => rule !== undefined) ? rules : undefined;
  }

  #rule(node: unknown, index: number, line: number): { rule: PolicyRule; line: number } | undefined {
    const where = `rules[${index}]`;
    if (!isMap(node)) {
      this.#report(node, `${where}: must be a mapping with ${RULE_FIELDS.join(', ')}`);
      return undefined;
    }
    const fields = this.#fields(node.items, RULE_FIELDS, where);
    const rule: PolicyRule = { verbs: [] };
    let valid = true;
    for (const field of RULE_FIELDS) {
      const value = fields.get(field);
      if (value === undefined) continue;
      const list = this.#stringList(value, `${where}.${field}`);
      if (list === undefined) valid = false;
      else rule[field] = list;
    }
    if (!fields.has('verbs')) {
      this.#report(node, `${where}.verbs: required (e.g. [get, list, watch])`);
      valid = false;
    }
    return valid ? { rule, line } : undefined;
  }

  #declaredRisks(node: Node | undefined): DeclaredRisk[] {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.#report(node, 'declaredRisks: must be a list of {risk, justification}');
      return [];
    }
    return node.items.flatMap((aliasOrItem, index) => {
      const item = this.#deref(aliasOrItem);
      const where = `declaredRisks[${index}]`;
      if (!isMap(item)) {
        this.#report(item, `${where}: must be a mapping with risk and justification`);
        return [];
      }
      const fields = this.#fields(item.items, DECLARED_RISK_FIELDS, where);
      const risk = this.#requiredString(fields, 'risk', item, where);
      const justification = this.#requiredString(fields, 'justification', item, where);
      if (risk !== undefined && !RISK_IDS.includes(risk.value)) {
        this.#report(
          risk.node,
          `${where}.risk: '${risk.value}' is not a known risk; known risks are ${RISK_IDS.join(', ')}`,
        );
        return [];
      }
      if (risk === undefined || justification === undefined) return [];
      return [{ risk: risk.value, justification: justification.value }];
    });
  }

  #duration(fields: Map<string, Node>, parent: Node): number | undefined {
    const text = this.#requiredString(fields, 'maxVisaDuration', parent);
    if (text === undefined) return undefined;
    try {
      return parseDuration(text.value, 'maxVisaDuration');
    } catch (error) {
      // Only a refused duration becomes a finding; anything else is a bug and must surface.
      if (!(error instanceof InvalidInput)) throw error;
      this.#report(text.node, error.message);
      return undefined;
    }
  }

  #boolean(node: Node | undefined, field: string): boolean | undefined {
    if (node === undefined) return undefined;
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    this.#report(node, `${field}: must be true or false`);
    return undefined;
  }

  /** The mapping's entries by key; unknown and non-text keys are reported. */
  #fields(pairs: readonly Pair[], allowed: readonly string[], where: string): Map<string, Node> {
    const fields = new Map<string, Node>();
    for (const pair of pairs) {
      const key = isScalar(pair.key) && typeof pair.key.value === 'string' ? pair.key.value : undefined;
      if (key === undefined || !allowed.includes(key)) {
        const shown = isScalar(pair.key) ? `'${String(pair.key.value)}'` : 'a non-text key';
        this.#report(pair.key, `${where}: unknown field ${shown}; allowed fields are ${allowed.join(', ')}`);
        continue;
      }
      // `description:` with nothing after it parses as a null scalar (refused later as not text); only an explicit
      // key without a value node (`? description`) has none, and is then reported on the key's line.
      fields.set(key, this.#deref(pair.value ?? pair.key) as Node);
    }
    return fields;
  }

  #requiredString(
    fields: Map<string, Node>,
    field: string,
    parent: Node,
    where?: string,
  ): { value: string; node: Node } | undefined {
    const label = where === undefined ? field : `${where}.${field}`;
    const node = fields.get(field);
    if (node === undefined) {
      this.#report(parent, `${label}: required`);
      return undefined;
    }
    if (!isScalar(node) || typeof node.value !== 'string' || node.value.trim() === '') {
      this.#report(node, `${label}: must be non-empty text`);
      return undefined;
    }
    return { value: node.value, node };
  }

  #stringList(node: Node, label: string): string[] | undefined {
    if (!isSeq(node)) {
      this.#report(node, `${label}: must be a list of text values`);
      return undefined;
    }
    const values: string[] = [];
    for (const item of node.items.map((entry) => this.#deref(entry))) {
      // Numbers and booleans are refused rather than converted: `- 1` in a verbs list is a mistake, not a verb.
      if (!isScalar(item) || typeof item.value !== 'string') {
        this.#report(item, `${label}: every entry must be text (quote it if needed)`);
        return undefined;
      }
      values.push(item.value);
    }
    return values;
  }

  #deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.#document) : node;
  }

  #report(node: unknown, message: string): void {
    this.findings.push({ risk: SCHEMA, message, line: this.#line(node) });
  }

  #line(node: unknown): number {
    const offset = isNode(node) ? node.range?.[0] : undefined;
    // Line 0 means "before the first newline was seen"; a file has at least line 1.
    return offset === undefined ? 1 : Math.max(1, this.#lineCounter.linePos(offset).line);
  }
}
