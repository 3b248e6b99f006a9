//! `POST /v1/events` (append), `GET /v1/events` (the public feed) and inbox replay.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use crossdock_core::{ParseRejection, StoredEvent};
use crossdock_store::{AppendOutcome, IdempotentOutcome, InboxStatus, StoredResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::idempotency::IdempotencyContext;
use super::openapi::{CloudEvent, EventsBody, ProblemBody};
use super::problem::{self, Problem};
use super::query::Query;
use super::{RequestContext, json};
use crate::app::AppState;
use crate::ingest::{self, IngestError, PROTOCOL_HTTP_CLOUDEVENTS};

/// Media types accepted on `POST /v1/events`.
const EVENT_MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
];
/// Request headers kept with a body in the inbox.
const KEPT_HEADERS: [&str; 4] = [
    "content-type",
    "user-agent",
    "traceparent",
    "x-correlation-id",
];

/// The headers worth keeping with a body in the inbox, as `(name, value)` pairs.
pub(super) fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

/// A raw request body, or the problem with it (too large, or unreadable).
pub(super) fn raw_body(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Problem> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                problem::BODY_TOO_LARGE,
                format!(
                    "the body is larger than {} bytes (server.body_bytes_max)",
                    state.config.server.body_bytes_max
                ),
            )
        } else {
            Problem::new(problem::BAD_REQUEST, e.body_text())
        }
    })
}

#[derive(Serialize, ToSchema)]
pub(super) struct AppendReply {
    /// Events newly recorded.
    accepted: usize,
    /// Events already in the log (same `source` and `id`); nothing changed for them.
    duplicates: usize,
    /// The lowest sequence number given to an accepted event.
    first_seq: Option<i64>,
    /// The highest sequence number given to an accepted event.
    last_seq: Option<i64>,
}

impl From<&AppendOutcome> for AppendReply {
    fn from(o: &AppendOutcome) -> Self {
        let range = o.seq_range();
        AppendReply {
            accepted: o.appended(),
            duplicates: o.duplicates(),
            first_seq: range.map(|r| r.0),
            last_seq: range.map(|r| r.1),
        }
    }
}

/// Appends one CloudEvent, or a JSON array of them, to the event log. An event whose `source`
/// and `id` are already in the log is counted as a duplicate and changes nothing, so a request
/// may always be retried. All or nothing: one invalid event rejects the request, and its body is
/// kept in the inbox. Answered only once the events are durable.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = EventsBody, description = "A CloudEvent 1.0 (structured JSON) or an array of them",
        content_type = "application/json"),
    responses(
        (status = 202, description = "Durably recorded (or already there)", body = AppendReply),
        (status = 400, description = "Not JSON, or not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body or batch over its limit", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not a JSON media type", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid CloudEvent attributes; `errors` points at each", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn post_events(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    idempotency: Option<Extension<IdempotencyContext>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = raw_body(&state, body)?;
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        let media = value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !EVENT_MEDIA_TYPES.contains(&media.as_str()) {
            return Err(Problem::new(
                problem::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {:?} is not accepted here; send {}",
                    super::truncate(&media, 80),
                    EVENT_MEDIA_TYPES.join(" or ")
                ),
            ));
        }
    }
    let correlation = ctx.correlation_id.as_str();
    // With an idempotency claim, the reply is kept in the same transaction as the events.
    let idempotent = || {
        idempotency.and_then(|Extension(context)| {
            context.take(Box::new(|outcome: &AppendOutcome| StoredResponse {
                status: StatusCode::ACCEPTED.as_u16(),
                content_type: Some("application/json".into()),
                body: serde_json::to_vec(&AppendReply::from(outcome)).unwrap_or_default(),
            }))
        })
    };
    match ingest::accept(
        &state,
        PROTOCOL_HTTP_CLOUDEVENTS,
        &body,
        correlation,
        idempotent,
    )
    .await
    {
        Ok(IdempotentOutcome::Appended(outcome)) => {
            Ok(json(StatusCode::ACCEPTED, &AppendReply::from(&outcome)))
        }
        // The Idempotency-Key was answered before: that answer, and nothing appended.
        Ok(IdempotentOutcome::Recorded(recorded)) => {
            let key = headers
                .get(&super::idempotency::IDEMPOTENCY_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crossdock_core::access::IdempotencyKey::parse(v).ok());
            match key {
                Some(key) => Ok(super::idempotency::answer(recorded, &key)),
                None => Err(Problem::new(
                    problem::INTERNAL,
                    "an idempotent answer without its key",
                )),
            }
        }
        Err(IngestError::Rejected(rejection)) => {
            state.metrics.event_request_rejected();
            let kept = kept_headers(&headers);
            let inbox_id = ingest::keep_rejected(
                &state,
                PROTOCOL_HTTP_CLOUDEVENTS,
                kept,
                &body,
                &rejection.to_string(),
                correlation,
            )
            .await;
            Err(rejection_problem(rejection, inbox_id))
        }
        Err(IngestError::Store(e)) => Err(e.into()),
        Err(e @ IngestError::UnknownProtocol(_)) => {
            Err(Problem::new(problem::INTERNAL, e.to_string()))
        }
    }
}

