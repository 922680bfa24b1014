//! Drives the Cloudflare API simulator over HTTP, the way a client would.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use devtools::cloudflare_sim::{start, RunningSim, SimOptions};
use reqwest::Method;
use serde_json::{json, Value};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

struct Api {
    http: reqwest::Client,
    sim: RunningSim,
    token: String,
}

/// Every test ends with no OpenAPI violation left: the deliberate ones are taken (and
/// checked) with [`Api::take_violations`].
impl Drop for Api {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let left = self.sim.violations();
            assert!(left.is_empty(), "unexpected OpenAPI violations: {left:#?}");
        }
    }
}

impl Api {
    async fn start(opts: SimOptions) -> Self {
        let token = opts.api_token.clone();
        let sim = start(opts).await.expect("simulator starts");
        Self {
            http: reqwest::Client::new(),
            sim,
            token,
        }
    }

    async fn default() -> Self {
        Self::start(SimOptions::default()).await
    }

    /// The OpenAPI violations so far as `"METHOD rule field"`, then forgets them.
    fn take_violations(&self) -> Vec<String> {
        let list = self
            .sim
            .violations()
            .iter()
            .map(|v| format!("{} {} {}", v.method, v.rule, v.field))
            .collect();
        self.sim.clear_violations();
        list
    }

    async fn send(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json, headers)
    }

    /// An authenticated API call; `path` is relative to `/client/v4`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.sim.base_url);
        let (s, v, _) = self.send(method, url, Some(&self.token), body).await;
        (s, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn hook(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.sim.hooks_url);
        let (s, v, _) = self.send(method, url, None, body).await;
        (s, v)
    }

    /// Creates a tunnel and returns its result object.
    async fn tunnel(&self, name: &str, secret: Option<&str>) -> Value {
        let mut body = json!({"name": name, "config_src": "cloudflare"});
        if let Some(s) = secret {
            body["tunnel_secret"] = json!(s);
        }
        let (status, v) = self
            .post(&format!("/accounts/{ACCOUNT}/cfd_tunnel"), body)
            .await;
        assert_eq!(status, 200, "{v}");
        v["result"].clone()
    }

    async fn connect(&self, token: &str) -> (u16, Value) {
        self.hook(Method::POST, "/connectors", Some(json!({"token": token})))
            .await
    }

    async fn zone_id(&self, name: &str) -> String {
        let (_, v) = self.get(&format!("/zones?name={name}")).await;
        v["result"][0]["id"].as_str().expect("zone").to_owned()
    }
}

fn secret(byte: u8) -> String {
    STANDARD.encode([byte; 32])
}

fn error_code(v: &Value) -> i64 {
    v["errors"][0]["code"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn envelope_auth_and_routes() {
    let api = Api::default().await;
    let url = format!("{}/zones", api.sim.base_url);

    let (s, v, _) = api.send(Method::GET, url.clone(), None, None).await;
    assert_eq!((s, error_code(&v)), (403, 10000));
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], Value::Null);
    assert_eq!(v["errors"][0]["message"], "Authentication error");
    let (s, v, _) = api.send(Method::GET, url, Some("nope"), None).await;
    assert_eq!((s, error_code(&v)), (403, 10000));

    let (s, v) = api.get("/zones").await;
    assert_eq!(s, 200);
    assert_eq!(v["success"], true);
    assert_eq!(v["errors"], json!([]));
    assert_eq!(v["messages"], json!([]));
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert_eq!(v["result"][0]["status"], "active");
    assert_eq!(v["result"][0]["account"]["id"], ACCOUNT);
    let info = &v["result_info"];
    assert_eq!(
        (
            &info["page"],
            &info["per_page"],
            &info["count"],
            &info["total_count"]
        ),
        (&json!(1), &json!(20), &json!(2), &json!(2))
    );
    let id = v["result"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let (s, v) = api.get("/zones?name=example.net").await;
    assert_eq!(s, 200);
    assert_eq!(v["result"][0]["name"], "example.net");
    assert_eq!(v["result_info"]["total_count"], 1);

    let (s, v) = api.get("/nothing/here").await;
    assert_eq!((s, error_code(&v)), (404, 7003));
    let (s, v) = api.call(Method::PUT, "/zones", Some(json!({}))).await;
    assert_eq!((s, &v["success"]), (405, &json!(false)));
    let (s, _) = api
        .get("/accounts/ffffffffffffffffffffffffffffffff/cfd_tunnel")
        .await;
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/accounts/{ACCOUNT}/cfd_tunnel"),
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .post(&format!("/accounts/{ACCOUNT}/cfd_tunnel"), json!({}))
        .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("name"));
    assert!(error_code(&v) >= 1000);
    assert_eq!(
        api.take_violations(),
        [
            "GET no-operation ",
            "PUT method ",
            "POST type ",
            "POST required name"
        ]
    );
}

