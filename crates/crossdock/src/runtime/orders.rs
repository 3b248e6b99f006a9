//! The order sagas' consumer: the answers of other systems, arriving as events, become inputs of
//! the orders they name — `erp.sales_order.confirmed` / `rejected`, `shipment.confirmed`,
//! `invoice.created`, `order.cancelled`. Each event is applied at least once and the saga drops
//! repeats (a confirmation of a confirmed order, a shipment it has), so the effect is once.

use crossdock_core::StoredEvent;
use crossdock_core::order::Input;
use crossdock_store::ProjectionWrites;
use serde_json::Value;

use super::consumer::{ApplyFuture, LogConsumer};
use crate::app::AppState;
use crate::orders::{self, TakeError};

/// The event types the sagas read.
pub const ORDER_EVENT_TYPES: [&str; 5] = [
    "erp.sales_order.confirmed",
    "erp.sales_order.rejected",
    "shipment.confirmed",
    "invoice.created",
    "order.cancelled",
];

#[derive(Debug, Default)]
pub struct OrderSagas;

fn text(data: &Value, name: &str) -> Option<String> {
    data.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The order an event is about, and what it tells its saga; `None` for an event that does not
/// say enough (it is logged and passed over: the log keeps it).
pub fn input_of(kind: &str, data: &Value) -> Option<(String, Input)> {
    let order_id = text(data, "order_id")?;
    let input = match kind {
        "erp.sales_order.confirmed" => Input::ErpConfirmed {
            erp_order: text(data, "erp_order").unwrap_or_default(),
        },
        "erp.sales_order.rejected" => Input::ErpRejected {
            reason: text(data, "reason").unwrap_or_else(|| "no reason given".into()),
        },
        "shipment.confirmed" => Input::Shipped {
            shipment: text(data, "shipment")?,
            lines: data
                .get("lines")?
                .as_array()?
                .iter()
                .map(|l| {
                    let line = u32::try_from(l.get("line")?.as_u64()?).ok()?;
                    Some((line, l.get("quantity")?.as_i64()?))
                })
                .collect::<Option<Vec<_>>>()?,
        },
        "invoice.created" => Input::Invoiced {
            shipment: text(data, "shipment")?,
            invoice: text(data, "invoice")?,
        },
        "order.cancelled" => Input::Cancelled {
            reason: text(data, "reason").unwrap_or_else(|| "cancelled by the channel".into()),
        },
        _ => return None,
    };
    Some((order_id, input))
}

impl LogConsumer for OrderSagas {
    fn name(&self) -> &str {
        "order_sagas"
    }

    fn batch_max(&self) -> usize {
        100
    }

    fn apply<'a>(&'a self, state: &'a AppState, batch: &'a [StoredEvent]) -> ApplyFuture<'a> {
        Box::pin(async move {
            for event in batch
                .iter()
                .filter(|e| ORDER_EVENT_TYPES.contains(&e.event.kind()))
            {
                let data: Value = match event.event.data() {
                    Some(crossdock_core::EventData::Json(raw)) => {
                        serde_json::from_str(raw.get()).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                let Some((order_id, input)) = input_of(event.event.kind(), &data) else {
                    tracing::warn!(
                        seq = event.seq,
                        kind = event.event.kind(),
                        "an order event without what its saga needs; passed over"
                    );
                    continue;
                };
                let correlation = event
                    .event
                    .correlation_id()
                    .unwrap_or(event.event.id())
                    .to_owned();
                match orders::advance(state, &order_id, input, &correlation).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!(
                            seq = event.seq,
                            order_id,
                            "an event for an unknown order; passed over"
                        );
                    }
                    Err(TakeError::Store(e)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(seq = event.seq, order_id, error = %e, "an order event could not be applied");
                    }
                }
            }
            Ok(ProjectionWrites::None)
        })
    }
}

/// How often the deadline runner looks for orders whose waiting is over.
const DEADLINE_POLL_MS: u64 = 1000;
/// Orders handled per look.
const DEADLINE_BATCH: usize = 100;

/// Moves every order whose deadline has come (by the clock) on to a visible exception. Returns
/// how many it looked at.
pub async fn deadlines_once(state: &AppState) -> Result<usize, crossdock_store::StoreError> {
    let now = state.clock.now();
    let due = state
        .store
        .orders(crossdock_store::OrderQuery {
            due_before: Some(now),
            limit: DEADLINE_BATCH,
            ..crossdock_store::OrderQuery::default()
        })
        .await?;
    for row in &due {
        match orders::advance(state, &row.id, Input::Tick, &row.id).await {
            Ok(_) => {}
            Err(TakeError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(order_id = row.id, error = %e, "a deadline could not be applied")
            }
        }
    }
    Ok(due.len())
}

/// The deadline runner: `deadlines_once` every second until shutdown.
pub async fn deadlines(
    state: std::sync::Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    while !cancel.is_cancelled() {
        if let Err(e) = deadlines_once(&state).await {
            tracing::warn!(error = %e, "cannot look for order deadlines; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(DEADLINE_POLL_MS)) => {}
            () = cancel.cancelled() => {}
        }
    }
}
