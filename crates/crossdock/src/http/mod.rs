//! The HTTP API: routes, the request envelope (correlation id, limits, problem rendering) and
//! the handlers. The only module that knows HTTP status codes.

mod catalog;
mod edi;
mod events;
pub mod gate;
pub mod idempotency;
mod inventory;
pub mod openapi;
mod ops;
mod orders;
pub mod policy;
pub mod problem;
mod query;
mod returns;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
    let (routes, _) = openapi::routes().split_for_parts();
    routes
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

/// The response header naming the API version that answered.
pub const API_VERSION_HEADER: HeaderName = HeaderName::from_static("api-version");
/// The version of the API under `/v1`.
pub const API_VERSION: &str = "1";

/// Wraps every request: correlation id in and out, the in-flight bound, the gate (key, scope,
/// rate, idempotency), the time limit, and problem+json for every error.
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
            let response = governed(&state, request, next, &instance, correlation.as_str()).await;
            drop(permit);
            response
        }
    };
    let mut response = as_problem(response, &method, &instance, correlation.as_str()).await;
    state.metrics.http_response(response.status().as_u16());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(correlation.as_str()) {
        headers.insert(CORRELATION_HEADER, value);
    }
    headers.insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
    response
}

/// Applies the route's policy: authentication and scope, the key's rate, idempotency, and the
/// deprecation headers.
async fn governed(
    state: &AppState,
    mut request: Request,
    next: Next,
    instance: &str,
    correlation: &str,
) -> Response {
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(path) = matched else {
        // No route matched: the fallback answers (404).
        return run_limited(state, request, next).await;
    };
    let Some(policy) = policy::lookup(request.method(), &path) else {
        if policy::POLICIES.iter().any(|p| p.path == path) {
            // The path exists with other methods: the router answers 405 with `Allow`.
            return run_limited(state, request, next).await;
        }
        tracing::error!(method = %request.method(), path, "a route has no access policy; refusing it");
        return Problem::new(problem::INTERNAL, "this route has no access policy").into_response();
    };
    let mut rate_headers = Vec::new();
    let caller = match policy.access {
        policy::Access::Public => None,
        policy::Access::Scope(scope) => {
            let caller = match state
                .gate
                .authenticate(&state.store, request.headers())
                .await
            {
                Ok(caller) => caller,
                Err(problem) => return problem.into_response(),
            };
            if !caller.scopes.allows(scope) {
                return Problem::new(
                    problem::FORBIDDEN,
                    format!(
                        "the key {:?} lacks the scope {scope} that {} {} requires",
                        caller.name, policy.method, policy.path
                    ),
                )
                .into_response();
            }
            match state.gate.admit(&caller, state.clock.now()) {
                Ok(headers) => rate_headers = headers,
                Err(problem) => return problem.into_response(),
            }
            request.extensions_mut().insert(caller.clone());
            Some(caller)
        }
    };
    let mut response = if policy.idempotency == policy::Idempotency::NotApplicable {
        run_limited(state, request, next).await
    } else {
        idempotency::handle(
            state,
            policy,
            caller.as_ref(),
            request,
            next,
            instance,
            correlation,
        )
        .await
    };
    let headers = response.headers_mut();
    for (name, value) in rate_headers {
        headers.insert(name, value);
    }
    if let Some(d) = policy.deprecated {
        for (name, value) in deprecation_headers(&d) {
            headers.insert(name, value);
        }
    }
    response
}

/// Runs the handler within the request time limit.
pub(super) async fn run_limited(state: &AppState, request: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.config.server.request_timeout_ms);
    tokio::time::timeout(limit, next.run(request))
        .await
        .unwrap_or_else(|_| {
            Problem::new(
                problem::TIMEOUT,
                format!("the request took longer than {} ms", limit.as_millis()),
            )
            .retry_after(1)
            .into_response()
        })
}

/// `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a `Link` to what replaces the route.
pub fn deprecation_headers(d: &policy::Deprecation) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&format!("@{}", d.since_unix_s)) {
        headers.push((HeaderName::from_static("deprecation"), v));
    }
    if let Ok(v) = HeaderValue::from_str(d.sunset) {
        headers.push((HeaderName::from_static("sunset"), v));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("<{}>; rel=\"deprecation\"", d.link)) {
        headers.push((header::LINK, v));
    }
    headers
}

/// Renders a [`Problem`] left by a handler, or converts a bare error response into one.
pub(super) async fn as_problem(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deprecated_route_announces_its_sunset_and_replacement() {
        let d = policy::Deprecation {
            since_unix_s: 1_798_761_600,
            sunset: "Sat, 01 Jan 2028 00:00:00 GMT",
            link: "/docs#v2-events",
        };
        let headers: Vec<(String, String)> = deprecation_headers(&d)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("deprecation".to_owned(), "@1798761600".to_owned()),
                (
                    "sunset".to_owned(),
                    "Sat, 01 Jan 2028 00:00:00 GMT".to_owned()
                ),
                (
                    "link".to_owned(),
                    "</docs#v2-events>; rel=\"deprecation\"".to_owned()
                ),
            ]
        );
    }
}
