//! The inventory ledger: per `(sku, location)` movements, counts and warehouse allocations, and
//! the numbers derived from them — on_hand, allocated, reserved, ATP — and what a channel may
//! show (its policy applied to the ATP of its locations, kits from their components).
//!
//! The state is a function of the *set* of events applied: deltas are keyed by the event that
//! made them, a count replaces an older count and absorbs the deltas it already includes, and an
//! allocation snapshot replaces an older one. Applying the same events in any order, any number
//! of times, gives the same state.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::catalog::{LocationId, Policy, Sku};
use crate::event::FieldError;
use crate::json::{Fields, QUANTITY_ABS_MAX, text_problem};
use crate::time::Timestamp;

/// What an inventory event does to the ledger, as parsed from its `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Movement {
    /// `inventory.received`: goods in.
    Received {
        sku: Sku,
        location: LocationId,
        quantity: i64,
    },
    /// `inventory.adjusted`: a correction up or down, with a reason.
    Adjusted {
        sku: Sku,
        location: LocationId,
        delta: i64,
        reason: String,
    },
    /// `inventory.counted`: the on-hand quantity as of a time.
    Counted {
        sku: Sku,
        location: LocationId,
        on_hand: i64,
        as_of: Timestamp,
    },
    /// `inventory.allocated`: what the warehouse has set aside for orders, as of a time.
    Allocated {
        sku: Sku,
        location: LocationId,
        allocated: i64,
        as_of: Timestamp,
    },
    /// `inventory.transferred`: stock moved between locations.
    Transferred {
        sku: Sku,
        from: LocationId,
        to: LocationId,
        quantity: i64,
    },
    /// `inventory.shipped`: goods out to a customer.
    Shipped {
        sku: Sku,
        location: LocationId,
        quantity: i64,
    },
    /// `inventory.returned`: goods back from a customer, restocked.
    Returned {
        sku: Sku,
        location: LocationId,
        quantity: i64,
    },
}

/// The CloudEvents types that carry inventory movements.
pub const MOVEMENT_TYPES: [&str; 7] = [
    "inventory.received",
    "inventory.adjusted",
    "inventory.counted",
    "inventory.allocated",
    "inventory.transferred",
    "inventory.shipped",
    "inventory.returned",
];

/// The CloudEvents types crossdock itself records when it holds or releases stock for an order
/// (`data`: `{"order_id", "lines": [{"sku", "location", "quantity"}]}`). They are not accepted
/// from outside.
pub const HOLD_TYPES: [&str; 2] = ["inventory.reserved", "inventory.released"];

/// Whether an event type records a hub reservation change.
pub fn is_hold(kind: &str) -> bool {
    HOLD_TYPES.contains(&kind)
}

/// The type of the event crossdock records when the catalog changes what listings may show (a
/// listing added or mapped to another SKU, a channel's locations or policy, a kit's
/// components): the engine computes again the listings of the SKUs in its `data.skus` and every
/// listing of the channels in its `data.channels`.
pub const CATALOG_CHANGED: &str = "inventory.catalog_changed";

