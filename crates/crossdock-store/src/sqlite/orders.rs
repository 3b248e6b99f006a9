//! Orders and returns on SQLite: taken once per channel and external id (and per delivery id),
//! saved with a version so two saga steps never overwrite each other.

use crossdock_core::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::enqueue_rows;
use super::inventory::reserve_rows;
use super::{SqliteStore, db};
use crate::Result;
use crate::model::{
    NewAction, NewOrder, ORDERS, OrderCreate, OrderQuery, OrderRow, OrderTaken, ReserveOutcome,
    SagaTable, TakeHold,
};

const COLUMNS: &str =
    "id, channel, external_id, status, until, state, version, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        external_id: r.get(2)?,
        status: r.get(3)?,
        until: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_unix_micros),
        state: r.get(5)?,
        version: r.get(6)?,
        created_at: Timestamp::from_unix_micros(r.get(7)?),
        updated_at: Timestamp::from_unix_micros(r.get(8)?),
    })
}

impl SqliteStore {
    pub(crate) async fn saga_create(&self, t: SagaTable, o: NewOrder) -> Result<OrderCreate> {
        self.write(1, move |conn| create_in(conn, t, &o)).await
    }

    pub(crate) async fn order_take(&self, o: NewOrder, hold: TakeHold) -> Result<OrderTaken> {
        let weight = hold.reserve.lines.len().max(1);
        // A take answers a repeat or short stock as an outcome, not an error: takes waiting
        // together share one savepoint.
        self.write_shared(weight, move |conn| {
            // One writer: nothing can take the order between this look and the insert below.
            if taken_before(conn, ORDERS, &o)? {
                return Ok(OrderTaken::NotHeld);
            }
            match reserve_rows(conn, hold.reserve)? {
                ReserveOutcome::Reserved { seq, .. } => {
                    enqueue_rows(conn, &hold.actions, o.now)?;
                    create_in(conn, ORDERS, &o)?;
                    Ok(OrderTaken::Held { seq })
                }
                ReserveOutcome::AlreadyReserved(_) | ReserveOutcome::Short(_) => {
                    Ok(OrderTaken::NotHeld)
                }
            }
        })
        .await
    }

    pub(crate) async fn saga_get(&self, t: SagaTable, id: &str) -> Result<Option<OrderRow>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM {} WHERE id = ?1", t.table))
                .and_then(|mut s| s.query_row([id], row).optional())
                .map_err(db("read order"))
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn saga_save(
        &self,
        t: SagaTable,
        id: &str,
        version: i64,
        status: &str,
        until: Option<Timestamp>,
        state: &str,
        actions: Vec<NewAction>,
        now: Timestamp,
    ) -> Result<bool> {
        let (id, status, state) = (id.to_owned(), status.to_owned(), state.to_owned());
        self.write(1 + actions.len(), move |conn| {
            let changed = conn
                .prepare_cached(&format!(
                    "UPDATE {} SET status = ?3, until = ?4, state = ?5, version = version + 1, \
                     updated_at = ?6 WHERE id = ?1 AND version = ?2",
                    t.table
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        version,
                        status,
                        until.map(Timestamp::unix_micros),
                        state,
                        now.unix_micros()
                    ])
                })
                .map_err(db("save order"))?;
            if changed == 1 && !actions.is_empty() {
                enqueue_rows(conn, &actions, now)?;
            }
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn sagas(&self, t: SagaTable, q: OrderQuery) -> Result<Vec<OrderRow>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&saga_listing(t.table, &q))
                .map_err(db("list orders"))?;
            let rows = stmt
                .query_map(
                    params![
                        q.status,
                        q.channel,
                        q.updated_before.map(Timestamp::unix_micros),
                        i64::try_from(q.limit).unwrap_or(i64::MAX),
                        q.due_before.map(Timestamp::unix_micros)
                    ],
                    row,
                )
                .map_err(db("list orders"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("list orders"))
        })
        .await
    }
}

/// The statement listing the sagas of `table` that `q` asks for, oldest update first.
pub(super) fn saga_listing(table: &str, q: &OrderQuery) -> String {
    format!(
        "SELECT {COLUMNS} FROM {table} WHERE {} ORDER BY updated_at, id LIMIT ?4",
        q.conditions(|n, _| format!("?{n}"))
    )
}

/// Records an order or return unless it was taken before, inside the caller's transaction.
/// Whether `o` was taken before: by its delivery id, or by its channel and external id.
fn taken_before(conn: &rusqlite::Connection, t: SagaTable, o: &NewOrder) -> Result<bool> {
    let seen = |sql: String, key: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(&sql)
            .and_then(|mut s| s.exists(key))
            .map_err(db("look up order"))
    };
    if let Some(delivery) = &o.delivery_id
        && seen(
            format!("SELECT 1 FROM {} WHERE delivery_id = ?1", t.deliveries),
            &[delivery],
        )?
    {
        return Ok(true);
    }
    seen(
        format!(
            "SELECT 1 FROM {} WHERE channel = ?1 AND external_id = ?2",
            t.table
        ),
        &[&o.channel, &o.external_id],
    )
}

fn record_delivery(
    conn: &rusqlite::Connection,
    t: SagaTable,
    delivery: &str,
    id: &str,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {} (delivery_id, {}, received_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        t.deliveries, t.owner
    ))
    .and_then(|mut s| s.execute(params![delivery, id, now.unix_micros()]))
    .map_err(db("record delivery"))?;
    Ok(())
}

fn create_in(conn: &rusqlite::Connection, t: SagaTable, o: &NewOrder) -> Result<OrderCreate> {
    if let Some(delivery) = &o.delivery_id {
        let seen: Option<String> = conn
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE delivery_id = ?1",
                t.owner, t.deliveries
            ))
            .and_then(|mut s| s.query_row([delivery], |r| r.get(0)).optional())
            .map_err(db("look up delivery"))?;
        if let Some(id) = seen {
            return Ok(OrderCreate::Duplicate {
                id,
                same_content: true,
            });
        }
    }
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO {} (id, channel, external_id, content_hash, status, until, \
             state, version, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
             ?7, 0, ?8, ?8) ON CONFLICT (channel, external_id) DO NOTHING",
            t.table
        ))
        .and_then(|mut s| {
            s.execute(params![
                o.id,
                o.channel,
                o.external_id,
                o.content_hash,
                o.status,
                o.until.map(Timestamp::unix_micros),
                o.state,
                o.now.unix_micros()
            ])
        })
        .map_err(db("record order"))?;
    let outcome = if inserted == 1 {
        (o.id.clone(), OrderCreate::Created)
    } else {
        let (id, hash): (String, String) = conn
            .prepare_cached(&format!(
                "SELECT id, content_hash FROM {} WHERE channel = ?1 AND external_id = ?2",
                t.table
            ))
            .and_then(|mut s| {
                s.query_row(params![o.channel, o.external_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(db("read order"))?;
        let same_content = hash == o.content_hash;
        (id.clone(), OrderCreate::Duplicate { id, same_content })
    };
    if let Some(delivery) = &o.delivery_id {
        record_delivery(conn, t, delivery, &outcome.0, o.now)?;
    }
    Ok(outcome.1)
}