#[tokio::test]
async fn pagination_respects_page_cap() {
    let api = Api::start(SimOptions {
        page_cap: Some(2),
        ..SimOptions::default()
    })
    .await;
    for i in 0..5 {
        api.tunnel(&format!("t{i}"), None).await;
    }
    let mut names = Vec::new();
    for page in 1..=3 {
        let (s, v) = api
            .get(&format!(
                "/accounts/{ACCOUNT}/cfd_tunnel?per_page=50&page={page}"
            ))
            .await;
        assert_eq!(s, 200);
        let info = &v["result_info"];
        assert_eq!(info["per_page"], 2);
        assert_eq!(info["total_count"], 5);
        assert_eq!(info["total_pages"], 3);
        assert_eq!(info["page"], page);
        for t in v["result"].as_array().unwrap() {
            names.push(t["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);
    let (_, v) = api
        .get(&format!("/accounts/{ACCOUNT}/cfd_tunnel?page=4"))
        .await;
    assert_eq!(v["result"], json!([]));
    assert_eq!(v["result_info"]["count"], 0);
    let (s, v) = api
        .get(&format!("/accounts/{ACCOUNT}/cfd_tunnel?page=0"))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(api.take_violations(), ["GET minimum page"]);

    let zone = api.zone_id("example.com").await;
    for i in 0..3 {
        let (s, v) = api
            .post(
                &format!("/zones/{zone}/dns_records"),
                json!({"type": "A", "name": format!("h{i}.example.com"), "content": "192.0.2.1"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, v) = api.get(&format!("/zones/{zone}/dns_records?page=2")).await;
    assert_eq!(v["result"][0]["name"], "h2.example.com");
    assert_eq!(v["result_info"]["total_pages"], 2);
}

#[tokio::test]
async fn tunnel_lifecycle_connections_and_soft_delete() {
    let api = Api::default().await;
    let base = format!("/accounts/{ACCOUNT}/cfd_tunnel");
    let s1 = secret(7);
    let t = api.tunnel("svc-a", Some(&s1)).await;
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["status"], "inactive");
    assert_eq!(t["tun_type"], "cfd_tunnel");
    assert_eq!(t["config_src"], "cloudflare");
    assert_eq!(t["remote_config"], true);
    assert_eq!(t["deleted_at"], Value::Null);
    assert_eq!(t["account_tag"], ACCOUNT);
    assert_eq!(t["credentials_file"]["TunnelSecret"], s1);
    assert_eq!(t["credentials_file"]["TunnelID"], id);

    // The token is base64 of {"a","s","t"}.
    let token = t["token"].as_str().unwrap().to_owned();
    let decoded: Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap()).unwrap();
    assert_eq!(decoded, json!({"a": ACCOUNT, "t": id, "s": s1}));
    let (_, v) = api.get(&format!("{base}/{id}/token")).await;
    assert_eq!(v["result"], token);
    let (_, v) = api.get(&format!("{base}/{id}")).await;
    assert!(v["result"].get("token").is_none());

    // Duplicate name, short secret, default config_src.
    let (s, v) = api.post(&base, json!({"name": "svc-a"})).await;
    assert_eq!((s, error_code(&v)), (409, 1013));
    let (s, v) = api
        .post(
            &base,
            json!({"name": "x", "tunnel_secret": STANDARD.encode([1u8; 16])}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("tunnel_secret"));
    let (_, v) = api.post(&base, json!({"name": "svc-local"})).await;
    assert_eq!(v["result"]["config_src"], "local");
    assert_eq!(v["result"]["remote_config"], false);

    // A connector blocks deletion with 1022 until connections are cleaned up.
    let (s, v) = api.connect(&token).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.get(&format!("{base}/{id}")).await;
    assert_eq!(v["result"]["status"], "healthy");
    assert!(v["result"]["conns_active_at"].is_string());
    let (_, v) = api.get(&format!("{base}/{id}/connections")).await;
    let conns = v["result"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["conns"].as_array().unwrap().len(), 4);
    assert_eq!(conns[0]["conns"][0]["is_pending_reconnect"], false);
    let (s, v) = api
        .call(Method::DELETE, &format!("{base}/{id}"), None)
        .await;
    assert_eq!((s, error_code(&v)), (400, 1022));
    let (s, v) = api
        .call(Method::DELETE, &format!("{base}/{id}/connections"), None)
        .await;
    assert_eq!((s, &v["result"]), (200, &json!({})));
    let (_, v) = api.get(&format!("{base}/{id}")).await;
    assert_eq!(v["result"]["status"], "down");
    let (s, v) = api
        .call(Method::DELETE, &format!("{base}/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert!(v["result"]["deleted_at"].is_string());

    // Soft delete: still readable, filtered by is_deleted, name reusable.
    let (s, v) = api.get(&format!("{base}/{id}")).await;
    assert_eq!(s, 200);
    assert!(v["result"]["deleted_at"].is_string());
    let (_, v) = api
        .get(&format!("{base}?name=svc-a&is_deleted=false"))
        .await;
    assert_eq!(v["result"], json!([]));
    let (_, v) = api.get(&format!("{base}?name=svc-a&is_deleted=true")).await;
    assert_eq!(v["result"][0]["id"], id);
    let (_, v) = api.get(&format!("{base}?name=svc-a")).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let again = api.tunnel("svc-a", None).await;
    assert_ne!(again["id"], id);
    let (_, v) = api.get(&format!("{base}?name=svc-a")).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    let (s, _) = api
        .call(Method::DELETE, &format!("{base}/{id}"), None)
        .await;
    assert_eq!(s, 404);
    let (s, v) = api.connect(&token).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = api
        .get(&format!("{base}/00000000-0000-4000-8000-000000000000"))
        .await;
    assert_eq!((s, error_code(&v)), (404, 1003));
}

#[tokio::test]
async fn secret_rotation_and_connectors() {
    let api = Api::default().await;
    let base = format!("/accounts/{ACCOUNT}/cfd_tunnel");
    let t = api.tunnel("svc-rot", Some(&secret(1))).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let old_token = t["token"].as_str().unwrap().to_owned();
    let (_, v) = api.connect(&old_token).await;
    let old_client = v["client_id"].as_str().unwrap().to_owned();

    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("{base}/{id}"),
            Some(json!({"tunnel_secret": secret(2)})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let new_token = v["result"]["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, old_token);
    let (_, v) = api.get(&format!("{base}/{id}/token")).await;
    assert_eq!(v["result"], new_token);

    // The old connector stays; a new one with the old token is refused.
    let (_, v) = api.get(&format!("{base}/{id}/connections")).await;
    assert_eq!(v["result"][0]["id"], old_client);
    let (s, v) = api.connect(&old_token).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "Unauthorized: Invalid tunnel secret");
    let (s, _) = api.connect(&new_token).await;
    assert_eq!(s, 200);
    let (_, v) = api.get(&format!("{base}/{id}/connections")).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 2);

    // An edge reconnect drops the old-secret connector.
    let (s, _) = api
        .hook(
            Method::POST,
            &format!("/connectors/{old_client}/reconnect"),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (_, v) = api.get(&format!("{base}/{id}/connections")).await;
    let remaining = v["result"].as_array().unwrap();
    assert_eq!(remaining.len(), 1);
    let new_client = remaining[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = api
        .hook(
            Method::POST,
            &format!("/connectors/{new_client}/reconnect"),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // Rename clash, then cleanup of one connector by client_id.
    api.tunnel("other", None).await;
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("{base}/{id}"),
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (409, 1013));
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("{base}/{id}/connections?client_id={new_client}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = api.get(&format!("{base}/{id}")).await;
    assert_eq!(v["result"]["status"], "down");

    // The state dump shows fingerprints, never secrets.
    let (_, state) = api.hook(Method::GET, "/state", None).await;
    let text = state.to_string();
    assert!(!text.contains(&secret(2)) && !text.contains(&secret(1)));
    assert!(state["tunnels"][0]["secret_sha"].is_string());
}

#[tokio::test]
async fn dns_records() {
    let api = Api::default().await;
    let zone = api.zone_id("example.com").await;
    let base = format!("/zones/{zone}/dns_records");
    let marker = "managed-by=ecs-tunnels;svc=orders";
    let body = json!({"type": "CNAME", "name": "orders.example.com",
        "content": "abc.cfargotunnel.com", "proxied": true, "ttl": 1, "comment": marker});
    let (s, v) = api.post(&base, body.clone()).await;
    assert_eq!(s, 200, "{v}");
    let rec = v["result"].clone();
    let rid = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(rec["zone_id"], zone);
    assert_eq!(rec["zone_name"], "example.com");
    assert_eq!(rec["proxiable"], true);
    assert_eq!(rec["comment"], marker);
    assert!(rec["created_on"].is_string() && rec["meta"].is_object());

    let (s, v) = api.post(&base, body.clone()).await;
    assert_eq!((s, error_code(&v)), (400, 81057));
    let mut other = body.clone();
    other["content"] = json!("other.cfargotunnel.com");
    let (s, v) = api.post(&base, other).await;
    assert_eq!((s, error_code(&v)), (400, 81053));
    assert_eq!(
        v["errors"][0]["message"],
        "An A, AAAA, or CNAME record with that host already exists."
    );
    let (s, _) = api
        .post(
            &base,
            json!({"type": "A", "name": "orders.example.com", "content": "192.0.2.1"}),
        )
        .await;
    assert_eq!(s, 400);

    let (s, v) = api
        .post(&base, json!({"type": "CNAME", "name": "x.example.com", "content": "a.b", "comment": "c".repeat(101)}))
        .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("comment"));
    assert!(error_code(&v) >= 1000);
    let (s, _) = api
        .post(
            &base,
            json!({"type": "CNAME", "name": "x.example.org", "content": "a.b"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .post(
            &base,
            json!({"type": "A", "name": "y.example.com", "content": "a.b"}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(api.take_violations(), ["POST format content"]);
    let (s, _) = api
        .post(
            &base,
            json!({"type": "TXT", "name": "t.example.com", "content": "hi", "ttl": 30}),
        )
        .await;
    assert_eq!(s, 400);

    // Filters: comment.startswith is case-insensitive; name is exact.
    let (_, v) = api
        .get(&format!(
            "{base}?type=CNAME&name=ORDERS.example.com&comment.startswith=MANAGED-BY%3Decs-tunnels"
        ))
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let (_, v) = api.get(&format!("{base}?comment=nope")).await;
    assert_eq!(v["result"], json!([]));
    let (_, v) = api.get(&format!("{base}?proxied=false")).await;
    assert_eq!(v["result"], json!([]));

    // PATCH keeps unspecified fields; PUT overwrites. (Cloudflare's OpenAPI document
    // requires type, name and content in a PATCH body too.)
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("{base}/{rid}"),
            Some(json!({"type": "CNAME", "name": "orders.example.com",
                        "content": "new.cfargotunnel.com"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["comment"], marker);
    assert_eq!(v["result"]["proxied"], true);
    let (_, v) = api
        .call(
            Method::PUT,
            &format!("{base}/{rid}"),
            Some(json!({"type": "CNAME", "name": "orders.example.com", "content": "new.cfargotunnel.com"})),
        )
        .await;
    assert_eq!(v["result"]["comment"], Value::Null);
    assert_eq!(v["result"]["proxied"], false);

    let (s, v) = api
        .call(Method::DELETE, &format!("{base}/{rid}"), None)
        .await;
    assert_eq!((s, &v["result"]), (200, &json!({"id": rid})));
    let (s, v) = api.get(&format!("{base}/{rid}")).await;
    assert_eq!((s, error_code(&v)), (404, 81044));
    let (s, _) = api
        .get("/zones/ffffffffffffffffffffffffffffffff/dns_records")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn tunnel_configuration() {
    let api = Api::default().await;
    let t = api.tunnel("svc-cfg", None).await;
    let path = format!(
        "/accounts/{ACCOUNT}/cfd_tunnel/{}/configurations",
        t["id"].as_str().unwrap()
    );
    let (s, v) = api.get(&path).await;
    assert_eq!(s, 200);
    assert_eq!(v["result"]["version"], 0);
    assert_eq!(v["result"]["config"], Value::Null);
    assert_eq!(v["result"]["source"], "cloudflare");
    assert_eq!(v["result"]["tunnel_id"], t["id"]);

    let (s, v) = api
        .call(
            Method::PUT,
            &path,
            Some(json!({"config": {"ingress": [{"hostname": "a.example.com", "service": "http://x:80"}]}})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("last ingress rule"));
    let (s, _) = api
        .call(
            Method::PUT,
            &path,
            Some(json!({"config": {"ingress": [
                {"hostname": "a.example.com", "service": "http://x:80", "originRequest": {"connectTimeout": "30s"}},
                {"service": "http_status:404"}]}})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        api.take_violations(),
        ["PUT type config.ingress[0].originRequest.connectTimeout"]
    );

    let config = json!({"ingress": [
        {"hostname": "a.example.com", "service": "http://localhost:8080",
         "originRequest": {"connectTimeout": 30, "access": {"required": true, "teamName": "ecs-tunnels-demo", "audTag": ["aud1"]}}},
        {"service": "http_status:404"}],
        "originRequest": {}});
    let (s, v) = api
        .call(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["version"], 1);
    let (_, v) = api.get(&path).await;
    assert_eq!(v["result"]["config"], config);
    assert_eq!(v["result"]["version"], 1);
}

#[tokio::test]
async fn access_apps_policies_and_tags() {
    let api = Api::default().await;
    let a = format!("/accounts/{ACCOUNT}/access");
    let (_, v) = api.get(&format!("{a}/organizations")).await;
    assert_eq!(
        v["result"]["auth_domain"],
        "ecs-tunnels-demo.cloudflareaccess.com"
    );
    let (_, v) = api.get(&format!("{a}/identity_providers")).await;
    let idp = v["result"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["result"][0]["type"], "onetimepin");

    let (s, v) = api
        .post(
            &format!("{a}/policies"),
            json!({"name": "p", "decision": "allow", "include": [{"emial": {}}]}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(api.take_violations().len(), 1, "the misspelt rule");
    let (s, _) = api
        .post(
            &format!("{a}/policies"),
            json!({"name": "p", "decision": "allow", "include": []}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = api
        .post(
            &format!("{a}/policies"),
            json!({"name": "employees", "decision": "allow",
                   "include": [{"email_domain": {"domain": "example.com"}}],
                   "require": [{"login_method": {"id": idp}}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["reusable"], true);
    let pid = v["result"]["id"].as_str().unwrap().to_owned();

    let app_body = json!({"name": "orders", "type": "self_hosted", "domain": "orders.example.com",
        "destinations": [{"type": "public", "uri": "orders.example.com"}],
        "session_duration": "24h", "allowed_idps": [idp], "auto_redirect_to_identity": true,
        "app_launcher_visible": false, "tags": ["ecs-tunnels"],
        "policies": [{"id": pid, "precedence": 1}]});
    let (s, v) = api.post(&format!("{a}/apps"), app_body.clone()).await;
    assert_eq!(s, 400, "tag does not exist yet: {v}");
    let (s, _) = api
        .post(&format!("{a}/tags"), json!({"name": "ecs-tunnels"}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .post(&format!("{a}/tags"), json!({"name": "ecs-tunnels"}))
        .await;
    assert_eq!(s, 409);
    let mut bad = app_body.clone();
    bad["session_duration"] = json!("1 day");
    assert_eq!(api.post(&format!("{a}/apps"), bad).await.0, 400);

    let (s, v) = api.post(&format!("{a}/apps"), app_body.clone()).await;
    assert_eq!(s, 200, "{v}");
    let app = v["result"].clone();
    let app_id = app["id"].as_str().unwrap().to_owned();
    let aud = app["aud"].as_str().unwrap();
    assert_eq!(aud.len(), 64);
    assert!(aud
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(app["policies"][0]["id"], pid);
    assert_eq!(app["policies"][0]["precedence"], 1);
    assert_eq!(app["policies"][0]["decision"], "allow");
    assert_eq!(app["session_duration"], "24h");

    let mut dup = app_body.clone();
    dup["name"] = json!("another");
    dup["domain"] = json!("ORDERS.example.com");
    let (s, v) = api.post(&format!("{a}/apps"), dup).await;
    assert_eq!((s, error_code(&v)), (409, 11010));
    assert_eq!(
        v["errors"][0]["message"],
        "access.api.error.application_already_exists"
    );

    let (_, v) = api
        .get(&format!("{a}/apps?domain=orders.example.com&exact=true"))
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let (_, v) = api
        .get(&format!("{a}/apps?domain=rders.example&exact=true"))
        .await;
    assert_eq!(v["result"], json!([]));
    let (_, v) = api.get(&format!("{a}/apps?domain=rders.example")).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);

    let (s, v) = api
        .call(Method::DELETE, &format!("{a}/policies/{pid}"), None)
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("in use"));
    let mut updated = app_body.clone();
    updated["policies"] = json!([]);
    let (s, v) = api
        .call(Method::PUT, &format!("{a}/apps/{app_id}"), Some(updated))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["aud"], app["aud"]);
    assert_eq!(v["result"]["policies"], json!([]));
    let (s, _) = api
        .call(Method::DELETE, &format!("{a}/policies/{pid}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .call(Method::DELETE, &format!("{a}/apps/{app_id}"), None)
        .await;
    assert_eq!((s, &v["result"]["id"]), (200, &json!(app_id)));
    let (s, _) = api.get(&format!("{a}/apps/{app_id}")).await;
    assert_eq!(s, 404);

    let (s, v) = api
        .post(
            &format!("{a}/groups"),
            json!({"name": "ops", "include": [{"email": {"email": "a@example.com"}}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let gid = v["result"]["id"].as_str().unwrap();
    let (s, _) = api.get(&format!("{a}/groups/{gid}")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn faults_and_request_counters() {
    let api = Api::default().await;
    let base = format!("/accounts/{ACCOUNT}/cfd_tunnel");
    let (s, _) = api
        .hook(
            Method::POST,
            "/faults",
            Some(json!({"method": "POST", "path_contains": "cfd_tunnel", "status": 429, "retry_after": 2, "count": 1})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v, headers) = api
        .send(
            Method::POST,
            format!("{}{base}", api.sim.base_url),
            Some(&api.token),
            Some(json!({"name": "f"})),
        )
        .await;
    assert_eq!(s, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(v["success"], false);
    assert!(error_code(&v) >= 971);
    let (_, v) = api.get(&base).await;
    assert_eq!(v["result"], json!([]), "a faulted request changes nothing");
    api.tunnel("f", None).await;

    api.hook(
        Method::POST,
        "/faults",
        Some(json!({"status": 500, "count": 2})),
    )
    .await;
    assert_eq!(api.get("/zones").await.0, 500);
    let (s, v) = api.post(&base, json!({"name": "g"})).await;
    assert_eq!((s, error_code(&v)), (500, 10001));
    assert_eq!(
        api.get(&format!("{base}?name=g")).await.1["result"],
        json!([])
    );
    assert_eq!(api.get("/zones").await.0, 200);

    // `commit`: the write lands, the answer is the error.
    api.hook(
        Method::POST,
        "/faults",
        Some(
            json!({"method": "POST", "path_contains": "cfd_tunnel", "status": 502, "commit": true}),
        ),
    )
    .await;
    let (s, v) = api.post(&base, json!({"name": "committed"})).await;
    assert_eq!((s, error_code(&v)), (502, 10001));
    assert_eq!(
        api.get(&format!("{base}?name=committed")).await.1["result"][0]["name"],
        "committed",
        "the write was applied before the error answer"
    );

    api.hook(
        Method::POST,
        "/faults",
        Some(json!({"status": 503, "count": 5})),
    )
    .await;
    api.hook(Method::DELETE, "/faults", None).await;
    assert_eq!(api.get("/zones").await.0, 200);

    api.hook(
        Method::POST,
        "/faults",
        Some(json!({"path_contains": "/zones", "latency_ms": 150})),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(api.get("/zones").await.0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));

    api.hook(Method::DELETE, "/requests", None).await;
    api.get("/zones").await;
    api.post(&base, json!({"name": "f"})).await; // 409
    api.get("/nope").await; // 404
    assert_eq!(api.take_violations(), ["GET no-operation "]);
    api.hook(Method::GET, "/state", None).await; // hooks are not counted
    let (_, r) = api.hook(Method::GET, "/requests", None).await;
    assert_eq!(r["total"], 3);
    assert_eq!(r["writes"], 1);
    assert_eq!(r["by_status"], json!({"200": 1, "409": 1, "404": 1}));
    assert_eq!(r["log"][1]["method"], "POST");
    assert_eq!(r["log"][1]["path"], format!("/client/v4{base}"));
    assert_eq!(r["log"][1]["status"], 409);

    // Reset restores the start state but keeps zone ids.
    let zone = api.zone_id("example.com").await;
    api.hook(Method::POST, "/reset", None).await;
    assert_eq!(api.get(&base).await.1["result"], json!([]));
    assert_eq!(api.zone_id("example.com").await, zone);
    let (s, _) = api
        .hook(Method::POST, "/zones", Some(json!({"name": "example.org"})))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        api.get("/zones?name=example.org").await.1["result_info"]["count"],
        1
    );
}

#[tokio::test]
async fn rate_limit_per_token() {
    use devtools::cloudflare_sim::RateLimit;
    let api = Api::start(SimOptions {
        rate_limit: Some(RateLimit::per_seconds(3, 60)),
        ..SimOptions::default()
    })
    .await;
    let zones = format!("{}/zones", api.sim.base_url);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (s, _, h) = api
            .send(Method::GET, zones.clone(), Some(&api.token), None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(h["ratelimit-policy"], "\"default\";q=3;w=60");
        assert!(h.get("retry-after").is_none(), "Retry-After only on a 429");
        remaining.push(h["ratelimit"].to_str().unwrap().to_owned());
    }
    assert!(
        remaining[0].starts_with("\"default\";r=2;t="),
        "{remaining:?}"
    );
    assert!(
        remaining[2].starts_with("\"default\";r=0;t="),
        "{remaining:?}"
    );

    // The fourth: Cloudflare's 429, and the token is blocked for the whole window.
    let (s, v, h) = api
        .send(Method::GET, zones.clone(), Some(&api.token), None)
        .await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "60");
    assert_eq!(v["success"], false);
    assert_eq!(error_code(&v), 971);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("More than 3 requests per 60 seconds reached. Please wait and consider throttling your request speed"),
        "{v}"
    );
    // Writes are refused too, and change nothing; a bad token is still a 403.
    let base = format!("/accounts/{ACCOUNT}/cfd_tunnel");
    let (s, _) = api
        .post(&base, json!({"name": "t", "config_src": "cloudflare"}))
        .await;
    assert_eq!(s, 429);
    let (s, _, _) = api
        .send(Method::GET, zones.clone(), Some("wrong"), None)
        .await;
    assert_eq!(s, 403);
    let (_, r) = api.hook(Method::GET, "/requests", None).await;
    assert_eq!(r["rate_limited"], 2);
    assert_eq!(r["by_status"]["429"], 2);
    assert_eq!(r["total"], 6);

    // Changed at run time: the windows start afresh.
    let (s, v) = api
        .hook(
            Method::POST,
            "/rate_limit",
            Some(json!({"requests": 1, "window_secs": 60})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rate_limit"],
        json!({"requests": 1, "window_secs": 60.0, "block": true})
    );
    let (s, _) = api
        .post(&base, json!({"name": "t", "config_src": "cloudflare"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.get(&base).await.0, 429);
    let (s, _) = api
        .hook(
            Method::POST,
            "/rate_limit",
            Some(json!({"requests": 0, "window_secs": 60})),
        )
        .await;
    assert_eq!(s, 400);

    // Off: no limit, no rate headers.
    let (_, v) = api.hook(Method::DELETE, "/rate_limit", None).await;
    assert_eq!(v["rate_limit"], Value::Null);
    assert_eq!(v["rate_limited"], 3);
    let (s, _, h) = api
        .send(Method::GET, zones.clone(), Some(&api.token), None)
        .await;
    assert_eq!(s, 200);
    assert!(h.get("ratelimit").is_none());
    assert_eq!(
        api.get(&base).await.1["result"].as_array().unwrap().len(),
        1
    );

    // Reset goes back to the start options: 3 per 60 s again.
    api.hook(Method::POST, "/reset", None).await;
    let (_, v) = api.hook(Method::GET, "/rate_limit", None).await;
    assert_eq!(v["rate_limit"]["requests"], 3);
    assert_eq!(v["rate_limited"], 0);
}

#[tokio::test]
async fn binary_prints_base_url() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudflare-sim"))
        .args([
            "--port",
            "0",
            "--token",
            "bin-token",
            "--zone",
            "example.io",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    let base = line.trim();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/client/v4"),
        "{base}"
    );
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/zones"))
        .bearer_auth("bin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["result"][0]["name"], "example.io");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn openapi_violations_are_answered_and_recorded() {
    let api = Api::default().await;
    let tunnels = format!("/accounts/{ACCOUNT}/cfd_tunnel");

    // A good request passes through to the handler.
    let (s, v) = api
        .post(
            &tunnels,
            json!({"name": "good", "config_src": "cloudflare"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.get(&format!("{tunnels}?per_page=1000")).await;
    assert_eq!(s, 200, "{v}");

    // A bad one is answered like a malformed request, naming the field and the rule.
    let (s, v) = api
        .post(&tunnels, json!({"name": "bad", "config_src": "remote"}))
        .await;
    assert_eq!((s, error_code(&v)), (400, 10400), "{v}");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("config_src") && msg.contains("enum"), "{msg}");
    let (s, v) = api.get(&format!("{tunnels}?per_page=5000")).await;
    assert_eq!((s, error_code(&v)), (400, 10400), "{v}");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("per_page"));
    // Neither reached the handler.
    let (_, st) = api.hook(Method::GET, "/state", None).await;
    assert_eq!(st["tunnels"].as_array().unwrap().len(), 1);

    let (s, r) = api.hook(Method::GET, "/violations", None).await;
    assert_eq!(s, 200);
    assert_eq!(r["count"], 2);
    let first = &r["violations"][0];
    assert_eq!(
        (&first["part"], &first["field"], &first["rule"]),
        (&json!("body"), &json!("config_src"), &json!("enum"))
    );
    assert_eq!(
        first["operation_id"],
        "cloudflare-tunnel-create-a-cloudflare-tunnel"
    );
    assert_eq!(r["violations"][1]["rule"], "maximum");
    let (_, req) = api.hook(Method::GET, "/requests", None).await;
    assert_eq!(req["violations"], 2);
    assert_eq!(req["log"][2]["status"], 400);
    assert!(req["log"][2]["violation"].is_string());

    // A reset keeps them; only DELETE /__sim/violations forgets them.
    api.hook(Method::POST, "/reset", None).await;
    assert_eq!(api.sim.violations().len(), 2);
    api.hook(Method::DELETE, "/violations", None).await;
    assert!(api.sim.violations().is_empty());

    // A simulator with the check off lets the same request reach its own validation.
    let lax = Api::start(SimOptions {
        validate_openapi: false,
        ..SimOptions::default()
    })
    .await;
    let (s, v) = lax
        .post(&tunnels, json!({"name": "bad", "config_src": "remote"}))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_ne!(error_code(&v), 10400);
    assert!(lax.sim.violations().is_empty());
}

/// `(started_us, ended_us)` of every logged request, oldest first.
async fn timings(api: &Api) -> Vec<(u64, u64)> {
    let (_, r) = api.hook(Method::GET, "/requests", None).await;
    r["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| {
            (
                e["started_us"].as_u64().expect("started_us"),
                e["ended_us"].as_u64().expect("ended_us"),
            )
        })
        .collect()
}

#[tokio::test]
async fn global_latency_delays_every_api_request_and_no_hook() {
    use std::time::{Duration, Instant};
    let api = Api::start(SimOptions {
        latency_ms: 300,
        ..SimOptions::default()
    })
    .await;
    assert_eq!(api.hook(Method::GET, "/latency", None).await.1["ms"], 300);
    let started = Instant::now();
    assert_eq!(api.get("/zones").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Every API request, an unauthenticated or unknown one too.
    let started = Instant::now();
    let (s, _, _) = api
        .send(
            Method::GET,
            format!("{}/zones", api.sim.base_url),
            None,
            None,
        )
        .await;
    assert_eq!(s, 403);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Hooks are not delayed (a hook takes well under the latency).
    let started = Instant::now();
    for _ in 0..3 {
        api.hook(Method::GET, "/state", None).await;
    }
    assert!(started.elapsed() < Duration::from_millis(300));

    // The log times each request, latency included; concurrent requests overlap (the
    // latency does not serialise them), sequential ones do not.
    api.hook(Method::DELETE, "/requests", None).await;
    let tunnels = format!("/accounts/{ACCOUNT}/cfd_tunnel");
    let (a, b, c) = tokio::join!(
        api.get("/zones"),
        api.get("/zones?name=example.com"),
        api.get(&tunnels),
    );
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    api.get("/zones").await;
    let t = timings(&api).await;
    assert_eq!(t.len(), 4);
    assert!(t.iter().all(|(s, e)| e - s >= 300_000), "{t:?}");
    let last_start_of_three = t[..3].iter().map(|x| x.0).max().unwrap();
    let first_end_of_three = t[..3].iter().map(|x| x.1).min().unwrap();
    assert!(last_start_of_three < first_end_of_three, "overlap: {t:?}");
    assert!(t[3].0 >= t[..3].iter().map(|x| x.1).max().unwrap(), "{t:?}");

    // The hook changes it; 0 turns it off.
    let (s, v) = api
        .hook(Method::POST, "/latency", Some(json!({"ms": 0})))
        .await;
    assert_eq!((s, v["ms"].clone()), (200, json!(0)));
    api.hook(Method::DELETE, "/requests", None).await;
    api.get("/zones").await;
    let t = timings(&api).await;
    assert!(t[0].1 - t[0].0 < 300_000, "{t:?}");
    let (s, v) = api
        .hook(Method::POST, "/latency", Some(json!({"ms": -5})))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("ms"));
}

#[tokio::test]
async fn seed_hook_crowds_every_zone_with_objects_that_are_not_ours() {
    let zones: Vec<String> = ["example.com", "a.test", "b.test", "c.test", "d.test"]
        .iter()
        .map(|z| z.to_string())
        .collect();
    let api = Api::start(SimOptions {
        zones: zones.clone(),
        page_cap: Some(20),
        server_shapes: true,
        ..SimOptions::default()
    })
    .await;
    let (s, v) = api
        .hook(
            Method::POST,
            "/seed",
            Some(json!({"access_apps": 30, "policies": 25, "dns_records": 100})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["added"]["dns_records_by_zone"]["example.com"], 20);
    assert_eq!(
        v["totals"],
        json!({"zones": 5, "access_apps": 30, "policies": 25, "dns_records": 100})
    );
    let (_, r) = api.hook(Method::GET, "/requests", None).await;
    assert_eq!(r["total"], 0, "seeding makes no API request");

    // Through the API, page by page (20 a page).
    let a = format!("/accounts/{ACCOUNT}/access");
    let (_, v) = api.get(&format!("{a}/apps")).await;
    assert_eq!(v["result_info"]["total_count"], 30);
    assert_eq!(v["result_info"]["total_pages"], 2);
    let (_, v) = api.get(&format!("{a}/policies?page=2")).await;
    assert_eq!(v["result_info"]["total_count"], 25);
    assert_eq!(v["result"].as_array().unwrap().len(), 5);
    for zone in &zones {
        let id = api.zone_id(zone).await;
        let (_, v) = api.get(&format!("/zones/{id}/dns_records")).await;
        assert_eq!(v["result_info"]["total_count"], 20, "{zone}");
        assert!(v["result"][0]["name"].as_str().unwrap().ends_with(zone));
    }

    // Nothing carries an ecs-tunnels owner marker; the apps are linked to the policies.
    let (_, st) = api.hook(Method::GET, "/state", None).await;
    for app in st["access_apps"].as_array().unwrap() {
        assert!(
            !app["name"].as_str().unwrap().contains("ecs-tunnels"),
            "{app}"
        );
        assert_eq!(app["tags"], json!([]), "{app}");
        assert_eq!(app["type"], "self_hosted");
        assert_eq!(app["policies"].as_array().unwrap().len(), 1, "{app}");
        let domain = app["domain"].as_str().unwrap();
        assert!(zones.iter().any(|z| domain.ends_with(&format!(".{z}"))));
    }
    for p in st["access_policies"].as_array().unwrap() {
        assert!(!p["name"].as_str().unwrap().contains("ecs-tunnels"), "{p}");
    }
    let records = st["dns_records"].as_array().unwrap();
    for r in records {
        let comment = r["comment"].as_str().unwrap_or("");
        assert!(!comment.starts_with("ecs-tunnels"), "{r}");
    }
    let types: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["A", "AAAA", "CNAME", "TXT"].into_iter().collect());

    // Seeding again adds more, under new names; a wrong body is refused.
    let (s, v) = api
        .hook(Method::POST, "/seed", Some(json!({"dns_records": 5})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totals"]["dns_records"], 105);
    for bad in [
        json!({"dns_records": -1}),
        json!({"apps": 3}),
        json!({"policies": "x"}),
    ] {
        let (s, v) = api.hook(Method::POST, "/seed", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad} → {v}");
    }
    // The created objects are usable: a seeded app can be fetched and deleted.
    let id = st["access_apps"][0]["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("{a}/apps/{id}")).await.0, 200);
    assert_eq!(
        api.call(Method::DELETE, &format!("{a}/apps/{id}"), None)
            .await
            .0,
        200
    );
}
