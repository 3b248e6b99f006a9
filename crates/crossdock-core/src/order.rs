//! An order as a saga: `decide(&order, input, now, policy)` says what changes and what other
//! systems must be asked to do; `Order::apply` makes the changes. Pure: the runtime carries out
//! the actions and feeds their outcomes back as inputs, so live processing, restart and replay
//! are the same path, and every step is a value a test can look at.
//!
//! received → reserved (or backordered / rejected) → submitted to the ERP → confirmed → released
//! to a location → shipped (in parts or whole) → invoiced → closed; cancelled before any shipment
//! with compensation. Every state records why it was entered. Every state that waits on another
//! system has a deadline; passing it makes the order an exception with its reason, which an
//! operator can resume — so no order is ever silently stuck.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{ChannelId, LocationId, Sku};
use crate::money::Amount;
use crate::time::Timestamp;

/// One line of an order, valid by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The line number, unique in the order.
    pub line: u32,
    pub sku: Sku,
    /// Units of the item's base unit, at least 1.
    pub quantity: i64,
    /// The price of one unit, in the order's currency, when the channel gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Amount>,
}

/// What was ordered: built by [`Spec::new`], which refuses an order without lines, a repeated
/// line number or a quantity below 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub channel: ChannelId,
    pub external_id: String,
    lines: Vec<Line>,
    /// The currency of the order's prices (ISO 4217).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl Spec {
    pub fn new(channel: ChannelId, external_id: &str, lines: Vec<Line>) -> Result<Spec, String> {
        if external_id.trim().is_empty() {
            return Err("an order needs its channel's order id".into());
        }
        if lines.is_empty() {
            return Err("an order needs at least one line".into());
        }
        let mut seen = BTreeSet::new();
        for l in &lines {
            if !seen.insert(l.line) {
                return Err(format!("line {} appears twice", l.line));
            }
            if l.quantity < 1 {
                return Err(format!(
                    "line {}: quantity {} is not positive",
                    l.line, l.quantity
                ));
            }
        }
        Ok(Spec {
            channel,
            external_id: external_id.to_owned(),
            lines,
            currency: None,
        })
    }

    /// The same order with its prices' currency.
    pub fn with_currency(mut self, currency: Option<String>) -> Spec {
        self.currency = currency;
        self
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }
}

/// Where an order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Known only by inputs that arrived before the order itself (a cancellation, say).
    Unknown,
    /// Taken; its reservation asked for.
    Received,
    /// Not enough stock anywhere the channel sells from; waiting for stock.
    Backordered,
    Reserved,
    /// Sent to the ERP; waiting for its confirmation.
    Submitted,
    Confirmed,
    /// Released to a location for fulfilment; waiting for shipments.
    Released,
    PartiallyShipped,
    /// Every unit shipped; waiting for the invoices.
    Shipped,
    Invoiced,
    Closed,
    Cancelled,
    Rejected,
    /// Stopped with a reason (a deadline passed, an over-shipment, a shipment after
    /// cancellation): visible, and resumable by an operator.
    Exception,
}

impl Status {
    /// Every status, in the order an order goes through them.
    pub const ALL: [Status; 14] = [
        Status::Unknown,
        Status::Received,
        Status::Backordered,
        Status::Reserved,
        Status::Submitted,
        Status::Confirmed,
        Status::Released,
        Status::PartiallyShipped,
        Status::Shipped,
        Status::Invoiced,
        Status::Closed,
        Status::Cancelled,
        Status::Rejected,
        Status::Exception,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Closed | Status::Cancelled | Status::Rejected)
    }
}

/// What the order waits for in a state, and for how long at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// When no location can take the whole order: wait for stock (true) or reject it.
    pub backorder: bool,
    pub reservation_timeout_ms: i64,
    pub backorder_timeout_ms: i64,
    pub erp_timeout_ms: i64,
    pub shipment_timeout_ms: i64,
    pub invoice_timeout_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        const HOUR: i64 = 3_600_000;
        Policy {
            backorder: true,
            reservation_timeout_ms: 60_000,
            backorder_timeout_ms: 14 * 24 * HOUR,
            erp_timeout_ms: 4 * HOUR,
            shipment_timeout_ms: 5 * 24 * HOUR,
            invoice_timeout_ms: 2 * 24 * HOUR,
        }
    }
}

/// Something that happened to the order, from a channel, the ERP, a warehouse, the reservation
/// primitive, an operator or the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Placed(Spec),
    /// The channel (or an operator) cancels.
    Cancelled {
        reason: String,
    },
    /// The whole order is held at `location`.
    Reserved {
        location: LocationId,
    },
    /// The order is held line by line across locations (the channel allows a split).
    ReservedSplit {
        lines: Vec<(u32, LocationId)>,
    },
    /// It cannot be held anywhere now.
    Short {
        reason: String,
    },
    ErpConfirmed {
        erp_order: String,
    },
    ErpRejected {
        reason: String,
    },
    /// A shipment (by its id) of some units per line.
    Shipped {
        shipment: String,
        lines: Vec<(u32, i64)>,
    },
    /// The invoice for a shipment.
    Invoiced {
        shipment: String,
        invoice: String,
    },
    /// The channel reports a payment (recorded in any state, also before the order arrives,
    /// once per reference).
    Paid {
        reference: String,
        amount: Option<Amount>,
    },
    /// The channel changed what was ordered after it was taken: the order stops as a visible
    /// exception with what changed, for a person to decide (resume, or cancel and place again).
    Amended {
        what: String,
    },
    /// Time passed: deadlines up to `now` are due.
    Tick,
    /// An operator resumes an exception.
    Resume,
    /// Stock may now be there for a backordered order: its reservation is asked for again
    /// (answered `Reserved`, or `Short` and it stays backordered, its deadline unchanged).
    Restocked,
}

