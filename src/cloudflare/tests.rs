//! Behaviour tests of the client against the local test server.

use super::test_server::{serve, Reply};
use super::*;
use crate::secret::Secret;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-api-token-0123456789";
const ACCOUNT: &str = "acc123";

fn client_with(base_url: &str, max_retries: u32) -> CloudflareClient {
    let mut o = ClientOptions::new(base_url, Secret::new(TOKEN), ACCOUNT);
    o.max_retries = max_retries;
    o.base_backoff = Duration::from_millis(2);
    o.max_backoff = Duration::from_millis(10);
    CloudflareClient::new(o)
}

fn client(base_url: &str) -> CloudflareClient {
    client_with(base_url, 3)
}

fn dns_body() -> DnsRecordBody {
    DnsRecordBody {
        record_type: "CNAME".into(),
        name: "orders.example.com".into(),
        content: "t1.cfargotunnel.com".into(),
        proxied: true,
        ttl: 1,
        comment: Some("managed-by=ecs-tunnels".into()),
    }
}

fn record_json(id: &str) -> Value {
    json!({"id": id, "name": "orders.example.com", "type": "CNAME",
           "content": "t1.cfargotunnel.com", "proxied": true, "ttl": 1,
           "comment": "managed-by=ecs-tunnels"})
}

#[tokio::test]
async fn sends_auth_content_type_and_body() {
    let srv = serve(|_, _| Reply::ok(record_json("r1"))).await;
    // A trailing slash on the base URL is tolerated.
    let c = client(&format!("{}/", srv.base_url));
    let r = c.create_dns_record("z1", &dns_body()).await.unwrap();
    assert_eq!(r.id, "r1");
    assert!(r.proxied);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/zones/z1/dns_records");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({"type": "CNAME", "name": "orders.example.com", "content": "t1.cfargotunnel.com",
               "proxied": true, "ttl": 1, "comment": "managed-by=ecs-tunnels"})
    );
    assert_eq!(
        c.stats(),
        CallStats {
            total: 1,
            writes: 1,
            ..CallStats::default()
        }
    );
}

#[tokio::test]
async fn tunnel_name_taken() {
    let srv = serve(|_, i| {
        if i == 0 {
            Reply::err(409, 1013, "You already have a tunnel with this name")
        } else {
            Reply::raw(409, "text/plain", "conflict")
        }
    })
    .await;
    let c = client(&srv.base_url);
    let secret = Secret::new("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==");
    for _ in 0..2 {
        let e = c
            .create_tunnel("ecs-prod-orders", &secret)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            CfError::TunnelNameTaken {
                name: "ecs-prod-orders".into()
            }
        );
        assert_eq!(e.codes(), vec![1013]);
        assert!(!e.is_transient());
    }
    // 409 is never retried.
    assert_eq!(c.stats().total, 2);
    let body = srv.requests()[0].json();
    assert_eq!(
        body,
        json!({"name": "ecs-prod-orders", "config_src": "cloudflare", "tunnel_secret": secret.expose()})
    );
    assert_eq!(srv.requests()[0].path(), "/accounts/acc123/cfd_tunnel");
}

#[tokio::test]
async fn tunnel_has_connections() {
    let srv = serve(|_, _| {
        Reply::err(
            400,
            1022,
            "Cannot delete tunnel because it has active connections",
        )
    })
    .await;
    let c = client(&srv.base_url);
    let e = c.delete_tunnel("t1").await.unwrap_err();
    assert_eq!(e, CfError::TunnelHasConnections { id: "t1".into() });
    let req = &srv.requests()[0];
    assert_eq!(req.method, "DELETE");
    assert_eq!(req.path(), "/accounts/acc123/cfd_tunnel/t1");
    assert_eq!(req.json(), json!({}));
}

