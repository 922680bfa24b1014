//! What the current Cloudflare API accepts that the vendored 2024-08-06 OpenAPI document
//! rejects: a small, explicit table, one cited entry per gap. Nothing here widens the
//! document silently: `openapi.rs` refuses to load an entry that names an operation or
//! component the document lacks, or that adds a query parameter or body property the
//! document already declares (a stale entry is an error, not a no-op).
//!
//! Citations:
//! - **[go-sdk]** `cloudflare/cloudflare-go` v6.6.0 (commit `16ae7fd5`, 2026-01-15). Stainless
//!   generates it from Cloudflare's *current* OpenAPI document, so its request structs are
//!   the best evidence of what today's API declares.
//! - **[docs]** `cloudflare/cloudflare-docs`, path given.
//!
//! Only gaps that this project's client or tests actually hit are listed; other
//! post-2024 additions (`name.*` filters, …) stay rejected until someone needs them and
//! adds a cited entry.

/// A change to one operation, keyed by method and the document's path template.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addition {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// Path template exactly as in the document (under `/client/v4`).
    pub path: &'static str,
    /// What is allowed in addition.
    pub patch: Patch,
    /// Where the current API documents it.
    pub source: &'static str,
}

/// Kinds of operation-level changes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patch {
    /// A query parameter the document does not declare, with its schema (OpenAPI 3.0 JSON).
    QueryParam {
        name: &'static str,
        schema: &'static str,
    },
    /// A property at the root of the JSON request body, with its schema.
    BodyProperty {
        name: &'static str,
        schema: &'static str,
    },
    /// The document's request-body schema is wrong as a whole; this one replaces it.
    BodySchema { schema: &'static str },
}

/// A change to one component schema (`#/components/schemas/<component>`), wherever it is used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ComponentPatch {
    /// Component name.
    pub component: &'static str,
    /// Properties the document lists in `required` that requests may leave out.
    pub not_required: &'static [&'static str],
    /// Alternatives (OpenAPI 3.0 JSON) added to the component's `oneOf`, each an object
    /// with one required property the existing alternatives do not declare.
    pub add_one_of: &'static [&'static str],
    /// Where the current API documents it.
    pub source: &'static str,
}

const APPS: &str = "/accounts/{account_id}/access/apps";
const APP: &str = "/accounts/{account_id}/access/apps/{app_id}";

/// `page` / `per_page` as the current SDK declares them on Access lists (int64; the SDK
/// states no bounds, so only `>= 1` is judged).
const PAGE: &str = r#"{"type": "integer", "minimum": 1}"#;

/// `destinations` of a self-hosted application ([go-sdk]
/// `AccessApplicationNewParamsBodySelfHostedApplicationDestination`: public `{type, uri}`,
/// private `{type, cidr, hostname, l4_protocol, port_range, vnet_id}`, MCP portal
/// `{type, mcp_server_id}`).
const DESTINATIONS: &str = r#"{
  "type": "array",
  "items": {
    "type": "object",
    "properties": {
      "type": {"type": "string", "enum": ["public", "private", "via_mcp_server_portal"]},
      "uri": {"type": "string"},
      "cidr": {"type": "string"},
      "hostname": {"type": "string"},
      "l4_protocol": {"type": "string", "enum": ["tcp", "udp"]},
      "port_range": {"type": "string"},
      "vnet_id": {"type": "string"},
      "mcp_server_id": {"type": "string"}
    }
  }
}"#;

const SDK_APPS: &str = "[go-sdk] zero_trust/accessapplication.go";

const DNS_RECORDS: &str = "/zones/{zone_id}/dns_records";
const DNS_RECORD: &str = "/zones/{zone_id}/dns_records/{dns_record_id}";

/// Per-record DNS `settings` (a user may set them on a record ecs-tunnels owns, and its
/// repair must keep them).
const DNS_SETTINGS: &str = r#"{
  "type": "object",
  "properties": {
    "flatten_cname": {"type": "boolean"},
    "ipv4_only": {"type": "boolean"},
    "ipv6_only": {"type": "boolean"}
  }
}"#;

const DNS_SETTINGS_SOURCE: &str = "[docs] src/content/docs/dns/cname-flattening/\
    set-up-cname-flattening.mdx (\"specify the following for each CNAME record in the request \
    body: \"settings\": { \"flatten_cname\": true}\"); Pulumi/Terraform cloudflare v6 \
    DnsRecord.settings {ipv4_only, ipv6_only}, generated from the current API schema";

