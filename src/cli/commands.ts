/** The command table: what each command is, its options and examples; the code loads on use. */
import { outputOption, type CommandSpec, type OptionSpec } from './framework.ts';

// Shared here rather than imported from options.ts: this table is on every command's start-up path,
// including `kubevisa credential`, so it must not pull in the API client.
const connection: Record<string, OptionSpec> = {
  server: {
    type: 'string',
    description: "kubevisa server URL (default: the one 'kubevisa login' remembered in config.json)",
    placeholder: 'URL',
  },
  'ca-file': {
    type: 'string',
    description: "PEM file of the CA that signed the server's certificate (default: the one remembered at login)",
    placeholder: 'FILE',
  },
};

const reasonOption = (what: string): Record<string, OptionSpec> => ({
  reason: { type: 'string', description: `why ${what} (required; kept in the audit trail)`, placeholder: 'TEXT' },
});

export const commands: CommandSpec[] = [
  {
    path: ['dev', 'cluster'],
    summary: 'Run a local Kubernetes control plane (etcd, kube-apiserver, controllers, a kwok node) until Ctrl-C',
    usage: 'kubevisa dev cluster',
    examples: [
      'kubevisa dev cluster',
      'eval "$(kubevisa dev cluster | head -1)"   # in another shell: export KUBECONFIG=…',
    ],
    load: () => import('./commands/dev-cluster.ts'),
  },
  {
    path: ['login'],
    summary: 'Log in to a kubevisa server at your company identity provider (browser or device code)',
    usage: 'kubevisa login [--server URL] [--browser | --device] [--ca-file FILE]',
    examples: [
      'kubevisa login --server https://kubevisa.example.com',
      'kubevisa login --device                  # on a machine without a browser: enter a code elsewhere',
      'kubevisa login --server https://kubevisa.internal:8443 --ca-file ./kubevisa-ca.pem',
    ],
    options: {
      ...connection,
      browser: {
        type: 'boolean',
        description: 'log in through a browser on this machine (default when DISPLAY or WAYLAND_DISPLAY is set)',
      },
      device: {
        type: 'boolean',
        description: 'log in with a code entered in a browser anywhere (default without a display)',
      },
      ...outputOption,
    },
    load: () => import('./commands/login.ts'),
  },
  {
    path: ['logout'],
    summary: 'End your session on the server and remove it and every cached cluster token from this machine',
    usage: 'kubevisa logout',
    examples: ['kubevisa logout'],
    load: () => import('./commands/logout.ts'),
  },
  {
    path: ['whoami'],
    summary: 'Show who you are logged in as, with your roles',
    usage: 'kubevisa whoami [-o json|yaml]',
    examples: ['kubevisa whoami', 'kubevisa whoami -o json | jq -r .email'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/whoami.ts'),
  },
  {
    path: ['request'],
    summary: 'Request a visa: a profile on namespaces of a cluster, for a time, with a reason',
    usage:
      'kubevisa request --cluster C --ns N[,N…] --profile P --for DURATION --reason TEXT [--start TIME] [--engagement ID]',
    examples: [
      'kubevisa request --cluster prod --ns payments --profile developer --for 8h --reason "JIRA-123: fix the refund job"',
      'kubevisa request --cluster staging --ns web,api --profile viewer --for 2h --start 2026-03-03T09:00:00+01:00 --reason "review"',
    ],
    options: {
      cluster: { type: 'string', description: 'the cluster to get access to (required)', placeholder: 'NAME' },
      ns: {
        type: 'string',
        multiple: true,
        description: 'namespace(s), comma-separated or repeated (required)',
        placeholder: 'N[,N…]',
      },
      profile: {
        type: 'string',
        description: "what you may do, e.g. viewer, developer (required; see 'kubevisa profile list')",
        placeholder: 'NAME',
      },
      for: {
        type: 'string',
        description: 'how long, e.g. 30m, 8h, 1h30m, 2d (required)',
        placeholder: 'DURATION',
      },
      start: {
        type: 'string',
        description: 'when access should start, RFC 3339 with offset (default: as soon as approved)',
        placeholder: 'TIME',
      },
      ...reasonOption('you need access, e.g. a ticket'),
      engagement: {
        type: 'string',
        description: 'the engagement (contract) to request under (default: the server picks your only one)',
        placeholder: 'ID',
      },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/request.ts'),
  },
  {
    path: ['visas'],
    summary: 'List visas: yours, or (as approver or admin) everyone’s',
    usage: 'kubevisa visas [--state S] [--cluster C] [--engagement ID] [--person EMAIL] [--all] [-o json|yaml]',
    examples: [
      'kubevisa visas',
      'kubevisa visas --state requested        # what waits for approval',
      'kubevisa visas --all -o json',
    ],
    options: {
      state: {
        type: 'string',
        description: 'only this state: requested, approved, active, expired, revoked, denied or cancelled',
        placeholder: 'STATE',
      },
      cluster: { type: 'string', description: 'only this cluster', placeholder: 'NAME' },
      engagement: { type: 'string', description: 'only this engagement', placeholder: 'ID' },
      person: { type: 'string', description: 'only this person (approvers and admins)', placeholder: 'EMAIL' },
      all: {
        type: 'boolean',
        description: 'include ended visas (expired, revoked, denied, cancelled); default: requested, approved, active',
      },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/visas.ts'),
  },
  {
    path: ['approve'],
    summary: 'Approve a visa request, optionally narrower (fewer namespaces, shorter) than asked',
    usage: 'kubevisa approve ID [--comment TEXT] [--ns N[,N…]] [--for DURATION]',
    positionals: ['ID'],
    examples: [
      'kubevisa approve v_8f2k1 --comment "ok for the incident"',
      'kubevisa approve v_8f2k1 --ns payments --for 4h',
    ],
    options: {
      comment: { type: 'string', description: 'a note kept with the approval', placeholder: 'TEXT' },
      ns: {
        type: 'string',
        multiple: true,
        description: 'grant only these of the requested namespaces',
        placeholder: 'N[,N…]',
      },
      for: { type: 'string', description: 'grant a shorter time than requested', placeholder: 'DURATION' },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/approve.ts'),
  },
  {
    path: ['deny'],
    summary: 'Deny a visa request',
    usage: 'kubevisa deny ID --reason TEXT',
    positionals: ['ID'],
    examples: ['kubevisa deny v_8f2k1 --reason "use staging for this"'],
    options: { ...reasonOption('the request is denied'), ...connection, ...outputOption },
    load: () => import('./commands/deny.ts'),
  },
  {
    path: ['revoke'],
    summary: 'Revoke a visa now: its RoleBindings go and open kubectl streams close',
    usage: 'kubevisa revoke ID --reason TEXT',
    positionals: ['ID'],
    examples: ['kubevisa revoke v_8f2k1 --reason "work finished"'],
    options: { ...reasonOption('access ends early'), ...connection, ...outputOption },
    load: () => import('./commands/revoke.ts'),
  },
  {
    path: ['cancel'],
    summary: 'Cancel your own visa request before it is decided',
    usage: 'kubevisa cancel ID',
    positionals: ['ID'],
    examples: ['kubevisa cancel v_8f2k1'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/cancel.ts'),
  },
  {
    path: ['extend'],
    summary: 'Ask to extend your visa (a new request that needs approval again)',
    usage: 'kubevisa extend ID --for DURATION --reason TEXT',
    positionals: ['ID'],
    examples: ['kubevisa extend v_8f2k1 --for 2h --reason "migration still running"'],
    options: {
      for: { type: 'string', description: 'how much longer, e.g. 2h (required)', placeholder: 'DURATION' },
      ...reasonOption('you need more time'),
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/extend.ts'),
  },
  {
    path: ['engagement', 'create'],
    summary: 'Create an engagement: the contract that bounds every visa its contractors can get (admin)',
    usage:
      'kubevisa engagement create --name N --vendor V --contractor EMAIL… --sponsor EMAIL --ends TIME --cluster C… --ns-pattern P… --profile P… --max-visa DURATION [--starts TIME]',
    examples: [
      'kubevisa engagement create --name acme-2026 --vendor "Acme Consulting" --contractor carol@acme.example --sponsor sam@corp.example --ends 2026-06-30T18:00:00Z --cluster prod --ns-pattern payments --ns-pattern "staging-*" --profile viewer,developer --max-visa 8h',
    ],
    options: {
      name: { type: 'string', description: 'a short name (required)', placeholder: 'NAME' },
      vendor: { type: 'string', description: 'the contractor’s company (required)', placeholder: 'TEXT' },
      contractor: {
        type: 'string',
        multiple: true,
        description: 'contractor email(s), comma-separated or repeated (required)',
        placeholder: 'EMAIL',
      },
      sponsor: {
        type: 'string',
        description: 'the employee who answers for it and approves (required)',
        placeholder: 'EMAIL',
      },
      starts: { type: 'string', description: 'start, RFC 3339 with offset (default: now)', placeholder: 'TIME' },
      ends: { type: 'string', description: 'end, RFC 3339 with offset (required)', placeholder: 'TIME' },
      cluster: { type: 'string', multiple: true, description: 'cluster(s) allowed (required)', placeholder: 'NAME' },
      'ns-pattern': {
        type: 'string',
        multiple: true,
        description: "namespace name(s) or patterns with a trailing '*' (required)",
        placeholder: 'PATTERN',
      },
      profile: { type: 'string', multiple: true, description: 'profile(s) allowed (required)', placeholder: 'NAME' },
      'max-visa': { type: 'string', description: 'longest single visa, e.g. 8h (required)', placeholder: 'DURATION' },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/engagement-create.ts'),
  },
  {
    path: ['engagement', 'list'],
    summary: 'List engagements (contractors see their own)',
    usage: 'kubevisa engagement list [-o json|yaml]',
    examples: ['kubevisa engagement list', 'kubevisa engagement list -o yaml'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/engagement-list.ts'),
  },
  {
    path: ['engagement', 'end'],
    summary: 'End an engagement now: every visa under it is revoked (admin or sponsor)',
    usage: 'kubevisa engagement end ID --reason TEXT',
    positionals: ['ID'],
    examples: ['kubevisa engagement end e_acme --reason "contract terminated"'],
    options: { ...reasonOption('the engagement ends early'), ...connection, ...outputOption },
    load: () => import('./commands/engagement-end.ts'),
  },
  {
    path: ['profile', 'list'],
    summary: 'List the access profiles (named, reviewed RBAC rule sets) you can request',
    usage: 'kubevisa profile list [-o json|yaml]',
    examples: ['kubevisa profile list', 'kubevisa profile list -o yaml   # with the RBAC rules'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/profile-list.ts'),
  },
  {
    path: ['offboard'],
    summary: 'Offboard a person everywhere at once and print the receipt (admin); exits 1 if a step failed',
    usage: 'kubevisa offboard PERSON --reason TEXT',
    positionals: ['PERSON'],
    examples: [
      'kubevisa offboard carol@acme.example --reason "contract ended"',
      'kubevisa offboard p_3k9x --reason "left" -o json > receipt.json',
    ],
    options: { ...reasonOption('the person is offboarded'), ...connection, ...outputOption },
    load: () => import('./commands/offboard.ts'),
  },
  {
    path: ['kubeconfig'],
    summary: 'Add a kubectl context for a cluster that gets short-lived tokens from kubevisa (no secret on disk)',
    usage: 'kubevisa kubeconfig --cluster NAME [--direct] [--kubeconfig FILE] [--context-name NAME] [--namespace NS]',
    examples: [
      'kubevisa kubeconfig --cluster prod && kubectl get pods -n payments',
      'kubevisa kubeconfig --cluster edge-7 --direct          # straight to the cluster, not through the gateway',
      'kubevisa kubeconfig --cluster prod --kubeconfig ./prod.kubeconfig --namespace payments',
    ],
    options: {
      cluster: { type: 'string', description: 'the cluster (required)', placeholder: 'NAME' },
      direct: {
        type: 'boolean',
        description:
          "talk to the cluster's API server directly with a TokenRequest token instead of through the kubevisa gateway",
      },
      kubeconfig: {
        type: 'string',
        description: 'the file to update (default: the first file in $KUBECONFIG, else ~/.kube/config)',
        placeholder: 'FILE',
      },
      'context-name': {
        type: 'string',
        description: 'name of the context (default: kubevisa-CLUSTER, or kubevisa-CLUSTER-direct)',
        placeholder: 'NAME',
      },
      namespace: { type: 'string', description: "the context's default namespace", placeholder: 'NS' },
      ...connection,
    },
    load: () => import('./commands/kubeconfig.ts'),
  },
  {
    path: ['credential'],
    summary: 'Print a short-lived token for kubectl as an ExecCredential (kubectl runs this for you)',
    usage: 'kubevisa credential --cluster NAME [--direct]',
    examples: ['kubevisa credential --cluster prod     # what kubectl runs; see kubevisa kubeconfig'],
    options: {
      cluster: { type: 'string', description: 'the cluster (required)', placeholder: 'NAME' },
      direct: {
        type: 'boolean',
        description: "a TokenRequest token for the cluster's own API server instead of a kubevisa gateway token",
      },
    },
    load: () => import('./commands/credential.ts'),
  },
  {
    path: ['server'],
    summary: 'Run the kubevisa server (API, reconciler) from a config file',
    usage: 'kubevisa server --config FILE',
    examples: ['kubevisa server --config /etc/kubevisa/server.yaml'],
    options: {
      config: { type: 'string', short: 'c', description: 'server config (YAML or JSON)', placeholder: 'FILE' },
    },
    load: () => import('./commands/server.ts'),
  },
  {
    path: ['install'],
    summary: "Install kubevisa into a cluster (once, as an admin) and write kubevisa's own least-privilege credential",
    usage: 'kubevisa install --cluster NAME [--kubeconfig ADMIN_KUBECONFIG] [--data-dir DIR]',
    examples: ['kubevisa install --cluster prod --kubeconfig ~/.kube/prod-admin --data-dir /var/lib/kubevisa'],
    options: {
      cluster: { type: 'string', description: 'the name kubevisa will use for this cluster', placeholder: 'NAME' },
      kubeconfig: { type: 'string', description: 'an admin kubeconfig (default: $KUBECONFIG)', placeholder: 'FILE' },
      'data-dir': {
        type: 'string',
        description: "the server's data folder (default: ./.kubevisa)",
        placeholder: 'DIR',
      },
    },
    load: () => import('./commands/install.ts'),
  },
  {
    path: ['profile', 'lint'],
    summary: 'Check a profile file for risky RBAC rules; exits non-zero on a finding',
    usage: 'kubevisa profile lint FILE [FILE…] [-o json]',
    positionals: ['FILE'],
    examples: ['kubevisa profile lint profiles/debugger.yaml', 'kubevisa profile lint my-profile.yaml -o json'],
    options: { ...outputOption },
    load: () => import('./commands/profile-lint.ts'),
  },
  {
    path: ['demo'],
    summary: 'Run the whole system locally (control plane, identity provider, server) and print the journey',
    usage: 'kubevisa demo [--dir DIR]',
    examples: ['kubevisa demo', 'kubevisa demo --dir /tmp/kv-demo'],
    options: {
      dir: {
        type: 'string',
        description: 'where the demo keeps its files (default: a new temporary folder)',
        placeholder: 'DIR',
      },
    },
    load: () => import('./commands/demo.ts'),
  },
  {
    path: ['demo', 'idp-login'],
    summary: 'Complete a login at the demo identity provider without a browser',
    usage: 'kubevisa demo idp-login URL --login EMAIL --password PASSWORD [--user-code CODE]',
    positionals: ['URL'],
    examples: [
      "kubevisa demo idp-login 'http://127.0.0.1:40123/device?user_code=ABCD-EFGH' --login cora@vendor.example --password cora",
    ],
    options: {
      login: { type: 'string', description: 'the demo account email', placeholder: 'EMAIL' },
      password: { type: 'string', description: 'its password', placeholder: 'PASSWORD' },
      'user-code': {
        type: 'string',
        description: 'the code kubevisa login printed, if the URL has none',
        placeholder: 'CODE',
      },
    },
    load: () => import('./commands/demo-idp-login.ts'),
  },
];
