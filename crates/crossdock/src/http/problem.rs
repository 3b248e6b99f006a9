//! RFC 9457 problem details: the one shape of every error crossdock's HTTP API returns.
//!
//! Handlers return a [`Problem`]; the response middleware adds the request path (`instance`) and
//! the correlation id, and turns any other error response (an unknown route, a body over the
//! limit) into a problem too. The `type` of each problem is a relative URI that crossdock itself
//! serves with a description (`GET /problems/{slug}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crossdock_core::FieldError;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A kind of problem: its URI slug, title and the status it is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub slug: &'static str,
    pub title: &'static str,
    pub status: StatusCode,
    /// What it means and what to do, served at `/problems/{slug}`.
    pub description: &'static str,
}

macro_rules! kinds {
    ($($name:ident = ($slug:literal, $status:ident, $title:literal, $description:literal);)*) => {
        $(pub const $name: Kind = Kind {
            slug: $slug,
            title: $title,
            status: StatusCode::$status,
            description: $description,
        };)*
        /// Every problem kind, for the `/problems/{slug}` pages.
        pub const ALL: &[Kind] = &[$($name),*];
    };
}

kinds! {
    MALFORMED_JSON = ("malformed-json", BAD_REQUEST, "Malformed JSON",
        "The body is not valid JSON. `detail` gives the line and column where parsing stopped.");
    NOT_UTF8 = ("not-utf8", BAD_REQUEST, "Body is not UTF-8",
        "JSON bodies must be UTF-8. `detail` gives the offset of the first invalid byte.");
    INVALID_EVENT = ("invalid-event", UNPROCESSABLE_ENTITY, "Invalid event",
        "One or more events are not valid CloudEvents 1.0. `errors` lists each problem with a JSON pointer to the attribute. Nothing of the request was recorded.");
    INVALID_BODY = ("invalid-body", UNPROCESSABLE_ENTITY, "Invalid body",
        "The body is JSON but does not describe a valid entry. `errors` lists each problem with a JSON pointer to the member. Nothing was changed.");
    BATCH_TOO_LARGE = ("batch-too-large", PAYLOAD_TOO_LARGE, "Batch too large",
        "The batch holds more events than one request may carry (`events.batch_events_max`). Split it.");
    BODY_TOO_LARGE = ("body-too-large", PAYLOAD_TOO_LARGE, "Body too large",
        "The request body is larger than `server.body_bytes_max`.");
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
        "This route accepts `application/json` or `application/cloudevents+json` (and the batch variant).");
    INVALID_X12 = ("invalid-x12", UNPROCESSABLE_ENTITY, "Invalid X12",
        "The body holds no readable X12 interchange (it must start with an ISA segment). `detail` says what was found and where. The body is kept in the inbox, to be replayed after a fix.");
    INVALID_PARAMETER = ("invalid-parameter", BAD_REQUEST, "Invalid parameter",
        "A query or path parameter is missing or malformed. `errors` names it.");
    BAD_REQUEST = ("bad-request", BAD_REQUEST, "Bad request",
        "The request could not be understood.");
    UNAUTHORIZED = ("unauthorized", UNAUTHORIZED, "Unauthorized",
        "The request carries no valid API key. Send `Authorization: Bearer <token>` with a key made by `crossdock keys create`; revoked keys are refused.");
    FORBIDDEN = ("forbidden", FORBIDDEN, "Forbidden",
        "The API key is valid but lacks the scope this route requires. `detail` names the scope.");
    RATE_LIMITED = ("rate-limited", TOO_MANY_REQUESTS, "Too many requests",
        "The API key has used its request budget. Retry after `Retry-After` seconds; `RateLimit-Policy` and `RateLimit` describe the budget.");
    IDEMPOTENCY_KEY_REUSED = ("idempotency-key-reused", UNPROCESSABLE_ENTITY, "Idempotency key reused",
        "This `Idempotency-Key` was used before with a different request (method, path or body). Use a new key for a new request.");
    IDEMPOTENCY_IN_FLIGHT = ("idempotency-in-flight", CONFLICT, "Request in progress",
        "A request with this `Idempotency-Key` is still being processed. Retry after a moment to get its response.");
    IDEMPOTENCY_KEY_INVALID = ("idempotency-key-invalid", BAD_REQUEST, "Invalid Idempotency-Key",
        "The `Idempotency-Key` header is missing where it is required, or is not 1 to 255 visible ASCII characters.");
    NOT_FOUND = ("not-found", NOT_FOUND, "Not found",
        "There is no resource at this path.");
    METHOD_NOT_ALLOWED = ("method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "The path exists but does not accept this method. The `Allow` header lists the methods it does accept.");
    INSUFFICIENT_STOCK = ("insufficient-stock", CONFLICT, "Not enough stock",
        "The reservation needs more than is available to promise at a location. `errors` names each short line with what it needed and what was available. Nothing was held.");
    RETURN_NOT_ALLOWED = ("return-not-allowed", UNPROCESSABLE_ENTITY, "Return not allowed",
        "The RMA names lines its order does not have, or more units of a line than shipped. `detail` lists every reason. Nothing was recorded.");
    CONFLICT = ("conflict", CONFLICT, "Conflict",
        "The resource is not in a state that allows this operation. `detail` says which state it is in.");
    OVERLOADED = ("overloaded", SERVICE_UNAVAILABLE, "Overloaded",
        "crossdock is handling as many requests as it is configured to. Retry after the `Retry-After` delay.");
    TIMEOUT = ("timeout", SERVICE_UNAVAILABLE, "Request timed out",
        "The request took longer than `server.request_timeout_ms`. Work it started may still complete; retrying an event append is safe because appends are deduplicated.");
    NOT_READY = ("not-ready", SERVICE_UNAVAILABLE, "Not ready",
        "The store cannot be reached or its schema is not migrated. `detail` says which.");
    STORE_UNAVAILABLE = ("store-unavailable", SERVICE_UNAVAILABLE, "Store unavailable",
        "The database failed or could not be reached. Nothing was acknowledged; retry later.");
    INTERNAL = ("internal", INTERNAL_SERVER_ERROR, "Internal error",
        "crossdock failed unexpectedly. The error is logged with this response's correlation id.");
}

