//! Returns: `POST /v1/returns` authorizes an RMA for shipped lines of an order; the goods
//! arriving (`return.received`, a disposition per line) put restocked units back on hand at the
//! receiving location (scrapped ones stay off), record the credit as negative posting lines and
//! ask the ERP for a credit memo; `erp.credit_memo.created` closes the return.

use crossdock_core::catalog::{LocationId, Sku};
use crossdock_core::json::{Fields, QUANTITY_ABS_MAX};
use crossdock_core::order::Order;
use crossdock_core::returns::{
    Return, ReturnAction, ReturnInput, ReturnLine, ReturnPolicy, ReturnStatus,
};
use crossdock_core::{FieldError, Timestamp};
use crossdock_store::{NewAction, NewOrder, OrderCreate};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::orders::{self, TakeError};

/// The inbox protocol of an RMA sent to `POST /v1/returns` that could not be read.
pub const PROTOCOL_RETURN: &str = "http+return";

/// Lines of one return at most.
const RETURN_LINES_MAX: usize = 1000;

/// An RMA as sent, read but not yet checked against its order.
#[derive(Clone, Debug)]
pub struct ReturnIn {
    pub order_id: String,
    pub rma: String,
    pub delivery_id: Option<String>,
    /// Order line and units.
    pub lines: Vec<(u32, i64)>,
    pub body: Value,
}

