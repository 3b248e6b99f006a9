//! The inventory ledger on SQLite: positions and their deltas, divergences, what listings show,
//! and the catalog snapshot the inventory engine works from.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crossdock_core::Timestamp;
use crossdock_core::catalog::{ChannelId, ChannelSku, Component, LocationId, Sku};
use crossdock_core::inventory::{Delta, DeltaKind, Position, Snapshot};
use rusqlite::{Connection, OptionalExtension, Row, params};

use tokio::sync::oneshot;

use super::{
    Job, SqliteStore, answer, append_rows, db, drop_dead_row, enqueue_rows, settle, unwound,
};
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

/// A position row after its SKU: location, count, allocation, reserved.
fn position_row(r: &Row<'_>) -> rusqlite::Result<(String, Position)> {
    let position = Position {
        count: snapshot(r.get(2)?, r.get(3)?, r.get(4)?),
        deltas: Default::default(),
        allocated: snapshot(r.get(5)?, r.get(6)?, r.get(7)?),
        reserved: r.get(8)?,
    };
    Ok((r.get(1)?, position))
}

/// A JSON array of SKUs, for `IN (SELECT value FROM json_each(?))`: one statement for a batch.
fn sku_array(skus: &[Sku]) -> Result<String> {
    serde_json::to_string(&skus.iter().map(Sku::as_str).collect::<Vec<_>>())
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Every position of these SKUs, with their deltas and reservations.
fn positions_in(conn: &Connection, skus: &[Sku]) -> Result<BTreeMap<PositionKey, Position>> {
    let mut out = BTreeMap::new();
    let names = sku_array(skus)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.sku, p.location, count_seq, count_as_of, count_value, alloc_seq, alloc_as_of, alloc_value, \
             COALESCE(r.reserved, 0) FROM inventory_positions p \
             LEFT JOIN inventory_reserved r ON r.sku = p.sku AND r.location = p.location \
             WHERE p.sku IN (SELECT value FROM json_each(?1))",
        )
        .map_err(db("read positions"))?;
    let rows = stmt
        .query_map([&names], |r| Ok((r.get::<_, String>(0)?, position_row(r)?)))
        .map_err(db("read positions"))?;
    for row in rows {
        let (sku, (location, position)) = row.map_err(db("read positions"))?;
        let sku = Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?;
        let location = LocationId::parse(&location).map_err(|e| corrupt("location", e))?;
        out.insert((sku, location), position);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT sku, location, seq, at, quantity, kind FROM inventory_deltas \
             WHERE sku IN (SELECT value FROM json_each(?1))",
        )
        .map_err(db("read deltas"))?;
    let rows = stmt
        .query_map([&names], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(db("read deltas"))?;
    for row in rows {
        let (sku, location, seq, at, quantity, kind) = row.map_err(db("read deltas"))?;
        let sku = Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?;
        let location = LocationId::parse(&location).map_err(|e| corrupt("location", e))?;
        let kind = DeltaKind::parse(&kind).ok_or_else(|| corrupt("delta kind", &kind))?;
        let delta = Delta {
            seq,
            at: Timestamp::from_unix_micros(at),
            quantity,
            kind,
        };
        out.entry((sku, location)).or_default().deltas.insert(delta);
    }
    Ok(out)
}

/// A listing's rank for its new value `?4`: 0 zero-out, 2 increase over what the channel last
/// acknowledged, 1 otherwise (a decrease, or nothing acknowledged yet).
macro_rules! listing_rank {
    () => {
        "CASE WHEN ?4 = 0 THEN 0 WHEN ?4 > published THEN 2 ELSE 1 END"
    };
}

/// When a listing with the new value `?4` falls due (`?5` the channel's hold from now, `?6`
/// now): never, when `?4` is what was queued last; an increase after its hold; a listing due
/// already at the same rank keeps its place; any other at once.
macro_rules! listing_due_at {
    () => {
        "CASE WHEN queued IS ?4 THEN NULL WHEN ?4 <> 0 AND ?4 > published THEN ?5 \
         WHEN due_at IS NOT NULL AND rank = (CASE WHEN ?4 = 0 THEN 0 ELSE 1 END) THEN due_at ELSE ?6 END"
    };
}

/// Writes an inventory batch inside the projection's transaction.
pub(super) fn write_inventory(
    conn: &Connection,
    w: &InventoryWrites,
    now: Timestamp,
) -> Result<()> {
    // Positions that exist (all but a new one) are updated in place: one lookup instead of an
    // insert that conflicts and then updates.
    let mut update = conn
        .prepare_cached(
            "UPDATE inventory_positions SET count_seq = ?3, count_as_of = ?4, count_value = ?5, alloc_seq = ?6, \
             alloc_as_of = ?7, alloc_value = ?8, on_hand = ?9, updated_at = ?10 WHERE sku = ?1 AND location = ?2",
        )
        .map_err(db("write position"))?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO inventory_positions (sku, location, count_seq, count_as_of, count_value, alloc_seq, \
             alloc_as_of, alloc_value, on_hand, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db("write position"))?;
    let mut counted = conn
        .prepare_cached(
            "DELETE FROM inventory_deltas WHERE sku = ?1 AND location = ?2 AND at <= ?3",
        )
        .map_err(db("write deltas"))?;
    let mut delta = conn
        .prepare_cached(
            "INSERT INTO inventory_deltas (sku, location, seq, at, quantity, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT DO NOTHING",
        )
        .map_err(db("write deltas"))?;
    for p in &w.positions {
        let (sku, location) = (p.key.0.as_str(), p.key.1.as_str());
        let count = p.count;
        let alloc = p.allocated;
        let values = params![
            sku,
            location,
            count.map(|c| c.seq),
            count.map(|c| c.as_of.unix_micros()),
            count.map(|c| c.value),
            alloc.map(|a| a.seq),
            alloc.map(|a| a.as_of.unix_micros()),
            alloc.map(|a| a.value),
            p.on_hand,
            now.unix_micros()
        ];
        if update.execute(values).map_err(db("write position"))? == 0 {
            insert.execute(values).map_err(db("write position"))?;
        }
        // Deltas a count of this batch includes go; deltas of this batch come; the rest stay as
        // they are (a delta older than a count was never kept).
        if let Some(count) = count.filter(|c| c.seq >= w.new_from_seq) {
            counted
                .execute(params![sku, location, count.as_of.unix_micros()])
                .map_err(db("write deltas"))?;
        }
        for d in &p.new_deltas {
            delta
                .execute(params![
                    sku,
                    location,
                    d.seq,
                    d.at.unix_micros(),
                    d.quantity,
                    d.kind.as_str()
                ])
                .map_err(db("write deltas"))?;
        }
    }
    for d in &w.divergences {
        conn.prepare_cached(
            "INSERT INTO inventory_divergences (seq, location, sku, source, reason, recorded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                d.seq,
                d.location.as_str(),
                d.sku.as_str(),
                d.source,
                d.reason,
                now.unix_micros()
            ])
        })
        .map_err(db("record divergence"))?;
    }
    // Most listings exist and keep their SKU: updated without touching the SKU column, the SKU
    // index is left alone; most of those are due already at the same rank (a catch-up changes
    // each listing batch after batch before the channel is sent anything), and keep their place
    // in the due index without touching it. A new listing, or one mapped to another SKU, is
    // upserted. The order an update goes in is decided against what the channel last
    // acknowledged: a zero-out or a decrease (or a first value, nothing being known of what the
    // channel shows) at once, an increase after the channel's hold.
    let mut again = conn
        .prepare_cached(concat!(
            "UPDATE channel_availability SET available = ?4, version = version + 1, updated_at = ?5 \
             WHERE channel = ?1 AND channel_sku = ?2 AND sku = ?3 AND due_at IS NOT NULL \
             AND queued IS NOT ?4 AND rank < 2 AND rank = ",
            listing_rank!(),
        ))
        .map_err(db("write availability"))?;
    let mut update = conn
        .prepare_cached(concat!(
            "UPDATE channel_availability SET available = ?4, version = version + 1, rank = ",
            listing_rank!(),
            ", due_at = ",
            listing_due_at!(),
            ", updated_at = ?6 WHERE channel = ?1 AND channel_sku = ?2 AND sku = ?3",
        ))
        .map_err(db("write availability"))?;
    let mut upsert = conn
        .prepare_cached(concat!(
            "INSERT INTO channel_availability (channel, channel_sku, sku, available, version, rank, due_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 1, CASE WHEN ?4 = 0 THEN 0 ELSE 1 END, ?6, ?6) \
             ON CONFLICT (channel, channel_sku) DO UPDATE SET sku = excluded.sku, available = excluded.available, \
             version = version + 1, rank = ",
            listing_rank!(),
            ", due_at = ",
            listing_due_at!(),
            ", updated_at = ?6",
        ))
        .map_err(db("write availability"))?;
    for a in &w.availability {
        let (channel, channel_sku, sku) =
            (a.channel.as_str(), a.channel_sku.as_str(), a.sku.as_str());
        let now = now.unix_micros();
        if again
            .execute(params![channel, channel_sku, sku, a.available, now])
            .map_err(db("write availability"))?
            > 0
        {
            continue;
        }
        let values = params![
            channel,
            channel_sku,
            sku,
            a.available,
            a.hold_until.unix_micros(),
            now
        ];
        if update.execute(values).map_err(db("write availability"))? == 0 {
            upsert.execute(values).map_err(db("write availability"))?;
        }
    }
    for c in &w.converted {
        convert_reservation(conn, c)?;
    }
    Ok(())
}

