//! The sagas' consumer: the answers of other systems, arriving as events, become inputs of the
//! orders and returns they name — `erp.sales_order.confirmed` / `rejected`, `shipment.confirmed`,
//! `invoice.created`, `order.cancelled`; `return.received`, `erp.credit_memo.created` — and
//! `erp.journal.posted` confirms a journal batch. Each event is applied at least once and the
//! sagas drop repeats (a confirmation of a confirmed order, a shipment it has), so the effect is
//! once.

use std::collections::{BTreeMap, BTreeSet};

use crossdock_core::catalog::{LocationId, Sku};
use crossdock_core::order::{Input, Order, Status};
use crossdock_core::returns::{Disposition, ReturnInput};
use crossdock_core::{StoredEvent, Timestamp};
use crossdock_store::ProjectionWrites;
use futures_util::StreamExt;
use serde_json::Value;

use super::consumer::{ApplyFuture, LogConsumer};
use crate::app::AppState;
use crate::orders::{self, TakeError};

/// The event types the sagas read.
pub const SAGA_EVENT_TYPES: [&str; 11] = [
    "order.placed",
    "order.updated",
    "order.paid",
    "erp.sales_order.confirmed",
    "erp.sales_order.rejected",
    "shipment.confirmed",
    "invoice.created",
    "order.cancelled",
    "return.received",
    "erp.credit_memo.created",
    "erp.journal.posted",
];

#[derive(Debug, Default)]
pub struct OrderSagas;

