//! The one path by which inbound messages become events: parse the body for its protocol, stamp
//! the correlation id, append. Live requests and inbox replays both come through here.

use std::time::Instant;

use crossdock_core::catalog::Sku;
use crossdock_core::inventory::{CATALOG_CHANGED, Movement, is_hold, is_movement};
use crossdock_core::{
    BatchLimits, EventData, FieldError, NewEvent, ParseRejection, parse_event_batch,
};
use crossdock_store::{
    AppendOutcome, IdempotentAppend, IdempotentOutcome, InboxMessage, InboxStatus, StoreError,
};

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
    check_inventory(state, &events, body).await?;
    check_sagas(&events, body)?;
    for e in &mut events {
        e.correlate(correlation_id);
    }
    let now = state.clock.now();
    let started = Instant::now();
    let outcome = match idempotent() {
        Some(request) => match state.store.append_idempotent(events, now, request).await? {
            IdempotentOutcome::Appended(outcome) => outcome,
            recorded => return Ok(recorded),
        },
        None => state.store.append(events, now).await?,
    };
    appended(state, &outcome, started);
    Ok(IdempotentOutcome::Appended(outcome))
}

/// Appends events built inside crossdock (already valid), as `accept` does after parsing.
pub async fn accept_events(
    state: &AppState,
    events: Vec<NewEvent>,
) -> Result<AppendOutcome, IngestError> {
    let started = Instant::now();
    let outcome = state.store.append(events, state.clock.now()).await?;
    appended(state, &outcome, started);
    Ok(outcome)
}

/// Counts an append and wakes whoever follows the log.
fn appended(state: &AppState, outcome: &AppendOutcome, started: Instant) {
    state
        .metrics
        .events_appended(outcome.appended(), outcome.duplicates(), started.elapsed());
    if let Some((_, last)) = outcome.seq_range() {
        advance_head(state, last);
    }
}

/// Records that the log reaches `seq`, waking consumers and long polls if that is news.
pub fn advance_head(state: &AppState, seq: i64) {
    state.head.send_if_modified(|head| {
        let moved = seq > *head;
        *head = (*head).max(seq);
        moved
    });
}

/// Checks the inventory events of a batch against their `data` schemas and the catalog: each
/// names an item that is not a kit (a kit's stock is its components') and locations that exist.
/// One problem rejects the whole batch, so nothing is partially applied.
async fn check_inventory(
    state: &AppState,
    events: &[NewEvent],
    body: &[u8],
) -> Result<(), IngestError> {
    let recorded_here = |kind: &str| is_hold(kind) || kind == CATALOG_CHANGED;
    if !events
        .iter()
        .any(|e| is_movement(e.kind()) || recorded_here(e.kind()))
    {
        return Ok(());
    }
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let prefix = |index: usize| {
        if array {
            format!("/{index}")
        } else {
            String::new()
        }
    };
    let mut errors = Vec::new();
    for (index, event) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| recorded_here(e.kind()))
    {
        let how = if is_hold(event.kind()) {
            "hold stock with POST /v1/reservations"
        } else {
            "it follows PUTs of the catalog"
        };
        errors.push(FieldError::new(
            format!("{}/type", prefix(index)),
            format!("{} is recorded by crossdock itself; {how}", event.kind()),
        ));
    }
    let mut parsed = Vec::new();
    for (index, event) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| is_movement(e.kind()))
    {
        let at = format!("{}/data", prefix(index));
        let data = match event.data() {
            None => None,
            Some(EventData::Json(raw)) => serde_json::from_str::<serde_json::Value>(raw.get()).ok(),
            Some(EventData::Base64(_)) => {
                errors.push(FieldError::new(
                    at,
                    "inventory events carry JSON data, not data_base64",
                ));
                continue;
            }
        };
        if let Some(movement) = Movement::parse(event.kind(), data.as_ref(), &at, &mut errors) {
            parsed.push((at, movement));
        }
    }
    errors.extend(check_movements(state, &parsed).await?);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ParseRejection::Invalid(errors).into())
    }
}

