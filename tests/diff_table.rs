//! Table-driven tests of the pure planner: (target, observed) → changes. No network.

use ecs_tunnels::cloudflare::{AccessApp, AccessPolicy, Tunnel};
use ecs_tunnels::diff::{diff, Change, Plan};
use ecs_tunnels::model::{
    own_policy_rules, render_config, Observed, ObservedRecord, PlanContext, RedeployTarget,
    StoredToken, Target, TargetAccess, TargetHost,
};
use ecs_tunnels::ownership::{Owner, ServiceId};
use serde_json::{from_value, json};
use std::time::{Duration, SystemTime};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const TID: &str = "11111111-2222-3333-4444-555555555555";
const ZONE: &str = "zone-example-com";

fn ctx() -> PlanContext {
    PlanContext {
        svc: ServiceId::new("prod", "web"),
        owner: Owner::parse("123456789012-us-east-1").unwrap(),
        account_id: ACCOUNT.into(),
        team_name: "team".into(),
        redeploy: Some(RedeployTarget::ecs(ServiceId::new("prod", "web"))),
        rotation_function: None,
        publish: ecs_tunnels::publish::PublishMode::Immediately,
        cause: Default::default(),
    }
}

fn target(access: bool) -> Target {
    Target {
        hosts: vec![TargetHost {
            name: "app.example.com".into(),
            zone_id: ZONE.into(),
        }],
        origin: "http://localhost:8080".into(),
        rotate_every: std::time::Duration::from_secs(30 * 86400),
        access: access.then(|| TargetAccess {
            own_rules: own_policy_rules(&["a@example.com".into()], &[], &[]),
            extra_policy_ids: vec![],
            idp_ids: vec![],
            session_duration: "24h".into(),
        }),
    }
}

fn tunnel() -> Tunnel {
    from_value(json!({"id": TID, "name": ctx().owner.tunnel_name(&ctx().svc)})).unwrap()
}

fn policy(id: &str) -> AccessPolicy {
    from_value(json!({"id": id, "name": ctx().owner.policy_name(&ctx().svc), "decision": "allow", "include": [{"email": {"email": "a@example.com"}}]})).unwrap()
}

fn app(policy_id: Option<&str>) -> AccessApp {
    let policies: Vec<_> = policy_id
        .into_iter()
        .map(|id| json!({"id": id, "precedence": 1, "name": ctx().owner.policy_name(&ctx().svc)}))
        .collect();
    from_value(json!({
        "id": "app-1", "aud": "aud-1", "name": ctx().owner.access_app_name(&ctx().svc), "domain": "app.example.com", "type": "self_hosted",
        "destinations": [{"type": "public", "uri": "app.example.com"}], "session_duration": "24h", "allowed_idps": [],
        "auto_redirect_to_identity": false, "app_launcher_visible": false, "tags": [ctx().owner.access_tag()], "policies": policies
    }))
    .unwrap()
}

fn record(name: &str, content: &str, comment: Option<&str>) -> ObservedRecord {
    ObservedRecord { zone_id: ZONE.into(), record: from_value(json!({"id": format!("rec-{name}-{}", content.len()), "name": name, "type": "CNAME", "content": content, "proxied": true, "ttl": 1, "comment": comment})).unwrap() }
}

fn ours(name: &str) -> ObservedRecord {
    record(
        name,
        &format!("{TID}.cfargotunnel.com"),
        Some(&ctx().owner.dns_comment(&ctx().svc)),
    )
}

fn token() -> StoredToken {
    StoredToken {
        tunnel_id: Some(TID.into()),
        account: Some(ACCOUNT.into()),
        owned: true,
        redeploy_pending: false,
        rotation: None,
        matches_cloudflare: None,
        written_at: None,
        rotation_schedule: None,
        redeploys: None,
        rotate_every: None,
        exposed: None,
    }
}

