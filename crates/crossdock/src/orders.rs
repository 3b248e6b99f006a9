//! Orders in: the one ingestion path (`POST /v1/orders` today; connectors and EDI 850s will call
//! [`take`] too). An order is taken once — per delivery id, and per channel and external id — and
//! checked; an invalid one is kept as an exception with its reasons (never dropped) and is
//! corrected by sending it again. A valid one goes through its saga's first step: stock held at
//! the first of the channel's locations that can ship it whole (or backordered), then the ERP
//! sales order queued for target `erp`.

use crossdock_core::catalog::{ChannelId, ChannelSku, LocationId, Sku};
use crossdock_core::json::{Fields, QUANTITY_ABS_MAX};
use crossdock_core::money::{Amount, is_currency};
use crossdock_core::order::{Action, Input, Line, Order, Policy, Spec, Status};
use crossdock_core::{FieldError, Timestamp};
use crossdock_store::{
    NewAction, NewOrder, OrderCreate, OrderTaken, ReserveOutcome, StoreError, TakeHold,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::runtime::inventory::{self as engine, HoldError, HoldLine};

/// The inbox protocol of an order sent to `POST /v1/orders` that could not be read: kept, and
/// taken when replayed after a fix.
pub const PROTOCOL_ORDER: &str = "http+order";

/// Lines of one order at most.
pub const ORDER_LINES_MAX: usize = 1000;
/// Members of `ship_to` an order with lines to ship must have.
const SHIP_TO_REQUIRED: [&str; 5] = ["name", "address1", "city", "postal_code", "country"];

/// An order as a channel sends it, read but not yet checked against the catalog.
#[derive(Clone, Debug)]
pub struct OrderIn {
    pub channel: String,
    pub external_id: String,
    pub delivery_id: Option<String>,
    pub lines: Vec<LineIn>,
    pub ship_to: Option<Value>,
    /// When the channel last changed it (an `order.updated` is applied only when newer).
    pub updated_at: Option<Timestamp>,
    /// The request, for the content hash and for the record of an invalid order.
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct LineIn {
    pub sku: Option<String>,
    pub channel_sku: Option<String>,
    pub quantity: i64,
    pub unit_price: Option<String>,
    pub currency: Option<String>,
}

/// Reads an order's shape; what is wrong with its content (unknown SKUs, quantities, currency,
/// ship-to) is not an error here but a reason to keep it as an exception.
pub fn parse(value: &Value) -> Result<OrderIn, Vec<FieldError>> {
    parse_at(value, "")
}

/// [`parse`] for an order inside a larger document (an event's `data`): problems point under
/// `at`.
pub fn parse_at(value: &Value, at: &str) -> Result<OrderIn, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut f = Fields::new(value, at, &mut errors);
    let channel = f.string("channel", true, 64);
    let external_id = f.string("external_id", true, 128);
    let delivery_id = f.string("delivery_id", false, 256);
    let lines = f.array("lines", true, ORDER_LINES_MAX, |line, at, errors| {
        let mut f = Fields::new(line, at, errors);
        let sku = f.string("sku", false, 128);
        let channel_sku = f.string("channel_sku", false, 128);
        let quantity = f.int("quantity", true, -QUANTITY_ABS_MAX, QUANTITY_ABS_MAX);
        let unit_price = f.string("unit_price", false, 32);
        let currency = f.string("currency", false, 3);
        if sku.is_none() && channel_sku.is_none() {
            f.problem(
                "sku",
                "a line names our `sku` or the channel's `channel_sku`",
            );
        }
        f.finish();
        Some(LineIn {
            sku,
            channel_sku,
            quantity: quantity?,
            unit_price,
            currency,
        })
    });
    let ship_to = f.object("ship_to", false, |v, _, _| Some(v.clone()));
    if let Some(date) = f.string("requested_ship_date", false, 10)
        && (date.len() != 10 || Timestamp::parse_rfc3339(&format!("{date}T00:00:00Z")).is_err())
    {
        f.problem("requested_ship_date", "is not a date such as 2026-12-01");
    }
    let updated_at = f.string("updated_at", false, 64);
    if let Some(text) = &updated_at
        && let Err(why) = Timestamp::parse_rfc3339(text)
    {
        f.problem("updated_at", why);
    }
    f.finish();
    match (channel, external_id, lines) {
        (Some(channel), Some(external_id), Some(lines)) if errors.is_empty() => Ok(OrderIn {
            channel,
            external_id,
            delivery_id,
            lines,
            ship_to,
            updated_at: updated_at.and_then(|t| Timestamp::parse_rfc3339(&t).ok()),
            body: value.clone(),
        }),
        _ => Err(errors),
    }
}

/// A request's content without its delivery id and update time: the same order (or RMA)
/// delivered again hashes the same.
pub(crate) fn content_hash(body: &Value) -> String {
    // The members by reference, in key order (as a JSON object is written): no copy of the body.
    let text = match body.as_object() {
        Some(object) => {
            let content: std::collections::BTreeMap<&String, &Value> = object
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "delivery_id" | "updated_at"))
                .collect();
            serde_json::to_string(&content).unwrap_or_default()
        }
        None => body.to_string(),
    };
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Checks an order against the catalog: a valid spec, or every reason it is not one.
async fn check(
    order: &OrderIn,
    state: &AppState,
    catalog: &engine::CatalogIndex,
) -> Result<Result<Spec, Vec<String>>, StoreError> {
    let mut reasons = Vec::new();
    let channel = match ChannelId::parse(&order.channel) {
        Ok(c) if catalog.snapshot.channels.contains_key(&c) => Some(c),
        Ok(c) => {
            reasons.push(format!("channel {c} is not configured"));
            None
        }
        Err(why) => {
            reasons.push(format!("channel {:?}: {why}", order.channel));
            None
        }
    };
    let named: Vec<Sku> = order
        .lines
        .iter()
        .filter_map(|l| l.sku.as_deref().and_then(|s| Sku::parse(s).ok()))
        .collect();
    let known = if named.is_empty() {
        std::collections::BTreeSet::new()
    } else {
        state.store.items_known(named).await?
    };
    if order.lines.is_empty() {
        reasons.push("an order needs at least one line".to_owned());
    }
    let mut currency: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in order.lines.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let sku = match (&line.sku, &line.channel_sku, &channel) {
            (Some(sku), _, _) => match Sku::parse(sku) {
                Ok(sku) if known.contains(&sku) => Some(sku),
                Ok(sku) => {
                    reasons.push(format!("line {n}: SKU {sku} is not an item"));
                    None
                }
                Err(why) => {
                    reasons.push(format!("line {n}: SKU {sku:?}: {why}"));
                    None
                }
            },
            (None, Some(channel_sku), Some(channel)) => {
                let listed = ChannelSku::parse(channel_sku)
                    .ok()
                    .and_then(|cs| catalog.listed.get(&(channel.clone(), cs)).cloned());
                if listed.is_none() {
                    reasons.push(format!(
                        "line {n}: SKU {channel_sku} is not listed on channel {channel}"
                    ));
                }
                listed
            }
            _ => None,
        };
        if line.quantity < 1 {
            reasons.push(format!(
                "line {n}: quantity {} is not positive",
                line.quantity
            ));
        }
        let unit_price = match line.unit_price.as_deref().map(Amount::parse) {
            Some(Ok(price)) if price < Amount::ZERO => {
                reasons.push(format!("line {n}: unit_price {price} is negative"));
                None
            }
            Some(Ok(price)) => Some(price),
            Some(Err(why)) => {
                reasons.push(format!("line {n}: unit_price {why}"));
                None
            }
            None => None,
        };
        if let Some(code) = line.currency.as_deref()
            && !is_currency(code)
        {
            reasons.push(format!(
                "line {n}: currency {code:?} is not an ISO 4217 code (three capital letters)"
            ));
        }
        match (currency, line.currency.as_deref()) {
            (Some(first), Some(this)) if first != this => reasons.push(format!(
                "line {n}: currency {this} differs from the order's {first}"
            )),
            (None, Some(this)) => currency = Some(this),
            _ => {}
        }
        if let Some(sku) = sku {
            lines.push(Line {
                line: n,
                sku,
                quantity: line.quantity,
                unit_price,
            });
        }
    }
    let ship_to = order.ship_to.as_ref().and_then(Value::as_object);
    for member in SHIP_TO_REQUIRED {
        let present = ship_to
            .and_then(|s| s.get(member))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.trim().is_empty());
        if !present {
            reasons.push(format!("ship_to.{member} is missing"));
        }
    }
    Ok(match channel {
        Some(channel) if reasons.is_empty() => Spec::new(channel, &order.external_id, lines)
            .map(|spec| spec.with_currency(currency.map(str::to_owned)))
            .map_err(|why| vec![why]),
        _ => Err(reasons),
    })
}

