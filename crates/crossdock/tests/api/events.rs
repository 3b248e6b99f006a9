//! The event API: append, feed, correlation, errors, inbox, operations routes.

use serde_json::{Value, json};

use crate::helpers::{TestApp, event, test_config};

crate::backend_tests!(
    an_event_posted_is_read_back_from_the_feed,
    a_batch_reports_accepted_duplicates_and_the_sequence_range,
    bad_input_gets_a_problem_and_never_changes_the_log,
    every_response_carries_a_correlation_id,
    a_feed_reader_waiting_for_events_is_woken_by_an_append,
    operations_routes_report_consumers_sources_metrics_and_readiness,
    a_rejected_request_is_kept_and_replays_after_a_configuration_fix,
);

async fn an_event_posted_is_read_back_from_the_feed(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app
        .post_json("/v1/events", &event("/wms/east", "e-1"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "duplicates": 0, "first_seq": 1, "last_seq": 1})
    );
    let (status, feed) = app.get("/v1/events?after=0&limit=10").await;
    assert_eq!(status, 200);
    let e = &feed["events"][0];
    assert_eq!(
        (e["id"].as_str(), e["seq"].as_i64()),
        (Some("e-1"), Some(1))
    );
    assert_eq!(
        e["data"],
        json!({"sku": "A-1", "location": "WH-1", "delta": -1})
    );
    assert_eq!(e["specversion"], "1.0");
    assert!(e["recordedtime"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        (feed["next_after"].as_i64(), feed["head"].as_i64()),
        (Some(1), Some(1))
    );
    let (_, empty) = app.get("/v1/events?after=1").await;
    assert_eq!(empty["events"], json!([]));
}

async fn a_batch_reports_accepted_duplicates_and_the_sequence_range(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let batch = json!([event("/a", "1"), event("/a", "2"), event("/a", "1")]);
    let (status, body) = app.post_json("/v1/events", &batch).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"accepted": 2, "duplicates": 1, "first_seq": 1, "last_seq": 2})
    );
    // A retried request (the client never saw the answer) changes nothing.
    let (_, again) = app.post_json("/v1/events", &batch).await;
    assert_eq!(
        again,
        json!({"accepted": 0, "duplicates": 3, "first_seq": null, "last_seq": null})
    );
    assert_eq!(app.head_seq().await, 2);
}