/// Everything in place for `target(true)`.
fn converged() -> Observed {
    let t = target(true);
    Observed {
        tunnel: Some(tunnel()),
        config: Some(render_config(&t, "team", Some("aud-1"))),
        app: Some(app(Some("pol-1"))),
        apps_at_hosts: vec![],
        policies: vec![policy("pol-1")],
        records: vec![ours("app.example.com")],
        token: Some(token()),
    }
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.changes.iter().map(Change::kind).collect()
}

#[test]
fn table() {
    type Case = (&'static str, Option<Target>, Observed, Vec<&'static str>);
    let mut cases: Vec<Case> = vec![
        (
            "converged: nothing to do",
            Some(target(true)),
            converged(),
            vec![],
        ),
        (
            "fresh service: everything, Access before DNS",
            Some(target(true)),
            Observed::default(),
            vec![
                "create_tunnel",
                "create_policy",
                "create_app",
                "put_config",
                "write_token",
                "create_dns",
                "redeploy",
            ],
        ),
        (
            "public fresh: no Access",
            Some(target(false)),
            Observed::default(),
            vec![
                "create_tunnel",
                "put_config",
                "write_token",
                "create_dns",
                "redeploy",
            ],
        ),
        (
            "teardown",
            None,
            converged(),
            vec![
                "delete_dns",
                "delete_app",
                "delete_policy",
                "delete_tunnel",
                "delete_token",
            ],
        ),
        ("teardown of nothing", None, Observed::default(), vec![]),
    ];

    let mut o = converged();
    o.config = None;
    cases.push((
        "fresh tunnel config is null",
        Some(target(true)),
        o,
        vec!["put_config"],
    ));

    let mut o = converged();
    o.config = Some(render_config(&target(true), "team", Some("other-aud")));
    cases.push((
        "config edited by hand",
        Some(target(true)),
        o,
        vec!["put_config"],
    ));

    let mut o = converged();
    o.token = None;
    cases.push((
        "token lost",
        Some(target(true)),
        o,
        vec!["write_token", "redeploy"],
    ));

    let mut o = converged();
    o.token = Some(StoredToken {
        tunnel_id: Some("old".into()),
        ..token()
    });
    cases.push((
        "token for another tunnel",
        Some(target(true)),
        o,
        vec!["write_token", "redeploy"],
    ));

    let mut o = converged();
    o.token = Some(StoredToken {
        redeploy_pending: true,
        ..token()
    });
    cases.push((
        "crash after token write, before redeploy",
        Some(target(true)),
        o,
        vec!["redeploy"],
    ));

    let mut o = converged();
    o.records = vec![record(
        "app.example.com",
        "elsewhere.example.net",
        Some(&ctx().owner.dns_comment(&ctx().svc)),
    )];
    cases.push((
        "our record repointed",
        Some(target(true)),
        o,
        vec!["update_dns"],
    ));

    let mut o = converged();
    o.records.push(ours("old.example.com"));
    cases.push((
        "hostname removed from tags",
        Some(target(true)),
        o,
        vec!["delete_dns"],
    ));

    let mut o = converged();
    o.policies = vec![policy("pol-1"), policy("pol-2")];
    cases.push((
        "duplicate own policy from a race",
        Some(target(true)),
        o,
        vec!["delete_policy"],
    ));

    let mut o = converged();
    let mut p = policy("pol-1");
    p.include
        .push(json!({"email": {"email": "mallory@example.com"}}));
    o.policies = vec![p];
    cases.push((
        "allow rule added by hand",
        Some(target(true)),
        o,
        vec!["update_policy"],
    ));

    let mut o = converged();
    o.app.as_mut().unwrap().session_duration = Some("720h".into());
    cases.push((
        "session length changed by hand",
        Some(target(true)),
        o,
        vec!["update_app"],
    ));

    let mut o = converged();
    o.app = None;
    cases.push((
        "app deleted by hand",
        Some(target(true)),
        o,
        vec!["create_app", "put_config"],
    ));

    let mut o = converged();
    o.tunnel = None;
    o.config = None;
    cases.push((
        "tunnel deleted by hand",
        Some(target(true)),
        o,
        vec![
            "create_tunnel",
            "put_config",
            "write_token",
            "update_dns",
            "redeploy",
        ],
    ));

    let mut o = converged();
    o.config = Some(render_config(&target(false), "team", None));
    o.app = Some(app(Some("pol-1")));
    cases.push((
        "required → public",
        Some(target(false)),
        o,
        vec!["delete_app", "delete_policy"],
    ));

    for (name, t, observed, want) in cases {
        let plan = diff(&ctx(), t.as_ref(), &observed);
        assert!(
            plan.conflicts.is_empty(),
            "{name}: unexpected conflicts {:?}",
            plan.conflicts
        );
        assert_eq!(kinds(&plan), want, "{name}");
    }
}

