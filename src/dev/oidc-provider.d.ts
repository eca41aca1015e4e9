/**
 * Types for the part of `oidc-provider` (v9, plain JavaScript) that dev-idp.ts uses. The package ships no
 * types and @types/oidc-provider is not a dependency; these declarations follow the v9 source
 * (lib/provider.js, lib/helpers/defaults.js, lib/models/grant.js) and cover only what kubevisa calls.
 * If @types/oidc-provider is ever added, delete this file.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /** What the storage adapter keeps for each model instance (token, session, grant, interaction…). */
  export interface AdapterPayload {
    [claim: string]: unknown;
    accountId?: string;
    grantId?: string;
    userCode?: string;
    uid?: string;
    jti?: string;
    consumed?: number;
  }

  /** The storage seam; one instance per model name (`Session`, `AccessToken`, `Grant`, …). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface Account {
    accountId: string;
    claims(use: string, scope: string, claims: unknown, rejected: string[]): Promise<Record<string, unknown>>;
  }

  export interface ClientModel {
    clientId: string;
    clientName?: string;
    grantTypeAllowed(grantType: string): boolean;
  }

  /** The Koa context oidc-provider passes to configuration callbacks (only what is set or read here). */
  export interface ProviderContext {
    body: unknown;
    type: string;
    status: number;
    oidc: { client?: ClientModel };
  }

  export interface ErrorOut {
    error: string;
    error_description?: string;
    [parameter: string]: unknown;
  }

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris: string[];
    grant_types: string[];
    response_types: string[];
    token_endpoint_auth_method: string;
    id_token_signed_response_alg?: string;
    application_type?: 'web' | 'native';
  }

  export interface Configuration {
    adapter?: (modelName: string) => Adapter;
    clients?: ClientMetadata[];
    claims?: Record<string, string[] | null>;
    scopes?: string[];
    conformIdTokenClaims?: boolean;
    cookies?: { keys?: string[] };
    features?: {
      devInteractions?: { enabled: boolean };
      deviceFlow?: {
        enabled: boolean;
        userCodeInputSource?: (
          ctx: ProviderContext,
          form: string,
          out: ErrorOut | undefined,
          error: Error | undefined,
        ) => Promise<void>;
        userCodeConfirmSource?: (
          ctx: ProviderContext,
          form: string,
          client: ClientModel,
          deviceInfo: unknown,
          userCode: string,
        ) => Promise<void>;
        successSource?: (ctx: ProviderContext) => Promise<void>;
      };
      rpInitiatedLogout?: { enabled: boolean };
      userinfo?: { enabled: boolean };
    };
    findAccount?: (ctx: ProviderContext, sub: string, token?: unknown) => Promise<Account | undefined>;
    interactions?: { url?: (ctx: ProviderContext, interaction: { uid: string }) => Promise<string> };
    issueRefreshToken?: (ctx: ProviderContext, client: ClientModel, grantSource: unknown) => Promise<boolean>;
    expiresWithSession?: (ctx: ProviderContext, grantSource: unknown) => Promise<boolean>;
    jwks?: { keys: Record<string, unknown>[] };
    pkce?: { required?: (ctx: ProviderContext, client: ClientModel) => boolean };
    renderError?: (ctx: ProviderContext, out: ErrorOut, error: Error) => Promise<void>;
    ttl?: Record<string, number>;
  }

  export interface Prompt {
    name: string;
    reasons: string[];
    details: {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
      [detail: string]: unknown;
    };
  }

  export interface Interaction {
    uid: string;
    prompt: Prompt;
    params: Record<string, unknown>;
    session?: { accountId?: string };
    grantId?: string;
    returnTo: string;
  }

  export interface InteractionResults {
    login?: { accountId: string };
    consent?: { grantId: string };
    error?: string;
    error_description?: string;
  }

  export interface Grant {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface GrantConstructor {
    new (properties: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    readonly Grant: GrantConstructor;
    readonly Client: { find(id: string): Promise<ClientModel | undefined> };
    /** The Koa request listener for node:http. */
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResults,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  export default Provider;
}