/// The SKUs and channels a catalog change names (what does not parse is left out).
pub fn catalog_change_scope(data: &Value) -> (Vec<Sku>, Vec<crate::catalog::ChannelId>) {
    let strings = |name: &str| -> Vec<&str> {
        data.get(name)
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    (
        strings("skus")
            .into_iter()
            .filter_map(|s| Sku::parse(s).ok())
            .collect(),
        strings("channels")
            .into_iter()
            .filter_map(|c| crate::catalog::ChannelId::parse(c).ok())
            .collect(),
    )
}

/// The SKUs a hold event's `data` names.
pub fn hold_skus(data: &Value) -> Vec<Sku> {
    data.get("lines")
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.get("sku").and_then(Value::as_str))
                .filter_map(|s| Sku::parse(s).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an event type is an inventory movement.
pub fn is_movement(kind: &str) -> bool {
    MOVEMENT_TYPES.contains(&kind)
}

fn sku_at(f: &mut Fields<'_>, name: &'static str) -> Option<Sku> {
    let text = f.string(name, true, 128)?;
    match Sku::parse(&text) {
        Ok(sku) => Some(sku),
        Err(why) => {
            f.problem(name, why);
            None
        }
    }
}

fn location_at(f: &mut Fields<'_>, name: &'static str) -> Option<LocationId> {
    let text = f.string(name, true, 64)?;
    match LocationId::parse(&text) {
        Ok(id) => Some(id),
        Err(why) => {
            f.problem(name, why);
            None
        }
    }
}

fn time_at(f: &mut Fields<'_>, name: &'static str) -> Option<Timestamp> {
    let text = f.string(name, true, 64)?;
    match Timestamp::parse_rfc3339(&text) {
        Ok(t) => Some(t),
        Err(why) => {
            f.problem(name, why);
            None
        }
    }
}

/// Every member a movement's `data` may have, borrowed from its text. Read by
/// [`Movement::read`]; a text with an escape, a member no movement has or one named twice is
/// refused here and left to [`Movement::parse`]. An absent member reads as `None`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members<'a> {
    sku: Option<&'a str>,
    location: Option<&'a str>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    quantity: Option<i64>,
    delta: Option<i64>,
    reason: Option<&'a str>,
    on_hand: Option<i64>,
    allocated: Option<i64>,
    as_of: Option<&'a str>,
    reference: Option<&'a str>,
    order_id: Option<&'a str>,
}

impl Movement {
    /// Parses the `data` of an inventory event of type `kind`; problems point under `at`.
    pub fn parse(
        kind: &str,
        data: Option<&Value>,
        at: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<Movement> {
        let before = errors.len();
        let Some(data) = data else {
            errors.push(FieldError::new(at, format!("{kind} needs data")));
            return None;
        };
        let mut f = Fields::new(data, at, errors);
        let positive = |f: &mut Fields<'_>, name| f.int(name, true, 1, QUANTITY_ABS_MAX);
        // Every movement may name the document it came from (a receipt, adjustment or order
        // number): kept in the event for tracing, not used by the ledger.
        let _ = f.string("reference", false, 256);
        let movement = match kind {
            "inventory.received" | "inventory.shipped" | "inventory.returned" => {
                let sku = sku_at(&mut f, "sku");
                let location = location_at(&mut f, "location");
                let quantity = positive(&mut f, "quantity");
                let _ = f.string("order_id", false, 256);
                match (sku, location, quantity) {
                    (Some(sku), Some(location), Some(quantity)) => {
                        Some(Movement::goods(kind, sku, location, quantity))
                    }
                    _ => None,
                }
            }
            "inventory.adjusted" => {
                let sku = sku_at(&mut f, "sku");
                let location = location_at(&mut f, "location");
                let delta = f.int("delta", true, -QUANTITY_ABS_MAX, QUANTITY_ABS_MAX);
                let reason = f.string("reason", true, 256);
                if delta == Some(0) {
                    f.problem("delta", "must not be 0");
                }
                match (sku, location, delta, reason) {
                    (Some(sku), Some(location), Some(delta), Some(reason)) if delta != 0 => {
                        Some(Movement::Adjusted {
                            sku,
                            location,
                            delta,
                            reason,
                        })
                    }
                    _ => None,
                }
            }
            "inventory.counted" => {
                let sku = sku_at(&mut f, "sku");
                let location = location_at(&mut f, "location");
                let on_hand = f.int("on_hand", true, 0, QUANTITY_ABS_MAX);
                let as_of = time_at(&mut f, "as_of");
                match (sku, location, on_hand, as_of) {
                    (Some(sku), Some(location), Some(on_hand), Some(as_of)) => {
                        Some(Movement::Counted {
                            sku,
                            location,
                            on_hand,
                            as_of,
                        })
                    }
                    _ => None,
                }
            }
            "inventory.allocated" => {
                let sku = sku_at(&mut f, "sku");
                let location = location_at(&mut f, "location");
                let allocated = f.int("allocated", true, 0, QUANTITY_ABS_MAX);
                let as_of = time_at(&mut f, "as_of");
                match (sku, location, allocated, as_of) {
                    (Some(sku), Some(location), Some(allocated), Some(as_of)) => {
                        Some(Movement::Allocated {
                            sku,
                            location,
                            allocated,
                            as_of,
                        })
                    }
                    _ => None,
                }
            }
            "inventory.transferred" => {
                let sku = sku_at(&mut f, "sku");
                let from = location_at(&mut f, "from");
                let to = location_at(&mut f, "to");
                let quantity = positive(&mut f, "quantity");
                if from.is_some() && from == to {
                    f.problem("to", "must differ from from");
                }
                match (sku, from, to, quantity) {
                    (Some(sku), Some(from), Some(to), Some(quantity)) if from != to => {
                        Some(Movement::Transferred {
                            sku,
                            from,
                            to,
                            quantity,
                        })
                    }
                    _ => None,
                }
            }
            other => {
                f.problem("", format!("{other} is not an inventory movement"));
                None
            }
        };
        f.finish();
        if errors.len() > before {
            None
        } else {
            movement
        }
    }

    /// Goods in or out at a location, by the event type: a receipt, a shipment or (any other
    /// type) a return.
    fn goods(kind: &str, sku: Sku, location: LocationId, quantity: i64) -> Movement {
        match kind {
            "inventory.received" => Movement::Received {
                sku,
                location,
                quantity,
            },
            "inventory.shipped" => Movement::Shipped {
                sku,
                location,
                quantity,
            },
            _ => Movement::Returned {
                sku,
                location,
                quantity,
            },
        }
    }

    /// Reads a movement from the text of its `data`, with the order a movement names (`order_id`,
    /// for a shipment of an order): what [`Movement::parse`] reads, `None` where it finds a
    /// problem. Most texts are read straight into their members; anything unusual (a null, a
    /// member that does not belong, a problem) goes through [`Movement::parse`], which decides.
    pub fn read(kind: &str, text: &str) -> Option<(Movement, Option<String>)> {
        if let Some(read) = Self::read_members(kind, text) {
            return Some(read);
        }
        let value: Value = serde_json::from_str(text).ok()?;
        let movement = Movement::parse(kind, Some(&value), "", &mut Vec::new())?;
        let order = value
            .get("order_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some((movement, order))
    }

    /// The quick way of [`Movement::read`]: `Some` only for data that [`Movement::parse`]
    /// accepts as the same movement.
    fn read_members(kind: &str, text: &str) -> Option<(Movement, Option<String>)> {
        // A JSON array would fill the members in order: only an object is read here. A null
        // reads as an absent member here, and the full parse refuses it where the member does
        // not belong: a text with one is left to it.
        if !text.trim_start().starts_with('{') || text.contains("null") {
            return None;
        }
        let m: Members<'_> = serde_json::from_str(text).ok()?;
        fn string(t: Option<&str>, len_max: usize) -> Option<&str> {
            t.filter(|t| text_problem(t, len_max).is_none())
        }
        // An identifier that parses is a valid string member too (the full parse checks both).
        let sku = || Sku::parse(m.sku?).ok();
        let location = |t: Option<&str>| LocationId::parse(t?).ok();
        let time = || Timestamp::parse_rfc3339(string(m.as_of, 64)?).ok();
        let within = |n: Option<i64>, min: i64| n.filter(|n| (min..=QUANTITY_ABS_MAX).contains(n));
        // Optional members are either absent or valid; any other member must be absent.
        if m.reference.is_some() && string(m.reference, 256).is_none() {
            return None;
        }
        let shipment = matches!(
            kind,
            "inventory.received" | "inventory.shipped" | "inventory.returned"
        );
        if m.order_id.is_some() && !(shipment && string(m.order_id, 256).is_some()) {
            return None;
        }
        let present = [
            ("location", m.location.is_some()),
            ("from", m.from.is_some()),
            ("to", m.to.is_some()),
            ("quantity", m.quantity.is_some()),
            ("delta", m.delta.is_some()),
            ("reason", m.reason.is_some()),
            ("on_hand", m.on_hand.is_some()),
            ("allocated", m.allocated.is_some()),
            ("as_of", m.as_of.is_some()),
        ];
        let members: &[&str] = match kind {
            _ if shipment => &["location", "quantity"],
            "inventory.adjusted" => &["location", "delta", "reason"],
            "inventory.counted" => &["location", "on_hand", "as_of"],
            "inventory.allocated" => &["location", "allocated", "as_of"],
            "inventory.transferred" => &["from", "to", "quantity"],
            _ => return None,
        };
        if present
            .iter()
            .any(|(name, here)| *here != members.contains(name))
        {
            return None;
        }
        let movement = match kind {
            _ if shipment => {
                Movement::goods(kind, sku()?, location(m.location)?, within(m.quantity, 1)?)
            }
            "inventory.adjusted" => Movement::Adjusted {
                sku: sku()?,
                location: location(m.location)?,
                delta: m.delta.filter(|d| *d != 0 && d.abs() <= QUANTITY_ABS_MAX)?,
                reason: string(m.reason, 256)?.to_owned(),
            },
            "inventory.counted" => Movement::Counted {
                sku: sku()?,
                location: location(m.location)?,
                on_hand: within(m.on_hand, 0)?,
                as_of: time()?,
            },
            "inventory.allocated" => Movement::Allocated {
                sku: sku()?,
                location: location(m.location)?,
                allocated: within(m.allocated, 0)?,
                as_of: time()?,
            },
            _ => {
                let (from, to) = (location(m.from)?, location(m.to)?);
                if from == to {
                    return None;
                }
                Movement::Transferred {
                    sku: sku()?,
                    from,
                    to,
                    quantity: within(m.quantity, 1)?,
                }
            }
        };
        Some((movement, m.order_id.map(str::to_owned)))
    }

    /// The CloudEvents type the movement is recorded as.
    pub fn kind(&self) -> &'static str {
        match self {
            Movement::Received { .. } => "inventory.received",
            Movement::Adjusted { .. } => "inventory.adjusted",
            Movement::Counted { .. } => "inventory.counted",
            Movement::Allocated { .. } => "inventory.allocated",
            Movement::Transferred { .. } => "inventory.transferred",
            Movement::Shipped { .. } => "inventory.shipped",
            Movement::Returned { .. } => "inventory.returned",
        }
    }

    /// The event `data` that [`Movement::parse`] reads back as this movement.
    pub fn to_data(&self) -> Value {
        match self {
            Movement::Received {
                sku,
                location,
                quantity,
            }
            | Movement::Shipped {
                sku,
                location,
                quantity,
            }
            | Movement::Returned {
                sku,
                location,
                quantity,
            } => serde_json::json!({
                "sku": sku.as_str(), "location": location.as_str(), "quantity": quantity,
            }),
            Movement::Adjusted {
                sku,
                location,
                delta,
                reason,
            } => serde_json::json!({
                "sku": sku.as_str(), "location": location.as_str(), "delta": delta, "reason": reason,
            }),
            Movement::Counted {
                sku,
                location,
                on_hand,
                as_of,
            } => serde_json::json!({
                "sku": sku.as_str(), "location": location.as_str(), "on_hand": on_hand,
                "as_of": as_of.to_string(),
            }),
            Movement::Allocated {
                sku,
                location,
                allocated,
                as_of,
            } => serde_json::json!({
                "sku": sku.as_str(), "location": location.as_str(), "allocated": allocated,
                "as_of": as_of.to_string(),
            }),
            Movement::Transferred {
                sku,
                from,
                to,
                quantity,
            } => serde_json::json!({
                "sku": sku.as_str(), "from": from.as_str(), "to": to.as_str(), "quantity": quantity,
            }),
        }
    }

    /// The SKU the movement is about.
    pub fn sku(&self) -> &Sku {
        match self {
            Movement::Received { sku, .. }
            | Movement::Adjusted { sku, .. }
            | Movement::Counted { sku, .. }
            | Movement::Allocated { sku, .. }
            | Movement::Shipped { sku, .. }
            | Movement::Returned { sku, .. }
            | Movement::Transferred { sku, .. } => sku,
        }
    }

    /// The SKU and every location the movement touches.
    pub fn touches(&self) -> (&Sku, Vec<&LocationId>) {
        match self {
            Movement::Received { sku, location, .. }
            | Movement::Adjusted { sku, location, .. }
            | Movement::Counted { sku, location, .. }
            | Movement::Allocated { sku, location, .. }
            | Movement::Shipped { sku, location, .. }
            | Movement::Returned { sku, location, .. } => (sku, vec![location]),
            Movement::Transferred { sku, from, to, .. } => (sku, vec![from, to]),
        }
    }

    /// The `data` members naming the locations of [`Movement::touches`], in the same order.
    pub fn location_members(&self) -> &'static [&'static str] {
        match self {
            Movement::Transferred { .. } => &["from", "to"],
            _ => &["location"],
        }
    }

    /// The changes to positions: `(location, entry)`, one per location it touches. `at` orders
    /// deltas against counts (the event's own time, or when crossdock recorded it); `seq`
    /// identifies the event.
    pub fn entries(
        &self,
        seq: i64,
        at: Timestamp,
    ) -> impl Iterator<Item = (&LocationId, Entry)> + use<'_> {
        let delta = |quantity: i64, kind: DeltaKind| {
            Entry::Delta(Delta {
                seq,
                at,
                quantity,
                kind,
            })
        };
        let snapshot = |value: i64, as_of: Timestamp| Snapshot { seq, as_of, value };
        let (first, second) = match self {
            Movement::Received {
                location, quantity, ..
            } => ((location, delta(*quantity, DeltaKind::Received)), None),
            Movement::Adjusted {
                location, delta: d, ..
            } => ((location, delta(*d, DeltaKind::Adjusted)), None),
            Movement::Shipped {
                location, quantity, ..
            } => ((location, delta(-*quantity, DeltaKind::Shipped)), None),
            Movement::Returned {
                location, quantity, ..
            } => ((location, delta(*quantity, DeltaKind::Returned)), None),
            Movement::Transferred {
                from, to, quantity, ..
            } => (
                (from, delta(-*quantity, DeltaKind::TransferredOut)),
                Some((to, delta(*quantity, DeltaKind::TransferredIn))),
            ),
            Movement::Counted {
                location,
                on_hand,
                as_of,
                ..
            } => ((location, Entry::Count(snapshot(*on_hand, *as_of))), None),
            Movement::Allocated {
                location,
                allocated,
                as_of,
                ..
            } => (
                (location, Entry::Allocation(snapshot(*allocated, *as_of))),
                None,
            ),
        };
        std::iter::once(first).chain(second)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeltaKind {
    Received,
    Adjusted,
    Shipped,
    Returned,
    TransferredIn,
    TransferredOut,
}

impl DeltaKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeltaKind::Received => "received",
            DeltaKind::Adjusted => "adjusted",
            DeltaKind::Shipped => "shipped",
            DeltaKind::Returned => "returned",
            DeltaKind::TransferredIn => "transferred_in",
            DeltaKind::TransferredOut => "transferred_out",
        }
    }

    pub fn parse(text: &str) -> Option<DeltaKind> {
        Some(match text {
            "received" => DeltaKind::Received,
            "adjusted" => DeltaKind::Adjusted,
            "shipped" => DeltaKind::Shipped,
            "returned" => DeltaKind::Returned,
            "transferred_in" => DeltaKind::TransferredIn,
            "transferred_out" => DeltaKind::TransferredOut,
            _ => return None,
        })
    }
}

