/**
 * The attack table: one line per attack on kubevisa, each with what must happen (the exact refusal), run end to end
 * by test/attacks.test.ts against the real server, control plane, OIDC provider and kubectl (the environment and
 * tools are in attack-env.ts). docs/security.md shows this table (`node scripts/attack-table.ts --write` keeps it in
 * sync; a test checks it is). Add a line for every new attack tried; never remove one.
 */
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { completeLoginWithHttp } from '../../src/dev/idp.ts';
import { loginAs, people } from './kubevisa-env.ts';
import {
  apiRefusal,
  apiserverSaw,
  assertApiserverSawNothing,
  assertRefused,
  bearer,
  call,
  claims,
  CLUSTER,
  coraRequests,
  DECOY,
  decoySaw,
  exchange,
  flushGatewayAudit,
  gatewayGet,
  gatewayRefusal,
  GONE,
  GRANTED,
  header,
  headerNames,
  headerValues,
  kubectlAsCora,
  mark,
  HIDDEN_SAM,
  KELVIN,
  NOVA,
  OUTSIDE,
  rawRequest,
  scimCall,
  scimRefusal,
  serverCa,
  signToken,
  statusLines,
  tokenHeader,
  unsignedToken,
  UA,
  upgradeRequest,
  type AttackEnv,
} from './attack-env.ts';
import { eventually } from './kubectl.ts';
import { PATCH_OP_SCHEMA, USER_SCHEMA } from '../../src/scim/schema.ts';
import { floodFromMany, loopbackAddresses, startFlood } from './gateway-flood.ts';

export interface AttackCase {
  /** Stable id: area and number (GW gateway identity, PATH, NS namespaces, UPG upgrades, TOK tokens, …). */
  id: string;
  /** What the attacker does. */
  attack: string;
  /** What must happen: the status and the words of the refusal, or what upstream receives instead. */
  expect: string;
  run: (t: AttackEnv) => Promise<void>;
}

const attacker = generateKeyPairSync('ed25519');
const configmaps = (namespace: string, marker: string) => `/api/v1/namespaces/${namespace}/configmaps?probe=${marker}`;

/** A path attack on the real cluster: refused with 400 and `fragment`, and nothing reaches kube-apiserver. */
function pathRefused(target: (marker: string) => string, fragment: RegExp) {
  return async (t: AttackEnv) => {
    const marker = mark('path');
    const answer = await exchange(rawRequest('GET', target(marker), [bearer(t.cora.token)]));
    assertRefused(gatewayRefusal(answer), 400, fragment);
    await assertApiserverSawNothing(marker);
  };
}

/** A forged token: refused with 401 and `fragment` at the gateway, and nothing reaches kube-apiserver. */
function tokenRefused(forge: (t: AttackEnv) => string, fragment: RegExp) {
  return async (t: AttackEnv) => {
    const marker = mark('token');
    const answer = await gatewayGet(configmaps(GRANTED, marker), forge(t));
    assertRefused(gatewayRefusal(answer), 401, fragment);
    await assertApiserverSawNothing(marker);
  };
}

/** A contractor calling an admin route: 403 with `fragment`. */
function adminOnly(method: string, path: string, body: unknown, fragment: RegExp) {
  return async (t: AttackEnv) => {
    const answer = await call(method, path, t.cora.token, body);
    assertRefused(apiRefusal(answer), 403, fragment);
  };
}

