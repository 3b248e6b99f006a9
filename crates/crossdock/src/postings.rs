//! Financial posting: each shipped order line and each received return line becomes a posting
//! line once (by a key naming the fact); a run — every `postings.interval_s`, or on demand —
//! gathers the lines in no batch yet into one journal batch per channel, currency and business
//! day, with control totals, and queues `erp.journal.post` for it in the same transaction. The
//! ERP answers with an `erp.journal.posted` event naming the batch and its journal.

use crossdock_core::Timestamp;
use crossdock_core::money::Amount;
use crossdock_core::order::Spec;
use crossdock_store::{NewAction, PostingBatch, PostingLine, StoreError};
use serde_json::json;

use crate::app::AppState;

/// The currency of lines whose order named none (ISO 4217's "no currency").
pub const NO_CURRENCY: &str = "XXX";

/// The posting lines of a shipment: units shipped per order line at the line's price.
pub fn shipment_lines(
    order_id: &str,
    spec: &Spec,
    shipment: &str,
    shipped: &[(u32, i64)],
    day: &str,
) -> Vec<PostingLine> {
    shipped
        .iter()
        .filter_map(|(line, units)| {
            let l = spec.lines().iter().find(|l| l.line == *line)?;
            Some(PostingLine {
                key: format!("shipment/{order_id}/{shipment}/{line}"),
                channel: spec.channel.to_string(),
                currency: spec.currency.clone().unwrap_or_else(|| NO_CURRENCY.into()),
                day: day.to_owned(),
                source: order_id.to_owned(),
                units: *units,
                amount: line_amount(l.unit_price, *units),
            })
        })
        .collect()
}

/// The posting lines of a return: units received back per order line, negative, at the order
/// line's price.
pub fn return_lines(
    return_id: &str,
    order_id: &str,
    spec: &Spec,
    received: &[(u32, i64)],
    day: &str,
) -> Vec<PostingLine> {
    received
        .iter()
        .filter_map(|(line, units)| {
            let l = spec.lines().iter().find(|l| l.line == *line)?;
            Some(PostingLine {
                key: format!("return/{return_id}/{line}"),
                channel: spec.channel.to_string(),
                currency: spec.currency.clone().unwrap_or_else(|| NO_CURRENCY.into()),
                day: day.to_owned(),
                source: order_id.to_owned(),
                units: -units,
                amount: -line_amount(l.unit_price, *units),
            })
        })
        .collect()
}

/// A price times units; a line without a price counts units only. Amounts are bounded when
/// read (13 digits) and quantities by the order limits, so the product fits; saturate anyway.
fn line_amount(price: Option<Amount>, units: i64) -> Amount {
    price.map_or(Amount::ZERO, |p| {
        p.checked_mul(units).unwrap_or_else(|| {
            Amount::from_ten_thousandths(if units < 0 { i64::MIN } else { i64::MAX })
        })
    })
}

/// The business day of `now` under the configuration.
pub fn day(state: &AppState, now: Timestamp) -> String {
    now.day(state.config.postings.day_offset_minutes)
}

/// Gathers what is waiting into journal batches and queues them for `config.target`; returns
/// the batches made. The CLI calls this on the store directly; a running crossdock delivers
/// what it queued.
pub async fn run_on(
    store: &crossdock_store::Store,
    config: &crate::config::PostingsConfig,
    now: Timestamp,
) -> Result<Vec<PostingBatch>, StoreError> {
    let target = config.target.clone();
    let build = Box::new(move |b: &PostingBatch| NewAction {
        target: target.clone(),
        idempotency_key: format!("journal/{}", b.key),
        coalesce_key: None,
        priority: 0,
        payload: json!({
            "type": "erp.journal.post",
            "batch": b.key,
            "channel": b.channel,
            "currency": b.currency,
            "day": b.day,
            "control": {"lines": b.lines, "units": b.units, "amount": b.amount},
        })
        .to_string(),
        not_before: b.created_at,
        correlation_id: Some(format!("posting/{}", b.key)),
        causation_id: None,
    });
    store.postings_run(build, now).await
}

/// A posting run inside a running crossdock: wakes the delivery workers when it queued batches.
pub async fn run(state: &AppState) -> Result<Vec<PostingBatch>, StoreError> {
    let batches = run_on(&state.store, &state.config.postings, state.clock.now()).await?;
    if !batches.is_empty() {
        state.outbox_wake.notify_waiters();
        tracing::info!(batches = batches.len(), "journal batches queued");
    }
    Ok(batches)
}

/// Runs a posting every `postings.interval_s` until shutdown (not at all when it is 0).
pub async fn every(state: std::sync::Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let interval = state.config.postings.interval_s;
    if interval == 0 {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(interval)) => {}
            () = cancel.cancelled() => return,
        }
        if let Err(e) = run(&state).await {
            tracing::warn!(error = %e, "a posting run failed; the next one takes its lines");
        }
    }
}
