//! Crash tests with real processes: a client sends 200,000 events in batches and resends
//! whatever was not acknowledged, while the server is killed with SIGKILL at random moments and
//! restarted. Afterwards every acknowledged event is in the log exactly once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

crate::backend_tests!(
    acknowledged_events_survive_repeated_kill_9_exactly_once,
    sigterm_stops_gracefully,
    no_auth_is_announced_loudly_and_lets_everyone_in,
    orders_wait_out_an_erp_outage_and_a_kill_9_and_reach_the_erp_once_each,
);

const EVENTS: usize = 200_000;
const BATCH: usize = 500;
const SENDERS: usize = 4;
const KILLS: usize = 24;

/// A `crossdock serve` child process on a free port.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts a server; its first start writes the admin key to `key_file`.
    fn start(database: &str, key_file: &std::path::Path) -> Server {
        Server::start_with(database, key_file, &[]).0
    }

    /// Starts a server with extra arguments; returns it and the log lines before it listened.
    fn start_with(
        database: &str,
        key_file: &std::path::Path,
        extra: &[&str],
    ) -> (Server, Vec<String>) {
        crossdock::app::install_tls_provider();
        let mut child = Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["serve", "--database", database, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CROSSDOCK_LOG", "info")
            .env("CROSSDOCK_AUTH__ADMIN_KEY_FILE", key_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crossdock serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            let mut before = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Keep draining stderr after the address so the child never blocks on a full pipe.
                if let Some(rest) = line.split("listening on ").nth(1).filter(|_| !sent) {
                    let address = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((address, std::mem::take(&mut before)));
                    sent = true;
                } else if !sent {
                    before.push(line);
                }
            }
        });
        let (base, log) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("crossdock printed its address");
        (Server { child, base }, log)
    }

    fn kill_9(mut self) {
        // Child::kill sends SIGKILL on Unix.
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
    }

    #[cfg(unix)]
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        self.child.wait().expect("reap the server")
    }
}

impl Drop for Server {
    /// A failing test must not leave a server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client that sends the admin key the first server start wrote.
fn admin_client(key_file: &std::path::Path) -> reqwest::Client {
    let token = std::fs::read_to_string(key_file).expect("the admin key file");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .default_headers(headers)
        .build()
        .unwrap()
}

fn batch(index: usize) -> Value {
    let events: Vec<Value> = (index * BATCH..(index + 1) * BATCH)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("c-{i}"), "source": "/crash", "type": "wms.stock.adjusted",
                   "data": {"sku": format!("SKU-{}", i % 1000), "delta": -1, "note": "crash test event of roughly 150 bytes"}})
        })
        .collect();
    Value::Array(events)
}