/// A request to another system. Keys are stable across retries, restarts and replays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Reserve,
    ReleaseReservation,
    CreateErpOrder {
        key: String,
    },
    CancelErpOrder {
        key: String,
    },
    ReleaseToLocation {
        location: LocationId,
        key: String,
    },
    CancelFulfilment {
        location: LocationId,
        key: String,
    },
    /// The ledger movement: reserved units become shipped ones.
    RecordShipment {
        shipment: String,
        lines: Vec<(u32, i64)>,
    },
    NotifyChannelShipped {
        shipment: String,
        key: String,
    },
    CreateInvoice {
        shipment: String,
        key: String,
    },
    NotifyChannelCancelled {
        key: String,
    },
    NotifyChannelRejected {
        key: String,
        reason: String,
    },
}

/// A change to the order's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Placed {
        spec: Spec,
    },
    /// A cancellation that arrived before the order: applied when it comes.
    CancelNoted {
        reason: String,
    },
    Status {
        to: Status,
        reason: String,
        /// Until when the new state waits, if it waits on someone.
        until: Option<Timestamp>,
    },
    Located {
        location: LocationId,
    },
    /// Held line by line across locations.
    Split {
        lines: Vec<(u32, LocationId)>,
    },
    ErpOrder {
        erp_order: String,
    },
    Shipped {
        shipment: String,
        lines: Vec<(u32, i64)>,
    },
    Invoiced {
        shipment: String,
        invoice: String,
    },
    Paid {
        payment: Payment,
    },
}

/// A payment the channel reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub reference: String,
    pub amount: Option<Amount>,
    pub at: Timestamp,
}

/// What `decide` concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub changes: Vec<Change>,
    pub actions: Vec<Action>,
}

/// A state the order went through, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub status: Status,
    pub reason: String,
    pub at: Timestamp,
}

/// An order's record: what was ordered, where it is, what shipped and was invoiced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub spec: Option<Spec>,
    pub status: Status,
    pub reason: String,
    /// When the current state stops waiting.
    pub until: Option<Timestamp>,
    /// The state an exception interrupted, to resume.
    pub interrupted: Option<Status>,
    pub location: Option<LocationId>,
    /// Line → location, for an order held across locations (empty: all at `location`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub split: BTreeMap<u32, LocationId>,
    pub erp_order: Option<String>,
    pub cancel_noted: Option<String>,
    pub shipped: BTreeMap<u32, i64>,
    pub shipments: BTreeSet<String>,
    pub invoices: BTreeMap<String, String>,
    pub history: Vec<Step>,
    /// Payments the channel reported.
    #[serde(default)]
    pub payments: Vec<Payment>,
}

impl Order {
    pub fn new(id: &str) -> Order {
        Order {
            id: id.to_owned(),
            spec: None,
            status: Status::Unknown,
            reason: String::new(),
            until: None,
            interrupted: None,
            location: None,
            split: BTreeMap::new(),
            erp_order: None,
            cancel_noted: None,
            shipped: BTreeMap::new(),
            shipments: BTreeSet::new(),
            invoices: BTreeMap::new(),
            history: Vec::new(),
            payments: Vec::new(),
        }
    }

    /// Where a line is held.
    pub fn location_of(&self, line: u32) -> Option<&LocationId> {
        self.split.get(&line).or(self.location.as_ref())
    }

    /// Every location the order is held at, the first one first.
    pub fn locations(&self) -> Vec<LocationId> {
        let mut out: Vec<LocationId> = self.location.iter().cloned().collect();
        for location in self.split.values() {
            if !out.contains(location) {
                out.push(location.clone());
            }
        }
        out
    }

    /// The key of a per-location step: the order's own for one location, one per location when
    /// it is split.
    fn location_key(&self, what: &str, location: &LocationId) -> String {
        if self.split.is_empty() {
            format!("{what}/{}", self.id)
        } else {
            format!("{what}/{}/{location}", self.id)
        }
    }

    /// Units of `line` still to ship.
    pub fn remaining(&self, line: u32) -> i64 {
        let ordered = self
            .spec
            .as_ref()
            .and_then(|s| s.lines.iter().find(|l| l.line == line))
            .map_or(0, |l| l.quantity);
        ordered - self.shipped.get(&line).copied().unwrap_or(0)
    }

