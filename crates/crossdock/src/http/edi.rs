//! `POST /v1/edi/{partner}`: raw X12 from a trading partner.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use crossdock_store::EdiGroupQuery;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ProblemBody;
use super::problem::{self, Problem};
use super::query::Query;
use super::{RequestContext, json};
use crate::app::AppState;
use crate::edi_inbound::{self, EdiInboundError, EdiReceipt};

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
    let body = super::events::raw_body(&state, body)?;
    let kept = super::events::kept_headers(&headers);
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

#[derive(Serialize, ToSchema)]
pub(super) struct GroupSentView {
    partner: String,
    /// GS06.
    group_control: String,
    /// GS01.
    functional_id: String,
    /// ISA13 of the interchange that carried it.
    interchange_control: String,
    sets: i64,
    /// RFC 3339.
    sent_at: String,
    /// `sent` (no 997 yet), `accepted`, `accepted_with_errors`, `partial` or `rejected`.
    status: String,
    ack_at: Option<String>,
    /// The partner's 997 for it: sets with their AK5 status and codes, AK9.
    #[schema(value_type = Option<Object>)]
    ack: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct GroupSentList {
    groups: Vec<GroupSentView>,
}

/// Functional groups crossdock sent to partners and what their 997s said, oldest first. With
/// `status=sent&older_than=1h`: the groups still unacknowledged after an hour.
#[utoipa::path(get, path = "/v1/edi/groups", tag = "edi",
    params(
        ("partner" = Option<String>, Query, description = "Only this partner's groups"),
        ("status" = Option<String>, Query, description = "sent, accepted, accepted_with_errors, partial or rejected"),
        ("older_than" = Option<String>, Query, description = "Only groups sent at least this long ago: 90s, 15m, 4h, 2d"),
        ("older_than_ms" = Option<i64>, Query, description = "The same in milliseconds"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses(
        (status = 200, description = "Groups sent", body = GroupSentList),
        (status = 400, description = "Bad parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub(super) async fn list_groups(
    State(state): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, Problem> {
    const STATUSES: [&str; 5] = [
        "sent",
        "accepted",
        "accepted_with_errors",
        "partial",
        "rejected",
    ];
    let query = Query::parse(
        uri.query(),
        &["partner", "status", "older_than", "older_than_ms", "limit"],
    )?;
    let status = query.one_of("status", &STATUSES)?.map(str::to_owned);
    let older_than_ms = query.age_ms()?;
    let limit = query.int("limit", 100, 1, 1000)? as usize;
    let sent_before = (older_than_ms > 0).then(|| state.clock.now().plus_millis(-older_than_ms));
    let groups = state
        .store
        .edi_groups(EdiGroupQuery {
            partner: query.text("partner").map(str::to_owned),
            status,
            sent_before,
            limit,
        })
        .await?;
    let groups = groups
        .into_iter()
        .map(|g| GroupSentView {
            partner: g.group.partner,
            group_control: g.group.group_control,
            functional_id: g.group.functional_id,
            interchange_control: g.group.interchange_control,
            sets: g.group.sets,
            sent_at: g.group.sent_at.to_string(),
            status: g.status,
            ack_at: g.ack_at.map(|t| t.to_string()),
            ack: g.ack_detail,
        })
        .collect();
    Ok(json(StatusCode::OK, &GroupSentList { groups }))
}
