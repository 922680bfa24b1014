//! `ecs-tunnels doctor`: why a service's cloudflared sidecar is not connecting. Runs
//! [`crate::diagnose::diagnose`] and reads the tunnel's connections; prints each check
//! (problem, not judged, ok) or, with `--json`, the diagnosis as JSON.
//!
//! Exit codes: 0 nothing wrong found; 1 a problem found (a finding, the service not
//! found, or tasks running with no connection); 3 AWS or Cloudflare could not be read.

use super::{EXIT_NEEDS_ATTENTION, EXIT_RETRY};
use crate::aws::ecs::ServiceInfo;
use crate::cloudflare::TunnelQuery;
use crate::context::Deps;
use crate::diagnose::{diagnose, Diagnosis};
use crate::ownership::ServiceId;
use serde::Serialize;
use std::process::ExitCode;

/// The tunnel's state, as far as Cloudflare says.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TunnelState {
    /// The tunnel's name (`ecs-tunnels.<owner>.<cluster>.<service>`).
    pub name: String,
    /// Its id, when it exists.
    pub id: Option<String>,
    /// Cloudflare's status: `inactive`, `healthy`, `degraded`, `down`.
    pub status: Option<String>,
    /// Connected cloudflared processes (one per running task).
    pub connectors: usize,
    /// Their connections to Cloudflare's data centres.
    pub connections: usize,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// What `doctor --json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    service: String,
    task_definition: Option<&'a str>,
    running_count: i32,
    desired_count: i32,
    #[serde(flatten)]
    diagnosis: &'a Diagnosis,
    tunnel: &'a TunnelState,
}

/// Reads the tunnel named for `svc` and its connections.
async fn tunnel_state(deps: &Deps, svc: &ServiceId, info: &ServiceInfo) -> TunnelState {
    let account = info.account_region().map(|(a, _)| a);
    let owner = match deps.owner(account.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            return TunnelState {
                error: Some(e),
                ..TunnelState::default()
            }
        }
    };
    let mut state = TunnelState {
        name: owner.tunnel_name(svc),
        ..TunnelState::default()
    };
    let query = TunnelQuery {
        name: Some(state.name.clone()),
        include_prefix: None,
    };
    let tunnel = match deps.cf.list_tunnels(&query).await {
        Ok(list) => list.into_iter().find(|t| t.name == state.name),
        Err(e) => {
            state.error = Some(e.to_string());
            return state;
        }
    };
    let Some(tunnel) = tunnel else {
        return state;
    };
    state.id = Some(tunnel.id.clone());
    state.status = tunnel.status.clone();
    match deps.cf.list_tunnel_connections(&tunnel.id).await {
        Ok(connectors) => {
            state.connectors = connectors.len();
            state.connections = connectors.iter().map(|c| c.conns.len()).sum();
        }
        Err(e) => state.error = Some(e.to_string()),
    }
    state
}

/// One line about the tunnel.
fn describe_tunnel(t: &TunnelState) -> String {
    match (&t.id, &t.error) {
        (_, Some(e)) => format!("{}: cannot be read ({e})", t.name),
        (None, None) => format!("{}: not created yet (ecs-tunnels plan shows why)", t.name),
        (Some(id), None) if t.connectors == 0 => format!("{} ({id}): no connection", t.name),
        (Some(id), None) => format!(
            "{} ({id}): connected, {} cloudflared with {} connections",
            t.name, t.connectors, t.connections
        ),
    }
}

/// True when tasks run but no cloudflared is connected to an existing tunnel.
fn silent(info: &ServiceInfo, t: &TunnelState) -> bool {
    info.running_count > 0 && t.id.is_some() && t.error.is_none() && t.connectors == 0
}

fn print_text(svc: &ServiceId, info: &ServiceInfo, d: &Diagnosis, t: &TunnelState) {
    println!(
        "{svc}: task definition {}, {} of {} tasks running",
        info.task_definition.as_deref().unwrap_or("(none)"),
        info.running_count,
        info.desired_count
    );
    for f in &d.findings {
        println!("  problem     {} [{}]", f.message, f.code);
        println!("              fix: {}", f.fix);
    }
    for u in &d.unjudged {
        println!("  not judged  {u}");
    }
    for p in &d.passed {
        println!("  ok          {p}");
    }
    println!("  tunnel      {}", describe_tunnel(t));
    if d.is_healthy() && silent(info, t) {
        println!(
            "  the sidecar looks right, but no cloudflared is connected while tasks run: read the cloudflared container's log; it needs outbound access to Cloudflare on port 7844 (TCP and UDP)"
        );
    }
}

/// Runs `doctor` for one service.
pub async fn run(deps: &Deps, svc: &ServiceId, json: bool) -> ExitCode {
    let info = match deps.ecs.describe_service(&svc.cluster, &svc.service).await {
        Ok(Some(i)) if i.is_active() => i,
        Ok(_) => {
            eprintln!("error: ECS has no active service {svc}");
            return ExitCode::from(EXIT_NEEDS_ATTENTION);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RETRY);
        }
    };
    let origin = info.tags.get(crate::spec::TAG_ORIGIN).map(|o| o.trim());
    let diagnosis = match diagnose(deps, svc, &info, origin).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RETRY);
        }
    };
    let tunnel = tunnel_state(deps, svc, &info).await;
    if json {
        let report = Report {
            service: svc.key(),
            task_definition: info.task_definition.as_deref(),
            running_count: info.running_count,
            desired_count: info.desired_count,
            diagnosis: &diagnosis,
            tunnel: &tunnel,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_text(svc, &info, &diagnosis, &tunnel);
    }
    if !diagnosis.is_healthy() || silent(&info, &tunnel) {
        ExitCode::from(EXIT_NEEDS_ATTENTION)
    } else if tunnel.error.is_some() {
        ExitCode::from(EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(running: i32) -> ServiceInfo {
        ServiceInfo {
            arn: "arn:aws:ecs:us-east-1:123456789012:service/demo/web".into(),
            cluster: "demo".into(),
            name: "web".into(),
            status: "ACTIVE".into(),
            tags: Default::default(),
            task_definition: None,
            deployment_controller: "ECS".into(),
            last_deployed_at: None,
            running_count: running,
            desired_count: 1,
        }
    }

    #[test]
    fn running_tasks_without_a_connection_need_attention() {
        let tunnel = |id: Option<&str>, connectors| TunnelState {
            name: "t".into(),
            id: id.map(str::to_string),
            connectors,
            ..TunnelState::default()
        };
        assert!(silent(&info(1), &tunnel(Some("id"), 0)));
        assert!(
            !silent(&info(0), &tunnel(Some("id"), 0)),
            "no task, nothing to connect"
        );
        assert!(!silent(&info(1), &tunnel(Some("id"), 1)));
        assert!(
            !silent(&info(1), &tunnel(None, 0)),
            "no tunnel yet: plan tells why"
        );
        assert_eq!(
            describe_tunnel(&tunnel(Some("id"), 0)),
            "t (id): no connection"
        );
        assert_eq!(
            describe_tunnel(&tunnel(None, 0)),
            "t: not created yet (ecs-tunnels plan shows why)"
        );
    }
}
