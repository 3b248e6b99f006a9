//! The inventory ledger on PostgreSQL: positions and their deltas, divergences, what listings
//! show, and the catalog snapshot the inventory engine works from.

use std::collections::BTreeMap;

use crossdock_core::Timestamp;
use crossdock_core::catalog::{ChannelId, ChannelSku, Component, LocationId, Sku};
use crossdock_core::inventory::{Delta, DeltaKind, Position, Snapshot};
use sqlx::{Postgres, Transaction};

use super::{PgStore, append_in, drop_dead_in, enqueue_rows, pgerr};
use crate::model::{
    AvailabilityDue, AvailabilityRow, CatalogSnapshot, Conversion, Divergence, DropOutcome,
    DueListing, FeedBuilder, InventoryWrites, PositionKey, Reservation, ReservationEvent,
    ReservationLine, ReserveOutcome, ReserveRequest, Shortfall,
};
use crate::{EnqueueResult, Result, StoreError};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored {what}: {e}"))
}

fn snapshot(seq: Option<i64>, as_of: Option<i64>, value: Option<i64>) -> Option<Snapshot> {
    Some(Snapshot {
        seq: seq?,
        as_of: Timestamp::from_unix_micros(as_of?),
        value: value?,
    })
}

type PositionRow = (
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);
type AvailabilityTuple = (String, String, String, i64, Option<i64>, Option<i64>);

fn to_availability(row: AvailabilityTuple) -> Result<AvailabilityRow> {
    let (channel, channel_sku, sku, available, published, queued) = row;
    Ok(AvailabilityRow {
        channel: ChannelId::parse(&channel).map_err(|e| corrupt("channel", e))?,
        channel_sku: ChannelSku::parse(&channel_sku).map_err(|e| corrupt("channel SKU", e))?,
        sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
        available,
        published,
        queued,
    })
}