    /// Makes the changes of a decision.
    pub fn apply(&mut self, change: &Change, now: Timestamp) {
        match change {
            Change::Placed { spec } => self.spec = Some(spec.clone()),
            Change::CancelNoted { reason } => self.cancel_noted = Some(reason.clone()),
            Change::Status { to, reason, until } => {
                if *to == Status::Exception && self.status != Status::Exception {
                    self.interrupted = Some(self.status);
                }
                if *to != Status::Exception {
                    self.interrupted = None;
                }
                self.status = *to;
                self.reason.clone_from(reason);
                self.until = *until;
                self.history.push(Step {
                    status: *to,
                    reason: reason.clone(),
                    at: now,
                });
            }
            Change::Located { location } => self.location = Some(location.clone()),
            Change::Split { lines } => {
                self.split = lines.iter().cloned().collect();
                self.location = lines.first().map(|(_, l)| l.clone());
            }
            Change::ErpOrder { erp_order } => self.erp_order = Some(erp_order.clone()),
            Change::Shipped { shipment, lines } => {
                self.shipments.insert(shipment.clone());
                for (line, quantity) in lines {
                    *self.shipped.entry(*line).or_default() += quantity;
                }
            }
            Change::Invoiced { shipment, invoice } => {
                self.invoices.insert(shipment.clone(), invoice.clone());
            }
            Change::Paid { payment } => self.payments.push(payment.clone()),
        }
    }

    /// Decides on `input` and applies the changes.
    pub fn handle(&mut self, input: &Input, now: Timestamp, policy: &Policy) -> Decision {
        let decision = decide(self, input, now, policy);
        for change in &decision.changes {
            self.apply(change, now);
        }
        decision
    }
}

struct Draft<'a> {
    order: &'a Order,
    now: Timestamp,
    decision: Decision,
}

impl Draft<'_> {
    fn to(&mut self, status: Status, reason: impl Into<String>, wait_ms: Option<i64>) {
        self.decision.changes.push(Change::Status {
            to: status,
            reason: reason.into(),
            until: wait_ms.map(|ms| self.now.plus_millis(ms)),
        });
    }

    fn act(&mut self, action: Action) {
        self.decision.actions.push(action);
    }

    fn key(&self, what: &str) -> String {
        format!("{what}/{}", self.order.id)
    }

    /// Undoes what the order holds or asked for, before it ends without shipping.
    fn compensate(&mut self) {
        let o = self.order;
        let at = effective(o);
        let reached = |s: Status| at >= s && at <= Status::Invoiced;
        if reached(Status::Received) {
            self.act(Action::ReleaseReservation);
        }
        if reached(Status::Submitted) {
            let key = self.key("erp-cancel");
            self.act(Action::CancelErpOrder { key });
        }
        if reached(Status::Released) {
            for location in o.locations() {
                let key = o.location_key("fulfilment-cancel", &location);
                self.act(Action::CancelFulfilment { location, key });
            }
        }
    }
}

/// The status an order is in for the purpose of an input: an exception counts as the state it
/// interrupted, so a late answer still moves it on.
fn effective(order: &Order) -> Status {
    match (order.status, order.interrupted) {
        (Status::Exception, Some(interrupted)) => interrupted,
        (status, _) => status,
    }
}