/// What became of an order sent in.
#[derive(Clone, Debug)]
pub struct Taken {
    pub id: String,
    /// Recorded by this request (otherwise it was taken before).
    pub created: bool,
    pub order: Order,
    /// Why it is an exception, when it is an invalid one.
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error(
        "order {external_id} of channel {channel} was taken before (as {id}) with other content"
    )]
    Changed {
        id: String,
        channel: String,
        external_id: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored order {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("order {0} changed while this request was handled; send it again")]
    Moved(String),
}

/// The stored record of an order: its saga, the request it came in, why it is invalid (if it
/// is), and the outbox actions it queued (`{target, key}`, for its timeline).
fn record(order: &Order, request: &Value, reasons: &[String], actions: &[Value]) -> String {
    json!({"order": order, "request": request, "reasons": reasons, "actions": actions}).to_string()
}

/// `{target, key}` of an outbox action, as an order's record lists it.
fn action_ref(action: &NewAction) -> Value {
    json!({"target": action.target, "key": action.idempotency_key})
}

/// Carries out what the saga asked for (a reservation answers at once with the next input);
/// returns the outbox actions to queue with the order's save.
async fn carry_out(
    state: &AppState,
    order: &mut Order,
    mut pending: Vec<Action>,
    correlation_id: &str,
    now: Timestamp,
    policy: &Policy,
) -> Result<Vec<NewAction>, TakeError> {
    let mut queued = Vec::new();
    while !pending.is_empty() {
        let mut next = None;
        for action in std::mem::take(&mut pending) {
            if let Some(input) =
                act(state, order, &action, correlation_id, now, &mut queued).await?
            {
                next = Some(input);
            }
        }
        if let Some(input) = next {
            pending = order.handle(&input, now, policy).actions;
        }
    }
    Ok(queued)
}

