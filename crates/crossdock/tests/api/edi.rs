//! X12 from a trading partner through `POST /v1/edi/{partner}`: kept raw, processed once per
//! interchange, turned into events and movements, acknowledged with a 997; unknown items kept
//! for a replay after the fix; received 997s settle the groups crossdock sent.

use crossdock_core::Timestamp;
use crossdock_store::testkit::TestDb;
use crossdock_store::{EdiGroupQuery, EdiGroupSent};
use serde_json::{Value, json};

use crate::helpers::{TestApp, put, test_config};

crate::backend_tests!(
    a_partners_purchase_order_is_taken_once_as_an_order_of_its_channel,
    partner_x12_becomes_events_once_and_is_acknowledged,
    lines_naming_unknown_items_are_kept_and_replayed_after_a_fix,
    unreadable_x12_is_refused_and_kept,
    received_997s_settle_the_groups_we_sent,
);

fn sample(id: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../testdata/x12/{id}.edi"));
    std::fs::read(path).unwrap()
}

async fn spawn(db: TestDb) -> TestApp {
    let mut config = test_config(&db);
    config.edi.insert(
        "fastlane".into(),
        toml::from_str(
            r#"location = "FASTLANE-WEST"
               sku_qualifiers = ["VN"]
               on_hand_qualifier = "33""#,
        )
        .unwrap(),
    );
    TestApp::spawn_with(db, config, |b| b).await
}

async fn catalog(app: &TestApp, items: &[&str]) {
    let (status, body) = put(
        app,
        "/v1/locations/FASTLANE-WEST",
        &json!({"name": "Fastlane West", "kind": "3pl", "authority": "/edi/fastlane"}),
    )
    .await;
    assert!(status < 300, "{body}");
    for item in items {
        let (status, body) = put(app, &format!("/v1/items/{item}"), &json!({})).await;
        assert!(status < 300, "{body}");
    }
}

async fn post_x12(app: &TestApp, partner: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/edi/{partner}")))
        .header("content-type", "application/edi-x12")
        .body(body)
        .send()
        .await
        .unwrap();
    crate::helpers::read(response).await
}

async fn on_hand(app: &TestApp, sku: &str) -> Option<i64> {
    let (_, inventory) = app.get(&format!("/v1/inventory/{sku}")).await;
    inventory["locations"]
        .as_array()?
        .iter()
        .find(|l| l["location"] == "FASTLANE-WEST")?["on_hand"]
        .as_i64()
}

async fn partner_x12_becomes_events_once_and_is_acknowledged(db: TestDb) {
    let app = spawn(db).await;
    catalog(&app, &["WIDGET-S", "WIDGET-M-CASE"]).await;

    let (status, receipt) = post_x12(&app, "fastlane", sample("944")).await;
    assert_eq!(status, 202, "{receipt}");
    let i = &receipt["interchanges"][0];
    assert_eq!(i["control"], "000000108", "{receipt}");
    assert_eq!(
        (i["sets"].as_i64(), i["accepted_sets"].as_i64()),
        (Some(1), Some(1))
    );
    // The set itself and its two receipts.
    assert_eq!(i["events_accepted"], 3, "{receipt}");
    assert_eq!(i["acks_queued"], 1);
    assert!(i["errors"].as_array().unwrap().is_empty(), "{receipt}");
    app.eventually("the receipts reach the ledger", || async {
        on_hand(&app, "WIDGET-S").await == Some(120)
            && on_hand(&app, "WIDGET-M-CASE").await == Some(36)
    })
    .await;

    // The same interchange again: recognized, nothing done twice.
    let (status, again) = post_x12(&app, "fastlane", sample("944")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        again["interchanges"][0]["duplicate_of"], receipt["inbox_id"],
        "{again}"
    );
    assert_eq!(again["interchanges"][0]["events_accepted"], 0);

    // An adjustment advice moves stock by its signed quantities.
    let (status, adjusted) = post_x12(&app, "fastlane", sample("947")).await;
    assert_eq!(status, 202, "{adjusted}");
    app.eventually("the adjustments reach the ledger", || async {
        on_hand(&app, "WIDGET-S").await == Some(117)
            && on_hand(&app, "WIDGET-M-CASE").await == Some(38)
    })
    .await;

    // One 997 per interchange processed, waiting for the partner's target.
    let counts = app.state.store.outbox_counts().await.unwrap();
    let queued: i64 = counts
        .iter()
        .filter(|c| c.target == "edi-fastlane")
        .map(|c| c.count)
        .sum();
    assert_eq!(queued, 2, "{counts:?}");

    // The set event carries the typed document.
    let (_, feed) = app.get("/v1/events?limit=100").await;
    let set = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "edi.944.received")
        .expect("the set is in the log");
    assert_eq!(
        set["data"]["document"]["receipt_number"], "RCV-2031",
        "{set}"
    );
    assert_eq!(set["source"], "/edi/fastlane");
    app.stop().await;
}

