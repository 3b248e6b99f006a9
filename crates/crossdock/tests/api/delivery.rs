//! Delivery through the outbox: retries, dead letters, replay, coalescing, webhooks.
//! Time is a manual clock: retries become due when the test moves it, never by sleeping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossdock::clock::{Clock, ManualClock};
use crossdock::config::{SubscriptionConfig, TargetConfig, TargetKind};
use crossdock::runtime::delivery::{Deliverer, DeliveryFuture, DeliveryOutcome, TargetSettings};
use crossdock_core::{RetryPolicy, Timestamp};
use crossdock_store::{ClaimedAction, NewAction};
use serde_json::json;

use crate::helpers::{TestApp, event, test_config};

crate::backend_tests!(
    a_target_failing_n_times_gets_exactly_one_success_per_key,
    a_target_that_always_fails_dead_letters_and_a_replay_delivers_once,
    coalesced_actions_deliver_only_the_newest,
    a_subscription_delivers_events_to_a_webhook_with_retries,
);

/// A fake target: fails the first `failures` attempts of every key, then succeeds (or fails
/// forever when `failures` is `u32::MAX`). Records every attempt.
#[derive(Default)]
struct FakeTarget {
    failures: Mutex<u32>,
    attempts: Mutex<BTreeMap<String, u32>>,
    successes: Mutex<Vec<String>>,
}

impl FakeTarget {
    fn failing(failures: u32) -> Arc<Self> {
        let t = Arc::new(FakeTarget::default());
        *t.failures.lock().unwrap() = failures;
        t
    }

    fn successes(&self) -> Vec<String> {
        self.successes.lock().unwrap().clone()
    }
}

impl Deliverer for FakeTarget {
    fn deliver<'a>(&'a self, action: &'a ClaimedAction) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let made = {
                let mut attempts = self.attempts.lock().unwrap();
                let n = attempts.entry(action.idempotency_key.clone()).or_default();
                *n += 1;
                *n
            };
            if made <= *self.failures.lock().unwrap() {
                DeliveryOutcome::Retry {
                    error: format!("HTTP 503 (attempt {made})"),
                    after_ms: None,
                }
            } else {
                self.successes.lock().unwrap().push(action.payload.clone());
                DeliveryOutcome::Delivered
            }
        })
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 4,
    backoff_base_ms: 1000,
    backoff_max_ms: 8000,
};

fn settings() -> TargetSettings {
    TargetSettings {
        policy: POLICY,
        in_flight_max: 4,
        rate_per_second: 0,
    }
}

fn start() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_micros(
        1_800_000_000_000_000,
    )))
}

fn action(clock: &ManualClock, key: &str, coalesce: Option<&str>, value: i64) -> NewAction {
    NewAction {
        target: "fake".into(),
        idempotency_key: key.into(),
        coalesce_key: coalesce.map(Into::into),
        priority: 0,
        payload: json!({"key": key, "value": value}).to_string(),
        not_before: clock.now(),
        correlation_id: None,
        causation_id: None,
    }
}

async fn spawn_with_target(
    db: crossdock_store::testkit::TestDb,
    clock: &Arc<ManualClock>,
    target: &Arc<FakeTarget>,
) -> TestApp {
    let config = test_config(&db);
    let clock: Arc<dyn Clock> = clock.clone();
    let deliverer: Arc<dyn Deliverer> = target.clone();
    TestApp::spawn_with(db, config, move |b| {
        b.clock(clock).target("fake", settings(), deliverer)
    })
    .await
}

async fn a_target_failing_n_times_gets_exactly_one_success_per_key(
    db: crossdock_store::testkit::TestDb,
) {
    let clock = start();
    let target = FakeTarget::failing(3);
    let app = spawn_with_target(db, &clock, &target).await;
    let actions: Vec<NewAction> = (0..40)
        .map(|i| action(&clock, &format!("k{i}"), None, i))
        .collect();
    app.state
        .store
        .enqueue(actions.clone(), clock.now())
        .await
        .unwrap();
    // Queuing the same actions again (a producer retrying) changes nothing.
    app.state.store.enqueue(actions, clock.now()).await.unwrap();
    app.state.outbox_wake.notify_waiters();
    app.eventually("every key is delivered", || async {
        clock.advance_ms(8000);
        target.successes().len() >= 40
    })
    .await;
    // Give stray duplicates a chance to show up before counting.
    for _ in 0..20 {
        clock.advance_ms(8000);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut delivered = target.successes();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 40);
    assert_eq!(target.successes().len(), 40, "a key was delivered twice");
    assert!(target.attempts.lock().unwrap().values().all(|n| *n == 4));
    let (_, dead) = app.get("/v1/dead-letters").await;
    assert_eq!(dead["dead_letters"], json!([]));
}

