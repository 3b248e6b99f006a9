//! `POST /v1/returns`, `GET /v1/returns/{id}`, `GET /v1/returns`: RMAs for shipped lines and
//! their sagas. `GET /v1/postings`, `GET /v1/postings/{key}`, `POST /v1/postings/run`: the
//! journal batches posted to the ERP.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crossdock_core::returns::{Return, ReturnStep};
use crossdock_store::PostingBatch;
use serde::Serialize;
use utoipa::ToSchema;

use super::catalog::{json_of, refused};
use super::json;
use super::openapi::ProblemBody;
use super::orders::{StepView, take_problem};
use super::problem::{self, Problem};
use crate::app::AppState;
use crate::returns::{self, ReturnError, status_name};

#[derive(Serialize, ToSchema)]
pub(super) struct ReturnView {
    id: String,
    order_id: Option<String>,
    /// authorized, received, credited, closed or exception.
    status: String,
    reason: String,
    until: Option<String>,
    /// Per line: units authorized, received and restocked.
    #[schema(value_type = Vec<Object>)]
    lines: Vec<serde_json::Value>,
    receipts: Vec<String>,
    credit_memo: Option<String>,
    timeline: Vec<StepView>,
}

fn view(r: &Return) -> ReturnView {
    ReturnView {
        id: r.id.clone(),
        order_id: r.order_id.clone(),
        status: status_name(r.status).into(),
        reason: r.reason.clone(),
        until: r.until.map(|t| t.to_string()),
        lines: r
            .lines
            .iter()
            .map(|l| {
                let (received, restocked) = r.received.get(&l.line).copied().unwrap_or((0, 0));
                serde_json::json!({"line": l.line, "sku": l.sku, "authorized": l.quantity,
                    "received": received, "restocked": restocked})
            })
            .collect(),
        receipts: r.receipts.clone(),
        credit_memo: r.credit_memo.clone(),
        timeline: r
            .history
            .iter()
            .map(|ReturnStep { status, reason, at }| {
                StepView::new(status_name(*status), reason, *at)
            })
            .collect(),
    }
}

fn return_problem(error: ReturnError) -> Problem {
    match error {
        e @ ReturnError::UnknownOrder(_) => Problem::new(problem::NOT_FOUND, e.to_string()),
        e @ ReturnError::Invalid(_) => Problem::new(problem::RETURN_NOT_ALLOWED, e.to_string()),
        e @ ReturnError::Changed { .. } => Problem::new(problem::CONFLICT, e.to_string()),
        ReturnError::Take(e) => take_problem(e),
    }
}

/// Authorizes a return (an RMA) for shipped lines of an order, once per channel and `rma`
/// number (sending it again answers 200 with the return as it is). Each line names the order's
/// line number and at most the units shipped of it. The goods are then reported by a
/// `return.received` event (`{return_id, receipt, location?, lines: [{line, quantity,
/// disposition: restock | scrap}]}`): restocked units go back on hand, the credit is recorded for
/// posting and `erp.credit_memo.create` is queued for target `erp`; `erp.credit_memo.created`
/// (`{return_id, credit_memo}`) closes it.
#[utoipa::path(post, path = "/v1/returns", tag = "orders",
    request_body(content = Object, description = "{order_id, rma, delivery_id?, lines: [{line, quantity}]}"),
    responses(
        (status = 201, description = "Authorized", body = ReturnView),
        (status = 200, description = "Authorized before; as it is now", body = ReturnView),
        (status = 404, description = "No such order", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The RMA was authorized before with other content", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Not an RMA, or lines the order did not ship", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn post_return(
    State(state): State<Arc<AppState>>,
    axum::extract::Extension(ctx): axum::extract::Extension<super::RequestContext>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = super::events::raw_body(&state, body)?;
    let input = match json_of(&bytes).and_then(|v| returns::parse(&v).map_err(refused)) {
        Ok(input) => input,
        Err(problem) => {
            return Err(super::orders::keep_refused(
                &state,
                returns::PROTOCOL_RETURN,
                &headers,
                &bytes,
                problem,
                ctx.correlation_id.as_str(),
            )
            .await);
        }
    };
    let done = returns::authorize(&state, input)
        .await
        .map_err(return_problem)?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &view(&done.ret)))
}

/// Replays an RMA kept in the inbox: read and authorized as if sent now.
pub(super) async fn replay_return(
    state: &AppState,
    id: i64,
    body: &[u8],
) -> Result<Response, Problem> {
    let input = match json_of(body).and_then(|v| returns::parse(&v).map_err(refused)) {
        Ok(input) => input,
        Err(problem) => return Err(super::orders::still_refused(state, id, problem).await),
    };
    let done = returns::authorize(state, input)
        .await
        .map_err(return_problem)?;
    state
        .store
        .inbox_mark(
            id,
            crossdock_store::InboxStatus::Processed,
            None,
            state.clock.now(),
        )
        .await?;
    Ok(json(StatusCode::OK, &view(&done.ret)))
}

