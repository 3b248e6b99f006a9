//! The inventory engine: the consumer that applies inventory events to the ledger, recomputes
//! what each affected channel listing may show, and queues `channel.availability` actions —
//! zero-outs first, then decreases, then increases held back by the channel's
//! `increase_hold_ms` and replaced by anything newer. Also the cached catalog the engine and the
//! inventory routes read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crossdock_core::catalog::{Channel, ChannelId, ChannelSku, LocationId, Sku};
use crossdock_core::inventory::{
    CATALOG_CHANGED, Movement, Position, bill_of_materials, catalog_change_scope, hold_skus,
    is_hold, is_movement, kit_atp, shaped,
};
use crossdock_core::json::QUANTITY_ABS_MAX;
use crossdock_core::{EventData, FieldError, NewEvent, StoredEvent, Timestamp};
use crossdock_store::{
    AvailabilityChange, CatalogSnapshot, ClaimedAction, Conversion, Divergence, DropOutcome,
    DueListing, InventoryWrites, NewAction, PositionKey, PositionWrite, Projection,
    ProjectionWrites, ReplayOutcome, ReservationLine, ReserveOutcome, ReserveRequest, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};

use super::consumer::{ApplyFuture, LogConsumer};
use super::keyhash::KeyHash;
use crate::app::AppState;

/// Priorities of availability updates in the outbox: a zero-out goes before a decrease before an
/// increase.
pub const PRIORITY_ZERO_OUT: i32 = 30;
pub const PRIORITY_DECREASE: i32 = 20;
pub const PRIORITY_INCREASE: i32 = 10;

/// The same order as kept with each listing (lower goes first).
pub const RANK_ZERO_OUT: i32 = 0;
pub const RANK_DECREASE: i32 = 1;
pub const RANK_INCREASE: i32 = 2;

/// The delivery target of a channel's availability updates.
pub fn channel_target(channel: &ChannelId) -> String {
    format!("channel-{channel}")
}

/// Positions by SKU and location, however they are held.
pub trait Positions {
    fn at(&self, sku: &Sku, location: &LocationId) -> Option<&Position>;
}

impl Positions for BTreeMap<PositionKey, Position> {
    fn at(&self, sku: &Sku, location: &LocationId) -> Option<&Position> {
        self.get(&(sku.clone(), location.clone()))
    }
}

/// The catalog with the indexes the engine needs.
#[derive(Debug, Default)]
pub struct CatalogIndex {
    /// As stored, with its listings sorted by channel and channel SKU (pages of a channel's
    /// listings are found by binary search).
    pub snapshot: CatalogSnapshot,
    /// SKU → its listings.
    pub listings: HashMap<Sku, Vec<(ChannelId, ChannelSku)>, KeyHash>,
    /// SKU → the kits that list it as a component.
    pub parents: HashMap<Sku, Vec<Sku>, KeyHash>,
    /// A channel's SKU → ours.
    pub listed: HashMap<(ChannelId, ChannelSku), Sku, KeyHash>,
}

impl CatalogIndex {
    fn build(mut snapshot: CatalogSnapshot) -> CatalogIndex {
        snapshot.listings.sort_unstable();
        // A channel's locations as the catalog's own ids: positions compare them without reading
        // their text.
        for channel in snapshot.channels.values_mut() {
            for location in &mut channel.locations {
                if let Some((id, _)) = snapshot.locations.get_key_value(location) {
                    *location = id.clone();
                }
            }
        }
        let mut listings: HashMap<Sku, Vec<(ChannelId, ChannelSku)>, KeyHash> = HashMap::default();
        for (channel, channel_sku, sku) in &snapshot.listings {
            listings
                .entry(sku.clone())
                .or_default()
                .push((channel.clone(), channel_sku.clone()));
        }
        let listed = snapshot
            .listings
            .iter()
            .map(|(channel, channel_sku, sku)| {
                ((channel.clone(), channel_sku.clone()), sku.clone())
            })
            .collect();
        let mut parents: HashMap<Sku, Vec<Sku>, KeyHash> = HashMap::default();
        for (kit, components) in &snapshot.kits {
            for c in components {
                parents.entry(c.sku.clone()).or_default().push(kit.clone());
            }
        }
        CatalogIndex {
            snapshot,
            listings,
            listed,
            parents,
        }
    }

    /// The catalog's own copy of a location id, when it has the location (compared without
    /// reading its text).
    pub fn location_id(&self, location: LocationId) -> LocationId {
        self.snapshot
            .locations
            .get_key_value(&location)
            .map_or(location, |(id, _)| id.clone())
    }

