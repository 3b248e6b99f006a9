//! Reading inventory back: the stock of an item per location and per channel, and the
//! explanation of one channel's number — every count, delta, allocation and reservation it rests
//! on, and each policy step — as data and as text. The HTTP routes and `crossdock explain` both
//! come through here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crossdock_core::catalog::{ChannelId, LocationId, Sku};
use crossdock_core::inventory::{Position, Snapshot, bill_of_materials, shape};
use crossdock_store::{AvailabilityRow, PositionKey, Reservation, Store, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::runtime::inventory::CatalogIndex;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("there is no item {0}")]
    UnknownItem(String),
    #[error("there is no channel {0}")]
    UnknownChannel(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One position of a stocked item.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LocationStock {
    pub location: String,
    pub on_hand: i64,
    /// Set aside by the warehouse for orders.
    pub allocated: i64,
    /// Held by crossdock for orders the warehouse has not acknowledged yet.
    pub reserved: i64,
    /// `max(0, on_hand − allocated − reserved)`.
    pub atp: i64,
}

/// What a listing of the item shows on a channel.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChannelStock {
    pub channel: String,
    pub channel_sku: String,
    /// What crossdock computed from the ledger and the channel's policy.
    pub available: i64,
    /// What the channel last acknowledged (`null`: nothing yet).
    pub published: Option<i64>,
    /// An update is on its way: `available` differs from `published`.
    pub pending: bool,
}

/// The stock of one item.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InventoryView {
    pub sku: String,
    /// For a kit, each location's figure is how many kits its components make; `on_hand`,
    /// `allocated` and `reserved` are the kits' limiting numbers there.
    pub kit: bool,
    pub locations: Vec<LocationStock>,
    pub channels: Vec<ChannelStock>,
}

fn channel_stock(row: AvailabilityRow) -> ChannelStock {
    ChannelStock {
        channel: row.channel.to_string(),
        channel_sku: row.channel_sku.to_string(),
        available: row.available,
        published: row.published,
        pending: row.published != Some(row.available),
    }
}

/// The stock of `sku` per location and per channel listing; `sees` filters channels (a key bound
/// to one channel sees only that one).
pub async fn inventory(
    store: &Store,
    catalog: &CatalogIndex,
    sku: &Sku,
    sees: impl Fn(&ChannelId) -> bool,
) -> Result<InventoryView, ExplainError> {
    if store.items_known(vec![sku.clone()]).await?.is_empty() {
        return Err(ExplainError::UnknownItem(sku.to_string()));
    }
    let bom = bill_of_materials(sku, &catalog.snapshot.kits);
    let kit = catalog.snapshot.kits.contains_key(sku);
    let positions = store.positions(bom.keys().cloned().collect()).await?;
    let mut locations: BTreeMap<&LocationId, LocationStock> = BTreeMap::new();
    for location in catalog.snapshot.locations.keys() {
        // The kits a location makes: the fewest over components of what it holds / per kit.
        let figure = |f: &dyn Fn(&Position) -> i64| -> i64 {
            bom.iter()
                .map(|(c, per)| {
                    positions.get(&(c.clone(), location.clone())).map_or(0, f) / per.max(&1)
                })
                .min()
                .unwrap_or(0)
        };
        if !bom
            .keys()
            .any(|c| positions.contains_key(&(c.clone(), location.clone())))
        {
            continue;
        }
        let stock = if kit {
            LocationStock {
                location: location.to_string(),
                on_hand: figure(&|p| p.on_hand()),
                allocated: 0,
                reserved: 0,
                atp: figure(&|p| p.atp(0)),
            }
        } else {
            let p = positions
                .get(&(sku.clone(), location.clone()))
                .cloned()
                .unwrap_or_default();
            LocationStock {
                location: location.to_string(),
                on_hand: p.on_hand(),
                allocated: p.allocated(),
                reserved: p.reserved,
                atp: p.atp(0),
            }
        };
        locations.insert(location, stock);
    }
    let channels = store
        .channel_availability(vec![sku.clone()])
        .await?
        .into_iter()
        .filter(|row| sees(&row.channel))
        .map(channel_stock)
        .collect();
    Ok(InventoryView {
        sku: sku.to_string(),
        kit,
        locations: locations.into_values().collect(),
        channels,
    })
}