/// A tiny deterministic random source, seeded per run and printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn acknowledged_events_survive_repeated_kill_9_exactly_once(
    db: crossdock_store::testkit::TestDb,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let batches = EVENTS / BATCH;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin-key");
    let first = Server::start(&db.url, &key_file);
    let base = Arc::new(Mutex::new(first.base.clone()));
    let server = Arc::new(Mutex::new(Some(first)));
    let queue = Arc::new(Mutex::new((0..batches).collect::<Vec<_>>()));
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let acked_ids: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let client = admin_client(&key_file);

    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (queue, base, acked_batches, acked_ids, client) = (
            queue.clone(),
            base.clone(),
            acked_batches.clone(),
            acked_ids.clone(),
            client.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(index) = queue.lock().unwrap().pop() else {
                    break;
                };
                loop {
                    let url = format!("{}/v1/events", base.lock().unwrap());
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(batch(index).to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let _ = r.bytes().await;
                            acked_ids
                                .lock()
                                .unwrap()
                                .extend(index * BATCH..(index + 1) * BATCH);
                            acked_batches.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        // Not acknowledged (refused, reset, 503): send the same batch again.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }));
    }

    // Kill at random points spread over the run: after a random share of the batches has been
    // acknowledged, plus a random delay, so kills land mid-request and mid-commit.
    let mut thresholds: Vec<usize> = (0..KILLS)
        .map(|_| rng.below(batches as u64 * 9 / 10) as usize)
        .collect();
    thresholds.sort_unstable();
    let mut kills = 0;
    for threshold in thresholds {
        while acked_batches.load(Ordering::SeqCst) < threshold {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
        if let Some(s) = server.lock().unwrap().take() {
            s.kill_9();
            kills += 1;
        }
        let next = Server::start(&db.url, &key_file);
        *base.lock().unwrap() = next.base.clone();
        *server.lock().unwrap() = Some(next);
    }
    for s in senders {
        s.await.unwrap();
    }
    assert!(kills >= 20, "only {kills} kills happened");
    assert_eq!(acked_batches.load(Ordering::SeqCst), batches);

    // Read the whole log back through the public feed.
    let base_url = base.lock().unwrap().clone();
    let mut seen: HashSet<String> = HashSet::with_capacity(EVENTS);
    let mut last_seq = 0i64;
    let mut after = 0i64;
    loop {
        let feed: Value = client
            .get(format!("{base_url}/v1/events?after={after}&limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = feed["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            let seq = e["seq"].as_i64().unwrap();
            assert!(
                seq > last_seq,
                "sequence not increasing: {seq} after {last_seq}"
            );
            last_seq = seq;
            let id = e["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "event {id} is in the log twice");
        }
        after = feed["next_after"].as_i64().unwrap();
    }
    let acked = acked_ids.lock().unwrap();
    assert_eq!(acked.len(), EVENTS);
    for i in acked.iter() {
        assert!(
            seen.contains(&format!("c-{i}")),
            "acknowledged event c-{i} was lost"
        );
    }
    assert_eq!(seen.len(), EVENTS, "the log holds events nobody sent");
    if let Some(s) = server.lock().unwrap().take() {
        s.kill_9();
    }
}

#[cfg(unix)]
async fn sigterm_stops_gracefully(db: crossdock_store::testkit::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin-key");
    let server = Server::start(&db.url, &key_file);
    // The first start wrote an admin key that only its owner can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the admin key file is {mode:o}");
    }
    let client = admin_client(&key_file);
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/json")
        .body(batch(0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        401,
        "a request without a key is refused"
    );
    let response = client
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/json")
        .body(batch(0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let status = server.terminate();
    assert!(status.success(), "crossdock exited with {status}");
    // Everything acknowledged before the signal is there after a restart.
    let server = Server::start(&db.url, &key_file);
    let feed: Value = client
        .get(format!("{}/v1/events?limit=1000", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["events"].as_array().unwrap().len(), BATCH);
    server.kill_9();
}

async fn no_auth_is_announced_loudly_and_lets_everyone_in(db: crossdock_store::testkit::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin-key");
    let (server, log) = Server::start_with(&db.url, &key_file, &["--no-auth"]);
    assert!(
        log.iter().any(|l| l.contains("AUTHENTICATION IS OFF")),
        "{log:#?}"
    );
    assert!(
        !key_file.exists(),
        "no admin key is made when authentication is off"
    );
    let response = reqwest::Client::new()
        .get(format!("{}/v1/dead-letters", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    server.kill_9();
}

/// A fake ERP: answers 503 while it is down; when up, records each sales order it is sent (by
/// idempotency key) and answers 204.
#[derive(Default)]
struct FakeErp {
    up: std::sync::atomic::AtomicBool,
    refused: AtomicUsize,
    /// Idempotency key → how many times it was delivered, and the payload.
    received: Mutex<std::collections::BTreeMap<String, (usize, Value)>>,
}

async fn start_erp(erp: Arc<FakeErp>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/erp",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let erp = erp.clone();
            async move {
                if !erp.up.load(Ordering::SeqCst) {
                    erp.refused.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let payload: Value = serde_json::from_str(&body).unwrap_or_default();
                let mut received = erp.received.lock().unwrap();
                let entry = received.entry(key).or_insert((0, payload));
                entry.0 += 1;
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/erp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn orders_wait_out_an_erp_outage_and_a_kill_9_and_reach_the_erp_once_each(
    db: crossdock_store::testkit::TestDb,
) {
    const ORDERS: usize = 20;
    let erp = Arc::new(FakeErp::default());
    let url = start_erp(erp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin-key");
    let config = dir.path().join("crossdock.toml");
    std::fs::write(
        &config,
        format!(
            "[targets.erp]\nkind = \"webhook\"\nurl = \"{url}\"\nattempts_max = 100000\n\
             backoff_base_ms = 50\nbackoff_max_ms = 300\n\n[postings]\ninterval_s = 0\n\n\
             [auth]\nrate_per_second = 100000\nburst = 100000\n\n\
             [outbox]\nlease_ms = 2000\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let first = Server::start_with(&db.url, &key_file, &["--config", &config]).0;
    let client = admin_client(&key_file);
    let send = |base: String, method: reqwest::Method, path: &str, body: Value| {
        let (client, path) = (client.clone(), path.to_owned());
        async move {
            let response = client
                .request(method, format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    };
    for (path, body) in [
        (
            "/v1/locations/wh-1",
            json!({"name": "East", "kind": "warehouse", "authority": "erp"}),
        ),
        ("/v1/items/MUG", json!({})),
        (
            "/v1/channels/shop",
            json!({"kind": "shopify", "locations": ["wh-1"]}),
        ),
        ("/v1/channels/shop/listings/shop-mug", json!({"sku": "MUG"})),
    ] {
        let (status, reply) = send(first.base.clone(), reqwest::Method::PUT, path, body).await;
        assert!(status < 300, "{path}: {reply}");
    }
    let stock = json!({"specversion": "1.0", "source": "erp", "id": "r-1", "type": "inventory.received",
        "data": {"sku": "MUG", "location": "wh-1", "quantity": 100}});
    let (status, reply) = send(
        first.base.clone(),
        reqwest::Method::POST,
        "/v1/events",
        stock,
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for n in 0..ORDERS {
        let order = json!({"channel": "shop", "external_id": format!("E-{n}"),
            "lines": [{"channel_sku": "shop-mug", "quantity": 1, "unit_price": "4.00", "currency": "USD"}],
            "ship_to": {"name": "Ada", "address1": "1 Main St", "city": "Solon", "postal_code": "44139", "country": "US"}});
        let (status, taken) = send(
            first.base.clone(),
            reqwest::Method::POST,
            "/v1/orders",
            order,
        )
        .await;
        assert_eq!(status, 201, "{taken}");
        assert_eq!(taken["status"], "submitted", "{taken}");
        ids.push(taken["id"].as_str().unwrap().to_owned());
    }
    // The ERP is down: deliveries are refused and retried…
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while erp.refused.load(Ordering::SeqCst) < 2 * ORDERS {
        assert!(
            std::time::Instant::now() < deadline,
            "no retries reached the ERP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // …and crossdock dies in the middle of it. Deliveries in flight at that moment are retried
    // when their lease (2 s here) runs out.
    first.kill_9();
    erp.up.store(true, Ordering::SeqCst);
    let second = Server::start_with(&db.url, &key_file, &["--config", &config]).0;
    // The ERP confirms each sales order it received, as an ERP connector would.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut confirmed = HashSet::new();
    loop {
        let received: Vec<Value> = erp
            .received
            .lock()
            .unwrap()
            .values()
            .map(|(_, payload)| payload.clone())
            .collect();
        for payload in received
            .iter()
            .filter(|p| p["type"] == "erp.sales_order.create")
        {
            let id = payload["order_id"].as_str().unwrap().to_owned();
            if confirmed.contains(&id) {
                continue;
            }
            let confirm = json!({"specversion": "1.0", "source": "erp", "id": format!("confirm-{id}"),
                "type": "erp.sales_order.confirmed", "data": {"order_id": id, "erp_order": format!("SO-{id}")}});
            let (status, _) = send(
                second.base.clone(),
                reqwest::Method::POST,
                "/v1/events",
                confirm,
            )
            .await;
            if status == 202 {
                confirmed.insert(id);
            }
        }
        let (_, released) = send(
            second.base.clone(),
            reqwest::Method::GET,
            "/v1/orders?status=released&limit=1000",
            Value::Null,
        )
        .await;
        if released["orders"].as_array().map_or(0, Vec::len) == ORDERS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orders not released in time: {released}; the ERP has {} actions",
            erp.received.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = erp.received.lock().unwrap().clone();
    let sales_orders: Vec<&String> = received
        .iter()
        .filter(|(_, (_, p))| p["type"] == "erp.sales_order.create")
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        sales_orders.len(),
        ORDERS,
        "one sales order per order: {sales_orders:?}"
    );
    for id in &ids {
        assert!(
            received
                .values()
                .any(|(_, p)| p["type"] == "erp.sales_order.create" && p["order_id"] == id.as_str()),
            "order {id} never reached the ERP"
        );
    }
    drop(second);
}
