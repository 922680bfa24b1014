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
