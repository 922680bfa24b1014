//! `Custom::CloudflareTunnel` through the binary's Lambda door, with a local HTTP server
//! standing in for CloudFormation's pre-signed response URL.

mod common;
use common::*;
use devtools::response_sink::{Received, ResponseSink};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const STACK: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/app/11112222-3333-4444-5555-666677778888";

fn request(
    sink: &ResponseSink,
    kind: &str,
    logical: &str,
    props: Value,
    physical: Option<&str>,
) -> Value {
    let request_id = format!("req-{}-{}", kind, rand_suffix());
    let mut props = props;
    props["ServiceToken"] = json!("arn:aws:lambda:us-east-1:123456789012:function:ecs-tunnels");
    let mut e = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:ecs-tunnels",
        "ResponseURL": sink.response_url(&request_id),
        "StackId": STACK,
        "RequestId": request_id,
        "ResourceType": "Custom::CloudflareTunnel",
        "LogicalResourceId": logical,
        "ResourceProperties": props,
    });
    if let Some(p) = physical {
        e["PhysicalResourceId"] = json!(p);
    }
    if kind == "Update" {
        e["OldResourceProperties"] = json!({});
    }
    e
}

fn rand_suffix() -> String {
    format!("{:?}", Instant::now())
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect()
}

/// Invokes and returns the one response PUT for this request.
async fn answer(w: &World, sink: &ResponseSink, event: Value) -> Received {
    let before = sink.received().len();
    let _ = w.invoke(event.clone()).await;
    let got = sink.received();
    assert_eq!(
        got.len(),
        before + 1,
        "exactly one response per request: {got:?}\n{}",
        w.output()
    );
    let r = got.last().unwrap().clone();
    assert_eq!(r.method, "PUT");
    assert!(
        r.header("content-type").is_none_or(|v| v.is_empty()),
        "no Content-Type: {:?}",
        r.headers
    );
    assert!(
        r.body.len() <= 4096,
        "body over 4096 bytes: {}",
        r.body.len()
    );
    let b = r.json();
    assert_eq!(b["RequestId"], event["RequestId"]);
    assert_eq!(b["StackId"], STACK);
    assert_eq!(b["LogicalResourceId"], event["LogicalResourceId"]);
    assert!(!b["PhysicalResourceId"].as_str().unwrap().is_empty());
    w.custom_resource_answered(&event, &b);
    r
}

