//! Seeds AWS-side fixtures (in moto) the way a user would set up an ECS service for
//! ecs-tunnels: a Fargate service whose task definition has the stock cloudflared sidecar.

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController,
    DeploymentControllerType, LaunchType, NetworkConfiguration, NetworkMode, PortMapping,
    PropagateTags, Secret, Tag, TransportProtocol,
};

use crate::moto::{ACCOUNT_ID, REGION};

/// The image of the stock cloudflared sidecar.
pub const CLOUDFLARED_IMAGE: &str = "cloudflare/cloudflared:latest";

/// The SSM parameter ARN the sidecar's `TUNNEL_TOKEN` secret points at.
pub fn token_parameter_arn(cluster: &str, service: &str) -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/ecs-tunnels/{cluster}/{service}/token")
}

/// Creates `cluster` if it does not exist, registers a Fargate task definition (family
/// `service`, awsvpc, 256 CPU / 512 MiB) with an essential `app` container (nginx, port
/// 8080) and the essential `cloudflared` sidecar (`tunnel --no-autoupdate run`, secret
/// `TUNNEL_TOKEN` from [`token_parameter_arn`]), then creates the service (FARGATE,
/// desiredCount 1, propagateTags SERVICE, ECS managed tags, awsvpc with moto's default-VPC
/// subnet and security group: moto rejects subnets its EC2 backend does not know) with
/// `tags`.
/// Returns the service ARN.
///
/// # Panics
/// On any API error: this is a test fixture.
pub async fn seed_service(
    cfg: &aws_config::SdkConfig,
    cluster: &str,
    service: &str,
    tags: &[(&str, &str)],
) -> String {
    seed_service_deployed_by(cfg, cluster, service, tags, "ECS").await
}

/// Like [`seed_service`], with a deployment controller: `ECS`, `CODE_DEPLOY` or
/// `EXTERNAL` (services ECS itself cannot redeploy).
///
/// # Panics
/// On any API error: this is a test fixture.
pub async fn seed_service_deployed_by(
    cfg: &aws_config::SdkConfig,
    cluster: &str,
    service: &str,
    tags: &[(&str, &str)],
    controller: &str,
) -> String {
    let ecs = aws_sdk_ecs::Client::new(cfg);

    let existing = ecs
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeClusters {cluster}: {e:?}"));
    let active = existing
        .clusters()
        .iter()
        .any(|c| c.status() == Some("ACTIVE"));
    if !active {
        ecs.create_cluster()
            .cluster_name(cluster)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCluster {cluster}: {e:?}"));
    }

    let app = ContainerDefinition::builder()
        .name("app")
        .image("nginx")
        .essential(true)
        .port_mappings(
            PortMapping::builder()
                .container_port(8080)
                .protocol(TransportProtocol::Tcp)
                .build(),
        )
        .build();
    let token = Secret::builder()
        .name("TUNNEL_TOKEN")
        .value_from(token_parameter_arn(cluster, service))
        .build()
        .expect("secret has name and valueFrom");
    let sidecar = ContainerDefinition::builder()
        .name("cloudflared")
        .image(CLOUDFLARED_IMAGE)
        .essential(true)
        .command("tunnel")
        .command("--no-autoupdate")
        .command("run")
        .secrets(token)
        .build();
    let td = ecs
        .register_task_definition()
        .family(service)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .execution_role_arn(format!(
            "arn:aws:iam::{ACCOUNT_ID}:role/ecsTaskExecutionRole"
        ))
        .container_definitions(app)
        .container_definitions(sidecar)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RegisterTaskDefinition {service}: {e:?}"));
    let td_arn = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("RegisterTaskDefinition returned an ARN")
        .to_string();

    // moto checks the subnet and security groups against its EC2 backend, so use the
    // default VPC's (which moto creates in every region).
    let endpoint = cfg
        .endpoint_url()
        .expect("seed_service needs an SdkConfig with an endpoint URL (moto)");
    // moto keeps an EC2 per account: ask with the config's own key (the account it acts in).
    let key = match cfg.credentials_provider() {
        Some(p) => {
            use aws_sdk_ecs::config::ProvideCredentials;
            p.provide_credentials()
                .await
                .map(|c| c.access_key_id().to_string())
                .unwrap_or_else(|_| "test".into())
        }
        None => "test".into(),
    };
    let subnet = ec2_first(
        cfg,
        endpoint,
        &key,
        "DescribeSubnets",
        "default-for-az",
        "true",
        "subnetId",
    )
    .await;
    let security_group = ec2_first(
        cfg,
        endpoint,
        &key,
        "DescribeSecurityGroups",
        "group-name",
        "default",
        "groupId",
    )
    .await;
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(subnet)
                .security_groups(security_group)
                .assign_public_ip(AssignPublicIp::Disabled)
                .build()
                .expect("awsvpc configuration has subnets"),
        )
        .build();
    let mut create = ecs
        .create_service()
        .cluster(cluster)
        .service_name(service)
        .task_definition(td_arn)
        .launch_type(LaunchType::Fargate)
        .desired_count(1)
        .network_configuration(network)
        .propagate_tags(PropagateTags::Service)
        .enable_ecs_managed_tags(true)
        .deployment_controller(
            DeploymentController::builder()
                .r#type(DeploymentControllerType::from(controller))
                .build()
                .expect("deployment controller has a type"),
        );
    for (k, v) in tags {
        create = create.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = create
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateService {cluster}/{service}: {e:?}"));
    out.service()
        .and_then(|s| s.service_arn())
        .expect("CreateService returned an ARN")
        .to_string()
}

/// Runs an EC2 Query API `action` on moto with one filter and returns the first
/// `<element>` of the XML answer. moto finds the service from the credential scope of the
/// (unchecked) Authorization header, and the account from its access key.
async fn ec2_first(
    cfg: &aws_config::SdkConfig,
    endpoint: &str,
    access_key: &str,
    action: &str,
    filter: &str,
    value: &str,
    element: &str,
) -> String {
    let body = format!(
        "Action={action}&Version=2016-11-15&Filter.1.Name={filter}&Filter.1.Value.1={value}"
    );
    // moto picks the region by the credential scope.
    let region = cfg.region().map_or(REGION.to_string(), |r| r.to_string());
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20260101/{region}/ec2/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let xml = client
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("EC2 {action} on {endpoint}: {e}"));
    let xml = xml
        .text()
        .await
        .unwrap_or_else(|e| panic!("EC2 {action}: {e}"));
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("EC2 {action}: no <{element}> in {xml}"))
}

/// An SDK configuration that acts in another moto account and region, for seeding and
/// inspecting a spoke: moto lets any caller assume any role (even one that does not
/// exist) and maps the credentials it returns to the role's account. `base` must reach
/// moto directly (not through the judging proxy) with the harness's own key.
///
/// # Panics
/// If moto does not answer the AssumeRole.
pub async fn sdk_in_account(
    base: &aws_config::SdkConfig,
    account: &str,
    region: &str,
) -> aws_config::SdkConfig {
    use aws_sdk_sts::config::{Credentials, Region, SharedCredentialsProvider};
    let out = aws_sdk_sts::Client::new(base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/moto-test-harness"))
        .role_session_name("test-harness")
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto AssumeRole into {account}: {e:?}"));
    let c = out.credentials().expect("credentials");
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "moto-account",
        )))
        .region(Region::new(region.to_string()))
        .build()
}