/// Takes an order once: records it (or finds it), and carries a valid one through its first
/// saga steps.
pub async fn take(
    state: &AppState,
    order: OrderIn,
    correlation_id: &str,
) -> Result<Taken, TakeError> {
    let catalog = state
        .catalog
        .get(&state.store)
        .await
        .map_err(TakeError::Store)?;
    let now = state.clock.now();
    let hash = content_hash(&order.body);
    let checked = check(&order, state, &catalog).await?;
    let policy = saga_policy(&catalog, &order.channel);
    let id = uuid::Uuid::now_v7().to_string();
    // The record as it is first stored: taken (and its first actions to do), or invalid.
    let mut first = Order::new(&id);
    let mut pending = Vec::new();
    let reasons = match &checked {
        Ok(spec) => {
            pending = first
                .handle(&Input::Placed(spec.clone()), now, &policy)
                .actions;
            Vec::new()
        }
        Err(reasons) => {
            first.apply(&invalid(reasons), now);
            reasons.clone()
        }
    };
    let row = |o: &Order, state: String| NewOrder {
        id: id.clone(),
        channel: order.channel.clone(),
        external_id: order.external_id.clone(),
        content_hash: hash.clone(),
        delivery_id: order.delivery_id.clone(),
        status: status_name(o.status).into(),
        until: o.until,
        state,
        now,
    };
    // The common case in one commit: the order, its hold at the channel's first location and
    // the actions that follow (the ERP sales order), decided before and written together.
    if let Ok(spec) = &checked
        && let Some((held, hold)) =
            first_hold(state, &catalog, &first, spec, correlation_id, now, &policy)
    {
        let refs: Vec<Value> = hold.actions.iter().map(action_ref).collect();
        let taken = state
            .store
            .order_take(row(&held, record(&held, &order.body, &[], &refs)), hold)
            .await?;
        if let OrderTaken::Held { seq } = taken {
            crate::ingest::advance_head(state, seq);
            state.outbox_wake.notify_waiters();
            return Ok(Taken {
                id,
                created: true,
                order: held,
                reasons,
            });
        }
    }
    // Otherwise (taken before, or short at that location) the ordinary way.
    let outcome = state
        .store
        .order_create(row(&first, record(&first, &order.body, &reasons, &[])))
        .await?;
    let (id, created, mut current, version, mut actions) = match outcome {
        OrderCreate::Created => (id, true, first, 0, Vec::new()),
        OrderCreate::Duplicate { id, same_content } => {
            let Some(Stored {
                order: mut existing,
                version,
                record: stored,
            }) = load(state, &id).await?
            else {
                return Err(TakeError::Corrupt(id, "it is gone".into()));
            };
            // An invalid order is corrected by sending it again: the same channel and external
            // id, new content.
            if same_content || existing.spec.is_some() {
                if same_content {
                    return Ok(Taken {
                        id,
                        created: false,
                        order: existing,
                        reasons: Vec::new(),
                    });
                }
                return Err(TakeError::Changed {
                    id,
                    channel: order.channel,
                    external_id: order.external_id,
                });
            }
            match &checked {
                Ok(spec) => {
                    pending = existing
                        .handle(&Input::Placed(spec.clone()), now, &policy)
                        .actions;
                }
                Err(reasons) => existing.apply(&invalid(reasons), now),
            }
            let prior = stored["actions"].as_array().cloned().unwrap_or_default();
            (id, false, existing, version, prior)
        }
    };
    let to_queue = carry_out(state, &mut current, pending, correlation_id, now, &policy).await?;
    actions.extend(to_queue.iter().map(action_ref));
    if !created || current.spec.is_some() {
        let queued = !to_queue.is_empty();
        let saved = state
            .store
            .order_save(
                &id,
                version,
                status_name(current.status),
                current.until,
                &record(&current, &order.body, &reasons, &actions),
                to_queue,
                now,
            )
            .await?;
        if !saved {
            return Err(TakeError::Moved(id));
        }
        if queued {
            state.outbox_wake.notify_waiters();
        }
    }
    Ok(Taken {
        id,
        created,
        order: current,
        reasons,
    })
}

