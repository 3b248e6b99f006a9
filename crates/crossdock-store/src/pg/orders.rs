//! Orders and returns on PostgreSQL: taken once per channel and external id (and per delivery
//! id), across nodes; saved with a version so two saga steps never overwrite each other.

use crossdock_core::Timestamp;
use sqlx::Row;

use super::enqueue_rows;
use super::inventory::reserve_in;
use super::{PgStore, pgerr};
use crate::Result;
use crate::model::{
    NewAction, NewOrder, ORDERS, OrderCreate, OrderQuery, OrderRow, OrderTaken, ReserveOutcome,
    SagaTable, TakeHold,
};

const COLUMNS: &str =
    "id, channel, external_id, status, until, state, version, created_at, updated_at";

fn row(r: &sqlx::postgres::PgRow) -> std::result::Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: r.try_get(0)?,
        channel: r.try_get(1)?,
        external_id: r.try_get(2)?,
        status: r.try_get(3)?,
        until: r
            .try_get::<Option<i64>, _>(4)?
            .map(Timestamp::from_unix_micros),
        state: r.try_get(5)?,
        version: r.try_get(6)?,
        created_at: Timestamp::from_unix_micros(r.try_get(7)?),
        updated_at: Timestamp::from_unix_micros(r.try_get(8)?),
    })
}

impl PgStore {
    pub(crate) async fn saga_create(&self, t: SagaTable, o: NewOrder) -> Result<OrderCreate> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let outcome = create_in(&mut tx, t, &o).await?;
        tx.commit().await.map_err(pgerr("commit"))?;
        Ok(outcome)
    }

    pub(crate) async fn order_take(&self, o: NewOrder, hold: TakeHold) -> Result<OrderTaken> {
        // A repeat holds nothing: it is answered the ordinary way.
        let taken_before: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM order_deliveries WHERE delivery_id = $1) \
             OR EXISTS (SELECT 1 FROM orders WHERE channel = $2 AND external_id = $3)",
        )
        .bind(&o.delivery_id)
        .bind(&o.channel)
        .bind(&o.external_id)
        .fetch_one(&self.pool)
        .await
        .map_err(pgerr("look up order"))?;
        if taken_before {
            return Ok(OrderTaken::NotHeld);
        }
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let ReserveOutcome::Reserved { seq, .. } = reserve_in(&mut tx, hold.reserve).await? else {
            return Ok(OrderTaken::NotHeld);
        };
        enqueue_rows(&mut tx, &hold.actions, o.now).await?;
        match create_in(&mut tx, ORDERS, &o).await? {
            OrderCreate::Created => {
                tx.commit().await.map_err(pgerr("commit"))?;
                Ok(OrderTaken::Held { seq })
            }
            // Taken by another node meanwhile: what this request held is rolled back.
            OrderCreate::Duplicate { .. } => Ok(OrderTaken::NotHeld),
        }
    }

    pub(crate) async fn saga_get(&self, t: SagaTable, id: &str) -> Result<Option<OrderRow>> {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {} WHERE id = $1",
            t.table
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read order"))?;
        found
            .as_ref()
            .map(row)
            .transpose()
            .map_err(pgerr("read order"))
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
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET status = $3, until = $4, state = $5, version = version + 1, \
             updated_at = $6 WHERE id = $1 AND version = $2",
            t.table
        )))
        .bind(id)
        .bind(version)
        .bind(status)
        .bind(until.map(Timestamp::unix_micros))
        .bind(state)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await
        .map_err(pgerr("save order"))?;
        let saved = changed.rows_affected() == 1;
        if saved && !actions.is_empty() {
            enqueue_rows(&mut tx, &actions, now).await?;
        }
        tx.commit().await.map_err(pgerr("commit"))?;
        Ok(saved)
    }

    pub(crate) async fn sagas(&self, t: SagaTable, q: OrderQuery) -> Result<Vec<OrderRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {} WHERE {} ORDER BY updated_at, id LIMIT $4",
            t.table,
            q.conditions(|n, ty| format!("${n}::{ty}"))
        )))
        .bind(&q.status)
        .bind(&q.channel)
        .bind(q.updated_before.map(Timestamp::unix_micros))
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .bind(q.due_before.map(Timestamp::unix_micros))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list orders"))?;
        rows.iter()
            .map(row)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(pgerr("list orders"))
    }
}

/// Records an order or return unless it was taken before, inside the caller's transaction.
async fn create_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    t: SagaTable,
    o: &NewOrder,
) -> Result<OrderCreate> {
    if let Some(delivery) = &o.delivery_id {
        let seen: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE delivery_id = $1",
            t.owner, t.deliveries
        )))
        .bind(delivery)
        .fetch_optional(&mut **tx)
        .await
        .map_err(pgerr("look up delivery"))?;
        if let Some(id) = seen {
            return Ok(OrderCreate::Duplicate {
                id,
                same_content: true,
            });
        }
    }
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (id, channel, external_id, content_hash, status, until, state, \
         version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) \
         ON CONFLICT (channel, external_id) DO NOTHING",
        t.table
    )))
    .bind(&o.id)
    .bind(&o.channel)
    .bind(&o.external_id)
    .bind(&o.content_hash)
    .bind(&o.status)
    .bind(o.until.map(Timestamp::unix_micros))
    .bind(&o.state)
    .bind(o.now.unix_micros())
    .execute(&mut **tx)
    .await
    .map_err(pgerr("record order"))?;
    let (id, outcome) = if inserted.rows_affected() == 1 {
        (o.id.clone(), OrderCreate::Created)
    } else {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, content_hash FROM {} WHERE channel = $1 AND external_id = $2",
            t.table
        )))
        .bind(&o.channel)
        .bind(&o.external_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(pgerr("read order"))?;
        let id: String = r.try_get(0).map_err(pgerr("read order"))?;
        let hash: String = r.try_get(1).map_err(pgerr("read order"))?;
        let same_content = hash == o.content_hash;
        (id.clone(), OrderCreate::Duplicate { id, same_content })
    };
    if let Some(delivery) = &o.delivery_id {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (delivery_id, {}, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            t.deliveries, t.owner
        )))
        .bind(delivery)
        .bind(&id)
        .bind(o.now.unix_micros())
        .execute(&mut **tx)
        .await
        .map_err(pgerr("record delivery"))?;
    }
    Ok(outcome)
}