/// Takes up to the line's quantity from what the order holds at the line's position, once per
/// shipment event.
fn convert_reservation(conn: &Connection, c: &Conversion) -> Result<()> {
    let (order_id, line) = (c.order_id.as_str(), &c.line);
    let first = conn
        .prepare_cached(
            "INSERT INTO inventory_conversions (seq, order_id, sku, location, quantity) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                c.seq,
                order_id,
                line.sku.as_str(),
                line.location.as_str(),
                line.quantity
            ])
        })
        .map_err(db("record conversion"))?;
    if first == 0 {
        return Ok(());
    }
    let held: Option<i64> = conn
        .prepare_cached(
            "SELECT quantity FROM inventory_reservations WHERE order_id = ?1 AND sku = ?2 AND location = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![order_id, line.sku.as_str(), line.location.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(db("read reservation"))?;
    let take = held.unwrap_or(0).min(line.quantity);
    if take <= 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE inventory_reservations SET quantity = quantity - ?4 WHERE order_id = ?1 AND sku = ?2 AND location = ?3",
    )
    .and_then(|mut s| s.execute(params![order_id, line.sku.as_str(), line.location.as_str(), take]))
    .map_err(db("convert reservation"))?;
    conn.prepare_cached("DELETE FROM inventory_reservations WHERE order_id = ?1 AND quantity <= 0")
        .and_then(|mut s| s.execute([order_id]))
        .map_err(db("convert reservation"))?;
    add_reserved(conn, &line.sku, &line.location, -take)
}

