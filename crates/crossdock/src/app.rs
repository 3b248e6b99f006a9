//! The application: built from configuration (Options → build → serve), it opens the store,
//! starts the consumers and delivery workers, serves HTTP, and shuts down in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossdock_core::BatchLimits;
use crossdock_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, TargetKind};
use crate::metrics::Metrics;
use crate::runtime::consumer::{self, LogConsumer, SourceActivity};
use crate::runtime::delivery::{self, Deliverer, Target, TargetSettings};
use crate::runtime::subscription::Subscription;
use crate::runtime::webhook::Webhook;

/// Everything a request handler or runtime task may use.
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub limits: BatchLimits,
    /// The highest sequence number this process has appended; wakes consumers and long polls.
    pub head: watch::Sender<i64>,
    /// Bounds the requests handled at once.
    pub in_flight: Arc<Semaphore>,
    /// Wakes delivery workers when actions are queued or replayed.
    pub outbox_wake: Arc<Notify>,
    /// Cancelled when the process begins to shut down.
    pub shutdown: CancellationToken,
    /// Authentication, scopes and rate limits.
    pub gate: crate::http::gate::Gate,
    /// Idempotency keys being processed by this process.
    pub claims: crate::http::idempotency::Claims,
    /// Wakes the channel feeder when listings change or deliveries finish.
    pub availability_wake: Arc<Notify>,
    /// The catalog as the inventory engine and routes see it, read again when it changes.
    pub catalog: crate::runtime::inventory::CatalogCache,
    /// The delivery targets this process runs workers for.
    pub target_names: std::collections::BTreeSet<String>,
}

/// Builds an [`App`]: configuration plus what tests may replace (the clock, extra targets).
pub struct AppBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    targets: Vec<Target>,
}

impl AppBuilder {
    pub fn new(config: Config) -> Self {
        AppBuilder {
            config,
            clock: Arc::new(SystemClock),
            targets: Vec::new(),
        }
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a delivery target that is not in the configuration (tests, embedded use).
    pub fn target(
        mut self,
        name: &str,
        settings: TargetSettings,
        deliverer: Arc<dyn Deliverer>,
    ) -> Self {
        self.targets.push(Target {
            name: name.to_owned(),
            settings,
            deliverer,
        });
        self
    }

    /// Opens and migrates the store and prepares every component. Nothing runs yet.
    pub async fn build(self) -> anyhow::Result<App> {
        install_tls_provider();
        let config = self.config;
        let mut targets: Vec<Arc<Target>> = Vec::new();
        for (name, target) in &config.targets {
            let deliverer: Arc<dyn Deliverer> = match target.kind {
                TargetKind::Webhook => Arc::new(Webhook::new(name, target)?),
            };
            targets.push(Arc::new(Target {
                name: name.clone(),
                settings: TargetSettings {
                    policy: target.policy(),
                    in_flight_max: target.in_flight_max,
                    rate_per_second: target.rate_per_second,
                },
                deliverer,
            }));
        }
        targets.extend(self.targets.into_iter().map(Arc::new));

        let store = Store::open(&config.store.options())
            .await
            .with_context(|| {
                format!(
                    "cannot open the store at {}",
                    config.store.database_redacted()
                )
            })?;
        let head = store.head_seq().await?;
        let mut consumers: Vec<Arc<dyn LogConsumer>> = vec![
            Arc::new(SourceActivity),
            Arc::new(crate::runtime::inventory::InventoryProjection::for_store(
                &store,
            )),
            Arc::new(crate::runtime::orders::OrderSagas),
        ];
        for sub in &config.subscriptions {
            consumers.push(Arc::new(Subscription::new(sub.clone())));
        }
        let gate = crate::http::gate::Gate::new(&config.auth);
        let state = Arc::new(AppState {
            store,
            limits: BatchLimits {
                batch_events_max: config.events.batch_events_max,
                event_data_bytes_max: config.events.event_data_bytes_max,
            },
            in_flight: Arc::new(Semaphore::new(config.server.in_flight_requests_max)),
            config: Arc::new(config),
            clock: self.clock,
            metrics: Arc::new(Metrics::default()),
            head: watch::Sender::new(head),
            outbox_wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            gate,
            claims: crate::http::idempotency::Claims::default(),
            availability_wake: Arc::new(Notify::new()),
            catalog: crate::runtime::inventory::CatalogCache::default(),
            target_names: targets.iter().map(|t| t.name.clone()).collect(),
        });
        Ok(App {
            state,
            targets,
            consumers,
        })
    }
}

pub struct App {
    state: Arc<AppState>,
    targets: Vec<Arc<Target>>,
    consumers: Vec<Arc<dyn LogConsumer>>,
}

impl App {
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops in order: no new requests, requests in
    /// flight finish, consumers stop after their current batch, deliveries in flight record
    /// their outcome, and the store closes after its last commit.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let tasks = TaskTracker::new();
        let workers = CancellationToken::new();
        for consumer in self.consumers {
            tasks.spawn(consumer::run(state.clone(), consumer, workers.clone()));
        }
        for target in self.targets {
            tasks.spawn(delivery::run(state.clone(), target, workers.clone()));
        }
        tasks.spawn(crate::runtime::inventory::feed(
            state.clone(),
            workers.clone(),
        ));
        tasks.spawn(crate::runtime::orders::deadlines(
            state.clone(),
            workers.clone(),
        ));
        tasks.spawn(crate::postings::every(state.clone(), workers.clone()));
        let purge = tasks.spawn(purge_loop(state.clone(), workers.clone()));
        drop(purge);
        tasks.close();