/// The order as it stands once held at the channel's first location, and the hold that takes it
/// there in the order's own commit — when every step up to then is an outbox action (`None`
/// otherwise, and the order goes the long way).
#[allow(clippy::too_many_arguments)]
fn first_hold(
    state: &AppState,
    catalog: &engine::CatalogIndex,
    first: &Order,
    spec: &Spec,
    correlation_id: &str,
    now: Timestamp,
    policy: &Policy,
) -> Option<(Order, TakeHold)> {
    let location = catalog
        .snapshot
        .channels
        .get(&spec.channel)?
        .locations
        .first()?
        .clone();
    let mut held = first.clone();
    let decided = held.handle(
        &Input::Reserved {
            location: location.clone(),
        },
        now,
        policy,
    );
    let actions = decided
        .actions
        .iter()
        .map(|a| outbox_action(&held, spec, a, correlation_id, now))
        .collect::<Option<Vec<_>>>()?;
    let lines: Vec<HoldLine> = spec
        .lines()
        .iter()
        .map(|l| HoldLine {
            sku: l.sku.clone(),
            location: location.clone(),
            quantity: l.quantity,
        })
        .collect();
    let reserve = engine::hold_request(
        state,
        catalog,
        &first.id,
        &lines,
        Some(correlation_id),
        None,
    )
    .ok()?;
    let hold = TakeHold { reserve, actions };
    Some((held, hold))
}

/// Feeds one input to a stored order's saga, carries out its actions and saves it; retried when
/// another step saved first. `None` when there is no such order.
pub async fn advance(
    state: &AppState,
    id: &str,
    input: Input,
    correlation_id: &str,
) -> Result<Option<Order>, TakeError> {
    let catalog = state.catalog.get(&state.store).await?;
    for _ in 0..8 {
        let Some(Stored {
            mut order,
            version,
            record: stored,
        }) = load(state, id).await?
        else {
            return Ok(None);
        };
        let now = state.clock.now();
        let channel = order.spec.as_ref().map(|s| s.channel.to_string());
        let policy = saga_policy(&catalog, channel.as_deref().unwrap_or_default());
        let before = order.clone();
        let pending = order.handle(&input, now, &policy).actions;
        let to_queue = carry_out(state, &mut order, pending, correlation_id, now, &policy).await?;
        if order == before && to_queue.is_empty() {
            // Nothing happened (a restock that is still short, a tick before any deadline):
            // nothing to save.
            return Ok(Some(order));
        }
        let mut record = stored;
        record["order"] = serde_json::to_value(&order)
            .map_err(|e| TakeError::Corrupt(id.to_owned(), e.to_string()))?;
        if !to_queue.is_empty() {
            let mut actions = record["actions"].as_array().cloned().unwrap_or_default();
            for reference in to_queue.iter().map(action_ref) {
                if !actions.contains(&reference) {
                    actions.push(reference);
                }
            }
            record["actions"] = Value::Array(actions);
        }
        let queued = !to_queue.is_empty();
        if state
            .store
            .order_save(
                id,
                version,
                status_name(order.status),
                order.until,
                &record.to_string(),
                to_queue,
                now,
            )
            .await?
        {
            if queued {
                state.outbox_wake.notify_waiters();
            }
            return Ok(Some(order));
        }
    }
    Err(TakeError::Moved(id.to_owned()))
}

/// Applies an input about an order known by its channel and external id — a cancellation or
/// payment from a connector — also when it arrives before the order itself: an order not seen
/// yet is recorded as `unknown` with the input noted, and the order, when it comes, picks it up.
/// Returns the order's id.
pub async fn note(
    state: &AppState,
    channel: &str,
    external_id: &str,
    input: Input,
    correlation_id: &str,
) -> Result<String, TakeError> {
    let now = state.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let mut placeholder = Order::new(&id);
    placeholder.handle(&input, now, &Policy::default());
    let outcome = state
        .store
        .order_create(NewOrder {
            id: id.clone(),
            channel: channel.to_owned(),
            external_id: external_id.to_owned(),
            content_hash: String::new(),
            delivery_id: None,
            status: status_name(placeholder.status).into(),
            until: None,
            state: record(&placeholder, &Value::Null, &[], &[]),
            now,
        })
        .await?;
    match outcome {
        OrderCreate::Created => Ok(id),
        OrderCreate::Duplicate { id, .. } => {
            advance(state, &id, input, correlation_id).await?;
            Ok(id)
        }
    }
}

