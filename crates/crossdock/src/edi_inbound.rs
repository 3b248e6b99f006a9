//! X12 from trading partners (`POST /v1/edi/{partner}` and inbox replays): the raw bytes are
//! kept first; each interchange is checked once per sender and ISA13; every set is read and
//! validated; accepted sets become events (`edi.<set>.received`, and the inventory movements of
//! 846, 944, 945 and 947); received 997s settle the groups we sent; and every group gets its 997,
//! queued for the partner's target `edi-<partner>`.

use crossdock_core::catalog::LocationId;
use crossdock_core::{FieldError, NewEvent};
use crossdock_edi::Problem;
use crossdock_edi::ack::{AckBuilder, GroupAck, write_acks};
use crossdock_edi::convert::{self, InventoryEvent, Mapping};
use crossdock_edi::envelope::{GroupHeader, GroupReport, InterchangeHeader, InterchangeReport};
use crossdock_edi::read::{SetRead, TypedHandler, read_slice};
use crossdock_edi::sets::{Document, FunctionalAck};
use crossdock_store::{
    EdiAckOutcome, EdiControl, EdiInbound, InboxMessage, InboxStatus, NewAction, StoreError,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::config::EdiPartnerConfig;

/// The inbox protocol of raw X12.
pub const PROTOCOL_X12: &str = "x12";
/// The inbox header naming the partner a message came from (so a replay knows it).
pub const PARTNER_HEADER: &str = "x-crossdock-partner";
/// Problems listed per interchange in a receipt; the rest are counted.
const PROBLEMS_LISTED: usize = 100;

/// What became of one interchange.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct InterchangeReceipt {
    /// ISA05:ISA06.
    pub sender: String,
    /// ISA13.
    pub control: String,
    /// Seen before (same sender and ISA13): nothing was done again. The inbox message that
    /// brought it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<i64>,
    pub sets: usize,
    /// Sets without errors (their events were recorded).
    pub accepted_sets: usize,
    /// Sets with errors: rejected in the 997, no events.
    pub rejected_sets: usize,
    pub events_accepted: usize,
    pub events_duplicate: usize,
    /// 997s received for groups crossdock sent.
    pub acks_received: usize,
    /// 997s queued for the partner.
    pub acks_queued: usize,
    /// Problems with the interchange, its groups and sets, each with its position.
    pub problems: Vec<String>,
    /// Lines of accepted sets that could not become movements (unmapped item ids, unknown
    /// items or locations, fractional quantities). The message stays in the inbox as rejected,
    /// to be replayed after a fix; what was recorded is not recorded twice.
    pub errors: Vec<String>,
}

/// What `POST /v1/edi/{partner}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdiReceipt {
    /// The inbox message keeping the raw bytes.
    pub inbox_id: i64,
    pub interchanges: Vec<InterchangeReceipt>,
}

#[derive(Debug, thiserror::Error)]
pub enum EdiInboundError {
    #[error("no EDI partner named {0:?}; add [edi.{0}] to the configuration")]
    UnknownPartner(String),
    #[error("the body holds no interchange: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

struct ParsedSet {
    group: GroupHeader,
    id: String,
    control: String,
    document: Option<Document>,
    errors: bool,
}

#[derive(Default)]
struct ParsedInterchange {
    header: InterchangeHeader,
    sets: Vec<ParsedSet>,
    problems: Vec<String>,
    problem_count: usize,
    acks: Vec<GroupAck>,
}

impl ParsedInterchange {
    fn note(&mut self, problem: &Problem) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_LISTED {
            self.problems.push(problem.to_string());
        }
    }
}

#[derive(Default)]
struct Collect {
    done: Vec<ParsedInterchange>,
    open: ParsedInterchange,
    acks: AckBuilder,
}

impl TypedHandler for Collect {
    fn set(&mut self, set: &mut SetRead<'_>) {
        for problem in set.problems {
            self.open.note(problem);
        }
        self.open.sets.push(ParsedSet {
            group: set.group.clone(),
            id: set.report.header.id.clone(),
            control: set.report.header.control.clone(),
            errors: set.has_errors(),
            document: set.document.take(),
        });
        self.acks.set(set);
    }

    fn group_end(&mut self, interchange: &InterchangeHeader, report: &GroupReport) {
        for problem in &report.problems {
            self.open.note(problem);
        }
        self.acks.group_end(interchange, report);
    }

