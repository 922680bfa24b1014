//! A small, tolerant client for the Cloudflare v4 API: tunnels, DNS, zones and Access.
//!
//! - [`client`]: HTTP execution — base URL, Bearer auth, the `{success, errors, result,
//!   result_info}` envelope, error mapping, retries (429 with `Retry-After`, 5xx, transport)
//!   with capped exponential backoff, pagination and [`CallStats`].
//! - [`budget`]: this process's share of the install's API budget ([`Budget`]) and the
//!   limiter that delays requests to stay inside it, in fair turns between tenants
//!   ([`with_tenant`]).
//! - [`error`]: [`CfError`]; error codes are `i64` (81053 does not fit in a `u16`).
//! - [`zones`], [`dns`], [`tunnels`], [`access`]: the types and typed methods per area.
//!
//! Types ignore unknown fields and treat missing or `null` arrays and booleans as empty, so
//! a newer API does not break parsing. Secrets (API token, tunnel secret and token) are
//! [`Secret`](crate::secret::Secret)s and never appear in `Debug`, logs or errors.

pub mod access;
pub mod budget;
pub mod client;
pub mod dns;
pub mod error;
pub mod tunnels;
mod wire;
pub mod zones;

#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

pub use access::{
    AccessApp, AccessAppBody, AccessGroup, AccessPolicy, AccessPolicyBody, AppPolicy, AppQuery,
    Destination, IdentityProvider, Organization, PolicyLink,
};
pub use budget::{with_deadline, with_tenant, Budget};
pub use client::{CallStats, ClientOptions, CloudflareClient};
pub use dns::{DnsQuery, DnsRecord, DnsRecordBody};
pub use error::{ApiMessage, CfError};
pub use tunnels::{
    Connector, IngressRule, OriginAccess, OriginRequest, Tunnel, TunnelConfig, TunnelQuery,
};
pub use zones::Zone;
