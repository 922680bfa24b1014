//! Every request the Cloudflare client can send, once, against the simulator with its
//! OpenAPI check on: Cloudflare's own published schema judges what the client sends
//! (the simulator and the client were written by the same team, so they agree anyway).

use devtools::cloudflare_sim::{self, SimOptions};
use ecs_tunnels::cloudflare::{
    AccessAppBody, AccessPolicyBody, AppQuery, ClientOptions, CloudflareClient, Destination,
    DnsQuery, DnsRecordBody, IngressRule, OriginAccess, OriginRequest, PolicyLink, TunnelConfig,
    TunnelQuery,
};
use ecs_tunnels::secret::Secret;
use serde_json::{json, Map};

const SECRET_A: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const SECRET_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

#[tokio::test]
async fn every_client_request_fits_cloudflares_openapi_document() {
    let opts = SimOptions::default();
    assert!(opts.validate_openapi, "the check is on by default");
    let sim = cloudflare_sim::start(opts.clone())
        .await
        .expect("simulator");
    let cf = CloudflareClient::new(ClientOptions::new(
        sim.base_url.clone(),
        Secret::new(opts.api_token.clone()),
        opts.account_id.clone(),
    ));

    // Zones and the organization.
    let zones = cf.list_zones().await.expect("zones");
    let zone = zones
        .iter()
        .find(|z| z.name == "example.com")
        .expect("zone")
        .id
        .clone();
    let org = cf.get_organization().await.expect("organization");
    let idps = cf.list_identity_providers().await.expect("idps");
    cf.list_access_groups().await.expect("groups");

    // Tunnel: create, find, get, rotate, token, configuration, connections.
    let name = "ecs-tunnels.123456789012-us-east-1.prod.orders";
    let tunnel = cf
        .create_tunnel(name, &Secret::new(SECRET_A))
        .await
        .expect("create tunnel");
    assert!(cf.find_tunnel_by_name(name).await.expect("find").is_some());
    cf.list_tunnels(&TunnelQuery {
        name: None,
        include_prefix: Some("ecs-tunnels.".into()),
    })
    .await
    .expect("list by prefix");
    cf.get_tunnel(&tunnel.id).await.expect("get tunnel");
    cf.rotate_tunnel_secret(&tunnel.id, &Secret::new(SECRET_B))
        .await
        .expect("rotate");
    cf.tunnel_token(&tunnel.id).await.expect("token");
    assert_eq!(
        cf.get_tunnel_config(&tunnel.id).await.expect("config"),
        None
    );

    // Access: tag, reusable policy, application.
    cf.ensure_access_tag("ecs-tunnels").await.expect("tag");
    cf.ensure_access_tag("ecs-tunnels")
        .await
        .expect("tag again");
    let mut policy_body = AccessPolicyBody {
        name: "prod/orders [ecs-tunnels:123456789012-us-east-1]".into(),
        decision: "allow".into(),
        include: vec![
            json!({"email_domain": {"domain": "example.com"}}),
            json!({"email": {"email": "alice@example.com"}}),
        ],
        ..AccessPolicyBody::default()
    };
    let policy = cf
        .create_reusable_policy(&policy_body)
        .await
        .expect("create policy");
    policy_body.exclude = vec![json!({"email": {"email": "mallory@example.com"}})];
    cf.update_reusable_policy(&policy.id, &policy_body)
        .await
        .expect("update policy");
    cf.get_reusable_policy(&policy.id)
        .await
        .expect("get policy");
    cf.list_reusable_policies().await.expect("list policies");

    let host = "orders.example.com";
    let mut app_body = AccessAppBody {
        name: "prod/orders [ecs-tunnels:123456789012-us-east-1]".into(),
        domain: host.into(),
        destinations: vec![Destination {
            dest_type: "public".into(),
            uri: host.into(),
        }],
        allowed_idps: idps.iter().map(|i| i.id.clone()).collect(),
        auto_redirect_to_identity: idps.len() == 1,
        tags: vec!["ecs-tunnels".into()],
        policies: vec![PolicyLink {
            id: policy.id.clone(),
            precedence: 1,
        }],
        ..AccessAppBody::default()
    };
    let app = cf.create_access_app(&app_body).await.expect("create app");
    app_body.session_duration = "8h".into();
    cf.update_access_app(&app.id, &app_body)
        .await
        .expect("update app");
    cf.get_access_app(&app.id).await.expect("get app");
    cf.list_access_apps(&AppQuery {
        name: None,
        domain: Some(host.into()),
    })
    .await
    .expect("list apps by domain");
    cf.list_access_apps(&AppQuery {
        name: Some(app_body.name.clone()),
        domain: None,
    })
    .await
    .expect("list apps by name");

    // Remote configuration with the Access check and the catch-all.
    let mut timeouts = Map::new();
    timeouts.insert("connectTimeout".into(), json!(30));
    let config = TunnelConfig {
        ingress: vec![
            IngressRule {
                hostname: Some(host.into()),
                path: None,
                service: "http://orders.internal:8080".into(),
                origin_request: Some(OriginRequest {
                    access: Some(OriginAccess {
                        required: true,
                        team_name: org.team_name().to_owned(),
                        aud_tag: vec![app.aud.clone()],
                    }),
                    other: timeouts,
                }),
            },
            IngressRule {
                service: "http_status:404".into(),
                ..IngressRule::default()
            },
        ],
        origin_request: None,
    };
    cf.put_tunnel_config(&tunnel.id, &config)
        .await
        .expect("put config");
    assert!(cf
        .get_tunnel_config(&tunnel.id)
        .await
        .expect("config")
        .is_some());

    // DNS: create, find, overwrite, delete.
    let mut record = DnsRecordBody {
        record_type: "CNAME".into(),
        name: host.into(),
        content: format!("{}.cfargotunnel.com", tunnel.id),
        proxied: true,
        ttl: 1,
        comment: Some("ecs-tunnels:123456789012-us-east-1:prod/orders".into()),
    };
    let created = cf
        .create_dns_record(&zone, &record)
        .await
        .expect("create record");
    cf.list_dns_records(
        &zone,
        &DnsQuery {
            name: Some(host.into()),
            record_type: Some("CNAME".into()),
            content: Some(record.content.clone()),
            comment_startswith: Some("ecs-tunnels:".into()),
            // The reconcile's read: whatever is at the name OR carries our marker.
            match_any: true,
        },
    )
    .await
    .expect("list records");
    record.content = format!("{}.cfargotunnel.com", tunnel.id);
    cf.repair_dns_record(&zone, &created.id, &record)
        .await
        .expect("repair record");

    // Teardown.
    cf.delete_dns_record(&zone, &created.id)
        .await
        .expect("delete record");
    cf.list_tunnel_connections(&tunnel.id)
        .await
        .expect("connections");
    cf.delete_tunnel_connections(&tunnel.id)
        .await
        .expect("drop connections");
    cf.delete_tunnel(&tunnel.id).await.expect("delete tunnel");
    cf.delete_access_app(&app.id).await.expect("delete app");
    cf.delete_reusable_policy(&policy.id)
        .await
        .expect("delete policy");

    let violations = sim.violations();
    assert!(
        violations.is_empty(),
        "requests Cloudflare's OpenAPI document rejects: {violations:#?}"
    );
    let log = reqwest::get(format!("{}/requests", sim.hooks_url))
        .await
        .expect("requests hook")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(log["violations"], 0);
    assert!(log["total"].as_u64().unwrap() >= 30, "{}", log["total"]);
}