async fn bad_input_gets_a_problem_and_never_changes_the_log(db: crossdock_store::testkit::TestDb) {
    let mut config = test_config(&db);
    config.events.batch_events_max = 3;
    config.server.body_bytes_max = 64 * 1024;
    let app = TestApp::spawn_with(db, config, |b| b).await;
    app.post_json("/v1/events", &event("/a", "kept")).await;

    let big = "x".repeat(70 * 1024);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"specversion\":".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "not an object",
            "application/json",
            b"\"hello\"".to_vec(),
            422,
            "not a string",
        ),
        (
            "missing attributes",
            "application/json",
            br#"{"specversion":"1.0"}"#.to_vec(),
            422,
            "/id: is required",
        ),
        (
            "wrong attribute type",
            "application/json",
            br#"{"specversion":"1.0","id":"1","source":"/s","type":["t"]}"#.to_vec(),
            422,
            "/type: must be a string, not an array",
        ),
        (
            "wrong specversion",
            "application/cloudevents+json",
            br#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#.to_vec(),
            422,
            "only CloudEvents 1.0",
        ),
        (
            "not UTF-8",
            "application/json",
            b"[\"\xc3\x28\"]".to_vec(),
            400,
            "not valid UTF-8",
        ),
        (
            "oversized body",
            "application/json",
            format!("{{\"data\":\"{big}\"}}").into_bytes(),
            413,
            "larger than",
        ),
        (
            "batch over the limit",
            "application/json",
            json!([
                event("/b", "1"),
                event("/b", "2"),
                event("/b", "3"),
                event("/b", "4")
            ])
            .to_string()
            .into_bytes(),
            413,
            "at most 3",
        ),
        (
            "one bad event spoils its batch",
            "application/json",
            json!([event("/b", "1"), {"specversion": "1.0", "id": "2", "source": "/b"}])
                .to_string()
                .into_bytes(),
            422,
            "/1/type: is required",
        ),
        (
            "wrong media type",
            "text/plain",
            event("/b", "1").to_string().into_bytes(),
            415,
            "not accepted",
        ),
    ];
    for (name, content_type, body, status, says) in cases {
        let response = app
            .client
            .post(app.url("/v1/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        let media = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(media, "application/problem+json", "{name}");
        let problem: Value = response.json().await.unwrap();
        let text = problem.to_string();
        assert!(text.contains(says), "{name}: expected {says:?} in {text}");
        assert_eq!(problem["status"], status, "{name}");
        assert_eq!(problem["instance"], "/v1/events", "{name}");
        assert!(
            problem["type"].as_str().unwrap().starts_with("/problems/"),
            "{name}"
        );
        assert!(problem["correlation_id"].is_string(), "{name}");
    }
    for (method, path, status) in [
        ("GET", "/v1/nothing", 404),
        ("PUT", "/v1/events", 405),
        ("GET", "/v1/events?after=x", 400),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // Nothing reached the log, and the server still works.
    assert_eq!(app.head_seq().await, 1);
    let (status, _) = app.post_json("/v1/events", &event("/a", "after")).await;
    assert_eq!(status, 202);
    // Every problem type links to a page that explains it.
    let (status, page) = app.get("/problems/invalid-event").await;
    assert_eq!(status, 200);
    assert!(
        page["description"]
            .as_str()
            .unwrap()
            .contains("JSON pointer")
    );
}

async fn every_response_carries_a_correlation_id(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let traced = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(event("/a", "traced").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        traced.headers()["x-correlation-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let named = app
        .client
        .get(app.url("/v1/nowhere"))
        .header("x-correlation-id", "order-77")
        .send()
        .await
        .unwrap();
    assert_eq!(named.headers()["x-correlation-id"], "order-77");
    let problem: Value = named.json().await.unwrap();
    assert_eq!(problem["correlation_id"], "order-77");
    let fresh = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = fresh.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    // The correlation id travels with the event into the log.
    let (_, feed) = app.get("/v1/events").await;
    assert_eq!(
        feed["events"][0]["correlationid"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

async fn a_feed_reader_waiting_for_events_is_woken_by_an_append(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let waiter = {
        let (client, url) = (
            app.client.clone(),
            app.url("/v1/events?after=0&wait_ms=10000"),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let feed: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            (feed, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.post_json("/v1/events", &event("/a", "wake")).await;
    let (feed, waited) = waiter.await.unwrap();
    assert_eq!(feed["events"][0]["id"], "wake");
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
}

async fn operations_routes_report_consumers_sources_metrics_and_readiness(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    app.post_json(
        "/v1/events",
        &json!([event("/wms", "1"), event("/erp", "2")]),
    )
    .await;
    app.post_json("/v1/events", &json!([event("/wms", "1")]))
        .await;
    app.eventually("the projection catches up", || async {
        app.get("/v1/sources").await.1["as_of_seq"] == 2
    })
    .await;
    let (_, sources) = app.get("/v1/sources").await;
    let names: Vec<&str> = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["/erp", "/wms"]);
    let (_, consumers) = app.get("/v1/consumers").await;
    assert_eq!(consumers["head"], 2);
    let names: Vec<&str> = consumers["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inventory", "order_sagas", "source_activity"]);
    let activity = &consumers["consumers"][2];
    assert_eq!(activity["lag"], 0, "{consumers}");
    let metrics = app.metrics().await;
    for line in [
        "crossdock_events_ingested_total 2",
        "crossdock_events_duplicate_total 1",
        "crossdock_append_seconds_count 2",
        "crossdock_consumer_lag_events{consumer=\"source_activity\"} 0",
        "crossdock_log_head_seq 2",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
}

async fn a_rejected_request_is_kept_and_replays_after_a_configuration_fix(
    db: crossdock_store::testkit::TestDb,
) {
    let mut strict = test_config(&db);
    strict.events.batch_events_max = 1;
    let app = TestApp::spawn_with(db, strict, |b| b).await;
    let batch = json!([event("/partner", "1"), event("/partner", "2")]);
    let (status, problem) = app.post_json("/v1/events", &batch).await;
    assert_eq!(status, 413);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("kept as inbox message 1"),
        "{problem}"
    );
    let (_, inbox) = app.get("/v1/inbox?status=rejected").await;
    assert_eq!(inbox["messages"][0]["id"], 1);
    let (_, message) = app.get("/v1/inbox/1").await;
    assert_eq!(
        serde_json::from_str::<Value>(message["body"].as_str().unwrap()).unwrap(),
        batch
    );
    // Still too strict: the replay is rejected again, and says so.
    let (status, _) = app.post_json("/v1/inbox/1/replay", &json!({})).await;
    assert_eq!(status, 413);

    let db = app.stop().await;
    let app = TestApp::spawn(db).await;
    let (status, replayed) = app.post_json("/v1/inbox/1/replay", &json!({})).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["accepted"], 2);
    assert_eq!(replayed["status"], "processed");
    let (status, _) = app.post_json("/v1/inbox/1/replay", &json!({})).await;
    assert_eq!(status, 409, "a processed message is not replayed twice");
    let (status, _) = app.get("/v1/inbox/abc").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/v1/inbox/99").await;
    assert_eq!(status, 404);
}
