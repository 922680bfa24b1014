//! End to end through the built binary's Lambda door, against moto and the simulator:
//! create, repeat (no writes), untag, delete, public access, TaskFailedToStart.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_repeat_untag() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let deployment_before = w.deployment_id("demo", "web").await;

    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );

    // Safe order, as Cloudflare saw it: the Access app exists before the config that
    // carries its AUD, and both before the DNS record makes the hostname reachable.
    let log = w.requests().await["log"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = |method: &str, path: &str| {
        log.iter()
            .position(|r| r["method"] == method && r["path"].as_str().unwrap_or("").ends_with(path))
            .unwrap_or_else(|| panic!("no {method} {path} in {log:?}"))
    };
    assert!(first("POST", "/access/apps") < first("PUT", "/configurations"));
    assert!(first("PUT", "/configurations") < first("POST", "/dns_records"));
    assert!(first("POST", "/cfd_tunnel") < first("POST", "/dns_records"));

    // One CloudWatch EMF line per invocation, with the changes and Cloudflare calls.
    let emf: Vec<serde_json::Value> = w
        .output()
        .lines()
        .filter(|l| l.contains("CloudWatchMetrics"))
        .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
        .collect();
    assert_eq!(emf.len(), 1, "{emf:?}");
    assert_eq!(emf[0]["Trigger"], "event");
    assert_eq!(emf[0]["Change_create_tunnel"], 1.0);
    assert!(emf[0]["CloudflareCalls"].as_f64().unwrap() > 0.0);

    // One tunnel, remotely managed, named with our owner id.
    let tunnels = w.live_tunnels().await;
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    let tunnel = &tunnels[0];
    let tid = tunnel["id"].as_str().unwrap().to_string();
    assert_eq!(tunnel["name"], format!("ecs-tunnels.{OWNER}.demo.web"));
    assert_eq!(tunnel["config_src"], "cloudflare");

    // Access app with our tag, linked to our allow policy.
    let apps = w.access_apps().await;
    assert_eq!(apps.len(), 1, "{apps:?}");
    let app = &apps[0];
    assert_eq!(app["domain"], "web.example.com");
    assert!(app["tags"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("ecs-tunnels-{OWNER}"))));
    let policies = w.policies().await;
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0]["include"],
        json!([{"email_domain": {"domain": "example.com"}}])
    );
    assert_eq!(app["policies"][0]["id"], policies[0]["id"]);

    // Config routes the hostname with Access enforced by cloudflared (the app's AUD).
    let config = &tunnel["config"];
    assert_eq!(config["ingress"][0]["hostname"], "web.example.com");
    assert_eq!(
        config["ingress"][0]["service"], "http://localhost:8080",
        "default origin from the task definition"
    );
    assert_eq!(
        config["ingress"][0]["originRequest"]["access"]["audTag"][0],
        app["aud"]
    );
    assert_eq!(
        config["ingress"][0]["originRequest"]["access"]["teamName"],
        "ecs-tunnels-demo"
    );
    assert_eq!(config["ingress"][1]["service"], "http_status:404");

    // Proxied CNAME with our marker.
    let records = w.dns_records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["name"], "web.example.com");
    assert_eq!(records[0]["content"], format!("{tid}.cfargotunnel.com"));
    assert_eq!(records[0]["proxied"], true);
    assert_eq!(
        records[0]["comment"],
        format!("ecs-tunnels:{OWNER}:demo/web")
    );

    // The token in SSM works: a connector started with it is accepted.
    let (token, version) = w
        .token_parameter("demo", "web")
        .await
        .expect("token parameter");
    let tags = w.token_parameter_tags("demo", "web").await;
    assert_eq!(
        tags.get("ecs-tunnels:owner").map(String::as_str),
        Some(OWNER)
    );
    assert!(
        !tags.contains_key("ecs-tunnels:redeploy"),
        "redeploy marker cleared: {tags:?}"
    );
    assert!(w.token_connects(&token).await, "token refused");

    // Status tag and a new deployment so tasks read the token.
    let stags = w.service_tags("demo", "web").await;
    let status = stags["ecs-tunnels:status"].clone();
    assert!(
        status.starts_with(&format!("ready {tid} 0 connectors digest:")),
        "{status}"
    );
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment_before,
        "service redeployed"
    );

    // The same event again, and the status tag's own TagResource event: no writes at all.
    w.reset_requests().await;
    let deployment = w.deployment_id("demo", "web").await;
    let again = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(again["outcomes"][0]["state"], "ready");
    assert_eq!(again["outcomes"][0]["tunnel_id"], tid.as_str());
    assert_eq!(
        w.requests().await["total"],
        0,
        "a task event of a converged service whose tags did not change made Cloudflare calls: {}",
        w.requests().await
    );
    // Our own redeploy's CloudTrail event (UpdateService with forceNewDeployment only):
    // routine, so no Cloudflare call either.
    let mut redeploy = sample("cloudtrail-update-service.json");
    redeploy["detail"]["requestParameters"] =
        json!({"cluster": "demo", "service": "web", "forceNewDeployment": true});
    let resp = w.invoke_ok(redeploy).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert_eq!(
        w.requests().await["total"],
        0,
        "our own redeploy's event made Cloudflare calls"
    );
    let own = w
        .invoke_ok(tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:status", "ready x")],
        ))
        .await;
    assert_eq!(
        own["outcomes"],
        json!([]),
        "own status tag event is a no-op"
    );
    assert_eq!(
        w.token_parameter("demo", "web").await.unwrap().1,
        version,
        "no new SSM version"
    );
    assert_eq!(
        w.deployment_id("demo", "web").await,
        deployment,
        "no redeploy"
    );
    assert_eq!(
        w.service_tags("demo", "web").await["ecs-tunnels:status"],
        status,
        "the status tag is unchanged"
    );

    // Untag: everything goes, connections included, and the status tag too.
    w.remove_tags("demo", "web", &["ecs-tunnels:hostname"])
        .await;
    let gone = w
        .invoke_ok(untag_event("demo", "web", &["ecs-tunnels:hostname"]))
        .await;
    assert_eq!(
        gone["outcomes"][0]["state"],
        "removed",
        "{gone}\n{}",
        w.output()
    );
    assert!(w.live_tunnels().await.is_empty());
    assert!(w.access_apps().await.is_empty());
    assert!(w.policies().await.is_empty());
    assert!(w.dns_records().await.is_empty());
    assert!(w.token_parameter("demo", "web").await.is_none());
    assert!(!w
        .service_tags("demo", "web")
        .await
        .contains_key("ecs-tunnels:status"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_answers_cause_no_rewrites() {
    // The simulator answers like Cloudflare does (World::start turns server shapes on):
    // zero values spelled out in the tunnel config, `originRequest: {}`, `warp-routing`,
    // server-only app fields, lower-cased emails and hostnames, `1h30m0s` for `90m`, and
    // destinations in the server's own order. None of that is drift.
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed(
        "demo",
        "web",
        &[
            ("ecs-tunnels:hostname", "web.example.com api.example.net"),
            ("ecs-tunnels:allow-emails", "Alice@Example.com"),
            ("ecs-tunnels:allow-email-domains", "Example.org"),
            ("ecs-tunnels:session-duration", "90m"),
        ],
    )
    .await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    let app = w.access_apps().await.remove(0);
    assert_eq!(
        app["session_duration"], "1h30m0s",
        "server shapes are on: {app}"
    );

    w.reset_requests().await;
    for event in [
        task_event("demo", "web", false),
        tag_event(
            "demo",
            "web",
            &[("ecs-tunnels:allow-emails", "Alice@Example.com")],
        ),
        sample("schedule-sweep.json"),
        task_event("demo", "web", true),
    ] {
        let r = w.invoke_ok(event).await;
        assert!(!r.to_string().contains("pending"), "{r}");
    }
    assert_eq!(
        w.writes().await,
        0,
        "repeat events and a sweep rewrote objects: {}",
        w.requests().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_service_costs_one_ecs_read_and_no_cloudflare_call() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "plain", &[("team", "payments")]).await;
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "plain", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "not_managed");
    assert_eq!(resp["cloudflare_calls"], 0);
    assert_eq!(w.requests().await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_service_tears_down() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "api", &exposed("api.example.com")).await;
    w.invoke_ok(task_event("demo", "api", false)).await;
    assert_eq!(w.live_tunnels().await.len(), 1);
    w.delete_service("demo", "api").await;
    let resp = w.invoke_ok(delete_event("demo", "api")).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "removed",
        "{resp}\n{}",
        w.output()
    );
    assert!(w.live_tunnels().await.is_empty());
    assert!(w.access_apps().await.is_empty());
    assert!(w.dns_records().await.is_empty());
    assert!(w.policies().await.is_empty());
    assert!(w.token_parameter("demo", "api").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_access_has_no_access_app() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed(
        "demo",
        "docs",
        &[
            ("ecs-tunnels:hostname", "docs.example.net"),
            ("ecs-tunnels:access", "public"),
            ("ecs-tunnels:origin", "http://localhost:3000"),
        ],
    )
    .await;
    let resp = w.invoke_ok(task_event("demo", "docs", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert!(w.access_apps().await.is_empty());
    let t = &w.live_tunnels().await[0];
    assert_eq!(
        t["config"]["ingress"][0]["service"],
        "http://localhost:3000"
    );
    assert!(
        t["config"]["ingress"][0]
            .get("originRequest")
            .is_none_or(|o| o.get("access").is_none()),
        "{t}"
    );
    assert_eq!(w.dns_records().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_failed_to_start_for_missing_token_creates_it() {
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let event = sample("ecs-task-stopped-failed-to-start.json");
    let resp = w.invoke_ok(event).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready", "{resp}");
    assert!(w.token_parameter("demo", "web").await.is_some());

    // A plain STOPPED task of a tagged service never tears anything down.
    let resp = w.invoke_ok(task_event("demo", "web", true)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready");
    assert_eq!(w.live_tunnels().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_read_from_ssm_once_per_cold_start() {
    let mut w = World::start().await;
    w.put_api_token_parameter(API_TOKEN).await;
    // The function reads the token from SSM instead of its environment.
    w.spawn_function_reading_the_api_token_from_ssm();
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    // Read once: changing the parameter does not affect the warm process.
    w.put_api_token_parameter("rotated-elsewhere").await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "ready");
    assert!(!w.output().contains(API_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_install_says_what_to_set() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_TOKEN_STORE".into(), "vault".into()));
    w.spawn_function().await;
    let inv = w.invoke(task_event("demo", "web", false)).await;
    match &inv.outcome {
        devtools::runtime_api::Outcome::Error { error_message, .. } => {
            assert!(
                error_message.contains("ECS_TUNNELS_TOKEN_STORE"),
                "{error_message}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untag_that_also_strips_the_status_tag_still_tears_down() {
    // A tool that owns the tags (Terraform, CloudFormation) removes ours in the same
    // change: no status tag is left to say the service was managed.
    let mut w = World::start().await;
    w.spawn_function().await;
    w.seed("demo", "web", &exposed("web.example.com")).await;
    w.invoke_ok(task_event("demo", "web", false)).await;
    w.remove_tags(
        "demo",
        "web",
        &[
            "ecs-tunnels:hostname",
            "ecs-tunnels:allow-email-domains",
            "ecs-tunnels:status",
        ],
    )
    .await;
    let resp = w
        .invoke_ok(untag_event(
            "demo",
            "web",
            &["ecs-tunnels:hostname", "ecs-tunnels:status"],
        ))
        .await;
    assert_eq!(resp["outcomes"][0]["state"], "removed", "{resp}");
    assert!(
        w.live_tunnels().await.is_empty()
            && w.dns_records().await.is_empty()
            && w.access_apps().await.is_empty()
    );
    assert!(w.token_parameter("demo", "web").await.is_none());
    // A task event of an untagged service stays cheap: one ECS read, no Cloudflare call.
    w.reset_requests().await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["state"], "not_managed");
    assert_eq!(w.requests().await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codedeploy_service_is_told_to_redeploy_not_retried_forever() {
    // ECS refuses forceNewDeployment on services deployed by CodeDeploy (or an external
    // tool). ecs-tunnels does not ask; it says what the owner must do, and notices when
    // they did it.
    let mut w = World::start().await;
    w.spawn_function().await;
    devtools::seed::seed_service_deployed_by(
        &w.sdk,
        "demo",
        "web",
        &exposed("web.example.com"),
        "CODE_DEPLOY",
    )
    .await;

    // A brand-new token needs no redeploy: the tasks that could not start without it
    // start with it.
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    assert!(!w
        .token_parameter_tags("demo", "web")
        .await
        .contains_key("ecs-tunnels:redeploy"));

    // The stored token goes stale (a repair rewrites it): only the owner can deploy.
    let tid = w.live_tunnels().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.make_token_stale("/ecs-tunnels/demo/web/token", &tid)
        .await;
    for _ in 0..2 {
        let resp = w.invoke_ok(task_event("demo", "web", false)).await;
        let o = &resp["outcomes"][0];
        assert_eq!(o["state"], "error", "{resp}\n{}", w.output());
        assert_eq!(o["error_kind"], "redeploy", "{resp}");
        assert!(
            o["error"]
                .as_str()
                .unwrap()
                .contains("start a new CodeDeploy deployment"),
            "{resp}"
        );
        let status = w.service_tags("demo", "web").await["ecs-tunnels:status"].clone();
        assert!(status.starts_with("error redeploy needed"), "{status}");
    }
    assert_eq!(
        w.token_parameter_tags("demo", "web")
            .await
            .get("ecs-tunnels:redeploy"),
        Some(&"pending".to_string())
    );

    // The owner deploys (a new task set, as CodeDeploy creates): the next event settles.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ecs = aws_sdk_ecs::Client::new(&w.sdk);
    let td = ecs
        .describe_services()
        .cluster("demo")
        .services("web")
        .send()
        .await
        .unwrap()
        .services()[0]
        .task_definition()
        .unwrap()
        .to_string();
    let task_set = ecs
        .create_task_set()
        .cluster("demo")
        .service("web")
        .task_definition(td)
        .send()
        .await
        .expect("CreateTaskSet");
    // A task set being tried is not yet a deployment: nothing changes...
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(resp["outcomes"][0]["error_kind"], "redeploy", "{resp}");
    // ...until CodeDeploy makes it PRIMARY.
    ecs.update_service_primary_task_set()
        .cluster("demo")
        .service("web")
        .primary_task_set(task_set.task_set().unwrap().task_set_arn().unwrap())
        .send()
        .await
        .expect("UpdateServicePrimaryTaskSet");
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    assert!(!w
        .token_parameter_tags("demo", "web")
        .await
        .contains_key("ecs-tunnels:redeploy"));
    assert!(w.service_tags("demo", "web").await["ecs-tunnels:status"].starts_with("ready "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_tag_that_cannot_be_written_is_reported_not_retried() {
    // The service already has ECS's maximum of 50 tags: the status tag cannot be added.
    // The service is still exposed; the failure is reported, and no retry loop starts.
    let mut w = World::start().await;
    w.spawn_function().await;
    let fillers: Vec<(String, String)> = (0..48)
        .map(|i| (format!("team:tag-{i:02}"), "x".to_string()))
        .collect();
    let mut tags: Vec<(&str, &str)> = exposed("web.example.com");
    tags.extend(fillers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(tags.len(), 50);
    w.seed("demo", "web", &tags).await;
    for _ in 0..2 {
        let inv = w.invoke(task_event("demo", "web", false)).await;
        let resp = inv.outcome.response().cloned().unwrap_or_else(|| {
            panic!(
                "must not fail the invocation: {:?}\n{}",
                inv.outcome,
                w.output()
            )
        });
        let o = &resp["outcomes"][0];
        assert_eq!(o["state"], "ready", "{resp}");
        assert!(
            o["status_error"].as_str().unwrap_or("").contains("50 tags"),
            "{resp}"
        );
    }
    assert!(!w
        .service_tags("demo", "web")
        .await
        .contains_key("ecs-tunnels:status"));
    assert_eq!(w.live_tunnels().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cold_start_is_retried_by_the_next_invocation() {
    // Reading the API token fails at cold start (here: the parameter is not there yet).
    // The container must not stay "misconfigured" for the rest of its life: the next
    // invocation tries again.
    let mut w = World::start().await;
    w.spawn_function_reading_the_api_token_from_ssm();
    w.seed("demo", "web", &exposed("web.example.com")).await;
    let inv = w.invoke(task_event("demo", "web", false)).await;
    match &inv.outcome {
        devtools::runtime_api::Outcome::Error { error_message, .. } => assert!(
            error_message.contains("/cloudflare/api-token"),
            "{error_message}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    w.put_api_token_parameter(API_TOKEN).await;
    let resp = w.invoke_ok(task_event("demo", "web", false)).await;
    assert_eq!(
        resp["outcomes"][0]["state"],
        "ready",
        "{resp}\n{}",
        w.output()
    );
    assert!(!w.output().contains(API_TOKEN));
}