async fn lines_naming_unknown_items_are_kept_and_replayed_after_a_fix(db: TestDb) {
    let app = spawn(db).await;
    catalog(&app, &["WIDGET-S"]).await;
    let (status, receipt) = post_x12(&app, "fastlane", sample("944")).await;
    assert_eq!(status, 202, "{receipt}");
    let i = &receipt["interchanges"][0];
    assert_eq!(i["events_accepted"], 2, "{receipt}");
    let errors = i["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{receipt}");
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("WIDGET-M-CASE is not an item"),
        "{receipt}"
    );
    let inbox = receipt["inbox_id"].as_i64().unwrap();
    let (_, message) = app.get(&format!("/v1/inbox/{inbox}")).await;
    assert_eq!(message["status"], "rejected", "{message}");

    // After the fix, a replay records what was missing and nothing twice.
    catalog(&app, &["WIDGET-M-CASE"]).await;
    let (status, replayed) = app
        .post_json(&format!("/v1/inbox/{inbox}/replay"), &json!({}))
        .await;
    assert_eq!(status, 200, "{replayed}");
    let i = &replayed["interchanges"][0];
    assert_eq!(
        (
            i["events_accepted"].as_i64(),
            i["events_duplicate"].as_i64()
        ),
        (Some(1), Some(2)),
        "{replayed}"
    );
    let (_, message) = app.get(&format!("/v1/inbox/{inbox}")).await;
    assert_eq!(message["status"], "processed", "{message}");
    app.eventually("the replayed receipt reaches the ledger", || async {
        on_hand(&app, "WIDGET-M-CASE").await == Some(36)
            && on_hand(&app, "WIDGET-S").await == Some(120)
    })
    .await;
    app.stop().await;
}

async fn unreadable_x12_is_refused_and_kept(db: TestDb) {
    let app = spawn(db).await;
    let (status, problem) = post_x12(&app, "fastlane", b"PO1*1*2*EA~".to_vec()).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"].as_str().unwrap().rsplit('/').next(),
        Some("invalid-x12")
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no interchange header where one must start"),
        "{problem}"
    );
    let (_, inbox) = app.get("/v1/inbox?status=rejected").await;
    assert_eq!(
        inbox["messages"].as_array().map(Vec::len),
        Some(1),
        "{inbox}"
    );

    let (status, problem) = post_x12(&app, "nobody", sample("850")).await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("[edi.nobody]"),
        "{problem}"
    );

    // Envelope errors reject the set in the 997 and record nothing of it.
    let broken = String::from_utf8(sample("944"))
        .unwrap()
        .replace("SE*10*0001~", "SE*11*0001~");
    let (status, receipt) = post_x12(&app, "fastlane", broken.into_bytes()).await;
    assert_eq!(status, 202, "{receipt}");
    let i = &receipt["interchanges"][0];
    assert_eq!(
        (i["accepted_sets"].as_i64(), i["rejected_sets"].as_i64()),
        (Some(0), Some(1))
    );
    assert!(
        i["problems"][0].as_str().unwrap().contains("SE01"),
        "{receipt}"
    );
    assert_eq!(i["events_accepted"], 0);
    assert_eq!(i["acks_queued"], 1);
    app.stop().await;
}

