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
    /// Applies the batch that follows log position `from`; the returned writes are committed
    /// with the new position.
    fn apply<'a>(
        &'a self,
        state: &'a AppState,
        from: i64,
        batch: &'a [StoredEvent],
    ) -> ApplyFuture<'a>;
    /// The most events applied in one transaction.
    fn batch_max(&self) -> usize {
        CONSUMER_BATCH_EVENTS_MAX
    }
    /// Whether the batch after `from` may be applied while the batch ending at `from` is still
    /// committing. Only a consumer that keeps what it applied in memory may: the store does not
    /// have it yet.
    fn runs_ahead(&self, _from: i64) -> bool {
        false
    }
    /// Forgets what the consumer keeps in memory: a batch it applied was not committed.
    fn forget(&self) {}
}

/// The source activity projection.
#[derive(Debug, Default)]
pub struct SourceActivity;

impl LogConsumer for SourceActivity {
    fn name(&self) -> &str {
        Projection::SourceActivity.consumer_name()
    }

    fn apply<'a>(
        &'a self,
        _state: &'a AppState,
        _from: i64,
        batch: &'a [StoredEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut delta = ActivityDelta::default();
            for event in batch {
                delta.apply(event);
            }
            Ok(ProjectionWrites::SourceActivity(delta))
        })
    }
}

/// A batch being committed.
struct Committing {
    /// The log position it moves the consumer to.
    to: i64,
    events: usize,
    changes_availability: bool,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// A consumer following the log. A consumer that [runs ahead](LogConsumer::runs_ahead) has its
/// next batch read and applied while the one before it commits (the writer and the consumer's
/// own work then overlap); the commits still follow one another, each moving the position from
/// where the one before left it.
pub struct Follower {
    state: Arc<AppState>,
    consumer: Arc<dyn LogConsumer>,
    batch_max: usize,
    committing: Option<Committing>,
}

impl Follower {
    pub fn new(state: Arc<AppState>, consumer: Arc<dyn LogConsumer>) -> Follower {
        let batch_max = consumer.batch_max();
        Follower {
            state,
            consumer,
            batch_max,
            committing: None,
        }
    }

    /// Takes one step: applies the next batch, if any, and commits it — or leaves it committing
    /// while the next step applies the batch after it. Returns the events whose commit ended in
    /// this step, or `None` when the consumer is caught up and nothing is committing.
    pub async fn step(&mut self) -> Result<Option<usize>, StoreError> {
        let from = match &self.committing {
            Some(c) if self.consumer.runs_ahead(c.to) => c.to,
            Some(_) => return self.settle().await.map(Some),
            None => {
                self.state
                    .store
                    .consumer_position(self.consumer.name(), self.state.clock.now())
                    .await?
            }
        };
        let batch = match self.state.store.read_events(from, self.batch_max).await {
            Ok(batch) => batch,
            Err(e) => {
                self.settle().await?;
                return Err(e);
            }
        };
        let Some(last) = batch.last().map(|e| e.seq) else {
            return match self.committing {
                Some(_) => self.settle().await.map(Some),
                None => Ok(None),
            };
        };
        let applied = self.consumer.apply(&self.state, from, &batch).await;
        let (committed, moved) = match self.settle_checked().await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.consumer.forget();
                return Err(e);
            }
        };
        let writes = match applied {
            Ok(writes) => writes,
            Err(e) => {
                self.consumer.forget();
                return Err(e);
            }
        };
        if moved {
            // Applied on top of a batch that was not committed: start again from the store.
            self.consumer.forget();
            return Ok(Some(committed.max(1)));
        }
        let changes_availability = writes.changes_availability();
        let store = self.state.store.clone();
        let name = self.consumer.name().to_owned();
        let now = self.state.clock.now();
        self.committing = Some(Committing {
            to: last,
            events: batch.len(),
            changes_availability,
            task: tokio::spawn(async move {
                store
                    .commit_projection(&name, from, last, writes, now)
                    .await
            }),
        });
        if self.consumer.runs_ahead(last) {
            return Ok(Some(committed));
        }
        Ok(Some(committed + self.settle().await?))
    }

    /// Waits for the batch committing, if any. Returns its events (1 when another runner had
    /// moved the position and nothing was written: the next step starts from where it is).
    pub async fn settle(&mut self) -> Result<usize, StoreError> {
        match self.settle_checked().await {
            Ok((_, true)) => {
                self.consumer.forget();
                Ok(1)
            }
            Ok((committed, false)) => Ok(committed),
            Err(e) => {
                self.consumer.forget();
                Err(e)
            }
        }
    }

    /// Waits for the batch committing: its events, and whether the position had moved.
    async fn settle_checked(&mut self) -> Result<(usize, bool), StoreError> {
        let Some(c) = self.committing.take() else {
            return Ok((0, false));
        };
        let outcome = c
            .task
            .await
            .map_err(|e| StoreError::Unavailable(format!("projection commit task: {e}")))?;
        match outcome {
            Ok(()) => {
                if c.changes_availability {
                    self.state.availability_wake.notify_waiters();
                }
                Ok((c.events, false))
            }
            // Someone else moved the position: nothing was written.
            Err(StoreError::PositionMoved { .. }) => Ok((0, true)),
            Err(e) => Err(e),
        }
    }
}

/// Applies every event the consumer has not applied yet and returns how many it applied.
pub async fn catch_up(
    state: Arc<AppState>,
    consumer: Arc<dyn LogConsumer>,
) -> Result<usize, StoreError> {
    let mut follower = Follower::new(state, consumer);
    let mut applied = 0;
    while let Some(n) = follower.step().await? {
        applied += n;
    }
    Ok(applied)
}

/// Follows the log until cancelled: applies batches while there are events, then waits for the
/// log head to move (or the poll interval, for appends made by other processes). A batch being
/// committed when it is cancelled is waited for.
pub async fn run(state: Arc<AppState>, consumer: Arc<dyn LogConsumer>, cancel: CancellationToken) {
    let mut head = state.head.subscribe();
    let poll = Duration::from_millis(state.config.outbox.poll_interval_ms);
    let name = consumer.name().to_owned();
    let mut follower = Follower::new(state, consumer);
    while !cancel.is_cancelled() {
        head.mark_unchanged();
        match follower.step().await {
            Ok(None) => {
                tokio::select! {
                    _ = head.changed() => {}
                    () = tokio::time::sleep(poll) => {}
                    () = cancel.cancelled() => {}
                }
            }
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "consumer step failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)) => {}
                    () = cancel.cancelled() => {}
                }
            }
        }
    }
    if let Err(e) = follower.settle().await {
        tracing::warn!(consumer = name, error = %e, "the last batch was not committed");
    }
}
