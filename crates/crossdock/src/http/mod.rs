//! The HTTP API: routes, the request envelope (correlation id, limits, problem rendering) and
//! the handlers. The only module that knows HTTP status codes.

mod events;
mod ops;
pub mod problem;
mod query;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crossdock_core::CorrelationId;

use crate::app::AppState;
use problem::Problem;

/// The response header carrying the correlation id, and the request header that may set it.
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Bytes of a non-problem error body kept as the problem's detail.
const ERROR_TEXT_BYTES_MAX: usize = 4096;

/// What the envelope learned about a request, for handlers.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub correlation_id: CorrelationId,
}

pub fn router(state: Arc<AppState>) -> Router {
    let body_max = state.config.server.body_bytes_max;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/problems/{slug}", get(ops::problem_page))
        .route(
            "/v1/events",
            post(events::post_events).get(events::get_events),
        )
        .route("/v1/consumers", get(ops::consumers))
        .route("/v1/sources", get(ops::sources))
        .route("/v1/inbox", get(ops::inbox_list))
        .route("/v1/inbox/{id}", get(ops::inbox_get))
        .route("/v1/inbox/{id}/replay", post(events::inbox_replay))
        .route("/v1/dead-letters", get(ops::dead_letters))
        .route(
            "/v1/dead-letters/{id}",
            get(ops::dead_letter).delete(ops::drop_dead_letter),
        )
        .route(
            "/v1/dead-letters/{id}/replay",
            post(ops::replay_dead_letter),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(middleware::from_fn_with_state(state.clone(), envelope))
        .with_state(state)
}

async fn not_found(request: Request) -> Problem {
    Problem::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Takes the correlation id from `traceparent`, then `X-Correlation-Id`, or makes one.
fn correlation_of(headers: &HeaderMap) -> CorrelationId {
    let from_trace = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(CorrelationId::from_traceparent);
    let from_header = || {
        headers
            .get(&CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| CorrelationId::parse(v).ok())
    };
    from_trace
        .or_else(from_header)
        .unwrap_or_else(|| CorrelationId::generated(uuid::Uuid::now_v7().simple().to_string()))
}

/// Wraps every request: correlation id in and out, the in-flight bound, the time limit, and
/// problem+json for every error.
async fn envelope(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let correlation = correlation_of(request.headers());
    let instance = request.uri().path().to_owned();
    let method = request.method().clone();
    request.extensions_mut().insert(RequestContext {
        correlation_id: correlation.clone(),
    });
    let response = match state.in_flight.clone().try_acquire_owned() {
        Err(_) => Problem::new(
            problem::OVERLOADED,
            "too many requests in flight; retry shortly",
        )
        .retry_after(1)
        .into_response(),
        Ok(permit) => {
            let limit = Duration::from_millis(state.config.server.request_timeout_ms);
            let outcome = tokio::time::timeout(limit, next.run(request)).await;
            drop(permit);
            outcome.unwrap_or_else(|_| {
                Problem::new(
                    problem::TIMEOUT,
                    format!("the request took longer than {} ms", limit.as_millis()),
                )
                .retry_after(1)
                .into_response()
            })
        }
    };
    let mut response = as_problem(response, &method, &instance, correlation.as_str()).await;
    state.metrics.http_response(response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(correlation.as_str()) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

/// Renders a [`Problem`] left by a handler, or converts a bare error response into one.
async fn as_problem(
    response: Response,
    method: &axum::http::Method,
    instance: &str,
    correlation: &str,
) -> Response {
    if let Some(problem) = response.extensions().get::<Problem>().cloned() {
        let mut rendered = problem.render(instance, correlation);
        copy_allow(&response, &mut rendered);
        return rendered;
    }
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(problem::CONTENT_TYPE.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let body = axum::body::to_bytes(response.into_body(), ERROR_TEXT_BYTES_MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let mut detail = text.into_owned();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // The router adds the `Allow` header after this middleware has run.
        detail =
            format!("{instance} does not accept {method}; the Allow header lists what it accepts");
    }
    let mut rendered = problem::from_status(status, &detail).render(instance, correlation);
    if let Some(allow) = allow {
        rendered.headers_mut().insert(header::ALLOW, allow);
    }
    rendered
}

fn copy_allow(from: &Response, to: &mut Response) {
    if let Some(allow) = from.headers().get(header::ALLOW) {
        to.headers_mut().insert(header::ALLOW, allow.clone());
    }
}

/// A JSON response with a status.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = (status, Body::from(bytes)).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response");
            Problem::new(problem::INTERNAL, "the response could not be serialized").into_response()
        }
    }
}

/// Parses a positive integer path id, naming the parameter when it is not one.
pub(crate) fn path_id(name: &str, text: &str) -> Result<i64, Problem> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Problem::parameter(
            &format!("/path/{name}"),
            format!("must be a positive integer, got {:?}", truncate(text, 64)),
        )),
    }
}

pub(crate) fn truncate(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}