    /// The SKUs whose availability depends on these: themselves and every kit above them, in
    /// key order, each once.
    pub fn affected(&self, skus: impl IntoIterator<Item = Sku>) -> Vec<Sku> {
        let mut out: Vec<Sku> = skus.into_iter().collect();
        let mut kits: HashSet<&Sku, KeyHash> = HashSet::default();
        let mut todo: Vec<&Sku> = out
            .iter()
            .filter_map(|sku| self.parents.get(sku))
            .flatten()
            .collect();
        while let Some(kit) = todo.pop() {
            if kits.insert(kit) {
                todo.extend(self.parents.get(kit).into_iter().flatten());
            }
        }
        out.extend(kits.into_iter().cloned());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// What a listing of `sku` on `channel` may show, from the given positions.
    pub fn available(&self, channel: &Channel, sku: &Sku, positions: &impl Positions) -> i64 {
        let atp = self.channel_atp(channel, sku, positions);
        shaped(&channel.policy, atp)
    }

    /// What each of these listings of `sku` may show, with its channel (`None` for a channel
    /// the catalog does not have), appended to `out` in the listings' order.
    fn listing_values<'c>(
        &'c self,
        sku: &Sku,
        listings: &[(ChannelId, ChannelSku)],
        positions: &impl Positions,
        out: &mut Vec<Option<(&'c Channel, i64)>>,
    ) {
        out.extend(listings.iter().map(|(channel_id, _)| {
            self.snapshot
                .channels
                .get(channel_id)
                .map(|channel| (channel, self.available(channel, sku, positions)))
        }));
    }

    /// The ATP of `sku` over a channel's locations (through its components, for a kit).
    pub fn channel_atp(&self, channel: &Channel, sku: &Sku, positions: &impl Positions) -> i64 {
        let atp_of = |component: &Sku| -> i64 {
            channel
                .locations
                .iter()
                .filter_map(|l| positions.at(component, l))
                .map(|p| p.atp(0))
                .sum()
        };
        if self.snapshot.kits.contains_key(sku) {
            kit_atp(sku, &self.snapshot.kits, &atp_of)
        } else {
            atp_of(sku).max(0)
        }
    }

    /// A channel's listings whose channel SKU sorts after `after` ("" for all), in order.
    pub fn channel_listings(
        &self,
        channel: &ChannelId,
        after: &str,
    ) -> &[(ChannelId, ChannelSku, Sku)] {
        let all = &self.snapshot.listings;
        let start = all
            .partition_point(|(c, channel_sku, _)| (c, channel_sku.as_str()) <= (channel, after));
        let len = all[start..].partition_point(|(c, _, _)| c == channel);
        &all[start..start + len]
    }

    /// The stocked SKUs whose positions determine `sku`'s availability.
    pub fn stocked(&self, sku: &Sku) -> Vec<Sku> {
        if !self.snapshot.kits.contains_key(sku) {
            return vec![sku.clone()];
        }
        bill_of_materials(sku, &self.snapshot.kits)
            .into_keys()
            .collect()
    }
}

/// A catalog snapshot shared by the engine and the routes, read again when the catalog changes.
/// One caller rebuilds it (off the async threads: a large catalog takes a while); the others
/// wait for that rebuild instead of each doing their own.
#[derive(Debug, Default)]
pub struct CatalogCache {
    current: Mutex<Option<Arc<CatalogIndex>>>,
    rebuild: tokio::sync::Mutex<()>,
    /// When the stored version was last read, and the store handle's catalog write count then.
    checked: Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long the catalog is trusted without reading its stored version, when this process has
/// not written it since: writes by other nodes are seen within this time.
const CATALOG_RECHECK: std::time::Duration = std::time::Duration::from_millis(200);

impl CatalogCache {
    pub async fn get(&self, store: &Store) -> Result<Arc<CatalogIndex>, StoreError> {
        let writes = store.catalog_writes();
        let fresh = self
            .checked
            .lock()
            .ok()
            .and_then(|c| *c)
            .is_some_and(|(at, seen)| seen == writes && at.elapsed() < CATALOG_RECHECK);
        if fresh && let Some(index) = self.current.lock().ok().and_then(|c| c.clone()) {
            return Ok(index);
        }
        let checked_at = std::time::Instant::now();
        let index = self.load(store).await?;
        if let Ok(mut checked) = self.checked.lock() {
            *checked = Some((checked_at, writes));
        }
        Ok(index)
    }

    /// The catalog as stored now (its version read every time): for the inventory projection,
    /// which must never apply an event with a listing another node has just added missing.
    pub async fn get_fresh(&self, store: &Store) -> Result<Arc<CatalogIndex>, StoreError> {
        let writes = store.catalog_writes();
        let checked_at = std::time::Instant::now();
        let index = self.load(store).await?;
        if let Ok(mut checked) = self.checked.lock() {
            *checked = Some((checked_at, writes));
        }
        Ok(index)
    }

    async fn load(&self, store: &Store) -> Result<Arc<CatalogIndex>, StoreError> {
        let version = store.catalog_version().await?;
        let cached = |at_least: i64| {
            self.current
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .filter(|index| index.snapshot.version >= at_least)
        };
        if let Some(index) = cached(version) {
            return Ok(index);
        }
        let _rebuilding = self.rebuild.lock().await;
        // Whoever held the lock before may have rebuilt it already.
        if let Some(index) = cached(version) {
            return Ok(index);
        }
        let snapshot = store.catalog_snapshot().await?;
        let index = tokio::task::spawn_blocking(move || CatalogIndex::build(snapshot))
            .await
            .map(Arc::new)
            .map_err(|e| StoreError::Unavailable(format!("catalog rebuild failed: {e}")))?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(index.clone());
        }
        Ok(index)
    }
}

/// The payload of a `channel.availability` action: the newest value of up to
/// [`FEED_BATCH_MAX`] listings of one channel, zero-outs first, then decreases, then increases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityBatch {
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: String,
    pub updates: Vec<AvailabilityUpdate>,
}

/// One listing's new value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityUpdate {
    pub channel_sku: String,
    pub sku: String,
    /// What the listing should show.
    pub quantity: i64,
    /// What the channel last acknowledged, if known.
    pub previous_published: Option<i64>,
}

/// The inventory projection, with what it keeps in memory of the batches it applied.
#[derive(Debug, Default)]
pub struct InventoryProjection {
    memory: Mutex<Memory>,
    /// Events in one batch at most ([`INVENTORY_BATCH_EVENTS_MAX`] unless set).
    batch_max: Option<usize>,
}

impl InventoryProjection {
    /// The projection applying at most `events` events per batch.
    pub fn with_batch_max(events: usize) -> InventoryProjection {
        InventoryProjection {
            batch_max: Some(events.max(1)),
            ..InventoryProjection::default()
        }
    }

    /// The projection for this store: on PostgreSQL, batches of at most
    /// [`INVENTORY_BATCH_EVENTS_MAX_POSTGRES`].
    pub fn for_store(store: &Store) -> InventoryProjection {
        match store.backend_name() {
            "postgres" => InventoryProjection::with_batch_max(INVENTORY_BATCH_EVENTS_MAX_POSTGRES),
            _ => InventoryProjection::default(),
        }
    }
}