/// A problem on its way out. Rendered by the response middleware, which knows the request.
#[derive(Clone, Debug)]
pub struct Problem {
    pub kind: Kind,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_s: Option<u64>,
    /// Further response headers (`WWW-Authenticate`, rate limit fields).
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_s: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: axum::http::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// A problem with one parameter, named by a pointer such as `/query/limit`.
    pub fn parameter(pointer: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Problem::new(INVALID_PARAMETER, format!("{pointer}: {detail}"))
            .with_errors(vec![FieldError::new(pointer, detail)])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(NOT_FOUND, detail)
    }

    /// Renders the problem for a request.
    pub fn render(&self, instance: &str, correlation_id: &str) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
            instance: &'a str,
            correlation_id: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            errors: Vec<ErrorItem<'a>>,
        }
        #[derive(Serialize)]
        struct ErrorItem<'a> {
            pointer: &'a str,
            detail: &'a str,
        }
        let body = Body {
            kind: format!("/problems/{}", self.kind.slug),
            title: self.kind.title,
            status: self.kind.status.as_u16(),
            detail: &self.detail,
            instance,
            correlation_id,
            errors: self
                .errors
                .iter()
                .map(|e| ErrorItem {
                    pointer: &e.pointer,
                    detail: &e.detail,
                })
                .collect(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.kind.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

impl IntoResponse for Problem {
    /// Leaves the problem in the response's extensions for the middleware to render.
    fn into_response(self) -> Response {
        let mut response = self.kind.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<crossdock_store::StoreError> for Problem {
    fn from(e: crossdock_store::StoreError) -> Self {
        use crossdock_store::StoreError as E;
        match e {
            E::Unavailable(_) | E::Closed => {
                tracing::error!(error = %e, "store failure");
                Problem::new(STORE_UNAVAILABLE, e.to_string()).retry_after(1)
            }
            E::SchemaTooNew { .. } | E::NotMigrated { .. } => {
                Problem::new(NOT_READY, e.to_string())
            }
            E::Invalid(_) => Problem::new(BAD_REQUEST, e.to_string()),
            E::Refused(errors) => Problem::new(
                INVALID_BODY,
                errors.first().map(ToString::to_string).unwrap_or_default(),
            )
            .with_errors(errors),
            E::PositionMoved { .. } => Problem::new(CONFLICT, e.to_string()),
            E::Corrupt(_) => {
                tracing::error!(error = %e, "stored data is unreadable");
                Problem::new(
                    INTERNAL,
                    "stored data could not be read; see the server log",
                )
            }
        }
    }
}

/// The problem for an error response that was not built as a problem (a framework rejection).
pub fn from_status(status: StatusCode, text: &str) -> Problem {
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => BODY_TOO_LARGE,
        StatusCode::UNAUTHORIZED => UNAUTHORIZED,
        StatusCode::FORBIDDEN => FORBIDDEN,
        StatusCode::TOO_MANY_REQUESTS => RATE_LIMITED,
        StatusCode::NOT_FOUND => NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => METHOD_NOT_ALLOWED,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => UNSUPPORTED_MEDIA_TYPE,
        StatusCode::CONFLICT => CONFLICT,
        StatusCode::SERVICE_UNAVAILABLE => OVERLOADED,
        s if s.is_server_error() => INTERNAL,
        _ => BAD_REQUEST,
    };
    let kind = Kind { status, ..kind };
    let detail = if text.trim().is_empty() {
        kind.title.to_owned()
    } else {
        text.trim().chars().take(512).collect()
    };
    Problem::new(kind, detail)
}
