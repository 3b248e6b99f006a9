//! Orders through the API: taken once however often and concurrently they arrive, held without
//! oversell at the first location that can ship them whole, invalid ones kept with their reasons
//! and resumed when sent again corrected.

use crossdock_store::testkit::TestDb;
use serde_json::{Value, json};

use crate::helpers::{TestApp, put};

crate::backend_tests!(
    an_order_delivered_a_thousand_times_concurrently_is_one_order_and_one_reservation,
    an_invalid_order_is_kept_with_its_reasons_and_resumed_when_corrected,
    orders_racing_for_the_last_units_never_oversell,
    an_order_goes_from_erp_confirmation_to_shipment_to_invoice_to_closed,
    a_silent_erp_makes_a_visible_exception_that_a_late_answer_clears,
    a_return_restocks_what_is_restocked_credits_it_and_posting_nets_it_out,
    connector_events_take_orders_once_in_any_order,
    posted_batches_sum_to_shipped_minus_returned_across_restarts_and_reruns,
    a_channel_that_does_not_backorder_rejects_and_is_told,
    a_channel_that_allows_splits_holds_lines_across_locations,
    a_body_that_is_not_an_order_is_kept_in_the_inbox_and_replayable,
);

async fn catalog(app: &TestApp, stock: i64) {
    for (path, body) in [
        (
            "/v1/locations/wh-1",
            json!({"name": "East", "kind": "warehouse", "authority": "erp"}),
        ),
        (
            "/v1/locations/wh-2",
            json!({"name": "West", "kind": "warehouse", "authority": "erp"}),
        ),
        ("/v1/items/MUG", json!({})),
        ("/v1/items/SAUCER", json!({})),
        (
            "/v1/channels/shop",
            json!({"kind": "shopify", "locations": ["wh-1", "wh-2"]}),
        ),
        ("/v1/channels/shop/listings/shop-mug", json!({"sku": "MUG"})),
    ] {
        let (status, reply) = put(app, path, &body).await;
        assert!(status < 300, "{path}: {reply}");
    }
    let events: Vec<Value> = [("MUG", "wh-1", stock), ("SAUCER", "wh-2", 1)]
        .iter()
        .enumerate()
        .map(|(i, (sku, location, quantity))| {
            json!({"specversion": "1.0", "source": "erp", "id": format!("r-{i}"),
                "type": "inventory.received",
                "data": {"sku": sku, "location": location, "quantity": quantity}})
        })
        .collect();
    let (status, reply) = app.post_json("/v1/events", &Value::Array(events)).await;
    assert_eq!(status, 202, "{reply}");
    app.eventually("the stock is on hand", || async {
        let (_, mug) = app.get("/v1/inventory/MUG").await;
        mug["locations"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["location"] == "wh-1"))
            .is_some_and(|l| l["atp"] == stock)
    })
    .await;
}

fn order(external_id: &str, delivery: &str, quantity: i64) -> Value {
    json!({
        "channel": "shop", "external_id": external_id, "delivery_id": delivery,
        "lines": [{"channel_sku": "shop-mug", "quantity": quantity, "unit_price": "9.50", "currency": "USD"}],
        "ship_to": {"name": "Ada", "address1": "1 Main St", "city": "Solon", "postal_code": "44139", "country": "US"}
    })
}

/// A CloudEvent as another system sends it to crossdock.
fn saga_event(source: &str, id: impl std::fmt::Display, kind: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "source": source, "id": id.to_string(), "type": kind, "data": data})
}

/// Sends an event; it must be accepted.
async fn post_event(app: &TestApp, event: Value) {
    let (status, reply) = app.post_json("/v1/events", &event).await;
    assert_eq!(status, 202, "{reply}");
}

/// The ERP confirms sales order `SO-{n}` for the order (event `c-{n}`); the order is then
/// released.
async fn erp_confirms(app: &TestApp, id: &str, n: u64) {
    post_event(
        app,
        saga_event(
            "erp",
            format!("c-{n}"),
            "erp.sales_order.confirmed",
            json!({"order_id": id, "erp_order": format!("SO-{n}")}),
        ),
    )
    .await;
    app.eventually("released", || async {
        status_of(app, id).await == "released"
    })
    .await;
}

