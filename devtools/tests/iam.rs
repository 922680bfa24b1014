//! The AWS proxy and the IAM authorizer against real moto and the real Node evaluator:
//! calls a function process may make pass, calls outside the template are refused as AWS
//! would refuse them, faults are answered in the shape the SDK expects, and the current
//! `infra/template.yaml` resolves to the policies each function gets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ssm::config::{Credentials, Region};
use devtools::aws_proxy::{Answered, AwsProxy, CallInfo, Fault};
use devtools::iam::evaluator::Decision;
use devtools::iam::template::ResolvedTemplate;
use devtools::iam::triggers::TriggerMap;
use devtools::iam::{self, IamAuthorizer, FUNCTION_ACCESS_KEY_ID};
use devtools::moto::Moto;
use devtools::runtime_api::RuntimeApi;
use serde_json::{json, Value};

fn sdk(endpoint: &str, key: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(
            Credentials::new(key, "secret", None, None, "test"),
        ))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build()
}

fn resolved_readme_template() -> ResolvedTemplate {
    let t = iam::expanded_template().expect("expand infra/template.yaml (scripts/setup-python.sh)");
    ResolvedTemplate::resolve(&t, &iam::readme_parameters()).expect("resolve")
}

fn call(service: &str, operation: &str, params: Value) -> CallInfo {
    CallInfo {
        service: service.into(),
        operation: operation.into(),
        params,
        access_key_id: Some(FUNCTION_ACCESS_KEY_ID.into()),
        region: Some("us-east-1".into()),
        trace_id: None,
    }
}

