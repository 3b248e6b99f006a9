//! The catalog on SQLite: items and kits, locations, channels, listings. Writes run on the
//! writer thread, so checks (unknown components, kit cycles) and writes see one state.

use std::collections::BTreeSet;

use crossdock_core::Timestamp;
use crossdock_core::catalog::{
    Channel, ChannelId, ChannelSku, Component, Item, Kits, Listing, Location, LocationId, Sku,
    check_items,
};
use crossdock_core::{FieldError, NewEvent};
use rusqlite::{Connection, OptionalExtension, params};

use super::inventory::bump_catalog;
use super::{SqliteStore, append_rows, db};
use crate::model::{BulkWrite, CatalogWrite, not_an_item};
use crate::{Result, StoreError};

fn item_exists(conn: &Connection, sku: &str) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM items WHERE sku = ?1)")
        .and_then(|mut s| s.query_row([sku], |r| r.get(0)))
        .map_err(db("look up item"))
}

fn components(conn: &Connection, kit: &str) -> Result<Vec<Component>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT component_sku, quantity FROM kit_components WHERE kit_sku = ?1 ORDER BY position",
        )
        .map_err(db("read kit"))?;
    let rows = stmt
        .query_map([kit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(db("read kit"))?;
    let mut out = Vec::new();
    for row in rows {
        let (sku, quantity) = row.map_err(db("read kit"))?;
        let sku = Sku::parse(&sku).map_err(|e| StoreError::Corrupt(format!("stored SKU: {e}")))?;
        out.push(Component { sku, quantity });
    }
    Ok(out)
}

/// The stored kit graph reachable from the batch's components.
fn reachable_kits(conn: &Connection, batch: &[(Sku, Item)]) -> Result<Kits> {
    let mut kits = Kits::new();
    let mut frontier: Vec<Sku> = batch
        .iter()
        .flat_map(|(_, item)| item.components.iter().map(|c| c.sku.clone()))
        .collect();
    let mut seen: BTreeSet<Sku> = frontier.iter().cloned().collect();
    while let Some(sku) = frontier.pop() {
        let children = components(conn, sku.as_str())?;
        for c in &children {
            if seen.insert(c.sku.clone()) {
                frontier.push(c.sku.clone());
            }
        }
        if !children.is_empty() {
            kits.insert(sku, children);
        }
    }
    Ok(kits)
}

/// Marks the catalog changed and records the change in the log (`recorded`), both in the
/// write's own transaction: the engine learns of every catalog write that took effect.
fn catalog_changed(conn: &Connection, recorded: Option<&NewEvent>, now: Timestamp) -> Result<()> {
    bump_catalog(conn)?;
    if let Some(event) = recorded {
        append_rows(conn, std::slice::from_ref(event), now)?;
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn items_put(
        &self,
        items: Vec<(Sku, Item)>,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<BulkWrite> {
        let result = self
            .write(items.len().max(1), move |conn| {
                let mut known = BTreeSet::new();
                for (_, item) in &items {
                    for c in &item.components {
                        if item_exists(conn, c.sku.as_str())? {
                            known.insert(c.sku.clone());
                        }
                    }
                }
                let stored = reachable_kits(conn, &items)?;
                let pointer = |i: usize| format!("/{i}");
                let errors = check_items(&items, &known, &stored, &pointer);
                if !errors.is_empty() {
                    return Err(StoreError::Refused(errors));
                }
                let (mut created, mut updated) = (0, 0);
                for (sku, item) in &items {
                    if item_exists(conn, sku.as_str())? {
                        updated += 1;
                    } else {
                        created += 1;
                    }
                    conn.prepare_cached(
                        "INSERT INTO items (sku, description, unit, updated_at) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (sku) DO UPDATE SET description = excluded.description, unit = excluded.unit, \
                         updated_at = excluded.updated_at",
                    )
                    .and_then(|mut s| s.execute(params![sku.as_str(), item.description, item.unit, now.unix_micros()]))
                    .map_err(db("write item"))?;
                    conn.prepare_cached("DELETE FROM kit_components WHERE kit_sku = ?1")
                        .and_then(|mut s| s.execute([sku.as_str()]))
                        .map_err(db("write kit"))?;
                    for (position, c) in item.components.iter().enumerate() {
                        conn.prepare_cached(
                            "INSERT INTO kit_components (kit_sku, component_sku, quantity, position) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut s| s.execute(params![sku.as_str(), c.sku.as_str(), c.quantity, position as i64]))
                        .map_err(db("write kit"))?;
                    }
                }
                catalog_changed(conn, recorded.as_ref(), now)?;
                Ok(BulkWrite::Written { created, updated })
            })
            .await;
        match result {
            Err(StoreError::Refused(errors)) => Ok(BulkWrite::Refused(errors)),
            other => other,
        }
    }

    pub(crate) async fn item_get(&self, sku: &Sku) -> Result<Option<Item>> {
        let sku = sku.clone();
        self.read(move |conn| {
            let row: Option<(Option<String>, String)> = conn
                .prepare_cached("SELECT description, unit FROM items WHERE sku = ?1")
                .and_then(|mut s| {
                    s.query_row([sku.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db("read item"))?;
            let Some((description, unit)) = row else {
                return Ok(None);
            };
            Ok(Some(Item {
                description,
                unit,
                components: components(conn, sku.as_str())?,
            }))
        })
        .await
    }

    pub(crate) async fn items_after(
        &self,
        after: Option<Sku>,
        limit: usize,
    ) -> Result<Vec<(Sku, Item)>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sku, description, unit FROM items WHERE sku > ?1 ORDER BY sku LIMIT ?2",
                )
                .map_err(db("list items"))?;
            let rows = stmt
                .query_map(
                    params![after.as_ref().map_or("", Sku::as_str), limit as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(db("list items"))?;
            let mut out = Vec::new();
            for row in rows {
                let (sku, description, unit) = row.map_err(db("list items"))?;
                let components = components(conn, &sku)?;
                let sku = Sku::parse(&sku)
                    .map_err(|e| StoreError::Corrupt(format!("stored SKU: {e}")))?;
                out.push((
                    sku,
                    Item {
                        description,
                        unit,
                        components,
                    },
                ));
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn location_put(
        &self,
        id: LocationId,
        l: Location,
        now: Timestamp,
    ) -> Result<CatalogWrite> {
        self.write(1, move |conn| {
            let existed: bool = conn
                .query_row("SELECT EXISTS (SELECT 1 FROM locations WHERE id = ?1)", [id.as_str()], |r| r.get(0))
                .map_err(db("look up location"))?;
            conn.execute(
                "INSERT INTO locations (id, name, kind, authority, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
                 authority = excluded.authority, updated_at = excluded.updated_at",
                params![id.as_str(), l.name, l.kind.as_str(), l.authority, now.unix_micros()],
            )
            .map_err(db("write location"))?;
            bump_catalog(conn)?;
            Ok(if existed { CatalogWrite::Updated } else { CatalogWrite::Created })
        })
        .await
    }

    pub(crate) async fn location_get(&self, id: &LocationId) -> Result<Option<Location>> {
        let id = id.clone();
        self.read(move |conn| {
            let row: Option<(String, String, String)> = conn
                .query_row(
                    "SELECT name, kind, authority FROM locations WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db("read location"))?;
            row.map(|(name, kind, authority)| crate::catalog_rows::location(name, &kind, authority))
                .transpose()
        })
        .await
    }

    pub(crate) async fn channel_put(
        &self,
        id: ChannelId,
        c: Channel,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<CatalogWrite> {
        self.write(1, move |conn| {
            let mut errors = Vec::new();
            for (i, location) in c.locations.iter().enumerate() {
                let known: bool = conn
                    .query_row("SELECT EXISTS (SELECT 1 FROM locations WHERE id = ?1)", [location.as_str()], |r| r.get(0))
                    .map_err(db("look up location"))?;
                if !known {
                    errors.push(FieldError::new(
                        format!("/locations/{i}"),
                        format!("{location} is not a location; create it first (PUT /v1/locations/{{id}})"),
                    ));
                }
            }
            if !errors.is_empty() {
                return Ok(CatalogWrite::Refused(errors));
            }
            let existed: bool = conn
                .query_row("SELECT EXISTS (SELECT 1 FROM channels WHERE id = ?1)", [id.as_str()], |r| r.get(0))
                .map_err(db("look up channel"))?;
            let policy = crate::catalog_rows::channel_policy(&c)?;
            conn.execute(
                "INSERT INTO channels (id, kind, policy, increase_hold_ms, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, policy = excluded.policy, \
                 increase_hold_ms = excluded.increase_hold_ms, updated_at = excluded.updated_at",
                params![id.as_str(), c.kind, policy, c.increase_hold_ms, now.unix_micros()],
            )
            .map_err(db("write channel"))?;
            conn.execute("DELETE FROM channel_locations WHERE channel = ?1", [id.as_str()])
                .map_err(db("write channel"))?;
            for (priority, location) in c.locations.iter().enumerate() {
                conn.execute(
                    "INSERT INTO channel_locations (channel, location, priority) VALUES (?1, ?2, ?3)",
                    params![id.as_str(), location.as_str(), priority as i64],
                )
                .map_err(db("write channel"))?;
            }
            catalog_changed(conn, recorded.as_ref(), now)?;
            Ok(if existed { CatalogWrite::Updated } else { CatalogWrite::Created })
        })
        .await
    }

    pub(crate) async fn channel_get(&self, id: &ChannelId) -> Result<Option<Channel>> {
        let id = id.clone();
        self.read(move |conn| {
            let row: Option<(String, String, i64)> = conn
                .query_row(
                    "SELECT kind, policy, increase_hold_ms FROM channels WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db("read channel"))?;
            let Some((kind, policy, increase_hold_ms)) = row else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT location FROM channel_locations WHERE channel = ?1 ORDER BY priority",
                )
                .map_err(db("read channel"))?;
            let locations: Vec<String> = stmt
                .query_map([id.as_str()], |r| r.get(0))
                .map_err(db("read channel"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(db("read channel"))?;
            crate::catalog_rows::channel(kind, &policy, increase_hold_ms, locations).map(Some)
        })
        .await
    }

    /// Listings of one channel, all or none; `at(i)` points at the `i`th one's SKU in a problem.
    pub(crate) async fn listings_put(
        &self,
        channel: ChannelId,
        listings: Vec<(ChannelSku, Listing)>,
        now: Timestamp,
        at: fn(usize) -> String,
        recorded: Option<NewEvent>,
    ) -> Result<Option<BulkWrite>> {
        self.write(listings.len().max(1), move |conn| {
            let channel_known: bool = conn
                .query_row("SELECT EXISTS (SELECT 1 FROM channels WHERE id = ?1)", [channel.as_str()], |r| r.get(0))
                .map_err(db("look up channel"))?;
            if !channel_known {
                return Ok(None);
            }
            let mut errors = Vec::new();
            for (i, (_, listing)) in listings.iter().enumerate() {
                if !item_exists(conn, listing.sku.as_str())? {
                    errors.push(not_an_item(at(i), &listing.sku));
                }
            }
            if !errors.is_empty() {
                return Ok(Some(BulkWrite::Refused(errors)));
            }
            let (mut created, mut updated) = (0, 0);
            for (channel_sku, listing) in &listings {
                let existed: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM listings WHERE channel = ?1 AND channel_sku = ?2)")
                    .and_then(|mut s| s.query_row([channel.as_str(), channel_sku.as_str()], |r| r.get(0)))
                    .map_err(db("look up listing"))?;
                conn.prepare_cached(
                    "INSERT INTO listings (channel, channel_sku, sku, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (channel, channel_sku) DO UPDATE SET sku = excluded.sku, updated_at = excluded.updated_at",
                )
                .and_then(|mut s| s.execute(params![channel.as_str(), channel_sku.as_str(), listing.sku.as_str(), now.unix_micros()]))
                .map_err(db("write listing"))?;
                if existed {
                    updated += 1;
                } else {
                    created += 1;
                }
            }
            catalog_changed(conn, recorded.as_ref(), now)?;
            Ok(Some(BulkWrite::Written { created, updated }))
        })
        .await
    }

    pub(crate) async fn listing_get(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<Option<Listing>> {
        let (channel, channel_sku) = (channel.clone(), channel_sku.clone());
        self.read(move |conn| {
            let sku: Option<String> = conn
                .query_row(
                    "SELECT sku FROM listings WHERE channel = ?1 AND channel_sku = ?2",
                    [channel.as_str(), channel_sku.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db("read listing"))?;
            sku.map(|s| crate::catalog_rows::listing(&s)).transpose()
        })
        .await
    }

    pub(crate) async fn listing_delete(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<bool> {
        let (channel, channel_sku) = (channel.clone(), channel_sku.clone());
        self.write(1, move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM listings WHERE channel = ?1 AND channel_sku = ?2",
                    [channel.as_str(), channel_sku.as_str()],
                )
                .map_err(db("delete listing"))?;
            bump_catalog(conn)?;
            Ok(n == 1)
        })
        .await
    }
}