    fn interchange_end(&mut self, report: &InterchangeReport) {
        let mut done = std::mem::take(&mut self.open);
        for problem in &report.problems {
            done.note(problem);
        }
        done.header = report.header.clone();
        done.acks = std::mem::take(&mut self.acks.acks);
        self.done.push(done);
    }
}

fn mapping(partner: &EdiPartnerConfig) -> Result<Mapping, String> {
    let location = LocationId::parse(&partner.location).map_err(|e| e.to_string())?;
    let mut mapping = Mapping::new(location);
    mapping.sku_qualifiers.clone_from(&partner.sku_qualifiers);
    mapping
        .on_hand_qualifier
        .clone_from(&partner.on_hand_qualifier);
    for (warehouse, location) in &partner.warehouses {
        let location = LocationId::parse(location).map_err(|e| e.to_string())?;
        mapping.locations.push((warehouse.clone(), location));
    }
    Ok(mapping)
}

/// Keeps `body` in the inbox, then processes it. The answer lists every interchange.
pub async fn receive(
    state: &AppState,
    partner: &str,
    body: &[u8],
    headers: Vec<(String, String)>,
    correlation_id: &str,
) -> Result<EdiReceipt, EdiInboundError> {
    if !state.config.edi.contains_key(partner) {
        return Err(EdiInboundError::UnknownPartner(partner.to_owned()));
    }
    let mut headers = headers;
    headers.push((PARTNER_HEADER.into(), partner.into()));
    let inbox_id = state
        .store
        .inbox_put(InboxMessage {
            source: partner.into(),
            protocol: PROTOCOL_X12.into(),
            headers,
            body: body.to_vec(),
            received_at: state.clock.now(),
            status: InboxStatus::Received,
            error: None,
            correlation_id: Some(correlation_id.to_owned()),
        })
        .await?;
    process(state, partner, body, inbox_id, correlation_id).await
}

/// Processes X12 already kept as inbox message `inbox_id` (first delivery or replay), and marks
/// the message processed, or rejected with what is wrong.
pub async fn process(
    state: &AppState,
    partner_id: &str,
    body: &[u8],
    inbox_id: i64,
    correlation_id: &str,
) -> Result<EdiReceipt, EdiInboundError> {
    let partner = state
        .config
        .edi
        .get(partner_id)
        .ok_or_else(|| EdiInboundError::UnknownPartner(partner_id.to_owned()))?;
    let owned = body.to_vec();
    let parsed = tokio::task::spawn_blocking(move || {
        let mut collect = Collect::default();
        read_slice(&owned, &mut collect);
        collect.done
    })
    .await
    .map_err(|e| EdiInboundError::Internal(format!("the X12 reader stopped: {e}")))?;
    let now = state.clock.now();
    if parsed.is_empty()
        || parsed
            .iter()
            .all(|i| i.sets.is_empty() && i.header.control.is_empty())
    {
        let why = parsed
            .iter()
            .flat_map(|i| i.problems.iter())
            .next()
            .cloned()
            .unwrap_or_else(|| "the body is empty".into());
        state
            .store
            .inbox_mark(inbox_id, InboxStatus::Rejected, Some(why.clone()), now)
            .await?;
        return Err(EdiInboundError::Unreadable(why));
    }
    let mapping = mapping(partner)
        .map_err(|e| EdiInboundError::Internal(format!("edi.{partner_id}: {e}")))?;
    let mut receipts = Vec::new();
    for interchange in parsed {
        receipts.push(
            interchange_events(
                state,
                partner_id,
                partner,
                &mapping,
                interchange,
                inbox_id,
                correlation_id,
            )
            .await?,
        );
    }
    let errors: Vec<&String> = receipts.iter().flat_map(|r| &r.errors).collect();
    let (status, error) = if errors.is_empty() {
        (InboxStatus::Processed, None)
    } else {
        let summary = format!(
            "{} lines could not be recorded; first: {}",
            errors.len(),
            errors[0]
        );
        (InboxStatus::Rejected, Some(summary))
    };
    state.store.inbox_mark(inbox_id, status, error, now).await?;
    Ok(EdiReceipt {
        inbox_id,
        interchanges: receipts,
    })
}