fn text(data: &Value, name: &str) -> Option<String> {
    data.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// What an event tells a saga.
#[derive(Clone, Debug)]
pub enum SagaInput {
    /// A connector's order, taken like `POST /v1/orders` (the event id is its delivery id
    /// unless it names one).
    Placed(orders::OrderIn),
    Updated(orders::OrderIn, Timestamp),
    /// An input for an order known by its channel and external id, perhaps not placed yet.
    Noted {
        channel: String,
        external_id: String,
        input: Input,
    },
    Order(String, Input),
    /// Goods back under a return; the location is the order's when the event names none.
    ReturnReceived {
        return_id: String,
        receipt: String,
        location: Option<LocationId>,
        lines: Vec<(u32, i64, Disposition)>,
    },
    Return(String, ReturnInput),
    JournalPosted {
        batch: String,
        journal: String,
    },
}

fn line_number(l: &Value) -> Option<u32> {
    u32::try_from(l.get("line")?.as_u64()?).ok()
}

/// What an event tells which saga; `None` for an event that does not say enough (it is logged
/// and passed over: the log keeps it).
pub fn input_of(kind: &str, data: &Value, event_id: &str) -> Option<SagaInput> {
    let order = |input| match text(data, "order_id") {
        Some(id) => Some(SagaInput::Order(id, input)),
        None => Some(SagaInput::Noted {
            channel: text(data, "channel")?,
            external_id: text(data, "external_id")?,
            input,
        }),
    };
    match kind {
        "order.placed" => {
            let mut placed = orders::parse(data).ok()?;
            placed
                .delivery_id
                .get_or_insert_with(|| event_id.to_owned());
            Some(SagaInput::Placed(placed))
        }
        "order.updated" => {
            let updated = orders::parse(data).ok()?;
            let at = updated.updated_at?;
            Some(SagaInput::Updated(updated, at))
        }
        "order.paid" => order(Input::Paid {
            reference: text(data, "reference")?,
            amount: match text(data, "amount") {
                Some(a) => Some(crossdock_core::money::Amount::parse(&a).ok()?),
                None => None,
            },
        }),
        "erp.sales_order.confirmed" => order(Input::ErpConfirmed {
            erp_order: text(data, "erp_order").unwrap_or_default(),
        }),
        "erp.sales_order.rejected" => order(Input::ErpRejected {
            reason: text(data, "reason").unwrap_or_else(|| "no reason given".into()),
        }),
        "shipment.confirmed" => order(Input::Shipped {
            shipment: text(data, "shipment")?,
            lines: data
                .get("lines")?
                .as_array()?
                .iter()
                .map(|l| Some((line_number(l)?, l.get("quantity")?.as_i64()?)))
                .collect::<Option<Vec<_>>>()?,
        }),
        "invoice.created" => order(Input::Invoiced {
            shipment: text(data, "shipment")?,
            invoice: text(data, "invoice")?,
        }),
        "order.cancelled" => order(Input::Cancelled {
            reason: text(data, "reason").unwrap_or_else(|| "cancelled by the channel".into()),
        }),
        "return.received" => Some(SagaInput::ReturnReceived {
            return_id: text(data, "return_id")?,
            receipt: text(data, "receipt")?,
            location: match text(data, "location") {
                Some(l) => Some(LocationId::parse(&l).ok()?),
                None => None,
            },
            lines: data
                .get("lines")?
                .as_array()?
                .iter()
                .map(|l| {
                    let disposition = match l.get("disposition").and_then(Value::as_str) {
                        Some("restock") | None => Disposition::Restock,
                        Some("scrap") => Disposition::Scrap,
                        Some(_) => return None,
                    };
                    Some((line_number(l)?, l.get("quantity")?.as_i64()?, disposition))
                })
                .collect::<Option<Vec<_>>>()?,
        }),
        "erp.credit_memo.created" => Some(SagaInput::Return(
            text(data, "return_id")?,
            ReturnInput::CreditConfirmed {
                credit_memo: text(data, "credit_memo")?,
            },
        )),
        "erp.journal.posted" => Some(SagaInput::JournalPosted {
            batch: text(data, "batch")?,
            journal: text(data, "journal")?,
        }),
        _ => None,
    }
}

/// Applies one saga input; `Ok(false)` when the order, return or batch it names is unknown.
async fn apply_input(
    state: &AppState,
    input: SagaInput,
    correlation: &str,
) -> Result<bool, TakeError> {
    match input {
        SagaInput::Placed(placed) => orders::take(state, placed, correlation).await.map(|_| true),
        SagaInput::Updated(updated, at) => {
            let outcome = orders::update(state, updated, at, correlation).await?;
            if let orders::Update::Stale(id) = &outcome {
                tracing::info!(
                    order_id = id,
                    "an update not newer than the order held; passed over"
                );
            }
            Ok(true)
        }
        SagaInput::Noted {
            channel,
            external_id,
            input,
        } => orders::note(state, &channel, &external_id, input, correlation)
            .await
            .map(|_| true),
        SagaInput::Order(id, input) => Ok(orders::advance(state, &id, input, correlation)
            .await?
            .is_some()),
        SagaInput::ReturnReceived {
            return_id,
            receipt,
            location,
            lines,
        } => {
            let Some(location) =
                crate::returns::receiving_location(state, &return_id, location).await?
            else {
                return Ok(false);
            };
            let input = ReturnInput::Received {
                receipt,
                location,
                lines,
            };
            Ok(
                crate::returns::advance(state, &return_id, input, correlation)
                    .await?
                    .is_some(),
            )
        }
        SagaInput::Return(id, input) => Ok(crate::returns::advance(state, &id, input, correlation)
            .await?
            .is_some()),
        SagaInput::JournalPosted { batch, journal } => {
            let now = state.clock.now();
            if !state.store.posting_confirm(&batch, &journal, now).await? {
                return Ok(state.store.posting_batch(&batch).await?.is_some());
            }
            Ok(true)
        }
    }
}

/// Sagas advanced side by side within one batch.
const SAGAS_AT_ONCE: usize = 32;

/// The saga an input belongs to: its events are applied one after another.
fn saga_key(input: &SagaInput) -> String {
    match input {
        SagaInput::Placed(o) | SagaInput::Updated(o, _) => {
            format!("order:{}/{}", o.channel, o.external_id)
        }
        SagaInput::Noted {
            channel,
            external_id,
            ..
        } => format!("order:{channel}/{external_id}"),
        SagaInput::Order(id, _) => format!("order-id:{id}"),
        SagaInput::ReturnReceived { return_id, .. } | SagaInput::Return(return_id, _) => {
            format!("return:{return_id}")
        }
        SagaInput::JournalPosted { batch, .. } => format!("batch:{batch}"),
    }
}

/// Applies the events of one saga in order.
async fn apply_group(
    state: &AppState,
    events: Vec<(&StoredEvent, SagaInput)>,
) -> Result<(), crossdock_store::StoreError> {
    for (event, input) in events {
        apply_one(state, event, input).await?;
    }
    Ok(())
}

/// Applies one event's input; a store failure fails the batch (it is applied again: every step
/// is idempotent), anything else is logged and passed over (the log keeps the event).
async fn apply_one(
    state: &AppState,
    event: &StoredEvent,
    input: SagaInput,
) -> Result<(), crossdock_store::StoreError> {
    let correlation = event
        .event
        .correlation_id()
        .unwrap_or(event.event.id())
        .to_owned();
    match apply_input(state, input, &correlation).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(
                seq = event.seq,
                kind = event.event.kind(),
                "an event for an unknown order, return or batch; passed over"
            );
            Ok(())
        }
        Err(TakeError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(seq = event.seq, kind = event.event.kind(), error = %e, "a saga event could not be applied");
            Ok(())
        }
    }
}