/// Lists a return in its order's record (`returns: [{id, rma}]`), so the order's next RMAs are
/// checked against what it authorized.
pub async fn note_return(
    state: &AppState,
    order_id: &str,
    return_id: &str,
    rma: &str,
) -> Result<(), TakeError> {
    for _ in 0..8 {
        let Some(Stored {
            order,
            version,
            record: mut stored,
        }) = load(state, order_id).await?
        else {
            return Ok(());
        };
        let mut returns = stored["returns"].as_array().cloned().unwrap_or_default();
        returns.push(json!({"id": return_id, "rma": rma}));
        stored["returns"] = Value::Array(returns);
        if state
            .store
            .order_save(
                order_id,
                version,
                status_name(order.status),
                order.until,
                &stored.to_string(),
                Vec::new(),
                state.clock.now(),
            )
            .await?
        {
            return Ok(());
        }
    }
    Err(TakeError::Moved(order_id.to_owned()))
}

/// What an `order.updated` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Taken as new (it came before `order.placed`) or as the correction of an invalid order.
    Taken(String),
    /// Not newer than what is held: passed over.
    Stale(String),
    /// Newer, same lines: the request (ship-to, prices) recorded.
    Recorded(String),
    /// Newer with other lines: the order stopped as an exception for a person to decide.
    Amended(String),
}

/// Applies a channel's update of an order: only when its `updated_at` is newer than what is
/// held.
pub async fn update(
    state: &AppState,
    order: OrderIn,
    updated_at: Timestamp,
    correlation_id: &str,
) -> Result<Update, TakeError> {
    let body = order.body.clone();
    let id = match take(state, order, correlation_id).await {
        Ok(taken) => return Ok(Update::Taken(taken.id)),
        Err(TakeError::Changed { id, .. }) => id,
        Err(e) => return Err(e),
    };
    for _ in 0..8 {
        let Some(Stored {
            order,
            version,
            record: mut stored,
        }) = load(state, &id).await?
        else {
            return Err(TakeError::Corrupt(id, "it is gone".into()));
        };
        let held = stored["request"]["updated_at"]
            .as_str()
            .and_then(|t| Timestamp::parse_rfc3339(t).ok());
        if held.is_some_and(|held| held >= updated_at) {
            return Ok(Update::Stale(id));
        }
        let same_lines = stored["request"]["lines"] == body["lines"];
        if !same_lines {
            stored["amendment"] = body.clone();
            let what = "its lines differ (the new request is kept as `amendment`)".to_owned();
            // Keep the amendment first, then stop the saga (which saves its own record).
            let now = state.clock.now();
            if !state
                .store
                .order_save(
                    &id,
                    version,
                    status_name(order.status),
                    order.until,
                    &stored.to_string(),
                    Vec::new(),
                    now,
                )
                .await?
            {
                continue;
            }
            advance(state, &id, Input::Amended { what }, correlation_id).await?;
            return Ok(Update::Amended(id));
        }
        stored["request"] = body.clone();
        let now = state.clock.now();
        if state
            .store
            .order_save(
                &id,
                version,
                status_name(order.status),
                order.until,
                &stored.to_string(),
                Vec::new(),
                now,
            )
            .await?
        {
            return Ok(Update::Recorded(id));
        }
    }
    Err(TakeError::Moved(id))
}

/// The saga policy of a channel's orders: backordered or rejected when no location can ship
/// them whole, as the channel says.
fn saga_policy(catalog: &engine::CatalogIndex, channel: &str) -> Policy {
    let backorder = ChannelId::parse(channel)
        .ok()
        .and_then(|c| {
            catalog
                .snapshot
                .channels
                .get(&c)
                .map(|c| c.orders.backorder)
        })
        .unwrap_or(true);
    Policy {
        backorder,
        ..Policy::default()
    }
}

/// The change that makes an order an exception for being invalid.
fn invalid(reasons: &[String]) -> crossdock_core::order::Change {
    crossdock_core::order::Change::Status {
        to: Status::Exception,
        reason: format!("invalid: {}", reasons.join("; ")),
        until: None,
    }
}

/// Carries out one action; a reservation answers at once with the saga's next input.
async fn act(
    state: &AppState,
    order: &Order,
    action: &Action,
    correlation_id: &str,
    now: Timestamp,
    queued: &mut Vec<NewAction>,
) -> Result<Option<Input>, TakeError> {
    let Some(spec) = &order.spec else {
        return Ok(None);
    };
    match action {
        Action::Reserve => Ok(Some(route(state, order, spec, correlation_id).await?)),
        Action::ReleaseReservation => {
            match engine::release(state, &order.id, Some(correlation_id)).await {
                Ok(_) | Err(HoldError::Invalid(_)) => Ok(None),
                Err(HoldError::Store(e)) => Err(e.into()),
            }
        }
        Action::RecordShipment { shipment, lines } => {
            for location in order.locations() {
                let moved: Vec<(u32, Sku, i64)> = lines
                    .iter()
                    .filter(|(line, _)| order.location_of(*line) == Some(&location))
                    .filter_map(|(line, quantity)| {
                        let l = spec.lines().iter().find(|l| l.line == *line)?;
                        Some((*line, l.sku.clone(), *quantity))
                    })
                    .collect();
                if moved.is_empty() {
                    continue;
                }
                record_movements(
                    state,
                    "inventory.shipped",
                    &location,
                    &format!("crossdock-order/{}/{shipment}", order.id),
                    &moved,
                    &order.id,
                    shipment,
                    correlation_id,
                )
                .await?;
            }
            let day = crate::postings::day(state, now);
            let posting = crate::postings::shipment_lines(&order.id, spec, shipment, lines, &day);
            state.store.posting_lines_add(posting, now).await?;
            Ok(None)
        }
        other => {
            // Queued with the order's save, in its transaction.
            queued.extend(outbox_action(order, spec, other, correlation_id, now));
            Ok(None)
        }
    }
}