/// The engine applies a batch while the one before it commits only after a batch of at least
/// this many events: a backlog.
pub const RUN_AHEAD_EVENTS_MIN: usize = 1000;

/// SKUs the engine keeps in memory at most; past it, it forgets them all and reads again what
/// it needs.
pub const MEMORY_SKUS_MAX: usize = 250_000;

/// What the engine knows from the batches it applied, so that a batch reads neither positions
/// nor listing values back from the store — and may be applied while the batch before it is
/// still committing. It holds what the store holds once those batches have committed: the engine
/// is the only writer of positions and listing values, and it reads a SKU's reservations again
/// whenever the log says they changed. It is forgotten when a batch is not committed, when the
/// consumer's position is not where it stands (a rebuild, another node applying batches) and
/// when it outgrows [`MEMORY_SKUS_MAX`].
#[derive(Debug, Default)]
struct Memory {
    /// The log position it stands at: the last event of the last batch applied.
    through: i64,
    /// Whether that batch converted reservations into shipments (the batch after it reads
    /// reservations, so it waits for that commit).
    converted: bool,
    /// The events in that batch.
    events: usize,
    /// Every SKU read or applied.
    skus: HashMap<Sku, Known, KeyHash>,
}

/// A SKU as the engine knows it.
#[derive(Debug, Default)]
struct Known {
    /// Its positions by location (none: nothing stored).
    positions: Vec<(LocationId, Position)>,
    /// What the rows of its listings show, as of catalog version `catalog`. Only a catalog
    /// change moves a listing's row to another SKU, so under a newer catalog none of it is
    /// trusted: every listing of the SKU is written again.
    shown: Vec<(ChannelId, ChannelSku, i64)>,
    catalog: i64,
    /// Where in `positions` the batch being applied changed a position (emptied when its
    /// writes are made).
    changed: Vec<usize>,
}

impl Known {
    /// Where its position at `location` is in `positions` (added, empty, when it has none):
    /// a position keeps its place once there.
    fn position_at(&mut self, location: &LocationId) -> usize {
        match self.positions.iter().position(|(l, _)| l == location) {
            Some(at) => at,
            None => {
                self.positions.push((location.clone(), Position::default()));
                self.positions.len() - 1
            }
        }
    }
}

impl Positions for HashMap<Sku, Known, KeyHash> {
    fn at(&self, sku: &Sku, location: &LocationId) -> Option<&Position> {
        let known = self.get(sku)?;
        known
            .positions
            .iter()
            .find(|(l, _)| l == location)
            .map(|(_, p)| p)
    }
}

/// One SKU's positions, for a SKU that is not a kit.
struct OwnPositions<'a>(&'a [(LocationId, Position)]);

impl Positions for OwnPositions<'_> {
    fn at(&self, _sku: &Sku, location: &LocationId) -> Option<&Position> {
        self.0.iter().find(|(l, _)| l == location).map(|(_, p)| p)
    }
}

impl Memory {
    /// Reads the positions and listing values of the SKUs it does not know yet. A value the
    /// engine wrote itself is newer than what the store returns while that write commits; such
    /// a SKU is known already, so it is not read.
    async fn load<'a>(
        &mut self,
        store: &Store,
        catalog: &CatalogIndex,
        skus: impl IntoIterator<Item = &'a Sku>,
    ) -> Result<(), StoreError> {
        let missing: HashSet<&Sku, KeyHash> = skus
            .into_iter()
            .filter(|sku| !self.skus.contains_key(*sku))
            .collect();
        let missing: Vec<Sku> = missing.into_iter().cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let (positions, rows) = tokio::try_join!(
            store.positions(missing.clone()),
            store.channel_availability(missing.clone())
        )?;
        for sku in missing {
            self.skus.entry(sku).or_insert_with(|| Known {
                catalog: catalog.snapshot.version,
                ..Known::default()
            });
        }
        for ((sku, location), position) in positions {
            if let Some(known) = self.skus.get_mut(&sku) {
                known
                    .positions
                    .push((catalog.location_id(location), position));
            }
        }
        for row in rows {
            if let Some(known) = self.skus.get_mut(&row.sku) {
                known
                    .shown
                    .push((row.channel, row.channel_sku, row.available));
            }
        }
        Ok(())
    }

    /// Reads again what the hub holds for orders at the known positions of these SKUs.
    async fn reread_reservations(
        &mut self,
        store: &Store,
        skus: Vec<Sku>,
    ) -> Result<(), StoreError> {
        if skus.is_empty() {
            return Ok(());
        }
        let totals = store.reserved_totals(skus.clone()).await?;
        for sku in skus {
            let Some(known) = self.skus.get_mut(&sku) else {
                continue;
            };
            for (location, position) in &mut known.positions {
                position.reserved = totals
                    .get(&(sku.clone(), location.clone()))
                    .copied()
                    .unwrap_or(0);
            }
        }
        Ok(())
    }
}

impl LogConsumer for InventoryProjection {
    fn name(&self) -> &str {
        Projection::Inventory.consumer_name()
    }

    /// Larger than the default: a batch's writes land on pages spread over every position and
    /// listing, so fewer, larger commits write each page fewer times while catching up (live,
    /// batches are as small as what arrived).
    fn batch_max(&self) -> usize {
        self.batch_max.unwrap_or(INVENTORY_BATCH_EVENTS_MAX)
    }

