//! Delivery workers: one per target. Each claims due actions from the outbox (never more in
//! flight than the target allows), starts them no faster than the target's rate, and records
//! the outcome: acknowledged, retried after a backoff, or dead-lettered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdock_core::{FailureDecision, RetryPolicy, Timestamp};
use crossdock_store::{ClaimRequest, ClaimedAction, DeliveryFailure};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Jitter;
use crate::app::AppState;
use crate::metrics::DeliveryResult;

/// Errors are cut to this length before they are stored.
const ERROR_TEXT_CHARS_MAX: usize = 2000;

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Worth trying again (a timeout, a 503, a rate limit); `after_ms` if the target said when.
    Retry {
        error: String,
        after_ms: Option<u64>,
    },
    /// The target rejected the action itself; retrying would not help.
    Permanent {
        error: String,
    },
}

pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = DeliveryOutcome> + Send + 'a>>;

/// Performs actions against one external system. Implementations do the IO; the worker does the
/// bookkeeping.
pub trait Deliverer: Send + Sync + 'static {
    fn deliver<'a>(&'a self, action: &'a ClaimedAction) -> DeliveryFuture<'a>;
}

/// How a target's deliveries are paced and retried.
#[derive(Clone, Copy, Debug)]
pub struct TargetSettings {
    pub policy: RetryPolicy,
    pub in_flight_max: usize,
    /// Deliveries started per second at most; 0 means no limit.
    pub rate_per_second: u32,
}

pub struct Target {
    pub name: String,
    pub settings: TargetSettings,
    pub deliverer: Arc<dyn Deliverer>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Spaces delivery starts so a target never sees more than its rate.
#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(rate_per_second: u32) -> Self {
        Pacer {
            interval: (rate_per_second > 0).then(|| Duration::from_secs(1) / rate_per_second),
            next: tokio::time::Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = tokio::time::Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + interval;
    }
}

/// Runs the worker for one target until cancelled, then waits for deliveries in flight.
pub async fn run(state: Arc<AppState>, target: Arc<Target>, cancel: CancellationToken) {
    let poll = Duration::from_millis(state.config.outbox.poll_interval_ms);
    let mut pacer = Pacer::new(target.settings.rate_per_second);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let seed = state.clock.now().unix_micros().unsigned_abs() ^ hash(&target.name);
    let jitter = Arc::new(std::sync::Mutex::new(Jitter::seeded(seed)));
    while !cancel.is_cancelled() {
        while in_flight.try_join_next().is_some() {}
        // Register for wake-ups before looking, so a notification in between is not lost.
        let wake = state.outbox_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();

        let room = target
            .settings
            .in_flight_max
            .saturating_sub(in_flight.len());
        let now = state.clock.now();
        let due = if room > 0 {
            match state.store.next_due(&target.name).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(target = %target.name, error = %e, "cannot read the outbox");
                    None
                }
            }
        } else {
            None
        };
        if let Some(due_at) = due.filter(|d| *d <= now) {
            let _ = due_at;
            let request = ClaimRequest {
                target: &target.name,
                limit: room,
                in_flight_max: target.settings.in_flight_max,
                lease_ms: state.config.outbox.lease_ms,
                policy: target.settings.policy,
                now,
            };
            match state.store.claim(request).await {
                Ok(claimed) if !claimed.is_empty() => {
                    for action in claimed {
                        pacer.wait().await;
                        in_flight.spawn(deliver_one(
                            state.clone(),
                            target.clone(),
                            action,
                            jitter.clone(),
                        ));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(target = %target.name, error = %e, "cannot claim actions"),
            }
        }
        // Sleep until the next action is due, a delivery finishes, new work is announced, or the
        // poll interval passes.
        let until_due = due
            .filter(|d| *d > now)
            .map_or(poll, |d| micros_between(now, d).min(poll));
        tokio::select! {
            _ = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = &mut wake => {}
            () = tokio::time::sleep(until_due) => {}
            () = cancel.cancelled() => {}
        }
    }
    // Deliveries already started finish and record their outcome; a lease covers the rest.
    while in_flight.join_next().await.is_some() {}
}

fn micros_between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_micros(u64::try_from(to.unix_micros() - from.unix_micros()).unwrap_or(0))
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

async fn deliver_one(
    state: Arc<AppState>,
    target: Arc<Target>,
    action: ClaimedAction,
    jitter: Arc<std::sync::Mutex<Jitter>>,
) {
    let started = Instant::now();
    let outcome = target.deliverer.deliver(&action).await;
    let now = state.clock.now();
    let result = match outcome {
        DeliveryOutcome::Delivered => {
            // What a channel now shows is recorded while its batch is still open, so the feeder
            // never ranks a waiting value against what the channel showed before.
            super::inventory::acknowledged(&state, &action).await;
            match state.store.ack(action.id, action.attempt, now).await {
                // The channel is ready for its next batch.
                Ok(true) => state.availability_wake.notify_waiters(),
                Ok(false) => tracing::warn!(
                    target = %target.name, action_id = action.id,
                    "delivered after the lease expired; the target may see it again (same idempotency key)"
                ),
                Err(e) => tracing::warn!(
                    target = %target.name, action_id = action.id, error = %e,
                    "delivered but could not record it; it will be retried with the same idempotency key"
                ),
            }
            DeliveryResult::Delivered
        }
        DeliveryOutcome::Retry { error, after_ms } => {
            let unit = jitter.lock().map_or(0.5, |mut j| j.next_unit());
            let made = u32::try_from(action.attempts_in_budget).unwrap_or(u32::MAX);
            let mut decision = target.settings.policy.after_failure(made, false, now, unit);
            if let (FailureDecision::RetryAt(at), Some(ms)) = (decision, after_ms) {
                // The target said when to come back; never sooner than that.
                let asked = now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX));
                decision = FailureDecision::RetryAt(at.max(asked));
            }
            record_failure(&state, &target, &action, error, decision, now).await
        }
        DeliveryOutcome::Permanent { error } => {
            record_failure(
                &state,
                &target,
                &action,
                error,
                FailureDecision::DeadLetter,
                now,
            )
            .await
        }
    };
    state
        .metrics
        .delivery(&target.name, result, started.elapsed());
}

async fn record_failure(
    state: &AppState,
    target: &Target,
    action: &ClaimedAction,
    error: String,
    decision: FailureDecision,
    now: Timestamp,
) -> DeliveryResult {
    let error: String = error.chars().take(ERROR_TEXT_CHARS_MAX).collect();
    let result = match decision {
        FailureDecision::RetryAt(_) => DeliveryResult::Retry,
        FailureDecision::DeadLetter => {
            tracing::warn!(
                target = %target.name, action_id = action.id, error = %error,
                "delivery failed for good; moved to the dead-letter queue"
            );
            DeliveryResult::DeadLettered
        }
    };
    let failure = DeliveryFailure {
        id: action.id,
        attempt: action.attempt,
        error,
        decision,
        now,
    };
    if let Err(e) = state.store.fail(failure).await {
        tracing::warn!(
            target = %target.name, action_id = action.id, error = %e,
            "could not record a failed delivery; its lease will expire and it will be retried"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_starts_no_more_than_the_rate() {
        let mut pacer = Pacer::new(5);
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            pacer.wait().await;
        }
        // The first start is immediate; ten more at 200 ms intervals.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_of_zero_means_no_pacing() {
        let mut pacer = Pacer::new(0);
        let start = tokio::time::Instant::now();
        for _ in 0..100 {
            pacer.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