/// What `input` does to `order` at `now`.
pub fn decide(order: &Order, input: &Input, now: Timestamp, policy: &Policy) -> Decision {
    let mut d = Draft {
        order,
        now,
        decision: Decision::default(),
    };
    let status = effective(order);
    // A payment is a fact in any state, even one that ended (a cancelled order paid for needs
    // a refund): recorded once per reference.
    if let Input::Paid { reference, amount } = input {
        if !order.payments.iter().any(|p| &p.reference == reference) {
            d.decision.changes.push(Change::Paid {
                payment: Payment {
                    reference: reference.clone(),
                    amount: *amount,
                    at: now,
                },
            });
        }
        return d.decision;
    }
    if order.status.is_terminal() {
        // A shipment for an order that ended is still a fact worth a look.
        if let Input::Shipped { shipment, .. } = input
            && order.status == Status::Cancelled
            && !order.shipments.contains(shipment)
        {
            d.to(
                Status::Exception,
                format!("shipment {shipment} arrived for a cancelled order"),
                None,
            );
        }
        return d.decision;
    }
    match input {
        Input::Placed(spec) => {
            if order.spec.is_some() {
                return d.decision;
            }
            d.decision
                .changes
                .push(Change::Placed { spec: spec.clone() });
            if let Some(reason) = &order.cancel_noted {
                d.to(
                    Status::Cancelled,
                    format!("cancelled before it arrived: {reason}"),
                    None,
                );
            } else {
                d.to(
                    Status::Received,
                    "taken; asking for its reservation",
                    Some(policy.reservation_timeout_ms),
                );
                d.act(Action::Reserve);
            }
        }
        Input::Cancelled { reason } => {
            if order.spec.is_none() {
                d.decision.changes.push(Change::CancelNoted {
                    reason: reason.clone(),
                });
                // An order kept as invalid held nothing and asked nothing of anyone: cancelled,
                // it ends (and leaves the exceptions). One not yet placed waits for its content.
                if order.status == Status::Exception {
                    d.to(Status::Cancelled, format!("cancelled: {reason}"), None);
                }
            } else if !order.shipments.is_empty() {
                // Too late: units are on their way. The record says so; nothing changes.
            } else {
                d.compensate();
                let key = d.key("channel-cancelled");
                d.act(Action::NotifyChannelCancelled { key });
                d.to(Status::Cancelled, format!("cancelled: {reason}"), None);
            }
        }
        Input::Reserved { .. } | Input::ReservedSplit { .. } => match status {
            Status::Received | Status::Backordered => {
                let held = match input {
                    Input::ReservedSplit { lines } => {
                        d.decision.changes.push(Change::Split {
                            lines: lines.clone(),
                        });
                        let mut by: BTreeMap<&LocationId, Vec<String>> = BTreeMap::new();
                        for (line, location) in lines {
                            by.entry(location).or_default().push(line.to_string());
                        }
                        by.iter()
                            .map(|(l, lines)| format!("{l} (lines {})", lines.join(", ")))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    }
                    Input::Reserved { location } => {
                        d.decision.changes.push(Change::Located {
                            location: location.clone(),
                        });
                        location.to_string()
                    }
                    _ => String::new(),
                };
                d.to(Status::Reserved, format!("held at {held}"), None);
                let key = d.key("erp-order");
                d.act(Action::CreateErpOrder { key });
                d.to(
                    Status::Submitted,
                    "sent to the ERP; waiting for its confirmation",
                    Some(policy.erp_timeout_ms),
                );
            }
            _ => {}
        },
        Input::Short { reason } => {
            if status == Status::Received {
                if policy.backorder {
                    d.to(
                        Status::Backordered,
                        format!("backordered: {reason}"),
                        Some(policy.backorder_timeout_ms),
                    );
                } else {
                    d.act(Action::ReleaseReservation);
                    let key = d.key("channel-rejected");
                    d.act(Action::NotifyChannelRejected {
                        key,
                        reason: reason.clone(),
                    });
                    d.to(Status::Rejected, format!("rejected: {reason}"), None);
                }
            }
        }
        Input::ErpConfirmed { erp_order } => {
            if status == Status::Submitted {
                d.decision.changes.push(Change::ErpOrder {
                    erp_order: erp_order.clone(),
                });
                d.to(
                    Status::Confirmed,
                    format!("confirmed by the ERP as {erp_order}"),
                    None,
                );
                let locations = order.locations();
                if !locations.is_empty() {
                    for location in &locations {
                        let key = order.location_key("release", location);
                        d.act(Action::ReleaseToLocation {
                            location: location.clone(),
                            key,
                        });
                    }
                    let names: Vec<String> = locations.iter().map(ToString::to_string).collect();
                    d.to(
                        Status::Released,
                        format!("released to {}; waiting for shipments", names.join(" and ")),
                        Some(policy.shipment_timeout_ms),
                    );
                }
            }
        }
        Input::ErpRejected { reason } => {
            if status == Status::Submitted {
                d.compensate();
                let key = d.key("channel-rejected");
                d.act(Action::NotifyChannelRejected {
                    key,
                    reason: reason.clone(),
                });
                d.to(
                    Status::Rejected,
                    format!("the ERP rejected it: {reason}"),
                    None,
                );
            }
        }
        Input::Shipped { shipment, lines } => shipped(&mut d, status, shipment, lines, policy),
        Input::Invoiced { shipment, invoice } => {
            if order.shipments.contains(shipment) && !order.invoices.contains_key(shipment) {
                d.decision.changes.push(Change::Invoiced {
                    shipment: shipment.clone(),
                    invoice: invoice.clone(),
                });
                let all = order
                    .shipments
                    .iter()
                    .all(|s| s == shipment || order.invoices.contains_key(s));
                if all && status == Status::Shipped {
                    d.to(Status::Invoiced, format!("invoiced ({invoice})"), None);
                    d.to(Status::Closed, "shipped and invoiced in full", None);
                }
            }
        }
        Input::Amended { what } => {
            if order.spec.is_some() && order.status != Status::Exception {
                d.to(
                    Status::Exception,
                    format!("the channel changed the order after it was taken: {what}"),
                    None,
                );
            }
        }
        Input::Paid { .. } => {}
        Input::Tick => {
            if let Some(until) = order.until
                && now >= until
                && order.status != Status::Exception
            {
                let waited = match order.status {
                    Status::Received => "no answer to its reservation",
                    Status::Backordered => "still backordered",
                    Status::Submitted => "no confirmation from the ERP",
                    Status::Released | Status::PartiallyShipped => "no shipment from the warehouse",
                    Status::Shipped => "no invoice",
                    _ => "no progress",
                };
                d.to(
                    Status::Exception,
                    format!("{waited} by {until} (it was {:?})", order.status),
                    None,
                );
            }
        }
        Input::Restocked => {
            if order.status == Status::Backordered {
                d.act(Action::Reserve);
            }
        }
        Input::Resume => {
            if order.status == Status::Exception
                && let Some(interrupted) = order.interrupted
            {
                resume(&mut d, interrupted, policy);
            }
        }
    }
    d.decision
}

