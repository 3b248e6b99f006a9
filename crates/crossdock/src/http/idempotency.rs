//! `Idempotency-Key` on POST routes: the first response to a key is kept and returned again for
//! the same request; the same key with another request is refused (422), and while the first is
//! still running a repeat is told to wait (409). Keys belong to the API key that sent them.
//!
//! A request runs under an in-process claim on its key. A route that can keep its answer in the
//! same transaction as its effect (appending events) takes the key from the request and lets the
//! store look it up, act and keep the answer at once; for every other route the envelope looks
//! the key up before the handler and keeps the answer after it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crossdock_core::Timestamp;
use crossdock_core::access::IdempotencyKey;
use crossdock_store::{
    IdempotencyLookup, IdempotentAppend, Recorded, RenderResponse, StoredResponse,
};
use sha2::{Digest, Sha256};

use super::gate::Caller;
use super::policy::{Idempotency, RoutePolicy};
use super::problem::{self, Problem};
use crate::app::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks a response that is a replay of the first response to its key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Responses larger than this are not kept.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
/// Keys being processed in this process at most; beyond, new keyed requests are told to retry.
const CLAIMS_MAX: usize = 100_000;

/// The idempotency keys this process is working on right now.
#[derive(Debug, Default)]
pub struct Claims(Mutex<HashSet<(String, String)>>);

/// A held claim; dropping it (at the end of the request, or when the request is cancelled)
/// frees the key.
struct Claim<'a> {
    claims: &'a Claims,
    id: (String, String),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.claims.0.lock() {
            set.remove(&self.id);
        }
    }
}

impl Claims {
    fn claim(&self, api_key: &str, key: &str) -> Option<Claim<'_>> {
        let id = (api_key.to_owned(), key.to_owned());
        let mut set = self.0.lock().ok()?;
        if set.len() >= CLAIMS_MAX || !set.insert(id.clone()) {
            return None;
        }
        Some(Claim { claims: self, id })
    }
}

/// Handed to a route that keeps its answer with its effect: it takes the key to give to the
/// store along with the effect.
#[derive(Clone, Debug)]
pub struct IdempotencyContext {
    key: Arc<Mutex<Option<KeyedRequest>>>,
}

/// API key id, idempotency key, request fingerprint, and the start of the retention window.
type KeyedRequest = (String, String, Vec<u8>, Timestamp);

impl IdempotencyContext {
    /// Takes the key, to be looked up and kept by the store together with the effect.
    pub fn take(&self, render: RenderResponse) -> Option<IdempotentAppend> {
        let (api_key, key, fingerprint, expired_before) = self.key.lock().ok()?.take()?;
        Some(IdempotentAppend {
            api_key,
            key,
            fingerprint,
            expired_before,
            render,
        })
    }

    fn is_taken(&self) -> bool {
        self.key.lock().map_or(true, |k| k.is_none())
    }
}

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
    let Some(_claim) = state.claims.claim(&api_key, key.as_str()) else {
        return in_flight(&key);
    };
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
    let ttl_ms = i64::from(state.config.auth.idempotency_ttl_hours) * 3_600_000;
    let expired_before = state.clock.now().plus_millis(-ttl_ms);
    let lookup = IdempotencyLookup {
        api_key: &api_key,
        key: key.as_str(),
        fingerprint: &fingerprint,
        expired_before,
    };
    let method = parts.method.clone();
    let mut request = Request::from_parts(parts, Body::from(bytes));

    if policy.keeps_answer_with_effect {
        let context = IdempotencyContext {
            key: Arc::new(Mutex::new(Some((
                api_key.clone(),
                key.as_str().to_owned(),
                fingerprint.clone(),
                expired_before,
            )))),
        };
        request.extensions_mut().insert(context.clone());
        let response = super::run_limited(state, request, next).await;
        let response = super::as_problem(response, &method, instance, correlation).await;
        if context.is_taken() {
            // The store looked the key up and kept the answer with the effect.
            return response;
        }
        // The handler stopped before its effect (bad input, say): keep that answer unless the
        // same request was answered before.
        return match state.store.idempotency_lookup(lookup.clone()).await {
            Ok(Recorded::Nothing) => keep(state, lookup, response).await,
            Ok(recorded) => answer(recorded, &key),
            Err(e) => Problem::from(e).into_response(),
        };
    }

    match state.store.idempotency_lookup(lookup.clone()).await {
        Err(e) => Problem::from(e).into_response(),
        Ok(Recorded::Nothing) => {
            let response = super::run_limited(state, request, next).await;
            let response = super::as_problem(response, &method, instance, correlation).await;
            keep(state, lookup, response).await
        }
        Ok(recorded) => answer(recorded, &key),
    }
}

fn in_flight(key: &IdempotencyKey) -> Response {
    Problem::new(
        problem::IDEMPOTENCY_IN_FLIGHT,
        format!(
            "a request with the Idempotency-Key {:?} is still in progress",
            key.as_str()
        ),
    )
    .retry_after(1)
    .into_response()
}

/// The answer for a key that was used before: its kept response, or a refusal.
pub(super) fn answer(recorded: Recorded, key: &IdempotencyKey) -> Response {
    match recorded {
        Recorded::Replay(stored) => replay(stored),
        Recorded::Mismatch => Problem::new(
            problem::IDEMPOTENCY_KEY_REUSED,
            format!(
                "the Idempotency-Key {:?} was used with a different request; use a new key for a new request",
                key.as_str()
            ),
        )
        .into_response(),
        Recorded::Nothing => Problem::new(problem::INTERNAL, "no kept response to replay").into_response(),
    }
}

/// Keeps the response of a request, unless its outcome is worth retrying (a server error, an
/// overload), in which case a retry runs again.
async fn keep(state: &AppState, lookup: IdempotencyLookup<'_>, response: Response) -> Response {
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, RESPONSE_BYTES_MAX).await else {
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
        .idempotency_keep(lookup, stored, state.clock.now())
        .await
    {
        // The request took effect but its answer is not kept; a retry runs it again, which the
        // routes tolerate (appends are deduplicated, replays and drops check state).
        tracing::warn!(error = %e, "cannot keep an idempotent response");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A kept response, sent again.
pub(super) fn replay(stored: StoredResponse) -> Response {
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
