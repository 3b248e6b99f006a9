//! Operations routes: health, readiness, metrics, consumers, source activity, the inbox, the
//! dead-letter queue and the audit log.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use crossdock_core::Timestamp;
use crossdock_store::{
    ActionRecord, AttemptRecord, AuditQuery, DeadLetterQuery, DropOutcome, InboxQuery, InboxRecord,
    InboxStatus, Projection, ReplayOutcome,
};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::gate::Caller;
use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::query::Query;
use super::{RequestContext, json, path_id};
use crate::app::AppState;
use crate::runtime::inventory::DeadLetterReplay;

const PAGE_LIMIT_MAX: i64 = 1000;
const DROP_REASON_LEN_MAX: usize = 500;

#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok` while the process serves requests.
    status: String,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub(super) async fn healthz() -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
}

#[derive(Serialize, ToSchema)]
pub(super) struct Ready {
    /// `ready`.
    status: String,
    /// `sqlite` or `postgres`.
    store: String,
}

/// Readiness: the store answers and its schema is the one this build expects.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "The store is unreachable or not migrated", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    state
        .store
        .check_ready()
        .await
        .map_err(|e| Problem::new(problem::NOT_READY, e.to_string()).retry_after(1))?;
    Ok(json(
        StatusCode::OK,
        &Ready {
            status: "ready".into(),
            store: state.store.backend_name().into(),
        },
    ))
}

/// Prometheus metrics: ingest counts, append latency, consumer lag, outbox depth, dead letters,
/// deliveries, orders, returns and journal batches by status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let head = state.store.head_seq().await?;
    let consumers = state.store.consumers().await?;
    let outbox = state.store.outbox_counts().await?;
    let statuses = state.store.status_counts().await?;
    let text = state.metrics.render(head, &consumers, &outbox, &statuses);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub(super) struct ProblemPage {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What the problem means and what to do about it.
    description: String,
}