#[tokio::test]
async fn dns_clash_codes() {
    let srv = serve(|_, i| match i {
        0 => Reply::err(
            400,
            81053,
            "An A, AAAA, or CNAME record with that host already exists.",
        ),
        1 => Reply::err(400, 81054, "A CNAME record with that host already exists."),
        2 => Reply::err(400, 81057, "Record already exists."),
        _ => Reply::err(400, 81058, "An identical record already exists."),
    })
    .await;
    let c = client(&srv.base_url);
    let taken = CfError::DnsNameTaken {
        name: "orders.example.com".into(),
    };
    let exists = CfError::DnsRecordExists {
        name: "orders.example.com".into(),
    };
    assert_eq!(
        c.create_dns_record("z", &dns_body()).await.unwrap_err(),
        taken
    );
    assert_eq!(
        c.create_dns_record("z", &dns_body()).await.unwrap_err(),
        taken
    );
    assert_eq!(
        c.create_dns_record("z", &dns_body()).await.unwrap_err(),
        exists
    );
    assert_eq!(
        c.repair_dns_record("z", "r1", &dns_body())
            .await
            .unwrap_err(),
        exists
    );
    assert_eq!(c.stats().total, 4);
}

#[tokio::test]
async fn access_app_exists() {
    let srv = serve(|_, i| {
        if i == 0 {
            Reply::err(409, 11010, "access.api.error.application_already_exists")
        } else {
            Reply::err(400, 11010, "access.api.error.application_already_exists")
        }
    })
    .await;
    let c = client(&srv.base_url);
    let body = AccessAppBody {
        name: "orders".into(),
        domain: "orders.example.com".into(),
        ..AccessAppBody::default()
    };
    assert_eq!(
        c.create_access_app(&body).await.unwrap_err(),
        CfError::AccessAppExists
    );
    assert_eq!(
        c.create_access_app(&body).await.unwrap_err(),
        CfError::AccessAppExists
    );
    assert_eq!(srv.requests()[0].path(), "/accounts/acc123/access/apps");
    assert_eq!(srv.requests()[0].json()["type"], "self_hosted");
}

#[tokio::test]
async fn auth_errors() {
    let srv = serve(|_, i| match i {
        0 => Reply::err(403, 10000, "Authentication error"),
        1 => Reply::err(400, 9109, "Invalid access token"),
        _ => Reply::raw(401, "text/html", "<html>nope</html>"),
    })
    .await;
    let c = client(&srv.base_url);
    let e = c.list_zones().await.unwrap_err();
    assert_eq!(
        e,
        CfError::Auth {
            status: 403,
            message: "code 10000: Authentication error".into()
        }
    );
    let text = e.to_string();
    assert!(text.contains("rejected or lacks a permission"), "{text}");
    assert!(!text.contains(TOKEN));
    assert!(matches!(
        c.get_organization().await.unwrap_err(),
        CfError::Auth { status: 400, .. }
    ));
    assert!(matches!(
        c.list_access_groups().await.unwrap_err(),
        CfError::Auth { status: 401, .. }
    ));
    assert_eq!(c.stats().retries, 0);
}

#[tokio::test]
async fn html_502_is_api_error_after_retries() {
    let srv = serve(|_, _| {
        Reply::raw(
            502,
            "text/html",
            "<html><body>502 Bad Gateway</body></html>",
        )
    })
    .await;
    let c = client_with(&srv.base_url, 1);
    let e = c.get_tunnel("t1").await.unwrap_err();
    assert_eq!(
        e,
        CfError::Api {
            status: 502,
            errors: vec![]
        }
    );
    assert!(e.is_transient());
    assert!(!e.to_string().contains("<html>"));
    let s = c.stats();
    assert_eq!((s.total, s.server_errors, s.retries), (2, 2, 1));
}