/// A purchase order as an order of `channel` (the body `POST /v1/orders` takes): BEG03 its
/// external id, each PO1 a line by our SKU with its price and the order's currency, the N1*ST
/// party its ship-to (`country` when its N4 names none).
fn order_of_850(
    po: &crossdock_edi::sets::PurchaseOrder,
    channel: &str,
    country: Option<&str>,
    mapping: &Mapping,
) -> Result<serde_json::Value, Vec<String>> {
    let channel_id = crossdock_core::catalog::ChannelId::parse(channel)
        .map_err(|why| vec![format!("channel {channel:?}: {why}")])?;
    let spec = convert::order_from_850(po, &channel_id, mapping)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let lines: Vec<serde_json::Value> = spec
        .lines()
        .iter()
        .map(|l| {
            let mut line = serde_json::json!({"sku": l.sku, "quantity": l.quantity});
            if let Some(price) = l.unit_price {
                line["unit_price"] = serde_json::json!(price.to_string());
                if let Some(currency) = &spec.currency {
                    line["currency"] = serde_json::json!(currency);
                }
            }
            line
        })
        .collect();
    let mut body = serde_json::json!({"channel": channel, "external_id": spec.external_id,
        "lines": lines});
    if let Some(st) = po.parties.iter().find(|p| p.role.as_str() == "ST") {
        let text = |t: Option<&crossdock_edi::text::Text>| t.map(|t| t.as_str().to_owned());
        let mut ship_to = serde_json::Map::new();
        let members = [
            ("name", text(st.name.as_ref())),
            ("address1", text(st.address.first())),
            ("address2", text(st.address.get(1))),
            ("city", text(st.city.as_ref())),
            ("region", text(st.state.as_ref())),
            ("postal_code", text(st.postal_code.as_ref())),
            (
                "country",
                text(st.country.as_ref()).or_else(|| country.map(str::to_owned)),
            ),
        ];
        for (name, value) in members {
            if let Some(value) = value {
                ship_to.insert(name.into(), serde_json::Value::String(value));
            }
        }
        body["ship_to"] = serde_json::Value::Object(ship_to);
    }
    Ok(body)
}

fn ack_status(ack: &FunctionalAck) -> &'static str {
    match ack.status.as_str() {
        "A" => "accepted",
        "E" => "accepted_with_errors",
        "P" => "partial",
        _ => "rejected",
    }
}

