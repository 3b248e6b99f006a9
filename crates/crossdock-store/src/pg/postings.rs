//! Financial posting on PostgreSQL: lines recorded once by key; a run takes one advisory lock
//! (runs on several nodes take turns), gathers the lines in no batch yet into one batch per
//! channel, currency and day and queues each batch's action in the same transaction.

use crossdock_core::Timestamp;
use crossdock_core::money::Amount;
use sqlx::Row;

use super::{PgStore, enqueue_rows, pgerr};
use crate::Result;
use crate::model::{
    EnqueueResult, PostingActionBuilder, PostingBatch, PostingLine, PostingQuery, STATUS_COUNTS,
    StatusCount, posting_batch_key,
};

const COLUMNS: &str = "key, channel, currency, day, lines, units, amount, status, journal, \
                       action_id, created_at, updated_at";

fn batch(r: &sqlx::postgres::PgRow) -> std::result::Result<PostingBatch, sqlx::Error> {
    Ok(PostingBatch {
        key: r.try_get(0)?,
        channel: r.try_get(1)?,
        currency: r.try_get(2)?,
        day: r.try_get(3)?,
        lines: r.try_get(4)?,
        units: r.try_get(5)?,
        amount: Amount::from_ten_thousandths(r.try_get(6)?),
        status: r.try_get(7)?,
        journal: r.try_get(8)?,
        action_id: r.try_get(9)?,
        created_at: Timestamp::from_unix_micros(r.try_get(10)?),
        updated_at: Timestamp::from_unix_micros(r.try_get(11)?),
    })
}

impl PgStore {
    pub(crate) async fn posting_lines_add(
        &self,
        lines: Vec<PostingLine>,
        now: Timestamp,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        let mut added = 0;
        for l in &lines {
            let done = sqlx::query(
                "INSERT INTO posting_lines (key, channel, currency, day, source, units, amount, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&l.key)
            .bind(&l.channel)
            .bind(&l.currency)
            .bind(&l.day)
            .bind(&l.source)
            .bind(l.units)
            .bind(l.amount.ten_thousandths())
            .bind(now.unix_micros())
            .execute(&mut *tx)
            .await
            .map_err(pgerr("record posting line"))?;
            added += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(pgerr("commit"))?;
        Ok(added)
    }

    pub(crate) async fn postings_run(
        &self,
        build: PostingActionBuilder,
        now: Timestamp,
    ) -> Result<Vec<PostingBatch>> {
        let mut tx = self.pool.begin().await.map_err(pgerr("begin"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('crossdock.postings', 0))")
            .execute(&mut *tx)
            .await
            .map_err(pgerr("lock postings"))?;
        let groups = sqlx::query(
            "SELECT channel, currency, day FROM posting_lines WHERE batch IS NULL \
             GROUP BY channel, currency, day ORDER BY day, channel, currency",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(pgerr("find lines to post"))?;
        let mut made = Vec::with_capacity(groups.len());
        for g in &groups {
            let channel: String = g.try_get(0).map_err(pgerr("find lines to post"))?;
            let currency: String = g.try_get(1).map_err(pgerr("find lines to post"))?;
            let day: String = g.try_get(2).map_err(pgerr("find lines to post"))?;
            let before: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM posting_batches WHERE channel = $1 AND currency = $2 \
                 AND day = $3",
            )
            .bind(&channel)
            .bind(&currency)
            .bind(&day)
            .fetch_one(&mut *tx)
            .await
            .map_err(pgerr("count batches"))?;
            let key = posting_batch_key(&day, &channel, &currency, before + 1);
            sqlx::query(
                "UPDATE posting_lines SET batch = $4 WHERE batch IS NULL AND channel = $1 \
                 AND currency = $2 AND day = $3",
            )
            .bind(&channel)
            .bind(&currency)
            .bind(&day)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(pgerr("gather lines"))?;
            let totals = sqlx::query(
                "SELECT COUNT(*), COALESCE(SUM(units), 0)::bigint, COALESCE(SUM(amount), 0)::bigint \
                 FROM posting_lines WHERE batch = $1",
            )
            .bind(&key)
            .fetch_one(&mut *tx)
            .await
            .map_err(pgerr("total batch"))?;
            let mut b = PostingBatch {
                key,
                channel,
                currency,
                day,
                lines: totals.try_get(0).map_err(pgerr("total batch"))?,
                units: totals.try_get(1).map_err(pgerr("total batch"))?,
                amount: Amount::from_ten_thousandths(
                    totals.try_get(2).map_err(pgerr("total batch"))?,
                ),
                status: "queued".into(),
                journal: None,
                action_id: None,
                created_at: now,
                updated_at: now,
            };
            if let Some(EnqueueResult::Queued { id, .. }) =
                enqueue_rows(&mut tx, &[build(&b)], now).await?.first()
            {
                b.action_id = Some(*id);
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO posting_batches ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 NULL, $9, $10, $10)"
            )))
            .bind(&b.key)
            .bind(&b.channel)
            .bind(&b.currency)
            .bind(&b.day)
            .bind(b.lines)
            .bind(b.units)
            .bind(b.amount.ten_thousandths())
            .bind(&b.status)
            .bind(b.action_id)
            .bind(now.unix_micros())
            .execute(&mut *tx)
            .await
            .map_err(pgerr("record batch"))?;
            made.push(b);
        }
        tx.commit().await.map_err(pgerr("commit postings"))?;
        Ok(made)
    }

    pub(crate) async fn posting_confirm(
        &self,
        key: &str,
        journal: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE posting_batches SET status = 'posted', journal = $2, updated_at = $3 \
             WHERE key = $1 AND status <> 'posted'",
        )
        .bind(key)
        .bind(journal)
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(pgerr("confirm batch"))?;
        Ok(changed.rows_affected() == 1)
    }

    pub(crate) async fn posting_batch(&self, key: &str) -> Result<Option<PostingBatch>> {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM posting_batches WHERE key = $1"
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pgerr("read batch"))?;
        found
            .as_ref()
            .map(batch)
            .transpose()
            .map_err(pgerr("read batch"))
    }

    pub(crate) async fn postings(&self, q: PostingQuery) -> Result<Vec<PostingBatch>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM posting_batches WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR channel = $2) ORDER BY created_at DESC, key DESC LIMIT $3"
        )))
        .bind(&q.status)
        .bind(&q.channel)
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list batches"))?;
        rows.iter()
            .map(batch)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(pgerr("list batches"))
    }

    pub(crate) async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        let rows = sqlx::query(STATUS_COUNTS)
            .fetch_all(&self.pool)
            .await
            .map_err(pgerr("count statuses"))?;
        rows.iter()
            .map(|r| {
                Ok(StatusCount {
                    kind: r.try_get(0)?,
                    status: r.try_get(1)?,
                    count: r.try_get(2)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(pgerr("count statuses"))
    }

    pub(crate) async fn posting_lines(&self, batch: &str) -> Result<Vec<PostingLine>> {
        let rows = sqlx::query(
            "SELECT key, channel, currency, day, source, units, amount FROM posting_lines \
             WHERE batch = $1 ORDER BY key",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await
        .map_err(pgerr("list batch lines"))?;
        rows.iter()
            .map(|r| {
                Ok(PostingLine {
                    key: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    currency: r.try_get(2)?,
                    day: r.try_get(3)?,
                    source: r.try_get(4)?,
                    units: r.try_get(5)?,
                    amount: Amount::from_ten_thousandths(r.try_get(6)?),
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(pgerr("list batch lines"))
    }
}