#[test]
fn current_template_with_readme_parameters() {
    let t = resolved_readme_template();
    let mut shown = String::new();
    for (id, f) in &t.functions {
        shown.push_str(&format!("{id} ({}, role {}):\n", f.name, f.role_arn));
        for p in &f.policies {
            shown.push_str(&format!("  {}: {}\n", p.name, p.document["Statement"]));
        }
        shown.push_str(&format!("  not evaluated: {:?}\n", f.not_evaluated));
    }
    println!("{shown}");
    let ids: Vec<&str> = t.functions.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "CustomResourceFunction",
            "EventsFunction",
            "SecretsRotationFunction",
            "SweepFunction"
        ],
        "{shown}"
    );
    let names = |id: &str| {
        t.functions[id]
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("EventsFunction"),
        [
            "ReadApiTokenPolicy",
            "ReconcilePolicy",
            "DiagnosePolicy",
            "FollowUpPolicy",
            "ScheduleRotationPolicy"
        ]
    );
    assert_eq!(
        names("SweepFunction"),
        [
            "ReadApiTokenPolicy",
            "ReconcilePolicy",
            "SweepPolicy",
            "DiagnosePolicy",
            "RedeployAnyServicePolicy",
            "ScheduleRotationPolicy"
        ]
    );
    assert_eq!(
        names("CustomResourceFunction"),
        [
            "ReadApiTokenPolicy",
            "ReconcilePolicy",
            "RedeployAnyServicePolicy",
            "ScheduleRotationPolicy"
        ]
    );
    assert_eq!(
        names("SecretsRotationFunction"),
        [
            "ReadApiTokenPolicy",
            "ReconcilePolicy",
            "RedeployAnyServicePolicy"
        ]
    );
    for f in t.functions.values() {
        assert!(
            f.not_evaluated
                .iter()
                .any(|a| a.ends_with("/AWSLambdaBasicExecutionRole")),
            "{shown}"
        );
    }
    // The Secrets Manager store is on: the ReconcilePolicy statement for secrets is there.
    let reconcile = &t.functions["SweepFunction"].policies[1].document["Statement"];
    assert!(
        reconcile.as_array().unwrap().iter().any(|s| s["Resource"]
            == json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-tunnels/*")),
        "{reconcile}"
    );
    assert_eq!(
        t.functions["SweepFunction"].environment["ECS_TUNNELS_ROTATION_FUNCTION_ARN"],
        t.functions["SecretsRotationFunction"].arn
    );
    assert_eq!(
        t.functions["SweepFunction"].environment["CLOUDFLARE_API_TOKEN_PARAMETER"],
        "/cloudflare/api-token"
    );

    let triggers = TriggerMap::from_template(&t);
    assert_eq!(triggers.queue, ["EventsFunction"]);
    assert_eq!(
        triggers.custom_resource.as_deref(),
        Some("CustomResourceFunction")
    );
    assert_eq!(triggers.secrets_rotation, ["SecretsRotationFunction"]);
    let schedules: Vec<(&str, &str)> = triggers
        .schedules
        .iter()
        .map(|s| (s.name.as_str(), s.function.as_str()))
        .collect();
    assert_eq!(
        schedules,
        [
            ("ecs-tunnels-rotate", "SweepFunction"),
            ("ecs-tunnels-sweep", "SweepFunction")
        ]
    );
    let sample = |name: &str| -> Value {
        let p = devtools::moto::workspace_root().join("events").join(name);
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for (event, function) in [
        ("schedule-sweep.json", "SweepFunction"),
        ("schedule-rotate.json", "SweepFunction"),
        ("schedule-input-sweep.json", "SweepFunction"),
        ("cloudformation-create.json", "CustomResourceFunction"),
        (
            "secretsmanager-createSecret.json",
            "SecretsRotationFunction",
        ),
        ("sqs-wrapped-task-running.json", "EventsFunction"),
        ("ecs-task-running.json", "EventsFunction"),
        ("cloudtrail-tag-resource.json", "EventsFunction"),
        ("tag-change-on-resource.json", "EventsFunction"),
    ] {
        assert_eq!(
            triggers.functions_for_event(&sample(event)).unwrap(),
            [function],
            "{event}"
        );
    }
}

#[tokio::test]
async fn a_diagnosis_reads_roles_and_policies_of_its_own_account_only() {
    let moto = Moto::start().await.expect("moto");
    let auth = IamAuthorizer::for_template(&iam::readme_parameters(), &moto.endpoint())
        .await
        .expect("authorizer");
    let decision = |checks: Vec<devtools::iam::Check>| {
        assert_eq!(checks.len(), 1);
        checks[0].result.result
    };
    let reads = [
        call(
            "iam",
            "GetRole",
            json!({"RoleName": "ecsTaskExecutionRole"}),
        ),
        call("iam", "ListRolePolicies", json!({"RoleName": "exec"})),
        call(
            "iam",
            "GetRolePolicy",
            json!({"RoleName": "exec", "PolicyName": "p"}),
        ),
        call(
            "iam",
            "ListAttachedRolePolicies",
            json!({"RoleName": "exec"}),
        ),
        call(
            "iam",
            "GetPolicy",
            json!({"PolicyArn": "arn:aws:iam::123456789012:policy/read-token"}),
        ),
        call(
            "iam",
            "GetPolicyVersion",
            json!({"PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", "VersionId": "v1"}),
        ),
    ];
    // The functions that reconcile on events and on the schedule may read them...
    for function in ["EventsFunction", "SweepFunction"] {
        for c in &reads {
            let d = decision(auth.check(function, c).await.expect("evaluate"));
            assert_eq!(d, Decision::Allowed, "{function} {}", c.name());
        }
    }
    // ...the others may not, and nothing of another account is readable.
    for function in ["CustomResourceFunction", "SecretsRotationFunction"] {
        let d = decision(auth.check(function, &reads[0]).await.expect("evaluate"));
        assert_eq!(d, Decision::ImplicitlyDenied, "{function}");
    }
    let foreign = call(
        "iam",
        "GetPolicyVersion",
        json!({"PolicyArn": "arn:aws:iam::999999999999:policy/x", "VersionId": "v1"}),
    );
    let d = decision(
        auth.check("SweepFunction", &foreign)
            .await
            .expect("evaluate"),
    );
    assert_eq!(d, Decision::ImplicitlyDenied);
}

#[tokio::test]
async fn api_token_parameter_with_a_leading_slash_is_readable_by_every_function() {
    let moto = Moto::start().await.expect("moto");
    let started = Instant::now();
    let expanded = iam::expanded_template().expect("expand");
    let expand_time = started.elapsed();
    let started = Instant::now();
    let resolved =
        ResolvedTemplate::resolve(&expanded, &iam::readme_parameters()).expect("resolve");
    let resolve_time = started.elapsed();
    let started = Instant::now();
    let auth = IamAuthorizer::start(resolved, &moto.endpoint())
        .await
        .expect("authorizer");
    println!(
        "cost: SAM expansion {expand_time:?} (once per test process), resolve {resolve_time:?}, Node start + policy load {:?}",
        started.elapsed()
    );
    let get = call(
        "ssm",
        "GetParameter",
        json!({"Name": "/cloudflare/api-token", "WithDecryption": true}),
    );
    for function in ["EventsFunction", "SweepFunction", "SecretsRotationFunction"] {
        let checks = auth.check(function, &get).await.expect("evaluate");
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].request.resource,
            "arn:aws:ssm:us-east-1:123456789012:parameter/cloudflare/api-token"
        );
        // The template once granted `parameter/${CloudflareApiTokenParameter}`, which for
        // `/cloudflare/api-token` is `parameter//cloudflare/api-token`: every cold start
        // was denied. It now builds the ARN IAM evaluates.
        assert_eq!(
            checks[0].result.result,
            Decision::Allowed,
            "{function}: GetParameter /cloudflare/api-token: {:?}",
            checks[0].result
        );
    }
    // ...and nothing wider: another parameter stays out of reach.
    let other = auth
        .check(
            "SweepFunction",
            &call(
                "ssm",
                "GetParameter",
                json!({"Name": "/cloudflare/other-secret"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(other[0].result.result, Decision::ImplicitlyDenied);
}

#[tokio::test]
async fn function_calls_are_judged_by_the_template_and_denied_like_aws() {
    let moto = Moto::start().await.expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint()).await.expect("proxy");
    let rt = RuntimeApi::start().await.expect("runtime api");
    let auth = Arc::new(
        IamAuthorizer::for_template(&iam::readme_parameters(), &moto.endpoint())
            .await
            .expect("authorizer")
            .with_runtime(&rt),
    );
    proxy.set_authorizer(auth.clone());

    // The harness seeds moto through the proxy with its own key: not evaluated.
    let harness = sdk(&proxy.endpoint(), "test");
    devtools::seed::seed_service(
        &harness,
        "prod",
        "web",
        &[("ecs-tunnels:hostname", "web.example.com")],
    )
    .await;
    let ssm_h = aws_sdk_ssm::Client::new(&harness);
    ssm_h
        .put_parameter()
        .name("/ecs-tunnels/prod/web/token")
        .value("t")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("seed parameter");
    assert!(
        proxy.denials().is_empty(),
        "harness calls are not evaluated: {:?}",
        proxy.denials()
    );

    // A function-like client: the marker key, no trace id (cold start: every role).
    let function = sdk(&proxy.endpoint(), FUNCTION_ACCESS_KEY_ID);
    let ssm = aws_sdk_ssm::Client::new(&function);
    let ecs = aws_sdk_ecs::Client::new(&function);
    // (a) allowed for every function: ReconcilePolicy covers parameter/ecs-tunnels/*.
    let started = Instant::now();
    let got = ssm
        .get_parameter()
        .name("/ecs-tunnels/prod/web/token")
        .with_decryption(true)
        .send()
        .await
        .expect("allowed GetParameter");
    let first = started.elapsed();
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("t"));
    let d = ecs
        .describe_services()
        .cluster("prod")
        .services("web")
        .send()
        .await
        .expect("allowed DescribeServices");
    assert_eq!(d.services().len(), 1);
    assert!(proxy.denials().is_empty(), "{:?}", proxy.denials());

    // (b) outside the template: a parameter outside the prefix, a service of another account.
    let err = ssm
        .put_parameter()
        .name("/other/secret")
        .value("x")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect_err("PutParameter outside the prefix");
    let se = err.as_service_error().expect("a service error");
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(se),
        Some("AccessDeniedException")
    );
    let msg = aws_sdk_ssm::error::ProvideErrorMetadata::message(se)
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with("User: arn:aws:sts::123456789012:assumed-role/ecs-tunnels-")
            && msg.ends_with(" is not authorized to perform: ssm:PutParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter/other/secret because no identity-based policy allows the ssm:PutParameter action"),
        "{msg}"
    );
    let foreign = "arn:aws:ecs:us-east-1:999999999999:service/prod/web";
    let err = ecs
        .update_service()
        .cluster("prod")
        .service(foreign)
        .force_new_deployment(true)
        .send()
        .await
        .expect_err("foreign service");
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(err.as_service_error().unwrap()),
        Some("AccessDeniedException")
    );

    let denials = proxy.take_denials();
    let seen: Vec<(&str, &str)> = denials
        .iter()
        .map(|d| (d.action.as_str(), d.resource.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "ssm:PutParameter",
                "arn:aws:ssm:us-east-1:123456789012:parameter/other/secret"
            ),
            ("ecs:UpdateService", foreign)
        ],
        "{denials:#?}"
    );
    assert!(proxy.denials().is_empty(), "take_denials empties the list");
    // Denied calls never reach moto, and are recorded as such.
    let calls = proxy.calls();
    let denied: Vec<String> = calls
        .iter()
        .filter(|c| c.answered == Answered::Denied)
        .map(|c| c.call.name())
        .collect();
    assert_eq!(denied, ["ssm:PutParameter", "ecs:UpdateService"]);
    assert!(
        ssm_h
            .get_parameter()
            .name("/other/secret")
            .send()
            .await
            .is_err(),
        "the denied PutParameter never reached moto"
    );

    // With a trace id, only the role of the function that receives the event applies:
    // ListClusters is in SweepPolicy only.
    let list_clusters = |trace: String| {
        let proxy = proxy.endpoint();
        async move {
            reqwest::Client::new()
                .post(format!("{proxy}/"))
                .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters")
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amzn-trace-id", trace)
                .header(
                    "authorization",
                    format!("AWS4-HMAC-SHA256 Credential={FUNCTION_ACCESS_KEY_ID}/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (event, expected_status) in [
        (
            json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:123456789012:rule/ecs-tunnels-sweep"]}),
            200,
        ),
        (
            json!({"Step": "createSecret", "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x", "ClientRequestToken": "t"}),
            400,
        ),
    ] {
        // Play the function: take the invocation, call AWS with its trace id, answer.
        let base = rt.base_url();
        let poller = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let next = http
                .get(format!("{base}/2018-06-01/runtime/invocation/next"))
                .send()
                .await
                .unwrap();
            let id = next.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let trace = next.headers()["lambda-runtime-trace-id"]
                .to_str()
                .unwrap()
                .to_string();
            (http, base, id, trace)
        });
        let invoke = rt.invoke(event.clone(), Duration::from_secs(20));
        let answer = async {
            let (http, base, id, trace) = poller.await.unwrap();
            let status = list_clusters(trace).await;
            http.post(format!(
                "{base}/2018-06-01/runtime/invocation/{id}/response"
            ))
            .body("{}")
            .send()
            .await
            .unwrap();
            status
        };
        let (inv, status) = tokio::join!(invoke, answer);
        inv.expect("invocation");
        assert_eq!(status, expected_status, "ListClusters during {event}");
    }
    let last = proxy.take_denials();
    assert_eq!(last.len(), 1, "{last:#?}");
    assert!(
        last[0]
            .principal
            .ends_with("/ecs-tunnels-SecretsRotationFunction"),
        "{:?}",
        last[0]
    );
    assert!(
        last[0].detail.contains("SecretsRotationFunction"),
        "{}",
        last[0].detail
    );

    // The evaluator and the mapping agree on which actions take no resource-level scope.
    for e in auth.evaluated() {
        for c in &e.checks {
            assert_eq!(
                c.result.wildcard_only,
                Some(c.request.resource == "*"),
                "{} on {}",
                c.request.action,
                c.request.resource
            );
            assert!(c.result.errors.is_empty(), "{:?}", c.result);
        }
    }

    // Cost: one more allowed call, timed.
    let n = 20;
    let started = Instant::now();
    for _ in 0..n {
        ssm.get_parameter()
            .name("/ecs-tunnels/prod/web/token")
            .send()
            .await
            .unwrap();
    }
    let judged = started.elapsed() / n;
    let plain = sdk(&moto.endpoint(), "test");
    let ssm_plain = aws_sdk_ssm::Client::new(&plain);
    let started = Instant::now();
    for _ in 0..n {
        ssm_plain
            .get_parameter()
            .name("/ecs-tunnels/prod/web/token")
            .send()
            .await
            .unwrap();
    }
    let direct = started.elapsed() / n;
    println!("first judged call {first:?}; per call: through proxy + 3 roles judged {judged:?}, direct to moto {direct:?}");
    println!("not judged so far:\n{}", auth.unjudged().join("\n"));
}

#[tokio::test]
async fn injected_faults_look_like_aws_errors() {
    let moto = Moto::start().await.expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint()).await.expect("proxy");
    let ssm = aws_sdk_ssm::Client::new(&sdk(&proxy.endpoint(), "test"));
    ssm.put_parameter()
        .name("/ecs-tunnels/c/s/token")
        .value("v")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();

    // Two throttles: the SDK retries them as throttling and the third attempt succeeds.
    proxy.inject(Fault::new("ssm:GetParameter", "ThrottlingException", "Rate exceeded").times(2));
    let got = ssm
        .get_parameter()
        .name("/ecs-tunnels/c/s/token")
        .with_decryption(true)
        .send()
        .await
        .expect("retried through the throttles");
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("v"));
    let gets: Vec<(Answered, u16, Option<String>)> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.call.operation == "GetParameter")
        .map(|c| (c.answered, c.status, c.error_type))
        .collect();
    assert_eq!(
        gets,
        [
            (
                Answered::Fault,
                400,
                Some("ThrottlingException".to_string())
            ),
            (
                Answered::Fault,
                400,
                Some("ThrottlingException".to_string())
            ),
            (Answered::Forwarded, 200, None),
        ]
    );

    // More throttles than attempts: the caller sees ThrottlingException / "Rate exceeded".
    proxy.inject(Fault::new("GetParameter", "ThrottlingException", "Rate exceeded").times(5));
    let err = ssm
        .get_parameter()
        .name("/ecs-tunnels/c/s/token")
        .send()
        .await
        .expect_err("throttled");
    let se = err
        .as_service_error()
        .expect("a service error, not a dispatch failure");
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::code(se),
        Some("ThrottlingException")
    );
    assert_eq!(
        aws_sdk_ssm::error::ProvideErrorMetadata::message(se),
        Some("Rate exceeded")
    );
    proxy.clear_faults();

    // A modelled error keeps its type: ParameterNotFound from a fault is the SDK's variant.
    proxy.inject(Fault::new(
        "ssm:GetParameter",
        "ParameterNotFound",
        "no such parameter",
    ));
    let err = ssm
        .get_parameter()
        .name("/ecs-tunnels/c/s/token")
        .send()
        .await
        .expect_err("not found");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_parameter_not_found()),
        "{err:?}"
    );
    // Other operations and errors from moto itself pass through and are recorded.
    let err = ssm
        .get_parameter()
        .name("/nope")
        .send()
        .await
        .expect_err("moto's own not found");
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_parameter_not_found()));
    let last = proxy.calls().pop().unwrap();
    assert_eq!(
        (last.answered, last.status, last.error_type.as_deref()),
        (Answered::Forwarded, 400, Some("ParameterNotFound"))
    );
    let _ = BTreeMap::<String, String>::new();
}

/// Secrets are judged on their full ARN with their current tags, and RotateSecret on its
/// implied `lambda:InvokeFunction`.
#[tokio::test]
async fn secrets_are_judged_on_their_full_arn_and_tags() {
    let moto = Moto::start().await.expect("moto");
    let created: Value = reqwest::Client::new()
        .post(format!("{}/", moto.endpoint()))
        .header("x-amz-target", "secretsmanager.CreateSecret")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(json!({"Name": "ecs-tunnels/prod/web/token", "SecretString": "t", "Tags": [{"Key": "ecs-tunnels:owner", "Value": "me"}]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let arn = created["ARN"].as_str().expect("ARN").to_string();
    let auth = IamAuthorizer::for_template(&iam::readme_parameters(), &moto.endpoint())
        .await
        .expect("authorizer");
    let checks = auth
        .check(
            "SweepFunction",
            &call(
                "secretsmanager",
                "DescribeSecret",
                json!({"SecretId": "ecs-tunnels/prod/web/token"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        checks[0].request.resource, arn,
        "the full ARN, suffix included"
    );
    assert_eq!(
        checks[0].request.context["aws:ResourceTag/ecs-tunnels:owner"],
        json!("me")
    );
    assert_eq!(
        checks[0].result.result,
        Decision::Allowed,
        "{:?}",
        checks[0].result
    );
    assert!(checks[0].result.errors.is_empty());

    let rotation_function = auth.template().functions["SecretsRotationFunction"]
        .arn
        .clone();
    let rotate = call(
        "secretsmanager",
        "RotateSecret",
        json!({"SecretId": "ecs-tunnels/prod/web/token", "RotationLambdaARN": rotation_function, "RotateImmediately": false}),
    );
    for function in ["EventsFunction", "SweepFunction"] {
        let checks = auth.check(function, &rotate).await.unwrap();
        let verdicts: Vec<(&str, Decision)> = checks
            .iter()
            .map(|c| (c.request.action.as_str(), c.result.result))
            .collect();
        // RotateSecret with a RotationLambdaARN also needs lambda:InvokeFunction on that
        // function ("You also need lambda:InvokeFunction permissions on the rotation
        // function", RotateSecret API reference); the template grants exactly that.
        assert_eq!(
            verdicts,
            [
                ("secretsmanager:RotateSecret", Decision::Allowed),
                ("lambda:InvokeFunction", Decision::Allowed)
            ],
            "{function}"
        );
    }
    // The rotation function's own role does not schedule rotations.
    let checks = auth
        .check("SecretsRotationFunction", &rotate)
        .await
        .unwrap();
    assert!(checks
        .iter()
        .any(|c| c.request.action == "lambda:InvokeFunction"
            && c.result.result == Decision::ImplicitlyDenied));
}

/// Tag and redeploy permissions are narrow: a function may write only the status tag,
/// and the event and sweep functions redeploy only services tagged for exposure (a
/// custom resource's service carries no ecs-tunnels tags: the custom-resource function
/// and the rotation target may redeploy any service of the account).
#[tokio::test]
async fn tag_and_redeploy_permissions_are_narrow() {
    let moto = Moto::start().await.expect("moto");
    let harness = sdk(&moto.endpoint(), "test");
    devtools::seed::seed_service(
        &harness,
        "prod",
        "web",
        &[("ecs-tunnels:hostname", "web.example.com")],
    )
    .await;
    devtools::seed::seed_service(&harness, "prod", "plain", &[("team", "payments")]).await;
    let auth = IamAuthorizer::for_template(&iam::readme_parameters(), &moto.endpoint())
        .await
        .expect("authorizer");
    let arn = |s: &str| format!("arn:aws:ecs:us-east-1:123456789012:service/prod/{s}");
    let verdict = |checks: Vec<devtools::iam::Check>| {
        checks.iter().all(|c| c.result.result == Decision::Allowed)
    };
    let tag = |key: &str| {
        call(
            "ecs",
            "TagResource",
            json!({"resourceArn": arn("web"), "tags": [{"key": key, "value": "x"}]}),
        )
    };
    let untag = |key: &str| {
        call(
            "ecs",
            "UntagResource",
            json!({"resourceArn": arn("web"), "tagKeys": [key]}),
        )
    };
    let redeploy = |s: &str| {
        call(
            "ecs",
            "UpdateService",
            json!({"cluster": "prod", "service": s, "forceNewDeployment": true}),
        )
    };
    for f in ["EventsFunction", "SweepFunction", "CustomResourceFunction"] {
        assert!(
            verdict(auth.check(f, &tag("ecs-tunnels:status")).await.unwrap()),
            "{f}"
        );
        assert!(
            verdict(auth.check(f, &untag("ecs-tunnels:status")).await.unwrap()),
            "{f}"
        );
        for other in ["team", "ecs-tunnels:hostname"] {
            assert!(
                !verdict(auth.check(f, &tag(other)).await.unwrap()),
                "{f} tags {other}"
            );
            assert!(
                !verdict(auth.check(f, &untag(other)).await.unwrap()),
                "{f} untags {other}"
            );
        }
        assert!(
            verdict(auth.check(f, &redeploy("web")).await.unwrap()),
            "{f}"
        );
    }
    assert!(
        !verdict(
            auth.check("EventsFunction", &redeploy("plain"))
                .await
                .unwrap()
        ),
        "EventsFunction may redeploy an untagged service"
    );
    // A custom resource's service carries no ecs-tunnels tag: the custom-resource
    // function, the scheduled rotation (SweepFunction) and the rotation target rotating
    // such a resource's secret redeploy it.
    for f in [
        "CustomResourceFunction",
        "SweepFunction",
        "SecretsRotationFunction",
    ] {
        assert!(
            verdict(auth.check(f, &redeploy("plain")).await.unwrap()),
            "{f}"
        );
        // ...to redeploy, not to change what runs.
        let swap = call(
            "ecs",
            "UpdateService",
            json!({"cluster": "prod", "service": "plain", "taskDefinition": "evil:1"}),
        );
        assert!(!verdict(auth.check(f, &swap).await.unwrap()), "{f}");
    }
}

#[tokio::test]
async fn bulk_token_reads_belong_to_the_sweep_alone() {
    let moto = Moto::start().await.expect("moto");
    let auth = IamAuthorizer::for_template(&iam::readme_parameters(), &moto.endpoint())
        .await
        .expect("authorizer");
    let allowed = |checks: &[devtools::iam::Check]| {
        checks.iter().all(|c| c.result.result == Decision::Allowed)
    };
    let list_parameters = call(
        "tag",
        "GetResources",
        json!({"ResourceTypeFilters": ["ssm:parameter"], "TagFilters": [{"Key": "ecs-tunnels:owner", "Values": ["o"]}], "ResourcesPerPage": 100}),
    );
    let list_secrets = call(
        "secretsmanager",
        "ListSecrets",
        json!({"MaxResults": 100, "Filters": [{"Key": "name", "Values": ["ecs-tunnels/"]}]}),
    );
    let read = |names: &[&str]| {
        call(
            "ssm",
            "GetParameters",
            json!({"Names": names, "WithDecryption": true}),
        )
    };
    let ours = read(&["/ecs-tunnels/prod/web/token", "/ecs-tunnels/prod/api/token"]);
    for bulk in [&list_parameters, &list_secrets, &ours] {
        let checks = auth.check("SweepFunction", bulk).await.unwrap();
        assert!(
            allowed(&checks),
            "SweepFunction {}: {checks:#?}",
            bulk.name()
        );
        for c in &checks {
            // The mapping and iam-data agree on which actions take no resource scope.
            assert_eq!(
                c.result.wildcard_only,
                Some(c.request.resource == "*"),
                "{}",
                c.request.action
            );
        }
        for f in [
            "EventsFunction",
            "CustomResourceFunction",
            "SecretsRotationFunction",
        ] {
            assert!(
                !allowed(&auth.check(f, bulk).await.unwrap()),
                "{f} may {}",
                bulk.name()
            );
        }
    }
    // Values outside the prefix stay out of reach, one name among ours is enough.
    let mixed = read(&["/ecs-tunnels/prod/web/token", "/cloudflare/api-token"]);
    assert!(!allowed(
        &auth.check("SweepFunction", &mixed).await.unwrap()
    ));
    // The bulk reads of before are gone from the template.
    for (op, params) in [
        (
            "GetParametersByPath",
            json!({"Path": "/ecs-tunnels", "Recursive": true, "WithDecryption": true}),
        ),
        ("DescribeParameters", json!({"ParameterFilters": []})),
    ] {
        assert!(
            !allowed(
                &auth
                    .check("SweepFunction", &call("ssm", op, params))
                    .await
                    .unwrap()
            ),
            "ssm:{op}"
        );
    }
}

// ---- Organization mode (issue 13) -----------------------------------------------------

const SPOKE_ROLE: &str = "ecs-tunnels-spoke";
const EXTERNAL_ID: &str = "ext-7f3c";

fn resolved_org_template() -> ResolvedTemplate {
    let t = iam::expanded_template().expect("expand infra/template.yaml (scripts/setup-python.sh)");
    ResolvedTemplate::resolve(&t, &iam::org_parameters(SPOKE_ROLE, EXTERNAL_ID)).expect("resolve")
}

/// A single-account stack has none of organization mode; a hub has it on the event and
/// sweep functions only, with the hub's owner id on every function.
#[test]
fn organization_mode_is_off_unless_a_spoke_role_is_named() {
    let single = resolved_readme_template();
    let org = resolved_org_template();
    let org_resources = [
        "AssumeSpokeRolePolicy",
        "AssumeOrganizationRolePolicy",
        "OrganizationEventBusPolicy",
        "AccountsEventBusPolicy",
    ];
    for id in org_resources {
        assert!(!single.resources.contains_key(id), "single account: {id}");
    }
    for out in ["HubAccountId", "HubEventBusArn", "HubFunctionRoleArns"] {
        assert!(!single.outputs.contains_key(out), "single account: {out}");
        assert!(org.outputs.contains_key(out), "hub: {out}");
    }
    for f in single.functions.values() {
        assert!(
            f.environment
                .keys()
                .all(|k| !k.starts_with("ECS_TUNNELS_SPOKE")
                    && k != "ECS_TUNNELS_ACCOUNTS"
                    && k != "ECS_TUNNELS_REGIONS"
                    && k != "ECS_TUNNELS_ORGANIZATION_ROLE_ARN"),
            "{}: {:?}",
            f.logical_id,
            f.environment
        );
        assert_eq!(
            f.environment["ECS_TUNNELS_OWNER"], "",
            "single account: OwnerId as given"
        );
        assert!(f.policies.iter().all(|p| !p.name.starts_with("Assume")));
    }
    // The hub: only the event and sweep functions assume spoke roles.
    for (id, f) in &org.functions {
        let assumes = f.policies.iter().any(|p| p.name == "AssumeSpokeRolePolicy");
        let reconciles_spokes = id == "EventsFunction" || id == "SweepFunction";
        assert_eq!(assumes, reconciles_spokes, "{id}");
        assert_eq!(
            f.environment
                .get("ECS_TUNNELS_SPOKE_ROLE")
                .map(String::as_str),
            reconciles_spokes.then_some(SPOKE_ROLE),
            "{id}"
        );
        assert_eq!(
            f.environment["ECS_TUNNELS_OWNER"], "123456789012-us-east-1",
            "{id}"
        );
    }
    let sweep = &org.functions["SweepFunction"].environment;
    assert_eq!(sweep["ECS_TUNNELS_SPOKE_EXTERNAL_ID"], EXTERNAL_ID);
    assert_eq!(sweep["ECS_TUNNELS_ACCOUNTS"], "111111111111 222222222222");
    assert_eq!(sweep["ECS_TUNNELS_REGIONS"], "us-east-1");
    assert!(!sweep.contains_key("ECS_TUNNELS_ORGANIZATION_ROLE_ARN"));
    let policy = &org.resources["AssumeSpokeRolePolicy"].properties["PolicyDocument"];
    assert_eq!(
        policy["Statement"],
        json!([{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/ecs-tunnels-spoke"}])
    );
    // Without an organization id, the listed accounts may send events to the hub's bus.
    assert!(!org.resources.contains_key("OrganizationEventBusPolicy"));
    assert_eq!(
        org.resources["AccountsEventBusPolicy"].properties["Statement"]["Principal"],
        json!({"AWS": ["111111111111", "222222222222"]})
    );
    assert_eq!(
        org.outputs["HubFunctionRoleArns"],
        json!(format!(
            "{},{}",
            org.functions["EventsFunction"].role_arn, org.functions["SweepFunction"].role_arn
        ))
    );

    // In an organization: the organization may send events, and spoke roles are assumed
    // only in its accounts; the sweep may assume the organization role.
    let mut p = iam::org_parameters(SPOKE_ROLE, "");
    p.insert("OrganizationId".into(), "o-abcdefghij".into());
    p.insert("Accounts".into(), "organization".into());
    p.insert("Regions".into(), "us-east-1 eu-west-1".into());
    p.insert(
        "OrganizationRoleArn".into(),
        "arn:aws:iam::999999999999:role/list-accounts".into(),
    );
    let t = ResolvedTemplate::resolve(&iam::expanded_template().unwrap(), &p).unwrap();
    assert!(!t.resources.contains_key("AccountsEventBusPolicy"));
    assert_eq!(
        t.resources["OrganizationEventBusPolicy"].properties["Statement"]["Condition"],
        json!({"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}})
    );
    assert_eq!(
        t.resources["AssumeSpokeRolePolicy"].properties["PolicyDocument"]["Statement"][0]
            ["Condition"],
        json!({"StringEquals": {"aws:ResourceOrgID": "o-abcdefghij"}})
    );
    let names = |id: &str| -> Vec<String> {
        t.functions[id]
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect()
    };
    assert!(names("SweepFunction").contains(&"AssumeOrganizationRolePolicy".to_string()));
    assert!(!names("EventsFunction").contains(&"AssumeOrganizationRolePolicy".to_string()));
    let env = &t.functions["SweepFunction"].environment;
    assert_eq!(env["ECS_TUNNELS_REGIONS"], "us-east-1 eu-west-1");
    assert_eq!(env["ECS_TUNNELS_ACCOUNTS"], "organization");
    assert!(
        !env.contains_key("ECS_TUNNELS_SPOKE_EXTERNAL_ID"),
        "no external id: no variable"
    );
}

/// The spoke stack resolves for any account: the role trusts exactly the hub's event and
/// sweep function roles, with the external id, and its policy is scoped to that account.
#[test]
fn the_spoke_role_trusts_only_the_hub_functions() {
    let hub = resolved_org_template();
    let params = iam::spoke::SpokeParams::for_hub(&hub).expect("hub outputs");
    let spoke = iam::spoke::resolve_spoke("111111111111", &params).expect("resolve spoke.yaml");
    let role = iam::spoke::spoke_role(&spoke, "111111111111").unwrap();
    assert_eq!(role.arn, "arn:aws:iam::111111111111:role/ecs-tunnels-spoke");
    assert_eq!(
        role.trust_policy["Statement"],
        json!([{
            "Effect": "Allow",
            "Principal": {"AWS": [hub.functions["EventsFunction"].role_arn, hub.functions["SweepFunction"].role_arn]},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012", "sts:ExternalId": EXTERNAL_ID}}
        }])
    );
    let text = role.policies[0].document.to_string();
    assert!(
        text.contains("arn:aws:ecs:*:111111111111:service/*"),
        "{text}"
    );
    assert!(
        !text.contains("123456789012"),
        "nothing of the hub's account: {text}"
    );
    // Another region of the account: forwarding only, no role.
    let mut other = params.stack_parameters();
    other.insert("RoleRegion".into(), "eu-west-1".into());
    let t = ResolvedTemplate::resolve_in(
        &iam::spoke::spoke_template().unwrap(),
        &other,
        "111111111111",
        "us-east-1",
    )
    .unwrap();
    assert!(!t.resources.contains_key("SpokeRole"));
    assert!(t.resources.contains_key("TaskStateForwardRule"));
}

/// A function's `sts:AssumeRole` as a raw awsQuery call through the proxy, with the
/// function key and `trace` (a trace id of an invocation, or none).
async fn assume_role_raw(
    proxy: &str,
    role_arn: &str,
    external_id: Option<&str>,
    trace: Option<String>,
) -> (u16, String) {
    let mut body = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=ecs-tunnels-hub",
        role_arn.replace(':', "%3A").replace('/', "%2F")
    );
    if let Some(e) = external_id {
        body.push_str(&format!("&ExternalId={e}"));
    }
    let mut req = reqwest::Client::new()
        .post(format!("{proxy}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={FUNCTION_ACCESS_KEY_ID}/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0"),
        );
    if let Some(t) = trace {
        req = req.header("x-amzn-trace-id", t);
    }
    let resp = req.body(body).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Runs `f` with the trace id of a scheduled-sweep invocation (so the proxy judges the
/// call as the sweep function's), answering the invocation afterwards.
async fn as_sweep<F, Fut, T>(rt: &RuntimeApi, f: F) -> T
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let base = rt.base_url();
    let poller = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let next = http
            .get(format!("{base}/2018-06-01/runtime/invocation/next"))
            .send()
            .await
            .unwrap();
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let trace = next.headers()["lambda-runtime-trace-id"]
            .to_str()
            .unwrap()
            .to_string();
        (http, base, id, trace)
    });
    let event = json!({"detail-type": "Scheduled Event", "resources": ["arn:aws:events:us-east-1:123456789012:rule/ecs-tunnels-sweep"]});
    let invoke = rt.invoke(event, Duration::from_secs(20));
    let answer = async {
        let (http, base, id, trace) = poller.await.unwrap();
        let out = f(trace).await;
        http.post(format!(
            "{base}/2018-06-01/runtime/invocation/{id}/response"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
        out
    };
    let (inv, out) = tokio::join!(invoke, answer);
    inv.expect("invocation");
    out
}

/// STS's answer to AssumeRole, where moto would let anyone assume anything: the role must
/// exist, trust the calling function's role and get the external id it asks for, and the
/// function's own policies must allow it.
#[tokio::test]
async fn assume_role_is_judged_like_sts() {
    let moto = Moto::start().await.expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint()).await.expect("proxy");
    let rt = RuntimeApi::start().await.expect("runtime api");
    let auth = Arc::new(
        IamAuthorizer::for_template(
            &iam::org_parameters(SPOKE_ROLE, EXTERNAL_ID),
            &moto.endpoint(),
        )
        .await
        .expect("authorizer")
        .with_runtime(&rt),
    );
    proxy.set_authorizer(auth.clone());
    let params = iam::spoke::SpokeParams::for_hub(auth.template()).unwrap();
    let deployed = iam::spoke::deploy_spoke_role(&moto.endpoint(), "111111111111", &params)
        .await
        .expect("deploy the spoke role");
    assert_eq!(deployed, "arn:aws:iam::111111111111:role/ecs-tunnels-spoke");
    let missing = "arn:aws:iam::222222222222:role/ecs-tunnels-spoke";
    let assume = |arn: &str, ext: Option<&str>| {
        let mut p = json!({"RoleArn": arn, "RoleSessionName": "ecs-tunnels-hub"});
        if let Some(e) = ext {
            p["ExternalId"] = json!(e);
        }
        call("sts", "AssumeRole", p)
    };
    let verdict = |checks: Vec<devtools::iam::Check>| {
        assert_eq!(checks.len(), 1, "{checks:#?}");
        assert!(checks[0].result.errors.is_empty(), "{:?}", checks[0].result);
        checks[0].result.result
    };
    for f in ["EventsFunction", "SweepFunction"] {
        let ok = auth
            .check(f, &assume(&deployed, Some(EXTERNAL_ID)))
            .await
            .unwrap();
        assert_eq!(verdict(ok), Decision::Allowed, "{f}");
        for (arn, ext) in [
            (missing, Some(EXTERNAL_ID)),
            (deployed.as_str(), Some("wrong")),
            (deployed.as_str(), None),
        ] {
            let d = verdict(auth.check(f, &assume(arn, ext)).await.unwrap());
            assert_eq!(d, Decision::ImplicitlyDenied, "{f} {arn} {ext:?}");
        }
    }
    // The trust policy names the event and sweep roles only; the other functions' own
    // policies do not allow AssumeRole either.
    for f in ["CustomResourceFunction", "SecretsRotationFunction"] {
        let d = verdict(
            auth.check(f, &assume(&deployed, Some(EXTERNAL_ID)))
                .await
                .unwrap(),
        );
        assert_eq!(d, Decision::ImplicitlyDenied, "{f}");
    }

    // Through the proxy, as the sweep: the answers STS gives.
    let p = proxy.endpoint();
    let (status, body) = as_sweep(&rt, |t| {
        assume_role_raw(&p, missing, Some(EXTERNAL_ID), Some(t))
    })
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(
        body.contains("<Message>User: arn:aws:sts::123456789012:assumed-role/ecs-tunnels-SweepFunctionRole/ecs-tunnels-SweepFunction is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/ecs-tunnels-spoke</Message>"),
        "{body}"
    );
    let (status, body) = as_sweep(&rt, |t| {
        assume_role_raw(&p, &deployed, Some("wrong"), Some(t))
    })
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = as_sweep(&rt, |t| {
        assume_role_raw(&p, &deployed, Some(EXTERNAL_ID), Some(t))
    })
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<AccessKeyId>"), "{body}");
    let denied: Vec<(String, String)> = proxy
        .take_denials()
        .into_iter()
        .map(|d| (d.action, d.resource))
        .collect();
    assert_eq!(
        denied,
        [
            ("sts:AssumeRole".to_string(), missing.to_string()),
            ("sts:AssumeRole".to_string(), deployed.clone())
        ]
    );
    // Deleted again: denied again.
    iam::spoke::delete_spoke_role(&moto.endpoint(), "111111111111", SPOKE_ROLE)
        .await
        .unwrap();
    let d = verdict(
        auth.check("SweepFunction", &assume(&deployed, Some(EXTERNAL_ID)))
            .await
            .unwrap(),
    );
    assert_eq!(d, Decision::ImplicitlyDenied);
}

/// What the hub does in a spoke account with the spoke role's credentials is judged
/// against the spoke role's policy, in that account, and denied like AWS when outside it.
#[tokio::test]
async fn assumed_spoke_role_calls_are_judged_by_the_spoke_policy() {
    let spoke = "111111111111";
    let moto = Moto::start().await.expect("moto");
    let proxy = AwsProxy::start(&moto.endpoint()).await.expect("proxy");
    let rt = RuntimeApi::start().await.expect("runtime api");
    let auth = Arc::new(
        IamAuthorizer::for_template(
            &iam::org_parameters(SPOKE_ROLE, EXTERNAL_ID),
            &moto.endpoint(),
        )
        .await
        .expect("authorizer")
        .with_runtime(&rt),
    );
    proxy.set_authorizer(auth.clone());
    let params = iam::spoke::SpokeParams::for_hub(auth.template()).unwrap();
    let role = iam::spoke::deploy_spoke_role(&moto.endpoint(), spoke, &params)
        .await
        .unwrap();
    // The harness seeds the spoke account directly.
    let harness_key = iam::spoke::account_access_key(&moto.endpoint(), spoke)
        .await
        .unwrap();
    let harness = sdk(&moto.endpoint(), &harness_key);
    devtools::seed::seed_service(
        &harness,
        "prod",
        "web",
        &[("ecs-tunnels:hostname", "web.example.com")],
    )
    .await;
    devtools::seed::seed_service(&harness, "prod", "plain", &[("team", "x")]).await;

    // The sweep assumes the spoke role; moto's credentials now act in the spoke account.
    let p = proxy.endpoint();
    let (status, body) = as_sweep(&rt, |t| {
        assume_role_raw(&p, &role, Some(EXTERNAL_ID), Some(t))
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let key = body
        .split("<AccessKeyId>")
        .nth(1)
        .and_then(|b| b.split("</AccessKeyId>").next())
        .expect("an access key")
        .to_string();
    let sessions = auth.assumed_sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (
            sessions[0].access_key_id.as_str(),
            sessions[0].account.as_str(),
            sessions[0].principal_arn.as_str()
        ),
        (
            key.as_str(),
            spoke,
            "arn:aws:sts::111111111111:assumed-role/ecs-tunnels-spoke/ecs-tunnels-hub"
        )
    );

    let as_spoke = sdk(&proxy.endpoint(), &key);
    let ecs = aws_sdk_ecs::Client::new(&as_spoke);
    let ssm = aws_sdk_ssm::Client::new(&as_spoke);
    // Allowed: what a reconcile does in the spoke.
    let d = ecs
        .describe_services()
        .cluster("prod")
        .services("web")
        .send()
        .await
        .expect("DescribeServices");
    assert_eq!(d.services().len(), 1, "the spoke's service, not the hub's");
    ssm.put_parameter()
        .name("/ecs-tunnels/prod/web/token")
        .value("t")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter under the prefix");
    ecs.update_service()
        .cluster("prod")
        .service("web")
        .force_new_deployment(true)
        .send()
        .await
        .expect("redeploy a tagged service");
    // An action without resource-level scope (`*`): in the spoke's account too.
    let clusters = ecs.list_clusters().send().await.expect("ListClusters");
    assert_eq!(clusters.cluster_arns().len(), 1);
    let ok: Vec<String> = auth
        .assumed_role_calls()
        .iter()
        .map(|c| format!("{} {}", c.call.name(), c.allowed))
        .collect();
    assert_eq!(
        ok,
        [
            "ecs:DescribeServices true",
            "ssm:PutParameter true",
            "ecs:UpdateService true",
            "ecs:ListClusters true"
        ]
    );
    assert!(
        auth.assumed_role_calls()
            .iter()
            .all(|c| c.checks.iter().all(
                |k| k.request.resource == "*" || k.request.resource.contains(":111111111111:")
            )),
        "ARNs of the spoke account"
    );
    // The token landed in the spoke account, not the hub's.
    let in_spoke = aws_sdk_ssm::Client::new(&harness)
        .get_parameter()
        .name("/ecs-tunnels/prod/web/token")
        .send()
        .await;
    assert!(in_spoke.is_ok(), "{in_spoke:?}");

    // Denied: outside the spoke policy.
    let err = ssm
        .put_parameter()
        .name("/other/secret")
        .value("x")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect_err("outside the prefix");
    let msg = aws_sdk_ssm::error::ProvideErrorMetadata::message(err.as_service_error().unwrap())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        msg,
        "User: arn:aws:sts::111111111111:assumed-role/ecs-tunnels-spoke/ecs-tunnels-hub is not authorized to perform: ssm:PutParameter on resource: arn:aws:ssm:us-east-1:111111111111:parameter/other/secret because no identity-based policy allows the ssm:PutParameter action"
    );
    let err = ecs
        .update_service()
        .cluster("prod")
        .service("plain")
        .force_new_deployment(true)
        .send()
        .await
        .expect_err("an untagged service");
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(err.as_service_error().unwrap()),
        Some("AccessDeniedException")
    );
    let denied: Vec<String> = auth
        .assumed_role_calls()
        .iter()
        .filter(|c| !c.allowed)
        .map(|c| c.call.name())
        .collect();
    assert_eq!(denied, ["ssm:PutParameter", "ecs:UpdateService"]);
    let denials = proxy.take_denials();
    assert!(
        denials
            .iter()
            .all(|d| d.detail.contains("SpokeRole") || d.detail.contains("ecs-tunnels-spoke/")),
        "{denials:#?}"
    );
    // The harness key is nobody's session: not judged.
    assert!(auth
        .evaluated()
        .iter()
        .all(|e| e.call.access_key_id.as_deref() != Some(harness_key.as_str())));
}

/// The action names a policy document allows.
fn allowed_actions(doc: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in doc["Statement"].as_array().into_iter().flatten() {
        assert_eq!(s["Effect"], "Allow", "{s}");
        match &s["Action"] {
            Value::String(a) => {
                out.insert(a.clone());
            }
            Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_string())),
            other => panic!("Action {other}"),
        }
    }
    out
}

/// Least privilege for the spoke role: it grants exactly the ECS, token-store, tagging and
/// IAM-read actions the hub's event and sweep functions hold; every one of them is used by
/// a call the hub makes (mapped like the proxy maps it, in the spoke account) and allowed;
/// and `*` is granted only for actions that take no resource-level scope.
#[tokio::test]
async fn the_spoke_policy_grants_what_the_hub_uses_and_no_more() {
    let account = "111111111111";
    let hub = resolved_org_template(); // readme parameters: the Secrets Manager store
    let params = iam::spoke::SpokeParams::for_hub(&hub).unwrap();
    assert_eq!(params.token_store, "secretsmanager");
    let spoke = iam::spoke::resolve_spoke(account, &params).unwrap();
    let role = iam::spoke::spoke_role(&spoke, account).unwrap();
    assert_eq!(role.policies.len(), 1);
    let doc = &role.policies[0].document;
    let granted = allowed_actions(doc);

    // Exactly the hub's, for the services a spoke account holds.
    let mut hub_actions = std::collections::BTreeSet::new();
    for f in ["EventsFunction", "SweepFunction"] {
        for p in &hub.functions[f].policies {
            hub_actions.extend(allowed_actions(&p.document).into_iter().filter(|a| {
                ["ecs:", "ssm:", "secretsmanager:", "tag:", "iam:"]
                    .iter()
                    .any(|s| a.starts_with(s))
            }));
        }
    }
    assert_eq!(granted, hub_actions);

    // Every granted action is used by a call the hub makes in a spoke, and allowed there.
    let service = format!("arn:aws:ecs:us-east-1:{account}:service/prod/web");
    let secret = format!(
        "arn:aws:secretsmanager:us-east-1:{account}:secret:ecs-tunnels/prod/web/token-Ab12Cd"
    );
    let mut facts = devtools::iam::request::Facts::default();
    facts.tags.insert(
        service.clone(),
        [(
            "ecs-tunnels:hostname".to_string(),
            "web.example.com".to_string(),
        )]
        .into(),
    );
    facts.secrets.insert(
        "ecs-tunnels/prod/web/token".into(),
        devtools::iam::request::SecretFacts {
            arn: secret,
            ..Default::default()
        },
    );
    let token = "/ecs-tunnels/prod/web/token";
    let sm = "ecs-tunnels/prod/web/token";
    let status = json!([{"key": "ecs-tunnels:status", "value": "ready"}]);
    let owner = json!([{"Key": "ecs-tunnels:owner", "Value": "o"}]);
    let calls = [
        (
            "ecs",
            "DescribeServices",
            json!({"cluster": "prod", "services": ["web"]}),
        ),
        (
            "ecs",
            "TagResource",
            json!({"resourceArn": service, "tags": status}),
        ),
        (
            "ecs",
            "UntagResource",
            json!({"resourceArn": service, "tagKeys": ["ecs-tunnels:status"]}),
        ),
        (
            "ecs",
            "UpdateService",
            json!({"cluster": "prod", "service": "web", "forceNewDeployment": true}),
        ),
        (
            "ecs",
            "DescribeTaskDefinition",
            json!({"taskDefinition": "web:1"}),
        ),
        ("ecs", "ListClusters", json!({})),
        ("ecs", "ListServices", json!({"cluster": "prod"})),
        ("ecs", "DescribeClusters", json!({"clusters": ["prod"]})),
        (
            "ssm",
            "GetParameter",
            json!({"Name": token, "WithDecryption": true}),
        ),
        (
            "ssm",
            "GetParameters",
            json!({"Names": [token], "WithDecryption": true}),
        ),
        (
            "ssm",
            "PutParameter",
            json!({"Name": token, "Overwrite": false, "Tags": owner}),
        ),
        ("ssm", "DeleteParameter", json!({"Name": token})),
        (
            "ssm",
            "AddTagsToResource",
            json!({"ResourceType": "Parameter", "ResourceId": token, "Tags": owner}),
        ),
        (
            "ssm",
            "RemoveTagsFromResource",
            json!({"ResourceType": "Parameter", "ResourceId": token, "TagKeys": ["ecs-tunnels:owner"]}),
        ),
        (
            "ssm",
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": token}),
        ),
        (
            "tag",
            "GetResources",
            json!({"ResourceTypeFilters": ["ssm:parameter"]}),
        ),
        (
            "secretsmanager",
            "CreateSecret",
            json!({"Name": sm, "SecretString": "t", "Tags": owner}),
        ),
        ("secretsmanager", "DescribeSecret", json!({"SecretId": sm})),
        (
            "secretsmanager",
            "GetSecretValue",
            json!({"SecretId": sm, "VersionStage": "AWSCURRENT"}),
        ),
        (
            "secretsmanager",
            "PutSecretValue",
            json!({"SecretId": sm, "SecretString": "t"}),
        ),
        (
            "secretsmanager",
            "UpdateSecretVersionStage",
            json!({"SecretId": sm, "VersionStage": "AWSCURRENT"}),
        ),
        (
            "secretsmanager",
            "TagResource",
            json!({"SecretId": sm, "Tags": owner}),
        ),
        (
            "secretsmanager",
            "UntagResource",
            json!({"SecretId": sm, "TagKeys": ["ecs-tunnels:owner"]}),
        ),
        (
            "secretsmanager",
            "RotateSecret",
            json!({"SecretId": sm, "RotateImmediately": true}),
        ),
        (
            "secretsmanager",
            "DeleteSecret",
            json!({"SecretId": sm, "ForceDeleteWithoutRecovery": true}),
        ),
        ("secretsmanager", "ListSecrets", json!({"MaxResults": 100})),
        ("iam", "GetRole", json!({"RoleName": "exec"})),
        ("iam", "ListRolePolicies", json!({"RoleName": "exec"})),
        (
            "iam",
            "GetRolePolicy",
            json!({"RoleName": "exec", "PolicyName": "p"}),
        ),
        (
            "iam",
            "ListAttachedRolePolicies",
            json!({"RoleName": "exec"}),
        ),
        (
            "iam",
            "GetPolicy",
            json!({"PolicyArn": format!("arn:aws:iam::{account}:policy/read-token")}),
        ),
        (
            "iam",
            "GetPolicyVersion",
            json!({"PolicyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", "VersionId": "v1"}),
        ),
    ];
    let mut requests = Vec::new();
    for (s, op, p) in &calls {
        requests.extend(
            devtools::iam::request::map_call_in(s, op, p, "us-east-1", account, &facts)
                .expect("mapped"),
        );
    }
    let roles: BTreeMap<String, Vec<devtools::iam::template::NamedPolicy>> =
        [("SpokeRole".to_string(), role.policies.clone())].into();
    let evaluator = devtools::iam::evaluator::Evaluator::start(&roles)
        .await
        .expect("evaluator");
    let items: Vec<devtools::iam::evaluator::EvalItem> = requests
        .iter()
        .map(|r| devtools::iam::evaluator::EvalItem {
            role: "SpokeRole".into(),
            principal: format!(
                "arn:aws:sts::{account}:assumed-role/ecs-tunnels-spoke/ecs-tunnels-hub"
            ),
            request: r.clone(),
        })
        .collect();
    let results = evaluator.evaluate(&items).await.unwrap();
    let mut used = std::collections::BTreeSet::new();
    for (r, res) in requests.iter().zip(&results) {
        assert_eq!(
            res.result,
            Decision::Allowed,
            "{} on {}: {res:?}",
            r.action,
            r.resource
        );
        assert_eq!(res.wildcard_only, Some(r.resource == "*"), "{}", r.action);
        used.insert(r.action.clone());
    }
    assert_eq!(
        used,
        granted,
        "granted but used by no call: {:?}",
        granted.difference(&used).collect::<Vec<_>>()
    );
    // `*` only where iam-data says the action takes no resource scope.
    for s in doc["Statement"].as_array().unwrap() {
        if s["Resource"] == json!("*") {
            for a in allowed_actions(&json!({"Statement": [s]})) {
                let i = requests.iter().position(|r| r.action == a).unwrap();
                assert_eq!(
                    results[i].wildcard_only,
                    Some(true),
                    "{a} is granted on * but takes a resource"
                );
            }
        }
    }
    // ...and the same calls in the hub's account are not the spoke role's to make.
    let foreign = devtools::iam::request::map_call_in(
        "ssm",
        "GetParameter",
        &json!({"Name": token}),
        "us-east-1",
        "123456789012",
        &facts,
    )
    .unwrap();
    let r = evaluator
        .evaluate(&[devtools::iam::evaluator::EvalItem {
            role: "SpokeRole".into(),
            principal: format!(
                "arn:aws:sts::{account}:assumed-role/ecs-tunnels-spoke/ecs-tunnels-hub"
            ),
            request: foreign[0].clone(),
        }])
        .await
        .unwrap();
    assert_ne!(r[0].result, Decision::Allowed);
}