/// A return: where it is, why, its lines and every step it went through.
#[utoipa::path(get, path = "/v1/returns/{id}", tag = "orders",
    params(("id" = String, Path, description = "crossdock's return id")),
    responses(
        (status = 200, description = "The return", body = ReturnView),
        (status = 404, description = "No such return", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_return(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    match returns::load(&state, &id).await.map_err(take_problem)? {
        Some(stored) => Ok(json(StatusCode::OK, &view(&stored.ret))),
        None => Err(Problem::new(
            problem::NOT_FOUND,
            format!("there is no return {id:?}"),
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ReturnSummary {
    id: String,
    channel: String,
    rma: String,
    status: String,
    until: Option<String>,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ReturnList {
    returns: Vec<ReturnSummary>,
}

/// Returns by status and channel, least recently updated first (`?status=exception`: the ones
/// that need a person).
#[utoipa::path(get, path = "/v1/returns", tag = "orders",
    params(
        ("status" = Option<String>, Query, description = "authorized, received, closed, exception"),
        ("channel" = Option<String>, Query, description = "Only this channel's returns"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Returns", body = ReturnList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_returns(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let query = super::query::Query::parse(uri.query(), &["status", "channel", "limit"])?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let rows = state
        .store
        .returns(crossdock_store::OrderQuery {
            status: query
                .one_of(
                    "status",
                    &crossdock_core::returns::ReturnStatus::ALL.map(status_name),
                )?
                .map(str::to_owned),
            channel: query.text("channel").map(str::to_owned),
            limit,
            ..crossdock_store::OrderQuery::default()
        })
        .await?;
    let returns = rows
        .into_iter()
        .map(|r| ReturnSummary {
            id: r.id,
            channel: r.channel,
            rma: r.external_id,
            status: r.status,
            until: r.until.map(|t| t.to_string()),
            updated_at: r.updated_at.to_string(),
        })
        .collect();
    Ok(json(StatusCode::OK, &ReturnList { returns }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct BatchView {
    /// `<day>.<channel>.<currency>.<n>`: also the ERP's idempotency key (`journal/<key>`).
    key: String,
    channel: String,
    currency: String,
    /// The business day, `YYYY-MM-DD`.
    day: String,
    /// Control totals: lines, units (shipped minus returned) and amount (a decimal string).
    lines: i64,
    units: i64,
    amount: String,
    /// queued or posted.
    status: String,
    journal: Option<String>,
    /// The outbox action delivering it (see `/v1/dead-letters` if it failed for good).
    action_id: Option<i64>,
    created_at: String,
    updated_at: String,
}

fn batch_view(b: PostingBatch) -> BatchView {
    BatchView {
        key: b.key,
        channel: b.channel,
        currency: b.currency,
        day: b.day,
        lines: b.lines,
        units: b.units,
        amount: b.amount.to_string(),
        status: b.status,
        journal: b.journal,
        action_id: b.action_id,
        created_at: b.created_at.to_string(),
        updated_at: b.updated_at.to_string(),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct BatchList {
    batches: Vec<BatchView>,
}

/// Journal batches, newest first: `?status=queued` lists those the ERP has not confirmed.
#[utoipa::path(get, path = "/v1/postings", tag = "orders",
    params(
        ("status" = Option<String>, Query, description = "queued or posted"),
        ("channel" = Option<String>, Query, description = "Only this channel's batches"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Batches", body = BatchList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_postings(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    let query = super::query::Query::parse(uri.query(), &["status", "channel", "limit"])?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let batches = state
        .store
        .postings(crossdock_store::PostingQuery {
            status: query
                .one_of("status", &["queued", "posted"])?
                .map(str::to_owned),
            channel: query.text("channel").map(str::to_owned),
            limit,
        })
        .await?;
    Ok(json(
        StatusCode::OK,
        &BatchList {
            batches: batches.into_iter().map(batch_view).collect(),
        },
    ))
}

/// One journal batch with its lines (each shipped or returned line, by key, with units and
/// amount).
#[utoipa::path(get, path = "/v1/postings/{key}", tag = "orders",
    params(("key" = String, Path, description = "The batch key")),
    responses(
        (status = 200, description = "The batch and its lines", body = Object),
        (status = 404, description = "No such batch", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_posting(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let Some(batch) = state.store.posting_batch(&key).await? else {
        return Err(Problem::new(
            problem::NOT_FOUND,
            format!("there is no journal batch {key:?}"),
        ));
    };
    let lines: Vec<_> = state
        .store
        .posting_lines(&key)
        .await?
        .into_iter()
        .map(|l| {
            serde_json::json!({"key": l.key, "source": l.source, "units": l.units,
                "amount": l.amount})
        })
        .collect();
    let mut body = serde_json::to_value(batch_view(batch)).unwrap_or_default();
    body["posting_lines"] = serde_json::Value::Array(lines);
    Ok(json(StatusCode::OK, &body))
}

/// Gathers every line not yet posted into journal batches now (as the `postings.interval_s`
/// timer does) and queues their `erp.journal.post` actions; answers the batches made (none when
/// there was nothing new: a line is never posted twice).
#[utoipa::path(post, path = "/v1/postings/run", tag = "orders",
    responses(
        (status = 200, description = "The batches made by this run", body = BatchList),
    ))]
pub(super) async fn run_postings(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let batches = crate::postings::run(&state).await?;
    Ok(json(
        StatusCode::OK,
        &BatchList {
            batches: batches.into_iter().map(batch_view).collect(),
        },
    ))
}