/// Marks the catalog changed, so cached snapshots are read again.
pub(super) fn bump_catalog(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE catalog_version SET version = version + 1 WHERE id = 1")
        .and_then(|mut s| s.execute([]))
        .map_err(db("bump catalog version"))?;
    Ok(())
}

type AvailabilityTuple = (String, String, String, i64, Option<i64>, Option<i64>);

fn availability_row(r: &Row<'_>) -> rusqlite::Result<AvailabilityTuple> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

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

fn reservation_line(r: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn to_line((sku, location, quantity): (String, String, i64)) -> Result<ReservationLine> {
    Ok(ReservationLine {
        sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
        location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
        quantity,
    })
}

/// The lines an order holds, by position.
fn order_lines(conn: &Connection, order_id: &str) -> Result<Vec<ReservationLine>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT sku, location, quantity FROM inventory_reservations WHERE order_id = ?1 ORDER BY sku, location",
        )
        .map_err(db("read reservations"))?;
    let rows = stmt
        .query_map([order_id], reservation_line)
        .map_err(db("read reservations"))?;
    rows.map(|r| to_line(r.map_err(db("read reservations"))?))
        .collect()
}

/// What is available to promise at a position now: on hand, less the warehouse's allocation and
/// the hub's reservations.
fn position_atp(conn: &Connection, line: &ReservationLine) -> Result<i64> {
    let atp: Option<i64> = conn
        .prepare_cached(
            "SELECT p.on_hand - COALESCE(p.alloc_value, 0) - COALESCE(r.reserved, 0) FROM inventory_positions p \
             LEFT JOIN inventory_reserved r ON r.sku = p.sku AND r.location = p.location \
             WHERE p.sku = ?1 AND p.location = ?2",
        )
        .and_then(|mut s| {
            s.query_row([line.sku.as_str(), line.location.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(db("read position"))?;
    Ok(atp.unwrap_or(0).max(0))
}

fn add_reserved(conn: &Connection, sku: &Sku, location: &LocationId, quantity: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO inventory_reserved (sku, location, reserved) VALUES (?1, ?2, ?3) \
         ON CONFLICT (sku, location) DO UPDATE SET reserved = reserved + excluded.reserved",
    )
    .and_then(|mut s| s.execute(params![sku.as_str(), location.as_str(), quantity]))
    .map_err(db("hold stock"))?;
    Ok(())
}

/// Records what an order holds, line by line, and appends its event; returns the event's seq.
fn record_hold(
    conn: &Connection,
    order_id: &str,
    lines: &[ReservationLine],
    event: &crossdock_core::NewEvent,
    now: Timestamp,
) -> Result<i64> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO inventory_reservations (order_id, sku, location, quantity, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db("record reservation"))?;
    for line in lines {
        insert
            .execute(params![
                order_id,
                line.sku.as_str(),
                line.location.as_str(),
                line.quantity,
                now.unix_micros()
            ])
            .map_err(db("record reservation"))?;
    }
    let outcome = append_rows(conn, std::slice::from_ref(event), now)?;
    Ok(outcome.seq_range().map_or(0, |(_, last)| last))
}

/// Decides one request against what is available to promise (`atp` of a position, read on first
/// need): the lines to hold, or the outcome that holds nothing.
fn decide(
    conn: &Connection,
    order_id: &str,
    lines: Vec<ReservationLine>,
    atp: &mut impl FnMut(&Connection, &ReservationLine) -> Result<i64>,
) -> Result<std::result::Result<Vec<ReservationLine>, ReserveOutcome>> {
    let held = order_lines(conn, order_id)?;
    if !held.is_empty() {
        return Ok(Err(ReserveOutcome::AlreadyReserved(held)));
    }
    let mut short = Vec::new();
    for line in &lines {
        let available = atp(conn, line)?;
        if available < line.quantity {
            short.push(Shortfall {
                sku: line.sku.clone(),
                location: line.location.clone(),
                needed: line.quantity,
                atp: available,
            });
        }
    }
    Ok(if short.is_empty() {
        Ok(lines)
    } else {
        Err(ReserveOutcome::Short(short))
    })
}

pub(super) fn reserve_rows(conn: &Connection, r: ReserveRequest) -> Result<ReserveOutcome> {
    let lines = match decide(conn, &r.order_id, r.lines, &mut position_atp)? {
        Ok(lines) => lines,
        Err(outcome) => return Ok(outcome),
    };
    for line in &lines {
        add_reserved(conn, &line.sku, &line.location, line.quantity)?;
    }
    let seq = record_hold(conn, &r.order_id, &lines, &r.event, r.now)?;
    Ok(ReserveOutcome::Reserved { seq, lines })
}

fn position_key(line: &ReservationLine) -> PositionKey {
    (line.sku.clone(), line.location.clone())
}

/// Reservations that waited for the writer together, decided in their order as if one after the
/// other: a position's stock is read once and what each hold takes is subtracted in memory, its
/// reserved total written once; an order held earlier in the group is already reserved.
fn reserve_all(conn: &Connection, requests: Vec<ReserveRequest>) -> Result<Vec<ReserveOutcome>> {
    let mut left: HashMap<PositionKey, i64> = HashMap::new();
    let mut taken: HashMap<String, Vec<ReservationLine>> = HashMap::new();
    let mut outcomes: Vec<Option<ReserveOutcome>> = Vec::with_capacity(requests.len());
    let mut holds = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        if let Some(lines) = taken.get(&r.order_id) {
            outcomes.push(Some(ReserveOutcome::AlreadyReserved(lines.clone())));
            continue;
        }
        let mut atp = |conn: &Connection, line: &ReservationLine| -> Result<i64> {
            Ok(match left.entry(position_key(line)) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(new) => *new.insert(position_atp(conn, line)?),
            })
        };
        match decide(conn, &r.order_id, r.lines, &mut atp)? {
            Err(outcome) => outcomes.push(Some(outcome)),
            Ok(lines) => {
                // Every line's position was read by `decide`.
                for line in &lines {
                    if let Some(available) = left.get_mut(&position_key(line)) {
                        *available -= line.quantity;
                    }
                }
                taken.insert(r.order_id.clone(), lines.clone());
                outcomes.push(None);
                holds.push((i, r.order_id, lines, r.event, r.now));
            }
        }
    }
    let mut totals: BTreeMap<PositionKey, i64> = BTreeMap::new();
    for line in holds.iter().flat_map(|(_, _, lines, _, _)| lines) {
        *totals.entry(position_key(line)).or_default() += line.quantity;
    }
    for ((sku, location), quantity) in &totals {
        add_reserved(conn, sku, location, *quantity)?;
    }
    for (i, order_id, lines, event, now) in holds {
        let seq = record_hold(conn, &order_id, &lines, &event, now)?;
        outcomes[i] = Some(ReserveOutcome::Reserved { seq, lines });
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("a reservation was left undecided".into())))
        .collect()
}