fn shipped(
    d: &mut Draft<'_>,
    status: Status,
    shipment: &str,
    lines: &[(u32, i64)],
    policy: &Policy,
) {
    let order = d.order;
    if order.shipments.contains(shipment) {
        return;
    }
    if status < Status::Reserved {
        d.to(
            Status::Exception,
            format!("shipment {shipment} arrived before the order was reserved"),
            None,
        );
        return;
    }
    for (line, quantity) in lines {
        if *quantity < 1 || *quantity > order.remaining(*line) {
            d.to(
                Status::Exception,
                format!(
                    "shipment {shipment} ships {quantity} of line {line}, which has {} to ship",
                    order.remaining(*line)
                ),
                None,
            );
            return;
        }
    }
    let mut seen = BTreeSet::new();
    if lines.is_empty() || !lines.iter().all(|(line, _)| seen.insert(*line)) {
        d.to(
            Status::Exception,
            format!("shipment {shipment} names no line, or a line twice"),
            None,
        );
        return;
    }
    d.decision.changes.push(Change::Shipped {
        shipment: shipment.to_owned(),
        lines: lines.to_vec(),
    });
    d.act(Action::RecordShipment {
        shipment: shipment.to_owned(),
        lines: lines.to_vec(),
    });
    let key = format!("channel-shipped/{}/{shipment}", order.id);
    d.act(Action::NotifyChannelShipped {
        shipment: shipment.to_owned(),
        key,
    });
    let key = format!("invoice/{}/{shipment}", order.id);
    d.act(Action::CreateInvoice {
        shipment: shipment.to_owned(),
        key,
    });
    let complete = order.spec.as_ref().is_some_and(|s| {
        s.lines.iter().all(|l| {
            let now_shipped = lines
                .iter()
                .filter(|(line, _)| *line == l.line)
                .map(|(_, q)| q)
                .sum::<i64>();
            order.remaining(l.line) - now_shipped == 0
        })
    });
    if complete {
        d.to(
            Status::Shipped,
            format!("shipped in full (last: {shipment}); waiting for invoices"),
            Some(policy.invoice_timeout_ms),
        );
    } else {
        d.to(
            Status::PartiallyShipped,
            format!("shipment {shipment}; more to ship"),
            Some(policy.shipment_timeout_ms),
        );
    }
}