fn props(hosts: &[&str]) -> Value {
    json!({"Hostnames": hosts, "Origin": "http://localhost:8080", "AllowEmailDomains": ["example.com"], "SessionDuration": "8h"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let arn = w.seed("demo", "web", &[("team", "a")]).await;
    let deployment = w.deployment_id("demo", "web").await;

    // Create, three times (CloudFormation's async invoke + Lambda's retries): one of each.
    let mut p = props(&["cr.example.com"]);
    p["ServiceArn"] = json!(arn);
    p.as_object_mut().unwrap().remove("Origin"); // default origin from the service's task definition
    let create = request(&sink, "Create", "Tunnel", p.clone(), None);
    let mut bodies = vec![];
    for _ in 0..3 {
        bodies.push(answer(&w, &sink, create.clone()).await.json());
    }
    let b = &bodies[0];
    assert_eq!(b["Status"], "SUCCESS", "{b}\n{}", w.output());
    assert!(
        bodies
            .iter()
            .all(|x| x["PhysicalResourceId"] == b["PhysicalResourceId"] && x["Data"] == b["Data"]),
        "{bodies:?}"
    );
    let id = b["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(id, format!("ecs-tunnels:{OWNER}:cfn.app/Tunnel"));
    let data = b["Data"].as_object().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "AccessAppId",
            "AccessAud",
            "Cname",
            "TokenParameterArn",
            "TokenParameterName",
            "TunnelId"
        ]
    );
    assert!(
        data.values()
            .all(|v| v.is_string() && !v.as_str().unwrap().is_empty()),
        "{data:?}"
    );
    let tunnels = w.live_tunnels().await;
    assert_eq!(tunnels.len(), 1);
    let tid = tunnels[0]["id"].as_str().unwrap();
    assert_eq!(data["TunnelId"], tid);
    assert_eq!(data["Cname"], format!("{tid}.cfargotunnel.com"));
    assert_eq!(
        data["TokenParameterName"],
        "/ecs-tunnels/cfn.app/Tunnel/token"
    );
    assert_eq!(
        data["TokenParameterArn"],
        "arn:aws:ssm:us-east-1:123456789012:parameter/ecs-tunnels/cfn.app/Tunnel/token"
    );
    assert_eq!(
        tunnels[0]["config"]["ingress"][0]["service"],
        "http://localhost:8080"
    );
    assert_eq!(w.access_apps().await[0]["aud"], data["AccessAud"]);
    assert_eq!(w.dns_records().await.len(), 1);
    assert_eq!(w.policies().await.len(), 1);
    let ssm = aws_sdk_ssm::Client::new(&w.sdk);
    let token = ssm
        .get_parameter()
        .name("/ecs-tunnels/cfn.app/Tunnel/token")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let token = token.parameter().unwrap().value().unwrap().to_string();
    assert!(
        !sink
            .received()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(&token)),
        "token never in a response"
    );
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "ServiceArn redeployed after the token was written"
    );

    // The sweep neither collects nor fights the custom resource's objects.
    w.reset_requests().await;
    let sweep = w.invoke_ok(sample("schedule-sweep.json")).await;
    assert_eq!(sweep["sweep"]["orphans"], 0, "{sweep}");
    assert_eq!(w.writes().await, 0);

    // Update in place: same id, hostnames and Access rules follow.
    let mut p2 = props(&["cr2.example.com", "cr3.example.net"]);
    p2["AllowEmails"] = json!(["bob@example.org"]);
    let upd = answer(&w, &sink, request(&sink, "Update", "Tunnel", p2, Some(&id)))
        .await
        .json();
    assert_eq!(upd["Status"], "SUCCESS", "{upd}");
    assert_eq!(upd["PhysicalResourceId"], id.as_str());
    assert_eq!(upd["Data"]["TunnelId"], tid, "same tunnel");
    let mut names: Vec<String> = w
        .dns_records()
        .await
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["cr2.example.com", "cr3.example.net"]);
    let app = &w.access_apps().await[0];
    assert_eq!(app["domain"], "cr2.example.com");
    assert_eq!(
        w.policies().await[0]["include"].as_array().unwrap().len(),
        2
    );

    // A Delete of another (old) physical id removes only that resource's objects.
    let old = answer(
        &w,
        &sink,
        request(
            &sink,
            "Create",
            "OldTunnel",
            props(&["old.example.com"]),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(old["Status"], "SUCCESS");
    let del_old = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "OldTunnel",
            props(&["old.example.com"]),
            old["PhysicalResourceId"].as_str(),
        ),
    )
    .await
    .json();
    assert_eq!(del_old["Status"], "SUCCESS");
    assert_eq!(w.live_tunnels().await.len(), 1);
    assert_eq!(w.live_tunnels().await[0]["id"], tid);
    assert_eq!(w.dns_records().await.len(), 2);

    // Delete: everything goes, the token last; a second Delete still succeeds.
    for _ in 0..2 {
        let del = answer(
            &w,
            &sink,
            request(&sink, "Delete", "Tunnel", json!({}), Some(&id)),
        )
        .await
        .json();
        assert_eq!(del["Status"], "SUCCESS", "{del}");
    }
    assert!(
        w.live_tunnels().await.is_empty()
            && w.dns_records().await.is_empty()
            && w.access_apps().await.is_empty()
            && w.policies().await.is_empty()
    );
    assert!(ssm
        .get_parameter()
        .name("/ecs-tunnels/cfn.app/Tunnel/token")
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_answered() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();

    // Bad properties: FAILED naming the property, nothing written; the rollback Delete succeeds.
    w.reset_requests().await;
    let bad = answer(
        &w,
        &sink,
        request(
            &sink,
            "Create",
            "Bad",
            json!({"Hostnames": ["bad.example.com"], "Origin": "http://localhost:1"}),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(bad["Status"], "FAILED");
    let reason = bad["Reason"].as_str().unwrap();
    assert!(
        reason.contains("Access") && reason.contains("AllowEmails"),
        "{reason}"
    );
    assert_eq!(w.writes().await, 0);
    let del = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Bad",
            json!({}),
            bad["PhysicalResourceId"].as_str(),
        ),
    )
    .await
    .json();
    assert_eq!(del["Status"], "SUCCESS", "{del}");
    let unknown = answer(&w, &sink, request(&sink, "Create", "Bad2", json!({"Hostnames": "x.example.com", "Access": "public", "Origin": "http://a:1", "Colour": "blue"}), None)).await.json();
    assert!(
        unknown["Reason"].as_str().unwrap().contains("Colour"),
        "{unknown}"
    );

    // A huge Reason is trimmed to fit 4,096 bytes.
    let long: Vec<String> = (0..300).map(|i| format!("not-an-email-{i}")).collect();
    let big = answer(
        &w,
        &sink,
        request(
            &sink,
            "Create",
            "Big",
            json!({"Hostnames": "x.example.com", "Origin": "http://a:1", "AllowEmails": long}),
            None,
        ),
    )
    .await;
    assert_eq!(big.json()["Status"], "FAILED");

    // Cloudflare failing: FAILED with a clear reason, well before the deadline.
    w.fault(json!({"status": 500, "count": 100000})).await;
    let started = Instant::now();
    let cf = answer(
        &w,
        &sink,
        request(&sink, "Create", "Down", props(&["down.example.com"]), None),
    )
    .await
    .json();
    assert_eq!(cf["Status"], "FAILED");
    assert!(
        cf["Reason"].as_str().unwrap().contains("Cloudflare"),
        "{cf}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    w.clear_faults().await;

    // Cloudflare too slow for the deadline: FAILED at least 10 s before it.
    w.fault(json!({"latency_ms": 4000, "count": 100000})).await;
    let event = request(&sink, "Create", "Slow", props(&["slow.example.com"]), None);
    let before = sink.received().len();
    let started = Instant::now();
    let inv =
        w.rt.invoke_with_deadline(event, Duration::from_secs(16), Duration::from_secs(30))
            .await
            .unwrap();
    let took = started.elapsed();
    assert!(inv.outcome.response().is_some(), "{:?}", inv.outcome);
    assert!(
        took < Duration::from_secs(16),
        "answered before the deadline: {took:?}"
    );
    let got = sink.received();
    assert_eq!(got.len(), before + 1);
    let slow = got.last().unwrap().json();
    assert_eq!(slow["Status"], "FAILED");
    assert!(
        slow["Reason"].as_str().unwrap().contains("timed out"),
        "{slow}"
    );
    w.clear_faults().await;

    // The response PUT is retried on transport trouble.
    sink.fail_next(2);
    let ok = answer(
        &w,
        &sink,
        request(
            &sink,
            "Create",
            "Retry",
            props(&["retry.example.com"]),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(ok["Status"], "SUCCESS", "{ok}");

    let out = w.output();
    assert!(!out.contains(API_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_install_still_answers() {
    let mut w = World::start().await;
    w.extra_env
        .push(("ECS_TUNNELS_TOKEN_STORE".into(), "vault".into()));
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let r = answer(
        &w,
        &sink,
        request(&sink, "Create", "Tunnel", props(&["x.example.com"]), None),
    )
    .await
    .json();
    assert_eq!(r["Status"], "FAILED");
    assert!(
        r["Reason"]
            .as_str()
            .unwrap()
            .contains("ECS_TUNNELS_TOKEN_STORE"),
        "{r}"
    );
    let d = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Tunnel",
            json!({}),
            r["PhysicalResourceId"].as_str(),
        ),
    )
    .await
    .json();
    assert_eq!(
        d["Status"], "SUCCESS",
        "the rollback of a Create that made nothing never blocks the stack: {d}"
    );
    let d = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Tunnel",
            json!({}),
            Some(&format!("ecs-tunnels:{OWNER}:cfn.app/Tunnel")),
        ),
    )
    .await
    .json();
    assert_eq!(
        d["Status"], "FAILED",
        "objects may exist: the install must be fixed first: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_cold_start_does_not_fail_the_stack_forever() {
    // SSM throttles the API-token read at cold start (and through the SDK's own
    // retries, and once more on the first invocation). That container must not stay
    // "misconfigured": the next request, a Delete, initialises and answers SUCCESS
    // instead of leaving the stack in DELETE_FAILED.
    use devtools::aws_proxy::Fault;
    let mut w = World::start().await;
    w.put_api_token_parameter(API_TOKEN).await;
    w.aws
        .inject(Fault::new("ssm:GetParameter", "ThrottlingException", "Rate exceeded").times(6));
    w.spawn_function_reading_the_api_token_from_ssm();
    let sink = ResponseSink::start().await.unwrap();
    let id = format!("ecs-tunnels:{OWNER}:cfn.app/Tunnel");
    let first = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Tunnel",
            props(&["cr.example.com"]),
            Some(&id),
        ),
    )
    .await
    .json();
    assert_eq!(first["Status"], "FAILED", "{first}\n{}", w.output());
    assert!(
        first["Reason"]
            .as_str()
            .unwrap()
            .contains("ThrottlingException"),
        "{first}"
    );
    let second = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Tunnel",
            props(&["cr.example.com"]),
            Some(&id),
        ),
    )
    .await
    .json();
    assert_eq!(second["Status"], "SUCCESS", "{second}\n{}", w.output());
    assert_eq!(second["PhysicalResourceId"], id);
    assert!(!w.output().contains(API_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_manager_rotation_of_a_custom_resource_redeploys_its_service() {
    // With the Secrets Manager store, a custom resource's secret is named after the
    // resource (cfn.<stack>/<logical id>), but its tasks belong to the service named by
    // ServiceArn: finishSecret must redeploy that one.
    let mut w = World::start().await;
    let rotation_function = w.template_function_arn("SecretsRotationFunction");
    w.extra_env.extend([
        ("ECS_TUNNELS_TOKEN_STORE".into(), "secretsmanager".into()),
        (
            "ECS_TUNNELS_ROTATION_FUNCTION_ARN".into(),
            rotation_function,
        ),
    ]);
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let service_arn = w.seed("demo", "web", &[("team", "a")]).await;
    let mut p = props(&["cr.example.com"]);
    p["ServiceArn"] = json!(service_arn);
    let created = answer(&w, &sink, request(&sink, "Create", "Tunnel", p, None))
        .await
        .json();
    assert_eq!(created["Status"], "SUCCESS", "{created}\n{}", w.output());
    let sm = aws_sdk_secretsmanager::Client::new(&w.sdk);
    let d = sm
        .describe_secret()
        .secret_id("ecs-tunnels/cfn.app/Tunnel/token")
        .send()
        .await
        .unwrap();
    assert!(
        d.tags()
            .iter()
            .any(|t| t.key() == Some("ecs-tunnels:redeploys") && t.value() == Some("demo/web")),
        "{:?}",
        d.tags()
    );
    let arn = d.arn().unwrap().to_string();

    // The stack moves the tunnel to another service: the record follows.
    let api_arn = w.seed("demo", "api", &[("team", "a")]).await;
    let id = created["PhysicalResourceId"].as_str().unwrap().to_string();
    let mut p = props(&["cr.example.com"]);
    p["ServiceArn"] = json!(api_arn);
    let updated = answer(&w, &sink, request(&sink, "Update", "Tunnel", p, Some(&id)))
        .await
        .json();
    assert_eq!(updated["Status"], "SUCCESS", "{updated}\n{}", w.output());
    let before = w.deployment_id("demo", "api").await;
    let version = "7e6d5c4b-0000-1111-2222-333344445555";
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let r = w
            .invoke_ok(json!({"Step": step, "SecretId": arn, "ClientRequestToken": version}))
            .await;
        assert_eq!(r["step"], step, "{r}");
    }
    assert_ne!(
        w.deployment_id("demo", "api").await,
        before,
        "the ServiceArn's service was redeployed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_only_the_owner_can_start_does_not_fail_the_stack() {
    // The ServiceArn's service is deployed by CodeDeploy. When its token changes, only
    // its owner can start new tasks: the answer is SUCCESS with that in the Reason
    // (FAILED would fail the stack update, and then its rollback).
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let service_arn = devtools::seed::seed_service_deployed_by(
        &w.sdk,
        "demo",
        "web",
        &[("team", "a")],
        "CODE_DEPLOY",
    )
    .await;
    let mut p = props(&["cr.example.com"]);
    p["ServiceArn"] = json!(service_arn);
    let created = answer(
        &w,
        &sink,
        request(&sink, "Create", "Tunnel", p.clone(), None),
    )
    .await
    .json();
    assert_eq!(created["Status"], "SUCCESS", "{created}\n{}", w.output());
    let id = created["PhysicalResourceId"].as_str().unwrap().to_string();

    // The stored token goes stale; the next Update repairs it.
    let tid = created["Data"]["TunnelId"].as_str().unwrap().to_string();
    w.make_token_stale("/ecs-tunnels/cfn.app/Tunnel/token", &tid)
        .await;
    let updated = answer(&w, &sink, request(&sink, "Update", "Tunnel", p, Some(&id)))
        .await
        .json();
    assert_eq!(updated["Status"], "SUCCESS", "{updated}\n{}", w.output());
    let reason = updated["Reason"].as_str().unwrap();
    assert!(
        reason.contains("redeploy needed") && reason.contains("CODE_DEPLOY"),
        "{reason}"
    );
    assert_eq!(updated["Data"]["TunnelId"], json!(tid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_delete_of_a_create_that_timed_out_removes_what_it_made() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();

    // Cloudflare is slow: the Create makes some objects, then runs into the answer's
    // margin before the deadline and answers FAILED.
    w.fault(json!({"latency_ms": 1200, "count": 100000})).await;
    let event = request(&sink, "Create", "Slow", props(&["slow.example.com"]), None);
    let before = sink.received().len();
    let inv =
        w.rt.invoke_with_deadline(event, Duration::from_secs(20), Duration::from_secs(40))
            .await
            .unwrap();
    assert!(inv.outcome.response().is_some(), "{:?}", inv.outcome);
    let got = sink.received();
    assert_eq!(got.len(), before + 1);
    let failed = got.last().unwrap().json();
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    assert!(
        failed["Reason"].as_str().unwrap().contains("timed out"),
        "{failed}"
    );
    w.clear_faults().await;
    let made = w.live_tunnels().await.len() + w.policies().await.len();
    assert!(
        made > 0,
        "the Create made something before it timed out: {}",
        w.requests().await
    );

    // CloudFormation rolls back with a Delete of the id the FAILED answer gave.
    let id = failed["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(id, format!("ecs-tunnels:{OWNER}:cfn.app/Slow"));
    let del = answer(
        &w,
        &sink,
        request(
            &sink,
            "Delete",
            "Slow",
            props(&["slow.example.com"]),
            Some(&id),
        ),
    )
    .await
    .json();
    assert_eq!(del["Status"], "SUCCESS", "{del}");
    assert!(
        w.live_tunnels().await.is_empty(),
        "{:?}",
        w.live_tunnels().await
    );
    assert!(w.dns_records().await.is_empty());
    assert!(w.access_apps().await.is_empty());
    assert!(w.policies().await.is_empty());
    assert!(w.token_parameter("cfn.app", "Slow").await.is_none());
}

/// The schedule's report for the custom resource `cfn.app/<logical>`.
fn by_of(resp: &Value, logical: &str) -> Value {
    resp["rotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"]["cluster"] == "cfn.app" && r["service"]["service"] == logical)
        .cloned()
        .unwrap_or_else(|| panic!("{logical} not in {resp}"))
}

async fn tunnel_by_id(w: &World, id: &str) -> Value {
    w.live_tunnels()
        .await
        .into_iter()
        .find(|t| t["id"] == id)
        .expect("tunnel")
}

async fn backdate_rotation(w: &World, name: &str, days: u64) {
    let at = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - Duration::from_secs(days * 86400),
    )
    .to_string();
    aws_sdk_ssm::Client::new(&w.sdk)
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("ecs-tunnels:rotated-at")
                .value(at)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_rotates_on_schedule_and_redeploys_its_service() {
    let mut w = World::start().await;
    w.spawn_function().await;
    let sink = ResponseSink::start().await.unwrap();
    let service_arn = w.seed("demo", "web", &[("team", "a")]).await;
    let mut p = props(&["cr.example.com"]);
    p["ServiceArn"] = json!(service_arn);
    p["RotateEvery"] = json!("1d");
    let created = answer(&w, &sink, request(&sink, "Create", "Tunnel", p, None))
        .await
        .json();
    assert_eq!(created["Status"], "SUCCESS", "{created}\n{}", w.output());
    let mut p = props(&["later.example.com"]);
    p["RotateEvery"] = json!("7d");
    let later = answer(&w, &sink, request(&sink, "Create", "Later", p, None))
        .await
        .json();
    assert_eq!(later["Status"], "SUCCESS", "{later}");

    // Both were last rotated two days ago: one is due (1d), the other not (7d).
    backdate_rotation(&w, "/ecs-tunnels/cfn.app/Tunnel/token", 2).await;
    backdate_rotation(&w, "/ecs-tunnels/cfn.app/Later/token", 2).await;
    let tid = created["Data"]["TunnelId"].as_str().unwrap().to_string();
    let secret = tunnel_by_id(&w, &tid).await["secret_sha"].clone();
    let (old_token, _) = w.token_parameter("cfn.app", "Tunnel").await.unwrap();
    let later_token = w.token_parameter("cfn.app", "Later").await.unwrap();
    let deployment = w.deployment_id("demo", "web").await;

    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    let by = |s: &str| by_of(&resp, s);
    assert_eq!(by("Tunnel")["rotated"], true, "{resp}\n{}", w.output());
    assert_eq!(by("Later")["rotated"], false, "{resp}");
    assert_eq!(by("Later")["due"], false, "{resp}");

    assert_ne!(
        tunnel_by_id(&w, &tid).await["secret_sha"],
        secret,
        "secret rotated"
    );
    let (new_token, _) = w.token_parameter("cfn.app", "Tunnel").await.unwrap();
    assert_ne!(new_token, old_token);
    assert!(w.token_connects(&new_token).await, "the new token connects");
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "the ServiceArn's service was redeployed"
    );
    let tags = w.token_parameter_tags("cfn.app", "Tunnel").await;
    assert!(
        !tags.contains_key("ecs-tunnels:rotation") && !tags.contains_key("ecs-tunnels:redeploy"),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("ecs-tunnels:rotated-by").map(String::as_str),
        Some("schedule")
    );
    assert_eq!(
        tags.get("ecs-tunnels:rotate-every").map(String::as_str),
        Some("1day"),
        "the period is recorded where the schedule sees it"
    );
    assert_eq!(
        w.token_parameter("cfn.app", "Later").await.unwrap(),
        later_token,
        "not due: untouched"
    );
    assert!(!w.output().contains(&new_token) && !w.output().contains(&old_token));

    // Crash-safe like a service's rotation. A run that died after its PATCH, 20 minutes
    // ago (its mark expired): the schedule stores the token Cloudflare serves and
    // redeploys, although the resource is not due.
    let name = "/ecs-tunnels/cfn.app/Tunnel/token";
    let set_mark = |mark: String| {
        let ssm = aws_sdk_ssm::Client::new(&w.sdk);
        async move {
            ssm.add_tags_to_resource()
                .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .tags(
                    aws_sdk_ssm::types::Tag::builder()
                        .key("ecs-tunnels:rotation")
                        .value(mark)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
        }
    };
    let minutes_ago = |m: u64| {
        humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - Duration::from_secs(m * 60),
        )
        .to_string()
    };
    set_mark(format!("schedule {}", minutes_ago(20))).await;
    w.make_token_stale(name, &tid).await;
    let deployment = w.deployment_id("demo", "web").await;
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    assert_eq!(by_of(&resp, "Tunnel")["error"], Value::Null, "{resp}");
    let (repaired, _) = w.token_parameter("cfn.app", "Tunnel").await.unwrap();
    assert!(w.token_connects(&repaired).await, "repaired");
    assert_ne!(
        w.deployment_id("demo", "web").await,
        deployment,
        "redeployed"
    );
    let tags = w.token_parameter_tags("cfn.app", "Tunnel").await;
    assert!(
        !tags.contains_key("ecs-tunnels:rotation") && !tags.contains_key("ecs-tunnels:redeploy"),
        "{tags:?}"
    );

    // A compromised rotation that died before its PATCH (old-format mark): rotated now,
    // every connection dropped.
    let secret = tunnel_by_id(&w, &tid).await["secret_sha"].clone();
    set_mark("compromised".into()).await;
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    assert_eq!(by_of(&resp, "Tunnel")["rotated"], true, "{resp}");
    let t = tunnel_by_id(&w, &tid).await;
    assert_ne!(t["secret_sha"], secret, "rotated");
    assert_eq!(t["connectors"], json!([]), "every connection dropped: {t}");
    assert!(
        w.token_connects(&w.token_parameter("cfn.app", "Tunnel").await.unwrap().0)
            .await,
        ""
    );

    // A fresh mark belongs to a run still working on it: even when due, its rotation is
    // left alone; only a stale stored token is repaired at once.
    backdate_rotation(&w, name, 2).await;
    let fresh = format!("schedule {}", minutes_ago(0));
    set_mark(fresh.clone()).await;
    w.make_token_stale(name, &tid).await;
    let secret = tunnel_by_id(&w, &tid).await["secret_sha"].clone();
    let resp = w.invoke_ok(sample("schedule-rotate.json")).await;
    assert!(
        w.token_connects(&w.token_parameter("cfn.app", "Tunnel").await.unwrap().0)
            .await,
        "repaired under the live mark"
    );
    let r = by_of(&resp, "Tunnel");
    assert_eq!(r["rotated"], false, "{resp}");
    assert!(
        r["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("rotation in progress"),
        "{resp}"
    );
    assert_eq!(tunnel_by_id(&w, &tid).await["secret_sha"], secret);
    assert_eq!(
        w.token_parameter_tags("cfn.app", "Tunnel").await["ecs-tunnels:rotation"],
        fresh
    );

    // Deleting the resources leaves nothing.
    for (logical, id) in [("Tunnel", &created), ("Later", &later)] {
        let del = answer(
            &w,
            &sink,
            request(
                &sink,
                "Delete",
                logical,
                json!({}),
                id["PhysicalResourceId"].as_str(),
            ),
        )
        .await
        .json();
        assert_eq!(del["Status"], "SUCCESS", "{del}");
    }
    assert!(w.live_tunnels().await.is_empty());
    assert!(w.dns_records().await.is_empty());
    assert!(w.access_apps().await.is_empty());
    assert!(w.policies().await.is_empty());
    assert!(w.token_parameter("cfn.app", "Tunnel").await.is_none());
    assert!(w.token_parameter("cfn.app", "Later").await.is_none());
}