async fn a_target_that_always_fails_dead_letters_and_a_replay_delivers_once(
    db: crossdock_store::testkit::TestDb,
) {
    let clock = start();
    let target = FakeTarget::failing(u32::MAX);
    let app = spawn_with_target(db, &clock, &target).await;
    app.state
        .store
        .enqueue(vec![action(&clock, "order-9", None, 9)], clock.now())
        .await
        .unwrap();
    app.state.outbox_wake.notify_waiters();
    app.eventually("the action is dead-lettered", || async {
        clock.advance_ms(8000);
        app.get("/v1/dead-letters").await.1["dead_letters"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    let (_, dead) = app.get("/v1/dead-letters?target=fake").await;
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["attempts"], 4, "{letter}");
    assert_eq!(letter["last_error"], "HTTP 503 (attempt 4)");
    assert_eq!(letter["payload"], json!({"key": "order-9", "value": 9}));
    let id = letter["id"].as_i64().unwrap();
    let (_, detail) = app.get(&format!("/v1/dead-letters/{id}")).await;
    assert_eq!(detail["attempt_history"].as_array().unwrap().len(), 4);
    assert_eq!(*target.attempts.lock().unwrap().get("order-9").unwrap(), 4);

    // The target is fixed; the operator replays the dead letter once.
    *target.failures.lock().unwrap() = 0;
    let (status, replay) = app
        .post_json(&format!("/v1/dead-letters/{id}/replay"), &json!({}))
        .await;
    assert_eq!((status, replay["status"].as_str()), (200, Some("pending")));
    app.eventually("the replay is delivered", || async {
        target.successes().len() == 1
    })
    .await;
    let (status, _) = app
        .post_json(&format!("/v1/dead-letters/{id}/replay"), &json!({}))
        .await;
    assert_eq!(
        status, 409,
        "a delivered action is not in the dead-letter queue"
    );
    for _ in 0..10 {
        clock.advance_ms(8000);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(target.successes().len(), 1);
    let (status, missing) = app
        .post_json("/v1/dead-letters/777/replay", &json!({}))
        .await;
    assert_eq!(status, 404, "{missing}");
    let (status, _) = app
        .client
        .delete(app.url(&format!("/v1/dead-letters/{id}")))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 400, "dropping needs a reason");
}

async fn coalesced_actions_deliver_only_the_newest(db: crossdock_store::testkit::TestDb) {
    let clock = start();
    let target = FakeTarget::failing(0);
    // Queue every version before the app (and its workers) start.
    let store = db.open().await;
    for v in 1..=10 {
        store
            .enqueue(
                vec![action(
                    &clock,
                    &format!("stock-A-v{v}"),
                    Some("listing:A"),
                    v,
                )],
                clock.now(),
            )
            .await
            .unwrap();
    }
    store
        .enqueue(
            vec![action(&clock, "stock-B-v1", Some("listing:B"), 1)],
            clock.now(),
        )
        .await
        .unwrap();
    store.close().await;
    let app = spawn_with_target(db, &clock, &target).await;
    app.eventually("both listings are delivered", || async {
        target.successes().len() >= 2
    })
    .await;
    for _ in 0..10 {
        clock.advance_ms(8000);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut delivered = target.successes();
    delivered.sort();
    assert_eq!(
        delivered,
        vec![
            json!({"key": "stock-A-v10", "value": 10}).to_string(),
            json!({"key": "stock-B-v1", "value": 1}).to_string()
        ]
    );
}

async fn a_subscription_delivers_events_to_a_webhook_with_retries(
    db: crossdock_store::testkit::TestDb,
) {
    use axum::http::{HeaderMap, StatusCode};
    // A receiving system that is down for its first two requests.
    let received: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let receiver = {
        let (received, calls) = (received.clone(), calls.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (received, calls) = (received.clone(), calls.clone());
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                    received
                        .lock()
                        .unwrap()
                        .push((key, serde_json::from_str(&body).unwrap()));
                    StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let clock = start();
    let mut config = test_config(&db);
    config.targets.insert(
        "crm".into(),
        TargetConfig {
            kind: TargetKind::Webhook,
            url: hook,
            attempts_max: 5,
            backoff_base_ms: 1000,
            backoff_max_ms: 4000,
            in_flight_max: 1,
            rate_per_second: 0,
            timeout_ms: 5000,
            headers: BTreeMap::from([("x-api-key".to_owned(), "secret".to_owned())]),
        },
    );
    config.subscriptions.push(SubscriptionConfig {
        name: "crm-stock".into(),
        target: "crm".into(),
        types: vec!["wms.*".into()],
        sources: vec![],
    });
    let manual: Arc<dyn Clock> = clock.clone();
    let app = TestApp::spawn_with(db, config, move |b| b.clock(manual)).await;
    let mut other = event("/wms", "ignored");
    other["type"] = json!("order.created");
    app.post_json(
        "/v1/events",
        &json!([event("/wms", "1"), other, event("/wms", "2")]),
    )
    .await;
    app.eventually("both stock events reach the CRM", || async {
        clock.advance_ms(4000);
        received.lock().unwrap().len() >= 2
    })
    .await;
    let mut got = received.lock().unwrap().clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["crm-stock-1", "crm-stock-3"],
        "one delivery per matching event"
    );
    assert_eq!(got[0].1["id"], "1");
    assert_eq!(got[1].1["seq"], 3);
    // The delivery's outcome is recorded just after the receiver answers.
    let delivered = "crossdock_deliveries_total{target=\"crm\",result=\"delivered\"} 2";
    app.eventually("both deliveries are counted", || async {
        app.metrics().await.contains(delivered)
    })
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("crossdock_deliveries_total{target=\"crm\",result=\"retry\"} 2"),
        "{metrics}"
    );
}
