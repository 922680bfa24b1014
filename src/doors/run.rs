//! Runs reconciles for a set of services with bounded concurrency; shared by the Lambda
//! door and the CLI.

use crate::aws::ecs::ServiceInfo;
use crate::aws::AwsError;
use crate::context::Deps;
use crate::ownership::ServiceId;
use crate::reconcile::{reconcile_asked, Ask, Mode, Outcome};
use crate::spec::{TAG_HOSTNAME, TAG_STATUS};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use tracing::Instrument;

/// Services reconciled at once by one process.
pub const CONCURRENCY: usize = 4;

/// A service to reconcile, with the AWS account it lives in when known.
pub type Work = (ServiceId, Option<String>);

/// Reconciles each service (at most [`CONCURRENCY`] at a time), in input order, as
/// `asks` says (a service it does not name takes the full path), each in its cause's
/// span ([`crate::cause::Cause::span`]), so every line it logs says what caused it.
pub async fn reconcile_many(
    deps: &Deps,
    work: Vec<Work>,
    mode: Mode,
    asks: &BTreeMap<ServiceId, Ask>,
) -> Vec<Outcome> {
    let full = Ask::default();
    stream::iter(work)
        .map(|(svc, account)| {
            let ask = asks.get(&svc).unwrap_or(&full);
            let span = ask.cause.span(&svc);
            // Each account's Cloudflare requests take turns with the others' (one budget,
            // shared fairly: see `crate::cloudflare::with_tenant`).
            let tenant = svc.scope.as_ref().map(|s| s.account.clone());
            crate::cloudflare::with_tenant(tenant, async move {
                reconcile_asked(deps, &svc, mode, account.as_deref(), ask).await
            })
            .instrument(span)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// Every service in the covered clusters that is tagged for exposure or still carries a
/// status tag (so untagged leftovers are torn down).
pub async fn managed_services(deps: &Deps) -> Result<Vec<Work>, AwsError> {
    Ok(managed_service_infos(deps)
        .await?
        .into_iter()
        .map(|info| {
            let account = info.account_region().map(|(a, _)| a);
            (ServiceId::new(info.cluster, info.name), account)
        })
        .collect())
}

/// The services [`managed_services`] names, as described (with tags), in paged reads:
/// ListClusters, ListServices and DescribeServices 10 at a time.
pub async fn managed_service_infos(deps: &Deps) -> Result<Vec<ServiceInfo>, AwsError> {
    let clusters = match &deps.config.clusters {
        Some(c) => c.clone(),
        None => deps.ecs.list_clusters().await?,
    };
    let mut out = Vec::new();
    for cluster in clusters {
        out.extend(
            deps.ecs
                .list_services(&cluster)
                .await?
                .into_iter()
                .filter(|i| i.tags.contains_key(TAG_HOSTNAME) || i.tags.contains_key(TAG_STATUS)),
        );
    }
    Ok(out)
}