/// An event of the log, by its position and its own identity.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventRef {
    pub seq: i64,
    /// `null` when the event is no longer in the log.
    pub source: Option<String>,
    pub id: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    pub value: i64,
    /// As of when the source said it was true.
    pub as_of: String,
    pub event: EventRef,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeltaView {
    /// `received`, `adjusted`, `shipped`, `returned`, `transferred_in`, `transferred_out`.
    pub kind: String,
    pub quantity: i64,
    pub at: String,
    pub event: EventRef,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReservationView {
    pub order_id: String,
    pub quantity: i64,
    pub since: String,
}

/// How one location's ATP comes about: `on_hand = count + Σ deltas`,
/// `atp = max(0, on_hand − allocated − reserved)`, `reserved = Σ reservations`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LocationExplanation {
    pub location: String,
    /// The latest count (`null`: never counted, on hand starts at 0).
    pub count: Option<SnapshotView>,
    /// Every movement after the count, oldest first.
    pub deltas: Vec<DeltaView>,
    pub on_hand: i64,
    pub allocation: Option<SnapshotView>,
    pub allocated: i64,
    pub reservations: Vec<ReservationView>,
    pub reserved: i64,
    pub atp: i64,
}

/// One stocked item the listing rests on: the item itself, or a component of a kit.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ComponentExplanation {
    pub sku: String,
    /// Units in one unit of the explained item (1 for the item itself).
    pub per_unit: i64,
    /// Σ ATP over the channel's locations.
    pub atp: i64,
    /// `atp / per_unit`, rounded down.
    pub units: i64,
    pub locations: Vec<LocationExplanation>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StepView {
    /// `fixed`, `percent`, `buffer`, `min_to_show` or `max`.
    pub rule: String,
    pub setting: i64,
    pub before: i64,
    pub after: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListingState {
    pub channel_sku: String,
    pub published: Option<i64>,
    pub pending: bool,
}

/// The derivation of what `sku` may show on `channel`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub sku: String,
    pub channel: String,
    /// The channel's locations, in priority order.
    pub locations: Vec<String>,
    /// The fewest `units` over `components`: what the channel's locations can promise.
    pub atp: i64,
    pub components: Vec<ComponentExplanation>,
    /// The channel's policy applied to `atp`, step by step.
    pub policy: Vec<StepView>,
    /// The result: what the listing may show.
    pub available: i64,
    /// The listings of this item on the channel, with what the channel last acknowledged.
    pub listings: Vec<ListingState>,
}

fn snapshot_view(s: &Snapshot, ids: &BTreeMap<i64, (String, String)>) -> SnapshotView {
    SnapshotView {
        value: s.value,
        as_of: s.as_of.to_string(),
        event: event_ref(s.seq, ids),
    }
}

fn event_ref(seq: i64, ids: &BTreeMap<i64, (String, String)>) -> EventRef {
    let found = ids.get(&seq);
    EventRef {
        seq,
        source: found.map(|(s, _)| s.clone()),
        id: found.map(|(_, i)| i.clone()),
    }
}

fn location_explanation(
    location: &LocationId,
    p: &Position,
    reservations: &[&Reservation],
    ids: &BTreeMap<i64, (String, String)>,
) -> LocationExplanation {
    let mut deltas: Vec<_> = p.deltas.iter().collect();
    deltas.sort_by_key(|d| (d.at, d.seq));
    LocationExplanation {
        location: location.to_string(),
        count: p.count.as_ref().map(|c| snapshot_view(c, ids)),
        deltas: deltas
            .into_iter()
            .map(|d| DeltaView {
                kind: d.kind.as_str().to_owned(),
                quantity: d.quantity,
                at: d.at.to_string(),
                event: event_ref(d.seq, ids),
            })
            .collect(),
        on_hand: p.on_hand(),
        allocation: p.allocated.as_ref().map(|a| snapshot_view(a, ids)),
        allocated: p.allocated(),
        reservations: reservations
            .iter()
            .map(|r| ReservationView {
                order_id: r.order_id.clone(),
                quantity: r.quantity,
                since: r.created_at.to_string(),
            })
            .collect(),
        reserved: p.reserved,
        atp: p.atp(0),
    }
}