/// A reservation waiting for the writer thread. Alone it runs like any job; with others it is
/// decided together with them (`reserve_together`).
pub(super) struct ReserveJob {
    request: Option<ReserveRequest>,
    outcome: Option<Result<ReserveOutcome>>,
    reply: oneshot::Sender<Result<ReserveOutcome>>,
    weight: usize,
}

impl Job for ReserveJob {
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(request) = self.request.take() else {
            return false;
        };
        settle(&mut self.outcome, unwound(|| reserve_rows(conn, request)))
    }

    fn finish(self: Box<Self>, commit: Result<()>) {
        let _ = self.reply.send(answer(commit, self.outcome));
    }

    fn weight(&self) -> usize {
        self.weight
    }

    fn reservation(&mut self) -> Option<&mut ReserveJob> {
        Some(self)
    }
}

/// Decides reservations that waited together; false (each given the error) when they could not
/// be, and what they wrote must be rolled back.
pub(super) fn reserve_together(conn: &Connection, jobs: &mut [&mut ReserveJob]) -> bool {
    let requests: Option<Vec<ReserveRequest>> =
        jobs.iter_mut().map(|job| job.request.take()).collect();
    let outcome = match requests {
        Some(requests) => unwound(|| reserve_all(conn, requests)),
        None => Err(StoreError::Closed),
    };
    match outcome {
        Ok(outcomes) => {
            for (job, outcome) in jobs.iter_mut().zip(outcomes) {
                job.outcome = Some(Ok(outcome));
            }
            true
        }
        Err(e) => {
            for job in jobs.iter_mut() {
                job.outcome = Some(Err(e.clone()));
            }
            false
        }
    }
}

