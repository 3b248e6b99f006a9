//! The consumer loop shared by every reader of the event log.
//!
//! A consumer reads a batch after its stored position, turns it into writes, and commits the
//! writes together with the new position. The commit fails if the position moved meanwhile (a
//! second runner, or an operator's replay), and the loop then starts again from the stored
//! position. A batch is therefore applied exactly once to internal state.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crossdock_core::StoredEvent;
use crossdock_core::activity::ActivityDelta;
use crossdock_store::{Projection, ProjectionWrites, StoreError};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;

/// Events read and applied in one transaction.
pub const CONSUMER_BATCH_EVENTS_MAX: usize = 5000;
/// The wait after a store failure before the loop tries again.
const ERROR_BACKOFF_MS: u64 = 1000;

pub type ApplyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ProjectionWrites, StoreError>> + Send + 'a>>;

/// Something that follows the event log.
pub trait LogConsumer: Send + Sync + 'static {
    /// The consumer's name in `consumers`; its position is kept under it.
    fn name(&self) -> &str;
    /// Applies a batch; the returned writes are committed with the new position.
    fn apply<'a>(&'a self, state: &'a AppState, batch: &'a [StoredEvent]) -> ApplyFuture<'a>;
    /// The most events applied in one transaction.
    fn batch_max(&self) -> usize {
        CONSUMER_BATCH_EVENTS_MAX
    }
}

/// The source activity projection.
#[derive(Debug, Default)]
pub struct SourceActivity;

impl LogConsumer for SourceActivity {
    fn name(&self) -> &str {
        Projection::SourceActivity.consumer_name()
    }

    fn apply<'a>(&'a self, _state: &'a AppState, batch: &'a [StoredEvent]) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut delta = ActivityDelta::default();
            for event in batch {
                delta.apply(event);
            }
            Ok(ProjectionWrites::SourceActivity(delta))
        })
    }
}

/// Applies at most one batch. Returns how many events it applied (0: caught up).
pub async fn step(
    state: &AppState,
    consumer: &dyn LogConsumer,
    batch_events_max: usize,
) -> Result<usize, StoreError> {
    let name = consumer.name();
    let from = state
        .store
        .consumer_position(name, state.clock.now())
        .await?;
    let batch = state.store.read_events(from, batch_events_max).await?;
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    let writes = consumer.apply(state, &batch).await?;
    let changes_availability = writes.changes_availability();
    match state
        .store
        .commit_projection(name, from, last.seq, writes, state.clock.now())
        .await
    {
        Ok(()) => {
            if changes_availability {
                state.availability_wake.notify_waiters();
            }
            Ok(batch.len())
        }
        // Someone else moved the position: nothing was written; start over from where it is.
        Err(StoreError::PositionMoved { .. }) => Ok(1),
        Err(e) => Err(e),
    }
}

/// Follows the log until cancelled: applies batches while there are events, then waits for the
/// log head to move (or the poll interval, for appends made by other processes).
pub async fn run(state: Arc<AppState>, consumer: Arc<dyn LogConsumer>, cancel: CancellationToken) {
    let mut head = state.head.subscribe();
    let poll = Duration::from_millis(state.config.outbox.poll_interval_ms);
    while !cancel.is_cancelled() {
        head.mark_unchanged();
        match step(&state, consumer.as_ref(), consumer.batch_max()).await {
            Ok(0) => {
                tokio::select! {
                    _ = head.changed() => {}
                    () = tokio::time::sleep(poll) => {}
                    () = cancel.cancelled() => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(consumer = consumer.name(), error = %e, "consumer step failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)) => {}
                    () = cancel.cancelled() => {}
                }
            }
        }
    }
}
