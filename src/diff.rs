//! The plan: a pure function from (target, observed) to the changes that make them
//! agree. No I/O, deterministic. Objects that are not ours are never planned for: they
//! become conflicts, and a plan with conflicts changes nothing.

use crate::cloudflare::{
    AccessApp, AccessAppBody, AccessPolicy, AccessPolicyBody, Destination, DnsRecordBody,
    PolicyLink,
};
use crate::model::{render_config, tunnel_cname, Observed, PlanContext, Target};
use crate::normalise::{hostname, same_host, AppView, ConfigView, PolicyView};
use serde::Serialize;

/// One change. Changes that need an id not known yet (a tunnel or an Access app about to
/// be created) get it from earlier changes when applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Create the tunnel with its deterministic name.
    CreateTunnel {
        /// Tunnel name.
        name: String,
    },
    /// Create the service's own reusable allow policy.
    CreatePolicy {
        /// Policy body.
        #[serde(skip)]
        body: AccessPolicyBody,
        /// Policy name.
        name: String,
    },
    /// Put the service's own policy back to what the tags say.
    UpdatePolicy {
        /// Policy id.
        id: String,
        /// Policy body.
        #[serde(skip)]
        body: AccessPolicyBody,
    },
    /// Create the Access application (before any DNS record).
    CreateApp {
        /// Body; the own policy is linked first when applied.
        #[serde(skip)]
        body: AccessAppBody,
        /// App name.
        name: String,
    },
    /// Put the Access application back to what the tags say.
    UpdateApp {
        /// App id.
        id: String,
        /// Body; the own policy is linked first when applied.
        #[serde(skip)]
        body: AccessAppBody,
    },
    /// Replace the tunnel's ingress configuration.
    PutConfig {
        /// Hostnames routed.
        hostnames: Vec<String>,
    },
    /// Store the tunnel token (create or overwrite the parameter).
    WriteToken {
        /// The parameter exists and is overwritten.
        overwrite: bool,
    },
    /// Create the proxied CNAME.
    CreateDns {
        /// Zone id.
        zone_id: String,
        /// Hostname.
        name: String,
    },
    /// Point our record back at the tunnel.
    UpdateDns {
        /// Zone id.
        zone_id: String,
        /// Record id.
        id: String,
        /// Hostname.
        name: String,
    },
    /// Delete one of our DNS records.
    DeleteDns {
        /// Zone id.
        zone_id: String,
        /// Record id.
        id: String,
        /// Hostname.
        name: String,
    },
    /// Delete our Access application.
    DeleteApp {
        /// App id.
        id: String,
    },
    /// Delete one of our policies.
    DeletePolicy {
        /// Policy id.
        id: String,
    },
    /// Revoke the tunnel's secret, drop its connections and delete it.
    DeleteTunnel {
        /// Tunnel id.
        id: String,
    },
    /// Delete the token parameter.
    DeleteToken,
    /// Record on the token which service runs with it (a custom resource's
    /// `ServiceArn`; `None`: remove the record), so a rotation redeploys that one.
    RecordRedeployTarget {
        /// `<cluster>/<service>`.
        service: Option<String>,
    },
    /// Record on a custom resource's token how often it is rotated, so the rotation
    /// schedule finds it without CloudFormation.
    RecordRotationPeriod {
        /// The period, e.g. `30days`.
        every: String,
    },
    /// Give the token secret its rotation schedule (Secrets Manager).
    ScheduleRotation {
        /// Schedule expression, e.g. `rate(30 days)`.
        expression: String,
    },
    /// Start a new deployment so tasks read the new token.
    Redeploy,
    /// The service's tasks already read the current token (a new token nobody ran with
    /// before, or a deployment since it was written): clear the mark that owes a redeploy.
    ClearRedeployMark,
    /// A rotation is in progress and the stored token was not compared with the one
    /// Cloudflare serves (a bulk view, such as the sweep's): a full reconcile compares
    /// it, and repairs it if stale. Nothing to apply itself.
    VerifyToken,
    /// Finish an interrupted rotation whose run is over (its mark is older than the
    /// lease): record it, and for a compromised token drop every connection (rotating
    /// first if the secret never changed).
    FinishRotation {
        /// Why the rotation started (`compromised` also drops every connection).
        reason: String,
        /// The secret did change (the stored token had to be repaired).
        rotated: bool,
    },
}