#[test]
fn conflicts_change_nothing() {
    let cases: Vec<(&str, Observed, &str)> = vec![
        (
            "unowned CNAME at the hostname",
            Observed { records: vec![record("app.example.com", "legacy.example.net", None)], ..Default::default() },
            "does not own",
        ),
        (
            "record of another ecs-tunnels service",
            Observed { records: vec![record("app.example.com", "x.cfargotunnel.com", Some("ecs-tunnels:123456789012-us-east-1:prod/other"))], ..Default::default() },
            "another service",
        ),
        (
            "record of another install",
            Observed { records: vec![record("app.example.com", "x.cfargotunnel.com", Some("ecs-tunnels:999-eu-west-1:prod/web"))], ..Default::default() },
            "does not own",
        ),
        (
            "foreign Access app on the hostname",
            Observed {
                apps_at_hosts: vec![from_value(json!({"id": "x", "name": "legacy app", "domain": "app.example.com", "aud": "z", "tags": []})).unwrap()],
                ..Default::default()
            },
            "Access application",
        ),
        (
            "app with our name but not our tag",
            Observed { app: Some(from_value(json!({"id": "x", "name": ctx().owner.access_app_name(&ctx().svc), "domain": "app.example.com", "aud": "z", "tags": []})).unwrap()), ..Default::default() },
            "does not carry",
        ),
        ("unowned token parameter", Observed { token: Some(StoredToken { owned: false, ..token() }), ..Default::default() }, "token parameter"),
    ];
    for (name, observed, needle) in cases {
        let plan = diff(&ctx(), Some(&target(true)), &observed);
        assert!(
            plan.changes.is_empty(),
            "{name}: a plan with conflicts must change nothing, got {:?}",
            kinds(&plan)
        );
        assert!(
            plan.conflicts.iter().any(|c| c.contains(needle)),
            "{name}: {:?}",
            plan.conflicts
        );
    }
}

#[test]
fn teardown_never_touches_what_is_not_ours() {
    let mut o = converged();
    o.records
        .push(record("app.example.com", "legacy.example.net", None));
    o.records.push(record(
        "other.example.com",
        "x",
        Some("ecs-tunnels:other-owner:prod/web"),
    ));
    o.app.as_mut().unwrap().tags.clear();
    o.token = Some(StoredToken {
        owned: false,
        ..token()
    });
    let plan = diff(&ctx(), None, &o);
    assert_eq!(
        kinds(&plan),
        vec!["delete_dns", "delete_policy", "delete_tunnel"]
    );
    assert!(
        matches!(&plan.changes[0], Change::DeleteDns { id, .. } if *id == format!("rec-app.example.com-{}", format!("{TID}.cfargotunnel.com").len()))
    );
}

