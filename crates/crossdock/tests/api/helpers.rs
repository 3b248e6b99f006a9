//! Spawning the real application on port 0 with a fresh database, and small client helpers.

use std::sync::Arc;
use std::time::Duration;

use crossdock::app::{AppBuilder, AppState};
use crossdock::config::Config;
use crossdock_store::testkit::TestDb;
use serde_json::Value;
use tokio::sync::oneshot;

/// Runs a test body once per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crossdock_store::testkit::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crossdock_store::testkit::TestDb::postgres().await else {
                        return;
                    };
                    super::$name(db).await;
                }
            )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    /// Sends the test administrator's key with every request.
    pub client: reqwest::Client,
    /// Sends no key.
    pub anonymous: reqwest::Client,
    pub state: Arc<AppState>,
    db: Option<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Configuration suited to tests: port 0, quick polling.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::default();
    config.store.database = db.url.clone();
    config.server.listen = "127.0.0.1:0".into();
    config.outbox.poll_interval_ms = 10;
    // Tests jump a manual clock far ahead; a lease must not lapse under a delivery still in
    // flight in real time (lease expiry has its own tests in the store suite).
    config.outbox.lease_ms = 24 * 3600 * 1000;
    // Keys are made by the tests; nothing should land in the working directory.
    config.auth.admin_key_file = std::env::temp_dir()
        .join(format!("crossdock-test-admin-key-{}", std::process::id()))
        .display()
        .to_string();
    config
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> TestApp {
        let config = test_config(&db);
        TestApp::spawn_with(db, config, |b| b).await
    }

    pub async fn spawn_with(
        db: TestDb,
        config: Config,
        customize: impl FnOnce(AppBuilder) -> AppBuilder,
    ) -> TestApp {
        let app = customize(AppBuilder::new(config))
            .build()
            .await
            .expect("build the app");
        let state = app.state().clone();
        // The test client is an administrator with a budget no test exhausts by accident. A
        // restarted app replaces the key of the previous one.
        state
            .store
            .key_revoke("test-admin", state.clock.now())
            .await
            .unwrap();
        let token = create_key(&state, "test-admin", "admin", None, Some(1_000_000)).await;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        TestApp {
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()
                .unwrap(),
            anonymous: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            state,
            db: Some(db),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Shuts the server down gracefully and hands back the database.
    pub async fn stop(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.db.take().expect("the database")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn head_seq(&self) -> i64 {
        self.state.store.head_seq().await.unwrap()
    }

    /// Waits (in real time, bounded) until `check` passes.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates an API key directly in the store and returns its token.
pub async fn create_key(
    state: &AppState,
    name: &str,
    scopes: &str,
    channel: Option<&str>,
    rate: Option<u32>,
) -> String {
    let spec = crossdock::keys::KeySpec {
        name: name.into(),
        scopes: crossdock_core::access::Scopes::parse(scopes).unwrap(),
        channel: channel.map(Into::into),
        rate_per_second: rate,
        burst: rate,
    };
    crossdock::keys::create(&state.store, &spec, state.clock.now())
        .await
        .unwrap()
        .expose()
}

/// The pointers of a problem's errors, in order.
pub fn pointers(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["pointer"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn put(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .put(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    read(response).await
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub fn event(source: &str, id: &str) -> Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": "wms.stock.adjusted",
        "subject": "A-1",
        "data": {"sku": "A-1", "location": "WH-1", "delta": -1}
    })
}