/// Writes an inventory batch inside the projection's transaction.
pub(super) async fn write_inventory(
    tx: &mut Transaction<'static, Postgres>,
    w: &InventoryWrites,
    now: Timestamp,
) -> Result<()> {
    if !w.positions.is_empty() {
        let n = w.positions.len();
        let mut cols = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut deltas = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for p in &w.positions {
            let (sku, location) = &p.key;
            cols.0.push(sku.as_str());
            cols.1.push(location.as_str());
            cols.2.push(p.count.map(|c| c.seq));
            cols.3.push(p.count.map(|c| c.as_of.unix_micros()));
            cols.4.push(p.count.map(|c| c.value));
            cols.5.push(p.allocated.map(|a| a.seq));
            cols.6.push(p.allocated.map(|a| a.as_of.unix_micros()));
            cols.7.push(p.allocated.map(|a| a.value));
            cols.8.push(p.on_hand);
            for d in &p.new_deltas {
                deltas.0.push(sku.as_str());
                deltas.1.push(location.as_str());
                deltas.2.push(d.seq);
                deltas.3.push(d.at.unix_micros());
                deltas.4.push(d.quantity);
                deltas.5.push(d.kind.as_str());
            }
        }
        sqlx::query(
            "INSERT INTO inventory_positions (sku, location, count_seq, count_as_of, count_value, alloc_seq, \
             alloc_as_of, alloc_value, on_hand, updated_at) \
             SELECT s, l, cs, ca, cv, asq, aa, av, o, $10 FROM UNNEST($1::text[], $2::text[], $3::bigint[], \
             $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
             AS t(s, l, cs, ca, cv, asq, aa, av, o) \
             ON CONFLICT (sku, location) DO UPDATE SET count_seq = EXCLUDED.count_seq, count_as_of = EXCLUDED.count_as_of, \
             count_value = EXCLUDED.count_value, alloc_seq = EXCLUDED.alloc_seq, alloc_as_of = EXCLUDED.alloc_as_of, \
             alloc_value = EXCLUDED.alloc_value, on_hand = EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at",
        )
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&cols.2)
        .bind(&cols.3)
        .bind(&cols.4)
        .bind(&cols.5)
        .bind(&cols.6)
        .bind(&cols.7)
        .bind(&cols.8)
        .bind(now.unix_micros())
        .execute(&mut **tx)
        .await
        .map_err(pgerr("write positions"))?;
        // Deltas a count of this batch includes go; deltas of this batch come; the rest stay.
        let new_counts: Vec<Option<i64>> = w
            .positions
            .iter()
            .map(|p| {
                p.count
                    .filter(|c| c.seq >= w.new_from_seq)
                    .map(|c| c.as_of.unix_micros())
            })
            .collect();
        sqlx::query(
            "DELETE FROM inventory_deltas d USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(s, l, c) \
             WHERE d.sku = t.s AND d.location = t.l AND d.at <= t.c",
        )
        .bind(&cols.0)
        .bind(&cols.1)
        .bind(&new_counts)
        .execute(&mut **tx)
        .await
        .map_err(pgerr("write deltas"))?;
        if !deltas.0.is_empty() {
            sqlx::query(
                "INSERT INTO inventory_deltas (sku, location, seq, at, quantity, kind) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&deltas.0)
            .bind(&deltas.1)
            .bind(&deltas.2)
            .bind(&deltas.3)
            .bind(&deltas.4)
            .bind(&deltas.5)
            .execute(&mut **tx)
            .await
            .map_err(pgerr("write deltas"))?;
        }
    }
    for d in &w.divergences {
        sqlx::query(
            "INSERT INTO inventory_divergences (seq, location, sku, source, reason, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(d.seq)
        .bind(d.location.as_str())
        .bind(d.sku.as_str())
        .bind(&d.source)
        .bind(&d.reason)
        .bind(now.unix_micros())
        .execute(&mut **tx)
        .await
        .map_err(pgerr("record divergence"))?;
    }
    if !w.availability.is_empty() {
        let channels: Vec<&str> = w.availability.iter().map(|a| a.channel.as_str()).collect();
        let channel_skus: Vec<&str> = w
            .availability
            .iter()
            .map(|a| a.channel_sku.as_str())
            .collect();
        let skus: Vec<&str> = w.availability.iter().map(|a| a.sku.as_str()).collect();
        let available: Vec<i64> = w.availability.iter().map(|a| a.available).collect();
        let holds: Vec<i64> = w
            .availability
            .iter()
            .map(|a| a.hold_until.unix_micros())
            .collect();
        // Written as a first value (at once; a zero-out first; a listing due already at the same
        // rank keeps its place), then an increase over what the channel last acknowledged waits
        // the channel's hold.
        sqlx::query(
            "INSERT INTO channel_availability (channel, channel_sku, sku, available, version, rank, due_at, updated_at) \
             SELECT c, cs, s, a, 1, CASE WHEN a = 0 THEN 0 ELSE 1 END, $5, $5 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(c, cs, s, a) \
             ON CONFLICT (channel, channel_sku) DO UPDATE SET sku = EXCLUDED.sku, available = EXCLUDED.available, \
             version = channel_availability.version + 1, rank = EXCLUDED.rank, \
             due_at = CASE WHEN channel_availability.queued IS DISTINCT FROM channel_availability.available \
             AND channel_availability.rank = EXCLUDED.rank THEN channel_availability.due_at ELSE EXCLUDED.due_at END, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(&channels)
        .bind(&channel_skus)
        .bind(skus)
        .bind(available)
        .bind(now.unix_micros())
        .execute(&mut **tx)
        .await
        .map_err(pgerr("write availability"))?;
        sqlx::query(
            "UPDATE channel_availability c SET rank = 2, due_at = t.h \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(ch, cs, h) \
             WHERE c.channel = t.ch AND c.channel_sku = t.cs AND c.available <> 0 AND c.available > c.published",
        )
        .bind(&channels)
        .bind(&channel_skus)
        .bind(holds)
        .execute(&mut **tx)
        .await
        .map_err(pgerr("write availability"))?;
    }
    // Positions locked in the order every reservation writer locks them in.
    let mut converted: Vec<&Conversion> = w.converted.iter().collect();
    converted.sort_by(|a, b| {
        (&a.line.sku, &a.line.location, &a.order_id, a.seq).cmp(&(
            &b.line.sku,
            &b.line.location,
            &b.order_id,
            b.seq,
        ))
    });
    for c in converted {
        convert_reservation(tx, c).await?;
    }
    Ok(())
}

/// Takes up to `line.quantity` from what `order_id` holds at the line's position, locking the
/// position's total first (the order every reservation writer locks in).
async fn convert_reservation(
    tx: &mut Transaction<'static, Postgres>,
    c: &Conversion,
) -> Result<()> {
    let (order_id, line) = (c.order_id.as_str(), &c.line);
    let (sku, location) = (line.sku.as_str(), line.location.as_str());
    lock_positions(tx, &[sku], &[location]).await?;
    let first = sqlx::query(
        "INSERT INTO inventory_conversions (seq, order_id, sku, location, quantity) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(c.seq)
    .bind(order_id)
    .bind(sku)
    .bind(location)
    .bind(line.quantity)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("record conversion"))?
    .rows_affected();
    if first == 0 {
        return Ok(());
    }
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT quantity FROM inventory_reservations WHERE order_id = $1 AND sku = $2 AND location = $3 FOR UPDATE",
    )
    .bind(order_id)
    .bind(sku)
    .bind(location)
    .fetch_optional(&mut **tx)
    .await
    .map_err(pgerr("read reservation"))?;
    let take = held.unwrap_or(0).min(line.quantity);
    if take <= 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE inventory_reservations SET quantity = quantity - $4 WHERE order_id = $1 AND sku = $2 AND location = $3",
    )
    .bind(order_id)
    .bind(sku)
    .bind(location)
    .bind(take)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("convert reservation"))?;
    sqlx::query("DELETE FROM inventory_reservations WHERE order_id = $1 AND quantity <= 0")
        .bind(order_id)
        .execute(&mut **tx)
        .await
        .map_err(pgerr("convert reservation"))?;
    add_reserved(tx, &[sku], &[location], &[-take]).await
}

