/**
 * The SCIM discovery documents (RFC 7643 §5–7, RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas
 * for the core User (with the enterprise extension) and Group. Identity providers read these to learn what
 * kubevisa supports: PATCH, filters, sorting, search and bulk yes; password changes and /Me no.
 */
export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const ENTERPRISE_USER_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
export const LIST_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const PATCH_OP_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const SEARCH_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
export const BULK_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
export const BULK_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkResponse';
const SERVICE_PROVIDER_CONFIG_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig';
const RESOURCE_TYPE_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType';
const SCHEMA_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Schema';

/** Largest page a list answers with, whatever `count` asks for (ServiceProviderConfig filter.maxResults). */
export const DEFAULT_MAX_RESULTS = 200;

type AttributeType = 'string' | 'boolean' | 'complex' | 'reference' | 'dateTime';
export interface Attribute {
  name: string;
  type: AttributeType;
  multiValued: boolean;
  description: string;
  required: boolean;
  caseExact: boolean;
  mutability: 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
  returned: 'always' | 'never' | 'default' | 'request';
  uniqueness: 'none' | 'server' | 'global';
  subAttributes?: Attribute[];
  referenceTypes?: string[];
}

function attribute(
  name: string,
  type: AttributeType,
  description: string,
  options: Partial<Omit<Attribute, 'name' | 'type' | 'description'>> = {},
): Attribute {
  return {
    name,
    type,
    multiValued: false,
    description,
    required: false,
    caseExact: false,
    mutability: 'readWrite',
    returned: 'default',
    uniqueness: 'none',
    ...options,
  };
}

const multiValuedString = (name: string, description: string) =>
  attribute(name, 'complex', description, {
    multiValued: true,
    subAttributes: [
      attribute('value', 'string', `The ${name} value.`),
      attribute('display', 'string', 'A human-readable name.'),
      attribute('type', 'string', "A label such as 'work' or 'home'."),
      attribute('primary', 'boolean', 'The primary value.'),
    ],
  });

const USER_ATTRIBUTES: Attribute[] = [
  attribute('userName', 'string', 'Unique identifier for the user at the IdP, typically the login email.', {
    required: true,
    uniqueness: 'server',
  }),
  attribute('name', 'complex', "The user's name.", {
    subAttributes: ['formatted', 'familyName', 'givenName', 'middleName', 'honorificPrefix', 'honorificSuffix'].map(
      (part) => attribute(part, 'string', `The ${part} part of the name.`),
    ),
  }),
  ...['displayName', 'nickName', 'title', 'userType', 'preferredLanguage', 'locale', 'timezone'].map((name) =>
    attribute(name, 'string', `The user's ${name}.`),
  ),
  attribute('profileUrl', 'reference', "A URI of the user's online profile.", { referenceTypes: ['external'] }),
  attribute(
    'active',
    'boolean',
    'Whether the user may use kubevisa. false offboards the person at once (visas revoked, identities deleted).',
  ),
  multiValuedString('emails', 'Email addresses; the primary one (or userName) links the user to a kubevisa person.'),
  multiValuedString('phoneNumbers', 'Phone numbers.'),
  attribute('groups', 'complex', 'Groups the user belongs to (set through Group resources).', {
    multiValued: true,
    mutability: 'readOnly',
    subAttributes: [
      attribute('value', 'string', 'The group id.', { mutability: 'readOnly', caseExact: true }),
      attribute('$ref', 'reference', 'The group URI.', { mutability: 'readOnly', referenceTypes: ['Group'] }),
      attribute('display', 'string', "The group's displayName.", { mutability: 'readOnly' }),
    ],
  }),
];

const ENTERPRISE_ATTRIBUTES: Attribute[] = [
  ...['employeeNumber', 'costCenter', 'organization', 'division', 'department'].map((name) =>
    attribute(name, 'string', `The ${name}.`),
  ),
  attribute('manager', 'complex', "The user's manager.", {
    subAttributes: [
      attribute('value', 'string', "The manager's id."),
      attribute('$ref', 'reference', "The manager's URI.", { referenceTypes: ['User'] }),
      attribute('displayName', 'string', "The manager's displayName.", { mutability: 'readOnly' }),
    ],
  }),
];