/// A change of on-hand by an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The event's sequence number: its identity here.
    pub seq: i64,
    /// When it happened, for ordering against counts.
    pub at: Timestamp,
    pub quantity: i64,
    pub kind: DeltaKind,
}

/// An absolute figure as of a time (a count, or an allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub seq: i64,
    pub as_of: Timestamp,
    pub value: i64,
}

impl Snapshot {
    /// Later wins; ties (same time) go to the later event, so the choice is the same in any
    /// order.
    fn newer_than(&self, other: &Snapshot) -> bool {
        (self.as_of, self.seq) > (other.as_of, other.seq)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Delta(Delta),
    Count(Snapshot),
    Allocation(Snapshot),
}

/// The deltas of a position, in event order, each event's at most once. They arrive mostly in
/// that order, and are appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deltas(Vec<Delta>);

impl Deltas {
    /// Adds a delta unless its event's is there already; whether it was added.
    pub fn insert(&mut self, delta: Delta) -> bool {
        if self.0.last().is_none_or(|last| last.seq < delta.seq) {
            self.0.push(delta);
            return true;
        }
        match self.0.binary_search_by_key(&delta.seq, |d| d.seq) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, delta);
                true
            }
        }
    }

    /// Keeps the deltas `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(&Delta) -> bool) {
        self.0.retain(keep);
    }

    /// The deltas of the event `seq` and later ones.
    pub fn since(&self, seq: i64) -> &[Delta] {
        &self.0[self.0.partition_point(|d| d.seq < seq)..]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Delta> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Deltas {
    type Item = &'a Delta;
    type IntoIter = std::slice::Iter<'a, Delta>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The ledger of one `(sku, location)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The latest count.
    pub count: Option<Snapshot>,
    /// Deltas the latest count does not include, by event.
    pub deltas: Deltas,
    /// The latest warehouse allocation snapshot.
    pub allocated: Option<Snapshot>,
    /// Units held by hub reservations not yet acknowledged by the warehouse.
    pub reserved: i64,
}

impl Position {
    /// Applies one entry; returns whether the position changed.
    pub fn apply(&mut self, entry: Entry) -> bool {
        match entry {
            Entry::Delta(d) => {
                // A delta at or before the latest count is already part of it.
                if self.count.is_some_and(|c| d.at <= c.as_of) {
                    return false;
                }
                self.deltas.insert(d)
            }
            Entry::Count(c) => {
                if self.count.is_some_and(|current| !c.newer_than(&current)) {
                    return false;
                }
                self.count = Some(c);
                self.deltas.retain(|d| d.at > c.as_of);
                true
            }
            Entry::Allocation(a) => {
                if self
                    .allocated
                    .is_some_and(|current| !a.newer_than(&current))
                {
                    return false;
                }
                self.allocated = Some(a);
                true
            }
        }
    }

    /// The latest count plus every delta after it.
    pub fn on_hand(&self) -> i64 {
        self.count.map_or(0, |c| c.value) + self.deltas.iter().map(|d| d.quantity).sum::<i64>()
    }

    pub fn allocated(&self) -> i64 {
        self.allocated.map_or(0, |a| a.value)
    }

    /// Available to promise: what is on hand and neither allocated by the warehouse, reserved by
    /// the hub, nor kept as safety stock. Never negative.
    pub fn atp(&self, safety_stock: i64) -> i64 {
        (self.on_hand() - self.allocated() - self.reserved - safety_stock).max(0)
    }
}

/// One step in deriving a channel's number, for explanations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStep {
    /// `percent`, `buffer`, `min_to_show`, `max` or `fixed`.
    pub rule: &'static str,
    pub setting: i64,
    pub before: i64,
    pub after: i64,
}

