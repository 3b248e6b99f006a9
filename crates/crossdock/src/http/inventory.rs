//! The inventory routes: the stock of an item, the explanation of a channel's number, and hub
//! reservations (hold all of an order's lines or none; release them).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use crossdock_core::FieldError;
use crossdock_core::catalog::{ChannelId, LocationId, Sku};
use crossdock_core::json::{Fields, QUANTITY_ABS_MAX};
use crossdock_store::{ReservationLine, ReserveOutcome};
use serde::Serialize;
use utoipa::ToSchema;

use super::catalog::{body_json, parse_path, refused};
use super::gate::Caller;
use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::query::Query;
use super::{RequestContext, json};
use crate::app::AppState;
use crate::explain::{self, ExplainError, Explanation, InventoryView};
use crate::runtime::inventory::{self as engine, HoldError, HoldLine};

/// Lines in one reservation at most.
pub const RESERVATION_LINES_MAX: usize = 1_000;

impl From<ExplainError> for Problem {
    fn from(e: ExplainError) -> Self {
        match e {
            ExplainError::UnknownItem(_) | ExplainError::UnknownChannel(_) => {
                Problem::not_found(e.to_string())
            }
            ExplainError::Store(e) => e.into(),
        }
    }
}

impl From<HoldError> for Problem {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::Invalid(errors) => refused(errors),
            HoldError::Store(e) => e.into(),
        }
    }
}