#[tokio::test]
async fn success_false_and_bad_json() {
    let srv = serve(|_, i| match i {
        0 => Reply::err(200, 7003, "No route for the URI"),
        _ => Reply::raw(200, "text/html", "<html>captive portal</html>"),
    })
    .await;
    let c = client(&srv.base_url);
    let e = c.list_zones().await.unwrap_err();
    assert_eq!(
        e,
        CfError::Api {
            status: 200,
            errors: vec![ApiMessage {
                code: 7003,
                message: "No route for the URI".into()
            }]
        }
    );
    assert_eq!(e.codes(), vec![7003]);
    let e = c.list_zones().await.unwrap_err();
    assert!(matches!(e, CfError::Decode(_)), "{e:?}");
    assert!(!e.to_string().contains("captive"));
}

#[tokio::test]
async fn error_messages_never_echo_secrets() {
    let secret = "bm90LWEtcmVhbC1zZWNyZXQtYnV0LWxvbmctZW5vdWdo";
    let srv = serve(move |_, _| {
        Reply::err(
            400,
            1003,
            &format!("invalid tunnel_secret {secret} (token {TOKEN})"),
        )
    })
    .await;
    let c = client(&srv.base_url);
    let e = c
        .rotate_tunnel_secret("t1", &Secret::new(secret))
        .await
        .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted]"));
    assert_eq!(srv.requests()[0].method, "PATCH");
    assert_eq!(srv.requests()[0].json(), json!({"tunnel_secret": secret}));
}

