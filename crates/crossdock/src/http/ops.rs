//! Operations routes: health, readiness, metrics, consumers, source activity, the inbox and the
//! dead-letter queue.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use crossdock_store::{
    ActionRecord, AttemptRecord, DeadLetterQuery, DropOutcome, InboxQuery, InboxRecord,
    InboxStatus, Projection, ReplayOutcome,
};
use serde::Serialize;
use serde_json::value::RawValue;

use super::problem::{self, Problem};
use super::query::Query;
use super::{json, path_id};
use crate::app::AppState;

const PAGE_LIMIT_MAX: i64 = 1000;
const DROP_REASON_LEN_MAX: usize = 500;

pub(super) async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    state
        .store
        .check_ready()
        .await
        .map_err(|e| Problem::new(problem::NOT_READY, e.to_string()).retry_after(1))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready", "store": state.store.backend_name()}),
    ))
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let head = state.store.head_seq().await?;
    let consumers = state.store.consumers().await?;
    let outbox = state.store.outbox_counts().await?;
    let text = state.metrics.render(head, &consumers, &outbox);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub(super) async fn problem_page(Path(slug): Path<String>) -> Result<Response, Problem> {
    let kind = problem::ALL
        .iter()
        .find(|k| k.slug == slug)
        .ok_or_else(|| Problem::not_found(format!("there is no problem type {slug:?}")))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "type": format!("/problems/{}", kind.slug),
            "title": kind.title,
            "status": kind.status.as_u16(),
            "description": kind.description,
        }),
    ))
}

#[derive(Serialize)]
struct ConsumerView {
    name: String,
    position: i64,
    lag: i64,
    updated_at: String,
}

pub(super) async fn consumers(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let head = state.store.head_seq().await?;
    let consumers: Vec<ConsumerView> = state
        .store
        .consumers()
        .await?
        .into_iter()
        .map(|c| ConsumerView {
            lag: (head - c.position).max(0),
            name: c.name,
            position: c.position,
            updated_at: c.updated_at.to_string(),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"head": head, "consumers": consumers}),
    ))
}

pub(super) async fn sources(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    #[derive(Serialize)]
    struct SourceView {
        source: String,
        #[serde(rename = "type")]
        kind: String,
        first_seq: i64,
        last_seq: i64,
        first_recorded_at: String,
        last_recorded_at: String,
    }
    let name = Projection::SourceActivity.consumer_name();
    let position = state
        .store
        .consumers()
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.position);
    let sources: Vec<SourceView> = state
        .store
        .source_activity()
        .await?
        .into_iter()
        .map(|((source, kind), e)| SourceView {
            source,
            kind,
            first_seq: e.first_seq,
            last_seq: e.last_seq,
            first_recorded_at: e.first_recorded_at.to_string(),
            last_recorded_at: e.last_recorded_at.to_string(),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"as_of_seq": position, "sources": sources}),
    ))
}

#[derive(Serialize)]
struct InboxView {
    id: i64,
    source: String,
    protocol: String,
    status: &'static str,
    received_at: String,
    processed_at: Option<String>,
    error: Option<String>,
    attempts: i64,
    size_bytes: usize,
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<(String, String)>>,
    /// The body as text when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// The body in base64 when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl InboxView {
    fn of(r: InboxRecord, full: bool) -> Self {
        let m = r.message;
        let (body, body_base64) = if full {
            match String::from_utf8(m.body.clone()) {
                Ok(text) => (Some(text), None),
                Err(_) => (None, Some(base64(&m.body))),
            }
        } else {
            (None, None)
        };
        InboxView {
            id: r.id,
            source: m.source,
            protocol: m.protocol,
            status: m.status.as_str(),
            received_at: m.received_at.to_string(),
            processed_at: r.processed_at.map(|t| t.to_string()),
            error: m.error,
            attempts: r.attempts,
            size_bytes: m.body.len(),
            correlation_id: m.correlation_id,
            headers: full.then_some(m.headers),
            body,
            body_base64,
        }
    }
}

pub(super) async fn inbox_list(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(uri.query(), &["status", "after", "limit"])?;
    let status = match query.text("status") {
        None => None,
        Some(text) => Some(InboxStatus::parse(text).ok_or_else(|| {
            Problem::parameter(
                "/query/status",
                "must be one of received, processed, rejected",
            )
        })?),
    };
    let after_id = query.int("after", 0, 0, i64::MAX)?;
    let limit = query.int("limit", 100, 1, PAGE_LIMIT_MAX)? as usize;
    let records = state
        .store
        .inbox_list(InboxQuery {
            status,
            after_id,
            limit,
        })
        .await?;
    let messages: Vec<InboxView> = records
        .into_iter()
        .map(|r| InboxView::of(r, false))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"messages": messages}),
    ))
}

/// The inbox message a path names, or the problem that says why there is none.
pub(super) async fn inbox_record(state: &AppState, id: &str) -> Result<InboxRecord, Problem> {
    let id = path_id("id", id)?;
    state
        .store
        .inbox_get(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no inbox message {id}")))
}

pub(super) async fn inbox_get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = inbox_record(&state, &id).await?;
    Ok(json(StatusCode::OK, &InboxView::of(record, true)))
}

