//! The governed API: keys and scopes, rate limits, back-pressure, Idempotency-Key, hostile
//! input, the OpenAPI document and reference page, versioning, the audit log.

use std::collections::BTreeSet;
use std::sync::Arc;

use crossdock::clock::{Clock, ManualClock};
use crossdock_core::Timestamp;
use serde_json::{Value, json};

use crate::helpers::{TestApp, create_key, event, read, test_config};

crate::backend_tests!(
    requests_without_a_valid_key_are_refused_with_problems,
    a_key_without_the_scope_is_forbidden,
    a_key_over_its_rate_gets_429s_while_another_key_is_unaffected,
    a_flood_beyond_the_in_flight_limit_gets_503s_and_the_server_recovers,
    a_thousand_concurrent_posts_with_one_key_have_one_effect,
    an_idempotency_key_is_kept_for_its_window_and_belongs_to_one_request,
    hostile_path_query_and_header_values_get_clear_4xx,
    operational_actions_are_audited_and_only_admins_read_the_log,
    a_changed_configuration_is_audited_when_the_server_starts,
);

async fn bearer(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app
        .anonymous
        .request(method.parse().unwrap(), app.url(path))
        .header("authorization", format!("Bearer {token}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    request.send().await.unwrap()
}

async fn requests_without_a_valid_key_are_refused_with_problems(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let none = app
        .anonymous
        .get(app.url("/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"crossdock\""
    );
    assert_eq!(none.headers()["content-type"], "application/problem+json");
    let (_, problem) = read(none).await;
    assert_eq!(problem["type"], "/problems/unauthorized");

    let unknown = format!("cdk_0123456789ab_{}", "A".repeat(43));
    for token in [unknown.as_str(), "not-a-token", "cdk_"] {
        let response = bearer(&app, token, "GET", "/v1/events", None).await;
        assert_eq!(response.status().as_u16(), 401, "{token}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    let basic = app
        .anonymous
        .get(app.url("/v1/events"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);

    // A revoked key is refused.
    let token = create_key(&app.state, "partner", "events:read", None, None).await;
    app.state
        .store
        .key_revoke("partner", app.state.clock.now())
        .await
        .unwrap();
    let revoked = bearer(&app, &token, "GET", "/v1/events", None).await;
    assert_eq!(revoked.status().as_u16(), 401);
    let (_, problem) = read(revoked).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem}"
    );

    // A wrong secret for a real key id is refused too.
    let good = create_key(&app.state, "reader", "events:read", None, None).await;
    let forged = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('A') { 'B' } else { 'A' }
    );
    assert_eq!(
        bearer(&app, &forged, "GET", "/v1/events", None)
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        bearer(&app, &good, "GET", "/v1/events", None)
            .await
            .status()
            .as_u16(),
        200
    );

    // Probes and the API description need no key.
    for path in [
        "/healthz",
        "/readyz",
        "/v1/openapi.json",
        "/docs",
        "/problems/unauthorized",
    ] {
        let response = app.anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.headers()["api-version"], "1", "{path}");
    }
}

async fn a_key_without_the_scope_is_forbidden(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let reader = create_key(&app.state, "feed-reader", "events:read", None, None).await;
    assert_eq!(
        bearer(&app, &reader, "GET", "/v1/events", None)
            .await
            .status()
            .as_u16(),
        200
    );
    let posted = bearer(&app, &reader, "POST", "/v1/events", Some(&event("/a", "1"))).await;
    assert_eq!(posted.status().as_u16(), 403);
    let (_, problem) = read(posted).await;
    assert_eq!(problem["type"], "/problems/forbidden");
    assert!(
        problem["detail"].as_str().unwrap().contains("events:write"),
        "{problem}"
    );
    for path in ["/v1/dead-letters", "/v1/consumers", "/metrics", "/v1/audit"] {
        assert_eq!(
            bearer(&app, &reader, "GET", path, None)
                .await
                .status()
                .as_u16(),
            403,
            "{path}"
        );
    }
    let ops = create_key(&app.state, "operator", "ops", None, None).await;
    assert_eq!(
        bearer(&app, &ops, "GET", "/v1/dead-letters", None)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        bearer(&app, &ops, "GET", "/v1/audit", None)
            .await
            .status()
            .as_u16(),
        403
    );
    assert_eq!(app.head_seq().await, 0, "nothing reached the log");
}

fn frozen_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_micros(
        1_800_000_000_000_000,
    )))
}