impl LogConsumer for OrderSagas {
    fn name(&self) -> &str {
        "order_sagas"
    }

    fn batch_max(&self) -> usize {
        100
    }

    fn apply<'a>(
        &'a self,
        state: &'a AppState,
        _from: i64,
        batch: &'a [StoredEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            // Events of one saga are applied in log order; different sagas side by side, so
            // their writes share commits.
            let mut groups: Vec<(String, Vec<(&StoredEvent, SagaInput)>)> = Vec::new();
            let mut index: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for event in batch
                .iter()
                .filter(|e| SAGA_EVENT_TYPES.contains(&e.event.kind()))
            {
                let data: Value = match event.event.data() {
                    Some(crossdock_core::EventData::Json(raw)) => {
                        serde_json::from_str(raw.get()).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                let delivery = format!("{}/{}", event.event.source(), event.event.id());
                let Some(input) = input_of(event.event.kind(), &data, &delivery) else {
                    tracing::warn!(
                        seq = event.seq,
                        kind = event.event.kind(),
                        "a saga event without what its saga needs; passed over"
                    );
                    continue;
                };
                let key = saga_key(&input);
                let at = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[at].1.push((event, input));
            }
            let work: Vec<_> = groups
                .into_iter()
                .map(|(_, events)| apply_group(state, events))
                .collect();
            let results: Vec<Result<(), crossdock_store::StoreError>> =
                futures_util::stream::iter(work)
                    .buffer_unordered(SAGAS_AT_ONCE)
                    .collect()
                    .await;
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
            Ok(ProjectionWrites::None)
        })
    }
}

/// How often the deadline runner looks for orders whose waiting is over.
const DEADLINE_POLL_MS: u64 = 1000;
/// Orders handled per look.
const DEADLINE_BATCH: usize = 100;

/// Moves every order and return whose deadline has come (by the clock) on to a visible exception. Returns
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
    let due_returns = state
        .store
        .returns(crossdock_store::OrderQuery {
            due_before: Some(now),
            limit: DEADLINE_BATCH,
            ..crossdock_store::OrderQuery::default()
        })
        .await?;
    for row in &due_returns {
        match crate::returns::advance(state, &row.id, ReturnInput::Tick, &row.id).await {
            Ok(_) => {}
            Err(TakeError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(return_id = row.id, error = %e, "a deadline could not be applied")
            }
        }
    }
    Ok(due.len() + due_returns.len())
}

/// Backordered orders looked at per sweep at most, oldest first.
const BACKORDER_SWEEP_MAX: usize = 1000;
/// Deadline looks between two backorder sweeps when this node appended nothing in between
/// (other nodes' receipts are seen then); after an append, the next look sweeps.
const BACKORDER_SWEEP_EVERY: u32 = 5;