#[allow(clippy::too_many_arguments)]
async fn interchange_events(
    state: &AppState,
    partner_id: &str,
    partner: &EdiPartnerConfig,
    mapping: &Mapping,
    interchange: ParsedInterchange,
    inbox_id: i64,
    correlation_id: &str,
) -> Result<InterchangeReceipt, EdiInboundError> {
    let h = &interchange.header;
    let sender = format!("{}:{}", h.sender_qualifier, h.sender);
    let mut receipt = InterchangeReceipt {
        sender: sender.clone(),
        control: h.control.clone(),
        sets: interchange.sets.len(),
        problems: interchange.problems.clone(),
        ..InterchangeReceipt::default()
    };
    if interchange.problem_count > interchange.problems.len() {
        receipt.problems.push(format!(
            "… and {} more (crossdock edi validate lists them all)",
            interchange.problem_count - interchange.problems.len()
        ));
    }
    let now = state.clock.now();
    if let EdiInbound::Duplicate {
        inbox_id: first, ..
    } = state
        .store
        .edi_inbound(&sender, &h.control, partner_id, Some(inbox_id), now)
        .await?
        && first != Some(inbox_id)
    {
        receipt.duplicate_of = first.or(Some(0));
        return Ok(receipt);
    }

    let source = format!("/edi/{partner_id}");
    let mut events: Vec<NewEvent> = Vec::new();
    let mut movements: Vec<(String, InventoryEvent)> = Vec::new();
    let key = |set: &ParsedSet| {
        format!(
            "{sender}/{}/{}/{}",
            h.control, set.group.control, set.control
        )
    };
    let to_event =
        |id: &str, kind: &str, data: &serde_json::Value| -> Result<NewEvent, FieldError> {
            let mut event = NewEvent::new(id, &source, kind, Some(data))?;
            event.correlate(correlation_id);
            Ok(event)
        };
    for set in &interchange.sets {
        let Some(document) = set.document.as_ref().filter(|_| !set.errors) else {
            receipt.rejected_sets += 1;
            continue;
        };
        receipt.accepted_sets += 1;
        let id = key(set);
        let data = serde_json::json!({
            "partner": partner_id, "sender": sender, "interchange": h.control,
            "group": set.group.control, "functional_id": set.group.functional_id,
            "control": set.control, "document": document,
        });
        match to_event(&id, &format!("edi.{}.received", set.id), &data) {
            Ok(event) => events.push(event),
            Err(e) => receipt.errors.push(format!("set {}: {e}", set.control)),
        }
        if let (Document::PurchaseOrder(po), Some(channel)) = (document, &partner.channel) {
            match order_of_850(po, channel, partner.country.as_deref(), mapping) {
                Ok(body) => match to_event(&format!("{id}/order"), "order.placed", &body) {
                    Ok(event) => events.push(event),
                    Err(e) => receipt.errors.push(format!("set {}: {e}", set.control)),
                },
                Err(errors) => receipt.errors.extend(
                    errors
                        .into_iter()
                        .map(|e| format!("set {} (850) {e}", set.control)),
                ),
            }
        }
        let (converted, errors) = match document {
            Document::InventoryAdvice(d) => convert::counts_from_846(d, mapping),
            Document::ReceiptAdvice(d) => convert::receipts_from_944(d, mapping),
            Document::ShippingAdvice(d) => convert::shipments_from_945(d, mapping),
            Document::AdjustmentAdvice(d) => convert::adjustments_from_947(d, mapping),
            Document::FunctionalAck(ack) => {
                let detail = serde_json::to_value(ack).unwrap_or_default();
                match state
                    .store
                    .edi_ack_received(partner_id, &ack.group_control, ack_status(ack), detail, now)
                    .await?
                {
                    EdiAckOutcome::Recorded { .. } => receipt.acks_received += 1,
                    EdiAckOutcome::UnknownGroup => receipt.errors.push(format!(
                        "set {}: a 997 for group {} ({}), which crossdock did not send to {partner_id}",
                        set.control, ack.group_control, ack.functional_id
                    )),
                }
                (Vec::new(), Vec::new())
            }
            _ => (Vec::new(), Vec::new()),
        };
        for error in errors {
            receipt
                .errors
                .push(format!("set {} ({}) {error}", set.control, set.id));
        }
        for (line, movement) in converted.into_iter().enumerate() {
            movements.push((format!("{id}/{}", line + 1), movement));
        }
    }

    // Movements are checked against the catalog one by one: a line naming an unknown item is
    // reported, the others are recorded.
    let parsed: Vec<(String, crossdock_core::inventory::Movement)> = movements
        .iter()
        .map(|(id, m)| (id.clone(), m.movement.clone()))
        .collect();
    let problems = crate::ingest::check_movements(state, &parsed).await?;
    for (id, movement) in &movements {
        if let Some(problem) = problems
            .iter()
            .find(|p| p.pointer.starts_with(id.as_str()) && p.pointer[id.len()..].starts_with('/'))
        {
            receipt.errors.push(format!("{id}: {}", problem.detail));
            continue;
        }
        let (sku, _) = movement.movement.touches();
        match to_event(id, movement.movement.kind(), &movement.data())
            .and_then(|e| e.with_subject(sku.as_str()))
        {
            Ok(event) => events.push(event),
            Err(e) => receipt.errors.push(format!("{id}: {e}")),
        }
    }
    if !events.is_empty() {
        let outcome = crate::ingest::accept_events(state, events)
            .await
            .map_err(|e| match e {
                crate::ingest::IngestError::Store(e) => EdiInboundError::Store(e),
                other => EdiInboundError::Internal(other.to_string()),
            })?;
        receipt.events_accepted = outcome.appended();
        receipt.events_duplicate = outcome.duplicates();
    }

    if partner.acknowledge && !interchange.acks.is_empty() {
        let count = u32::try_from(interchange.acks.len()).unwrap_or(u32::MAX);
        let isa = state
            .store
            .edi_controls(partner_id, EdiControl::Interchange, 1)
            .await?;
        let gs = state
            .store
            .edi_controls(partner_id, EdiControl::Group, count)
            .await?;
        let (date, time) = crossdock_edi::writer::envelope_stamp(now);
        match write_acks(&interchange.acks, isa, gs, &date, &time, None) {
            Ok((bytes, _, _)) => {
                let action = NewAction {
                    target: format!("edi-{partner_id}"),
                    idempotency_key: format!("997/{sender}/{}", h.control),
                    coalesce_key: None,
                    priority: 0,
                    payload: serde_json::json!({
                        "type": "edi.997",
                        "partner": partner_id,
                        "acknowledges": {"sender": sender, "interchange": h.control},
                        "x12": String::from_utf8_lossy(&bytes),
                    })
                    .to_string(),
                    not_before: now,
                    correlation_id: Some(correlation_id.to_owned()),
                    causation_id: None,
                };
                state.store.enqueue(vec![action], now).await?;
                receipt.acks_queued = interchange.acks.len();
            }
            Err(e) => receipt
                .errors
                .push(format!("the 997 cannot be written for this sender: {e}")),
        }
    }
    Ok(receipt)
}