fn release_rows(
    conn: &Connection,
    order_id: &str,
    event: ReservationEvent,
    now: Timestamp,
) -> Result<Vec<ReservationLine>> {
    let lines = order_lines(conn, order_id)?;
    if lines.is_empty() {
        return Ok(lines);
    }
    for line in &lines {
        add_reserved(conn, &line.sku, &line.location, -line.quantity)?;
    }
    conn.prepare_cached("DELETE FROM inventory_reservations WHERE order_id = ?1")
        .and_then(|mut s| s.execute([order_id]))
        .map_err(db("release reservation"))?;
    let event = event(&lines);
    append_rows(conn, std::slice::from_ref(&event), now)?;
    Ok(lines)
}

impl SqliteStore {
    pub(crate) async fn reserve(&self, request: ReserveRequest) -> Result<ReserveOutcome> {
        let (reply, answer) = oneshot::channel();
        let job = ReserveJob {
            weight: request.lines.len().max(1),
            request: Some(request),
            outcome: None,
            reply,
        };
        self.submit(Box::new(job), answer).await
    }

    pub(crate) async fn release(
        &self,
        order_id: String,
        event: ReservationEvent,
        now: Timestamp,
    ) -> Result<Vec<ReservationLine>> {
        self.write(1, move |conn| release_rows(conn, &order_id, event, now))
            .await
    }