    fn apply<'a>(
        &'a self,
        state: &'a AppState,
        from: i64,
        batch: &'a [StoredEvent],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            // Taken out while the batch is applied: a batch that fails leaves nothing behind.
            let mut memory = self
                .memory
                .lock()
                .map(|mut m| std::mem::take(&mut *m))
                .unwrap_or_default();
            if memory.through != from || memory.skus.len() > MEMORY_SKUS_MAX {
                memory = Memory::default();
            }
            let writes = apply_batch(state, &mut memory, batch).await?;
            memory.through = batch.last().map_or(from, |e| e.seq);
            memory.converted = !writes.converted.is_empty();
            memory.events = batch.len();
            if let Ok(mut kept) = self.memory.lock() {
                *kept = memory;
            }
            Ok(ProjectionWrites::Inventory(Box::new(writes)))
        })
    }

    /// Only while catching up: live, the next batch gathers while this one commits, and fewer,
    /// larger commits leave the writer to the order path.
    fn runs_ahead(&self, from: i64) -> bool {
        self.memory.lock().is_ok_and(|m| {
            m.through == from
                && !m.converted
                && m.events >= RUN_AHEAD_EVENTS_MIN
                && m.skus.len() <= MEMORY_SKUS_MAX
        })
    }

    fn forget(&self) {
        if let Ok(mut memory) = self.memory.lock() {
            *memory = Memory::default();
        }
    }
}

/// What applying a batch's movements changed.
#[derive(Default)]
struct Applied {
    /// The SKUs whose positions changed (which ones: `Known::changed`).
    changed: Vec<Sku>,
    /// Movements at a location that is not one, or from a source that is not its authority.
    divergences: Vec<Divergence>,
    /// Shipments that name an order, for converting what the order held.
    shipped_orders: Vec<Conversion>,
}

impl Applied {
    /// Applies one movement to the positions of its SKU; `false`, with nothing done, when the
    /// SKU is not known yet.
    fn movement(
        &mut self,
        catalog: &CatalogIndex,
        skus: &mut HashMap<Sku, Known, KeyHash>,
        (event, movement, order): &(&StoredEvent, Movement, Option<String>),
    ) -> bool {
        let sku = movement.sku();
        let Some(known) = skus.get_mut(sku) else {
            return false;
        };
        let at = event.event.time().unwrap_or(event.recorded_at);
        let source = event.event.source();
        for (location, entry) in movement.entries(event.seq, at) {
            // The catalog's own identifier: positions compare it without reading its text.
            let location = match catalog.snapshot.locations.get_key_value(location) {
                Some((id, l)) if l.is_authoritative(source) => id,
                found => {
                    let reason = match found {
                        None => format!("{location} is not a location"),
                        Some((_, l)) => format!(
                            "{source} is not the authority for {location} ({})",
                            l.authority
                        ),
                    };
                    self.divergences.push(Divergence {
                        seq: event.seq,
                        sku: sku.clone(),
                        location: location.clone(),
                        source: source.to_owned(),
                        reason,
                    });
                    continue;
                }
            };
            let at = known.position_at(location);
            if !known.positions[at].1.apply(entry) {
                continue;
            }
            if let (Some(order), Movement::Shipped { quantity, .. }) = (order, movement) {
                self.shipped_orders.push(Conversion {
                    seq: event.seq,
                    order_id: order.clone(),
                    line: ReservationLine {
                        sku: sku.clone(),
                        location: location.clone(),
                        quantity: *quantity,
                    },
                });
            }
            if known.changed.is_empty() {
                self.changed.push(sku.clone());
            }
            if !known.changed.contains(&at) {
                known.changed.push(at);
            }
        }
        true
    }
}