const GROUP_ATTRIBUTES: Attribute[] = [
  attribute('displayName', 'string', 'The group name; group mappings in the kubevisa config name groups by it.', {
    required: true,
    uniqueness: 'server',
  }),
  attribute('members', 'complex', 'The member users.', {
    multiValued: true,
    subAttributes: [
      attribute('value', 'string', 'The member id.', { mutability: 'immutable', caseExact: true }),
      attribute('$ref', 'reference', 'The member URI.', { mutability: 'immutable', referenceTypes: ['User'] }),
      attribute('display', 'string', "The member's name.", { mutability: 'readOnly' }),
      attribute('type', 'string', "Only 'User' is supported.", { mutability: 'immutable' }),
    ],
  }),
];

export type ResourceKind = 'User' | 'Group';

/** Attributes every resource has (RFC 7643 §3.1), beside its schema's own. */
const COMMON_PATHS = [
  'id',
  'externalid',
  'schemas',
  'meta',
  ...['created', 'lastmodified', 'resourcetype', 'location', 'version'].map((m) => `meta.${m}`),
];

function pathsOf(attributes: Attribute[], prefix: string): [string, Attribute][] {
  return attributes.flatMap((a) => {
    const path = `${prefix}${a.name.toLowerCase()}`;
    return [[path, a] as [string, Attribute], ...pathsOf(a.subAttributes ?? [], `${path}.`)];
  });
}

const ATTRIBUTES_BY_KIND: Record<ResourceKind, ReadonlyMap<string, Attribute>> = {
  User: new Map([
    ...pathsOf(USER_ATTRIBUTES, ''),
    ...pathsOf(ENTERPRISE_ATTRIBUTES, `${ENTERPRISE_USER_SCHEMA.toLowerCase()}:`),
  ]),
  Group: new Map(pathsOf(GROUP_ATTRIBUTES, '')),
};

/**
 * The attribute a lower-cased path without the core schema URN names (`name.givenname`, `emails.value`,
 * `urn:…:enterprise:2.0:user:department`), in any of `kinds`: what filters and sortBy may use. `common` for the
 * attributes every resource has (id, externalId, meta.*), undefined for an unknown one.
 */
export function attributeAt(path: string, kinds: readonly ResourceKind[]): Attribute | 'common' | undefined {
  if (COMMON_PATHS.includes(path)) return 'common';
  for (const kind of kinds) {
    const found = ATTRIBUTES_BY_KIND[kind].get(path);
    if (found) return found;
  }
  return undefined;
}

export function serviceProviderConfig(
  baseUrl: string,
  maxResults: number,
  limits: { bulkMaxOperations: number; bulkMaxPayloadBytes: number },
) {
  return {
    schemas: [SERVICE_PROVIDER_CONFIG_SCHEMA],
    documentationUri: 'https://github.com/kubevisa/kubevisa/blob/main/docs/identity.md',
    patch: { supported: true },
    bulk: { supported: true, maxOperations: limits.bulkMaxOperations, maxPayloadSize: limits.bulkMaxPayloadBytes },
    filter: { supported: true, maxResults },
    changePassword: { supported: false },
    sort: { supported: true },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'Bearer token',
        description:
          "A per-IdP token created with 'kubevisa scim token create NAME', sent as 'Authorization: Bearer TOKEN'. It authenticates the identity provider, not a User, so /Me answers 501 (RFC 7644 §3.11).",
        primary: true,
      },
    ],
    meta: {
      resourceType: 'ServiceProviderConfig',
      location: `${baseUrl}/ServiceProviderConfig`,
    },
  };
}

export function resourceTypes(baseUrl: string) {
  return [
    {
      schemas: [RESOURCE_TYPE_SCHEMA],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'A person who may use kubevisa (contractor or employee).',
      schema: USER_SCHEMA,
      schemaExtensions: [{ schema: ENTERPRISE_USER_SCHEMA, required: false }],
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/User` },
    },
    {
      schemas: [RESOURCE_TYPE_SCHEMA],
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'A group; kubevisa maps groups to engagements and roles.',
      schema: GROUP_SCHEMA,
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/Group` },
    },
  ];
}

export function schemas(baseUrl: string) {
  const schema = (id: string, name: string, description: string, attributes: Attribute[]) => ({
    schemas: [SCHEMA_SCHEMA],
    id,
    name,
    description,
    attributes,
    meta: { resourceType: 'Schema', location: `${baseUrl}/Schemas/${id}` },
  });
  return [
    schema(USER_SCHEMA, 'User', 'User account', USER_ATTRIBUTES),
    schema(ENTERPRISE_USER_SCHEMA, 'EnterpriseUser', 'Enterprise user', ENTERPRISE_ATTRIBUTES),
    schema(GROUP_SCHEMA, 'Group', 'Group', GROUP_ATTRIBUTES),
  ];
}