/// What the `data` of each saga event must hold, as its problem says when it does not.
fn saga_needs(kind: &str) -> &'static str {
    match kind {
        "order.paid" => {
            "order_id (or channel and external_id), reference, and amount as a decimal string if any"
        }
        "order.cancelled" => "order_id (or channel and external_id), and reason if any",
        "erp.sales_order.confirmed" | "erp.sales_order.rejected" => "order_id",
        "shipment.confirmed" => "order_id, shipment and lines: [{line, quantity}]",
        "invoice.created" => "order_id, shipment and invoice",
        "return.received" => {
            "return_id, receipt, location if any, and lines: [{line, quantity, disposition: restock | scrap}]"
        }
        "erp.credit_memo.created" => "return_id and credit_memo",
        "erp.journal.posted" => "batch and journal",
        _ => "what its saga reads",
    }
}

/// Checks the `data` of order, shipment, return and posting events: a saga event its saga
/// cannot read is refused here, with what it lacks, instead of being passed over later. One
/// problem rejects the whole batch.
fn check_sagas(events: &[NewEvent], body: &[u8]) -> Result<(), IngestError> {
    use crate::runtime::orders::{SAGA_EVENT_TYPES, input_of};
    if !events.iter().any(|e| SAGA_EVENT_TYPES.contains(&e.kind())) {
        return Ok(());
    }
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let mut errors = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let kind = event.kind();
        if !SAGA_EVENT_TYPES.contains(&kind) {
            continue;
        }
        let at = if array {
            format!("/{index}/data")
        } else {
            "/data".to_owned()
        };
        let data = match event.data() {
            Some(EventData::Json(raw)) => {
                serde_json::from_str::<serde_json::Value>(raw.get()).unwrap_or_default()
            }
            _ => serde_json::Value::Null,
        };
        if matches!(kind, "order.placed" | "order.updated") {
            match crate::orders::parse_at(&data, &at) {
                Err(problems) => errors.extend(problems),
                Ok(order) if kind == "order.updated" && order.updated_at.is_none() => {
                    errors.push(FieldError::new(
                        format!("{at}/updated_at"),
                        "an update says when the channel made it (RFC 3339); only a newer one is applied",
                    ));
                }
                Ok(_) => {}
            }
            continue;
        }
        if input_of(kind, &data, "").is_none() {
            errors.push(FieldError::new(
                at,
                format!("{kind} needs {}", saga_needs(kind)),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ParseRejection::Invalid(errors).into())
    }
}

/// Checks movements against the catalog: each names an item that is not a kit (a kit's stock
/// is its components') and locations that exist. Problems point under each movement's `at`.
pub async fn check_movements(
    state: &AppState,
    parsed: &[(String, Movement)],
) -> Result<Vec<FieldError>, StoreError> {
    let mut errors = Vec::new();
    if parsed.is_empty() {
        return Ok(errors);
    }
    let catalog = state.catalog.get(&state.store).await?;
    let skus: Vec<Sku> = parsed.iter().map(|(_, m)| m.sku().clone()).collect();
    let known = state.store.items_known(skus).await?;
    for (at, movement) in parsed {
        let (sku, locations) = movement.touches();
        if !known.contains(sku) {
            errors.push(FieldError::new(
                format!("{at}/sku"),
                format!("{sku} is not an item; PUT /v1/items/{sku} first"),
            ));
        } else if catalog.snapshot.kits.contains_key(sku) {
            errors.push(FieldError::new(
                format!("{at}/sku"),
                format!("{sku} is a kit; its stock is its components' — send movements of those"),
            ));
        }
        for (location, member) in locations.into_iter().zip(movement.location_members()) {
            if !catalog.snapshot.locations.contains_key(location) {
                errors.push(FieldError::new(
                    format!("{at}/{member}"),
                    format!("{location} is not a location; PUT /v1/locations/{location} first"),
                ));
            }
        }
    }
    Ok(errors)
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