async fn apply_batch(
    state: &AppState,
    memory: &mut Memory,
    batch: &[StoredEvent],
) -> Result<InventoryWrites, StoreError> {
    let mut writes = InventoryWrites {
        new_from_seq: batch.first().map_or(0, |e| e.seq),
        ..InventoryWrites::default()
    };
    let data = |e: &StoredEvent| -> Option<serde_json::Value> {
        e.event
            .data()
            .and_then(|d| serde_json::from_str(d.as_text()).ok())
    };
    // Each movement with the order it ships, if it names one.
    let mut movements: Vec<(&StoredEvent, Movement, Option<String>)> =
        Vec::with_capacity(batch.len());
    // SKUs whose reservations changed.
    let mut held: BTreeSet<Sku> = BTreeSet::new();
    // SKUs and channels whose listings a catalog change asks to compute again.
    let mut recount: BTreeSet<Sku> = BTreeSet::new();
    let mut recount_channels: BTreeSet<ChannelId> = BTreeSet::new();
    for e in batch {
        let kind = e.event.kind();
        if is_movement(kind) {
            // Events are validated when they arrive; one that is not (written by an older
            // version, say) is skipped here.
            if let Some((m, order)) = e
                .event
                .data()
                .and_then(|d| Movement::read(kind, d.as_text()))
            {
                let order = order.filter(|_| matches!(m, Movement::Shipped { .. }));
                movements.push((e, m, order));
            }
        } else if is_hold(kind) {
            held.extend(data(e).as_ref().map(hold_skus).unwrap_or_default());
        } else if kind == CATALOG_CHANGED
            && let Some(value) = data(e)
        {
            let (skus, channels) = catalog_change_scope(&value);
            recount.extend(skus);
            recount_channels.extend(channels);
        }
    }
    if movements.is_empty() && held.is_empty() && recount.is_empty() && recount_channels.is_empty()
    {
        return Ok(writes);
    }
    let catalog = state.catalog.get_fresh(&state.store).await?;
    // Every SKU listed on a changed channel is counted again.
    for channel in &recount_channels {
        recount.extend(
            catalog
                .channel_listings(channel, "")
                .iter()
                .map(|(_, _, sku)| sku.clone()),
        );
    }
    // What is held for orders where the log says it changed: read again where known (what is
    // read for the first time comes with it).
    let known_held: Vec<Sku> = held
        .iter()
        .filter(|sku| memory.skus.contains_key(*sku))
        .cloned()
        .collect();
    memory.reread_reservations(&state.store, known_held).await?;
    memory.load(&state.store, &catalog, &held).await?;
    // Movements of the SKUs known already are applied as they come; the SKUs the others name
    // are read first (in any order, the positions come out the same).
    let mut applied = Applied::default();
    let mut unknown: Vec<&(&StoredEvent, Movement, Option<String>)> = Vec::new();
    for movement in &movements {
        if !applied.movement(&catalog, &mut memory.skus, movement) {
            unknown.push(movement);
        }
    }
    if !unknown.is_empty() {
        let skus = unknown.iter().map(|(_, m, _)| m.sku());
        memory.load(&state.store, &catalog, skus).await?;
        for movement in unknown {
            applied.movement(&catalog, &mut memory.skus, movement);
        }
    }
    let Applied {
        changed,
        divergences,
        mut shipped_orders,
    } = applied;
    writes.divergences = divergences;
    // A SKU nothing is known of yet (no position, itself or through its components) is not
    // shown as zero on its channels: unknown is not none, and a catalog set up before the first
    // counts must not empty the listings.
    if !recount.is_empty() {
        let stocked: Vec<(Sku, Vec<Sku>)> = recount
            .iter()
            .map(|sku| (sku.clone(), catalog.stocked(sku)))
            .collect();
        memory
            .load(&state.store, &catalog, stocked.iter().flat_map(|(_, s)| s))
            .await?;
        let known = |s: &Sku| memory.skus.get(s).is_some_and(|k| !k.positions.is_empty());
        recount = stocked
            .into_iter()
            .filter(|(_, components)| components.iter().any(known))
            .map(|(sku, _)| sku)
            .collect();
    }
    if changed.is_empty() && held.is_empty() && recount.is_empty() {
        return Ok(writes);
    }
    // A shipment of an order consumes what the order held there: the position's reserved drops
    // with its on hand, in the same commit, so the units are never counted twice or not at all.
    // A shipment applied before (a rebuild) has consumed it already.
    if !shipped_orders.is_empty() {
        // In the log's order, whichever order they were applied in.
        shipped_orders.sort_unstable_by_key(|c| c.seq);
        let before = state
            .store
            .conversions_recorded(shipped_orders.iter().map(|c| c.seq).collect())
            .await?;
        shipped_orders.retain(|c| !before.contains(&c.seq));
        let skus: BTreeSet<Sku> = shipped_orders.iter().map(|c| c.line.sku.clone()).collect();
        let mut open: HashMap<(String, Sku, LocationId), i64> = state
            .store
            .reservations(skus.into_iter().collect())
            .await?
            .into_iter()
            .map(|r| ((r.order_id, r.sku, r.location), r.quantity))
            .collect();
        for mut conversion in shipped_orders {
            let line = &conversion.line;
            let key = (
                conversion.order_id.clone(),
                line.sku.clone(),
                line.location.clone(),
            );
            let Some(left) = open.get_mut(&key).filter(|q| **q > 0) else {
                continue;
            };
            let take = (*left).min(line.quantity);
            *left -= take;
            if let Some((_, p)) = memory
                .skus
                .get_mut(&line.sku)
                .and_then(|k| k.positions.iter_mut().find(|(l, _)| *l == line.location))
            {
                p.reserved -= take;
            }
            conversion.line.quantity = take;
            writes.converted.push(conversion);
        }
    }
    // Recompute every listing whose number depends on a changed SKU.
    // In key order: the store writes the rows one after another, and neighbours share pages.
    let affected = catalog.affected(changed.iter().cloned().chain(held).chain(recount));
    // A kit's components, whose positions make its number (any other SKU is its own).
    let needed: Vec<Sku> = affected
        .iter()
        .filter(|sku| catalog.snapshot.kits.contains_key(*sku))
        .flat_map(|sku| catalog.stocked(sku))
        .collect();
    memory
        .load(&state.store, &catalog, affected.iter().chain(&needed))
        .await?;
    let version = catalog.snapshot.version;
    let now = state.clock.now();
    writes.availability.reserve(
        affected
            .iter()
            .map(|sku| catalog.listings.get(sku).map_or(0, Vec::len))
            .sum(),
    );
    writes.positions.reserve(changed.len());
    // SKU by SKU in key order: the positions the batch changed, then each listing's channel and
    // what it should show (a kit from its components' positions).
    let mut values: Vec<Option<(&Channel, i64)>> = Vec::new();
    for sku in &affected {
        let listings = catalog.listings.get(sku);
        let kit = catalog.snapshot.kits.contains_key(sku);
        values.clear();
        if kit && let Some(listings) = listings {
            catalog.listing_values(sku, listings, &memory.skus, &mut values);
        }
        let Some(known) = memory.skus.get_mut(sku) else {
            continue;
        };
        if !known.changed.is_empty() {
            let mut at = std::mem::take(&mut known.changed);
            at.sort_unstable_by(|a, b| known.positions[*a].0.cmp(&known.positions[*b].0));
            for i in at {
                let (location, position) = &known.positions[i];
                writes.positions.push(PositionWrite::of(
                    (sku.clone(), location.clone()),
                    position,
                    writes.new_from_seq,
                ));
            }
        }
        let Some(listings) = listings else {
            continue;
        };
        if !kit {
            let own = OwnPositions(&known.positions);
            catalog.listing_values(sku, listings, &own, &mut values);
        }
        let trusted = known.catalog == version;
        if !trusted {
            known.shown.clear();
            known.catalog = version;
        }
        for ((channel_id, channel_sku), value) in listings.iter().zip(&values) {
            let Some((channel, available)) = *value else {
                continue;
            };
            let shown = known
                .shown
                .iter_mut()
                .find(|(c, cs, _)| c == channel_id && cs == channel_sku);
            match shown {
                Some((_, _, shown)) if *shown == available => continue,
                Some((_, _, shown)) => *shown = available,
                None => known
                    .shown
                    .push((channel_id.clone(), channel_sku.clone(), available)),
            }
            writes.availability.push(AvailabilityChange {
                channel: channel_id.clone(),
                channel_sku: channel_sku.clone(),
                sku: sku.clone(),
                available,
                hold_until: now.plus_millis(channel.increase_hold_ms),
            });
        }
    }
    Ok(writes)
}

/// Availability batches open (pending or in flight) per channel at most.
pub const FEED_OPEN_MAX: i64 = 4;