impl Change {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::CreateTunnel { .. } => "create_tunnel",
            Change::CreatePolicy { .. } => "create_policy",
            Change::UpdatePolicy { .. } => "update_policy",
            Change::CreateApp { .. } => "create_app",
            Change::UpdateApp { .. } => "update_app",
            Change::PutConfig { .. } => "put_config",
            Change::WriteToken { .. } => "write_token",
            Change::CreateDns { .. } => "create_dns",
            Change::UpdateDns { .. } => "update_dns",
            Change::DeleteDns { .. } => "delete_dns",
            Change::DeleteApp { .. } => "delete_app",
            Change::DeletePolicy { .. } => "delete_policy",
            Change::DeleteTunnel { .. } => "delete_tunnel",
            Change::DeleteToken => "delete_token",
            Change::RecordRedeployTarget { .. } => "record_redeploy_target",
            Change::RecordRotationPeriod { .. } => "record_rotation_period",
            Change::ScheduleRotation { .. } => "schedule_rotation",
            Change::Redeploy => "redeploy",
            Change::ClearRedeployMark => "clear_redeploy_mark",
            Change::VerifyToken => "verify_token",
            Change::FinishRotation { .. } => "finish_rotation",
        }
    }
}

/// The changes for one service, or the conflicts that block it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Changes, in the order they are listed (apply groups them into safe phases).
    pub changes: Vec<Change>,
    /// Objects in the way that are not ours; when non-empty, `changes` is empty.
    pub conflicts: Vec<String>,
    /// What only a person can do (it blocks nothing): e.g. start a deployment of a
    /// service whose deployment controller ecs-tunnels cannot drive.
    pub notices: Vec<String>,
    /// Our reusable policies that applications we do not own still use: detached from
    /// ours and kept, not deleted (a delete would fail on every run). Reported, never
    /// an error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptPolicy>,
    /// DNS records held back until cloudflared connects (`ECS_TUNNELS_PUBLISH=connected`
    /// and the tunnel has no connection): a hostname goes live only when the tunnel can
    /// serve it. Only records not yet made are held; a live record is never withdrawn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Change>,
}

/// One of our reusable policies kept because other applications use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeptPolicy {
    /// Policy id.
    pub id: String,
    /// Policy name.
    pub name: String,
    /// Names of the applications (not ours) that use it, when they were listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// How many applications other than our own `app` link `policy` (from the policy's
/// `app_count`; 0 when Cloudflare did not report it).
fn other_users(policy: &AccessPolicy, app: Option<&AccessApp>) -> u64 {
    let ours = app.is_some_and(|a| a.policies.iter().any(|l| l.id == policy.id));
    policy
        .app_count
        .unwrap_or(0)
        .saturating_sub(u64::from(ours))
}

/// Names of the applications other than `our_app` (by name) that link `policy_id`.
pub fn other_apps_using(apps: &[AccessApp], our_app: &str, policy_id: &str) -> Vec<String> {
    apps.iter()
        .filter(|a| a.name != our_app && a.policies.iter().any(|p| p.id == policy_id))
        .map(|a| a.name.clone())
        .collect()
}

/// Splits the policies we would delete into those to delete and those other
/// applications still use (kept).
fn delete_or_keep<'a>(
    policies: impl Iterator<Item = &'a AccessPolicy>,
    our_app: Option<&AccessApp>,
    changes: &mut Vec<Change>,
    kept: &mut Vec<KeptPolicy>,
) {
    for p in policies {
        if other_users(p, our_app) > 0 {
            kept.push(KeptPolicy {
                id: p.id.clone(),
                name: p.name.clone(),
                used_by: vec![],
            });
        } else {
            changes.push(Change::DeletePolicy { id: p.id.clone() });
        }
    }
}