/// Operation-level additions.
pub(crate) const ADDITIONS: &[Addition] = &[
    // Access application list filters (the 2024 document declares no query parameter).
    Addition {
        method: "GET",
        path: APPS,
        patch: Patch::QueryParam {
            name: "name",
            schema: r#"{"type": "string"}"#,
        },
        source: "[go-sdk] zero_trust/accessapplication.go AccessApplicationListParams.Name (query:\"name\")",
    },
    Addition {
        method: "GET",
        path: APPS,
        patch: Patch::QueryParam {
            name: "domain",
            schema: r#"{"type": "string"}"#,
        },
        source: "[go-sdk] zero_trust/accessapplication.go AccessApplicationListParams.Domain (query:\"domain\")",
    },
    Addition {
        method: "GET",
        path: APPS,
        patch: Patch::QueryParam {
            name: "exact",
            schema: r#"{"type": "boolean"}"#,
        },
        source: "[go-sdk] zero_trust/accessapplication.go AccessApplicationListParams.Exact (query:\"exact\", bool)",
    },
    Addition {
        method: "GET",
        path: APPS,
        patch: Patch::QueryParam {
            name: "page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accessapplication.go AccessApplicationListParams.Page (query:\"page\", int64)",
    },
    Addition {
        method: "GET",
        path: APPS,
        patch: Patch::QueryParam {
            name: "per_page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accessapplication.go AccessApplicationListParams.PerPage (query:\"per_page\", int64)",
    },
    // Pagination of the other Access lists.
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/policies",
        patch: Patch::QueryParam {
            name: "page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accesspolicy.go AccessPolicyListParams.Page (query:\"page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/policies",
        patch: Patch::QueryParam {
            name: "per_page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accesspolicy.go AccessPolicyListParams.PerPage (query:\"per_page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/groups",
        patch: Patch::QueryParam {
            name: "page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accessgroup.go AccessGroupListParams.Page (query:\"page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/groups",
        patch: Patch::QueryParam {
            name: "per_page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accessgroup.go AccessGroupListParams.PerPage (query:\"per_page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/identity_providers",
        patch: Patch::QueryParam {
            name: "page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/identityprovider.go IdentityProviderListParams.Page (query:\"page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/identity_providers",
        patch: Patch::QueryParam {
            name: "per_page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/identityprovider.go IdentityProviderListParams.PerPage (query:\"per_page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/tags",
        patch: Patch::QueryParam {
            name: "page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accesstag.go AccessTagListParams.Page (query:\"page\", int64)",
    },
    Addition {
        method: "GET",
        path: "/accounts/{account_id}/access/tags",
        patch: Patch::QueryParam {
            name: "per_page",
            schema: PAGE,
        },
        source: "[go-sdk] zero_trust/accesstag.go AccessTagListParams.PerPage (query:\"per_page\", int64)",
    },
    // Access application `destinations` (supersedes `self_hosted_domains`).
    Addition {
        method: "POST",
        path: APPS,
        patch: Patch::BodyProperty {
            name: "destinations",
            schema: DESTINATIONS,
        },
        source: SDK_APPS,
    },
    Addition {
        method: "PUT",
        path: APP,
        patch: Patch::BodyProperty {
            name: "destinations",
            schema: DESTINATIONS,
        },
        source: SDK_APPS,
    },
    // DNS record `settings` on create, full update and partial update.
    Addition {
        method: "POST",
        path: DNS_RECORDS,
        patch: Patch::BodyProperty {
            name: "settings",
            schema: DNS_SETTINGS,
        },
        source: DNS_SETTINGS_SOURCE,
    },
    Addition {
        method: "PUT",
        path: DNS_RECORD,
        patch: Patch::BodyProperty {
            name: "settings",
            schema: DNS_SETTINGS,
        },
        source: DNS_SETTINGS_SOURCE,
    },
    Addition {
        method: "PATCH",
        path: DNS_RECORD,
        patch: Patch::BodyProperty {
            name: "settings",
            schema: DNS_SETTINGS,
        },
        source: DNS_SETTINGS_SOURCE,
    },
    // The 2024 document gives the tag-create body as a bare string.
    Addition {
        method: "POST",
        path: "/accounts/{account_id}/access/tags",
        patch: Patch::BodySchema {
            schema: r#"{"type": "object", "properties": {"name": {"type": "string"}}}"#,
        },
        source: "[go-sdk] zero_trust/accesstag.go AccessTagNewParams {Name `json:\"name\"`}",
    },
];

/// Component-level changes.
pub(crate) const COMPONENT_PATCHES: &[ComponentPatch] = &[
    ComponentPatch {
        // The document requires `id` (with the readOnly `proxiable`, `created_on`,
        // `modified_on`, which the validator already drops) in every DNS record body,
        // creates included; `id` is assigned by Cloudflare and not marked readOnly.
        component: "dns-records_dns-record",
        not_required: &["id"],
        add_one_of: &[],
        source: "[go-sdk] dns/record.go CNAMERecordParam (name, ttl, type required; no id \
                 field); [docs] src/content/docs/cloudflare-one/connections/connect-networks/\
                 get-started/create-remote-tunnel-api.mdx (POST dns_records without id)",
    },
    ComponentPatch {
        // The document (and the SDK) mark `hostname` required on every ingress rule, but the
        // last rule must be a catch-all without one.
        component: "tunnel_ingressRule",
        not_required: &["hostname"],
        add_one_of: &[],
        source: "[docs] src/content/docs/cloudflare-one/connections/connect-networks/get-started/\
             create-remote-tunnel-api.mdx (PUT .../configurations example ends with \
             {\"service\": \"http_status:404\"}; \"Your ingress rules must include a catch-all \
             rule at the end\")",
    },
    ComponentPatch {
        // Access rules: the 2024 list of rule kinds lacks `login_method` (allow users who
        // signed in through one identity provider).
        component: "access_rule",
        not_required: &[],
        add_one_of: &[
            r#"{"type": "object", "required": ["login_method"], "properties": {
            "login_method": {"type": "object", "required": ["id"],
                             "properties": {"id": {"type": "string"}}}}}"#,
        ],
        source:
            "[go-sdk] zero_trust/accessapplicationpolicy.go AccessRuleAccessLoginMethodRuleParam \
                 {LoginMethod {ID `json:\"id,required\"`} `json:\"login_method,required\"`}",
    },
];