/// The outbox action that asks another system for a saga action (the ERP, the location's
/// fulfilment, the channel); `None` for an action crossdock carries out itself.
fn outbox_action(
    order: &Order,
    spec: &Spec,
    action: &Action,
    correlation_id: &str,
    now: Timestamp,
) -> Option<NewAction> {
    let (target, kind, key) = match action {
        Action::ReleaseToLocation { location, key } => (
            format!("fulfillment-{location}"),
            "fulfillment.release",
            key,
        ),
        Action::CancelFulfilment { location, key } => {
            (format!("fulfillment-{location}"), "fulfillment.cancel", key)
        }
        Action::NotifyChannelShipped { key, .. } => (
            format!("channel-{}", spec.channel),
            "channel.fulfillment",
            key,
        ),
        Action::CreateInvoice { key, .. } => ("erp".to_string(), "erp.invoice.create", key),
        Action::CreateErpOrder { key } => ("erp".to_string(), "erp.sales_order.create", key),
        Action::CancelErpOrder { key } => ("erp".to_string(), "erp.sales_order.cancel", key),
        Action::NotifyChannelRejected { key, .. } => (
            format!("channel-{}", spec.channel),
            "channel.order_rejected",
            key,
        ),
        Action::NotifyChannelCancelled { key } => (
            format!("channel-{}", spec.channel),
            "channel.order_cancelled",
            key,
        ),
        Action::Reserve | Action::ReleaseReservation | Action::RecordShipment { .. } => {
            return None;
        }
    };
    // A location's fulfilment sees the lines held there.
    let at = match action {
        Action::ReleaseToLocation { location, .. } | Action::CancelFulfilment { location, .. } => {
            Some(location)
        }
        _ => None,
    };
    let lines: Vec<&Line> = spec
        .lines()
        .iter()
        .filter(|l| at.is_none() || order.location_of(l.line) == at)
        .collect();
    let payload = json!({
        "type": kind,
        "action": action,
        "order_id": order.id,
        "channel": spec.channel,
        "external_id": spec.external_id,
        "currency": spec.currency,
        "location": at.or(order.location.as_ref()),
        "lines": lines,
    });
    Some(NewAction {
        target,
        idempotency_key: key.clone(),
        coalesce_key: None,
        priority: 0,
        payload: payload.to_string(),
        not_before: now,
        correlation_id: Some(correlation_id.to_owned()),
        causation_id: None,
    })
}