impl Plan {
    /// Nothing to do, nothing in the way and nothing owed by a person.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.conflicts.is_empty() && self.notices.is_empty()
    }
}

/// The app body a target asks for, with `own_policy` linked first when present.
pub fn desired_app_body(
    ctx: &PlanContext,
    target: &Target,
    own_policy: Option<&str>,
) -> Option<AccessAppBody> {
    let access = target.access.as_ref()?;
    let mut ids: Vec<&str> = own_policy.into_iter().collect();
    ids.extend(access.extra_policy_ids.iter().map(String::as_str));
    Some(AccessAppBody {
        name: ctx.owner.access_app_name(&ctx.svc),
        app_type: "self_hosted".to_string(),
        domain: target
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default(),
        destinations: target
            .hosts
            .iter()
            .map(|h| Destination {
                dest_type: "public".to_string(),
                uri: h.name.clone(),
            })
            .collect(),
        session_duration: access.session_duration.clone(),
        allowed_idps: access.idp_ids.clone(),
        auto_redirect_to_identity: access.idp_ids.len() == 1,
        app_launcher_visible: false,
        tags: vec![ctx.owner.access_tag()],
        policies: ids
            .iter()
            .enumerate()
            .map(|(i, id)| PolicyLink {
                id: id.to_string(),
                precedence: i as i64 + 1,
            })
            .collect(),
    })
}

/// The service's own allow policy body, if it has own rules.
pub fn desired_policy_body(ctx: &PlanContext, target: &Target) -> Option<AccessPolicyBody> {
    let access = target.access.as_ref()?;
    (!access.own_rules.is_empty()).then(|| AccessPolicyBody {
        name: ctx.owner.policy_name(&ctx.svc),
        decision: "allow".to_string(),
        include: access.own_rules.clone(),
        exclude: vec![],
        require: vec![],
    })
}

/// The DNS record body for a hostname pointing at a tunnel.
pub fn desired_record(ctx: &PlanContext, hostname: &str, tunnel_id: &str) -> DnsRecordBody {
    DnsRecordBody {
        record_type: "CNAME".to_string(),
        name: hostname.to_string(),
        content: tunnel_cname(tunnel_id),
        proxied: true,
        ttl: 1,
        comment: Some(ctx.owner.dns_comment(&ctx.svc)),
    }
}

fn app_matches(app: &AccessApp, body: &AccessAppBody) -> bool {
    AppView::of(app) == AppView::of_body(body) && body.tags.iter().all(|t| app.tags.contains(t))
}

/// Plans the changes that bring `observed` to `target` (`None`: tear everything down).
pub fn diff(ctx: &PlanContext, target: Option<&Target>, observed: &Observed) -> Plan {
    match target {
        Some(t) => plan_present(ctx, t, observed),
        None => plan_absent(ctx, observed),
    }
}

fn our_records<'a>(
    ctx: &PlanContext,
    observed: &'a Observed,
) -> impl Iterator<Item = &'a crate::model::ObservedRecord> {
    let marker = ctx.owner.dns_comment(&ctx.svc);
    observed
        .records
        .iter()
        .filter(move |r| r.record.comment.as_deref() == Some(marker.as_str()))
}