async fn received_997s_settle_the_groups_we_sent(db: TestDb) {
    let app = spawn(db).await;
    // A 997 for a group crossdock never sent is reported.
    let (status, receipt) = post_x12(&app, "fastlane", sample("997")).await;
    assert_eq!(status, 202, "{receipt}");
    let i = &receipt["interchanges"][0];
    assert_eq!(i["acks_received"], 0);
    assert!(
        i["errors"][0].as_str().unwrap().contains("did not send"),
        "{receipt}"
    );
    assert_eq!(i["acks_queued"], 0, "a 997 is never acknowledged");

    app.state
        .store
        .edi_groups_sent(vec![EdiGroupSent {
            partner: "fastlane".into(),
            group_control: "104".into(),
            functional_id: "IN".into(),
            interchange_control: "000000104".into(),
            sets: 1,
            sent_at: Timestamp::from_unix_micros(1),
        }])
        .await
        .unwrap();
    let inbox = receipt["inbox_id"].as_i64().unwrap();
    let (status, replayed) = app
        .post_json(&format!("/v1/inbox/{inbox}/replay"), &json!({}))
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        replayed["interchanges"][0]["acks_received"], 1,
        "{replayed}"
    );
    let groups = app
        .state
        .store
        .edi_groups(EdiGroupQuery {
            limit: 10,
            ..EdiGroupQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(groups[0].status, "accepted");

    // Operators see the same through the API.
    let (status, listed) = app
        .get("/v1/edi/groups?partner=fastlane&status=accepted")
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["groups"][0]["group_control"], "104", "{listed}");
    assert_eq!(listed["groups"][0]["ack"]["status"], "A", "{listed}");
    let (_, waiting) = app.get("/v1/edi/groups?status=sent").await;
    assert_eq!(
        waiting["groups"].as_array().map(Vec::len),
        Some(0),
        "{waiting}"
    );
    let (status, problem) = app.get("/v1/edi/groups?status=lost").await;
    assert_eq!(status, 400, "{problem}");
    app.stop().await;
}

async fn a_partners_purchase_order_is_taken_once_as_an_order_of_its_channel(db: TestDb) {
    let mut config = test_config(&db);
    config.edi.insert(
        "acme".into(),
        toml::from_str(
            r#"location = "FASTLANE-WEST"
               sku_qualifiers = ["VP"]
               channel = "acme-edi""#,
        )
        .unwrap(),
    );
    let app = TestApp::spawn_with(db, config, |b| b).await;
    catalog(&app, &["WIDGET-S", "WIDGET-M-CASE"]).await;
    let (status, body) = put(
        &app,
        "/v1/channels/acme-edi",
        &json!({"kind": "edi", "locations": ["FASTLANE-WEST"]}),
    )
    .await;
    assert!(status < 300, "{body}");
    let stock = json!([
        {"specversion": "1.0", "source": "/edi/fastlane", "id": "s-1", "type": "inventory.received",
         "data": {"sku": "WIDGET-S", "location": "FASTLANE-WEST", "quantity": 100}},
        {"specversion": "1.0", "source": "/edi/fastlane", "id": "s-2", "type": "inventory.received",
         "data": {"sku": "WIDGET-M-CASE", "location": "FASTLANE-WEST", "quantity": 10}}]);
    let (status, reply) = app.post_json("/v1/events", &stock).await;
    assert_eq!(status, 202, "{reply}");
    app.eventually("the stock is on hand", || async {
        on_hand(&app, "WIDGET-M-CASE").await == Some(10)
    })
    .await;

    for _ in 0..2 {
        let (status, receipt) = post_x12(&app, "acme", sample("850")).await;
        assert!(status < 300, "{receipt}");
    }
    app.eventually("the 850 is an order of acme-edi", || async {
        let (_, listed) = app.get("/v1/orders?channel=acme-edi").await;
        listed["orders"][0]["status"] == "submitted"
    })
    .await;
    let (_, listed) = app.get("/v1/orders?channel=acme-edi").await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["orders"][0]["external_id"], "PO-48213");
    let id = listed["orders"][0]["id"].as_str().unwrap().to_owned();
    let (_, order) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(order["currency"], "USD", "{order}");
    let lines: Vec<(String, i64, String)> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
                l["unit_price"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("WIDGET-S".to_owned(), 24, "9.25".to_owned()),
            ("WIDGET-M-CASE".to_owned(), 6, "48.00".to_owned())
        ]
    );
    let stored = crossdock::orders::load(&app.state, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.record["request"]["ship_to"]["city"], "SOLON");
    assert_eq!(stored.record["request"]["ship_to"]["country"], "US");
    app.stop().await;
}
