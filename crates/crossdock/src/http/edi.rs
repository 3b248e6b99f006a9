//! `POST /v1/edi/{partner}`: raw X12 from a trading partner.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::{RequestContext, json};
use crate::app::AppState;
use crate::edi_inbound::{self, EdiInboundError, EdiReceipt};

/// Request headers kept with the raw X12.
const KEPT_HEADERS: [&str; 4] = [
    "content-type",
    "user-agent",
    "traceparent",
    "x-correlation-id",
];

/// Takes raw X12 (one or more interchanges) from a trading partner configured under
/// `[edi.<partner>]`. The bytes are kept in the inbox before anything else. Each interchange is
/// processed once per sender and ISA13 (a repeat is reported as a duplicate); its sets are
/// checked; accepted sets become events (`edi.<set>.received`, and inventory movements for 846,
/// 944, 945 and 947); received 997s settle the groups crossdock sent; every group gets a 997,
/// queued for the target `edi-<partner>`. Sets with errors are listed with their positions and
/// rejected in the 997.
#[utoipa::path(post, path = "/v1/edi/{partner}", tag = "edi",
    params(("partner" = String, Path, description = "The partner id, a key of `[edi]` in the configuration")),
    request_body(content = String, description = "X12 interchanges, as the partner sent them",
        content_type = "application/edi-x12"),
    responses(
        (status = 202, description = "Kept and processed; what became of each interchange", body = EdiReceipt),
        (status = 404, description = "No such partner", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body over `server.body_bytes_max`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "No readable interchange; kept in the inbox", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn post_edi(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| {
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
    })?;
    let kept: Vec<(String, String)> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    match edi_inbound::receive(&state, &partner, &body, kept, ctx.correlation_id.as_str()).await {
        Ok(receipt) => Ok(json(StatusCode::ACCEPTED, &receipt)),
        Err(error) => Err(edi_problem(error)),
    }
}

pub(super) fn edi_problem(error: EdiInboundError) -> Problem {
    match error {
        e @ EdiInboundError::UnknownPartner(_) => Problem::new(problem::NOT_FOUND, e.to_string()),
        EdiInboundError::Unreadable(why) => Problem::new(
            problem::INVALID_X12,
            format!("the body holds no readable interchange: {why}"),
        ),
        EdiInboundError::Store(e) => e.into(),
        EdiInboundError::Internal(why) => Problem::new(problem::INTERNAL, why),
    }
}