/** A SCIM user provisioned by the `okta` identity provider; returns its id. */
async function provisionedByOkta(t: AttackEnv, email: string): Promise<string> {
  const created = await scimCall(t.scimOkta, 'POST', '/Users', {
    schemas: [USER_SCHEMA],
    userName: email,
    emails: [{ value: email, primary: true }],
    active: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return String(created.body.id);
}

/** Every person's roles, as an admin lists them. */
async function rolesOfEveryone(t: AttackEnv): Promise<Record<string, unknown>> {
  const listed = await call('GET', '/api/v1/persons', t.admin.token);
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  return Object.fromEntries((listed.body.items ?? []).map((p) => [String(p.email), p.roles]));
}

/** The server runs in this process: no object here (or there) has gained what the attacks try to plant. */
function assertPrototypesClean(): void {
  for (const probe of [{}, [], Object.create(Object.prototype)] as Record<string, unknown>[]) {
    for (const name of ['role', 'revokedAt', 'admin'])
      assert.equal(probe[name], undefined, `a prototype gained '${name}'`);
  }
}

/** A device login by `account` at the demo identity provider, polled until kubevisa answers (at most ~10 s). */
async function deviceLoginAnswer(account: { email: string; password: string }) {
  const started = await call('POST', '/api/v1/login/device', undefined);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  await completeLoginWithHttp({
    url: String(started.body.verificationUriComplete),
    login: account.email,
    password: account.password,
  });
  const poll = () => call('POST', `/api/v1/login/device/${String(started.body.loginId)}/poll`, undefined);
  let polled = await poll();
  for (let i = 0; i < 100 && polled.status === 202; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    polled = await poll();
  }
  return polled;
}

export const ATTACKS: AttackCase[] = [
  // ---- who Kubernetes sees: only the gateway chooses ----
  {
    id: 'GW-001',
    attack: 'Impersonate-User, -Group, -Uid and -Extra-* headers from the client, in every casing',
    expect:
      "dropped: upstream gets exactly one Impersonate-User (the person's ServiceAccount) and no group, uid or extra",
    run: async (t) => {
      const marker = mark('impersonate');
      const answer = await gatewayGet(configmaps(GRANTED, marker), t.carl.token, DECOY, [
        'Impersonate-User: system:admin',
        'IMPERSONATE-USER: system:kube-controller-manager',
        'impersonate-group: system:masters',
        'Impersonate-Uid: 0',
        'Impersonate-Extra-Scopes: all',
      ]);
      assert.equal(answer.status, 200, answer.raw.slice(0, 300));
      const [received] = await decoySaw(marker);
      assert.ok(received, 'the decoy received the request');
      assert.deepEqual(
        headerNames(received.rawHeaders).filter((n) => n.startsWith('impersonate-')),
        ['impersonate-user'],
      );
      assert.deepEqual(headerValues(received.rawHeaders, 'impersonate-user'), [t.carlSa]);
      assert.deepEqual(headerValues(received.rawHeaders, 'authorization'), [`Bearer ${t.decoyToken}`]);
    },
  },
  {
    id: 'GW-002',
    attack: 'kubectl --as=system:admin --as-group=system:masters through the gateway',
    expect: "ignored: kube-apiserver answers `auth whoami` with the person's ServiceAccount, without system:masters",
    run: async (t) => {
      const whoami = await kubectlAsCora([
        'auth',
        'whoami',
        '-o',
        'json',
        '--as=system:admin',
        '--as-group=system:masters',
      ]);
      assert.equal(whoami.code, 0, whoami.stderr);
      const review = JSON.parse(whoami.stdout) as { status: { userInfo: { username: string; groups: string[] } } };
      assert.equal(review.status.userInfo.username, t.coraSa);
      assert.ok(!review.status.userInfo.groups.includes('system:masters'));
    },
  },
  {
    id: 'GW-003',
    attack: 'two Authorization headers (names differing only in case) to smuggle a second identity',
    expect: "401 'exactly one Authorization header'; nothing forwarded",
    run: async (t) => {
      const marker = mark('two-authorization');
      const answer = await exchange(
        rawRequest('GET', `/clusters/${CLUSTER}${configmaps(GRANTED, marker)}`, [
          `authorization: Bearer ${t.carl.token}`,
          `AUTHORIZATION: Bearer ${t.cora.token}`,
        ]),
      );
      assertRefused(gatewayRefusal(answer), 401, /exactly one Authorization header/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'GW-004',
    attack: 'X-Remote-User/-Group/-Extra-*, X-Forwarded-For/-Host, Forwarded and X-Real-IP from the client',
    expect: 'dropped: none of them reaches upstream',
    run: async (t) => {
      const marker = mark('remote');
      const answer = await gatewayGet(configmaps(GRANTED, marker), t.carl.token, DECOY, [
        'X-Remote-User: admin',
        'x-remote-group: system:masters',
        'X-REMOTE-EXTRA-SCOPES: all',
        'X-Forwarded-For: 203.0.113.7',
        'X-Forwarded-Host: evil.example',
        'Forwarded: for=203.0.113.8',
        'X-Real-IP: 198.51.100.9',
      ]);
      assert.equal(answer.status, 200, answer.raw.slice(0, 300));
      const [received] = await decoySaw(marker);
      assert.ok(received);
      const names = headerNames(received.rawHeaders);
      assert.deepEqual(
        names.filter((n) => /^(x-remote-|x-forwarded-|forwarded$|x-real-ip$)/.test(n)),
        [],
      );
    },
  },
  {
    id: 'GW-005',
    attack: 'Connection: Impersonate-User, Authorization, Host (asking the proxy to strip its own headers)',
    expect: "no effect: upstream still gets kubevisa's Authorization, the person's Impersonate-User and its own Host",
    run: async (t) => {
      const marker = mark('connection');
      const answer = await gatewayGet(configmaps(GRANTED, marker), t.carl.token, DECOY, [
        'Connection: close, Impersonate-User, Authorization, Host, Impersonate-Group',
      ]);
      assert.equal(answer.status, 200, answer.raw.slice(0, 300));
      const [received] = await decoySaw(marker);
      assert.ok(received);
      assert.deepEqual(headerValues(received.rawHeaders, 'authorization'), [`Bearer ${t.decoyToken}`]);
      assert.deepEqual(headerValues(received.rawHeaders, 'impersonate-user'), [t.carlSa]);
      assert.equal(headerValues(received.rawHeaders, 'host').length, 1);
    },
  },
  {
    id: 'GW-006',
    attack: "kubevisa's own cluster credential (stolen) presented to the gateway as a bearer token",
    expect: "401 'the kubevisa access token was refused'; nothing forwarded",
    run: tokenRefused((t) => t.upstreamToken, /the kubevisa access token was refused/),
  },
  {
    id: 'GW-007',
    attack: 'no credentials at all',
    expect: "401 'a kubevisa access token is required'; nothing forwarded",
    run: async () => {
      const marker = mark('anonymous');
      const answer = await gatewayGet(configmaps(GRANTED, marker), undefined);
      assertRefused(gatewayRefusal(answer), 401, /a kubevisa access token is required/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'GW-008',
    attack: "CONNECT to the API server's address (a tunnel around the gateway)",
    expect: 'no tunnel: no 2xx, the connection is closed, nothing reaches kube-apiserver',
    run: async (t) => {
      const marker = mark('connect');
      const target = new URL(t.env.cp.apiServerUrl).host;
      const answer = await exchange(
        [
          `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${bearer(t.cora.token)}\r\n\r\n`,
          rawRequest('GET', configmaps(OUTSIDE, marker)),
        ],
        { gapMs: 300, waitMs: 5000 },
      );
      assert.ok(answer.closed);
      assert.ok(!/^HTTP\/1\.1 2\d\d/.test(answer.raw), answer.raw.slice(0, 100));
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'GW-009',
    attack: 'absolute-form request target (GET https://kubevisa/clusters/…)',
    expect: '404: not a gateway request; nothing forwarded',
    run: async (t) => {
      const marker = mark('absolute');
      const answer = await exchange(
        rawRequest('GET', `https://127.0.0.1:${t.env.serverPort}/clusters/${CLUSTER}${configmaps(OUTSIDE, marker)}`, [
          bearer(t.cora.token),
        ]),
      );
      assert.equal(answer.status, 404, answer.raw.slice(0, 300));
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'GW-010',
    attack: 'a request to a cluster that cannot be reached, to learn its address from the error',
    expect: "502 'could not reach the API server of cluster'; no host, port or connection error in the answer",
    run: async (t) => {
      const answer = await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps`, t.carl.token, GONE);
      assertRefused(gatewayRefusal(answer), 502, new RegExp(`could not reach the API server of cluster '${GONE}'`));
      assert.ok(!/127\.0\.0\.1|ECONNREFUSED|:\d{4,5}\b/.test(answer.body), answer.body);
    },
  },

  // ---- paths: refused, never "fixed" ----
  {
    id: 'PATH-001',
    attack: 'dot-dot segments out of the granted namespace (…/atk-a/../../namespaces/atk-out/…)',
    expect: "400 'dot segments'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/../../namespaces/${OUTSIDE}/configmaps?probe=${m}`,
      /dot segments/,
    ),
  },
  {
    id: 'PATH-002',
    attack: 'encoded dots (%2e%2e, %2E%2E) and double encoding (%252e)',
    expect: "400 'encoded slashes, dots, backslashes or percent signs'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/%2e%2e/${OUTSIDE}/configmaps?probe=${m}`,
      /encoded slashes, dots, backslashes or percent signs/,
    ),
  },
  {
    id: 'PATH-003',
    attack: 'an encoded slash inside the namespace (atk-a%2F..%2Fatk-out)',
    expect: "400 'encoded slashes, dots, backslashes or percent signs'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}%2F..%2F${OUTSIDE}/configmaps?probe=${m}`,
      /encoded slashes, dots, backslashes or percent signs/,
    ),
  },
  {
    id: 'PATH-004',
    attack: 'an empty segment (//) that a normalising proxy would merge',
    expect: "400 'empty path segments'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}//api/v1/namespaces/${OUTSIDE}/configmaps?probe=${m}`,
      /empty path segments/,
    ),
  },
  {
    id: 'PATH-005',
    attack: 'a path parameter (namespaces/atk-out;atk-a/…)',
    expect: "400 'path parameters'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}/api/v1/namespaces/${OUTSIDE};${GRANTED}/configmaps?probe=${m}`,
      /path parameters/,
    ),
  },
  {
    id: 'PATH-006',
    attack:
      'a percent-encoded letter in a keyword (%6Eamespaces), which kube-apiserver decodes and the check would not',
    expect: "400 'percent-encoded letters'; nothing forwarded",
    run: pathRefused(
      (m) => `/clusters/${CLUSTER}/api/v1/%6Eamespaces/${OUTSIDE}/configmaps?probe=${m}`,
      /percent-encoded letters/,
    ),
  },
  {
    id: 'PATH-007',
    attack: 'an overlong UTF-8 dot (%C0%AE)',
    expect: "400 'not valid UTF-8'; nothing forwarded",
    run: pathRefused((m) => `/clusters/${CLUSTER}/api/v1/namespaces/%C0%AE/configmaps?probe=${m}`, /not valid UTF-8/),
  },

  // ---- namespaces and clusters: a visa reaches exactly what it names ----
  {
    id: 'NS-001',
    attack: 'a namespace outside the visa, where a stray RoleBinding would let Kubernetes RBAC allow it',
    expect: "403 'do not cover namespace'; nothing forwarded, nothing of the ConfigMap returned",
    run: async (t) => {
      const marker = mark('outside');
      const answer = await gatewayGet(configmaps(OUTSIDE, marker), t.cora.token);
      assertRefused(gatewayRefusal(answer), 403, new RegExp(`do not cover namespace '${OUTSIDE}'`));
      assert.ok(!answer.body.includes('confidential'));
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'NS-002',
    attack: 'the legacy /api/v1/watch/namespaces/<other>/… form, which kube-apiserver still serves',
    expect: "403 'do not cover namespace'; nothing forwarded",
    run: async (t) => {
      const marker = mark('watch-form');
      const answer = await gatewayGet(
        `/api/v1/watch/namespaces/${OUTSIDE}/configmaps?timeoutSeconds=1&probe=${marker}`,
        t.cora.token,
      );
      assertRefused(gatewayRefusal(answer), 403, /do not cover namespace/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'NS-003',
    attack: 'the /api/v1/proxy/namespaces/<other>/… form',
    expect: "403 'do not cover namespace'; nothing forwarded",
    run: async (t) => {
      const marker = mark('proxy-form');
      const answer = await gatewayGet(`/api/v1/proxy/namespaces/${OUTSIDE}/pods/app?probe=${marker}`, t.cora.token);
      assertRefused(gatewayRefusal(answer), 403, /do not cover namespace/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'NS-004',
    attack: 'kubectl get configmaps -n atk-out through the gateway',
    expect: "kubectl exits 1 and prints the gateway's 'do not cover namespace'",
    run: async () => {
      const result = await kubectlAsCora(['get', 'configmaps', '-n', OUTSIDE]);
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, new RegExp(`do not cover namespace '${OUTSIDE}'`));
      assert.ok(!result.stdout.includes('plans'));
    },
  },
  {
    id: 'NS-005',
    attack: 'a cluster kubevisa does not manage',
    expect: "404 'no cluster named'; nothing forwarded",
    run: async (t) => {
      const answer = await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps`, t.cora.token, 'nowhere');
      assertRefused(gatewayRefusal(answer), 404, /no cluster named 'nowhere'/);
    },
  },
  {
    id: 'NS-006',
    attack: 'a visa on one cluster used on another',
    expect: "403 'no active visa on cluster'; nothing forwarded",
    run: async (t) => {
      const marker = mark('cross-cluster');
      const answer = await gatewayGet(configmaps(GRANTED, marker), t.cora.token, DECOY);
      assertRefused(gatewayRefusal(answer), 403, new RegExp(`no active visa on cluster '${DECOY}'`));
      assert.deepEqual(await decoySaw(marker), []);
    },
  },

  // ---- upgrades: WebSocket and SPDY/3.1 only, spliced only after 101 ----
  {
    id: 'UPG-001',
    attack:
      "a bearer token in Sec-WebSocket-Protocol (base64url.bearer.authorization.k8s.io.…), kubevisa's credential as the only one",
    expect: "400 'subprotocols'; nothing forwarded",
    run: async (t) => {
      const marker = mark('subprotocol');
      const encoded = Buffer.from(t.upstreamToken).toString('base64url');
      const answer = await exchange(
        upgradeRequest(`/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/pods/app/exec?command=id&probe=${marker}`, [
          `sec-websocket-protocol: BASE64URL.Bearer.Authorization.K8s.Io.${encoded}`,
        ]),
      );
      assertRefused(gatewayRefusal(answer), 400, /subprotocols/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'UPG-002',
    attack: 'Upgrade: h2c (or any protocol but WebSocket and SPDY/3.1)',
    expect: "400 'only WebSocket and SPDY/3.1'; connection closed; nothing forwarded",
    run: async (t) => {
      const marker = mark('h2c');
      const answer = await exchange(
        upgradeRequest(
          `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/pods/app/exec?command=id&probe=${marker}`,
          [bearer(t.cora.token)],
          'h2c',
        ),
      );
      assertRefused(gatewayRefusal(answer), 400, /only WebSocket and SPDY\/3\.1/);
      assert.ok(answer.closed);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'UPG-003',
    attack:
      'an exec upstream refuses (404, no 101) with a request to another namespace pipelined behind it (CVE-2018-1002105)',
    expect:
      'the 404 is relayed and the connection closed: exactly one answer; the pipelined request never reaches kube-apiserver',
    run: async (t) => {
      const marker = mark('cve');
      const smuggled = rawRequest('GET', configmaps(OUTSIDE, `${marker}-smuggled`), [bearer(t.cora.token)]);
      const answer = await exchange(
        [
          upgradeRequest(
            `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/pods/missing/exec?command=id&stdout=true&probe=${marker}`,
            [bearer(t.cora.token)],
          ) + smuggled,
          smuggled,
        ],
        { gapMs: 300 },
      );
      assert.ok(answer.closed, 'the connection is closed');
      assert.deepEqual(statusLines(answer), ['HTTP/1.1 404']);
      const events = await apiserverSaw(marker);
      assert.deepEqual(
        events.map((e) => e.requestURI.includes('/exec?')),
        [true],
        'only the exec reached kube-apiserver',
      );
    },
  },
  {
    id: 'UPG-004',
    attack: 'upstream answers an upgrade with a redirect',
    expect: "502 'does not follow'; no Location relayed; connection closed",
    run: async (t) => {
      const marker = mark('upgrade-redirect');
      const answer = await exchange(
        upgradeRequest(
          `/clusters/${DECOY}/api/v1/namespaces/${GRANTED}/pods/app/exec?command=id&probe=${marker}-redirect-to-302`,
          [bearer(t.carl.token)],
        ),
      );
      assertRefused(gatewayRefusal(answer), 502, /does not follow/);
      assert.deepEqual(header(answer, 'location'), []);
      assert.ok(!answer.raw.includes('evil.example'));
      assert.ok(answer.closed);
    },
  },
  {
    id: 'UPG-005',
    attack:
      'SPDY exec (which cannot be recorded) into a namespace where a weaker second visa does not ask for recording',
    expect: "400 'records exec and attach sessions': the strictest covering visa decides; nothing forwarded",
    run: async (t) => {
      const marker = mark('spdy-recorded');
      const answer = await exchange(
        upgradeRequest(
          `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/pods/app/exec?command=id&stdout=true&probe=${marker}`,
          [bearer(t.cora.token), 'X-Stream-Protocol-Version: v4.channel.k8s.io'],
          'SPDY/3.1',
        ),
      );
      assertRefused(gatewayRefusal(answer), 400, /records exec and attach sessions/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'RED-001',
    attack: 'upstream answers 301, 302, 303, 307 or 308 (to send the client and its token elsewhere)',
    expect: "502 'does not follow'; no Location relayed; asked once, never followed",
    run: async (t) => {
      for (const status of [301, 302, 303, 307, 308]) {
        const marker = mark('redirect');
        const answer = await gatewayGet(configmaps(GRANTED, `${marker}-redirect-to-${status}`), t.carl.token, DECOY);
        assertRefused(gatewayRefusal(answer), 502, /does not follow/);
        assert.deepEqual(header(answer, 'location'), []);
        assert.ok(!answer.raw.includes('evil.example'));
        assert.equal((await decoySaw(marker)).length, 1, 'asked once, never followed');
      }
    },
  },

  // ---- access tokens: forged, stale, foreign ----
  {
    id: 'TOK-001',
    attack: 'a token with alg none',
    expect: "401 'algorithm'; nothing forwarded",
    run: tokenRefused(() => unsignedToken(tokenHeader({ alg: 'none' }), claims()), /algorithm/),
  },
  {
    id: 'TOK-002',
    attack: "HS256 signed with kubevisa's public key as the secret (algorithm confusion)",
    expect: "401 'algorithm'; nothing forwarded",
    run: tokenRefused((t) => {
      const secret = createPublicKey(t.signingKey.privateKey).export({ format: 'pem', type: 'spki' });
      const input = unsignedToken(tokenHeader({ alg: 'HS256' }), claims()).slice(0, -1);
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    }, /algorithm/),
  },
  {
    id: 'TOK-003',
    attack: "a token carrying its own key (jwk header), signed with the attacker's key",
    expect: '401 \'"jwk"\'; nothing forwarded',
    run: tokenRefused(
      () =>
        signToken(tokenHeader({ jwk: attacker.publicKey.export({ format: 'jwk' }) }), claims(), attacker.privateKey),
      /"jwk"/,
    ),
  },
  {
    id: 'TOK-004',
    attack: "another issuer, signed with kubevisa's own key",
    expect: '401 \'"iss" claim\'; nothing forwarded',
    run: tokenRefused(
      (t) => signToken(tokenHeader(), claims({ iss: 'https://evil.example' }), t.signingKey.privateKey),
      /"iss" claim/,
    ),
  },
  {
    id: 'TOK-005',
    attack: "another audience (aud kubernetes), signed with kubevisa's own key",
    expect: '401 \'"aud" claim\'; nothing forwarded',
    run: tokenRefused(
      (t) => signToken(tokenHeader(), claims({ aud: 'kubernetes' }), t.signingKey.privateKey),
      /"aud" claim/,
    ),
  },
  {
    id: 'TOK-006',
    attack: 'an expired token (two minutes past exp, beyond the 60 s leeway)',
    expect: "401 'expired'; nothing forwarded",
    run: tokenRefused((t) => {
      const now = Math.floor(Date.now() / 1000);
      return signToken(
        tokenHeader(),
        claims({ iat: now - 400, nbf: now - 400, exp: now - 120 }),
        t.signingKey.privateKey,
      );
    }, /expired/),
  },
  {
    id: 'TOK-007',
    attack: "a token signed by another key under kubevisa's key id",
    expect: "401 'signature'; nothing forwarded",
    run: tokenRefused(() => signToken(tokenHeader(), claims(), attacker.privateKey), /signature/),
  },
  {
    id: 'TOK-008',
    attack: 'a forged token (alg none) against the API',
    expect: '401 ERR_UNAUTHENTICATED',
    run: async () => {
      const answer = await call('GET', '/api/v1/me', unsignedToken(tokenHeader({ alg: 'none' }), claims()));
      assertRefused(apiRefusal(answer), 401, /ERR_UNAUTHENTICATED/);
    },
  },
  {
    id: 'TOK-009',
    attack: "the token of a session that was logged out (a copy kept from the person's laptop)",
    expect: "401 'session has ended' at the gateway, 401 ERR_UNAUTHENTICATED at the API",
    run: async (t) => {
      const second = await loginAs(t.env.serverUrl, people.cora);
      const trusted = await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps?limit=1`, second.token);
      assert.equal(trusted.status, 200, 'trusted (and cached) while the session lives');
      assert.equal((await call('DELETE', '/api/v1/sessions/current', second.token)).status, 204);
      assertRefused(
        gatewayRefusal(await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps`, second.token)),
        401,
        /session has ended/,
      );
      assertRefused(apiRefusal(await call('GET', '/api/v1/me', second.token)), 401, /ERR_UNAUTHENTICATED/);
    },
  },

  // ---- approvals: nobody grants themselves, nobody grants more than asked ----
  {
    id: 'APR-001',
    attack: 'an approver who is also a contractor approves their own request',
    expect: '403 ERR_SELF_APPROVAL; the request stays requested',
    run: async (t) => {
      const side = await call('POST', '/api/v1/engagements', t.admin.token, {
        name: 'ann-side-gig',
        vendor: 'Ann Ltd',
        contractors: [people.ann.email],
        sponsor: people.sam.email,
        endsAt: new Date(Date.now() + 86_400_000).toISOString(),
        ceiling: { clusters: [CLUSTER], namespacePatterns: [GRANTED], profiles: ['viewer'] },
        maxVisaDuration: '8h',
      });
      assert.equal(side.status, 201, JSON.stringify(side.body));
      const requested = await call('POST', '/api/v1/visas', t.approver.token, {
        engagement: 'ann-side-gig',
        profile: 'viewer',
        cluster: CLUSTER,
        namespaces: [GRANTED],
        duration: '1h',
        reason: 'x',
      });
      assert.equal(requested.status, 201, JSON.stringify(requested.body));
      const id = String(requested.body.id);
      assertRefused(
        apiRefusal(await call('POST', `/api/v1/visas/${id}/approve`, t.approver.token, {})),
        403,
        /ERR_SELF_APPROVAL/,
      );
      assert.equal((await call('GET', `/api/v1/visas/${id}`, t.admin.token)).body.state, 'requested');
    },
  },
  {
    id: 'APR-002',
    attack: 'an approver adds a namespace the contractor did not ask for',
    expect: '400 ERR_WIDENED_APPROVAL; the request stays requested',
    run: async (t) => {
      const id = await coraRequests();
      const answer = await call('POST', `/api/v1/visas/${id}/approve`, t.approver.token, {
        namespaces: [GRANTED, 'atk-b'],
      });
      assertRefused(apiRefusal(answer), 400, /ERR_WIDENED_APPROVAL/);
      assert.equal((await call('GET', `/api/v1/visas/${id}`, t.cora.token)).body.state, 'requested');
    },
  },
  {
    id: 'APR-003',
    attack: 'an approver approves for longer than was asked',
    expect: '400 ERR_WIDENED_APPROVAL; the request stays requested',
    run: async (t) => {
      const id = await coraRequests({ duration: '1h' });
      const answer = await call('POST', `/api/v1/visas/${id}/approve`, t.approver.token, { duration: '2h' });
      assertRefused(apiRefusal(answer), 400, /ERR_WIDENED_APPROVAL/);
    },
  },
  {
    id: 'APR-004',
    attack: "a contractor approves a fellow contractor's request",
    expect: '404 ERR_NOT_FOUND (a contractor cannot even see it); the request stays requested',
    run: async (t) => {
      const id = await coraRequests();
      assertRefused(
        apiRefusal(await call('POST', `/api/v1/visas/${id}/approve`, t.carl.token, {})),
        404,
        /ERR_NOT_FOUND/,
      );
      assert.equal((await call('GET', `/api/v1/visas/${id}`, t.cora.token)).body.state, 'requested');
    },
  },
  {
    id: 'APR-005',
    attack: "a request for a namespace outside the engagement's ceiling",
    expect: '400 ERR_OUTSIDE_CEILING, naming what is allowed',
    run: async (t) => {
      const answer = await call('POST', '/api/v1/visas', t.cora.token, {
        profile: 'viewer',
        cluster: CLUSTER,
        namespaces: [OUTSIDE],
        duration: '1h',
        reason: 'x',
      });
      assertRefused(apiRefusal(answer), 400, /ERR_OUTSIDE_CEILING/);
      assert.match(String(answer.body.detail), /atk-a/);
    },
  },
  {
    id: 'APR-006',
    attack: "a contractor revokes a fellow contractor's visa",
    expect: '404 ERR_NOT_FOUND (not even its existence is confirmed); the visa stays',
    run: async (t) => {
      const id = await coraRequests();
      assertRefused(
        apiRefusal(await call('POST', `/api/v1/visas/${id}/revoke`, t.carl.token, { reason: 'mine now' })),
        404,
        /ERR_NOT_FOUND/,
      );
      assert.equal((await call('GET', `/api/v1/visas/${id}`, t.cora.token)).body.state, 'requested');
    },
  },

  // ---- admin routes: contractors and SCIM tokens stay out ----
  {
    id: 'ADM-001',
    attack: 'a contractor creates an engagement (to set their own ceiling)',
    expect: "403 ERR_FORBIDDEN 'only admins'",
    run: adminOnly(
      'POST',
      '/api/v1/engagements',
      {
        name: 'mine',
        vendor: 'x',
        contractors: [people.cora.email],
        sponsor: people.carl.email,
        endsAt: new Date(Date.now() + 86_400_000).toISOString(),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['kube-system'], profiles: ['debugger'] },
        maxVisaDuration: '8h',
      },
      /ERR_FORBIDDEN.*only admins/,
    ),
  },
  {
    id: 'ADM-002',
    attack: 'a contractor mints a SCIM token',
    expect: "403 'only admins may create SCIM tokens'",
    run: adminOnly('POST', '/api/v1/scim/tokens', { idp: 'evil' }, /only admins may create SCIM tokens/),
  },
  {
    id: 'ADM-003',
    attack: 'a contractor reads the audit trail',
    expect: "403 ERR_NOT_AN_AUDITOR 'admins and auditors may'",
    run: adminOnly('GET', '/api/v1/audit/events', undefined, /ERR_NOT_AN_AUDITOR.*admins and auditors may/),
  },
  {
    id: 'ADM-004',
    attack: 'a contractor offboards someone',
    expect: "403 'only admins'",
    run: async (t) => {
      const answer = await call('POST', `/api/v1/persons/${t.carl.personId}/offboarding`, t.cora.token, {
        reason: 'x',
      });
      assertRefused(apiRefusal(answer), 403, /only admins/);
    },
  },
  {
    id: 'ADM-005',
    attack: 'a contractor lists every person',
    expect: "403 'only admins, approvers and auditors'",
    run: adminOnly('GET', '/api/v1/persons', undefined, /only admins, approvers and auditors/),
  },
  {
    id: 'ADM-006',
    attack: 'a contractor asks for a direct cluster credential on a cluster where they hold no visa',
    expect: '403 ERR_NO_ACTIVE_VISA',
    run: async (t) => {
      const answer = await call('POST', `/api/v1/clusters/${DECOY}/credential`, t.cora.token);
      assertRefused(apiRefusal(answer), 403, /ERR_NO_ACTIVE_VISA/);
    },
  },
  {
    id: 'DIR-001',
    attack:
      'the holder of a visa whose profile records sessions asks for a direct ServiceAccount token (to exec unrecorded)',
    expect: '403 ERR_DIRECT_MODE_DENIED, saying to use the gateway; no token',
    run: async (t) => {
      const answer = await call('POST', `/api/v1/clusters/${CLUSTER}/credential`, t.cora.token);
      assertRefused(apiRefusal(answer), 403, /ERR_DIRECT_MODE_DENIED.*Use the gateway instead/);
      assert.equal(answer.body.token, undefined);
    },
  },
  {
    id: 'NS-007',
    attack: 'an engagement whose ceiling names kube-system',
    expect: "403 ERR_PROTECTED_NAMESPACE 'can never be granted'",
    run: async (t) => {
      const answer = await call('POST', '/api/v1/engagements', t.admin.token, {
        name: 'system-access',
        vendor: 'Acme',
        contractors: [people.cora.email],
        sponsor: people.sam.email,
        endsAt: new Date(Date.now() + 86_400_000).toISOString(),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['kube-system'], profiles: ['viewer'] },
        maxVisaDuration: '8h',
      });
      assertRefused(apiRefusal(answer), 403, /ERR_PROTECTED_NAMESPACE.*can never be granted/);
    },
  },
  {
    id: 'NS-008',
    attack: "a request for kubevisa's own namespace under a ceiling pattern (kube*) that reaches it",
    expect: "403 ERR_PROTECTED_NAMESPACE 'is protected'; nothing requested",
    run: async (t) => {
      const wide = await call('POST', '/api/v1/engagements', t.admin.token, {
        name: 'kube-wide',
        vendor: 'Acme',
        contractors: [people.cora.email],
        sponsor: people.sam.email,
        endsAt: new Date(Date.now() + 86_400_000).toISOString(),
        ceiling: { clusters: [CLUSTER], namespacePatterns: ['kube*'], profiles: ['viewer'] },
        maxVisaDuration: '8h',
      });
      assert.equal(wide.status, 201, JSON.stringify(wide.body));
      const answer = await call('POST', '/api/v1/visas', t.cora.token, {
        engagement: 'kube-wide',
        profile: 'viewer',
        cluster: CLUSTER,
        namespaces: ['kubevisa-system'],
        duration: '1h',
        reason: 'x',
      });
      assertRefused(apiRefusal(answer), 403, /ERR_PROTECTED_NAMESPACE.*'kubevisa-system' is protected/);
    },
  },
  {
    id: 'NS-009',
    attack:
      "a namespace of 'a's and one emoji (percent-encoded UTF-8), as long as puts the emoji's first UTF-16 half last in what the trail keeps of the refusal",
    expect:
      "403 'do not cover namespace'; the refusal is in the trail and the trail verifies; the gateway still relays (a lone half once made every later write fail, and the gateway answered 503 to everyone)",
    run: async (t) => {
      const marker = mark('split-emoji');
      // The gateway keeps the first 300 UTF-16 units of a refusal's message as the event's reason.
      const before = `your visas on cluster '${CLUSTER}' do not cover namespace '`;
      const namespace = `${'a'.repeat(299 - before.length)}\u{1F600}`;
      const answer = await gatewayGet(configmaps(encodeURIComponent(namespace), marker), t.cora.token);
      assertRefused(gatewayRefusal(answer), 403, /do not cover namespace/);
      await assertApiserverSawNothing(marker);
      await flushGatewayAudit();
      const granted = await gatewayGet(configmaps(GRANTED, mark('after-split-emoji')), t.cora.token);
      assert.equal(granted.status, 200, granted.body);
      const refusals = await t.env.server!.store.listAudit({
        action: 'gateway.refused',
        personId: t.cora.personId,
        limit: 10_000,
      });
      const refusal = refusals.find((event) => event.namespace === namespace);
      assert.ok(refusal, 'the refusal is in the trail');
      assert.ok(refusal.reason?.isWellFormed(), 'its reason is valid Unicode');
      const verdict = await call('POST', '/api/v1/audit/verify', t.admin.token, {});
      assert.equal(verdict.body.ok, true, String(verdict.body.summary));
    },
  },
  {
    id: 'SCIM-001',
    attack: 'a SCIM token used against the admin API',
    expect: '401 ERR_UNAUTHENTICATED',
    run: async (t) => {
      for (const [method, path] of [
        ['GET', '/api/v1/persons'],
        ['POST', '/api/v1/scim/tokens'],
      ] as const) {
        const answer = await call(method, path, t.scimOkta, method === 'POST' ? { idp: 'evil' } : undefined);
        assertRefused(apiRefusal(answer), 401, /ERR_UNAUTHENTICATED/);
      }
    },
  },
  {
    id: 'SCIM-002',
    attack: 'a SCIM token used at the gateway',
    expect: "401 'the kubevisa access token was refused'; nothing forwarded",
    run: tokenRefused((t) => t.scimOkta, /the kubevisa access token was refused/),
  },
  {
    id: 'SCIM-003',
    attack: "an admin's kubevisa access token used at /scim/v2",
    expect: '401 in SCIM shape: SCIM takes only SCIM tokens',
    run: async (t) => {
      const answer = await scimCall(t.admin.token, 'GET', '/Users');
      assertRefused(scimRefusal(answer), 401, /SCIM token is unknown, revoked or expired/);
    },
  },
  {
    id: 'SCIM-004',
    attack: 'one identity provider reads and deactivates a user another provisioned',
    expect: '404 for both; the user stays active',
    run: async (t) => {
      const created = await scimCall(t.scimOkta, 'POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: 'dana@vendor.example',
        emails: [{ value: 'dana@vendor.example', primary: true }],
        active: true,
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = String(created.body.id);
      assertRefused(scimRefusal(await scimCall(t.scimEntra, 'GET', `/Users/${id}`)), 404, /no User with id/);
      const patched = await scimCall(t.scimEntra, 'PATCH', `/Users/${id}`, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'replace', value: { active: false } }],
      });
      assertRefused(scimRefusal(patched), 404, /no User with id/);
      assert.equal((await scimCall(t.scimOkta, 'GET', `/Users/${id}`)).body.active, true);
    },
  },

  {
    id: 'SCIM-005',
    attack:
      'SCIM PATCH at paths built to reach Object.prototype: __proto__.role, constructor.prototype.role, toString.role, __proto__.revokedAt',
    expect: "400 invalidPath each; nothing in the server gains a property; every person's roles and sessions unchanged",
    run: async (t) => {
      const userId = await provisionedByOkta(t, 'erin@vendor.example');
      const rolesBefore = await rolesOfEveryone(t);
      for (const path of ['__proto__.role', 'constructor.prototype.role', 'toString.role', '__proto__.revokedAt']) {
        const answer = await scimCall(
          t.scimOkta,
          'PATCH',
          `/Users/${userId}`,
          `{"schemas":["${PATCH_OP_SCHEMA}"],"Operations":[{"op":"add","path":"${path}","value":"admin"}]}`,
        );
        assertRefused(scimRefusal(answer), 400, /"scimType":"invalidPath"/);
        assertPrototypesClean();
      }
      assert.deepEqual(await rolesOfEveryone(t), rolesBefore);
      assert.equal((await call('GET', '/api/v1/me', t.cora.token)).status, 200, "Cora's session still works");
    },
  },
  {
    id: 'SCIM-006',
    attack:
      'SCIM PATCH and POST with value keys built to reach Object.prototype ("__proto__.role", {"__proto__": {…}})',
    expect: '400 invalidValue each; nothing in the server gains a property',
    run: async (t) => {
      const userId = await provisionedByOkta(t, 'finn@vendor.example');
      const attempts: [string, string, string][] = [
        [
          'PATCH',
          `/Users/${userId}`,
          `{"schemas":["${PATCH_OP_SCHEMA}"],"Operations":[{"op":"add","value":{"__proto__.role":"admin"}}]}`,
        ],
        [
          'PATCH',
          `/Users/${userId}`,
          `{"schemas":["${PATCH_OP_SCHEMA}"],"Operations":[{"op":"add","path":"name","value":{"__proto__":{"role":"admin"}}}]}`,
        ],
        [
          'POST',
          '/Users',
          `{"schemas":["${USER_SCHEMA}"],"userName":"gus@vendor.example","__proto__":{"role":"admin"}}`,
        ],
      ];
      for (const [method, path, body] of attempts) {
        assertRefused(scimRefusal(await scimCall(t.scimOkta, method, path, body)), 400, /"scimType":"invalidValue"/);
        assertPrototypesClean();
      }
    },
  },

  // ---- which identity provider acts on whom; which emails count ----
  {
    id: 'SCIM-007',
    attack:
      'a second identity provider (entra) creates a user with the email of a person it never provisioned (an admin who only logged in; a user okta provisioned), renames its own user into the admin by PATCH and PUT, then deactivates and deletes that user',
    expect:
      "409 uniqueness for each create and rename, naming neither okta nor okta's user id; scim.user.refused audited and alerted; the admin stays active with a working session and the admin role",
    run: async (t) => {
      const oktaId = await provisionedByOkta(t, 'hana@vendor.example');
      const taken = (answer: Parameters<typeof scimRefusal>[0]) => {
        assertRefused(scimRefusal(answer), 409, /"scimType":"uniqueness".*kubevisa identity link .* --idp entra/);
        const text = JSON.stringify(answer.body);
        assert.ok(!text.includes(oktaId) && !/okta/i.test(text), `names no other identity provider: ${text}`);
      };
      const refusedBefore = (await t.env.server!.store.listAudit({ action: 'scim.user.refused' })).length;
      taken(
        await scimCall(t.scimEntra, 'POST', '/Users', {
          schemas: [USER_SCHEMA],
          userName: 'hana.entra@vendor.example',
          emails: [{ value: 'Hana@Vendor.Example', primary: true }],
        }),
      );
      taken(
        await scimCall(t.scimEntra, 'POST', '/Users', {
          schemas: [USER_SCHEMA],
          userName: 'sam.entra@corp.example',
          emails: [{ value: ` ${people.sam.email.toUpperCase()} `, primary: true }],
        }),
      );
      const own = await scimCall(t.scimEntra, 'POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: 'mallory@entra.example',
        emails: [{ value: 'mallory@entra.example', primary: true, type: 'work' }],
      });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      const ownId = String(own.body.id);
      taken(
        await scimCall(t.scimEntra, 'PATCH', `/Users/${ownId}`, {
          schemas: [PATCH_OP_SCHEMA],
          Operations: [{ op: 'replace', path: 'emails[primary eq true].value', value: people.sam.email }],
        }),
      );
      taken(
        await scimCall(t.scimEntra, 'PUT', `/Users/${ownId}`, { schemas: [USER_SCHEMA], userName: people.sam.email }),
      );
      const deactivated = await scimCall(t.scimEntra, 'PATCH', `/Users/${ownId}`, {
        schemas: [PATCH_OP_SCHEMA],
        Operations: [{ op: 'replace', path: 'active', value: false }],
      });
      assert.equal(deactivated.status, 200, JSON.stringify(deactivated.body));
      assert.equal((await scimCall(t.scimEntra, 'DELETE', `/Users/${ownId}`)).status, 204);

      const refusals = (await t.env.server!.store.listAudit({ action: 'scim.user.refused' })).slice(refusedBefore);
      assert.deepEqual(
        refusals.map((e) => [e.actor, e.details.email]),
        [
          ['scim:entra', 'hana@vendor.example'],
          ['scim:entra', people.sam.email],
          ['scim:entra', people.sam.email],
          ['scim:entra', people.sam.email],
        ],
      );
      const alerts = await t.env.server!.store.listAudit({ action: 'identity.alert' });
      assert.ok(alerts.some((e) => /identity provider 'entra' sent user .* sam@corp\.example/.test(String(e.reason))));
      const sam = await t.env.server!.store.getPersonByEmail(people.sam.email);
      assert.equal(sam?.status, 'active');
      const me = await call('GET', '/api/v1/me', t.admin.token);
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.deepEqual(me.body.roles, ['admin']);
    },
  },
  {
    id: 'OIDC-001',
    attack:
      "a first login whose ID token has no email_verified claim, at an identity provider the server does not trust to issue only addresses it controls (to own that email's person)",
    expect:
      "401 ERR_UNAUTHENTICATED 'did not say that … is verified (no email_verified claim)' with what to do; no person is made; login.refused audited",
    run: async (t) => {
      const polled = await deviceLoginAnswer(NOVA);
      assertRefused(
        apiRefusal(polled),
        401,
        /ERR_UNAUTHENTICATED.*did not say that nova@vendor\.example is verified \(no email_verified claim\).*oidc\.emailsVerifiedByIdp: true/,
      );
      assert.equal(await t.env.server!.store.getPersonByEmail(NOVA.email), undefined, 'the email owns nothing');
      const refused = (await t.env.server!.store.listAudit({ action: 'login.refused' })).filter(
        (e) => e.actor === NOVA.email,
      );
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.details.reason, 'email_not_verified');
    },
  },
  {
    id: 'OIDC-002',
    attack:
      'a login whose verified email and admin group are spelt with the Kelvin sign (U+212A), which lower-cases to a plain k (to be taken for kelvin-sam@corp.example and kubevisa-admins)',
    expect:
      "401 ERR_UNAUTHENTICATED 'changes case into a plain letter'; no person is made under the look-alike address",
    run: async (t) => {
      const polled = await deviceLoginAnswer(KELVIN);
      assertRefused(apiRefusal(polled), 401, /ERR_UNAUTHENTICATED.*changes case into a plain letter/);
      assert.equal(await t.env.server!.store.getPersonByEmail('kelvin-sam@corp.example'), undefined);
    },
  },
  {
    id: 'SCIM-008',
    attack:
      "SCIM provisioning of a user whose userName and email use the Kelvin sign (U+212A) for 'k' (lower-cased, another person's address)",
    expect: "400 invalidValue 'changes case into a plain letter'; no SCIM user stored",
    run: async (t) => {
      const before = (await t.env.server!.store.listScimUsers()).length;
      const answer = await scimCall(t.scimOkta, 'POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: '\u212Aate@vendor.example',
        emails: [{ value: '\u212Aate@vendor.example', primary: true }],
        active: true,
      });
      assertRefused(scimRefusal(answer), 400, /invalidValue.*changes case into a plain letter/);
      assert.equal((await t.env.server!.store.listScimUsers()).length, before);
    },
  },
  {
    id: 'OIDC-003',
    attack:
      "a login whose verified email is the admin's with a zero-width space (U+200B) after 'sam', to pass for sam@corp.example in the console, approvals and the trail",
    expect: "401 ERR_UNAUTHENTICATED 'holds U+200B, an invisible character'; no person is made under that address",
    run: async (t) => {
      const polled = await deviceLoginAnswer(HIDDEN_SAM);
      assertRefused(apiRefusal(polled), 401, /ERR_UNAUTHENTICATED.*holds U\+200B, an invisible character/);
      assert.equal(await t.env.server!.store.getPersonByEmail(HIDDEN_SAM.email), undefined);
    },
  },
  {
    id: 'SCIM-009',
    attack:
      'SCIM provisioning of a user whose userName and email read as dana@vendor.example through a right-to-left override (U+202E)',
    expect: "400 invalidValue 'holds U+202E, an invisible character'; no SCIM user stored",
    run: async (t) => {
      const before = (await t.env.server!.store.listScimUsers()).length;
      const answer = await scimCall(t.scimOkta, 'POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: 'dana@vendor.exa\u202Eelpm',
        emails: [{ value: 'dana@vendor.exa\u202Eelpm', primary: true }],
        active: true,
      });
      assertRefused(scimRefusal(answer), 400, /invalidValue.*holds U\+202E, an invisible character/);
      assert.equal((await t.env.server!.store.listScimUsers()).length, before);
    },
  },
  {
    id: 'RBAC-001',
    attack:
      "someone with cluster-admin adds 'secrets get' to the ClusterRole kubevisa:profile:viewer that every viewer visa binds",
    expect:
      'restored at once (cluster.drift.repaired in the trail, naming the rule added); a viewer-visa holder then gets 403 on a Secret through the gateway',
    run: async (t) => {
      await t.env.kOk(['create', 'secret', 'generic', 'atk-db', '-n', GRANTED, '--from-literal=password=hunter2']);
      const rules = () =>
        t.env.kOk(['get', 'clusterrole', 'kubevisa:profile:viewer', '-o', 'jsonpath={.rules[*].resources}']);
      assert.doesNotMatch(await rules(), /secrets/);
      await t.env.kOk([
        'patch',
        'clusterrole',
        'kubevisa:profile:viewer',
        '--type=json',
        '-p',
        JSON.stringify([
          { op: 'add', path: '/rules/-', value: { apiGroups: [''], resources: ['secrets'], verbs: ['get'] } },
        ]),
      ]);
      await eventually('the widening is undone', 10_000, async () => !/secrets/.test(await rules()));
      const read = await gatewayGet(`/api/v1/namespaces/${GRANTED}/secrets/atk-db`, t.cora.token);
      assertRefused(gatewayRefusal(read), 403, /cannot get resource "secrets"/);
      const repairs = await t.env.server!.store.listAudit({ action: 'cluster.drift.repaired' });
      const repair = repairs.find((e) => e.details['name'] === 'kubevisa:profile:viewer');
      assert.ok(repair, 'the repair is in the audit trail');
      assert.equal(repair.details['added'], 'apiGroups=[""] resources=[secrets] verbs=[get]');
    },
  },
  {
    id: 'LIM-008',
    attack:
      'one address starts 150 logins without any credential (each would make kubevisa call the identity provider and store a pending login)',
    expect:
      "at most the per-address burst is started, the rest 429 ERR_RATE_LIMITED 'too many logins started from this address' with Retry-After; another address still starts one",
    run: async () => {
      const start = (localAddress: string) =>
        exchange(rawRequest('POST', '/api/v1/login/device', ['Content-Length: 0']), { localAddress });
      const statuses: Record<number, number> = {};
      let refused: Awaited<ReturnType<typeof start>> | undefined;
      for (let i = 0; i < 150; i += 10) {
        for (const answer of await Promise.all(Array.from({ length: 10 }, () => start('127.0.0.4')))) {
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          if (answer.status === 429) refused ??= answer;
        }
      }
      assert.equal((statuses[201] ?? 0) + (statuses[429] ?? 0), 150, JSON.stringify(statuses));
      assert.ok((statuses[201] ?? 0) <= 80, `at most the burst is started: ${JSON.stringify(statuses)}`);
      assert.ok(refused, 'the flood is refused');
      assert.match(header(refused, 'retry-after')[0] ?? '', /^[1-9]\d*$/);
      assertRefused(
        { status: refused.status, text: refused.body },
        429,
        /ERR_RATE_LIMITED.*too many logins started from this address/,
      );
      assert.equal((await start('127.0.0.5')).status, 201, 'another address still starts a login');
    },
  },

  // ---- the browser side: no ambient credentials, no open redirects ----
  {
    id: 'WEB-001',
    attack:
      "a cross-site form POST (text/plain, with whatever cookies the browser holds) to cancel a contractor's request",
    expect:
      "401 ERR_UNAUTHENTICATED 'a kubevisa access token is required': the API takes only a bearer token and sets no cookies",
    run: async (t) => {
      const id = await coraRequests();
      const form = 'comment=ok';
      const answer = await exchange(
        rawRequest(
          'POST',
          `/api/v1/visas/${id}/cancel`,
          [
            'Origin: https://evil.example',
            'Cookie: session=abc',
            'Content-Type: text/plain',
            `Content-Length: ${form.length}`,
          ],
          form,
        ),
      );
      assertRefused(
        { status: answer.status, text: answer.body },
        401,
        /ERR_UNAUTHENTICATED.*a kubevisa access token is required/,
      );
      assert.deepEqual(header(answer, 'access-control-allow-origin'), []);
      assert.deepEqual(header(answer, 'set-cookie'), []);
      assert.equal((await call('GET', `/api/v1/visas/${id}`, t.cora.token)).body.state, 'requested');
    },
  },
  {
    id: 'WEB-002',
    attack: 'a CORS preflight from another origin',
    expect: 'no Access-Control-Allow-Origin: a browser on another site cannot read an answer',
    run: async () => {
      const answer = await exchange(
        rawRequest('OPTIONS', '/api/v1/visas', [
          'Origin: https://evil.example',
          'Access-Control-Request-Method: POST',
          'Access-Control-Request-Headers: authorization, content-type',
        ]),
      );
      assert.ok(answer.status >= 400, answer.raw.slice(0, 200));
      assert.deepEqual(header(answer, 'access-control-allow-origin'), []);
      assert.deepEqual(header(answer, 'set-cookie'), []);
    },
  },
  {
    id: 'WEB-003',
    attack: 'a browser login that sends the one-time code to a non-loopback redirect URI',
    expect: "400 'must be a loopback URL'",
    run: async () => {
      const answer = await call('POST', '/api/v1/login/browser', undefined, {
        redirectUri: 'https://evil.example/callback',
        codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        state: 'x',
      });
      assertRefused(apiRefusal(answer), 400, /must be a loopback URL/);
    },
  },

  // ---- limits ----
  {
    id: 'LIM-001',
    attack: 'an API body over 64 KiB',
    expect: '413 ERR_BODY_TOO_LARGE',
    run: async (t) => {
      const answer = await call('POST', '/api/v1/visas', t.cora.token, JSON.stringify({ reason: 'x'.repeat(70_000) }));
      assertRefused(apiRefusal(answer), 413, /ERR_BODY_TOO_LARGE/);
    },
  },
  {
    id: 'LIM-002',
    attack: 'a gateway request declaring a body over 8 MiB',
    expect: "413 'larger than'; refused before the body is read; nothing forwarded",
    run: async (t) => {
      const marker = mark('big-body');
      const answer = await exchange(
        rawRequest('POST', `/clusters/${CLUSTER}${configmaps(GRANTED, marker)}`, [
          bearer(t.cora.token),
          'Content-Type: application/json',
          `Content-Length: ${8 * 1024 * 1024 + 1}`,
        ]),
      );
      assertRefused(gatewayRefusal(answer), 413, /larger than/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'LIM-003',
    attack: 'request headers over 16 KiB',
    expect: '431; nothing forwarded',
    run: async (t) => {
      const marker = mark('big-headers');
      const answer = await exchange(
        rawRequest('GET', `/clusters/${CLUSTER}${configmaps(GRANTED, marker)}`, [
          bearer(t.cora.token),
          `X-Pad: ${'a'.repeat(17 * 1024)}`,
        ]),
      );
      assert.equal(answer.status, 431, answer.raw.slice(0, 200));
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'LIM-004',
    attack: 'malformed JSON to the API',
    expect: '400 ERR_MALFORMED_JSON; nothing changed',
    run: async (t) => {
      const answer = await call('POST', '/api/v1/visas', t.cora.token, '{"profile": "viewer",');
      assertRefused(apiRefusal(answer), 400, /ERR_MALFORMED_JSON/);
    },
  },
  {
    id: 'LIM-005',
    attack: "a JSON body with a __proto__ key to the API (to reach the server's objects' prototype)",
    expect: '400: refused by the body parser before any handler',
    run: async (t) => {
      const answer = await call(
        'POST',
        '/api/v1/visas',
        t.cora.token,
        '{"__proto__":{"state":"approved"},"profile":"viewer"}',
      );
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.equal(({} as Record<string, unknown>).state, undefined);
    },
  },
  {
    id: 'LIM-006',
    attack: "an 8 KB attacker-chosen User-Agent, to bloat kubevisa's audit trail",
    expect: 'the request is served and recorded with the agent cut to 200 characters',
    run: async (t) => {
      const agent = `atk-agent-${'u'.repeat(8000)}`;
      const answer = await exchange(
        rawRequest('GET', `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/configmaps?limit=1`, [
          bearer(t.cora.token),
        ]).replace(`User-Agent: ${UA}`, `User-Agent: ${agent}`),
      );
      assert.equal(answer.status, 200, answer.raw.slice(0, 200));
      await eventually('the request in the audit trail', 10_000, async () => {
        const trail = await t.env.server!.store.listAudit({ newestFirst: true, limit: 100, action: 'gateway.request' });
        const recorded = trail.find((e) => e.source?.userAgent?.startsWith('atk-agent-'));
        if (recorded) assert.equal(recorded.source?.userAgent, agent.slice(0, 200));
        return recorded !== undefined;
      });
    },
  },
  {
    id: 'LIM-007',
    attack:
      'a request header named __proto__ (every kubevisa process runs with --disable-proto=throw, and Node builds request.headers by assignment)',
    expect: 'the server stays up: the gateway serves the request without that header, the API answers as usual',
    run: async (t) => {
      const marker = mark('proto-header');
      const relayed = await exchange(
        rawRequest('GET', `/clusters/${CLUSTER}${configmaps(GRANTED, marker)}`, [
          bearer(t.cora.token),
          '__proto__: {"role":"admin"}',
          '__PROTO__: x',
        ]),
      );
      assert.equal(relayed.status, 200, relayed.raw.slice(0, 300));
      const seen = await apiserverSaw(marker);
      assert.ok(seen.length > 0, 'the request reached kube-apiserver');
      const api = await exchange(rawRequest('GET', '/api/v1/me', [bearer(t.cora.token), '__proto__: x']));
      assert.equal(api.status, 200, api.raw.slice(0, 300));
      assertPrototypesClean();
    },
  },
  {
    id: 'GW-011',
    attack: "Basic credentials built from kubevisa's own cluster credential",
    expect: "401 'must be a kubevisa bearer token'; nothing forwarded",
    run: async (t) => {
      const marker = mark('basic');
      const answer = await exchange(
        rawRequest('GET', `/clusters/${CLUSTER}${configmaps(GRANTED, marker)}`, [
          `Authorization: Basic ${Buffer.from(`admin:${t.upstreamToken}`).toString('base64')}`,
        ]),
      );
      assertRefused(gatewayRefusal(answer), 401, /must be a kubevisa bearer token/);
      await assertApiserverSawNothing(marker);
    },
  },
  {
    id: 'FLOOD-001',
    attack: 'a flood of 5 000 anonymous requests from one address (to grow the audit trail and starve contractors)',
    expect:
      "each answered 401 or, past the address's refusal budget, 429 before any work; the trail grows by a handful of events; a contractor is still served",
    run: async (t) => {
      await flushGatewayAudit();
      const head = (await t.env.server!.store.getAuditHead())?.seq ?? 0;
      const flood = startFlood({
        port: t.env.serverPort,
        ca: serverCa(),
        path: `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/configmaps`,
        requests: 5000,
        connections: 4,
        from: '127.0.0.3',
      });
      const result = await flood.done;
      assert.equal(result.answered, 5000);
      assert.equal((result.statuses[401] ?? 0) + (result.statuses[429] ?? 0), 5000, JSON.stringify(result.statuses));
      assert.ok((result.statuses[429] ?? 0) > 4000, `most refused before any work: ${JSON.stringify(result.statuses)}`);
      const served = await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps?limit=1`, t.cora.token);
      assert.equal(served.status, 200, served.raw.slice(0, 200));
      await flushGatewayAudit();
      const grown = await t.env.server!.store.listAudit({ afterSeq: head, limit: 10_000 });
      const fromFlood = grown.filter((e) => e.source?.address === '127.0.0.3');
      assert.ok(fromFlood.length <= 5, `a handful of events: ${JSON.stringify(fromFlood.map((e) => e.action))}`);
    },
  },
  {
    id: 'FLOOD-002',
    attack:
      'one anonymous request from each of 1 000 addresses (as from an IPv6 /48), to grow the trail past any per-address sampling',
    expect:
      'each answered 401 (or 503 past the ceiling on unauthenticated work); the trail grows by at most 20 events in full and one gateway.refused.overall that counts all 1 000; a contractor is still served',
    run: async (t) => {
      await flushGatewayAudit();
      const head = (await t.env.server!.store.getAuditHead())?.seq ?? 0;
      const addresses = loopbackAddresses(1000);
      const result = await floodFromMany({
        port: t.env.serverPort,
        ca: serverCa(),
        path: `/clusters/${CLUSTER}/api/v1/namespaces/${GRANTED}/configmaps`,
        addresses,
      });
      assert.equal((result.statuses[401] ?? 0) + (result.statuses[503] ?? 0), 1000, JSON.stringify(result.statuses));
      const served = await gatewayGet(`/api/v1/namespaces/${GRANTED}/configmaps?limit=1`, t.cora.token);
      assert.equal(served.status, 200, served.raw.slice(0, 200));
      await flushGatewayAudit();
      const flooded = new Set(addresses);
      const grown = (await t.env.server!.store.listAudit({ afterSeq: head, limit: 10_000 })).filter(
        (e) => flooded.has(e.source?.address ?? '') || e.action === 'gateway.refused.overall',
      );
      const overall = grown.filter((e) => e.action === 'gateway.refused.overall');
      // One interval, or two if the minute's timer fired during the flood.
      assert.ok(overall.length >= 1 && overall.length <= 2, `${overall.length} overall summaries`);
      assert.ok(grown.length <= 21 * overall.length, `the trail grew by ${grown.length}`);
      assert.equal(
        overall.reduce((n, e) => n + Number(e.details.count), 0),
        1000,
      );
    },
  },
];