fn rejection_problem(rejection: ParseRejection, inbox_id: Option<i64>) -> Problem {
    let kept = inbox_id
        .map(|id| format!(" The request was kept as inbox message {id}."))
        .unwrap_or_default();
    let kind = match &rejection {
        ParseRejection::NotUtf8 { .. } => problem::NOT_UTF8,
        ParseRejection::Malformed { .. } => problem::MALFORMED_JSON,
        ParseRejection::BatchTooLarge { .. } => problem::BATCH_TOO_LARGE,
        ParseRejection::Empty
        | ParseRejection::NotAnEvent { .. }
        | ParseRejection::EmptyBatch
        | ParseRejection::Invalid(_) => problem::INVALID_EVENT,
    };
    let detail = format!("{rejection}.{kept}");
    match rejection {
        ParseRejection::Invalid(errors) => Problem::new(kind, detail).with_errors(errors),
        _ => Problem::new(kind, detail),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct FeedPage<'a> {
    /// CloudEvents with their `seq` and `recordedtime`, in log order.
    #[schema(value_type = Vec<CloudEvent>)]
    events: &'a [StoredEvent],
    /// Pass as `after` to read the next page.
    next_after: i64,
    /// The highest sequence number in the log when the page was read.
    head: i64,
}

/// The public event feed: events after a sequence number, in order. With `wait_ms`, waits for
/// new events when there are none yet (long poll).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("after" = Option<i64>, Query, description = "Return events with a greater `seq` (default 0)"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to `events.feed_limit_max`, default 100)"),
        ("wait_ms" = Option<i64>, Query, description = "When no event is there yet, wait up to this long for one"),
    ),
    responses(
        (status = 200, description = "A page of the feed", body = FeedPage),
        (status = 400, description = "A parameter is malformed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_events(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = Query::parse(uri.query(), &["after", "limit", "wait_ms"])?;
    let after = query.int("after", 0, 0, i64::MAX)?;
    let limit_max = i64::try_from(state.config.events.feed_limit_max).unwrap_or(i64::MAX);
    let limit = query.int("limit", 100.min(limit_max), 1, limit_max)? as usize;
    let wait_max = i64::try_from(state.config.events.feed_wait_ms_max).unwrap_or(i64::MAX);
    let wait_ms = query.int("wait_ms", 0, 0, wait_max)?;

    let mut events = state.store.read_events(after, limit).await?;
    if events.is_empty() && wait_ms > 0 {
        // Long poll: wait for the head to pass `after`, re-checking the store now and then in
        // case another process or node appended.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms as u64);
        let mut head = state.head.subscribe();
        while events.is_empty() && tokio::time::Instant::now() < deadline {
            let recheck = tokio::time::Instant::now() + Duration::from_millis(1000);
            let until = deadline.min(recheck);
            tokio::select! {
                _ = tokio::time::timeout_at(until, head.wait_for(|h| *h > after)) => {}
                () = state.shutdown.cancelled() => break,
            }
            events = state.store.read_events(after, limit).await?;
        }
    }
    let head = state.store.head_seq().await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(json(
        StatusCode::OK,
        &FeedPage {
            events: &events,
            next_after,
            head,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(super) struct InboxReplayReply {
    id: i64,
    /// `processed`.
    status: String,
    #[serde(flatten)]
    appended: AppendReply,
}

/// Re-parses a kept inbox message and appends its events: the same path as a live request.
/// Use it after fixing what made the message fail.
#[utoipa::path(post, path = "/v1/inbox/{id}/replay", tag = "operations",
    params(("id" = i64, Path, description = "The inbox message id")),
    responses(
        (status = 200, description = "Processed; its events are in the log", body = InboxReplayReply),
        (status = 404, description = "No such message", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Already processed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Still rejected; the reason is updated", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn inbox_replay(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(caller): Extension<super::gate::Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let result = replay_inbox_message(&state, &ctx, &id).await;
    let outcome = super::ops::outcome_of(&result);
    crate::audit::record(
        &state.store,
        state.clock.now(),
        crate::audit::Action {
            actor: &caller.name,
            action: "inbox.replay",
            target: &format!("inbox:{}", super::truncate(&id, 32)),
            outcome: &outcome,
            correlation_id: Some(ctx.correlation_id.as_str()),
            detail: None,
        },
    )
    .await;
    result
}

async fn replay_inbox_message(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<Response, Problem> {
    let record = super::ops::inbox_record(state, id).await?;
    let id = record.id;
    if record.message.status == InboxStatus::Processed {
        return Err(Problem::new(
            problem::CONFLICT,
            format!("inbox message {id} was already processed"),
        ));
    }
    let correlation = record
        .message
        .correlation_id
        .clone()
        .unwrap_or_else(|| ctx.correlation_id.to_string());
    if record.message.protocol == crate::orders::PROTOCOL_ORDER {
        return super::orders::replay_order(state, id, &record.message.body, &correlation).await;
    }
    if record.message.protocol == crate::returns::PROTOCOL_RETURN {
        return super::returns::replay_return(state, id, &record.message.body).await;
    }
    if record.message.protocol == crate::edi_inbound::PROTOCOL_X12 {
        let partner = record
            .message
            .headers
            .iter()
            .find(|(name, _)| name == crate::edi_inbound::PARTNER_HEADER)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| record.message.source.clone());
        let receipt =
            crate::edi_inbound::process(state, &partner, &record.message.body, id, &correlation)
                .await
                .map_err(super::edi::edi_problem)?;
        tracing::info!(inbox_id = id, partner, "X12 inbox message replayed");
        return Ok(json(StatusCode::OK, &receipt));
    }
    let now = state.clock.now();
    match ingest::accept(
        state,
        &record.message.protocol,
        &record.message.body,
        &correlation,
        || None,
    )
    .await
    {
        Ok(IdempotentOutcome::Recorded(_)) => Err(Problem::new(
            problem::INTERNAL,
            "an inbox replay was answered from an idempotency record",
        )),
        Ok(IdempotentOutcome::Appended(outcome)) => {
            state
                .store
                .inbox_mark(id, InboxStatus::Processed, None, now)
                .await?;
            tracing::info!(
                inbox_id = id,
                accepted = outcome.appended(),
                "inbox message replayed"
            );
            Ok(json(
                StatusCode::OK,
                &InboxReplayReply {
                    id,
                    status: InboxStatus::Processed.as_str().into(),
                    appended: AppendReply::from(&outcome),
                },
            ))
        }
        Err(IngestError::Rejected(rejection)) => {
            state
                .store
                .inbox_mark(id, InboxStatus::Rejected, Some(rejection.to_string()), now)
                .await?;
            Err(rejection_problem(rejection, Some(id)))
        }
        Err(e @ IngestError::UnknownProtocol(_)) => {
            Err(Problem::new(problem::CONFLICT, e.to_string()))
        }
        Err(IngestError::Store(e)) => Err(e.into()),
    }
}
