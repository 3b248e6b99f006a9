//! The catalog on PostgreSQL. Catalog writes take one advisory lock, so checks (unknown
//! components, kit cycles) and writes see one state across nodes.

use std::collections::BTreeSet;

use crossdock_core::Timestamp;
use crossdock_core::catalog::{
    Channel, ChannelId, ChannelSku, Component, Item, Kits, Listing, Location, LocationId, Sku,
    check_items,
};
use crossdock_core::{FieldError, NewEvent};
use sqlx::{Postgres, Transaction};

use super::inventory::bump_catalog;
use super::{PgStore, append_in, pgerr};
use crate::model::{BulkWrite, CatalogWrite, not_an_item};
use crate::{Result, StoreError};

const LOCK_CATALOG: i64 = 0x0C05_5D0C_0000_0003;

async fn lock(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_CATALOG)
        .execute(&mut **tx)
        .await
        .map_err(pgerr("lock the catalog"))?;
    Ok(())
}

async fn exists(
    tx: &mut Transaction<'static, Postgres>,
    sql: &'static str,
    key: &[&str],
) -> Result<bool> {
    let mut query = sqlx::query_scalar(sql);
    for k in key {
        query = query.bind(*k);
    }
    query
        .fetch_one(&mut **tx)
        .await
        .map_err(pgerr("look up catalog entry"))
}

/// The stored kit graph reachable from the batch's components, one level per query.
async fn reachable_kits(
    tx: &mut Transaction<'static, Postgres>,
    batch: &[(Sku, Item)],
) -> Result<Kits> {
    let mut kits = Kits::new();
    let mut frontier: Vec<String> = batch
        .iter()
        .flat_map(|(_, item)| item.components.iter().map(|c| c.sku.as_str().to_owned()))
        .collect();
    let mut seen: BTreeSet<String> = frontier.iter().cloned().collect();
    while !frontier.is_empty() {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kit_sku, component_sku, quantity FROM kit_components WHERE kit_sku = ANY($1) \
             ORDER BY kit_sku, position",
        )
        .bind(&frontier)
        .fetch_all(&mut **tx)
        .await
        .map_err(pgerr("read kits"))?;
        frontier.clear();
        for (kit, component, quantity) in rows {
            let parse = |s: &str| {
                Sku::parse(s).map_err(|e| StoreError::Corrupt(format!("stored SKU: {e}")))
            };
            let kit = parse(&kit)?;
            let sku = parse(&component)?;
            if seen.insert(component.clone()) {
                frontier.push(component);
            }
            kits.entry(kit)
                .or_default()
                .push(Component { sku, quantity });
        }
    }
    Ok(kits)
}

/// Marks the catalog changed and records the change in the log (`recorded`), both in the
/// write's own transaction: the engine learns of every catalog write that took effect.
async fn catalog_changed(
    tx: &mut Transaction<'static, Postgres>,
    recorded: Option<&NewEvent>,
    now: Timestamp,
) -> Result<()> {
    bump_catalog(tx).await?;
    if let Some(event) = recorded {
        append_in(tx, std::slice::from_ref(event), now).await?;
    }
    Ok(())
}

impl PgStore {
    async fn bump(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        bump_catalog(&mut tx).await?;
        tx.commit().await.map_err(pgerr("commit catalog version"))
    }

    pub(crate) async fn items_put(
        &self,
        items: Vec<(Sku, Item)>,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<BulkWrite> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        lock(&mut tx).await?;
        let wanted: Vec<String> = items
            .iter()
            .flat_map(|(_, item)| item.components.iter().map(|c| c.sku.as_str().to_owned()))
            .collect();
        let found: Vec<String> = sqlx::query_scalar("SELECT sku FROM items WHERE sku = ANY($1)")
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await
            .map_err(pgerr("look up items"))?;
        let known: BTreeSet<Sku> = found.iter().filter_map(|s| Sku::parse(s).ok()).collect();
        let stored = reachable_kits(&mut tx, &items).await?;
        let pointer = |i: usize| format!("/{i}");
        let errors = check_items(&items, &known, &stored, &pointer);
        if !errors.is_empty() {
            return Ok(BulkWrite::Refused(errors));
        }
        let (mut created, mut updated) = (0, 0);
        for (sku, item) in &items {
            let inserted: bool = sqlx::query_scalar(
                "INSERT INTO items (sku, description, unit, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (sku) DO UPDATE SET description = EXCLUDED.description, unit = EXCLUDED.unit, \
                 updated_at = EXCLUDED.updated_at RETURNING (xmax = 0)",
            )
            .bind(sku.as_str())
            .bind(&item.description)
            .bind(&item.unit)
            .bind(now.unix_micros())
            .fetch_one(&mut *tx)
            .await
            .map_err(pgerr("write item"))?;
            if inserted {
                created += 1;
            } else {
                updated += 1;
            }
            sqlx::query("DELETE FROM kit_components WHERE kit_sku = $1")
                .bind(sku.as_str())
                .execute(&mut *tx)
                .await
                .map_err(pgerr("write kit"))?;
            if item.is_kit() {
                let skus: Vec<&str> = item.components.iter().map(|c| c.sku.as_str()).collect();
                let quantities: Vec<i64> = item.components.iter().map(|c| c.quantity).collect();
                sqlx::query(
                    "INSERT INTO kit_components (kit_sku, component_sku, quantity, position) \
                     SELECT $1, c, q, p - 1 FROM UNNEST($2::text[], $3::bigint[]) WITH ORDINALITY AS t(c, q, p)",
                )
                .bind(sku.as_str())
                .bind(skus)
                .bind(quantities)
                .execute(&mut *tx)
                .await
                .map_err(pgerr("write kit"))?;
            }
        }
        catalog_changed(&mut tx, recorded.as_ref(), now).await?;
        tx.commit().await.map_err(pgerr("commit items"))?;
        Ok(BulkWrite::Written { created, updated })
    }

