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
    path: ['store', 'migrate'],
    summary: "Move a server's state from its SQLite file into an empty PostgreSQL database (server stopped)",
    usage:
      'kubevisa store migrate --from sqlite:PATH --to postgres:URL [--password-file FILE | --password-env NAME] [-o json]',
    examples: [
      'kubevisa store migrate --from sqlite:/var/lib/kubevisa/kubevisa.db \\\n' +
        '    --to postgres:postgres://kubevisa_owner@db.internal:5432/kubevisa --password-file /etc/kubevisa/db-owner-password',
      'KV_DB_PASSWORD=… kubevisa store migrate --from sqlite:./data/kubevisa.db --to postgres:postgres://kv@127.0.0.1/kv --password-env KV_DB_PASSWORD -o json',
    ],
    options: {
      from: { type: 'string', description: 'the SQLite database to copy, as sqlite:PATH', placeholder: 'sqlite:PATH' },
      to: {
        type: 'string',
        description: 'the empty PostgreSQL database to fill, as postgres:URL (no password in the URL)',
        placeholder: 'postgres:URL',
      },
      'password-file': {
        type: 'string',
        description: "file holding the PostgreSQL role's password",
        placeholder: 'FILE',
      },
      'password-env': {
        type: 'string',
        description: "environment variable holding the PostgreSQL role's password",
        placeholder: 'NAME',
      },
      ...outputOption,
    },
    load: () => import('./commands/store.ts'),
  },
  {
    path: ['login'],
    summary: 'Log in to a kubevisa server at your company identity provider (browser or device code)',
    usage: 'kubevisa login [URL | --server URL] [--browser | --device] [--ca-file FILE]',
    positionals: ['URL'],
    examples: [
      'kubevisa login https://kubevisa.example.com',
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
    path: ['engagement', 'set-end'],
    summary:
      "Move an engagement's end date: an earlier end ends or shortens the visas past it, a later one changes none (admin; sponsor only earlier)",
    usage: 'kubevisa engagement set-end ID --ends TIME --reason TEXT',
    positionals: ['ID'],
    examples: [
      'kubevisa engagement set-end acme-2026 --ends 2026-05-31T18:00:00Z --reason "scope reduced"',
      'kubevisa engagement set-end e_acme --ends 2026-09-30T18:00:00Z --reason "contract renewed" -o json',
    ],
    options: {
      ends: { type: 'string', description: 'the new end, RFC 3339 with offset (required)', placeholder: 'TIME' },
      ...reasonOption('the end date moves'),
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/engagement-set-end.ts'),
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
    usage:
      'kubevisa kubeconfig CLUSTER | --cluster NAME [--direct] [--kubeconfig FILE] [--context-name NAME] [--namespace NS]',
    positionals: ['CLUSTER'],
    examples: [
      'kubevisa kubeconfig prod && kubectl get pods -n payments',
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
    usage: 'kubevisa credential CLUSTER | --cluster NAME [--direct]',
    positionals: ['CLUSTER'],
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
    usage: 'kubevisa server FILE | --config FILE [--config FILE…]',
    positionals: ['FILE'],
    examples: [
      'kubevisa server /etc/kubevisa/server.yaml',
      'kubevisa server --config /etc/kubevisa/server.yaml --config /etc/kubevisa/secrets/secrets.yaml   # secrets kept apart',
      'kubevisa server /etc/kubevisa/server.yaml --adopt-keys   # once, after replacing the keys on purpose',
    ],
    options: {
      config: {
        type: 'string',
        short: 'c',
        multiple: true,
        description: 'server config (YAML or JSON); several are merged in order, later fields win',
        placeholder: 'FILE',
      },
      'adopt-keys': {
        type: 'boolean',
        description:
          "record this server's signing key, secret key and public URL as the ones every server on the store must use (after replacing them on purpose; stop the other servers first)",
      },
    },
    load: () => import('./commands/server.ts'),
  },
  {
    path: ['install'],
    summary: "Install kubevisa into a cluster (once, as an admin) and write kubevisa's own least-privilege credential",
    usage: 'kubevisa install CLUSTER | --cluster NAME [--kubeconfig ADMIN_KUBECONFIG] [--data-dir DIR]',
    positionals: ['CLUSTER'],
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
    path: ['uninstall'],
    summary: 'Remove kubevisa from a cluster (as an admin): visa RoleBindings, profiles, its RBAC and namespaces',
    usage: 'kubevisa uninstall [--kubeconfig ADMIN_KUBECONFIG] [-o json]',
    examples: [
      'kubevisa uninstall --kubeconfig ~/.kube/prod-admin',
      'kubevisa uninstall --kubeconfig ~/.kube/kind-admin -o json   # the removed objects, for scripts',
    ],
    options: {
      kubeconfig: { type: 'string', description: 'an admin kubeconfig (default: $KUBECONFIG)', placeholder: 'FILE' },
      cluster: {
        type: 'string',
        description: 'a name for the cluster in messages (default: cluster)',
        placeholder: 'NAME',
      },
      ...outputOption,
    },
    load: () => import('./commands/uninstall.ts'),
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
    usage: 'kubevisa demo [--kubeconfig ADMIN_KUBECONFIG] [--dir DIR]',
    examples: [
      'kubevisa demo',
      'kubevisa demo --kubeconfig ~/.kube/config   # in a cluster you have (kind, minikube, k3d); Ctrl-C removes it all',
      'kubevisa demo --dir /tmp/kv-demo',
    ],
    options: {
      kubeconfig: {
        type: 'string',
        description:
          'a cluster-admin kubeconfig of an existing cluster: run there instead of starting a local control plane',
        placeholder: 'FILE',
      },
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
  {
    path: ['scan', 'cluster'],
    summary:
      'Scan a whole cluster: shadow access, broad groups, risky permissions, legacy tokens, drift (admins, auditors)',
    usage:
      'kubevisa scan cluster [CLUSTER | --cluster NAME] [--all] [--min-severity S] | [--subject S] [--namespace NS] [--verb V] [--resource R] [--matrix]',
    positionals: ['CLUSTER'],
    examples: [
      'kubevisa scan cluster prod',
      'kubevisa scan cluster --cluster prod --verb get --resource secrets     # who can read Secrets, where',
      'kubevisa scan cluster --cluster prod --subject cora@vendor.example -o json',
    ],
    options: {
      cluster: { type: 'string', description: 'the cluster (default: the only one)', placeholder: 'NAME' },
      all: { type: 'boolean', description: "also show Kubernetes' own defaults and visas' declared risks" },
      'min-severity': {
        type: 'string',
        description: 'hide findings below: critical, high, medium, low (default) or info',
        placeholder: 'S',
      },
      subject: {
        type: 'string',
        description: 'who can do what: this user, group or ServiceAccount (ns/name)',
        placeholder: 'S',
      },
      namespace: { type: 'string', description: 'who can do what in this namespace', placeholder: 'NS' },
      verb: { type: 'string', description: 'who can do this verb (get, create, escalate…)', placeholder: 'V' },
      resource: { type: 'string', description: 'on this resource (secrets, pods/exec…)', placeholder: 'R' },
      matrix: { type: 'boolean', description: 'the whole who-can-do-what matrix (large)' },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/scan-cluster.ts'),
  },
  {
    path: ['scan', 'usage'],
    summary: 'When each live visa was last used, and which are stale (admins, auditors); exits 1 if any is stale',
    usage: 'kubevisa scan usage [-o json|yaml]',
    examples: ['kubevisa scan usage', 'kubevisa scan usage -o json | jq ".visas[] | select(.stale)"'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/scan-usage.ts'),
  },
  {
    path: ['scan', 'kubeconfig'],
    summary: 'List the credentials kubeconfig files hold, with a risk rating; never prints a secret',
    usage: 'kubevisa scan kubeconfig [FILE…] [--check] [-o json|yaml]',
    positionals: ['FILE'],
    examples: [
      'kubevisa scan kubeconfig                     # $KUBECONFIG, else ~/.kube/config',
      'kubevisa scan kubeconfig ~/Downloads/*.yaml --check   # and whether each still authenticates',
    ],
    options: {
      check: {
        type: 'boolean',
        description: "ask each context's cluster whether its credential still works (a SelfSubjectReview)",
      },
      ...outputOption,
    },
    load: () => import('./commands/scan-kubeconfig.ts'),
  },
  // The audit trail (issue 6): read, export, verify, checkpoint, evidence packs.
  ...((): CommandSpec[] => {
    const filters: Record<string, OptionSpec> = {
      person: { type: 'string', description: 'events by or about a person (email or id)', placeholder: 'EMAIL' },
      visa: { type: 'string', description: 'events of a visa', placeholder: 'ID' },
      engagement: { type: 'string', description: 'events of an engagement (id or name)', placeholder: 'ID' },
      cluster: { type: 'string', description: 'events in a cluster', placeholder: 'NAME' },
      namespace: { type: 'string', description: 'events in a namespace', placeholder: 'NS' },
      action: { type: 'string', description: 'one action, e.g. visa.revoked', placeholder: 'ACTION' },
      since: {
        type: 'string',
        description: 'events at or after a time (RFC 3339) or that long ago (24h, 7d)',
        placeholder: 'WHEN',
      },
      until: { type: 'string', description: 'events before a time (RFC 3339) or that long ago', placeholder: 'WHEN' },
    };
    return [
      {
        path: ['audit', 'tail'],
        summary: 'Show the newest audit events; with -f, keep showing new ones (admins and auditors)',
        usage: 'kubevisa audit tail [-n N] [-f] [--person P] [--visa V] [--cluster C] [--namespace N] [--since WHEN]',
        examples: [
          'kubevisa audit tail -n 50',
          'kubevisa audit tail -f --cluster prod',
          'kubevisa audit tail -f -o json',
        ],
        options: {
          lines: { type: 'string', short: 'n', description: 'how many events (default 20)', placeholder: 'N' },
          follow: { type: 'boolean', short: 'f', description: 'keep showing events as they are appended' },
          ...filters,
          ...connection,
          ...outputOption,
        },
        load: () => import('./commands/audit-tail.ts'),
      },
      {
        path: ['audit', 'search'],
        summary: 'Find audit events by person, visa, engagement, cluster, namespace, action and time',
        usage:
          'kubevisa audit search [--person P] [--visa V] [--engagement E] [--cluster C] [--namespace N] [--action A] [--since WHEN] [--until WHEN] [--limit N] [--after SEQ]',
        examples: [
          'kubevisa audit search --person cora@vendor.example --since 7d',
          'kubevisa audit search --cluster prod --namespace payments --action visa.approved -o json',
        ],
        options: {
          ...filters,
          limit: { type: 'string', description: 'most events shown (default 100, at most 10000)', placeholder: 'N' },
          after: { type: 'string', description: 'only events after this seq (the next page)', placeholder: 'SEQ' },
          ...connection,
          ...outputOption,
        },
        load: () => import('./commands/audit-search.ts'),
      },
      {
        path: ['audit', 'export'],
        summary: 'Export audit events as JSON lines (for a SIEM, or to verify offline)',
        usage: 'kubevisa audit export [--out FILE] [filters as audit search]',
        examples: [
          'kubevisa audit export --out trail.jsonl && kubevisa audit verify --from trail.jsonl',
          'kubevisa audit export --since 24h | siem-ingest',
        ],
        options: {
          out: {
            type: 'string',
            description: 'write to FILE (created, never overwritten) instead of stdout',
            placeholder: 'FILE',
          },
          ...filters,
          ...connection,
        },
        load: () => import('./commands/audit-export.ts'),
      },
      {
        path: ['audit', 'verify'],
        summary: 'Verify the audit trail: on the server, or offline on an exported file; exits 1 on any fault',
        usage:
          'kubevisa audit verify [--checkpoint FILE…] | kubevisa audit verify FILE | --from FILE [--checkpoint FILE…] [--public-key FILE]',
        positionals: ['FILE'],
        examples: [
          'kubevisa audit verify',
          'kubevisa audit verify events.jsonl --checkpoint checkpoints.json --public-key public-key.pem',
          'kubevisa audit verify --checkpoint kept-checkpoint.json   # was the trail rolled back since?',
        ],
        options: {
          from: { type: 'string', description: 'verify this exported file on this machine', placeholder: 'FILE' },
          checkpoint: {
            type: 'string',
            multiple: true,
            description:
              'signed checkpoints to hold the trail to (a file with one, an array, or JSON lines; repeatable)',
            placeholder: 'FILE',
          },
          'public-key': {
            type: 'string',
            description: 'with --from: the PEM public key the checkpoints must be signed with',
            placeholder: 'FILE',
          },
          ...connection,
          ...outputOption,
        },
        load: () => import('./commands/audit-verify.ts'),
      },
      {
        path: ['audit', 'checkpoint'],
        summary: "Sign a checkpoint of the audit trail's head now (admins and auditors)",
        usage: 'kubevisa audit checkpoint [-o json]',
        examples: ['kubevisa audit checkpoint -o json > checkpoint-$(date +%F).json'],
        options: { ...connection, ...outputOption },
        load: () => import('./commands/audit-checkpoint.ts'),
      },
      {
        path: ['audit', 'evidence'],
        summary: "Write an engagement's evidence pack (events, checkpoints, public key, how to verify it offline)",
        usage: 'kubevisa audit evidence ENGAGEMENT | --engagement ID [--out DIR]',
        positionals: ['ENGAGEMENT'],
        examples: [
          'kubevisa audit evidence acme-2026',
          'kubevisa audit evidence --engagement acme-q3 --out ./evidence-acme',
        ],
        options: {
          engagement: { type: 'string', description: 'the engagement (id or name)', placeholder: 'ID' },
          out: {
            type: 'string',
            description: 'a new folder for the pack (default evidence-NAME-DATE)',
            placeholder: 'DIR',
          },
          ...connection,
          ...outputOption,
        },
        load: () => import('./commands/audit-evidence.ts'),
      },
    ];
  })(),
  {
    path: ['cluster', 'add'],
    summary: "Register a cluster at run time with kubevisa's kubeconfig for it (admin); checked before it is kept",
    usage: 'kubevisa cluster add NAME --kubeconfig FILE [--direct-mode] [-o json]',
    positionals: ['NAME'],
    examples: [
      "kubevisa cluster add edge-7 --kubeconfig ./edge/clusters/edge-7.kubeconfig   # 'kubevisa install edge-7 --data-dir ./edge' wrote it",
      'kubevisa cluster add lab --kubeconfig lab.kubeconfig --direct-mode -o json',
    ],
    options: {
      kubeconfig: {
        type: 'string',
        description:
          "the kubeconfig 'kubevisa install' wrote for the cluster (required; sent once, kept encrypted, never shown)",
        placeholder: 'FILE',
      },
      'direct-mode': {
        type: 'boolean',
        description: 'let people take direct-mode tokens for this cluster (default off: the gateway only)',
      },
      ...connection,
      ...outputOption,
    },
    load: async () => ({ run: (await import('./commands/cluster.ts')).add }),
  },
  {
    path: ['cluster', 'list'],
    summary: 'List managed clusters: source (config or registered), reachable, last pass, credential expiry (staff)',
    usage: 'kubevisa cluster list [-o json|yaml]',
    examples: [
      'kubevisa cluster list',
      "kubevisa cluster list -o json | jq -r '.items[] | select(.reachable | not) | .name'",
    ],
    options: { ...connection, ...outputOption },
    load: async () => ({ run: (await import('./commands/cluster.ts')).list }),
  },
  {
    path: ['cluster', 'remove'],
    summary: 'Stop managing a registered cluster (admin); --force revokes its granting visas first',
    usage: 'kubevisa cluster remove NAME [--force]',
    positionals: ['NAME'],
    examples: ['kubevisa cluster remove edge-7', 'kubevisa cluster remove edge-7 --force   # revokes its visas first'],
    options: {
      force: {
        type: 'boolean',
        description: 'revoke the visas that still grant access there first (each audited as a revoke); default: refuse',
      },
      ...connection,
      ...outputOption,
    },
    load: async () => ({ run: (await import('./commands/cluster.ts')).remove }),
  },
  {
    path: ['scim', 'token', 'create'],
    summary: "Create a SCIM bearer token for one identity provider's provisioning (admin); shown once",
    usage: 'kubevisa scim token create IDP | --idp NAME [-o json]',
    positionals: ['IDP'],
    examples: ['kubevisa scim token create okta', 'kubevisa scim token create --idp entra -o json | jq -r .token'],
    options: {
      idp: {
        type: 'string',
        description: 'the identity provider it is for, e.g. okta or entra (named in the audit trail; required)',
        placeholder: 'NAME',
      },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/scim-token-create.ts'),
  },
  {
    path: ['scim', 'token', 'list'],
    summary: 'List SCIM tokens: identity provider, state, last use (admins, auditors); never a secret',
    usage: 'kubevisa scim token list [-o json|yaml]',
    examples: ['kubevisa scim token list'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/scim-token-list.ts'),
  },
  {
    path: ['scim', 'token', 'rotate'],
    summary: 'Replace a SCIM token with a new one; the old one works for a grace period (admin)',
    usage: 'kubevisa scim token rotate ID [--grace DURATION]',
    positionals: ['ID'],
    examples: [
      'kubevisa scim token rotate st_x1y2 --grace 1h',
      'kubevisa scim token rotate st_x1y2 --grace 0s   # old one ends now',
    ],
    options: {
      grace: {
        type: 'string',
        description: 'how long the old token keeps working (default 1h, at most 7d; 0s revokes it now)',
        placeholder: 'DURATION',
      },
      ...connection,
      ...outputOption,
    },
    load: () => import('./commands/scim-token-rotate.ts'),
  },
  {
    path: ['scim', 'token', 'revoke'],
    summary: "Revoke a SCIM token now: the identity provider's next SCIM call gets 401 (admin)",
    usage: 'kubevisa scim token revoke ID',
    positionals: ['ID'],
    examples: ['kubevisa scim token revoke st_x1y2'],
    options: { ...connection, ...outputOption },
    load: () => import('./commands/scim-token-revoke.ts'),
  },
  {
    path: ['identity', 'link'],
    summary: 'Let a SCIM identity provider provision and offboard a person it did not provision first (admin)',
    usage: 'kubevisa identity link PERSON --idp NAME --reason TEXT',
    positionals: ['PERSON'],
    examples: [
      'kubevisa identity link cora@vendor.example --idp entra --reason "CHG-42: Entra provisions contractors"',
    ],
    options: {
      idp: { type: 'string', description: 'the identity provider, as its SCIM token was created', placeholder: 'NAME' },
      reason: { type: 'string', description: 'why (kept in the audit trail; required)', placeholder: 'TEXT' },
      ...connection,
      ...outputOption,
    },
    load: async () => ({ run: (await import('./commands/identity-link.ts')).link }),
  },
  {
    path: ['identity', 'unlink'],
    summary: "Stop a SCIM identity provider's changes from reaching a person (admin)",
    usage: 'kubevisa identity unlink PERSON --idp NAME',
    positionals: ['PERSON'],
    examples: ['kubevisa identity unlink cora@vendor.example --idp entra'],
    options: {
      idp: { type: 'string', description: 'the identity provider to unlink', placeholder: 'NAME' },
      ...connection,
      ...outputOption,
    },
    load: async () => ({ run: (await import('./commands/identity-link.ts')).unlink }),
  },
  {
    path: ['identity', 'links'],
    summary: 'List which SCIM identity providers act on whom, and how each came to (admins, auditors)',
    usage: 'kubevisa identity links [PERSON] [--idp NAME] [-o json|yaml]',
    positionals: ['PERSON'],
    examples: ['kubevisa identity links', 'kubevisa identity links cora@vendor.example'],
    options: {
      idp: { type: 'string', description: 'only links to this identity provider', placeholder: 'NAME' },
      ...connection,
      ...outputOption,
    },
    load: async () => ({ run: (await import('./commands/identity-link.ts')).list }),
  },
];