/// Marks the catalog changed, so cached snapshots are read again.
pub(super) async fn bump_catalog(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
    sqlx::query("UPDATE catalog_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(pgerr("bump catalog version"))?;
    Ok(())
}

fn to_line((sku, location, quantity): (String, String, i64)) -> Result<ReservationLine> {
    Ok(ReservationLine {
        sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
        location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
        quantity,
    })
}

/// Serializes the reservation changes of one order across nodes, for the transaction.
async fn lock_order(tx: &mut Transaction<'static, Postgres>, order_id: &str) -> Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('crossdock.reservation:' || $1, 0))",
    )
    .bind(order_id)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("lock the order's reservations"))?;
    Ok(())
}

async fn order_lines(
    tx: &mut Transaction<'static, Postgres>,
    order_id: &str,
) -> Result<Vec<ReservationLine>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT sku, location, quantity FROM inventory_reservations WHERE order_id = $1 ORDER BY sku, location",
    )
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(pgerr("read reservations"))?;
    rows.into_iter().map(to_line).collect()
}

/// Locks the reservation totals of these positions in sorted order (creating missing ones) and
/// returns what each has available to promise. Every writer of the totals locks them in this
/// order, so two reservations never wait on each other in a cycle.
async fn lock_positions(
    tx: &mut Transaction<'static, Postgres>,
    skus: &[&str],
    locations: &[&str],
) -> Result<Vec<i64>> {
    sqlx::query(
        "INSERT INTO inventory_reserved (sku, location, reserved) \
         SELECT s, l, 0 FROM UNNEST($1::text[], $2::text[]) AS t(s, l) ORDER BY s, l ON CONFLICT DO NOTHING",
    )
    .bind(skus)
    .bind(locations)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("hold stock"))?;
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT r.sku, r.location, COALESCE(p.on_hand, 0) - COALESCE(p.alloc_value, 0) - r.reserved \
         FROM inventory_reserved r LEFT JOIN inventory_positions p ON p.sku = r.sku AND p.location = r.location \
         WHERE (r.sku, r.location) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
         ORDER BY r.sku, r.location FOR UPDATE OF r",
    )
    .bind(skus)
    .bind(locations)
    .fetch_all(&mut **tx)
    .await
    .map_err(pgerr("hold stock"))?;
    let atp: std::collections::HashMap<(String, String), i64> = rows
        .into_iter()
        .map(|(s, l, atp)| ((s, l), atp.max(0)))
        .collect();
    Ok(skus
        .iter()
        .zip(locations)
        .map(|(s, l)| {
            atp.get(&((*s).to_owned(), (*l).to_owned()))
                .copied()
                .unwrap_or(0)
        })
        .collect())
}

