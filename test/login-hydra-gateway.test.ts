// A kubevisa session from an Ory Hydra login, used the way a contractor uses it: through the gateway, with
// kubectl, against the real control plane; and cut when an admin revokes the person's consent at Hydra.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { api, CLUSTER, inDays, startKubevisaEnv, type KubevisaEnv } from './support/kubevisa-env.ts';
import { eventually, kubectl } from './support/kubectl.ts';
import { startHydra, type Hydra, type HydraAccount } from './support/hydra.ts';

const accounts = {
  sam: { subject: 'hg-sam', email: 'sam@corp.example', password: 'sam-pw', name: 'Sam', groups: ['kubevisa-admins'] },
  cora: { subject: 'hg-cora', email: 'cora@vendor.example', password: 'cora-pw', name: 'Cora', groups: [] },
} satisfies Record<string, HydraAccount>;
const IDP_TOKEN_SECONDS = 3;
const NAMESPACE = 'staging-hydra';

let hydra: Hydra;
let env: KubevisaEnv;

before(async () => {
  hydra = await startHydra({ accounts: Object.values(accounts), accessTokenTtl: `${IDP_TOKEN_SECONDS}s` });
  const scope = 'openid email profile offline_access groups';
  // kubevisa's URL is known once its environment exists; the redirect URI is set on the client then.
  const client = await hydra.createClient({
    client_name: 'kubevisa',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope,
    redirect_uris: ['https://127.0.0.1/placeholder'],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  env = await startKubevisaEnv({
    tls: true,
    extraConfig: {
      oidc: {
        issuer: hydra.issuer,
        clientId: client.clientId,
        clientSecret: client.clientSecret,
        scopes: scope,
        allowInsecureHttp: true,
      },
    },
  });
  await hydra.admin('PATCH', `/admin/clients/${encodeURIComponent(client.clientId)}`, [
    { op: 'replace', path: '/redirect_uris', value: [`${env.serverUrl}/api/v1/login/callback`] },
  ]);
  await env.kOk(['create', 'namespace', NAMESPACE]);
  await env.startInProcess();
});
after(async () => {
  await env?.stop();
  await hydra?.stop();
});

async function login(account: HydraAccount): Promise<{ sessionSecret: string; accessToken: string }> {
  const verifier = randomBytes(32).toString('base64url');
  const started = await api(env.serverUrl, 'POST', '/api/v1/login/browser', {
    body: {
      redirectUri: 'http://127.0.0.1:9/callback',
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      state: randomBytes(16).toString('base64url'),
    },
  });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const callback = await hydra.browserLogin(String(started.body.authorizationUrl), account);
  const back = await api(env.serverUrl, 'GET', callback.pathname + callback.search);
  assert.equal(back.status, 302, JSON.stringify(back.body));
  const code = new URL(back.location!).searchParams.get('code')!;
  const session = await api(env.serverUrl, 'POST', '/api/v1/login/exchange', {
    body: { code, codeVerifier: verifier },
  });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  return { sessionSecret: String(session.body.sessionSecret), accessToken: String(session.body.accessToken) };
}

test('a session from a Hydra login reaches the cluster through the gateway, and ends when Hydra revokes the consent', async () => {
  const sam = await login(accounts.sam);
  const cora = await login(accounts.cora);
  const engagement = await api(env.serverUrl, 'POST', '/api/v1/engagements', {
    token: sam.accessToken,
    body: {
      name: 'hydra',
      vendor: 'Acme',
      contractors: [accounts.cora.email],
      sponsor: accounts.sam.email,
      endsAt: inDays(5),
      ceiling: { clusters: [CLUSTER], namespacePatterns: ['staging-*'], profiles: ['viewer'] },
      maxVisaDuration: '4h',
    },
  });
  assert.equal(
    engagement.status,
    201,
    `sam is an admin through the groups claim Hydra signed: ${JSON.stringify(engagement.body)}`,
  );
  // Viewer on staging-* is auto-approved by the test policy.
  const visa = await api(env.serverUrl, 'POST', '/api/v1/visas', {
    token: cora.accessToken,
    body: {
      profile: 'viewer',
      cluster: CLUSTER,
      namespaces: [NAMESPACE],
      duration: '1h',
      reason: 'hydra gateway test',
    },
  });
  assert.equal(visa.status, 201, JSON.stringify(visa.body));
  const kubeconfig = await env.writeGatewayKubeconfig(cora.accessToken, 'cora-hydra');
  const k = (args: string[]) => kubectl(env.cp.binaries.kubectl, args, { kubeconfig, timeoutMs: 15_000 });
  await eventually(
    'kubectl through the gateway works',
    20_000,
    async () => (await k(['get', 'pods', '-n', NAMESPACE])).code === 0,
  );
  const secrets = await k(['get', 'secrets', '-n', NAMESPACE]);
  assert.notEqual(secrets.code, 0, 'viewer reads no secrets: Kubernetes RBAC still decides');
  assert.notEqual((await k(['get', 'pods', '-n', 'default'])).code, 0, 'no visa for default');

  await hydra.revokeConsent(accounts.cora.subject);
  const before = Date.now();
  await eventually('Hydra access token due', (IDP_TOKEN_SECONDS + 5) * 1000, () =>
    Promise.resolve(Date.now() > before + IDP_TOKEN_SECONDS * 1000),
  );
  const renewed = await api(env.serverUrl, 'POST', '/api/v1/sessions/token', {
    body: { sessionSecret: cora.sessionSecret },
  });
  assert.equal(renewed.status, 401, JSON.stringify(renewed.body));
  // The access token kubectl still holds is refused too: the session behind it has ended.
  const after = await k(['get', 'pods', '-n', NAMESPACE]);
  assert.notEqual(after.code, 0, `kubectl after the revocation: ${after.stdout}`);
  assert.match(after.stderr, /Unauthorized|401|must be logged in/i);
});
