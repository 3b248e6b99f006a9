//! Subscriptions: route events from the log to a delivery target through the outbox.
//!
//! Each matching event becomes one action whose idempotency key is derived from the
//! subscription and the event's sequence number, so re-reading the same events (after a crash
//! between enqueue and commit, or a replay) never queues an event twice.

use crossdock_core::StoredEvent;
use crossdock_store::{NewAction, ProjectionWrites};

use super::consumer::{ApplyFuture, LogConsumer};
use crate::app::AppState;
use crate::config::SubscriptionConfig;

#[derive(Debug)]
pub struct Subscription {
    consumer_name: String,
    config: SubscriptionConfig,
}

impl Subscription {
    pub fn new(config: SubscriptionConfig) -> Self {
        Subscription {
            consumer_name: format!("subscription:{}", config.name),
            config,
        }
    }

    pub fn matches(&self, event: &StoredEvent) -> bool {
        pattern_match(&self.config.types, event.event.kind())
            && pattern_match(&self.config.sources, event.event.source())
    }
}

/// An empty list matches everything; `prefix*` matches a prefix; anything else matches exactly.
fn pattern_match(patterns: &[String], value: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => p == value,
        })
}

impl LogConsumer for Subscription {
    fn name(&self) -> &str {
        &self.consumer_name
    }

    fn apply<'a>(
        &'a self,
        state: &'a AppState,
        _from: i64,
        batch: &'a [StoredEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let now = state.clock.now();
            let mut actions = Vec::new();
            for event in batch.iter().filter(|e| self.matches(e)) {
                let payload = serde_json::to_string(event)
                    .map_err(|e| crossdock_store::StoreError::Invalid(e.to_string()))?;
                actions.push(NewAction {
                    target: self.config.target.clone(),
                    idempotency_key: format!("{}-{}", self.config.name, event.seq),
                    coalesce_key: None,
                    priority: 0,
                    payload,
                    not_before: now,
                    correlation_id: event.event.correlation_id().map(str::to_owned),
                    causation_id: Some(event.event.id().to_owned()),
                });
            }
            if !actions.is_empty() {
                state.store.enqueue(actions, now).await?;
                state.outbox_wake.notify_waiters();
            }
            Ok(ProjectionWrites::None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_match;

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(pattern_match(&[], "anything"));
        assert!(pattern_match(&p(&["inventory.*"]), "inventory.adjusted"));
        assert!(!pattern_match(&p(&["inventory.*"]), "order.created"));
        assert!(pattern_match(&p(&["order.created"]), "order.created"));
        assert!(!pattern_match(&p(&["order.created"]), "order.created.v2"));
    }
}