async fn a_key_over_its_rate_gets_429s_while_another_key_is_unaffected(
    db: crossdock_store::testkit::TestDb,
) {
    let clock = frozen_clock();
    let manual: Arc<dyn Clock> = clock.clone();
    let config = test_config(&db);
    let app = TestApp::spawn_with(db, config, move |b| b.clock(manual)).await;
    let slow = create_key(&app.state, "slow", "events:read", None, Some(5)).await;
    let other = create_key(&app.state, "other", "events:read", None, Some(5)).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(bearer(&app, &slow, "GET", "/v1/events", None).await);
    }
    let allowed = statuses
        .iter()
        .filter(|r| r.status().as_u16() == 200)
        .count();
    // The clock does not move: the rate plus its burst, and not one more.
    assert_eq!(allowed, 6, "5/s with a burst of 5 at one instant");
    let limited = statuses
        .into_iter()
        .find(|r| r.status().as_u16() == 429)
        .unwrap();
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()["ratelimit-policy"], "\"key\";q=5;w=1");
    assert!(
        limited.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"key\";r=0")
    );
    let (_, problem) = read(limited).await;
    assert_eq!(problem["type"], "/problems/rate-limited");
    // The other key has its own budget.
    let fine = bearer(&app, &other, "GET", "/v1/events", None).await;
    assert_eq!(fine.status().as_u16(), 200);
    assert!(
        fine.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"key\";r=5")
    );
    // A second later the slow key may go on.
    clock.advance_ms(1000);
    assert_eq!(
        bearer(&app, &slow, "GET", "/v1/events", None)
            .await
            .status()
            .as_u16(),
        200
    );
}

async fn a_flood_beyond_the_in_flight_limit_gets_503s_and_the_server_recovers(
    db: crossdock_store::testkit::TestDb,
) {
    let mut config = test_config(&db);
    config.server.in_flight_requests_max = 3;
    let app = TestApp::spawn_with(db, config, |b| b).await;
    // Three long polls hold every slot.
    let holders: Vec<_> = (0..3)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/v1/events?wait_ms=3000"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/healthz"));
            tokio::spawn(async move { client.get(url).send().await.unwrap() })
        })
        .collect();
    let mut refused = 0;
    for request in flood {
        let response = request.await.unwrap();
        if response.status().as_u16() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let (_, problem) = read(response).await;
            assert_eq!(problem["type"], "/problems/overloaded");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 200,
        "every request beyond the limit is refused at once, none queued"
    );
    for holder in holders {
        assert_eq!(holder.await.unwrap(), 200);
    }
    // No restart needed.
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
}

