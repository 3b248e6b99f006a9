//! `POST /v1/orders`, `GET /v1/orders/{id}`: orders taken once, and their record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crossdock_core::order::{Order, Step};
use serde::Serialize;
use utoipa::ToSchema;

use super::catalog::{json_of, refused};
use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::{RequestContext, json};
use crate::app::AppState;
use crate::orders::{self, TakeError, status_name};

#[derive(Serialize, ToSchema)]
pub(super) struct StepView {
    status: String,
    reason: String,
    at: String,
}

impl StepView {
    pub(super) fn new(status: &str, reason: &str, at: crossdock_core::Timestamp) -> StepView {
        StepView {
            status: status.to_owned(),
            reason: reason.to_owned(),
            at: at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrderView {
    id: String,
    channel: Option<String>,
    external_id: Option<String>,
    /// received, backordered, reserved, submitted, confirmed, released, partially_shipped,
    /// shipped, invoiced, closed, cancelled, rejected or exception.
    status: String,
    /// Why it is in that status.
    reason: String,
    /// Until when it waits there before it becomes an exception.
    until: Option<String>,
    /// Where its stock is held.
    location: Option<String>,
    /// The currency of its prices.
    currency: Option<String>,
    #[schema(value_type = Vec<Object>)]
    lines: Vec<serde_json::Value>,
    /// Every status it went through, with why and when.
    timeline: Vec<StepView>,
    /// For an invalid order: every reason. Send the order again, corrected, to resume it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    /// Payments the channel reported.
    #[schema(value_type = Vec<Object>)]
    payments: Vec<crossdock_core::order::Payment>,
    /// What it holds now: `{sku, location, quantity}` (kits as their components).
    #[schema(value_type = Vec<Object>)]
    reservations: Vec<serde_json::Value>,
    /// Every request it made of another system, with its delivery: `{type, target, key, status,
    /// attempts, last_error, next_attempt_at, correlation_id}` (`status: purged` once a
    /// delivered action is past its retention).
    #[schema(value_type = Vec<Object>)]
    actions: Vec<serde_json::Value>,
}

fn view(id: &str, order: &Order, problems: Vec<String>) -> OrderView {
    let spec = order.spec.as_ref();
    OrderView {
        id: id.to_owned(),
        channel: spec.map(|s| s.channel.to_string()),
        external_id: spec.map(|s| s.external_id.clone()),
        status: status_name(order.status).into(),
        reason: order.reason.clone(),
        until: order.until.map(|t| t.to_string()),
        location: order.location.as_ref().map(ToString::to_string),
        currency: spec.and_then(|s| s.currency.clone()),
        lines: spec
            .map(|s| {
                s.lines()
                    .iter()
                    .map(|l| {
                        serde_json::json!({"line": l.line, "sku": l.sku, "quantity": l.quantity,
                            "unit_price": l.unit_price, "location": order.location_of(l.line),
                            "shipped": order.shipped.get(&l.line).copied().unwrap_or(0)})
                    })
                    .collect()
            })
            .unwrap_or_default(),
        timeline: order
            .history
            .iter()
            .map(|Step { status, reason, at }| StepView::new(status_name(*status), reason, *at))
            .collect(),
        problems,
        payments: order.payments.clone(),
        reservations: Vec::new(),
        actions: Vec::new(),
    }
}

impl OrderView {
    /// Names the order by the channel and external id it was sent with, where its content does
    /// not (an invalid order has no content to name it by).
    fn named(mut self, channel: Option<&str>, external_id: Option<&str>) -> Self {
        if self.channel.is_none() {
            self.channel = channel.map(str::to_owned);
        }
        if self.external_id.is_none() {
            self.external_id = external_id.map(str::to_owned);
        }
        self
    }
}

/// The order's reservations and the deliveries of the actions it queued, for its detail view.
async fn detail(
    state: &AppState,
    order: &Order,
    record: &serde_json::Value,
    view: &mut OrderView,
) -> Result<(), Problem> {
    if let Some(spec) = &order.spec {
        let catalog = state.catalog.get(&state.store).await?;
        let skus: Vec<crossdock_core::catalog::Sku> = spec
            .lines()
            .iter()
            .flat_map(|l| {
                crossdock_core::inventory::bill_of_materials(&l.sku, &catalog.snapshot.kits)
                    .into_keys()
            })
            .collect();
        view.reservations = state
            .store
            .reservations(skus)
            .await?
            .into_iter()
            .filter(|r| r.order_id == order.id)
            .map(|r| serde_json::json!({"sku": r.sku, "location": r.location, "quantity": r.quantity}))
            .collect();
    }
    for reference in record["actions"].as_array().into_iter().flatten() {
        let (Some(target), Some(key)) = (reference["target"].as_str(), reference["key"].as_str())
        else {
            continue;
        };
        let shown = match state.store.action_by_key(target, key).await? {
            Some(a) => {
                let kind = serde_json::from_str::<serde_json::Value>(&a.payload)
                    .ok()
                    .and_then(|p| p["type"].as_str().map(str::to_owned));
                serde_json::json!({"type": kind, "target": target, "key": key,
                    "id": a.id, "status": a.status.as_str(), "attempts": a.attempts,
                    "last_error": a.last_error, "next_attempt_at": a.next_attempt_at.to_string(),
                    "correlation_id": a.correlation_id})
            }
            None => serde_json::json!({"target": target, "key": key, "status": "purged"}),
        };
        view.actions.push(shown);
    }
    Ok(())
}

pub(super) fn take_problem(error: TakeError) -> Problem {
    match error {
        e @ (TakeError::Changed { .. } | TakeError::Moved(_)) => {
            Problem::new(problem::CONFLICT, e.to_string())
        }
        TakeError::Store(e) => e.into(),
        e @ TakeError::Corrupt(..) => Problem::new(problem::INTERNAL, e.to_string()),
    }
}

/// Takes an order from a channel: once per `delivery_id` and per channel and `external_id`
/// (sending it again answers 200 with the order as it is). Lines name our `sku` or the channel's
/// `channel_sku`; `ship_to` needs name, address1, city, postal_code and country. An order whose
/// content is wrong (an unlisted SKU, a quantity below 1, mixed currencies, an incomplete
/// ship-to) is kept as an `exception` with every reason and answered 201 all the same; send it
/// again corrected to resume it. A valid order is held at the first of the channel's locations
/// that can ship it whole (or backordered) and its ERP sales order queued for target `erp`.
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body(content = Object, description = "{channel, external_id, delivery_id?, lines: [{sku | channel_sku, quantity, unit_price?, currency?}], ship_to}"),
    responses(
        (status = 201, description = "Taken", body = OrderView),
        (status = 200, description = "Taken before; as it is now", body = OrderView),
        (status = 409, description = "Taken before with other content", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Not an order (members missing or of the wrong type)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn post_order(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = super::events::raw_body(&state, body)?;
    let order = match json_of(&bytes).and_then(|v| orders::parse(&v).map_err(refused)) {
        Ok(order) => order,
        Err(problem) => {
            return Err(keep_refused(
                &state,
                orders::PROTOCOL_ORDER,
                &headers,
                &bytes,
                problem,
                ctx.correlation_id.as_str(),
            )
            .await);
        }
    };
    let (channel, external_id) = (order.channel.clone(), order.external_id.clone());
    let taken = match orders::take(&state, order, ctx.correlation_id.as_str()).await {
        Ok(taken) => taken,
        // Other content under an order id taken before: kept too, for a person to look at.
        Err(e @ TakeError::Changed { .. }) => {
            return Err(keep_refused(
                &state,
                orders::PROTOCOL_ORDER,
                &headers,
                &bytes,
                take_problem(e),
                ctx.correlation_id.as_str(),
            )
            .await);
        }
        Err(e) => return Err(take_problem(e)),
    };
    let status = if taken.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let shown =
        view(&taken.id, &taken.order, taken.reasons).named(Some(&channel), Some(&external_id));
    Ok(json(status, &shown))
}

/// Keeps a refused body raw in the inbox with why (to be seen, and replayed after a fix), and
/// says so in the problem.
pub(super) async fn keep_refused(
    state: &AppState,
    protocol: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    mut problem: Problem,
    correlation_id: &str,
) -> Problem {
    let kept = crate::ingest::keep_rejected(
        state,
        protocol,
        super::events::kept_headers(headers),
        body,
        &problem.detail,
        correlation_id,
    )
    .await;
    if let Some(id) = kept {
        if !problem.detail.ends_with('.') {
            problem.detail.push('.');
        }
        problem
            .detail
            .push_str(&format!(" The request was kept as inbox message {id}."));
    }
    problem
}

/// Marks a replayed inbox message rejected again with the problem's detail, and returns it.
pub(super) async fn still_refused(state: &AppState, id: i64, problem: Problem) -> Problem {
    let marked = state
        .store
        .inbox_mark(
            id,
            crossdock_store::InboxStatus::Rejected,
            Some(problem.detail.clone()),
            state.clock.now(),
        )
        .await;
    match marked {
        Ok(_) => problem,
        Err(e) => e.into(),
    }
}

/// Replays an order kept in the inbox (`POST /v1/inbox/{id}/replay`): read and taken as if sent
/// now; the message is marked processed, or rejected again with why.
pub(super) async fn replay_order(
    state: &AppState,
    id: i64,
    body: &[u8],
    correlation: &str,
) -> Result<Response, Problem> {
    let now = state.clock.now();
    let order = match json_of(body).and_then(|v| orders::parse(&v).map_err(refused)) {
        Ok(order) => order,
        Err(problem) => return Err(still_refused(state, id, problem).await),
    };
    let (channel, external_id) = (order.channel.clone(), order.external_id.clone());
    let taken = orders::take(state, order, correlation)
        .await
        .map_err(take_problem)?;
    state
        .store
        .inbox_mark(id, crossdock_store::InboxStatus::Processed, None, now)
        .await?;
    Ok(json(
        StatusCode::OK,
        &view(&taken.id, &taken.order, taken.reasons).named(Some(&channel), Some(&external_id)),
    ))
}

/// An order: where it is, why, until when, its lines, what it holds, every step it went through
/// and every request it made of another system with its delivery (attempts, last error).
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "crossdock's order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    answer_shown(&state, &id).await
}

fn no_such_order(id: &str) -> Problem {
    Problem::new(problem::NOT_FOUND, format!("there is no order {id:?}"))
}

/// An order as `GET /v1/orders/{id}` shows it (also the answer to a cancel or a resume, so the
/// caller sees what was released and queued): named as it was sent, with the reasons an invalid
/// order was kept for, its reservations and its actions.
async fn shown(state: &AppState, id: &str) -> Result<Option<OrderView>, Problem> {
    let Some(orders::Stored { order, record, .. }) =
        orders::load(state, id).await.map_err(take_problem)?
    else {
        return Ok(None);
    };
    // The reasons an invalid order was kept for, as recorded with it.
    let problems = record["reasons"]
        .as_array()
        .map(|reasons| {
            reasons
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let request = &record["request"];
    let mut shown = view(id, &order, problems)
        .named(request["channel"].as_str(), request["external_id"].as_str());
    detail(state, &order, &record, &mut shown).await?;
    Ok(Some(shown))
}

/// Cancels an order that has not shipped: its stock is released, its ERP order and fulfilment
/// cancelled where they were asked for, and its channel told. An order kept as invalid ends
/// (it leaves the exceptions). After a shipment the order stays as it is (answered 409).
/// `?reason=` says why (kept in its timeline). The answer is the order as `GET` shows it.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(
        ("id" = String, Path, description = "crossdock's order id"),
        ("reason" = Option<String>, Query, description = "Why (default: cancelled through the API)"),
    ),
    responses(
        (status = 200, description = "Cancelled (or already ended)", body = OrderView),
        (status = 404, description = "No such order", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Part of it shipped already", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn cancel_order(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let query = super::query::Query::parse(uri.query(), &["reason"])?;
    let reason = query
        .text("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("cancelled through the API")
        .chars()
        .take(500)
        .collect::<String>();
    let input = crossdock_core::order::Input::Cancelled { reason };
    let Some(order) = orders::advance(&state, &id, input, ctx.correlation_id.as_str())
        .await
        .map_err(take_problem)?
    else {
        return Err(no_such_order(&id));
    };
    if !order.shipments.is_empty() && !order.status.is_terminal() {
        return Err(Problem::new(
            problem::CONFLICT,
            format!(
                "order {id} has shipped {} shipment(s); it cannot be cancelled (return it instead)",
                order.shipments.len()
            ),
        ));
    }
    answer_shown(&state, &id).await
}

/// Answers with the order as it is now (see [`shown`]).
async fn answer_shown(state: &AppState, id: &str) -> Result<Response, Problem> {
    match shown(state, id).await? {
        Some(shown) => Ok(json(StatusCode::OK, &shown)),
        None => Err(no_such_order(id)),
    }
}

/// Resumes an order stopped as an exception (a deadline passed, the channel changed it, a
/// shipment did not match): it goes back to the step it was in — asking again what it waits for
/// — with a new deadline. An order that is not an exception is answered as it is.
#[utoipa::path(post, path = "/v1/orders/{id}/resume", tag = "orders",
    params(("id" = String, Path, description = "crossdock's order id")),
    responses(
        (status = 200, description = "Resumed (or not stopped)", body = OrderView),
        (status = 404, description = "No such order", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn resume_order(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let input = crossdock_core::order::Input::Resume;
    match orders::advance(&state, &id, input, ctx.correlation_id.as_str())
        .await
        .map_err(take_problem)?
    {
        Some(_) => answer_shown(&state, &id).await,
        None => Err(no_such_order(&id)),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrderSummary {
    id: String,
    channel: String,
    external_id: String,
    status: String,
    /// Why it is in that status (for an exception: what stopped it).
    reason: String,
    until: Option<String>,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrderList {
    orders: Vec<OrderSummary>,
}

/// Orders by status and channel, least recently updated first: `?status=exception` lists the
/// ones that need a person, `?status=submitted&older_than=1h` the ones the ERP has not
/// confirmed within an hour.
#[utoipa::path(get, path = "/v1/orders", tag = "orders",
    params(
        ("status" = Option<String>, Query, description = "received, backordered, submitted, released, partially_shipped, shipped, closed, cancelled, rejected, exception, …"),
        ("channel" = Option<String>, Query, description = "Only this channel's orders"),
        ("older_than" = Option<String>, Query, description = "Only orders not updated for this long: 90s, 15m, 4h, 2d"),
        ("older_than_ms" = Option<i64>, Query, description = "The same in milliseconds"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Orders", body = OrderList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_orders(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let query = super::query::Query::parse(
        uri.query(),
        &["status", "channel", "older_than", "older_than_ms", "limit"],
    )?;
    let older_than_ms = query.age_ms()?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let rows = state
        .store
        .orders(crossdock_store::OrderQuery {
            status: query
                .one_of(
                    "status",
                    &crossdock_core::order::Status::ALL.map(status_name),
                )?
                .map(str::to_owned),
            channel: query.text("channel").map(str::to_owned),
            updated_before: (older_than_ms > 0)
                .then(|| state.clock.now().plus_millis(-older_than_ms)),
            due_before: None,
            limit,
        })
        .await?;
    let orders = rows
        .into_iter()
        .map(|r| OrderSummary {
            reason: serde_json::from_str::<serde_json::Value>(&r.state)
                .ok()
                .and_then(|state| state["order"]["reason"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            id: r.id,
            channel: r.channel,
            external_id: r.external_id,
            status: r.status,
            until: r.until.map(|t| t.to_string()),
            updated_at: r.updated_at.to_string(),
        })
        .collect();
    Ok(json(StatusCode::OK, &OrderList { orders }))
}
