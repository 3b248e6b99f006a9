//! Fresh, isolated databases for tests, on either backend.
//!
//! PostgreSQL tests run when `CROSSDOCK_TEST_POSTGRES_URL` is set and print a visible skip line
//! when it is not. With `CI=true` an unset or unreachable PostgreSQL is a failure, never a skip.

use std::io::Write;
use std::sync::Once;

use crate::baseline::ScratchSchema;
use crate::{Store, StoreOptions};

/// The environment variable that enables PostgreSQL-backed tests.
pub const POSTGRES_URL_VAR: &str = "CROSSDOCK_TEST_POSTGRES_URL";

static SKIP_NOTICE: Once = Once::new();

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The admin URL for PostgreSQL tests, or `None` (after saying so) when they are not enabled.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "CI=true but {POSTGRES_URL_VAR} is not set: PostgreSQL tests must run in CI"
            );
            SKIP_NOTICE.call_once(|| {
                // Written to the process's stderr directly, past the test harness's capture,
                // so that a skipped backend is visible in every test run.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL-backed tests ({POSTGRES_URL_VAR} is not set)"
                );
            });
            None
        }
    }
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    /// What to pass as `--database` or `StoreOptions::database`.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    pg: Option<ScratchSchema>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("url", &self.url).finish()
    }
}

impl TestDb {
    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = dir.path().join("crossdock.db").display().to_string();
        TestDb {
            url,
            dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh PostgreSQL schema, or `None` when PostgreSQL tests are not enabled.
    pub async fn postgres() -> Option<TestDb> {
        let admin = postgres_url()?;
        let schema = ScratchSchema::create(&admin, "t")
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unusable: {e}")
            });
        Some(TestDb {
            url: schema.url.clone(),
            dir: None,
            pg: Some(schema),
        })
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions::new(self.url.clone())
    }

    /// Opens and migrates the store.
    pub async fn open(&self) -> Store {
        Store::open(&self.options())
            .await
            .expect("open the test store")
    }

    /// The directory holding a SQLite test database.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.pg.take() else {
            return;
        };
        // Drop may run inside a runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(schema.drop());
            }
        })
        .join();
    }
}
