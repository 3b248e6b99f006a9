//! The catalog API: items and kits, locations, channels, listings, and channel-bound keys.

use serde_json::{Value, json};

use crate::helpers::{TestApp, create_key, pointers, put, read};

crate::backend_tests!(
    items_and_kits_are_written_read_and_checked,
    a_bulk_write_is_all_or_nothing,
    listings_in_bulk_are_all_or_nothing,
    locations_channels_and_listings_refer_only_to_what_exists,
    a_key_bound_to_a_channel_finds_no_other_channel,
    bad_quantities_and_identifiers_are_named_and_change_nothing,
);

async fn items_and_kits_are_written_read_and_checked(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let (status, mug) = put(
        &app,
        "/v1/items/MUG-RED",
        &json!({"description": "Red mug"}),
    )
    .await;
    assert_eq!(status, 201, "{mug}");
    assert_eq!(
        mug,
        json!({"sku": "MUG-RED", "description": "Red mug", "unit": "each", "components": []})
    );
    let (status, _) = put(
        &app,
        "/v1/items/MUG-RED",
        &json!({"description": "Red mug, 300 ml"}),
    )
    .await;
    assert_eq!(status, 200);
    put(&app, "/v1/items/BOX", &json!({})).await;
    let kit = json!({"description": "Gift set", "components": [{"sku": "MUG-RED", "quantity": 2}, {"sku": "BOX", "quantity": 1}]});
    let (status, _) = put(&app, "/v1/items/GIFT", &kit).await;
    assert_eq!(status, 201);
    let (status, got) = app.get("/v1/items/GIFT").await;
    assert_eq!(status, 200);
    assert_eq!(
        got["components"][0],
        json!({"sku": "MUG-RED", "quantity": 2})
    );

    // An unknown component is named, and nothing changes.
    let (status, problem) = put(
        &app,
        "/v1/items/GIFT",
        &json!({"components": [{"sku": "NOPE", "quantity": 1}]}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/components/0/sku");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("NOPE is not an item")
    );
    // A kit that would contain itself through another kit is refused with the cycle.
    put(
        &app,
        "/v1/items/BIG-GIFT",
        &json!({"components": [{"sku": "GIFT", "quantity": 2}]}),
    )
    .await;
    let cyclic = json!({"components": [{"sku": "BIG-GIFT", "quantity": 1}]});
    let (status, problem) = put(&app, "/v1/items/GIFT", &cyclic).await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["errors"][0]["detail"],
        "kit cycle: GIFT → BIG-GIFT → GIFT"
    );
    let (_, unchanged) = app.get("/v1/items/GIFT").await;
    assert_eq!(unchanged["components"].as_array().unwrap().len(), 2);
    let (status, _) = app.get("/v1/items/NOPE").await;
    assert_eq!(status, 404);
    // Listed by SKU a page at a time, kits with their components.
    let (status, page) = app.get("/v1/items?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let skus = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(skus(&page), ["BIG-GIFT", "BOX"], "{page}");
    assert_eq!(page["items"][0]["components"][0]["sku"], "GIFT", "{page}");
    assert_eq!(page["next_after"], "BOX", "{page}");
    let (_, rest) = app.get("/v1/items?limit=2&after=BOX").await;
    assert_eq!(skus(&rest), ["GIFT", "MUG-RED"], "{rest}");
    assert_eq!(rest["items"][0]["components"][1]["sku"], "BOX", "{rest}");
    assert!(rest["next_after"].is_null(), "{rest}");
    let (status, refused) = app.get("/v1/items?after=%20padded").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["pointer"], "/query/after", "{refused}");
}