        announce_auth(&state).await?;
        let address = listener.local_addr()?;
        tracing::info!(
            "listening on http://{address} (store: {}, {})",
            state.store.backend_name(),
            state.config.store.database_redacted()
        );
        let router = crate::http::router(state.clone());
        let stopping = state.shutdown.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing requests in flight");
                stopping.cancel();
            })
            .await
            .context("the HTTP server failed")?;

        workers.cancel();
        let grace = Duration::from_millis(state.config.server.shutdown_grace_ms);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                "workers did not stop within the grace period; their leases will expire"
            );
        }
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Says loudly when authentication is off; otherwise makes sure there is a key to start with,
/// and records in the audit log when the configuration differs from the last start.
async fn announce_auth(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now();
    if !state.gate.enabled() {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--no-auth): every caller is an administrator. Use this only for \
             local development, never on a network others can reach."
        );
    } else {
        let path = std::path::Path::new(&state.config.auth.admin_key_file);
        if crate::keys::bootstrap_admin(&state.store, path, now).await? {
            tracing::warn!(
                "no API keys existed, so an admin key was created; its token is in {} (readable by \
                 its owner only). Create narrower keys with `crossdock keys create`.",
                path.display()
            );
            crate::audit::record(
                &state.store,
                now,
                crate::audit::Action {
                    actor: "system",
                    action: "key.create",
                    target: "admin",
                    outcome: "ok",
                    correlation_id: None,
                    detail: Some(serde_json::json!({"scopes": "admin", "written_to": path.display().to_string()})),
                },
            )
            .await;
        }
    }
    record_config(state).await;
    Ok(())
}

/// Records `config.changed` in the audit log when the effective configuration (secrets hidden)
/// differs from the one the previous start recorded.
async fn record_config(state: &AppState) {
    use sha2::Digest;
    let shown = state.config.to_redacted_toml();
    let digest: String = sha2::Sha256::digest(shown.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let query = crossdock_store::AuditQuery {
        action: Some("config.loaded".into()),
        limit: 10_000,
        ..Default::default()
    };
    let previous = match state.store.audit_list(query).await {
        Ok(records) => records.last().map(|r| r.entry.target.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the audit log");
            return;
        }
    };
    if previous.as_deref() == Some(digest.as_str()) {
        return;
    }
    let now = state.clock.now();
    for action in ["config.loaded", "config.changed"] {
        if action == "config.changed" && previous.is_none() {
            continue;
        }
        crate::audit::record(
            &state.store,
            now,
            crate::audit::Action {
                actor: "system",
                action,
                target: &digest,
                outcome: "ok",
                correlation_id: None,
                detail: Some(
                    serde_json::json!({"previous": previous, "auth_enabled": state.gate.enabled()}),
                ),
            },
        )
        .await;
    }
}

/// Deletes finished outbox actions and expired idempotency records, a bounded number at a time.
async fn purge_loop(state: Arc<AppState>, cancel: CancellationToken) {
    const PURGE_BATCH_MAX: usize = 10_000;
    const PURGE_INTERVAL_S: u64 = 60;
    let retention_ms = i64::try_from(state.config.outbox.retention_hours)
        .unwrap_or(i64::MAX / 3_600_000)
        .saturating_mul(3_600_000);
    let idempotency_ms = i64::from(state.config.auth.idempotency_ttl_hours) * 3_600_000;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(PURGE_INTERVAL_S)) => {}
            () = cancel.cancelled() => return,
        }
        let now = state.clock.now();
        match state
            .store
            .purge_finished(now.plus_millis(-retention_ms), PURGE_BATCH_MAX)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged finished outbox actions"),
            Err(e) => tracing::warn!(error = %e, "cannot purge finished outbox actions"),
        }
        if let Err(e) = state
            .store
            .purge_idempotency(now.plus_millis(-idempotency_ms), PURGE_BATCH_MAX)
            .await
        {
            tracing::warn!(error = %e, "cannot purge expired idempotency records");
        }
    }
}

/// Chooses the TLS implementation for outbound HTTPS (ring) once per process. reqwest is built
/// without a default provider so that no C toolchain-heavy crypto is pulled in.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