/// Applies a channel's policy to the ATP summed over its locations, step by step: a fixed
/// quantity (never above the ATP) or a percentage (rounded down), then the buffer, then the
/// minimum to show ("end when": below it, 0), then the maximum.
pub fn shape(policy: &Policy, atp: i64) -> (i64, Vec<PolicyStep>) {
    let mut steps = Vec::new();
    let value = shape_each(policy, atp, |step| steps.push(step));
    (value, steps)
}

/// The number [`shape`] gives, without the steps (the engine computes it for every listing a
/// batch changes).
pub fn shaped(policy: &Policy, atp: i64) -> i64 {
    shape_each(policy, atp, |_| {})
}

fn shape_each(policy: &Policy, atp: i64, mut record: impl FnMut(PolicyStep)) -> i64 {
    let mut value = atp.max(0);
    let mut step = |rule: &'static str, setting: i64, after: i64, value: &mut i64| {
        record(PolicyStep {
            rule,
            setting,
            before: *value,
            after,
        });
        *value = after;
    };
    if let Some(fixed) = policy.fixed {
        let after = fixed.min(value);
        step("fixed", fixed, after, &mut value);
    } else if let Some(percent) = policy.percent {
        // i128 so that a percentage of a 2^53 quantity cannot overflow.
        let after = i64::try_from(i128::from(value) * i128::from(percent) / 100).unwrap_or(value);
        step("percent", percent, after, &mut value);
    }
    if let Some(buffer) = policy.buffer {
        let after = (value - buffer).max(0);
        step("buffer", buffer, after, &mut value);
    }
    if let Some(min) = policy.min_to_show {
        let after = if value < min { 0 } else { value };
        step("min_to_show", min, after, &mut value);
    }
    if let Some(max) = policy.max {
        let after = value.min(max);
        step("max", max, after, &mut value);
    }
    value
}