/// Takes up an interrupted state again: asks again for what it was waiting on (same keys, so
/// the other system sees a repeat, not a new request) with a fresh deadline.
fn resume(d: &mut Draft<'_>, interrupted: Status, policy: &Policy) {
    let order = d.order;
    match interrupted {
        Status::Received => {
            d.act(Action::Reserve);
            d.to(
                Status::Received,
                "resumed; asking for its reservation again",
                Some(policy.reservation_timeout_ms),
            );
        }
        Status::Backordered => d.to(
            Status::Backordered,
            "resumed; still waiting for stock",
            Some(policy.backorder_timeout_ms),
        ),
        Status::Reserved | Status::Submitted => {
            let key = d.key("erp-order");
            d.act(Action::CreateErpOrder { key });
            d.to(
                Status::Submitted,
                "resumed; sent to the ERP again",
                Some(policy.erp_timeout_ms),
            );
        }
        Status::Confirmed | Status::Released | Status::PartiallyShipped => {
            for location in order.locations() {
                let key = order.location_key("release", &location);
                d.act(Action::ReleaseToLocation { location, key });
            }
            let status = if order.shipments.is_empty() {
                Status::Released
            } else {
                Status::PartiallyShipped
            };
            d.to(
                status,
                "resumed; waiting for shipments again",
                Some(policy.shipment_timeout_ms),
            );
        }
        Status::Shipped => {
            for shipment in order
                .shipments
                .iter()
                .filter(|s| !order.invoices.contains_key(*s))
            {
                let key = format!("invoice/{}/{shipment}", order.id);
                d.act(Action::CreateInvoice {
                    shipment: shipment.clone(),
                    key,
                });
            }
            d.to(
                Status::Shipped,
                "resumed; waiting for invoices again",
                Some(policy.invoice_timeout_ms),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> Spec {
        let sku = |s| Sku::parse(s).unwrap();
        Spec::new(
            ChannelId::parse("shop").unwrap(),
            "1001",
            vec![
                Line {
                    line: 1,
                    sku: sku("MUG"),
                    quantity: 3,
                    unit_price: None,
                },
                Line {
                    line: 2,
                    sku: sku("SAUCER"),
                    quantity: 1,
                    unit_price: None,
                },
            ],
        )
        .unwrap()
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000).plus_millis(ms)
    }

    fn wh() -> LocationId {
        LocationId::parse("wh-1").unwrap()
    }

    #[test]
    fn an_order_record_round_trips_through_json() {
        let policy = Policy::default();
        let mut o = Order::new("o-9");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        let text = serde_json::to_string(&o).unwrap();
        let back: Order = serde_json::from_str(&text).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn specs_are_valid_by_construction() {
        let channel = ChannelId::parse("shop").unwrap();
        let line = |n, q| Line {
            line: n,
            sku: Sku::parse("A").unwrap(),
            quantity: q,
            unit_price: None,
        };
        assert!(
            Spec::new(channel.clone(), "1", vec![])
                .unwrap_err()
                .contains("at least one line")
        );
        assert!(
            Spec::new(channel.clone(), "1", vec![line(1, 0)])
                .unwrap_err()
                .contains("not positive")
        );
        assert!(
            Spec::new(channel.clone(), "1", vec![line(1, 1), line(1, 2)])
                .unwrap_err()
                .contains("twice")
        );
        assert!(Spec::new(channel, " ", vec![line(1, 1)]).is_err());
    }

    #[test]
    fn an_order_goes_through_to_closed_with_a_reason_at_every_step() {
        let policy = Policy::default();
        let mut o = Order::new("o-1");
        let d = o.handle(&Input::Placed(spec()), at(0), &policy);
        assert_eq!(d.actions, [Action::Reserve]);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        assert_eq!(o.status, Status::Submitted);
        let d = o.handle(
            &Input::ErpConfirmed {
                erp_order: "SO-9".into(),
            },
            at(2),
            &policy,
        );
        assert_eq!(o.status, Status::Released);
        assert!(
            matches!(&d.actions[0], Action::ReleaseToLocation { key, .. } if key == "release/o-1")
        );
        o.handle(
            &Input::Shipped {
                shipment: "S1".into(),
                lines: vec![(1, 2)],
            },
            at(3),
            &policy,
        );
        assert_eq!(o.status, Status::PartiallyShipped);
        // The same shipment again changes nothing.
        let d = o.handle(
            &Input::Shipped {
                shipment: "S1".into(),
                lines: vec![(1, 2)],
            },
            at(4),
            &policy,
        );
        assert_eq!(d, Decision::default());
        o.handle(
            &Input::Shipped {
                shipment: "S2".into(),
                lines: vec![(1, 1), (2, 1)],
            },
            at(5),
            &policy,
        );
        assert_eq!(o.status, Status::Shipped);
        o.handle(
            &Input::Invoiced {
                shipment: "S1".into(),
                invoice: "I1".into(),
            },
            at(6),
            &policy,
        );
        assert_eq!(o.status, Status::Shipped);
        o.handle(
            &Input::Invoiced {
                shipment: "S2".into(),
                invoice: "I2".into(),
            },
            at(7),
            &policy,
        );
        assert_eq!(o.status, Status::Closed);
        let path: Vec<Status> = o.history.iter().map(|s| s.status).collect();
        assert_eq!(
            path,
            [
                Status::Received,
                Status::Reserved,
                Status::Submitted,
                Status::Confirmed,
                Status::Released,
                Status::PartiallyShipped,
                Status::Shipped,
                Status::Invoiced,
                Status::Closed
            ]
        );
        assert!(o.history.iter().all(|s| !s.reason.is_empty()));
    }

    #[test]
    fn a_cancellation_before_the_order_cancels_it_on_arrival_and_holds_nothing() {
        let policy = Policy::default();
        let mut o = Order::new("o-2");
        o.handle(
            &Input::Cancelled {
                reason: "customer".into(),
            },
            at(0),
            &policy,
        );
        let d = o.handle(&Input::Placed(spec()), at(1), &policy);
        assert_eq!(o.status, Status::Cancelled);
        assert!(d.actions.is_empty(), "{d:?}");
    }

    #[test]
    fn a_backordered_order_asks_again_when_restocked_and_only_then() {
        let policy = Policy::default();
        let mut o = Order::new("o-8");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(
            &Input::Short {
                reason: "none".into(),
            },
            at(1),
            &policy,
        );
        assert_eq!(o.status, Status::Backordered);
        let until = o.until;
        let d = o.handle(&Input::Restocked, at(2), &policy);
        assert_eq!(d.actions, [Action::Reserve]);
        // Still short: it stays backordered, its deadline where it was.
        let d = o.handle(
            &Input::Short {
                reason: "none".into(),
            },
            at(3),
            &policy,
        );
        assert!(d.changes.is_empty() && d.actions.is_empty(), "{d:?}");
        assert_eq!((o.status, o.until), (Status::Backordered, until));
        o.handle(&Input::Restocked, at(4), &policy);
        let d = o.handle(&Input::Reserved { location: wh() }, at(5), &policy);
        assert_eq!(o.status, Status::Submitted);
        assert!(
            matches!(d.actions[..], [Action::CreateErpOrder { .. }]),
            "{d:?}"
        );
        // An order that is not backordered asks for nothing.
        let d = o.handle(&Input::Restocked, at(6), &policy);
        assert!(d.actions.is_empty(), "{d:?}");
    }

    #[test]
    fn an_invalid_order_cancelled_ends_without_asking_anything() {
        let policy = Policy::default();
        let mut o = Order::new("o-9");
        o.apply(
            &Change::Status {
                to: Status::Exception,
                reason: "invalid: an order needs at least one line".into(),
                until: None,
            },
            at(0),
        );
        let d = o.handle(
            &Input::Cancelled {
                reason: "not coming back".into(),
            },
            at(1),
            &policy,
        );
        assert_eq!(o.status, Status::Cancelled);
        assert_eq!(o.reason, "cancelled: not coming back");
        assert!(d.actions.is_empty(), "{d:?}");
        // Sent again, corrected, it stays cancelled and asks for nothing.
        let d = o.handle(&Input::Placed(spec()), at(2), &policy);
        assert_eq!(o.status, Status::Cancelled);
        assert!(d.actions.is_empty(), "{d:?}");
    }

    #[test]
    fn a_deadline_makes_an_exception_that_a_late_answer_or_a_resume_clears() {
        let policy = Policy::default();
        let mut o = Order::new("o-3");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        o.handle(&Input::Tick, at(policy.erp_timeout_ms), &policy);
        assert_eq!(o.status, Status::Submitted, "not yet due");
        o.handle(&Input::Tick, at(1 + policy.erp_timeout_ms), &policy);
        assert_eq!(o.status, Status::Exception);
        assert!(
            o.reason.contains("no confirmation from the ERP"),
            "{}",
            o.reason
        );
        let d = o.handle(&Input::Resume, at(2 + policy.erp_timeout_ms), &policy);
        assert_eq!(o.status, Status::Submitted);
        assert_eq!(
            d.actions,
            [Action::CreateErpOrder {
                key: "erp-order/o-3".into()
            }]
        );
        o.handle(&Input::Tick, at(10 * policy.erp_timeout_ms), &policy);
        assert_eq!(o.status, Status::Exception);
        o.handle(
            &Input::ErpConfirmed {
                erp_order: "SO-1".into(),
            },
            at(10 * policy.erp_timeout_ms),
            &policy,
        );
        assert_eq!(
            o.status,
            Status::Released,
            "a late confirmation moves it on"
        );
    }

    #[test]
    fn rejection_and_cancellation_release_what_is_held() {
        let policy = Policy::default();
        let mut o = Order::new("o-4");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        let d = o.handle(
            &Input::ErpRejected {
                reason: "credit hold".into(),
            },
            at(2),
            &policy,
        );
        assert_eq!(o.status, Status::Rejected);
        assert!(d.actions.contains(&Action::ReleaseReservation));

        let mut o = Order::new("o-5");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        o.handle(
            &Input::ErpConfirmed {
                erp_order: "SO-2".into(),
            },
            at(2),
            &policy,
        );
        let d = o.handle(
            &Input::Cancelled {
                reason: "fraud".into(),
            },
            at(3),
            &policy,
        );
        assert_eq!(o.status, Status::Cancelled);
        assert!(d.actions.contains(&Action::ReleaseReservation), "{d:?}");
        assert!(
            d.actions
                .iter()
                .any(|a| matches!(a, Action::CancelErpOrder { .. }))
        );
        assert!(
            d.actions
                .iter()
                .any(|a| matches!(a, Action::CancelFulfilment { .. }))
        );

        // After a shipment, a cancellation is too late and changes nothing.
        let mut o = Order::new("o-6");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        o.handle(
            &Input::Shipped {
                shipment: "S".into(),
                lines: vec![(2, 1)],
            },
            at(2),
            &policy,
        );
        let d = o.handle(
            &Input::Cancelled {
                reason: "late".into(),
            },
            at(3),
            &policy,
        );
        assert_eq!(d, Decision::default());
        assert_eq!(o.status, Status::PartiallyShipped);
    }

    #[test]
    fn shipping_more_than_ordered_is_an_exception_and_records_nothing() {
        let policy = Policy::default();
        let mut o = Order::new("o-7");
        o.handle(&Input::Placed(spec()), at(0), &policy);
        o.handle(&Input::Reserved { location: wh() }, at(1), &policy);
        let d = o.handle(
            &Input::Shipped {
                shipment: "S".into(),
                lines: vec![(1, 4)],
            },
            at(2),
            &policy,
        );
        assert_eq!(o.status, Status::Exception);
        assert!(d.actions.is_empty());
        assert!(o.shipped.is_empty());
    }

    /// A small order for random histories: two units of line 1, one of line 2.
    #[test]
    fn a_split_order_is_released_and_cancelled_at_each_of_its_locations() {
        let policy = Policy::default();
        let east = wh();
        let west = LocationId::parse("wh-2").unwrap();
        let mut o = Order::new("o-9");
        o.handle(&Input::Placed(small()), at(0), &policy);
        o.handle(
            &Input::ReservedSplit {
                lines: vec![(1, east.clone()), (2, west.clone())],
            },
            at(1),
            &policy,
        );
        assert_eq!(o.status, Status::Submitted);
        assert_eq!(o.location_of(2), Some(&west));
        assert_eq!(o.locations(), [east.clone(), west.clone()]);
        let d = o.handle(
            &Input::ErpConfirmed {
                erp_order: "SO-9".into(),
            },
            at(2),
            &policy,
        );
        assert_eq!(
            d.actions,
            [
                Action::ReleaseToLocation {
                    location: east.clone(),
                    key: "release/o-9/wh-1".into()
                },
                Action::ReleaseToLocation {
                    location: west.clone(),
                    key: "release/o-9/wh-2".into()
                }
            ]
        );
        assert!(o.reason.contains("wh-1 and wh-2"), "{}", o.reason);
        let d = o.handle(
            &Input::Cancelled {
                reason: "changed mind".into(),
            },
            at(3),
            &policy,
        );
        let cancelled: Vec<_> = d
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::CancelFulfilment { location, .. } => Some(location.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, [east, west]);
        assert!(d.actions.contains(&Action::ReleaseReservation));
    }

    fn small() -> Spec {
        let sku = |s| Sku::parse(s).unwrap();
        Spec::new(
            ChannelId::parse("shop").unwrap(),
            "2002",
            vec![
                Line {
                    line: 1,
                    sku: sku("MUG"),
                    quantity: 2,
                    unit_price: None,
                },
                Line {
                    line: 2,
                    sku: sku("SAUCER"),
                    quantity: 1,
                    unit_price: None,
                },
            ],
        )
        .unwrap()
    }

    /// An input, weighted so that histories often get far: cancellations and rejections are
    /// rarer than progress. Shipments are mostly one unit of line 1 or 2; now and then nothing,
    /// or a line that does not exist.
    fn input(kind: u8, n: u8) -> Input {
        match kind % 36 {
            0 | 1 => Input::Placed(small()),
            2 => Input::Cancelled { reason: "r".into() },
            3 | 4 => Input::Reserved { location: wh() },
            5 => Input::ReservedSplit {
                lines: vec![(1, wh()), (2, LocationId::parse("wh-2").unwrap())],
            },
            6 => Input::Short {
                reason: "none".into(),
            },
            7..=9 => Input::ErpConfirmed {
                erp_order: format!("SO-{n}"),
            },
            10 => Input::ErpRejected {
                reason: "no".into(),
            },
            11..=20 => Input::Shipped {
                shipment: format!("S{}", n % 5),
                lines: vec![match n % 16 {
                    0 => (1, 0),
                    1 => (3, 1),
                    k => (u32::from(k % 2) + 1, 1),
                }],
            },
            21..=26 => Input::Invoiced {
                shipment: format!("S{}", n % 5),
                invoice: format!("I{n}"),
            },
            27..=29 => Input::Tick,
            30 => Input::Paid {
                reference: format!("P{}", n % 3),
                amount: None,
            },
            31 => Input::Amended {
                what: "line 1 quantity".into(),
            },
            32 => Input::Restocked,
            _ => Input::Resume,
        }
    }

    /// The generator below reaches every state, so the property is about all of them.
    #[test]
    fn random_histories_reach_every_state() {
        // SplitMix64: every output bit is well mixed.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut reached = BTreeSet::new();
        for case in 0..5000 {
            let policy = Policy {
                backorder: case % 2 == 0,
                ..Policy::default()
            };
            let mut o = Order::new("o");
            let mut t = 0;
            for _ in 0..40 {
                t += (next() % 10_000_000) as i64;
                o.handle(&input(next() as u8, next() as u8), at(t), &policy);
                reached.insert(o.status);
            }
        }
        for status in [
            Status::Received,
            Status::Backordered,
            Status::Submitted,
            Status::Released,
            Status::PartiallyShipped,
            Status::Shipped,
            Status::Closed,
            Status::Cancelled,
            Status::Rejected,
            Status::Exception,
        ] {
            assert!(
                reached.contains(&status),
                "{status:?} never reached: {reached:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any interleaving, duplicates and reorderings included: nothing ships beyond what was
        /// ordered or twice; an order that ends without shipping released its hold; every order
        /// that is not finished waits with a deadline or is a visible exception — and once every
        /// deadline has passed, it is finished or an exception.
        #[test]
        fn any_history_ends_finished_or_visibly_stopped(
            inputs in proptest::collection::vec((any::<u8>(), any::<u8>(), 0i64..10_000_000), 0..40),
            backorder in any::<bool>(),
        ) {
            let policy = Policy { backorder, ..Policy::default() };
            let mut o = Order::new("o");
            let mut t = 0i64;
            let mut reserve_asked = false;
            let mut released = false;
            for (kind, n, dt) in inputs {
                t += dt;
                let d = o.handle(&input(kind, n), at(t), &policy);
                reserve_asked |= d.actions.contains(&Action::Reserve);
                released |= d.actions.contains(&Action::ReleaseReservation);
                for line in o.spec.iter().flat_map(|s| s.lines()) {
                    prop_assert!(o.remaining(line.line) >= 0, "line {} over-shipped", line.line);
                }
                let shipped: i64 = o.shipped.values().sum();
                prop_assert!(o.shipments.len() as i64 <= shipped, "a shipment counted with nothing in it");
                if !o.status.is_terminal() && o.status != Status::Exception && o.status != Status::Unknown {
                    prop_assert!(o.until.is_some(), "{:?} waits without a deadline", o.status);
                }
                if matches!(o.status, Status::Cancelled | Status::Rejected) && o.shipments.is_empty() && reserve_asked {
                    prop_assert!(released, "{:?} without releasing its reservation", o.status);
                }
                prop_assert!(!o.reason.is_empty() || o.status == Status::Unknown);
                let references: BTreeSet<_> = o.payments.iter().map(|p| &p.reference).collect();
                prop_assert_eq!(references.len(), o.payments.len(), "a payment recorded twice");
            }
            o.handle(&Input::Tick, at(t + 100 * 24 * 3_600_000), &policy);
            prop_assert!(
                o.status.is_terminal() || o.status == Status::Exception || o.status == Status::Unknown,
                "{:?} after every deadline passed", o.status
            );
        }
    }
}
