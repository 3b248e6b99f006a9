//! The one path by which inbound messages become events: parse the body for its protocol, stamp
//! the correlation id, append. Live requests and inbox replays both come through here.

use std::time::Instant;

use crossdock_core::{BatchLimits, NewEvent, ParseRejection, parse_event_batch};
use crossdock_store::{IdempotentAppend, IdempotentOutcome, InboxMessage, InboxStatus, StoreError};

use crate::app::AppState;

/// The protocol name of CloudEvents JSON arriving over the HTTP API.
pub const PROTOCOL_HTTP_CLOUDEVENTS: &str = "http+cloudevents";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Rejected(#[from] ParseRejection),
    #[error("inbox messages of protocol {0:?} cannot be replayed by this version of crossdock")]
    UnknownProtocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns a body of the given protocol into events.
pub fn parse(
    protocol: &str,
    body: &[u8],
    limits: &BatchLimits,
) -> Result<Vec<NewEvent>, IngestError> {
    match protocol {
        PROTOCOL_HTTP_CLOUDEVENTS => Ok(parse_event_batch(body, limits)?),
        other => Err(IngestError::UnknownProtocol(other.to_owned())),
    }
}

/// Parses and appends. The events are durable when this returns `Ok`. Once the body has parsed,
/// `idempotent` may supply an idempotency key for the store to look up and keep the answer under
/// in the same transaction; a key answered before appends nothing.
pub async fn accept(
    state: &AppState,
    protocol: &str,
    body: &[u8],
    correlation_id: &str,
    idempotent: impl FnOnce() -> Option<IdempotentAppend>,
) -> Result<IdempotentOutcome, IngestError> {
    let mut events = parse(protocol, body, &state.limits)?;
    for e in &mut events {
        e.correlate(correlation_id);
    }
    let started = Instant::now();
    let now = state.clock.now();
    let outcome = match idempotent() {
        Some(request) => match state.store.append_idempotent(events, now, request).await? {
            IdempotentOutcome::Appended(outcome) => outcome,
            recorded => return Ok(recorded),
        },
        None => state.store.append(events, now).await?,
    };
    state
        .metrics
        .events_appended(outcome.appended(), outcome.duplicates(), started.elapsed());
    if let Some((_, last)) = outcome.seq_range() {
        state.head.send_if_modified(|head| {
            let moved = last > *head;
            *head = (*head).max(last);
            moved
        });
    }
    Ok(IdempotentOutcome::Appended(outcome))
}

/// Keeps a rejected body in the inbox so operators can see what was sent and replay it after a
/// fix. Returns the inbox id, or `None` when keeping rejected bodies is switched off or fails.
pub async fn keep_rejected(
    state: &AppState,
    protocol: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
    error: &str,
    correlation_id: &str,
) -> Option<i64> {
    if !state.config.events.keep_rejected {
        return None;
    }
    let message = InboxMessage {
        source: "api".into(),
        protocol: protocol.into(),
        headers,
        body: body.to_vec(),
        received_at: state.clock.now(),
        status: InboxStatus::Rejected,
        error: Some(error.to_owned()),
        correlation_id: Some(correlation_id.to_owned()),
    };
    match state.store.inbox_put(message).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "could not keep a rejected request in the inbox");
            None
        }
    }
}