/// Reads an RMA's shape: `{order_id, rma, delivery_id?, lines: [{line, quantity}]}`.
pub fn parse(value: &Value) -> Result<ReturnIn, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut f = Fields::new(value, "", &mut errors);
    let order_id = f.string("order_id", true, 64);
    let rma = f.string("rma", true, 128);
    let delivery_id = f.string("delivery_id", false, 256);
    let lines = f.array("lines", true, RETURN_LINES_MAX, |line, at, errors| {
        let mut f = Fields::new(line, at, errors);
        let number = f.int("line", true, 1, i64::from(u32::MAX));
        let quantity = f.int("quantity", true, 1, QUANTITY_ABS_MAX);
        f.finish();
        Some((u32::try_from(number?).ok()?, quantity?))
    });
    f.finish();
    match (order_id, rma, lines) {
        (Some(order_id), Some(rma), Some(lines)) if errors.is_empty() => Ok(ReturnIn {
            order_id,
            rma,
            delivery_id,
            lines,
            body: value.clone(),
        }),
        _ => Err(errors),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    #[error("there is no order {0:?}")]
    UnknownOrder(String),
    #[error("the return cannot be authorized: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("RMA {rma} was authorized before (as {id}) with other content")]
    Changed { id: String, rma: String },
    #[error(transparent)]
    Take(#[from] TakeError),
}

impl From<crossdock_store::StoreError> for ReturnError {
    fn from(e: crossdock_store::StoreError) -> Self {
        ReturnError::Take(TakeError::Store(e))
    }
}

/// What became of an RMA sent in.
pub struct Authorized {
    pub id: String,
    pub created: bool,
    pub ret: Return,
}

fn record(ret: &Return, request: &Value) -> String {
    json!({"return": ret, "request": request}).to_string()
}

/// The lines of `order` an RMA may name: each at most what shipped of it.
fn check(
    order: &Order,
    lines: &[(u32, i64)],
    already: &std::collections::BTreeMap<u32, i64>,
) -> Result<Vec<ReturnLine>, Vec<String>> {
    let Some(spec) = &order.spec else {
        return Err(vec![format!("order {} has no lines yet", order.id)]);
    };
    let mut reasons = Vec::new();
    let mut checked = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (line, quantity) in lines {
        if !seen.insert(*line) {
            reasons.push(format!("line {line} appears twice"));
            continue;
        }
        let Some(l) = spec.lines().iter().find(|l| l.line == *line) else {
            reasons.push(format!("order {} has no line {line}", order.id));
            continue;
        };
        let shipped = order.shipped.get(line).copied().unwrap_or(0);
        let other = already.get(line).copied().unwrap_or(0);
        if *quantity > shipped - other {
            let under = if other > 0 {
                format!(", {other} authorized under other RMAs")
            } else {
                String::new()
            };
            reasons.push(format!(
                "line {line}: {quantity} to return, {shipped} shipped{under}"
            ));
            continue;
        }
        checked.push(ReturnLine {
            line: *line,
            sku: l.sku.clone(),
            quantity: *quantity,
        });
    }
    if reasons.is_empty() {
        Ok(checked)
    } else {
        Err(reasons)
    }
}

/// Authorizes a return once per channel and RMA number (and per delivery id).
pub async fn authorize(state: &AppState, input: ReturnIn) -> Result<Authorized, ReturnError> {
    let Some(orders::Stored {
        order,
        record: order_record,
        ..
    }) = orders::load(state, &input.order_id).await?
    else {
        return Err(ReturnError::UnknownOrder(input.order_id));
    };
    // What the order's other RMAs authorized already (this RMA sent again is not counted).
    let mut already = std::collections::BTreeMap::new();
    for other in order_record["returns"].as_array().into_iter().flatten() {
        if other["rma"].as_str() == Some(input.rma.as_str()) {
            continue;
        }
        let Some(id) = other["id"].as_str() else {
            continue;
        };
        if let Some(stored) = load(state, id).await? {
            for l in &stored.ret.lines {
                *already.entry(l.line).or_insert(0) += l.quantity;
            }
        }
    }
    let lines = check(&order, &input.lines, &already).map_err(ReturnError::Invalid)?;
    let channel = order
        .spec
        .as_ref()
        .map(|s| s.channel.to_string())
        .unwrap_or_default();
    let now = state.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let mut ret = Return::new(&id);
    ret.handle(
        &ReturnInput::Authorized {
            order_id: input.order_id.clone(),
            lines,
        },
        now,
        &ReturnPolicy::default(),
    );
    let hash = orders::content_hash(&input.body);
    let outcome = state
        .store
        .return_create(NewOrder {
            id: id.clone(),
            channel,
            external_id: input.rma.clone(),
            content_hash: hash,
            delivery_id: input.delivery_id.clone(),
            status: status_name(ret.status).into(),
            until: ret.until,
            state: record(&ret, &input.body),
            now,
        })
        .await?;
    match outcome {
        OrderCreate::Created => {
            orders::note_return(state, &input.order_id, &id, &input.rma).await?;
            Ok(Authorized {
                id,
                created: true,
                ret,
            })
        }
        OrderCreate::Duplicate {
            id,
            same_content: true,
        } => {
            let Some(stored) = load(state, &id).await? else {
                return Err(TakeError::Corrupt(id, "it is gone".into()).into());
            };
            Ok(Authorized {
                id,
                created: false,
                ret: stored.ret,
            })
        }
        OrderCreate::Duplicate { id, .. } => Err(ReturnError::Changed { id, rma: input.rma }),
    }
}

/// A return as stored, and the version to save it at.
pub struct StoredReturn {
    pub ret: Return,
    pub version: i64,
    pub record: Value,
}

/// Reads a return once; `None` when there is no such return.
pub async fn load(state: &AppState, id: &str) -> Result<Option<StoredReturn>, TakeError> {
    let Some(row) = state.store.return_get(id).await? else {
        return Ok(None);
    };
    let (ret, record) = orders::saga_record(id, &row.state, "return")?;
    Ok(Some(StoredReturn {
        ret,
        version: row.version,
        record,
    }))
}

/// Feeds one input to a stored return, carries out its actions and saves it; retried when
/// another step saved first. `None` when there is no such return.
pub async fn advance(
    state: &AppState,
    id: &str,
    input: ReturnInput,
    correlation_id: &str,
) -> Result<Option<Return>, TakeError> {
    let policy = ReturnPolicy::default();
    for _ in 0..8 {
        let Some(StoredReturn {
            mut ret,
            version,
            record,
        }) = load(state, id).await?
        else {
            return Ok(None);
        };
        let now = state.clock.now();
        let decision = ret.handle(&input, now, &policy);
        for action in &decision.actions {
            act(state, &ret, action, correlation_id, now).await?;
        }
        let saved = json!({"return": ret, "request": record["request"]});
        if state
            .store
            .return_save(
                id,
                version,
                status_name(ret.status),
                ret.until,
                &saved.to_string(),
                now,
            )
            .await?
        {
            return Ok(Some(ret));
        }
    }
    Err(TakeError::Moved(id.to_owned()))
}

async fn act(
    state: &AppState,
    ret: &Return,
    action: &ReturnAction,
    correlation_id: &str,
    now: Timestamp,
) -> Result<(), TakeError> {
    let order_id = ret.order_id.clone().unwrap_or_default();
    match action {
        ReturnAction::Restock {
            location,
            lines,
            key,
        } => {
            let moved: Vec<(u32, Sku, i64)> = lines
                .iter()
                .enumerate()
                .map(|(i, (sku, quantity))| {
                    (
                        u32::try_from(i + 1).unwrap_or(u32::MAX),
                        sku.clone(),
                        *quantity,
                    )
                })
                .collect();
            orders::record_movements(
                state,
                "inventory.returned",
                location,
                &format!("crossdock-{key}"),
                &moved,
                &order_id,
                &ret.id,
                correlation_id,
            )
            .await
        }
        ReturnAction::CreateCreditMemo { key } => {
            let spec = orders::load(state, &order_id)
                .await?
                .and_then(|stored| stored.order.spec);
            let received: Vec<(u32, i64)> = ret
                .received
                .iter()
                .map(|(line, (units, _))| (*line, *units))
                .collect();
            let mut lines = Vec::new();
            if let Some(spec) = &spec {
                let day = crate::postings::day(state, now);
                let posting =
                    crate::postings::return_lines(&ret.id, &order_id, spec, &received, &day);
                state.store.posting_lines_add(posting, now).await?;
                for (line, (units, restocked)) in &ret.received {
                    let Some(l) = spec.lines().iter().find(|l| l.line == *line) else {
                        continue;
                    };
                    lines.push(json!({"line": line, "sku": l.sku, "quantity": units,
                        "restocked": restocked, "unit_price": l.unit_price}));
                }
            }
            let payload = json!({
                "type": "erp.credit_memo.create",
                "return_id": ret.id,
                "order_id": order_id,
                "channel": spec.as_ref().map(|s| s.channel.to_string()),
                "external_id": spec.as_ref().map(|s| s.external_id.clone()),
                "currency": spec.as_ref().and_then(|s| s.currency.clone()),
                "lines": lines,
            });
            state
                .store
                .enqueue(
                    vec![NewAction {
                        target: "erp".into(),
                        idempotency_key: key.clone(),
                        coalesce_key: None,
                        priority: 0,
                        payload: payload.to_string(),
                        not_before: now,
                        correlation_id: Some(correlation_id.to_owned()),
                        causation_id: None,
                    }],
                    now,
                )
                .await?;
            state.outbox_wake.notify_waiters();
            Ok(())
        }
    }
}

/// The receiving location of a `return.received` event: the one it names, else where the order
/// shipped from.
pub async fn receiving_location(
    state: &AppState,
    ret_id: &str,
    named: Option<LocationId>,
) -> Result<Option<LocationId>, TakeError> {
    if named.is_some() {
        return Ok(named);
    }
    let Some(stored) = load(state, ret_id).await? else {
        return Ok(None);
    };
    let Some(order_id) = stored.ret.order_id else {
        return Ok(None);
    };
    Ok(orders::load(state, &order_id)
        .await?
        .and_then(|o| o.order.location))
}

/// The wire name of a return status.
pub fn status_name(status: ReturnStatus) -> &'static str {
    match status {
        ReturnStatus::Unknown => "unknown",
        ReturnStatus::Authorized => "authorized",
        ReturnStatus::Received => "received",
        ReturnStatus::Credited => "credited",
        ReturnStatus::Closed => "closed",
        ReturnStatus::Exception => "exception",
    }
}