/// Events the inventory engine applies in one transaction at most. Only a backlog fills a batch
/// (live, a batch is what arrived since the last one). A batch's writes land on pages spread
/// over every position and listing, so a larger batch writes each page fewer times; its commit
/// (about 1.4 s here for 200,000 events, 0.45 s for 50,000) holds the single SQLite writer, which
/// other writes wait for while the engine catches up.
pub const INVENTORY_BATCH_EVENTS_MAX: usize = 200_000;

/// On PostgreSQL, where a batch's transaction holds its rows' locks (the feeder's listing rows
/// among them) until it commits: 2–3 s for 50,000 events here, 6–8 s for 200,000 (which
/// applied 23,090 events/s against 16,945).
pub const INVENTORY_BATCH_EVENTS_MAX_POSTGRES: usize = 50_000;

/// Listings in one `channel.availability` action at most. A connector splits a batch into what
/// its channel takes per call (Shopify's `inventorySetQuantities` takes 250); larger batches let
/// one open action per channel keep up with thousands of changes a second.
pub const FEED_BATCH_MAX: usize = 1000;

/// Moves due availability updates into the outbox until cancelled: per channel up to
/// [`FEED_OPEN_MAX`] open actions, each holding the newest value of up to [`FEED_BATCH_MAX`]
/// listings, zero-outs first, and no listing in two open actions. While a listing's action is
/// open, the listing keeps changing in `channel_availability` and its next action takes whatever
/// is newest then, so a slow channel gets fewer, fresher updates rather than a growing queue, and
/// no update overtakes an earlier one of the same listing. Wakes when the engine changes a
/// listing, a delivery finishes, a held increase comes due, or the poll interval passes.
pub async fn feed(state: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let poll = std::time::Duration::from_millis(state.config.outbox.poll_interval_ms);
    while !cancel.is_cancelled() {
        let wake = state.availability_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (queued, next_due) = match feed_once(&state).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "cannot queue channel updates; retrying");
                (0, None)
            }
        };
        if queued > 0 {
            state.outbox_wake.notify_waiters();
            // There may be more due than one batch per channel took.
            continue;
        }
        let now = state.clock.now();
        let until = next_due
            .map(|d| {
                std::time::Duration::from_micros(
                    u64::try_from(d.unix_micros() - now.unix_micros()).unwrap_or(0),
                )
            })
            .map_or(poll, |d| d.min(poll));
        tokio::select! {
            () = &mut wake => {}
            () = tokio::time::sleep(until) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// One pass over every channel, the channels side by side (their writes share commits); returns
/// the actions queued and when the next held update is due.
pub async fn feed_once(state: &Arc<AppState>) -> Result<(usize, Option<Timestamp>), StoreError> {
    let catalog = state.catalog.get(&state.store).await?;
    let mut passes = tokio::task::JoinSet::new();
    for channel in catalog.snapshot.channels.keys() {
        passes.spawn(feed_channel(state.clone(), channel.clone()));
    }
    let mut queued = 0;
    let mut next_due: Option<Timestamp> = None;
    let mut failed = None;
    while let Some(pass) = passes.join_next().await {
        match pass {
            Ok(Ok((q, due))) => {
                queued += usize::from(q);
                next_due = earliest(next_due, due);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(StoreError::Unavailable(format!("channel feed task: {e}"))),
        }
    }
    match failed {
        Some(e) if queued == 0 => Err(e),
        _ => Ok((queued, next_due)),
    }
}

/// Queues one batch for a channel if it has room and something due; returns whether it did, and
/// when its next held update is due.
async fn feed_channel(
    state: Arc<AppState>,
    channel: ChannelId,
) -> Result<(bool, Option<Timestamp>), StoreError> {
    let target = channel_target(&channel);
    if !state.target_names.contains(&target) {
        warn_untargeted(&channel, &target);
    }
    let now = state.clock.now();
    // A cheap look first: most passes find the channel busy or nothing due.
    let peek = state
        .store
        .availability_due(&channel, &target, 1, now)
        .await?;
    // A listing is in one open batch at most, so its updates reach the channel in order; a few
    // batches may be open at once, so one slow delivery does not hold up the rest.
    if peek.open >= FEED_OPEN_MAX || peek.listings.is_empty() {
        return Ok((false, peek.next_due));
    }
    let build_channel = channel.clone();
    let build_target = target.clone();
    let due = state
        .store
        .feed_availability(
            &channel,
            &target,
            FEED_BATCH_MAX,
            now,
            FEED_OPEN_MAX,
            Box::new(move |listings| batch_action(&build_channel, build_target, listings, now)),
        )
        .await?;
    Ok((
        due.open < FEED_OPEN_MAX && !due.listings.is_empty(),
        earliest(peek.next_due, due.next_due),
    ))
}

/// Says once per channel that its updates wait for a delivery target nobody configured: they
/// are queued (at most [`FEED_OPEN_MAX`] batches) and go once the target exists.
fn warn_untargeted(channel: &ChannelId, target: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = WARNED
        .lock()
        .map(|mut warned| warned.insert(channel.to_string()))
        .unwrap_or(false);
    if first {
        tracing::warn!(
            channel = %channel,
            "channel {channel} has no delivery target: its availability updates wait in the outbox \
             until a target named {target} is configured ([targets.{target}])"
        );
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The action carrying one batch of a channel's listings, most urgent first.
fn batch_action(
    channel: &ChannelId,
    target: String,
    listings: &[DueListing],
    now: Timestamp,
) -> Result<NewAction, StoreError> {
    static BATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let best = listings
        .iter()
        .map(|l| l.rank)
        .min()
        .unwrap_or(RANK_INCREASE);
    let batch = AvailabilityBatch {
        kind: "channel.availability".into(),
        channel: channel.to_string(),
        updates: listings
            .iter()
            .map(|l| AvailabilityUpdate {
                channel_sku: l.channel_sku.to_string(),
                sku: l.sku.to_string(),
                quantity: l.available,
                previous_published: l.published,
            })
            .collect(),
    };
    let n = BATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(NewAction {
        target,
        idempotency_key: format!("availability-{channel}-{}-{n}", now.unix_micros()),
        coalesce_key: None,
        priority: match best {
            RANK_ZERO_OUT => PRIORITY_ZERO_OUT,
            RANK_DECREASE => PRIORITY_DECREASE,
            _ => PRIORITY_INCREASE,
        },
        payload: serde_json::to_string(&batch).map_err(|e| StoreError::Invalid(e.to_string()))?,
        not_before: now,
        correlation_id: None,
        causation_id: None,
    })
}

/// After a delivery, before its action is closed: if it was a channel's availability batch,
/// remember what the channel now shows for each listing in it (a value still waiting is ranked
/// again against it, and waits its hold if it is now an increase).
pub async fn acknowledged(state: &AppState, action: &ClaimedAction) {
    if !action.target.starts_with("channel-") {
        return;
    }
    let Ok(batch) = serde_json::from_str::<AvailabilityBatch>(&action.payload) else {
        return;
    };
    let Ok(channel) = ChannelId::parse(&batch.channel) else {
        return;
    };
    let shown: Vec<(ChannelSku, i64)> = batch
        .updates
        .iter()
        .filter_map(|u| {
            ChannelSku::parse(&u.channel_sku)
                .ok()
                .map(|c| (c, u.quantity))
        })
        .collect();
    let hold_ms = match state.catalog.get(&state.store).await {
        Ok(catalog) => catalog
            .snapshot
            .channels
            .get(&channel)
            .map_or(0, |c| c.increase_hold_ms),
        Err(_) => 0,
    };
    if let Err(e) = state
        .store
        .availability_published(&channel, shown, hold_ms, state.clock.now())
        .await
    {
        tracing::warn!(error = %e, "cannot record published quantities");
    }
}

/// What replaying a dead letter did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReplay {
    /// An ordinary action: the store's outcome.
    Store(ReplayOutcome),
    /// A channel availability batch: not sent again as it was (its values may be stale); the
    /// listings it still carries are due again with their current values, and it is dropped.
    Refreshed,
}

/// Why a replayed availability batch is dropped rather than sent.
pub const REFRESHED_REASON: &str =
    "replayed: its listings are sent again with their current values instead";

/// Replays a dead letter. A channel's availability batch is never re-sent as it was: what its
/// listings may show has likely moved on, so they are queued again with their current values.
pub async fn replay_dead_letter(
    store: &Store,
    id: i64,
    now: Timestamp,
) -> Result<DeadLetterReplay, StoreError> {
    let is_batch = store.action(id).await?.is_some_and(|a| {
        a.target.starts_with("channel-")
            && serde_json::from_str::<AvailabilityBatch>(&a.payload)
                .is_ok_and(|b| b.kind == "channel.availability")
    });
    if !is_batch {
        return Ok(DeadLetterReplay::Store(
            store.replay_dead_letter(id, now).await?,
        ));
    }
    Ok(
        match store
            .refresh_dead_availability(id, REFRESHED_REASON, now)
            .await?
        {
            DropOutcome::Dropped => DeadLetterReplay::Refreshed,
            DropOutcome::NotFound => DeadLetterReplay::Store(ReplayOutcome::NotFound),
            DropOutcome::NotDead => DeadLetterReplay::Store(ReplayOutcome::NotDead),
        },
    )
}

/// An id for an event crossdock records itself: its kind, the time and a count kept by this
/// process, so two recorded in the same microsecond differ.
fn own_event_id(prefix: &str, now: Timestamp) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", now.unix_micros())
}

/// The source of the events crossdock records when its catalog changes what listings show.
pub const CATALOG_SOURCE: &str = "/crossdock/catalog";

/// The event recording that the catalog changed what these SKUs' or channels' listings may
/// show, so that the engine computes them again (a new listing gets its first value then). The
/// store appends it in the catalog write's own transaction; `None` when there is nothing to
/// compute again.
pub fn catalog_change(skus: &[Sku], channels: &[ChannelId], now: Timestamp) -> Option<NewEvent> {
    if skus.is_empty() && channels.is_empty() {
        return None;
    }
    let data = serde_json::json!({
        "skus": skus.iter().map(Sku::as_str).collect::<Vec<_>>(),
        "channels": channels.iter().map(ChannelId::as_str).collect::<Vec<_>>(),
    });
    let event = NewEvent::new(
        &own_event_id("changed", now),
        CATALOG_SOURCE,
        CATALOG_CHANGED,
        None,
    )
    .map_err(|e| e.detail)
    .and_then(|event| {
        let raw = serde_json::value::to_raw_value(&data).map_err(|e| e.to_string())?;
        Ok(event.with_time(now).with_data(EventData::Json(raw)))
    });
    // Neither can fail for SKUs and channel ids, which are valid by construction.
    event
        .inspect_err(|e| tracing::error!(error = %e, "the catalog change event could not be built"))
        .ok()
}

/// Wakes the engine after a catalog write recorded its change in the log.
pub async fn catalog_recorded(state: &AppState) {
    match state.store.head_seq().await {
        Ok(seq) => crate::ingest::advance_head(state, seq),
        // The engine still finds the event at its next poll.
        Err(e) => tracing::debug!(error = %e, "the log head could not be read"),
    }
}

/// The source of the events crossdock records for its own reservations.
pub const HOLD_SOURCE: &str = "/crossdock/reservations";

/// The longest order id a reservation accepts.
pub const ORDER_ID_LEN_MAX: usize = 128;

/// One line of an order to hold stock for: any item (a kit holds its components).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldLine {
    pub sku: Sku,
    pub location: LocationId,
    pub quantity: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("the reservation is not valid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Holds stock for an order's lines, all or none, at the given locations. A kit line holds its
/// components (through nested kits); lines that share a component are added up before the check,
/// so a multi-line order never holds more than is available to promise.
pub async fn reserve(
    state: &AppState,
    order_id: &str,
    lines: Vec<HoldLine>,
    correlation_id: Option<&str>,
) -> Result<ReserveOutcome, HoldError> {
    let catalog = state.catalog.get(&state.store).await?;
    let known = state
        .store
        .items_known(lines.iter().map(|l| l.sku.clone()).collect())
        .await?;
    let request = hold_request(
        state,
        &catalog,
        order_id,
        &lines,
        correlation_id,
        Some(&known),
    )?;
    let outcome = state.store.reserve(request).await?;
    if let ReserveOutcome::Reserved { seq, .. } = &outcome {
        crate::ingest::advance_head(state, *seq);
    }
    Ok(outcome)
}

/// Checks an order's lines and builds the request that holds them (kits expanded into their
/// components, the `inventory.reserved` event to append with it). `known` lists the SKUs that
/// are items; `None` when the caller has checked them already.
pub fn hold_request(
    state: &AppState,
    catalog: &CatalogIndex,
    order_id: &str,
    lines: &[HoldLine],
    correlation_id: Option<&str>,
    known: Option<&BTreeSet<Sku>>,
) -> Result<ReserveRequest, HoldError> {
    let mut errors = Vec::new();
    check_order_id(order_id, &mut errors);
    if lines.is_empty() {
        errors.push(FieldError::new(
            "/lines",
            "a reservation needs at least one line",
        ));
    }
    let mut stocked = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !(1..=QUANTITY_ABS_MAX).contains(&line.quantity) {
            errors.push(FieldError::new(
                format!("/lines/{i}/quantity"),
                "a quantity is a whole number from 1 to 2^53",
            ));
            continue;
        }
        if known.is_some_and(|known| !known.contains(&line.sku)) {
            errors.push(FieldError::new(
                format!("/lines/{i}/sku"),
                format!("{} is not an item", line.sku),
            ));
        }
        if !catalog.snapshot.locations.contains_key(&line.location) {
            errors.push(FieldError::new(
                format!("/lines/{i}/location"),
                format!("{} is not a location", line.location),
            ));
        }
        for (component, per_unit) in bill_of_materials(&line.sku, &catalog.snapshot.kits) {
            let Some(quantity) = per_unit
                .checked_mul(line.quantity)
                .filter(|q| *q <= QUANTITY_ABS_MAX)
            else {
                errors.push(FieldError::new(
                    format!("/lines/{i}/quantity"),
                    format!(
                        "{} units of {} need more than 2^53 of {component}",
                        line.quantity, line.sku
                    ),
                ));
                continue;
            };
            stocked.push(ReservationLine {
                sku: component,
                location: line.location.clone(),
                quantity,
            });
        }
    }
    if !errors.is_empty() {
        return Err(HoldError::Invalid(errors));
    }
    let event = hold_event(
        "inventory.reserved",
        order_id,
        correlation_id,
        state.clock.now(),
    )?;
    Ok(ReserveRequest::new(
        order_id.to_owned(),
        stocked,
        state.clock.now(),
        |lines| with_lines(event, order_id, lines),
    ))
}

/// Releases everything an order holds. Returns the lines released (none: it held nothing).
pub async fn release(
    state: &AppState,
    order_id: &str,
    correlation_id: Option<&str>,
) -> Result<Vec<ReservationLine>, HoldError> {
    let mut errors = Vec::new();
    check_order_id(order_id, &mut errors);
    if !errors.is_empty() {
        return Err(HoldError::Invalid(errors));
    }
    let event = hold_event(
        "inventory.released",
        order_id,
        correlation_id,
        state.clock.now(),
    )?;
    let order = order_id.to_owned();
    let released = state
        .store
        .release(
            order_id.to_owned(),
            Box::new(move |lines| with_lines(event, &order, lines)),
            state.clock.now(),
        )
        .await?;
    if !released.is_empty() {
        // The release event is in the log; wake the engine to act on it.
        let head = state.store.head_seq().await?;
        crate::ingest::advance_head(state, head);
    }
    Ok(released)
}

fn check_order_id(order_id: &str, errors: &mut Vec<FieldError>) {
    if order_id.is_empty()
        || order_id.len() > ORDER_ID_LEN_MAX
        || order_id.chars().any(char::is_control)
    {
        errors.push(FieldError::new(
            "/order_id",
            format!("an order id is 1 to {ORDER_ID_LEN_MAX} bytes of printable text"),
        ));
    }
}

/// The event of a reservation change, without its lines (the store knows them).
fn hold_event(
    kind: &str,
    order_id: &str,
    correlation_id: Option<&str>,
    now: Timestamp,
) -> Result<NewEvent, HoldError> {
    let suffix = kind.trim_start_matches("inventory.");
    let id = format!("{}-{order_id}", own_event_id(suffix, now));
    let mut event = NewEvent::new(&id, HOLD_SOURCE, kind, None)
        .map_err(|e| HoldError::Invalid(vec![FieldError::new("/order_id", e.detail)]))?
        .with_subject(order_id)
        .map_err(|e| HoldError::Invalid(vec![FieldError::new("/order_id", e.detail)]))?
        .with_time(now);
    if let Some(c) = correlation_id {
        event.correlate(c);
    }
    Ok(event)
}

/// Completes a reservation event with the lines the store changed.
pub fn with_lines(event: NewEvent, order_id: &str, lines: &[ReservationLine]) -> NewEvent {
    let data = serde_json::json!({
        "order_id": order_id,
        "lines": lines.iter().map(|l| serde_json::json!({
            "sku": l.sku.as_str(),
            "location": l.location.as_str(),
            "quantity": l.quantity,
        })).collect::<Vec<_>>(),
    });
    match serde_json::value::to_raw_value(&data) {
        Ok(raw) => event.with_data(EventData::Json(raw)),
        Err(_) => event,
    }
}
