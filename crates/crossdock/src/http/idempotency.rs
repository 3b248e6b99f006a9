//! `Idempotency-Key` on POST routes: the first response to a key is kept and returned again for
//! the same request; the same key with another request is refused (422), and while the first is
//! still running a repeat is told to wait (409). Keys belong to the API key that sent them.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crossdock_core::access::IdempotencyKey;
use crossdock_store::{ClaimOutcome, IdempotencyClaim, StoredResponse};
use sha2::{Digest, Sha256};

use super::gate::Caller;
use super::policy::{Idempotency, RoutePolicy};
use super::problem::{self, Problem};
use crate::app::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks a response that is a replay of the first response to its key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Responses larger than this are not kept (the claim is released instead).
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
/// A claim left unfinished longer than this (or twice the request time limit, if longer) belongs
/// to a process that died; a retry takes it over.
const STALE_CLAIM_MS_MIN: u64 = 60_000;

/// Runs a POST under its `Idempotency-Key`, if it has one.
pub(super) async fn handle(
    state: &AppState,
    policy: &RoutePolicy,
    caller: Option<&Caller>,
    request: Request,
    next: Next,
    instance: &str,
    correlation: &str,
) -> Response {
    let key = match request.headers().get(&IDEMPOTENCY_KEY) {
        None if policy.idempotency == Idempotency::Required => {
            return Problem::new(
                problem::IDEMPOTENCY_KEY_INVALID,
                format!(
                    "{} {} requires an Idempotency-Key header",
                    policy.method, policy.path
                ),
            )
            .into_response();
        }
        None => return super::run_limited(state, request, next).await,
        Some(value) => match value
            .to_str()
            .map_err(|_| "must be visible ASCII")
            .and_then(IdempotencyKey::parse)
        {
            Ok(key) => key,
            Err(why) => {
                return Problem::new(
                    problem::IDEMPOTENCY_KEY_INVALID,
                    format!("the Idempotency-Key {why}"),
                )
                .into_response();
            }
        },
    };
    let api_key = caller.map_or("anonymous", |c| c.key_id.as_str()).to_owned();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, state.config.server.body_bytes_max).await else {
        return Problem::new(
            problem::BODY_TOO_LARGE,
            format!(
                "the body is larger than {} bytes (server.body_bytes_max)",
                state.config.server.body_bytes_max
            ),
        )
        .into_response();
    };
    let fingerprint = {
        let mut hash = Sha256::new();
        hash.update(parts.method.as_str());
        hash.update(b"\n");
        hash.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
        hash.update(b"\n");
        hash.update(&bytes);
        hash.finalize().to_vec()
    };
    let now = state.clock.now();
    let ttl_ms = i64::from(state.config.auth.idempotency_ttl_hours) * 3_600_000;
    let stale_ms = (state.config.server.request_timeout_ms * 2).max(STALE_CLAIM_MS_MIN);
    let claim = IdempotencyClaim {
        api_key: &api_key,
        key: key.as_str(),
        fingerprint: &fingerprint,
        now,
        expired_before: now.plus_millis(-ttl_ms),
        stale_before: now.plus_millis(-i64::try_from(stale_ms).unwrap_or(i64::MAX)),
    };
    match state.store.idempotency_claim(claim).await {
        Err(e) => Problem::from(e).into_response(),
        Ok(ClaimOutcome::Mismatch) => Problem::new(
            problem::IDEMPOTENCY_KEY_REUSED,
            format!(
                "the Idempotency-Key {:?} was used with a different request; use a new key for a new request",
                key.as_str()
            ),
        )
        .into_response(),
        Ok(ClaimOutcome::InFlight) => Problem::new(
            problem::IDEMPOTENCY_IN_FLIGHT,
            format!("a request with the Idempotency-Key {:?} is still in progress", key.as_str()),
        )
        .retry_after(1)
        .into_response(),
        Ok(ClaimOutcome::Replay(stored)) => replay(stored),
        Ok(ClaimOutcome::Claimed) => {
            let method = parts.method.clone();
            let request = Request::from_parts(parts, Body::from(bytes));
            let response = super::run_limited(state, request, next).await;
            let response = super::as_problem(response, &method, instance, correlation).await;
            keep(state, &api_key, &key, response).await
        }
    }
}

/// Keeps the response of a claimed request, or releases the claim when the outcome is worth
/// retrying (a server error, an overload) so that the retry runs.
async fn keep(
    state: &AppState,
    api_key: &str,
    key: &IdempotencyKey,
    response: Response,
) -> Response {
    let status = response.status();
    let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
    let release = |why: &'static str| async move {
        if let Err(e) = state.store.idempotency_release(api_key, key.as_str()).await {
            tracing::warn!(error = %e, why, "cannot release an idempotency claim; it expires on its own");
        }
    };
    if retryable {
        release("retryable response").await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, RESPONSE_BYTES_MAX).await else {
        release("response too large to keep").await;
        return Problem::new(
            problem::INTERNAL,
            "the response was too large to keep for replay",
        )
        .into_response();
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: bytes.to_vec(),
    };
    if let Err(e) = state
        .store
        .idempotency_complete(api_key, key.as_str(), stored, state.clock.now())
        .await
    {
        // The request took effect but its answer is not kept; a retry runs it again, which the
        // routes tolerate (appends are deduplicated by event id).
        tracing::warn!(error = %e, "cannot keep an idempotent response");
        release("response not kept").await;
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Some(value) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