#[derive(Serialize)]
struct DeadLetterView {
    id: i64,
    target: String,
    status: &'static str,
    idempotency_key: String,
    coalesce_key: Option<String>,
    priority: i32,
    payload: Box<RawValue>,
    attempts: i64,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    superseded_by: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_history: Option<Vec<AttemptView>>,
}

#[derive(Serialize)]
struct AttemptView {
    attempt: i64,
    started_at: String,
    finished_at: Option<String>,
    outcome: String,
    error: Option<String>,
}

impl DeadLetterView {
    fn of(a: ActionRecord, history: Option<Vec<AttemptRecord>>) -> Self {
        // Payloads are JSON written by crossdock; one that is not is shown as a string.
        let payload = RawValue::from_string(a.payload.clone()).unwrap_or_else(|_| {
            serde_json::value::to_raw_value(&a.payload)
                .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
        });
        DeadLetterView {
            id: a.id,
            target: a.target,
            status: a.status.as_str(),
            idempotency_key: a.idempotency_key,
            coalesce_key: a.coalesce_key,
            priority: a.priority,
            payload,
            attempts: a.attempts,
            last_error: a.last_error,
            created_at: a.created_at.to_string(),
            updated_at: a.updated_at.to_string(),
            correlation_id: a.correlation_id,
            causation_id: a.causation_id,
            superseded_by: a.superseded_by,
            drop_reason: a.drop_reason,
            attempt_history: history.map(|h| {
                h.into_iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        started_at: a.started_at.to_string(),
                        finished_at: a.finished_at.map(|t| t.to_string()),
                        outcome: a.outcome,
                        error: a.error,
                    })
                    .collect()
            }),
        }
    }
}

pub(super) async fn dead_letters(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(uri.query(), &["target", "after", "limit"])?;
    let records = state
        .store
        .dead_letters(DeadLetterQuery {
            target: query.text("target").map(str::to_owned),
            after_id: query.int("after", 0, 0, i64::MAX)?,
            limit: query.int("limit", 100, 1, PAGE_LIMIT_MAX)? as usize,
        })
        .await?;
    let letters: Vec<DeadLetterView> = records
        .into_iter()
        .map(|a| DeadLetterView::of(a, None))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"dead_letters": letters}),
    ))
}

pub(super) async fn dead_letter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = path_id("id", &id)?;
    let action = state
        .store
        .action(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no action {id}")))?;
    let history = state.store.attempts(id).await?;
    Ok(json(
        StatusCode::OK,
        &DeadLetterView::of(action, Some(history)),
    ))
}

pub(super) async fn replay_dead_letter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = path_id("id", &id)?;
    match state
        .store
        .replay_dead_letter(id, state.clock.now())
        .await?
    {
        ReplayOutcome::Replayed => {
            tracing::info!(action_id = id, "dead letter replayed");
            state.outbox_wake.notify_waiters();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"id": id, "status": "pending"}),
            ))
        }
        ReplayOutcome::Superseded { by } => Err(Problem::new(
            problem::CONFLICT,
            format!(
                "action {id} was superseded by the newer action {by} with the same coalescing key; \
                 replaying it would send stale data, so it was marked superseded"
            ),
        )),
        ReplayOutcome::NotFound => Err(Problem::not_found(format!("there is no action {id}"))),
        ReplayOutcome::NotDead => Err(not_dead(&state, id).await),
    }
}

pub(super) async fn drop_dead_letter(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Problem> {
    let id = path_id("id", &id)?;
    let query = Query::parse(uri.query(), &["reason"])?;
    let reason = query.text("reason").map(str::trim).unwrap_or("");
    if reason.is_empty() || reason.chars().count() > DROP_REASON_LEN_MAX {
        return Err(Problem::parameter(
            "/query/reason",
            format!(
                "is required: say why the action is dropped (1 to {DROP_REASON_LEN_MAX} characters)"
            ),
        ));
    }
    match state
        .store
        .drop_dead_letter(id, reason, state.clock.now())
        .await?
    {
        DropOutcome::Dropped => {
            tracing::info!(action_id = id, reason, "dead letter dropped");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"id": id, "status": "dropped", "reason": reason}),
            ))
        }
        DropOutcome::NotFound => Err(Problem::not_found(format!("there is no action {id}"))),
        DropOutcome::NotDead => Err(not_dead(&state, id).await),
    }
}

async fn not_dead(state: &AppState, id: i64) -> Problem {
    let status = match state.store.action(id).await {
        Ok(Some(a)) => a.status.as_str(),
        _ => "unknown",
    };
    Problem::new(
        problem::CONFLICT,
        format!("action {id} is {status}, not in the dead-letter queue"),
    )
}

/// Standard base64 with padding (RFC 4648), for showing binary bodies in JSON.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected);
        }
    }
}