fn plan_absent(ctx: &PlanContext, observed: &Observed) -> Plan {
    let mut changes = Vec::new();
    for r in our_records(ctx, observed) {
        changes.push(Change::DeleteDns {
            zone_id: r.zone_id.clone(),
            id: r.record.id.clone(),
            name: r.record.name.clone(),
        });
    }
    let our_app = observed
        .app
        .as_ref()
        .filter(|a| ctx.owner.owns_access_app(&a.name, &a.tags));
    if let Some(app) = our_app {
        changes.push(Change::DeleteApp { id: app.id.clone() });
    }
    let mut kept = Vec::new();
    delete_or_keep(observed.policies.iter(), our_app, &mut changes, &mut kept);
    if let Some(t) = &observed.tunnel {
        changes.push(Change::DeleteTunnel { id: t.id.clone() });
    }
    if observed.token.as_ref().is_some_and(|t| t.owned) {
        changes.push(Change::DeleteToken);
    }
    Plan {
        changes,
        kept,
        ..Default::default()
    }
}

fn plan_present(ctx: &PlanContext, target: &Target, observed: &Observed) -> Plan {
    let mut conflicts = Vec::new();
    let mut changes = Vec::new();
    let marker = ctx.owner.dns_comment(&ctx.svc);
    let tunnel_id = observed.tunnel.as_ref().map(|t| t.id.as_str());

    // DNS records: ours that no longer belong go first (cutting routes is always safe).
    for r in our_records(ctx, observed) {
        if !target
            .hosts
            .iter()
            .any(|h| same_host(&h.name, &r.record.name))
        {
            changes.push(Change::DeleteDns {
                zone_id: r.zone_id.clone(),
                id: r.record.id.clone(),
                name: r.record.name.clone(),
            });
        }
    }

    // Tunnel.
    if observed.tunnel.is_none() {
        changes.push(Change::CreateTunnel {
            name: ctx.owner.tunnel_name(&ctx.svc),
        });
    }

    // Access: our app must be ours; apps of others at our hostnames block us.
    let our_app = match &observed.app {
        Some(app) if ctx.owner.owns_access_app(&app.name, &app.tags) => Some(app),
        Some(app) => {
            conflicts.push(format!(
                "an Access application named {:?} exists but does not carry the ecs-tunnels tag {:?}: rename or delete it",
                app.name,
                ctx.owner.access_tag()
            ));
            None
        }
        None => None,
    };
    for app in &observed.apps_at_hosts {
        if our_app.is_some_and(|a| a.id == app.id) {
            continue;
        }
        let hosts: Vec<&str> = std::iter::once(app.domain.as_str())
            .chain(app.destinations.iter().map(|d| d.uri.as_str()))
            .collect();
        for h in &target.hosts {
            if hosts.iter().any(|x| same_host(x, &h.name)) {
                conflicts.push(format!(
                    "hostname {} is already protected by the Access application {:?}, which ecs-tunnels does not own: remove the hostname from that application or choose another hostname",
                    h.name, app.name
                ));
            }
        }
    }

    // Own policy: keep the one the app links (or the first), delete duplicates.
    let wanted_policy = desired_policy_body(ctx, target);
    let linked = |id: &str| our_app.is_some_and(|a| a.policies.iter().any(|p| p.id == id));
    let keep = observed
        .policies
        .iter()
        .find(|p| linked(&p.id))
        .or(observed.policies.first())
        .filter(|_| wanted_policy.is_some());
    let mut late_deletes = Vec::new();
    let mut kept = Vec::new();
    delete_or_keep(
        observed
            .policies
            .iter()
            .filter(|p| keep.is_none_or(|k| k.id != p.id)),
        our_app,
        &mut late_deletes,
        &mut kept,
    );
    if let Some(body) = &wanted_policy {
        match keep {
            None => changes.push(Change::CreatePolicy {
                name: body.name.clone(),
                body: body.clone(),
            }),
            Some(p) => {
                if PolicyView::of(p) != PolicyView::of_body(body) {
                    changes.push(Change::UpdatePolicy {
                        id: p.id.clone(),
                        body: body.clone(),
                    });
                }
            }
        }
    }

    // Access application.
    let aud = match (
        desired_app_body(ctx, target, keep.map(|p| p.id.as_str())),
        our_app,
    ) {
        (Some(body), None) => {
            changes.push(Change::CreateApp {
                name: body.name.clone(),
                body,
            });
            None
        }
        (Some(body), Some(app)) => {
            if keep.is_none() && wanted_policy.is_some() || !app_matches(app, &body) {
                changes.push(Change::UpdateApp {
                    id: app.id.clone(),
                    body,
                });
            }
            Some(app.aud.clone())
        }
        (None, Some(app)) => {
            late_deletes.insert(0, Change::DeleteApp { id: app.id.clone() });
            None
        }
        (None, None) => None,
    };

    // Config: needs the tunnel and (with Access) the app's audience tag.
    let fresh_app = target.access.is_some() && aud.is_none();
    let wanted_config = ConfigView::of(&render_config(target, &ctx.team_name, aud.as_deref()));
    let config_ok = !fresh_app
        && tunnel_id.is_some()
        && observed
            .config
            .as_ref()
            .is_some_and(|c| ConfigView::of(c) == wanted_config);
    if !config_ok {
        changes.push(Change::PutConfig {
            hostnames: target.hosts.iter().map(|h| h.name.clone()).collect(),
        });
    }

    // Token.
    let token_ok = match (&observed.token, tunnel_id) {
        (Some(t), Some(id)) => {
            t.tunnel_id.as_deref() == Some(id)
                && t.account.as_deref() == Some(ctx.account_id.as_str())
                && t.matches_cloudflare != Some(false)
        }
        _ => false,
    };
    match &observed.token {
        Some(t) if !t.owned => conflicts.push(
            "the token parameter exists but is not tagged as managed by this ecs-tunnels install: delete it (ecs-tunnels creates it) or tag it ecs-tunnels:owner=<owner>".to_string(),
        ),
        _ => {}
    }
    if !token_ok {
        changes.push(Change::WriteToken {
            overwrite: observed.token.is_some(),
        });
    }
    if let Some(t) = observed.token.as_ref().filter(|t| t.owned) {
        let wanted = ctx
            .redeploy
            .as_ref()
            .filter(|r| r.service != ctx.svc)
            .map(|r| r.service.key());
        if t.redeploys != wanted {
            changes.push(Change::RecordRedeployTarget { service: wanted });
        }
    }
    if crate::doors::custom_resource::is_resource_key(&ctx.svc) {
        let recorded = observed.token.as_ref().map(|t| t.rotate_every);
        // Planned with the token's first write too: the change is applied after it.
        if recorded.is_none_or(|r| r != Some(target.rotate_every)) {
            changes.push(Change::RecordRotationPeriod {
                every: humantime::format_duration(target.rotate_every).to_string(),
            });
        }
    }
    if let Some(function) = &ctx.rotation_function {
        let expression = crate::aws::token_store::rotation_expression(target.rotate_every);
        let scheduled = observed
            .token
            .as_ref()
            .filter(|t| t.owned)
            .and_then(|t| t.rotation_schedule.as_ref())
            .is_some_and(|s| s.is(function, &expression));
        if !scheduled {
            changes.push(Change::ScheduleRotation { expression });
        }
    }

    // DNS records for each hostname, after everything above. A record not made yet waits
    // for the tunnel's first connection (unless the install publishes immediately).
    let gated = ctx.publish == crate::publish::PublishMode::Connected
        && !observed.tunnel.as_ref().is_some_and(|t| t.is_connected());
    let mut held = Vec::new();
    for h in &target.hosts {
        let at_name: Vec<_> = observed
            .records
            .iter()
            .filter(|r| r.zone_id == h.zone_id && same_host(&r.record.name, &h.name))
            .filter(|r| matches!(r.record.record_type.as_str(), "CNAME" | "A" | "AAAA"))
            .collect();
        let ours = at_name
            .iter()
            .find(|r| r.record.comment.as_deref() == Some(marker.as_str()));
        let foreign = at_name
            .iter()
            .find(|r| r.record.comment.as_deref() != Some(marker.as_str()));
        if let Some(f) = foreign {
            let whose = if ctx.owner.owns_dns_comment(f.record.comment.as_deref()) {
                format!(
                    "another service managed by ecs-tunnels ({})",
                    f.record.comment.as_deref().unwrap_or("")
                )
            } else {
                "a record ecs-tunnels does not own".to_string()
            };
            conflicts.push(format!(
                "hostname {} already has a {} record ({}) from {whose}: remove that record or choose another hostname",
                h.name, f.record.record_type, f.record.content
            ));
            continue;
        }
        match ours {
            None => {
                let create = Change::CreateDns {
                    zone_id: h.zone_id.clone(),
                    name: h.name.clone(),
                };
                if gated {
                    held.push(create);
                } else {
                    changes.push(create);
                }
            }
            Some(r) => {
                let good = r.record.record_type.eq_ignore_ascii_case("CNAME")
                    && r.record.proxied
                    && tunnel_id.is_some_and(|id| {
                        hostname(&r.record.content) == hostname(&tunnel_cname(id))
                    });
                if !good {
                    changes.push(Change::UpdateDns {
                        zone_id: h.zone_id.clone(),
                        id: r.record.id.clone(),
                        name: h.name.clone(),
                    });
                }
            }
        }
    }

    changes.extend(late_deletes);
    let mut notices = Vec::new();
    if let Some(c) = redeploy_change(ctx, observed, &changes, &mut notices) {
        changes.push(c);
    }
    if let Some(t) = observed.token.as_ref().filter(|t| t.owned) {
        // A live mark belongs to a run that may be between its mark and its PATCH:
        // finishing it here could start a second rotation. It is left to that run, and
        // to the first run after its lease.
        match &t.rotation {
            Some(mark) if !mark.live => changes.push(Change::FinishRotation {
                reason: mark.reason.clone(),
                rotated: t.matches_cloudflare == Some(false),
            }),
            Some(_) if t.matches_cloudflare.is_none() => changes.push(Change::VerifyToken),
            _ => {}
        }
    }
    if conflicts.is_empty() {
        Plan {
            changes,
            conflicts,
            notices,
            kept,
            held,
        }
    } else {
        Plan {
            conflicts,
            ..Default::default()
        }
    }
}