async fn add_reserved(
    tx: &mut Transaction<'static, Postgres>,
    skus: &[&str],
    locations: &[&str],
    quantities: &[i64],
) -> Result<()> {
    sqlx::query(
        "UPDATE inventory_reserved r SET reserved = r.reserved + t.q \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(s, l, q) WHERE r.sku = t.s AND r.location = t.l",
    )
    .bind(skus)
    .bind(locations)
    .bind(quantities)
    .execute(&mut **tx)
    .await
    .map_err(pgerr("hold stock"))?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn reserve(&self, r: ReserveRequest) -> Result<ReserveOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pgerr("begin reservation"))?;
        let outcome = reserve_in(&mut tx, r).await?;
        if let ReserveOutcome::Reserved { .. } = outcome {
            tx.commit().await.map_err(pgerr("commit reservation"))?;
        }
        Ok(outcome)
    }

    pub(crate) async fn release(
        &self,
        order_id: String,
        event: ReservationEvent,
        now: Timestamp,
    ) -> Result<Vec<ReservationLine>> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin release"))?;
        lock_order(&mut tx, &order_id).await?;
        let lines = order_lines(&mut tx, &order_id).await?;
        if lines.is_empty() {
            return Ok(lines);
        }
        let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
        let locations: Vec<&str> = lines.iter().map(|l| l.location.as_str()).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| -l.quantity).collect();
        lock_positions(&mut tx, &skus, &locations).await?;
        add_reserved(&mut tx, &skus, &locations, &quantities).await?;
        sqlx::query("DELETE FROM inventory_reservations WHERE order_id = $1")
            .bind(&order_id)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("release reservation"))?;
        let event = event(&lines);
        append_in(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await.map_err(pgerr("commit release"))?;
        Ok(lines)
    }

    pub(crate) async fn event_ids(
        &self,
        seqs: Vec<i64>,
    ) -> Result<BTreeMap<i64, (String, String)>> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT seq, source, id FROM events WHERE seq = ANY($1)")
                .bind(&seqs)
                .fetch_all(&self.pool)
                .await
                .map_err(pgerr("read event ids"))?;
        Ok(rows
            .into_iter()
            .map(|(seq, source, id)| (seq, (source, id)))
            .collect())
    }

    pub(crate) async fn reservations(&self, skus: Vec<Sku>) -> Result<Vec<Reservation>> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT order_id, sku, location, quantity, created_at FROM inventory_reservations WHERE sku = ANY($1) \
             ORDER BY sku, location, created_at, order_id",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read reservations"))?;
        rows.into_iter()
            .map(|(order_id, sku, location, quantity, created_at)| {
                Ok(Reservation {
                    order_id,
                    sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                    location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
                    quantity,
                    created_at: Timestamp::from_unix_micros(created_at),
                })
            })
            .collect()
    }

    pub(crate) async fn items_known(
        &self,
        skus: Vec<Sku>,
    ) -> Result<std::collections::BTreeSet<Sku>> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let found: Vec<String> = sqlx::query_scalar("SELECT sku FROM items WHERE sku = ANY($1)")
            .bind(&names)
            .fetch_all(&self.pool)
            .await
            .map_err(pgerr("look up items"))?;
        let found: std::collections::HashSet<String> = found.into_iter().collect();
        Ok(skus
            .into_iter()
            .filter(|s| found.contains(s.as_str()))
            .collect())
    }

    pub(crate) async fn conversions_recorded(
        &self,
        seqs: Vec<i64>,
    ) -> Result<std::collections::BTreeSet<i64>> {
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT seq FROM inventory_conversions WHERE seq = ANY($1)",
        )
        .bind(&seqs)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read conversions"))?;
        Ok(found.into_iter().collect())
    }

    pub(crate) async fn reserved_totals(
        &self,
        skus: Vec<Sku>,
    ) -> Result<BTreeMap<PositionKey, i64>> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT sku, location, reserved FROM inventory_reserved WHERE sku = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read reserved totals"))?;
        rows.into_iter()
            .map(|(sku, location, reserved)| {
                Ok((
                    (
                        Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                        LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
                    ),
                    reserved,
                ))
            })
            .collect()
    }

    pub(crate) async fn positions(
        &self,
        skus: Vec<Sku>,
    ) -> Result<BTreeMap<PositionKey, Position>> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows: Vec<PositionRow> = sqlx::query_as(
            "SELECT p.sku, p.location, count_seq, count_as_of, count_value, alloc_seq, alloc_as_of, alloc_value, \
             COALESCE(r.reserved, 0) FROM inventory_positions p \
             LEFT JOIN inventory_reserved r ON r.sku = p.sku AND r.location = p.location WHERE p.sku = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read positions"))?;
        let mut out = BTreeMap::new();
        for (sku, location, cs, ca, cv, asq, aa, av, reserved) in rows {
            let key = (
                Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
            );
            let position = Position {
                count: snapshot(cs, ca, cv),
                deltas: Default::default(),
                allocated: snapshot(asq, aa, av),
                reserved,
            };
            out.insert(key, position);
        }
        let deltas: Vec<(String, String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT sku, location, seq, at, quantity, kind FROM inventory_deltas WHERE sku = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read deltas"))?;
        for (sku, location, seq, at, quantity, kind) in deltas {
            let key = (
                Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
            );
            let kind = DeltaKind::parse(&kind).ok_or_else(|| corrupt("delta kind", &kind))?;
            let delta = Delta {
                seq,
                at: Timestamp::from_unix_micros(at),
                quantity,
                kind,
            };
            out.entry(key).or_default().deltas.insert(delta);
        }
        Ok(out)
    }

    pub(crate) async fn catalog_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(pgerr("read catalog version"))
    }

    pub(crate) async fn catalog_snapshot(&self) -> Result<CatalogSnapshot> {
        // One repeatable-read transaction, so the parts agree with each other and the version.
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(pgerr("begin snapshot"))?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(pgerr("read catalog version"))?;
        let mut snapshot = CatalogSnapshot {
            version,
            ..CatalogSnapshot::default()
        };
        let locations: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT id, name, kind, authority FROM locations")
                .fetch_all(&mut *tx)
                .await
                .map_err(pgerr("read locations"))?;
        for (id, name, kind, authority) in locations {
            let id = LocationId::parse(&id).map_err(|e| corrupt("location id", e))?;
            snapshot
                .locations
                .insert(id, crate::catalog_rows::location(name, &kind, authority)?);
        }
        let channels: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT id, kind, policy, increase_hold_ms FROM channels")
                .fetch_all(&mut *tx)
                .await
                .map_err(pgerr("read channels"))?;
        let channel_locations: Vec<(String, String)> = sqlx::query_as(
            "SELECT channel, location FROM channel_locations ORDER BY channel, priority",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("read channels"))?;
        for (id, kind, policy, hold) in channels {
            let locations = channel_locations
                .iter()
                .filter(|(c, _)| *c == id)
                .map(|(_, l)| l.clone())
                .collect();
            let id = ChannelId::parse(&id).map_err(|e| corrupt("channel id", e))?;
            snapshot.channels.insert(
                id,
                crate::catalog_rows::channel(kind, &policy, hold, locations)?,
            );
        }
        let listings: Vec<(String, String, String)> =
            sqlx::query_as("SELECT channel, channel_sku, sku FROM listings")
                .fetch_all(&mut *tx)
                .await
                .map_err(pgerr("read listings"))?;
        for (channel, channel_sku, sku) in listings {
            snapshot.listings.push((
                ChannelId::parse(&channel).map_err(|e| corrupt("channel id", e))?,
                ChannelSku::parse(&channel_sku).map_err(|e| corrupt("channel SKU", e))?,
                Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
            ));
        }
        let kits: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kit_sku, component_sku, quantity FROM kit_components ORDER BY kit_sku, position",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("read kits"))?;
        for (kit, component, quantity) in kits {
            let kit = Sku::parse(&kit).map_err(|e| corrupt("SKU", e))?;
            let sku = Sku::parse(&component).map_err(|e| corrupt("SKU", e))?;
            snapshot
                .kits
                .entry(kit)
                .or_default()
                .push(Component { sku, quantity });
        }
        tx.commit().await.map_err(pgerr("end snapshot"))?;
        Ok(snapshot)
    }

    pub(crate) async fn channel_availability(
        &self,
        skus: Vec<Sku>,
    ) -> Result<Vec<AvailabilityRow>> {
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows: Vec<AvailabilityTuple> = sqlx::query_as(
            "SELECT channel, channel_sku, sku, available, published, queued FROM channel_availability \
             WHERE sku = ANY($1) ORDER BY sku, channel, channel_sku",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read availability"))?;
        rows.into_iter().map(to_availability).collect()
    }

    pub(crate) async fn availability_published(
        &self,
        channel: &ChannelId,
        shown: Vec<(ChannelSku, i64)>,
        hold_ms: i64,
        now: Timestamp,
    ) -> Result<()> {
        let channel_skus: Vec<&str> = shown.iter().map(|(c, _)| c.as_str()).collect();
        let quantities: Vec<i64> = shown.iter().map(|(_, q)| *q).collect();
        // A value still waiting is ranked again against what the channel now shows; one that has
        // become an increase waits its hold from now.
        sqlx::query(
            "UPDATE channel_availability a SET published = t.q, published_at = $4, \
             rank = CASE WHEN a.available = 0 THEN 0 WHEN a.available < t.q THEN 1 ELSE 2 END, \
             due_at = CASE WHEN a.available > t.q AND a.rank < 2 THEN $5 ELSE a.due_at END \
             FROM UNNEST($2::text[], $3::bigint[]) AS t(cs, q) WHERE a.channel = $1 AND a.channel_sku = t.cs",
        )
        .bind(channel.as_str())
        .bind(channel_skus)
        .bind(quantities)
        .bind(now.unix_micros())
        .bind(now.plus_millis(hold_ms).unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("record published quantities"))?;
        Ok(())
    }

    pub(crate) async fn availability_due(
        &self,
        channel: &ChannelId,
        target: &str,
        limit: usize,
        now: Timestamp,
    ) -> Result<AvailabilityDue> {
        let mut conn = self.pool.acquire().await.map_err(pgerr("connect"))?;
        due_listings(&mut conn, channel, target, limit, now, false).await
    }

    pub(crate) async fn feed_availability(
        &self,
        channel: &ChannelId,
        target: &str,
        limit: usize,
        now: Timestamp,
        open_max: i64,
        build: FeedBuilder,
    ) -> Result<AvailabilityDue> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin feeding"))?;
        // One feeder per channel at a time across nodes: a channel has at most one open batch.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('crossdock.feed:' || $1, 0))")
            .bind(channel.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pgerr("lock channel feed"))?;
        let due = due_listings(&mut tx, channel, target, limit, now, true).await?;
        if due.open >= open_max || due.listings.is_empty() {
            return Ok(due);
        }
        let action = match enqueue_rows(&mut tx, &[build(&due.listings)?], now)
            .await?
            .first()
        {
            Some(EnqueueResult::Queued { id, .. }) => *id,
            _ => {
                return Err(StoreError::Invalid(
                    "the channel batch was already queued".into(),
                ));
            }
        };
        let channel_skus: Vec<&str> = due
            .listings
            .iter()
            .map(|l| l.channel_sku.as_str())
            .collect();
        let values: Vec<i64> = due.listings.iter().map(|l| l.available).collect();
        sqlx::query(
            "UPDATE channel_availability a SET queued = t.v, queued_action = $4 FROM UNNEST($2::text[], $3::bigint[]) \
             AS t(cs, v) WHERE a.channel = $1 AND a.channel_sku = t.cs",
        )
        .bind(channel.as_str())
        .bind(channel_skus)
        .bind(values)
        .bind(action)
        .execute(&mut *tx)
        .await
        .map_err(pgerr("mark listings queued"))?;
        tx.commit().await.map_err(pgerr("commit feeding"))?;
        Ok(due)
    }

    pub(crate) async fn refresh_dead_availability(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let outcome = drop_dead_in(&mut tx, id, reason, now).await?;
        if outcome == DropOutcome::Dropped {
            sqlx::query(
                "UPDATE channel_availability SET queued = NULL, queued_action = NULL WHERE queued_action = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("mark listings due again"))?;
        }
        tx.commit().await.map_err(pgerr("commit refresh"))?;
        Ok(outcome)
    }

    pub(crate) async fn divergences(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<Divergence>> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, sku, location, source, reason FROM inventory_divergences WHERE seq > $1 \
             ORDER BY seq, location LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("read divergences"))?;
        rows.into_iter()
            .map(|(seq, sku, location, source, reason)| {
                Ok(Divergence {
                    seq,
                    sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                    location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
                    source,
                    reason,
                })
            })
            .collect()
    }
}