/// Explains what `sku` may show on `channel`, from the ledger as it is now.
pub async fn explain(
    store: &Store,
    catalog: &CatalogIndex,
    sku: &Sku,
    channel_id: &ChannelId,
) -> Result<Explanation, ExplainError> {
    let Some(channel) = catalog.snapshot.channels.get(channel_id) else {
        return Err(ExplainError::UnknownChannel(channel_id.to_string()));
    };
    if store.items_known(vec![sku.clone()]).await?.is_empty() {
        return Err(ExplainError::UnknownItem(sku.to_string()));
    }
    let bom = bill_of_materials(sku, &catalog.snapshot.kits);
    let stocked: Vec<Sku> = bom.keys().cloned().collect();
    let positions = store.positions(stocked.clone()).await?;
    let reservations = store.reservations(stocked).await?;
    let seqs: Vec<i64> = positions
        .values()
        .flat_map(|p| {
            p.deltas
                .iter()
                .map(|d| d.seq)
                .chain(p.count.map(|c| c.seq))
                .chain(p.allocated.map(|a| a.seq))
        })
        .collect();
    let ids = store.event_ids(seqs).await?;
    let mut components = Vec::new();
    for (component, per_unit) in &bom {
        let locations: Vec<LocationExplanation> = channel
            .locations
            .iter()
            .map(|location| {
                let key: PositionKey = (component.clone(), location.clone());
                let p = positions.get(&key).cloned().unwrap_or_default();
                let held: Vec<&Reservation> = reservations
                    .iter()
                    .filter(|r| &r.sku == component && &r.location == location)
                    .collect();
                location_explanation(location, &p, &held, &ids)
            })
            .collect();
        let atp: i64 = locations.iter().map(|l| l.atp).sum();
        components.push(ComponentExplanation {
            sku: component.to_string(),
            per_unit: *per_unit,
            atp,
            units: atp / (*per_unit).max(1),
            locations,
        });
    }
    let atp = components.iter().map(|c| c.units).min().unwrap_or(0);
    let (available, steps) = shape(&channel.policy, atp);
    let listings = store
        .channel_availability(vec![sku.clone()])
        .await?
        .into_iter()
        .filter(|row| &row.channel == channel_id)
        .map(|row| ListingState {
            channel_sku: row.channel_sku.to_string(),
            published: row.published,
            pending: row.published != Some(available),
        })
        .collect();
    Ok(Explanation {
        sku: sku.to_string(),
        channel: channel_id.to_string(),
        locations: channel.locations.iter().map(ToString::to_string).collect(),
        atp,
        components,
        policy: steps
            .into_iter()
            .map(|s| StepView {
                rule: s.rule.to_owned(),
                setting: s.setting,
                before: s.before,
                after: s.after,
            })
            .collect(),
        available,
        listings,
    })
}

fn event_text(e: &EventRef) -> String {
    match (&e.source, &e.id) {
        (Some(source), Some(id)) => format!("event {source} {id}, seq {}", e.seq),
        _ => format!("seq {}", e.seq),
    }
}

impl Explanation {
    /// The explanation as text for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} on {}: {} available",
            self.sku, self.channel, self.available
        );
        for l in &self.listings {
            let shown = l
                .published
                .map_or_else(|| "nothing yet".to_owned(), |p| p.to_string());
            let pending = if l.pending { " (update pending)" } else { "" };
            let _ = writeln!(
                out,
                "  listing {}: channel shows {shown}{pending}",
                l.channel_sku
            );
        }
        let _ = writeln!(out, "  locations: {}", self.locations.join(", "));
        for c in &self.components {
            if c.per_unit == 1 && self.components.len() == 1 && c.sku == self.sku {
                let _ = writeln!(out, "  ATP {} = sum over locations", c.atp);
            } else {
                let _ = writeln!(
                    out,
                    "  component {} × {} per unit: ATP {} → {} unit(s)",
                    c.sku, c.per_unit, c.atp, c.units
                );
            }
            for l in &c.locations {
                let _ = writeln!(out, "    {}: ATP {}", l.location, l.atp);
                match &l.count {
                    Some(count) => {
                        let _ = writeln!(
                            out,
                            "      count {} as of {} ({})",
                            count.value,
                            count.as_of,
                            event_text(&count.event)
                        );
                    }
                    None => {
                        let _ = writeln!(out, "      never counted: starts at 0");
                    }
                }
                for d in &l.deltas {
                    let _ = writeln!(
                        out,
                        "      {:+} {} at {} ({})",
                        d.quantity,
                        d.kind,
                        d.at,
                        event_text(&d.event)
                    );
                }
                let _ = writeln!(out, "      = on hand {}", l.on_hand);
                if let Some(a) = &l.allocation {
                    let _ = writeln!(
                        out,
                        "      − allocated {} as of {} ({})",
                        a.value,
                        a.as_of,
                        event_text(&a.event)
                    );
                }
                for r in &l.reservations {
                    let _ = writeln!(
                        out,
                        "      − reserved {} for order {} since {}",
                        r.quantity, r.order_id, r.since
                    );
                }
                let _ = writeln!(
                    out,
                    "      = ATP {} (max of 0 and {} − {} − {})",
                    l.atp, l.on_hand, l.allocated, l.reserved
                );
            }
        }
        if self.components.len() > 1 || self.components.first().is_some_and(|c| c.sku != self.sku) {
            let _ = writeln!(
                out,
                "  kits possible: {} (the fewest units over components)",
                self.atp
            );
        }
        if self.policy.is_empty() {
            let _ = writeln!(out, "  policy: none; shows the ATP, {}", self.atp);
        }
        for s in &self.policy {
            let _ = writeln!(
                out,
                "  policy {} {}: {} → {}",
                s.rule, s.setting, s.before, s.after
            );
        }
        out
    }
}