/// Describes one problem type: the `type` URI of every error response leads here.
#[utoipa::path(get, path = "/problems/{slug}", tag = "operations",
    params(("slug" = String, Path, description = "The last segment of a problem's `type`, such as `invalid-event`")),
    responses(
        (status = 200, description = "The problem type", body = ProblemPage),
        (status = 404, description = "No such problem type", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn problem_page(Path(slug): Path<String>) -> Result<Response, Problem> {
    let kind = problem::ALL
        .iter()
        .find(|k| k.slug == slug)
        .ok_or_else(|| Problem::not_found(format!("there is no problem type {slug:?}")))?;
    Ok(json(
        StatusCode::OK,
        &ProblemPage {
            kind: format!("/problems/{}", kind.slug),
            title: kind.title.into(),
            status: kind.status.as_u16(),
            description: kind.description.into(),
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(super) struct ConsumerView {
    name: String,
    /// The last sequence number applied.
    position: i64,
    /// Events in the log not yet applied.
    lag: i64,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ConsumerList {
    /// The highest sequence number in the log.
    head: i64,
    consumers: Vec<ConsumerView>,
}

/// The consumers of the event log, their positions and how far behind they are.
#[utoipa::path(get, path = "/v1/consumers", tag = "operations",
    responses((status = 200, description = "Every consumer", body = ConsumerList)))]
pub(super) async fn consumers(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let head = state.store.head_seq().await?;
    let consumers = state
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
    Ok(json(StatusCode::OK, &ConsumerList { head, consumers }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct SourceView {
    source: String,
    #[serde(rename = "type")]
    kind: String,
    first_seq: i64,
    last_seq: i64,
    first_recorded_at: String,
    last_recorded_at: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SourceList {
    /// The log position the projection has reached.
    as_of_seq: i64,
    sources: Vec<SourceView>,
}

/// Which systems have sent which event types, and when first and last.
#[utoipa::path(get, path = "/v1/sources", tag = "operations",
    responses((status = 200, description = "Source activity", body = SourceList)))]
pub(super) async fn sources(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let name = Projection::SourceActivity.consumer_name();
    let as_of_seq = state
        .store
        .consumers()
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.position);
    let sources = state
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
    Ok(json(StatusCode::OK, &SourceList { as_of_seq, sources }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct InboxView {
    id: i64,
    source: String,
    protocol: String,
    /// `received`, `processed` or `rejected`.
    status: String,
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
            status: m.status.as_str().into(),
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

#[derive(Serialize, ToSchema)]
pub(super) struct InboxList {
    messages: Vec<InboxView>,
}

/// Inbound messages kept raw, newest last; rejected ones carry the reason.
#[utoipa::path(get, path = "/v1/inbox", tag = "operations",
    params(
        ("status" = Option<String>, Query, description = "`received`, `processed` or `rejected`"),
        ("after" = Option<i64>, Query, description = "Only messages with a greater id (paging)"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses((status = 200, description = "A page of messages, without bodies", body = InboxList)))]
pub(super) async fn inbox_list(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(uri.query(), &["status", "after", "limit"])?;
    let status = query
        .one_of("status", &InboxStatus::ALL.map(InboxStatus::as_str))?
        .and_then(InboxStatus::parse);
    let records = state
        .store
        .inbox_list(InboxQuery {
            status,
            after_id: query.int("after", 0, 0, i64::MAX)?,
            limit: query.int("limit", 100, 1, PAGE_LIMIT_MAX)? as usize,
        })
        .await?;
    let messages = records
        .into_iter()
        .map(|r| InboxView::of(r, false))
        .collect();
    Ok(json(StatusCode::OK, &InboxList { messages }))
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

/// One inbound message with its headers and body exactly as received.
#[utoipa::path(get, path = "/v1/inbox/{id}", tag = "operations",
    params(("id" = i64, Path, description = "The inbox message id")),
    responses(
        (status = 200, description = "The message", body = InboxView),
        (status = 404, description = "No such message", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn inbox_get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let record = inbox_record(&state, &id).await?;
    Ok(json(StatusCode::OK, &InboxView::of(record, true)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeadLetterView {
    id: i64,
    target: String,
    status: String,
    idempotency_key: String,
    coalesce_key: Option<String>,
    priority: i32,
    /// The action as it would be delivered.
    #[schema(value_type = Object)]
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

#[derive(Serialize, ToSchema)]
pub(super) struct AttemptView {
    attempt: i64,
    started_at: String,
    finished_at: Option<String>,
    /// `in_flight`, `delivered`, `failed` or `lease_expired`.
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
            status: a.status.as_str().into(),
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

#[derive(Serialize, ToSchema)]
pub(super) struct DeadLetterList {
    dead_letters: Vec<DeadLetterView>,
}

/// Actions that will not be retried automatically, oldest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead letters",
    params(
        ("target" = Option<String>, Query, description = "Only this delivery target"),
        ("after" = Option<i64>, Query, description = "Only actions with a greater id (paging)"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses((status = 200, description = "A page of dead letters", body = DeadLetterList)))]
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
    let dead_letters = records
        .into_iter()
        .map(|a| DeadLetterView::of(a, None))
        .collect();
    Ok(json(StatusCode::OK, &DeadLetterList { dead_letters }))
}

/// One outbox action with the history of its delivery attempts.
#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "dead letters",
    params(("id" = i64, Path, description = "The action id")),
    responses(
        (status = 200, description = "The action and its attempts", body = DeadLetterView),
        (status = 404, description = "No such action", body = ProblemBody, content_type = "application/problem+json"),
    ))]
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

#[derive(Serialize, ToSchema)]
pub(super) struct ActionState {
    id: i64,
    /// `pending` after a replay, `dropped` after a drop.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Sends a dead letter again: back to pending with a fresh attempt budget and the same
/// idempotency key.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/replay", tag = "dead letters",
    params(("id" = i64, Path, description = "The action id")),
    responses(
        (status = 200, description = "Pending again", body = ActionState),
        (status = 404, description = "No such action", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not a dead letter, or superseded by a newer action", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn replay_dead_letter(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = path_id("id", &id)?;
    let outcome =
        crate::runtime::inventory::replay_dead_letter(&state.store, id, state.clock.now()).await?;
    let outcome = match outcome {
        DeadLetterReplay::Store(outcome) => outcome,
        DeadLetterReplay::Refreshed => {
            tracing::info!(
                action_id = id,
                "dead channel batch replaced by its listings' current values"
            );
            state.availability_wake.notify_waiters();
            audit(
                &state,
                &caller,
                &ctx,
                "dead_letter.replay",
                id,
                "ok: refreshed with current values",
                None,
            )
            .await;
            return Ok(json(
                StatusCode::OK,
                &ActionState {
                    id,
                    status: "dropped".into(),
                    reason: Some(crate::runtime::inventory::REFRESHED_REASON.into()),
                },
            ));
        }
    };
    let result = match outcome {
        ReplayOutcome::Replayed => {
            tracing::info!(action_id = id, "dead letter replayed");
            state.outbox_wake.notify_waiters();
            let status = "pending".into();
            Ok(json(
                StatusCode::OK,
                &ActionState {
                    id,
                    status,
                    reason: None,
                },
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
    };
    let outcome = outcome_of(&result);
    audit(
        &state,
        &caller,
        &ctx,
        "dead_letter.replay",
        id,
        &outcome,
        None,
    )
    .await;
    result
}

/// Gives up on a dead letter for good. The reason is kept with it and in the audit log.
#[utoipa::path(delete, path = "/v1/dead-letters/{id}", tag = "dead letters",
    params(
        ("id" = i64, Path, description = "The action id"),
        ("reason" = String, Query, description = "Why it is dropped (1 to 500 characters)"),
    ),
    responses(
        (status = 200, description = "Dropped", body = ActionState),
        (status = 400, description = "No reason given", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such action", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not a dead letter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn drop_dead_letter(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
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
    let outcome = state
        .store
        .drop_dead_letter(id, reason, state.clock.now())
        .await?;
    let result = match outcome {
        DropOutcome::Dropped => {
            tracing::info!(action_id = id, reason, "dead letter dropped");
            let view = ActionState {
                id,
                status: "dropped".into(),
                reason: Some(reason.into()),
            };
            Ok(json(StatusCode::OK, &view))
        }
        DropOutcome::NotFound => Err(Problem::not_found(format!("there is no action {id}"))),
        DropOutcome::NotDead => Err(not_dead(&state, id).await),
    };
    let outcome = outcome_of(&result);
    let detail = serde_json::json!({"reason": reason});
    audit(
        &state,
        &caller,
        &ctx,
        "dead_letter.drop",
        id,
        &outcome,
        Some(detail),
    )
    .await;
    result
}

/// `ok`, or why a request was refused, for the audit log.
pub(super) fn outcome_of(result: &Result<Response, Problem>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(p) => format!("refused: {}", p.kind.slug),
    }
}

/// Records an operational action on an outbox action in the audit log.
async fn audit(
    state: &AppState,
    caller: &Caller,
    ctx: &RequestContext,
    action: &str,
    id: i64,
    outcome: &str,
    detail: Option<serde_json::Value>,
) {
    crate::audit::record(
        &state.store,
        state.clock.now(),
        crate::audit::Action {
            actor: &caller.name,
            action,
            target: &format!("action:{id}"),
            outcome,
            correlation_id: Some(ctx.correlation_id.as_str()),
            detail,
        },
    )
    .await;
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

#[derive(Serialize, ToSchema)]
pub(super) struct AuditView {
    id: i64,
    at: String,
    /// The key name, `cli:<user>` or `system`.
    actor: String,
    /// Such as `key.create`, `dead_letter.replay`, `consumer.reset`, `config.changed`.
    action: String,
    target: String,
    /// `ok`, or why it was refused.
    outcome: String,
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    detail: Option<Box<RawValue>>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuditList {
    entries: Vec<AuditView>,
}

/// The audit log: administrative and operational actions, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "operations",
    params(
        ("actor" = Option<String>, Query, description = "Only this actor"),
        ("action" = Option<String>, Query, description = "Only this action, such as `dead_letter.drop`"),
        ("since" = Option<String>, Query, description = "Only at or after this time (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Only before this time (RFC 3339)"),
        ("after" = Option<i64>, Query, description = "Only entries with a greater id (paging)"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses((status = 200, description = "A page of audit entries", body = AuditList)))]
pub(super) async fn audit_log(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(
        uri.query(),
        &["actor", "action", "since", "until", "after", "limit"],
    )?;
    let time = |name: &str| -> Result<Option<Timestamp>, Problem> {
        query
            .text(name)
            .map(|t| {
                Timestamp::parse_rfc3339(t)
                    .map_err(|why| Problem::parameter(&format!("/query/{name}"), why))
            })
            .transpose()
    };
    let records = state
        .store
        .audit_list(AuditQuery {
            actor: query.text("actor").map(str::to_owned),
            action: query.text("action").map(str::to_owned),
            since: time("since")?,
            until: time("until")?,
            after_id: query.int("after", 0, 0, i64::MAX)?,
            limit: query.int("limit", 100, 1, PAGE_LIMIT_MAX)? as usize,
        })
        .await?;
    let entries = records
        .into_iter()
        .map(|r| AuditView {
            id: r.id,
            at: r.entry.at.to_string(),
            actor: r.entry.actor,
            action: r.entry.action,
            target: r.entry.target,
            outcome: r.entry.outcome,
            correlation_id: r.entry.correlation_id,
            detail: r.entry.detail.and_then(|d| RawValue::from_string(d).ok()),
        })
        .collect();
    Ok(json(StatusCode::OK, &AuditList { entries }))
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