/// The stocked items one unit of `sku` consumes: itself if it is stocked, or its components
/// expanded through nested kits, with the quantities of shared components added up.
pub fn bill_of_materials(sku: &Sku, kits: &crate::catalog::Kits) -> BTreeMap<Sku, i64> {
    fn go(
        sku: &Sku,
        times: i64,
        kits: &crate::catalog::Kits,
        out: &mut BTreeMap<Sku, i64>,
        depth: usize,
    ) {
        // The catalog refuses cycles; the bound only keeps a corrupt catalog from looping.
        if depth > 32 {
            return;
        }
        match kits.get(sku) {
            None => *out.entry(sku.clone()).or_default() += times,
            Some(components) => {
                for c in components {
                    go(
                        &c.sku,
                        times.saturating_mul(c.quantity),
                        kits,
                        out,
                        depth + 1,
                    );
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    go(sku, 1, kits, &mut out, 0);
    out
}

/// The ATP of a SKU that may be a kit: for a kit, the most whole kits its stocked components
/// allow together (a component shared by nested kits counts once per use). `atp_of` gives a
/// stocked SKU's ATP.
pub fn kit_atp(sku: &Sku, kits: &crate::catalog::Kits, atp_of: &dyn Fn(&Sku) -> i64) -> i64 {
    bill_of_materials(sku, kits)
        .iter()
        .map(|(component, per_kit)| atp_of(component).max(0) / (*per_kit).max(1))
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Component, Kits};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn to_data_reads_back_as_the_same_movement() {
        let sku = Sku::parse("SKU-1").unwrap();
        let a = LocationId::parse("WH-A").unwrap();
        let b = LocationId::parse("WH-B").unwrap();
        let at = Timestamp::parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
        for movement in [
            Movement::Received {
                sku: sku.clone(),
                location: a.clone(),
                quantity: 5,
            },
            Movement::Shipped {
                sku: sku.clone(),
                location: a.clone(),
                quantity: 2,
            },
            Movement::Returned {
                sku: sku.clone(),
                location: a.clone(),
                quantity: 1,
            },
            Movement::Adjusted {
                sku: sku.clone(),
                location: a.clone(),
                delta: -3,
                reason: "AU".into(),
            },
            Movement::Counted {
                sku: sku.clone(),
                location: a.clone(),
                on_hand: 40,
                as_of: at,
            },
            Movement::Allocated {
                sku: sku.clone(),
                location: a.clone(),
                allocated: 4,
                as_of: at,
            },
            Movement::Transferred {
                sku: sku.clone(),
                from: a.clone(),
                to: b.clone(),
                quantity: 7,
            },
        ] {
            let mut errors = Vec::new();
            let back = Movement::parse(
                movement.kind(),
                Some(&movement.to_data()),
                "/data",
                &mut errors,
            );
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(back.as_ref(), Some(&movement));
            let text = movement.to_data().to_string();
            assert_eq!(
                Movement::read_members(movement.kind(), &text),
                Some((movement.clone(), None)),
                "the quick way reads {text}"
            );
        }
        let shipped =
            r#"{"sku":"SKU-1","location":"WH-A","quantity":2,"order_id":"SO-9","reference":"P-1"}"#;
        assert_eq!(
            Movement::read("inventory.shipped", shipped).map(|(_, order)| order),
            Some(Some("SO-9".to_owned()))
        );
        // An array would fill the members in order; only the full parse reads it (and refuses it).
        let array = r#"["SKU-1","WH-A",null,null,7]"#;
        assert_eq!(Movement::read_members("inventory.received", array), None);
        assert_eq!(Movement::read("inventory.received", array), None);
        // An escape is read the long way, to the same movement.
        let escaped = r#"{"sku":"SKU\u002d1","location":"WH-A","quantity":2}"#;
        assert_eq!(Movement::read_members("inventory.received", escaped), None);
        assert_eq!(
            Movement::read("inventory.received", escaped).map(|(m, _)| m),
            Some(Movement::Received {
                sku,
                location: a,
                quantity: 2
            })
        );
    }

    /// A member of a movement's data, as a random text might hold it: valid, invalid, null, or a
    /// member no movement has.
    fn arb_member() -> impl Strategy<Value = (&'static str, Value)> {
        let names = prop::sample::select(vec![
            "sku",
            "location",
            "from",
            "to",
            "quantity",
            "delta",
            "reason",
            "on_hand",
            "allocated",
            "as_of",
            "reference",
            "order_id",
            "bogus",
        ]);
        let values = prop::sample::select(vec![
            json!("SKU-1"),
            json!("WH-A"),
            json!("WH-B"),
            json!("2026-11-26T10:00:00Z"),
            json!("2026-13-40"),
            json!(""),
            json!("   "),
            json!(" WH-A"),
            json!("bad\u{7}text"),
            json!("x".repeat(129)),
            json!("a b"),
            json!(0),
            json!(1),
            json!(-2),
            json!(7),
            json!(9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1.5),
            json!(2.0),
            json!(true),
            json!(null),
            json!([1]),
            json!({"a": 1}),
        ]);
        (names, values)
    }

    proptest! {
        // Many cases: one member out of place among thousands of texts is what it looks for.
        #![proptest_config(ProptestConfig::with_cases(8192))]

        /// Whatever the text, the quick way reads nothing that the full parse would not read as
        /// the same movement; and `read` gives what the full parse gives.
        #[test]
        fn the_quick_read_agrees_with_the_full_parse(
            kind in prop::sample::select(vec![
                "inventory.received", "inventory.shipped", "inventory.returned",
                "inventory.adjusted", "inventory.counted", "inventory.allocated",
                "inventory.transferred", "inventory.reserved",
            ]),
            valid in any::<bool>(),
            members in proptest::collection::vec(arb_member(), 0..4),
            array in any::<bool>(),
        ) {
            // Most texts start from the members the kind needs, so that the quick way is taken
            // and one changed member decides.
            let base = match kind {
                "inventory.adjusted" => json!({"sku": "SKU-1", "location": "WH-A", "delta": -2, "reason": "AU"}),
                "inventory.counted" => json!({"sku": "SKU-1", "location": "WH-A", "on_hand": 7, "as_of": "2026-11-26T10:00:00Z"}),
                "inventory.allocated" => json!({"sku": "SKU-1", "location": "WH-A", "allocated": 1, "as_of": "2026-11-26T10:00:00Z"}),
                "inventory.transferred" => json!({"sku": "SKU-1", "from": "WH-A", "to": "WH-B", "quantity": 7}),
                _ => json!({"sku": "SKU-1", "location": "WH-A", "quantity": 7}),
            };
            let mut object = match base {
                Value::Object(o) if valid => o,
                _ => serde_json::Map::new(),
            };
            object.extend(members.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let text = if array {
                Value::Array(object.values().cloned().collect()).to_string()
            } else {
                Value::Object(object).to_string()
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            let full = Movement::parse(kind, Some(&value), "", &mut Vec::new());
            if let Some((quick, order)) = Movement::read_members(kind, &text) {
                prop_assert_eq!(Some(&quick), full.as_ref(), "{}", text);
                prop_assert_eq!(order.as_deref(), value.get("order_id").and_then(Value::as_str));
            }
            prop_assert_eq!(Movement::read(kind, &text).map(|(m, _)| m), full, "{}", text);
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_micros(s * 1_000_000)
    }

    fn d(seq: i64, at: i64, q: i64) -> Entry {
        Entry::Delta(Delta {
            seq,
            at: t(at),
            quantity: q,
            kind: DeltaKind::Adjusted,
        })
    }

    fn c(seq: i64, as_of: i64, v: i64) -> Entry {
        Entry::Count(Snapshot {
            seq,
            as_of: t(as_of),
            value: v,
        })
    }

    #[test]
    fn a_count_absorbs_older_deltas_and_keeps_newer_ones() {
        let mut p = Position::default();
        p.apply(d(1, 10, 5));
        p.apply(d(2, 20, -2));
        assert_eq!(p.on_hand(), 3);
        p.apply(c(3, 15, 100));
        // The receipt at 10 is in the count; the adjustment at 20 is not.
        assert_eq!(p.on_hand(), 98);
        // An older delta arriving late is not applied twice.
        assert!(!p.apply(d(4, 12, 7)));
        assert_eq!(p.on_hand(), 98);
        // An older count changes nothing.
        assert!(!p.apply(c(5, 14, 1)));
        assert_eq!(p.on_hand(), 98);
    }

    #[test]
    fn atp_subtracts_allocations_reservations_and_safety_and_is_never_negative() {
        let mut p = Position::default();
        p.apply(c(1, 10, 10));
        p.apply(Entry::Allocation(Snapshot {
            seq: 2,
            as_of: t(10),
            value: 3,
        }));
        p.reserved = 2;
        assert_eq!(p.atp(1), 4);
        p.reserved = 20;
        assert_eq!(p.atp(0), 0);
    }

    #[test]
    fn deltas_keep_event_order_and_each_event_once() {
        let delta = |seq| Delta {
            seq,
            at: t(seq),
            quantity: seq,
            kind: DeltaKind::Received,
        };
        let mut deltas = Deltas::default();
        for seq in [5, 2, 9, 2, 7, 9, 1] {
            deltas.insert(delta(seq));
        }
        let seqs: Vec<i64> = deltas.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![1, 2, 5, 7, 9]);
        assert!(!deltas.insert(delta(7)), "an event's delta is there once");
        assert_eq!(
            deltas.since(6).iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![7, 9]
        );
        assert!(deltas.since(10).is_empty());
        deltas.retain(|d| d.seq % 2 == 1);
        assert_eq!(deltas.len(), 4);
    }

    #[test]
    fn policies_shape_in_a_fixed_order() {
        let policy = Policy {
            percent: Some(50),
            buffer: Some(2),
            min_to_show: Some(5),
            max: Some(30),
            fixed: None,
        };
        assert_eq!(shape(&policy, 101).0, 30);
        assert_eq!(
            shape(&policy, 13).0,
            0,
            "50% of 13 is 6, minus 2 is 4, below 5 shows 0"
        );
        let (value, steps) = shape(&policy, 21);
        assert_eq!(value, 8);
        let rules: Vec<&str> = steps.iter().map(|s| s.rule).collect();
        assert_eq!(rules, vec!["percent", "buffer", "min_to_show", "max"]);
        let fixed = Policy {
            fixed: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            shape(&fixed, 4).0,
            4,
            "a fixed quantity is never more than the ATP"
        );
        assert_eq!(shape(&fixed, 40).0, 10);
        assert_eq!(shape(&Policy::default(), -3).0, 0);
        for atp in [-3, 0, 4, 13, 21, 40, 101] {
            for p in [&policy, &fixed] {
                let (value, steps) = shape(p, atp);
                assert_eq!(shaped(p, atp), value, "the number alone is the same");
                assert_eq!(steps.last().map_or(atp.max(0), |s| s.after), value);
            }
        }
    }

    #[test]
    fn movements_parse_with_pointers() {
        let mut errors = Vec::new();
        let m = Movement::parse(
            "inventory.counted",
            Some(
                &json!({"sku": "A", "location": "east", "on_hand": 5, "as_of": "2026-11-26T10:00:00Z"}),
            ),
            "/data",
            &mut errors,
        );
        assert!(matches!(m, Some(Movement::Counted { on_hand: 5, .. })));
        let bad = Movement::parse(
            "inventory.counted",
            Some(
                &json!({"sku": "A", "location": "east", "on_hand": -1, "as_of": "noon", "by": "me"}),
            ),
            "/data",
            &mut errors,
        );
        assert!(bad.is_none());
        let got: Vec<String> = errors.iter().map(|e| e.pointer.clone()).collect();
        assert_eq!(got, vec!["/data/on_hand", "/data/as_of", "/data/by"]);
        let mut errors = Vec::new();
        assert!(
            Movement::parse(
                "inventory.adjusted",
                Some(&json!({"sku": "A", "location": "e", "delta": 0, "reason": "x"})),
                "",
                &mut errors
            )
            .is_none()
        );
        assert!(
            Movement::parse(
                "inventory.transferred",
                Some(&json!({"sku": "A", "from": "e", "to": "e", "quantity": 1})),
                "",
                &mut errors
            )
            .is_none()
        );
        assert!(Movement::parse("inventory.received", None, "", &mut errors).is_none());
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            (0i64..50, -20i64..20)
                .prop_map(|(at, q)| (at, q))
                .prop_flat_map(|(at, q)| Just(d(0, at, q))),
            (0i64..50, 0i64..100).prop_map(|(as_of, v)| c(0, as_of, v)),
            (0i64..50, 0i64..30).prop_map(|(as_of, v)| Entry::Allocation(Snapshot {
                seq: 0,
                as_of: t(as_of),
                value: v
            })),
        ]
    }

    fn with_seq(entry: Entry, seq: i64) -> Entry {
        match entry {
            Entry::Delta(d) => Entry::Delta(Delta { seq, ..d }),
            Entry::Count(s) => Entry::Count(Snapshot { seq, ..s }),
            Entry::Allocation(s) => Entry::Allocation(Snapshot { seq, ..s }),
        }
    }

    proptest! {
        #[test]
        fn any_order_with_any_duplicates_gives_the_same_state(
            entries in proptest::collection::vec(arb_entry(), 0..40),
            order in any::<u64>(),
        ) {
            let history: Vec<Entry> = entries.into_iter().enumerate().map(|(i, e)| with_seq(e, i as i64 + 1)).collect();
            let mut forward = Position::default();
            for e in &history { forward.apply(*e); }
            let mut shuffled: Vec<Entry> = history.iter().chain(history.iter().step_by(2)).copied().collect();
            let mut state = order | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut other = Position::default();
            for e in shuffled { other.apply(e); }
            prop_assert_eq!(&forward, &other);
            prop_assert!(forward.atp(0) >= 0);
        }

        #[test]
        fn without_counts_on_hand_is_the_sum_of_movements(qs in proptest::collection::vec(-50i64..50, 0..40)) {
            let mut p = Position::default();
            for (i, q) in qs.iter().enumerate() { p.apply(d(i as i64 + 1, i as i64, *q)); }
            prop_assert_eq!(p.on_hand(), qs.iter().sum::<i64>());
        }

        #[test]
        fn kit_availability_matches_a_brute_force_count(
            atps in proptest::collection::vec(0i64..40, 4),
            kit_a in proptest::collection::vec((0usize..4, 1i64..4), 1..4),
            kit_b in proptest::collection::vec((0usize..4, 1i64..4), 1..3),
        ) {
            // Stocked items S0..S3; kit A uses stocked items; kit B uses stocked items and A.
            let sku = |i: usize| Sku::parse(&format!("S{i}")).unwrap();
            let dedup = |v: &[(usize, i64)]| -> Vec<Component> {
                let mut m = BTreeMap::new();
                for (i, q) in v { *m.entry(*i).or_insert(0) += q; }
                m.into_iter().map(|(i, q)| Component { sku: sku(i), quantity: q }).collect()
            };
            let a = Sku::parse("A").unwrap();
            let b = Sku::parse("B").unwrap();
            let mut b_components = dedup(&kit_b);
            b_components.push(Component { sku: a.clone(), quantity: 1 });
            let kits: Kits = BTreeMap::from([(a.clone(), dedup(&kit_a)), (b.clone(), b_components.clone())]);
            let atp_of = |s: &Sku| s.as_str()[1..].parse::<usize>().map_or(0, |i| atps[i]);
            // Brute force: the most kits n such that n kits' total need fits the stock.
            let need = |target: &Sku, n: i64| -> Vec<i64> {
                let mut total = vec![0i64; 4];
                let add = |comps: &[Component], times: i64, total: &mut Vec<i64>| {
                    for c in comps {
                        if c.sku == a { for ca in &kits[&a] { let i: usize = ca.sku.as_str()[1..].parse().unwrap(); total[i] += ca.quantity * c.quantity * times; } }
                        else { let i: usize = c.sku.as_str()[1..].parse().unwrap(); total[i] += c.quantity * times; }
                    }
                };
                add(&kits[target], n, &mut total);
                total
            };
            for target in [&a, &b] {
                let mut best = 0;
                for n in 1..=200 {
                    if need(target, n).iter().zip(&atps).all(|(need, have)| need <= have) { best = n; } else { break; }
                }
                prop_assert_eq!(kit_atp(target, &kits, &atp_of), best);
            }
        }
    }
}