#[test]
fn answers_a_real_server_gives_are_not_drift() {
    // What Cloudflare (or the simulator's server-shapes mode) answers for objects that
    // are exactly as ecs-tunnels wrote them.
    let mut o = converged();
    let mut config = serde_json::to_value(o.config.as_ref().unwrap()).unwrap();
    config["originRequest"] = json!({"noTLSVerify": false, "connectTimeout": 0});
    config["warp-routing"] = json!({"enabled": false});
    config["ingress"][0]["hostname"] = json!("APP.example.com.");
    config["ingress"][0]["path"] = json!("");
    config["ingress"][0]["originRequest"]["noTLSVerify"] = json!(false);
    config["ingress"][0]["originRequest"]["http2Origin"] = json!(false);
    config["ingress"][1]["hostname"] = json!("");
    config["ingress"][1]["originRequest"] =
        json!({"access": {"required": false, "teamName": "", "audTag": []}, "proxyPort": 0});
    o.config = Some(from_value(config).unwrap());
    let app = o.app.as_mut().unwrap();
    app.session_duration = Some("24h0m0s".into());
    app.domain = "App.Example.com".into();
    app.tags.push("another-teams-tag".into());
    let policy = &mut o.policies[0];
    policy.include = vec![json!({"email": {"email": "A@Example.COM"}})];
    policy.session_duration = Some("24h".into());
    let plan = diff(&ctx(), Some(&target(true)), &o);
    assert!(plan.is_empty(), "{:?}", kinds(&plan));

    // ...while real drift still is.
    let mut drifted = o.clone();
    drifted.policies[0]
        .include
        .push(json!({"email": {"email": "mallory@evil.example"}}));
    drifted.app.as_mut().unwrap().session_duration = Some("720h".into());
    assert_eq!(
        kinds(&diff(&ctx(), Some(&target(true)), &drifted)),
        vec!["update_policy", "update_app"]
    );
    // Settings ecs-tunnels never makes are drift too when they are not zero values: a
    // rule turned into a jump host, a private destination added to the app.
    let mut drifted = o.clone();
    let mut config = serde_json::to_value(drifted.config.as_ref().unwrap()).unwrap();
    config["ingress"][0]["originRequest"]["bastionMode"] = json!(true);
    drifted.config = Some(from_value(config).unwrap());
    drifted
        .app
        .as_mut()
        .unwrap()
        .destinations
        .push(from_value(json!({"type": "private", "cidr": "10.0.0.0/8"})).unwrap());
    assert_eq!(
        kinds(&diff(&ctx(), Some(&target(true)), &drifted)),
        vec!["update_app", "put_config"]
    );
}

#[test]
fn services_ecs_cannot_redeploy_are_left_to_their_owner() {
    let codedeploy = |last_deployed_at: Option<SystemTime>| PlanContext {
        redeploy: Some(RedeployTarget {
            service: ServiceId::new("prod", "web"),
            by_owner: Some("CODE_DEPLOY".into()),
            last_deployed_at,
        }),
        ..ctx()
    };
    let written = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let pending = |written_at| {
        let mut o = converged();
        o.token = Some(StoredToken {
            redeploy_pending: true,
            written_at,
            ..token()
        });
        o
    };

    // A brand-new token: the tasks that could not start without it start with it.
    let mut fresh = converged();
    fresh.token = None;
    let plan = diff(&codedeploy(None), Some(&target(true)), &fresh);
    assert_eq!(kinds(&plan), vec!["write_token", "clear_redeploy_mark"]);
    assert!(plan.notices.is_empty());

    // A changed token, no deployment since: nothing to do but tell the owner.
    let plan = diff(
        &codedeploy(Some(written - Duration::from_secs(60))),
        Some(&target(true)),
        &pending(Some(written)),
    );
    assert!(plan.changes.is_empty(), "{:?}", kinds(&plan));
    assert!(
        plan.notices[0].contains("CODE_DEPLOY")
            && plan.notices[0].contains("start a new CodeDeploy deployment"),
        "{:?}",
        plan.notices
    );

    // The owner deployed after the token was written: the mark goes.
    let plan = diff(
        &codedeploy(Some(written + Duration::from_secs(60))),
        Some(&target(true)),
        &pending(Some(written)),
    );
    assert_eq!(kinds(&plan), vec!["clear_redeploy_mark"]);

    // A repaired token on such a service: written, and the owner is told.
    let mut stale = converged();
    stale.token = Some(StoredToken {
        matches_cloudflare: Some(false),
        ..token()
    });
    let plan = diff(&codedeploy(None), Some(&target(true)), &stale);
    assert_eq!(kinds(&plan), vec!["write_token"]);
    assert_eq!(plan.notices.len(), 1);
}