/// Asks again for the stock of every backordered order (up to [`BACKORDER_SWEEP_MAX`], the
/// oldest first, so stock goes to the orders that waited longest) that could now be held: one
/// whose every SKU has at least its quantity available to promise over the channel's locations
/// (through components, for kits), less what orders held earlier in the sweep took. An order
/// that passes is held and sent on as it would have been when it arrived; one that is still
/// short (its lines at different locations, for a channel that does not split) stays
/// backordered and nothing is written. Returns how many orders were asked for again.
pub async fn backorders_once(state: &AppState) -> Result<usize, crossdock_store::StoreError> {
    let rows = state
        .store
        .orders(crossdock_store::OrderQuery {
            status: Some(orders::status_name(Status::Backordered).into()),
            limit: BACKORDER_SWEEP_MAX,
            ..crossdock_store::OrderQuery::default()
        })
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let catalog = state.catalog.get(&state.store).await?;
    let mut waiting = Vec::new();
    for row in &rows {
        match orders::saga_record::<Order>(&row.id, &row.state, "order") {
            Ok((order, _)) => {
                if let Some(spec) = order.spec {
                    waiting.push((row.id.as_str(), spec));
                }
            }
            Err(e) => {
                tracing::warn!(order_id = row.id, error = %e, "a backordered order cannot be read")
            }
        }
    }
    let skus: BTreeSet<Sku> = waiting
        .iter()
        .flat_map(|(_, spec)| spec.lines().iter().flat_map(|l| catalog.stocked(&l.sku)))
        .collect();
    let positions = state.store.positions(skus.into_iter().collect()).await?;
    // What the orders held during this sweep took, so later ones are not asked for in vain.
    let mut promised: BTreeMap<Sku, i64> = BTreeMap::new();
    let mut asked = 0;
    for (id, spec) in waiting {
        let Some(channel) = catalog.snapshot.channels.get(&spec.channel) else {
            continue;
        };
        let mut needed: BTreeMap<&Sku, i64> = BTreeMap::new();
        for line in spec.lines() {
            *needed.entry(&line.sku).or_default() += line.quantity;
        }
        let could = needed.iter().all(|(sku, quantity)| {
            let taken = promised.get(*sku).copied().unwrap_or(0);
            catalog.channel_atp(channel, sku, &positions) - taken >= *quantity
        });
        if !could {
            continue;
        }
        asked += 1;
        match orders::advance(state, id, Input::Restocked, id).await {
            Ok(Some(order)) if order.status != Status::Backordered => {
                for (sku, quantity) in needed {
                    *promised.entry(sku.clone()).or_default() += quantity;
                }
            }
            Ok(_) => {}
            Err(TakeError::Store(e)) => return Err(e),
            Err(e) => tracing::warn!(order_id = id, error = %e, "a backorder could not be retried"),
        }
    }
    Ok(asked)
}

/// The deadline runner: `deadlines_once` every second until shutdown, and `backorders_once`
/// within a second of anything appended to the log here (a receipt, a released reservation), at
/// least every few seconds: stock that arrives goes to the backorders before a channel that
/// shows increases at once sells much of it.
pub async fn deadlines(
    state: std::sync::Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut looks: u32 = 0;
    let mut swept_at_head: Option<i64> = None;
    while !cancel.is_cancelled() {
        if let Err(e) = deadlines_once(&state).await {
            tracing::warn!(error = %e, "cannot look for order deadlines; retrying");
        }
        looks = looks.wrapping_add(1);
        let head = *state.head.borrow();
        if swept_at_head != Some(head) || looks.is_multiple_of(BACKORDER_SWEEP_EVERY) {
            swept_at_head = Some(head);
            if let Err(e) = backorders_once(&state).await {
                tracing::warn!(error = %e, "cannot look at backordered orders; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(DEADLINE_POLL_MS)) => {}
            () = cancel.cancelled() => {}
        }
    }
}