/// A token written now, or earlier and not yet deployed, owes the service new tasks.
/// ECS-deployed services get a new deployment. A service deployed by CodeDeploy or an
/// external tool cannot be redeployed by ecs-tunnels: a brand-new token needs none (the
/// tasks that could not start without it start with it), a deployment created since the
/// token was written settles it, and otherwise its owner is told what to do.
fn redeploy_change(
    ctx: &PlanContext,
    observed: &Observed,
    changes: &[Change],
    notices: &mut Vec<String>,
) -> Option<Change> {
    let written_now = changes.iter().find_map(|c| match c {
        Change::WriteToken { overwrite } => Some(*overwrite),
        _ => None,
    });
    let pending = observed.token.as_ref().is_some_and(|t| t.redeploy_pending);
    if written_now.is_none() && !pending {
        return None;
    }
    let Some((target, controller)) = ctx
        .redeploy
        .as_ref()
        .and_then(|r| r.by_owner.as_ref().map(|c| (r, c)))
    else {
        return Some(Change::Redeploy);
    };
    let fresh = written_now == Some(false);
    // `written_at` has second precision: a deployment counts only from the next second,
    // so one created earlier in the same second as the write never clears the mark.
    let deployed_since = written_now.is_none()
        && matches!(
            (target.last_deployed_at, observed.token.as_ref().and_then(|t| t.written_at)),
            (Some(deployed), Some(written)) if deployed >= written + std::time::Duration::from_secs(1)
        );
    if fresh || deployed_since {
        Some(Change::ClearRedeployMark)
    } else {
        notices.push(crate::model::redeploy_notice(&target.service, controller));
        None
    }
}