#[test]
fn the_rotation_schedule_is_planned_like_any_drift() {
    use ecs_tunnels::aws::token_store::RotationSchedule;
    const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:rotate";
    let ctx = PlanContext {
        rotation_function: Some(FUNCTION.into()),
        publish: ecs_tunnels::publish::PublishMode::Immediately,
        ..ctx()
    };
    let with = |schedule: Option<RotationSchedule>| {
        let mut o = converged();
        o.token = Some(StoredToken {
            rotation_schedule: schedule,
            ..token()
        });
        o
    };
    let plan = |o: &Observed| kinds(&diff(&ctx, Some(&target(true)), o));
    assert_eq!(plan(&with(None)), vec!["schedule_rotation"], "never set");
    let good = RotationSchedule {
        enabled: true,
        function: Some(FUNCTION.into()),
        expression: Some("rate(30 days)".into()),
        after_days: Some(30),
    };
    assert!(plan(&with(Some(good.clone()))).is_empty());
    let days_only = RotationSchedule {
        expression: None,
        ..good.clone()
    };
    assert!(
        plan(&with(Some(days_only))).is_empty(),
        "30 days described as days"
    );
    for drift in [
        RotationSchedule {
            enabled: false,
            ..good.clone()
        },
        RotationSchedule {
            function: Some("arn:aws:lambda:us-east-1:123456789012:function:other".into()),
            ..good.clone()
        },
        RotationSchedule {
            expression: Some("rate(7 days)".into()),
            after_days: Some(7),
            ..good.clone()
        },
    ] {
        assert_eq!(
            plan(&with(Some(drift.clone()))),
            vec!["schedule_rotation"],
            "{drift:?}"
        );
    }
    // Without a rotation function the install keeps no schedule.
    assert!(kinds(&diff(&self::ctx(), Some(&target(true)), &with(None))).is_empty());
}

#[test]
fn the_service_a_custom_resource_redeploys_is_recorded_on_its_token() {
    // (The objects are keyed like the fixtures' prod/web; what matters is that the
    // service redeployed is another one, as a custom resource's ServiceArn is.)
    let cr = |service: Option<ServiceId>| PlanContext {
        redeploy: service.map(RedeployTarget::ecs),
        ..ctx()
    };
    let with = |redeploys: Option<&str>| {
        let mut o = converged();
        o.token = Some(StoredToken {
            redeploys: redeploys.map(str::to_string),
            ..token()
        });
        o
    };
    let changes = |c: &PlanContext, o: &Observed| -> Vec<Change> {
        diff(c, Some(&target(true)), o)
            .changes
            .into_iter()
            .filter(|c| matches!(c, Change::RecordRedeployTarget { .. }))
            .collect()
    };
    let app = Some(ServiceId::new("apps", "frontend"));
    assert_eq!(
        changes(&cr(app.clone()), &with(None)),
        vec![Change::RecordRedeployTarget {
            service: Some("apps/frontend".into())
        }]
    );
    assert!(changes(&cr(app), &with(Some("apps/frontend"))).is_empty());
    assert_eq!(
        changes(
            &cr(Some(ServiceId::new("apps", "api"))),
            &with(Some("apps/frontend"))
        ),
        vec![Change::RecordRedeployTarget {
            service: Some("apps/api".into())
        }],
        "ServiceArn changed"
    );
    assert_eq!(
        changes(&cr(None), &with(Some("apps/frontend"))),
        vec![Change::RecordRedeployTarget { service: None }],
        "ServiceArn removed"
    );
    // A tagged service's token names the service itself: nothing to record.
    assert!(changes(&ctx(), &with(None)).is_empty());
}