async fn an_order_delivered_a_thousand_times_concurrently_is_one_order_and_one_reservation(
    db: TestDb,
) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in (worker..1000).step_by(32) {
                let (status, reply) = app
                    .post_json("/v1/orders", &order("1001", &format!("webhook-{i}"), 2))
                    .await;
                assert!(status == 201 || status == 200, "{status} {reply}");
                seen.push((status, reply["id"].as_str().unwrap().to_owned()));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 1000);
    assert_eq!(
        all.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "one order created"
    );
    let id = &all[0].1;
    assert!(
        all.iter().all(|(_, i)| i == id),
        "every delivery names the same order"
    );

    let (status, got) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "submitted", "{got}");
    assert_eq!(got["location"], "wh-1");
    let timeline: Vec<&str> = got["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, ["received", "reserved", "submitted"]);
    // One reservation of two units, one sales order queued for the ERP.
    let (_, mug) = app.get("/v1/inventory/MUG").await;
    let wh1 = mug["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "wh-1")
        .unwrap()
        .clone();
    assert_eq!(
        (wh1["reserved"].as_i64(), wh1["atp"].as_i64()),
        (Some(2), Some(8)),
        "{mug}"
    );
    let counts = app.state.store.outbox_counts().await.unwrap();
    let erp: i64 = counts
        .iter()
        .filter(|c| c.target == "erp")
        .map(|c| c.count)
        .sum();
    assert_eq!(erp, 1, "{counts:?}");

    // The same external id with other content is refused, naming the order.
    let (status, problem) = app
        .post_json("/v1/orders", &order("1001", "other", 3))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains(id.as_str()),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("kept as inbox message"),
        "the changed order is kept for a person: {problem}"
    );
    // Not an order at all.
    let (status, problem) = app
        .post_json("/v1/orders", &json!({"channel": "shop"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = app.get("/v1/orders/nope").await;
    assert_eq!(status, 404);
    match std::sync::Arc::try_unwrap(app) {
        Ok(app) => {
            app.stop().await;
        }
        Err(_) => panic!("the app is still shared"),
    }
}

async fn an_invalid_order_is_kept_with_its_reasons_and_resumed_when_corrected(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    let mut bad = order("2002", "d-1", 1);
    bad["lines"][0]["channel_sku"] = json!("shop-teapot");
    bad["ship_to"]["city"] = json!("");
    let (status, taken) = app.post_json("/v1/orders", &bad).await;
    assert_eq!(status, 201, "kept: {taken}");
    assert_eq!(taken["status"], "exception", "{taken}");
    let problems: Vec<&str> = taken["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.contains(&"line 1: SKU shop-teapot is not listed on channel shop"),
        "{taken}"
    );
    assert!(problems.contains(&"ship_to.city is missing"), "{taken}");
    // Named by what it was sent with, though its content is not an order yet.
    assert_eq!(
        (&taken["channel"], &taken["external_id"]),
        (&json!("shop"), &json!("2002")),
        "{taken}"
    );
    let id = taken["id"].as_str().unwrap().to_owned();
    // An order without lines is kept the same way, with that reason.
    let mut empty = order("2003", "d-3", 1);
    empty["lines"] = json!([]);
    let (status, kept) = app.post_json("/v1/orders", &empty).await;
    assert_eq!(status, 201, "kept: {kept}");
    assert_eq!(kept["status"], "exception", "{kept}");
    assert_eq!(
        kept["problems"],
        json!(["an order needs at least one line"]),
        "{kept}"
    );
    let (_, got) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(got["status"], "exception");
    assert_eq!(got["problems"].as_array().unwrap().len(), 2, "{got}");
    assert_eq!(
        (&got["channel"], &got["external_id"]),
        (&json!("shop"), &json!("2002")),
        "{got}"
    );

    // Corrected and sent again: the same order goes on.
    let (status, resumed) = app.post_json("/v1/orders", &order("2002", "d-2", 1)).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["id"], id.as_str());
    assert_eq!(resumed["status"], "submitted", "{resumed}");

    // Cancelled before it shipped: its stock is released and the ERP order cancelled.
    let (status, cancelled) = app
        .post_json(
            &format!("/v1/orders/{id}/cancel?reason=customer%20asked"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["reason"], "cancelled: customer asked");
    let (_, mug) = app.get("/v1/inventory/MUG").await;
    let wh1 = mug["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "wh-1")
        .unwrap()
        .clone();
    assert_eq!(wh1["reserved"].as_i64(), Some(0), "{mug}");
    let counts = app.state.store.outbox_counts().await.unwrap();
    let erp: i64 = counts
        .iter()
        .filter(|c| c.target == "erp")
        .map(|c| c.count)
        .sum();
    assert_eq!(erp, 2, "the sales order and its cancellation: {counts:?}");
    // The answer is the order as GET shows it: with what it asked of other systems.
    assert!(
        cancelled["actions"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "{cancelled}"
    );
    // An invalid order cancelled is still named as it was sent, with its reasons.
    let kept_id = kept["id"].as_str().unwrap();
    let (status, dropped) = app
        .post_json(&format!("/v1/orders/{kept_id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{dropped}");
    assert_eq!(dropped["status"], "cancelled", "{dropped}");
    assert_eq!(
        (&dropped["channel"], &dropped["external_id"]),
        (&json!("shop"), &json!("2003")),
        "{dropped}"
    );
    assert_eq!(
        dropped["problems"],
        json!(["an order needs at least one line"]),
        "{dropped}"
    );
    let (status, _) = app.post_json("/v1/orders/nope/cancel", &json!({})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn orders_racing_for_the_last_units_never_oversell(db: TestDb) {
    let app = std::sync::Arc::new({
        let app = TestApp::spawn(db).await;
        catalog(&app, 5).await;
        app
    });
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (status, reply) = app
                .post_json(
                    "/v1/orders",
                    &order(&format!("race-{i}"), &format!("race-{i}"), 1),
                )
                .await;
            assert_eq!(status, 201, "{reply}");
            reply["status"].as_str().unwrap().to_owned()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "submitted").count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "backordered").count(),
        15,
        "{statuses:?}"
    );

    // All or nothing: a mug (none left) with a saucer (one at wh-2) holds neither.
    let mut both = order("both", "both", 1);
    both["lines"] = json!([
        {"sku": "MUG", "quantity": 1}, {"sku": "SAUCER", "quantity": 1}
    ]);
    let (status, reply) = app.post_json("/v1/orders", &both).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["status"], "backordered", "{reply}");
    let (_, saucer) = app.get("/v1/inventory/SAUCER").await;
    let wh2 = saucer["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "wh-2")
        .unwrap()
        .clone();
    assert_eq!(wh2["reserved"].as_i64(), Some(0), "{saucer}");
    let (_, mug) = app.get("/v1/inventory/MUG").await;
    let wh1 = mug["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "wh-1")
        .unwrap()
        .clone();
    assert_eq!(
        (wh1["reserved"].as_i64(), wh1["atp"].as_i64()),
        (Some(5), Some(0)),
        "{mug}"
    );

    // Three more mugs arrive: the three backorders that waited longest are held and sent on;
    // the mug-and-saucer order (its lines at two locations, no split) still waits.
    let (_, listed) = app.get("/v1/orders?status=backordered&limit=1000").await;
    // Least recently updated first: the order the sweep takes them in.
    let backordered: Vec<String> = listed["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backordered.len(), 16, "{backordered:?}");
    post_event(
        &app,
        json!([{"specversion": "1.0", "source": "erp", "id": "r-more", "type": "inventory.received",
            "data": {"sku": "MUG", "location": "wh-1", "quantity": 3}}]),
    )
    .await;
    // The app's own sweep takes them (within a second of the receipt): a sweep called here as
    // well would race it, and the two would share the three between them. Only as many as the
    // stock can fill are asked for again: all three units are held, and exactly the three
    // oldest backorders go on.
    app.eventually(
        "the new mugs are held for the oldest backorders",
        || async {
            let mut sent_on = 0;
            for id in &backordered[..3] {
                sent_on += usize::from(status_of(&app, id).await == "submitted");
            }
            mug_at_wh1(&app).await == (8, 8) && sent_on == 3
        },
    )
    .await;
    for (n, id) in backordered.iter().enumerate() {
        let status = status_of(&app, id).await;
        let expected = if n < 3 { "submitted" } else { "backordered" };
        assert_eq!(status, expected, "backorder {n} of {backordered:?}");
    }
    assert_eq!(mug_at_wh1(&app).await, (8, 8));
    let asked = crossdock::runtime::orders::backorders_once(&app.state)
        .await
        .unwrap();
    assert_eq!(asked, 0, "no stock, nothing asked");
    match std::sync::Arc::try_unwrap(app) {
        Ok(app) => {
            app.stop().await;
        }
        Err(_) => panic!("the app is still shared"),
    }
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let (_, got) = app.get(&format!("/v1/orders/{id}")).await;
    got["status"].as_str().unwrap_or_default().to_owned()
}

async fn mug_at_wh1(app: &TestApp) -> (i64, i64) {
    let (_, mug) = app.get("/v1/inventory/MUG").await;
    let wh1 = mug["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location"] == "wh-1")
        .unwrap()
        .clone();
    (
        wh1["on_hand"].as_i64().unwrap(),
        wh1["reserved"].as_i64().unwrap(),
    )
}

async fn an_order_goes_from_erp_confirmation_to_shipment_to_invoice_to_closed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    let (status, taken) = app.post_json("/v1/orders", &order("3003", "d-1", 2)).await;
    assert_eq!(status, 201, "{taken}");
    let id = taken["id"].as_str().unwrap().to_owned();
    let (_, got) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(
        got["reservations"],
        json!([{"sku": "MUG", "location": "wh-1", "quantity": 2}]),
        "{got}"
    );
    assert_eq!(got["actions"][0]["type"], "erp.sales_order.create", "{got}");
    assert_eq!(got["actions"][0]["status"], "pending", "{got}");
    erp_confirms(&app, &id, 1).await;

    let shipment = json!({"order_id": id, "shipment": "S1", "lines": [{"line": 1, "quantity": 2}],
        "carrier": "UPSN", "tracking": "1Z999"});
    post_event(
        &app,
        saga_event("erp", "s-1", "shipment.confirmed", shipment.clone()),
    )
    .await;
    // The same shipment again (another event id): nothing ships twice.
    post_event(
        &app,
        saga_event("erp", "s-1-again", "shipment.confirmed", shipment),
    )
    .await;
    app.eventually("the order is shipped", || async {
        status_of(&app, &id).await == "shipped"
    })
    .await;
    app.eventually("the reservation became a shipment", || async {
        mug_at_wh1(&app).await == (8, 0)
    })
    .await;

    post_event(
        &app,
        saga_event(
            "erp",
            "i-1",
            "invoice.created",
            json!({"order_id": id, "shipment": "S1", "invoice": "INV-1"}),
        ),
    )
    .await;
    app.eventually("the order is closed", || async {
        status_of(&app, &id).await == "closed"
    })
    .await;
    assert_eq!(mug_at_wh1(&app).await, (8, 0));

    let (_, got) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(got["reservations"], json!([]), "shipped: nothing held");
    let requested: Vec<&str> = got["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        requested,
        [
            "erp.sales_order.create",
            "fulfillment.release",
            "channel.fulfillment",
            "erp.invoice.create"
        ],
        "{got}"
    );
    let timeline: Vec<&str> = got["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        [
            "received",
            "reserved",
            "submitted",
            "confirmed",
            "released",
            "shipped",
            "invoiced",
            "closed"
        ]
    );
    let counts = app.state.store.outbox_counts().await.unwrap();
    let to = |target: &str| -> i64 {
        counts
            .iter()
            .filter(|c| c.target == target)
            .map(|c| c.count)
            .sum()
    };
    // The sales order and the invoice; the release; the channel told of the shipment (with
    // its availability updates, which go to the same target).
    assert_eq!((to("erp"), to("fulfillment-wh-1")), (2, 1), "{counts:?}");
    assert!(to("channel-shop") >= 1, "{counts:?}");
    app.stop().await;
}

async fn a_silent_erp_makes_a_visible_exception_that_a_late_answer_clears(db: TestDb) {
    use crossdock::clock::{Clock, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::new(
        crossdock_core::Timestamp::from_unix_micros(1_800_000_000_000_000),
    ));
    let config = crate::helpers::test_config(&db);
    let manual = clock.clone();
    let app = TestApp::spawn_with(db, config, move |b| {
        b.clock(manual as std::sync::Arc<dyn Clock>)
    })
    .await;
    catalog(&app, 10).await;
    let (_, taken) = app.post_json("/v1/orders", &order("4004", "d-1", 1)).await;
    let id = taken["id"].as_str().unwrap().to_owned();
    assert_eq!(taken["status"], "submitted", "{taken}");
    assert!(
        taken["until"].is_string(),
        "a waiting order has a deadline: {taken}"
    );

    // Not yet due: nothing happens.
    clock.advance_ms(3_600_000);
    crossdock::runtime::orders::deadlines_once(&app.state)
        .await
        .unwrap();
    assert_eq!(status_of(&app, &id).await, "submitted");
    // Four hours without an answer: an exception, with its reason.
    clock.advance_ms(3 * 3_600_000 + 1);
    crossdock::runtime::orders::deadlines_once(&app.state)
        .await
        .unwrap();
    let (_, got) = app.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(got["status"], "exception", "{got}");
    let (_, listed) = app.get("/v1/orders?status=exception&older_than=0s").await;
    let (status, refused) = app.get("/v1/orders?older_than=soon").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["errors"][0]["pointer"], "/query/older_than",
        "{refused}"
    );
    // A misspelt status is refused, naming the ones there are, rather than answered empty.
    let (status, refused) = app.get("/v1/orders?status=shiped").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["errors"][0]["pointer"], "/query/status",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("partially_shipped") && d.contains("\"shiped\"")),
        "{refused}"
    );
    let (status, refused) = app.get("/v1/returns?status=open").await;
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = app.get("/v1/postings?status=done").await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        listed["orders"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no confirmation from the ERP"),
        "exceptions are listed with their reasons: {listed}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("crossdock_orders{status=\"exception\"} 1"),
        "{metrics}"
    );
    assert!(
        got["reason"]
            .as_str()
            .unwrap()
            .contains("no confirmation from the ERP"),
        "{got}"
    );
    // The answer comes late after all: the order moves on.
    let event = json!({"specversion": "1.0", "source": "erp", "id": "late", "type": "erp.sales_order.confirmed",
        "data": {"order_id": id, "erp_order": "SO-9"}});
    let (status, reply) = app.post_json("/v1/events", &event).await;
    assert_eq!(status, 202, "{reply}");
    app.eventually("the late confirmation releases it", || async {
        status_of(&app, &id).await == "released"
    })
    .await;
    app.stop().await;
}

async fn a_return_restocks_what_is_restocked_credits_it_and_posting_nets_it_out(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    let (_, taken) = app.post_json("/v1/orders", &order("5005", "d-1", 3)).await;
    let id = taken["id"].as_str().unwrap().to_owned();
    assert_eq!(taken["currency"], "USD", "{taken}");
    assert_eq!(taken["lines"][0]["unit_price"], "9.50", "{taken}");
    // Nothing shipped yet: nothing to return.
    let rma = json!({"order_id": id, "rma": "RMA-1", "lines": [{"line": 1, "quantity": 2}]});
    let (status, refused) = app.post_json("/v1/returns", &rma).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("line 1: 2 to return, 0 shipped"),
        "{refused}"
    );
    let (status, _) = app
        .post_json(
            "/v1/returns",
            &json!({"order_id": "nope", "rma": "R", "lines": [{"line": 1, "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, refused) = app
        .post_json(
            "/v1/returns",
            &json!({"order_id": id, "rma": "R", "lines": [{"line": "one", "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["errors"][0]["pointer"], "/lines/0/line",
        "{refused}"
    );
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("kept as inbox message"),
        "{refused}"
    );

    erp_confirms(&app, &id, 1).await;
    post_event(
        &app,
        saga_event(
            "erp",
            "s-1",
            "shipment.confirmed",
            json!({"order_id": id, "shipment": "S1", "lines": [{"line": 1, "quantity": 3}]}),
        ),
    )
    .await;
    app.eventually("shipped from the ledger", || async {
        mug_at_wh1(&app).await == (7, 0)
    })
    .await;

    let (status, authorized) = app.post_json("/v1/returns", &rma).await;
    assert_eq!(status, 201, "{authorized}");
    assert_eq!(authorized["status"], "authorized");
    let return_id = authorized["id"].as_str().unwrap().to_owned();
    let (status, again) = app.post_json("/v1/returns", &rma).await;
    assert_eq!((status, &again["id"]), (200, &authorized["id"]));
    let mut changed = rma.clone();
    changed["lines"][0]["quantity"] = json!(1);
    let (status, _) = app.post_json("/v1/returns", &changed).await;
    assert_eq!(status, 409, "the same RMA with other lines");
    // Three shipped, two authorized: another RMA may take one more, not two.
    let second = json!({"order_id": id, "rma": "RMA-2", "lines": [{"line": 1, "quantity": 2}]});
    let (status, refused) = app.post_json("/v1/returns", &second).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("2 to return, 3 shipped, 2 authorized under other RMAs"),
        "{refused}"
    );

    // One comes back fit to sell, one broken.
    let received = json!({"return_id": return_id, "receipt": "RCV-1", "lines": [
        {"line": 1, "quantity": 1, "disposition": "restock"},
        {"line": 1, "quantity": 1, "disposition": "scrap"}]});
    post_event(&app, saga_event("erp", "rr-1", "return.received", received)).await;
    app.eventually("the return waits for its credit memo", || async {
        let (_, got) = app.get(&format!("/v1/returns/{return_id}")).await;
        got["status"] == "received"
    })
    .await;
    app.eventually("the restocked unit is back on hand", || async {
        mug_at_wh1(&app).await == (8, 0)
    })
    .await;
    let (_, got) = app.get(&format!("/v1/returns/{return_id}")).await;
    assert_eq!(got["lines"][0]["received"], 2, "{got}");
    assert_eq!(got["lines"][0]["restocked"], 1, "{got}");
    post_event(
        &app,
        saga_event(
            "erp",
            "cm-1",
            "erp.credit_memo.created",
            json!({"return_id": return_id, "credit_memo": "CM-1"}),
        ),
    )
    .await;
    app.eventually("the return is closed", || async {
        let (_, got) = app.get(&format!("/v1/returns/{return_id}")).await;
        got["status"] == "closed"
    })
    .await;
    let (_, listed) = app.get("/v1/returns?status=closed").await;
    assert_eq!(listed["returns"][0]["rma"], "RMA-1", "{listed}");

    // Posting: 3 shipped at 9.50, 2 returned: one batch of 1 unit and 9.50.
    let (status, run) = app.post_json("/v1/postings/run", &json!({})).await;
    assert_eq!(status, 200, "{run}");
    let batches = run["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{run}");
    let batch = &batches[0];
    assert_eq!(
        (
            &batch["channel"],
            &batch["currency"],
            &batch["lines"],
            &batch["units"],
            &batch["amount"]
        ),
        (
            &json!("shop"),
            &json!("USD"),
            &json!(2),
            &json!(1),
            &json!("9.50")
        ),
        "{batch}"
    );
    let key = batch["key"].as_str().unwrap().to_owned();
    let (_, again) = app.post_json("/v1/postings/run", &json!({})).await;
    assert_eq!(again["batches"], json!([]), "nothing is posted twice");
    let (_, detail) = app.get(&format!("/v1/postings/{key}")).await;
    assert_eq!(
        detail["posting_lines"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
    post_event(
        &app,
        saga_event(
            "erp",
            "jp-1",
            "erp.journal.posted",
            json!({"batch": key, "journal": "JE-1"}),
        ),
    )
    .await;
    app.eventually("the batch is posted", || async {
        let (_, listed) = app.get("/v1/postings?status=posted").await;
        listed["batches"][0]["journal"] == "JE-1"
    })
    .await;
    let counts = app.state.store.outbox_counts().await.unwrap();
    let erp: i64 = counts
        .iter()
        .filter(|c| c.target == "erp")
        .map(|c| c.count)
        .sum();
    // The sales order, the invoice for the shipment, the credit memo and the journal batch.
    assert_eq!(erp, 4, "{counts:?}");
    app.stop().await;
}

async fn connector_events_take_orders_once_in_any_order(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    let find = |external: &'static str| {
        let app = &app;
        async move {
            let (_, listed) = app.get("/v1/orders?channel=shop&limit=1000").await;
            listed["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["external_id"] == external)
                .map(|o| o["id"].as_str().unwrap().to_owned())
        }
    };
    let placed = |external: &str, quantity: i64| {
        let mut body = order(external, "", quantity);
        body.as_object_mut().unwrap().remove("delivery_id");
        body
    };

    // A saga event its saga cannot read is refused, saying what it lacks.
    let (status, refused) = app
        .post_json(
            "/v1/events",
            &saga_event("shopify", "bad", "order.paid", json!({"channel": "shop"})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["pointer"], "/data", "{refused}");
    let (status, refused) = app
        .post_json(
            "/v1/events",
            &saga_event(
                "shopify",
                "bad-2",
                "order.placed",
                json!({"channel": "shop", "lines": []}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("/data/external_id"),
        "{refused}"
    );

    // Cancelled before it was placed: when it comes, it ends at once and holds nothing.
    post_event(&app, saga_event("shopify", 
        "c-1",
        "order.cancelled",
        json!({"channel": "shop", "external_id": "7001", "reason": "customer changed their mind"}),
    ))
    .await;
    app.eventually("the cancellation is noted", || async {
        find("7001").await.is_some()
    })
    .await;
    post_event(
        &app,
        saga_event("shopify", "p-1", "order.placed", placed("7001", 2)),
    )
    .await;
    // Paid before it was placed, then placed twice (a webhook and a poll).
    post_event(&app, saga_event("shopify", 
        "pay-1",
        "order.paid",
        json!({"channel": "shop", "external_id": "7002", "reference": "PAY-1", "amount": "19.00"}),
    ))
    .await;
    post_event(
        &app,
        saga_event("shopify", "p-2", "order.placed", placed("7002", 2)),
    )
    .await;
    post_event(
        &app,
        saga_event("shopify", "p-2-poll", "order.placed", placed("7002", 2)),
    )
    .await;
    app.eventually("both orders are taken", || async {
        let (Some(a), Some(b)) = (find("7001").await, find("7002").await) else {
            return false;
        };
        status_of(&app, &a).await == "cancelled" && status_of(&app, &b).await == "submitted"
    })
    .await;
    let cancelled = find("7001").await.unwrap();
    let (_, got) = app.get(&format!("/v1/orders/{cancelled}")).await;
    assert!(
        got["reason"]
            .as_str()
            .unwrap()
            .contains("customer changed their mind"),
        "{got}"
    );
    // Only 7002 holds stock.
    assert_eq!(mug_at_wh1(&app).await, (10, 2));
    let paid = find("7002").await.unwrap();
    let (_, got) = app.get(&format!("/v1/orders/{paid}")).await;
    assert_eq!(got["payments"][0]["reference"], "PAY-1", "{got}");
    assert_eq!(got["payments"][0]["amount"], "19.00", "{got}");
    let (_, listed) = app.get("/v1/orders?channel=shop&limit=1000").await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 2, "{listed}");

    // Updates: a newer one with the same lines is recorded; an older one is passed over; a
    // newer one with other lines stops the order for a person.
    let updated = |at: &str, quantity: i64, city: &str| {
        let mut body = placed("7002", quantity);
        body["updated_at"] = json!(at);
        body["ship_to"]["city"] = json!(city);
        body
    };
    post_event(
        &app,
        saga_event(
            "shopify",
            "u-1",
            "order.updated",
            updated("2026-11-26T10:00:00Z", 2, "Akron"),
        ),
    )
    .await;
    post_event(
        &app,
        saga_event(
            "shopify",
            "u-0",
            "order.updated",
            updated("2026-11-26T09:00:00Z", 2, "Stale"),
        ),
    )
    .await;
    post_event(
        &app,
        saga_event(
            "shopify",
            "u-2",
            "order.updated",
            updated("2026-11-26T11:00:00Z", 5, "Akron"),
        ),
    )
    .await;
    app.eventually("the changed lines stop the order", || async {
        status_of(&app, &paid).await == "exception"
    })
    .await;
    let (_, got) = app.get(&format!("/v1/orders/{paid}")).await;
    assert!(
        got["reason"].as_str().unwrap().contains("its lines differ"),
        "{got}"
    );
    let (status, resumed) = app
        .post_json(&format!("/v1/orders/{paid}/resume"), &json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "submitted", "{resumed}");
    let stored = crossdock::orders::load(&app.state, &paid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.record["request"]["ship_to"]["city"], "Akron");
    assert_eq!(stored.record["amendment"]["lines"][0]["quantity"], 5);
    app.stop().await;
}

async fn posted_batches_sum_to_shipped_minus_returned_across_restarts_and_reruns(db: TestDb) {
    let mut app = TestApp::spawn(db).await;
    catalog(&app, 10_000).await;
    for (path, body) in [
        (
            "/v1/channels/amazon",
            json!({"kind": "amazon", "locations": ["wh-1"]}),
        ),
        (
            "/v1/channels/amazon/listings/amz-mug",
            json!({"sku": "MUG"}),
        ),
    ] {
        let (status, reply) = put(&app, path, &body).await;
        assert!(status < 300, "{path}: {reply}");
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // (channel, currency) → (units, ten-thousandths) expected.
    let mut expected: std::collections::BTreeMap<(String, String), (i64, i64)> =
        std::collections::BTreeMap::new();
    let mut batches: Vec<Value> = Vec::new();
    const ORDERS: u64 = 24;
    for n in 0..ORDERS {
        let (channel, listing, currency) = if n % 3 == 0 {
            ("amazon", "amz-mug", "EUR")
        } else {
            ("shop", "shop-mug", "USD")
        };
        let quantity = 1 + next(5) as i64;
        let cents = 50 + next(5000) as i64;
        let price = format!("{}.{:02}", cents / 100, cents % 100);
        let body = json!({"channel": channel, "external_id": format!("P-{n}"),
            "lines": [{"channel_sku": listing, "quantity": quantity, "unit_price": price, "currency": currency}],
            "ship_to": {"name": "Ada", "address1": "1 Main St", "city": "Solon", "postal_code": "44139", "country": "US"}});
        let (status, taken) = app.post_json("/v1/orders", &body).await;
        assert_eq!(status, 201, "{taken}");
        let id = taken["id"].as_str().unwrap().to_owned();
        erp_confirms(&app, &id, n).await;
        // Shipped in one or two parts.
        let first = if quantity > 1 && next(2) == 0 {
            1
        } else {
            quantity
        };
        let mut parts = vec![first];
        if first < quantity {
            parts.push(quantity - first);
        }
        for (i, part) in parts.iter().enumerate() {
            app.post_json(
                "/v1/events",
                &saga_event("erp", 
                    format!("s-{n}-{i}"),
                    "shipment.confirmed",
                    json!({"order_id": id, "shipment": format!("S-{n}-{i}"), "lines": [{"line": 1, "quantity": part}]}),
                ),
            )
            .await;
        }
        app.eventually("shipped", || async {
            status_of(&app, &id).await == "shipped"
        })
        .await;
        let entry = expected
            .entry((channel.to_owned(), currency.to_owned()))
            .or_default();
        entry.0 += quantity;
        entry.1 += quantity * cents * 100;
        // Some come back in part.
        if next(3) == 0 {
            let back = 1 + next(quantity as u64) as i64;
            let (status, rma) = app
                .post_json(
                    "/v1/returns",
                    &json!({"order_id": id, "rma": format!("R-{n}"), "lines": [{"line": 1, "quantity": back}]}),
                )
                .await;
            assert_eq!(status, 201, "{rma}");
            let return_id = rma["id"].as_str().unwrap().to_owned();
            app.post_json(
                "/v1/events",
                &saga_event("erp", 
                    format!("rr-{n}"),
                    "return.received",
                    json!({"return_id": return_id, "receipt": format!("RCV-{n}"),
                        "lines": [{"line": 1, "quantity": back, "disposition": if n % 2 == 0 { "restock" } else { "scrap" }}]}),
                ),
            )
            .await;
            app.eventually("received", || async {
                let (_, got) = app.get(&format!("/v1/returns/{return_id}")).await;
                got["status"] == "received"
            })
            .await;
            entry.0 -= back;
            entry.1 -= back * cents * 100;
        }
        // Posting runs in between, and a restart halfway.
        if n % 5 == 4 {
            let (_, run) = app.post_json("/v1/postings/run", &json!({})).await;
            batches.extend(run["batches"].as_array().unwrap().iter().cloned());
        }
        if n == ORDERS / 2 {
            let db = app.stop().await;
            app = TestApp::spawn(db).await;
            let (_, rerun) = app.post_json("/v1/postings/run", &json!({})).await;
            batches.extend(rerun["batches"].as_array().unwrap().iter().cloned());
        }
    }
    for _ in 0..2 {
        let (_, run) = app.post_json("/v1/postings/run", &json!({})).await;
        batches.extend(run["batches"].as_array().unwrap().iter().cloned());
    }
    let mut posted: std::collections::BTreeMap<(String, String), (i64, i64)> =
        std::collections::BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    for b in &batches {
        assert!(
            keys.insert(b["key"].as_str().unwrap().to_owned()),
            "a batch made twice: {b}"
        );
        let entry = posted
            .entry((
                b["channel"].as_str().unwrap().to_owned(),
                b["currency"].as_str().unwrap().to_owned(),
            ))
            .or_default();
        entry.0 += b["units"].as_i64().unwrap();
        let amount = crossdock_core::money::Amount::parse(b["amount"].as_str().unwrap()).unwrap();
        entry.1 += amount.ten_thousandths();
    }
    assert_eq!(
        posted, expected,
        "posted per channel and currency vs shipped minus returned"
    );
    let (_, listed) = app.get("/v1/postings?limit=1000").await;
    assert_eq!(listed["batches"].as_array().unwrap().len(), batches.len());
    app.stop().await;
}

async fn a_channel_that_does_not_backorder_rejects_and_is_told(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 2).await;
    let (status, channel) = put(
        &app,
        "/v1/channels/shop",
        &json!({"kind": "shopify", "locations": ["wh-1", "wh-2"], "orders": {"backorder": false}}),
    )
    .await;
    assert!(status < 300, "{channel}");
    let (_, channel) = app.get("/v1/channels/shop").await;
    assert_eq!(channel["orders"]["backorder"], false, "{channel}");
    let (status, refused) = put(
        &app,
        "/v1/channels/shop",
        &json!({"kind": "shopify", "locations": ["wh-1"], "orders": {"backorder": "no"}}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["errors"][0]["pointer"], "/orders/backorder",
        "{refused}"
    );

    let (status, taken) = app.post_json("/v1/orders", &order("8008", "d-1", 3)).await;
    assert_eq!(status, 201, "{taken}");
    assert_eq!(taken["status"], "rejected", "{taken}");
    assert!(
        taken["reason"]
            .as_str()
            .unwrap()
            .contains("needs 3, 2 available"),
        "{taken}"
    );
    assert_eq!(mug_at_wh1(&app).await, (2, 0), "nothing held");
    let counts = app.state.store.outbox_counts().await.unwrap();
    let told = app
        .state
        .store
        .claim(crossdock_store::ClaimRequest {
            target: "channel-shop",
            limit: 100,
            in_flight_max: 100,
            lease_ms: 60_000,
            policy: crossdock_core::RetryPolicy::default(),
            now: app.state.clock.now(),
        })
        .await
        .unwrap();
    assert!(
        told.iter()
            .any(|a| a.payload.contains("\"channel.order_rejected\"")),
        "the channel is told: {told:?}"
    );
    assert!(
        !counts.iter().any(|c| c.target == "erp"),
        "no sales order: {counts:?}"
    );
    app.stop().await;
}

async fn a_channel_that_allows_splits_holds_lines_across_locations(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // MUG only at wh-1, one SAUCER only at wh-2.
    catalog(&app, 10).await;
    let (status, reply) = put(
        &app,
        "/v1/channels/shop/listings/shop-saucer",
        &json!({"sku": "SAUCER"}),
    )
    .await;
    assert!(status < 300, "{reply}");
    let two_lines = |external: &str| {
        json!({"channel": "shop", "external_id": external,
            "lines": [{"channel_sku": "shop-mug", "quantity": 2}, {"channel_sku": "shop-saucer", "quantity": 1}],
            "ship_to": {"name": "Ada", "address1": "1 Main St", "city": "Solon", "postal_code": "44139", "country": "US"}})
    };
    // Kept together by default: no one location has both, so it waits.
    let (_, together) = app.post_json("/v1/orders", &two_lines("S-1")).await;
    assert_eq!(together["status"], "backordered", "{together}");
    let (status, reply) = put(
        &app,
        "/v1/channels/shop",
        &json!({"kind": "shopify", "locations": ["wh-1", "wh-2"], "orders": {"split": true}}),
    )
    .await;
    assert!(status < 300, "{reply}");
    let (_, split) = app.post_json("/v1/orders", &two_lines("S-2")).await;
    assert_eq!(split["status"], "submitted", "{split}");
    assert_eq!(split["lines"][0]["location"], "wh-1", "{split}");
    assert_eq!(split["lines"][1]["location"], "wh-2", "{split}");
    let id = split["id"].as_str().unwrap().to_owned();
    erp_confirms(&app, &id, 1).await;
    for location in ["wh-1", "wh-2"] {
        let released = app
            .state
            .store
            .claim(crossdock_store::ClaimRequest {
                target: &format!("fulfillment-{location}"),
                limit: 10,
                in_flight_max: 10,
                lease_ms: 60_000,
                policy: crossdock_core::RetryPolicy::default(),
                now: app.state.clock.now(),
            })
            .await
            .unwrap();
        assert_eq!(released.len(), 1, "{location}: {released:?}");
        let payload: Value = serde_json::from_str(&released[0].payload).unwrap();
        assert_eq!(payload["lines"].as_array().unwrap().len(), 1, "{payload}");
    }
    // The saucer ships from wh-2: the ledger moves there.
    app.post_json(
        "/v1/events",
        &saga_event(
            "erp",
            "s-1",
            "shipment.confirmed",
            json!({"order_id": id, "shipment": "W2", "lines": [{"line": 2, "quantity": 1}]}),
        ),
    )
    .await;
    app.eventually("the saucer left wh-2", || async {
        let (_, saucer) = app.get("/v1/inventory/SAUCER").await;
        saucer["locations"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["location"] == "wh-2"))
            .is_some_and(|l| l["on_hand"] == 0 && l["reserved"] == 0)
    })
    .await;
    assert_eq!(status_of(&app, &id).await, "partially_shipped");
    app.stop().await;
}

async fn a_body_that_is_not_an_order_is_kept_in_the_inbox_and_replayable(db: TestDb) {
    let app = TestApp::spawn(db).await;
    catalog(&app, 10).await;
    // Not JSON, and JSON that is not an order: refused, and kept raw with why.
    for body in [
        "{\"channel\": \"shop\",",
        "{\"channel\": \"shop\", \"lines\": []}",
    ] {
        let response = app
            .client
            .post(app.url("/v1/orders"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, problem) = crate::helpers::read(response).await;
        assert!(status == 400 || status == 422, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        let id: i64 = detail
            .rsplit("inbox message ")
            .next()
            .and_then(|n| n.trim_end_matches('.').parse().ok())
            .unwrap_or_else(|| panic!("not kept: {problem}"));
        let (_, kept) = app.get(&format!("/v1/inbox/{id}")).await;
        assert_eq!(kept["status"], "rejected", "{kept}");
        assert_eq!(kept["protocol"], "http+order", "{kept}");
        // Replayed as it is, it is refused again (and stays rejected).
        let (status, again) = app
            .post_json(&format!("/v1/inbox/{id}/replay"), &json!({}))
            .await;
        assert!(status == 400 || status == 422, "{again}");
    }
    // An order kept by an earlier version that could not read it is taken when replayed.
    let id = app
        .state
        .store
        .inbox_put(crossdock_store::InboxMessage {
            source: "api".into(),
            protocol: "http+order".into(),
            headers: Vec::new(),
            body: order("9009", "d-9", 1).to_string().into_bytes(),
            received_at: app.state.clock.now(),
            status: crossdock_store::InboxStatus::Rejected,
            error: Some("an older parser refused it".into()),
            correlation_id: None,
        })
        .await
        .unwrap();
    let (status, taken) = app
        .post_json(&format!("/v1/inbox/{id}/replay"), &json!({}))
        .await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["status"], "submitted", "{taken}");
    let (_, kept) = app.get(&format!("/v1/inbox/{id}")).await;
    assert_eq!(kept["status"], "processed", "{kept}");
    app.stop().await;
}