/// The stock of an item: per location on hand, allocated, reserved and available to promise;
/// per channel listing what crossdock computed, what the channel last acknowledged, and whether
/// an update is on its way. For a kit, the locations show how many kits their components make.
#[utoipa::path(get, path = "/v1/inventory/{sku}", tag = "inventory",
    params(("sku" = String, Path, description = "Our SKU")),
    responses(
        (status = 200, description = "The item's stock", body = InventoryView),
        (status = 400, description = "Malformed SKU", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_inventory(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sku): Path<String>,
) -> Result<Response, Problem> {
    let sku = parse_path("sku", &sku, Sku::parse)?;
    let catalog = state.catalog.get(&state.store).await?;
    let view = explain::inventory(&state.store, &catalog, &sku, |c| {
        caller.sees_channel(c.as_str())
    })
    .await?;
    Ok(json(StatusCode::OK, &view))
}

/// How the number a channel may show for an item comes about: the channel's locations, for each
/// the latest count and every movement after it (with the events they came from), the
/// warehouse's allocation and the hub's reservations by order, then each policy step. The parts
/// add up to the number. `format=text` (or `Accept: text/plain`) gives it as readable text.
#[utoipa::path(get, path = "/v1/inventory/{sku}/explain", tag = "inventory",
    params(
        ("sku" = String, Path, description = "Our SKU"),
        ("channel" = String, Query, description = "The channel whose number to explain"),
        ("format" = Option<String>, Query, description = "`json` (default) or `text`"),
    ),
    responses(
        (status = 200, description = "The derivation", body = Explanation),
        (status = 400, description = "Malformed SKU or parameter", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such item or channel", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn explain_inventory(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Problem> {
    let sku = parse_path("sku", &sku, Sku::parse)?;
    let query = Query::parse(uri.query(), &["channel", "format"])?;
    let channel = query.text("channel").ok_or_else(|| {
        Problem::parameter(
            "/query/channel",
            "is required: the channel whose number to explain",
        )
    })?;
    let channel =
        ChannelId::parse(channel).map_err(|why| Problem::parameter("/query/channel", why))?;
    if !caller.sees_channel(channel.as_str()) {
        return Err(Problem::not_found(format!("there is no channel {channel}")));
    }
    let text = match query.text("format") {
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain")),
        Some("json") => false,
        Some("text") => true,
        Some(_) => return Err(Problem::parameter("/query/format", "is `json` or `text`")),
    };
    let catalog = state.catalog.get(&state.store).await?;
    let explanation = explain::explain(&state.store, &catalog, &sku, &channel).await?;
    if text {
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            explanation.to_text(),
        )
            .into_response())
    } else {
        Ok(json(StatusCode::OK, &explanation))
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct HeldLine {
    sku: String,
    location: String,
    quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ReservationReply {
    order_id: String,
    /// `reserved`, `already_reserved` or `released`.
    status: &'static str,
    /// What the order holds (or held, once released), by stocked item: kits appear as their
    /// components.
    lines: Vec<HeldLine>,
}

fn held(lines: &[ReservationLine]) -> Vec<HeldLine> {
    lines
        .iter()
        .map(|l| HeldLine {
            sku: l.sku.to_string(),
            location: l.location.to_string(),
            quantity: l.quantity,
        })
        .collect()
}

fn parse_reservation(value: &serde_json::Value) -> Result<(String, Vec<HoldLine>), Problem> {
    let mut errors = Vec::new();
    let mut f = Fields::new(value, "", &mut errors);
    let order_id = f.string("order_id", true, engine::ORDER_ID_LEN_MAX);
    let lines = f.array("lines", true, RESERVATION_LINES_MAX, |line, at, errors| {
        let mut f = Fields::new(line, at, errors);
        let sku = f.string("sku", true, 128);
        let location = f.string("location", true, 64);
        let quantity = f.int("quantity", true, 1, QUANTITY_ABS_MAX);
        f.finish();
        let sku = sku.and_then(|s| {
            Sku::parse(&s)
                .map_err(|why| errors.push(FieldError::new(format!("{at}/sku"), why)))
                .ok()
        });
        let location = location.and_then(|l| {
            LocationId::parse(&l)
                .map_err(|why| errors.push(FieldError::new(format!("{at}/location"), why)))
                .ok()
        });
        Some(HoldLine {
            sku: sku?,
            location: location?,
            quantity: quantity?,
        })
    });
    f.finish();
    if lines.as_ref().is_some_and(Vec::is_empty) {
        errors.push(FieldError::new(
            "/lines",
            "a reservation needs at least one line",
        ));
    }
    match (order_id, lines) {
        (Some(order_id), Some(lines)) if errors.is_empty() => Ok((order_id, lines)),
        _ => Err(refused(errors)),
    }
}

/// Holds stock for an order: every line or none, never beyond what is available to promise at
/// each location. A kit holds its components (lines sharing a component add up). Holding again
/// for an order that already holds stock changes nothing and says so.
#[utoipa::path(post, path = "/v1/reservations", tag = "inventory",
    request_body(content = Object, description = "`{\"order_id\", \"lines\": [{\"sku\", \"location\", \"quantity\"}]}`"),
    responses(
        (status = 201, description = "Held", body = ReservationReply),
        (status = 200, description = "The order already held stock; nothing changed", body = ReservationReply),
        (status = 409, description = "Not enough stock; nothing held. `errors` names each short line", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body, unknown item or location", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn post_reservation(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (order_id, lines) = parse_reservation(&body_json(body)?)?;
    match engine::reserve(&state, &order_id, lines, Some(ctx.correlation_id.as_str())).await? {
        ReserveOutcome::Reserved { lines, .. } => Ok(json(
            StatusCode::CREATED,
            &ReservationReply {
                order_id,
                status: "reserved",
                lines: held(&lines),
            },
        )),
        ReserveOutcome::AlreadyReserved(lines) => Ok(json(
            StatusCode::OK,
            &ReservationReply {
                order_id,
                status: "already_reserved",
                lines: held(&lines),
            },
        )),
        ReserveOutcome::Short(short) => {
            let errors = short
                .iter()
                .map(|s| {
                    FieldError::new(
                        "/lines",
                        format!(
                            "{} at {}: needs {}, {} available to promise",
                            s.sku, s.location, s.needed, s.atp
                        ),
                    )
                })
                .collect::<Vec<_>>();
            let detail = errors.first().map(|e| e.detail.clone()).unwrap_or_default();
            Err(Problem::new(problem::INSUFFICIENT_STOCK, detail).with_errors(errors))
        }
    }
}

/// Releases everything an order holds (cancelled, shipped, or handed over to the warehouse).
#[utoipa::path(delete, path = "/v1/reservations/{order_id}", tag = "inventory",
    params(("order_id" = String, Path, description = "The order whose stock to release")),
    responses(
        (status = 200, description = "Released", body = ReservationReply),
        (status = 404, description = "The order holds nothing", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn delete_reservation(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(order_id): Path<String>,
) -> Result<Response, Problem> {
    let released = engine::release(&state, &order_id, Some(ctx.correlation_id.as_str())).await?;
    if released.is_empty() {
        return Err(Problem::not_found(format!(
            "order {order_id} holds no stock"
        )));
    }
    Ok(json(
        StatusCode::OK,
        &ReservationReply {
            order_id,
            status: "released",
            lines: held(&released),
        },
    ))
}

/// Divergences on one page at most.
const DIVERGENCES_PAGE_MAX: i64 = 1_000;

#[derive(Serialize, ToSchema)]
pub(super) struct DivergenceView {
    /// The log sequence of the event that was kept but not applied.
    seq: i64,
    sku: String,
    location: String,
    /// The system that sent it.
    source: String,
    /// Why it was not applied.
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DivergenceList {
    divergences: Vec<DivergenceView>,
}

/// Inventory events kept in the log but not applied — sent by a system that is not the authority
/// for the location's stock, or naming a location that is gone — oldest first. Each names the
/// event by its log sequence (`GET /v1/events?after=SEQ-1&limit=1`).
#[utoipa::path(get, path = "/v1/divergences", tag = "inventory",
    params(
        ("after" = Option<i64>, Query, description = "Only divergences of later events (paging by seq)"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "A page of divergences", body = DivergenceList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_divergences(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(uri.query(), &["after", "limit"])?;
    let after = query.int("after", 0, 0, i64::MAX)?;
    let limit = query.int("limit", 100, 1, DIVERGENCES_PAGE_MAX)? as usize;
    let divergences = state
        .store
        .divergences(after, limit)
        .await?
        .into_iter()
        .map(|d| DivergenceView {
            seq: d.seq,
            sku: d.sku.to_string(),
            location: d.location.to_string(),
            source: d.source,
            reason: d.reason,
        })
        .collect();
    Ok(json(StatusCode::OK, &DivergenceList { divergences }))
}