async fn a_thousand_concurrent_posts_with_one_key_have_one_effect(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let body = json!([event("/erp", "po-1"), event("/erp", "po-2")]).to_string();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url, body) = (app.client.clone(), app.url("/v1/events"), body.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", "order-batch-7")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    let first = r#"{"accepted":2,"duplicates":0,"first_seq":1,"last_seq":2}"#;
    let mut statuses = BTreeSet::new();
    for (status, body) in &answers {
        statuses.insert(*status);
        match status {
            202 => assert_eq!(body, first, "a reply differs from the first"),
            409 => assert!(body.contains("/problems/idempotency-in-flight"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(statuses.contains(&202));
    assert_eq!(app.head_seq().await, 2, "one effect");
    assert_eq!(app.state.store.read_events(0, 10).await.unwrap().len(), 2);
}

async fn an_idempotency_key_is_kept_for_its_window_and_belongs_to_one_request(
    db: crossdock_store::testkit::TestDb,
) {
    let clock = frozen_clock();
    let manual: Arc<dyn Clock> = clock.clone();
    let config = test_config(&db);
    let app = TestApp::spawn_with(db, config, move |b| b.clock(manual)).await;
    let post = |key: &'static str, body: Value| {
        let (client, url) = (app.client.clone(), app.url("/v1/events"));
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            let (status, body) = read(response).await;
            (status, body, replayed)
        }
    };
    let (status, first, replayed) = post("k-1", event("/a", "1")).await;
    assert_eq!((status, replayed), (202, false));
    // The same key with another body is refused, and nothing happens.
    let (status, problem, _) = post("k-1", event("/a", "2")).await;
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
    assert_eq!(app.head_seq().await, 1);
    // 23 hours later the stored reply comes back.
    clock.advance_ms(23 * 3600 * 1000);
    let (status, again, replayed) = post("k-1", event("/a", "1")).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again, first);
    // After the window, the key is new again and the request runs (a duplicate event now).
    clock.advance_ms(2 * 3600 * 1000);
    let (status, later, replayed) = post("k-1", event("/a", "1")).await;
    assert_eq!((status, replayed), (202, false));
    assert_eq!(later["duplicates"], 1);
    // Keys belong to the API key that sent them: another key may reuse the name.
    let other = create_key(&app.state, "other-writer", "events:write", None, None).await;
    let response = app
        .anonymous
        .post(app.url("/v1/events"))
        .header("authorization", format!("Bearer {other}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "k-1")
        .body(event("/a", "3").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // A malformed key is refused before anything runs.
    let (status, problem, _) = post("has space", event("/a", "4")).await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "/problems/idempotency-key-invalid");
    // A replayed failure is the same failure.
    let (status, bad, _) = post("k-bad", json!({"specversion": "1.0"})).await;
    let (again_status, again, replayed) = post("k-bad", json!({"specversion": "1.0"})).await;
    assert_eq!((status, again_status, replayed), (422, 422, true));
    assert_eq!(bad, again);
}

async fn hostile_path_query_and_header_values_get_clear_4xx(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let long = "x".repeat(10_000);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/v1/inbox/1%3BDROP%20TABLE%20events".into(),
            400,
            "/path/id",
        ),
        ("/v1/inbox/1'%20OR%20'1'='1".into(), 400, "/path/id"),
        (
            "/v1/dead-letters/..%2F..%2Fetc%2Fpasswd".into(),
            400,
            "/path/id",
        ),
        ("/v1/dead-letters/%00".into(), 400, "/path/id"),
        (format!("/v1/dead-letters/{long}"), 400, "/path/id"),
        ("/v1/dead-letters/-5".into(), 400, "/path/id"),
        (
            "/v1/dead-letters/99999999999999999999999".into(),
            400,
            "/path/id",
        ),
        ("/v1/events?after=1%0A2".into(), 400, "/query/after"),
        (format!("/v1/events?after={long}"), 400, "/query/after"),
        (format!("/v1/events?{long}=1"), 400, "is not a parameter"),
        ("/v1/inbox?status=%FF".into(), 400, "percent-encoding"),
        ("/v1/audit?since=yesterday".into(), 400, "/query/since"),
        ("/problems/..%2Fetc".into(), 404, "no problem type"),
    ];
    for (path, status, says) in cases {
        let (got, body) = app.get(&path).await;
        assert_eq!(got, status, "{}: {body}", &path[..path.len().min(80)]);
        assert!(
            body.to_string().contains(says),
            "{}: {body}",
            &path[..path.len().min(80)]
        );
    }
    let dropped = app
        .client
        .delete(app.url(&format!("/v1/dead-letters/1?reason={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status().as_u16(), 400);
    // Oversized and odd headers are refused or ignored, never a crash.
    let key = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .header("idempotency-key", long.as_str())
        .body(event("/a", "1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(key.status().as_u16(), 400);
    let traced = app
        .client
        .get(app.url("/healthz"))
        .header("traceparent", long.as_str())
        .header("x-correlation-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status().as_u16(), 200);
    assert_eq!(
        traced.headers()["x-correlation-id"].len(),
        32,
        "a fresh id replaces bad ones"
    );
    assert_eq!(app.head_seq().await, 0);
}

async fn operational_actions_are_audited_and_only_admins_read_the_log(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let ops = create_key(&app.state, "night-shift", "ops", None, None).await;
    let replay = bearer(
        &app,
        &ops,
        "POST",
        "/v1/dead-letters/42/replay",
        Some(&json!({})),
    )
    .await;
    assert_eq!(replay.status().as_u16(), 404);
    let drop = bearer(
        &app,
        &ops,
        "DELETE",
        "/v1/dead-letters/42?reason=test",
        None,
    )
    .await;
    assert_eq!(drop.status().as_u16(), 404);
    let (status, log) = app.get("/v1/audit?actor=night-shift").await;
    assert_eq!(status, 200);
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["dead_letter.replay", "dead_letter.drop"]);
    assert_eq!(entries[0]["target"], "action:42");
    assert_eq!(entries[0]["outcome"], "refused: not-found");
    assert!(entries[0]["correlation_id"].is_string());
    assert_eq!(entries[1]["detail"]["reason"], "test");
    let (_, drops) = app.get("/v1/audit?action=dead_letter.drop").await;
    assert_eq!(drops["entries"].as_array().unwrap().len(), 1);
    let (_, none) = app.get("/v1/audit?since=2099-01-01T00:00:00Z").await;
    assert_eq!(none["entries"], json!([]));
    // Starting the server recorded its configuration.
    let (_, config) = app.get("/v1/audit?action=config.loaded").await;
    assert_eq!(config["entries"].as_array().unwrap().len(), 1);
}

async fn a_changed_configuration_is_audited_when_the_server_starts(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let db = app.stop().await;
    // The same configuration again: nothing new to record.
    let app = TestApp::spawn(db).await;
    let db = app.stop().await;
    let mut config = test_config(&db);
    config.events.batch_events_max = 10;
    let app = TestApp::spawn_with(db, config, |b| b).await;
    let (_, loaded) = app.get("/v1/audit?action=config.loaded").await;
    assert_eq!(loaded["entries"].as_array().unwrap().len(), 2);
    let (_, changed) = app.get("/v1/audit?action=config.changed").await;
    let changed = changed["entries"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["actor"], "system");
    assert!(changed[0]["detail"]["previous"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_3_1_and_describes_every_route() {
    let app = TestApp::spawn(crossdock_store::testkit::TestDb::sqlite()).await;
    let (status, doc) = app.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut operations = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.insert((method.to_uppercase(), path.clone()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            if let Some(id) = op["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "operationId {id} twice"
                );
            }
            // Every path template parameter is declared.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    declared.contains(name),
                    "{method} {path} does not declare {name}"
                );
            }
            let security = &op["security"];
            assert!(
                security.is_array(),
                "{method} {path} says nothing about security"
            );
        }
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref to {name}"
        );
    }
    // The document and the policy table describe the same routes, and every one is served.
    let policies: BTreeSet<(String, String)> = crossdock::http::policy::POLICIES
        .iter()
        .map(|p| (p.method.to_owned(), p.path.to_owned()))
        .collect();
    assert_eq!(
        operations, policies,
        "routes and their documentation differ"
    );
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", "1")
            .replace("{slug}", "not-found")
            .replace("{sku}", "SKU-1")
            .replace("{channel_sku}", "c-1");
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let (_, body) = read(response).await;
        let unrouted = body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no route for"));
        assert!(
            status != 405 && !unrouted,
            "{method} {path} is documented but not served ({status})"
        );
    }
    // Scopes, idempotency and standard problems are documented from the same table.
    let post = &doc["paths"]["/v1/events"]["post"];
    assert_eq!(post["security"][0]["bearer"][0], "events:write");
    assert!(
        post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key")
    );
    for status in ["401", "403", "409", "422", "429", "503"] {
        assert!(
            post["responses"][status].is_object(),
            "POST /v1/events lacks {status}"
        );
    }
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_is_self_contained() {
    let app = TestApp::spawn(crossdock_store::testkit::TestDb::sqlite()).await;
    let response = app.anonymous.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("/v1/dead-letters/{id}/replay") && page.contains("scope: ops"));
    for external in ["http://", "https://", "<script", "src=\"//"] {
        assert!(!page.contains(external), "the page loads {external}");
    }
}

/// Routes are registered only through the documented router, never with a bare `.route(`.
#[test]
fn no_route_is_registered_outside_the_documented_router() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains(".route("),
                    "{} registers a route outside openapi::routes",
                    path.display()
                );
            }
        }
    }
}