    pub(crate) async fn event_ids(
        &self,
        seqs: Vec<i64>,
    ) -> Result<BTreeMap<i64, (String, String)>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT source, id FROM events WHERE seq = ?1")
                .map_err(db("read event ids"))?;
            let mut out = BTreeMap::new();
            for seq in seqs {
                if let Some(ids) = stmt
                    .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db("read event ids"))?
                {
                    out.insert(seq, ids);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn reservations(&self, skus: Vec<Sku>) -> Result<Vec<Reservation>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT order_id, location, quantity, created_at FROM inventory_reservations WHERE sku = ?1 \
                     ORDER BY location, created_at, order_id",
                )
                .map_err(db("read reservations"))?;
            let mut out = Vec::new();
            for sku in &skus {
                let rows = stmt
                    .query_map([sku.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                    })
                    .map_err(db("read reservations"))?;
                for row in rows {
                    let (order_id, location, quantity, created_at) = row.map_err(db("read reservations"))?;
                    out.push(Reservation {
                        order_id,
                        sku: sku.clone(),
                        location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
                        quantity,
                        created_at: Timestamp::from_unix_micros(created_at),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn positions(
        &self,
        skus: Vec<Sku>,
    ) -> Result<BTreeMap<PositionKey, Position>> {
        self.read(move |conn| positions_in(conn, &skus)).await
    }

    pub(crate) async fn conversions_recorded(&self, seqs: Vec<i64>) -> Result<BTreeSet<i64>> {
        self.read(move |conn| {
            let list = serde_json::to_string(&seqs).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT DISTINCT seq FROM inventory_conversions WHERE seq IN (SELECT value FROM json_each(?1))",
                )
                .map_err(db("read conversions"))?;
            let rows = stmt
                .query_map([&list], |r| r.get::<_, i64>(0))
                .map_err(db("read conversions"))?;
            rows.collect::<rusqlite::Result<BTreeSet<i64>>>()
                .map_err(db("read conversions"))
        })
        .await
    }

    pub(crate) async fn reserved_totals(
        &self,
        skus: Vec<Sku>,
    ) -> Result<BTreeMap<PositionKey, i64>> {
        self.read(move |conn| {
            let names = sku_array(&skus)?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sku, location, reserved FROM inventory_reserved \
                     WHERE sku IN (SELECT value FROM json_each(?1))",
                )
                .map_err(db("read reserved totals"))?;
            let rows = stmt
                .query_map([&names], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db("read reserved totals"))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (sku, location, reserved) = row.map_err(db("read reserved totals"))?;
                let sku = Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?;
                let location = LocationId::parse(&location).map_err(|e| corrupt("location", e))?;
                out.insert((sku, location), reserved);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn items_known(&self, skus: Vec<Sku>) -> Result<BTreeSet<Sku>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sku FROM items WHERE sku IN (SELECT value FROM json_each(?1))",
                )
                .map_err(db("look up items"))?;
            let found: std::collections::HashSet<String> = stmt
                .query_map([sku_array(&skus)?], |r| r.get(0))
                .map_err(db("look up items"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(db("look up items"))?;
            Ok(skus
                .into_iter()
                .filter(|s| found.contains(s.as_str()))
                .collect())
        })
        .await
    }

    pub(crate) async fn catalog_version(&self) -> Result<i64> {
        self.read(|conn| {
            conn.query_row(
                "SELECT version FROM catalog_version WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(db("read catalog version"))
        })
        .await
    }

    pub(crate) async fn catalog_snapshot(&self) -> Result<CatalogSnapshot> {
        self.read(|conn| {
            // One read transaction, so the parts agree with each other and with the version.
            conn.execute_batch("BEGIN").map_err(db("begin snapshot"))?;
            let result = (|| {
                let version = conn
                    .query_row("SELECT version FROM catalog_version WHERE id = 1", [], |r| r.get(0))
                    .map_err(db("read catalog version"))?;
                let mut snapshot = CatalogSnapshot { version, ..CatalogSnapshot::default() };
                let mut stmt = conn
                    .prepare("SELECT id, name, kind, authority FROM locations")
                    .map_err(db("read locations"))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?)))
                    .map_err(db("read locations"))?;
                for row in rows {
                    let (id, name, kind, authority) = row.map_err(db("read locations"))?;
                    let id = LocationId::parse(&id).map_err(|e| corrupt("location id", e))?;
                    snapshot.locations.insert(id, crate::catalog_rows::location(name, &kind, authority)?);
                }
                let mut stmt = conn
                    .prepare("SELECT id, kind, policy, increase_hold_ms FROM channels")
                    .map_err(db("read channels"))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?)))
                    .map_err(db("read channels"))?;
                let mut channels = Vec::new();
                for row in rows {
                    channels.push(row.map_err(db("read channels"))?);
                }
                for (id, kind, policy, hold) in channels {
                    let mut stmt = conn
                        .prepare_cached("SELECT location FROM channel_locations WHERE channel = ?1 ORDER BY priority")
                        .map_err(db("read channels"))?;
                    let locations: Vec<String> = stmt
                        .query_map([&id], |r| r.get(0))
                        .map_err(db("read channels"))?
                        .collect::<rusqlite::Result<_>>()
                        .map_err(db("read channels"))?;
                    let id = ChannelId::parse(&id).map_err(|e| corrupt("channel id", e))?;
                    snapshot.channels.insert(id, crate::catalog_rows::channel(kind, &policy, hold, locations)?);
                }
                let mut stmt = conn
                    .prepare("SELECT channel, channel_sku, sku FROM listings")
                    .map_err(db("read listings"))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                    .map_err(db("read listings"))?;
                for row in rows {
                    let (channel, channel_sku, sku) = row.map_err(db("read listings"))?;
                    snapshot.listings.push((
                        ChannelId::parse(&channel).map_err(|e| corrupt("channel id", e))?,
                        ChannelSku::parse(&channel_sku).map_err(|e| corrupt("channel SKU", e))?,
                        Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                    ));
                }
                let mut stmt = conn
                    .prepare("SELECT kit_sku, component_sku, quantity FROM kit_components ORDER BY kit_sku, position")
                    .map_err(db("read kits"))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                    .map_err(db("read kits"))?;
                for row in rows {
                    let (kit, component, quantity) = row.map_err(db("read kits"))?;
                    let kit = Sku::parse(&kit).map_err(|e| corrupt("SKU", e))?;
                    let sku = Sku::parse(&component).map_err(|e| corrupt("SKU", e))?;
                    snapshot.kits.entry(kit).or_default().push(Component { sku, quantity });
                }
                Ok(snapshot)
            })();
            let _ = conn.execute_batch("COMMIT");
            result
        })
        .await
    }

    pub(crate) async fn channel_availability(
        &self,
        skus: Vec<Sku>,
    ) -> Result<Vec<AvailabilityRow>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT channel, channel_sku, sku, available, published, queued FROM channel_availability \
                     WHERE sku IN (SELECT value FROM json_each(?1)) ORDER BY sku, channel, channel_sku",
                )
                .map_err(db("read availability"))?;
            let rows = stmt
                .query_map([sku_array(&skus)?], availability_row)
                .map_err(db("read availability"))?;
            rows.map(|r| to_availability(r.map_err(db("read availability"))?))
                .collect()
        })
        .await
    }

    pub(crate) async fn availability_published(
        &self,
        channel: &ChannelId,
        shown: Vec<(ChannelSku, i64)>,
        hold_ms: i64,
        now: Timestamp,
    ) -> Result<()> {
        let channel = channel.clone();
        self.write(shown.len().max(1), move |conn| {
            // A value still waiting is ranked again against what the channel now shows; one that
            // has become an increase waits its hold from now.
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE channel_availability SET published = ?3, published_at = ?4, \
                     rank = CASE WHEN available = 0 THEN 0 WHEN available < ?3 THEN 1 ELSE 2 END, \
                     due_at = CASE WHEN due_at IS NOT NULL AND available > ?3 AND rank < 2 THEN ?5 ELSE due_at END \
                     WHERE channel = ?1 AND channel_sku = ?2",
                )
                .map_err(db("record published quantity"))?;
            for (channel_sku, quantity) in &shown {
                stmt.execute(params![
                    channel.as_str(),
                    channel_sku.as_str(),
                    quantity,
                    now.unix_micros(),
                    now.plus_millis(hold_ms).unix_micros()
                ])
                .map_err(db("record published quantity"))?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn availability_due(
        &self,
        channel: &ChannelId,
        target: &str,
        limit: usize,
        now: Timestamp,
    ) -> Result<AvailabilityDue> {
        let (channel, target) = (channel.clone(), target.to_owned());
        self.read(move |conn| due_listings(conn, &channel, &target, limit, now))
            .await
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
        let (channel, target) = (channel.clone(), target.to_owned());
        self.write(limit.max(1), move |conn| {
            let due = due_listings(conn, &channel, &target, limit, now)?;
            if due.open >= open_max || due.listings.is_empty() {
                return Ok(due);
            }
            let action = match enqueue_rows(conn, &[build(&due.listings)?], now)?.first() {
                Some(EnqueueResult::Queued { id, .. }) => *id,
                _ => {
                    return Err(StoreError::Invalid(
                        "the channel batch was already queued".into(),
                    ));
                }
            };
            let mut mark = conn
                .prepare_cached(
                    "UPDATE channel_availability SET queued = ?3, queued_action = ?4, \
                     due_at = CASE WHEN ?3 IS available THEN NULL ELSE due_at END \
                     WHERE channel = ?1 AND channel_sku = ?2",
                )
                .map_err(db("mark listing queued"))?;
            for l in &due.listings {
                mark.execute(params![
                    channel.as_str(),
                    l.channel_sku.as_str(),
                    l.available,
                    action
                ])
                .map_err(db("mark listing queued"))?;
            }
            Ok(due)
        })
        .await
    }

    pub(crate) async fn refresh_dead_availability(
        &self,
        id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<DropOutcome> {
        let reason = reason.to_owned();
        self.write(1, move |conn| {
            let outcome = drop_dead_row(conn, id, &reason, now)?;
            if outcome == DropOutcome::Dropped {
                conn.prepare_cached(
                    "UPDATE channel_availability SET queued = NULL, queued_action = NULL, due_at = coalesce(due_at, ?2) \
                     WHERE queued_action = ?1",
                )
                .and_then(|mut s| s.execute(params![id, now.unix_micros()]))
                .map_err(db("mark listings due again"))?;
            }
            Ok(outcome)
        })
        .await
    }

    pub(crate) async fn divergences(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<Divergence>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, sku, location, source, reason FROM inventory_divergences WHERE seq > ?1 \
                     ORDER BY seq, location LIMIT ?2",
                )
                .map_err(db("read divergences"))?;
            let rows = stmt
                .query_map(params![after_seq, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db("read divergences"))?;
            rows.map(|row| {
                let (seq, sku, location, source, reason) = row.map_err(db("read divergences"))?;
                Ok(Divergence {
                    seq,
                    sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
                    location: LocationId::parse(&location).map_err(|e| corrupt("location", e))?,
                    source,
                    reason,
                })
            })
            .collect()
        })
        .await
    }
}

/// How many actions of a target are open (pending or in flight), and a channel's due listings
/// that no open action carries: each status named apart, so that both read the outbox's
/// partial indexes (migration 11), never a target's finished actions.
pub(super) const OPEN_ACTIONS: &str = "SELECT (SELECT count(*) FROM outbox WHERE target = ?1 AND status = 'pending') \
     + (SELECT count(*) FROM outbox WHERE target = ?1 AND status = 'in_flight')";
pub(super) const DUE_LISTINGS: &str = "SELECT channel_sku, sku, available, published, rank, version \
     FROM channel_availability WHERE channel = ?1 AND due_at IS NOT NULL AND due_at <= ?2 \
     AND (queued_action IS NULL OR queued_action NOT IN (SELECT id FROM outbox WHERE target = ?4 \
     AND status = 'pending' UNION ALL SELECT id FROM outbox WHERE target = ?4 AND status = 'in_flight')) \
     ORDER BY rank, due_at LIMIT ?3";

/// A channel's due listings (zero-outs, then decreases, then increases past their hold; oldest
/// first), how many of `target`'s actions are open, and when the next held increase falls due.
fn due_listings(
    conn: &Connection,
    channel: &ChannelId,
    target: &str,
    limit: usize,
    now: Timestamp,
) -> Result<AvailabilityDue> {
    let open: i64 = conn
        .prepare_cached(OPEN_ACTIONS)
        .and_then(|mut s| s.query_row([target], |r| r.get(0)))
        .map_err(db("count open actions"))?;
    let mut stmt = conn
        .prepare_cached(DUE_LISTINGS)
        .map_err(db("read due listings"))?;
    let rows = stmt
        .query_map(
            params![
                channel.as_str(),
                now.unix_micros(),
                i64::try_from(limit).unwrap_or(i64::MAX),
                target
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i32>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .map_err(db("read due listings"))?;
    let mut listings = Vec::new();
    for row in rows {
        let (channel_sku, sku, available, published, rank, version) =
            row.map_err(db("read due listings"))?;
        listings.push(DueListing {
            channel_sku: ChannelSku::parse(&channel_sku).map_err(|e| corrupt("channel SKU", e))?,
            sku: Sku::parse(&sku).map_err(|e| corrupt("SKU", e))?,
            available,
            published,
            rank,
            version,
        });
    }
    let next_due: Option<i64> = conn
        .prepare_cached(
            "SELECT min(due_at) FROM channel_availability WHERE channel = ?1 AND due_at IS NOT NULL \
             AND rank = 2 AND due_at > ?2",
        )
        .and_then(|mut s| s.query_row(params![channel.as_str(), now.unix_micros()], |r| r.get(0)))
        .map_err(db("read due listings"))?;
    Ok(AvailabilityDue {
        listings,
        open,
        next_due: next_due.map(Timestamp::from_unix_micros),
    })
}