/// Records ledger movements an order or a return caused (`inventory.shipped`,
/// `inventory.returned`), one event per line with a stable id, under the name of the system
/// authoritative for the location — its warehouse confirmed them — so the ledger applies them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_movements(
    state: &AppState,
    kind: &str,
    location: &LocationId,
    id_prefix: &str,
    lines: &[(u32, Sku, i64)],
    order_id: &str,
    reference: &str,
    correlation_id: &str,
) -> Result<(), TakeError> {
    let catalog = state.catalog.get(&state.store).await?;
    let source = catalog
        .snapshot
        .locations
        .get(location)
        .map_or_else(|| "/crossdock/orders".to_owned(), |l| l.authority.clone());
    let mut events = Vec::new();
    for (line, sku, quantity) in lines {
        let data = json!({"sku": sku, "location": location, "quantity": quantity,
            "order_id": order_id, "reference": reference});
        let event = crossdock_core::NewEvent::new(
            &format!("{id_prefix}/{line}"),
            &source,
            kind,
            Some(&data),
        )
        .and_then(|e| e.with_subject(sku.as_str()));
        match event {
            Ok(mut event) => {
                event.correlate(correlation_id);
                events.push(event);
            }
            Err(e) => {
                tracing::warn!(order_id, kind, error = %e, "a ledger movement could not be built");
            }
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    crate::ingest::accept_events(state, events)
        .await
        .map(drop)
        .map_err(|e| match e {
            crate::ingest::IngestError::Store(e) => TakeError::Store(e),
            other => TakeError::Corrupt(order_id.to_owned(), other.to_string()),
        })
}

/// Holds the whole order at the first of the channel's locations that can ship it all.
async fn route(
    state: &AppState,
    order: &Order,
    spec: &Spec,
    correlation_id: &str,
) -> Result<Input, TakeError> {
    let catalog = state.catalog.get(&state.store).await?;
    let locations: Vec<LocationId> = catalog
        .snapshot
        .channels
        .get(&spec.channel)
        .map(|c| c.locations.clone())
        .unwrap_or_default();
    let mut short = Vec::new();
    for location in &locations {
        let lines = spec
            .lines()
            .iter()
            .map(|l| HoldLine {
                sku: l.sku.clone(),
                location: location.clone(),
                quantity: l.quantity,
            })
            .collect();
        match engine::reserve(state, &order.id, lines, Some(correlation_id)).await {
            Ok(ReserveOutcome::Reserved { .. } | ReserveOutcome::AlreadyReserved(_)) => {
                return Ok(Input::Reserved {
                    location: location.clone(),
                });
            }
            Ok(ReserveOutcome::Short(lines)) => {
                for s in lines {
                    short.push(format!(
                        "{} at {}: needs {}, {} available",
                        s.sku, s.location, s.needed, s.atp
                    ));
                }
            }
            Err(HoldError::Invalid(errors)) => {
                for e in errors {
                    short.push(format!("{location}: {}", e.detail));
                }
            }
            Err(HoldError::Store(e)) => return Err(e.into()),
        }
    }
    let split = catalog
        .snapshot
        .channels
        .get(&spec.channel)
        .is_some_and(|c| c.orders.split);
    if split
        && locations.len() > 1
        && let Some(input) = route_split(state, order, spec, &locations, correlation_id).await?
    {
        return Ok(input);
    }
    let reason = if locations.is_empty() {
        format!("channel {} sells from no location", spec.channel)
    } else {
        format!("no location can ship it whole ({})", short.join("; "))
    };
    Ok(Input::Short { reason })
}

/// Holds an order line by line across the channel's locations: every line starts at the first
/// location; a line that is short moves on to the next location, and the whole placement is
/// tried again (all lines or none each time), until it holds or a short line has nowhere left to
/// go. `None` when it cannot be held.
async fn route_split(
    state: &AppState,
    order: &Order,
    spec: &Spec,
    locations: &[LocationId],
    correlation_id: &str,
) -> Result<Option<Input>, TakeError> {
    let catalog = state.catalog.get(&state.store).await?;
    let mut at: Vec<usize> = vec![0; spec.lines().len()];
    loop {
        let lines = spec
            .lines()
            .iter()
            .zip(&at)
            .map(|(l, i)| HoldLine {
                sku: l.sku.clone(),
                location: locations[*i].clone(),
                quantity: l.quantity,
            })
            .collect();
        match engine::reserve(state, &order.id, lines, Some(correlation_id)).await {
            Ok(ReserveOutcome::Reserved { .. } | ReserveOutcome::AlreadyReserved(_)) => {
                let placed: Vec<(u32, LocationId)> = spec
                    .lines()
                    .iter()
                    .zip(&at)
                    .map(|(l, i)| (l.line, locations[*i].clone()))
                    .collect();
                return Ok(Some(Input::ReservedSplit { lines: placed }));
            }
            Ok(ReserveOutcome::Short(short)) => {
                let mut moved = false;
                for (l, i) in spec.lines().iter().zip(at.iter_mut()) {
                    let components = crossdock_core::inventory::bill_of_materials(
                        &l.sku,
                        &catalog.snapshot.kits,
                    );
                    let is_short = short
                        .iter()
                        .any(|s| s.location == locations[*i] && components.contains_key(&s.sku));
                    if is_short {
                        if *i + 1 >= locations.len() {
                            return Ok(None);
                        }
                        *i += 1;
                        moved = true;
                    }
                }
                if !moved {
                    return Ok(None);
                }
            }
            Err(HoldError::Invalid(_)) => return Ok(None),
            Err(HoldError::Store(e)) => return Err(e.into()),
        }
    }
}

/// An order as stored: its saga record, the version to save it at, and the whole stored record
/// (the request and reasons kept with it).
pub struct Stored {
    pub order: Order,
    pub version: i64,
    pub record: Value,
}

/// Reads an order once; `None` when there is no such order.
pub async fn load(state: &AppState, id: &str) -> Result<Option<Stored>, TakeError> {
    let Some(row) = state.store.order_get(id).await? else {
        return Ok(None);
    };
    let (order, record) = saga_record(id, &row.state, "order")?;
    Ok(Some(Stored {
        order,
        version: row.version,
        record,
    }))
}

/// A stored saga record (an order's or a return's) and the saga in its `member`.
pub(crate) fn saga_record<T: serde::de::DeserializeOwned>(
    id: &str,
    state: &str,
    member: &str,
) -> Result<(T, Value), TakeError> {
    let corrupt = |e: serde_json::Error| TakeError::Corrupt(id.to_owned(), e.to_string());
    let record: Value = serde_json::from_str(state).map_err(corrupt)?;
    let saga = T::deserialize(&record[member]).map_err(corrupt)?;
    Ok((saga, record))
}

/// The wire name of a status.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Unknown => "unknown",
        Status::Received => "received",
        Status::Backordered => "backordered",
        Status::Reserved => "reserved",
        Status::Submitted => "submitted",
        Status::Confirmed => "confirmed",
        Status::Released => "released",
        Status::PartiallyShipped => "partially_shipped",
        Status::Shipped => "shipped",
        Status::Invoiced => "invoiced",
        Status::Closed => "closed",
        Status::Cancelled => "cancelled",
        Status::Rejected => "rejected",
        Status::Exception => "exception",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Random JSON shaped like an order — the right members with values of any type, some
    /// missing, some unknown — from a fixed seed.
    fn below(seed: &mut u64, n: u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    }

    fn shaped(seed: &mut u64, depth: u32) -> Value {
        let leaf = |k: u64| match k {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-3),
            3 => json!(2.5),
            4 => json!("shop"),
            5 => json!(""),
            6 => json!("9.50"),
            7 => json!("1e3"),
            8 => json!(9_007_199_254_740_993_i64),
            _ => json!("\u{0}é𝄞"),
        };
        if depth == 0 {
            return leaf(below(seed, 10));
        }
        match below(seed, 4) {
            0 => leaf(below(seed, 10)),
            1 => {
                let n = below(seed, 3);
                Value::Array((0..n).map(|_| shaped(seed, depth - 1)).collect())
            }
            _ => {
                let names = [
                    "channel",
                    "external_id",
                    "delivery_id",
                    "lines",
                    "sku",
                    "channel_sku",
                    "quantity",
                    "unit_price",
                    "currency",
                    "ship_to",
                    "updated_at",
                    "requested_ship_date",
                    "other",
                ];
                let mut object = serde_json::Map::new();
                for _ in 0..below(seed, 8) {
                    let name = names[below(seed, names.len() as u64) as usize];
                    object.insert(name.to_owned(), shaped(seed, depth - 1));
                }
                Value::Object(object)
            }
        }
    }

    #[test]
    fn any_json_is_read_or_refused_with_pointers_never_a_panic() {
        let mut seed = 0x5EED_0F0F_1234_5678;
        let mut read = 0;
        let valid = json!({"channel": "shop", "external_id": "1001", "delivery_id": "d-1",
            "lines": [{"channel_sku": "M", "quantity": 2, "unit_price": "9.50", "currency": "USD"},
                      {"sku": "S", "quantity": 1}],
            "ship_to": {"name": "Ada", "city": "Solon"}, "updated_at": "2026-11-26T10:00:00Z",
            "requested_ship_date": "2026-12-01"});
        for round in 0..20_000 {
            // Half random shapes, half a valid order with up to three members replaced by
            // random values (or removed).
            let value = if round % 2 == 0 {
                shaped(&mut seed, 3)
            } else {
                let mut order = valid.clone();
                for _ in 0..below(&mut seed, 4) {
                    let names = [
                        "channel",
                        "external_id",
                        "lines",
                        "ship_to",
                        "updated_at",
                        "requested_ship_date",
                        "delivery_id",
                    ];
                    let name = names[below(&mut seed, names.len() as u64) as usize];
                    let replacement = shaped(&mut seed, 2);
                    match (name, below(&mut seed, 3)) {
                        (_, 0) => {
                            order.as_object_mut().map(|o| o.remove(name));
                        }
                        ("lines", 1) => {
                            if let Some(line) = order
                                .get_mut("lines")
                                .and_then(|l| l.get_mut(0))
                                .and_then(Value::as_object_mut)
                            {
                                line.insert("quantity".into(), replacement);
                            }
                        }
                        _ => order[name] = replacement,
                    }
                }
                order
            };
            match parse(&value) {
                Ok(order) => {
                    read += 1;
                    assert!(!order.channel.is_empty() && !order.external_id.is_empty());
                    assert!(order.lines.len() <= ORDER_LINES_MAX);
                }
                Err(errors) => {
                    assert!(!errors.is_empty(), "refused without a reason: {value}");
                    assert!(
                        errors
                            .iter()
                            .all(|e| e.pointer.is_empty() || e.pointer.starts_with('/'))
                    );
                }
            }
        }
        assert!(read > 0, "the generator never made a readable order");
    }

    #[test]
    fn content_hash_ignores_delivery_id_and_update_time() {
        let a = json!({"channel": "shop", "external_id": "1", "delivery_id": "x", "updated_at": "2026-11-26T00:00:00Z"});
        let b = json!({"channel": "shop", "external_id": "1", "delivery_id": "y"});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"channel": "shop", "external_id": "2"}))
        );
        // The same digest as hashing the body without those members, written out whole (what
        // stored orders were hashed with).
        let mut without = a.clone();
        without.as_object_mut().map(|o| {
            o.remove("delivery_id");
            o.remove("updated_at")
        });
        let whole: String = Sha256::digest(without.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(content_hash(&a), whole);
    }
}