async fn a_bulk_write_is_all_or_nothing(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    // A kit may come before its components in the same request.
    let batch = json!([
        {"sku": "SET", "components": [{"sku": "CUP", "quantity": 4}, {"sku": "SAUCER", "quantity": 4}]},
        {"sku": "CUP"},
        {"sku": "SAUCER", "unit": "each"}
    ]);
    let (status, body) = put(&app, "/v1/items", &batch).await;
    assert_eq!((status, body), (200, json!({"created": 3, "updated": 0})));
    let bad = json!([
        {"sku": "PLATE"},
        {"sku": "CUP", "description": 7},
        {"sku": "TRAY", "components": [{"sku": "GHOST", "quantity": 1}]},
        {"description": "no sku"}
    ]);
    let (status, problem) = put(&app, "/v1/items", &bad).await;
    assert_eq!(status, 422);
    assert_eq!(pointers(&problem), vec!["/1/description", "/3/sku"]);
    let (status, _) = app.get("/v1/items/PLATE").await;
    assert_eq!(status, 404, "nothing of a refused batch is written");
    let (status, problem) = put(
        &app,
        "/v1/items",
        &json!([{"sku": "TRAY", "components": [{"sku": "GHOST", "quantity": 1}]}]),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/0/components/0/sku");
}

async fn listings_in_bulk_are_all_or_nothing(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    let listings = json!([
        {"channel_sku": "web-cup", "sku": "CUP"},
        {"channel_sku": "web-saucer", "sku": "SAUCER"}
    ]);
    let (status, problem) = put(&app, "/v1/channels/web/listings", &listings).await;
    assert_eq!(status, 404, "{problem}");
    put(
        &app,
        "/v1/items",
        &json!([{"sku": "CUP"}, {"sku": "SAUCER"}]),
    )
    .await;
    put(
        &app,
        "/v1/locations/east",
        &json!({"name": "East DC", "kind": "warehouse", "authority": "/wms/east"}),
    )
    .await;
    let (status, _) = put(
        &app,
        "/v1/channels/web",
        &json!({"kind": "shopify", "locations": ["east"]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = put(&app, "/v1/channels/web/listings", &listings).await;
    assert_eq!((status, body), (200, json!({"created": 2, "updated": 0})));
    let bad = json!([
        {"channel_sku": "web-plate", "sku": "PLATE"},
        {"channel_sku": "web-cup", "sku": "SAUCER"},
        {"channel_sku": "web-cup", "sku": "CUP"},
        {"sku": "CUP"},
        {"channel_sku": "web-mug", "sku": "CUP", "price": 3}
    ]);
    let (status, problem) = put(&app, "/v1/channels/web/listings", &bad).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers(&problem),
        vec!["/2/channel_sku", "/3/channel_sku", "/4/price"]
    );
    // The shape is right, but a SKU is not an item: nothing is written either.
    let unknown = json!([
        {"channel_sku": "web-cup", "sku": "SAUCER"},
        {"channel_sku": "web-plate", "sku": "PLATE"}
    ]);
    let (status, problem) = put(&app, "/v1/channels/web/listings", &unknown).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/1/sku", "{problem}");
    let (_, cup) = app.get("/v1/channels/web/listings/web-cup").await;
    assert_eq!(cup["sku"], "CUP", "nothing of a refused batch is written");
    let (status, _) = app.get("/v1/channels/web/listings/web-plate").await;
    assert_eq!(status, 404);
    let remap = json!([
        {"channel_sku": "web-cup", "sku": "SAUCER"},
        {"channel_sku": "web-bowl", "sku": "CUP"}
    ]);
    let (status, body) = put(&app, "/v1/channels/web/listings", &remap).await;
    assert_eq!((status, body), (200, json!({"created": 1, "updated": 1})));
    let (_, cup) = app.get("/v1/channels/web/listings/web-cup").await;
    assert_eq!(cup["sku"], "SAUCER");
    let (status, problem) = put(&app, "/v1/channels/web/listings", &json!([])).await;
    assert_eq!(status, 422, "{problem}");
}

async fn locations_channels_and_listings_refer_only_to_what_exists(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    let (status, loc) = put(
        &app,
        "/v1/locations/east",
        &json!({"name": "East DC", "kind": "warehouse", "authority": "/wms/east"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(loc["kind"], "warehouse");
    let (status, problem) = put(
        &app,
        "/v1/locations/west",
        &json!({"name": "West", "kind": "depot", "authority": "/wms/west"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/kind");
    let channel = json!({"kind": "shopify", "locations": ["east", "west"], "policy": {"percent": 90, "buffer": 1}, "increase_hold_ms": 2000});
    let (status, problem) = put(&app, "/v1/channels/shop", &channel).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/locations/1");
    put(
        &app,
        "/v1/locations/west",
        &json!({"name": "West", "kind": "3pl", "authority": "/3pl/west"}),
    )
    .await;
    let (status, saved) = put(&app, "/v1/channels/shop", &channel).await;
    assert_eq!(status, 201, "{saved}");
    let (_, got) = app.get("/v1/channels/shop").await;
    assert_eq!(got["locations"], json!(["east", "west"]));
    assert_eq!(got["policy"]["percent"], 90);

    put(&app, "/v1/items/MUG", &json!({})).await;
    let (status, _) = put(
        &app,
        "/v1/channels/nowhere/listings/m-1",
        &json!({"sku": "MUG"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem) = put(
        &app,
        "/v1/channels/shop/listings/m-1",
        &json!({"sku": "CUP"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/sku");
    let (status, listing) = put(
        &app,
        "/v1/channels/shop/listings/m-1",
        &json!({"sku": "MUG"}),
    )
    .await;
    assert_eq!(
        (status, listing),
        (
            201,
            json!({"channel": "shop", "channel_sku": "m-1", "sku": "MUG"})
        )
    );
    let (status, _) = app.get("/v1/channels/shop/listings/m-1").await;
    assert_eq!(status, 200);
    // Lists: every location and channel; a channel's listings a page at a time.
    let (_, locations) = app.get("/v1/locations").await;
    let ids: Vec<&str> = locations["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["east", "west"], "{locations}");
    let (_, channels) = app.get("/v1/channels").await;
    assert_eq!(channels["channels"][0]["id"], "shop", "{channels}");
    assert_eq!(channels["channels"][0]["policy"]["buffer"], 1, "{channels}");
    for n in 2..=5 {
        put(
            &app,
            &format!("/v1/channels/shop/listings/m-{n}"),
            &json!({"sku": "MUG"}),
        )
        .await;
    }
    let (_, page) = app.get("/v1/channels/shop/listings?limit=3").await;
    let skus = |page: &Value| -> Vec<String> {
        page["listings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["channel_sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(skus(&page), ["m-1", "m-2", "m-3"], "{page}");
    assert_eq!(page["next_after"], "m-3", "{page}");
    let (_, last) = app
        .get("/v1/channels/shop/listings?limit=3&after=m-3")
        .await;
    assert_eq!(skus(&last), ["m-4", "m-5"], "{last}");
    assert!(last["next_after"].is_null(), "{last}");
    let (status, _) = app.get("/v1/channels/nowhere/listings").await;
    assert_eq!(status, 404);
    let (status, refused) = app.get("/v1/channels/shop/listings?limit=0").await;
    assert_eq!(status, 400, "{refused}");
    let deleted = app
        .client
        .delete(app.url("/v1/channels/shop/listings/m-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _) = app.get("/v1/channels/shop/listings/m-1").await;
    assert_eq!(status, 404);
    // Catalog changes are audited.
    let (_, audit) = app.get("/v1/audit?action=channel.put").await;
    assert_eq!(audit["entries"][0]["target"], "shop");
}

async fn a_key_bound_to_a_channel_finds_no_other_channel(db: crossdock_store::testkit::TestDb) {
    let app = TestApp::spawn(db).await;
    put(
        &app,
        "/v1/locations/east",
        &json!({"name": "East", "kind": "warehouse", "authority": "/wms/east"}),
    )
    .await;
    for id in ["shop-eu", "shop-us"] {
        put(
            &app,
            &format!("/v1/channels/{id}"),
            &json!({"kind": "shopify", "locations": ["east"]}),
        )
        .await;
    }
    put(&app, "/v1/items/MUG", &json!({})).await;
    put(
        &app,
        "/v1/channels/shop-us/listings/m-1",
        &json!({"sku": "MUG"}),
    )
    .await;
    let token = create_key(
        &app.state,
        "eu-connector",
        "inventory:read,catalog:write",
        Some("shop-eu"),
        None,
    )
    .await;
    let call = |method: &'static str, path: &'static str, body: Option<Value>| {
        let request = app
            .anonymous
            .request(method.parse().unwrap(), app.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default());
        async move { read(request.send().await.unwrap()).await }
    };
    let (status, own) = call("GET", "/v1/channels/shop-eu", None).await;
    assert_eq!(status, 200, "{own}");
    // The list of channels holds its own only.
    let (status, listed) = call("GET", "/v1/channels", None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["channels"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["channels"][0]["id"], "shop-eu", "{listed}");
    assert_eq!(
        call("GET", "/v1/channels/shop-us/listings", None).await.0,
        404
    );
    // Another channel's resources do not exist for this key: 404, exactly as for a missing one.
    let (status, other) = call("GET", "/v1/channels/shop-us", None).await;
    let (_, missing) = call("GET", "/v1/channels/shop-xx", None).await;
    assert_eq!(status, 404);
    assert_eq!(other["title"], missing["title"]);
    assert_eq!(
        call("GET", "/v1/channels/shop-us/listings/m-1", None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            "PUT",
            "/v1/channels/shop-us/listings/m-2",
            Some(json!({"sku": "MUG"}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call("DELETE", "/v1/channels/shop-us/listings/m-1", None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            "PUT",
            "/v1/channels/shop-us",
            Some(json!({"kind": "x", "locations": []}))
        )
        .await
        .0,
        404
    );
    // Its own channel it may change.
    assert_eq!(
        call(
            "PUT",
            "/v1/channels/shop-eu/listings/m-9",
            Some(json!({"sku": "MUG"}))
        )
        .await
        .0,
        201
    );
    let (_, still) = app.get("/v1/channels/shop-us/listings/m-1").await;
    assert_eq!(still["sku"], "MUG");
}

async fn bad_quantities_and_identifiers_are_named_and_change_nothing(
    db: crossdock_store::testkit::TestDb,
) {
    let app = TestApp::spawn(db).await;
    put(&app, "/v1/items/A", &json!({})).await;
    let too_big = 9_007_199_254_740_993i64;
    for (quantity, says) in [
        (json!(0), "must be from 1"),
        (json!(-3), "must be from 1"),
        (json!(1.5), "whole number"),
        (json!("2"), "must be an integer, not a string"),
        (json!(too_big), "2^53"),
    ] {
        let body = json!({"components": [{"sku": "A", "quantity": quantity}]});
        let (status, problem) = put(&app, "/v1/items/K", &body).await;
        assert_eq!(status, 422, "{quantity}");
        assert_eq!(problem["errors"][0]["pointer"], "/components/0/quantity");
        assert!(
            problem["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains(says),
            "{problem}"
        );
    }
    let (status, _) = app.get("/v1/items/K").await;
    assert_eq!(status, 404);
    let (status, problem) = put(
        &app,
        "/v1/channels/bad%20id",
        &json!({"kind": "x", "locations": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["pointer"], "/path/id");
    let (status, _) = app.get("/v1/items/%20A").await;
    assert_eq!(status, 400);
    let (status, problem) = put(&app, "/v1/items/B", &json!({"components": "A"})).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/components");
    let response = app
        .client
        .put(app.url("/v1/items/B"))
        .header("content-type", "application/json")
        .body("{\"unit\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}