#[tokio::test]
async fn paginates_across_pages() {
    let srv = serve(|req, _| {
        let page: usize = req.param("page").unwrap().parse().unwrap();
        // The server clamps per_page to 100, whatever the client asks for.
        let per_page: usize = req.param("per_page").unwrap().parse::<usize>().unwrap().min(100);
        let total = 250;
        let start = (page - 1) * per_page;
        let items: Vec<Value> = (start..total.min(start + per_page))
            .map(|i| record_json(&format!("r{i}")))
            .collect();
        let n = items.len();
        Reply::page(
            Value::Array(items),
            json!({"page": page, "per_page": per_page, "count": n, "total_count": total, "total_pages": 3}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    let q = DnsQuery {
        name: Some("orders.example.com".into()),
        record_type: Some("CNAME".into()),
        content: None,
        comment_startswith: Some("managed-by=ecs-tunnels".into()),
        match_any: false,
    };
    let recs = c.list_dns_records("z1", &q).await.unwrap();
    assert_eq!(recs.len(), 250);
    assert_eq!(recs[0].id, "r0");
    assert_eq!(recs[249].id, "r249");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.path(), "/zones/z1/dns_records");
        assert_eq!(r.param("page"), Some((i + 1).to_string()));
        assert_eq!(r.param("per_page").as_deref(), Some("5000"));
        assert_eq!(r.param("type").as_deref(), Some("CNAME"));
        assert_eq!(r.param("name").as_deref(), Some("orders.example.com"));
        assert_eq!(
            r.param("comment.startswith").as_deref(),
            Some("managed-by=ecs-tunnels")
        );
    }
}

fn tunnel_json(i: usize) -> Value {
    json!({"id": format!("t{i}"), "name": format!("ecs-{i}"), "deleted_at": null, "status": "healthy"})
}

#[tokio::test]
async fn pagination_survives_clamped_per_page() {
    // Asked for 1000 per page, the server gives 20 and says so, with a total count.
    let srv = serve(|req, _| {
        let page: usize = req.param("page").unwrap().parse().unwrap();
        let start = (page - 1) * 20;
        let items: Vec<Value> = (start..45.min(start + 20)).map(tunnel_json).collect();
        let n = items.len();
        Reply::page(
            Value::Array(items),
            json!({"page": page, "per_page": 20, "count": n, "total_count": 45}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    let ts = c.list_tunnels(&TunnelQuery::default()).await.unwrap();
    assert_eq!(ts.len(), 45);
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.path(), "/accounts/acc123/cfd_tunnel");
        assert_eq!(r.param("per_page").as_deref(), Some("1000"));
        assert_eq!(r.param("is_deleted").as_deref(), Some("false"));
    }
}

#[tokio::test]
async fn pagination_without_totals() {
    // Clamped to 20 and no totals: a short page ends the list.
    let srv = serve(|req, _| {
        let page: usize = req.param("page").unwrap().parse().unwrap();
        let start = (page - 1) * 20;
        let items: Vec<Value> = (start..45.min(start + 20))
            .map(|i| json!({"id": format!("z{i}"), "name": format!("z{i}.com")}))
            .collect();
        let n = items.len();
        Reply::page(
            Value::Array(items),
            json!({"page": page, "per_page": 20, "count": n}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.list_zones().await.unwrap().len(), 45);
    assert_eq!(srv.requests().len(), 3);
    assert_eq!(srv.requests()[0].param("per_page").as_deref(), Some("50"));

    // Nothing but the page number: read until an empty page.
    let srv = serve(|req, _| {
        let page: usize = req.param("page").unwrap().parse().unwrap();
        let items: Vec<Value> = if page <= 2 {
            (0..2)
                .map(|i| json!({"id": format!("g{page}-{i}"), "name": "g"}))
                .collect()
        } else {
            vec![]
        };
        Reply::page(Value::Array(items), json!({"page": page}))
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.list_access_groups().await.unwrap().len(), 4);
    assert_eq!(srv.requests().len(), 3);

    // An endpoint that ignores `page` (always answers page 1) is read once.
    let srv = serve(|_, _| {
        Reply::page(
            json!([{"id": "i1", "name": "OTP", "type": "onetimepin"}]),
            json!({"page": 1}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.list_identity_providers().await.unwrap().len(), 1);
    assert_eq!(srv.requests().len(), 2);

    // No result_info at all: a single page.
    let srv =
        serve(|_, _| Reply::ok(json!([{"id": "p1", "name": "allow", "decision": "allow"}]))).await;
    let c = client(&srv.base_url);
    assert_eq!(c.list_reusable_policies().await.unwrap().len(), 1);
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn honours_retry_after() {
    let srv = serve(|_, i| {
        if i == 0 {
            Reply::err(
                429,
                971,
                "Please wait and consider throttling your request speed",
            )
            .header("Retry-After", "1")
        } else {
            Reply::ok(json!({"id": "t1", "name": "n"}))
        }
    })
    .await;
    let c = client(&srv.base_url);
    let started = Instant::now();
    let t = c.get_tunnel("t1").await.unwrap().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.id, "t1");
    let s = c.stats();
    assert_eq!((s.total, s.rate_limited, s.retries), (2, 1, 1));
}

#[tokio::test]
async fn retries_server_errors_then_succeeds() {
    let srv = serve(|_, i| {
        if i < 2 {
            Reply::err(500, 10001, "Internal server error")
        } else {
            Reply::ok(json!("eyJhIjoiYWNjIn0="))
        }
    })
    .await;
    let c = client(&srv.base_url);
    let token = c.tunnel_token("t1").await.unwrap();
    assert_eq!(token.expose(), "eyJhIjoiYWNjIn0=");
    let s = c.stats();
    assert_eq!((s.total, s.retries, s.server_errors), (3, 2, 2));
    assert_eq!(
        srv.requests()[2].path(),
        "/accounts/acc123/cfd_tunnel/t1/token"
    );
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let srv = serve(|_, _| Reply::err(503, 10002, "Service unavailable")).await;
    let c = client_with(&srv.base_url, 3);
    let e = c.list_zones().await.unwrap_err();
    assert!(matches!(e, CfError::Api { status: 503, .. }), "{e:?}");
    assert_eq!(e.codes(), vec![10002]);
    let s = c.stats();
    assert_eq!((s.total, s.retries, s.server_errors), (4, 3, 4));

    let srv = serve(|_, _| Reply::err(429, 971, "slow down")).await;
    let c = client_with(&srv.base_url, 2);
    let e = c.list_zones().await.unwrap_err();
    assert_eq!(e, CfError::RateLimited { retry_after: None });
    let s = c.stats();
    assert_eq!((s.total, s.retries, s.rate_limited), (3, 2, 3));
}

#[tokio::test]
async fn long_retry_after_fails_fast() {
    let srv = serve(|_, _| Reply::err(429, 971, "slow down").header("Retry-After", "120")).await;
    let c = client(&srv.base_url);
    let started = Instant::now();
    let e = c.create_dns_record("z1", &dns_body()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        e,
        CfError::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(e.is_transient());
    let s = c.stats();
    assert_eq!((s.total, s.retries, s.rate_limited), (1, 0, 1));
}

#[tokio::test]
async fn retry_after_ms_is_used() {
    let srv = serve(|_, i| {
        if i == 0 {
            Reply::err(429, 971, "slow down").header("Retry-After-Ms", "30")
        } else {
            Reply::ok(json!({"name": "Team", "auth_domain": "myteam.cloudflareaccess.com"}))
        }
    })
    .await;
    let c = client(&srv.base_url);
    let started = Instant::now();
    let org = c.get_organization().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(org.team_name(), "myteam");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let srv = serve(|_, _| Reply::err(400, 1001, "bad request")).await;
    let c = client(&srv.base_url);
    let e = c.list_zones().await.unwrap_err();
    assert!(matches!(e, CfError::Api { status: 400, .. }));
    assert_eq!(c.stats().total, 1);
}

#[tokio::test]
async fn transport_errors_are_retried() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client_with(&format!("http://127.0.0.1:{port}/client/v4"), 2);
    let e = c.list_zones().await.unwrap_err();
    assert!(matches!(e, CfError::Transport(_)), "{e:?}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("GET /zones"), "{e}");
    let s = c.stats();
    assert_eq!((s.total, s.retries), (3, 2));
}

#[tokio::test]
async fn not_found_means_gone() {
    let srv = serve(|_, _| Reply::err(404, 81044, "Record does not exist.")).await;
    let c = client(&srv.base_url);
    c.delete_dns_record("z1", "r1").await.unwrap();
    c.delete_tunnel("t1").await.unwrap();
    c.delete_tunnel_connections("t1").await.unwrap();
    c.delete_access_app("a1").await.unwrap();
    c.delete_reusable_policy("p1").await.unwrap();
    assert_eq!(c.get_tunnel("t1").await.unwrap(), None);
    assert_eq!(c.get_access_app("a1").await.unwrap(), None);
    assert_eq!(c.get_reusable_policy("p1").await.unwrap(), None);
    assert_eq!(c.get_tunnel_config("t1").await.unwrap(), None);
    let e = c.tunnel_token("t9").await.unwrap_err();
    assert_eq!(
        e,
        CfError::NotFound {
            what: "tunnel t9".into()
        }
    );
    let paths: Vec<String> = srv
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        paths[..5],
        [
            "DELETE /zones/z1/dns_records/r1",
            "DELETE /accounts/acc123/cfd_tunnel/t1",
            "DELETE /accounts/acc123/cfd_tunnel/t1/connections",
            "DELETE /accounts/acc123/access/apps/a1",
            "DELETE /accounts/acc123/access/policies/p1",
        ]
    );
    assert_eq!(srv.requests()[2].json(), json!({}));
    assert_eq!(c.stats().retries, 0);
}

#[tokio::test]
async fn deleted_tunnels_are_absent() {
    let srv = serve(|req, _| {
        if req.path().ends_with("/cfd_tunnel") {
            Reply::page(
                json!([
                    {"id": "t1", "name": "ecs-a", "deleted_at": null},
                    {"id": "t2", "name": "ecs-a", "deleted_at": "2025-01-01T00:00:00Z"},
                    {"id": "t3", "name": "other", "deleted_at": null}
                ]),
                json!({"page": 1, "per_page": 1000, "count": 3, "total_count": 3}),
            )
        } else {
            Reply::ok(json!({"id": "t2", "name": "ecs-a", "deleted_at": "2025-01-01T00:00:00Z"}))
        }
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.get_tunnel("t2").await.unwrap(), None);
    let q = TunnelQuery {
        name: Some("ecs-a".into()),
        include_prefix: None,
    };
    let ts = c.list_tunnels(&q).await.unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].id, "t1");
    let req = &srv.requests()[1];
    assert_eq!(req.param("name").as_deref(), Some("ecs-a"));
    assert_eq!(req.param("is_deleted").as_deref(), Some("false"));
}

#[tokio::test]
async fn tunnel_config_round_trip() {
    let srv = serve(|req, i| match (req.method.as_str(), i) {
        ("GET", 0) => Reply::ok(json!({"tunnel_id": "t1", "version": 0, "config": null})),
        ("GET", _) => Reply::ok(json!({"tunnel_id": "t1", "version": 3, "config": {
            "ingress": [{"hostname": "a.example.com", "service": "http://a:80",
                         "originRequest": {"connectTimeout": 30,
                            "access": {"required": true, "teamName": "team", "audTag": ["aud"]}}},
                        {"service": "http_status:404"}],
            "warp-routing": {"enabled": false}}})),
        _ => Reply::ok(json!({"tunnel_id": "t1", "version": 4})),
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.get_tunnel_config("t1").await.unwrap(), None);
    let cfg = c.get_tunnel_config("t1").await.unwrap().unwrap();
    assert_eq!(cfg.ingress.len(), 2);
    let or = cfg.ingress[0].origin_request.as_ref().unwrap();
    assert_eq!(or.access.as_ref().unwrap().aud_tag, vec!["aud".to_string()]);
    assert_eq!(or.other["connectTimeout"], json!(30));
    c.put_tunnel_config("t1", &cfg).await.unwrap();
    let put = &srv.requests()[2];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path(), "/accounts/acc123/cfd_tunnel/t1/configurations");
    assert_eq!(
        put.json(),
        json!({"config": {"ingress": [
            {"hostname": "a.example.com", "service": "http://a:80",
             "originRequest": {"connectTimeout": 30,
                "access": {"required": true, "teamName": "team", "audTag": ["aud"]}}},
            {"service": "http_status:404"}]}})
    );
}

#[tokio::test]
async fn connections_and_create_token() {
    let srv = serve(|req, _| match req.method.as_str() {
        "POST" => Reply::ok(
            json!({"id": "t1", "name": "n", "token": "eyJzZWNyZXQiOiJ4In0=",
                                   "credentials_file": {"TunnelSecret": "x"}}),
        ),
        _ => Reply::ok(
            json!([{"id": "c1", "conns": [{"colo_name": "fra08"}, {"colo_name": "ams01"}]}]),
        ),
    })
    .await;
    let c = client(&srv.base_url);
    let t = c
        .create_tunnel("n", &Secret::new("c2VjcmV0"))
        .await
        .unwrap();
    assert_eq!(
        t.token.as_ref().map(Secret::expose),
        Some("eyJzZWNyZXQiOiJ4In0=")
    );
    assert!(!format!("{t:?}").contains("eyJzZWNyZXQiOiJ4In0="));
    let conns = c.list_tunnel_connections("t1").await.unwrap();
    assert_eq!(conns[0].conns.len(), 2);
}

#[tokio::test]
async fn access_lists_use_exact_filters() {
    let srv = serve(|_, _| {
        Reply::page(
            json!([
                {"id": "a1", "name": "orders", "domain": "orders.example.com", "aud": "x", "type": "self_hosted"},
                {"id": "a2", "name": "other", "domain": "other.example.com", "aud": "y", "type": "self_hosted"}
            ]),
            json!({"page": 1, "per_page": 100, "count": 2, "total_count": 2}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    let apps = c
        .list_access_apps(&AppQuery {
            name: None,
            domain: Some("orders.example.com".into()),
        })
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].id, "a1");
    let req = &srv.requests()[0];
    assert_eq!(req.path(), "/accounts/acc123/access/apps");
    assert_eq!(req.param("domain").as_deref(), Some("orders.example.com"));
    assert_eq!(req.param("exact").as_deref(), Some("true"));
    assert_eq!(req.param("per_page").as_deref(), Some("100"));
    assert_eq!(
        c.list_access_apps(&AppQuery::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(srv.requests()[1].param("exact"), None);
}

#[tokio::test]
async fn ensure_access_tag_creates_once() {
    let srv = serve(|req, i| match (req.method.as_str(), i) {
        ("GET", 0) => Reply::ok(json!({"name": "ecs-tunnels", "app_count": 2})),
        ("GET", _) => Reply::err(404, 12130, "tag not found"),
        ("POST", 2) => Reply::ok(json!({"name": "ecs tunnels"})),
        _ => Reply::err(409, 12131, "tag already exists"),
    })
    .await;
    let c = client(&srv.base_url);
    c.ensure_access_tag("ecs-tunnels").await.unwrap(); // exists: GET only
    c.ensure_access_tag("ecs tunnels").await.unwrap(); // 404 → POST
    c.ensure_access_tag("ecs tunnels").await.unwrap(); // 404 → POST → already exists
    let reqs = srv.requests();
    let seen: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /accounts/acc123/access/tags/ecs-tunnels",
            "GET /accounts/acc123/access/tags/ecs%20tunnels",
            "POST /accounts/acc123/access/tags",
            "GET /accounts/acc123/access/tags/ecs%20tunnels",
            "POST /accounts/acc123/access/tags",
        ]
    );
    assert_eq!(reqs[2].json(), json!({"name": "ecs tunnels"}));
    assert_eq!(c.stats().writes, 2);
}

#[tokio::test]
async fn policies_crud_paths() {
    let srv = serve(|req, _| {
        Reply::ok(
            json!({"id": "p1", "name": "orders allow", "decision": "allow",
                         "include": [{"email_domain": {"domain": "example.com"}}], "reusable": true,
                         "app_count": 0}),
        )
        .header("X-Echo-Method", &req.method)
    })
    .await;
    let c = client(&srv.base_url);
    let body = AccessPolicyBody {
        name: "orders allow".into(),
        decision: "allow".into(),
        include: vec![json!({"email_domain": {"domain": "example.com"}})],
        ..AccessPolicyBody::default()
    };
    let p = c.create_reusable_policy(&body).await.unwrap();
    assert_eq!(p.reusable, Some(true));
    c.update_reusable_policy("p1", &body).await.unwrap();
    assert!(c.get_reusable_policy("p1").await.unwrap().is_some());
    let seen: Vec<String> = srv
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        seen,
        [
            "POST /accounts/acc123/access/policies",
            "PUT /accounts/acc123/access/policies/p1",
            "GET /accounts/acc123/access/policies/p1",
        ]
    );
}

#[tokio::test]
async fn find_tunnel_by_name_reads_the_zero_time_as_live() {
    let srv = serve(|_, _| {
        Reply::page(
            json!([{"id": "t1", "name": "svc", "deleted_at": "0001-01-01T00:00:00Z"},
                   {"id": "t0", "name": "svc", "deleted_at": "2025-01-01T00:00:00Z"}]),
            json!({"page": 1, "per_page": 1000, "count": 2, "total_count": 2, "total_pages": 1}),
        )
    })
    .await;
    let c = client(&srv.base_url);
    let found = c.find_tunnel_by_name("svc").await.unwrap();
    assert_eq!(found.map(|t| t.id).as_deref(), Some("t1"));
}

#[tokio::test]
async fn a_policy_create_is_not_repeated_after_a_5xx_or_a_lost_answer() {
    let srv = serve(|_, _| Reply::err(500, 10001, "internal error")).await;
    let c = client(&srv.base_url);
    let body = AccessPolicyBody {
        name: "p".into(),
        decision: "allow".into(),
        include: vec![json!({"everyone": {}})],
        ..AccessPolicyBody::default()
    };
    let e = c.create_reusable_policy(&body).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(srv.requests().len(), 1, "the POST may have committed");

    // A 429 is refused before anything is written: retried.
    let srv = serve(|_, i| {
        if i == 0 {
            Reply::err(429, 10000, "rate limited").header("retry-after", "0")
        } else {
            Reply::ok(json!({"id": "p1", "name": "p", "decision": "allow", "include": []}))
        }
    })
    .await;
    let c = client(&srv.base_url);
    assert_eq!(c.create_reusable_policy(&body).await.unwrap().id, "p1");
    assert_eq!(srv.requests().len(), 2);
}

#[tokio::test]
async fn a_dns_repair_patches_only_what_ecs_tunnels_owns() {
    let srv = serve(|_, _| Reply::ok(record_json("r1"))).await;
    let c = client(&srv.base_url);
    c.repair_dns_record("z1", "r1", &dns_body()).await.unwrap();
    let reqs = srv.requests();
    assert_eq!(reqs[0].method, "PATCH");
    assert_eq!(reqs[0].path(), "/zones/z1/dns_records/r1");
    assert_eq!(
        reqs[0].json(),
        json!({"type": "CNAME", "name": "orders.example.com",
               "content": "t1.cfargotunnel.com", "proxied": true})
    );
}

fn client_with_budget(
    base_url: &str,
    per_window: u32,
    window: Duration,
    burst: u32,
) -> CloudflareClient {
    let mut o = ClientOptions::new(base_url, Secret::new(TOKEN), ACCOUNT);
    o.base_backoff = Duration::from_millis(2);
    o.budget = Some(Budget {
        per_window,
        window,
        burst,
    });
    CloudflareClient::new(o)
}

#[tokio::test]
async fn a_budget_spaces_requests_and_refuses_past_the_deadline() {
    let srv = serve(|_, _| Reply::page(json!([]), json!({"page": 1, "total_pages": 1}))).await;
    // A burst of 2, then one request per 1 s / 9.
    let c = client_with_budget(&srv.base_url, 12, Duration::from_secs(1), 2);
    assert_eq!(c.budget().map(|b| b.per_window), Some(12));
    let started = Instant::now();
    for _ in 0..5 {
        c.list_zones().await.unwrap();
    }
    let interval = Duration::from_secs(1) / 9;
    assert!(started.elapsed() >= interval * 3, "{:?}", started.elapsed());
    let s = c.stats();
    assert_eq!((s.total, s.budget_waits, s.budget_refused), (5, 3, 0));
    assert!(s.budget_wait_ms > 0, "{s:?}");

    // Inside an invocation whose deadline comes before the next turn: nothing is sent,
    // and the failure is transient (the event is retried).
    let deadline = std::time::Instant::now() + interval / 4;
    let e = with_deadline(Some(deadline), c.list_zones())
        .await
        .unwrap_err();
    assert!(matches!(e, CfError::BudgetSpent { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(srv.requests().len(), 5);
    assert_eq!(c.stats().budget_refused, 1);
}

#[tokio::test]
async fn a_429_holds_every_request_of_the_process() {
    let srv = serve(|req, _| {
        if req.path().ends_with("/t1") {
            Reply::err(
                429,
                971,
                "Please wait and consider throttling your request speed",
            )
            .header("Retry-After", "1")
        } else {
            Reply::page(json!([]), json!({"page": 1, "total_pages": 1}))
        }
    })
    .await;
    // A budget that never delays by itself.
    let c = client_with_budget(&srv.base_url, 100_000, Duration::from_secs(1), 5_000);
    let started = Instant::now();
    let c2 = c.clone();
    let retried = tokio::spawn(async move { c2.get_tunnel("t1").await });
    // Another request of the same process, sent after the 429 arrived, waits out the
    // Retry-After too instead of spending the blocked token.
    while srv.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.list_zones().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    retried.abort();
}