    pub(crate) async fn items_after(
        &self,
        after: Option<Sku>,
        limit: usize,
    ) -> Result<Vec<(Sku, Item)>> {
        let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT sku, description, unit FROM items WHERE sku > $1 ORDER BY sku LIMIT $2",
        )
        .bind(after.as_ref().map_or("", Sku::as_str))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list items"))?;
        let skus: Vec<&str> = rows.iter().map(|(sku, _, _)| sku.as_str()).collect();
        let parts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kit_sku, component_sku, quantity FROM kit_components \
             WHERE kit_sku = ANY($1) ORDER BY kit_sku, position",
        )
        .bind(&skus)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read kits"))?;
        let parse =
            |s: &str| Sku::parse(s).map_err(|e| StoreError::Corrupt(format!("stored SKU: {e}")));
        let mut components: std::collections::BTreeMap<String, Vec<Component>> =
            std::collections::BTreeMap::new();
        for (kit, component, quantity) in parts {
            components.entry(kit).or_default().push(Component {
                sku: parse(&component)?,
                quantity,
            });
        }
        rows.into_iter()
            .map(|(sku, description, unit)| {
                let components = components.remove(&sku).unwrap_or_default();
                Ok((
                    parse(&sku)?,
                    Item {
                        description,
                        unit,
                        components,
                    },
                ))
            })
            .collect()
    }

    pub(crate) async fn item_get(&self, sku: &Sku) -> Result<Option<Item>> {
        let row: Option<(Option<String>, String)> =
            sqlx::query_as("SELECT description, unit FROM items WHERE sku = $1")
                .bind(sku.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(pgerr("read item"))?;
        let Some((description, unit)) = row else {
            return Ok(None);
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT component_sku, quantity FROM kit_components WHERE kit_sku = $1 ORDER BY position",
        )
        .bind(sku.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read kit"))?;
        let components = rows
            .into_iter()
            .map(|(s, quantity)| {
                Ok(Component {
                    sku: Sku::parse(&s)
                        .map_err(|e| StoreError::Corrupt(format!("stored SKU: {e}")))?,
                    quantity,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(Item {
            description,
            unit,
            components,
        }))
    }

    pub(crate) async fn location_put(
        &self,
        id: LocationId,
        l: Location,
        now: Timestamp,
    ) -> Result<CatalogWrite> {
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO locations (id, name, kind, authority, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, \
             authority = EXCLUDED.authority, updated_at = EXCLUDED.updated_at RETURNING (xmax = 0)",
        )
        .bind(id.as_str())
        .bind(&l.name)
        .bind(l.kind.as_str())
        .bind(&l.authority)
        .bind(now.unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("write location"))?;
        self.bump().await?;
        Ok(if inserted {
            CatalogWrite::Created
        } else {
            CatalogWrite::Updated
        })
    }

    pub(crate) async fn location_get(&self, id: &LocationId) -> Result<Option<Location>> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, kind, authority FROM locations WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(pgerr("read location"))?;
        row.map(|(name, kind, authority)| crate::catalog_rows::location(name, &kind, authority))
            .transpose()
    }

    pub(crate) async fn channel_put(
        &self,
        id: ChannelId,
        c: Channel,
        now: Timestamp,
        recorded: Option<NewEvent>,
    ) -> Result<CatalogWrite> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        lock(&mut tx).await?;
        let mut errors = Vec::new();
        for (i, location) in c.locations.iter().enumerate() {
            if !exists(
                &mut tx,
                "SELECT EXISTS (SELECT 1 FROM locations WHERE id = $1)",
                &[location.as_str()],
            )
            .await?
            {
                errors.push(FieldError::new(
                    format!("/locations/{i}"),
                    format!(
                        "{location} is not a location; create it first (PUT /v1/locations/{{id}})"
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Ok(CatalogWrite::Refused(errors));
        }
        let policy = crate::catalog_rows::channel_policy(&c)?;
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO channels (id, kind, policy, increase_hold_ms, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, policy = EXCLUDED.policy, \
             increase_hold_ms = EXCLUDED.increase_hold_ms, updated_at = EXCLUDED.updated_at RETURNING (xmax = 0)",
        )
        .bind(id.as_str())
        .bind(&c.kind)
        .bind(policy)
        .bind(c.increase_hold_ms)
        .bind(now.unix_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(pgerr("write channel"))?;
        sqlx::query("DELETE FROM channel_locations WHERE channel = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pgerr("write channel"))?;
        let locations: Vec<&str> = c.locations.iter().map(LocationId::as_str).collect();
        sqlx::query(
            "INSERT INTO channel_locations (channel, location, priority) \
             SELECT $1, l, p - 1 FROM UNNEST($2::text[]) WITH ORDINALITY AS t(l, p)",
        )
        .bind(id.as_str())
        .bind(locations)
        .execute(&mut *tx)
        .await
        .map_err(pgerr("write channel"))?;
        catalog_changed(&mut tx, recorded.as_ref(), now).await?;
        tx.commit().await.map_err(pgerr("commit channel"))?;
        Ok(if inserted {
            CatalogWrite::Created
        } else {
            CatalogWrite::Updated
        })
    }

    pub(crate) async fn channel_get(&self, id: &ChannelId) -> Result<Option<Channel>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT kind, policy, increase_hold_ms FROM channels WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(pgerr("read channel"))?;
        let Some((kind, policy, increase_hold_ms)) = row else {
            return Ok(None);
        };
        let locations: Vec<String> = sqlx::query_scalar(
            "SELECT location FROM channel_locations WHERE channel = $1 ORDER BY priority",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read channel"))?;
        crate::catalog_rows::channel(kind, &policy, increase_hold_ms, locations).map(Some)
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
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        lock(&mut tx).await?;
        if !exists(
            &mut tx,
            "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1)",
            &[channel.as_str()],
        )
        .await?
        {
            return Ok(None);
        }
        let skus: Vec<&str> = listings.iter().map(|(_, l)| l.sku.as_str()).collect();
        let known: Vec<String> =
            sqlx::query_scalar("SELECT sku FROM items WHERE sku = ANY($1::text[])")
                .bind(&skus)
                .fetch_all(&mut *tx)
                .await
                .map_err(pgerr("look up items"))?;
        let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        let errors: Vec<FieldError> = listings
            .iter()
            .enumerate()
            .filter(|(_, (_, l))| !known.contains(l.sku.as_str()))
            .map(|(i, (_, l))| not_an_item(at(i), &l.sku))
            .collect();
        if !errors.is_empty() {
            return Ok(Some(BulkWrite::Refused(errors)));
        }
        let channel_skus: Vec<&str> = listings.iter().map(|(c, _)| c.as_str()).collect();
        let inserted: Vec<bool> = sqlx::query_scalar(
            "INSERT INTO listings (channel, channel_sku, sku, updated_at) \
             SELECT $1, c, s, $4 FROM UNNEST($2::text[], $3::text[]) AS t(c, s) \
             ON CONFLICT (channel, channel_sku) DO UPDATE SET sku = EXCLUDED.sku, updated_at = EXCLUDED.updated_at \
             RETURNING (xmax = 0)",
        )
        .bind(channel.as_str())
        .bind(&channel_skus)
        .bind(&skus)
        .bind(now.unix_micros())
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("write listings"))?;
        catalog_changed(&mut tx, recorded.as_ref(), now).await?;
        tx.commit().await.map_err(pgerr("commit listings"))?;
        let created = inserted.iter().filter(|i| **i).count();
        Ok(Some(BulkWrite::Written {
            created,
            updated: inserted.len() - created,
        }))
    }

    pub(crate) async fn listing_get(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<Option<Listing>> {
        let sku: Option<String> =
            sqlx::query_scalar("SELECT sku FROM listings WHERE channel = $1 AND channel_sku = $2")
                .bind(channel.as_str())
                .bind(channel_sku.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(pgerr("read listing"))?;
        sku.map(|s| crate::catalog_rows::listing(&s)).transpose()
    }

    pub(crate) async fn listing_delete(
        &self,
        channel: &ChannelId,
        channel_sku: &ChannelSku,
    ) -> Result<bool> {
        let done = sqlx::query("DELETE FROM listings WHERE channel = $1 AND channel_sku = $2")
            .bind(channel.as_str())
            .bind(channel_sku.as_str())
            .execute(&self.pool)
            .await
            .map_err(pgerr("delete listing"))?;
        self.bump().await?;
        Ok(done.rows_affected() == 1)
    }
}