/// A channel's due listings (zero-outs, then decreases, then increases past their hold; oldest
/// first), how many of `target`'s actions are open, and when the next held increase falls due.
/// `lock` holds the listed rows until the transaction ends, so the engine's next change to one
/// of them waits for the values read here to be marked queued; rows the engine is changing are
/// skipped (its commit wakes the feeder again), so the two never wait on each other in a cycle.
async fn due_listings(
    conn: &mut sqlx::PgConnection,
    channel: &ChannelId,
    target: &str,
    limit: usize,
    now: Timestamp,
    lock: bool,
) -> Result<AvailabilityDue> {
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE status IN ('pending', 'in_flight') AND target = $1",
    )
    .bind(target)
    .fetch_one(&mut *conn)
    .await
    .map_err(pgerr("count open actions"))?;
    let sql = if lock {
        "SELECT channel_sku, sku, available, published, rank::int, version FROM channel_availability \
         WHERE channel = $1 AND queued IS DISTINCT FROM available AND due_at <= $2 \
         AND (queued_action IS NULL OR queued_action NOT IN (SELECT id FROM outbox WHERE target = $4 \
         AND status IN ('pending', 'in_flight'))) ORDER BY rank, due_at \
         LIMIT $3 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT channel_sku, sku, available, published, rank::int, version FROM channel_availability \
         WHERE channel = $1 AND queued IS DISTINCT FROM available AND due_at <= $2 \
         AND (queued_action IS NULL OR queued_action NOT IN (SELECT id FROM outbox WHERE target = $4 \
         AND status IN ('pending', 'in_flight'))) ORDER BY rank, due_at \
         LIMIT $3"
    };
    let rows: Vec<(String, String, i64, Option<i64>, i32, i64)> = sqlx::query_as(sql)
        .bind(channel.as_str())
        .bind(now.unix_micros())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(target)
        .fetch_all(&mut *conn)
        .await
        .map_err(pgerr("read due listings"))?;
    let listings = rows
        .into_iter()
        .map(|(channel_sku, sku, available, published, rank, version)| {
            Ok(DueListing {
                channel_sku: ChannelSku::parse(&channel_sku)
                    .map_err(|e| corrupt("channel SKU", e))?,
                sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                available,
                published,
                rank,
                version,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next_due: Option<i64> = sqlx::query_scalar(
        "SELECT min(due_at) FROM channel_availability WHERE channel = $1 \
         AND queued IS DISTINCT FROM available AND rank = 2 AND due_at > $2",
    )
    .bind(channel.as_str())
    .bind(now.unix_micros())
    .fetch_one(&mut *conn)
    .await
    .map_err(pgerr("read due listings"))?;
    Ok(AvailabilityDue {
        listings,
        open,
        next_due: next_due.map(Timestamp::from_unix_micros),
    })
}

/// Holds stock for an order inside the caller's transaction (see `Store::reserve`); writes
/// nothing unless every line is held.
pub(super) async fn reserve_in(
    tx: &mut Transaction<'static, Postgres>,
    r: ReserveRequest,
) -> Result<ReserveOutcome> {
    lock_order(tx, &r.order_id).await?;
    let held = order_lines(tx, &r.order_id).await?;
    if !held.is_empty() {
        return Ok(ReserveOutcome::AlreadyReserved(held));
    }
    let lines = r.lines;
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let locations: Vec<&str> = lines.iter().map(|l| l.location.as_str()).collect();
    let quantities: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
    let atp = lock_positions(tx, &skus, &locations).await?;
    let short: Vec<Shortfall> = lines
        .iter()
        .zip(&atp)
        .filter(|(line, atp)| **atp < line.quantity)
        .map(|(line, atp)| Shortfall {
            sku: line.sku.clone(),
            location: line.location.clone(),
            needed: line.quantity,
            atp: *atp,
        })
        .collect();
    if !short.is_empty() {
        return Ok(ReserveOutcome::Short(short));
    }
    add_reserved(tx, &skus, &locations, &quantities).await?;
    sqlx::query(
        "INSERT INTO inventory_reservations (order_id, sku, location, quantity, created_at) \
         SELECT $1, s, l, q, $5 FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS t(s, l, q)",
    )
    .bind(&r.order_id)
    .bind(&skus)
    .bind(&locations)
    .bind(&quantities)
    .bind(r.now.unix_micros())
    .execute(&mut **tx)
    .await
    .map_err(pgerr("record reservation"))?;
    let outcome = append_in(tx, std::slice::from_ref(&r.event), r.now).await?;
    let seq = outcome.seq_range().map_or(0, |(_, last)| last);
    Ok(ReserveOutcome::Reserved { seq, lines })
}
