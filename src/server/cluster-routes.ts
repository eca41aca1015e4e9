/**
 * The API of clusters registered at run time (cluster-registry.ts): register one (admins), every managed cluster's
 * state (staff), remove a registered one (admins). A cluster's kubeconfig goes in once, with the registration, and is
 * never sent back.
 */
import type { ServerContext } from './context.ts';
import type { ClusterRegistry } from './cluster-registry.ts';

/** Largest kubeconfig accepted, in characters: a token and a CA bundle take a few KiB. */
const MAX_KUBECONFIG_CHARS = 256 * 1024;

export function declareClusterRoutes(context: ServerContext, registry: ClusterRegistry): void {
  context.route({
    method: 'POST',
    url: '/api/v1/clusters',
    summary: "Register a cluster at run time with kubevisa's kubeconfig for it (admins); checked before it is stored",
    auth: 'admin',
    refusal: 'register clusters',
    bodyLimit: MAX_KUBECONFIG_CHARS + 4096,
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'kubeconfig'],
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 63 },
        kubeconfig: { type: 'string', minLength: 1, maxLength: MAX_KUBECONFIG_CHARS },
        directMode: { type: 'boolean' },
      },
    },
    handler: async (request, reply, caller) => {
      const body = request.body as { name: string; kubeconfig: string; directMode?: boolean };
      const added = await registry.add(caller, body);
      reply.code(201);
      return added;
    },
  });

  context.route({
    method: 'GET',
    url: '/api/v1/clusters/status',
    summary: 'Every managed cluster: where it comes from, whether it answers, its last pass, credential expiry (staff)',
    auth: 'staff',
    refusal: 'see the state of clusters',
    handler: async () => ({ items: await registry.status() }),
  });

  context.route({
    method: 'DELETE',
    url: '/api/v1/clusters/:name',
    summary: 'Remove a registered cluster (admins); force=true revokes its granting visas first',
    auth: 'admin',
    refusal: 'remove clusters',
    params: {
      type: 'object',
      required: ['name'],
      properties: { name: { type: 'string', minLength: 1, maxLength: 63 } },
    },
    querystring: {
      type: 'object',
      additionalProperties: false,
      // Query strings are text and the API validates them strictly, without coercion.
      properties: { force: { type: 'string', enum: ['true', 'false'] } },
    },
    handler: async (request, _reply, caller) => {
      const { name } = request.params as { name: string };
      const { force } = request.query as { force?: string };
      return registry.remove(caller, name, { force: force === 'true' });
    },
  });
}
